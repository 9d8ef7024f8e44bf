"""The generic API of a simulated cluster: discovery, and the verbs on every resource type.

This is what kube-apiserver's generic registry and admission chain do for the objects this
project uses. HTTP lives in `server.py`; reviews and TokenRequest in `reviews.py`.
"""

from __future__ import annotations

import base64
import copy
import json
import time
from typing import TYPE_CHECKING, Any

import yaml

from mtv_register.sandbox import apistatus, protobuf, reviews, validation
from mtv_register.sandbox.patch import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    PatchError,
    apply_patch,
)
from mtv_register.sandbox.rbac import Attributes, UserInfo
from mtv_register.sandbox.request import Request, RequestInfo, Response
from mtv_register.sandbox.resources import (
    AGGREGATED_DISCOVERY,
    BUILTIN_TYPES,
    VIRTUAL_KINDS,
    ResourceType,
)
from mtv_register.sandbox.store import now_rfc3339

if TYPE_CHECKING:
    from mtv_register.sandbox.cluster import Cluster

Obj = dict[str, Any]
VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0",
    "gitCommit": "sandbox",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23",
    "compiler": "gc",
    "platform": "linux/amd64",
}
MAX_WATCH_SECONDS = 1800
# Kinds whose registry sets ReturnDeletedObject: DELETE answers with the object, not a Status.
RETURNS_DELETED_OBJECT = frozenset({"Pod", "ServiceAccount", "StorageClass"})


# -- non-resource paths ----------------------------------------------------------------------


def non_resource(cluster: Cluster, req: Request) -> Response:
    path = req.path.rstrip("/") or "/"
    registry = cluster.registry
    if path == "/version":
        return Response(200, VERSION)
    if path in ("/healthz", "/livez", "/readyz"):
        return Response(200, b"ok", "text/plain; charset=utf-8")
    if path in ("/api", "/apis"):
        if "as=APIGroupDiscoveryList" in req.accept and "v=v2" in req.accept:
            return Response(200, registry.aggregated(core=path == "/api"), AGGREGATED_DISCOVERY)
        return Response(
            200, registry.api_versions() if path == "/api" else registry.api_group_list()
        )
    parts = path.strip("/").split("/")
    if parts[0] == "api" and len(parts) == 2:
        doc = registry.resource_list("", parts[1])
        if doc is not None:
            return Response(200, doc)
    if parts[0] == "apis" and len(parts) == 3:
        doc = registry.resource_list(parts[1], parts[2])
        if doc is not None:
            return Response(200, doc)
    if parts[0] == "apis" and len(parts) == 2:
        versions = registry.group_versions().get(parts[1])
        if versions:
            entries = [{"groupVersion": f"{parts[1]}/{v}", "version": v} for v in versions]
            return Response(
                200,
                {
                    "kind": "APIGroup",
                    "apiVersion": "v1",
                    "name": parts[1],
                    "versions": entries,
                    "preferredVersion": entries[0],
                },
            )
    if path == "/openapi/v2":
        # An empty document turns kubectl's client-side schema checks off, as KUBECTL.md records.
        return Response(200, b"", "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
    if path == "/openapi/v3":
        return Response(200, registry.openapi_root())
    if parts[:2] == ["openapi", "v3"] and len(parts) >= 4:
        rest = parts[2:]
        group, version = (
            ("", rest[1]) if rest[0] == "api" else (rest[1], rest[2] if len(rest) > 2 else "")
        )
        doc = registry.openapi_group_version(group, version)
        if doc is not None:
            return Response(200, doc)
    raise not_served()


def not_served() -> apistatus.ApiError:
    return apistatus.ApiError(
        404, "NotFound", "the server could not find the requested resource", details={}
    )


# -- bodies ------------------------------------------------------------------------------------


def decode_body(req: Request) -> Obj:
    media = req.content_type.split(";")[0].strip().lower()
    try:
        if protobuf.is_protobuf(media):
            return protobuf.decode(req.body)
        if media in ("application/json", ""):
            value = json.loads(req.body or b"{}")
        elif media in ("application/yaml", "application/x-yaml", "text/yaml"):
            value = yaml.safe_load(req.body) or {}
        else:
            raise apistatus.unsupported_media_type()
    except (ValueError, yaml.YAMLError) as err:
        raise apistatus.bad_request(
            f"the body of the request could not be decoded: {err}"
        ) from None
    if not isinstance(value, dict):
        raise apistatus.bad_request("the body of the request must be an object")
    return value


def _check_type(rtype: ResourceType, obj: Obj) -> None:
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if kind and kind != rtype.kind:
        raise apistatus.bad_request(
            f"the kind in the data ({kind}) does not match the expected kind ({rtype.kind})"
        )
    if api_version and api_version != rtype.api_version:
        raise apistatus.bad_request(
            f"the API version in the data ({api_version}) does not match "
            f"the expected API version ({rtype.api_version})"
        )
    obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind


def _strict_fields(
    rtype: ResourceType, req: Request, obj: Obj, resp_headers: dict[str, str]
) -> None:
    unknown = validation.strict_unknown_fields(rtype, obj)
    if not unknown:
        return
    mode = req.query.get("fieldValidation", "Warn")
    if mode == "Strict":
        quoted = ", ".join(f'unknown field "{f}"' for f in unknown)
        raise apistatus.bad_request(
            f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}: '
            f"strict decoding error: {quoted}"
        )
    for field in unknown:
        head, _, tail = field.partition(".")
        container = obj.get(head) if tail else obj
        if isinstance(container, dict):
            container.pop(tail or head, None)
    if mode == "Warn":
        resp_headers["Warning"] = ", ".join(f'299 - "unknown field \\"{f}\\""' for f in unknown)


