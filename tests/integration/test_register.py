"""Registering a pair through the library (`orchestrator.register_pair`) on the test's clusters:
both shapes of MTV host, idempotence, slow token controllers, drift repair, preflight failures
that write nothing, and Forklift rejecting a token."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path
from typing import Any

import pytest

from mtv_register import errors, manifests, naming, orchestrator, sides
from mtv_register.kube import CLUSTER_ROLE, PROVIDER, SECRET
from mtv_register.orchestrator import register_pair
from mtv_register.tokens import IssuedToken
from tests.conftest import SandboxFactory
from tests.integration.conftest import (
    Backend,
    admin_client,
    assert_nothing_written,
    decoded,
    forklift_uninstalled,
    mark,
    pair_options,
    shaped_target,
    wait_for,
    writes_since,
)
from tests.target import Target

# The default client alone, but for what the oc backend does its own way (retries, a 401 read
# from oc's stderr); test_oc_backend runs the register flows themselves on oc.

Obj = dict[str, Any]
MTV_NS = "openshift-mtv"
SA_NS = naming.DEFAULT_SERVICE_ACCOUNT_NAMESPACE
TOKEN_SECRET = naming.token_secret_name(naming.DEFAULT_SERVICE_ACCOUNT)


def assert_registered(target: Target, context: str, provider_name: str) -> None:
    """The Provider is Ready and its Secret carries that cluster's URL, root CA and the token of
    the token Secret there (compared, never shown)."""
    host = target.mtv_context
    provider = target.find(host, "providers", provider_name, MTV_NS)
    assert provider is not None
    assert provider["spec"]["url"] == target.url(context)
    assert provider["status"]["phase"] == "Ready"
    assert "Ready" in {c["type"] for c in provider["status"]["conditions"]}
    assert provider["metadata"]["labels"][naming.MANAGED_BY_LABEL] == naming.MANAGED_BY
    secret = target.find(host, "secrets", f"{provider_name}-credentials", MTV_NS)
    assert secret is not None
    assert provider["spec"]["secret"] == {"name": secret["metadata"]["name"], "namespace": MTV_NS}
    assert [ref["uid"] for ref in secret["metadata"]["ownerReferences"]] == [
        provider["metadata"]["uid"]
    ]
    assert secret["metadata"]["labels"]["createdForResourceType"] == "providers"
    assert decoded(secret, "url") == target.url(context)
    assert decoded(secret, "ca.crt") == target.root_ca_pem(context)
    assert decoded(secret, "insecureSkipVerify") == "false"
    token_ns, _, token_name = secret["metadata"]["annotations"][
        naming.TOKEN_SECRET_ANNOTATION
    ].partition("/")
    token_secret = target.find(context, "secrets", token_name, token_ns)
    assert token_secret is not None
    same_token = decoded(secret, "token") == decoded(token_secret, "token") != ""
    assert same_token, "the provider Secret does not carry the cluster's token"


def assert_bootstrapped(target: Target, context: str) -> None:
    """The seed's objects on a registered cluster, and the token Secret not listed in the SA."""
    role = target.find(context, "clusterroles", naming.DEFAULT_ROLE_NAME)
    assert role is not None and role["rules"] == manifests.SEED_CLUSTER_ROLE_RULES
    binding = target.find(context, "clusterrolebindings", naming.DEFAULT_SERVICE_ACCOUNT)
    assert binding is not None
    assert binding["roleRef"]["name"] == naming.DEFAULT_ROLE_NAME
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": naming.DEFAULT_SERVICE_ACCOUNT, "namespace": SA_NS}
    ]
    account = target.find(context, "serviceaccounts", naming.DEFAULT_SERVICE_ACCOUNT, SA_NS)
    assert account is not None and not account.get("secrets")
    (token_secret,) = [
        s
        for s in target.list(context, "secrets", SA_NS)
        if s["type"] == naming.SERVICE_ACCOUNT_TOKEN_TYPE
    ]
    assert token_secret["metadata"]["name"].startswith(TOKEN_SECRET)


