"""The resource types a simulated cluster serves, and the discovery documents describing them.

Types are declared, not coded: a kind is one `ResourceType` line. Built-in types are always
served; custom resources are served once their CustomResourceDefinition is stored, exactly as the
real server serves a CRD once it is established.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
CREATE_ONLY = ("create",)
AGGREGATED_DISCOVERY = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[str, ...] = ()
    # Spec changes bump metadata.generation (CRDs, workloads); plain data kinds have none.
    has_generation: bool = False
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def key(self) -> str:
        """Storage key: independent of version, as etcd keys are."""
        return f"{self.group}/{self.plural}"


def _core(
    kind: str, plural: str, namespaced: bool, *short: str, sub: tuple[str, ...] = ()
) -> ResourceType:
    return ResourceType("", "v1", kind, plural, namespaced, short, subresources=sub)


BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _core("Namespace", "namespaces", False, "ns", sub=("status", "finalize")),
    _core("ServiceAccount", "serviceaccounts", True, "sa", sub=("token",)),
    _core("Secret", "secrets", True),
    _core("ConfigMap", "configmaps", True, "cm"),
    _core("PersistentVolume", "persistentvolumes", False, "pv", sub=("status",)),
    _core("PersistentVolumeClaim", "persistentvolumeclaims", True, "pvc", sub=("status",)),
    _core("Node", "nodes", False, "no", sub=("status",)),
    _core("Pod", "pods", True, "po", sub=("status",)),
    _core("Event", "events", True, "ev"),
    # Stored apart from core Events, where a real server keeps one store behind both versions.
    ResourceType("events.k8s.io", "v1", "Event", "events", True, ("ev",)),
    ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    ResourceType(
        "rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False
    ),
    ResourceType("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    ResourceType(
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        False,
        verbs=CREATE_ONLY,
    ),
    ResourceType(
        "authentication.k8s.io", "v1", "TokenReview", "tokenreviews", False, verbs=CREATE_ONLY
    ),
    ResourceType(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        False,
        verbs=CREATE_ONLY,
    ),
    ResourceType(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        False,
        verbs=CREATE_ONLY,
    ),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        ("crd", "crds"),
        subresources=("status",),
        has_generation=True,
    ),
    ResourceType("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, ("sc",)),
    # Stored only: the sandbox's own admission chain stands for the webhooks they name.
    ResourceType(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        False,
        has_generation=True,
    ),
    ResourceType(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        False,
        has_generation=True,
    ),
    ResourceType(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        True,
        ("deploy",),
        subresources=("status",),
        has_generation=True,
    ),
    ResourceType("batch", "v1", "Job", "jobs", True, subresources=("status",), has_generation=True),
    ResourceType(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        True,
        ("cj",),
        subresources=("status",),
        has_generation=True,
    ),
)

# Review kinds are answered, never stored.
VIRTUAL_KINDS = frozenset(
    {"SelfSubjectReview", "TokenReview", "SelfSubjectAccessReview", "SelfSubjectRulesReview"}
)


def type_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """The served versions of a stored CustomResourceDefinition."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    types = []
    for version in spec.get("versions", []):
        if not version.get("served", True):
            continue
        subresources = tuple(sorted((version.get("subresources") or {}).keys()))
        types.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                kind=names["kind"],
                plural=names["plural"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames", [])),
                subresources=subresources,
                has_generation=True,
                categories=tuple(names.get("categories", [])),
            )
        )
    return types


