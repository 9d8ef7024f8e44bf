"""End to end on real Kubernetes (two kind clusters, `nox -s e2e_kind`): the real token
controller, real RBAC, real authentication, through the public CLI only.

kind has no Forklift controller, so nothing ever tests a Provider: `register` and `rotate` do all
their work and then wait for a verdict that never comes, ending in their timeout (exit 9), and
what needs a Ready Provider is skipped with the reason "Forklift controller not present". The
tests run in this file's order: register, look, register again, rotate, unregister.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from mtv_register import manifests, naming
from tests.e2e.conftest import (
    KUBECONFIG_VARIABLE,
    MTV_NAMESPACE,
    Clusters,
    core,
    custom,
    decoded,
    may,
    rbac,
    run_cli,
    token_client,
    who_am_i,
)

pytestmark = [
    pytest.mark.kind,
    pytest.mark.skipif(
        not os.environ.get(KUBECONFIG_VARIABLE),
        reason=f"{KUBECONFIG_VARIABLE} is not set: these tests need the two kind clusters that "
        "`nox -s e2e_kind` creates",
    ),
]

NO_FORKLIFT = "Forklift controller not present"
WAIT_TIMEOUT = 9
PERMISSION_DENIED = 7
SA_NAMESPACE = naming.DEFAULT_SERVICE_ACCOUNT_NAMESPACE
SERVICE_ACCOUNT = naming.DEFAULT_SERVICE_ACCOUNT
TOKEN_SECRET = naming.token_secret_name(SERVICE_ACCOUNT)
ROLE = naming.DEFAULT_ROLE_NAME
PROVIDERS = {"source": "e2e-source", "destination": "e2e-destination"}
MANAGED = f"{naming.MANAGED_BY_LABEL}={naming.MANAGED_BY}"
# A progress line: "<Kind> [<namespace>/]<name> <action> on <context>".
CHANGE = re.compile(r"^\s*([A-Z]\w+) (\S+) (.+?) on (.+)$")


def cluster_args(clusters: Clusters) -> list[str]:
    """The kubeconfig and the three contexts of the run."""
    return [
        "--kubeconfig",
        str(clusters.kubeconfig),
        "--source",
        clusters.source,
        "--destination",
        clusters.destination,
        "--host",
        clusters.host,
    ]


def pair_args(clusters: Clusters) -> list[str]:
    return [
        *cluster_args(clusters),
        "--source-name",
        PROVIDERS["source"],
        "--destination-name",
        PROVIDERS["destination"],
    ]


def register_args(clusters: Clusters, *extra: str) -> list[str]:
    return [
        "register",
        *pair_args(clusters),
        "--source-url",
        clusters.source_url,
        "--destination-url",
        clusters.destination_url,
        "--yes",
        *extra,
    ]


def fingerprint(token: str) -> str:
    """Compare tokens by this, so no assertion message can ever show one."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def cluster_token(admin: dict[str, client.ApiClient], context: str, name: str) -> str:
    secret = core(admin[context]).read_namespaced_secret(name, SA_NAMESPACE)
    return decoded(secret, "token")


def provider_secret(clusters: Clusters, admin: dict[str, client.ApiClient], role: str) -> Any:
    return core(admin[clusters.host]).read_namespaced_secret(
        f"{PROVIDERS[role]}-credentials", MTV_NAMESPACE
    )


def provider(clusters: Clusters, admin: dict[str, client.ApiClient], role: str) -> dict[str, Any]:
    found: dict[str, Any] = custom(admin[clusters.host]).get_namespaced_custom_object(
        naming.FORKLIFT_GROUP,
        naming.FORKLIFT_VERSION,
        MTV_NAMESPACE,
        naming.PROVIDER_PLURAL,
        PROVIDERS[role],
    )
    return found


def contexts(clusters: Clusters) -> dict[str, str]:
    return {"source": clusters.source, "destination": clusters.destination}


def assert_no_token_in(text: str, tokens: list[str]) -> None:
    leaked = [fingerprint(t) for t in tokens if t and t in text]
    assert not leaked, f"tokens {leaked} (fingerprints) appeared in the command's output"


def changes(stderr: str) -> list[tuple[str, ...]]:
    found = []
    for line in stderr.splitlines():
        match = CHANGE.match(line)
        if match:
            found.append(match.groups())
    return found


