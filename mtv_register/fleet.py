"""Fleets of pairs: the `--pairs` file read into options, every pair registered `parallel` at a
time, and one result per pair: a pair that fails is its own result and never stops the others
(`unregister` runs its fleets through the same `fleet_entry`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mtv_register import deadline as run_deadline
from mtv_register import errors, sides
from mtv_register.orchestrator import PairOptions, ProviderState, register_pair

PAIR_KEYS = {
    "source",
    "destination",
    "host",
    "sourceName",
    "destinationName",
    "mtvNamespace",
    "sourceUrl",
    "destinationUrl",
}


@dataclass
class FleetResult:
    pair: str
    ok: bool
    seconds: float
    providers: list[ProviderState] = field(default_factory=list)
    changed: bool = False
    error: str = ""
    exit_code: int = 0


def fleet_entry(
    options: PairOptions, work: Callable[[PairOptions], tuple[list[ProviderState], bool]]
) -> FleetResult:
    """One pair of a fleet: `work` gives (providers, changed); a failure is the pair's result."""
    label = f"{options.source} -> {options.destination}"
    started = time.monotonic()
    try:
        providers, changed = work(options)
    except errors.MtvRegisterError as failure:
        return FleetResult(
            label,
            False,
            time.monotonic() - started,
            error=failure.line(),
            exit_code=failure.exit_code,
        )
    return FleetResult(label, True, time.monotonic() - started, providers, changed)


def load_pairs(path: Path, defaults: PairOptions) -> list[PairOptions]:
    """A fleet file: `pairs:` (or a bare list) of {source, destination[, host, sourceName,
    destinationName, mtvNamespace, sourceUrl, destinationUrl]}; the rest comes from flags."""
    import dataclasses

    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise errors.UsageError(
            f"--pairs {path} cannot be read: {err.strerror}", fix="pass a readable YAML file"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise errors.UsageError(
            f"--pairs {path} is not valid YAML{where}",
            fix="fix the file (a list of {source, destination} entries)",
        ) from None
    entries = data.get("pairs") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise errors.UsageError(
            f"--pairs {path} has no list of pairs",
            fix="write `pairs:` followed by entries with source and destination",
        )
    pairs = []
    for index, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise errors.UsageError(
                f"--pairs {path}: entry {index} is not a mapping",
                fix="give each entry source: and destination:",
            )
        unknown = sorted(set(entry) - PAIR_KEYS)
        missing = [k for k in ("source", "destination") if not entry.get(k)]
        if unknown or missing:
            problem = (
                f"unknown key {', '.join(unknown)}"
                if unknown
                else f"missing {' and '.join(missing)}"
            )
            raise errors.UsageError(
                f"--pairs {path}: entry {index}: {problem}",
                fix=f"use only: {', '.join(sorted(PAIR_KEYS))}",
            )
        pairs.append(
            dataclasses.replace(
                defaults,
                source=str(entry["source"]),
                destination=str(entry["destination"]),
                host=entry.get("host", defaults.host),
                source_name=entry.get("sourceName"),
                destination_name=entry.get("destinationName"),
                mtv_namespace=entry.get("mtvNamespace", defaults.mtv_namespace),
                source_url=entry.get("sourceUrl"),
                destination_url=entry.get("destinationUrl"),
            )
        )
    for pair in pairs:
        sides.validate(pair)
    return pairs


def register_fleet(
    pairs: list[PairOptions],
    *,
    parallel: int,
    progress: Callable[[FleetResult], None] | None = None,
) -> list[FleetResult]:
    """Register every pair, `parallel` at a time; one failing pair never stops the others."""
    from concurrent.futures import as_completed

    def one(options: PairOptions) -> FleetResult:
        def work(pair: PairOptions) -> tuple[list[ProviderState], bool]:
            result = register_pair(pair)
            return result.providers, result.mutated

        return fleet_entry(options, work)

    results: dict[int, FleetResult] = {}
    with run_deadline.pool(parallel, undoing=True) as pool:
        futures = {pool.submit(one, pair): index for index, pair in enumerate(pairs)}
        for future in as_completed(futures):
            outcome = future.result()
            results[futures[future]] = outcome
            if progress is not None:
                progress(outcome)
    return [results[index] for index in range(len(pairs))]
