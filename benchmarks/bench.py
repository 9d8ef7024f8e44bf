"""`nox -s bench`: mtv-register measured against what a user would do instead, side by side, in
one run on one machine. Writes benchmarks/results.json, docs/benchmarks.md, docs/benchmarks.png.

Every figure is a median of RUNS runs after a warm-up; comparisons are ratios within this run,
never absolute targets, because the machines are shared and noisy.

`nox -s bench -- pair` runs only the steps named (help, token_notice_ms, pair, fleet) and keeps
the others' figures from benchmarks/results.json. BENCH_LATENCIES_MS (0,25,50,150) sets the
latencies the pair is measured at: the sandbox's per-request latency, on every cluster.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from mtv_register.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
TOKEN_DELAY = float(os.environ.get("BENCH_TOKEN_DELAY", "0.5"))
FLEET = int(os.environ.get("BENCH_FLEET", "50"))
FLEET_PARALLEL = int(os.environ.get("BENCH_FLEET_PARALLEL", "10"))
# A pair, at these latencies per request on every cluster ("clusters far away"), with a short
# token-controller delay so that the requests, not the wait for the token, make the difference.
LATENCIES = tuple(
    float(ms) / 1000 for ms in os.environ.get("BENCH_LATENCIES_MS", "0,25,50,150").split(",")
)
TARGET_LATENCY = 0.05
PAIR_TOKEN_DELAY = float(os.environ.get("BENCH_PAIR_TOKEN_DELAY", "0.1"))
MUTATING = {"create", "update", "patch", "delete", "deletecollection"}


def tool() -> list[str]:
    """The console script beside this interpreter, as installed (not a pyenv shim on PATH,
    which is a shell script that costs tens of milliseconds before Python starts)."""
    script = Path(sys.executable).parent / "mtv-register"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mtv_register"]


def run_env(kubeconfig: Path | None, home: Path) -> dict[str, str]:
    env = {**os.environ, "HOME": str(home), "KUBECACHEDIR": str(home / "cache")}
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    return env


def timed_process(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one child process."""
    elapsed, peak_kib, _ = measured_process(command, env)
    return elapsed, peak_kib


def measured_process(command: list[str], env: dict[str, str]) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (KiB) and CPU seconds (user and system) of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    stderr = process.stderr.read().decode() if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed: {stderr.strip()[-500:]}")
    return elapsed, usage.ru_maxrss, usage.ru_utime + usage.ru_stime


def own_cpu_seconds() -> float:
    """CPU seconds this process (and so the in-process sandbox) has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def summary(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "worst": max(samples), "runs": len(samples)}


# -- one pair, against the seed's procedure with kubectl ------------------------------------------


def seed_files(work: Path) -> None:
    text = (ROOT / "tests" / "data" / "seed_procedure.txt").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    (work / "role.yaml").write_text(blocks[0])
    (work / "secret.yaml").write_text(blocks[1])


def requests_of(sandbox: Sandbox, marks: dict[str, int], agent: str) -> list[dict[str, Any]]:
    """The audit events of the requests a client made (by the start of its User-Agent; Forklift's
    own are left out), each with the context of the cluster that logged it."""
    return [
        {**event, "context": context}
        for context, cluster in sandbox.clusters.items()
        for event in cluster.cluster.audit.since(marks[context])
        if event.get("userAgent", "").startswith(agent)
    ]


def _instant(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def critical_path(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The longest chain of requests each received after the one before it was answered: the
    round trips that had to follow one another (docs/benchmarks.md, "Round trips").

    A request spans its audit event's [requestReceivedTimestamp, stageTimestamp]. Taking, in
    order of their ends, every request that starts at or after the end of the last one taken
    gives a chain of the greatest length (the earliest end leaves the most room after it)."""
    spans = sorted(
        (
            (_instant(e["requestReceivedTimestamp"]), _instant(e["stageTimestamp"]), e)
            for e in events
        ),
        key=lambda span: (span[1], span[0]),
    )
    chain: list[dict[str, Any]] = []
    last_end = float("-inf")
    for start, end, event in spans:
        if start >= last_end:
            chain.append(event)
            last_end = end
    return chain


def duration(event: dict[str, Any]) -> float:
    return _instant(event["stageTimestamp"]) - _instant(event["requestReceivedTimestamp"])


def describe(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "verb": event["verb"],
        "path": event["requestURI"].split("?", 1)[0],
        "context": event["context"],
        "ms": round(duration(event) * 1000, 1),
    }


def set_latency(sandbox: Sandbox, seconds: float) -> None:
    for cluster in sandbox.clusters.values():
        cluster.cluster.faults.latency = seconds


