"""Zero-downtime credential rotation, with the Provider's own credentials.

For each Provider the tool registered: create a new token Secret for the same service account on
the registered cluster, wait for it, prove it, switch the provider Secret on the MTV host (guarded
by its resourceVersion), wait until Forklift has re-tested it and reports Ready, and only then
delete the old token Secret, which revokes the old token. A failure before the switch removes
the new Secret; a Provider that is not Ready after the switch gets the old (still valid) token
back. The Provider never holds a token that does not work.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from mtv_register import deadline, errors, forklift, manifests, naming, provider_secret, verdicts
from mtv_register.bootstrap import RemoteSpec, create_token_secret, wait_for_token
from mtv_register.kube import NAMESPACE, SECRET, Kube
from mtv_register.provider_secret import ProviderSecret
from mtv_register.records import Change, Report
from mtv_register.timing import Timing, retry_on_conflict

if TYPE_CHECKING:
    from mtv_register.clusters import Connector

Obj = dict[str, Any]
Clock = Callable[[], dt.datetime]
ROTATION_TIMEOUT = 300.0
ROLL_BACK_SECONDS = 5.0  # what a failed or interrupted rotation gets to undo itself


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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


@dataclass
class RotationResult:
    provider: str
    action: str  # rotated, recovered, skipped, failed, lost-race, would rotate
    reason: str = ""
    old_secret: str = ""
    new_secret: str = ""
    exit_code: int = 0


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


@dataclass(frozen=True)
class RotateOptions:
    max_age: dt.timedelta | None = None
    max_age_label: str = ""  # as the user wrote it, for messages
    before_expiry: dt.timedelta | None = None  # bound tokens: renew when less is left
    dry_run: bool = False
    timeout: float = ROTATION_TIMEOUT
    timing: Timing = field(default_factory=Timing)
    clock: Clock = utc_now


def rotate_provider(
    host: Kube, provider: Obj, options: RotateOptions, report: Report
) -> RotationResult:
    registration = read_registration(host, provider)
    name = registration.name
    old_name = registration.token_secret[1]
    if options.max_age is not None and registration.token_created is not None:
        age = options.clock() - registration.token_created
        if age < options.max_age:
            from mtv_register.durations import format_duration

            return RotationResult(
                name,
                "skipped",
                f"token is {format_duration(age)} old, younger than "
                f"--max-age {options.max_age_label or format_duration(options.max_age)}",
                old_secret=old_name,
            )
    if (
        registration.token_type == "bound"
        and options.before_expiry is not None
        and (registration.token_expires is not None)
    ):
        left = registration.token_expires - options.clock()
        if left > options.before_expiry:
            from mtv_register.durations import format_duration

            return RotationResult(
                name,
                "skipped",
                f"bound token expires in "
                f"{format_duration(left)}, more than --before-expiry "
                f"{format_duration(options.before_expiry)}",
            )
    if options.dry_run:
        return RotationResult(name, "would rotate", old_secret=old_name)
    # The host's backend (kubernetes client or oc) speaks to the registered cluster too.
    remote = _as_account(
        host,
        registration,
        registration.token,
        options,
        f"{name}'s cluster (as its service account)",
    )
    try:
        if registration.token_type == "bound":
            return _rotate_bound(host, remote, registration, options, report)
        return _rotate(host, remote, registration, options, report)
    finally:
        remote.close()


def _as_account(
    like: Kube, registration: Registration, token: str, options: RotateOptions, context: str
) -> Kube:
    """A client of the registered cluster holding `token`, over the Provider's own URL and CA,
    on the backend of `like` and with the rotation's timing."""
    connector = replace(like.connector, timing=options.timing)
    return connector.with_token(
        registration.url,
        token,
        ca_pem=registration.ca_pem,
        insecure=registration.insecure,
        context=context,
    )


