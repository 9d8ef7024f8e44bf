"""The service account's token, the one place it is issued and waited for.

A long-lived token Secret, created under a name chosen here, and the wait until the token
controller fills it (a watch under one deadline); a bound token from the TokenRequest API.
`IssuedToken` is what either gives: the token itself never appears in repr, logs or output.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mtv_register import deadline as run_deadline
from mtv_register import errors, manifests, naming
from mtv_register.kube import SECRET, SERVICE_ACCOUNT, AlreadyExists, Kube
from mtv_register.records import Change, Report
from mtv_register.redaction import remember
from mtv_register.timing import Expired, Transient, poll_until

Obj = dict[str, Any]
DEFAULT_TOKEN_TIMEOUT = 120.0


@dataclass
class IssuedToken:
    """A filled token Secret; `token` never appears in repr, logs or output."""

    secret_name: str
    namespace: str
    service_account: str
    created: str
    token: str = field(repr=False)
    expires: str = ""  # bound tokens: when the API server stops accepting it


def create_token_secret(
    remote: Kube, service_account: str, namespace: str, *, replaces: str, report: Report
) -> Obj:
    """A new token Secret under a name chosen here, not by generateName: if the answer to the
    create is lost, the retry meets AlreadyExists on this very Secret instead of making a
    second, orphaned one. It records the Secret it `replaces`, for rotation's sweep, and
    reports the creation."""
    name = f"{naming.token_secret_generate_name(service_account)}{_suffix()}"
    desired = manifests.token_secret(service_account, namespace, name=name)
    desired["metadata"]["annotations"][naming.TOKEN_REPLACES_ANNOTATION] = replaces
    try:
        created = remote.create(SECRET, desired)
    except AlreadyExists:
        existing = remote.get(SECRET, name, namespace)
        annotations = (existing or {}).get("metadata", {}).get("annotations") or {}
        if (
            existing is None
            or annotations.get(naming.SERVICE_ACCOUNT_NAME_ANNOTATION) != service_account
        ):
            raise
        created = existing
    report(Change(remote.context, "Secret", name, namespace, "created"))
    return created


def _suffix() -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"  # as the API server's generateName picks
    return "".join(secrets.choice(alphabet) for _ in range(5))


class _TokenPending(Exception):
    pass


def _token_of(secret: Obj) -> str:
    raw = (secret.get("data") or {}).get("token", "")
    return remember(base64.b64decode(raw).decode()) if raw else ""


def wait_for_token(kube: Kube, secret: Obj, timeout: float) -> IssuedToken:
    """Wait until the token controller fills `secret`: a watch, re-opened by `poll_until` when it
    ends or breaks (after a read of the Secret, so a watch that always breaks still ends in the
    token), under one deadline."""
    meta = secret["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    state = {"secret": secret}

    def filled(obj: Obj) -> IssuedToken | None:
        token = _token_of(obj)
        if not token:
            return None
        annotations = obj["metadata"].get("annotations") or {}
        return IssuedToken(
            name,
            namespace,
            annotations.get(naming.SERVICE_ACCOUNT_NAME_ANNOTATION, ""),
            obj["metadata"].get("creationTimestamp", ""),
            token,
        )

    def attempt() -> IssuedToken:
        current = state["secret"]
        found = filled(current)
        if found:
            return found
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _TokenPending()
        try:
            for event in _events(kube, namespace, name, current, remaining):
                found = filled(event)
                if found:
                    return found
        except Transient:
            # The watch broke (a proxy may break every watch): read the Secret before the next.
            fresh = kube.get(SECRET, name, namespace)
            if fresh is not None:
                state["secret"] = fresh
                found = filled(fresh)
                if found:
                    return found
            raise
        raise _TokenPending()

    deadline = time.monotonic() + timeout
    try:
        return poll_until(
            attempt,
            timeout=timeout,
            wait=kube.timing.token_poll,
            pending=(_TokenPending, Transient),
        )
    except Expired:
        pass
    except errors.WaitTimeout:
        pass  # the run's deadline, met by a request of this wait: said as the wait's own
    if run_deadline.cancelled():
        raise run_deadline.Cancelled(f'interrupted while waiting for token Secret "{name}"')
    raise errors.WaitTimeout(
        f'the token Secret "{name}" in namespace "{namespace}" on {kube.context} was not filled '
        f"within {timeout:.1f}s",  # the rest of the run's deadline, rounded
        fix="check that the cluster's token controller (kube-controller-manager) is running, "
        "or raise --timeout",
    )


def _events(kube: Kube, namespace: str, name: str, current: Obj, remaining: float) -> Iterator[Obj]:
    for event in kube.watch(
        SECRET,
        namespace,
        name=name,
        resource_version=current["metadata"]["resourceVersion"],
        timeout=remaining,
    ):
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            # 410 Expired and friends: start again from a fresh read.
            fresh = kube.get(SECRET, name, namespace)
            if fresh is None:
                break
            current.clear()
            current.update(fresh)
            yield fresh
            return
        if kind == "DELETED":
            raise errors.PreflightError(
                f'the token Secret "{namespace}/{name}" on {kube.context} was deleted while '
                "waiting for its token (did the token controller find no ServiceAccount?)",
                fix="re-run; if it repeats, check the ServiceAccount exists",
            )
        current.clear()
        current.update(obj)
        yield obj


def request_bound_token(
    kube: Kube, namespace: str, service_account: str, ttl: int, report: Report
) -> IssuedToken:
    from datetime import UTC, datetime

    path = SERVICE_ACCOUNT.path(namespace, service_account, "token")
    answer = kube.post(path, manifests.token_request(ttl))
    status = answer.get("status") or {}
    token = remember(str(status.get("token", "")))
    if not token:
        raise errors.MtvRegisterError(
            f'the TokenRequest for serviceaccount "{namespace}/{service_account}" on '
            f"{kube.context} returned no token",
            fix="check the API server's token issuer",
        )
    report(
        Change(
            kube.context,
            "TokenRequest",
            service_account,
            namespace,
            f"issued, expires {status.get('expirationTimestamp', '?')}",
        )
    )
    return IssuedToken(
        "",
        namespace,
        service_account,
        naming.stamp(datetime.now(UTC)),
        token,
        expires=str(status.get("expirationTimestamp", "")),
    )
