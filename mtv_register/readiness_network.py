"""`doctor`'s checks of what cross-cluster live migration travels over: what KubeVirt publishes
for it (synchronisation addresses, its CA ConfigMaps) and the network (a migration network named
by KubeVirt and backed by a NetworkAttachmentDefinition, or Submariner: the source Provider's
setting, ServiceExports served on the destination, and the destination account's right to them).
"""

from __future__ import annotations

from mtv_register.findings import FAIL, OK, WARN, Finding, Member, Scope, each, guarded
from mtv_register.kube import CONFIG_MAP, CUSTOM_RESOURCE_DEFINITION, NETWORK_ATTACHMENT_DEFINITION
from mtv_register.readiness import (
    GATE,
    hyperconverged_of,
    kubevirt_of,
    merge_patch,
    no_kubevirt,
    where_of,
)

KUBEVIRT_CONFIG_MAPS = ("kubevirt-ca", "kubevirt-external-ca")
SERVICE_EXPORTS_CRD = "serviceexports.multicluster.x-k8s.io"


# --- what KubeVirt publishes --------------------------------------------------------------------


def kubevirt(scope: Scope) -> list[Finding]:
    found = each("kubevirt", scope.members, lambda m: _published(scope, m))
    return found


def _published(scope: Scope, member: Member) -> list[Finding]:
    where = member.context
    kubevirt = kubevirt_of(scope, member)
    if kubevirt is None:
        return [
            Finding("kubevirt", where, FAIL, "no KubeVirt CR", "install OpenShift Virtualization")
        ]
    name, namespace = where_of(kubevirt)
    addresses = (kubevirt.get("status") or {}).get("synchronizationAddresses") or []
    found = [
        Finding(
            "kubevirt", where, OK, f"synchronization addresses {', '.join(map(str, addresses))}"
        )
        if addresses
        else Finding(
            "kubevirt",
            where,
            FAIL,
            f"KubeVirt {namespace}/{name} publishes no status.synchronizationAddresses",
            f"enable {GATE} first; then {scope.kubectl(member.kube)} get pods -n {namespace} "
            "-l kubevirt.io=virt-synchronization-controller must show it running",
        )
    ]
    for config_map in KUBEVIRT_CONFIG_MAPS:
        held = scope.get(member.kube, CONFIG_MAP, config_map, namespace)
        # The external CA's ConfigMap may be empty once its CAs were merged into kubevirt-ca.
        filled = held is not None and (
            config_map != "kubevirt-ca" or any((held.get("data") or {}).values())
        )
        if filled:
            found.append(Finding("kubevirt", where, OK, f"ConfigMap {namespace}/{config_map}"))
        else:
            found.append(
                Finding(
                    "kubevirt",
                    where,
                    FAIL,
                    f"ConfigMap {namespace}/{config_map} is "
                    + ("missing" if held is None else "empty"),
                    "virt-operator writes it: "
                    f"{scope.kubectl(member.kube)} get pods -n {namespace} "
                    "-l kubevirt.io=virt-operator",
                )
            )
    return found


# --- network ------------------------------------------------------------------------------------


def network(scope: Scope) -> list[Finding]:
    """Submariner when the source Provider asks for it (Forklift then goes through it, whatever
    migration network there is), else each cluster's migration network."""
    submariner = guarded("network", "pair", lambda: _submariner(scope))
    if submariner:
        return submariner
    return each("network", scope.members, lambda m: [_migration_network(scope, m)])


def _migration_network(scope: Scope, member: Member) -> Finding:
    where = member.context
    kubevirt = kubevirt_of(scope, member)
    if kubevirt is None:
        return no_kubevirt("network", where)
    _, namespace = where_of(kubevirt)
    chosen = (
        ((kubevirt.get("spec") or {}).get("configuration") or {}).get("migrations") or {}
    ).get("network")
    if chosen:
        if scope.get(member.kube, NETWORK_ATTACHMENT_DEFINITION, str(chosen), namespace):
            return Finding("network", where, OK, f"migration network {namespace}/{chosen}")
        return Finding(
            "network",
            where,
            FAIL,
            f"the migration network {namespace}/{chosen} has no NetworkAttachmentDefinition",
            f"create NetworkAttachmentDefinition {chosen} in {namespace}, or point "
            "spec.liveMigrationConfig.network of HyperConverged at one that exists",
        )
    existing = scope.items(member.kube, NETWORK_ATTACHMENT_DEFINITION, namespace)
    hco = hyperconverged_of(scope, member)
    if existing and hco is not None:
        hco_name, hco_namespace = where_of(hco)
        nad = existing[0]["metadata"]["name"]
        fix = merge_patch(
            scope,
            member.kube,
            "hyperconverged",
            hco_name,
            hco_namespace,
            {"spec": {"liveMigrationConfig": {"network": nad}}},
        )
    else:
        fix = (
            f"create a NetworkAttachmentDefinition for migrations in {namespace} and name it in "
            "HyperConverged spec.liveMigrationConfig.network, or register the pair with "
            "--submariner (docs/live-migration.md)"
        )
    return Finding(
        "network", where, FAIL, "no migration network and no Submariner for this pair", fix
    )


def _submariner(scope: Scope) -> list[Finding]:
    """Submariner, when the source Provider asks for it: the destination serves ServiceExports,
    and the destination's account may create and delete them."""
    source = scope.member("source")
    provider = scope.providers.get(source.provider) or {}
    if str(((provider.get("spec") or {}).get("settings") or {}).get("submariner", "")) != "true":
        return []
    destination = scope.member("destination")
    if scope.get(destination.kube, CUSTOM_RESOURCE_DEFINITION, SERVICE_EXPORTS_CRD) is None:
        return [
            Finding(
                "network",
                destination.context,
                FAIL,
                f'the source Provider sets submariner "true", but {destination.context} does not '
                f"serve {SERVICE_EXPORTS_CRD}",
                "install Submariner (without globalnet) on both clusters, with its Lighthouse CRDs",
            )
        ]
    from mtv_register.credential_checks import denied

    missing = denied(
        scope,
        destination,
        [("multicluster.x-k8s.io", "serviceexports", v) for v in ("create", "delete")],
    )
    if missing is None:
        return [
            Finding(
                "network",
                destination.context,
                WARN,
                "Submariner: the destination has no provider Secret to check its rights with",
            )
        ]
    if missing:
        return [
            Finding(
                "network",
                destination.context,
                FAIL,
                "Submariner: the destination's account may not "
                + ", ".join(f"{verb} {resource}" for _, resource, verb in missing),
                f"re-run register with --submariner: {scope.command} --submariner",
            )
        ]
    return [
        Finding(
            "network",
            "pair",
            OK,
            f"Submariner: {SERVICE_EXPORTS_CRD} on {destination.context}, and its account may "
            "create and delete them",
        )
    ]