def bench_pair_at(latency: float) -> dict[str, Any]:
    """One pair at `latency` per request on every cluster, against the manual procedure."""
    tool_times: list[float] = []
    manual_times: list[float] = []
    requests: list[int] = []
    round_trips: list[int] = []
    manual_round_trips: list[int] = []
    rerun_mutating: list[int] = []
    path: list[dict[str, Any]] = []
    for attempt in range(RUNS + 1):
        with tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            home = work / "home"
            home.mkdir()
            with Sandbox(mtv_on="separate", token_delay=PAIR_TOKEN_DELAY) as sandbox:
                set_latency(sandbox, latency)
                kubeconfig = sandbox.write_kubeconfig(work / "kubeconfig")
                marks = {c: s.cluster.audit.mark() for c, s in sandbox.clusters.items()}
                command = [
                    *tool(),
                    "register",
                    "--source",
                    "source",
                    "--destination",
                    "destination",
                    "--host",
                    "mtv",
                    "--kubeconfig",
                    str(kubeconfig),
                    "--yes",
                ]
                elapsed, _ = timed_process(command, run_env(kubeconfig, home))
                first = requests_of(sandbox, marks, "mtv-register")
                marks = {c: s.cluster.audit.mark() for c, s in sandbox.clusters.items()}
                timed_process(command, run_env(kubeconfig, home))
                again = requests_of(sandbox, marks, "mtv-register")
            with Sandbox(mtv_on="separate", token_delay=PAIR_TOKEN_DELAY) as sandbox:
                set_latency(sandbox, latency)
                kubeconfig = sandbox.write_kubeconfig(work / "kubeconfig-manual")
                seed_files(work)
                marks = {c: s.cluster.audit.mark() for c, s in sandbox.clusters.items()}
                manual, _ = timed_process(
                    ["bash", str(ROOT / "benchmarks" / "manual_procedure.sh"), str(work)],
                    run_env(kubeconfig, home),
                )
                by_hand = requests_of(sandbox, marks, "kubectl")
        if attempt == 0:
            continue  # warm-up: caches, imports, page cache
        chain = critical_path(first)
        tool_times.append(elapsed)
        manual_times.append(manual)
        requests.append(len(first))
        round_trips.append(len(chain))
        manual_round_trips.append(len(critical_path(by_hand)))
        rerun_mutating.append(sum(1 for e in again if e["verb"] in MUTATING))
        path = [describe(e) for e in chain]  # the last run's, to name what is on it
    return {
        "latency_ms": round(latency * 1000),
        "pair_seconds": summary(tool_times),
        "manual_kubectl_seconds": summary(manual_times),
        "ratio": statistics.median(tool_times) / statistics.median(manual_times),
        "round_trips": {"median": statistics.median(round_trips), "worst": max(round_trips)},
        "manual_round_trips": statistics.median(manual_round_trips),
        "requests_per_pair": max(requests),
        "mutating_requests_on_rerun": max(rerun_mutating),
        "critical_path": path,
    }


def bench_pair() -> dict[str, Any]:
    at = {f"{round(latency * 1000)}ms": bench_pair_at(latency) for latency in LATENCIES}
    return {
        "latencies": at,
        "target_latency": f"{round(TARGET_LATENCY * 1000)}ms",
        "requests_per_pair": max(figures["requests_per_pair"] for figures in at.values()),
        "mutating_requests_on_rerun": max(
            figures["mutating_requests_on_rerun"] for figures in at.values()
        ),
        "token_delay_seconds": PAIR_TOKEN_DELAY,
    }


# -- how soon a filled token is noticed -----------------------------------------------------------


def bench_token_notice() -> dict[str, Any]:
    from mtv_register import clusters, manifests
    from mtv_register.kube import NAMESPACE, SECRET, SERVICE_ACCOUNT
    from mtv_register.tokens import wait_for_token

    results: dict[str, Any] = {}
    for delay in (0.0, 0.05, 0.5, 2.0):
        samples = []
        with tempfile.TemporaryDirectory() as folder, Sandbox(token_delay=delay) as sandbox:
            kubeconfig = sandbox.write_kubeconfig(Path(folder) / "kubeconfig")
            kube = clusters.Connector().connect(clusters.load_kubeconfig(kubeconfig), "source")
            kube.create(NAMESPACE, manifests.namespace("bench"))
            kube.create(SERVICE_ACCOUNT, manifests.service_account("bench", "bench"))
            for run in range(RUNS + 1):
                secret = kube.create(
                    SECRET, manifests.token_secret("bench", "bench", name=f"bench-{run}")
                )
                wait_for_token(kube, secret, 30)
                noticed = time.monotonic()
                filled = sandbox["source"].cluster.token_filled_at[("bench", f"bench-{run}")]
                if run:
                    samples.append((noticed - filled) * 1000)
            kube.close()
        results[f"{int(delay * 1000)}ms"] = summary(samples)
    return results


