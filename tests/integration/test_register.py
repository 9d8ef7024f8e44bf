"""Registering a pair through the library (`orchestrator.register_pair`) against the sandbox:
both shapes of MTV host, idempotence counted in the audit log, slow token controllers, drift
repair, preflight failures that write nothing, and Forklift rejecting a token."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest

from mtv_register import clusters, errors, manifests, orchestrator
from mtv_register.kube import CLUSTER_ROLE, PROVIDER, SECRET, Kube, NotFound
from mtv_register.orchestrator import register_pair
from mtv_register.sandbox import Sandbox
from tests.conftest import SandboxFactory
from tests.integration.conftest import (
    assert_no_mutation,
    marks,
    mutating_since,
    pair_options,
    provider_phase,
    settle_forklift,
    wait_for,
)

Obj = dict[str, Any]
MTV_NS = "openshift-mtv"
SA_NS = manifests.DEFAULT_SERVICE_ACCOUNT_NAMESPACE
TOKEN_SECRET = manifests.token_secret_name(manifests.DEFAULT_SERVICE_ACCOUNT)


def find(sandbox: Sandbox, context: str, plural: str, name: str, namespace: str = "") -> Obj | None:
    cluster = sandbox[context].cluster
    group = {
        "providers": ("forklift.konveyor.io", "v1beta1"),
        "clusterroles": ("rbac.authorization.k8s.io", "v1"),
        "clusterrolebindings": ("rbac.authorization.k8s.io", "v1"),
    }.get(plural, ("", "v1"))
    return cluster.store.find(cluster.rtype(*group, plural), namespace, name)


def decoded(secret: Obj, key: str) -> str:
    return base64.b64decode((secret.get("data") or {}).get(key, "")).decode()


def admin(kubeconfig: Path, context: str) -> Kube:
    return clusters.connect(clusters.load_kubeconfig(kubeconfig), context)


def assert_registered(sandbox: Sandbox, context: str, provider_name: str) -> None:
    """The Provider is Ready and its Secret carries that cluster's URL, root CA and the token of
    the token Secret there (compared, never shown)."""
    host = sandbox.mtv_context
    provider = find(sandbox, host, "providers", provider_name, MTV_NS)
    assert provider is not None
    assert provider["spec"]["url"] == sandbox[context].url
    assert provider["status"]["phase"] == "Ready"
    assert "Ready" in {c["type"] for c in provider["status"]["conditions"]}
    assert provider["metadata"]["labels"][manifests.MANAGED_BY_LABEL] == manifests.MANAGED_BY
    secret = find(sandbox, host, "secrets", f"{provider_name}-credentials", MTV_NS)
    assert secret is not None
    assert provider["spec"]["secret"] == {"name": secret["metadata"]["name"], "namespace": MTV_NS}
    assert [ref["uid"] for ref in secret["metadata"]["ownerReferences"]] == [
        provider["metadata"]["uid"]
    ]
    assert secret["metadata"]["labels"]["createdForResourceType"] == "providers"
    assert decoded(secret, "url") == sandbox[context].url
    assert decoded(secret, "ca.crt") == sandbox[context].root_ca_pem
    assert decoded(secret, "insecureSkipVerify") == "false"
    token_secret = find(sandbox, context, "secrets", TOKEN_SECRET, SA_NS)
    assert token_secret is not None
    same_token = decoded(secret, "token") == decoded(token_secret, "token") != ""
    assert same_token, "the provider Secret does not carry the cluster's token"


def assert_bootstrapped(sandbox: Sandbox, context: str) -> None:
    """The seed's objects on a registered cluster, and the token Secret not listed in the SA."""
    role = find(sandbox, context, "clusterroles", manifests.DEFAULT_ROLE_NAME)
    assert role is not None and role["rules"] == manifests.SEED_CLUSTER_ROLE_RULES
    binding = find(sandbox, context, "clusterrolebindings", manifests.DEFAULT_SERVICE_ACCOUNT)
    assert binding is not None
    assert binding["roleRef"]["name"] == manifests.DEFAULT_ROLE_NAME
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": manifests.DEFAULT_SERVICE_ACCOUNT, "namespace": SA_NS}
    ]
    account = find(sandbox, context, "serviceaccounts", manifests.DEFAULT_SERVICE_ACCOUNT, SA_NS)
    assert account is not None and not account.get("secrets")
    token_secret = find(sandbox, context, "secrets", TOKEN_SECRET, SA_NS)
    assert token_secret is not None
    assert token_secret["type"] == manifests.SERVICE_ACCOUNT_TOKEN_TYPE


