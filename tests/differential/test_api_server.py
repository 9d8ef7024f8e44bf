"""The sandbox against a real kube-apiserver: one scripted sequence of requests, sent to an
embedded sandbox cluster and to a real cluster (`--clusters KUBECONFIG`, context `source`, as
`nox -s realstack` gives), must give the same status codes, reasons, message shapes and
details, and the controllers the same observable results.

The script covers DESIGN §5: the seed procedure, AlreadyExists, a stale-resourceVersion
Conflict, the 403 wording, 401, TokenRequest (and its 10-minute floor), a token revoked with its
Secret, garbage collection, namespace termination, strict field validation, NotFound, Invalid,
and a watch from a resourceVersion.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml

from mtv_register import manifests, naming
from mtv_register.sandbox import Sandbox
from tests.conftest import FAST_FORKLIFT, clusters_option
from tests.target import SANDBOX_PROCESS

Obj = dict[str, Any]
CONTEXT = "source"
pytestmark = pytest.mark.realstack
UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


@dataclass
class Endpoint:
    """One cluster as the script speaks to it: the admin, or a bearer token."""

    url: str
    ca_file: str
    admin_headers: dict[str, str]
    admin_cert: tuple[str, str] | None = None
    pools: dict[str, urllib3.PoolManager] = field(default_factory=dict)

    def _pool(self, as_admin: bool) -> urllib3.PoolManager:
        key = "admin" if as_admin else "token"
        if key not in self.pools:
            context = ssl.create_default_context(cafile=self.ca_file)
            if as_admin and self.admin_cert is not None:
                context.load_cert_chain(*self.admin_cert)
            self.pools[key] = urllib3.PoolManager(ssl_context=context, retries=False)
        return self.pools[key]

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        content_type: str = "application/json",
        stream: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        headers.update({"Authorization": f"Bearer {token}"} if token else self.admin_headers)
        return self._pool(token is None).request(
            method,
            self.url + path,
            body=json.dumps(body).encode() if body is not None else None,
            headers=headers,
            preload_content=not stream,
            timeout=urllib3.Timeout(connect=5, read=30),
        )


def outcome(response: urllib3.BaseHTTPResponse, suffix: str) -> Obj:
    """What must agree: the code and, for a failure, the Status' reason, message and details,
    with the run's random suffix, uids and timestamps replaced."""
    found: Obj = {"code": response.status}
    if response.status < 300:
        return found
    status = json.loads(response.data or b"{}")

    def shape(text: str) -> str:
        return TIMESTAMP.sub("<time>", UID.sub("<uid>", text.replace(suffix, "<n>")))

    found["reason"] = status.get("reason", "")
    found["message"] = shape(str(status.get("message", "")))
    details = status.get("details") or {}
    found["details"] = {
        k: shape(str(details[k])) for k in ("name", "group", "kind") if k in details
    }
    found["causes"] = sorted(
        (c.get("reason", ""), c.get("field", "")) for c in details.get("causes") or []
    )
    return found


