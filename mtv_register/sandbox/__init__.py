"""Simulated clusters that speak the Kubernetes API over real HTTPS, for trying and testing
mtv-register with no cluster at all.

    with Sandbox(mtv_on="separate", breaks=["feature-gate", "sync-addresses@source"]) as sandbox:
        sandbox.write_kubeconfig(path)       # contexts: source, destination, mtv
        sandbox["source"].cluster.faults.inject("create", "/secrets", status=500)

Each cluster is its own HTTPS server on 127.0.0.1 with its own CA, its own store, RBAC, token
controller, garbage collector; the MTV host also runs Forklift's provider controller. Every
cluster is ready for cross-cluster live migration unless `breaks` (`BREAKS`, `NAME[@CONTEXT]`)
break one of its prerequisites, and imitates the operators that carry HyperConverged and
ForkliftController settings into KubeVirt and forklift-controller (`mtv.operators`).

The modules of this package are a generic Kubernetes API server (`cluster`, `server`, `api`,
`store`, `rbac`, `controllers`, `defaults`, ...), which knows nothing of OpenShift or Forklift.
The OpenShift Virtualization and MTV profile, Forklift's imitation among it, is the subpackage
`mtv`, which plugs into the server (a CRD profile, a controller on the store, webhooks in the
admission chain). `Sandbox` here puts the two together; no generic module imports `mtv`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from mtv_register.sandbox.certs import CertificateAuthority, new_ca
from mtv_register.sandbox.cluster import Cluster
from mtv_register.sandbox.controllers import Controllers
from mtv_register.sandbox.defaults import install_defaults
from mtv_register.sandbox.faults import AuditLog
from mtv_register.sandbox.mtv.controller import ForkliftController
from mtv_register.sandbox.mtv.operators import Operators
from mtv_register.sandbox.mtv.prerequisites import DESTINATION, MTV_HOST, SOURCE
from mtv_register.sandbox.mtv.profile import (
    BREAKS,
    MTV_NAMESPACE,
    Break,
    install_mtv,
    install_prerequisites,
    install_virtualization,
    kubevirt_ca_bundle,
)
from mtv_register.sandbox.mtv.reconcile import ForkliftTiming, version
from mtv_register.sandbox.server import ApiServer
from mtv_register.sandbox.tokenauth import ISSUED_TOKENS

__all__ = [
    "BREAKS",
    "ISSUED_TOKENS",
    "MTV_NAMESPACE",
    "Break",
    "ForkliftTiming",
    "Sandbox",
    "SandboxCluster",
]
# How long `start` waits for Forklift to find the host provider Ready, beyond its own delays.
HOST_READY_MARGIN = 10.0


@dataclass
class SandboxCluster:
    context: str
    cluster: Cluster
    server: ApiServer
    controllers: Controllers
    forklift: ForkliftController | None
    is_mtv_host: bool = False
    kubevirt_ca_pem: str = ""  # KubeVirt's own CA, in its `kubevirt-ca` ConfigMap

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def root_ca_pem(self) -> str:
        """The cluster's internal CA, published in every namespace's `kube-root-ca.crt`."""
        return self.cluster.ca.pem

    @property
    def serving_ca_pem(self) -> str:
        """The CA that signs the API's serving certificate (differs with a named certificate)."""
        return self.server.serving_ca.pem

    @property
    def admin_token(self) -> str:
        return self.cluster.admin_token

    def stop(self) -> None:
        self.server.stop()
        self.controllers.stop()
        if self.forklift is not None:
            self.forklift.stop()


