"""How often and how long the tool tries again: one policy, `Timing`, and the three loops that
read it. No other module has a retry, conflict or polling loop of its own.

- `retrying`: a request that failed transiently (429, 5xx, a dropped connection) is sent again,
  with exponential back-off or the server's Retry-After (capped), up to `attempts` tries.
- `retry_on_conflict`: a guarded write (create, or replace/patch carrying the resourceVersion
  read) that lost a race is read and tried again, up to `conflict_attempts` tries; then it fails
  loudly with `ConflictError`, never silently. The run's own writers of one object take
  turns (a fleet's pairs all add themselves to the shared destination Provider), so only other
  processes and controllers can make it lose.
- `poll_until`: a wait for something another controller does (a token filled in, a namespace
  gone, a token just issued accepted), until it holds or its time runs out.

`qps` and `burst` are the client-side rate limit of each API server, which `throttle` applies to
every request of the run, shared by all its clients of that server.

Every loop also stops at the run's deadline or on Ctrl-C (`deadline`). Tests pass
`Timing.immediate()` through the public API and the CLI's context object instead of patching
any of these defaults.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from mtv_register import deadline, errors

if TYPE_CHECKING:
    import tenacity

T = TypeVar("T")

# One budget per API server for the whole run (docs/architecture.md#timing): client-go gives
# each client 5 a second and a burst of 10, and a run holds dozens of clients. A pair sends
# about a dozen requests to a server, so 50 lets four pairs start unthrottled, and 20 a second
# keeps any fleet to about one API Priority and Fairness seat on its MTV host.
DEFAULT_QPS = 20.0
DEFAULT_BURST = 50


@dataclass(frozen=True)
class Timing:
    """Every attempt count, back-off, cap, poll interval and rate limit of one run."""

    attempts: int = 6  # tries of one request that fails transiently
    initial_wait: float = 0.2  # the first back-off, doubled at each try ...
    max_wait: float = 5.0  # ... up to this
    honour_retry_after: bool = True  # wait what a 429/503 asks for instead ...
    retry_after_cap: float = 30.0  # ... but never longer than this
    conflict_attempts: int = 5  # tries of one guarded write that meets another writer
    poll_interval: float = 0.25  # between two reads of a wait that cannot watch (--client oc)
    token_poll: float = 0.05  # between two looks at a token Secret being filled
    namespace_poll: float = 0.1  # the first wait for a terminating namespace, doubled ...
    namespace_poll_max: float = 1.0  # ... up to this
    fresh_token_grace: float = 5.0  # how long a token just issued may be refused (401) ...
    fresh_token_poll: float = 0.5  # ... tried again this often
    qps: float = DEFAULT_QPS  # requests a second to one API server, for the whole run (0: no limit)
    burst: int = DEFAULT_BURST  # ... and how many may go at once after a quiet spell

    def __post_init__(self) -> None:
        check_rate(self.qps, self.burst)

    @classmethod
    def immediate(cls) -> Timing:
        """No back-off, no Retry-After and no rate limit: what tests run with (the attempt
        counts stay)."""
        return cls(initial_wait=0.0, max_wait=0.0, honour_retry_after=False, qps=0.0)

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after the `attempt`-th try failed (1-based)."""
        if retry_after is not None and self.honour_retry_after:
            return min(retry_after, self.retry_after_cap)
        return float(min(self.initial_wait * (2 ** (attempt - 1)), self.max_wait))


def check_rate(qps: float, burst: int) -> None:
    """The one check of `--qps` and `--burst`, for every command."""
    if not math.isfinite(qps) or qps < 0:
        raise errors.UsageError(
            f"--qps must be 0 (no limit) or a positive number of requests a second, not {qps:g}",
            fix=f"pass e.g. --qps {DEFAULT_QPS:g}",
        )
    if burst < 1:
        raise errors.UsageError(
            f"--burst must be at least 1 request, not {burst}",
            fix=f"pass e.g. --burst {DEFAULT_BURST}",
        )


