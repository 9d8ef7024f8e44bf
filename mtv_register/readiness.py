"""`doctor`'s checks of the clusters themselves: are they ready for cross-cluster live migration.

Versions (MTV on the host, OpenShift Virtualization on both) and feature gates (KubeVirt's
`DecentralizedLiveMigration`, Forklift's `FEATURE_OCP_LIVE_MIGRATION`); what KubeVirt publishes
and the network are `readiness_network`'s. Where each is recorded: `../shared/FORKLIFT.md`,
"Prerequisites"; what each means and how to fix it: docs/live-migration.md.
"""

from __future__ import annotations

import json
from typing import Any

from mtv_register.findings import (
    FAIL,
    OK,
    WARN,
    Finding,
    Member,
    Scope,
    each,
    guarded,
    parse_version,
)
from mtv_register.kube import (
    CLUSTER_SERVICE_VERSION,
    DEPLOYMENT,
    FORKLIFT_CONTROLLER,
    HYPERCONVERGED,
    KUBEVIRT,
    Kube,
)

Obj = dict[str, Any]

MTV_MINIMUM = (2, 10)
VIRTUALIZATION_MINIMUM = (4, 20)
KUBEVIRT_MINIMUM = (1, 6)  # what OpenShift Virtualization 4.20 ships
GATE = "DecentralizedLiveMigration"
FORKLIFT_FLAG = "FEATURE_OCP_LIVE_MIGRATION"


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def _json(patch: Obj) -> str:
    return json.dumps(patch, separators=(",", ":"))


def merge_patch(scope: Scope, kube: Kube, what: str, name: str, namespace: str, patch: Obj) -> str:
    return (
        f"{scope.kubectl(kube)} patch {what} {name} -n {namespace} --type merge -p '{_json(patch)}'"
    )


# --- what each cluster holds --------------------------------------------------------------------


def kubevirt_of(scope: Scope, member: Member) -> Obj | None:
    found = scope.items(member.kube, KUBEVIRT)
    return found[0] if found else None


def hyperconverged_of(scope: Scope, member: Member) -> Obj | None:
    found = scope.items(member.kube, HYPERCONVERGED)
    return found[0] if found else None


def where_of(obj: Obj) -> tuple[str, str]:
    meta = obj["metadata"]
    return meta["name"], meta.get("namespace", "")


def _forklift_controller(scope: Scope) -> Obj | None:
    return scope.get(scope.host, DEPLOYMENT, "forklift-controller", scope.namespace)


def _mtv_version(scope: Scope) -> tuple[tuple[int, ...] | None, str]:
    """MTV's version as OLM records it (its ClusterServiceVersion), else as the controller's
    Deployment is labelled."""
    for csv in scope.items(scope.host, CLUSTER_SERVICE_VERSION, scope.namespace):
        name = csv["metadata"]["name"]
        if name.startswith(("mtv-operator", "forklift-operator")):
            version = str((csv.get("spec") or {}).get("version", ""))
            return parse_version(version), f"ClusterServiceVersion {name}"
    deployment = _forklift_controller(scope)
    labels = ((deployment or {}).get("metadata") or {}).get("labels") or {}
    if labels.get("app.kubernetes.io/version"):
        version = str(labels["app.kubernetes.io/version"])
        return parse_version(version), "the forklift-controller Deployment's version label"
    return None, ""


# --- versions -----------------------------------------------------------------------------------


def versions(scope: Scope) -> list[Finding]:
    found = guarded("versions", scope.host.context, lambda: [_mtv(scope)])
    minors: dict[str, tuple[int, ...]] = {}
    for member in scope.members:

        def one(member: Member = member) -> list[Finding]:
            finding, version = _virtualization(scope, member)
            if version:
                minors[member.context] = version[:2]
            return [finding]

        found += guarded("versions", member.context, one)
    if len(minors) == 2 and len(set(minors.values())) == 2:
        found.append(
            Finding(
                "versions",
                "pair",
                WARN,
                "OpenShift Virtualization "
                + " and ".join(f"{_dotted(v)} on {c}" for c, v in minors.items()),
                "upgrade the older cluster: live migration is supported between equal minor "
                "versions",
            )
        )
    return found