def _rotate_bound(
    host: Kube, remote: Kube, registration: Registration, options: RotateOptions, report: Report
) -> RotationResult:
    """A bound token is renewed by asking for a new one as the account itself (its Role allows
    exactly that). The old one cannot be revoked: it stops working when it expires."""
    from mtv_register.bootstrap import request_bound_token

    namespace, account = registration.service_account
    ttl = (
        int((registration.token_expires - registration.token_created).total_seconds())
        if (registration.token_expires and registration.token_created)
        else 86_400
    )
    issued = request_bound_token(remote, namespace, account, max(600, ttl), report)
    fresh = _as_account(remote, registration, issued.token, options, remote.context)
    try:
        fresh.list(NAMESPACE, limit=1)
    finally:
        fresh.close()
    old_expiry = (registration.secret["metadata"].get("annotations") or {}).get(
        naming.TOKEN_EXPIRES_ANNOTATION, ""
    )
    extra = {naming.TOKEN_EXPIRES_ANNOTATION: issued.expires}
    if not _switch_guarded(
        host,
        registration,
        issued.token,
        "",
        issued.created,
        options.clock(),
        key=naming.TOKEN_EXPIRES_ANNOTATION,
        old_value=old_expiry,
        new_value=issued.expires,
        extra=extra,
    ):
        return RotationResult(
            registration.name,
            "lost-race",
            "another run switched the provider Secret first; its rotation stands",
        )
    report(
        Change(
            host.context,
            "Secret",
            registration.secret["metadata"]["name"],
            registration.namespace,
            "switched to the new bound token",
        )
    )
    try:
        _wait_taken_up(host, registration, options, report)
    except errors.MtvRegisterError as failure:
        with deadline.shielded(ROLL_BACK_SECONDS):
            error = _rolled_back(
                failure, registration.name, lambda: _switch_back(host, registration, report)
            )
        raise error from None
    return RotationResult(
        registration.name,
        "rotated",
        f"new bound token expires {issued.expires}; the old one stays valid "
        f"until {old_expiry or 'its expiry'}",
    )


def _rotate(
    host: Kube, remote: Kube, registration: Registration, options: RotateOptions, report: Report
) -> RotationResult:
    name = registration.name
    old_ns, old_name = registration.token_secret
    try:
        old = remote.get(SECRET, old_name, old_ns)
    except errors.AuthenticationFailed:
        raise errors.AuthenticationFailed(
            f'the token of Provider "{name}" is refused by its cluster (401 Unauthorized): it was '
            "revoked (its token Secret or service account deleted)",
            fix="recover with --source-context/--destination-context (admin credentials)",
        ) from None
    if old is None:
        raise errors.PreflightError(
            f'the token Secret "{old_ns}/{old_name}" of Provider "{name}" is gone from its '
            "cluster, so its token no longer works",
            fix="recover with --source-context/--destination-context (admin credentials)",
        )
    service_account = (old["metadata"].get("annotations") or {}).get(
        naming.SERVICE_ACCOUNT_NAME_ANNOTATION, ""
    )
    created = create_token_secret(remote, service_account, old_ns, replaces=old_name, report=report)
    new_name = created["metadata"]["name"]
    new_ref = f"{old_ns}/{new_name}"
    switched = False
    fresh: Kube | None = None
    try:
        issued = wait_for_token(remote, created, options.timeout)
        # From here on the cluster is spoken to with the new token: the old one is about to be
        # revoked, and a retried request must not arrive with it.
        fresh = _as_account(remote, registration, issued.token, options, remote.context)
        fresh.list(NAMESPACE, limit=1)
        if not _switch_guarded(
            host, registration, issued.token, new_ref, issued.created, options.clock()
        ):
            _remove_new((fresh, remote), new_name, old_ns, report)
            fresh.close()
            return RotationResult(
                name,
                "lost-race",
                "another run switched the provider Secret first; its rotation stands",
                old_secret=old_name,
            )
        switched = True
        report(
            Change(
                host.context,
                "Secret",
                registration.secret["metadata"]["name"],
                registration.namespace,
                "switched to the new token",
            )
        )
        _wait_taken_up(host, registration, options, report)
    except errors.MtvRegisterError as failure:

        def undo() -> None:
            if switched:
                _switch_back(host, registration, report)
            _remove_new((fresh, remote) if fresh else (remote,), new_name, old_ns, report)

        # The roll-back runs even past the deadline or after Ctrl-C, for a few seconds more.
        with deadline.shielded(ROLL_BACK_SECONDS):
            error = _rolled_back(failure, name, undo)
        if fresh is not None:
            fresh.close()
        raise error from None
    # Only now: deleting the old token Secret revokes the old token. Any other token Secret of
    # this account (left by an interrupted run) goes too, so exactly one token stays valid.
    try:
        _sweep(fresh, old_ns, service_account, keep=new_name, old=old_name, report=report)
    finally:
        fresh.close()
    return RotationResult(name, "rotated", old_secret=old_name, new_secret=new_name)