def eventually(check: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def script(api: Endpoint, suffix: str) -> Iterator[tuple[str, Obj]]:
    """The sequence, step by step: (what, what it gave)."""
    ns = f"diff-{suffix}"
    account, role = "mtv-provider", f"diff-role-{suffix}"
    secret = naming.token_secret_name(account)
    core = f"/api/v1/namespaces/{ns}"

    def step(method: str, path: str, body: Any = None, **kw: Any) -> Obj:
        return outcome(api.call(method, path, body, **kw), suffix)

    def token_of(name: str) -> str:
        data = json.loads(api.call("GET", f"{core}/secrets/{name}").data).get("data") or {}
        return base64.b64decode(data.get("token", "")).decode()

    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    yield "create a namespace", step("POST", "/api/v1/namespaces", namespace)
    yield "create it again: AlreadyExists", step("POST", "/api/v1/namespaces", namespace)
    # The seed procedure, steps 1 to 7.
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    yield (
        "seed 1: the ClusterRole",
        step("POST", f"{rbac}/clusterroles", manifests.cluster_role(role)),
    )
    yield (
        "seed 3: the ServiceAccount",
        step("POST", f"{core}/serviceaccounts", manifests.service_account(account, ns)),
    )
    binding = manifests.cluster_role_binding(account, ns, role)
    binding["metadata"]["name"] = role
    yield "seed 4: the ClusterRoleBinding", step("POST", f"{rbac}/clusterrolebindings", binding)
    yield (
        "seed 5: the token Secret",
        step("POST", f"{core}/secrets", manifests.token_secret(account, ns)),
    )
    yield "seed 7: the token is filled", {"filled": eventually(lambda: bool(token_of(secret)))}
    token = token_of(secret)
    yield (
        "kube-root-ca.crt is published",
        {
            "published": eventually(
                lambda: api.call("GET", f"{core}/configmaps/kube-root-ca.crt").status == 200
            )
        },
    )
    yield "the token lists namespaces", step("GET", "/api/v1/namespaces?limit=1", token=token)

    def labels() -> list[str]:
        found = json.loads(api.call("GET", f"{core}/secrets/{secret}").data)["metadata"]
        return sorted(found.get("labels") or {})

    yield (
        "a used token's Secret is labelled",
        {
            "labelled": eventually(lambda: "kubernetes.io/legacy-token-last-used" in labels(), 10),
            "labels": labels(),
        },
    )
    yield (
        "the token may not list ClusterRoles: 403",
        step("GET", f"{rbac}/clusterroles", token=token),
    )
    yield "a token nobody issued: 401", step("GET", "/api/v1/namespaces", token="not-a-token")
    # A stale resourceVersion.
    first = json.loads(api.call("GET", f"{core}/serviceaccounts/{account}").data)
    api.call(
        "PATCH",
        f"{core}/serviceaccounts/{account}",
        {"metadata": {"labels": {"touched": "yes"}}},
        content_type="application/merge-patch+json",
    )
    yield (
        "a write with a stale resourceVersion: Conflict",
        step("PUT", f"{core}/serviceaccounts/{account}", first),
    )
    # TokenRequest.
    request = f"{core}/serviceaccounts/{account}/token"
    issued = api.call("POST", request, manifests.token_request(600))
    bound = str((json.loads(issued.data).get("status") or {}).get("token", ""))
    yield "TokenRequest for 10 minutes", {**outcome(issued, suffix), "token": bool(bound)}
    yield "the bound token works", step("GET", "/api/v1/namespaces?limit=1", token=bound)
    yield "TokenRequest for 1 minute: Invalid", step("POST", request, manifests.token_request(60))
    # The token Secret deleted: its token stops working.
    yield "delete the token Secret", step("DELETE", f"{core}/secrets/{secret}")
    yield (
        "its token is revoked",
        {
            "revoked": eventually(
                lambda: api.call("GET", "/api/v1/namespaces?limit=1", token=token).status == 401, 30
            )
        },
    )
    # Reads and writes the server refuses.
    yield "a Secret that does not exist: NotFound", step("GET", f"{core}/secrets/nope")
    bad = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "Bad_Name"}}
    yield "an invalid name: Invalid", step("POST", f"{core}/secrets", bad)
    unknown = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "spec": {}}
    yield (
        "an unknown field, strictly: BadRequest",
        step("POST", f"{core}/configmaps?fieldValidation=Strict", unknown),
    )
    # Garbage collection of an owned object.
    owner = json.loads(
        api.call(
            "POST",
            f"{core}/configmaps",
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}},
        ).data
    )
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner"}
    dependent = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "dependent",
            "ownerReferences": [{**reference, "uid": owner["metadata"]["uid"]}],
        },
    }
    yield "create an owned Secret", step("POST", f"{core}/secrets", dependent)
    yield (
        "delete its owner",
        step("DELETE", f"{core}/configmaps/owner", {"propagationPolicy": "Background"}),
    )
    yield (
        "the owned Secret is collected",
        {
            "collected": eventually(
                lambda: api.call("GET", f"{core}/secrets/dependent").status == 404
            )
        },
    )
    # A watch from a resourceVersion sees what came after it, and only that.
    listed = json.loads(api.call("GET", f"{core}/configmaps").data)
    since = listed["metadata"]["resourceVersion"]
    api.call(
        "POST",
        f"{core}/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "watched"}},
    )
    watch = api.call(
        "GET",
        f"{core}/configmaps?watch=true&resourceVersion={since}&timeoutSeconds=5",
        stream=True,
    )
    events = []
    for line in watch.stream(65536):
        for part in line.splitlines():
            if part.strip():
                event = json.loads(part)
                events.append((event["type"], event["object"]["metadata"]["name"]))
        if events:
            break
    watch.release_conn()
    yield "a watch from the list's resourceVersion", {"code": watch.status, "first": events[:1]}
    # Namespace termination.
    yield "delete the namespace", step("DELETE", f"/api/v1/namespaces/{ns}")
    right_after = api.call("GET", f"/api/v1/namespaces/{ns}")
    state = json.loads(right_after.data) if right_after.status == 200 else {}
    yield (
        "it is Terminating",
        {
            "code": right_after.status,
            "phase": (state.get("status") or {}).get("phase"),
            "deletionTimestamp": bool((state.get("metadata") or {}).get("deletionTimestamp")),
        },
    )
    late = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}}
    yield "a write into it: Forbidden", step("POST", f"{core}/configmaps", late)
    yield (
        "it goes once emptied",
        {"gone": eventually(lambda: api.call("GET", f"/api/v1/namespaces/{ns}").status == 404)},
    )
    yield "the ClusterRoleBinding deleted", step("DELETE", f"{rbac}/clusterrolebindings/{role}")
    yield "the ClusterRole deleted", step("DELETE", f"{rbac}/clusterroles/{role}")


