"""The two operators whose settings `doctor` tells users to change, as far as they carry a setting
into what they manage: HCO, which writes HyperConverged's `spec.featureGates.
decentralizedLiveMigration` and `spec.liveMigrationConfig.network` into the KubeVirt CR
(the `DecentralizedLiveMigration` gate, `spec.configuration.migrations.network`), and the
forklift operator, which writes ForkliftController's `spec.feature_ocp_live_migration` into the
forklift-controller Deployment (container `main`, env `FEATURE_OCP_LIVE_MIGRATION`; "false"
when the setting is unset). So a fix `doctor` prints can be shown to clear its check.

Only a write to HyperConverged or ForkliftController is followed: a hand edit of KubeVirt or the
Deployment stays (real HCO would overwrite it at its next reconcile), deleting either owner
deletes nothing, and no pod is rolled out. The write is made in the writer's own request, before
its answer, so the next read sees it (a real operator lags by a reconcile).

The real stack (tests/realstack) runs no such operators: there, a HyperConverged or
ForkliftController patch changes that object only.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from mtv_register.sandbox import apistatus
from mtv_register.sandbox.cluster import Cluster
from mtv_register.sandbox.mtv.prerequisites import FORKLIFT_FLAG, GATE
from mtv_register.sandbox.resources import ResourceType
from mtv_register.sandbox.store import Event

Obj = dict[str, Any]
CONFLICT_RETRIES = 5
FORKLIFT_DEPLOYMENT = "forklift-controller"


class Operators:
    """Listens to the cluster's store; `install` once the profile's objects are in place."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._kubevirts = cluster.rtype("kubevirt.io", "v1", "kubevirts")
        self._deployments = cluster.rtype("apps", "v1", "deployments")
        self._owners: dict[str, Callable[[Obj], None]] = {
            "hco.kubevirt.io/hyperconvergeds": self._hyperconverged,
            "forklift.konveyor.io/forkliftcontrollers": self._forklift_controller,
        }

    def install(self) -> Operators:
        self.cluster.store.add_listener(self._on_event)
        return self

    def _on_event(self, event: Event) -> None:
        follow = self._owners.get(event.rtype_key)
        if follow is not None and event.type in ("ADDED", "MODIFIED"):
            follow(event.obj)

    # -- HCO ---------------------------------------------------------------------------------

    def _hyperconverged(self, hco: Obj) -> None:
        spec = hco.get("spec") or {}
        gate_on = (spec.get("featureGates") or {}).get("decentralizedLiveMigration") is True
        network = (spec.get("liveMigrationConfig") or {}).get("network")
        meta = hco["metadata"]

        def carry(kubevirt: Obj) -> None:
            configuration = kubevirt.setdefault("spec", {}).setdefault("configuration", {})
            developer = configuration.setdefault("developerConfiguration", {})
            gates = list(developer.get("featureGates") or [])
            held = [g for g in gates if str(g).lower() == GATE.lower()]
            if gate_on and not held:
                gates.append(GATE)
            elif not gate_on:
                gates = [g for g in gates if g not in held]
            developer["featureGates"] = gates
            migrations = configuration.setdefault("migrations", {})
            if network:
                migrations["network"] = network
            else:
                migrations.pop("network", None)

        self._update(self._kubevirts, meta["namespace"], f"kubevirt-{meta['name']}", carry)

    # -- the forklift operator ---------------------------------------------------------------

    def _forklift_controller(self, controller: Obj) -> None:
        asked = (controller.get("spec") or {}).get("feature_ocp_live_migration", "false")
        # The operator's Ansible writes the setting as it reads it: a YAML true as "true".
        value = str(asked).lower() if isinstance(asked, bool) else str(asked)

        def carry(deployment: Obj) -> None:
            pod = (
                deployment.setdefault("spec", {}).setdefault("template", {}).setdefault("spec", {})
            )
            for container in pod.get("containers") or []:
                if container.get("name") != "main":
                    continue
                env = container.setdefault("env", [])
                found = next((e for e in env if e.get("name") == FORKLIFT_FLAG), None)
                if found is None:
                    env.append({"name": FORKLIFT_FLAG, "value": value})
                else:
                    found.pop("valueFrom", None)
                    found["value"] = value

        namespace = controller["metadata"]["namespace"]
        self._update(self._deployments, namespace, FORKLIFT_DEPLOYMENT, carry)

    # -- writes ------------------------------------------------------------------------------

    def _update(
        self, rtype: ResourceType, namespace: str, name: str, change: Callable[[Obj], None]
    ) -> None:
        """Read, change, write; again on a conflict. Nothing to write to is nothing to do."""
        for _ in range(CONFLICT_RETRIES):
            current = self.cluster.store.find(rtype, namespace, name)
            if current is None:
                return
            changed = copy.deepcopy(current)
            change(changed)
            if changed == current:
                return
            try:
                self.cluster.store.update(rtype, changed)
                return
            except apistatus.ApiError as error:
                if error.reason != "Conflict":
                    return
