"""Forklift's verdicts, scenario by scenario, on two stacks: the embedded sandbox (the imitation
in-process, Driver A) and the real clusters of `nox -s realstack` (`--clusters`). The same
Provider and Secret, written by the admin (not by the tool), must go through the same sequence
of phases with the same condition types, reasons and categories.

Issue 13 asks for this against the real forklift-controller. The Go module proxy refuses the
forklift module (docs/testing.md), so on the real clusters the imitation runs as a controller of
its own (Driver B): what this compares is the imitation against itself across a real API server
(its watches, status subresource, webhooks, TLS and the real token controller), not against the
real controller. Timings are Forklift's own (3 s retries) on both sides.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mtv_register import clusters
from mtv_register.kube import PROVIDER, SECRET, SERVICE_ACCOUNT, Kind, Kube
from mtv_register.sandbox import Sandbox
from tests.conftest import clusters_option
from tests.target import SANDBOX_PROCESS

Obj = dict[str, Any]
State = tuple[str, tuple[tuple[str, str, str], ...]]
MTV_NS = "openshift-mtv"
CRD = Kind(
    "apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False
)
CLUSTER_ROLE_BINDING = Kind(
    "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", False
)
MISSING_CRD = "virtualmachineclusterinstancetypes.instancetype.kubevirt.io"
SCENARIOS = ("good", "bad-token", "bad-ca", "unreachable", "changed", "missing-crd", "host")
OBSERVE = 10.0  # seconds: three of Forklift's 3 s retries
pytestmark = pytest.mark.realstack


@pytest.fixture(scope="module")
def real_kubeconfig(request: pytest.FixtureRequest) -> Path:
    chosen = clusters_option(request.config)
    if not chosen or chosen == SANDBOX_PROCESS:
        pytest.skip("needs the real clusters: run with --clusters KUBECONFIG (nox -s realstack)")
    return Path(chosen)


@pytest.fixture(scope="module")
def sandbox_kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with Sandbox(mtv_on="separate") as sandbox:  # Forklift's own timing, as on the real stack
        yield sandbox.write_kubeconfig(tmp_path_factory.mktemp("sandbox") / "kubeconfig")


class Clusters:
    def __init__(self, kubeconfig: Path) -> None:
        config = clusters.load_kubeconfig(kubeconfig)
        self.kube = {
            c: clusters.Connector().connect(config, c) for c in ("source", "destination", "mtv")
        }

    def close(self) -> None:
        for kube in self.kube.values():
            kube.close()


def _create(kube: Kube, kind: Kind, body: Obj) -> Obj:
    return kube.create(kind, {"apiVersion": kind.api_version, "kind": kind.kind, **body})


def _token(kube: Kube, name: str) -> str:
    """A cluster-admin service account's token, from its token Secret (as the seed does)."""
    _create(kube, SERVICE_ACCOUNT, {"metadata": {"name": name, "namespace": "default"}})
    _create(
        kube,
        CLUSTER_ROLE_BINDING,
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "default"}],
        },
    )  # fmt: skip
    _create(
        kube,
        SECRET,
        {
            "metadata": {
                "name": name,
                "namespace": "default",
                "annotations": {"kubernetes.io/service-account.name": name},
            },
            "type": "kubernetes.io/service-account-token",
        },
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        secret = kube.get(SECRET, name, "default") or {}
        token = (secret.get("data") or {}).get("token")
        if token:
            return base64.b64decode(token).decode()
        time.sleep(0.2)
    raise AssertionError("the token controller did not fill the token Secret")


def _clean(kube: Kube, name: str) -> None:
    for kind, namespace in ((SECRET, "default"), (SERVICE_ACCOUNT, "default")):
        kube.delete(kind, name, namespace)
    kube.delete(CLUSTER_ROLE_BINDING, name)


def _provider_objects(name: str, url: str, token: str, ca: str) -> tuple[Obj, Obj]:
    secret = {
        "metadata": {
            "name": name,
            "namespace": MTV_NS,
            "labels": {
                "createdForResourceType": "providers",
                "createdForProviderType": "openshift",
            },
        },
        "stringData": {"token": token, "url": url, "ca.crt": ca, "cacert": ca},
    }
    provider = {
        "apiVersion": "forklift.konveyor.io/v1beta1",
        "kind": "Provider",
        "metadata": {"name": name, "namespace": MTV_NS},
        "spec": {"type": "openshift", "url": url, "secret": {"name": name, "namespace": MTV_NS}},
    }
    return secret, provider


def _state(provider: Obj | None) -> State | None:
    status = (provider or {}).get("status") or {}
    if not status.get("phase"):
        return None
    conditions = tuple(
        sorted(
            (c.get("type", ""), c.get("reason", ""), c.get("category", ""))
            for c in status.get("conditions") or []
        )
    )
    return status["phase"], conditions


def _observe(
    read: Callable[[], Obj | None], seconds: float = OBSERVE, *, until_ready: bool = True
) -> list[State]:
    """The distinct states the Provider went through, in order, until Ready (`until_ready`)
    or `seconds`."""
    seen: list[State] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = _state(read())
        if state is not None and (not seen or seen[-1] != state):
            seen.append(state)
        if until_ready and state is not None and state[0] == "Ready":
            break
        time.sleep(0.1)
    return seen


def run(kubeconfig: Path, scenario: str) -> list[State]:
    stack = Clusters(kubeconfig)
    mtv, source = stack.kube["mtv"], stack.kube["source"]
    name = f"diff-{scenario}-{secrets.token_hex(2)}"
    try:
        if scenario == "host":
            return [s for s in [_state(mtv.get(PROVIDER, "host", MTV_NS))] if s]
        url = source.url
        ca = (source.get(Kind("v1", "ConfigMap", "configmaps", True), "kube-root-ca.crt",
                         "default") or {})["data"]["ca.crt"]  # fmt: skip
        token = _token(source, name) if scenario != "bad-token" else "not-a-token"
        if scenario == "bad-ca":
            other = stack.kube["destination"]
            ca = (other.get(Kind("v1", "ConfigMap", "configmaps", True), "kube-root-ca.crt",
                            "default") or {})["data"]["ca.crt"]  # fmt: skip
        if scenario == "unreachable":
            url = "https://127.0.0.1:1"
        crd = source.get(CRD, MISSING_CRD) if scenario == "missing-crd" else None
        if crd is not None:
            source.delete(CRD, MISSING_CRD)
            while source.get(CRD, MISSING_CRD) is not None:
                time.sleep(0.2)
        secret, provider = _provider_objects(name, url, token, ca)
        try:
            _create(mtv, SECRET, secret)
            mtv.create(PROVIDER, provider)
            seen = _observe(lambda: mtv.get(PROVIDER, name, MTV_NS))
            if scenario == "changed":  # the token in place replaced by one that is refused
                current = mtv.get(SECRET, name, MTV_NS)
                assert current is not None
                current["data"]["token"] = base64.b64encode(b"not-a-token").decode()
                mtv.replace(SECRET, current)
                seen += _observe(lambda: mtv.get(PROVIDER, name, MTV_NS), until_ready=False)
            return seen
        finally:
            mtv.delete(PROVIDER, name, MTV_NS)
            mtv.delete(SECRET, name, MTV_NS)
            if crd is not None:
                kept = {k: crd[k] for k in ("apiVersion", "kind", "spec")}
                kept["metadata"] = {"name": MISSING_CRD, "labels": crd["metadata"].get("labels")}
                source.create(CRD, kept)
                while not ((source.get(CRD, MISSING_CRD) or {}).get("status") or {}).get(
                    "acceptedNames"
                ):
                    time.sleep(0.2)
            if scenario != "bad-token":
                _clean(source, name)
    finally:
        stack.close()


def _collapsed(states: list[State]) -> list[State]:
    """Consecutive repeats dropped (a real watch may show a state twice)."""
    return [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_forklift_gives_the_same_verdicts_on_the_sandbox_and_the_real_clusters(
    real_kubeconfig: Path, sandbox_kubeconfig: Path, scenario: str
) -> None:
    on_sandbox = _collapsed(run(sandbox_kubeconfig, scenario))
    on_real = _collapsed(run(real_kubeconfig, scenario))
    assert on_sandbox, "the sandbox's Forklift wrote no status"
    assert on_real == on_sandbox
