"""The history on each Provider (issue 16, item 3): `register`, `rotate` and recovery, and
their failures, record an events.k8s.io/v1 Event regarding the Provider on the MTV host, which
`kubectl describe provider` shows; a run that changed nothing records none; no Event carries a
token; and a refused Event never changes a run's result.

The Events are read through the API as the MTV host's admin, and those of a Provider are told
apart by its uid (on external clusters, Events of earlier tests' Providers stay for an hour) and
their reportingController (a real server keeps core and events.k8s.io Events in one store, so
Forklift's show in the same list)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mtv_register import errors, events, naming, rotation, sides
from mtv_register.api_kube import ApiKube
from mtv_register.kube import EVENT, Kind
from mtv_register.orchestrator import register_pair
from mtv_register.sandbox import ISSUED_TOKENS, MTV_NAMESPACE, Sandbox
from tests.integration._rotation_support import (
    HOST,
    PROVIDERS,
    SA_NAMESPACE,
    assert_healthy,
    managed_token_secrets,
    provider_token,
    register,
)
from tests.integration.conftest import (
    CliRun,
    admin,
    assert_no_token_in_any_form,
    assert_none_of,
    assert_nothing_written,
    mark,
    pair_options,
    register_anywhere,
)
from tests.target import Target

Obj = dict[str, Any]
CORE_EVENT = Kind("v1", "Event", "events", True)


def every_event(target: Target) -> list[Obj]:
    """Every Event of the MTV host's MTV namespace, of both APIs."""
    with admin(target, HOST) as kube:
        return [
            event
            for kind in (EVENT, CORE_EVENT)
            for event in kube.list(kind, MTV_NAMESPACE).get("items", [])
        ]


def events_of(target: Target, provider: str) -> list[Obj]:
    """The Events mtv-register recorded regarding the Provider as it is now (by its uid), oldest
    first: a real server lists Forklift's core Events through events.k8s.io too."""
    found = target.find(HOST, "providers", provider, MTV_NAMESPACE)
    assert found is not None, f"no Provider {provider}"
    uid = found["metadata"]["uid"]
    with admin(target, HOST) as kube:
        items = kube.list(EVENT, MTV_NAMESPACE).get("items", [])
    return sorted(
        (
            e
            for e in items
            if (e.get("regarding") or {}).get("uid") == uid
            and e.get("reportingController") == naming.EVENT_CONTROLLER
        ),
        key=lambda e: str(e["eventTime"]),
    )


def reasons(target: Target, provider: str) -> list[tuple[str, str]]:
    return [(e["reason"], e["type"]) for e in events_of(target, provider)]


def rotate_args(kubeconfig: Path, *extra: str) -> list[str]:
    return ["rotate", "--all", "--host", HOST, "--kubeconfig", str(kubeconfig), *extra]


# -- register ------------------------------------------------------------------------------------