class Transient(Exception):
    """A failure worth another try; `retry_after` in seconds when the server said so."""

    def __init__(
        self, message: str, retry_after: float | None = None, *, webhook: str = ""
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.webhook = webhook  # the admission webhook the API server could not call


def retrying(timing: Timing, send: Callable[[], T], *, what: str, context: str) -> T:
    """`send()`, again while it raises `Transient`; the error its last failure ends in."""
    import tenacity

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        after = error.retry_after if isinstance(error, Transient) else None
        return timing.backoff(state.attempt_number, after)

    try:
        for attempt in tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(Transient),
            stop=deadline.stop_when(tenacity.stop_after_attempt(timing.attempts)),
            wait=wait,
            sleep=lambda seconds: deadline.sleep(seconds),  # looked up at each sleep
            reraise=True,
        ):
            with attempt:
                return send()
    except Transient as failure:
        deadline.check(f"{what} on context {context}")
        raise exhausted(failure, context, timing.attempts) from None
    raise AssertionError("unreachable")


def exhausted(failure: Transient, context: str, attempts: int) -> errors.MtvRegisterError:
    """The error a request that kept failing ends in, for either backend."""
    if failure.webhook:
        return errors.WebhookUnavailable(
            f"the API server of context {context} could not call the admission webhook "
            f'"{failure.webhook}", {attempts} attempts: {failure}',
            fix="the webhook's service must be running; re-run once it is",
        )
    return errors.MtvRegisterError(
        f"the API server of context {context} kept failing, {attempts} attempts: {failure}",
        fix="check the API server's health, then re-run (the tool picks up where it stopped)",
    )


class Again:
    """Returned by a `retry_on_conflict` step that lost a race without a Conflict (a create that
    met AlreadyExists, say): read again and retry."""


AGAIN = Again()


ObjectKey = tuple[str, str, str]  # an object's kind, namespace ("" for a cluster object), name

_TURNS: dict[tuple[str, ObjectKey], threading.RLock] = {}
_TURNS_LOCK = threading.Lock()


def _turn(context: str, obj: ObjectKey) -> threading.RLock:
    """The lock this run's writers of `obj` on `context` share."""
    with _TURNS_LOCK:
        return _TURNS.setdefault((context, obj), threading.RLock())


def retry_on_conflict(
    timing: Timing,
    step: Callable[[int], T | Again],
    *,
    what: str,
    context: str,
    obj: ObjectKey,
) -> T:
    """`step(attempt)` (0-based) until it gives an answer. A `Conflict` it raises, or `AGAIN` it
    returns, starts another try; after `conflict_attempts` tries, `ConflictError` naming `what`.
    The steps of other threads of this run that write `obj` on `context` wait their turn, however
    their `what` words it."""
    with _turn(context, obj):
        for attempt in range(timing.conflict_attempts):
            try:
                outcome = step(attempt)
            except errors.Conflict:
                continue
            if not isinstance(outcome, Again):
                return outcome
    raise errors.ConflictError(
        f"{what} keeps changing on {context} ({timing.conflict_attempts} tries)",
        fix="stop the other writer, then re-run",
    )


class Expired(Exception):
    """A `poll_until` ran out of its time."""


def poll_until(
    check: Callable[[], T],
    *,
    timeout: float,
    wait: float,
    max_wait: float | None = None,
    pending: tuple[type[BaseException], ...],
) -> T:
    """`check()` until it returns, while it raises one of `pending`, for up to `timeout` seconds,
    waiting `wait` between two looks (doubled up to `max_wait` when given). `Expired` when the
    time ran out, and the run's own `WaitTimeout` or `Cancelled` when the run's did."""
    import tenacity

    waits = (
        tenacity.wait_fixed(wait)
        if max_wait is None
        else tenacity.wait_exponential(multiplier=wait, max=max_wait)
    )
    try:
        for attempt in tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(pending),
            stop=deadline.stop_when(tenacity.stop_after_delay(timeout)),
            wait=waits,
            sleep=lambda seconds: deadline.sleep(seconds),
            reraise=False,
        ):
            with attempt:
                return check()
    except tenacity.RetryError:
        raise Expired() from None
    raise AssertionError("unreachable")