def _wait_taken_up(
    host: Kube, registration: Registration, options: RotateOptions, report: Report
) -> None:
    """Until Forklift tested the switched Secret and found it good: on 2.11+ its status names
    the Secret's resourceVersion; up to 2.10 the Provider's generation is changed first."""
    version = forklift.take_up(host, registration.namespace, registration.name, report)
    verdicts.wait_ready(
        host, registration.namespace, registration.name, options.timeout, secret_version=version
    )


def _switch_guarded(
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
        _switch(host, secret, token, new_ref, created, now, extra)
        return True

    return retry_on_conflict(
        host.timing, attempt, what=f'the provider Secret "{namespace}/{name}"', context=host.context
    )


def _sweep(
    remote: Kube,
    namespace: str,
    service_account: str,
    *,
    keep: str,
    old: str,
    report: Report,
) -> None:
    """Delete the `old` token Secret, then every other one of the account but `keep` and its
    descendants; say so loudly when one stays, because its token then still works."""
    stuck = []

    def delete(name: str) -> None:
        try:
            if remote.delete(SECRET, name, namespace):
                report(Change(remote.context, "Secret", name, namespace, "deleted"))
        except errors.MtvRegisterError as failure:
            stuck.append(f'"{namespace}/{name}": {failure.cause}')

    delete(old)  # first, by name: revoking the replaced token never hangs on the listing
    selector = f"{naming.MANAGED_BY_LABEL}={naming.MANAGED_BY}"
    try:
        found = remote.list(SECRET, namespace, label_selector=selector).get("items", [])
    except errors.MtvRegisterError as failure:
        stuck.append(f"listing token Secrets failed: {failure.cause}")
        found = []
    found = [
        secret
        for secret in found
        if secret.get("type") == naming.SERVICE_ACCOUNT_TOKEN_TYPE
        and (secret["metadata"].get("annotations") or {}).get(
            naming.SERVICE_ACCOUNT_NAME_ANNOTATION
        )
        == service_account
    ]
    replaced = {
        secret["metadata"]["name"]: (secret["metadata"].get("annotations") or {}).get(
            naming.TOKEN_REPLACES_ANNOTATION, ""
        )
        for secret in found
    }
    for name in replaced:
        # A descendant of `keep` is a later run's new token, which the Provider may already
        # hold: revoking it is that run's business, never ours.
        if name not in (keep, old) and not _descends_from(name, keep, replaced):
            delete(name)
    if stuck:
        raise errors.MtvRegisterError(
            f"the Provider now uses the new token {namespace}/{keep}, but an old token Secret "
            f"could not be deleted, so its token still works ({'; '.join(stuck)})",
            fix="re-run rotate: it removes left-over token Secrets",
        )


def _descends_from(name: str, ancestor: str, replaced: dict[str, str]) -> bool:
    seen = {name}
    while (name := replaced.get(name, "")) and name not in seen:
        if name == ancestor:
            return True
        seen.add(name)
    return False


def _remove_new(clients: tuple[Kube, ...], name: str, namespace: str, report: Report) -> None:
    """Remove a new token Secret with the first client whose token still works: its own token,
    then the old one (a concurrent run may have revoked either meanwhile)."""
    for client in clients[:-1]:
        try:
            if client.delete(SECRET, name, namespace):
                report(Change(client.context, "Secret", name, namespace, "deleted"))
            return
        except errors.MtvRegisterError:
            continue
    _remove(clients[-1], name, namespace, report)


def _switch(
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


def _switch_back(host: Kube, registration: Registration, report: Report) -> None:
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
    )


def _rolled_back(
    failure: errors.MtvRegisterError, name: str, undo: Callable[[], None]
) -> errors.MtvRegisterError:
    """The error a failed rotation ends in, after `undo()`: "rolled back", or, when the undo
    itself kept meeting another writer, that it could not be."""
    try:
        undo()
    except errors.ConflictError as stuck:
        return errors.ConflictError(
            f'rotation of Provider "{name}" failed ({failure.cause}) and could not be rolled '
            f"back: {stuck.cause}",
            fix="the provider Secret keeps the new token, which stays valid; re-run rotate once "
            "the other writer has stopped",
        )
    return type(failure)(
        f'rotation of Provider "{name}" failed and was rolled back: {failure.cause}',
        fix=failure.fix,
    )


def _remove(remote: Kube, name: str, namespace: str, report: Report) -> None:
    try:
        if remote.delete(SECRET, name, namespace):
            report(Change(remote.context, "Secret", name, namespace, "deleted"))
    except errors.MtvRegisterError:
        report(Change(remote.context, "Secret", name, namespace, "could not be deleted"))


def rotate_all(
    host: Kube,
    namespace: str,
    names: list[str] | None,
    options: RotateOptions,
    report: Report,
    *,
    parallel: int = 4,
    recovery: Callable[[Obj], Kube | None] | None = None,
) -> list[RotationResult]:
    """Rotate each chosen Provider; one failure never stops the others. `recovery` gives an
    admin client for a Provider whose token is already dead (or None)."""
    providers = managed_providers(host, namespace, names)

    def failed(provider: Obj, failure: errors.MtvRegisterError) -> RotationResult:
        return RotationResult(
            provider["metadata"]["name"], "failed", failure.line(), exit_code=failure.exit_code
        )

    def one(provider: Obj) -> RotationResult:
        try:
            return rotate_provider(host, provider, options, report)
        except (errors.AuthenticationFailed, errors.PreflightError) as failure:
            admin = recovery(provider) if recovery is not None else None
            if admin is None:
                return failed(provider, failure)
            try:
                return recover_provider(host, admin, provider, options, report)
            except errors.MtvRegisterError as second:
                return failed(provider, second)
        except errors.MtvRegisterError as failure:
            return failed(provider, failure)

    with deadline.pool(min(parallel, len(providers) or 1)) as pool:
        return list(pool.map(one, providers))


def recover_provider(
    host: Kube, admin: Kube, provider: Obj, options: RotateOptions, report: Report
) -> RotationResult:
    """When the Provider's token is already dead: re-bootstrap its cluster with admin
    credentials, switch the provider Secret to the new token, then clear old token Secrets."""
    from mtv_register.bootstrap import bootstrap

    registration = read_registration(host, provider)
    spec = recorded_spec(registration)
    token_name = registration.token_secret[1]
    service_account = spec.service_account
    if options.dry_run:
        return RotationResult(registration.name, "would recover", old_secret=token_name)
    issued = bootstrap(admin, spec, report, timeout=options.timeout)
    if not spec.bound:
        # A legacy token is a signature over the account and the Secret's *name*: the Secret
        # bootstrap just made again under the documented name carries the very token that was
        # revoked (a real token controller signs the same claims the same way). A token Secret
        # under a new name gives a new token; the sweep below deletes the other.
        created = create_token_secret(
            admin, spec.service_account, spec.namespace, replaces=issued.secret_name, report=report
        )
        issued = wait_for_token(admin, created, options.timeout)
    ref = "" if spec.bound else f"{issued.namespace}/{issued.secret_name}"
    if registration.token != issued.token:
        extra = {naming.TOKEN_EXPIRES_ANNOTATION: issued.expires} if spec.bound else None
        _switch(
            host, registration.secret, issued.token, ref, issued.created, options.clock(), extra
        )
        report(
            Change(
                host.context,
                "Secret",
                registration.secret["metadata"]["name"],
                registration.namespace,
                "switched to the recovered token",
            )
        )
        _wait_taken_up(host, registration, options, report)
    else:
        verdicts.wait_ready(host, registration.namespace, registration.name, options.timeout)
    selector = f"{naming.MANAGED_BY_LABEL}={naming.MANAGED_BY}"
    for secret in admin.list(SECRET, spec.namespace, label_selector=selector).get("items", []):
        annotations = secret["metadata"].get("annotations") or {}
        if annotations.get(naming.SERVICE_ACCOUNT_NAME_ANNOTATION) == service_account and (
            spec.bound or secret["metadata"]["name"] != issued.secret_name
        ):
            _remove(admin, secret["metadata"]["name"], spec.namespace, report)
    return RotationResult(
        registration.name,
        "recovered",
        old_secret=token_name,
        new_secret="" if spec.bound else issued.secret_name,
    )


def recorded_spec(registration: Registration) -> RemoteSpec:
    """The registration as it was made, from what its provider Secret records: account, role
    (created by the tool or the user's own), token type and lifetime. Older Secrets that do not
    record the role get the default one."""
    sa_ns, sa_name = registration.service_account
    token_ns, token_name = registration.token_secret
    existing, _, role = registration.cluster_role.rpartition(":")
    return RemoteSpec(
        service_account=sa_name or service_account_of(token_name),
        namespace=sa_ns or token_ns,
        role_name=role or naming.DEFAULT_ROLE_NAME,
        existing_role=existing == "existing",
        token_type=registration.token_type,
        token_ttl=registration.token_ttl or RemoteSpec.token_ttl,
    )


def service_account_of(token_secret_name: str) -> str:
    """`<sa>-token` or `<sa>-token-<suffix>` (the documented names) -> `<sa>`."""
    base, found, _ = token_secret_name.rpartition(naming.TOKEN_SECRET_SUFFIX)
    return base if found and base else token_secret_name


# -- the schedule ----------------------------------------------------------------------------------

_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-?]+$")
_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


