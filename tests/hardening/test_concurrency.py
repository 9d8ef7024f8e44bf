"""Two runs at once on the same pair: two `register`s (threads of the library, and two real
processes of the CLI), and `register` racing `rotate --all --max-age 0s` (freely, and with the
rotation pinned inside each window of a register where it could be undone). Each run ends cleanly
(success, or a conflict with exit code 11 and one line), and the clusters end as after one clean
run: the same objects, no duplicate Secret, every Provider Ready on a token that authenticates."""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mtv_register import errors, forklift, naming, sides
from mtv_register.api_kube import ApiKube
from mtv_register.clusters import Connector
from mtv_register.kube import NAMESPACE
from mtv_register.orchestrator import register_pair
from mtv_register.registration import open_host
from mtv_register.rotation import RotateOptions, rotate_all
from mtv_register.sandbox import Sandbox
from mtv_register.timing import Timing
from tests.conftest import FAST_FORKLIFT
from tests.hardening import figures
from tests.hardening.matrix import objects, options, provider_phases
from tests.integration.conftest import assert_no_token_in_any_form

MTV_NS = "openshift-mtv"
REMOTES = ("source", "destination")  # each one's Provider is named after its context
CONFLICT = errors.ConflictError.exit_code
# A token Secret is one slot whatever its name: the first (`<sa>-token`) or a rotated one.
_TOKEN_SLOT = re.compile(r"-token(-\*)?$")


def _start(tmp: Path, **sandbox_options: Any) -> tuple[Sandbox, Path]:
    sandbox = Sandbox(mtv_on="separate", forklift_timing=FAST_FORKLIFT, **sandbox_options).start()
    return sandbox, sandbox.write_kubeconfig(tmp / "kubeconfig")


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Counter[str]]:
    """The clusters' objects after one clean register."""
    sandbox, kubeconfig = _start(tmp_path_factory.mktemp("clean"))
    try:
        register_pair(options(kubeconfig))
        return objects(sandbox)
    finally:
        sandbox.stop()


def _slots(counter: Counter[str]) -> Counter[str]:
    folded: Counter[str] = Counter()
    for key, count in counter.items():
        folded[_TOKEN_SLOT.sub("-token*", key)] += count
    return folded


