"""What the real clusters hold before a test: the OpenShift Virtualization profile (the CRDs of
kind-config/crds and the sandbox profile's objects, an `Infrastructure` naming the API URL
among them) on every cluster, and on the MTV host Forklift's CRDs, namespace and `host` Provider;
then the prerequisites of cross-cluster live migration (`breakable_objects`: HyperConverged,
KubeVirt, its CA ConfigMaps, the migration network; on the MTV host the ForkliftController, the
forklift-controller Deployment and MTV's ClusterServiceVersion). The objects come from the
sandbox's own profile, so both kinds of cluster hold the same; no operator carries a
HyperConverged or ForkliftController change further here, as the sandbox's imitation does."""

from __future__ import annotations

from collections.abc import Set
from pathlib import Path
from typing import Any

import yaml

from mtv_register.sandbox.defaults import Placed
from mtv_register.sandbox.mtv.profile import breakable_objects, mtv_objects, virtualization_objects
from tests.realstack.api import Admin, wait_until

Obj = dict[str, Any]
CRDS = Path(__file__).resolve().parents[2] / "kind-config" / "crds"
FORKLIFT_CRDS = "forklift.konveyor.io.yaml"
CRD_COLLECTION = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def _documents(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def collection(group: str, version: str, plural: str, namespace: str = "") -> str:
    base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


def install_crds(admin: Admin, files: list[Path]) -> None:
    """Create the CRDs of `files` and wait until each is Established (served)."""
    definitions = [doc for path in files for doc in _documents(path)]
    for definition in definitions:
        admin.apply(CRD_COLLECTION, definition)

    def established(name: str) -> bool:
        crd = admin.get(f"{CRD_COLLECTION}/{name}") or {}
        return any(
            c.get("type") == "Established" and c.get("status") == "True"
            for c in (crd.get("status") or {}).get("conditions") or []
        )

    for definition in definitions:
        name = definition["metadata"]["name"]
        wait_until(lambda n=name: established(n), timeout=60, what=f"CRD {name} to be established")


def place(admin: Admin, placed: Placed) -> Obj:
    """Create one profile object; a `status` it carries is written through /status, as a real
    server ignores it on create when the type has a status subresource."""
    group, version, plural, obj = placed
    namespace = obj["metadata"].get("namespace", "")
    where = collection(group, version, plural, namespace)
    body = {"apiVersion": f"{group}/{version}" if group else version, **obj}
    body["kind"] = body.get("kind") or _kind(admin, group, version, plural)
    stored = admin.apply(where, {k: v for k, v in body.items() if k != "status"})
    if "status" in obj and plural not in ("namespaces",):
        stored = admin.request(
            "PUT", f"{where}/{obj['metadata']['name']}/status", {**stored, "status": obj["status"]}
        )
    return stored


def _kind(admin: Admin, group: str, version: str, plural: str) -> str:
    listing = admin.request("GET", f"/api/{version}" if not group else f"/apis/{group}/{version}")
    for resource in listing.get("resources") or []:
        if resource.get("name") == plural:
            return str(resource["kind"])
    raise RuntimeError(f"{plural}.{group}/{version} is not served")


def install_virtualization(admin: Admin, url: str, name: str) -> None:
    install_crds(admin, sorted(p for p in CRDS.glob("*.yaml") if p.name != FORKLIFT_CRDS))
    for placed in virtualization_objects(url, name):
        place(admin, placed)


def install_mtv(admin: Admin) -> None:
    install_crds(admin, [CRDS / FORKLIFT_CRDS])
    for placed in mtv_objects():
        place(admin, placed)


def install_prerequisites(
    admin: Admin,
    name: str,
    breaks: Set[str] = frozenset(),
    *,
    kubevirt_ca: str,
    external_ca: str,
    forklift_version: str | None = None,
) -> None:
    """The sandbox profile's `breakable_objects`, after `install_virtualization` (and
    `install_mtv` when `forklift_version` is given)."""
    for placed in breakable_objects(
        breaks,
        cluster=name,
        kubevirt_ca=kubevirt_ca,
        external_ca=external_ca,
        forklift_version=forklift_version,
    ):
        place(admin, placed)
