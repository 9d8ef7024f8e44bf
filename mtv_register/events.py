"""Kubernetes Events on the Providers: the history `kubectl describe provider` shows.

`record` writes one `events.k8s.io/v1` Event regarding a Provider, in its namespace on the MTV
host. It is best effort: a refusal (no grant, a webhook, the API not served) is said in one
progress line and never changes the run's result; nothing is recorded once the run is cancelled
or out of time; the note goes through `redaction.scrub`, so it never carries a token.
`registration` and `rotation` say which Event a `register` or a rotation gives each Provider,
and only when the run changed something.
"""

from __future__ import annotations

import functools
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from mtv_register import deadline, errors, forklift, naming, verdicts
from mtv_register.kube import EVENT, PROVIDER, Kube
from mtv_register.records import Change
from mtv_register.redaction import scrub

if TYPE_CHECKING:
    from mtv_register.registration import RotationResult
    from mtv_register.sides import Side

Obj = dict[str, Any]
Say = Callable[[str], None]

REGISTERED = "CredentialsRegistered"
REGISTRATION_FAILED = "RegistrationFailed"
ROTATED = "CredentialsRotated"
RECOVERED = "CredentialsRecovered"
ROTATION_FAILED = "RotationFailed"
# Every Event the tool records: reason -> (type, action, when); docs/reference.md lists them.
REASONS: Final[Mapping[str, tuple[str, str, str]]] = {
    REGISTERED: (
        "Normal",
        "Register",
        "`register` created or changed the Provider's registration: the Provider, its provider "
        "Secret, or its credentials on its cluster",
    ),
    REGISTRATION_FAILED: (
        "Warning",
        "Register",
        "`register` failed and the Provider stays (Forklift's verdict, or the cause the tool "
        "found for it): the note is the error line; none when the run rolled back",
    ),
    ROTATED: ("Normal", "Rotate", "`rotate`, or its CronJob, gave the Provider a new token"),
    RECOVERED: (
        "Normal",
        "Recover",
        "`rotate --source-context/--destination-context` recovered a Provider whose token was dead",
    ),
    ROTATION_FAILED: (
        "Warning",
        "Rotate",
        "a rotation or recovery failed (a rotation is rolled back first): the note is the line "
        "`rotate` prints for it",
    ),
}
# A rotation's outcome -> its Event; the others (skipped, lost-race, would ...) changed nothing.
_ROTATION_EVENTS = {"rotated": ROTATED, "recovered": RECOVERED, "failed": ROTATION_FAILED}
NOTE_LIMIT = 1024  # bytes: kube-apiserver refuses a longer note
INSTANCE_LIMIT = 128  # characters of reportingInstance

_log = logging.getLogger(__name__)


def record(
    host: Kube,
    provider: Obj,
    reason: str,
    note: str,
    *,
    warning: bool = False,
    action: str,
    say: Say | None = None,
) -> bool:
    """One Event regarding `provider` on `host`, best effort: True when it is there (a retry
    that met the one its lost answer had created included), False when it was not recorded (said
    to `say` and logged, never raised)."""
    if deadline.cancelled() or deadline.passed():
        return False  # Ctrl-C and --timeout end the run as before: no request after them
    obj = event(provider, reason, note, warning=warning, action=action, nanoseconds=time.time_ns())
    try:
        host.create(EVENT, obj)
    except errors.AlreadyExists:
        return True  # the name holds the time to the nanosecond: only our own create has it
    except errors.MtvRegisterError as failure:
        meta = provider["metadata"]
        line = scrub(
            f"Event {reason} not recorded on Provider {meta['namespace']}/{meta['name']} "
            f"({host.context}): {failure.cause}"
        )
        _log.info(line)
        if say is not None:
            say(line)
        return False
    return True


def event(
    provider: Obj,
    reason: str,
    note: str,
    *,
    warning: bool,
    action: str,
    nanoseconds: int,
    instance: str | None = None,
) -> Obj:
    """The Event, as kube-apiserver requires one of events.k8s.io/v1, named as client-go names
    them (`<name>.<the time in ns, hex>`) so that a retried create meets 409, not a twin."""
    meta = provider["metadata"]
    seconds, fraction = divmod(nanoseconds, 10**9)
    moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    regarding = {
        "apiVersion": PROVIDER.api_version,
        "kind": PROVIDER.kind,
        "name": meta["name"],
        "namespace": meta["namespace"],
        "uid": meta.get("uid", ""),
        "resourceVersion": meta.get("resourceVersion", ""),
    }
    return {
        "apiVersion": EVENT.api_version,
        "kind": EVENT.kind,
        "metadata": {"name": f"{meta['name']}.{nanoseconds:x}", "namespace": meta["namespace"]},
        "eventTime": f"{moment}.{fraction // 1000:06d}Z",
        "reportingController": naming.EVENT_CONTROLLER,
        "reportingInstance": (instance if instance is not None else _instance())[:INSTANCE_LIMIT]
        or naming.MANAGED_BY,
        "action": action,
        "reason": reason,
        "type": "Warning" if warning else "Normal",
        "note": truncated(scrub(note)),
        "regarding": {k: v for k, v in regarding.items() if v},
    }


