"""What a new simulated cluster holds: an OpenShift Virtualization cluster, and the MTV host.

Custom resources are installed as CustomResourceDefinitions, so they are served (and listed in
discovery) exactly as the real API server serves them once established.
"""

from __future__ import annotations

from typing import Any

from mtv_register.sandbox.cluster import Cluster

Obj = dict[str, Any]
MTV_NAMESPACE = "openshift-mtv"


def crd(
    group: str,
    version: str,
    kind: str,
    plural: str,
    *,
    namespaced: bool = True,
    short_names: tuple[str, ...] = (),
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


VIRTUALIZATION_CRDS = (
    crd(
        "kubevirt.io",
        "v1",
        "VirtualMachine",
        "virtualmachines",
        short_names=("vm", "vms"),
        status=True,
    ),
    crd(
        "kubevirt.io",
        "v1",
        "VirtualMachineInstance",
        "virtualmachineinstances",
        short_names=("vmi", "vmis"),
        status=True,
    ),
    crd(
        "kubevirt.io",
        "v1",
        "VirtualMachineInstanceMigration",
        "virtualmachineinstancemigrations",
        short_names=("vmim",),
        status=True,
    ),
    crd("kubevirt.io", "v1", "KubeVirt", "kubevirts", short_names=("kv",), status=True),
    crd(
        "cdi.kubevirt.io", "v1beta1", "DataVolume", "datavolumes", short_names=("dv",), status=True
    ),
    crd(
        "k8s.cni.cncf.io",
        "v1",
        "NetworkAttachmentDefinition",
        "network-attachment-definitions",
        short_names=("net-attach-def",),
    ),
    crd(
        "instancetype.kubevirt.io",
        "v1beta1",
        "VirtualMachineInstancetype",
        "virtualmachineinstancetypes",
        short_names=("vminstancetype",),
    ),
    crd(
        "instancetype.kubevirt.io",
        "v1beta1",
        "VirtualMachineClusterInstancetype",
        "virtualmachineclusterinstancetypes",
        namespaced=False,
        short_names=("vmclusterinstancetype",),
    ),
    crd(
        "instancetype.kubevirt.io",
        "v1beta1",
        "VirtualMachinePreference",
        "virtualmachinepreferences",
        short_names=("vmpref",),
    ),
    crd(
        "instancetype.kubevirt.io",
        "v1beta1",
        "VirtualMachineClusterPreference",
        "virtualmachineclusterpreferences",
        namespaced=False,
        short_names=("vmcpref",),
    ),
    crd(
        "config.openshift.io",
        "v1",
        "Infrastructure",
        "infrastructures",
        namespaced=False,
        status=True,
    ),
)
FORKLIFT_CRDS = (
    crd("forklift.konveyor.io", "v1beta1", "Provider", "providers", status=True),
    crd(
        "forklift.konveyor.io", "v1beta1", "ForkliftController", "forkliftcontrollers", status=True
    ),
)

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


# An object of the profile: (group, version, plural, object).
Placed = tuple[str, str, str, Obj]


def _namespace(name: str) -> Placed:
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


def virtualization_objects(url: str, name: str) -> list[Placed]:
    """What an OpenShift Virtualization cluster holds beyond its CRDs and a real server's own
    objects: its namespaces, nodes, the default StorageClass, the `Infrastructure` naming its
    API URL, and the KubeVirt CR. The real clusters of the test stack get the same."""
    return [
        *(_namespace(ns) for ns in ("openshift-config", "openshift-cnv")),
        *(
            (
                "",
                "v1",
                "nodes",
                {"metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}}},
            )
            for node in ("worker-0", "worker-1")
        ),
        (
            "storage.k8s.io",
            "v1",
            "storageclasses",
            {
                "metadata": {
                    "name": "standard",
                    "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                },
                "provisioner": "kubernetes.io/no-provisioner",
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "WaitForFirstConsumer",
            },
        ),
        (
            "config.openshift.io",
            "v1",
            "infrastructures",
            {
                "metadata": {"name": "cluster"},
                "spec": {},
                "status": {
                    "apiServerURL": url,
                    "apiServerInternalURI": url,
                    "platform": "None",
                    "infrastructureName": name,
                },
            },
        ),
        (
            "kubevirt.io",
            "v1",
            "kubevirts",
            {
                "metadata": {
                    "name": "kubevirt-kubevirt-hyperconverged",
                    "namespace": "openshift-cnv",
                },
                "spec": {"configuration": {"developerConfiguration": {"featureGates": []}}},
            },
        ),
    ]


def mtv_objects() -> list[Placed]:
    """Forklift's namespace, its controller settings and the local `host` provider."""
    return [
        _namespace(MTV_NAMESPACE),
        (
            "forklift.konveyor.io",
            "v1beta1",
            "forkliftcontrollers",
            {
                "metadata": {"name": "forklift-controller", "namespace": MTV_NAMESPACE},
                "spec": {"feature_ocp_live_migration": "false"},
            },
        ),
        (
            "forklift.konveyor.io",
            "v1beta1",
            "providers",
            {
                "metadata": {"name": "host", "namespace": MTV_NAMESPACE},
                "spec": {"type": "openshift", "url": ""},
            },
        ),
    ]


def _create(cluster: Cluster, group: str, version: str, plural: str, obj: Obj) -> Obj:
    return cluster.store.create(cluster.rtype(group, version, plural), obj)


def install_virtualization(cluster: Cluster) -> None:
    """An OpenShift Virtualization cluster, as far as this project looks at one."""
    for plural, obj in BOOTSTRAP_RBAC:
        _create(cluster, "rbac.authorization.k8s.io", "v1", plural, obj)
    for ns in ("default", "kube-system", "kube-public"):  # a real server makes these itself
        _create(cluster, *_namespace(ns))
    for definition in VIRTUALIZATION_CRDS:
        _create(cluster, "apiextensions.k8s.io", "v1", "customresourcedefinitions", definition)
    _wait_served(cluster, VIRTUALIZATION_CRDS)
    for placed in virtualization_objects(cluster.url, cluster.name):
        _create(cluster, *placed)


def install_mtv(cluster: Cluster) -> None:
    """Forklift on top: its CRDs, its namespace, its controller settings and the host provider."""
    for definition in FORKLIFT_CRDS:
        _create(cluster, "apiextensions.k8s.io", "v1", "customresourcedefinitions", definition)
    _wait_served(cluster, FORKLIFT_CRDS)
    for placed in mtv_objects():
        _create(cluster, *placed)


def _wait_served(cluster: Cluster, definitions: tuple[Obj, ...]) -> None:
    """CRDs are established by a controller; the profile waits for it before using them."""
    import time

    deadline = time.monotonic() + 5
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
