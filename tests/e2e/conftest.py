"""The kind end-to-end run: where the clusters are, admin and token clients, the CLI as a user
runs it (a subprocess), and whether a Forklift controller is there to test Providers.

`nox -s e2e_kind` sets the variables below; without MTV_REGISTER_E2E_KUBECONFIG every test here
is skipped (see test_kind.py).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

KUBECONFIG_VARIABLE = "MTV_REGISTER_E2E_KUBECONFIG"
MTV_NAMESPACE = "openshift-mtv"
FORKLIFT_CONTROLLER = "forklift-controller"


@dataclass(frozen=True)
class Clusters:
    """The contexts of the run and the URLs each cluster is registered with."""

    kubeconfig: Path
    source: str
    destination: str
    host: str  # the MTV host: a third cluster (kind-mtv-e2e-mtv in `nox -s e2e_kind`)
    source_url: str
    destination_url: str

    def url(self, context: str) -> str:
        return self.source_url if context == self.source else self.destination_url


def _server_of(kubeconfig: Path, context: str) -> str:
    """The server of `context` in the kubeconfig: the URL to register when none is given."""
    data = yaml.safe_load(kubeconfig.read_text())
    cluster = next(c["context"]["cluster"] for c in data["contexts"] if c["name"] == context)
    return str(next(c["cluster"]["server"] for c in data["clusters"] if c["name"] == cluster))


@pytest.fixture(scope="session")
def clusters() -> Clusters:
    kubeconfig = Path(os.environ[KUBECONFIG_VARIABLE])
    source = os.environ.get("MTV_REGISTER_E2E_SOURCE", "kind-mtv-e2e-source")
    destination = os.environ.get("MTV_REGISTER_E2E_DESTINATION", "kind-mtv-e2e-destination")
    return Clusters(
        kubeconfig=kubeconfig,
        source=source,
        destination=destination,
        host=os.environ.get("MTV_REGISTER_E2E_HOST", "kind-mtv-e2e-mtv"),
        source_url=os.environ.get("MTV_REGISTER_E2E_SOURCE_URL") or _server_of(kubeconfig, source),
        destination_url=os.environ.get("MTV_REGISTER_E2E_DESTINATION_URL")
        or _server_of(kubeconfig, destination),
    )


@pytest.fixture(scope="session")
def admin(clusters: Clusters) -> Iterator[dict[str, client.ApiClient]]:
    """A cluster-admin client per context, from the kubeconfig kind wrote."""
    clients = {
        context: config.new_client_from_config(
            config_file=str(clusters.kubeconfig), context=context
        )
        for context in (clusters.source, clusters.destination, clusters.host)
    }
    yield clients
    for api in clients.values():
        api.close()


@pytest.fixture(scope="session")
def forklift_present(clusters: Clusters, admin: dict[str, client.ApiClient]) -> bool:
    try:
        client.AppsV1Api(admin[clusters.host]).read_namespaced_deployment(
            FORKLIFT_CONTROLLER, MTV_NAMESPACE
        )
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`mtv-register ARGS` as a user runs it: its own process, its own output."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "mtv_register", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def decoded(secret: Any, key: str) -> str:
    raw = (secret.data or {}).get(key)
    return base64.b64decode(raw).decode() if raw else ""


@dataclass
class TokenClient:
    """An API client holding a service account's token, as Forklift holds it."""

    api: client.ApiClient
    ca_file: str

    def close(self) -> None:
        self.api.close()
        Path(self.ca_file).unlink(missing_ok=True)


def token_client(url: str, token: str, ca_pem: str) -> TokenClient:
    handle, ca_file = tempfile.mkstemp(prefix="mtv-e2e-ca-", suffix=".crt")
    with os.fdopen(handle, "w") as stream:
        stream.write(ca_pem)
    configuration = client.Configuration()
    configuration.host = url
    configuration.api_key = {"authorization": f"Bearer {token}"}
    configuration.ssl_ca_cert = ca_file
    configuration.verify_ssl = True
    return TokenClient(client.ApiClient(configuration), ca_file)


def core(api: client.ApiClient) -> Any:
    """The typed APIs, as Any: their models make every field Optional."""
    return client.CoreV1Api(api)


def rbac(api: client.ApiClient) -> Any:
    return client.RbacAuthorizationV1Api(api)


def custom(api: client.ApiClient) -> Any:
    return client.CustomObjectsApi(api)


def who_am_i(api: client.ApiClient) -> str:
    """The username the API server authenticates this client as (SelfSubjectReview)."""
    review: Any = client.AuthenticationV1Api(api).create_self_subject_review(
        client.V1SelfSubjectReview()
    )
    return str(review.status.user_info.username)


def may(api: client.ApiClient, verb: str, resource: str, group: str = "") -> bool:
    """Whether the real RBAC authoriser lets this client do `verb` on `resource`, cluster-wide."""
    review: Any = client.AuthorizationV1Api(api).create_self_subject_access_review(
        client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    verb=verb, resource=resource, group=group
                )
            )
        )
    )
    return bool(review.status.allowed)
