"""docs/reliability.md from the figures a run of tests/hardening recorded
(`pytest tests/hardening --reliability-figures DIR`, one file per test process): the document is
the suite's output, never typed by hand. `nox -s reliability` runs both steps.

    python scripts/write_reliability.py DIR docs/reliability.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.hardening.figures import EXPECTED_SECTIONS  # the scenarios, named once

MEANING = [
    "- transient faults: every API request a clean `register` (or `rotate`) makes, failed once in "
    "turn with a 500, a 429 with Retry-After, a dropped connection, an answer lost after the work "
    "was done, and a 409 Conflict on updates; held = the run succeeded and every cluster ended "
    "with the same objects as a clean run, no duplicates, every Provider Ready.",
    "- persistent faults: the same requests failing every time, with a 500 (retried until the "
    "tries ran out) and with a 403 (refused at once); held = the fault was hit, the command "
    "failed with one clear line (or succeeded through a fallback with the clean end state), a "
    "failed rotation left its Providers Ready on the old token, and a re-run without the fault "
    "converged to the clean end state with nothing orphaned.",
    "- bad input: wrong flags, files, contexts, CAs and permissions; held = a documented non-zero "
    "exit code, one line naming cause and fix, no traceback, nothing written.",
    "- concurrency: two runs at once on the same pair; held = both ended cleanly and the end "
    "state equals one clean run.",
]


def merged(folder: Path) -> dict[str, Any]:
    """The figures of every test process of the run, added up."""
    scenarios: dict[str, dict[str, int]] = defaultdict(lambda: {"run": 0, "held": 0})
    failures: dict[str, list[str]] = defaultdict(list)
    scan = {"tests": 0, "leaks": 0}
    issued = 0
    files = sorted(folder.glob("*.json"))
    if not files:
        raise SystemExit(
            f"no figures in {folder}: run pytest tests/hardening --reliability-figures"
        )
    for path in files:
        data = json.loads(path.read_text())
        for section, counts in data["scenarios"].items():
            scenarios[section]["run"] += counts["run"]
            scenarios[section]["held"] += counts["held"]
        for section, details in data["failures"].items():
            failures[section] += details
        for key in scan:
            scan[key] += data["scan"][key]
        issued += data["issued"]
    return {"scenarios": scenarios, "failures": failures, "scan": scan, "issued": issued}


def render(data: dict[str, Any], now: dt.datetime) -> str:
    missing = [s for s in EXPECTED_SECTIONS if s not in data["scenarios"]]
    if missing:
        raise SystemExit(
            f"the run did not go through every scenario; not run: {', '.join(missing)}"
        )
    known = [s for s in EXPECTED_SECTIONS if s in data["scenarios"]]
    order = known + sorted(set(data["scenarios"]) - set(known))
    scan = data["scan"]
    lines = [
        "# Reliability",
        "",
        "Written from the figures of a run of every hardening scenario (`nox -s reliability`:",
        "`pytest tests/hardening --reliability-figures DIR`, then `scripts/write_reliability.py`);",
        "do not edit by hand.",
        f"Last written {now:%Y-%m-%d %H:%M UTC}.",
        "",
        "| scenarios | run | held |",
        "| --- | --- | --- |",
        *(
            f"| {s} | {data['scenarios'][s]['run']} | {data['scenarios'][s]['held']} |"
            for s in order
        ),
        "",
        f"Tokens leaked: {scan['leaks']} (the output, logs and tracebacks of {scan['tests']} tests "
        f"were scanned for each of the {data['issued']} tokens the sandboxes issued, as issued "
        "and base64-encoded).",
        "",
        "What each row means:",
        "",
        *MEANING,
    ]
    failures = {k: v for k, v in data["failures"].items() if v}
    if failures:
        lines += ["", "## Scenarios that did not hold", ""]
        for section, details in failures.items():
            lines += [f"- {section}: {detail}" for detail in details]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figures", type=Path, help="the folder of --reliability-figures")
    parser.add_argument("output", type=Path, help="where to write it (docs/reliability.md)")
    args = parser.parse_args()
    args.output.write_text(render(merged(args.figures), dt.datetime.now(dt.UTC)))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
