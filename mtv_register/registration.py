"""A registration as the MTV host holds it: its Provider, and what its provider Secret records.

`read_registration` reads one Provider's Secret into a `Registration` (the token, the URL and CA,
the token Secret or service account it came from, its type and age), `managed_providers` picks
the Providers the tool registered, `open_host` is the client of the MTV host and
`as_account` the one of a registered cluster holding a token of its account. Rotation and
recovery start from these reads, and end in the one switch of the provider Secret to a new token
(`switch`; guarded by resourceVersion, `switch_guarded`; undone, `switch_back`) and the wait
until Forklift has taken the new token up (`wait_taken_up`). What both are asked
(`RotateOptions`) and what each gives for a Provider (`RotationResult`) are here too, so
rotation can fall back on recovery without the two importing each other.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from mtv_register import errors, forklift, naming, provider_secret, verdicts
from mtv_register.kube import SECRET, Kube
from mtv_register.provider_secret import ProviderSecret
from mtv_register.records import Change, Report
from mtv_register.timing import Timing, retry_on_conflict

if TYPE_CHECKING:
    from mtv_register.clusters import Connector

Obj = dict[str, Any]
Clock = Callable[[], dt.datetime]
ROTATION_TIMEOUT = 300.0


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class RotationResult:
    provider: str
    action: str  # rotated, recovered, skipped, failed, lost-race, would rotate
    reason: str = ""
    old_secret: str = ""
    new_secret: str = ""
    exit_code: int = 0


@dataclass(frozen=True)
class RotateOptions:
    max_age: dt.timedelta | None = None
    max_age_label: str = ""  # as the user wrote it, for messages
    before_expiry: dt.timedelta | None = None  # bound tokens: renew when less is left
    dry_run: bool = False
    timeout: float = ROTATION_TIMEOUT
    timing: Timing = field(default_factory=Timing)
    clock: Clock = utc_now


@dataclass
class Registration:
    """What the host knows of one registered Provider: read from its Secret."""

    provider: Obj
    secret: Obj
    url: str
    token: str = field(repr=False)
    ca_pem: str | None = field(repr=False)
    insecure: bool
    token_secret: tuple[str, str]  # (namespace, name) on the registered cluster
    token_created: dt.datetime | None
    token_type: str = "secret"
    service_account: tuple[str, str] = ("", "")  # (namespace, name)
    token_expires: dt.datetime | None = None
    cluster_role: str = ""  # as CLUSTER_ROLE_ANNOTATION records it ("" before it did)
    token_ttl: int = 0

    @property
    def name(self) -> str:
        return str(self.provider["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.provider["metadata"]["namespace"])


def read_registration(host: Kube, provider: Obj) -> Registration:
    ref = (provider.get("spec") or {}).get("secret") or {}
    namespace = provider["metadata"]["namespace"]
    secret = (
        host.get(SECRET, ref.get("name", ""), ref.get("namespace") or namespace)
        if ref.get("name")
        else None
    )
    name = provider["metadata"]["name"]
    if secret is None:
        raise errors.PreflightError(
            f'Provider "{namespace}/{name}" has no Secret on {host.context}',
            fix="re-register it with mtv-register register",
        )
    held = ProviderSecret.from_secret(secret)
    token_type = held.token_type or "secret"
    if token_type == "bound" and not held.service_account[1]:
        raise errors.PreflightError(
            f'the Secret of Provider "{namespace}/{name}" does not record its service account',
            fix="re-register it with mtv-register register --token-type bound",
        )
    if not held.token_secret[1] and token_type != "bound":
        raise errors.PreflightError(
            f'the Secret of Provider "{namespace}/{name}" does not record its token Secret',
            fix="re-register it with mtv-register register (older registrations lack it)",
        )
    return Registration(
        provider=provider,
        secret=secret,
        url=held.url or provider["spec"].get("url", ""),
        token=held.token,
        ca_pem=held.ca_pem,
        insecure=held.insecure,
        token_secret=held.token_secret,
        token_created=held.created_at,
        token_type=token_type,
        service_account=held.service_account,
        token_expires=held.expires_at,
        cluster_role=held.cluster_role,
        token_ttl=held.token_ttl,
    )


def managed_providers(host: Kube, namespace: str, names: list[str] | None) -> list[Obj]:
    providers = forklift.list_providers(host, namespace)
    if names:
        missing = [n for n in names if n not in providers]
        if missing:
            raise errors.UsageError(
                f"no Provider {', '.join(missing)} in {namespace} on {host.context}",
                fix=f"pick from: {', '.join(sorted(providers)) or 'none'}",
            )
        chosen = [providers[n] for n in names]
        foreign = [p["metadata"]["name"] for p in chosen if not forklift.is_managed(p)]
        if foreign:
            raise errors.UsageError(
                f"Provider {', '.join(foreign)} was not registered by mtv-register",
                fix="rotate only the tool's Providers",
            )
        return chosen
    return [p for _, p in sorted(providers.items()) if forklift.is_managed(p)]


def open_host(
    *,
    kubeconfig: str | None,
    host: str | None,
    in_cluster: bool,
    connector: Connector | None = None,
) -> Kube:
    """The MTV host: the pod's own identity, or a kubeconfig context (default: current)."""
    from mtv_register import clusters

    connector = connector or clusters.Connector()
    if in_cluster:
        return connector.in_cluster()
    config = clusters.load_kubeconfig(kubeconfig)
    context = config.host_or_current(host, fix="pass --host CONTEXT (or --in-cluster in a pod)")
    return connector.connect(config, context)


