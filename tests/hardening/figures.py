"""Figures the hardening tests produce: with --reliability-figures each test process writes its
own (tests/conftest.py), and scripts/write_reliability.py turns them into docs/reliability.md, so
the document is the output of the suite, never typed by hand."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

_lock = threading.Lock()
SCENARIOS: dict[str, dict[str, int]] = defaultdict(lambda: {"run": 0, "held": 0})
DETAILS: dict[str, list[str]] = defaultdict(list)
EXPECTED_SECTIONS = (
    "transient faults: register",
    "transient faults: rotate",
    "persistent faults: register",
    "persistent faults: rotate",
    "bad input",
    "concurrency",
)


def record(section: str, held: bool, detail: str = "") -> None:
    with _lock:
        SCENARIOS[section]["run"] += 1
        SCENARIOS[section]["held"] += int(held)
        if detail and not held:
            DETAILS[section].append(detail)


def snapshot() -> dict[str, Any]:
    with _lock:
        return {
            "scenarios": {k: dict(v) for k, v in SCENARIOS.items()},
            "failures": {k: list(v) for k, v in DETAILS.items()},
        }