@pytest.mark.both_backends
def test_register_records_one_credentials_registered_event_on_each_provider(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_anywhere(target, monkeypatch)

    for provider in PROVIDERS:
        (event,) = events_of(target, provider)
        assert (event["reason"], event["type"], event["action"]) == (
            events.REGISTERED,
            "Normal",
            "Register",
        )
        assert event["reportingController"] == naming.EVENT_CONTROLLER
        assert event["reportingInstance"]
        assert event["metadata"]["name"].startswith(f"{provider}.")
        regarding = event["regarding"]
        assert (regarding["kind"], regarding["name"], regarding["namespace"]) == (
            "Provider",
            provider,
            MTV_NAMESPACE,
        )
        assert f"Provider {MTV_NAMESPACE}/{provider} created on {HOST}" in event["note"]


@pytest.mark.needs_forklift
def test_a_rerun_that_changes_nothing_records_no_event(target: Target) -> None:
    register(target)
    before = {provider: events_of(target, provider) for provider in PROVIDERS}
    since = mark(target)

    again = register_pair(pair_options(target.kubeconfig, host=HOST))

    assert not again.mutated
    assert_nothing_written(target, since)
    assert {provider: events_of(target, provider) for provider in PROVIDERS} == before


@pytest.mark.needs_forklift
def test_a_registration_forklift_fails_records_registration_failed_with_the_cause(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The source registered with a URL only the MTV host cannot reach (past the tool's own
    checks): Forklift's connection test fails, the tool names the cause, and the registration
    stays for `status` to show, with the cause on its Provider."""
    checks = sides.url_and_ca

    def unreachable(side: sides.Side, *args: Any) -> sides.Endpoint:
        endpoint = checks(side, *args)
        return (
            sides.Endpoint("https://127.0.0.1:1", endpoint.ca_pem)
            if side.role == "source"
            else endpoint
        )

    monkeypatch.setattr(sides, "url_and_ca", unreachable)
    monkeypatch.setattr(sides, "prove_token", lambda *args: None)

    with pytest.raises(errors.UnreachableError) as failed:
        register_pair(pair_options(target.kubeconfig, host=HOST))

    (event,) = events_of(target, "source")
    assert (event["reason"], event["type"]) == (events.REGISTRATION_FAILED, "Warning")
    assert event["note"].startswith(failed.value.line()[:200])
    assert "https://127.0.0.1:1 cannot be reached" in event["note"]


@pytest.mark.sandbox_only("refuses the Provider's create with a fault")
def test_a_registration_rolled_back_records_no_event(target: Target, sandbox: Sandbox) -> None:
    sandbox[HOST].cluster.faults.inject("create", "/providers$", count=10, status=403)

    with pytest.raises(errors.PermissionDenied):
        register_pair(pair_options(target.kubeconfig, host=HOST))

    assert target.find(HOST, "providers", "source", MTV_NAMESPACE) is None
    with admin(target, HOST) as kube:
        recorded = kube.list(EVENT, MTV_NAMESPACE).get("items", [])
    assert [e for e in recorded if e.get("reportingController") == naming.EVENT_CONTROLLER] == []


# -- rotate and recover --------------------------------------------------------------------------


@pytest.mark.needs_forklift
def test_rotate_records_credentials_rotated_on_each_provider(
    target: Target, kubeconfig: Path, cli: CliRun
) -> None:
    register(target)

    result = cli(*rotate_args(kubeconfig, "--max-age", "0s"))

    assert result.exit_code == 0, result.output
    for provider in PROVIDERS:
        assert reasons(target, provider) == [
            (events.REGISTERED, "Normal"),
            (events.ROTATED, "Normal"),
        ]
        (_, rotated) = events_of(target, provider)
        assert rotated["action"] == "Rotate"
        assert "token rotated: token Secret " in rotated["note"]


@pytest.mark.needs_forklift
def test_a_skipped_rotation_records_no_event(target: Target, kubeconfig: Path, cli: CliRun) -> None:
    register(target)
    since = mark(target)

    result = cli(*rotate_args(kubeconfig, "--max-age", "1h"))

    assert result.exit_code == 0, result.output
    assert_nothing_written(target, since)
    assert all(reasons(target, p) == [(events.REGISTERED, "Normal")] for p in PROVIDERS)


@pytest.mark.needs_forklift
def test_a_dead_token_records_rotation_failed_then_its_recovery_credentials_recovered(
    target: Target, kubeconfig: Path, cli: CliRun
) -> None:
    register(target)
    with admin(target, "source") as kube:
        (name,) = managed_token_secrets(target, "source")
        assert kube.delete(rotation.SECRET, name, SA_NAMESPACE)  # behind the tool's back
    assert target.refuses("source", provider_token(target, "source"))

    failed = cli(*rotate_args(kubeconfig, "--max-age", "0s"))

    assert failed.exit_code == errors.AuthenticationFailed.exit_code, failed.output
    *_, last = events_of(target, "source")
    assert (last["reason"], last["type"], last["action"]) == (
        events.ROTATION_FAILED,
        "Warning",
        "Rotate",
    )
    assert "is refused by its cluster (401 Unauthorized)" in last["note"]
    assert "--source-context" in last["note"]  # the fix, as the CLI says it

    recovered = cli(*rotate_args(kubeconfig, "--max-age", "0s", "--source-context", "source"))

    assert recovered.exit_code == 0, recovered.output
    assert reasons(target, "source")[-1] == (events.RECOVERED, "Normal")
    assert events_of(target, "source")[-1]["action"] == "Recover"
    assert_healthy(target)


# -- never a token -------------------------------------------------------------------------------


@pytest.mark.needs_forklift
def test_no_event_carries_a_token(target: Target, kubeconfig: Path, cli: CliRun) -> None:
    register(target)
    held = target.tokens()  # the tokens of the registration, before the rotation revokes them
    assert cli(*rotate_args(kubeconfig, "--max-age", "0s")).exit_code == 0
    held |= target.tokens()

    text = json.dumps(every_event(target))

    assert events.REGISTERED in text and events.ROTATED in text
    assert ISSUED_TOKENS or target.sandbox is None, "the sandbox issued tokens to look for"
    assert_no_token_in_any_form(text)
    assert_none_of(held, text)


# -- best effort ---------------------------------------------------------------------------------


@pytest.mark.needs_forklift
def test_a_refused_event_changes_no_result(
    target: Target, kubeconfig: Path, cli: CliRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The MTV host refuses every Event (as a webhook would): register and rotate succeed as
    before, say so in one progress line each, and record nothing."""
    create = ApiKube.create

    def refused(self: ApiKube, kind: Kind, obj: Obj, **options: Any) -> Obj:
        if kind is EVENT:
            raise errors.WebhookUnavailable('failed calling webhook "events.example.com"')
        return create(self, kind, obj, **options)

    monkeypatch.setattr(ApiKube, "create", refused)
    said: list[str] = []
    result = register_pair(pair_options(target.kubeconfig, host=HOST), progress=said.append)

    assert [p.phase for p in result.providers] == ["Ready", "Ready"]
    assert len([line for line in said if line.startswith("Event ")]) == 2
    rotated = cli(*rotate_args(kubeconfig, "--max-age", "0s"))
    assert rotated.exit_code == 0, rotated.output
    assert all(events_of(target, p) == [] for p in PROVIDERS)
