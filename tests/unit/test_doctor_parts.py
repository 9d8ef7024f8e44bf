"""The pure parts of `doctor`: versions as numbers, a token's expiry, the last-used label's
date, and the exit it gives."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from mtv_register.credential_checks import token_expiry
from mtv_register.doctor import DoctorOptions, DoctorReport, check_options
from mtv_register.errors import UsageError
from mtv_register.findings import FAIL, OK, WARN, Finding, parse_version
from mtv_register.hygiene import _recent
from mtv_register.provider_secret import ProviderSecret

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("4.20.1", (4, 20, 1)),
        ("v1.6.2", (1, 6, 2)),
        ("2.10.0-rc.1", (2, 10, 0)),
        ("4.19", (4, 19)),
        ("2.12.5+build", (2, 12, 5)),
        ("", None),
        ("latest", None),
    ],
)
def test_versions_are_read_as_numbers(text: str, version: tuple[int, ...] | None) -> None:
    assert parse_version(text) == version


def _held(token: str, expires: str = "") -> ProviderSecret:
    return ProviderSecret(
        url="https://x", token=token, ca_pem=None, insecure=False, token_secret_ref="",
        token_created="", token_expires=expires,
    )  # fmt: skip


def _jwt(claims: dict[str, object]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJSUzI1NiJ9.{body}.c2lnbmF0dXJl"


def test_a_token_expires_when_recorded_else_at_its_exp_claim_else_never() -> None:
    assert token_expiry(_held("t", "2027-01-01T00:00:00Z")) == dt.datetime(
        2027, 1, 1, tzinfo=dt.UTC
    )
    exp = int(NOW.timestamp()) + 3600
    assert token_expiry(_held(_jwt({"exp": exp}))) == NOW + dt.timedelta(hours=1)
    assert token_expiry(_held(_jwt({"sub": "system:serviceaccount:a:b"}))) is None
    assert token_expiry(_held("not-a-jwt")) is None
    assert token_expiry(_held("a.!!!.c")) is None


@pytest.mark.parametrize(
    ("day", "recent"),
    [("2026-12-03", True), ("2026-12-01", True), ("2026-11-30", False), ("garbled", True)],
)
def test_a_token_used_within_two_days_counts_as_in_use(day: str, recent: bool) -> None:
    assert _recent(day, NOW) is recent


def _report(*results: str, strict: bool = False) -> DoctorReport:
    findings = [Finding("versions", "c", result, "saw") for result in results]
    return DoctorReport("s", "d", "h", "ns", findings, strict)


def test_warnings_alone_are_healthy_unless_strict() -> None:
    assert _report(OK, WARN).healthy
    assert not _report(OK, WARN, strict=True).healthy
    assert not _report(OK, FAIL).healthy
    summary = _report(OK, WARN, FAIL).as_dict()["summary"]
    assert summary == {"passed": 1, "warnings": 1, "failed": 1}


def test_the_same_context_twice_and_a_negative_horizon_are_refused() -> None:
    with pytest.raises(UsageError, match="the same context"):
        check_options(DoctorOptions("a", "a"))
    with pytest.raises(UsageError, match="--warn-within must not be negative"):
        check_options(DoctorOptions("a", "b", warn_within=dt.timedelta(days=-1)))


def test_fixes_name_the_register_command_of_the_pair() -> None:
    assert DoctorOptions("a", "b").register_command == (
        "mtv-register register --source a --destination b"
    )
    assert DoctorOptions("a", "b", host="m", source_name="x").register_command == (
        "mtv-register register --source a --destination b --host m --source-name x"
    )