# (name, lowest, highest) of the five fields, as the CronJob controller's parser (robfig/cron)
# takes them; month and weekday names are accepted as words.
_CRON_RANGES = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)


def check_cron(expression: str) -> None:
    fields = expression.split()
    if expression.strip() in _CRON_MACROS:
        return
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise errors.UsageError(
            f'--every "{expression}" is not a cron schedule',
            fix='give five fields, e.g. "0 3 * * *" (03:00 daily), or @daily',
        )
    for text, (name, low, high) in zip(fields, _CRON_RANGES, strict=True):
        for number in re.findall(r"\d+", text.split("/")[0]):
            if not low <= int(number) <= high:
                raise errors.UsageError(
                    f'--every "{expression}": {number} is out of range for the {name} '
                    f"({low}-{high})",
                    fix='give five fields, e.g. "0 3 * * *" (03:00 daily), or @daily',
                )


def schedule_manifests(namespace: str, *, every: str, max_age: str, image: str) -> list[Obj]:
    return [
        manifests.rotator_service_account(namespace),
        manifests.rotator_role(namespace),
        manifests.rotator_role_binding(namespace),
        manifests.rotation_cron_job(namespace, schedule=every, max_age=max_age, image=image),
    ]


def schedule(
    host: Kube, namespace: str, *, every: str, max_age: str, image: str, report: Report
) -> list[Obj]:
    """Create or update the rotation CronJob and the least-privileged identity it runs as."""
    from mtv_register.bootstrap import ensure
    from mtv_register.kube import CRON_JOB, ROLE, ROLE_BINDING, SERVICE_ACCOUNT

    check_cron(every)
    wanted = schedule_manifests(namespace, every=every, max_age=max_age, image=image)
    kinds = (SERVICE_ACCOUNT, ROLE, ROLE_BINDING, CRON_JOB)
    same = {
        "ServiceAccount": lambda e, d: True,
        "Role": lambda e, d: e.get("rules") == d["rules"],
        "RoleBinding": lambda e, d: (
            e.get("subjects") == d["subjects"] and e.get("roleRef") == d["roleRef"]
        ),
        "CronJob": lambda e, d: _cron_spec(e) == _cron_spec(d),
    }

    def merge(existing: Obj, desired: Obj) -> Obj:
        merged = {**existing, **{k: v for k, v in desired.items() if k != "metadata"}}
        merged["metadata"] = {
            **existing["metadata"],
            "labels": {
                **(existing["metadata"].get("labels") or {}),
                **desired["metadata"]["labels"],
            },
        }
        return merged

    return [
        ensure(host, kind, obj, report, same=same[kind.kind], merge=merge)
        for kind, obj in zip(kinds, wanted, strict=True)
    ]