@pytest.fixture(scope="module")
def registered(clusters: Clusters, admin: dict[str, client.ApiClient]) -> Any:
    """The first `register` of the pair; at the end, whatever the tests left is unregistered."""
    result = run_cli(*register_args(clusters, "--timeout", "60s"))
    yield result
    run_cli("unregister", *pair_args(clusters), "--yes")


def test_register_bootstraps_both_clusters_then_waits_for_forklift(
    registered: Any, clusters: Clusters, admin: dict[str, client.ApiClient], forklift_present: bool
) -> None:
    tokens = [cluster_token(admin, c, TOKEN_SECRET) for c in contexts(clusters).values()]
    assert_no_token_in(registered.stdout + registered.stderr, tokens)
    assert "Traceback" not in registered.stderr
    if forklift_present:
        assert registered.returncode == 0, registered.stderr
        return
    assert registered.returncode == WAIT_TIMEOUT, registered.stderr
    error = registered.stderr.strip().splitlines()[-1]
    assert error.startswith("error: Provider"), error
    assert "was not Ready within" in error and "forklift-controller" in error, error
    created = {(kind, name, context) for kind, name, action, context in changes(registered.stderr)}
    for context in contexts(clusters).values():
        assert ("ClusterRole", ROLE, context) in created
        assert ("Secret", f"{SA_NAMESPACE}/{TOKEN_SECRET}", context) in created


def test_each_cluster_holds_the_seed_objects_and_a_token_the_real_controller_filled(
    registered: Any, clusters: Clusters, admin: dict[str, client.ApiClient]
) -> None:
    for context in contexts(clusters).values():
        api = admin[context]
        roles, objects = rbac(api), core(api)
        role = roles.read_cluster_role(ROLE)
        rules = api.sanitize_for_serialization(role.rules)
        assert rules == manifests.SEED_CLUSTER_ROLE_RULES, f"{context}: not the seed's rules"
        binding = roles.read_cluster_role_binding(SERVICE_ACCOUNT)
        assert binding.role_ref.name == ROLE
        assert [(s.kind, s.namespace, s.name) for s in binding.subjects] == [
            ("ServiceAccount", SA_NAMESPACE, SERVICE_ACCOUNT)
        ]
        account = objects.read_namespaced_service_account(SERVICE_ACCOUNT, SA_NAMESPACE)
        assert not [s.name for s in account.secrets or []], "the token Secret is never listed"
        secret = objects.read_namespaced_secret(TOKEN_SECRET, SA_NAMESPACE)
        assert secret.type == naming.SERVICE_ACCOUNT_TOKEN_TYPE
        assert secret.metadata.annotations[naming.SERVICE_ACCOUNT_NAME_ANNOTATION] == (
            SERVICE_ACCOUNT
        )
        assert decoded(secret, "token"), f"{context}: the token controller left the token empty"
        for obj in (role, binding, account, secret):
            assert obj.metadata.labels.get(naming.MANAGED_BY_LABEL) == naming.MANAGED_BY


def test_the_host_holds_each_provider_and_its_secret_owned_by_it(
    registered: Any, clusters: Clusters, admin: dict[str, client.ApiClient]
) -> None:
    for role, context in contexts(clusters).items():
        url = clusters.url(context)
        found = provider(clusters, admin, role)
        assert found["spec"]["type"] == "openshift"
        assert found["spec"]["url"] == url
        assert found["spec"]["secret"] == {
            "name": f"{PROVIDERS[role]}-credentials",
            "namespace": MTV_NAMESPACE,
        }
        secret = provider_secret(clusters, admin, role)
        assert [(o.kind, o.uid) for o in secret.metadata.owner_references or []] == [
            ("Provider", found["metadata"]["uid"])
        ]
        for key, value in naming.PROVIDER_SECRET_LABELS.items():
            assert secret.metadata.labels.get(key) == value
        assert decoded(secret, "url") == url
        assert decoded(secret, "insecureSkipVerify") == "false"
        root_ca = core(admin[context]).read_namespaced_config_map("kube-root-ca.crt", "default")
        assert decoded(secret, "ca.crt") == root_ca.data["ca.crt"]
        same = fingerprint(decoded(secret, "token")) == fingerprint(
            cluster_token(admin, context, TOKEN_SECRET)
        )
        assert same, f"the provider Secret of {role} does not hold {context}'s token"


