"""The Events on Providers (mtv_register/events.py): what kube-apiserver requires of an
events.k8s.io/v1 Event, no token in a note, best effort, and an Event only for what a run
changed. The Events as the sandbox stores them are tests/integration/test_events.py's."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest

from mtv_register import deadline, errors, events, naming
from mtv_register.kube import EVENT, PROVIDER, Kind
from mtv_register.records import Change
from mtv_register.redaction import REDACTED, remember
from mtv_register.registration import RotationResult
from mtv_register.sandbox.event_validation import event_causes

Obj = dict[str, Any]
NANOSECONDS = 0x18EDCEA2B2E3915A  # 2026-12-03T17:30:24.571978074Z


def provider(name: str = "source") -> Obj:
    return {
        "apiVersion": PROVIDER.api_version,
        "kind": PROVIDER.kind,
        "metadata": {
            "name": name,
            "namespace": "openshift-mtv",
            "uid": f"uid-of-{name}",
            "resourceVersion": "42",
        },
        "status": {"phase": "Ready"},
    }


class Host:
    """The MTV host as `events` speaks to it: creates recorded, each answered or refused."""

    context = "mtv"

    def __init__(self, refusal: Exception | None = None) -> None:
        self.created: list[Obj] = []
        self.read: list[str] = []
        self.refusal = refusal

    def create(self, kind: Kind, obj: Obj, *, dry_run: bool = False) -> Obj:
        assert kind is EVENT
        self.created.append(obj)
        if self.refusal is not None:
            raise self.refusal
        return obj

    def get(self, kind: Kind, name: str, namespace: str | None = None) -> Obj | None:
        self.read.append(name)
        return provider(name)


def test_an_event_has_every_field_kube_apiserver_requires_of_events_k8s_io_v1() -> None:
    obj = events.event(
        provider(), events.REGISTERED, "registered", warning=False, action="Register",
        nanoseconds=NANOSECONDS, instance="laptop",
    )  # fmt: skip

    assert obj["apiVersion"] == "events.k8s.io/v1" and obj["kind"] == "Event"
    assert obj["metadata"] == {"name": "source.18edcea2b2e3915a", "namespace": "openshift-mtv"}
    assert obj["eventTime"] == "2026-12-03T17:30:24.571978Z"
    assert obj["reportingController"] == naming.EVENT_CONTROLLER
    assert obj["reportingInstance"] == "laptop"
    assert (obj["action"], obj["reason"], obj["type"]) == ("Register", events.REGISTERED, "Normal")
    assert obj["regarding"] == {
        "apiVersion": "forklift.konveyor.io/v1beta1",
        "kind": "Provider",
        "name": "source",
        "namespace": "openshift-mtv",
        "uid": "uid-of-source",
        "resourceVersion": "42",
    }
    assert event_causes(obj, None) == []  # the sandbox judges it as kube-apiserver does


def test_a_warning_is_of_type_warning_and_a_long_host_name_is_cut_to_128() -> None:
    obj = events.event(
        provider(), events.ROTATION_FAILED, "x", warning=True, action="Rotate",
        nanoseconds=NANOSECONDS, instance="h" * 300,
    )  # fmt: skip

    assert obj["type"] == "Warning"
    assert obj["reportingInstance"] == "h" * 128
    assert event_causes(obj, None) == []


def test_two_events_a_nanosecond_apart_have_two_names() -> None:
    names = {
        events.event(provider(), "R", "n", warning=False, action="A", nanoseconds=t, instance="i")[
            "metadata"
        ]["name"]
        for t in (NANOSECONDS, NANOSECONDS + 1)
    }
    assert len(names) == 2
    assert all(re.fullmatch(r"source\.[0-9a-f]+", name) for name in names)


def test_a_long_note_is_cut_to_1024_bytes_on_a_character() -> None:
    note = events.truncated("é" * 1000)  # 2000 bytes

    assert len(note.encode()) <= events.NOTE_LIMIT
    assert note.endswith("...") and set(note[:-3]) == {"é"}
    assert events.truncated("short") == "short"


def test_a_token_in_a_note_is_scrubbed_before_the_note_is_cut() -> None:
    token = remember("Zq9vTkEventNoteToken-" + "a" * 40)
    obj = events.event(
        provider(), "R", "x" * 1015 + token, warning=False, action="A",
        nanoseconds=NANOSECONDS, instance="i",
    )  # fmt: skip

    assert token[:6] not in obj["note"]  # cut first, a piece of it would have stayed
    assert obj["note"].startswith("x" * 1015 + REDACTED[:6])
    assert len(obj["note"].encode()) <= events.NOTE_LIMIT


@pytest.mark.parametrize(
    "refusal",
    [
        errors.PermissionDenied('events.events.k8s.io is forbidden: User "rotator" cannot create'),
        errors.NotFound("the server could not find the requested resource"),
        errors.WebhookUnavailable('failed calling webhook "events.example.com"'),
        errors.MtvRegisterError("POST /apis/events.k8s.io/v1 failed: 500 ran out of tries"),
        deadline.Cancelled("interrupted during POST"),
    ],
    ids=["403", "404", "webhook", "other", "cancelled"],
)
def test_a_refused_event_is_said_in_one_line_and_never_raised(refusal: Exception) -> None:
    host = Host(refusal)
    said: list[str] = []

    recorded = events.record(
        host,  # type: ignore[arg-type]
        provider(),
        events.ROTATED,
        "rotated",
        action="Rotate",
        say=said.append,
    )

    assert recorded is False
    assert len(host.created) == 1  # tried once: a permanent refusal is not retried here
    assert len(said) == 1
    assert said[0].startswith("Event CredentialsRotated not recorded on Provider openshift-mtv/")


def test_an_event_already_there_is_a_retry_of_our_own_create_whose_answer_was_lost() -> None:
    host = Host(errors.AlreadyExists('events.events.k8s.io "source.18ed" already exists'))
    said: list[str] = []

    assert events.record(host, provider(), "R", "n", action="A", say=said.append)  # type: ignore[arg-type]
    assert said == []


@pytest.mark.parametrize("stop", ["cancelled", "passed"])
def test_nothing_is_recorded_once_the_run_is_cancelled_or_out_of_time(
    monkeypatch: pytest.MonkeyPatch, stop: str
) -> None:
    monkeypatch.setattr(deadline, stop, lambda: True)
    host = Host()

    assert not events.record(host, provider(), "R", "n", action="A")  # type: ignore[arg-type]
    assert host.created == []


@pytest.mark.parametrize(
    ("action", "reason", "kind"),
    [
        ("rotated", events.ROTATED, ("Normal", "Rotate")),
        ("recovered", events.RECOVERED, ("Normal", "Recover")),
        ("failed", events.ROTATION_FAILED, ("Warning", "Rotate")),
        ("skipped", None, None),
        ("lost-race", None, None),
        ("would rotate", None, None),
        ("would recover", None, None),
    ],
)
def test_a_rotation_records_what_it_did_and_nothing_when_it_changed_nothing(
    action: str, reason: str | None, kind: tuple[str, str] | None
) -> None:
    host = Host()
    result = RotationResult(
        "source", action, "the cause" if action == "failed" else "", "old-token", "new-token"
    )

    events.rotation(host, provider(), result)  # type: ignore[arg-type]

    assert [(e["reason"], (e["type"], e["action"])) for e in host.created] == (
        [(reason, kind)] if reason else []
    )
    if action == "failed":
        assert host.created[0]["note"] == "the cause"
    elif reason:
        assert "token Secret new-token replaces old-token" in host.created[0]["note"]


SIDES = [
    SimpleNamespace(provider="source", context="src"),
    SimpleNamespace(provider="dst", context="dst"),
]


def test_a_registration_that_changed_nothing_records_nothing_and_reads_nothing() -> None:
    host = Host()
    unchanged = [
        Change("src", "Secret", "mtv-provider-token", "mtv-register", "unchanged"),
        Change("mtv", "Provider", "source", "openshift-mtv", "unchanged"),
        Change("mtv", "Secret", "dst-credentials", "openshift-mtv", "unchanged"),
    ]

    events.registration(host, "openshift-mtv", SIDES, unchanged)  # type: ignore[arg-type]

    assert host.created == [] and host.read == []


def test_a_registration_records_on_the_providers_it_changed_only() -> None:
    host = Host()
    changes = [
        Change("src", "Secret", "mtv-provider-token", "mtv-register", "created"),
        Change("mtv", "Provider", "source", "openshift-mtv", "unchanged"),
        Change("mtv", "Provider", "dst", "openshift-mtv", "unchanged"),
    ]

    events.registration(host, "openshift-mtv", SIDES, changes, ready={"source": provider()})  # type: ignore[arg-type]

    assert [(e["regarding"]["name"], e["reason"]) for e in host.created] == [
        ("source", events.REGISTERED)
    ]
    assert "Secret mtv-register/mtv-provider-token created on src" in host.created[0]["note"]
    assert host.read == []  # the Provider as Forklift found it Ready


def test_a_failed_registration_records_its_cause_on_the_providers_that_stay() -> None:
    host = Host()
    changes = [Change("mtv", "Secret", "dst-credentials", "openshift-mtv", "updated")]
    failure = errors.ProviderNotReady(
        'Forklift reports Provider "openshift-mtv/dst" not ready: ConnectionAuthFailed',
        fix="fix the cause above",
    )

    events.registration(host, "openshift-mtv", SIDES, changes, failure=failure)  # type: ignore[arg-type]

    (event,) = host.created
    assert (event["regarding"]["name"], event["reason"], event["type"]) == (
        "dst",
        events.REGISTRATION_FAILED,
        "Warning",
    )
    assert event["note"].startswith(failure.line())


def test_after_a_failed_wait_for_forklift_a_provider_it_found_ready_is_registered() -> None:
    host = Host()
    ready = provider("source")
    ready["metadata"]["generation"] = 1
    ready["status"] = {"phase": "Ready", "observedGeneration": 1, "conditions": [{"type": "Ready"}]}
    host.get = lambda kind, name, namespace=None: ready if name == "source" else provider(name)  # type: ignore[method-assign]
    changes = [
        Change("mtv", "Secret", "source-credentials", "openshift-mtv", "created"),
        Change("mtv", "Secret", "dst-credentials", "openshift-mtv", "created"),
    ]
    failure = errors.ProviderNotReady('Forklift reports Provider "openshift-mtv/dst" not ready')

    events.registration(host, "openshift-mtv", SIDES, changes, failure=failure, saved=True)  # type: ignore[arg-type]

    assert sorted((e["regarding"]["name"], e["reason"]) for e in host.created) == [
        ("dst", events.REGISTRATION_FAILED),
        ("source", events.REGISTERED),
    ]
