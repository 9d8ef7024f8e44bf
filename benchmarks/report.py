"""Turn benchmarks/results.json into docs/benchmarks.md and a plot of each ratio against its
target. Nothing here is typed by hand: every figure comes from the results of the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

Check = tuple[str, float, float, str, str]  # name, measured, target, unit, how compared


def checks(results: dict[str, Any]) -> list[Check]:
    pair, fleet, start = results["pair"], results["fleet"], results["help"]
    rows: list[Check] = [
        (
            "pair / manual kubectl",
            pair["pair_seconds"]["median"] / pair["manual_kubectl_seconds"]["median"],
            0.25,
            "ratio",
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
        f"delay {pair['token_delay_seconds']:g}s): `mtv-register register` "
        f"{pair['pair_seconds']['median']:.2f}s (worst {pair['pair_seconds']['worst']:.2f}s); "
        f"the seed's procedure scripted with kubectl (`benchmarks/manual_procedure.sh`) "
        f"{pair['manual_kubectl_seconds']['median']:.2f}s (worst "
        f"{pair['manual_kubectl_seconds']['worst']:.2f}s). A person pasting into the console is "
        "slower still; the script is the fastest manual baseline.",
        f"- API requests made by mtv-register for that pair (audit logs, Forklift's own "
        f"connection tests left out): {pair['requests_per_pair']}; mutating requests on a "
        f"second run: {pair['mutating_requests_on_rerun']}.",
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
    (docs / "benchmarks.md").write_text("\n".join(lines))
    _plot(rows, docs / "benchmarks.png")


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
    if name.startswith("pair"):
        manual = pair["manual_kubectl_seconds"]["median"]
        floor = pair["token_delay_seconds"] + imports
        return [
            f"Bound: the token controller's delay ({pair['token_delay_seconds']:g}s, paid once "
            f"because both clusters are bootstrapped at once) plus the imports of the register "
            f"path ({imports:.2f}s, most of it the `kubernetes` client and its dependencies) "
            f"make a floor of {floor:.2f}s, {floor / manual:.2f} of the manual procedure; the "
            f"requests themselves take {pair['pair_seconds']['median'] - floor:.2f}s. Meeting "
            "0.25 would need a kubeconfig loader and HTTP layer of the tool's own instead of the "
            "official client, which the design rules out."
        ]
    return []


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
