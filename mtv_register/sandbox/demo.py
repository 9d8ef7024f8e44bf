"""`mtv-register sandbox demo`: a sandbox with a separate MTV host, one pair registered on it
twice (the second run changes nothing), its status, kubectl's view of it and `doctor` on the
pair, then nothing left.

What it shows goes through `Show`, which the CLI implements; this module does the work."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Protocol

from mtv_register.clusters import Connector
from mtv_register.doctor import DoctorOptions, DoctorReport, diagnose
from mtv_register.orchestrator import PairOptions, PairResult, register_pair
from mtv_register.sandbox import MTV_NAMESPACE, Sandbox
from mtv_register.status import status as read_status
from mtv_register.timing import Timing

KUBECTL_TIMEOUT = 60.0


class Show(Protocol):
    def step(self, heading: str) -> None:
        """A numbered step begins."""

    def line(self, text: str) -> None:
        """A line within the step."""

    def result(self, result: PairResult) -> None:
        """What a registration did."""

    def status(self, report: dict[str, Any]) -> None:
        """The host's Providers."""

    def doctor(self, report: DoctorReport) -> None:
        """The pair's readiness for live migration."""


def run(show: Show, *, token_delay: float = 0.5, timing: Timing | None = None) -> None:
    """The demo, start to end. `token_delay`: the token controller's, in seconds."""
    with tempfile.TemporaryDirectory(prefix="mtv-register-demo-") as folder:
        kubeconfig = Path(folder, "kubeconfig")
        show.step("1. starting the sandbox: clusters source, destination and mtv")
        with Sandbox(mtv_on="separate", token_delay=token_delay) as sandbox:
            sandbox.write_kubeconfig(kubeconfig)
            for context, cluster in sandbox.clusters.items():
                show.line(f"   {context:<12} {cluster.url}")
            show.step(
                "2. mtv-register register --source source --destination destination "
                f"--host mtv --kubeconfig {kubeconfig} --yes"
            )
            options = PairOptions(
                source="source",
                destination="destination",
                host="mtv",
                kubeconfig=kubeconfig,
                timeout=120,
                connector=Connector(timing=timing or Timing()),
            )
            show.result(register_pair(options, progress=lambda line: show.line(f"   {line}")))
            show.step("3. again: a second run changes nothing")
            show.result(register_pair(options))
            show.step("4. mtv-register status --host mtv")
            show.status(
                read_status(
                    host="mtv",
                    kubeconfig=kubeconfig,
                    connector=Connector(timing=timing or Timing()),
                )
            )
            command = [
                "kubectl",
                "--kubeconfig",
                str(kubeconfig),
                "--context",
                "mtv",
                "get",
                "providers",
                "-n",
                MTV_NAMESPACE,
            ]
            show.step(f"5. {' '.join(command)}")
            if shutil.which("kubectl"):
                env = {**os.environ, "KUBECACHEDIR": str(Path(folder, "cache"))}
                subprocess.run(command, env=env, check=False, timeout=KUBECTL_TIMEOUT)
            else:
                show.line("   (kubectl is not installed; skipped)")
            show.step("6. mtv-register doctor --source source --destination destination --host mtv")
            show.doctor(
                diagnose(
                    DoctorOptions(
                        source="source",
                        destination="destination",
                        host="mtv",
                        kubeconfig=kubeconfig,
                        connector=Connector(timing=timing or Timing()),
                    )
                )
            )
        show.step("7. sandbox stopped; nothing was left behind")