def _cron_spec(obj: Obj) -> tuple[Any, ...]:
    spec = obj.get("spec") or {}
    template = (spec.get("jobTemplate") or {}).get("spec", {}).get("template", {}).get("spec", {})
    container = (template.get("containers") or [{}])[0]
    return (
        spec.get("schedule"),
        spec.get("concurrencyPolicy"),
        container.get("image"),
        container.get("args"),
        template.get("serviceAccountName"),
    )


def unschedule(host: Kube, namespace: str, report: Report) -> None:
    from mtv_register.kube import CRON_JOB, ROLE, ROLE_BINDING, SERVICE_ACCOUNT

    for kind in (CRON_JOB, ROLE_BINDING, ROLE, SERVICE_ACCOUNT):
        name = naming.ROTATION_CRONJOB if kind is CRON_JOB else naming.ROTATOR_NAME
        obj = host.get(kind, name, namespace)
        if obj is None:
            continue
        if not forklift.is_managed(obj):
            report(
                Change(
                    host.context, kind.kind, name, namespace, "kept (not managed by mtv-register)"
                )
            )
            continue
        if host.delete(kind, name, namespace, uid=obj["metadata"]["uid"]):
            report(Change(host.context, kind.kind, name, namespace, "deleted"))


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
    context = host or config.data.get("current-context")
    if not context:
        raise errors.UsageError(
            "no --host and no current-context in the kubeconfig",
            fix="pass --host CONTEXT (or --in-cluster in a pod)",
        )
    return connector.connect(config, str(context))


def recovery_for(
    kubeconfig: str | None,
    contexts: list[str],
    connector: Connector | None = None,
) -> Callable[[Obj], Kube | None]:
    """Admin clients for dead-token recovery: a context serves the Provider named after it,
    or the one whose URL is the context's server URL."""
    from mtv_register import clusters

    connector = connector or clusters.Connector()
    if not contexts:
        return lambda provider: None
    config = clusters.load_kubeconfig(kubeconfig)
    for context in contexts:
        if context not in config.contexts:
            raise errors.KubeconfigError(
                f'context "{context}" is not in {config.path}',
                fix=f"use one of: {', '.join(config.contexts)}",
            )

    def pick(provider: Obj) -> Kube | None:
        name = provider["metadata"]["name"]
        url = (provider.get("spec") or {}).get("url", "")
        for context in contexts:
            server = str(config.cluster_of(context).get("server", ""))
            if name == naming.provider_name(context) or (url and url == server):
                return connector.connect(config, context)
        return None

    return pick
