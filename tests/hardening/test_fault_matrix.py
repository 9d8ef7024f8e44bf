"""Every API request register and rotate make, failed in turn: transient faults are survived
with the same end state as a clean run; persistent ones fail clearly and a re-run converges."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mtv_register import errors
from mtv_register.clusters import Connector
from mtv_register.orchestrator import register_pair
from mtv_register.registration import open_host
from mtv_register.rotation import RotateOptions, rotate_all
from mtv_register.sandbox import Sandbox
from mtv_register.timing import Timing
from tests.conftest import FAST_FORKLIFT
from tests.hardening import figures
from tests.hardening.matrix import (
    RANDOM_SUFFIX,
    TOOL_AGENT,
    Request,
    marks,
    objects,
    options,
    provider_phases,
    tool_requests,
)

TRANSIENT = {
    "500": {"status": 500},
    "429 with Retry-After": {"status": 429, "retry_after": 1},
    "dropped connection": {"drop": True},
    "answer lost after the work was done": {"drop": True, "after": True},
}
CONFLICT = {"409 Conflict": {"status": 409}}


def _start(tmp: Path) -> tuple[Sandbox, Path]:
    sandbox = Sandbox(mtv_on="separate", forklift_timing=FAST_FORKLIFT).start()
    return sandbox, sandbox.write_kubeconfig(tmp / "kubeconfig")


def _register(kubeconfig: Path) -> None:
    register_pair(options(kubeconfig))


def _rotate(kubeconfig: Path) -> None:
    host = open_host(
        kubeconfig=str(kubeconfig),
        host="mtv",
        in_cluster=False,
        connector=Connector(timing=Timing.immediate()),
    )
    try:
        results = rotate_all(
            host,
            "openshift-mtv",
            None,
            RotateOptions(timeout=30, timing=Timing.immediate()),
            lambda change: None,
        )
    finally:
        host.close()
    failed = [r for r in results if r.action != "rotated"]
    if failed:
        raise errors.MtvRegisterError(f"rotation did not complete: {failed}")


def _prepared(tmp: Path, action: str) -> tuple[Sandbox, Path]:
    sandbox, kubeconfig = _start(tmp)
    if action == "rotate":
        _register(kubeconfig)
    return sandbox, kubeconfig


def _clean(
    tmp_path_factory: pytest.TempPathFactory, action: str
) -> tuple[list[Request], dict[str, Any]]:
    sandbox, kubeconfig = _prepared(tmp_path_factory.mktemp(f"clean-{action}"), action)
    try:
        before = marks(sandbox)
        (_register if action == "register" else _rotate)(kubeconfig)
        return tool_requests(sandbox, before), objects(sandbox)
    finally:
        sandbox.stop()


@pytest.fixture(scope="module")
def clean_register(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[list[Request], dict[str, Any]]:
    return _clean(tmp_path_factory, "register")


@pytest.fixture(scope="module")
def clean_rotate(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Request], dict[str, Any]]:
    return _clean(tmp_path_factory, "rotate")


def _end_state_ok(sandbox: Sandbox, expected: dict[str, Any]) -> str:
    """'' when the sandbox ends as the clean run did, else what differs."""
    found = objects(sandbox)
    problems = []
    for context, counter in found.items():
        duplicates = [key for key, count in counter.items() if count > 1]
        missing = set(expected[context]) - set(counter)
        extra = set(counter) - set(expected[context])
        if duplicates or missing or extra:
            problems.append(
                f"{context}: duplicates {duplicates}, missing {sorted(missing)}, "
                f"extra {sorted(extra)}"
            )
    phases = provider_phases(sandbox)
    if any(phase != "Ready" for phase in phases.values()):
        problems.append(f"providers not Ready: {phases}")
    return "; ".join(problems)


def _inject(sandbox: Sandbox, request: Request, count: int, fault: dict[str, Any]) -> Any:
    """The fault on `request`. A token Secret a rotation makes has a new random name in every
    run, so its requests are aimed at by pattern: any token Secret of that namespace."""
    pattern = "^" + re.escape(request.path) + "$"
    head, _, name = request.path.rpartition("/")
    if RANDOM_SUFFIX.search(name):
        pattern = (
            "^"
            + re.escape(head)
            + "/"
            + re.escape(RANDOM_SUFFIX.sub("", name))
            + "-token-[a-z0-9]{5}$"
        )
    return sandbox[request.context].cluster.faults.inject(
        request.verb, pattern, count=count, agent=TOOL_AGENT, **fault
    )


def _matrix(
    tmp_path: Path,
    action: str,
    requests: list[Request],
    expected: dict[str, Any],
    kinds: dict[str, dict[str, Any]],
    run: Callable[[Path], None],
    applies: Callable[[Request], bool] = lambda r: True,
) -> list[str]:
    failures = []
    section = f"transient faults: {action}"
    for request in requests:
        if not applies(request):
            continue
        for label, fault in kinds.items():
            sandbox, kubeconfig = _prepared(tmp_path / f"{len(failures)}-{id(fault)}", action)
            try:
                _inject(sandbox, request, 1, fault)
                problem = ""
                try:
                    run(kubeconfig)
                except errors.MtvRegisterError as error:
                    problem = f"failed: {error.line()}"
                problem = problem or _end_state_ok(sandbox, expected)
            finally:
                sandbox.stop()
            figures.record(section, not problem, f"{label} on {request}: {problem}")
            if problem:
                failures.append(f"{label} on {request}: {problem}")
    return failures


def test_a_clean_register_makes_requests_to_every_cluster(clean_register):
    requests, _ = clean_register
    assert {r.context for r in requests} == {"source", "destination", "mtv"}
    assert {r.verb for r in requests} >= {"get", "create", "watch", "patch"}


@pytest.mark.parametrize("label", list(TRANSIENT))
def test_register_survives_one_transient_fault_on_each_request(clean_register, tmp_path, label):
    requests, expected = clean_register
    failures = _matrix(
        tmp_path, "register", requests, expected, {label: TRANSIENT[label]}, _register
    )
    assert not failures, "\n".join(failures)


def test_register_survives_a_conflict_on_each_update(clean_register, tmp_path):
    requests, expected = clean_register
    failures = _matrix(
        tmp_path,
        "register",
        requests,
        expected,
        CONFLICT,
        _register,
        applies=lambda r: r.verb in ("update", "patch"),
    )
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("label", list(TRANSIENT))
def test_rotate_survives_one_transient_fault_on_each_request(clean_rotate, tmp_path, label):
    requests, expected = clean_rotate
    failures = _matrix(tmp_path, "rotate", requests, expected, {label: TRANSIENT[label]}, _rotate)
    assert not failures, "\n".join(failures)


def test_rotate_survives_a_conflict_on_each_update(clean_rotate, tmp_path):
    requests, expected = clean_rotate
    failures = _matrix(
        tmp_path,
        "rotate",
        requests,
        expected,
        CONFLICT,
        _rotate,
        applies=lambda r: r.verb in ("update", "patch"),
    )
    assert not failures, "\n".join(failures)


PERSISTENT = {
    "500": {"status": 500},  # retried until the tries run out
    "403": {"status": 403},  # refused at once
}
# Each persistent matrix runs in this many tests, each over every SHARDS-th request of the clean
# run, so that parallel workers share it.
SHARDS = 4


@pytest.mark.parametrize("shard", range(SHARDS))
@pytest.mark.parametrize("label", list(PERSISTENT))
@pytest.mark.parametrize("action", ["register", "rotate"])
def test_a_persistent_fault_fails_clearly_and_a_rerun_converges(
    clean_register, clean_rotate, tmp_path, action, label, shard
):
    """Every request of a clean run, in turn, fails for good: the run fails with one clear line
    (or, where a request has a fallback, succeeds with the clean end state), a rotation leaves
    its Providers working on the old token, and a re-run without the fault converges."""
    requests, expected = clean_register if action == "register" else clean_rotate
    run = _register if action == "register" else _rotate
    failures = []
    # Sorted: each worker makes its own clean run, whose requests come in their own order.
    for index, request in list(enumerate(sorted(requests, key=str)))[shard::SHARDS]:
        sandbox, kubeconfig = _prepared(tmp_path / str(index), action)
        try:
            injected = _inject(sandbox, request, 10_000, PERSISTENT[label])
            problem = ""
            try:
                run(kubeconfig)
                # A request with a fallback (a watch falls back to reads) may fail for good
                # and the run still succeed; then the end state must be the clean one.
                problem = _end_state_ok(sandbox, expected)
            except errors.MtvRegisterError as error:
                line = error.line()
                if "\n" in line or not line:
                    problem = f"unclear message: {line!r}"
            if not problem and not injected.hits:
                problem = "the fault was never hit"
            if not problem and action == "rotate":
                # Rotation rolls back: the Provider keeps working on its old token.
                phases = provider_phases(sandbox)
                if any(p != "Ready" for p in phases.values()):
                    problem = f"providers not Ready after the failed rotation: {phases}"
            sandbox[request.context].cluster.faults.clear()
            if not problem:
                try:
                    run(kubeconfig)
                except errors.MtvRegisterError as error:
                    problem = f"re-run without the fault failed: {error.line()}"
            if not problem:
                problem = _end_state_ok(sandbox, expected)
        finally:
            sandbox.stop()
        figures.record(
            f"persistent faults: {action}", not problem, f"{label} on {request}: {problem}"
        )
        if problem:
            failures.append(f"{label} on {request}: {problem}")
    assert not failures, "\n".join(failures)
