"""Forklift's provider controller for an `openshift` Provider, as a pure function of one pass.

Given the Provider, its Secret, the collector Forklift holds for it and what the connection test
returns, `reconcile` says what Forklift writes to status, when it looks again, which collector it
keeps and which Events it records. The drivers (`controller` in-process, `remote` against any API
server) do the reading, testing and writing. Facts from kubev2v/forklift at v2.10.6, v2.11.7 and
v2.12.5 (`pkg/controller/provider/{controller,validation}.go`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mtv_register.sandbox.mtv.conditions import Conditions, Recorded, condition
from mtv_register.sandbox.mtv.golang import parse_bool, url_parse_error

Obj = dict[str, Any]
_TYPES_2_10 = ("openshift", "vsphere", "ovirt", "openstack", "ova")
_TYPES_2_11 = (*_TYPES_2_10, "ec2", "hyperv")


@dataclass(frozen=True)
class ForkliftVersion:
    name: str
    provider_types: tuple[str, ...]
    reads_ca_crt: bool  # 2.12 (66fa8afb4): `ca.crt`, then `cacert`; before, `cacert` only
    tracks_secret_version: bool  # 2.11 (b89eeb1bb): status.secretResourceVersion
    # 2.11.7 replaces the collector on a changed Secret before looking at the test's verdict;
    # 2.12.5 looks at the verdict first.
    secret_change_skips_verdict: bool


VERSIONS = {
    v.name: v
    for v in (
        ForkliftVersion("v2.12.5", _TYPES_2_11, True, True, False),
        ForkliftVersion("v2.11.7", _TYPES_2_11, False, True, True),
        ForkliftVersion("v2.10.6", _TYPES_2_10, False, False, False),
    )
}
LATEST = "v2.12.5"


def version(name: str | None) -> ForkliftVersion:
    chosen = VERSIONS.get(name or LATEST)
    if chosen is None:
        raise ValueError(f"Forklift version {name!r} is not one of {', '.join(VERSIONS)}")
    return chosen


@dataclass(frozen=True)
class ForkliftTiming:
    """Every duration of the imitation; the defaults are Forklift's and client-go's own."""

    retry: float = 3.0  # SlowReQ: after a pass that did not pass the test, or failed
    inventory: float = 3.0  # SlowReQ too: tested, the inventory not yet created
    ready_recheck: float = 30.0  # LongReQ: Ready, tested again
    dial_timeout: float = 30.0  # client-go's dialer
    tls_handshake_timeout: float = 10.0  # client-go's transport
    response_timeout: float | None = None  # none: a hung server holds the test
    webhook_timeout: float = 30.0  # timeoutSeconds of both webhook configurations
    retry_after_unit: float = 1.0  # one second of a Retry-After (client-go waits it out)

    @classmethod
    def fast(cls) -> ForkliftTiming:
        """Forklift's order of events with short delays, for tests (never the real 3 s/30 s)."""
        return cls(retry=0.25, inventory=0.05, ready_recheck=5.0, retry_after_unit=0.01)


@dataclass(frozen=True)
class ConnectionParams:
    """What the test connects with: `host` means the controller's own credentials."""

    url: str
    token: str = field(default="", repr=False)
    ca_pem: str | None = field(default=None, repr=False)  # None: the system roots
    insecure: bool = False
    host: bool = False


@dataclass(frozen=True)
class ConnectionOutcome:
    """The test's `(status code, error)`: code 0 with no message is success; a code is only an
    API status the failing request returned directly (a wrapped one is 500, a client error 0)."""

    ok: bool
    code: int = 0
    message: str = ""


@dataclass(frozen=True)
class Collector:
    """Forklift's in-memory collector of a Provider: its client keeps the Secret it was built
    with until Forklift replaces it."""

    provider_uid: str
    secret_resource_version: str
    token: str = field(repr=False)


@dataclass(frozen=True)
class Pass:
    status: Obj | None  # None: the pass failed before its status write
    requeue_after: float | None  # None: not requeued
    collector: Collector | None
    events: tuple[Recorded, ...] = ()
    error: str = ""  # why the pass failed (logged)
    auth_failed: bool = False

    def requeue_after_write_error(self, timing: ForkliftTiming) -> float | None:
        """A status write that fails (a conflict) is retried, except after an auth failure."""
        return None if self.auth_failed else timing.retry


def secret_value(secret: Obj | None, key: str) -> str | None:
    raw = ((secret or {}).get("data") or {}).get(key)
    if raw is None:
        return None
    try:
        return base64.b64decode(raw).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""


