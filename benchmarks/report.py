"""Turn benchmarks/results.json into docs/benchmarks.md and a plot of each ratio against its
target. Nothing here is typed by hand: every figure comes from the results of the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REALSTACK_MARK = "<!-- realstack: written by benchmarks/realstack_ready.py -->"

Check = tuple[str, float, float, str, str]  # name, measured, target, unit, how compared


def far(pair: dict[str, Any]) -> dict[str, Any]:
    """The pair's figures at the latency the targets are set for."""
    return dict(pair["latencies"][pair["target_latency"]])


def checks(results: dict[str, Any]) -> list[Check]:
    pair, fleet, start = results["pair"], results["fleet"], results["help"]
    at = far(pair)
    rows: list[Check] = [
        (
            f"pair / manual kubectl, {pair['target_latency']} per request",
            at["ratio"],
            0.25,
            "ratio",
            "<=",
        ),
        (
            f"round trips on the pair's critical path, {pair['target_latency']} per request",
            float(at["round_trips"]["median"]),
            12.0,
            "round trips",
            "<=",
        ),
        (
            "--help / a one-command Typer app's plain --help",
            start["help_seconds"]["median"] / start["typer_plain_floor_help_seconds"]["median"],
            1.15,
            "ratio",
            "<=",
        ),
        (
            f"fleet of {fleet['clusters']}: parallel / serial",
            fleet["fleet_parallel_seconds"] / fleet["fleet_serial_seconds"],
            0.25,
            "ratio",
            "<=",
        ),
        ("fleet peak memory (parallel)", fleet["fleet_parallel_peak_mb"], 200.0, "MB", "<"),
        ("API requests for one pair", float(pair["requests_per_pair"]), 32.0, "requests", "<="),
        (
            "mutating requests on a re-run",
            float(pair["mutating_requests_on_rerun"]),
            0.0,
            "requests",
            "<=",
        ),
    ]
    for delay, figures in results["token_notice_ms"].items():
        rows.append(
            (
                f"token noticed after fill, delay {delay} (median)",
                figures["median"],
                20.0,
                "ms",
                "<=",
            )
        )
    return rows


def held(check: Check) -> bool:
    _, measured, target, _, how = check
    return measured < target if how == "<" else measured <= target