# -- the two shapes ------------------------------------------------------------------------------


@pytest.mark.needs_forklift
def test_pair_on_a_separate_mtv_host_gives_two_ready_providers(target: Target) -> None:
    result = register_pair(pair_options(target.kubeconfig))

    assert (result.host, result.namespace) == ("mtv", MTV_NS)
    assert [(p.name, p.role, p.context, p.phase) for p in result.providers] == [
        ("source", "source", "source", "Ready"),
        ("destination", "destination", "destination", "Ready"),
    ]
    assert result.mutated
    for context in ("source", "destination"):
        assert_bootstrapped(target, context)
        assert_registered(target, context, context)
    assert target.find("mtv", "namespaces", SA_NS) is None  # nothing bootstrapped on the host


@pytest.mark.needs_forklift
def test_deleting_a_provider_lets_the_garbage_collector_remove_its_secret(target: Target) -> None:
    """The provider Secret is owned by its Provider, so the cluster's garbage collector (the
    real kube-controller-manager's on the real clusters) removes it with the Provider."""
    register_pair(pair_options(target.kubeconfig))
    assert target.find("mtv", "secrets", "source-credentials", MTV_NS) is not None
    mtv = admin_client(target.kubeconfig, "mtv")
    try:
        assert mtv.delete(PROVIDER, "source", MTV_NS)
        wait_for(
            lambda: target.find("mtv", "secrets", "source-credentials", MTV_NS) is None,
            timeout=60,
            what="the garbage collector to remove the provider Secret",
        )
    finally:
        mtv.close()
    # The other Provider's Secret, owned by the other Provider, stays.
    assert target.find("mtv", "secrets", "destination-credentials", MTV_NS) is not None