def _mtv(scope: Scope) -> Finding:
    where = scope.host.context
    version, origin = _mtv_version(scope)
    if version is None:
        return Finding(
            "versions",
            where,
            WARN,
            f"no MTV version recorded in {scope.namespace} (no ClusterServiceVersion, no "
            "version label on forklift-controller)",
            f"{scope.kubectl(scope.host)} get csv -n {scope.namespace}: MTV 2.10 or later is "
            "needed",
        )
    if version[:2] < MTV_MINIMUM:
        return Finding(
            "versions",
            where,
            FAIL,
            f"MTV {_dotted(version)} ({origin}); cross-cluster live migration needs 2.10 or later",
            "upgrade the MTV operator to 2.10 or later (its OLM Subscription in "
            f"{scope.namespace})",
        )
    return Finding("versions", where, OK, f"MTV {_dotted(version)} ({origin})")


def _virtualization(scope: Scope, member: Member) -> tuple[Finding, tuple[int, ...] | None]:
    where = member.context
    hco = hyperconverged_of(scope, member)
    if hco is not None:
        recorded = {
            v.get("name"): v.get("version") for v in (hco.get("status") or {}).get("versions") or []
        }
        version = parse_version(str(recorded.get("operator") or ""))
        if version is None:
            return Finding(
                "versions",
                where,
                WARN,
                "HyperConverged records no operator version yet",
                f"{scope.kubectl(member.kube)} get hyperconverged -A -o yaml: wait until it is "
                "Available",
            ), None
        if version[:2] < VIRTUALIZATION_MINIMUM:
            return Finding(
                "versions",
                where,
                FAIL,
                f"OpenShift Virtualization {_dotted(version)}; live migration between clusters "
                "needs 4.20 or later",
                "upgrade OpenShift Virtualization to 4.20 or later (its OLM Subscription in "
                f"{where_of(hco)[1]})",
            ), version
        return Finding(
            "versions", where, OK, f"OpenShift Virtualization {_dotted(version)}"
        ), version
    kubevirt = kubevirt_of(scope, member)
    if kubevirt is None:
        return Finding(
            "versions",
            where,
            FAIL,
            "no KubeVirt: OpenShift Virtualization is not installed",
            "install OpenShift Virtualization 4.20 or later",
        ), None
    observed = str((kubevirt.get("status") or {}).get("observedKubeVirtVersion") or "")
    version = parse_version(observed)
    if version is None or version[:2] < KUBEVIRT_MINIMUM:
        return Finding(
            "versions",
            where,
            FAIL,
            f"KubeVirt {observed or 'of no recorded version'} and no HyperConverged; live "
            "migration between clusters needs KubeVirt 1.6 or later",
            "upgrade KubeVirt to 1.6 or later (OpenShift Virtualization 4.20)",
        ), None
    return Finding(
        "versions", where, OK, f"KubeVirt {observed} (no HyperConverged: not OpenShift)"
    ), None


def no_kubevirt(check: str, where: str) -> Finding:
    return Finding(check, where, FAIL, "no KubeVirt CR", "install OpenShift Virtualization 4.20+")


# --- feature gates ------------------------------------------------------------------------------


def feature_gates(scope: Scope) -> list[Finding]:
    found = each("feature-gates", scope.members, lambda m: [_gate(scope, m)])
    found += guarded("feature-gates", scope.host.context, lambda: [_forklift_flag(scope)])
    return found


