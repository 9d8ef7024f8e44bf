"""The events.k8s.io/v1 Event API, as kube-apiserver serves it: discovered, created, read,
listed, watched and deleted; a create judged by `ValidateEventCreate` (422 Invalid, worded as
upstream, with upstream's core field names); and RBAC that grants it by its own API group.

Every request goes through the official `kubernetes` client.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client import ApiClient

from mtv_register.sandbox import Sandbox
from tests.conftest import SandboxFactory
from tests.sandbox.helpers import refused

Obj = dict[str, Any]
NS = "openshift-mtv"
RBAC = "rbac.authorization.k8s.io"
QUALIFIED = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)


def event(name: str = "doctor.1", **changes: Any) -> Obj:
    """A good Event, as client-go's events recorder writes one; None in `changes` drops a
    field."""
    body: Obj = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": NS},
        "eventTime": "2025-06-01T10:00:00.123456Z",
        "reportingController": "mtv-register.konveyor.io/doctor",
        "reportingInstance": "doctor-laptop",
        "action": "Check",
        "reason": "NotReady",
        "regarding": {
            "apiVersion": "forklift.konveyor.io/v1beta1",
            "kind": "Provider",
            "name": "source",
            "namespace": NS,
        },
        "note": "KubeVirt on source does not have the DecentralizedLiveMigration feature gate",
        "type": "Warning",
    }
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


@pytest.fixture
def sandbox(make_sandbox: SandboxFactory) -> Sandbox:
    return make_sandbox(forklift=False)


@pytest.fixture
def admin(sandbox: Sandbox, tmp_path: Path) -> ApiClient:
    kubeconfig = sandbox.write_kubeconfig(tmp_path / "kubeconfig")
    return kubernetes.config.new_client_from_config(str(kubeconfig), context="destination")


@pytest.fixture
def events(admin: ApiClient) -> kubernetes.client.EventsV1Api:
    return kubernetes.client.EventsV1Api(admin)


def post(api: ApiClient, body: Obj) -> tuple[int, Obj]:
    """A create the typed client would refuse to send (its models require what the server
    must be seen to require)."""
    answer = api.call_api(
        *api.param_serialize(
            method="POST",
            resource_path=f"/apis/events.k8s.io/v1/namespaces/{NS}/events",
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
    )
    answer.read()
    return answer.status, json.loads(answer.data)


def connect(sandbox: Sandbox, token: str) -> ApiClient:
    cluster = sandbox["destination"]
    configuration = kubernetes.client.Configuration(
        host=cluster.url,
        ca_cert_data=cluster.serving_ca_pem,
        api_key={"authorization": f"Bearer {token}"},
    )
    return ApiClient(configuration)


# -- served --------------------------------------------------------------------------------------


def test_events_k8s_io_v1_is_discovered_with_every_verb(admin: ApiClient) -> None:
    listing = kubernetes.client.CustomObjectsApi(admin).get_api_resources("events.k8s.io", "v1")
    [entry] = [r for r in listing.resources if r.name == "events"]

    assert (entry.kind, entry.namespaced, entry.short_names) == ("Event", True, ["ev"])
    assert set(entry.verbs) >= {"create", "get", "list", "watch", "delete"}


def test_a_good_event_is_created_read_listed_watched_and_deleted(events) -> None:
    created, code, _ = events.create_namespaced_event_with_http_info(NS, event())
    read = events.read_namespaced_event("doctor.1", NS)
    listed = events.list_namespaced_event(NS)
    watched = events.list_namespaced_event(
        NS, watch=True, timeout_seconds=1, _preload_content=False
    )
    first = json.loads(watched.readline())
    events.delete_namespaced_event("doctor.1", NS)
    after = events.list_namespaced_event(NS)

    assert code == 201
    assert (
        created.metadata.uid and created.reporting_controller == "mtv-register.konveyor.io/doctor"
    )
    assert read.regarding.kind == "Provider" and read.type == "Warning"
    assert [e.metadata.name for e in listed.items] == ["doctor.1"]
    assert (first["type"], first["object"]["note"]) == ("ADDED", event()["note"])
    assert first["object"]["apiVersion"] == "events.k8s.io/v1"
    assert after.items == []


def test_an_events_k8s_io_event_is_not_a_core_event_here(admin: ApiClient, events) -> None:
    """A real server keeps one store behind both versions; the sandbox two (noted, not hidden)."""
    events.create_namespaced_event(NS, event())
    core = kubernetes.client.CoreV1Api(admin).list_namespaced_event(NS)

    assert core.items == []


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("missing", "causes"),
    [
        ("eventTime", [("FieldValueRequired", "eventTime", "Required value")]),
        (
            "reportingController",
            [
                ("FieldValueRequired", "reportingController", "Required value"),
                (
                    "FieldValueInvalid",
                    "reportingController",
                    'Invalid value: "": name part must be non-empty',
                ),
                (
                    "FieldValueInvalid",
                    "reportingController",
                    f'Invalid value: "": name part {QUALIFIED}',
                ),
            ],
        ),
        ("reportingInstance", [("FieldValueRequired", "reportingInstance", "Required value")]),
        ("action", [("FieldValueRequired", "action", "Required value")]),
        ("reason", [("FieldValueRequired", "reason", "Required value")]),
        (
            "regarding",
            [
                (
                    "FieldValueInvalid",
                    "involvedObject.namespace",
                    'Invalid value: "": does not match event.namespace',
                )
            ],
        ),
        ("type", [("FieldValueInvalid", "type", 'Invalid value: "": has invalid value: ')]),
    ],
)
def test_an_event_missing_a_required_field_is_422_invalid(
    admin: ApiClient, events, missing: str, causes: list[tuple[str, str, str]]
) -> None:
    code, body = post(admin, event(**{missing: None}))

    assert (code, body["reason"]) == (422, "Invalid")
    assert [(c["reason"], c["field"], c["message"]) for c in body["details"]["causes"]] == causes
    text = ", ".join(f"{field}: {message}" for _, field, message in causes)
    text = f"[{text}]" if len(causes) > 1 else text
    assert body["message"] == f'Event.events.k8s.io "doctor.1" is invalid: {text}'
    assert body["details"]["group"] == "events.k8s.io" and body["details"]["kind"] == "Event"
    assert events.list_namespaced_event(NS).items == []


@pytest.mark.parametrize(
    ("field", "value", "path", "limit"),
    [
        ("note", "n" * 1025, "message", 1024),
        ("reason", "R" * 129, "reason", 128),
        ("action", "A" * 129, "action", 128),
        ("reportingInstance", "i" * 129, "reportingInstance", 128),
    ],
)
def test_an_event_over_a_length_limit_is_422_and_at_the_limit_is_created(
    events, field: str, value: str, path: str, limit: int
) -> None:
    code, body = refused(events.create_namespaced_event, NS, event(**{field: value}))
    at_limit = events.create_namespaced_event(NS, event("at-limit", **{field: value[:limit]}))

    assert code == 422
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "field": path,
            "message": f'Invalid value: "": can have at most {limit} characters',
        }
    ]
    assert at_limit.metadata.name == "at-limit"


def test_a_type_other_than_normal_or_warning_is_422(events) -> None:
    code, body = refused(events.create_namespaced_event, NS, event(type="Error"))

    assert code == 422
    assert body["message"] == (
        'Event.events.k8s.io "doctor.1" is invalid: type: Invalid value: "": has invalid value: '
        "Error"
    )


def test_an_event_time_without_microseconds_does_not_decode(events) -> None:
    code, body = refused(
        events.create_namespaced_event, NS, event(eventTime="2025-06-01T10:00:00Z")
    )

    assert (code, body["reason"]) == (400, "BadRequest")
    assert '"2006-01-02T15:04:05.000000Z07:00"' in body["message"]


def test_a_created_events_reason_is_immutable(events) -> None:
    events.create_namespaced_event(NS, event())

    code, body = refused(events.patch_namespaced_event, "doctor.1", NS, {"reason": "Ready"})
    noted = events.patch_namespaced_event("doctor.1", NS, {"metadata": {"labels": {"seen": "yes"}}})

    assert code == 422
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "field": "reason",
            "message": 'Invalid value: "Ready": field is immutable',
        }
    ]
    assert noted.metadata.labels == {"seen": "yes"}


# -- RBAC ----------------------------------------------------------------------------------------


def test_a_cluster_role_granting_events_k8s_io_events_create_lets_a_user_create_them(
    sandbox: Sandbox, admin: ApiClient
) -> None:
    token = sandbox["destination"].cluster.add_user("bob")
    bob = kubernetes.client.EventsV1Api(connect(sandbox, token))
    rbac = kubernetes.client.RbacAuthorizationV1Api(admin)
    user = {"kind": "User", "name": "bob", "apiGroup": RBAC}

    def grant(name: str, group: str) -> None:
        rule = {"apiGroups": [group], "resources": ["events"], "verbs": ["create"]}
        rbac.create_cluster_role({"metadata": {"name": name}, "rules": [rule]})
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
                "subjects": [user],
            }
        )

    before, body = refused(bob.create_namespaced_event, NS, event())
    grant("core-event-writer", "")  # core events: another API group
    core_only, _ = refused(bob.create_namespaced_event, NS, event())
    grant("event-writer", "events.k8s.io")
    created = bob.create_namespaced_event(NS, event())
    read, _ = refused(bob.read_namespaced_event, "doctor.1", NS)

    assert (before, core_only, read) == (403, 403, 403)
    assert body["message"] == (
        'events.events.k8s.io is forbidden: User "bob" cannot create resource "events" in API '
        f'group "events.k8s.io" in the namespace "{NS}"'
    )
    assert created.metadata.name == "doctor.1"