def _normalize(rtype: ResourceType, obj: Obj) -> None:
    """Server-side defaulting and conversion: what the stored form looks like."""
    if rtype.kind == "Secret":
        string_data = obj.pop("stringData", None) or {}
        data = obj.setdefault("data", {}) or {}
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        if data:
            obj["data"] = data
        else:
            obj.pop("data", None)
        obj.setdefault("type", "Opaque")
    elif rtype.kind == "Namespace":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj.setdefault("status", {"phase": "Active"})
    elif rtype.kind == "CustomResourceDefinition":
        obj.setdefault("status", {})
    meta = obj.setdefault("metadata", {})
    for empty in ("labels", "annotations", "ownerReferences", "finalizers"):
        if empty in meta and not meta[empty]:
            del meta[empty]


# -- the verbs -----------------------------------------------------------------------------


def resource(cluster: Cluster, req: Request, info: RequestInfo, user: UserInfo) -> Response:
    rtype = cluster.registry.lookup(info.api_group, info.api_version, info.resource)
    if rtype is None:
        raise not_served()
    if info.namespace and not rtype.namespaced and rtype.kind != "Namespace":
        raise not_served()
    if info.subresource and info.subresource not in rtype.subresources:
        raise not_served()
    if info.verb not in rtype.verbs and not info.subresource:
        raise apistatus.method_not_allowed()
    if rtype.kind in VIRTUAL_KINDS:
        return reviews.review(cluster, rtype, decode_body(req), user)
    if info.subresource == "token":
        if info.verb != "create":
            raise apistatus.method_not_allowed()
        return reviews.token_request(cluster, info, decode_body(req))
    namespace = info.namespace if rtype.namespaced else ""
    handler = _VERBS[info.verb]
    return handler(cluster, req, info, rtype, namespace, user)


def _get(
    cluster: Cluster, req: Request, info: RequestInfo, rtype: ResourceType, ns: str, user: UserInfo
) -> Response:
    obj = cluster.store.get(rtype, ns, info.name)
    if _wants_table(req):
        return Response(200, _table([obj], obj["metadata"]["resourceVersion"]))
    return Response(200, obj)


def _list(
    cluster: Cluster, req: Request, info: RequestInfo, rtype: ResourceType, ns: str, user: UserInfo
) -> Response:
    items, rv = cluster.store.list(
        rtype,
        ns if rtype.namespaced and ns else None,
        req.query.get("labelSelector"),
        req.query.get("fieldSelector"),
    )
    meta: Obj = {"resourceVersion": str(rv)}
    start = 0
    if req.query.get("continue"):
        try:
            start = int(base64.b64decode(req.query["continue"]).decode())
        except ValueError:
            raise apistatus.bad_request("continue key is not valid") from None
    limit = int(req.query.get("limit") or 0)
    if start:
        items = items[start:]
    if limit and len(items) > limit:
        meta["continue"] = base64.b64encode(str(start + limit).encode()).decode()
        meta["remainingItemCount"] = len(items) - limit
        items = items[:limit]
    if _wants_table(req):
        return Response(200, _table(items, str(rv)))
    return Response(
        200,
        {
            "kind": f"{rtype.kind}List",
            "apiVersion": rtype.api_version,
            "metadata": meta,
            "items": items,
        },
    )


