"""docs/reliability.md is rendered from the figures every test process of a run wrote."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from scripts.write_reliability import merged, render
from tests.hardening.figures import EXPECTED_SECTIONS


def _write(folder: Path, worker: str, held: int, failures: list[str]) -> None:
    scenarios = {section: {"run": 3, "held": held} for section in EXPECTED_SECTIONS}
    data = {
        "scenarios": scenarios,
        "failures": {EXPECTED_SECTIONS[0]: failures},
        "scan": {"tests": 10, "leaks": 0},
        "issued": 7,
    }
    (folder / f"{worker}.json").write_text(json.dumps(data))


def test_the_figures_of_every_worker_are_added_up(tmp_path: Path) -> None:
    _write(tmp_path, "gw0", 3, [])
    _write(tmp_path, "gw1", 2, ["500 on source:get:/api: failed: it broke"])
    text = render(merged(tmp_path), dt.datetime(2026, 12, 3, 14, tzinfo=dt.UTC))
    assert "| transient faults: register | 6 | 5 |" in text
    assert "| concurrency | 6 | 5 |" in text
    assert "of 20 tests were scanned for each of the 14 tokens" in text
    assert "Last written 2026-12-03 14:00 UTC." in text
    assert "- transient faults: register: 500 on source:get:/api: failed: it broke" in text


def test_a_run_that_missed_a_scenario_writes_nothing(tmp_path: Path) -> None:
    _write(tmp_path, "gw0", 3, [])
    data = json.loads((tmp_path / "gw0.json").read_text())
    del data["scenarios"]["concurrency"]
    (tmp_path / "gw0.json").write_text(json.dumps(data))
    with pytest.raises(SystemExit, match="not run: concurrency"):
        render(merged(tmp_path), dt.datetime.now(dt.UTC))


def test_no_figures_at_all_is_said(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no figures"):
        merged(tmp_path)
