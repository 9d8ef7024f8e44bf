"""The `--explain` trail: the one place the commands of the `oc` backend are recorded.

openshift-client's `tracking` hands each command to `TRAIL` once it ends; `Trail.runbook` prints
them in the order they started, as an approver reads them: the argv (no token is ever on it),
what went in on stdin named but never shown, and how a failed command ended.
"""

from __future__ import annotations

import json
import shlex
import threading
from dataclasses import dataclass
from typing import Any

from mtv_register.oc_errors import reason_of
from mtv_register.redaction import scrub

# The folder of a token client's temporary kubeconfig (`oc_backend`), as the runbook names it.
TOKEN_KUBECONFIG_PREFIX = "mtv-register-token-"


@dataclass(frozen=True)
class Step:
    """One command as it ran: its argv (no token ever is in it), what went in on stdin (named,
    never shown), and how it ended."""

    argv: tuple[str, ...]
    started_ms: int
    status: int
    stdin: str = ""  # e.g. "Secret openshift-mtv/source-credentials"
    failure: str = ""  # e.g. "NotFound"


class Trail:
    """The commands of a run, as openshift-client's tracking reports them, in start order."""

    def __init__(self) -> None:
        self._steps: list[Step] = []
        self._lock = threading.Lock()
        self._recording = False

    def start(self) -> None:
        """Forget earlier commands and record from now on."""
        with self._lock:
            self._steps.clear()
            self._recording = True

    def record(self, action: Any) -> None:
        """openshift-client's tracking handler: called with each `Action` once it ends."""
        if not self._recording:
            return
        status = int(action.status)
        step = Step(
            tuple(str(arg) for arg in action.cmd),
            int(action.exec_time),
            status,
            _named(action.stdin_str),
            reason_of(action.err) if status else "",
        )
        with self._lock:
            self._steps.append(step)

    def steps(self) -> list[Step]:
        with self._lock:
            return sorted(self._steps, key=lambda step: step.started_ms)

    def runbook(self) -> str:
        """The trail as a runbook an approver reads: one command per line, tokens scrubbed."""
        steps = self.steps()
        lines = [
            f"# mtv-register ran these {len(steps)} commands, in the order they started.",
            "# No token is on any command line: objects go on stdin (`-f -`, named in the",
            "# comment), and a service account's token is in a temporary kubeconfig",
            f"# ({TOKEN_KUBECONFIG_PREFIX}*/kubeconfig, mode 0600, deleted when the run ended).",
        ]
        for step in steps:
            notes = [f"stdin: {step.stdin}"] if step.stdin else []
            if step.status:
                notes.append(f"exit {step.status}" + (f": {step.failure}" if step.failure else ""))
            comment = f"  # {'; '.join(notes)}" if notes else ""
            lines.append(shlex.join(step.argv) + comment)
        return scrub("\n".join(lines))


TRAIL = Trail()


def _named(stdin: str | None) -> str:
    if not stdin:
        return ""
    try:
        obj = json.loads(stdin)
    except ValueError:
        return "(not JSON)"
    meta = obj.get("metadata") or {} if isinstance(obj, dict) else {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind', '?')} {where}{meta.get('name', '')}".rstrip()