def _watch(
    cluster: Cluster, req: Request, info: RequestInfo, rtype: ResourceType, ns: str, user: UserInfo
) -> Response:
    namespace = ns if rtype.namespaced and ns else None
    timeout = min(float(req.query.get("timeoutSeconds") or MAX_WATCH_SECONDS), MAX_WATCH_SECONDS)
    raw_rv = req.query.get("resourceVersion", "")
    labels, fields = req.query.get("labelSelector"), req.query.get("fieldSelector")
    initial: list[Obj] = []
    if raw_rv in ("", "0"):
        # No starting point: the current state first, as synthetic ADDED events.
        initial, since = cluster.store.list(rtype, namespace, labels, fields)
    else:
        try:
            since = int(raw_rv)
        except ValueError:
            raise apistatus.bad_request(f'invalid resource version "{raw_rv}"') from None
    expired: apistatus.ApiError | None = None
    try:
        events = cluster.store.watch(
            rtype,
            namespace,
            since,
            label_selector=labels,
            field_selector=fields,
            timeout=timeout,
            stopped=lambda: cluster.stopping,
        )
    except apistatus.ApiError as err:
        if err.code != 410:
            raise
        # As the cacher's errWatcher: a parsed but compacted resourceVersion is a 200 whose
        # stream holds one ERROR event, not an HTTP 410.
        events, expired = iter(()), err

    def stream() -> Any:
        if expired is not None:
            yield json.dumps({"type": "ERROR", "object": expired.status()}).encode() + b"\n"
        for obj in initial:
            yield json.dumps({"type": "ADDED", "object": obj}).encode() + b"\n"
        try:
            for event in events:
                yield json.dumps({"type": event.type, "object": event.obj}).encode() + b"\n"
        except apistatus.ApiError as err:
            yield json.dumps({"type": "ERROR", "object": err.status()}).encode() + b"\n"

    return Response(200, stream=stream())


def _create(
    cluster: Cluster, req: Request, info: RequestInfo, rtype: ResourceType, ns: str, user: UserInfo
) -> Response:
    if info.subresource:
        raise apistatus.method_not_allowed()
    obj = decode_body(req)
    headers: dict[str, str] = {}
    _check_type(rtype, obj)
    meta = obj.setdefault("metadata", {})
    if rtype.namespaced:
        if meta.get("namespace") and meta["namespace"] != ns:
            raise apistatus.bad_request(
                "the namespace of the provided object does not match the "
                "namespace sent on the request"
            )
        meta["namespace"] = ns
    else:
        meta.pop("namespace", None)
    _strict_fields(rtype, req, obj, headers)
    _normalize(rtype, obj)
    if rtype.namespaced:
        _namespace_accepts(cluster, ns, rtype, meta.get("name", ""))
    validation.validate(rtype, obj)
    cluster.admit("create", rtype, obj, None, user)
    if _dry_run(req):
        meta.setdefault("name", meta.get("generateName", "") + "dryrun")
        meta["creationTimestamp"] = now_rfc3339()
        meta["uid"] = "00000000-0000-0000-0000-000000000000"
        return Response(201, obj, headers=headers)
    created = cluster.store.create(rtype, obj)
    return Response(201, created, headers=headers)


def _update(
    cluster: Cluster, req: Request, info: RequestInfo, rtype: ResourceType, ns: str, user: UserInfo
) -> Response:
    obj = decode_body(req)
    headers: dict[str, str] = {}
    _check_type(rtype, obj)
    meta = obj.setdefault("metadata", {})
    if meta.get("name") and meta["name"] != info.name:
        raise apistatus.bad_request(
            f"the name of the object ({meta['name']}) does not match the "
            f"name on the URL ({info.name})"
        )
    if rtype.namespaced and meta.get("namespace") and meta["namespace"] != ns:
        raise apistatus.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    meta["name"] = info.name
    if rtype.namespaced:
        meta["namespace"] = ns
    _strict_fields(rtype, req, obj, headers)
    return _write(cluster, req, info, rtype, ns, user, obj, headers)


