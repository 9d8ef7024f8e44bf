"""Forklift's provider controller as a pure pass (`mtv.reconcile.reconcile`), per version: each
condition it sets, Staging then Ready, the requeues, the collector it keeps, and the helpers
that answer as Go does (ParseBool, url.Parse). No network: the connection test is a stub."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from mtv_register.sandbox.mtv.golang import parse_bool, url_parse_error
from mtv_register.sandbox.mtv.reconcile import (
    VERSIONS,
    Collector,
    ConnectionOutcome,
    ConnectionParams,
    ForkliftTiming,
    Pass,
    connection_params,
    reconcile,
    version,
)

Obj = dict[str, Any]
TIMING = ForkliftTiming()  # Forklift's own delays: nothing here waits for them
NOW = "2026-01-01T00:00:00Z"
URL = "https://api.source.example:6443"
ALL = tuple(VERSIONS)
SINCE_2_11 = ("v2.12.5", "v2.11.7")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(rv: str = "100", **data: str) -> Obj:
    fields = data or {"token": "a-token"}
    return {
        "metadata": {"name": "s", "namespace": "mtv", "resourceVersion": rv},
        "data": {key: b64(value) for key, value in fields.items()},
    }


def provider(
    *,
    kind: str = "openshift",
    url: str = URL,
    ref: Obj | None = None,
    generation: int = 1,
    status: Obj | None = None,
) -> Obj:
    found: Obj = {
        "metadata": {"name": "p", "namespace": "mtv", "uid": "uid-1", "generation": generation},
        "spec": {
            "type": kind,
            "url": url,
            "secret": {"name": "s", "namespace": "mtv"} if ref is None else ref,
        },
    }
    if status is not None:
        found["status"] = status
    return found


class Stub:
    """The connection test: answers `outcome`, remembers what it was asked to test."""

    def __init__(self, outcome: ConnectionOutcome | None = None) -> None:
        self.outcome = outcome or ConnectionOutcome(True)
        self.calls: list[ConnectionParams] = []

    def __call__(self, params: ConnectionParams) -> ConnectionOutcome:
        self.calls.append(params)
        return self.outcome


def one_pass(
    found: Obj,
    secrets: dict[str, Obj] | None = None,
    *,
    release: str = "v2.12.5",
    test: Stub | None = None,
    collector: Collector | None = None,
) -> Pass:
    stored = {"s": secret()} if secrets is None else secrets
    return reconcile(
        found,
        lambda namespace, name: stored.get(name) if namespace == "mtv" else None,
        collector,
        release=version(release),
        timing=TIMING,
        test=test or Stub(),
        now=NOW,
    )


def types(result: Pass) -> list[str]:
    assert result.status is not None
    return [c["type"] for c in result.status.get("conditions", [])]


def the(result: Pass, kind: str) -> Obj:
    assert result.status is not None
    return next(c for c in result.status["conditions"] if c["type"] == kind)


def twice(found: Obj, secrets: dict[str, Obj] | None = None, **options: Any) -> Pass:
    """Two passes, the second over what the first wrote, with the collector it kept."""
    first = one_pass(found, secrets, **options)
    assert first.status is not None
    found = {**found, "status": first.status}
    return one_pass(found, secrets, collector=first.collector, **options)


# -- Staging, then Ready ---------------------------------------------------------------------


@pytest.mark.parametrize("release", ALL)
def test_the_first_good_pass_is_staging_and_the_next_ready(release: str) -> None:
    first = one_pass(provider(), release=release)
    second = twice(provider(), release=release)

    assert first.status is not None and second.status is not None
    assert first.status["phase"] == "Staging"
    assert types(first) == ["ConnectionTestSucceeded", "Validated"]
    assert first.status["observedGeneration"] == 1
    assert first.requeue_after == TIMING.inventory == 3.0
    assert second.status["phase"] == "Ready"
    assert types(second) == ["ConnectionTestSucceeded", "Validated", "InventoryCreated", "Ready"]
    assert "reason" not in the(second, "Ready")
    assert the(second, "Ready")["message"] == "The provider is ready."
    assert second.requeue_after == TIMING.ready_recheck == 30.0


def test_a_ready_provider_is_tested_again_on_every_pass() -> None:
    test = Stub()
    twice(provider(), test=test)

    assert len(test.calls) == 2


def test_observed_generation_is_written_on_every_pass_failures_too() -> None:
    failing = Stub(ConnectionOutcome(False, 500, "boom"))

    result = one_pass(provider(generation=4), test=failing)

    assert result.status is not None
    assert result.status["observedGeneration"] == 4


def test_an_unchanged_condition_keeps_its_transition_time() -> None:
    earlier = "2025-06-01T00:00:00Z"
    kept = {
        "type": "ConnectionTestSucceeded",
        "status": "True",
        "reason": "Tested",
        "category": "Required",
        "message": "Connection test, succeeded.",
        "lastTransitionTime": earlier,
    }

    result = one_pass(provider(status={"conditions": [kept], "observedGeneration": 1}))

    assert the(result, "ConnectionTestSucceeded")["lastTransitionTime"] == earlier
    assert the(result, "Validated")["lastTransitionTime"] == NOW


# -- each failure condition ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("release", "listed"),
    [
        ("v2.10.6", "openshift vsphere ovirt openstack ova"),
        ("v2.11.7", "openshift vsphere ovirt openstack ova ec2 hyperv"),
        ("v2.12.5", "openshift vsphere ovirt openstack ova ec2 hyperv"),
    ],
)
def test_an_unknown_type_is_not_supported(release: str, listed: str) -> None:
    test = Stub()

    result = one_pass(provider(kind="kubevirt"), release=release, test=test)

    assert result.status is not None and result.status["phase"] == "ValidationFailed"
    condition = the(result, "ProviderTypeNotSupported")
    assert (condition["reason"], condition["category"]) == ("NotSupported", "Critical")
    assert condition["message"] == f"The `type` must be: [{listed}]"
    assert not test.calls
    assert result.requeue_after == TIMING.retry


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://bad host", 'parse "https://bad host": invalid character " " in host name'),
        ("://nowhere", 'parse "://nowhere": missing protocol scheme'),
        ("https://h:port", 'parse "https://h:port": invalid port ":port" after host'),
    ],
)
def test_a_url_that_does_not_parse_is_malformed(url: str, message: str) -> None:
    result = one_pass(provider(url=url))

    condition = the(result, "UrlNotValid")
    assert condition["reason"] == "Malformed"
    assert condition["message"] == f"The `url` is malformed: {message}"


def test_a_url_that_parses_is_not_judged_further() -> None:
    test = Stub(ConnectionOutcome(False, 500, "unsupported protocol scheme"))

    result = one_pass(provider(url="ftp://somewhere"), test=test)

    assert "UrlNotValid" not in types(result)
    assert test.calls[0].url == "ftp://somewhere"


@pytest.mark.parametrize(
    ("ref", "secrets", "reason"),
    [
        ({"name": "s"}, None, "NotSet"),
        ({"name": "", "namespace": "mtv"}, None, "NotSet"),
        (None, {}, "NotFound"),
    ],
)
def test_a_missing_secret_is_not_valid_in_2_10(
    ref: Obj | None, secrets: dict[str, Obj] | None, reason: str
) -> None:
    result = one_pass(provider(ref=ref), secrets, release="v2.10.6")

    assert result.status is not None and result.status["phase"] == "ValidationFailed"
    condition = the(result, "SecretNotValid")
    assert (condition["reason"], condition["message"]) == (reason, "The `secret` is not valid.")


@pytest.mark.parametrize("release", SINCE_2_11)
@pytest.mark.parametrize(("ref", "secrets"), [({"name": "s"}, None), (None, {})])
def test_a_missing_secret_fails_the_pass_before_any_status_from_2_11(
    release: str, ref: Obj | None, secrets: dict[str, Obj] | None
) -> None:
    """updateContainer reads the Secret before anything else: NotFound fails the whole pass,
    so SecretNotValid is set but never written, and the pass is retried."""
    result = one_pass(provider(ref=ref), secrets, release=release)

    assert result.status is None
    assert result.requeue_after == TIMING.retry
    assert "not found" in result.error


@pytest.mark.parametrize("release", ALL)
def test_a_secret_without_a_token_key_has_a_data_error(release: str) -> None:
    result = one_pass(provider(), {"s": secret(url=URL)}, release=release)

    condition = the(result, "SecretNotValid")
    assert (condition["reason"], condition["items"]) == ("DataErr", ["token"])


def test_an_empty_token_passes_validation_and_is_tested() -> None:
    test = Stub()

    result = one_pass(provider(), {"s": secret(token="")}, test=test)

    assert "SecretNotValid" not in types(result)
    assert test.calls[0].token == ""


def test_a_failed_test_is_connection_test_failed_and_retried() -> None:
    failing = Stub(ConnectionOutcome(False, 500, "failed to get server groups: Unauthorized"))

    result = one_pass(provider(), test=failing)

    assert result.status is not None and result.status["phase"] == "ConnectionFailed"
    condition = the(result, "ConnectionTestFailed")
    assert condition["message"] == (
        "Connection test, failed: failed to get server groups: Unauthorized"
    )
    assert (condition["reason"], condition["category"]) == ("Tested", "Critical")
    assert "Validated" not in types(result)
    assert result.requeue_after == TIMING.retry == 3.0


def test_a_failed_test_is_not_final_the_retry_can_pass() -> None:
    failing = Stub(ConnectionOutcome(False, 500, "Forbidden"))
    failed = one_pass(provider(), test=failing)
    assert failed.status is not None

    retried = one_pass({**provider(), "status": failed.status}, collector=failed.collector)

    assert retried.status is not None and retried.status["phase"] == "Staging"
    assert "ConnectionTestFailed" not in types(retried)
    deleted = [e for e in retried.events if e.reason == "ConnectionTestFailed"]
    assert deleted and deleted[0].type == "Warning"


@pytest.mark.parametrize("code", [401, 400])
def test_a_401_or_400_straight_from_a_list_is_auth_failed_and_never_requeued(code: int) -> None:
    refused = Stub(ConnectionOutcome(False, code, "Unauthorized"))

    result = one_pass(provider(), test=refused)

    condition = the(result, "ConnectionAuthFailed")
    assert condition["message"] == "Connection auth failed, error: Unauthorized"
    assert result.requeue_after is None
    assert result.requeue_after_write_error(TIMING) is None


def test_no_insecure_condition_is_ever_set_for_openshift() -> None:
    result = twice(provider(), {"s": secret(token="t", insecureSkipVerify="true")})

    assert "ConnectionInsecure" not in types(result)


# -- the host provider -----------------------------------------------------------------------


def test_the_host_provider_is_tested_with_the_controllers_own_credentials() -> None:
    test = Stub()
    host = provider(url="", ref={})

    result = twice(host, {}, test=test)

    assert result.status is not None and result.status["phase"] == "Ready"
    assert test.calls[0] == ConnectionParams("", host=True)
    assert "secretResourceVersion" not in result.status


# -- the Secret's fields per version ---------------------------------------------------------


@pytest.mark.parametrize(
    ("release", "data", "ca"),
    [
        ("v2.12.5", {"ca.crt": "CRT", "cacert": "OLD"}, "CRT"),
        ("v2.12.5", {"cacert": "OLD"}, "OLD"),
        ("v2.12.5", {"ca.crt": "", "cacert": "OLD"}, "OLD"),
        ("v2.11.7", {"ca.crt": "CRT"}, None),
        ("v2.11.7", {"ca.crt": "CRT", "cacert": "OLD"}, "OLD"),
        ("v2.10.6", {"ca.crt": "CRT"}, None),
    ],
)
def test_the_ca_key_read_depends_on_the_version(
    release: str, data: dict[str, str], ca: str | None
) -> None:
    params = connection_params(URL, secret(token="t", **data), version(release))

    assert params.ca_pem == ca


@pytest.mark.parametrize(
    ("flag", "insecure"),
    [("true", True), ("True", True), ("1", True), ("t", True), ("yes", False), ("", False)],
)
def test_insecure_skip_verify_is_parsed_as_go_parse_bool_and_drops_the_ca(
    flag: str, insecure: bool
) -> None:
    params = connection_params(
        URL, secret(token="t", insecureSkipVerify=flag, **{"ca.crt": "CRT"}), version("v2.12.5")
    )

    assert params.insecure is insecure
    assert params.ca_pem == (None if insecure else "CRT")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("1", True), ("TRUE", True), ("F", False), ("0", False), ("tRuE", None), (" true", None)],
)
def test_parse_bool_answers_as_strconv(text: str, parsed: bool | None) -> None:
    assert parse_bool(text) is parsed


@pytest.mark.parametrize("url", ["https://a:6443/path", "ftp://x", "", "host:6443"])
def test_urls_go_accepts_have_no_parse_error(url: str) -> None:
    assert url_parse_error(url) is None


# -- secretResourceVersion and the collector's token -----------------------------------------


@pytest.mark.parametrize("release", SINCE_2_11)
def test_the_secret_resource_version_is_written_once_tested_from_2_11(release: str) -> None:
    result = one_pass(provider(), {"s": secret(rv="321")}, release=release)

    assert result.status is not None
    assert result.status["secretResourceVersion"] == "321"


def test_2_10_writes_no_secret_resource_version() -> None:
    result = twice(provider(), release="v2.10.6")

    assert result.status is not None
    assert "secretResourceVersion" not in result.status


def rotated(release: str, *, generation: int = 1) -> Pass:
    """Ready with the Secret at rv 100, then a pass after the Secret changed to rv 200."""
    ready = twice(provider(), {"s": secret(rv="100", token="old")}, release=release)
    assert ready.status is not None
    again = provider(generation=generation, status=ready.status)
    return one_pass(
        again, {"s": secret(rv="200", token="new")}, release=release, collector=ready.collector
    )


def test_2_10_keeps_the_old_token_after_a_secret_change() -> None:
    after = rotated("v2.10.6")

    assert after.collector is not None and after.collector.token == "old"
    assert after.status is not None and after.status["phase"] == "Ready"


def test_2_10_takes_the_new_token_once_the_generation_changes() -> None:
    after = rotated("v2.10.6", generation=2)

    assert after.collector is not None and after.collector.token == "new"


@pytest.mark.parametrize("release", SINCE_2_11)
def test_from_2_11_a_secret_change_replaces_the_collector(release: str) -> None:
    after = rotated(release)

    assert after.collector is not None and after.collector.token == "new"
    assert after.status is not None and after.status["secretResourceVersion"] == "200"


@pytest.mark.parametrize(("release", "recorded"), [("v2.11.7", "200"), ("v2.12.5", "100")])
def test_a_changed_secret_that_fails_its_test(release: str, recorded: str) -> None:
    """2.11.7 replaces the collector on a changed Secret whatever the test said; 2.12.5 only
    after a test that passed."""
    ready = twice(provider(), {"s": secret(rv="100", token="old")}, release=release)
    assert ready.status is not None
    failing = Stub(ConnectionOutcome(False, 500, "failed to get server groups: Unauthorized"))

    after = one_pass(
        provider(status=ready.status),
        {"s": secret(rv="200", token="new")},
        release=release,
        test=failing,
        collector=ready.collector,
    )

    assert after.status is not None and after.status["phase"] == "ConnectionFailed"
    assert after.status["secretResourceVersion"] == recorded


# -- Events ----------------------------------------------------------------------------------


def test_added_conditions_are_recorded_as_events_warnings_for_failures() -> None:
    good = one_pass(provider())
    bad = one_pass(provider(), test=Stub(ConnectionOutcome(False, 500, "boom")))

    assert [(e.type, e.reason) for e in good.events] == [
        ("Normal", "ConnectionTestSucceeded"),
        ("Normal", "Validated"),
    ]
    assert [(e.type, e.reason) for e in bad.events] == [("Warning", "ConnectionTestFailed")]


def test_fast_timing_keeps_forklifts_order_with_short_delays() -> None:
    fast, real = ForkliftTiming.fast(), ForkliftTiming()

    assert (real.retry, real.inventory, real.ready_recheck, real.dial_timeout) == (3, 3, 30, 30)
    assert fast.retry < real.retry and fast.inventory < real.inventory
    assert fast.ready_recheck < real.ready_recheck
