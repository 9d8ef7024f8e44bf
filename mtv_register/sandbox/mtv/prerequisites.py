"""The prerequisites of cross-cluster live migration as the profile holds them: what `doctor`
reads (FORKLIFT.md, "Prerequisites"), healthy unless a break asks otherwise.

On every cluster, OpenShift Virtualization's: the HyperConverged, the KubeVirt it manages, the
KubeVirt CA ConfigMaps and the migration network. On the MTV host, MTV's: the
ForkliftController, the forklift-controller Deployment it makes, and the operator's
ClusterServiceVersion. `breakable_objects` builds them all from one set of breaks; `BREAKS`
names each break and the context it falls on unless told otherwise.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Set
from dataclasses import dataclass

from mtv_register.sandbox.certs import new_ca
from mtv_register.sandbox.defaults import Placed

MTV_NAMESPACE = "openshift-mtv"
CNV_NAMESPACE = "openshift-cnv"
HYPERCONVERGED = "kubevirt-hyperconverged"
KUBEVIRT = f"kubevirt-{HYPERCONVERGED}"  # as HCO names the KubeVirt it makes
GATE = "DecentralizedLiveMigration"
FORKLIFT_FLAG = "FEATURE_OCP_LIVE_MIGRATION"
MIGRATION_NETWORK = "migration-network"
CA_BUNDLE_KEY = "ca-bundle"
SYNCHRONIZATION_PORT = 9185
VIRTUALIZATION_VERSION = "4.20.1"
KUBEVIRT_VERSION = "v1.6.2"  # what OpenShift Virtualization 4.20 ships

# Where a break falls unless `NAME@CONTEXT` names another: one of these roles.
SOURCE, DESTINATION, MTV_HOST = "source", "destination", "mtv-host"


@dataclass(frozen=True)
class Break:
    name: str
    default: str  # SOURCE, DESTINATION or MTV_HOST (MTV's breaks fall on the MTV host only)
    what: str

    @property
    def mtv_host_only(self) -> bool:
        return self.default == MTV_HOST


BREAKS = {
    b.name: b
    for b in (
        Break(
            "feature-gate",
            SOURCE,
            f"HyperConverged decentralizedLiveMigration false, {GATE} not in KubeVirt",
        ),
        Break(
            "mtv-flag",
            MTV_HOST,
            f'ForkliftController and its Deployment\'s {FORKLIFT_FLAG} "false"',
        ),
        Break("sync-addresses", DESTINATION, "KubeVirt publishes no synchronizationAddresses"),
        Break("kubevirt-ca", SOURCE, "no kubevirt-ca ConfigMap"),
        Break(
            "migration-network",
            SOURCE,
            "no migration network in HyperConverged nor KubeVirt, and no "
            "NetworkAttachmentDefinition",
        ),
        Break("old-virtualization", SOURCE, "OpenShift Virtualization 4.19.3 (KubeVirt v1.5.3)"),
        Break("old-mtv", MTV_HOST, "MTV 2.9.4 (its ClusterServiceVersion)"),
    )
}


def kubevirt_ca_bundle() -> str:
    """A CA as virt-operator makes its own (`kubevirt.io@<unix time>`), in PEM."""
    return new_ca(f"kubevirt.io@{int(time.time())}").pem


def breakable_objects(
    breaks: Set[str] = frozenset(),
    *,
    cluster: str,
    kubevirt_ca: str,
    external_ca: str,
    forklift_version: str | None = None,
) -> list[Placed]:
    """What `doctor` reads on one cluster, healthy but for `breaks` (names of `BREAKS` that fall
    on this cluster). OpenShift Virtualization's objects always; with `forklift_version` (the
    release the MTV host runs, `v2.12.5`), MTV's too. `kubevirt_ca` is the cluster's own KubeVirt
    CA, `external_ca` those of the clusters it migrates with (as the CA exchange leaves them)."""
    unknown = set(breaks) - BREAKS.keys()
    if unknown:
        raise ValueError(f"unknown breaks: {', '.join(sorted(unknown))}")
    placed = [_hyperconverged(breaks), _kubevirt(cluster, breaks)]
    if "kubevirt-ca" not in breaks:
        placed.append(_config_map("kubevirt-ca", kubevirt_ca))
    placed.append(_config_map("kubevirt-external-ca", external_ca))
    if "migration-network" not in breaks:
        placed.append(_network_attachment_definition())
    if forklift_version is not None:
        flag = "false" if "mtv-flag" in breaks else "true"
        placed += [
            _forklift_controller(flag),
            forklift_deployment(forklift_version, live_migration=flag),
            _cluster_service_version(
                "2.9.4" if "old-mtv" in breaks else _release(forklift_version)
            ),
        ]
    return placed


# -- OpenShift Virtualization ----------------------------------------------------------------


def _condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2025-01-01T00:00:00Z",
    }


def _live_migration_config(breaks: Set[str]) -> dict[str, object]:
    """HyperConverged's defaults, which HCO copies into KubeVirt's `migrations`."""
    config: dict[str, object] = {
        "allowAutoConverge": False,
        "allowPostCopy": False,
        "completionTimeoutPerGiB": 150,
        "parallelMigrationsPerCluster": 5,
        "parallelOutboundMigrationsPerNode": 2,
        "progressTimeout": 150,
    }
    if "migration-network" not in breaks:
        config["network"] = MIGRATION_NETWORK
    return config


def _hyperconverged(breaks: Set[str]) -> Placed:
    version = "4.19.3" if "old-virtualization" in breaks else VIRTUALIZATION_VERSION
    return (
        "hco.kubevirt.io",
        "v1beta1",
        "hyperconvergeds",
        {
            "metadata": {"name": HYPERCONVERGED, "namespace": CNV_NAMESPACE},
            "spec": {
                "featureGates": {
                    "decentralizedLiveMigration": "feature-gate" not in breaks,
                    "downwardMetrics": False,
                    "deployKubeSecondaryDNS": False,
                },
                "liveMigrationConfig": _live_migration_config(breaks),
            },
            "status": {
                "conditions": [
                    _condition(
                        "ReconcileComplete",
                        "True",
                        "ReconcileCompleted",
                        "Reconcile completed successfully",
                    ),
                    _condition(
                        "Available",
                        "True",
                        "ReconcileCompleted",
                        "Reconcile completed successfully",
                    ),
                    _condition(
                        "Progressing",
                        "False",
                        "ReconcileCompleted",
                        "Reconcile completed successfully",
                    ),
                    _condition(
                        "Degraded",
                        "False",
                        "ReconcileCompleted",
                        "Reconcile completed successfully",
                    ),
                    _condition(
                        "Upgradeable",
                        "True",
                        "ReconcileCompleted",
                        "Reconcile completed successfully",
                    ),
                ],
                "observedGeneration": 1,
                "versions": [{"name": "operator", "version": version}],
            },
        },
    )


def _synchronization_address(cluster: str) -> str:
    """virt-synchronization-controller's pod address: stable per cluster, in OpenShift's pod
    network (10.128.0.0/14)."""
    digest = zlib.crc32(cluster.encode())
    address = f"10.{128 + digest % 4}.{digest >> 8 & 0xFF}.{2 + (digest >> 16) % 250}"
    return f"{address}:{SYNCHRONIZATION_PORT}"


def _kubevirt(cluster: str, breaks: Set[str]) -> Placed:
    version = "v1.5.3" if "old-virtualization" in breaks else KUBEVIRT_VERSION
    migrations = _live_migration_config(breaks)
    status: dict[str, object] = {
        "phase": "Deployed",
        "conditions": [
            _condition("Available", "True", "AllComponentsReady", "All components are ready."),
            _condition("Progressing", "False", "AllComponentsReady", "All components are ready."),
            _condition("Degraded", "False", "AllComponentsReady", "All components are ready."),
        ],
        "observedKubeVirtVersion": version,
        "targetKubeVirtVersion": version,
        "operatorVersion": version,
        "observedKubeVirtRegistry": "registry.redhat.io/container-native-virtualization",
    }
    if "sync-addresses" not in breaks:
        status["synchronizationAddresses"] = [_synchronization_address(cluster)]
    return (
        "kubevirt.io",
        "v1",
        "kubevirts",
        {
            "metadata": {
                "name": KUBEVIRT,
                "namespace": CNV_NAMESPACE,
                "labels": {"app": HYPERCONVERGED, "app.kubernetes.io/managed-by": "hco-operator"},
            },
            "spec": {
                "certificateRotateStrategy": {},
                "configuration": {
                    "developerConfiguration": {
                        "featureGates": [] if "feature-gate" in breaks else [GATE]
                    },
                    "migrations": migrations,
                },
                "workloadUpdateStrategy": {"workloadUpdateMethods": ["LiveMigrate"]},
            },
            "status": status,
        },
    )


def _config_map(name: str, bundle: str) -> Placed:
    return (
        "",
        "v1",
        "configmaps",
        {
            "metadata": {
                "name": name,
                "namespace": CNV_NAMESPACE,
                "labels": {
                    "app.kubernetes.io/component": "kubevirt",
                    "app.kubernetes.io/managed-by": "virt-operator",
                },
            },
            "data": {CA_BUNDLE_KEY: bundle},
        },
    )


def _network_attachment_definition() -> Placed:
    """A dedicated migration network as OpenShift's documentation sets one up."""
    config = {
        "cniVersion": "0.3.1",
        "name": MIGRATION_NETWORK,
        "type": "macvlan",
        "master": "eth1",
        "mode": "bridge",
        "ipam": {"type": "whereabouts", "range": "10.200.5.0/24"},
    }
    return (
        "k8s.cni.cncf.io",
        "v1",
        "network-attachment-definitions",
        {
            "metadata": {"name": MIGRATION_NETWORK, "namespace": CNV_NAMESPACE},
            "spec": {"config": json.dumps(config)},
        },
    )


