"""Bound tokens: TokenRequest instead of a token Secret; they expire, and rotate renews them."""

from __future__ import annotations

import base64
import datetime as dt

from mtv_register import forklift, manifests
from mtv_register.bootstrap import RemoteSpec
from mtv_register.kube import RetryPolicy
from mtv_register.orchestrator import register_pair
from mtv_register.rotation import RotateOptions, open_host, rotate_all
from tests.integration.conftest import (
    marks,
    mutating_since,
    pair_options,
    provider_phase,
    register_args,
)


def _provider_secret(sandbox, name):
    host = sandbox["mtv"].cluster
    return host.store.find(
        host.rtype("", "v1", "secrets"), "openshift-mtv", forklift.secret_name_for(name)
    )


def _token(sandbox, name):
    return base64.b64decode(_provider_secret(sandbox, name)["data"]["token"]).decode()


def test_bound_tokens_register_without_a_token_secret_and_expire(sandbox, kubeconfig):
    options = pair_options(kubeconfig, remote=RemoteSpec(token_type="bound", token_ttl=1200))
    register_pair(options)
    source = sandbox["source"].cluster
    secrets, _ = source.store.list(source.rtype("", "v1", "secrets"), "mtv-register")
    assert not [s for s in secrets if s.get("type") == manifests.SERVICE_ACCOUNT_TOKEN_TYPE]
    annotations = _provider_secret(sandbox, "source")["metadata"]["annotations"]
    assert annotations[manifests.TOKEN_TYPE_ANNOTATION] == "bound"
    assert annotations[manifests.TOKEN_EXPIRES_ANNOTATION]
    token = _token(sandbox, "source")
    assert source.authenticate(token) is not None
    source.clock.advance(1201)
    assert source.authenticate(token) is None  # the API server stops accepting it


def test_a_bound_token_rerun_changes_nothing(sandbox, kubeconfig):
    options = pair_options(kubeconfig, remote=RemoteSpec(token_type="bound", token_ttl=3600))
    register_pair(options)
    before = marks(sandbox)
    assert not register_pair(options).mutated
    assert mutating_since(sandbox, before) == {c: [] for c in sandbox.clusters}


def test_rotate_before_expiry_renews_bound_tokens_with_their_own_credentials(
    sandbox, kubeconfig, monkeypatch
):
    monkeypatch.setattr(forklift, "RETEST_GRACE_SECONDS", 0.2)
    register_pair(pair_options(kubeconfig, remote=RemoteSpec(token_type="bound", token_ttl=1200)))
    old = _token(sandbox, "source")
    for context in sandbox.clusters:
        sandbox[context].cluster.clock.advance(900)  # 5 minutes of 20 left

    def clock():
        return dt.datetime.fromtimestamp(sandbox["source"].cluster.clock.now(), dt.UTC)

    host = open_host(
        kubeconfig=str(kubeconfig), host="mtv", in_cluster=False, retry=RetryPolicy.immediate()
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
    new = _token(sandbox, "source")
    assert new != old
    source = sandbox["source"].cluster
    for context in sandbox.clusters:
        sandbox[context].cluster.clock.advance(600)  # the old token is now past its expiry
    assert source.authenticate(old) is None
    assert source.authenticate(new) is not None
    assert provider_phase(sandbox, "source") == "Ready"


def test_unregister_removes_the_token_requester_role(sandbox, kubeconfig):
    from mtv_register.orchestrator import unregister_pair

    options = pair_options(kubeconfig, remote=RemoteSpec(token_type="bound", token_ttl=3600))
    register_pair(options)
    unregister_pair(options)
    source = sandbox["source"].cluster
    roles, _ = source.store.list(source.rtype("rbac.authorization.k8s.io", "v1", "roles"))
    assert not [r for r in roles if r["metadata"]["name"].endswith("-token-requester")]


def test_a_bound_token_ttl_under_ten_minutes_is_refused(sandbox, kubeconfig, cli):
    result = cli(*register_args(kubeconfig, "--yes", "--token-type", "bound", "--token-ttl", "5m"))
    assert result.exit_code == 2
    assert "at least 10m" in result.stderr