def ca_of(secret: Obj, release: ForkliftVersion) -> str | None:
    """The CA the Secret gives, None for the system roots (an empty `cacert` before 2.12)."""
    if release.reads_ca_crt:
        return secret_value(secret, "ca.crt") or secret_value(secret, "cacert") or None
    return secret_value(secret, "cacert") or None


def has_ca(secret: Obj, release: ForkliftVersion) -> bool:
    if release.reads_ca_crt:
        return ca_of(secret, release) is not None
    return secret_value(secret, "cacert") is not None


def connection_params(url: str, secret: Obj | None, release: ForkliftVersion) -> ConnectionParams:
    """RestCfg: an empty url is the host (own credentials); else the Secret's bearer token,
    and its CA unless `insecureSkipVerify` parses true."""
    if not url:
        return ConnectionParams("", host=True)
    insecure = parse_bool(secret_value(secret, "insecureSkipVerify") or "") is True
    return ConnectionParams(
        url,
        token=secret_value(secret, "token") or "",
        ca_pem=None if insecure or secret is None else ca_of(secret, release),
        insecure=insecure,
    )


def is_host(spec: Obj) -> bool:
    return spec.get("type") == "openshift" and not spec.get("url")


def imitated(provider: Obj, release: ForkliftVersion) -> bool:
    """Providers of another supported type need their own controllers: left alone."""
    kind = (provider.get("spec") or {}).get("type") or ""
    return kind == "openshift" or kind not in release.provider_types


SecretReader = Callable[[str, str], "Obj | None"]
Tester = Callable[[ConnectionParams], ConnectionOutcome]


def reconcile(
    provider: Obj,
    read_secret: SecretReader,
    collector: Collector | None,
    *,
    release: ForkliftVersion,
    timing: ForkliftTiming,
    test: Tester,
    now: str,
) -> Pass:
    """One pass of Forklift's Reconcile over `provider`, as read from its cache."""
    meta, spec = provider["metadata"], provider.get("spec") or {}
    stored = provider.get("status") or {}
    generation = meta.get("generation", 1)
    reconciled = generation == stored.get("observedGeneration", 0)
    if not reconciled or (collector is not None and collector.provider_uid != meta.get("uid")):
        collector = None  # the Provider changed (or is another one now): its collector is gone
    cnd = Conditions.begin(stored.get("conditions"), now)
    state = {"phase": "Staging"}
    secret = _validate(spec, read_secret, cnd, state, release)
    if not cnd.has_blocker():
        outcome = test(connection_params(spec.get("url", ""), secret, release))
        _record_test(outcome, cnd, state)
    if not cnd.has_blocker() and collector is not None:
        cnd.set(
            condition("InventoryCreated", "Required", "The inventory has been loaded.", "Completed")
        )
    if not cnd.has_blocker():
        cnd.set(condition("Validated", "Advisory", "Validation has been completed.", "Completed"))
    secret_version = (
        stored.get("secretResourceVersion", "") if release.tracks_secret_version else ""
    )
    auth_failed = cnd.has("ConnectionAuthFailed")
    try:
        collector, secret_version = _update_container(
            provider, spec, read_secret, collector, cnd, reconciled, secret_version, release
        )
    except LookupError as missing:
        return Pass(
            None,
            None if auth_failed else timing.retry,
            collector,
            error=str(missing),
            auth_failed=auth_failed,
        )
    if not cnd.has_blocker() and cnd.has("ConnectionTestSucceeded", "InventoryCreated"):
        state["phase"] = "Ready"
        cnd.set(condition("Ready", "Required", "The provider is ready."))
    conditions = cnd.end()
    if cnd.has("ConnectionTestSucceeded", "InventoryCreated"):
        requeue: float | None = timing.ready_recheck
    else:
        requeue = timing.inventory if cnd.has("ConnectionTestSucceeded") else timing.retry
    status: Obj = {"phase": state["phase"]}
    if conditions:
        status["conditions"] = conditions
    status["observedGeneration"] = generation
    for kept in ("fingerprint", "service"):
        if stored.get(kept):
            status[kept] = stored[kept]
    if secret_version:
        status["secretResourceVersion"] = secret_version
    return Pass(
        status,
        None if auth_failed else requeue,
        collector,
        tuple(cnd.events()),
        auth_failed=auth_failed,
    )