@pytest.mark.sandbox_only("MTV installed on the destination: not the shape of these clusters")
@pytest.mark.needs_forklift
def test_pair_with_mtv_on_the_destination_uses_its_host_provider(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    shaped = shaped_target(make_sandbox, tmp_path, mtv_on="destination")
    since = mark(shaped)

    result = register_pair(pair_options(shaped.kubeconfig, host=None))

    assert result.host == "destination"
    assert [(p.name, p.role, p.phase) for p in result.providers] == [
        ("source", "source", "Ready"),
        ("host", "destination", "Ready"),
    ]
    assert_bootstrapped(shaped, "source")
    assert_registered(shaped, "source", "source")
    # The destination only receives the source's Provider and Secret: no credentials of its own.
    assert shaped.find("destination", "namespaces", SA_NS) is None
    assert shaped.find("destination", "clusterroles", naming.DEFAULT_ROLE_NAME) is None
    written = writes_since(shaped, since)["destination"]
    assert written and all(f"/namespaces/{MTV_NS}/" in line for line in written)
    host = shaped.find("destination", "providers", "host", MTV_NS)
    assert host is not None and not host["spec"].get("url")


# -- idempotence ---------------------------------------------------------------------------------


def _second_run_writes_nothing(target: Target, host: str | None) -> None:
    options = pair_options(target.kubeconfig, host=host)
    first = register_pair(options)
    since = mark(target)

    again = register_pair(options)

    assert_nothing_written(target, since)
    assert not again.mutated
    assert again.changes and {c.action for c in again.changes} == {"unchanged"}
    assert [(p.name, p.phase) for p in again.providers] == [
        (p.name, "Ready") for p in first.providers
    ]


@pytest.mark.needs_forklift
def test_second_run_makes_no_mutating_request_and_reports_the_registration(target: Target) -> None:
    _second_run_writes_nothing(target, "mtv")


@pytest.mark.sandbox_only("MTV installed on the destination: not the shape of these clusters")
@pytest.mark.needs_forklift
def test_second_run_makes_no_mutating_request_with_mtv_on_the_destination(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    _second_run_writes_nothing(shaped_target(make_sandbox, tmp_path, mtv_on="destination"), None)


# -- waiting for the token -----------------------------------------------------------------------

SLOW_TOKENS = "a token controller that fills token Secrets 3 s late (the sandbox's token_delay)"


@pytest.mark.sandbox_only(SLOW_TOKENS)
@pytest.mark.needs_forklift
def test_a_slow_token_controller_still_succeeds(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    slow = shaped_target(make_sandbox, tmp_path, mtv_on="separate", token_delay=3)
    started = time.monotonic()

    result = register_pair(pair_options(slow.kubeconfig))

    assert time.monotonic() - started >= 3
    assert [p.phase for p in result.providers] == ["Ready", "Ready"]
    for context in ("source", "destination"):
        assert_registered(slow, context, context)


@pytest.mark.sandbox_only(SLOW_TOKENS + ", and the audit log to count the reads of Secrets")
@pytest.mark.needs_forklift
@pytest.mark.backends(
    "kubernetes",
    reason="the oc backend polls (a `kubectl get` every 0.25 s) instead of watching: "
    "openshift-client hands over a command's output only when it ends",
)
def test_a_slow_token_controller_is_watched_not_polled(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    slow = shaped_target(make_sandbox, tmp_path, mtv_on="separate", token_delay=3)

    result = register_pair(pair_options(slow.kubeconfig))

    assert [p.phase for p in result.providers] == ["Ready", "Ready"]
    for context in ("source", "destination"):
        reads = [
            e
            for e in slow.sandbox[context].cluster.audit.events()
            if e["verb"] in ("get", "list", "watch")
            and (e.get("objectRef") or {}).get("resource") == "secrets"
        ]
        # A watch, not a poll: a handful of requests for three seconds of waiting.
        assert any(e["verb"] == "watch" for e in reads)
        assert len(reads) < 10


# -- preflight failures write nothing ------------------------------------------------------------


def test_forklift_absent_from_the_host_fails_before_anything_is_created(target: Target) -> None:
    with forklift_uninstalled(target):
        since = mark(target)

        with pytest.raises(errors.PreflightError) as caught:
            register_pair(pair_options(target.kubeconfig))

        assert caught.value.exit_code == 6
        assert "Forklift is not installed on mtv" in caught.value.line()
        assert_nothing_written(target, since)


def test_an_unknown_mtv_namespace_fails_before_anything_is_created(target: Target) -> None:
    since = mark(target)

    with pytest.raises(errors.PreflightError, match='namespace "nowhere" does not exist on mtv'):
        register_pair(pair_options(target.kubeconfig, mtv_namespace="nowhere"))

    assert_nothing_written(target, since)


# -- Forklift rejecting the token ----------------------------------------------------------------


@pytest.mark.needs_forklift
def test_a_token_revoked_after_the_proof_fails_forklifts_test_and_a_rerun_repairs_it(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forklift's webhook lets the Secret in (discovery wraps the 401, so its test never says
    401); the Provider's test then fails with ConnectionTestFailed, never ConnectionAuthFailed,
    and the tool finds the cause itself: the token is refused (exit 8)."""
    prove = sides.prove_token
    source = admin_client(target.kubeconfig, "source")

    def prove_then_revoke(
        side: sides.Side,
        endpoint: sides.Endpoint,
        token: IssuedToken,
        options: orchestrator.PairOptions,
    ) -> None:
        prove(side, endpoint, token, options)
        if side.role == "source":  # someone deletes the token Secret: the token is revoked
            assert source.delete(SECRET, TOKEN_SECRET, SA_NS)
            # (a real API server accepts it for up to 10 s more, from its token cache)
            assert target.refuses("source", token.token)

    monkeypatch.setattr(sides, "prove_token", prove_then_revoke)

    with pytest.raises(errors.AuthenticationFailed) as caught:
        register_pair(pair_options(target.kubeconfig))
    source.close()

    line = caught.value.line()
    assert caught.value.exit_code == 8
    assert f'Provider "{MTV_NS}/source": ' in line
    assert "refuses the Provider's token (401 Unauthorized)" in line
    assert target.find("mtv", "secrets", "source-credentials", MTV_NS) is not None
    provider = target.find("mtv", "providers", "source", MTV_NS)
    assert provider is not None
    found = {c["type"]: c for c in provider["status"]["conditions"]}
    assert "ConnectionAuthFailed" not in found
    assert found["ConnectionTestFailed"]["message"].endswith("Unauthorized")

    monkeypatch.setattr(sides, "prove_token", prove)
    result = register_pair(pair_options(target.kubeconfig))
    assert [p.phase for p in result.providers] == ["Ready", "Ready"]
    assert_registered(target, "source", "source")


# -- drift is repaired and reported --------------------------------------------------------------


def _provider_token(target: Target, name: str) -> str:
    secret = target.find(target.mtv_context, "secrets", f"{name}-credentials", MTV_NS)
    assert secret is not None
    return decoded(secret, "token")


def _edit_cluster_role(target: Target) -> None:
    with_pods_only = {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}
    admin_client(target.kubeconfig, "source").patch(
        CLUSTER_ROLE, naming.DEFAULT_ROLE_NAME, with_pods_only
    )


def _delete_token_secret(target: Target) -> None:
    admin_client(target.kubeconfig, "source").delete(SECRET, TOKEN_SECRET, SA_NS)


def _change_secret_url(target: Target) -> None:
    wrong = base64.b64encode(b"https://127.0.0.1:1").decode()
    admin_client(target.kubeconfig, "mtv").patch(
        SECRET, "source-credentials", {"data": {"url": wrong}}, MTV_NS
    )


def _change_provider_url(target: Target) -> None:
    admin_client(target.kubeconfig, "mtv").patch(
        PROVIDER, "source", {"spec": {"url": "https://127.0.0.1:1"}}, MTV_NS
    )
    wait_for(
        lambda: target.provider_phase("source") == "ConnectionFailed",
        what="Forklift to fail the edited Provider",
    )


@pytest.mark.needs_forklift
@pytest.mark.parametrize(
    ("drift", "repair"),
    [
        (_edit_cluster_role, {"ClusterRole live-migration-role updated on source"}),
        (
            _delete_token_secret,
            {
                # A new name: a real token controller would sign the same name's token again,
                # bringing back the token whose Secret was deleted.
                "Secret mtv-register/mtv-provider-token-* created on source",
                "Secret openshift-mtv/source-credentials updated on mtv",
            },
        ),
        (_change_secret_url, {"Secret openshift-mtv/source-credentials updated on mtv"}),
        (_change_provider_url, {"Provider openshift-mtv/source updated on mtv"}),
    ],
    ids=["edited-cluster-role", "deleted-token-secret", "secret-url", "provider-url"],
)
def test_drift_is_repaired_and_reported(target: Target, drift: Any, repair: set[str]) -> None:
    options = pair_options(target.kubeconfig)
    register_pair(options)
    target.settle()  # its re-test after the owner reference must not see the drift
    before = _provider_token(target, "source")
    drift(target)

    repaired = register_pair(options)

    assert repaired.mutated
    # On Forklift 2.10 a changed Secret also changes the Provider's generation (said so).
    up_to_2_10 = {
        str(c) for c in repaired.changes if c.action.startswith("generation changed: Forklift 2.10")
    }
    changed = {
        re.sub(r"(mtv-provider-token)-[a-z0-9]{5} ", r"\1-* ", str(c))
        for c in repaired.changes
        if c.action != "unchanged"
    }
    assert changed - up_to_2_10 == repair
    if drift is _delete_token_secret:  # the deleted Secret's token stays revoked
        assert _provider_token(target, "source") != before
        assert target.refuses("source", before)
    assert [p.phase for p in repaired.providers] == ["Ready", "Ready"]
    assert_bootstrapped(target, "source")
    assert_registered(target, "source", "source")
    since = mark(target)
    assert not register_pair(options).mutated
    assert_nothing_written(target, since)


@pytest.mark.needs_forklift
def test_a_hand_made_cluster_role_is_brought_to_the_seed_but_never_claimed(
    target: Target,
) -> None:
    source = admin_client(target.kubeconfig, "source")
    source.create(
        CLUSTER_ROLE,
        {
            "metadata": {"name": naming.DEFAULT_ROLE_NAME, "labels": {"team": "virt"}},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        },
    )
    source.close()

    register_pair(pair_options(target.kubeconfig))

    role = target.find("source", "clusterroles", naming.DEFAULT_ROLE_NAME)
    assert role is not None
    assert role["rules"] == manifests.SEED_CLUSTER_ROLE_RULES
    assert role["metadata"]["labels"] == {"team": "virt"}


def _uris(target: Target, since: Any, context: str) -> list[str]:
    """The mutating requests made on `context` since `since`, "verb path" without the query
    (kubectl adds one: `?fieldManager=kubectl-create...`)."""
    return [line.partition("?")[0] for line in writes_since(target, since).get(context, [])]


# -- retries -------------------------------------------------------------------------------------


@pytest.mark.sandbox_only("injects 503 and 403 faults and counts the requests in the audit log")
@pytest.mark.needs_forklift
@pytest.mark.both_backends  # see tests/integration/conftest.py: backends_of
def test_transient_errors_are_retried_and_permanent_ones_are_not(target: Target) -> None:
    faults = target.sandbox["source"].cluster.faults
    faults.inject("create", "/clusterroles$", status=503, count=2)
    since = mark(target)

    register_pair(pair_options(target.kubeconfig))

    creates = [uri for uri in _uris(target, since, "source") if uri.endswith("/clusterroles")]
    assert len(creates) == 3  # two 503s, then the create that worked

    faults.inject("update", "/clusterroles/", status=403, count=5)
    _edit_cluster_role(target)
    since = mark(target)
    with pytest.raises(errors.PermissionDenied):
        register_pair(pair_options(target.kubeconfig))
    updates = [uri for uri in _uris(target, since, "source") if "/clusterroles/" in uri]
    assert len(updates) == 1


@pytest.mark.sandbox_only("makes the source refuse the first two proofs of the new token (401)")
@pytest.mark.needs_forklift
@pytest.mark.both_backends  # see tests/integration/conftest.py: backends_of
def test_a_token_just_issued_that_is_refused_for_a_moment_is_proven_again(
    target: Target, backend: Backend
) -> None:
    """kube-apiserver may refuse a legacy token for a moment after its account was made again
    under the same name (its informer still holds the old account's uid): the proof tries
    again for a few seconds, where it used to blame the URL at once."""
    faults = target.sandbox["source"].cluster.faults
    # The proof is the only list of namespaces: the admin's steps read objects by name.
    refused = faults.inject(
        "list", "^/api/v1/namespaces$", status=401, count=2, agent=backend.agent
    )

    result = register_pair(pair_options(target.kubeconfig))

    assert refused.hits == 2
    assert [p.phase for p in result.providers] == ["Ready", "Ready"]


# -- dry run -------------------------------------------------------------------------------------


def test_dry_run_renders_every_manifest_and_writes_nothing(target: Target) -> None:
    since = mark(target)

    result = register_pair(pair_options(target.kubeconfig), dry_run=True)

    assert_nothing_written(target, since)
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
    assert {o["stringData"]["token"] for o in provider_secrets} == {manifests.REDACTED}
    assert not [o for o in provider_secrets if "data" in o]
    assert not result.providers and not result.mutated
