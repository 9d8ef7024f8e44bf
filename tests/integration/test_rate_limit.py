"""Client-side rate limiting of a fleet on one MTV host: the host's 429s (API Priority and
Fairness shedding load, with a Retry-After) are waited out without failing a pair, and with
`--qps Q --burst B` the host never sees more than B + Q*t requests of the run in any t seconds."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from mtv_register.api_kube import USER_AGENT
from mtv_register.sandbox import Sandbox
from mtv_register.timing import DEFAULT_BURST, DEFAULT_QPS, Timing
from tests.integration.conftest import CliRun, fleet_args, make_cli
from tests.target import Target

AGENT = f"^{USER_AGENT}$"  # the tool's own requests, not the Forklift imitation's
# How much later one request may reach the server than another sent at the same moment (thread
# scheduling on a loaded machine): the window a request's token is counted in widens by it.
ARRIVAL_JITTER = 0.25


def _fleet(tmp_path: Path, size: int) -> Path:
    """`size` pairs on the same two clusters, each under Provider names of its own."""
    entries = [
        {
            "source": "source",
            "destination": "destination",
            "sourceName": f"source-{index}",
            "destinationName": f"destination-{index}",
        }
        for index in range(size)
    ]
    path = tmp_path / "pairs.yaml"
    path.write_text(yaml.safe_dump({"pairs": entries}))
    return path


def _arrivals(monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, context: str) -> list[float]:
    """When each of the tool's requests reached `context`'s API server, as its audit log records
    them (the log keeps whole seconds; the server hands it the exact time)."""
    audit = sandbox.clusters[context].cluster.audit
    record = audit.record
    seen: list[float] = []

    def recorded(**event: Any) -> None:
        if event["user_agent"] == USER_AGENT:
            seen.append(event["received"])
        record(**event)

    monkeypatch.setattr(audit, "record", recorded)
    return seen


@pytest.mark.needs_forklift
@pytest.mark.sandbox_only("injects 429s with a Retry-After on the MTV host")
def test_a_fleet_waits_out_the_hosts_429s_and_no_pair_fails(
    target: Target, sandbox: Sandbox, tmp_path: Path
) -> None:
    faults = sandbox["mtv"].cluster.faults
    # A share of the host's requests refused, at most 5 times each: one request that met them
    # all would still have a try left of its 6.
    refused = [
        faults.inject(verb, path, count=5, status=429, retry_after=1, agent=AGENT)
        for verb, path in (("create", "/secrets$"), ("create", "/providers$"), ("patch", ""))
    ]
    cli = make_cli(
        timing=replace(
            Timing.immediate(), honour_retry_after=True, qps=DEFAULT_QPS, burst=DEFAULT_BURST
        )
    )

    result = cli(*fleet_args(target, _fleet(tmp_path, 12), "--output", "json", "--parallel", "6"))

    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report) == 12 and [r for r in report if not r["ok"]] == []
    assert [fault.hits for fault in refused] == [5, 5, 5]
    answered = [e for e in sandbox["mtv"].cluster.audit.events() if e["userAgent"] == USER_AGENT]
    assert sum(e["responseStatus"]["code"] == 429 for e in answered) == 15
    assert all(target.provider_phase(f"source-{index}") == "Ready" for index in range(12))


@pytest.mark.needs_forklift
@pytest.mark.sandbox_only("reads the exact arrival times the sandbox's API server records")
def test_with_qps_and_burst_the_host_never_sees_more_than_burst_plus_qps_times_any_window(
    target: Target, sandbox: Sandbox, tmp_path: Path, cli: CliRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    qps, burst = 10.0, 5
    arrivals = _arrivals(monkeypatch, sandbox, "mtv")

    result = cli(
        *fleet_args(target, _fleet(tmp_path, 4), "--output", "json", "--parallel", "4"),
        "--qps",
        f"{qps:g}",
        "--burst",
        str(burst),
    )

    assert result.exit_code == 0, result.stderr
    assert len(arrivals) > 3 * burst  # enough requests for the limit to bite
    arrivals.sort()
    for first in range(len(arrivals)):
        for last in range(first + 1, len(arrivals)):
            window = arrivals[last] - arrivals[first]
            seen = last - first + 1
            assert seen <= burst + qps * (window + ARRIVAL_JITTER), (seen, window)


@pytest.mark.both_backends
def test_a_token_the_deadline_would_not_see_ends_the_run_at_once_on_either_backend(
    target: Target, cli: CliRun
) -> None:
    """Each request (each oc/kubectl command) takes a token: at one per 1000 s, the second
    request would wait past --timeout, so the run ends there, with one line, and sleeps not."""
    result = cli(
        "status",
        "--host",
        target.mtv_context,
        "--kubeconfig",
        str(target.kubeconfig),
        "--qps",
        "0.001",
        "--burst",
        "1",
        "--timeout",
        "1m",
    )

    assert result.exit_code == 9, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("error: the --timeout of 60s ran out during ")
    assert line.endswith(
        "(waiting for its turn under --qps 0.001): raise --qps or --burst, or --timeout; "
        "a re-run carries on from here"
    )
