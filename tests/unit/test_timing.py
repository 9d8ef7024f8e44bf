"""The one timing policy and its three loops, without a server: what is tried how often, and
what each wait is (recorded, never slept)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from mtv_register import deadline, errors
from mtv_register.timing import (
    AGAIN,
    Expired,
    Timing,
    Transient,
    poll_until,
    retry_on_conflict,
    retrying,
)

POLICY = Timing(attempts=4, initial_wait=0.1, max_wait=0.25, retry_after_cap=2.0)
S = ("Secret", "ns", "s")  # the object the conflict tests write


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait a loop asks for, in order; none is slept."""
    asked: list[float] = []
    monkeypatch.setattr(deadline, "sleep", asked.append)
    return asked


def failing(
    *failures: BaseException, answer: Any = "answer"
) -> tuple[Callable[[], Any], list[int]]:
    """A call that raises `failures` in turn, then returns `answer`; and its call count."""
    calls = [0]

    def call() -> Any:
        calls[0] += 1
        if calls[0] <= len(failures):
            raise failures[calls[0] - 1]
        return answer

    return call, calls


@pytest.mark.parametrize(
    ("policy", "failures", "calls", "asked", "outcome"),
    [
        # A permanent failure is tried once: it is an answer, not a hiccup.
        (POLICY, [errors.PermissionDenied("forbidden")], 1, [], errors.PermissionDenied),
        # Transient twice, then an answer: back-off doubling from initial_wait.
        (POLICY, [Transient("503"), Transient("503")], 3, [0.1, 0.2], "answer"),
        # Transient every time: exactly `attempts` tries, back-off capped at max_wait.
        (POLICY, [Transient("503")] * 4, 4, [0.1, 0.2, 0.25], errors.MtvRegisterError),
        # Retry-After is what the server asked for ...
        (POLICY, [Transient("429", retry_after=1.5)], 2, [1.5], "answer"),
        # ... up to the cap,
        (POLICY, [Transient("429", retry_after=120)], 2, [2.0], "answer"),
        # ... and ignored when the policy says so (then the back-off counts).
        (
            replace(POLICY, honour_retry_after=False),
            [Transient("429", retry_after=120)],
            2,
            [0.1],
            "answer",
        ),
        # The tests' policy: the same tries, no waiting.
        (Timing.immediate(), [Transient("503")] * 2, 3, [0.0, 0.0], "answer"),
        # A webhook that cannot be called ends as its own error.
        (
            POLICY,
            [Transient("500", webhook="validate.forklift")] * 4,
            4,
            [0.1, 0.2, 0.25],
            errors.WebhookUnavailable,
        ),
    ],
)
def test_retrying_tries_each_failure_as_its_class_says(
    waits: list[float],
    policy: Timing,
    failures: list[BaseException],
    calls: int,
    asked: list[float],
    outcome: Any,
) -> None:
    call, made = failing(*failures)
    if isinstance(outcome, type):
        with pytest.raises(outcome) as caught:
            retrying(policy, call, what="GET /api/v1/secrets", context="source")
        assert type(caught.value) is outcome
    else:
        assert retrying(policy, call, what="GET /api/v1/secrets", context="source") == outcome
    assert made[0] == calls
    assert waits == asked


def test_an_exhausted_request_names_its_context_and_tries(waits: list[float]) -> None:
    call, _ = failing(*[Transient("503 Service Unavailable")] * 4)
    with pytest.raises(errors.MtvRegisterError) as caught:
        retrying(POLICY, call, what="GET /api", context="source")
    assert "context source kept failing, 4 attempts: 503 Service Unavailable" in caught.value.cause


def test_a_conflict_is_read_again_and_a_lost_create_says_again() -> None:
    seen: list[int] = []

    def step(attempt: int) -> Any:
        seen.append(attempt)
        if attempt == 0:
            raise errors.Conflict("the object has been modified")
        if attempt == 1:
            return AGAIN  # e.g. AlreadyExists: compare with theirs
        return "stored"

    assert retry_on_conflict(Timing(), step, what='Secret "s"', context="mtv", obj=S) == "stored"
    assert seen == [0, 1, 2]


def test_conflicts_without_end_fail_loudly_after_the_limit() -> None:
    seen: list[int] = []

    def step(attempt: int) -> None:
        seen.append(attempt)
        raise errors.Conflict("the object has been modified")

    with pytest.raises(errors.ConflictError) as caught:
        retry_on_conflict(
            Timing(conflict_attempts=3), step, what='Secret "s"', context="mtv", obj=S
        )
    assert seen == [0, 1, 2]
    assert caught.value.line() == (
        'Secret "s" keeps changing on mtv (3 tries): stop the other writer, then re-run'
    )
    assert caught.value.exit_code == 11