def truncated(note: str, limit: int = NOTE_LIMIT) -> str:
    """`note` in at most `limit` bytes of UTF-8, cut on a character and marked when cut."""
    encoded = note.encode()
    if len(encoded) <= limit:
        return note
    return encoded[: limit - 3].decode(errors="ignore") + "..."


@functools.cache
def _instance() -> str:
    """This machine, or the CronJob's pod (its host name is the pod's name)."""
    try:
        return socket.gethostname()
    except OSError:
        return naming.MANAGED_BY


# -- which Event a run gives each Provider ---------------------------------------------------------


def registration(
    host: Kube,
    namespace: str,
    sides: Sequence[Side],
    changes: Iterable[Change],
    *,
    ready: Mapping[str, Obj] | None = None,
    failure: errors.MtvRegisterError | None = None,
    saved: bool = False,
    say: Say | None = None,
) -> None:
    """After `register`, on the Provider of each side whose registration this run changed:
    CredentialsRegistered (`ready`: the Providers as Forklift found them Ready), or, when the run
    failed and the Provider stays, RegistrationFailed with the cause. After a failure once the
    registration was `saved` (the wait for Forklift), a Provider Forklift found Ready gets
    CredentialsRegistered."""
    written = [change for change in changes if change.mutates]
    names = {side.provider: side.context for side in sides}

    def one(name: str, context: str) -> None:
        own = _own_changes(name, context, names, host.context, written)
        if not own:
            return
        provider = (ready or {}).get(name) or _provider(host, namespace, name)
        if provider is None:
            return  # rolled back, or never made: nothing to attach an Event to
        summary = "; ".join(str(change) for change in own)
        if failure is None or (saved and verdicts.verdict(provider) == "ready"):
            note = f"registered by mtv-register ({summary}); Forklift reports it Ready"
            _record_as(host, provider, REGISTERED, note, say)
        else:
            _record_as(host, provider, REGISTRATION_FAILED, f"{failure.line()} ({summary})", say)

    # One Event per Provider, at once: a far MTV host costs one round trip for them all.
    with deadline.pool(max(1, len(names))) as pool:
        list(pool.map(one, names, names.values()))


def _own_changes(
    name: str, context: str, names: Mapping[str, str], host: str, written: Iterable[Change]
) -> list[Change]:
    """What of `written` is the Provider `name`'s: its Provider and Secret on the host, and its
    credentials on its cluster (when that cluster is the host too, not another's objects)."""
    owned = {other: {other, forklift.secret_name_for(other)} for other in names}
    others = set().union(*(objects for other, objects in owned.items() if other != name))
    return [
        change
        for change in written
        if (change.context == host and change.name in owned[name])
        or (change.context == context and (context != host or change.name not in others))
    ]


def _provider(host: Kube, namespace: str, name: str) -> Obj | None:
    if not namespace or deadline.cancelled() or deadline.passed():
        return None
    try:
        return host.get(PROVIDER, name, namespace)
    except errors.MtvRegisterError:
        return None


def rotation(host: Kube, provider: Obj, result: RotationResult) -> None:
    """After a Provider's rotation or recovery, its Event: none for one skipped, dry-run, or
    overtaken by another run (nothing was changed)."""
    reason = _ROTATION_EVENTS.get(result.action)
    if reason is None:
        return
    note = result.reason
    if reason != ROTATION_FAILED:
        done = "recovered with admin credentials" if reason == RECOVERED else "rotated"
        note = f"token {done}"
        if result.new_secret:
            replaced = f" replaces {result.old_secret}" if result.old_secret else ""
            note += f": token Secret {result.new_secret}{replaced}"
        if result.reason:
            note += f"; {result.reason}"
    _record_as(host, provider, reason, note)


def _record_as(host: Kube, provider: Obj, reason: str, note: str, say: Say | None = None) -> None:
    """`record` with the type and action of `reason` (REASONS)."""
    kind, action, _ = REASONS[reason]
    record(host, provider, reason, note, warning=kind == "Warning", action=action, say=say)
