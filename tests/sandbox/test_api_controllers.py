"""The controllers a sandbox runs, seen through the API as on a real cluster: ownerReference
garbage collection, Forklift's provider controller and admission webhook on the MTV host, and a
named serving certificate that the cluster's own CA does not verify.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import kubernetes
import pytest
from kubernetes.client import ApiClient, ApiException

from mtv_register.sandbox import MTV_NAMESPACE, Sandbox
from mtv_register.sandbox.mtv.controller import CONNECTION_TEST_PATHS, WEBHOOK
from tests.conftest import SandboxFactory
from tests.sandbox.helpers import wait_for

T = TypeVar("T")
NS = "default"
RBAC = "rbac.authorization.k8s.io"
FORKLIFT = ("forklift.konveyor.io", "v1beta1")
PROVIDER_LABELS = {"createdForProviderType": "openshift", "createdForResourceType": "providers"}


def client(kubeconfig: Path, context: str) -> ApiClient:
    return kubernetes.config.new_client_from_config(str(kubeconfig), context=context)


def missing(read: Callable[[], Any]) -> bool:
    try:
        read()
    except ApiException as err:
        return err.status == 404
    return False


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# -- helpers for a source cluster and the MTV host -------------------------------------------


def connection_test_rules() -> list[dict[str, Any]]:
    """`list` on exactly what Forklift's connection test lists."""
    rules = []
    for path in CONNECTION_TEST_PATHS:
        parts = path.strip("/").split("/")
        group = "" if parts[0] == "api" else parts[1]
        rules.append({"apiGroups": [group], "resources": [parts[-1]], "verbs": ["list"]})
    return rules


def source_token(api: ApiClient, name: str, rules: list[dict[str, Any]] | None) -> str:
    """A service account on the source with a token Secret, bound to `rules` (None: unbound)."""
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespaced_service_account(NS, {"metadata": {"name": name}})
    if rules is not None:
        rbac = kubernetes.client.RbacAuthorizationV1Api(api)
        rbac.create_cluster_role({"metadata": {"name": name}, "rules": rules})
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NS}],
            }
        )
    core.create_namespaced_secret(
        NS,
        {
            "metadata": {
                "name": f"{name}-token",
                "annotations": {"kubernetes.io/service-account.name": name},
            },
            "type": "kubernetes.io/service-account-token",
        },
    )

    def token() -> str:
        data = core.read_namespaced_secret(f"{name}-token", NS).data or {}
        return base64.b64decode(data["token"]).decode() if "token" in data else ""

    return wait_for(token, what="the token controller")


def provider_secret(name: str, *, labels: dict[str, str] | None = None, **data: str) -> dict:
    metadata: dict[str, Any] = {"name": name, "namespace": MTV_NAMESPACE}
    if labels:
        metadata["labels"] = labels
    return {"metadata": metadata, "data": {key: b64(value) for key, value in data.items()}}


def provider(name: str, url: str, secret_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "forklift.konveyor.io/v1beta1",
        "kind": "Provider",
        "metadata": {"name": name, "namespace": MTV_NAMESPACE},
        "spec": {
            "type": "openshift",
            "url": url,
            "secret": {"name": secret_name, "namespace": MTV_NAMESPACE},
        },
    }


def settled(custom: kubernetes.client.CustomObjectsApi, name: str, *phases: str) -> dict:
    """The Provider once its phase is one of `phases`."""

    def phase_reached() -> dict | None:
        found = custom.get_namespaced_custom_object(*FORKLIFT, MTV_NAMESPACE, "providers", name)
        return found if (found.get("status") or {}).get("phase") in phases else None

    return wait_for(phase_reached, what=f"provider {name} to reach {phases}")


def conditions(found: dict) -> dict[str, dict]:
    return {c["type"]: c for c in found["status"]["conditions"]}


@pytest.fixture
def mtv(sandbox: Sandbox, kubeconfig: Path) -> ApiClient:
    return client(kubeconfig, "mtv")


@pytest.fixture
def source(kubeconfig: Path) -> ApiClient:
    return client(kubeconfig, "source")


def register(mtv: ApiClient, name: str, url: str, **data: str) -> dict:
    """Create a provider Secret with `data` and a Provider using it; return the Provider."""
    kubernetes.client.CoreV1Api(mtv).create_namespaced_secret(
        MTV_NAMESPACE, provider_secret(f"{name}-secret", **data)
    )
    return kubernetes.client.CustomObjectsApi(mtv).create_namespaced_custom_object(
        *FORKLIFT, MTV_NAMESPACE, "providers", provider(name, url, f"{name}-secret")
    )


# -- garbage collection ----------------------------------------------------------------------


def owned_secret(owner: dict) -> dict[str, Any]:
    reference = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }
    return {
        "metadata": {"name": "dependent", "ownerReferences": [reference]},
        "stringData": {"k": "v"},
    }


