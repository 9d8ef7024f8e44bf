"""Child processes that cannot outlive the launcher.

Each child runs in a process group of its own (so a terminal's Ctrl-C reaches the launcher
alone, which stops the children in order) and asks the kernel to kill it if the launcher dies
(PR_SET_PDEATHSIG), so even a SIGKILLed launcher leaves no server behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    argv: Sequence[str],
    *,
    log: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdout: int | IO[str] | None = None,
) -> subprocess.Popen[str]:
    """Start `argv` in a new process group, its output to `log` (appended) unless `stdout`."""
    out: int | IO[str] | None = stdout
    handle = None
    if stdout is None and log is not None:
        handle = log.open("a")
        out = handle
    try:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out is not subprocess.PIPE else subprocess.PIPE,
            env=env,
            cwd=cwd,
            text=True,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    finally:
        if handle is not None:
            handle.close()  # the child holds its own descriptor


def stop(process: subprocess.Popen[str], *, grace: float = 10.0) -> None:
    """SIGTERM to the child's whole group, then SIGKILL after `grace` seconds."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    with contextlib.suppress(ProcessLookupError):  # what the group leader left running
        os.killpg(process.pid, signal.SIGKILL)


def run(argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run to completion like subprocess.run(check=True), but killed with its whole group when
    interrupted (a `go build` has compilers as children): its output, or RuntimeError."""
    process = spawn(argv, env=env, cwd=cwd, stdout=subprocess.PIPE)
    try:
        out, err = process.communicate()
    except BaseException:
        stop(process, grace=2.0)
        raise
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} … failed ({process.returncode}):\n{out}{err}")
    return out
