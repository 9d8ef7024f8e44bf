"""Forklift on the real MTV host.

The real `forklift-controller` and `forklift-api` are built from `github.com/kubev2v/forklift`
(wrapper modules in tests/controlplane/forklift-<version>/) when the Go module proxy serves it.
It refused every commit asked for (docs/testing.md gives the request and the answer), so the
stack runs the sandbox's imitation of Forklift as a controller of its own instead: a separate
process that watches Providers and Secrets through the real API server, tests each Provider over
HTTPS as Forklift does for the chosen version, writes its status through `/status`, and serves
the provider-Secret webhooks the API server calls.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.realstack import procs
from tests.realstack.build import MODULES, cache_root, go_binary, go_environment, say

VERSIONS = ("v2.12.5", "v2.11.7", "v2.10.6")
DEFAULT = VERSIONS[0]
NONE = "none"
READY_LINE = "forklift imitation ready"


@dataclass(frozen=True)
class Refused:
    """Why the real Forklift could not be built: the module and version, and the answer."""

    module: str
    reason: str


def module_version(version: str) -> str:
    text = (MODULES / f"forklift-{version}" / "go.mod").read_text()
    for line in text.splitlines():
        if line.startswith("require github.com/kubev2v/forklift "):
            return line.split()[-1]
    raise RuntimeError(f"tests/controlplane/forklift-{version}/go.mod requires no forklift")


def try_real_build(version: str) -> Refused | None:
    """Ask the Go module proxy for Forklift at `version`'s commit (nothing is built when it
    refuses): None when it serves the module, else what it answered."""
    pseudo = module_version(version)
    root = cache_root()
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copy(MODULES / f"forklift-{version}" / "go.mod", Path(scratch) / "go.mod")
        env = {**go_environment(root), "GOFLAGS": "-mod=mod -buildvcs=false"}
        try:
            procs.run(
                [go_binary(), "mod", "download", f"github.com/kubev2v/forklift@{pseudo}"],
                env=env,
                cwd=Path(scratch),
            )
        except RuntimeError as error:
            answer = next(
                (
                    line.strip()
                    for line in str(error).splitlines()
                    if "403" in line or "404" in line
                ),
                str(error).splitlines()[-1],
            )
            return Refused(f"github.com/kubev2v/forklift@{pseudo}", answer)
    return None


def start_imitation(
    kubeconfig: Path, context: str, version: str, log: Path
) -> subprocess.Popen[str]:
    """The imitation as a process of its own, once it says it is ready."""
    process = procs.spawn(
        [
            sys.executable,
            "-m",
            "mtv_register.sandbox.mtv.remote",
            "--kubeconfig",
            str(kubeconfig),
            "--context",
            context,
            "--forklift-version",
            version,
        ],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != READY_LINE:
        procs.stop(process, grace=2)
        errors = process.stderr.read() if process.stderr else ""
        log.write_text(errors)
        raise RuntimeError(
            f"the Forklift imitation did not start: {line.strip()}\n{errors[-2000:]}"
        )
    # From here on its stderr goes to the log, read by nobody until a test fails.
    _drain(process, log)
    return process


def _drain(process: subprocess.Popen[str], log: Path) -> None:
    """Copy what the process writes on either stream to `log`, so no pipe ever fills."""
    import threading

    def copy(stream: IO[str] | None) -> None:
        if stream is None:
            return
        with log.open("a") as out:
            for line in stream:
                out.write(line)
                out.flush()

    for stream in (process.stdout, process.stderr):
        threading.Thread(target=copy, args=(stream,), daemon=True, name="forklift-log").start()


def explain(version: str, refused: Refused) -> None:
    say(
        f"forklift {version}: the Go module proxy refuses {refused.module} ({refused.reason}); "
        "running the sandbox's Forklift imitation as a controller against the real API server"
    )
