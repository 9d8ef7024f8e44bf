"""One small, typed door to a Kubernetes API server, on the official `kubernetes` client.

Kinds are declared, not coded (one `Kind` line each). `Kube` speaks plain JSON dicts over the
client's REST layer, so every request is one request (no discovery round trips). This is the one
place that turns HTTP failures into `errors` carrying the server's Status message, and the one
place that retries: transient failures (429 with Retry-After, 5xx, dropped connections) under
`timing.Timing` (`timing.retrying`); permanent ones (401, 403, 404, 409, 422) never.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode

import urllib3

from mtv_register import deadline, errors
from mtv_register.errors import AlreadyExists, Conflict, Invalid, NotFound
from mtv_register.redaction import scrub
from mtv_register.timing import Timing, Transient, retrying

if TYPE_CHECKING:  # imported where used: `--client oc` never loads the kubernetes client
    from kubernetes import client as k8s

    from mtv_register.clusters import Connector

Obj = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        base = (
            f"/api/{self.api_version}"
            if "/" not in self.api_version
            else (f"/apis/{self.api_version}")
        )
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace)}"
        base += f"/{self.plural}"
        if name:
            base += f"/{quote(name)}"
        if subresource:
            base += f"/{subresource}"
        return base


NAMESPACE = Kind("v1", "Namespace", "namespaces", False)
SERVICE_ACCOUNT = Kind("v1", "ServiceAccount", "serviceaccounts", True)
SECRET = Kind("v1", "Secret", "secrets", True)
CONFIG_MAP = Kind("v1", "ConfigMap", "configmaps", True)
CLUSTER_ROLE = Kind("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False)
CLUSTER_ROLE_BINDING = Kind(
    "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", False
)
ROLE = Kind("rbac.authorization.k8s.io/v1", "Role", "roles", True)
ROLE_BINDING = Kind("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", True)
PROVIDER = Kind("forklift.konveyor.io/v1beta1", "Provider", "providers", True)
INFRASTRUCTURE = Kind("config.openshift.io/v1", "Infrastructure", "infrastructures", False)
CRON_JOB = Kind("batch/v1", "CronJob", "cronjobs", True)
SELF_SUBJECT_REVIEW = Kind(
    "authentication.k8s.io/v1", "SelfSubjectReview", "selfsubjectreviews", False
)
SELF_SUBJECT_ACCESS_REVIEW = Kind(
    "authorization.k8s.io/v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False
)

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
TRANSIENT_CODES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "mtv-register/0.1.0"


class Kube(Protocol):
    """What the tool asks of one API server, as one identity (a kubeconfig context, a token or
    a pod's service account). Two implementations: `ApiKube` below, on the `kubernetes`
    client, and `oc_backend.OcKube`, through `oc`/`kubectl`. Both turn failures into `errors`
    with `translate` and retry with `timing.retrying`; `clusters.Connector` makes them."""

    context: str  # as messages name it
    url: str
    timing: Timing
    tls_fix: str  # what to do when TLS fails

    @property
    def connector(self) -> Connector:
        """What made this client: token clients made from it speak the same way."""
        ...

    def get(self, kind: Kind, name: str, namespace: str | None = None) -> Obj | None: ...

    def list(
        self,
        kind: Kind,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
    ) -> Obj: ...

    def create(self, kind: Kind, obj: Obj, *, dry_run: bool = False) -> Obj: ...

    def replace(self, kind: Kind, obj: Obj) -> Obj: ...

    def patch(
        self,
        kind: Kind,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        content_type: str = MERGE_PATCH,
    ) -> Obj: ...

    def delete(
        self,
        kind: Kind,
        name: str,
        namespace: str | None = None,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> bool:
        """True when deleted, False when it was already gone."""
        ...

    def post(self, path: str, body: Obj) -> Obj: ...

    def watch(
        self,
        kind: Kind,
        namespace: str | None,
        *,
        name: str | None,
        resource_version: str,
        timeout: float,
    ) -> Iterator[Obj]:
        """Events after `resource_version` (of one object, or of the whole collection when
        `name` is None), until the server ends the watch or `timeout`."""
        ...

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Obj: ...

    def close(self) -> None: ...


class ApiKube:
    """`Kube` on the official `kubernetes` client's REST layer."""

    # What to do when TLS fails: a token client checks the CA the Provider will carry.
    tls_fix = "check the CA (--ca-source) or the server address"

    def __init__(
        self, api_client: k8s.ApiClient, *, context: str, url: str, timing: Timing | None = None
    ) -> None:
        self.api_client = api_client
        self.context = context
        self.url = url
        self.timing = timing or Timing()

    @classmethod
    def from_token(
        cls,
        url: str,
        token: str,
        *,
        ca_pem: str | None,
        insecure: bool = False,
        context: str,
        timing: Timing | None = None,
    ) -> ApiKube:
        """A client holding a service account's token, e.g. to prove it works."""
        from kubernetes import client as k8s

        configuration = k8s.Configuration()
        configuration.host = url
        configuration.api_key = {"authorization": f"Bearer {token}"}
        configuration.verify_ssl = not insecure
        if ca_pem and not insecure:
            handle, ca_file = tempfile.mkstemp(prefix="mtv-register-ca-", suffix=".crt")
            with os.fdopen(handle, "w") as stream:
                stream.write(ca_pem)
            configuration.ssl_ca_cert = ca_file
        return cls(k8s.ApiClient(configuration), context=context, url=url, timing=timing)

    @property
    def connector(self) -> Connector:
        from mtv_register.clusters import Connector

        return Connector(timing=self.timing)

    def close(self) -> None:
        self.api_client.close()
        ca_file = self.api_client.configuration.ssl_ca_cert
        if ca_file and os.path.basename(ca_file).startswith("mtv-register-ca-"):
            with _suppress_os_error():
                os.unlink(ca_file)

    # -- the verbs -------------------------------------------------------------------------

    def get(self, kind: Kind, name: str, namespace: str | None = None) -> Obj | None:
        try:
            return self.request("GET", kind.path(namespace, name))
        except NotFound:
            return None

    def list(
        self,
        kind: Kind,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
    ) -> Obj:
        query = {
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "limit": str(limit) if limit else "",
        }
        return self.request("GET", kind.path(namespace), query=query)

    def create(self, kind: Kind, obj: Obj, *, dry_run: bool = False) -> Obj:
        namespace = obj.get("metadata", {}).get("namespace")
        return self.request(
            "POST", kind.path(namespace), body=obj, query={"dryRun": "All" if dry_run else ""}
        )

    def replace(self, kind: Kind, obj: Obj) -> Obj:
        meta = obj["metadata"]
        return self.request("PUT", kind.path(meta.get("namespace"), meta["name"]), body=obj)

    def patch(
        self,
        kind: Kind,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        content_type: str = MERGE_PATCH,
    ) -> Obj:
        return self.request(
            "PATCH", kind.path(namespace, name), body=patch, content_type=content_type
        )

    def delete(
        self,
        kind: Kind,
        name: str,
        namespace: str | None = None,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> bool:
        """True when deleted, False when it was already gone."""
        options: Obj = {"propagationPolicy": "Background"}
        preconditions = {
            k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v
        }
        if preconditions:
            options["preconditions"] = preconditions
        try:
            self.request("DELETE", kind.path(namespace, name), body=options)
        except NotFound:
            return False
        return True

    def post(self, path: str, body: Obj) -> Obj:
        return self.request("POST", path, body=body)

    def watch(
        self,
        kind: Kind,
        namespace: str | None,
        *,
        name: str | None,
        resource_version: str,
        timeout: float,
    ) -> Iterator[Obj]:
        """Events after `resource_version` (of one object, or of the whole collection when
        `name` is None), until the server ends the watch."""
        query = {
            "watch": "true",
            "fieldSelector": f"metadata.name={name}" if name else "",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "false",
            "timeoutSeconds": str(max(1, int(deadline.cap(timeout) or timeout))),
        }
        response = self._send(
            "GET",
            kind.path(namespace),
            query,
            None,
            "application/json",
            stream=True,
            timeout=timeout + 5,
        )
        try:
            # A Ctrl-C shuts the socket, so the thread blocked in this read stops at once.
            with deadline.on_cancel(response.shutdown):
                buffer = b""
                for chunk in response.stream(4096, decode_content=True):
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if line.strip():
                            yield json.loads(line)
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise Transient(f"the watch was interrupted: {err}") from None
        finally:
            response.release_conn()

    # -- the one request path ----------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Obj:
        params = {k: v for k, v in (query or {}).items() if v}

        def send() -> Obj:
            data = self._send(method, path, params, body, content_type).data
            return json.loads(data) if data else {}

        return retrying(self.timing, send, what=f"{method} {path}", context=self.context)

    def _send(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        body: Any,
        content_type: str,
        *,
        stream: bool = False,
        timeout: float | None = 30.0,
    ) -> Any:
        """One HTTP request through the client's own connection pool (TLS, client
        certificates and proxy as the kubeconfig says); urllib3 never retries by itself."""
        configuration = self.api_client.configuration
        headers = {
            "Accept": "application/json",
            "Content-Type": content_type,
            "User-Agent": USER_AGENT,
        }
        for setting in configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[str(setting["key"]).title()] = str(setting["value"])
        url = configuration.host.rstrip("/") + path
        if query:
            url += "?" + urlencode(query)
        payload = json.dumps(body).encode() if body is not None else None
        deadline.check(f"{method} {path} on context {self.context}")
        timeout = deadline.cap(timeout)
        try:
            response = self.api_client.rest_client.pool_manager.request(
                method,
                url,
                body=payload,
                headers=headers,
                retries=False,
                preload_content=not stream,
                timeout=timeout,
            )
        except urllib3.exceptions.SSLError as exc:
            raise errors.TlsError(
                f"TLS to {self.url} (context {self.context}) failed: {_reason(exc)}",
                fix=self.tls_fix,
            ) from None
        except urllib3.exceptions.ConnectTimeoutError as exc:  # NewConnectionError is one too
            raise errors.UnreachableError(
                f"cannot reach {self.url} (context {self.context}): {_reason(exc)}",
                fix="check that the cluster is up and the kubeconfig's server address",
            ) from None
        except urllib3.exceptions.ReadTimeoutError as exc:
            if deadline.passed():  # a server that accepts and never answers
                raise errors.UnreachableError(
                    f"no answer from {self.url} (context {self.context}) to {method} {path} "
                    "before the --timeout ran out",
                    fix="check that API server's health (it accepts connections but does not "
                    "answer), or raise --timeout",
                ) from None
            raise Transient(f"{method} {path}: no answer: {_reason(exc)}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Transient(f"{method} {path}: connection lost: {_reason(exc)}") from None
        if 200 <= response.status < 300:
            return response
        data = response.read() if stream else response.data
        response.release_conn()
        raise translate(response.status, data, response.headers, method, path, self.context)


def translate(
    code: int, data: bytes, headers: Any, method: str, path: str, context: str
) -> Exception:
    """The error an HTTP answer `code` with body `data` (a Status) stands for, for either
    backend: `Transient` for what is worth another try, else the `errors` class of the code."""
    status = _status_body(data)
    message = scrub(str(status.get("message") or f"HTTP {code}"))
    where = f"context {context}"
    if code in TRANSIENT_CODES:
        retry_after = headers.get("Retry-After") if headers else None
        return Transient(
            f"{method} {path}: {code} {message}",
            float(retry_after) if retry_after else None,
            webhook=_failed_webhook(status) if code == 500 else "",
        )
    error = _permanent(code, status, message, where, f"{method} {path}")
    error.denied_by = _denying_webhook(status)
    return error


def _permanent(
    code: int, status: dict[str, Any], message: str, where: str, request: str
) -> errors.MtvRegisterError:
    if code == 401:
        return errors.AuthenticationFailed(
            f"the API server of {where} refused the credentials (401 Unauthorized)",
            fix="log in again or refresh the kubeconfig's token for that context",
        )
    if code == 403:
        return errors.PermissionDenied(
            f"{message} ({where})",
            fix="run with a user that has these permissions (see docs/security.md)",
        )
    if code == 404:
        return NotFound(f"{message} ({where})")
    if code == 409:
        cls = AlreadyExists if status.get("reason") == "AlreadyExists" else Conflict
        return cls(f"{message} ({where})", fix="re-run: the tool converges on what it finds")
    if code == 422:
        return Invalid(f"{message} ({where})", fix="correct the value named above")
    return errors.MtvRegisterError(f"{request} failed on {where}: {code} {message}")


def _status_body(data: bytes) -> dict[str, Any]:
    try:
        body = json.loads(data or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


_CALLING_WEBHOOK = re.compile(r'failed calling webhook "([^"]+)"')
# kube-apiserver's Status for a webhook's refusal (its `ToStatusErr`): code and reason are the
# webhook's own, so only the message's fixed start names it.
_DENYING_WEBHOOK = re.compile(r'^admission webhook "([^"]+)" denied the request')


def _denying_webhook(status: dict[str, Any]) -> str:
    """The admission webhook that refused the request, "" when none did."""
    found = _DENYING_WEBHOOK.match(str(status.get("message", "")))
    return found.group(1) if found else ""


def _failed_webhook(status: dict[str, Any]) -> str:
    """The webhook named by kube-apiserver's InternalError for a call that failed (its
    `ErrCallingWebhook`, which has no field of its own: the cause's message says it)."""
    if status.get("reason") != "InternalError":
        return ""
    causes = (status.get("details") or {}).get("causes") or []
    texts = [str(c.get("message", "")) for c in causes] + [str(status.get("message", ""))]
    for text in texts:
        found = _CALLING_WEBHOOK.search(text)
        if found:
            return found.group(1)
    return ""


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "reason", None) or exc)
    return scrub(text.split(": ", 1)[-1] if "object at 0x" in text else text)


class _suppress_os_error:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return isinstance(exc[1], OSError)