def _write(
    cluster: Cluster,
    req: Request,
    info: RequestInfo,
    rtype: ResourceType,
    ns: str,
    user: UserInfo,
    obj: Obj,
    headers: dict[str, str],
) -> Response:
    current = cluster.store.get(rtype, ns, info.name)
    wanted_rv = (obj.get("metadata") or {}).get("resourceVersion")
    if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
        # As the real Store.Update: a stale resourceVersion is a conflict before any validation
        # or validating admission (a webhook never judges a write that could not happen).
        raise apistatus.conflict(rtype.plural, rtype.group, info.name)
    _normalize(rtype, obj)
    if info.subresource != "status":
        validation.validate(rtype, obj, current)
        cluster.admit("update", rtype, obj, current, user)
    if _dry_run(req):
        return Response(200, obj, headers=headers)
    updated = cluster.store.update(rtype, obj, subresource=info.subresource)
    meta = updated["metadata"]
    if meta.get("deletionTimestamp") and not meta.get("finalizers"):
        cluster.store.delete(rtype, ns, info.name)
        cluster.after_delete(rtype, updated)
    return Response(200, updated, headers=headers)


def _patch(
    cluster: Cluster, req: Request, info: RequestInfo, rtype: ResourceType, ns: str, user: UserInfo
) -> Response:
    media = req.content_type.split(";")[0].strip()
    # Custom resources have no Go struct to carry patch strategies: no strategic merge for them.
    accepted = (
        (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)
        if rtype in BUILTIN_TYPES
        else (JSON_PATCH, MERGE_PATCH, APPLY_PATCH)
    )
    if media not in accepted:
        raise apistatus.unsupported_media_type(accepted)
    for attempt in range(5):
        current = cluster.store.get(rtype, ns, info.name)
        try:
            patched = apply_patch(current, req.body, media)
        except PatchError as err:
            if err.reason == "UnsupportedMediaType":
                raise apistatus.unsupported_media_type(accepted) from None
            if err.reason == "Invalid":
                # Upstream answers a patch that does not apply with a generic 422, the
                # patch library's own error left out (NewGenericServerResponse).
                raise apistatus.ApiError(
                    422,
                    "Invalid",
                    "the server rejected our request due to an error in our request",
                    details={},
                ) from None
            raise apistatus.bad_request(str(err)) from None
        headers: dict[str, str] = {}
        patched.setdefault("metadata", {})
        if patched["metadata"].get("name") != info.name:
            raise apistatus.bad_request("metadata.name cannot be changed by a patch")
        _strict_fields(rtype, req, patched, headers)
        explicit_rv = (
            patched["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]
        )
        try:
            return _write(cluster, req, info, rtype, ns, user, patched, headers)
        except apistatus.ApiError as err:
            # Without a resourceVersion of the client's, the server retries its own conflicts.
            if err.reason != "Conflict" or explicit_rv or attempt == 4:
                raise
    raise AssertionError("unreachable")


def _delete(
    cluster: Cluster, req: Request, info: RequestInfo, rtype: ResourceType, ns: str, user: UserInfo
) -> Response:
    options = _delete_options(req)
    current = cluster.store.get(rtype, ns, info.name)
    preconditions = options.get("preconditions") or {}
    for key, label, what in (
        ("uid", "UID", "deleted and then recreated"),
        ("resourceVersion", "ResourceVersion", "modified"),
    ):
        wanted, actual = preconditions.get(key), current["metadata"].get(key)
        if wanted and wanted != actual:
            # rest.BeforeDelete names the kind, not the resource, in this one message.
            raise apistatus.conflict(
                rtype.kind,
                rtype.group,
                info.name,
                f"the {label} in the precondition ({wanted}) does not match the {label} in "
                f"record ({actual}). The object might have been {what}",
            )
    if _dry_run(req):
        return Response(200, current)
    policy = options.get("propagationPolicy") or req.query.get("propagationPolicy") or ""
    if options.get("orphanDependents") is True:
        policy = "Orphan"
    meta = current["metadata"]
    if meta.get("finalizers") or rtype.kind == "Namespace":
        if not meta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = now_rfc3339()
            if rtype.kind == "Namespace":
                current["status"] = {"phase": "Terminating"}
                cluster.store.update(rtype, current, subresource="status")
                current = cluster.store.get(rtype, ns, info.name)
                current["metadata"]["deletionTimestamp"] = meta["deletionTimestamp"]
            cluster.store.mark_deleting(rtype, ns, info.name, meta["deletionTimestamp"])
            current = cluster.store.get(rtype, ns, info.name)
            cluster.after_delete_requested(rtype, current, policy)
        return Response(200, current)
    if policy == "Orphan":
        cluster.orphan_dependents(meta["uid"])
    deleted = cluster.store.delete(rtype, ns, info.name)
    cluster.after_delete(rtype, deleted)
    if rtype.kind in RETURNS_DELETED_OBJECT:
        return Response(200, deleted)
    details: Obj = {"name": info.name, "kind": rtype.plural, "uid": deleted["metadata"]["uid"]}
    if rtype.group:
        details["group"] = rtype.group
    return Response(
        200,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": details,
        },
    )


