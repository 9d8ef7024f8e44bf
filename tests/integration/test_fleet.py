"""Fleets: many pairs from one file, in parallel; one failing pair never stops the others.

The fleet is made of the three clusters every test has: source -> destination, and the same two
the other way round under Provider names of their own, both registered on the `mtv` host at once
(each cluster then serves two pairs, as a destination shared by several sources does)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mtv_register.fleet import load_pairs
from mtv_register.forklift import pairs_of
from mtv_register.orchestrator import PairOptions
from mtv_register.sandbox import MTV_NAMESPACE
from tests.integration.conftest import CliRun, Mark, fleet_args, mark, writes_since
from tests.target import Target

FLEET = [
    {"source": "source", "destination": "destination"},
    {
        "source": "destination",
        "destination": "source",
        "sourceName": "destination-back",
        "destinationName": "source-back",
    },
]
PROVIDERS = ["source", "destination", "destination-back", "source-back"]


def _pairs(tmp_path: Path, entries: list[dict[str, str]]) -> Path:
    path = tmp_path / "pairs.yaml"
    path.write_text(yaml.safe_dump({"pairs": entries}))
    return path


def _name(entry: dict[str, str]) -> str:
    return f"{entry['source']} -> {entry['destination']}"


def assert_no_request(target: Target, since: Mark) -> None:
    """No request at all reached a cluster, as the sandbox's audit log tells; on other clusters,
    nothing was written."""
    if target.sandbox is None:
        assert writes_since(target, since) == {}
        return
    made = {c: sc.cluster.audit.since(since[c]) for c, sc in target.sandbox.clusters.items()}
    assert made == {c: [] for c in made}


@pytest.mark.needs_forklift
def test_a_fleet_registers_every_pair_in_parallel_and_reports_each(
    target: Target, tmp_path: Path, cli: CliRun
) -> None:
    result = cli(
        *fleet_args(target, _pairs(tmp_path, FLEET), "--parallel", "2", "--output", "json")
    )

    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert [r["pair"] for r in report] == [_name(entry) for entry in FLEET]
    assert all(r["ok"] and r["changed"] for r in report)
    for provider in PROVIDERS:
        assert target.provider_phase(provider) == "Ready", provider


@pytest.mark.needs_forklift
def test_a_failing_pair_does_not_stop_the_others_and_the_exit_code_says_so(
    target: Target, tmp_path: Path, cli: CliRun
) -> None:
    entries: list[dict[str, Any]] = list(FLEET)
    entries.insert(1, {"source": "no-such-context", "destination": "destination"})

    result = cli(*fleet_args(target, _pairs(tmp_path, entries), "--output", "json"))

    assert result.exit_code == 12, result.stderr
    report = json.loads(result.stdout)
    failed = [r for r in report if not r["ok"]]
    assert [r["pair"] for r in failed] == ["no-such-context -> destination"]
    assert failed[0]["exitCode"] == 3 and "no-such-context" in failed[0]["error"]
    assert all(target.provider_phase(p) == "Ready" for p in PROVIDERS)
    assert result.stderr.strip().splitlines()[-1] == "error: 1 of 3 pairs failed"


@pytest.mark.needs_forklift
def test_a_fleet_rerun_changes_nothing(target: Target, tmp_path: Path, cli: CliRun) -> None:
    args = fleet_args(target, _pairs(tmp_path, FLEET))
    assert cli(*args).exit_code == 0
    target.settle()
    since = mark(target)

    again = cli(*args, "--output", "json")

    assert again.exit_code == 0, again.stderr
    assert not any(r["changed"] for r in json.loads(again.stdout))
    assert writes_since(target, since) == {}


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
    target: Target, tmp_path: Path, cli: CliRun, content: str, expected: str
) -> None:
    path = tmp_path / "pairs.yaml"
    path.write_text(content)
    since = mark(target)

    result = cli("register", "--pairs", str(path), "--kubeconfig", str(target.kubeconfig), "--yes")

    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert_no_request(target, since)


def test_pairs_and_source_exclude_each_other(target: Target, tmp_path: Path, cli: CliRun) -> None:
    since = mark(target)

    result = cli(*fleet_args(target, _pairs(tmp_path, FLEET[:1]), "--source", "source"))

    assert result.exit_code == 2
    assert "exclude each other" in result.stderr
    assert_no_request(target, since)


def test_a_dry_run_of_a_fleet_is_refused_before_any_request(
    target: Target, tmp_path: Path, cli: CliRun
) -> None:
    """--dry-run renders one pair; with --pairs it used to be ignored, registering the fleet."""
    since = mark(target)

    result = cli(*fleet_args(target, _pairs(tmp_path, FLEET), "--dry-run"))

    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--dry-run renders one pair" in lines[0], result.stderr
    assert_no_request(target, since)


def test_each_pair_may_name_its_own_host_and_provider_names(target: Target, tmp_path: Path) -> None:
    path = _pairs(
        tmp_path,
        [
            {
                "source": "source",
                "destination": "destination",
                "host": "mtv",
                "sourceName": "one",
                "destinationName": "two",
            }
        ],
    )
    defaults = PairOptions(source="-", destination="--", kubeconfig=target.kubeconfig)

    (pair,) = load_pairs(path, defaults)

    assert (pair.source, pair.destination, pair.host) == ("source", "destination", "mtv")
    assert (pair.source_name, pair.destination_name) == ("one", "two")


@pytest.mark.needs_forklift
def test_ten_pairs_at_once_all_join_the_destination_provider_they_share(
    target: Target, tmp_path: Path, cli: CliRun
) -> None:
    """Every pair adds itself to the pairs annotation of the one destination Provider by a
    guarded read-modify-write; ten at once must all end up in it. (This shape did not reproduce
    the real-stack fleet's exhausted conflict tries, 30 pairs included; the unit test
    test_the_runs_own_writers_of_one_object_take_turns does.)"""
    entries = [
        {"source": "source", "destination": "destination", "sourceName": f"source-{i}"}
        for i in range(10)
    ]
    result = cli(
        *fleet_args(target, _pairs(tmp_path, entries), "--parallel", "10", "--output", "json")
    )

    assert result.exit_code == 0, result.stderr
    assert all(r["ok"] for r in json.loads(result.stdout))
    shared = target.find(target.mtv_context, "providers", "destination", MTV_NAMESPACE)
    assert shared is not None
    assert len(pairs_of(shared)) == 10, pairs_of(shared)
