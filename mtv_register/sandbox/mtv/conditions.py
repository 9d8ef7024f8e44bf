"""Forklift's condition list (`pkg/lib/condition`) as a reconcile pass uses it.

A pass begins staging: every condition it sets again is kept (its `lastTransitionTime` changes
only when something else about it changed), every other one is dropped when staging ends. What
was added, updated or dropped is what Forklift records as Events on the Provider.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
BLOCKER_CATEGORIES = ("Critical", "Error")
WARNING_CATEGORIES = ("Critical", "Error", "Warn")
# The condition fields in the order Go marshals them; the rest of a stored condition is dropped.
_FIELDS = ("type", "status", "reason", "category", "message", "suggestion")


def condition(
    kind: str, category: str, message: str, reason: str = "", items: tuple[str, ...] = ()
) -> Obj:
    """A condition with status True, as every condition Forklift sets on a Provider is."""
    found: Obj = {"type": kind, "status": "True", "category": category}
    if reason:
        found["reason"] = reason
    if message:
        found["message"] = message
    if items:
        found["items"] = list(items)
    return found


def _same(a: Obj, b: Obj) -> bool:
    keys = (*_FIELDS, "durable", "items")
    return all(a.get(k) == b.get(k) for k in keys)


def _marshalled(found: Obj) -> Obj:
    out = {k: found[k] for k in _FIELDS if found.get(k) not in (None, "")}
    out.setdefault("status", "")
    out.setdefault("category", "")
    out["lastTransitionTime"] = found.get("lastTransitionTime", "")
    for optional in ("durable", "items"):
        if found.get(optional):
            out[optional] = found[optional]
    return out


@dataclass(frozen=True)
class Recorded:
    """One Event Forklift records on the Provider for a changed condition."""

    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass
class Conditions:
    """The Provider's conditions during one pass, staging from the start."""

    now: str
    items: list[Obj] = field(default_factory=list)
    staged: set[str] = field(default_factory=set)
    added: dict[str, Obj] = field(default_factory=dict)
    updated: dict[str, Obj] = field(default_factory=dict)
    deleted: dict[str, Obj] = field(default_factory=dict)

    @classmethod
    def begin(cls, stored: list[Obj] | None, now: str) -> Conditions:
        items = [dict(c) for c in stored or [] if c.get("type")]
        return cls(now, items, {c["type"] for c in items if c.get("durable")})

    def set(self, new: Obj) -> None:
        kind = new["type"]
        self.staged.add(kind)
        for index, old in enumerate(self.items):
            if old["type"] != kind:
                continue
            if not _same(old, new):
                self.items[index] = {**new, "lastTransitionTime": self.now}
                if kind not in self.added:
                    self.updated[kind] = new
                    self.deleted.pop(kind, None)
            return
        self.items.append({**new, "lastTransitionTime": self.now})
        self.added[kind] = new
        self.updated.pop(kind, None)
        self.deleted.pop(kind, None)

    def has(self, *kinds: str) -> bool:
        """Every one of `kinds` is set in this pass, with status True (HasCondition)."""
        present = {
            c["type"] for c in self.items if c["type"] in self.staged and c["status"] == "True"
        }
        return bool(kinds) and all(k in present for k in kinds)

    def has_blocker(self) -> bool:
        return any(
            c["type"] in self.staged
            and c["status"] == "True"
            and c.get("category") in BLOCKER_CATEGORIES
            for c in self.items
        )

    def end(self) -> list[Obj]:
        """End staging: the conditions as written to status."""
        kept = []
        for found in self.items:
            if found["type"] in self.staged:
                kept.append(found)
            else:
                self.deleted[found["type"]] = found
                self.added.pop(found["type"], None)
                self.updated.pop(found["type"], None)
        self.items = kept
        return [_marshalled(c) for c in kept]

    def events(self) -> list[Recorded]:
        """What Forklift's recorder emits for this pass: added, then updated, then deleted."""
        out = []
        for changed in (self.added, self.updated, self.deleted):
            for found in changed.values():
                kind = "Warning" if found.get("category") in WARNING_CATEGORIES else "Normal"
                out.append(Recorded(kind, found["type"], found.get("message", "")))
        return out