def write_report(results: dict[str, Any], docs: Path) -> None:
    docs.mkdir(exist_ok=True)
    machine = results["machine"]
    rows = checks(results)
    pair, fleet, start = results["pair"], results["fleet"], results["help"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `nox -s bench` (`benchmarks/bench.py`); do not edit by hand. Every figure",
        f"is a median of {machine['runs']} runs after one warm-up, measured in one run on one",
        "machine, and compared as a ratio within that run.",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']},",
        f"{machine['platform']}; {machine['kubectl']}; {machine['date']}.",
        "",
        "## Targets",
        "",
        "| measure | measured | target | held |",
        "| --- | --- | --- | --- |",
    ]
    for check in rows:
        name, measured, target, unit, how = check
        lines.append(
            f"| {name} | {measured:.3g} {unit} | {how} {target:g} {unit} | "
            f"{'yes' if held(check) else '**no**'} |"
        )
    lines += [
        "",
        "## Figures",
        "",
        f"- One pair (source and destination both remote, separate MTV host, token controller "
        f"delay {pair['token_delay_seconds']:g}s), `mtv-register register` against the seed's "
        "procedure scripted with kubectl (`benchmarks/manual_procedure.sh`), with the sandbox's "
        "latency injected into every request on every cluster. A person pasting into the "
        "console is slower still; the script is the fastest manual baseline.",
        f"- API requests made by mtv-register for that pair (audit logs, Forklift's own "
        f"connection tests left out): {pair['requests_per_pair']}; mutating requests on a "
        f"second run: {pair['mutating_requests_on_rerun']} (the most at any latency).",
        "",
        "| latency per request | mtv-register | manual kubectl | ratio | round trips, tool "
        "(worst) | round trips, manual | requests, tool |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(
            f"| {name} | {f['pair_seconds']['median']:.2f}s (worst "
            f"{f['pair_seconds']['worst']:.2f}s) | {f['manual_kubectl_seconds']['median']:.2f}s "
            f"(worst {f['manual_kubectl_seconds']['worst']:.2f}s) | {f['ratio']:.3f} | "
            f"{f['round_trips']['median']:g} ({f['round_trips']['worst']:g}) | "
            f"{f['manual_round_trips']:g} | {f['requests_per_pair']} |"
            for name, f in pair["latencies"].items()
        ),
        "",
        f"- `mtv-register --help` {start['help_seconds']['median'] * 1000:.0f} ms against "
        f"{start['typer_plain_floor_help_seconds']['median'] * 1000:.0f} ms for the plain "
        "`--help` of a one-command Typer app on the same interpreter "
        "(`benchmarks/typer_floor.py`, help rendered without rich, as mtv-register renders it), "
        "the floor of any Typer program, and "
        f"{start['typer_floor_help_seconds']['median'] * 1000:.0f} ms for the same app with "
        "Typer's default rich help; the interpreter alone starts in "
        f"{start['python_start_seconds']['median'] * 1000:.0f} ms, and `kubectl version "
        f"--client` takes {start['kubectl_client_seconds']['median'] * 1000:.0f} ms. Importing "
        f"the register path costs {start['register_imports_seconds']['median'] * 1000:.0f} ms.",
        f"- Fleet of {fleet['clusters']} clusters into one host: {fleet['parallel']} at once "
        f"{fleet['fleet_parallel_seconds']:.1f}s, one at a time "
        f"{fleet['fleet_serial_seconds']:.1f}s; peak memory of the CLI process "
        f"{fleet['fleet_parallel_peak_mb']:.0f} MB (parallel), "
        f"{fleet['fleet_serial_peak_mb']:.0f} MB (serial).",
        "- Token noticed after the token controller fills the Secret:",
    ]
    for delay, figures in results["token_notice_ms"].items():
        lines.append(
            f"  - delay {delay}: median {figures['median']:.1f} ms, worst {figures['worst']:.1f} ms"
        )
    lines += _round_trips(pair)
    misses = [c for c in rows if not held(c)]
    lines += ["", "## Misses, and what bounds them", ""]
    if not misses:
        lines.append("None in this run.")
    for name, measured, target, unit, how in misses:
        lines.append(
            f"- {name}: {measured:.3g} {unit} against {how} {target:g} {unit} "
            f"({measured / target if target else measured:.2f}x the target)."
        )
        lines.extend(f"  {line}" for line in _bound(name, results))
    lines += ["", "![ratios against targets](benchmarks.png)", ""]
    doc = docs / "benchmarks.md"
    # The real stack's section (benchmarks/realstack_ready.py) stays until that script runs again.
    kept = doc.read_text() if doc.exists() else ""
    if REALSTACK_MARK in kept:
        lines += [kept[kept.index(REALSTACK_MARK) :].rstrip(), ""]
    doc.write_text("\n".join(lines))
    _plot(rows, docs / "benchmarks.png")


def _round_trips(pair: dict[str, Any]) -> list[str]:
    at = far(pair)
    path = at["critical_path"]
    lines = [
        "",
        "## Round trips",
        "",
        "A request spans its audit event, from `requestReceivedTimestamp` (the API server has "
        "read the request) to `stageTimestamp` (the answer is ready). The audit logs of all the "
        "clusters of a run are merged, keeping the requests of one client (User-Agent "
        "`mtv-register`, or `kubectl` for the manual procedure). Two requests overlap when one "
        "is received before the other is answered; a request that starts exactly when another "
        "ends does not overlap it. The round trips on the critical path are the greatest number "
        "of requests that can be put in a chain in which each is received at or after the end "
        "of the one before it (`benchmarks/bench.py`, `critical_path`: take the requests in "
        "order of their ends, each one that starts at or after the end of the last one taken).",
        "No client can make such a chain faster than one latency per request, so at L per "
        "request a run with N round trips spends at least N x L waiting on the network; "
        "requests that overlap, such as the two sides bootstrapped at once, count once.",
        "",
        f"The critical path of the last run at {pair['target_latency']} "
        f"({len(path)} round trips; how long each took, at the API server):",
        "",
        "| # | request | cluster | ms |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {number} | `{step['verb']} {step['path']}` | {step['context']} | {step['ms']:g} |"
        for number, step in enumerate(path, 1)
    ]
    return lines


