"""Forklift's provider controller around its pure pass (`reconcile.reconcile`): the watches
with Forklift's predicate, the work queue, the collectors it holds, the status write and the
requeue. Both drivers run this loop; each gives it a cache to read, a way to write status and a
way to record Events (`controller` the sandbox's store, `remote` a real API server).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from mtv_register.sandbox.mtv.conditions import Recorded
from mtv_register.sandbox.mtv.reconcile import (
    Collector,
    ForkliftTiming,
    ForkliftVersion,
    Tester,
    imitated,
    reconcile,
)
from mtv_register.sandbox.mtv.workqueue import WorkQueue
from mtv_register.sandbox.store import now_rfc3339

Obj = dict[str, Any]
Key = tuple[str, str]
# The provider with its new status -> the HTTP code of the write (200, 404, 409, ...).
WriteStatus = Callable[[Obj], int]
Record = Callable[[Obj, tuple[Recorded, ...]], None]
Log = Callable[[str], None]


class Cache(Protocol):
    """What Forklift's informer cache answers: the Providers and Secrets as last seen."""

    def providers(self) -> list[Obj]: ...

    def provider(self, namespace: str, name: str) -> Obj | None: ...

    def secret(self, namespace: str, name: str) -> Obj | None: ...


def _key(obj: Obj) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


def _quiet(message: str) -> None:
    del message


class ProviderLoop:
    def __init__(
        self,
        name: str,
        cache: Cache,
        write_status: WriteStatus,
        test: Tester,
        *,
        release: ForkliftVersion,
        timing: ForkliftTiming,
        record: Record | None = None,
        log: Log = _quiet,
    ) -> None:
        self.cache = cache
        self.release = release
        self.timing = timing
        self._write_status = write_status
        self._test = test
        self._record = record or (lambda provider, events: None)
        self._log = log
        self._collectors: dict[Key, Collector] = {}
        self._lock = threading.Lock()
        self.queue = WorkQueue(name, self._work)  # type: ignore[arg-type]

    # -- the watches ---------------------------------------------------------------------------

    def start(self) -> None:
        """The informer's first list: every Provider is a create event."""
        for provider in self.cache.providers():
            self.queue.add(_key(provider))

    def provider_event(self, kind: str, provider: Obj) -> None:
        """ProviderPredicate: creates and deletes pass, an update only while its generation is
        not yet observed (Forklift's own status writes do not wake it)."""
        meta, stored = provider["metadata"], provider.get("status") or {}
        if kind != "MODIFIED" or stored.get("observedGeneration", 0) < meta.get("generation", 1):
            self.queue.add(_key(provider))

    def secret_event(self, secret: Obj) -> None:
        """Any event on a Secret wakes the Providers that refer to it."""
        wanted = _key(secret)
        for provider in self.cache.providers():
            ref = (provider.get("spec") or {}).get("secret") or {}
            if (ref.get("namespace", ""), ref.get("name")) == wanted:
                self.queue.add(_key(provider))

    # -- control -------------------------------------------------------------------------------

    def reconcile_now(self, namespace: str, name: str) -> None:
        """One pass now, in the caller's thread."""
        self.queue.run_now((namespace, name))

    def settle(self, timeout: float) -> bool:
        """True once every pass already due has run, and the follow-up of a pass that tested
        before its inventory was loaded (it ends what was asked); periodic ones do not count."""
        return self.queue.settle(timeout, within=self.timing.inventory)

    def stop(self) -> None:
        self.queue.stop()

    def collector(self, namespace: str, name: str) -> Collector | None:
        """The collector Forklift holds for a Provider: whose Secret its client uses."""
        with self._lock:
            return self._collectors.get((namespace, name))

    # -- one pass ------------------------------------------------------------------------------

    def _work(self, key: Key) -> None:
        provider = self.cache.provider(*key)
        if provider is None:
            with self._lock:
                self._collectors.pop(key, None)
            self.queue.forget(key)
            return
        if not imitated(provider, self.release):
            return
        with self._lock:
            held = self._collectors.get(key)
        result = reconcile(
            provider,
            self.cache.secret,
            held,
            release=self.release,
            timing=self.timing,
            test=self._test,
            now=now_rfc3339(),
        )
        with self._lock:
            if result.collector is None:
                self._collectors.pop(key, None)
            else:
                self._collectors[key] = result.collector
        requeue = result.requeue_after
        where = f"provider {key[0]}/{key[1]}"
        if result.status is None:
            self._log(f"{where}: reconcile failed: {result.error}")
        else:
            self._record(provider, result.events)
            provider["status"] = result.status  # with the resourceVersion read: a guarded write
            code = self._write_status(provider)
            if code == 404:
                self._log(f"{where}: deleted before its status was written")
                return
            if code >= 300:
                self._log(f"{where}: status not written ({code}), retried")
                requeue = result.requeue_after_write_error(self.timing)
        if requeue is not None:
            self.queue.add_after(key, requeue)