@dataclass
class Registry:
    """What a cluster serves right now: built-ins plus established CRDs."""

    _crd_types: dict[str, list[ResourceType]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def all(self) -> list[ResourceType]:
        with self._lock:
            crds = [t for types in self._crd_types.values() for t in types]
        return [*BUILTIN_TYPES, *crds]

    def set_crd(self, crd_name: str, types: list[ResourceType]) -> None:
        with self._lock:
            self._crd_types[crd_name] = types

    def drop_crd(self, crd_name: str) -> None:
        with self._lock:
            self._crd_types.pop(crd_name, None)

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        for rtype in self.all():
            if (rtype.group, rtype.version, rtype.plural) == (group, version, plural):
                return rtype
        return None

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        for rtype in self.all():
            if (rtype.api_version, rtype.kind) == (api_version, kind):
                return rtype
        return None

    def by_key(self, key: str) -> ResourceType | None:
        return next((t for t in self.all() if t.key == key), None)

    def group_versions(self) -> dict[str, list[str]]:
        """group -> served versions, core group first, in a stable order."""
        result: dict[str, list[str]] = {}
        for rtype in self.all():
            versions = result.setdefault(rtype.group, [])
            if rtype.version not in versions:
                versions.append(rtype.version)
        return result

    # -- discovery documents -------------------------------------------------------------

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        """Legacy discovery: `/api/v1` or `/apis/G/V`."""
        types = [t for t in self.all() if (t.group, t.version) == (group, version)]
        if not types:
            return None
        resources: list[dict[str, Any]] = []
        for rtype in types:
            entry: dict[str, Any] = {
                "name": rtype.plural,
                "singularName": rtype.singular,
                "namespaced": rtype.namespaced,
                "kind": rtype.kind,
                "verbs": list(rtype.verbs),
            }
            if rtype.short_names:
                entry["shortNames"] = list(rtype.short_names)
            if rtype.categories:
                entry["categories"] = list(rtype.categories)
            resources.append(entry)
            for sub in rtype.subresources:
                verbs = ["create"] if sub == "token" else ["get", "patch", "update"]
                resources.append(
                    {
                        "name": f"{rtype.plural}/{sub}",
                        "singularName": "",
                        "namespaced": rtype.namespaced,
                        "kind": "TokenRequest" if sub == "token" else rtype.kind,
                        "verbs": verbs,
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": rtype.api_version,
            "resources": resources,
        }

    def api_versions(self) -> dict[str, Any]:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}
            ],
        }

    def api_group_list(self) -> dict[str, Any]:
        groups = []
        for group, versions in self.group_versions().items():
            if not group:
                continue
            entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
            groups.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def aggregated(self, core: bool) -> dict[str, Any]:
        """Aggregated discovery (apidiscovery.k8s.io/v2) for `/api` (core) or `/apis`."""
        items = []
        for group, versions in self.group_versions().items():
            if bool(group) == core:
                continue
            version_entries = []
            for version in versions:
                resources = []
                for rtype in self.all():
                    if (rtype.group, rtype.version) != (group, version):
                        continue
                    entry: dict[str, Any] = {
                        "resource": rtype.plural,
                        "responseKind": {"group": group, "version": version, "kind": rtype.kind},
                        "scope": "Namespaced" if rtype.namespaced else "Cluster",
                        "singularResource": rtype.singular,
                        "verbs": list(rtype.verbs),
                    }
                    if rtype.short_names:
                        entry["shortNames"] = list(rtype.short_names)
                    if rtype.categories:
                        entry["categories"] = list(rtype.categories)
                    if rtype.subresources:
                        entry["subresources"] = [
                            {
                                "subresource": sub,
                                "responseKind": {
                                    "group": group,
                                    "version": version,
                                    "kind": rtype.kind,
                                },
                                "verbs": ["create"]
                                if sub == "token"
                                else ["get", "patch", "update"],
                            }
                            for sub in rtype.subresources
                        ]
                    resources.append(entry)
                version_entries.append(
                    {"version": version, "resources": resources, "freshness": "Current"}
                )
            items.append(
                {"metadata": {"name": group} if group else {}, "versions": version_entries}
            )
        return {
            "kind": "APIGroupDiscoveryList",
            "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {},
            "items": items,
        }

    # -- OpenAPI v3, just enough for kubectl's server-side field validation -----------------

    def openapi_root(self) -> dict[str, Any]:
        paths = {}
        for group, versions in self.group_versions().items():
            for version in versions:
                key = f"apis/{group}/{version}" if group else f"api/{version}"
                paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash=sandbox"}
        return {"paths": paths}

    def openapi_group_version(self, group: str, version: str) -> dict[str, Any] | None:
        types = [t for t in self.all() if (t.group, t.version) == (group, version)]
        if not types:
            return None
        paths = {}
        schemas = {}
        for rtype in types:
            prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
            ns = "/namespaces/{namespace}" if rtype.namespaced else ""
            gvk = {"group": group, "version": version, "kind": rtype.kind}
            params = [
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
            ]
            paths[f"{prefix}{ns}/{rtype.plural}/{{name}}"] = {
                "patch": {"x-kubernetes-group-version-kind": gvk, "parameters": params},
                "put": {"x-kubernetes-group-version-kind": gvk, "parameters": params},
                "get": {"x-kubernetes-group-version-kind": gvk},
            }
            paths[f"{prefix}{ns}/{rtype.plural}"] = {
                "post": {"x-kubernetes-group-version-kind": gvk, "parameters": params},
            }
            schema_name = f"{group or 'core'}.{version}.{rtype.kind}"
            schemas[schema_name] = {
                "type": "object",
                "x-kubernetes-group-version-kind": [gvk],
                "x-kubernetes-preserve-unknown-fields": True,
            }
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "paths": paths,
            "components": {"schemas": schemas},
        }
