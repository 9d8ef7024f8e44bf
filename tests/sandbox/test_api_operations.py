"""How a sandbox is made to misbehave and how it is watched: injected faults (error codes,
Retry-After, dropped connections, latency), the audit log, and start-up and shutdown.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import kubernetes
import pytest
import urllib3
from kubernetes.client import ApiClient, ApiException

from mtv_register.sandbox import Sandbox, SandboxCluster
from mtv_register.sandbox.mtv.controller import CONTROLLER_USER
from tests.conftest import FAST_FORKLIFT, SandboxFactory, assert_no_token
from tests.sandbox.helpers import wait_for

T = TypeVar("T")
NS = "default"


def connect(
    cluster: SandboxCluster, token: str | None = None, *, retries: int | None = None
) -> ApiClient:
    """A client of `cluster` as its admin (or with `token`); `retries=0` turns urllib3's off."""
    configuration = kubernetes.client.Configuration(
        host=cluster.url,
        ca_cert_data=cluster.serving_ca_pem,
        api_key={"authorization": f"Bearer {token or cluster.admin_token}"},
        retries=retries,
    )
    return ApiClient(configuration)


def secret(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "stringData": {"k": "v"}}


# -- faults --------------------------------------------------------------------------------


def test_an_injected_500_fails_the_next_create_only(sandbox: Sandbox) -> None:
    cluster = sandbox["source"].cluster
    core = kubernetes.client.CoreV1Api(connect(sandbox["source"]))
    fault = cluster.faults.inject("create", r"/secrets", status=500)

    with pytest.raises(ApiException) as caught:
        core.create_namespaced_secret(NS, secret("first"))
    second = core.create_namespaced_secret(NS, secret("second"))

    assert caught.value.status == 500
    assert json.loads(caught.value.body)["reason"] == "InternalError"
    assert second.metadata.name == "second"
    assert fault.hits == 1
    assert [s.metadata.name for s in core.list_namespaced_secret(NS).items] == ["second"]


def test_an_injected_fault_only_hits_its_verb_and_path(sandbox: Sandbox) -> None:
    core = kubernetes.client.CoreV1Api(connect(sandbox["source"]))
    fault = sandbox["source"].cluster.faults.inject("create", r"/configmaps", status=503)

    core.create_namespaced_secret(NS, secret("unaffected"))
    core.list_namespaced_config_map(NS)

    assert fault.hits == 0
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map(NS, {"metadata": {"name": "hit"}})
    assert caught.value.status == 503
    assert fault.hits == 1


def test_an_injected_429_tells_the_client_when_to_retry(sandbox: Sandbox) -> None:
    core = kubernetes.client.CoreV1Api(connect(sandbox["source"], retries=0))
    sandbox["source"].cluster.faults.inject("get", r"/secrets/", status=429, retry_after=1)

    with pytest.raises(ApiException) as caught:
        core.read_namespaced_secret("any", NS)

    assert caught.value.status == 429
    assert caught.value.headers["Retry-After"] == "1"
    body = json.loads(caught.value.body)
    assert body["reason"] == "TooManyRequests"
    assert body["details"]["retryAfterSeconds"] == 1


def test_a_dropped_connection_reaches_the_client_as_a_protocol_error(sandbox: Sandbox) -> None:
    core = kubernetes.client.CoreV1Api(connect(sandbox["source"], retries=0))
    core.create_namespaced_secret(NS, secret("there"))
    sandbox["source"].cluster.faults.inject("get", r"/secrets/there", drop=True)

    with pytest.raises(urllib3.exceptions.HTTPError) as caught:
        core.read_namespaced_secret("there", NS)
    after = core.read_namespaced_secret("there", NS)

    reason = getattr(caught.value, "reason", caught.value)
    assert isinstance(reason, urllib3.exceptions.ProtocolError | ConnectionError)
    assert after.metadata.name == "there"


def test_latency_delays_every_answer_until_cleared(sandbox: Sandbox) -> None:
    faults = sandbox["source"].cluster.faults
    core = kubernetes.client.CoreV1Api(connect(sandbox["source"]))
    faults.latency = 0.3

    started = time.monotonic()
    core.list_namespaced_secret(NS)
    slowed = time.monotonic() - started
    faults.clear()

    assert slowed >= 0.3
    assert faults.latency == 0.0


# -- the audit log -------------------------------------------------------------------------


