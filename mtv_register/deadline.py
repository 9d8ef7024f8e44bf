"""The command's deadline and its cancellation, shared by every client and wait of one run.

`--timeout` bounds the whole command: each request's socket timeout is capped by what is left,
retries and polls stop when it runs out, and their sleeps wake at once when the run is cancelled
(Ctrl-C, SIGTERM). Library callers that set no scope get no deadline, as before.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from mtv_register import errors

if TYPE_CHECKING:  # both imported when a run needs them, not for `--help`
    from concurrent import futures

    import tenacity

_lock = threading.Lock()
_deadline: float | None = None
_budget: float = 0.0
_cancelled = threading.Event()


class Cancelled(errors.MtvRegisterError):
    """The run was interrupted: nothing more is sent."""

    exit_code = 130


def check_timeout(seconds: float) -> None:
    """A run's `--timeout` must leave it some time: the one check of it, for every command."""
    if seconds <= 0:
        raise errors.UsageError(
            f"--timeout must be more than 0s, not {seconds:g}s",
            fix="pass a positive duration, e.g. --timeout 5m",
        )


@contextlib.contextmanager
def scope(seconds: float | None) -> Iterator[None]:
    """Within: the run ends `seconds` from now (None: no deadline); cancellation is cleared.
    A deadline that leaves no time is refused (`check_timeout`)."""
    global _deadline, _budget
    if seconds is not None:
        check_timeout(seconds)
    with _lock:
        previous = (_deadline, _budget)
        _deadline = time.monotonic() + seconds if seconds else None
        _budget = seconds or 0.0
        _cancelled.clear()
        signals.clear()
    try:
        yield
    finally:
        with _lock:
            _deadline, _budget = previous


signals: list[int] = []  # the signals that cancelled the run, in order


_wakers: set[Callable[[], None]] = set()  # what unblocks a thread stuck in a read (a watch)


def cancel(signum: int = 2) -> None:
    """From a signal handler: every wait wakes, every open watch is cut, and every next request
    is refused."""
    signals.append(signum)
    _cancelled.set()
    for wake in list(_wakers):
        with contextlib.suppress(Exception):
            wake()


@contextlib.contextmanager
def on_cancel(wake: Callable[[], None]) -> Iterator[None]:
    """Within: a cancellation calls `wake` (say, shutting the socket a watch blocks on), so the
    thread reading it sees the end at once instead of at the read timeout."""
    _wakers.add(wake)
    if _cancelled.is_set():
        wake()
    try:
        yield
    finally:
        _wakers.discard(wake)


def exit_code() -> int:
    """128 + the first signal that cancelled the run: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + (signals[0] if signals else 2)


def cancelled() -> bool:
    return _cancelled.is_set()


_shield = threading.local()  # this thread's own deadline while it rolls back


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, after the run undid what it could: `left` names what stays."""

    def __init__(self, summary: str, left: list[str]) -> None:
        super().__init__(summary)
        self.summary = summary
        self.left = left


@contextlib.contextmanager
def shielded(seconds: float | None = None) -> Iterator[None]:
    """Within, in this thread only: requests go out again, for `seconds` (the roll-back after an
    interruption; by default `ROLL_BACK_SECONDS`); other threads stay cancelled."""
    previous = getattr(_shield, "until", None)
    _shield.until = time.monotonic() + (ROLL_BACK_SECONDS if seconds is None else seconds)
    try:
        yield
    finally:
        _shield.until = previous


def _shielded_until() -> float | None:
    return getattr(_shield, "until", None)


def remaining() -> float | None:
    """Seconds left, or None without a deadline."""
    deadline = _shielded_until() or _deadline
    return None if deadline is None else deadline - time.monotonic()


def cap(seconds: float | None) -> float | None:
    """`seconds` (None: unbounded) no longer than what is left, and never below 10 ms."""
    left = remaining()
    if left is None:
        return seconds
    bounded = left if seconds is None else min(seconds, left)
    return max(0.01, bounded)


def check(step: str) -> None:
    """Before a request or a wait: refuse it once the run is cancelled or out of time."""
    if _cancelled.is_set() and _shielded_until() is None:
        raise Cancelled(f"interrupted during {step}")
    left = remaining()
    if left is not None and left <= 0:
        raise expired(step)


def expired(step: str) -> errors.WaitTimeout:
    return errors.WaitTimeout(
        f"the --timeout of {_budget:g}s ran out during {step}",
        fix="check that cluster's API server (it may accept connections and never answer), "
        "or raise --timeout; a re-run carries on from here",
    )


def passed() -> bool:
    left = remaining()
    return left is not None and left <= 0


def sleep(seconds: float) -> None:
    """time.sleep that a cancellation wakes and the deadline shortens."""
    bounded = cap(seconds)
    if _shielded_until() is not None:
        time.sleep(bounded or 0)
    elif bounded and bounded > 0 and _cancelled.wait(bounded):
        raise Cancelled("interrupted while waiting")


def stop_when(*limits: tenacity.stop.stop_base) -> tenacity.stop.stop_base:
    """A tenacity stop condition: any of `limits`, or the run out of time or cancelled."""
    import tenacity

    return tenacity.stop_any(*limits, tenacity.stop_when_event_set(_STOPPED))  # type: ignore[arg-type]


class _Stopped:
    """Read as an Event by tenacity: set once the run is out of time, or cancelled outside a
    roll-back."""

    def is_set(self) -> bool:
        return passed() or (_cancelled.is_set() and _shielded_until() is None)


_STOPPED = _Stopped()


ROLL_BACK_SECONDS = 5.0  # what an interrupted or failed step gets to undo what it made
GRACE_SECONDS = 0.8  # how long an interrupted pool lets its threads reach their next request


@contextlib.contextmanager
def pool(workers: int, *, undoing: bool = False) -> Iterator[futures.ThreadPoolExecutor]:
    """A thread pool for one run's parallel work. Interrupted (Ctrl-C, SIGTERM), it cancels the
    run, gives its threads `GRACE_SECONDS` to stop at their next request and lets the run end
    without them; any other failure waits for them, so that a roll-back sees the whole run.
    `undoing`: each thread undoes its own work when interrupted (a fleet's pairs, the
    registrations of `rotate --all`), so the pool also waits out that roll-back, which its
    inner pools' grace precedes; otherwise the process would exit half-way through it."""
    from concurrent import futures

    executor = futures.ThreadPoolExecutor(max_workers=max(1, workers))
    given: list[futures.Future[Any]] = []
    submit = executor.submit

    def tracked(fn: Any, /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        future = submit(fn, *args, **kwargs)
        given.append(future)
        return future

    executor.submit = tracked  # type: ignore[method-assign]  # map() submits through it too
    interrupted = False
    try:
        yield executor
    except (KeyboardInterrupt, Cancelled):
        interrupted = True
        if not _cancelled.is_set():
            cancel()
        executor.shutdown(wait=False, cancel_futures=True)
        grace = GRACE_SECONDS
        if undoing:  # their inner pools' grace, then their roll-back
            grace += GRACE_SECONDS + ROLL_BACK_SECONDS
        futures.wait(given, timeout=grace)
        raise
    finally:
        if not interrupted:
            executor.shutdown(wait=True)