def test_the_registered_token_authenticates_and_passes_forklifts_connection_test_lists(
    registered: Any, clusters: Clusters, admin: dict[str, client.ApiClient]
) -> None:
    """What Forklift does with the provider Secret, done from here with its URL, CA and token."""
    for role in contexts(clusters):
        secret = provider_secret(clusters, admin, role)
        as_provider = token_client(
            decoded(secret, "url"), decoded(secret, "token"), decoded(secret, "ca.crt")
        )
        try:
            api = as_provider.api
            assert who_am_i(api) == f"system:serviceaccount:{SA_NAMESPACE}:{SERVICE_ACCOUNT}"
            core(api).list_namespace(limit=1)
            client.StorageV1Api(api).list_storage_class(limit=1)
            for group, version, plural in (
                ("k8s.cni.cncf.io", "v1", "network-attachment-definitions"),
                ("kubevirt.io", "v1", "virtualmachines"),
                ("instancetype.kubevirt.io", "v1beta1", "virtualmachineinstancetypes"),
                ("instancetype.kubevirt.io", "v1beta1", "virtualmachineclusterinstancetypes"),
            ):
                custom(api).list_cluster_custom_object(group, version, plural, limit=1)
            assert may(api, "list", "virtualmachines", "kubevirt.io")
            assert not may(api, "create", "clusterrolebindings", "rbac.authorization.k8s.io")
            assert not may(api, "create", "pods")
        finally:
            as_provider.close()


def test_provider_becomes_ready(
    registered: Any, clusters: Clusters, admin: dict[str, client.ApiClient], forklift_present: bool
) -> None:
    if not forklift_present:
        pytest.skip(NO_FORKLIFT)
    for role in contexts(clusters):
        assert (provider(clusters, admin, role).get("status") or {}).get("phase") == "Ready"


def test_a_second_register_changes_nothing(
    registered: Any, clusters: Clusters, forklift_present: bool
) -> None:
    again = run_cli(*register_args(clusters, "--timeout", "20s"))
    assert again.returncode == (0 if forklift_present else WAIT_TIMEOUT), again.stderr
    seen = changes(again.stderr)
    assert seen, again.stderr
    touched = [" ".join(c) for c in seen if c[2] != "unchanged"]
    assert not touched, touched


def test_rotate_runs_its_remote_half_with_the_providers_own_token_then_rolls_back(
    registered: Any, clusters: Clusters, admin: dict[str, client.ApiClient], forklift_present: bool
) -> None:
    """Without Forklift no re-test confirms the new token, so rotate undoes itself: the new token
    Secret was created as the Provider's service account and filled by the real token
    controller, the provider Secret switched and switched back, the new Secret deleted."""
    if forklift_present:
        pytest.skip("Forklift controller present: rotation completes instead of rolling back")
    before = fingerprint(decoded(provider_secret(clusters, admin, "source"), "token"))
    result = run_cli(
        "rotate",
        "--kubeconfig",
        str(clusters.kubeconfig),
        "--host",
        clusters.host,
        "--provider",
        PROVIDERS["source"],
        "--timeout",
        "20s",
        "--yes",
    )
    assert result.returncode == WAIT_TIMEOUT, result.stdout + result.stderr
    assert "rolled back" in result.stdout, result.stdout
    actions = [c[2] for c in changes(result.stderr)]
    assert "created" in actions, result.stderr
    assert "switched to the new token" in actions, result.stderr
    assert "switched back to the old token" in actions, result.stderr
    assert "deleted" in actions, result.stderr
    after = fingerprint(decoded(provider_secret(clusters, admin, "source"), "token"))
    assert after == before, "the provider Secret kept the new token after the rollback"
    left = core(admin[clusters.source]).list_namespaced_secret(SA_NAMESPACE, label_selector=MANAGED)
    assert [s.metadata.name for s in left.items] == [TOKEN_SECRET]


