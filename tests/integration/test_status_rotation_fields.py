"""`status` after rotation: the last rotation time, and token Secrets left behind."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mtv_register import clusters, manifests
from mtv_register.kube import SECRET
from tests.integration._rotation_support import register
from tests.integration.conftest import CliRun, register_anywhere, status_args
from tests.target import Target

STRAY = "mtv-provider-token-stray"


def add_stray_token_secret(target: Target) -> None:
    """An interrupted rotation's Secret: a second token Secret of the same account, made by the
    cluster's admin."""
    source = clusters.Connector().connect(clusters.load_kubeconfig(target.kubeconfig), "source")
    try:
        source.create(SECRET, manifests.token_secret("mtv-provider", "mtv-register", name=STRAY))
    finally:
        source.close()


def status_report(cli: CliRun, target: Target) -> dict[str, Any]:
    """`status --remote source=source -o json` on the separate host, as parsed JSON."""
    result = cli(*status_args(target, "--remote", "source=source", "-o", "json"))
    assert result.exit_code == target.status_exit, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_status_names_a_token_secret_left_behind(
    target: Target, cli: CliRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_anywhere(target, monkeypatch)
    add_stray_token_secret(target)

    report = status_report(cli, target)
    (remote,) = report["remotes"]
    assert sorted(remote["tokenSecrets"]) == ["mtv-provider-token", STRAY]
    assert remote["leftoverTokenSecrets"] == [STRAY]
    assert not any(row.get("rotatedAt") for row in report["providers"])
    text = cli(*status_args(target, "--remote", "source=source"))
    assert f"LEFT BEHIND (their tokens still work): {STRAY}" in " ".join(text.stdout.split())


@pytest.mark.needs_forklift  # rotate waits for Forklift's re-test of the new token
def test_status_names_a_token_secret_left_behind_and_the_last_rotation(
    target: Target, cli: CliRun
) -> None:
    register(target)
    rotated = cli(
        "rotate",
        "--host",
        "mtv",
        "--kubeconfig",
        str(target.kubeconfig),
        "--provider",
        "source",
        "--max-age",
        "0s",
    )
    assert rotated.exit_code == 0, rotated.stderr
    add_stray_token_secret(target)
    report = status_report(cli, target)
    row = next(r for r in report["providers"] if r["name"] == "source")
    assert row["rotatedAt"]
    untouched = next(r for r in report["providers"] if r["name"] == "destination")
    assert not untouched.get("rotatedAt")
    (remote,) = report["remotes"]
    assert remote["leftoverTokenSecrets"] == [STRAY]
    text = cli(*status_args(target, "--remote", "source=source"))
    assert "LEFT BEHIND" in text.stdout and STRAY in text.stdout
