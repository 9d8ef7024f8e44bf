"""Fleets (`register --pairs`, `unregister --pairs`): progress per pair, then one report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mtv_register.cli.common import Output, err, render

if TYPE_CHECKING:
    from mtv_register.fleet import FleetResult
    from mtv_register.orchestrator import PairOptions


def register_all(defaults: PairOptions, path: Path, parallel: int, output: Output) -> None:
    """Every pair of the file at `path`, registered with the options of `defaults`."""
    from mtv_register.fleet import load_pairs, register_fleet

    pairs = load_pairs(path, defaults)

    def progress(outcome: FleetResult) -> None:
        if output is Output.text:
            state = "ok" if outcome.ok else f"FAILED: {outcome.error}"
            typer.secho(
                f"  {outcome.pair}: {state} ({outcome.seconds:.1f}s)", err=True, dim=outcome.ok
            )

    report(register_fleet(pairs, parallel=parallel, progress=progress), output)


def report(results: list[FleetResult], output: Output) -> None:
    """A fleet's results as a table or JSON/YAML; exits 12 (one failed pair: its own code)."""
    from mtv_register.errors import PartialFailure

    data = [{**vars(r), "providers": [vars(p) for p in r.providers]} for r in results]
    render(data, output, lambda: _table(results))
    failed = [r for r in results if not r.ok]
    if failed:
        err(f"error: {len(failed)} of {len(results)} pairs failed")
        raise typer.Exit(failed[0].exit_code if len(results) == 1 else PartialFailure.exit_code)


def _table(results: list[FleetResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(results)} pairs")
    for column in ("PAIR", "RESULT", "PROVIDERS", "SECONDS", "ERROR"):
        table.add_column(column)
    for r in results:
        table.add_row(
            r.pair,
            ("changed" if r.changed else "unchanged") if r.ok else "failed",
            ", ".join(p.name for p in r.providers),
            f"{r.seconds:.1f}",
            r.error,
        )
    Console(width=200).print(table)