def _gate(scope: Scope, member: Member) -> Finding:
    where = member.context
    kubevirt = kubevirt_of(scope, member)
    if kubevirt is None:
        return Finding(
            "feature-gates", where, FAIL, "no KubeVirt CR", "install OpenShift Virtualization"
        )
    developer = ((kubevirt.get("spec") or {}).get("configuration") or {}).get(
        "developerConfiguration"
    ) or {}
    gates = [str(g) for g in developer.get("featureGates") or []]
    enabled = GATE.lower() in (g.lower() for g in gates)
    hco = hyperconverged_of(scope, member)
    if hco is not None:
        name, namespace = where_of(hco)
        wanted = ((hco.get("spec") or {}).get("featureGates") or {}).get(
            "decentralizedLiveMigration"
        )
        if enabled:
            return Finding(
                "feature-gates", where, OK, f"KubeVirt has {GATE} (set by HyperConverged)"
            )
        if wanted is True:
            return Finding(
                "feature-gates",
                where,
                WARN,
                f"HyperConverged asks for {GATE} but KubeVirt does not have it yet",
                f"{scope.kubectl(member.kube)} get hyperconverged {name} -n {namespace} -o yaml: "
                "check that its operator is Available",
            )
        return Finding(
            "feature-gates",
            where,
            FAIL,
            f"{GATE} is off (HyperConverged spec.featureGates.decentralizedLiveMigration)",
            merge_patch(
                scope,
                member.kube,
                "hyperconverged",
                name,
                namespace,
                {"spec": {"featureGates": {"decentralizedLiveMigration": True}}},
            ),
        )
    if enabled:
        return Finding("feature-gates", where, OK, f"KubeVirt has {GATE}")
    name, namespace = where_of(kubevirt)
    wanted = [*gates, GATE]
    return Finding(
        "feature-gates",
        where,
        FAIL,
        f"KubeVirt {namespace}/{name} does not have the {GATE} feature gate",
        merge_patch(
            scope,
            member.kube,
            "kubevirt",
            name,
            namespace,
            {"spec": {"configuration": {"developerConfiguration": {"featureGates": wanted}}}},
        ),
    )


def _forklift_flag(scope: Scope) -> Finding:
    where = scope.host.context
    deployment = _forklift_controller(scope)
    if deployment is None:
        return Finding(
            "feature-gates",
            where,
            WARN,
            f"no forklift-controller Deployment in {scope.namespace}",
            f"{scope.kubectl(scope.host)} get deployments -n {scope.namespace}: check the MTV "
            "installation",
        )
    containers = (((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or []
    main = next(
        (c for c in containers if c.get("name") == "main"), containers[0] if containers else {}
    )
    env = {e.get("name"): e.get("value") for e in main.get("env") or []}
    if str(env.get(FORKLIFT_FLAG, "")).lower() == "true":
        return Finding(
            "feature-gates", where, OK, f"forklift-controller runs with {FORKLIFT_FLAG}=true"
        )
    controllers = scope.items(scope.host, FORKLIFT_CONTROLLER, scope.namespace)
    name = controllers[0]["metadata"]["name"] if controllers else "forklift-controller"
    asked = str(
        ((controllers[0].get("spec") or {}) if controllers else {}).get(
            "feature_ocp_live_migration", ""
        )
    )
    if asked.lower() == "true":
        return Finding(
            "feature-gates",
            where,
            WARN,
            f"ForkliftController {name} asks for live migration, but forklift-controller does not "
            f"run with {FORKLIFT_FLAG}=true yet",
            f"{scope.kubectl(scope.host)} get pods -n {scope.namespace}: wait for the operator to "
            "roll it out",
        )
    return Finding(
        "feature-gates",
        where,
        FAIL,
        f"forklift-controller runs with {FORKLIFT_FLAG}={env.get(FORKLIFT_FLAG) or 'unset'}",
        merge_patch(
            scope,
            scope.host,
            "forkliftcontroller",
            name,
            scope.namespace,
            {"spec": {"feature_ocp_live_migration": "true"}},
        ),
    )