def test_the_runs_own_writers_of_one_object_take_turns() -> None:
    """Ten threads add themselves to one object by read-modify-write with one try each, as a
    fleet's pairs add themselves to the shared destination Provider: taking turns, none loses
    a race to another (without turns, the writes that read the same version conflict). The
    turn is the object's, not its wording: half the writers name it as another module does."""
    stored = {"version": 0, "pairs": set()}
    guard = threading.Lock()
    failed: list[BaseException] = []

    def writer(name: str) -> None:
        def step(_attempt: int) -> None:
            read = stored["version"]
            time.sleep(0.01)  # the request's round trip, during which another may write
            with guard:
                if stored["version"] != read:
                    raise errors.Conflict("the object has been modified")
                stored["version"] = read + 1
                stored["pairs"] = {*stored["pairs"], name}

        try:
            retry_on_conflict(
                Timing(conflict_attempts=1),
                step,
                what='Provider "p"' if int(name.rpartition("-")[2]) % 2 else 'Provider "ns/p"',
                context="mtv",
                obj=("Provider", "ns", "p"),
            )
        except errors.ConflictError as error:
            failed.append(error)

    threads = [threading.Thread(target=writer, args=(f"pair-{i}",)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failed == []
    assert stored["pairs"] == {f"pair-{i}" for i in range(10)}


@pytest.fixture
def run_scope() -> Iterator[None]:
    """A run of its own; the cancellation it ends with is cleared for the next test."""
    with deadline.scope(None):
        yield
    with deadline.scope(None):
        pass  # entering a scope clears the cancellation


def _interrupted_pool(undoing: bool) -> tuple[bool, float]:
    """Ctrl-C while a worker sits in a wait; the worker then undoes its work for twice the
    pool's grace, as a fleet's pair deletes what it made. Whether the undo had finished when
    the pool let the run go on, and how long the pool took."""
    started, undone = threading.Event(), threading.Event()

    def pair() -> None:
        started.set()
        try:
            deadline.sleep(60)  # the token wait; the cancellation wakes it
        except deadline.Cancelled:
            with deadline.shielded():
                time.sleep(2 * deadline.GRACE_SECONDS)  # the roll-back's deletes
                undone.set()
            raise

    sent = 0.0
    with pytest.raises(KeyboardInterrupt), deadline.pool(2, undoing=undoing) as pool:
        pool.submit(pair)
        assert started.wait(5)
        sent = time.monotonic()
        raise KeyboardInterrupt
    took = time.monotonic() - sent
    finished = undone.is_set()
    assert undone.wait(5)  # an abandoned worker ends before the next test
    return finished, took


def test_an_interrupted_fleet_waits_out_each_pairs_roll_back(run_scope: None) -> None:
    """A fleet's pool waits for its pairs' roll-backs, which take longer than the grace to
    reach a next request: the process exits only after them (it used to exit half-way, leaving
    a pair's namespace and ClusterRole on the cluster)."""
    finished, took = _interrupted_pool(undoing=True)
    assert finished
    assert took < deadline.GRACE_SECONDS * 2 + deadline.ROLL_BACK_SECONDS


def test_an_interrupted_pool_of_steps_waits_only_the_grace(run_scope: None) -> None:
    """An inner pool's steps stop at their next request; their caller rolls back, so the pool
    does not wait for more than its grace."""
    finished, took = _interrupted_pool(undoing=False)
    assert not finished
    assert took < 2 * deadline.GRACE_SECONDS


def test_another_error_of_the_conflict_class_is_not_tried_again() -> None:
    """A step's own verdict (the Provider was deleted meanwhile) ends the loop at once."""
    seen: list[int] = []

    def step(attempt: int) -> None:
        seen.append(attempt)
        raise errors.ConflictError("deleted meanwhile")

    with pytest.raises(errors.ConflictError, match="deleted meanwhile"):
        retry_on_conflict(Timing(), step, what="x", context="mtv", obj=S)
    assert seen == [0]


class _Pending(Exception):
    pass


def test_poll_until_returns_once_the_check_holds(waits: list[float]) -> None:
    check, calls = failing(_Pending(), _Pending(), answer="filled")
    assert poll_until(check, timeout=60, wait=0.05, pending=(_Pending,)) == "filled"
    assert calls[0] == 3
    assert waits == [0.05, 0.05]


def test_poll_until_doubles_its_wait_up_to_the_cap(waits: list[float]) -> None:
    check, _ = failing(*[_Pending()] * 5, answer="gone")
    poll_until(check, timeout=60, wait=0.1, max_wait=0.3, pending=(_Pending,))
    assert waits == [0.1, 0.2, 0.3, 0.3, 0.3]


def test_poll_until_ends_in_expired_when_its_time_runs_out() -> None:
    def check() -> None:
        raise _Pending()

    with pytest.raises(Expired):
        poll_until(check, timeout=0.05, wait=0.01, pending=(_Pending,))


def test_poll_until_lets_an_unexpected_failure_through(waits: list[float]) -> None:
    check, calls = failing(errors.PermissionDenied("forbidden"))
    with pytest.raises(errors.PermissionDenied):
        poll_until(check, timeout=60, wait=0.05, pending=(_Pending,))
    assert calls[0] == 1
    assert waits == []
