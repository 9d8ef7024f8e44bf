"""The token bucket of each API server, on a fake clock: what goes at once, what waits how long
(recorded, never slept), and that a wait ends at the run's deadline and on Ctrl-C."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

import pytest

from mtv_register import deadline, errors, throttle
from mtv_register.throttle import TokenBucket
from mtv_register.timing import DEFAULT_BURST, DEFAULT_QPS, Timing


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> list[float]:
    """Every wait for a token, in order: the fake clock moves on instead of sleeping."""
    asked: list[float] = []

    def sleep(seconds: float) -> None:
        asked.append(seconds)
        clock.now += seconds

    monkeypatch.setattr(deadline, "sleep", sleep)
    return asked


@pytest.fixture
def fresh_run() -> Iterator[None]:
    """A run of its own, and no cancellation left behind for the next test."""
    with deadline.scope(None):
        yield
    with deadline.scope(None):  # entering a scope clears a cancellation
        pass


def test_a_full_bucket_lets_burst_requests_go_at_once_then_paces_them_at_qps(
    clock: Clock,
) -> None:
    bucket = TokenBucket(4.0, 3, clock=clock)

    waits = [bucket.reserve() for _ in range(6)]

    assert waits == [0.0, 0.0, 0.0, 0.25, 0.5, 0.75]  # the waiting ones queue, a token each


def test_a_quiet_spell_refills_the_bucket_up_to_burst_and_no_more(clock: Clock) -> None:
    bucket = TokenBucket(2.0, 3, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]

    clock.now += 1.0  # two tokens come back
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.5]

    clock.now += 60.0  # a long spell gives back `burst`, not 120
    assert [bucket.reserve() for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]


def test_requests_at_any_times_never_exceed_burst_plus_qps_times_any_window(
    clock: Clock,
) -> None:
    qps, burst = 5.0, 4
    bucket = TokenBucket(qps, burst, clock=clock)
    arrivals = random.Random(7)
    sent: list[float] = []
    waited = 0
    for _ in range(400):
        clock.now += arrivals.expovariate(12.0)  # more than qps arrive: most must wait
        wait = bucket.reserve()
        assert wait is not None
        waited += wait > 0
        sent.append(clock.now + wait)

    assert waited > 300
    sent.sort()
    for first in range(len(sent)):
        for last in range(first, len(sent)):
            window = sent[last] - sent[first]
            assert last - first + 1 <= burst + qps * window + 1e-6, (first, last)


def test_a_token_the_limit_would_not_see_is_not_taken(clock: Clock) -> None:
    bucket = TokenBucket(1.0, 1, clock=clock)
    assert bucket.reserve() == 0.0

    assert bucket.reserve(limit=0.5) is None
    assert bucket.reserve(limit=0.5) is None
    assert bucket.reserve() == 1.0  # still the next token: the refused ones took none


@pytest.mark.usefixtures("fresh_run")
def test_a_request_waits_for_its_token_without_holding_the_lock(
    monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    bucket = TokenBucket(2.0, 1, clock=clock)
    locked: list[bool] = []

    def sleep(seconds: float) -> None:
        locked.append(bucket._lock.locked())
        assert bucket.reserve() == seconds + 0.5  # another request reserves meanwhile
        clock.now += seconds

    monkeypatch.setattr(deadline, "sleep", sleep)
    bucket.take("GET /api")
    bucket.take("GET /api")

    assert locked == [False]


@pytest.mark.usefixtures("fresh_run")
def test_a_wait_past_the_deadline_ends_at_once_in_the_runs_timeout(
    clock: Clock, slept: list[float]
) -> None:
    bucket = TokenBucket(0.1, 1, clock=clock)  # the second token is 10 s away
    with deadline.scope(2.0):
        bucket.take("GET /api/v1/secrets on context mtv")

        with pytest.raises(
            errors.WaitTimeout, match=re.escape("waiting for its turn under --qps 0.1")
        ):
            bucket.take("GET /api/v1/secrets on context mtv")

    assert slept == []


@pytest.mark.usefixtures("fresh_run")
def test_ctrl_c_wakes_a_wait_for_a_token() -> None:
    bucket = TokenBucket(0.001, 1)  # the second token is 1000 s away
    bucket.take("GET /api")
    deadline.cancel()

    with pytest.raises(deadline.Cancelled):
        bucket.take("GET /api")  # the real sleep: it returns at once, cancelled


def test_every_client_of_one_server_shares_its_bucket() -> None:
    one = throttle.bucket_for("https://API.fleet.example:443/", 7.0, 9)

    assert throttle.bucket_for("https://api.fleet.example", 7.0, 9) is one
    assert throttle.bucket_for("https://api.fleet.example:6443", 7.0, 9) is not one
    assert throttle.bucket_for("https://other.fleet.example", 7.0, 9) is not one
    assert throttle.bucket_for("https://api.fleet.example", 0.0, 9) is None  # no limit


def test_the_defaults_limit_and_immediate_does_not() -> None:
    assert (Timing().qps, Timing().burst) == (DEFAULT_QPS, DEFAULT_BURST)
    assert Timing.immediate().qps == 0.0


@pytest.mark.parametrize(
    ("qps", "burst", "message"),
    [
        (-1.0, 10, "--qps must be 0 (no limit) or a positive number"),
        (float("nan"), 10, "--qps must be 0 (no limit) or a positive number"),
        (5.0, 0, "--burst must be at least 1 request, not 0"),
    ],
)
def test_a_rate_out_of_range_is_a_usage_error(qps: float, burst: int, message: str) -> None:
    with pytest.raises(errors.UsageError, match=re.escape(message)):
        Timing(qps=qps, burst=burst)
