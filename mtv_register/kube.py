"""One small, typed door to a Kubernetes API server: the kinds, the `Kube` protocol, `translate`.

Kinds are declared, not coded (one `Kind` line each). `Kube` speaks plain JSON dicts; it has two
implementations, `api_kube.ApiKube` (the official `kubernetes` client) and `oc_backend.OcKube`.
`translate` is the one place that turns HTTP failures into `errors` carrying the server's Status
message, for both: transient ones (429 with Retry-After, 5xx) become `Transient`, which
`timing.retrying` tries again under `timing.Timing`; permanent ones (401, 403, 404, 409, 422)
are never retried.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from mtv_register import errors
from mtv_register.errors import AlreadyExists, Conflict, Invalid, NotFound
from mtv_register.redaction import scrub
from mtv_register.timing import Timing, Transient

if TYPE_CHECKING:
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
EVENT = Kind("events.k8s.io/v1", "Event", "events", True)
SELF_SUBJECT_REVIEW = Kind(
    "authentication.k8s.io/v1", "SelfSubjectReview", "selfsubjectreviews", False
)
SELF_SUBJECT_ACCESS_REVIEW = Kind(
    "authorization.k8s.io/v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False
)
# What `doctor` reads of OpenShift Virtualization, MTV and Submariner.
KUBEVIRT = Kind("kubevirt.io/v1", "KubeVirt", "kubevirts", True)
HYPERCONVERGED = Kind("hco.kubevirt.io/v1beta1", "HyperConverged", "hyperconvergeds", True)
CLUSTER_SERVICE_VERSION = Kind(
    "operators.coreos.com/v1alpha1", "ClusterServiceVersion", "clusterserviceversions", True
)
FORKLIFT_CONTROLLER = Kind(
    "forklift.konveyor.io/v1beta1", "ForkliftController", "forkliftcontrollers", True
)
DEPLOYMENT = Kind("apps/v1", "Deployment", "deployments", True)
NETWORK_ATTACHMENT_DEFINITION = Kind(
    "k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition", "network-attachment-definitions", True
)
CUSTOM_RESOURCE_DEFINITION = Kind(
    "apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False
)

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
TRANSIENT_CODES = frozenset({429, 500, 502, 503, 504})


class Kube(Protocol):
    """What the tool asks of one API server, as one identity (a kubeconfig context, a token or
    a pod's service account). Two implementations: `api_kube.ApiKube`, on the `kubernetes`
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
    error.denied_by = denying_webhook(status)
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
        return Invalid(
            f"the API server refused an object mtv-register built: {message} ({where})",
            fix="a value the tool did not check; if it came from a flag, correct that flag, and "
            "report it (mtv-register checks what it is given before any request)",
        )
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


def denying_webhook(status: dict[str, Any]) -> str:
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
