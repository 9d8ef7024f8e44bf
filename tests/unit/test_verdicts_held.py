"""`verdicts.wait_all_ready` from the Providers the caller holds: no list, and what the watch
replays from before them does not count."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mtv_register import verdicts
from mtv_register.timing import Timing

Obj = dict[str, Any]


def provider(name: str, version: str, phase: str | None = None) -> Obj:
    obj: Obj = {"metadata": {"name": name, "resourceVersion": version, "generation": 1}}
    if phase == "Ready":
        obj["status"] = {
            "phase": "Ready",
            "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    return obj


class Host:
    """A host that answers one watch with the given events and refuses lists."""

    context = "mtv"
    timing = Timing.immediate()

    def __init__(self, events: list[Obj]) -> None:
        self.events = events
        self.watched_from: list[str] = []

    def list(self, kind: object, namespace: str | None = None) -> Obj:
        raise AssertionError("listed: the held Providers should have been enough")

    def watch(self, kind: object, namespace: str, **kw: Any) -> Iterator[Obj]:
        self.watched_from.append(kw["resource_version"])
        yield from self.events


@pytest.mark.parametrize(
    ("version", "number"),
    [("7", 7), ("1234567890123", 1234567890123), ("0", None), ("012", None), ("", None)],
)
def test_comparable_resource_versions(version: str, number: int | None) -> None:
    assert verdicts.comparable(version) == number
    assert verdicts.comparable("abc") is None


def test_the_watch_starts_at_the_oldest_held_and_older_events_are_ignored() -> None:
    held = {"a": provider("a", "20"), "b": provider("b", "15")}
    host = Host(
        [
            {"type": "DELETED", "object": provider("a", "18")},  # before what is held of "a"
            {"type": "MODIFIED", "object": provider("b", "16", "Ready")},
            {"type": "MODIFIED", "object": provider("a", "21", "Ready")},
        ]
    )

    ready = verdicts.wait_all_ready(host, "ns", ["a", "b"], 5.0, held=held)  # type: ignore[arg-type]

    assert host.watched_from == ["15"]
    assert {name: obj["metadata"]["resourceVersion"] for name, obj in ready.items()} == {
        "a": "21",
        "b": "16",
    }


def test_without_comparable_versions_it_lists_first() -> None:
    host = Host([])
    with pytest.raises(AssertionError, match="listed"):
        verdicts.wait_all_ready(  # type: ignore[arg-type]
            host, "ns", ["a"], 5.0, held={"a": provider("a", "opaque-1")}
        )