def events_in(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_audit_log_has_one_event_per_request(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(audit_dir=tmp_path / "audit")
    core = kubernetes.client.CoreV1Api(connect(sandbox["source"]))

    core.create_namespaced_secret(NS, secret("audited"))
    with pytest.raises(ApiException):
        core.read_namespaced_secret("absent", NS)

    logged = events_in(tmp_path / "audit" / "source.log")
    assert {p.name for p in (tmp_path / "audit").iterdir()} == {"source.log", "destination.log"}
    assert len(logged) == 2 == len(sandbox["source"].cluster.audit.events())
    create, get = logged
    assert create["verb"] == "create"
    assert create["requestURI"] == "/api/v1/namespaces/default/secrets"
    assert create["user"]["username"] == "system:admin"
    assert create["responseStatus"]["code"] == 201
    assert create["objectRef"] == {"resource": "secrets", "namespace": NS, "apiVersion": "v1"}
    assert (get["verb"], get["responseStatus"]["code"]) == ("get", 404)
    assert all(e["stage"] == "ResponseComplete" for e in logged)
    assert all(e["kind"] == "Event" and e["apiVersion"] == "audit.k8s.io/v1" for e in logged)
    # The MTV host's log holds only Forklift's test of its `host` provider, as its controller.
    on_host = events_in(tmp_path / "audit" / "destination.log")
    assert on_host
    assert {e["user"]["username"] for e in on_host} == {CONTROLLER_USER}


def test_audit_marks_count_the_requests_and_the_writes_since(sandbox: Sandbox) -> None:
    audit = sandbox["source"].cluster.audit
    core = kubernetes.client.CoreV1Api(connect(sandbox["source"]))
    core.list_namespace()

    mark = audit.mark()
    core.create_namespaced_secret(NS, secret("counted"))
    core.read_namespaced_secret("counted", NS)
    core.patch_namespaced_secret("counted", NS, {"metadata": {"labels": {"a": "b"}}})
    core.list_namespaced_secret(NS)

    assert [e["verb"] for e in audit.since(mark)] == ["create", "get", "patch", "list"]
    assert [e["verb"] for e in audit.mutating(mark)] == ["create", "patch"]
    assert len(audit.since(0)) == len(audit.since(mark)) + 1


def test_no_token_reaches_the_audit_log(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    sandbox = make_sandbox(audit_dir=tmp_path / "audit")
    source = sandbox["source"]
    core = kubernetes.client.CoreV1Api(connect(source))
    core.create_namespaced_service_account(NS, {"metadata": {"name": "audited"}})
    core.create_namespaced_secret(
        NS,
        {
            "metadata": {
                "name": "audited-token",
                "annotations": {"kubernetes.io/service-account.name": "audited"},
            },
            "type": "kubernetes.io/service-account-token",
        },
    )

    def token() -> str:
        data = core.read_namespaced_secret("audited-token", NS).data or {}
        return base64.b64decode(data["token"]).decode() if "token" in data else ""

    legacy = wait_for(token, what="the token controller")
    bound = core.create_namespaced_service_account_token("audited", NS, {"spec": {}}).status.token
    for used in (legacy, bound):
        kubernetes.client.AuthenticationV1Api(connect(source, used)).create_self_subject_review({})

    logs = "".join(path.read_text() for path in (tmp_path / "audit").iterdir())
    assert_no_token(logs)
    assert logs.count('"username": "system:serviceaccount:default:audited"') == 2


# -- start-up --------------------------------------------------------------------------------


def test_a_three_cluster_sandbox_starts_serves_and_stops() -> None:
    with Sandbox(mtv_on="separate", forklift_timing=FAST_FORKLIFT) as sandbox:
        assert list(sandbox.clusters) == ["source", "destination", "mtv"]
        versions = {
            context: kubernetes.client.VersionApi(connect(cluster)).get_code().minor
            for context, cluster in sandbox.clusters.items()
        }
        assert versions == {"source": "32", "destination": "32", "mtv": "32"}
        assert [c.is_mtv_host for c in sandbox.clusters.values()] == [False, False, True]
        addresses = [urlsplit(c.url) for c in sandbox.clusters.values()]

    for address in addresses:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address.hostname, address.port), timeout=2).close()


def test_without_forklift_the_mtv_host_serves_providers_that_nobody_tests() -> None:
    """`forklift=False` (`sandbox up --no-forklift`) is an MTV host as kind's is: the Provider
    kind is served and stored, but no controller ever writes a status."""
    with Sandbox(mtv_on="separate", forklift=False) as sandbox:
        mtv = sandbox["mtv"]
        assert mtv.is_mtv_host and mtv.forklift is None
        api = kubernetes.client.CustomObjectsApi(connect(mtv))
        provider = {
            "apiVersion": "forklift.konveyor.io/v1beta1",
            "kind": "Provider",
            "metadata": {"name": "untested", "namespace": "openshift-mtv"},
            "spec": {"type": "openshift", "url": sandbox["source"].url},
        }
        api.create_namespaced_custom_object(
            "forklift.konveyor.io", "v1beta1", "openshift-mtv", "providers", provider
        )
        time.sleep(0.3)  # a controller answers within milliseconds here; none does
        stored = api.get_namespaced_custom_object(
            "forklift.konveyor.io", "v1beta1", "openshift-mtv", "providers", "untested"
        )
        assert "status" not in stored