def test_rotation_completes_and_revokes_the_old_token(
    registered: Any, clusters: Clusters, admin: dict[str, client.ApiClient], forklift_present: bool
) -> None:
    if not forklift_present:
        pytest.skip(NO_FORKLIFT)
    old = provider_secret(clusters, admin, "source")
    result = run_cli(
        "rotate",
        "--kubeconfig",
        str(clusters.kubeconfig),
        "--host",
        clusters.host,
        "--provider",
        PROVIDERS["source"],
        "--yes",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Provider {PROVIDERS['source']} rotated" in result.stdout, result.stdout
    new = provider_secret(clusters, admin, "source")
    assert fingerprint(decoded(new, "token")) != fingerprint(decoded(old, "token"))
    as_old = token_client(decoded(old, "url"), decoded(old, "token"), decoded(old, "ca.crt"))
    try:
        assert _refused_within(as_old.api, 30), "the old token still works after rotation"
    finally:
        as_old.close()


def test_a_cluster_role_without_what_forklift_lists_is_refused_by_real_rbac(
    registered: Any, clusters: Clusters, admin: dict[str, client.ApiClient]
) -> None:
    """--cluster-role binds an existing role; one that cannot list namespaces is caught when
    the tool proves the new token, before anything is written on the host."""
    narrow = "mtv-e2e-narrow"
    role = client.V1ClusterRole(
        metadata=client.V1ObjectMeta(name=narrow),
        rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["get"])],
    )
    for context in contexts(clusters).values():
        try:
            rbac(admin[context]).create_cluster_role(role)
        except ApiException as error:
            if error.status != 409:  # left by an interrupted run on kept clusters
                raise
    identity = ["--service-account", narrow, "--sa-namespace", narrow]
    names = ["--source-name", f"{narrow}-source", "--destination-name", f"{narrow}-destination"]
    try:
        result = run_cli(
            "register",
            *cluster_args(clusters),
            "--source-url",
            clusters.source_url,
            "--destination-url",
            clusters.destination_url,
            "--cluster-role",
            narrow,
            *identity,
            *names,
            "--timeout",
            "60s",
            "--yes",
        )
        assert result.returncode == PERMISSION_DENIED, result.stderr
        assert "cannot list namespaces" in result.stderr, result.stderr
        assert "Forklift's connection test" in result.stderr, result.stderr
        on_host = custom(admin[clusters.host]).list_namespaced_custom_object(
            naming.FORKLIFT_GROUP,
            naming.FORKLIFT_VERSION,
            MTV_NAMESPACE,
            naming.PROVIDER_PLURAL,
        )
        assert not [p for p in on_host["items"] if p["metadata"]["name"].startswith(narrow)]
    finally:
        run_cli(
            "unregister",
            *cluster_args(clusters),
            *identity,
            *names,
            "--role-name",
            narrow,
            "--yes",
        )
        for context in contexts(clusters).values():
            rbac(admin[context]).delete_cluster_role(narrow)


def test_unregister_leaves_nothing_and_the_token_stops_working(
    registered: Any, clusters: Clusters, admin: dict[str, client.ApiClient]
) -> None:
    secrets = {role: provider_secret(clusters, admin, role) for role in contexts(clusters)}
    result = run_cli("unregister", *pair_args(clusters), "--yes")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("pair unregistered")

    objects = custom(admin[clusters.host])
    left = objects.list_namespaced_custom_object(
        naming.FORKLIFT_GROUP,
        naming.FORKLIFT_VERSION,
        MTV_NAMESPACE,
        naming.PROVIDER_PLURAL,
        label_selector=MANAGED,
    )
    assert not left["items"]
    host_secrets = core(admin[clusters.host]).list_namespaced_secret(
        MTV_NAMESPACE, label_selector=MANAGED
    )
    assert not host_secrets.items
    for context in contexts(clusters).values():
        roles, objects = rbac(admin[context]), core(admin[context])
        assert SERVICE_ACCOUNT not in [
            b.metadata.name for b in roles.list_cluster_role_binding().items
        ]
        assert ROLE not in [r.metadata.name for r in roles.list_cluster_role().items]
        assert not objects.list_secret_for_all_namespaces(label_selector=MANAGED).items
        namespace = [n for n in objects.list_namespace().items if n.metadata.name == SA_NAMESPACE]
        assert not namespace or namespace[0].metadata.deletion_timestamp is not None

    for role, secret in secrets.items():
        as_provider = token_client(
            decoded(secret, "url"), decoded(secret, "token"), decoded(secret, "ca.crt")
        )
        try:
            assert _refused_within(as_provider.api, 30), f"{role}'s old token still works"
        finally:
            as_provider.close()


def _refused_within(api: client.ApiClient, seconds: float) -> bool:
    """The API server caches token lookups briefly: poll until it answers 401."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            who_am_i(api)
        except ApiException as error:
            if error.status == 401:
                return True
            raise
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
