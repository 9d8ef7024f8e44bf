"""Unregistering a pair, or a fleet of them: on the MTV host a Provider goes only when no other
pair uses it, and on a cluster its credentials go only when no Provider on the host points at
that cluster any more."""

from __future__ import annotations

from typing import Any

from mtv_register import deadline as run_deadline
from mtv_register import errors, forklift
from mtv_register.fleet import FleetResult, fleet_entry
from mtv_register.kube import PROVIDER, SECRET, Kube
from mtv_register.naming import PAIRS_ANNOTATION
from mtv_register.orchestrator import PairOptions, Progress, ProviderState, Recorder
from mtv_register.records import Change, Report
from mtv_register.sides import check_distinct, connect_pair
from mtv_register.teardown import teardown
from mtv_register.timing import retry_on_conflict

Obj = dict[str, Any]


def unregister_pair(
    options: PairOptions, *, keep_remote: bool = False, progress: Progress | None = None
) -> list[Change]:
    """Remove the pair's registration. A Provider another pair still uses stays (the pair
    leaves its record); a cluster's credentials go only when no Provider on the host points
    at that cluster any more. Names that match no Provider are refused, touching nothing."""
    check_distinct(options)
    _, sides, kubes = connect_pair(options)
    recorder = Recorder(progress)
    try:
        host = kubes[options.host_context]
        namespace = forklift.find_mtv_namespace(host, options.mtv_namespace)
        existing = forklift.list_providers(host, namespace)
        remote = [s for s in sides if not s.uses_host_provider]

        # A name that matches no Provider, for a cluster that other Providers use, is a typo:
        # refused before anything is touched. With no Provider left for that cluster (after
        # `--keep-remote`, or an interrupted run), its credentials are what remains to remove.
        missing = [
            s
            for s in remote
            if s.provider not in existing and s.kube and _pointing_at(existing, {s.kube.url})
        ]
        if missing:
            names = ", ".join(sorted(existing)) or "none"
            raise errors.PreflightError(
                "no Provider named "
                + " or ".join(f'"{s.provider}" ({s.role})' for s in missing)
                + f" on {host.context} in {namespace}; nothing was changed",
                fix=f"check --source-name/--destination-name (Providers there: {names})",
            )
        pair = forklift.pair_key(sides[0].provider, sides[1].provider)
        released = {
            s.provider: release_provider(host, namespace, s.provider, pair, recorder)
            if s.provider in existing
            else (True, "")
            for s in remote
        }
        if keep_remote:
            return recorder.changes
        left = forklift.list_providers(host, namespace)
        gone = []
        for side in remote:
            deleted, url = released[side.provider]
            if not deleted:
                continue
            assert side.kube is not None
            users = _pointing_at(left, {url, side.kube.url})
            if users:
                recorder(
                    Change(
                        side.context,
                        "credentials",
                        options.remote.service_account,
                        options.remote.namespace,
                        f"kept (Provider {', '.join(users)} on {host.context} still uses them)",
                    )
                )
            else:
                gone.append(side)
        if gone:
            with run_deadline.pool(len(gone)) as pool:
                for future in [
                    pool.submit(
                        teardown,
                        kubes[s.context],
                        options.remote,
                        recorder,
                        timeout=options.timeout,
                    )
                    for s in gone
                ]:
                    future.result()
        return recorder.changes
    finally:
        for kube in kubes.values():
            kube.close()


def _pointing_at(providers: dict[str, Obj], urls: set[str]) -> list[str]:
    """The names of the Providers whose URL is one of `urls` (a trailing "/" aside)."""
    wanted = {u.rstrip("/") for u in urls if u}
    return sorted(
        name
        for name, provider in providers.items()
        if (provider.get("spec") or {}).get("url", "").rstrip("/") in wanted
    )


def unregister_fleet(
    pairs: list[PairOptions], *, keep_remote: bool, parallel: int
) -> list[FleetResult]:
    """Unregister every pair, `parallel` at a time; one failing pair never stops the others.
    Shared Providers and credentials go with the last pair that uses them."""

    def one(options: PairOptions) -> FleetResult:
        def work(pair: PairOptions) -> tuple[list[ProviderState], bool]:
            changes = unregister_pair(pair, keep_remote=keep_remote)
            return [], any(c.action != "unchanged" for c in changes)

        return fleet_entry(options, work)

    with run_deadline.pool(parallel) as pool:
        return list(pool.map(one, pairs))


def release_provider(
    kube: Kube, namespace: str, name: str, pair: str, report: Report
) -> tuple[bool, str]:
    """Unregister `pair` from the Provider: (deleted, its URL). The Provider is deleted only when
    no other pair uses it; otherwise the pair leaves its annotation and the Provider stays.
    Guarded by resourceVersion, so of two concurrent runs exactly one deletes it."""

    def attempt(number: int) -> tuple[bool, str]:
        del number
        provider = kube.get(PROVIDER, name, namespace)
        if provider is None:
            return True, ""
        url = (provider.get("spec") or {}).get("url", "")
        if not forklift.is_managed(provider):
            report(
                Change(
                    kube.context, "Provider", name, namespace, "kept (not managed by mtv-register)"
                )
            )
            return False, url
        users = forklift.pairs_of(provider)
        others = [p for p in users if p != pair]
        if not others:  # the last pair, or one registered before pairs were recorded
            delete_provider(kube, namespace, name, report)
            return True, url
        if pair in users:
            patch = {
                "metadata": {
                    "annotations": {PAIRS_ANNOTATION: ",".join(others)},
                    "resourceVersion": provider["metadata"]["resourceVersion"],
                }
            }
            kube.patch(PROVIDER, name, patch, namespace)
        report(
            Change(
                kube.context,
                "Provider",
                name,
                namespace,
                f"kept (still used by {', '.join(others)})",
            )
        )
        return False, url

    return retry_on_conflict(
        kube.timing,
        attempt,
        what=f'Provider "{namespace}/{name}"',
        context=kube.context,
        obj=("Provider", namespace, name),
    )


def delete_provider(kube: Kube, namespace: str, name: str, report: Report) -> None:
    provider = kube.get(PROVIDER, name, namespace)
    if provider is not None:
        if not forklift.is_managed(provider):
            report(
                Change(
                    kube.context, "Provider", name, namespace, "kept (not managed by mtv-register)"
                )
            )
            return
        kube.delete(PROVIDER, name, namespace, uid=provider["metadata"]["uid"])
        report(Change(kube.context, "Provider", name, namespace, "deleted"))
    secret = kube.get(SECRET, forklift.secret_name_for(name), namespace)
    # The garbage collector would remove it too; removing it here makes the end state exact.
    if (
        secret is not None
        and forklift.is_managed(secret)
        and kube.delete(
            SECRET, forklift.secret_name_for(name), namespace, uid=secret["metadata"]["uid"]
        )
    ):
        report(Change(kube.context, "Secret", forklift.secret_name_for(name), namespace, "deleted"))