# -- MTV -------------------------------------------------------------------------------------


def _release(version: str) -> str:
    """`v2.12.5` as OLM and the operator's labels write it: `2.12.5`."""
    return version.removeprefix("v")


def _forklift_controller(flag: str) -> Placed:
    return (
        "forklift.konveyor.io",
        "v1beta1",
        "forkliftcontrollers",
        {
            "metadata": {"name": "forklift-controller", "namespace": MTV_NAMESPACE},
            "spec": {
                "feature_ocp_live_migration": flag,
                "feature_ui_plugin": "true",
                "feature_validation": "true",
                "feature_volume_populator": "true",
            },
        },
    )


def forklift_deployment(
    version: str, image: str | None = None, *, live_migration: str = "true"
) -> Placed:
    """The forklift-controller Deployment as the MTV operator makes it (container `main`, its
    `FEATURE_OCP_LIVE_MIGRATION` from the ForkliftController), labelled with the release. No
    scheduler runs, so it never starts a pod; the controller runs in-process on the sandbox, or
    as a process beside the real stack's API server."""
    release = _release(version)
    labels = {"app": "forklift", "control-plane": "controller-manager"}
    return (
        "apps",
        "v1",
        "deployments",
        {
            "metadata": {
                "name": "forklift-controller",
                "namespace": MTV_NAMESPACE,
                "labels": {**labels, "app.kubernetes.io/version": release},
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "forklift-controller",
                        "containers": [
                            {
                                "name": "main",
                                "image": image or f"quay.io/kubev2v/forklift-controller:{version}",
                                "env": [
                                    {"name": "ROLE", "value": "main"},
                                    {"name": FORKLIFT_FLAG, "value": live_migration},
                                ],
                            }
                        ],
                    },
                },
            },
        },
    )


def _cluster_service_version(release: str) -> Placed:
    name = f"mtv-operator.v{release}"
    return (
        "operators.coreos.com",
        "v1alpha1",
        "clusterserviceversions",
        {
            "metadata": {
                "name": name,
                "namespace": MTV_NAMESPACE,
                "labels": {f"operators.coreos.com/mtv-operator.{MTV_NAMESPACE}": ""},
            },
            "spec": {
                "displayName": "Migration Toolkit for Virtualization Operator",
                "version": release,
                "provider": {"name": "Red Hat"},
                "maturity": "stable",
                "install": {"strategy": "deployment"},
            },
            "status": {
                "phase": "Succeeded",
                "reason": "InstallSucceeded",
                "message": "install strategy completed with no errors",
            },
        },
    )