def _bound(name: str, results: dict[str, Any]) -> list[str]:
    """The measured floor under a missed target, from figures of the same run."""
    start, pair = results["help"], results["pair"]
    python = start["python_start_seconds"]["median"]
    typer_import = start["typer_import_seconds"]["median"]
    imports = start["register_imports_seconds"]["median"]
    if name.startswith("--help"):
        floor = start["typer_plain_floor_help_seconds"]["median"]
        return [
            f"Bound: the interpreter alone starts in {python * 1000:.0f} ms, importing Typer "
            f"takes {typer_import * 1000:.0f} ms with it, and a one-command Typer app prints its "
            f"plain `--help` in {floor * 1000:.0f} ms; the tool's own code adds "
            f"{(start['help_seconds']['median'] - floor) * 1000:.0f} ms on top of that floor."
        ]
    if name.startswith("round trips"):
        path = far(pair)["critical_path"]
        host = sum(1 for step in path if step["context"] not in ("source", "destination"))
        return [
            f"Bound: {host} of the {len(path)} round trips are on the MTV host, where the two "
            "sides' provider Secrets and Providers are written one side after the other and "
            "the wait for Forklift and the registration's Events follow; the other "
            f"{len(path) - host} are the two sides' bootstrap, done at once (the table under "
            "Round trips lists them)."
        ]
    if name.startswith("pair"):
        at = far(pair)
        latency = at["latency_ms"] / 1000
        trips = at["round_trips"]["median"]
        tool = at["pair_seconds"]["median"]
        manual = at["manual_kubectl_seconds"]["median"]
        webhook = sum(
            step["ms"] / 1000
            for step in at["critical_path"]
            if step["context"] not in ("source", "destination")  # the MTV host
            and step["verb"] in ("create", "update", "patch")
            and "/secrets" in step["path"]
        )
        floor = imports + pair["token_delay_seconds"] + trips * latency
        return [
            f"Bound: at {pair['target_latency']}, the {trips:g} round trips cost at least "
            f"{trips * latency:.2f}s; with the imports of the register path ({imports:.2f}s) and "
            f"the token controller's delay ({pair['token_delay_seconds']:g}s) that is a floor of "
            f"{floor:.2f}s, {floor / manual:.2f} of the manual procedure ({manual:.2f}s), against "
            f"the tool's {tool:.2f}s. The provider Secret writes on the critical path take "
            f"{webhook:.2f}s of it: forklift-api's validating webhook runs Forklift's whole "
            "connection test (eight requests to the remote cluster) inside each write, and the "
            "registration writes each side's Secret twice (created, then owned by its Provider), "
            "one side after the other (docs/benchmarks.md lists the requests)."
        ]
    if name.startswith("fleet of") and "fleet_parallel_cli_cpu_seconds" in results["fleet"]:
        return _fleet_bound(results["fleet"], results["machine"]["cores"])
    return []


def _fleet_bound(fleet: dict[str, Any], cores: int) -> list[str]:
    """The CPU floor under the parallel fleet: both processes' CPU time spread over the cores,
    and each Python process's own, which its interpreter lock keeps to about one core."""
    cli = fleet["fleet_parallel_cli_cpu_seconds"]
    sandbox = fleet["fleet_parallel_sandbox_cpu_seconds"]
    floor = max((cli + sandbox) / cores, cli, sandbox)
    serial = fleet["fleet_serial_seconds"]
    return [
        f"Bound: the parallel run used {cli + sandbox:.1f}s of CPU, {cli:.1f}s in the CLI and "
        f"{sandbox:.1f}s in the sandbox serving all {fleet['clusters'] + 2} clusters (one Python "
        f"process, the bench's); {cores} cores cannot do that in less than "
        f"{(cli + sandbox) / cores:.1f}s, and one Python process, held to about one core by its "
        f"interpreter lock, not in less than its own CPU time: a floor of {floor:.1f}s, "
        f"{floor / serial:.2f} of the serial run ({serial:.1f}s), against the measured "
        f"{fleet['fleet_parallel_seconds']:.1f}s. The serial run used "
        f"{fleet['fleet_serial_cli_cpu_seconds'] + fleet['fleet_serial_sandbox_cpu_seconds']:.1f}s "
        "of CPU for the same work."
    ]


def _plot(rows: list[Check], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r[2] > 0]
    names = [r[0] for r in shown]
    fractions = [r[1] / r[2] for r in shown]
    colours = ["tab:green" if held(r) else "tab:red" for r in shown]
    figure, axis = plt.subplots(figsize=(9, 0.5 * len(shown) + 1.5))
    axis.barh(names, fractions, color=colours)
    axis.axvline(1.0, color="black", linestyle="--", linewidth=1)
    axis.set_xlabel("measured / target (left of the dashed line: target held)")
    axis.invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