def _validate(
    spec: Obj,
    read_secret: SecretReader,
    cnd: Conditions,
    state: dict[str, str],
    release: ForkliftVersion,
) -> Obj | None:
    """validateType, validateURL, validateSecret: the Secret found, if any."""
    kind = spec.get("type") or ""
    if kind not in release.provider_types:
        state["phase"] = "ValidationFailed"
        types = " ".join(release.provider_types)
        cnd.set(
            condition(
                "ProviderTypeNotSupported",
                "Critical",
                f"The `type` must be: [{types}]",
                "NotSupported",
            )
        )
    if is_host(spec):
        return None
    url = spec.get("url") or ""
    if not url:
        state["phase"] = "ValidationFailed"
        cnd.set(condition("UrlNotValid", "Critical", "The `url` is not valid.", "NotSet"))
    malformed = url_parse_error(url)
    if malformed:
        state["phase"] = "ValidationFailed"
        cnd.set(
            condition(
                "UrlNotValid", "Critical", f"The `url` is malformed: {malformed}", "Malformed"
            )
        )
    ref = spec.get("secret") or {}
    not_valid = "The `secret` is not valid."
    if not (ref.get("name") and ref.get("namespace")):
        state["phase"] = "ValidationFailed"
        cnd.set(condition("SecretNotValid", "Critical", not_valid, "NotSet"))
        return None
    secret = read_secret(ref["namespace"], ref["name"])
    if secret is None:
        state["phase"] = "ValidationFailed"
        cnd.set(condition("SecretNotValid", "Critical", not_valid, "NotFound"))
        return None
    # Only the key's presence is checked: an empty token passes.
    required = ("token",) if kind == "openshift" else ()
    missing = tuple(k for k in required if k not in (secret.get("data") or {}))
    if missing:
        state["phase"] = "ValidationFailed"
        cnd.set(condition("SecretNotValid", "Critical", not_valid, "DataErr", missing))
    return secret


def _record_test(outcome: ConnectionOutcome, cnd: Conditions, state: dict[str, str]) -> None:
    if outcome.ok:
        cnd.set(
            condition(
                "ConnectionTestSucceeded", "Required", "Connection test, succeeded.", "Tested"
            )
        )
        return
    state["phase"] = "ConnectionFailed"
    # Forklift stops on 401/400 so an account is not locked out; an openshift test only ever
    # returns one when a list, not discovery, was refused.
    if outcome.code in (401, 400):
        message = f"Connection auth failed, error: {outcome.message}"
        cnd.set(condition("ConnectionAuthFailed", "Critical", message, "Tested"))
    else:
        message = f"Connection test, failed: {outcome.message}"
        cnd.set(condition("ConnectionTestFailed", "Critical", message, "Tested"))


def _update_container(
    provider: Obj,
    spec: Obj,
    read_secret: SecretReader,
    collector: Collector | None,
    cnd: Conditions,
    reconciled: bool,
    secret_version: str,
    release: ForkliftVersion,
) -> tuple[Collector | None, str]:
    """(collector, secretResourceVersion) after updateContainer; LookupError: its Secret read
    failed, which fails the whole pass (no status write)."""
    not_ready = cnd.has_blocker() or not cnd.has("ConnectionTestSucceeded")
    if not release.tracks_secret_version:
        if (collector is not None and reconciled) or not_ready:
            return collector, ""
        return _build(provider, spec, read_secret), ""
    secret = _current_secret(spec, read_secret)
    changed = secret.get("metadata", {}).get("resourceVersion", "") != secret_version
    if release.secret_change_skips_verdict and changed:
        pass  # 2.11.7: a changed Secret gets a new collector whatever the test said
    elif not_ready or (not changed and collector is not None and reconciled):
        return collector, secret_version
    rebuilt = Collector(
        provider["metadata"].get("uid", ""),
        secret.get("metadata", {}).get("resourceVersion", ""),
        secret_value(secret, "token") or "",
    )
    return rebuilt, rebuilt.secret_resource_version


def _current_secret(spec: Obj, read_secret: SecretReader) -> Obj:
    if is_host(spec):
        return {}
    ref = spec.get("secret") or {}
    found = (
        read_secret(ref.get("namespace") or "", ref.get("name") or "") if ref.get("name") else None
    )
    if found is None:
        raise LookupError(f'secrets "{ref.get("name", "")}" not found')
    return found


def _build(provider: Obj, spec: Obj, read_secret: SecretReader) -> Collector:
    secret = _current_secret(spec, read_secret)
    return Collector(
        provider["metadata"].get("uid", ""),
        secret.get("metadata", {}).get("resourceVersion", ""),
        secret_value(secret, "token") or "",
    )