# -- start-up -------------------------------------------------------------------------------------


FLOORS = {
    # What any Python CLI pays before its first line runs, and what this one's imports cost:
    # the bounds the start-up and pair figures are explained with.
    "python_start_seconds": "pass",
    "typer_import_seconds": "import typer",
    "register_imports_seconds": "import mtv_register.cli, mtv_register.orchestrator, "
    "kubernetes.config",
}


def bench_help() -> dict[str, Any]:
    """`mtv-register --help` against the floor of any Typer program (a one-command app run by the
    same interpreter), with kubectl's client start for reference."""
    floor = [sys.executable, str(ROOT / "benchmarks" / "typer_floor.py"), "--help"]
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        env = run_env(None, home)
        runs = {
            "help_seconds": [*tool(), "--help"],
            "typer_floor_help_seconds": floor,
            "typer_plain_floor_help_seconds": ["env", "TYPER_FLOOR_PLAIN=1", *floor],
            "kubectl_client_seconds": ["kubectl", "version", "--client"],
            **{name: [sys.executable, "-c", code] for name, code in FLOORS.items()},
        }
        samples: dict[str, list[float]] = {name: [] for name in runs}
        for attempt in range(RUNS + 1):
            for name, command in runs.items():  # interleaved, so noise hits each alike
                elapsed, _ = timed_process(command, env)
                if attempt:
                    samples[name].append(elapsed)
    return {name: summary(values) for name, values in samples.items()}


# -- a fleet of clusters into one host ------------------------------------------------------------


def bench_fleet() -> dict[str, Any]:
    results: dict[str, Any] = {"clusters": FLEET, "parallel": FLEET_PARALLEL}
    for label, parallel in (("fleet_parallel", FLEET_PARALLEL), ("fleet_serial", 1)):
        with tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            (work / "home").mkdir()
            with Sandbox(sources=FLEET, token_delay=TOKEN_DELAY) as sandbox:
                kubeconfig = sandbox.write_kubeconfig(work / "kubeconfig")
                pairs = [{"source": s, "destination": "destination"} for s in sandbox.sources]
                (work / "pairs.yaml").write_text(yaml.safe_dump({"pairs": pairs}))
                command = [
                    *tool(),
                    "register",
                    "--pairs",
                    str(work / "pairs.yaml"),
                    "--parallel",
                    str(parallel),
                    "--kubeconfig",
                    str(kubeconfig),
                    "--yes",
                    "--output",
                    "json",
                ]
                before = own_cpu_seconds()
                elapsed, peak_kib, cli_cpu = measured_process(
                    command, run_env(kubeconfig, work / "home")
                )
                sandbox_cpu = own_cpu_seconds() - before
        results[f"{label}_seconds"] = elapsed
        results[f"{label}_peak_mb"] = peak_kib / 1024
        results[f"{label}_cli_cpu_seconds"] = cli_cpu
        results[f"{label}_sandbox_cpu_seconds"] = sandbox_cpu
    return results


# -- report ---------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor()
    kubectl = subprocess.run(
        ["kubectl", "version", "--client"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[:1]
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kubectl": kubectl[0] if kubectl else "",
        "runs": RUNS,
    }


def main(names: list[str]) -> None:
    """Every step, or only those `names` (`nox -s bench -- pair`): the others' figures are then
    those of benchmarks/results.json, from an earlier run."""
    steps: dict[str, Callable[[], dict[str, Any]]] = {
        "help": bench_help,
        "token_notice_ms": bench_token_notice,
        "pair": bench_pair,
        "fleet": bench_fleet,
    }
    unknown = sorted(set(names) - set(steps))
    if unknown:
        raise SystemExit(f"bench: no step {', '.join(unknown)}; the steps: {', '.join(steps)}")
    stored = ROOT / "benchmarks" / "results.json"
    results: dict[str, Any] = json.loads(stored.read_text()) if names else {}
    results["machine"] = machine()
    for name, step in steps.items():
        if names and name not in names:
            continue
        print(f"bench: {name} ...", flush=True)
        started = time.perf_counter()
        results[name] = step()
        print(f"bench: {name} done in {time.perf_counter() - started:.1f}s", flush=True)
    stored.write_text(json.dumps(results, indent=2) + "\n")
    from benchmarks.report import write_report

    write_report(results, ROOT / "docs")
    print("bench: wrote benchmarks/results.json, docs/benchmarks.md, docs/benchmarks.png")


if __name__ == "__main__":
    main(sys.argv[1:])