def _real_endpoint(kubeconfig: Path, folder: Path) -> Endpoint:
    """The admin of `CONTEXT` in a kubeconfig: a client certificate or a bearer token."""
    data = yaml.safe_load(kubeconfig.read_text())
    context = next(c["context"] for c in data["contexts"] if c["name"] == CONTEXT)
    cluster = next(c["cluster"] for c in data["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in data["users"] if u["name"] == context["user"])

    def written(name: str, b64: str) -> str:
        path = folder / name
        path.write_bytes(base64.b64decode(b64))
        path.chmod(0o600)
        return str(path)

    ca = written("ca.crt", cluster["certificate-authority-data"])
    if "token" in user:
        return Endpoint(cluster["server"], ca, {"Authorization": f"Bearer {user['token']}"})
    cert = (
        written("admin.crt", user["client-certificate-data"]),
        written("admin.key", user["client-key-data"]),
    )
    return Endpoint(cluster["server"], ca, {}, admin_cert=cert)


@pytest.fixture
def real(request: pytest.FixtureRequest, tmp_path: Path) -> Endpoint:
    chosen = clusters_option(request.config)
    if not chosen or chosen == SANDBOX_PROCESS:
        pytest.skip(
            "needs a real cluster to compare with: run with --clusters KUBECONFIG "
            "(`nox -s realstack` does)"
        )
    folder = tmp_path / "real"
    folder.mkdir()
    return _real_endpoint(Path(chosen), folder)


def test_the_sandbox_answers_the_script_as_the_real_api_server_does(
    real: Endpoint, tmp_path: Path
) -> None:
    suffix = secrets.token_hex(3)
    with Sandbox(forklift_timing=FAST_FORKLIFT) as sandbox:
        cluster = sandbox[CONTEXT]
        ca = tmp_path / "sandbox-ca.crt"
        ca.write_text(cluster.serving_ca_pem)
        embedded = Endpoint(
            cluster.url, str(ca), {"Authorization": f"Bearer {cluster.admin_token}"}
        )
        imitated = list(script(embedded, suffix))
    answered = list(script(real, suffix))
    assert [what for what, _ in imitated] == [what for what, _ in answered]
    differences = [
        f"{what}:\n  real:    {real_one}\n  sandbox: {mine}"
        for (what, mine), (_, real_one) in zip(imitated, answered, strict=True)
        if mine != real_one
    ]
    assert not differences, "\n".join(differences)