class Sandbox:
    def __init__(
        self,
        *,
        sources: int = 1,
        mtv_on: str = "destination",
        token_delay: float = 0.0,
        named_cert: str | None = None,
        audit_dir: Path | None = None,
        forklift: bool = True,
        forklift_version: str | None = None,
        forklift_timing: ForkliftTiming | None = None,
        breaks: Iterable[str] = (),
    ) -> None:
        if mtv_on not in ("destination", "separate"):
            raise ValueError(f'mtv_on must be "destination" or "separate", not {mtv_on!r}')
        if sources < 1:
            raise ValueError("a sandbox needs at least one source cluster")
        self.sources = (
            ["source"] if sources == 1 else [f"source-{i}" for i in range(1, sources + 1)]
        )
        self.contexts = [*self.sources, "destination"] + (["mtv"] if mtv_on == "separate" else [])
        self.mtv_context = "mtv" if mtv_on == "separate" else "destination"
        self.token_delay = token_delay
        self.named_cert = named_cert
        self.audit_dir = audit_dir
        self.forklift = forklift  # False: the MTV host has Forklift's CRDs but no controller
        self.forklift_version = version(forklift_version).name  # ValueError when unknown
        # Forklift's own delays unless told otherwise (the tests pass short ones).
        self.forklift_timing = forklift_timing or ForkliftTiming()
        if named_cert is not None and named_cert not in self.contexts:
            raise ValueError(f"--named-cert {named_cert!r} is not one of {self.contexts}")
        # context -> the names of the breaks that fall on it (ValueError when one cannot).
        self.breaks: dict[str, frozenset[str]] = self._place_breaks(breaks)
        self.clusters: dict[str, SandboxCluster] = {}
        self._kubevirt_cas: dict[str, str] = {}

    def _place_breaks(self, specs: Iterable[str]) -> dict[str, frozenset[str]]:
        """`NAME` on its default context, `NAME@CONTEXT` on that one; MTV's only on the host."""
        placed: dict[str, set[str]] = {context: set() for context in self.contexts}
        defaults = {SOURCE: self.sources[0], DESTINATION: "destination", MTV_HOST: self.mtv_context}
        for spec in specs:
            name, at, context = spec.partition("@")
            chosen = BREAKS.get(name)
            if chosen is None:
                raise ValueError(f"--break {name!r} is not one of {', '.join(BREAKS)}")
            context = context if at else defaults[chosen.default]
            if context not in self.contexts:
                raise ValueError(f"--break {spec!r}: {context!r} is not one of {self.contexts}")
            if chosen.mtv_host_only and context != self.mtv_context:
                raise ValueError(
                    f"--break {spec!r}: {name} breaks the MTV host, which is {self.mtv_context!r}"
                )
            placed[context].add(name)
        return {context: frozenset(names) for context, names in placed.items()}

    def __getitem__(self, context: str) -> SandboxCluster:
        return self.clusters[context]

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Sandbox:
        # Each cluster trusts the others' KubeVirt CAs, as the CA exchange leaves them.
        self._kubevirt_cas = {context: kubevirt_ca_bundle() for context in self.contexts}
        with ThreadPoolExecutor(max_workers=len(self.contexts)) as pool:
            started = list(pool.map(self._start_cluster, self.contexts))
        self.clusters = {c.context: c for c in started}
        for sandbox_cluster in started:
            if sandbox_cluster.forklift is not None:
                self._wait_host_ready(sandbox_cluster)
        return self

    def _wait_host_ready(self, sandbox_cluster: SandboxCluster) -> None:
        """A sandbox is ready once Forklift has found its host provider Ready (two passes)."""
        forklift = sandbox_cluster.forklift
        assert forklift is not None
        providers = forklift.providers
        timing = self.forklift_timing

        def host_ready() -> bool:
            host = sandbox_cluster.cluster.store.find(providers, MTV_NAMESPACE, "host")
            return host is None or (host.get("status") or {}).get("phase") == "Ready"

        forklift.wait_for(host_ready, timing.inventory + timing.retry + HOST_READY_MARGIN)

    def _start_cluster(self, context: str) -> SandboxCluster:
        audit = AuditLog(self.audit_dir / f"{context}.log" if self.audit_dir else None)
        cluster = Cluster(context, token_delay=self.token_delay, audit=audit)
        serving_ca: CertificateAuthority | None = None
        if context == self.named_cert:
            serving_ca = new_ca(f"{context}-named-certificate-ca")
        server = ApiServer(cluster, serving_ca)
        controllers = Controllers(cluster)
        install_defaults(cluster)
        install_virtualization(cluster)
        is_mtv_host = context == self.mtv_context
        if is_mtv_host:
            install_mtv(cluster)
        install_prerequisites(
            cluster,
            self.breaks[context],
            kubevirt_ca=self._kubevirt_cas[context],
            external_ca="".join(pem for c, pem in self._kubevirt_cas.items() if c != context),
            forklift_version=self.forklift_version if is_mtv_host else None,
        )
        Operators(cluster).install()
        forklift = None
        if is_mtv_host and self.forklift:
            forklift = ForkliftController(
                cluster,
                server,
                forklift_version=self.forklift_version,
                timing=self.forklift_timing,
            )
        server.start()
        if forklift is not None:
            forklift.start()
        return SandboxCluster(
            context,
            cluster,
            server,
            controllers,
            forklift,
            is_mtv_host,
            kubevirt_ca_pem=self._kubevirt_cas[context],
        )

    def stop(self) -> None:
        for sandbox_cluster in self.clusters.values():
            sandbox_cluster.stop()

    def set_token_delay(self, seconds: float) -> None:
        self.token_delay = seconds
        for sandbox_cluster in self.clusters.values():
            sandbox_cluster.cluster.token_delay = seconds

    def kubeconfig(self) -> dict[str, Any]:
        clusters, users, contexts = [], [], []
        for context, sc in self.clusters.items():
            ca_data = base64.b64encode(sc.serving_ca_pem.encode()).decode()
            clusters.append(
                {
                    "name": context,
                    "cluster": {"server": sc.url, "certificate-authority-data": ca_data},
                }
            )
            users.append({"name": f"{context}-admin", "user": {"token": sc.admin_token}})
            contexts.append(
                {"name": context, "context": {"cluster": context, "user": f"{context}-admin"}}
            )
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "current-context": self.mtv_context,
            "clusters": clusters,
            "users": users,
            "contexts": contexts,
        }

    def write_kubeconfig(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(self.kubeconfig(), sort_keys=False))
        path.chmod(0o600)
        return path

    def issued_tokens(self) -> set[str]:
        return set(ISSUED_TOKENS)
