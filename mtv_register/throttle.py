"""Client-side rate limiting: one token bucket per API server, shared by every client of the
process that talks to it, so a fleet registered in parallel into one MTV host spends one budget
there (`Timing.qps`, `Timing.burst`) instead of one per pair.

Each request takes a token before it is sent: an HTTP request of `ApiKube` (each retry too, and
the opening of a watch), one `oc`/`kubectl` command of `OcKube`. The bucket holds up to `burst`
tokens and refills at `qps` a second, as client-go's token bucket does; a request that finds it
empty reserves the next token and waits for it, with no lock held, under the run's deadline and
cancellation (`deadline.sleep`). A wait that would outlast the deadline takes no token and ends
at once in the run's `WaitTimeout`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from mtv_register import deadline


class TokenBucket:
    """`burst` tokens at most, `qps` more each second; `clock` is `time.monotonic` outside tests."""

    def __init__(
        self, qps: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()

    def reserve(self, limit: float | None = None) -> float | None:
        """Take the next token: the seconds until it is there (0: at once). None, and nothing
        taken, when that is more than `limit` seconds away."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.qps)
            self._at = now
            wait = max(0.0, (1.0 - self._tokens) / self.qps)
            if limit is not None and wait > limit:
                return None
            self._tokens -= 1.0  # below zero: the tokens already promised to waiting requests
            return wait

    def take(self, step: str) -> None:
        """Wait for the next token, before `step`. Ctrl-C wakes the wait (`Cancelled`); a token
        the run's deadline would not see come ends it at once (`WaitTimeout`)."""
        left = deadline.remaining()
        wait = self.reserve(None if left is None else max(0.0, left))
        if wait is None:
            late = deadline.expired(f"{step} (waiting for its turn under --qps {self.qps:g})")
            late.fix = "raise --qps or --burst, or --timeout; a re-run carries on from here"
            raise late
        if wait > 0:
            deadline.sleep(wait)  # outside the lock: other requests reserve meanwhile
            deadline.check(step)


_lock = threading.Lock()
_buckets: dict[tuple[str, float, int], TokenBucket] = {}


def server_of(url: str) -> str:
    """The API server a URL names, as a bucket's key: scheme, host and port, lower case."""
    parts = urlsplit(url.strip())
    scheme = (parts.scheme or "https").lower()
    host = (parts.hostname or url).lower()
    port = parts.port or (443 if scheme == "https" else 80)
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}"


def bucket_for(url: str, qps: float, burst: int) -> TokenBucket | None:
    """The bucket every client of the server at `url` with these limits shares; None when `qps`
    is 0 (unlimited)."""
    if qps <= 0:
        return None
    key = (server_of(url), qps, burst)
    with _lock:
        bucket = _buckets.get(key)
        if bucket is None:
            bucket = _buckets[key] = TokenBucket(qps, burst)
        return bucket


def take(url: str, qps: float, burst: int, *, step: str) -> None:
    """Before one request to the server at `url`: wait for its token (`TokenBucket.take`)."""
    bucket = bucket_for(url, qps, burst)
    if bucket is not None:
        bucket.take(step)