# -- the two shapes ------------------------------------------------------------------------------


def test_pair_on_a_separate_mtv_host_gives_two_ready_providers(
    sandbox: Sandbox, kubeconfig: Path
) -> None:
    result = register_pair(pair_options(kubeconfig))

    assert (result.host, result.namespace) == ("mtv", MTV_NS)
    assert [(p.name, p.role, p.context, p.phase) for p in result.providers] == [
        ("source", "source", "source", "Ready"),
        ("destination", "destination", "destination", "Ready"),
    ]
    assert result.mutated
    for context in ("source", "destination"):
        assert_bootstrapped(sandbox, context)
        assert_registered(sandbox, context, context)
    assert find(sandbox, "mtv", "namespaces", SA_NS) is None  # nothing bootstrapped on the host


def test_pair_with_mtv_on_the_destination_uses_its_host_provider(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(mtv_on="destination")
    kubeconfig = sandbox.write_kubeconfig(tmp_path / "kubeconfig")
    since = marks(sandbox)

    result = register_pair(pair_options(kubeconfig, host=None))

    assert result.host == "destination"
    assert [(p.name, p.role, p.phase) for p in result.providers] == [
        ("source", "source", "Ready"),
        ("host", "destination", "Ready"),
    ]
    assert_bootstrapped(sandbox, "source")
    assert_registered(sandbox, "source", "source")
    # The destination only receives the source's Provider and Secret: no credentials of its own.
    assert find(sandbox, "destination", "namespaces", SA_NS) is None
    assert find(sandbox, "destination", "clusterroles", manifests.DEFAULT_ROLE_NAME) is None
    written = mutating_since(sandbox, since)["destination"]
    assert written and all(f"/namespaces/{MTV_NS}/" in line for line in written)
    host = find(sandbox, "destination", "providers", "host", MTV_NS)
    assert host is not None and not host["spec"].get("url")


# -- idempotence ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mtv_on", ["separate", "destination"])
def test_second_run_makes_no_mutating_request_and_reports_the_registration(
    make_sandbox: SandboxFactory, tmp_path: Path, mtv_on: str
) -> None:
    sandbox = make_sandbox(mtv_on=mtv_on)
    kubeconfig = sandbox.write_kubeconfig(tmp_path / "kubeconfig")
    options = pair_options(kubeconfig, host="mtv" if mtv_on == "separate" else None)
    first = register_pair(options)
    since = marks(sandbox)

    again = register_pair(options)

    assert_no_mutation(sandbox, since)
    assert not again.mutated
    assert again.changes and {c.action for c in again.changes} == {"unchanged"}
    assert [(p.name, p.phase) for p in again.providers] == [
        (p.name, "Ready") for p in first.providers
    ]


# -- waiting for the token -----------------------------------------------------------------------


def test_a_slow_token_controller_still_succeeds_by_watching(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(mtv_on="separate", token_delay=3)
    kubeconfig = sandbox.write_kubeconfig(tmp_path / "kubeconfig")
    started = time.monotonic()

    result = register_pair(pair_options(kubeconfig))

    assert time.monotonic() - started >= 3
    assert [p.phase for p in result.providers] == ["Ready", "Ready"]
    for context in ("source", "destination"):
        assert_registered(sandbox, context, context)
        reads = [
            e
            for e in sandbox[context].cluster.audit.events()
            if e["verb"] in ("get", "list", "watch")
            and (e.get("objectRef") or {}).get("resource") == "secrets"
        ]
        # A watch, not a poll: a handful of requests for three seconds of waiting.
        assert any(e["verb"] == "watch" for e in reads)
        assert len(reads) < 10


# -- preflight failures write nothing ------------------------------------------------------------


def test_forklift_absent_from_the_host_fails_before_anything_is_created(
    sandbox: Sandbox, kubeconfig: Path
) -> None:
    mtv = admin(kubeconfig, "mtv")
    mtv.request(
        "DELETE",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/providers.forklift.konveyor.io",
    )

    def providers_served() -> bool:
        try:
            mtv.list(PROVIDER, MTV_NS)
        except NotFound:
            return False
        return True

    wait_for(lambda: not providers_served(), what="the Provider API to be gone")
    mtv.close()
    since = marks(sandbox)

    with pytest.raises(errors.PreflightError) as caught:
        register_pair(pair_options(kubeconfig))

    assert caught.value.exit_code == 6
    assert "Forklift is not installed on mtv" in caught.value.line()
    assert_no_mutation(sandbox, since)


def test_an_unknown_mtv_namespace_fails_before_anything_is_created(
    sandbox: Sandbox, kubeconfig: Path
) -> None:
    since = marks(sandbox)

    with pytest.raises(errors.PreflightError, match='namespace "nowhere" does not exist on mtv'):
        register_pair(pair_options(kubeconfig, mtv_namespace="nowhere"))

    assert_no_mutation(sandbox, since)


# -- Forklift rejecting the token ----------------------------------------------------------------


def test_a_token_revoked_after_the_proof_is_refused_by_forklift_and_a_rerun_repairs_it(
    sandbox: Sandbox, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prove = orchestrator._prove_token
    source = sandbox["source"].cluster

    def prove_then_revoke(side: orchestrator.Side, options: orchestrator.PairOptions) -> None:
        prove(side, options)
        if side.role == "source":  # someone deletes the token Secret: the token is revoked
            source.store.delete(source.rtype("", "v1", "secrets"), SA_NS, TOKEN_SECRET)

    monkeypatch.setattr(orchestrator, "_prove_token", prove_then_revoke)

    with pytest.raises(errors.ProviderNotReady) as caught:
        register_pair(pair_options(kubeconfig))

    line = caught.value.line()
    assert caught.value.exit_code == 10
    assert "ConnectionAuthFailed" in line
    assert f'"{MTV_NS}/source-credentials"' in line
    assert find(sandbox, "mtv", "secrets", "source-credentials", MTV_NS) is None

    monkeypatch.setattr(orchestrator, "_prove_token", prove)
    result = register_pair(pair_options(kubeconfig))
    assert [p.phase for p in result.providers] == ["Ready", "Ready"]
    assert_registered(sandbox, "source", "source")


# -- drift is repaired and reported --------------------------------------------------------------


def _edit_cluster_role(kubeconfig: Path, sandbox: Sandbox) -> None:
    with_pods_only = {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}
    admin(kubeconfig, "source").patch(CLUSTER_ROLE, manifests.DEFAULT_ROLE_NAME, with_pods_only)


def _delete_token_secret(kubeconfig: Path, sandbox: Sandbox) -> None:
    admin(kubeconfig, "source").delete(SECRET, TOKEN_SECRET, SA_NS)


def _change_secret_url(kubeconfig: Path, sandbox: Sandbox) -> None:
    wrong = base64.b64encode(b"https://127.0.0.1:1").decode()
    admin(kubeconfig, "mtv").patch(SECRET, "source-credentials", {"data": {"url": wrong}}, MTV_NS)


def _change_provider_url(kubeconfig: Path, sandbox: Sandbox) -> None:
    admin(kubeconfig, "mtv").patch(
        PROVIDER, "source", {"spec": {"url": "https://127.0.0.1:1"}}, MTV_NS
    )
    wait_for(
        lambda: provider_phase(sandbox, "source") == "ConnectionFailed",
        what="Forklift to fail the edited Provider",
    )


@pytest.mark.parametrize(
    ("drift", "repair"),
    [
        (_edit_cluster_role, {"ClusterRole live-migration-role updated on source"}),
        (
            _delete_token_secret,
            {
                "Secret mtv-register/mtv-provider-token created on source",
                "Secret openshift-mtv/source-credentials updated on mtv",
            },
        ),
        (_change_secret_url, {"Secret openshift-mtv/source-credentials updated on mtv"}),
        (_change_provider_url, {"Provider openshift-mtv/source updated on mtv"}),
    ],
    ids=["edited-cluster-role", "deleted-token-secret", "secret-url", "provider-url"],
)
def test_drift_is_repaired_and_reported(
    sandbox: Sandbox, kubeconfig: Path, drift: Any, repair: set[str]
) -> None:
    options = pair_options(kubeconfig)
    register_pair(options)
    settle_forklift(sandbox)  # its re-test after the owner reference must not see the drift
    drift(kubeconfig, sandbox)

    repaired = register_pair(options)

    assert repaired.mutated
    assert {str(c) for c in repaired.changes if c.action != "unchanged"} == repair
    assert [p.phase for p in repaired.providers] == ["Ready", "Ready"]
    assert_bootstrapped(sandbox, "source")
    assert_registered(sandbox, "source", "source")
    since = marks(sandbox)
    assert not register_pair(options).mutated
    assert_no_mutation(sandbox, since)


def test_a_hand_made_cluster_role_is_brought_to_the_seed_but_never_claimed(
    sandbox: Sandbox, kubeconfig: Path
) -> None:
    source = admin(kubeconfig, "source")
    source.create(
        CLUSTER_ROLE,
        {
            "metadata": {"name": manifests.DEFAULT_ROLE_NAME, "labels": {"team": "virt"}},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        },
    )

    register_pair(pair_options(kubeconfig))

    role = find(sandbox, "source", "clusterroles", manifests.DEFAULT_ROLE_NAME)
    assert role is not None
    assert role["rules"] == manifests.SEED_CLUSTER_ROLE_RULES
    assert role["metadata"]["labels"] == {"team": "virt"}


# -- retries -------------------------------------------------------------------------------------


def test_transient_errors_are_retried_and_permanent_ones_are_not(
    sandbox: Sandbox, kubeconfig: Path
) -> None:
    faults = sandbox["source"].cluster.faults
    faults.inject("create", "/clusterroles$", status=503, count=2)
    since = marks(sandbox)

    register_pair(pair_options(kubeconfig))

    creates = [
        line for line in mutating_since(sandbox, since)["source"] if line.endswith("/clusterroles")
    ]
    assert len(creates) == 3  # two 503s, then the create that worked

    faults.inject("update", "/clusterroles/", status=403, count=5)
    _edit_cluster_role(kubeconfig, sandbox)
    since = marks(sandbox)
    with pytest.raises(errors.PermissionDenied):
        register_pair(pair_options(kubeconfig))
    updates = [
        line for line in mutating_since(sandbox, since)["source"] if "/clusterroles/" in line
    ]
    assert len(updates) == 1


# -- dry run -------------------------------------------------------------------------------------


def test_dry_run_renders_every_manifest_and_writes_nothing(
    sandbox: Sandbox, kubeconfig: Path
) -> None:
    since = marks(sandbox)

    result = register_pair(pair_options(kubeconfig), dry_run=True)

    assert_no_mutation(sandbox, since)
    kinds: dict[str, list[str]] = {}
    for context, obj in result.manifests:
        kinds.setdefault(context, []).append(obj["kind"])
    remote = ["ClusterRole", "Namespace", "ServiceAccount", "ClusterRoleBinding", "Secret"]
    assert kinds == {
        "source": remote,
        "destination": remote,
        "mtv": ["Secret", "Provider", "Secret", "Provider"],
    }
    provider_secrets = [o for c, o in result.manifests if c == "mtv" and o["kind"] == "Secret"]
    assert {o["data"]["token"] for o in provider_secrets} == {manifests.REDACTED}
    assert not result.providers and not result.mutated
