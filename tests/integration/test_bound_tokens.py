"""Bound tokens: TokenRequest instead of a token Secret; they expire, and rotate renews them."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from mtv_register import forklift, naming
from mtv_register.bootstrap import RemoteSpec
from mtv_register.clusters import Connector
from mtv_register.orchestrator import PairOptions, register_pair
from mtv_register.registration import open_host
from mtv_register.rotation import RotateOptions, rotate_all
from mtv_register.sandbox import Sandbox
from mtv_register.timing import Timing
from mtv_register.unregister import unregister_pair
from tests.integration.conftest import (
    CliRun,
    active_backend,
    assert_nothing_written,
    mark,
    pair_options,
    register_args,
)
from tests.target import Target

# The default client alone, but for the renewal with the tokens' own credentials (a client
# holding a token, which the oc backend makes its own way); test_oc_backend registers with
# bound tokens on oc.


def _provider_secret(target: Target, name: str) -> dict[str, Any]:
    secret = target.find("mtv", "secrets", forklift.secret_name_for(name), "openshift-mtv")
    assert secret is not None, f"the provider Secret of {name} is gone"
    return secret


def _token(target: Target, name: str) -> str:
    return base64.b64decode(_provider_secret(target, name)["data"]["token"]).decode()


def _register_bound(target: Target, ttl: int) -> PairOptions:
    """Register the pair with bound tokens of `ttl` seconds (waits for Forklift's verdict)."""
    options = pair_options(target.kubeconfig, remote=RemoteSpec(token_type="bound", token_ttl=ttl))
    register_pair(options)
    return options


@pytest.mark.needs_forklift
def test_bound_tokens_register_without_a_token_secret(target: Target) -> None:
    _register_bound(target, 1200)
    secrets = target.list("source", "secrets", "mtv-register")
    assert not [s for s in secrets if s.get("type") == naming.SERVICE_ACCOUNT_TOKEN_TYPE]
    annotations = _provider_secret(target, "source")["metadata"]["annotations"]
    assert annotations[naming.TOKEN_TYPE_ANNOTATION] == "bound"
    assert annotations[naming.TOKEN_EXPIRES_ANNOTATION]
    assert target.authenticates("source", _token(target, "source"))


@pytest.mark.needs_forklift
def test_switching_to_bound_tokens_revokes_the_long_lived_one_once_the_new_is_proven(
    target: Target,
) -> None:
    register_pair(pair_options(target.kubeconfig))
    old = {name: _token(target, name) for name in ("source", "destination")}

    _register_bound(target, 1200)

    for name in ("source", "destination"):
        secrets = target.list(name, "secrets", "mtv-register")
        assert not [s for s in secrets if s.get("type") == naming.SERVICE_ACCOUNT_TOKEN_TYPE]
        assert target.refuses(name, old[name])  # the long-lived token no longer works
        assert target.authenticates(name, _token(target, name))
        assert target.provider_phase(name) == "Ready"


@pytest.mark.needs_forklift
@pytest.mark.sandbox_only("advances the sandbox clock past the bound token's expiry")
def test_a_bound_token_expires(target: Target, sandbox: Sandbox) -> None:
    _register_bound(target, 1200)
    token = _token(target, "source")
    source = sandbox["source"].cluster
    assert source.authenticate(token) is not None
    source.clock.advance(1201)
    assert source.authenticate(token) is None  # the API server stops accepting it


@pytest.mark.needs_forklift
def test_a_bound_token_rerun_changes_nothing(target: Target) -> None:
    options = _register_bound(target, 3600)
    before = mark(target)
    assert not register_pair(options).mutated
    assert_nothing_written(target, before)


@pytest.mark.needs_forklift
@pytest.mark.sandbox_only("advances the sandbox clock to bring the bound tokens near expiry")
@pytest.mark.both_backends  # see tests/integration/conftest.py: backends_of
def test_rotate_before_expiry_renews_bound_tokens_with_their_own_credentials(
    target: Target, sandbox: Sandbox, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _register_bound(target, 1200)
    old = _token(target, "source")
    for context in sandbox.clusters:
        sandbox[context].cluster.clock.advance(900)  # 5 minutes of 20 left

    def clock() -> dt.datetime:
        return dt.datetime.fromtimestamp(sandbox["source"].cluster.clock.now(), dt.UTC)

    chosen = active_backend()
    host = open_host(
        kubeconfig=str(kubeconfig),
        host="mtv",
        in_cluster=False,
        connector=Connector(chosen.name, chosen.oc_path, Timing.immediate()),
    )
    try:
        skipped = rotate_all(
            host,
            "openshift-mtv",
            None,
            RotateOptions(before_expiry=dt.timedelta(minutes=2), clock=clock),
            lambda change: None,
        )
        assert {r.action for r in skipped} == {"skipped"}
        renewed = rotate_all(
            host,
            "openshift-mtv",
            None,
            RotateOptions(before_expiry=dt.timedelta(minutes=10), clock=clock),
            lambda change: None,
        )
    finally:
        host.close()
    assert {r.action for r in renewed} == {"rotated"}
    new = _token(target, "source")
    assert new != old
    source = sandbox["source"].cluster
    for context in sandbox.clusters:
        sandbox[context].cluster.clock.advance(600)  # the old token is now past its expiry
    assert source.authenticate(old) is None
    assert source.authenticate(new) is not None
    assert target.provider_phase("source") == "Ready"


@pytest.mark.needs_forklift
def test_unregister_removes_the_token_requester_role(target: Target) -> None:
    options = _register_bound(target, 3600)
    roles = target.list("source", "roles")
    assert [r for r in roles if r["metadata"]["name"].endswith("-token-requester")]
    unregister_pair(options)
    roles = target.list("source", "roles")
    assert not [r for r in roles if r["metadata"]["name"].endswith("-token-requester")]


def test_a_bound_token_ttl_under_ten_minutes_is_refused(
    target: Target, kubeconfig: Path, cli: CliRun
) -> None:
    since = mark(target)
    result = cli(*register_args(kubeconfig, "--yes", "--token-type", "bound", "--token-ttl", "5m"))
    assert result.exit_code == 2
    assert "at least 10m" in result.stderr
    assert_nothing_written(target, since)