def test_a_secret_owned_by_a_provider_is_collected_with_it(mtv) -> None:
    custom, core = kubernetes.client.CustomObjectsApi(mtv), kubernetes.client.CoreV1Api(mtv)
    owner = custom.create_namespaced_custom_object(
        *FORKLIFT, MTV_NAMESPACE, "providers", provider("owner", "", "none")
    )
    core.create_namespaced_secret(MTV_NAMESPACE, owned_secret(owner))

    custom.delete_namespaced_custom_object(*FORKLIFT, MTV_NAMESPACE, "providers", "owner")

    wait_for(
        lambda: missing(lambda: core.read_namespaced_secret("dependent", MTV_NAMESPACE)),
        what="the garbage collector",
    )


def test_orphan_propagation_keeps_the_dependent_and_drops_its_reference(mtv) -> None:
    custom, core = kubernetes.client.CustomObjectsApi(mtv), kubernetes.client.CoreV1Api(mtv)
    owner = custom.create_namespaced_custom_object(
        *FORKLIFT, MTV_NAMESPACE, "providers", provider("owner", "", "none")
    )
    core.create_namespaced_secret(MTV_NAMESPACE, owned_secret(owner))

    custom.delete_namespaced_custom_object(
        *FORKLIFT, MTV_NAMESPACE, "providers", "owner", propagation_policy="Orphan"
    )

    wait_for(
        lambda: missing(
            lambda: custom.get_namespaced_custom_object(
                *FORKLIFT, MTV_NAMESPACE, "providers", "owner"
            )
        ),
        what="the owner to go",
    )
    kept = core.read_namespaced_secret("dependent", MTV_NAMESPACE)
    assert kept.metadata.owner_references is None


# -- Forklift's provider controller ---------------------------------------------------------


def test_the_host_provider_is_ready(mtv) -> None:
    custom = kubernetes.client.CustomObjectsApi(mtv)

    host = settled(custom, "host", "Ready")

    assert conditions(host)["Ready"]["status"] == "True"


def test_a_provider_with_a_working_token_and_ca_becomes_ready(
    sandbox: Sandbox, source, mtv
) -> None:
    token = source_token(source, "forklift-reader", connection_test_rules())

    created = register(
        mtv,
        "source",
        sandbox["source"].url,
        token=token,
        **{"ca.crt": sandbox["source"].root_ca_pem},
    )
    ready = settled(kubernetes.client.CustomObjectsApi(mtv), "source", "Ready", "ConnectionFailed")

    assert ready["status"]["phase"] == "Ready"
    found = conditions(ready)
    assert {"ConnectionTestSucceeded", "Validated", "InventoryCreated", "Ready"} <= set(found)
    assert all(c["status"] == "True" for c in found.values())
    assert ready["status"]["observedGeneration"] == created["metadata"]["generation"]


def test_a_provider_with_the_wrong_ca_fails_its_connection_test(
    sandbox: Sandbox, source, mtv
) -> None:
    token = source_token(source, "forklift-reader", connection_test_rules())

    register(
        mtv, "source", sandbox["source"].url, token=token, **{"ca.crt": sandbox["mtv"].root_ca_pem}
    )
    failed = settled(kubernetes.client.CustomObjectsApi(mtv), "source", "Ready", "ConnectionFailed")

    assert failed["status"]["phase"] == "ConnectionFailed"
    condition = conditions(failed)["ConnectionTestFailed"]
    assert "tls: failed to verify certificate" in condition["message"]
    assert "Ready" not in conditions(failed)


def test_a_provider_token_without_permissions_fails_its_connection_test(
    sandbox: Sandbox, source, mtv
) -> None:
    token = source_token(source, "powerless", None)

    register(
        mtv,
        "source",
        sandbox["source"].url,
        token=token,
        **{"ca.crt": sandbox["source"].root_ca_pem},
    )
    failed = settled(kubernetes.client.CustomObjectsApi(mtv), "source", "Ready", "ConnectionFailed")

    message = conditions(failed)["ConnectionTestFailed"]["message"]
    assert 'namespaces is forbidden: User "system:serviceaccount:default:powerless"' in message


def test_a_provider_with_a_revoked_token_fails_its_connection_test_not_authentication(
    sandbox: Sandbox, source, mtv
) -> None:
    """Discovery meets the 401 first and wraps it, so Forklift sees code 500: the openshift test
    never gives ConnectionAuthFailed (which would stop reconciling for good)."""
    token = source_token(source, "revoked", connection_test_rules())
    kubernetes.client.CoreV1Api(source).delete_namespaced_secret("revoked-token", NS)

    register(
        mtv,
        "source",
        sandbox["source"].url,
        token=token,
        **{"ca.crt": sandbox["source"].root_ca_pem},
    )
    failed = settled(kubernetes.client.CustomObjectsApi(mtv), "source", "Ready", "ConnectionFailed")

    found = conditions(failed)
    assert "ConnectionAuthFailed" not in found
    assert found["ConnectionTestFailed"]["message"] == (
        "Connection test, failed: Failed to get resource namespaces: "
        "failed to get server groups: Unauthorized"
    )


