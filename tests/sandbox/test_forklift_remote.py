"""The Forklift imitation as a process of its own (Driver B, `mtv.remote`), against an
embedded sandbox without Forklift: it lists and watches through the API, writes status through
`/status`, registers its webhooks and answers AdmissionReviews over HTTPS. The sandbox does not
call webhooks (its own admission chain stands for them), so the tests POST the reviews."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mtv_register.sandbox import MTV_NAMESPACE, Sandbox
from mtv_register.sandbox.certs import CertificateAuthority, new_ca, serving_context
from mtv_register.sandbox.mtv.apiclient import USER_AGENT, Kube
from mtv_register.sandbox.mtv.remote import READY_LINE, RemoteForklift
from tests.conftest import FAST_FORKLIFT, SandboxFactory
from tests.sandbox.helpers import wait_for
from tests.sandbox.test_api_controllers import (
    FORKLIFT,
    PROVIDER_LABELS,
    b64,
    client,
    conditions,
    connection_test_rules,
    provider,
    provider_secret,
    source_token,
)

Obj = dict[str, Any]
DEADLINE = 30.0
AGENT = f"^{re.escape(USER_AGENT)}$"
UID = "d0c5e4c1-0000-4000-8000-000000000001"
STATUS_OF_HOST = f"/apis/{FORKLIFT[0]}/{FORKLIFT[1]}/namespaces/openshift-mtv/providers/host/status"


@pytest.fixture
def quiet_sandbox(make_sandbox: SandboxFactory, tmp_path: Path) -> tuple[Sandbox, Path]:
    sandbox = make_sandbox(mtv_on="separate", forklift=False)
    return sandbox, sandbox.write_kubeconfig(tmp_path / "kubeconfig")


def remote(kubeconfig: Path) -> RemoteForklift:
    forklift = RemoteForklift(Kube(str(kubeconfig), "mtv"), timing=FAST_FORKLIFT)
    forklift.start()
    return forklift


@pytest.fixture
def forklift(quiet_sandbox: tuple[Sandbox, Path]) -> Iterator[RemoteForklift]:
    running = remote(quiet_sandbox[1])
    try:
        yield running
    finally:
        running.stop()


def get_provider(mtv: Any, name: str, namespace: str = MTV_NAMESPACE) -> Obj:
    custom = kubernetes.client.CustomObjectsApi(mtv)
    return custom.get_namespaced_custom_object(*FORKLIFT, namespace, "providers", name)


def phase_of(mtv: Any, name: str, namespace: str = MTV_NAMESPACE) -> str:
    return str((get_provider(mtv, name, namespace).get("status") or {}).get("phase", ""))


def register_source(sandbox: Sandbox, kubeconfig: Path, namespace: str = MTV_NAMESPACE) -> Any:
    source, mtv = client(kubeconfig, "source"), client(kubeconfig, "mtv")
    token = source_token(source, f"reader-{namespace}", connection_test_rules())
    secret = provider_secret(
        "source-secret", token=token, **{"ca.crt": sandbox["source"].root_ca_pem}
    )
    secret["metadata"]["namespace"] = namespace
    kubernetes.client.CoreV1Api(mtv).create_namespaced_secret(namespace, secret)
    found = provider("source", sandbox["source"].url, "source-secret")
    found["metadata"]["namespace"] = namespace
    found["spec"]["secret"]["namespace"] = namespace
    kubernetes.client.CustomObjectsApi(mtv).create_namespaced_custom_object(
        *FORKLIFT, namespace, "providers", found
    )
    return mtv


# -- the controller through the API ----------------------------------------------------------


def test_the_host_provider_is_made_ready_through_the_status_subresource(
    quiet_sandbox: tuple[Sandbox, Path], forklift: RemoteForklift
) -> None:
    sandbox, kubeconfig = quiet_sandbox
    mtv = client(kubeconfig, "mtv")

    wait_for(lambda: phase_of(mtv, "host") == "Ready", what="host to be Ready")

    writes = [
        e["requestURI"]
        for e in sandbox["mtv"].cluster.audit.events()
        if e["userAgent"] == USER_AGENT and e["verb"] == "update"
    ]
    # The API shows Ready a moment before the controller's thread marks it reconciled.
    assert forklift.host_reconciled.wait(10)
    assert (
        writes[:2]
        == [f"/apis/{FORKLIFT[0]}/{FORKLIFT[1]}/namespaces/openshift-mtv/providers/host/status"] * 2
    )
    assert get_provider(mtv, "host")["status"]["observedGeneration"] == 1


def test_a_provider_becomes_ready_and_a_status_conflict_is_retried(
    quiet_sandbox: tuple[Sandbox, Path], forklift: RemoteForklift
) -> None:
    sandbox, kubeconfig = quiet_sandbox
    conflict = sandbox["mtv"].cluster.faults.inject(
        "update", "/providers/source/status$", status=409, agent=AGENT
    )

    mtv = register_source(sandbox, kubeconfig)

    wait_for(lambda: phase_of(mtv, "source") == "Ready", what="source to be Ready")
    assert conflict.hits == 1
    assert set(conditions(get_provider(mtv, "source"))) == {
        "ConnectionTestSucceeded",
        "Validated",
        "InventoryCreated",
        "Ready",
    }


def test_a_watch_refused_with_410_is_listed_again(quiet_sandbox: tuple[Sandbox, Path]) -> None:
    sandbox, kubeconfig = quiet_sandbox
    gone = sandbox["mtv"].cluster.faults.inject("watch", "/providers$", status=410, agent=AGENT)
    running = remote(kubeconfig)
    try:
        mtv = register_source(sandbox, kubeconfig)
        wait_for(lambda: phase_of(mtv, "source") == "Ready", what="source to be Ready")
    finally:
        running.stop()

    lists = [
        e
        for e in sandbox["mtv"].cluster.audit.events()
        if e["userAgent"] == USER_AGENT and e["verb"] == "list" and "providers" in e["requestURI"]
    ]
    assert gone.hits == 1
    assert len(lists) == 2


def test_a_namespace_deleted_under_it_is_reported_and_it_carries_on(
    quiet_sandbox: tuple[Sandbox, Path],
    forklift: RemoteForklift,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sandbox, kubeconfig = quiet_sandbox
    mtv = client(kubeconfig, "mtv")
    kubernetes.client.CoreV1Api(mtv).create_namespace({"metadata": {"name": "team"}})
    register_source(sandbox, kubeconfig, "team")
    wait_for(lambda: phase_of(mtv, "source", "team") == "Ready", what="team/source Ready")

    kubernetes.client.CoreV1Api(mtv).delete_namespace("team")
    wait_for(
        lambda: (
            not kubernetes.client.CoreV1Api(mtv)
            .list_namespace(field_selector="metadata.name=team")
            .items
        ),
        timeout=10,
        what="the namespace to go",
    )
    register_source(sandbox, kubeconfig)

    wait_for(lambda: phase_of(mtv, "source") == "Ready", what="openshift-mtv/source Ready")
    assert "Traceback" not in capsys.readouterr().err


# -- the webhooks ----------------------------------------------------------------------------


def test_the_webhook_configurations_are_registered_as_the_operator_writes_them(
    quiet_sandbox: tuple[Sandbox, Path], forklift: RemoteForklift
) -> None:
    api = client(quiet_sandbox[1], "mtv")
    admission = kubernetes.client.AdmissionregistrationV1Api(api)

    validating = admission.read_validating_webhook_configuration("forklift-api-secrets")
    mutating = admission.read_mutating_webhook_configuration("forklift-api-secrets")

    for found, name, path in (
        (validating, "secrets.forklift.konveyor", "/secret-validate"),
        (mutating, "ca-mutatur.forklift.konveyor", "/secret-mutate"),
    ):
        (hook,) = found.webhooks
        assert hook.name == name
        assert hook.client_config.url == f"{forklift.webhooks.url}{path}"
        assert (hook.failure_policy, hook.timeout_seconds, hook.side_effects) == (
            "Fail",
            30,
            "None",
        )
        assert hook.admission_review_versions == ["v1"]
        assert hook.object_selector.match_expressions[0].key == "createdForResourceType"
        assert hook.object_selector.match_expressions[0].operator == "Exists"
        (rule,) = hook.rules
        assert (rule.api_groups, rule.resources, rule.operations) == (
            [""],
            ["secrets"],
            ["CREATE", "UPDATE"],
        )
        bundle = base64.b64decode(hook.client_config.ca_bundle).decode()
        status, _ = post(forklift.webhooks.url + path, {"request": {}}, bundle)
        assert status == 200  # the bundle verifies the webhook server's certificate


def post(
    url: str, body: Any, ca_pem: str, content_type: str = "application/json"
) -> tuple[int, bytes]:
    parts = urlsplit(url)
    context = ssl.create_default_context(cadata=ca_pem)
    connection = http.client.HTTPSConnection(
        parts.hostname or "", parts.port, context=context, timeout=DEADLINE
    )
    try:
        connection.request(
            "POST",
            f"{parts.path}?timeout=30s",
            body=json.dumps(body).encode(),
            headers={"Content-Type": content_type},
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def review(secret: Obj, operation: str = "CREATE") -> Obj:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "d0c5e4c1-0000-4000-8000-000000000001",
            "operation": operation,
            "object": secret,
        },
    }


def answer(forklift: RemoteForklift, path: str, secret: Obj) -> Obj:
    status, data = post(forklift.webhooks.url + path, review(secret), forklift.webhooks.ca.pem)
    assert status == 200
    found: Obj = json.loads(data)
    assert (found["apiVersion"], found["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    assert found["response"]["uid"] == UID
    return found["response"]


def test_the_validating_webhook_refuses_a_provider_secret_without_its_provider_type(
    forklift: RemoteForklift,
) -> None:
    secret = provider_secret("s", labels={"createdForResourceType": "providers"}, token="t")

    response = answer(forklift, "/secret-validate", secret)

    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    assert "without 'createdForProviderType'" in response["status"]["message"]


def test_the_validating_webhook_lets_in_a_token_its_test_cannot_use(
    quiet_sandbox: tuple[Sandbox, Path], forklift: RemoteForklift
) -> None:
    sandbox, _ = quiet_sandbox
    secret = provider_secret(
        "s",
        labels=PROVIDER_LABELS,
        url=sandbox["source"].url,
        token="nope",
        **{"ca.crt": sandbox["source"].root_ca_pem},
    )

    response = answer(forklift, "/secret-validate", secret)

    assert response == {"uid": response["uid"], "allowed": True}


def test_the_mutating_webhook_adds_insecure_skip_verify_with_a_json_patch(
    forklift: RemoteForklift,
) -> None:
    secret = provider_secret("s", labels=PROVIDER_LABELS, token="t")

    response = answer(forklift, "/secret-mutate", secret)

    assert (response["allowed"], response["patchType"]) == (True, "JSONPatch")
    patch = json.loads(base64.b64decode(response["patch"]))
    assert patch[0] == {
        "op": "replace",
        "path": "/data",
        "value": {"token": b64("t"), "insecureSkipVerify": b64("false")},
    }


def test_the_mutating_webhook_gives_no_answer_for_a_secret_without_data(
    forklift: RemoteForklift,
) -> None:
    secret = {"metadata": {"name": "s", "namespace": MTV_NAMESPACE, "labels": PROVIDER_LABELS}}

    with pytest.raises(http.client.RemoteDisconnected):
        post(forklift.webhooks.url + "/secret-mutate", review(secret), forklift.webhooks.ca.pem)


def test_a_review_that_is_not_json_gets_a_bare_400(forklift: RemoteForklift) -> None:
    status, data = post(
        forklift.webhooks.url + "/secret-validate", {}, forklift.webhooks.ca.pem, "text/plain"
    )

    assert (status, data) == (400, b"")


# -- the process -----------------------------------------------------------------------------


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_the_process_says_ready_once_and_exits_0_on_a_signal(
    quiet_sandbox: tuple[Sandbox, Path], stop: signal.Signals
) -> None:
    sandbox, kubeconfig = quiet_sandbox
    command = [
        sys.executable,
        "-m",
        "mtv_register.sandbox.mtv.remote",
        "--kubeconfig",
        str(kubeconfig),
        "--context",
        "mtv",
        "--timing",
        "fast",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line == f"{READY_LINE}\n"
        assert phase_of(client(kubeconfig, "mtv"), "host") == "Ready"
        process.send_signal(stop)
        began = time.monotonic()
        out, err = process.communicate(timeout=DEADLINE)
        assert time.monotonic() - began < 2
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert out == ""
    assert "Traceback" not in err
    assert sandbox["mtv"].admin_token not in err


def test_a_context_that_does_not_exist_is_one_line_and_exit_1(
    quiet_sandbox: tuple[Sandbox, Path],
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtv_register.sandbox.mtv.remote",
            "--kubeconfig",
            str(quiet_sandbox[1]),
            "--context",
            "nowhere",
        ],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )

    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot start" in result.stderr


# -- client certificates ---------------------------------------------------------------------


def client_certificate(ca: CertificateAuthority) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "system:admin")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


class _Seen(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        peer = self.connection.getpeercert() or {}  # type: ignore[attr-defined]
        subject = dict(item for part in peer.get("subject", ()) for item in part)
        body = json.dumps({"kind": "APIVersions", "user": subject.get("commonName", "")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_a_client_certificate_kubeconfig_authenticates_requests(tmp_path: Path) -> None:
    """As the real clusters' kubeconfigs: no token, a client certificate the server requires."""
    server_ca, client_ca = new_ca("server-ca"), new_ca("client-ca")
    context = serving_context(server_ca, "apiserver")
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=client_ca.pem)
    httpd = HTTPServer(("127.0.0.1", 0), _Seen)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    cert, key = client_certificate(client_ca)
    data = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": f"https://127.0.0.1:{httpd.server_address[1]}",
                    "certificate-authority-data": b64(server_ca.pem),
                },
            }
        ],
        "users": [
            {
                "name": "u",
                "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)},
            }
        ],
        "contexts": [{"name": "mtv", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "mtv",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(data))
    try:
        kube = Kube(str(path), "mtv")
        answered = kube.request("GET", "/api")
    finally:
        httpd.shutdown()
        httpd.server_close()

    assert answered == {"kind": "APIVersions", "user": "system:admin"}
    assert kube.endpoint().token == ""
