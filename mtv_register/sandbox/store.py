"""Object storage of one simulated cluster: what etcd plus the generic registry do.

Every write takes the next resourceVersion of the cluster, records an event for watchers, and
notifies the controllers. Objects are plain JSON dicts; callers always get copies.
"""

from __future__ import annotations

import builtins
import copy
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mtv_register.sandbox import apistatus
from mtv_register.sandbox.resources import ResourceType

Obj = dict[str, Any]
WATCH_HISTORY = 10_000


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Event:
    resource_version: int
    type: str  # ADDED, MODIFIED, DELETED
    rtype_key: str
    namespace: str
    obj: Obj


Listener = Callable[[Event], None]

# -- selectors ---------------------------------------------------------------------------------

_REQ = re.compile(
    r"^\s*(?P<neg>!)?(?P<key>[A-Za-z0-9_./-]+)\s*"
    r"(?:(?P<op>==|!=|=|\s+in\s+|\s+notin\s+)\s*(?P<value>\([^)]*\)|[A-Za-z0-9_.-]*))?\s*$"
)


def _split_selector(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


def _label_test(op: str, key: str, values: frozenset[str], labels: dict[str, str]) -> bool:
    if op == "exists":
        return key in labels
    if op == "!exists":
        return key not in labels
    if op in ("=", "==", "in"):
        return labels.get(key) in values
    return labels.get(key) not in values  # != and notin


def label_matcher(selector: str | None) -> Callable[[dict[str, str]], bool]:
    """A labelSelector query parameter as a predicate; 400 BadRequest when it does not parse."""
    requirements: list[tuple[str, str, frozenset[str]]] = []
    for part in _split_selector(selector or ""):
        match = _REQ.match(part)
        if not match or (match["neg"] and match["op"]):
            raise apistatus.bad_request(f"unable to parse requirement: {part!r}")
        op = (match["op"] or "").strip() or ("!exists" if match["neg"] else "exists")
        raw = match["value"] or ""
        values = frozenset(v.strip() for v in raw.strip("()").split(",") if v.strip())
        if op in ("=", "==", "!="):
            values = frozenset({raw})
        requirements.append((op, match["key"], values))
    return lambda labels: all(_label_test(*req, labels) for req in requirements)


_FIELDS: dict[str, Callable[[Obj], str]] = {
    "metadata.name": lambda o: o["metadata"].get("name", ""),
    "metadata.namespace": lambda o: o["metadata"].get("namespace", ""),
    "type": lambda o: o.get("type", ""),
    "status.phase": lambda o: (o.get("status") or {}).get("phase", ""),
}


def field_matcher(selector: str | None, rtype: ResourceType) -> Callable[[Obj], bool]:
    if not selector:
        return lambda obj: True
    tests: list[tuple[Callable[[Obj], str], bool, str]] = []
    for part in _split_selector(selector):
        match = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*?)\s*$", part)
        if not match:
            raise apistatus.bad_request(f"invalid field selector: {part!r}")
        name, op, value = match.groups()
        getter = _FIELDS.get(name)
        if getter is None or (name == "type" and rtype.kind != "Secret"):
            raise apistatus.bad_request(f"field label not supported: {name}")
        tests.append((getter, op == "!=", value))
    return lambda obj: all((get(obj) == value) != negated for get, negated, value in tests)


# -- the store -----------------------------------------------------------------------------------


