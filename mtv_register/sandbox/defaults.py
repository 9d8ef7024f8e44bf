"""What every new simulated cluster holds before a profile is put on it: the objects a real API
server makes itself at start (the bootstrap RBAC policy, the `default`, `kube-system` and
`kube-public` namespaces). And what a profile builds with: `crd` (a CustomResourceDefinition
that keeps any field), `namespace`, `install_crds` (created, then waited for until served) and
`create`.
"""

from __future__ import annotations

import time
from typing import Any

from mtv_register.sandbox.cluster import Cluster

Obj = dict[str, Any]
# An object a profile puts on a cluster: (group, version, plural, object).
Placed = tuple[str, str, str, Obj]
CRD_WAIT = 5.0  # seconds for the CRD controller to establish what was created


def crd(
    group: str,
    version: str,
    kind: str,
    plural: str,
    *,
    namespaced: bool = True,
    short_names: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
    status: bool = False,
) -> Obj:
    served: Obj = {
        "name": version,
        "served": True,
        "storage": True,
        "schema": {
            "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        },
    }
    if status:
        served["subresources"] = {"status": {}}
    names: Obj = {
        "kind": kind,
        "plural": plural,
        "singular": kind.lower(),
        "listKind": f"{kind}List",
    }
    if short_names:
        names["shortNames"] = list(short_names)
    if categories:
        names["categories"] = list(categories)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": names,
            "scope": "Namespaced" if namespaced else "Cluster",
            "versions": [served],
        },
    }


# The default policy every real cluster has for authenticated users (bootstrap policy).
_DISCOVERY_URLS = [
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/openapi",
    "/openapi/*",
    "/readyz",
    "/version",
    "/version/",
]
BOOTSTRAP_RBAC: tuple[tuple[str, Obj], ...] = (
    (
        "clusterroles",
        {
            "metadata": {"name": "cluster-admin"},
            "rules": [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        },
    ),
    (
        "clusterroles",
        {
            "metadata": {"name": "system:discovery"},
            "rules": [{"nonResourceURLs": _DISCOVERY_URLS, "verbs": ["get"]}],
        },
    ),
    (
        "clusterroles",
        {
            "metadata": {"name": "system:public-info-viewer"},
            "rules": [
                {
                    "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
                    "verbs": ["get"],
                }
            ],
        },
    ),
    (
        "clusterroles",
        {
            "metadata": {"name": "system:basic-user"},
            "rules": [
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    "verbs": ["create"],
                },
                {
                    "apiGroups": ["authentication.k8s.io"],
                    "resources": ["selfsubjectreviews"],
                    "verbs": ["create"],
                },
            ],
        },
    ),
    (
        "clusterroles",
        {
            "metadata": {"name": "view"},
            "rules": [
                {
                    "apiGroups": ["", "apps", "batch", "storage.k8s.io"],
                    "resources": [
                        "configmaps",
                        "namespaces",
                        "persistentvolumeclaims",
                        "serviceaccounts",
                        "deployments",
                        "jobs",
                        "cronjobs",
                        "storageclasses",
                    ],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        },
    ),
    *(
        (
            "clusterrolebindings",
            {
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": name,
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}
                    for group in groups
                ],
            },
        )
        for name, groups in (
            ("system:discovery", ("system:authenticated",)),
            # The one binding anonymous requests get: /version, /healthz, /livez, /readyz.
            ("system:public-info-viewer", ("system:authenticated", "system:unauthenticated")),
            ("system:basic-user", ("system:authenticated",)),
        )
    ),
    (
        "clusterrolebindings",
        {
            "metadata": {"name": "cluster-admin"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}
            ],
        },
    ),
)


def namespace(name: str) -> Placed:
    return (
        "",
        "v1",
        "namespaces",
        {
            "metadata": {"name": name},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        },
    )


def create(cluster: Cluster, placed: Placed) -> Obj:
    group, version, plural, obj = placed
    return cluster.store.create(cluster.rtype(group, version, plural), obj)


def install_defaults(cluster: Cluster) -> None:
    """What the real API server makes itself: the bootstrap policy and the system namespaces."""
    for plural, obj in BOOTSTRAP_RBAC:
        create(cluster, ("rbac.authorization.k8s.io", "v1", plural, obj))
    for name in ("default", "kube-system", "kube-public"):
        create(cluster, namespace(name))


def install_crds(cluster: Cluster, definitions: tuple[Obj, ...]) -> None:
    """Create `definitions` and wait until each is served: a controller establishes them."""
    for definition in definitions:
        create(cluster, ("apiextensions.k8s.io", "v1", "customresourcedefinitions", definition))
    deadline = time.monotonic() + CRD_WAIT
    while time.monotonic() < deadline:
        if all(
            cluster.registry.lookup(
                d["spec"]["group"], d["spec"]["versions"][0]["name"], d["spec"]["names"]["plural"]
            )
            for d in definitions
        ):
            return
        time.sleep(0.001)
    raise RuntimeError("custom resource definitions were not established")
