"""The records a run reports as it goes: one `Change` per object it looked at. Every step takes
a `Report` to hand them to (the CLI prints them, a fleet collects them per pair)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Change:
    """One object the run looked at, and what it did to it."""

    context: str
    kind: str
    name: str
    namespace: str
    action: str  # created, updated, replaced, unchanged, deleted, kept, would create, ...

    @property
    def mutates(self) -> bool:
        """Whether the run wrote the object (not only looked at it, or said what it would do)."""
        return self.action not in ("unchanged", "would create", "would update")

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name} {self.action} on {self.context}"


Report = Callable[[Change], None]
