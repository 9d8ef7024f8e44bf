"""What the real clusters hold before a test: the OpenShift Virtualization profile (the CRDs of
kind-config/crds and the sandbox profile's objects, an `Infrastructure` naming the API URL
among them) on every cluster, and on the MTV host Forklift's CRDs, namespace and `host` Provider.
The objects come from the sandbox's own profile, so both kinds of cluster hold the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mtv_register.sandbox.defaults import Placed
from mtv_register.sandbox.mtv.profile import MTV_NAMESPACE, mtv_objects, virtualization_objects
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


def forklift_deployment(version: str, image: str) -> Placed:
    """The forklift-controller Deployment as the MTV operator makes it (container `main`):
    what tests and `doctor` look for on an MTV host. No scheduler runs here, so it never starts
    a pod; the controller itself runs as a process beside the API server."""
    labels = {"app": "forklift", "control-plane": "controller-manager"}
    return (
        "apps",
        "v1",
        "deployments",
        {
            "metadata": {
                "name": "forklift-controller",
                "namespace": MTV_NAMESPACE,
                "labels": {**labels, "app.kubernetes.io/version": version},
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "main",
                                "image": image,
                                "env": [
                                    {"name": "ROLE", "value": "main"},
                                    {"name": "FEATURE_OCP_LIVE_MIGRATION", "value": "false"},
                                ],
                            }
                        ]
                    },
                },
            },
        },
    )
