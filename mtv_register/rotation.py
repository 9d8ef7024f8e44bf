"""Zero-downtime credential rotation, with the Provider's own credentials.

For each Provider the tool registered: create a new token Secret for the same service account on
the registered cluster, wait for it, prove it, switch the provider Secret on the MTV host (guarded
by its resourceVersion), wait until Forklift has re-tested it and reports Ready, and only then
delete the old token Secret, which revokes the old token. A failure before the switch removes
the new Secret; a Provider that is not Ready after the switch gets the old (still valid) token
back. The Provider never holds a token that does not work.

`rotate_all` rotates the chosen Providers side by side and hands one whose token is already dead
to `recovery`; `run` is what the `rotate` command runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mtv_register import deadline, errors, events, forklift, naming
from mtv_register.kube import NAMESPACE, SECRET, Kube
from mtv_register.records import Change, Report
from mtv_register.recovery import recover_provider, recovery_for
from mtv_register.registration import (
    Registration,
    RotateOptions,
    RotationResult,
    as_account,
    managed_providers,
    open_host,
    read_registration,
    remove_token_secret,
    switch_back,
    switch_guarded,
    switched_to,
    wait_taken_up,
)
from mtv_register.tokens import create_token_secret, wait_for_token

if TYPE_CHECKING:
    from mtv_register.clusters import Connector

Obj = dict[str, Any]


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
    remote = as_account(
        host,
        registration,
        registration.token,
        options.timing,
        f"{name}'s cluster (as its service account)",
    )
    try:
        if registration.token_type == "bound":
            return _rotate_bound(host, remote, registration, options, report)
        return _rotate(host, remote, registration, options, report)
    finally:
        remote.close()


def _rotate_bound(
    host: Kube, remote: Kube, registration: Registration, options: RotateOptions, report: Report
) -> RotationResult:
    """A bound token is renewed by asking for a new one as the account itself (its Role allows
    exactly that). The old one cannot be revoked: it stops working when it expires."""
    from mtv_register.tokens import request_bound_token

    namespace, account = registration.service_account
    ttl = (
        int((registration.token_expires - registration.token_created).total_seconds())
        if (registration.token_expires and registration.token_created)
        else 86_400
    )
    issued = request_bound_token(remote, namespace, account, max(600, ttl), report)
    fresh = as_account(remote, registration, issued.token, options.timing, remote.context)
    try:
        fresh.list(NAMESPACE, limit=1)
    finally:
        fresh.close()
    old_expiry = (registration.secret["metadata"].get("annotations") or {}).get(
        naming.TOKEN_EXPIRES_ANNOTATION, ""
    )
    extra = {naming.TOKEN_EXPIRES_ANNOTATION: issued.expires}
    if not switch_guarded(
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
    report(switched_to(host, registration, "the new bound token"))
    try:
        wait_taken_up(host, registration, options.timeout, report)
    except errors.MtvRegisterError as failure:
        with deadline.shielded():
            error = _rolled_back(
                failure, registration.name, lambda: switch_back(host, registration, report)
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
        fresh = as_account(remote, registration, issued.token, options.timing, remote.context)
        fresh.list(NAMESPACE, limit=1)
        if not switch_guarded(
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
        report(switched_to(host, registration, "the new token"))
        wait_taken_up(host, registration, options.timeout, report)
    except errors.MtvRegisterError as failure:

        def undo() -> None:
            if switched:
                switch_back(host, registration, report)
            _remove_new((fresh, remote) if fresh else (remote,), new_name, old_ns, report)

        # The roll-back runs even past the deadline or after Ctrl-C, for a few seconds more.
        with deadline.shielded():
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
    remove_token_secret(clients[-1], name, namespace, report)


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
    admin client for a Provider whose token is already dead (or None). Each Provider rotated,
    recovered or failed gets its Event (`events.rotation`)."""
    providers = managed_providers(host, namespace, names)

    def failed(provider: Obj, failure: errors.MtvRegisterError) -> RotationResult:
        return RotationResult(
            provider["metadata"]["name"], "failed", failure.line(), exit_code=failure.exit_code
        )

    def one(provider: Obj) -> RotationResult:
        result = attempt(provider)
        events.rotation(host, provider, result)  # best effort: the result stands either way
        return result

    def attempt(provider: Obj) -> RotationResult:
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

    with deadline.pool(min(parallel, len(providers) or 1), undoing=True) as pool:
        return list(pool.map(one, providers))


def run(
    *,
    kubeconfig: str | None,
    host: str | None,
    in_cluster: bool,
    mtv_namespace: str | None,
    names: list[str] | None,
    options: RotateOptions,
    report: Report,
    parallel: int = 4,
    admin_contexts: list[str] | None = None,
    connector: Connector | None = None,
) -> list[RotationResult]:
    """`rotate`: on the MTV host, the Providers `names` (None: every one the tool registered)
    rotated, each recovered with the one of `admin_contexts` that serves it if its token is dead."""
    kube = open_host(kubeconfig=kubeconfig, host=host, in_cluster=in_cluster, connector=connector)
    try:
        # The CronJob's pod runs in the namespace `schedule` checked, and its Role grants
        # nothing on Namespace objects: there, take the namespace as given.
        namespace = (
            mtv_namespace
            if in_cluster and mtv_namespace
            else forklift.find_mtv_namespace(kube, mtv_namespace)
        )
        recovery = recovery_for(kubeconfig, admin_contexts or [], connector)
        return rotate_all(
            kube, namespace, names, options, report, parallel=parallel, recovery=recovery
        )
    finally:
        kube.close()
