"""The OpenShift Virtualization and MTV profile: what a simulated cluster holds on top of what its
API server makes itself (`defaults`). Every cluster is an OpenShift Virtualization cluster
(KubeVirt, HyperConverged, CDI, NAD and instancetype CRDs, OLM's ClusterServiceVersion, an
`Infrastructure` naming its API URL); the MTV host also has Forklift's CRDs, its namespace and
the local `host` Provider. What cross-cluster live migration needs of both (`prerequisites`:
HyperConverged, KubeVirt, its CA ConfigMaps, the migration network; ForkliftController, its
Deployment, MTV's ClusterServiceVersion) comes from one function, `breakable_objects`, healthy
unless a break asks otherwise.

Custom resources are installed as CustomResourceDefinitions, so they are served (and listed in
discovery) exactly as the real API server serves them once established. The real clusters of
the test stack (`tests/realstack/profile.py`) get the same objects from here, and the same CRDs
from kind-config/crds/ (tests/sandbox/test_virtualization_profile.py keeps the two in step).
"""

from __future__ import annotations

from collections.abc import Set

from mtv_register.sandbox.cluster import Cluster
from mtv_register.sandbox.defaults import Placed, crd, create, install_crds, namespace
from mtv_register.sandbox.mtv.prerequisites import (
    BREAKS,
    CA_BUNDLE_KEY,
    CNV_NAMESPACE,
    MTV_NAMESPACE,
    Break,
    breakable_objects,
    forklift_deployment,
    kubevirt_ca_bundle,
)

__all__ = [
    "BREAKS",
    "CA_BUNDLE_KEY",
    "CNV_NAMESPACE",
    "FORKLIFT_CRDS",
    "MTV_NAMESPACE",
    "VIRTUALIZATION_CRDS",
    "Break",
    "breakable_objects",
    "forklift_deployment",
    "install_mtv",
    "install_prerequisites",
    "install_virtualization",
    "kubevirt_ca_bundle",
    "mtv_objects",
    "virtualization_objects",
]

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
        "hco.kubevirt.io",
        "v1beta1",
        "HyperConverged",
        "hyperconvergeds",
        short_names=("hco", "hcos"),
        status=True,
    ),
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
    # OLM runs on every OpenShift cluster; MTV's operator records its version in one.
    crd(
        "operators.coreos.com",
        "v1alpha1",
        "ClusterServiceVersion",
        "clusterserviceversions",
        short_names=("csv", "csvs"),
        categories=("olm",),
        status=True,
    ),
)
FORKLIFT_CRDS = (
    crd("forklift.konveyor.io", "v1beta1", "Provider", "providers", status=True),
    crd(
        "forklift.konveyor.io", "v1beta1", "ForkliftController", "forkliftcontrollers", status=True
    ),
)


def virtualization_objects(url: str, name: str) -> list[Placed]:
    """What an OpenShift Virtualization cluster holds beyond its CRDs and a real server's own
    objects but the prerequisites of live migration (`breakable_objects`): its namespaces,
    nodes, the default StorageClass and the `Infrastructure` naming its API URL. The real
    clusters of the test stack get the same."""
    return [
        *(namespace(ns) for ns in ("openshift-config", "openshift-cnv")),
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
    ]


def mtv_objects() -> list[Placed]:
    """Forklift's namespace and the local `host` provider (its ForkliftController, Deployment and
    ClusterServiceVersion come from `breakable_objects`)."""
    return [
        namespace(MTV_NAMESPACE),
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


def install_virtualization(cluster: Cluster) -> None:
    """An OpenShift Virtualization cluster, as far as this project looks at one (on top of
    `defaults.install_defaults`, what the API server makes itself)."""
    install_crds(cluster, VIRTUALIZATION_CRDS)
    for placed in virtualization_objects(cluster.url, cluster.name):
        create(cluster, placed)


def install_mtv(cluster: Cluster) -> None:
    """Forklift on top: its CRDs, its namespace and the host provider."""
    install_crds(cluster, FORKLIFT_CRDS)
    for placed in mtv_objects():
        create(cluster, placed)


def install_prerequisites(
    cluster: Cluster,
    breaks: Set[str] = frozenset(),
    *,
    kubevirt_ca: str,
    external_ca: str,
    forklift_version: str | None = None,
) -> None:
    """The objects of `breakable_objects`, after `install_virtualization` (and `install_mtv`
    when `forklift_version` is given, on the MTV host)."""
    for placed in breakable_objects(
        breaks,
        cluster=cluster.name,
        kubevirt_ca=kubevirt_ca,
        external_ca=external_ca,
        forklift_version=forklift_version,
    ):
        create(cluster, placed)
