"""A work queue as controller-runtime's (client-go's rate-limited delaying queue, minus the rate
limit Forklift never triggers): a key waits at most once, an immediate add of a key in work
runs it again afterwards, a delayed add keeps the earliest time asked, and no key is worked on
by two workers at once."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Hashable


class WorkQueue:
    def __init__(self, name: str, handler: Callable[[Hashable], None], workers: int = 10) -> None:
        self._handler = handler
        self._cond = threading.Condition()
        self._queue: deque[Hashable] = deque()
        self._dirty: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._waiting: dict[Hashable, float] = {}
        self._timers: list[tuple[float, int, Hashable]] = []
        self._counter = itertools.count()
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        self._threads.append(threading.Thread(target=self._tick, name=f"{name}-timer", daemon=True))
        for thread in self._threads:
            thread.start()

    def add(self, key: Hashable) -> None:
        with self._cond:
            self._add(key)

    def _add(self, key: Hashable) -> None:
        if key in self._dirty or self._stopped:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
        self._cond.notify_all()

    def add_after(self, key: Hashable, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            due = time.monotonic() + delay
            if self._waiting.get(key, due + 1) <= due:
                return
            self._waiting[key] = due
            heapq.heappush(self._timers, (due, next(self._counter), key))
            self._cond.notify_all()

    def forget(self, key: Hashable) -> None:
        """Drop a pending delayed add (the object is gone)."""
        with self._cond:
            self._waiting.pop(key, None)

    def run_now(self, key: Hashable) -> None:
        """Work on `key` in the caller's thread, as soon as no worker holds it."""
        with self._cond:
            while key in self._processing:
                self._cond.wait()
            self._processing.add(key)
            self._dirty.discard(key)
            with_queue = [k for k in self._queue if k != key]
            self._queue = deque(with_queue)
        try:
            self._handler(key)
        finally:
            self._done(key)

    def settle(self, timeout: float, within: float = 0.0) -> bool:
        """Wait until every key due by `within` seconds from now has been worked on (later ones
        do not count)."""
        deadline = time.monotonic() + timeout
        due = time.monotonic() + within
        with self._cond:
            while self._queue or self._processing or any(d <= due for d in self._waiting.values()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
        return True

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=0.5)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and not self._queue:
                    self._cond.wait()
                if self._stopped:
                    return
                key = self._queue.popleft()
                self._processing.add(key)
                self._dirty.discard(key)
            try:
                self._handler(key)
            except Exception:  # a bug in one pass must not stop the controller
                traceback.print_exc()
            finally:
                self._done(key)

    def _done(self, key: Hashable) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
            self._cond.notify_all()

    def _tick(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    due, _, key = heapq.heappop(self._timers)
                    if self._waiting.get(key) == due:
                        del self._waiting[key]
                        self._add(key)
                wait = self._timers[0][0] - now if self._timers else None
                self._cond.wait(wait)
