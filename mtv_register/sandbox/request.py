"""What a request to a simulated cluster is: the HTTP view, and the Kubernetes view of it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# Namespace paths whose next segment is a subresource of the namespace, not a resource in it.
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "application/json")

    @property
    def accept(self) -> str:
        return self.headers.get("accept", "")

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in ("true", "1")


@dataclass
class Response:
    code: int
    body: Any = None  # a JSON-able value, or bytes sent as they are
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None  # a watch: sent chunked, one JSON event per line


@dataclass(frozen=True)
class RequestInfo:
    """The attributes kube-apiserver derives from a path (`k8s.io/apiserver` RequestInfo)."""

    verb: str
    resource_request: bool
    path: str
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""


def request_info(method: str, path: str, query: dict[str, str]) -> RequestInfo:
    parts = [p for p in path.split("/") if p]
    non_resource = RequestInfo(verb=method.lower(), resource_request=False, path=path)
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return non_resource
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if len(rest) > 3:
        return non_resource
    verb = {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
    }.get(method)
    if method in ("GET", "HEAD"):
        watching = query.get("watch", "").lower() in ("true", "1")
        verb = "get" if name else ("watch" if watching else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    if verb is None:
        return non_resource
    return RequestInfo(verb, True, path, group, version, resource, subresource, namespace, name)
