"""Forklift on the MTV host: the provider controller and the provider-Secret admission webhook.

The controller validates an `openshift` Provider as Forklift does: it reads the Provider's Secret,
makes the connection test over real HTTPS with that Secret's token and CA against `spec.url`,
and sets the conditions and phase. A changed Secret is tested again, which is what makes
in-place credential rotation work.
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import ssl
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mtv_register.sandbox import status
from mtv_register.sandbox.cluster import Cluster
from mtv_register.sandbox.controllers import Scheduler
from mtv_register.sandbox.rbac import UserInfo
from mtv_register.sandbox.resources import ResourceType
from mtv_register.sandbox.store import Event, now_rfc3339

Obj = dict[str, Any]
# What Forklift's OpenShift connection test lists, cluster-wide, with limit=1.
CONNECTION_TEST_PATHS = (
    "/api/v1/namespaces",
    "/apis/storage.k8s.io/v1/storageclasses",
    "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions",
    "/apis/kubevirt.io/v1/virtualmachines",
    "/apis/instancetype.kubevirt.io/v1beta1/virtualmachineinstancetypes",
    "/apis/instancetype.kubevirt.io/v1beta1/virtualmachineclusterinstancetypes",
)
WEBHOOK = "secret-admitter.forklift.konveyor.io"
FORKLIFT_USER_AGENT = "forklift-controller (mtv-register sandbox)"


@dataclass(frozen=True)
class TestResult:
    ok: bool
    auth_failed: bool = False
    message: str = ""


def _decoded(secret: Obj, key: str) -> str:
    raw = (secret.get("data") or {}).get(key)
    return base64.b64decode(raw).decode() if raw else ""


def connection_test(
    url: str,
    token: str,
    ca_pem: str,
    insecure: bool,
    *,
    timeout: float = 5.0,
    paths: tuple[str, ...] = CONNECTION_TEST_PATHS,
) -> TestResult:
    parts = urlsplit(url)
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        try:
            context = ssl.create_default_context(cadata=ca_pem or None)
        except ssl.SSLError as err:
            return TestResult(False, message=f"the CA certificate is not valid: {err.reason}")
    connection = http.client.HTTPSConnection(
        parts.hostname or "", parts.port or 443, context=context, timeout=timeout
    )
    try:
        for path in paths:
            connection.request(
                "GET",
                f"{parts.path.rstrip('/')}{path}?limit=1",
                headers={
                    "Authorization": f"Bearer {token}",
                    "Accept": "application/json",
                    "User-Agent": FORKLIFT_USER_AGENT,
                },
            )
            response = connection.getresponse()
            body = response.read()
            if response.status == 200:
                continue
            message = _status_message(body) or response.reason
            if response.status == 401:
                return TestResult(False, auth_failed=True, message=message)
            return TestResult(False, message=message)
    except ssl.SSLCertVerificationError as err:
        return TestResult(
            False, message=f'Get "{url}": tls: failed to verify certificate: {err.verify_message}'
        )
    except (OSError, http.client.HTTPException) as err:
        return TestResult(False, message=f'Get "{url}": {err}')
    finally:
        connection.close()
    return TestResult(True)


def _status_message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message", ""))
    except (ValueError, AttributeError):
        return ""


def _condition(kind: str, category: str, message: str, reason: str = "Completed") -> Obj:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "category": category,
        "message": message,
    }


class ForkliftController:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.providers = cluster.rtype("forklift.konveyor.io", "v1beta1", "providers")
        self.secrets = cluster.rtype("", "v1", "secrets")
        self.scheduler = Scheduler(f"{cluster.name}-forklift")
        self._tested: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()
        cluster.store.add_listener(self._on_event)
        cluster.admission_hooks.append(self._admit_secret)

    def stop(self) -> None:
        self.scheduler.stop()

    def _on_event(self, event: Event) -> None:
        kind = event.obj.get("kind")
        if kind == "Provider" and event.type != "DELETED":
            meta = event.obj["metadata"]
            key = (meta["namespace"], meta["name"])
            self.scheduler.call_later(0, lambda: self.reconcile(*key))
        elif kind == "Provider":
            with self._lock:
                self._tested.pop(event.obj["metadata"]["uid"], None)
        elif kind == "Secret":
            meta = event.obj["metadata"]
            providers, _ = self.cluster.store.list(self.providers)
            for provider in providers:
                ref = (provider.get("spec") or {}).get("secret") or {}
                if (ref.get("namespace"), ref.get("name")) == (meta["namespace"], meta["name"]):
                    self.scheduler.call_later(
                        0,
                        functools.partial(
                            self.reconcile,
                            provider["metadata"]["namespace"],
                            provider["metadata"]["name"],
                            force=True,
                        ),
                    )

    def reconcile(self, namespace: str, name: str, *, force: bool = False) -> None:
        provider = self.cluster.store.find(self.providers, namespace, name)
        if provider is None:
            return
        spec = provider.get("spec") or {}
        ref = spec.get("secret") or {}
        secret = None
        if ref.get("name"):
            secret = self.cluster.store.find(
                self.secrets, ref.get("namespace") or namespace, ref["name"]
            )
        seen = (
            provider["metadata"].get("generation", 1),
            secret["metadata"]["resourceVersion"] if secret else "",
        )
        with self._lock:
            if not force and self._tested.get(provider["metadata"]["uid"]) == seen:
                return
            self._tested[provider["metadata"]["uid"]] = seen
        conditions, phase = self._evaluate(spec, secret)
        previous = {c["type"]: c for c in (provider.get("status") or {}).get("conditions", [])}
        for condition in conditions:
            old = previous.get(condition["type"])
            same = old and all(old.get(k) == condition[k] for k in ("status", "reason", "message"))
            condition["lastTransitionTime"] = (
                old["lastTransitionTime"] if same and old else (now_rfc3339())
            )
        new_status = {
            "conditions": conditions,
            "phase": phase,
            "observedGeneration": provider["metadata"].get("generation", 1),
        }
        if provider.get("status") == new_status:
            return
        provider["status"] = new_status
        provider["metadata"].pop("resourceVersion", None)
        self.cluster.store.update(self.providers, provider, subresource="status")

    def _evaluate(self, spec: Obj, secret: Obj | None) -> tuple[list[Obj], str]:
        url = spec.get("url", "")
        if spec.get("type") != "openshift":
            return [
                _condition(
                    "TypeNotSupported",
                    "Critical",
                    f"The provider type: `{spec.get('type')}` is not supported.",
                    "NotSupported",
                )
            ], "ValidationFailed"
        if not url:
            return self._ready([]), "Ready"  # the local host provider: in-cluster access
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            return [
                _condition("UrlNotValid", "Critical", "The `url` is not valid.", "Malformed")
            ], "ValidationFailed"
        token = _decoded(secret, "token") if secret else ""
        if secret is None or not token:
            return [
                _condition("SecretNotValid", "Critical", "The `secret` is not valid.", "NotValid")
            ], "ValidationFailed"
        insecure = _decoded(secret, "insecureSkipVerify").lower() == "true"
        ca_pem = _decoded(secret, "ca.crt") or _decoded(secret, "cacert")
        conditions: list[Obj] = []
        if insecure:
            conditions.append(
                _condition(
                    "ConnectionInsecure",
                    "Warn",
                    "TLS is susceptible to machine-in-the-middle attacks "
                    "when certificate verification is skipped.",
                    "SkipTLSVerification",
                )
            )
        result = connection_test(url, token, ca_pem, insecure)
        if result.auth_failed:
            conditions.append(
                _condition(
                    "ConnectionAuthFailed",
                    "Critical",
                    f"Connection auth failed: {result.message}",
                    "Tested",
                )
            )
            return conditions, "ConnectionFailed"
        if not result.ok:
            conditions.append(
                _condition(
                    "ConnectionTestFailed",
                    "Critical",
                    f"Connection test, failed: {result.message}",
                    "Tested",
                )
            )
            return conditions, "ConnectionFailed"
        return self._ready(conditions), "Ready"

    @staticmethod
    def _ready(conditions: list[Obj]) -> list[Obj]:
        return [
            *conditions,
            _condition(
                "ConnectionTestSucceeded", "Required", "Connection test, succeeded.", "Tested"
            ),
            _condition("Validated", "Advisory", "Validation has been completed."),
            _condition("InventoryCreated", "Required", "The inventory has been loaded."),
            _condition("Ready", "Required", "The provider is ready."),
        ]

    def _admit_secret(
        self, operation: str, rtype: ResourceType, obj: Obj, old: Obj | None, user: UserInfo
    ) -> None:
        """Forklift's webhook: a provider Secret whose token the provider's server refuses
        with 401 is not admitted."""
        labels = obj.get("metadata", {}).get("labels") or {}
        if (
            rtype.kind != "Secret"
            or labels.get("createdForResourceType") != "providers"
            or (labels.get("createdForProviderType") != "openshift")
        ):
            return
        url, token = _decoded(obj, "url"), _decoded(obj, "token")
        if not url or not token:
            return
        insecure = _decoded(obj, "insecureSkipVerify").lower() == "true"
        ca_pem = _decoded(obj, "ca.crt") or _decoded(obj, "cacert")
        result = connection_test(url, token, ca_pem, insecure, paths=CONNECTION_TEST_PATHS[:1])
        if result.auth_failed:
            raise status.forbidden(
                f'admission webhook "{WEBHOOK}" denied the request: invalid '
                f"provider credentials: {result.message}"
            )
