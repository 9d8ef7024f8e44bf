"""No token in any output: every command, every output format, the most verbose logging, and
failures with their exception text. The session-wide hook in tests/conftest.py scans each
test's captured output too; these tests also scan what the CLI runner captured."""

from __future__ import annotations

import logging

import pytest
import yaml

from mtv_register import errors, manifests
from mtv_register.api_kube import ApiKube
from mtv_register.sandbox import ISSUED_TOKENS
from mtv_register.timing import Timing
from tests.integration.conftest import assert_no_token_in_any_form

BASE = ("--source", "source", "--destination", "destination", "--host", "mtv")


@pytest.fixture
def run(cli, kubeconfig):
    def invoke(*args: str) -> object:
        result = cli("-vv", *args, "--kubeconfig", str(kubeconfig))
        assert_no_token_in_any_form(result.stdout + result.stderr)
        return result

    return invoke


@pytest.mark.parametrize("output", ["text", "json", "yaml"])
def test_register_status_rotate_unregister_at_debug_level_print_no_token(run, output, caplog):
    caplog.set_level(logging.DEBUG)
    assert run("register", *BASE, "--yes", "--output", output).exit_code == 0
    assert run("register", *BASE, "--yes", "--output", output).exit_code == 0
    assert run("status", "--host", "mtv", "--output", output).exit_code == 0
    assert (
        run(
            "rotate",
            "--host",
            "mtv",
            "--all",
            "--max-age",
            "0s",
            "--output",
            "json" if output == "json" else "text",
        ).exit_code
        == 0
    )
    assert run("unregister", *BASE, "--yes").exit_code == 0
    assert ISSUED_TOKENS, "the sandbox issued tokens to look for"
    assert "GET /api" in caplog.text or "POST /api" in caplog.text  # debug logs were captured
    assert_no_token_in_any_form(caplog.text)


def test_dry_run_redacts_the_token_of_an_existing_registration(run):
    """Re-rendered for a registration that exists, each provider Secret shows its token as the
    placeholder (under stringData, where kubectl apply takes text) and the rest as stored."""
    assert run("register", *BASE, "--yes").exit_code == 0
    result = run("register", *BASE, "--yes", "--dry-run", "--output", "yaml")
    assert result.exit_code == 0
    shown = {
        doc["metadata"]["name"]: doc
        for doc in yaml.safe_load_all(result.stdout)
        if doc and doc.get("kind") == "Secret" and doc["metadata"]["name"].endswith("-credentials")
    }
    assert set(shown) == {"source-credentials", "destination-credentials"}
    for secret in shown.values():
        assert "data" not in secret
        assert secret["stringData"]["token"] == manifests.REDACTED
        assert secret["stringData"]["url"].startswith("https://")


def test_failures_carry_no_token_in_their_message(sandbox, run, caplog):
    caplog.set_level(logging.DEBUG)
    assert run("register", *BASE, "--yes").exit_code == 0
    # Forklift will refuse the next token: the failure path prints conditions and errors.
    sandbox["source"].cluster.faults.inject("*", "", count=10_000, status=500)
    result = run("rotate", "--host", "mtv", "--all", "--max-age", "0s")
    assert result.exit_code != 0
    assert_no_token_in_any_form(caplog.text)


def test_an_error_about_a_refused_token_does_not_quote_it(sandbox):
    token = sandbox["source"].cluster.add_user("someone")
    kube = ApiKube.from_token(
        sandbox["source"].url,
        token + "x",
        ca_pem=sandbox["source"].serving_ca_pem,
        context="source",
        timing=Timing.immediate(),
    )
    try:
        with pytest.raises(errors.AuthenticationFailed) as failure:
            kube.list(__import__("mtv_register.kube", fromlist=["NAMESPACE"]).NAMESPACE)
    finally:
        kube.close()
    assert token not in str(failure.value) and token not in failure.value.line()