def _wait_ready(sandbox: Sandbox, timeout: float = 10.0) -> dict[str, str]:
    """Forklift re-tests a changed Secret in the background: its verdict, within a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        phases = provider_phases(sandbox)
        if all(phase == "Ready" for phase in phases.values()) or time.monotonic() > deadline:
            return phases
        time.sleep(0.02)


def _provider_secret(sandbox: Sandbox, name: str) -> dict[str, Any] | None:
    host = sandbox[sandbox.mtv_context].cluster
    return host.store.find(host.rtype("", "v1", "secrets"), MTV_NS, f"{name}-credentials")


def _token_problem(sandbox: Sandbox, name: str) -> str:
    """'' when the provider Secret's token lists namespaces at its URL over its CA, as Forklift's
    connection test does first, and names the one token Secret left of the account."""
    secret = _provider_secret(sandbox, name)
    if secret is None:
        return f"no provider Secret for {name}"
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    kube = ApiKube.from_token(
        data["url"],
        data["token"],
        ca_pem=data.get("ca.crt"),
        context=f"{name} as its provider Secret",
        timing=Timing.immediate(),
    )
    try:
        kube.list(NAMESPACE, limit=1)
    except errors.MtvRegisterError as error:
        return f"the token of {name} does not work: {error.cause}"
    finally:
        kube.close()
    ref = (secret["metadata"].get("annotations") or {}).get(naming.TOKEN_SECRET_ANNOTATION, "")
    cluster = sandbox[name].cluster
    token_secrets = [
        s["metadata"]["name"]
        for s in cluster.store.list(cluster.rtype("", "v1", "secrets"), "mtv-register")[0]
        if s.get("type") == naming.SERVICE_ACCOUNT_TOKEN_TYPE
    ]
    if [f"mtv-register/{n}" for n in token_secrets] != [ref]:
        return f"{name}: token Secrets {token_secrets}, the provider Secret records {ref!r}"
    return ""


def _end_state_problems(
    sandbox: Sandbox, expected: dict[str, Counter[str]], *, rotated: bool = False
) -> list[str]:
    problems = []
    phases = _wait_ready(sandbox)
    if any(phase != "Ready" for phase in phases.values()):
        problems.append(f"providers not Ready: {phases}")
    found = objects(sandbox)
    for context, counter in found.items():
        want = expected[context]
        if rotated:  # a rotation replaces the token Secret by one with a random suffix
            counter, want = _slots(counter), _slots(want)
        duplicates = sorted(key for key, count in counter.items() if count > 1)
        missing, extra = sorted(set(want) - set(counter)), sorted(set(counter) - set(want))
        if duplicates or missing or extra:
            problems.append(f"{context}: duplicates {duplicates}, missing {missing}, extra {extra}")
    problems += [p for p in (_token_problem(sandbox, name) for name in REMOTES) if p]
    return problems


def _together(*runs: Callable[[], Any]) -> list[Any]:
    """Start every run at the same moment, each in its own thread; their outcomes in order
    (a result, or the MtvRegisterError it raised)."""
    barrier = threading.Barrier(len(runs))
    outcomes: list[Any] = [None] * len(runs)

    def go(index: int, run: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            outcomes[index] = run()
        except errors.MtvRegisterError as error:
            outcomes[index] = error

    threads = [threading.Thread(target=go, args=item) for item in enumerate(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a run did not end within 60 s"
    return outcomes


def _register_outcome(outcome: Any) -> str:
    """'' for success or a one-line conflict, else what went wrong."""
    if isinstance(outcome, errors.ConflictError) and "\n" not in outcome.line():
        return ""
    if isinstance(outcome, errors.MtvRegisterError):
        return f"register failed (exit {outcome.exit_code}): {outcome.line()}"
    return ""


def _rotate_outcome(results: Any) -> str:
    if isinstance(results, errors.MtvRegisterError):
        return f"rotate failed (exit {results.exit_code}): {results.line()}"
    bad = [
        f"{r.provider} {r.action}: {r.reason}"
        for r in results
        if r.action not in ("rotated", "lost-race")
        and not (r.action == "failed" and r.exit_code == CONFLICT)
    ]
    return "; ".join(bad)


def _rotate(kubeconfig: Path) -> Any:
    host = open_host(
        kubeconfig=str(kubeconfig),
        host="mtv",
        in_cluster=False,
        connector=Connector(timing=Timing.immediate()),
    )
    try:
        return rotate_all(
            host,
            MTV_NS,
            None,
            RotateOptions(max_age=dt.timedelta(0), timeout=30, timing=Timing.immediate()),
            lambda change: None,
        )
    finally:
        host.close()


def _record(scenario: str, problems: list[str]) -> None:
    figures.record("concurrency", not problems, f"{scenario}: {'; '.join(problems)}")


# Token-controller delays and request latencies that move where the two runs meet.
TIMINGS = {
    "at once": {"token_delay": 0.0, "latency": 0.0},
    "slow token controller": {"token_delay": 0.1, "latency": 0.0},
    "slow API": {"token_delay": 0.0, "latency": 0.003},
}


@pytest.mark.parametrize("timing", list(TIMINGS))
def test_two_registers_of_one_pair_in_threads_end_as_one_clean_run(
    clean: dict[str, Counter[str]], tmp_path: Path, timing: str
) -> None:
    sandbox, kubeconfig = _start(tmp_path, token_delay=TIMINGS[timing]["token_delay"])
    try:
        for cluster in sandbox.clusters.values():
            cluster.cluster.faults.latency = TIMINGS[timing]["latency"]
        outcomes = _together(
            lambda: register_pair(options(kubeconfig)), lambda: register_pair(options(kubeconfig))
        )
        problems = [p for p in map(_register_outcome, outcomes) if p]
        for cluster in sandbox.clusters.values():
            cluster.cluster.faults.latency = 0.0
        problems += _end_state_problems(sandbox, clean)
    finally:
        sandbox.stop()
    _record(f"two registers in threads, {timing}", problems)
    assert not problems, problems


@pytest.mark.parametrize("timing", list(TIMINGS))
def test_register_racing_rotate_ends_with_one_working_token(
    clean: dict[str, Counter[str]], tmp_path: Path, timing: str
) -> None:
    sandbox, kubeconfig = _start(tmp_path)
    try:
        register_pair(options(kubeconfig))
        sandbox.set_token_delay(TIMINGS[timing]["token_delay"])
        for cluster in sandbox.clusters.values():
            cluster.cluster.faults.latency = TIMINGS[timing]["latency"]
        registered, rotated = _together(
            lambda: register_pair(options(kubeconfig)), lambda: _rotate(kubeconfig)
        )
        problems = [p for p in (_register_outcome(registered), _rotate_outcome(rotated)) if p]
        for cluster in sandbox.clusters.values():
            cluster.cluster.faults.latency = 0.0
        problems += _end_state_problems(sandbox, clean, rotated=True)
        # Once the race is over, a register changes nothing: it keeps whichever token won.
        again = register_pair(options(kubeconfig))
        if again.mutated:
            changed = [str(c) for c in again.changes if c.action != "unchanged"]
            problems.append(f"a register after the race changed {changed}")
    finally:
        sandbox.stop()
    _record(f"register racing rotate in threads, {timing}", problems)
    assert not problems, problems


# The two windows of a register re-run where a rotation can land: after it read the provider
# Secret (the token it keeps is then revoked before its proof), and after its proof, before it
# writes on the host. `drift` makes that write necessary: it must not undo the rotation.
WINDOWS = {
    "after the read, before the proof": (sides, "prove_token", False),
    "after the proof, before the write": (forklift, "ensure_provider", False),
    "before a drift repair's write": (forklift, "ensure_provider", True),
}


@pytest.mark.parametrize("window", list(WINDOWS))
def test_a_rotation_landing_inside_a_register_is_kept(
    clean: dict[str, Counter[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, window: str
) -> None:
    module, name, drift = WINDOWS[window]
    sandbox, kubeconfig = _start(tmp_path)
    try:
        register_pair(options(kubeconfig))
        if drift:  # the legacy CA key removed by hand: register puts it back
            secret = _provider_secret(sandbox, "source")
            assert secret is not None
            del secret["data"]["cacert"]
            host = sandbox["mtv"].cluster
            host.store.update(host.rtype("", "v1", "secrets"), secret)
        original = getattr(module, name)
        lock, rotations = threading.Lock(), []

        def rotation_first(*args: Any, **kwargs: Any) -> Any:
            with lock:  # the first call runs a whole rotation; any other waits for it
                if not rotations:
                    rotations.append(_rotate(kubeconfig))
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, rotation_first)
        try:
            outcome: Any = register_pair(options(kubeconfig))
        except errors.MtvRegisterError as error:
            outcome = error
        monkeypatch.setattr(module, name, original)
        problems = [p for p in (_register_outcome(outcome), _rotate_outcome(rotations[0])) if p]
        rotated = {r.provider: f"mtv-register/{r.new_secret}" for r in rotations[0]}
        if {name: _token_ref(sandbox, name) for name in REMOTES} != rotated:
            problems.append(f"register undid the rotation to {rotated}")
        problems += _end_state_problems(sandbox, clean, rotated=True)
        again = register_pair(options(kubeconfig))  # repairs the drift, keeps the rotated token
        changed = [str(c) for c in again.changes if c.action != "unchanged"]
        if {name: _token_ref(sandbox, name) for name in REMOTES} != rotated:
            problems.append(f"a register after the race switched tokens: {changed}")
        elif changed and not drift:
            problems.append(f"a register after the race changed {changed}")
        problems += [p for p in (_token_problem(sandbox, name) for name in REMOTES) if p]
    finally:
        sandbox.stop()
    _record(f"a rotation {window} of a register", problems)
    assert not problems, problems


def _token_ref(sandbox: Sandbox, name: str) -> str:
    secret = _provider_secret(sandbox, name) or {"metadata": {}}
    annotations = secret["metadata"].get("annotations") or {}
    return str(annotations.get(naming.TOKEN_SECRET_ANNOTATION, ""))


# -- real processes --------------------------------------------------------------------------------


def _cli(kubeconfig: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mtv_register", *args, "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


def _process_problems(label: str, process: subprocess.Popen[str]) -> list[str]:
    """A process ends cleanly: exit 0, or exit 11 with one `error:` line last; never a
    traceback or a token."""
    try:
        stdout, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        return [f"{label} did not end within 60 s"]
    assert_no_token_in_any_form(stdout + stderr)
    errors_said = [line for line in stderr.splitlines() if line.startswith("error:")]
    if "Traceback" in stdout + stderr:
        return [f"{label}: a traceback"]
    if process.returncode == 0 and not errors_said:
        return []
    if (
        process.returncode == CONFLICT
        and len(errors_said) == 1
        and stderr.rstrip().splitlines()[-1] == errors_said[0]
    ):
        return []
    return [f"{label} exited {process.returncode}: {errors_said or stderr[-300:]}"]


REGISTER = ["register", "--source", "source", "--destination", "destination", "--host", "mtv"]


def _kubeconfig_as(sandbox: Sandbox, path: Path, user: str) -> Path:
    """The sandbox's kubeconfig with a cluster admin of its own, so the audit log tells the
    two processes apart."""
    config = sandbox.kubeconfig()
    for entry in config["users"]:
        cluster = sandbox[entry["name"].removesuffix("-admin")].cluster
        entry["user"]["token"] = cluster.add_user(user, ("system:masters",))
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _meet_on_the_host(sandbox: Sandbox, *users: str, timeout: float = 30.0) -> None:
    """The MTV host answers none of `users` until each has sent it a request (or `timeout`
    passes, which the overlap check then reports): their work on it is sure to overlap."""
    cluster = sandbox[sandbox.mtv_context].cluster
    authenticate = cluster.authenticate
    seen: set[str] = set()
    everyone = threading.Condition()

    def held(token: str) -> Any:
        user = authenticate(token)
        name = getattr(user, "username", "")
        if name in users:
            with everyone:
                seen.add(name)
                everyone.notify_all()
                everyone.wait_for(lambda: seen >= set(users), timeout)
        return user

    cluster.authenticate = held  # type: ignore[method-assign]


def _overlap_problems(sandbox: Sandbox, *users: str) -> list[str]:
    """The processes worked at the same time: on the MTV host, which both talk to first and
    last, each one's requests began before the other's ended."""
    events = sandbox[sandbox.mtv_context].cluster.audit.events()
    spans = []
    for user in users:
        seen = [i for i, event in enumerate(events) if event["user"]["username"] == user]
        if not seen:
            return [f"{user} made no request to the MTV host"]
        spans.append((seen[0], seen[-1]))
    (first_start, first_end), (second_start, second_end) = spans
    if first_start > second_end or second_start > first_end:
        return [f"the processes did not overlap (requests {spans} of the host's audit log)"]
    return []


def test_two_register_processes_of_one_pair_end_as_one_clean_run(
    clean: dict[str, Counter[str]], tmp_path: Path
) -> None:
    # The host holds each one's first request until both have come, and the token controller's
    # delay keeps them at work together after that.
    sandbox, _ = _start(tmp_path, token_delay=2.0)
    try:
        _meet_on_the_host(sandbox, "first", "second")
        first, second = (
            _cli(_kubeconfig_as(sandbox, tmp_path / user, user), *REGISTER, "--yes")
            for user in ("first", "second")
        )
        problems = _process_problems("first", first) + _process_problems("second", second)
        problems += _overlap_problems(sandbox, "first", "second")
        problems += _end_state_problems(sandbox, clean)
    finally:
        sandbox.stop()
    _record("two register processes", problems)
    assert not problems, problems


def test_register_and_rotate_processes_end_with_one_working_token(
    clean: dict[str, Counter[str]], tmp_path: Path
) -> None:
    sandbox, kubeconfig = _start(tmp_path)
    try:
        register_pair(options(kubeconfig))
        # A re-run of register is quick, and either process may start seconds after the other
        # on a loaded machine: the host holds each one's first request until both have come.
        sandbox.set_token_delay(0.3)
        _meet_on_the_host(sandbox, "register", "rotate")
        register = _cli(_kubeconfig_as(sandbox, tmp_path / "r", "register"), *REGISTER, "--yes")
        rotate = _cli(
            _kubeconfig_as(sandbox, tmp_path / "o", "rotate"),
            *("rotate", "--host", "mtv", "--all", "--max-age", "0s"),
        )
        problems = _process_problems("register", register) + _process_problems("rotate", rotate)
        problems += _overlap_problems(sandbox, "register", "rotate")
        problems += _end_state_problems(sandbox, clean, rotated=True)
    finally:
        sandbox.stop()
    _record("register and rotate processes", problems)
    assert not problems, problems