def test_skipping_tls_verification_is_ready_with_no_insecure_condition(
    sandbox: Sandbox, source, mtv
) -> None:
    """`ConnectionInsecure` is for vSphere, oVirt and Hyper-V providers, never openshift."""
    token = source_token(source, "forklift-reader", connection_test_rules())

    register(mtv, "source", sandbox["source"].url, token=token, insecureSkipVerify="true")
    ready = settled(kubernetes.client.CustomObjectsApi(mtv), "source", "Ready", "ConnectionFailed")

    assert ready["status"]["phase"] == "Ready"
    assert "ConnectionInsecure" not in conditions(ready)


def test_fixing_the_provider_secret_makes_the_provider_ready(sandbox: Sandbox, source, mtv) -> None:
    token = source_token(source, "forklift-reader", connection_test_rules())
    ca = sandbox["source"].root_ca_pem
    register(mtv, "source", sandbox["source"].url, token="not-a-token", **{"ca.crt": ca})
    custom = kubernetes.client.CustomObjectsApi(mtv)
    assert "ConnectionTestFailed" in conditions(settled(custom, "source", "ConnectionFailed"))

    kubernetes.client.CoreV1Api(mtv).replace_namespaced_secret(
        "source-secret",
        MTV_NAMESPACE,
        provider_secret("source-secret", token=token, **{"ca.crt": ca}),
    )

    ready = settled(custom, "source", "Ready")
    assert "ConnectionTestFailed" not in conditions(ready)


def test_the_webhook_lets_in_a_provider_secret_whose_token_is_refused(
    sandbox: Sandbox, mtv
) -> None:
    """forklift-api refuses only on a 401 or 400 from the test, which discovery's wrapped 401
    never is; the mutating webhook adds `insecureSkipVerify: "false"`."""
    core = kubernetes.client.CoreV1Api(mtv)
    url, ca = sandbox["source"].url, sandbox["source"].root_ca_pem

    admitted = core.create_namespaced_secret(
        MTV_NAMESPACE,
        provider_secret("bad", labels=PROVIDER_LABELS, url=url, token="nope", **{"ca.crt": ca}),
    )

    assert sorted(admitted.data) == ["ca.crt", "insecureSkipVerify", "token", "url"]
    assert base64.b64decode(admitted.data["insecureSkipVerify"]) == b"false"


@pytest.mark.parametrize(
    ("labels", "data", "message"),
    [
        (
            {"createdForResourceType": "providers"},
            {"token": "t"},
            "provider secret is labeled with 'createdForResourceType' but without "
            "'createdForProviderType'",
        ),
        (
            PROVIDER_LABELS,
            {"token": "t", "insecure": "true", "ca.crt": "a CA"},
            "received a request to add insecure provider with a CA certificate",
        ),
    ],
)
def test_the_webhook_refuses_a_malformed_provider_secret_with_400(
    mtv, labels: dict[str, str], data: dict[str, str], message: str
) -> None:
    core = kubernetes.client.CoreV1Api(mtv)

    with pytest.raises(ApiException) as caught:
        core.create_namespaced_secret(
            MTV_NAMESPACE, provider_secret("malformed", labels=labels, **data)
        )

    assert caught.value.status == 400
    body = json.loads(caught.value.body)
    assert body["message"] == f'admission webhook "{WEBHOOK}" denied the request: {message}'
    assert missing(lambda: core.read_namespaced_secret("malformed", MTV_NAMESPACE))


# -- a named serving certificate -------------------------------------------------------------


def handshake(url: str, ca_pem: str) -> None:
    parts = urlsplit(url)
    context = ssl.create_default_context(cadata=ca_pem)
    with (
        socket.create_connection((parts.hostname, parts.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=parts.hostname),
    ):
        pass


def test_a_named_certificate_is_verified_by_the_kubeconfig_ca_not_the_cluster_ca(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(named_cert="source")
    api = client(sandbox.write_kubeconfig(tmp_path / "kubeconfig"), "source")

    namespaces = kubernetes.client.CoreV1Api(api).list_namespace().items
    root = kubernetes.client.CoreV1Api(api).read_namespaced_config_map("kube-root-ca.crt", NS)

    assert namespaces
    assert root.data["ca.crt"] == sandbox["source"].root_ca_pem != sandbox["source"].serving_ca_pem
    handshake(sandbox["source"].url, sandbox["source"].serving_ca_pem)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(sandbox["source"].url, root.data["ca.crt"])
    handshake(sandbox["destination"].url, sandbox["destination"].root_ca_pem)