def as_account(
    like: Kube, registration: Registration, token: str, timing: Timing, context: str
) -> Kube:
    """A client of the registered cluster holding `token`, over the Provider's own URL and CA,
    on the backend of `like` and with `timing` (the rotation's)."""
    connector = replace(like.connector, timing=timing)
    return connector.with_token(
        registration.url,
        token,
        ca_pem=registration.ca_pem,
        insecure=registration.insecure,
        context=context,
    )


# -- the switch of the provider Secret to a new token ---------------------------------------------


def wait_taken_up(host: Kube, registration: Registration, timeout: float, report: Report) -> None:
    """Until Forklift tested the switched Secret and found it good: on 2.11+ its status names
    the Secret's resourceVersion; up to 2.10 the Provider's generation is changed first."""
    version = verdicts.take_up(host, registration.namespace, registration.name, report)
    verdicts.wait_ready(
        host, registration.namespace, registration.name, timeout, secret_version=version
    )


def switch_guarded(
    host: Kube,
    registration: Registration,
    token: str,
    new_ref: str,
    created: str,
    now: dt.datetime,
    *,
    key: str = naming.TOKEN_SECRET_ANNOTATION,
    old_value: str | None = None,
    new_value: str | None = None,
    extra: dict[str, str] | None = None,
) -> bool:
    """Switch the provider Secret to the new token, guarded by resourceVersion. A conflict is
    looked at through the annotation `key` that names the token: still the old one (another
    writer touched something else) -> switch again; already ours (our answer was lost) -> done;
    a third -> another rotation won."""
    old = "/".join(registration.token_secret) if old_value is None else old_value
    new = new_ref if new_value is None else new_value
    secret = registration.secret
    namespace, name = secret["metadata"]["namespace"], secret["metadata"]["name"]

    def attempt(number: int) -> bool:
        nonlocal secret
        if number > 0:  # the last switch met a newer Secret: who changed it?
            current = host.get(SECRET, name, namespace)
            if current is None:
                raise errors.ConflictError(
                    f'the provider Secret "{namespace}/{name}" was deleted meanwhile on '
                    f"{host.context}",
                    fix="register the pair again",
                )
            found = (current["metadata"].get("annotations") or {}).get(key, "")
            if found == new:
                return True
            if found != old:
                return False
            secret = current
        switch(host, secret, token, new_ref, created, now, extra)
        return True

    return retry_on_conflict(
        host.timing,
        attempt,
        what=f'the provider Secret "{namespace}/{name}"',
        context=host.context,
        obj=("Secret", namespace, name),
    )


def switch(
    host: Kube,
    secret: Obj,
    token: str,
    token_ref: str,
    created: str,
    now: dt.datetime,
    extra: dict[str, str] | None = None,
) -> Obj:
    updated = provider_secret.switched(
        secret, token, created=created, rotated_at=now, token_secret_ref=token_ref, extra=extra
    )
    return host.replace(SECRET, updated)  # carries the resourceVersion read at the start


def switch_back(host: Kube, registration: Registration, report: Report) -> None:
    meta = registration.secret["metadata"]

    def attempt(number: int) -> None:
        del number
        current = host.get(SECRET, meta["name"], meta["namespace"])
        if current is None:
            return
        restored = dict(current)
        restored["data"] = registration.secret.get("data")
        restored["metadata"] = {
            **current["metadata"],
            "annotations": registration.secret["metadata"].get("annotations") or {},
        }
        host.replace(SECRET, restored)
        report(
            Change(
                host.context,
                "Secret",
                meta["name"],
                meta["namespace"],
                "switched back to the old token",
            )
        )

    retry_on_conflict(
        host.timing,
        attempt,
        what=f'the provider Secret "{meta["namespace"]}/{meta["name"]}"',
        context=host.context,
        obj=("Secret", meta["namespace"], meta["name"]),
    )


def switched_to(host: Kube, registration: Registration, token: str) -> Change:
    """What a switch of the provider Secret to `token` ("the new token", ...) reports."""
    meta = registration.secret["metadata"]
    return Change(
        host.context, "Secret", meta["name"], registration.namespace, f"switched to {token}"
    )


def remove_token_secret(remote: Kube, name: str, namespace: str, report: Report) -> None:
    try:
        if remote.delete(SECRET, name, namespace):
            report(Change(remote.context, "Secret", name, namespace, "deleted"))
    except errors.MtvRegisterError:
        report(Change(remote.context, "Secret", name, namespace, "could not be deleted"))
