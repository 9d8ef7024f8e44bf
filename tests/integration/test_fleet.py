"""Fleets: many pairs from one file, in parallel; one failing pair never stops the others."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mtv_register.orchestrator import load_pairs
from tests.integration.conftest import marks, mutating_since, provider_phase


@pytest.fixture
def fleet(make_sandbox, tmp_path):
    sandbox = make_sandbox(sources=4)
    kubeconfig = sandbox.write_kubeconfig(tmp_path / "kubeconfig")
    return sandbox, kubeconfig


def _pairs(tmp_path: Path, entries: list[dict[str, str]]) -> Path:
    path = tmp_path / "pairs.yaml"
    path.write_text(yaml.safe_dump({"pairs": entries}))
    return path


def test_a_fleet_registers_every_pair_in_parallel_and_reports_each(fleet, tmp_path, cli):
    sandbox, kubeconfig = fleet
    pairs = _pairs(tmp_path, [{"source": s, "destination": "destination"} for s in sandbox.sources])
    result = cli(
        "register",
        "--pairs",
        str(pairs),
        "--parallel",
        "3",
        "--kubeconfig",
        str(kubeconfig),
        "--yes",
        "--output",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert [r["pair"] for r in report] == [f"{s} -> destination" for s in sandbox.sources]
    assert all(r["ok"] and r["changed"] for r in report)
    for source in sandbox.sources:
        assert provider_phase(sandbox, source) == "Ready"


def test_a_failing_pair_does_not_stop_the_others_and_the_exit_code_says_so(fleet, tmp_path, cli):
    sandbox, kubeconfig = fleet
    entries = [{"source": s, "destination": "destination"} for s in sandbox.sources]
    entries.insert(1, {"source": "no-such-context", "destination": "destination"})
    result = cli(
        "register",
        "--pairs",
        str(_pairs(tmp_path, entries)),
        "--kubeconfig",
        str(kubeconfig),
        "--yes",
        "--output",
        "json",
    )
    assert result.exit_code == 12, result.stderr
    report = json.loads(result.stdout)
    failed = [r for r in report if not r["ok"]]
    assert [r["pair"] for r in failed] == ["no-such-context -> destination"]
    assert failed[0]["exit_code"] == 3 and "no-such-context" in failed[0]["error"]
    assert all(provider_phase(sandbox, s) == "Ready" for s in sandbox.sources)
    assert result.stderr.strip().splitlines()[-1] == "error: 1 of 5 pairs failed"


def test_a_fleet_rerun_changes_nothing(fleet, tmp_path, cli):
    sandbox, kubeconfig = fleet
    pairs = _pairs(tmp_path, [{"source": s, "destination": "destination"} for s in sandbox.sources])
    args = ("register", "--pairs", str(pairs), "--kubeconfig", str(kubeconfig), "--yes")
    assert cli(*args).exit_code == 0
    before = marks(sandbox)
    again = cli(*args, "--output", "json")
    assert again.exit_code == 0
    assert not any(r["changed"] for r in json.loads(again.stdout))
    assert mutating_since(sandbox, before) == {c: [] for c in sandbox.clusters}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("pairs: [", "not valid YAML"),
        ("{}", "has no list of pairs"),
        ("pairs:\n- source: a\n", "entry 1: missing destination"),
        ("pairs:\n- source: a\n  destination: b\n  colour: red\n", "entry 1: unknown key colour"),
        ("pairs:\n- just-a-string\n", "entry 1 is not a mapping"),
        ("pairs:\n- source: a\n  destination: a\n", "are the same context"),
    ],
)
def test_a_malformed_pairs_file_is_a_usage_error_before_any_request(
    fleet, tmp_path, cli, content, expected
):
    sandbox, kubeconfig = fleet
    path = tmp_path / "pairs.yaml"
    path.write_text(content)
    before = {c: s.cluster.audit.mark() for c, s in sandbox.clusters.items()}
    result = cli("register", "--pairs", str(path), "--kubeconfig", str(kubeconfig), "--yes")
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert all(not s.cluster.audit.since(before[c]) for c, s in sandbox.clusters.items())


def test_pairs_and_source_exclude_each_other(fleet, tmp_path, cli):
    _, kubeconfig = fleet
    pairs = _pairs(tmp_path, [{"source": "source-1", "destination": "destination"}])
    result = cli(
        "register",
        "--pairs",
        str(pairs),
        "--source",
        "source-1",
        "--kubeconfig",
        str(kubeconfig),
        "--yes",
    )
    assert result.exit_code == 2
    assert "exclude each other" in result.stderr


def test_each_pair_may_name_its_own_host_and_provider_names(fleet, tmp_path):
    from mtv_register.orchestrator import PairOptions

    _, kubeconfig = fleet
    path = _pairs(
        tmp_path,
        [
            {
                "source": "source-1",
                "destination": "source-2",
                "host": "destination",
                "sourceName": "one",
                "destinationName": "two",
            }
        ],
    )
    (pair,) = load_pairs(path, PairOptions(source="-", destination="--", kubeconfig=kubeconfig))
    assert (pair.source, pair.destination, pair.host) == ("source-1", "source-2", "destination")
    assert (pair.source_name, pair.destination_name) == ("one", "two")