class Store:
    def __init__(self) -> None:
        self._objects: dict[tuple[str, str, str], Obj] = {}
        self._rv = 1000
        self._events: deque[Event] = deque(maxlen=WATCH_HISTORY)
        self._changed = threading.Condition(threading.RLock())
        self._listeners: list[Listener] = []

    @property
    def lock(self) -> threading.Condition:
        return self._changed

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def current_rv(self) -> int:
        with self._changed:
            return self._rv

    def _commit(self, event_type: str, rtype: ResourceType, obj: Obj) -> Event:
        event = Event(
            self._rv,
            event_type,
            rtype.key,
            obj["metadata"].get("namespace", ""),
            copy.deepcopy(obj),
        )
        self._events.append(event)
        self._changed.notify_all()
        return event

    def _notify(self, event: Event) -> None:
        for listener in self._listeners:
            listener(event)

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    # -- reads ---------------------------------------------------------------------------

    def get(self, rtype: ResourceType, namespace: str, name: str) -> Obj:
        with self._changed:
            obj = self._objects.get((rtype.key, namespace, name))
            if obj is None:
                raise apistatus.not_found(rtype.plural, rtype.group, name)
            return copy.deepcopy(obj)

    def find(self, rtype: ResourceType, namespace: str, name: str) -> Obj | None:
        with self._changed:
            obj = self._objects.get((rtype.key, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(
        self,
        rtype: ResourceType,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[builtins.list[Obj], int]:
        labels_ok = label_matcher(label_selector)
        fields_ok = field_matcher(field_selector, rtype)
        with self._changed:
            items = [
                copy.deepcopy(obj)
                for (key, ns, _), obj in sorted(self._objects.items())
                if key == rtype.key
                and (namespace is None or ns == namespace)
                and labels_ok(obj["metadata"].get("labels") or {})
                and fields_ok(obj)
            ]
            return items, self._rv

    def all_objects(self) -> builtins.list[tuple[str, Obj]]:
        """Every stored object with its type key: for garbage collection and test snapshots."""
        with self._changed:
            return [(key, copy.deepcopy(obj)) for (key, _, _), obj in self._objects.items()]

    # -- writes --------------------------------------------------------------------------

    def create(self, rtype: ResourceType, obj: Obj) -> Obj:
        meta = obj.setdefault("metadata", {})
        namespace = meta.get("namespace", "") if rtype.namespaced else ""
        with self._changed:
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            name = meta["name"]
            key = (rtype.key, namespace, name)
            if key in self._objects:
                raise apistatus.already_exists(rtype.plural, rtype.group, name)
            meta["uid"] = str(uuid.uuid4())
            meta["resourceVersion"] = self._next_rv()
            meta["creationTimestamp"] = now_rfc3339()
            if rtype.has_generation:
                meta["generation"] = 1
            for transient in ("deletionTimestamp", "managedFields", "selfLink"):
                meta.pop(transient, None)
            obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
            self._objects[key] = copy.deepcopy(obj)
            event = self._commit("ADDED", rtype, obj)
        self._notify(event)
        return copy.deepcopy(obj)

    def update(self, rtype: ResourceType, obj: Obj, *, subresource: str = "") -> Obj:
        """PUT semantics: optimistic concurrency on metadata.resourceVersion when it is given."""
        meta = obj.setdefault("metadata", {})
        namespace = meta.get("namespace", "") if rtype.namespaced else ""
        name = meta.get("name", "")
        with self._changed:
            key = (rtype.key, namespace, name)
            current = self._objects.get(key)
            if current is None:
                raise apistatus.not_found(rtype.plural, rtype.group, name)
            wanted_rv = meta.get("resourceVersion")
            if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
                raise apistatus.conflict(rtype.plural, rtype.group, name)
            updated = self._merge_for_update(rtype, current, obj, subresource)
            if _same_content(updated, current):
                return copy.deepcopy(current)
            updated["metadata"]["resourceVersion"] = self._next_rv()
            self._objects[key] = updated
            event = self._commit("MODIFIED", rtype, updated)
        self._notify(event)
        return copy.deepcopy(updated)

    @staticmethod
    def _merge_for_update(rtype: ResourceType, current: Obj, obj: Obj, subresource: str) -> Obj:
        meta = obj["metadata"]
        kept = current["metadata"]
        has_status = "status" in rtype.subresources
        if subresource == "status":
            # The status subresource writes status only; everything else stays as stored.
            updated = copy.deepcopy(current)
            if "status" in obj:
                updated["status"] = copy.deepcopy(obj["status"])
            else:
                updated.pop("status", None)
            return updated
        updated = copy.deepcopy(obj)
        updated["apiVersion"], updated["kind"] = rtype.api_version, rtype.kind
        for immutable in (
            "uid",
            "creationTimestamp",
            "namespace",
            "name",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            if immutable in kept:
                updated["metadata"][immutable] = kept[immutable]
            else:
                updated["metadata"].pop(immutable, None)
        updated["metadata"].pop("managedFields", None)
        if has_status:
            # With a status subresource, the main resource ignores status changes.
            if "status" in current:
                updated["status"] = copy.deepcopy(current["status"])
            else:
                updated.pop("status", None)
        if rtype.has_generation and _spec_of(updated) != _spec_of(current):
            updated["metadata"]["generation"] = kept.get("generation", 1) + 1
        del meta
        return updated

    def mark_deleting(self, rtype: ResourceType, namespace: str, name: str, when: str) -> None:
        """Set deletionTimestamp, which no client write may do (finalizers keep the object)."""
        with self._changed:
            key = (rtype.key, namespace if rtype.namespaced else "", name)
            current = self._objects.get(key)
            if current is None:
                raise apistatus.not_found(rtype.plural, rtype.group, name)
            meta = current["metadata"]
            if rtype.has_generation and not meta.get("deletionTimestamp"):
                meta["generation"] = meta.get("generation", 1) + 1
            meta["deletionTimestamp"] = when
            if rtype.kind != "Namespace":
                meta["deletionGracePeriodSeconds"] = 0  # as the registry's markAsDeleting
            meta["resourceVersion"] = self._next_rv()
            event = self._commit("MODIFIED", rtype, current)
        self._notify(event)

    def delete(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> Obj:
        ns = namespace if rtype.namespaced else ""
        with self._changed:
            key = (rtype.key, ns, name)
            current = self._objects.get(key)
            if current is None:
                raise apistatus.not_found(rtype.plural, rtype.group, name)
            if uid and current["metadata"]["uid"] != uid:
                raise apistatus.conflict(rtype.plural, rtype.group, name)
            if resource_version and current["metadata"]["resourceVersion"] != resource_version:
                raise apistatus.conflict(rtype.plural, rtype.group, name)
            del self._objects[key]
            current["metadata"]["resourceVersion"] = self._next_rv()
            event = self._commit("DELETED", rtype, current)
        self._notify(event)
        return copy.deepcopy(current)

    # -- watch ---------------------------------------------------------------------------

    def watch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        since: int,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout: float,
        stopped: Callable[[], bool] = lambda: False,
    ) -> Iterator[Event]:
        """Events after resourceVersion `since`, until `timeout` seconds pass.

        410 Expired when `since` is older than the kept history, as etcd compaction makes it.
        The 410 and selector errors are raised here, at once, not at the first event: a caller
        sends its 200 headers before any event exists.
        """
        labels_ok = label_matcher(label_selector)
        fields_ok = field_matcher(field_selector, rtype)
        with self._changed:
            if self._events and since < self._events[0].resource_version - 1:
                raise apistatus.gone(
                    f"too old resource version: {since} ({self._events[0].resource_version - 1})"
                )
        return self._follow(rtype, namespace, since, labels_ok, fields_ok, timeout, stopped)

    def _follow(
        self,
        rtype: ResourceType,
        namespace: str | None,
        since: int,
        labels_ok: Callable[[dict[str, str]], bool],
        fields_ok: Callable[[Obj], bool],
        timeout: float,
        stopped: Callable[[], bool],
    ) -> Iterator[Event]:
        deadline = time.monotonic() + timeout
        position = since
        while not stopped():
            with self._changed:
                pending = [e for e in self._events if e.resource_version > position]
                if not pending:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    self._changed.wait(min(remaining, 0.5))
                    continue
            for event in pending:
                position = event.resource_version
                if event.rtype_key != rtype.key:
                    continue
                if namespace is not None and event.namespace != namespace:
                    continue
                if labels_ok(event.obj["metadata"].get("labels") or {}) and fields_ok(event.obj):
                    yield event
            if time.monotonic() >= deadline:
                return


def _spec_of(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _same_content(a: Obj, b: Obj) -> bool:
    """An update that changes nothing keeps its resourceVersion, as the real server does."""
    strip = ("resourceVersion", "managedFields")
    meta_a = {k: v for k, v in a["metadata"].items() if k not in strip}
    meta_b = {k: v for k, v in b["metadata"].items() if k not in strip}
    return meta_a == meta_b and _spec_of(a) == _spec_of(b) and a.get("status") == b.get("status")
