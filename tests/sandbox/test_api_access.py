"""Who may do what on a sandbox cluster, as on a real one: bearer-token authentication, RBAC
(with its escalation check), the self-reviews, the token controller and TokenRequest.

Tokens are only ever passed to the client; no test prints or compares one in the open.
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import pytest
from kubernetes.client import ApiClient, ApiException

from mtv_register.sandbox import Sandbox, SandboxCluster
from tests.conftest import SandboxFactory
from tests.sandbox.helpers import refused, wait_for

T = TypeVar("T")
NS = "default"
RBAC = "rbac.authorization.k8s.io"
TOKEN_TYPE = "kubernetes.io/service-account-token"
SA_NAME = "kubernetes.io/service-account.name"


def connect(cluster: SandboxCluster, token: str | None) -> ApiClient:
    """A client that presents `token` (or no credentials at all) to `cluster`."""
    configuration = kubernetes.client.Configuration(
        host=cluster.url,
        ca_cert_data=cluster.serving_ca_pem,
        api_key={"authorization": f"Bearer {token}"} if token else {},
    )
    return ApiClient(configuration)


def whoami(api: ApiClient) -> str:
    review = kubernetes.client.AuthenticationV1Api(api).create_self_subject_review({})
    return review.status.user_info.username


def answers_401(api: ApiClient) -> bool:
    try:
        whoami(api)
    except ApiException as err:
        return err.status == 401
    return False


@pytest.fixture
def admin(kubeconfig: Path) -> ApiClient:
    return kubernetes.config.new_client_from_config(str(kubeconfig), context="source")


@pytest.fixture
def core(admin: ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(admin)


@pytest.fixture
def rbac(admin: ApiClient) -> kubernetes.client.RbacAuthorizationV1Api:
    return kubernetes.client.RbacAuthorizationV1Api(admin)


def grant(
    rbac: kubernetes.client.RbacAuthorizationV1Api,
    name: str,
    rules: list[dict[str, Any]],
    subject: dict[str, str],
    *,
    namespace: str | None = None,
) -> None:
    """A ClusterRole with `rules`, bound cluster-wide or, with `namespace`, in it only."""
    rbac.create_cluster_role({"metadata": {"name": name}, "rules": rules})
    body = {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
        "subjects": [subject],
    }
    if namespace is None:
        rbac.create_cluster_role_binding(body)
    else:
        rbac.create_namespaced_role_binding(namespace, body)


def account(name: str, namespace: str = NS) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def requested_token(core: kubernetes.client.CoreV1Api, name: str, seconds: int = 3600) -> str:
    core.create_namespaced_service_account(NS, {"metadata": {"name": name}})
    answer = core.create_namespaced_service_account_token(
        name, NS, {"spec": {"expirationSeconds": seconds}}
    )
    return answer.status.token


def token_secret(name: str, account_name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "annotations": {SA_NAME: account_name}}, "type": TOKEN_TYPE}


def filled(core: kubernetes.client.CoreV1Api, name: str) -> dict[str, str] | None:
    data = core.read_namespaced_secret(name, NS).data or {}
    return data if "token" in data else None


# -- authentication ------------------------------------------------------------------------


def test_a_token_the_cluster_never_issued_is_401_unauthorized(sandbox: Sandbox) -> None:
    api = connect(sandbox["source"], "not-a-token")

    code, body = refused(kubernetes.client.CoreV1Api(api).list_namespace)

    assert code == 401
    assert body["reason"] == "Unauthorized"
    assert body["message"] == "Unauthorized"


def test_another_clusters_admin_token_is_401_here(sandbox: Sandbox) -> None:
    api = connect(sandbox["source"], sandbox["destination"].admin_token)

    assert refused(kubernetes.client.CoreV1Api(api).list_namespace)[0] == 401


def test_no_credentials_is_the_anonymous_user_with_only_public_info(sandbox: Sandbox) -> None:
    api = connect(sandbox["source"], None)

    code, body = refused(kubernetes.client.CoreV1Api(api).list_namespace)
    version = kubernetes.client.VersionApi(api).get_code()

    assert code == 403
    assert body["message"] == (
        'namespaces is forbidden: User "system:anonymous" cannot list resource "namespaces" '
        'in API group "" at the cluster scope'
    )
    assert version.minor == "32"


# -- RBAC ----------------------------------------------------------------------------------


def test_a_cluster_role_binding_grants_exactly_the_roles_rules(
    sandbox: Sandbox, core, rbac
) -> None:
    token = requested_token(core, "lister")
    grant(
        rbac,
        "ns-lister",
        [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]}],
        account("lister"),
    )
    limited = kubernetes.client.CoreV1Api(connect(sandbox["source"], token))

    names = {ns.metadata.name for ns in limited.list_namespace().items}
    nodes_code, nodes = refused(limited.list_node)
    secrets_code, secrets = refused(limited.list_namespaced_secret, NS)
    get_code, get = refused(limited.read_namespace, NS)

    assert {"default", "kube-system"} <= names
    assert (nodes_code, secrets_code, get_code) == (403, 403, 403)
    user = 'User "system:serviceaccount:default:lister"'
    assert nodes["message"] == (
        f'nodes is forbidden: {user} cannot list resource "nodes" in API group "" '
        "at the cluster scope"
    )
    assert secrets["message"] == (
        f'secrets is forbidden: {user} cannot list resource "secrets" in API group "" '
        'in the namespace "default"'
    )
    # The namespace of /api/v1/namespaces/default is "default", so the message says so.
    assert get["message"] == (
        f'namespaces "default" is forbidden: {user} cannot get resource "namespaces" '
        'in API group "" in the namespace "default"'
    )
    assert secrets["reason"] == "Forbidden"
    assert secrets["details"] == {"kind": "secrets"}


def test_a_role_binding_grants_only_in_its_own_namespace(sandbox: Sandbox, core, rbac) -> None:
    token = requested_token(core, "local")
    grant(
        rbac,
        "secret-reader",
        [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
        account("local"),
        namespace=NS,
    )
    limited = kubernetes.client.CoreV1Api(connect(sandbox["source"], token))

    here = limited.list_namespaced_secret(NS)
    code, body = refused(limited.list_namespaced_secret, "kube-system")

    assert here.kind == "SecretList"
    assert code == 403
    assert body["message"].endswith(
        'cannot list resource "secrets" in API group "" in the namespace "kube-system"'
    )


def test_a_static_user_is_authorised_by_its_name(sandbox: Sandbox, rbac) -> None:
    token = sandbox["source"].cluster.add_user("alice")
    grant(
        rbac,
        "node-reader",
        [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}],
        {"kind": "User", "name": "alice", "apiGroup": RBAC},
    )
    alice = kubernetes.client.CoreV1Api(connect(sandbox["source"], token))

    nodes = alice.list_node().items
    code, body = refused(alice.list_namespace)

    assert {n.metadata.name for n in nodes} == {"worker-0", "worker-1"}
    assert code == 403
    assert body["message"] == (
        'namespaces is forbidden: User "alice" cannot list resource "namespaces" in API group "" '
        "at the cluster scope"
    )


def test_creating_a_cluster_role_with_permissions_not_held_is_forbidden(
    sandbox: Sandbox, rbac
) -> None:
    token = sandbox["source"].cluster.add_user("alice")
    creator = [{"apiGroups": [RBAC], "resources": ["clusterroles"], "verbs": ["create"]}]
    grant(rbac, "role-creator", creator, {"kind": "User", "name": "alice", "apiGroup": RBAC})
    alice = kubernetes.client.RbacAuthorizationV1Api(connect(sandbox["source"], token))
    wanted = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "delete"]}]

    code, body = refused(
        alice.create_cluster_role, {"metadata": {"name": "secret-deleter"}, "rules": wanted}
    )
    held = alice.create_cluster_role({"metadata": {"name": "same-as-mine"}, "rules": creator})

    assert code == 403
    assert body["message"] == (
        f'clusterroles.{RBAC} "secret-deleter" is forbidden: user "alice" '
        '(groups=["system:authenticated"]) is attempting to grant RBAC permissions not '
        'currently held:\n{APIGroups:[""], Resources:["secrets"], Verbs:["get" "delete"]}'
    )
    assert held.metadata.name == "same-as-mine"


def test_self_subject_access_review_answers_truthfully_for_a_token(
    sandbox: Sandbox, core, rbac
) -> None:
    token = requested_token(core, "asker")
    grant(
        rbac,
        "ns-lister",
        [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]}],
        account("asker"),
    )
    authz = kubernetes.client.AuthorizationV1Api(connect(sandbox["source"], token))

    def may(verb: str, resource: str, namespace: str = "") -> Any:
        attributes = {"verb": verb, "resource": resource, "namespace": namespace}
        review = {"spec": {"resourceAttributes": attributes}}
        return authz.create_self_subject_access_review(review).status

    allowed, denied = may("list", "namespaces"), may("delete", "secrets", NS)

    assert allowed.allowed is True
    assert allowed.reason == (
        'RBAC: allowed by ClusterRoleBinding "ns-lister" of ClusterRole "ns-lister" '
        'to ServiceAccount "asker/default"'
    )
    assert denied.allowed is False


def test_self_subject_review_names_the_service_account_behind_a_token(
    sandbox: Sandbox, core
) -> None:
    token = requested_token(core, "me")
    uid = core.read_namespaced_service_account("me", NS).metadata.uid
    api = connect(sandbox["source"], token)

    info = (
        kubernetes.client.AuthenticationV1Api(api).create_self_subject_review({}).status.user_info
    )

    assert info.username == "system:serviceaccount:default:me"
    assert info.groups == [
        "system:serviceaccounts",
        "system:serviceaccounts:default",
        "system:authenticated",
    ]
    assert info.uid == uid


def test_self_subject_rules_review_lists_what_the_bindings_grant(
    sandbox: Sandbox, core, rbac
) -> None:
    token = requested_token(core, "ruled")
    grant(
        rbac,
        "secret-reader",
        [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
        account("ruled"),
        namespace=NS,
    )
    authz = kubernetes.client.AuthorizationV1Api(connect(sandbox["source"], token))

    status = authz.create_self_subject_rules_review({"spec": {"namespace": NS}}).status
    elsewhere = authz.create_self_subject_rules_review({"spec": {"namespace": "kube-system"}})

    rules = [(r.api_groups, r.resources, r.verbs) for r in status.resource_rules]
    assert ([""], ["secrets"], ["get"]) in rules
    assert (
        ["authorization.k8s.io"],
        ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
        ["create"],
    ) in rules
    assert any("/version" in r.non_resource_urls for r in status.non_resource_rules)
    assert status.incomplete is False
    assert ([""], ["secrets"], ["get"]) not in [
        (r.api_groups, r.resources, r.verbs) for r in elsewhere.status.resource_rules
    ]


# -- the token controller ------------------------------------------------------------------


def test_a_token_secret_is_filled_after_the_controller_delay(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(token_delay=0.3)
    core = kubernetes.client.CoreV1Api(connect(sandbox["source"], sandbox["source"].admin_token))
    core.create_namespaced_service_account(NS, {"metadata": {"name": "delayed"}})

    core.create_namespaced_secret(NS, token_secret("delayed-token", "delayed"))
    at_once = filled(core, "delayed-token")
    data = wait_for(lambda: filled(core, "delayed-token"), what="the token controller")

    assert at_once is None
    assert base64.b64decode(data["ca.crt"]).decode() == sandbox["source"].root_ca_pem
    assert base64.b64decode(data["namespace"]).decode() == NS
    secret = core.read_namespaced_secret("delayed-token", NS)
    account_uid = core.read_namespaced_service_account("delayed", NS).metadata.uid
    assert secret.metadata.annotations["kubernetes.io/service-account.uid"] == account_uid


def test_set_token_delay_slows_the_running_token_controller(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox()
    core = kubernetes.client.CoreV1Api(connect(sandbox["source"], sandbox["source"].admin_token))
    core.create_namespaced_service_account(NS, {"metadata": {"name": "slowed"}})

    sandbox.set_token_delay(0.5)
    core.create_namespaced_secret(NS, token_secret("slowed-token", "slowed"))

    assert filled(core, "slowed-token") is None
    wait_for(lambda: filled(core, "slowed-token"), what="the token controller")


@pytest.fixture
def secret_token(sandbox: Sandbox, core) -> str:
    core.create_namespaced_service_account(NS, {"metadata": {"name": "legacy"}})
    core.create_namespaced_secret(NS, token_secret("legacy-token", "legacy"))
    data = wait_for(lambda: filled(core, "legacy-token"), what="the token controller")
    return base64.b64decode(data["token"]).decode()


def test_a_secret_token_authenticates_as_its_service_account(
    sandbox: Sandbox, secret_token
) -> None:
    api = connect(sandbox["source"], secret_token)

    assert whoami(api) == "system:serviceaccount:default:legacy"


def test_deleting_the_token_secret_revokes_its_token(sandbox: Sandbox, core, secret_token) -> None:
    api = connect(sandbox["source"], secret_token)
    assert whoami(api) == "system:serviceaccount:default:legacy"

    core.delete_namespaced_secret("legacy-token", NS)

    assert wait_for(lambda: answers_401(api), what="the token to be revoked")


def test_deleting_the_service_account_revokes_the_token_and_removes_the_secret(
    sandbox: Sandbox, core, secret_token
) -> None:
    api = connect(sandbox["source"], secret_token)

    core.delete_namespaced_service_account("legacy", NS)

    assert wait_for(lambda: answers_401(api), what="the token to be revoked")

    def secret_removed() -> bool:
        return "legacy-token" not in {
            s.metadata.name for s in core.list_namespaced_secret(NS).items
        }

    wait_for(secret_removed, what="the token secret to be removed")


def test_a_token_secret_for_a_missing_service_account_is_deleted(sandbox: Sandbox, core) -> None:
    core.create_namespaced_secret(NS, token_secret("ghost-token", "ghost"))

    def gone() -> bool:
        try:
            core.read_namespaced_secret("ghost-token", NS)
        except ApiException as err:
            return err.status == 404
        return False

    wait_for(gone, what="the controller to delete the token secret")


# -- TokenRequest ----------------------------------------------------------------------------


def test_token_request_returns_a_working_token_and_its_expiry(sandbox: Sandbox, core) -> None:
    core.create_namespaced_service_account(NS, {"metadata": {"name": "bound"}})
    before = dt.datetime.now(dt.UTC)

    answer = core.create_namespaced_service_account_token(
        "bound", NS, {"spec": {"expirationSeconds": 3600}}
    )
    # Plain values only from here: a failed assertion must not print the answer's token.
    token, expiry = answer.status.token, answer.status.expiration_timestamp
    name, seconds = answer.metadata.name, answer.spec.expiration_seconds
    del answer

    assert dt.timedelta(minutes=59) < expiry - before <= dt.timedelta(minutes=61)
    assert (name, seconds) == ("bound", 3600)
    assert whoami(connect(sandbox["source"], token)) == "system:serviceaccount:default:bound"


def test_token_request_for_less_than_ten_minutes_is_422(core) -> None:
    core.create_namespaced_service_account(NS, {"metadata": {"name": "brief"}})

    code, body = refused(
        core.create_namespaced_service_account_token,
        "brief",
        NS,
        {"spec": {"expirationSeconds": 599}},
    )

    assert code == 422
    assert body["message"] == (
        'TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: '
        "Invalid value: 599: may not specify a duration less than 10 minutes"
    )


def test_token_request_for_a_missing_service_account_is_404(core) -> None:
    code, body = refused(core.create_namespaced_service_account_token, "nobody", NS, {"spec": {}})

    assert code == 404
    assert body["message"] == 'serviceaccounts "nobody" not found'


def test_a_requested_token_stops_working_once_it_expires(sandbox: Sandbox, core) -> None:
    token = requested_token(core, "short", seconds=600)
    api = connect(sandbox["source"], token)
    assert whoami(api) == "system:serviceaccount:default:short"

    sandbox["source"].cluster.clock.advance(601)

    assert answers_401(api)
