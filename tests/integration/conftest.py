"""Helpers for the integration tests: the CLI in-process, fast pair options, object snapshots,
mutating requests counted from each cluster's audit log."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from typer.testing import CliRunner, Result

from mtv_register.cli import app
from mtv_register.kube import RetryPolicy
from mtv_register.orchestrator import PairOptions
from mtv_register.sandbox import ISSUED_TOKENS, Sandbox
from tests.conftest import assert_no_token
from tests.sandbox.helpers import wait_for as wait_for  # shared with the sandbox tests

T = TypeVar("T")
Obj = dict[str, Any]
Snapshot = dict[str, dict[tuple[str, str, str], Obj]]
CliRun = Callable[..., Result]


def assert_no_token_in_any_form(text: str) -> None:
    """No sandbox token, as issued or base64-encoded as a Secret carries it."""
    assert_no_token(text)
    encoded = [base64.b64encode(token.encode()).decode() for token in list(ISSUED_TOKENS)]
    leaked = sum(1 for token in encoded if token in text)
    assert not leaked, f"{leaked} sandbox token(s) leaked base64-encoded"


@pytest.fixture
def cli() -> CliRun:
    """`mtv-register ARGS` in-process; every result is checked for leaked tokens."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Result:
        result = runner.invoke(app, list(args), input=input)
        # CliRunner swallows an escaped exception that a real run would print as a traceback.
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(
            result.exception
        )
        assert_no_token_in_any_form(result.stdout + result.stderr)
        assert "Traceback" not in result.stdout + result.stderr
        return result

    return run


def pair_options(kubeconfig: Path, *, host: str | None = "mtv", **overrides: Any) -> PairOptions:
    """The pair source -> destination, with retries that never sleep."""
    settings: dict[str, Any] = {
        "source": "source",
        "destination": "destination",
        "host": host,
        "kubeconfig": kubeconfig,
        "retry": RetryPolicy.immediate(),
        "timeout": 30.0,
        **overrides,
    }
    return PairOptions(**settings)


def register_args(kubeconfig: Path, *extra: str, host: str | None = "mtv") -> list[str]:
    args = ["register", "--source", "source", "--destination", "destination"]
    if host:
        args += ["--host", host]
    return [*args, "--kubeconfig", str(kubeconfig), *extra]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def one_error_line(result: Result) -> str:
    """The failure's single `error:` line (progress lines may precede it)."""
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == lines[0]
    return lines[0]


def marks(sandbox: Sandbox) -> dict[str, int]:
    return {context: sc.cluster.audit.mark() for context, sc in sandbox.clusters.items()}


def mutating_since(sandbox: Sandbox, since: dict[str, int]) -> dict[str, list[str]]:
    """Per cluster, the mutating requests made since `since` ("verb URI")."""
    return {
        context: [
            f"{event['verb']} {event['requestURI']}"
            for event in sc.cluster.audit.mutating(since[context])
        ]
        for context, sc in sandbox.clusters.items()
    }


def assert_no_mutation(sandbox: Sandbox, since: dict[str, int]) -> None:
    made = mutating_since(sandbox, since)
    assert made == {context: [] for context in sandbox.clusters}


def snapshot(sandbox: Sandbox) -> Snapshot:
    """Every stored object of every cluster, keyed by (type, namespace, name)."""
    result: Snapshot = {}
    for context, sc in sandbox.clusters.items():
        objects = {}
        for key, obj in sc.cluster.store.all_objects():
            meta = obj["metadata"]
            objects[(key, meta.get("namespace", ""), meta["name"])] = obj
        result[context] = objects
    return result


def snapshot_difference(before: Snapshot, after: Snapshot) -> dict[str, Obj]:
    """What differs per cluster: objects added, removed, or changed (a Provider's status, which
    Forklift writes, and its resourceVersion are not changes the tool made)."""

    def comparable(key: tuple[str, str, str], obj: Obj) -> Obj:
        if key[0] == "forklift.konveyor.io/providers":
            obj = {k: v for k, v in obj.items() if k != "status"}
            obj["metadata"] = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
        return obj

    difference: dict[str, Obj] = {}
    for context in before:
        old, new = before[context], after[context]
        added = sorted(str(k) for k in set(new) - set(old))
        removed = sorted(str(k) for k in set(old) - set(new))
        changed = sorted(
            str(k) for k in set(old) & set(new) if comparable(k, old[k]) != comparable(k, new[k])
        )
        if added or removed or changed:
            difference[context] = {"added": added, "removed": removed, "changed": changed}
    return difference


def provider_phase(sandbox: Sandbox, name: str, namespace: str = "openshift-mtv") -> str:
    host = sandbox[sandbox.mtv_context].cluster
    provider = host.store.find(
        host.rtype("forklift.konveyor.io", "v1beta1", "providers"), namespace, name
    )
    return str(((provider or {}).get("status") or {}).get("phase", "")) if provider else ""


def settle_forklift(sandbox: Sandbox) -> None:
    """Wait until Forklift has run every test already queued (its worker runs them in order)."""
    done = threading.Event()
    forklift = sandbox[sandbox.mtv_context].forklift
    assert forklift is not None
    forklift.scheduler.call_later(0, done.set)
    assert done.wait(10), "Forklift's queue did not drain"
