"""What the hardening tests share: runs of the tool on a fresh sandbox, the requests it made,
and the object sets of every cluster to compare end states."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtv_register.clusters import Connector
from mtv_register.orchestrator import PairOptions
from mtv_register.sandbox import Sandbox
from mtv_register.timing import Timing

MUTATING = {"create", "update", "patch", "delete", "deletecollection"}
TOOL_AGENT = r"^mtv-register/"
# Objects of the sandbox's own making whose presence says nothing about the tool.
RANDOM_SUFFIX = re.compile(r"-token-[a-z0-9]{5}$")
# Events (the tool's on Providers, Forklift's) are history, named after the time they were
# recorded: two runs that end alike differ in them, so end states are compared without them.
EVENT_KEYS = frozenset({"events.k8s.io/events", "/events"})


@dataclass(frozen=True)
class Request:
    context: str
    verb: str
    path: str

    def __str__(self) -> str:
        return f"{self.context}:{self.verb}:{self.path}"


def options(kubeconfig: Path, **overrides: Any) -> PairOptions:
    base: dict[str, Any] = {
        "source": "source",
        "destination": "destination",
        "host": "mtv",
        "kubeconfig": kubeconfig,
        "timeout": 30,
        "connector": Connector(timing=Timing.immediate()),
    }
    return PairOptions(**{**base, **overrides})


def marks(sandbox: Sandbox) -> dict[str, int]:
    return {context: c.cluster.audit.mark() for context, c in sandbox.clusters.items()}


def tool_requests(sandbox: Sandbox, since: dict[str, int]) -> list[Request]:
    """The requests the tool made (not Forklift's), in order, without repeats."""
    seen: dict[Request, None] = {}
    for context, cluster in sandbox.clusters.items():
        for event in cluster.cluster.audit.since(since[context]):
            if not re.search(TOOL_AGENT, event.get("userAgent", "")):
                continue
            path = event["requestURI"].split("?", 1)[0]
            seen[Request(context, event["verb"], path)] = None
    return list(seen)


def objects(sandbox: Sandbox) -> dict[str, Counter[str]]:
    """Every object of every cluster but Events, as kind/namespace/name (random suffixes folded),
    counted: two runs end alike when these are equal, and a count above 1 is a duplicate."""
    result: dict[str, Counter[str]] = {}
    for context, cluster in sandbox.clusters.items():
        counter: Counter[str] = Counter()
        for key, obj in cluster.cluster.store.all_objects():
            if key in EVENT_KEYS:
                continue
            meta = obj["metadata"]
            name = RANDOM_SUFFIX.sub("-token-*", meta["name"])
            counter[f"{key}/{meta.get('namespace', '')}/{name}"] += 1
        result[context] = counter
    return result


def provider_phases(sandbox: Sandbox) -> dict[str, str]:
    host = sandbox[sandbox.mtv_context].cluster
    rtype = host.rtype("forklift.konveyor.io", "v1beta1", "providers")
    items, _ = host.store.list(rtype)
    return {p["metadata"]["name"]: (p.get("status") or {}).get("phase", "") for p in items}
