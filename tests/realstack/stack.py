"""Three real clusters (`source`, `destination` and a separate MTV host `mtv`), up and down."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mtv_register.sandbox.mtv.profile import kubevirt_ca_bundle
from tests.realstack import forklift, procs, profile
from tests.realstack.build import DEFAULT_KUBERNETES, build_control_plane, say
from tests.realstack.controlplane import ControlPlane, write_kubeconfig

CONTEXTS = ("source", "destination", "mtv")
MTV = "mtv"


@dataclass
class Stack:
    kubeconfig: Path
    audit_dir: Path | None = None
    kubernetes: str = DEFAULT_KUBERNETES
    forklift: str = forklift.DEFAULT
    clusters: dict[str, ControlPlane] = field(default_factory=dict)
    forklift_process: subprocess.Popen[str] | None = None
    folder: Path | None = None
    wrote_kubeconfig: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    def up(self) -> None:
        """Build what is missing, start the clusters one after the other (three API servers
        starting at once on 2 cores can miss their post-start deadline), install the profiles
        and Forklift, and write the kubeconfig. A failure half-way raises; `down` cleans up."""
        started = time.monotonic()
        binaries = build_control_plane(self.kubernetes)
        self.timings["build"] = binaries.seconds
        refused = None
        if self.forklift != forklift.NONE:
            refused = forklift.try_real_build(self.forklift)
        self.folder = Path(tempfile.mkdtemp(prefix="mtv-register-realstack-"))
        audit_dir = self.audit_dir or self.folder / "audit"
        # Each cluster trusts the others' KubeVirt CAs, as the CA exchange leaves them.
        kubevirt_cas = {context: kubevirt_ca_bundle() for context in CONTEXTS}
        # The MTV host imitates the Forklift release that runs (the latest when none does).
        release = forklift.DEFAULT if self.forklift == forklift.NONE else self.forklift
        for context in CONTEXTS:
            began = time.monotonic()
            cluster = ControlPlane(
                context, binaries, self.folder / context, audit_dir / f"{context}.log"
            )
            self.clusters[context] = cluster
            cluster.start()
            admin = cluster.admin()
            profile.install_virtualization(admin, cluster.url, context)
            if context == MTV:
                profile.install_mtv(admin)
            profile.install_prerequisites(
                admin,
                context,
                kubevirt_ca=kubevirt_cas[context],
                external_ca="".join(pem for c, pem in kubevirt_cas.items() if c != context),
                forklift_version=release if context == MTV else None,
            )
            self.timings[f"start {context}"] = time.monotonic() - began
            say(f"{context}: Kubernetes {self.kubernetes} at {cluster.url}")
        self._write_kubeconfig()
        if self.forklift != forklift.NONE:
            if refused is not None:
                forklift.explain(self.forklift, refused)
            else:
                say(
                    f"forklift {self.forklift}: the module is served now, but this launcher "
                    "has only ever run the imitation; running the imitation"
                )
            self.forklift_process = forklift.start_imitation(
                self.kubeconfig, MTV, self.forklift, self.folder / "forklift.log"
            )
        self.timings["up"] = time.monotonic() - started
        starts = ", ".join(f"{k.split()[1]} {v:.0f}s" for k, v in self.timings.items() if " " in k)
        say(f"up in {self.timings['up']:.0f}s (build {binaries.seconds:.0f}s; {starts})")

    def _write_kubeconfig(self) -> None:
        entries = {}
        for context, cluster in self.clusters.items():
            pki = cluster.pki
            assert pki is not None
            entries[context] = (cluster.url, pki.ca, pki.admin_cert, pki.admin_key)
        write_kubeconfig(self.kubeconfig, entries, current=MTV)
        self.wrote_kubeconfig = True

    def failed(self) -> str:
        """What has died since `up`, or ""."""
        for context, cluster in self.clusters.items():
            for name, process in cluster.processes:
                if process.poll() is not None:
                    return f"{name} of {context} exited ({process.returncode})"
        if self.forklift_process is not None and self.forklift_process.poll() is not None:
            return f"the Forklift imitation exited ({self.forklift_process.returncode})"
        return ""

    def down(self) -> None:
        """Stop everything started, Forklift first, and remove what was written."""
        if self.forklift_process is not None:
            procs.stop(self.forklift_process, grace=5)
        for cluster in reversed(list(self.clusters.values())):
            cluster.stop()
        if self.wrote_kubeconfig:
            self.kubeconfig.unlink(missing_ok=True)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
