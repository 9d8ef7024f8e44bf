"""Fault injection and the audit log: how tests make a cluster misbehave and count requests."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass
class Fault:
    """Fail the next `count` requests whose verb and path match."""

    verb: str  # Kubernetes verb (get, list, watch, create, update, patch, delete) or "*"
    path: str  # regular expression searched in the request path
    count: int = 1
    status: int = 500
    retry_after: int | None = None
    drop: bool = False  # close the connection without an answer
    hits: int = 0
    after: bool = False  # do the request, then lose the answer (drop, or `status` instead)
    agent: str = ""  # regular expression the User-Agent must match ("" = any client)

    def matches(self, verb: str, path: str, agent: str = "") -> bool:
        return (
            self.verb in ("*", verb)
            and re.search(self.path, path) is not None
            and (not self.agent or re.search(self.agent, agent) is not None)
        )


@dataclass
class FaultInjector:
    latency: float = 0.0
    _faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def inject(
        self,
        verb: str = "*",
        path: str = "",
        *,
        count: int = 1,
        status: int = 500,
        retry_after: int | None = None,
        drop: bool = False,
        after: bool = False,
        agent: str = "",
    ) -> Fault:
        fault = Fault(verb, path, count, status, retry_after, drop, after=after, agent=agent)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self.latency = 0.0

    def take(self, verb: str, path: str, agent: str = "") -> Fault | None:
        """The fault this request triggers, used up by one."""
        with self._lock:
            for fault in self._faults:
                if fault.count > 0 and fault.matches(verb, path, agent):
                    fault.count -= 1
                    fault.hits += 1
                    return fault
        return None


MUTATING_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def rfc3339_micro(seconds: float) -> str:
    """kube-apiserver's audit timestamp: RFC 3339 with microseconds, in UTC."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AuditLog:
    """One `audit.k8s.io/v1` Event per request, in memory and optionally in a file; its
    `requestReceivedTimestamp` and `stageTimestamp` (the answer ready) bound the request."""

    def __init__(self, path: Path | None = None) -> None:
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")

    def record(
        self,
        *,
        verb: str,
        uri: str,
        username: str,
        groups: list[str],
        code: int,
        user_agent: str,
        object_ref: dict[str, str] | None,
        received: float,
    ) -> None:
        event: dict[str, Any] = {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": str(uuid.uuid4()),
            "stage": "ResponseComplete",
            "requestURI": uri,
            "verb": verb,
            "user": {"username": username, "groups": groups},
            "sourceIPs": ["127.0.0.1"],
            "userAgent": user_agent,
            "responseStatus": {"metadata": {}, "code": code},
            "requestReceivedTimestamp": rfc3339_micro(received),
            "stageTimestamp": rfc3339_micro(time.time()),
        }
        if object_ref:
            event["objectRef"] = object_ref
        with self._lock:
            self._events.append(event)
            if self._path is not None:
                with self._path.open("a") as handle:
                    handle.write(json.dumps(event) + "\n")

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)

    def mark(self) -> int:
        """A position to count from: `since(mark)` gives the events after it."""
        with self._lock:
            return len(self._events)

    def since(self, mark: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events[mark:])

    def mutating(self, mark: int = 0) -> list[dict[str, Any]]:
        return [e for e in self.since(mark) if e["verb"] in MUTATING_VERBS]