def _deletecollection(
    cluster: Cluster, req: Request, info: RequestInfo, rtype: ResourceType, ns: str, user: UserInfo
) -> Response:
    items, _ = cluster.store.list(
        rtype,
        ns if rtype.namespaced and ns else None,
        req.query.get("labelSelector"),
        req.query.get("fieldSelector"),
    )
    if not _dry_run(req):
        for obj in items:
            try:
                deleted = cluster.store.delete(
                    rtype, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]
                )
            except apistatus.ApiError:
                continue
            cluster.after_delete(rtype, deleted)
    return Response(
        200,
        {
            "kind": f"{rtype.kind}List",
            "apiVersion": rtype.api_version,
            "metadata": {},
            "items": items,
        },
    )


_VERBS = {
    "get": _get,
    "list": _list,
    "watch": _watch,
    "create": _create,
    "update": _update,
    "patch": _patch,
    "delete": _delete,
    "deletecollection": _deletecollection,
}


# -- helpers ---------------------------------------------------------------------------------


def _namespace_accepts(cluster: Cluster, namespace: str, rtype: ResourceType, name: str) -> None:
    """The NamespaceLifecycle admission plugin: no new object in a missing or terminating
    namespace."""
    ns_type = cluster.registry.lookup("", "v1", "namespaces")
    assert ns_type is not None
    found = cluster.store.find(ns_type, "", namespace)
    if found is None:
        raise apistatus.not_found("namespaces", "", namespace)
    if found["metadata"].get("deletionTimestamp"):
        raise apistatus.forbidden(
            f'{apistatus.qualified(rtype.plural, rtype.group)} "{name}" is forbidden: unable to '
            f"create new content in namespace {namespace} because it is being terminated",
            resource=rtype.plural,
            group=rtype.group,
            name=name,
            causes=[
                {
                    "reason": "NamespaceTerminating",
                    "message": f"namespace {namespace} is being terminated",
                    "field": "metadata.namespace",
                }
            ],
        )


def _dry_run(req: Request) -> bool:
    return req.query.get("dryRun") == "All"


def _delete_options(req: Request) -> Obj:
    if not req.body:
        return {}
    try:
        options = decode_body(req)
    except apistatus.ApiError:
        return {}
    return options


def _wants_table(req: Request) -> bool:
    return "as=Table" in req.accept


def _age(timestamp: str) -> str:
    try:
        created = time.mktime(time.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    except (ValueError, TypeError):
        return "<unknown>"
    seconds = max(0, int(time.time() - created))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * 2:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _table(items: list[Obj], rv: str) -> Obj:
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": [
            {
                "name": "Name",
                "type": "string",
                "format": "name",
                "description": "Name",
                "priority": 0,
            },
            {"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0},
        ],
        "rows": [
            {
                "cells": [
                    item["metadata"]["name"],
                    _age(item["metadata"].get("creationTimestamp", "")),
                ],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": copy.deepcopy(item["metadata"]),
                },
            }
            for item in items
        ],
    }


def authorize(cluster: Cluster, user: UserInfo, info: RequestInfo) -> Attributes:
    return Attributes(
        verb=info.verb,
        resource_request=info.resource_request,
        api_group=info.api_group,
        api_version=info.api_version,
        resource=info.resource,
        subresource=info.subresource,
        namespace=info.namespace,
        name=info.name,
        path=info.path,
    )
