"""A migration pair's registration: connect, preflight everything, bootstrap both sides
concurrently, then register on the MTV host and wait for Forklift. Its reverse is `unregister`;
the sides themselves (URL, CA, the token's proof) are `sides`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtv_register import clusters, errors, events, forklift, manifests, verdicts
from mtv_register import deadline as run_deadline
from mtv_register import sides as pair_sides  # called through the module: tests patch its steps
from mtv_register.bootstrap import RemoteSpec, bootstrap
from mtv_register.kube import NAMESPACE, Kube
from mtv_register.provider_secret import ProviderSecret
from mtv_register.records import Change
from mtv_register.sides import Side
from mtv_register.teardown import remove_token_secrets, wait_namespace_gone
from mtv_register.tokens import IssuedToken

Obj = dict[str, Any]
DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True)
class PairOptions:
    source: str
    destination: str
    host: str | None = None  # the MTV host context; default: the destination
    kubeconfig: str | Path | None = None
    mtv_namespace: str | None = None
    source_name: str | None = None
    destination_name: str | None = None
    remote: RemoteSpec = field(default_factory=RemoteSpec)
    ca_source: str = "root"  # root | kubeconfig | system | file:PATH
    insecure_skip_tls_verify: bool = False
    url_source: str = "kubeconfig"  # kubeconfig | infrastructure
    source_url: str | None = None
    destination_url: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    legacy_cacert: bool = True
    submariner: bool | None = None  # None: the Providers' setting is left as it is
    connector: clusters.Connector = field(default_factory=clusters.Connector)

    @property
    def host_context(self) -> str:
        return self.host or self.destination


@dataclass
class ProviderState:
    name: str
    role: str
    context: str
    url: str
    phase: str
    message: str = ""


@dataclass
class PairResult:
    host: str
    namespace: str
    providers: list[ProviderState] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    manifests: list[tuple[str, Obj]] = field(default_factory=list)  # dry-run: (context, object)

    @property
    def mutated(self) -> bool:
        return any(change.mutates for change in self.changes)


Progress = Callable[[str], None]


class Recorder:
    """A `Report` that keeps every change, from any thread, and shows each as it comes."""

    def __init__(self, progress: Progress | None) -> None:
        self.changes: list[Change] = []
        self._lock = threading.Lock()
        self._progress = progress

    def __call__(self, change: Change) -> None:
        with self._lock:
            self.changes.append(change)
        if self._progress is not None:
            self._progress(str(change))


def register_pair(
    options: PairOptions, *, dry_run: bool = False, progress: Progress | None = None
) -> PairResult:
    pair_sides.validate(options)
    deadline = time.monotonic() + options.timeout
    say = progress or (lambda message: None)
    kubeconfig, sides, kubes = pair_sides.connect_pair(options)
    recorder = Recorder(progress)
    verdict_phase = False
    remote = [s for s in sides if not s.uses_host_provider]
    host, namespace = kubes[options.host_context], ""  # the namespace: found by the preflight
    try:
        say(f"preflight: MTV host {host.context}, {', '.join(s.context for s in remote)}")
        with run_deadline.pool(len(remote) + 1) as pool:
            host_check = pool.submit(_preflight_host, host, options, sides)
            checks = {
                side.role: pool.submit(pair_sides.url_and_ca, side, options, kubeconfig)
                for side in remote
            }
            namespace, existing = host_check.result()
            endpoints = {role: check.result() for role, check in checks.items()}
        for side in remote:
            url = endpoints[side.role].url
            forklift.check_name_free(existing.get(side.provider), side.provider, url, host.context)
            if side.provider not in existing:
                twins = sorted(
                    name
                    for name, provider in existing.items()
                    if (provider.get("spec") or {}).get("url") == url
                )
                if twins:
                    say(
                        f"warning: {url} ({side.context}) already has Provider "
                        f"{', '.join(twins)} on {host.context}; a second one, "
                        f'"{side.provider}", is created (pass --{side.role}-name '
                        f"{twins[0]} to use it)"
                    )
        result = PairResult(host.context, namespace)
        if dry_run:
            return _render(result, sides, endpoints, options, namespace)

        say("bootstrap: " + ", ".join(s.context for s in remote))
        with run_deadline.pool(len(remote)) as pool:
            futures = {
                side.role: pool.submit(
                    _bootstrap_side,
                    side,
                    endpoints[side.role],
                    options,
                    recorder,
                    deadline,
                    pair_sides.reusable_bound_token(
                        _provider_secret(side, host, namespace)
                        if options.remote.bound and side.provider in existing
                        else None,
                        options.remote,
                    ),
                    (host, namespace) if side.provider in existing else None,
                )
                for side in remote
            }
            issued = {role: future.result() for role, future in futures.items()}

        def on_host(side: Side) -> tuple[bool, Obj]:
            """The side's provider Secret and Provider on the host: whether an existing
            registration's Secret changed, so that Forklift re-tests it, and the Provider."""
            creds = pair_sides.credentials(endpoints[side.role], issued[side.role].token, options)
            provider, changed = forklift.ensure_provider(
                host,
                namespace,
                side.provider,
                creds,
                existing.get(side.provider),
                recorder,
                legacy_cacert=options.legacy_cacert,
                current_secret=issued[side.role].recorded,
                settings=pair_sides.settings(side, options),
                pair=forklift.pair_key(sides[0].provider, sides[1].provider),
            )
            if not changed and verdicts.verdict(provider) in ("failed", "retrying"):
                # The tool just proved these credentials: let Forklift see the repaired cause.
                forklift.request_retest(host, namespace, side.provider, recorder)
                changed = True
            return changed and side.provider in existing, provider

        # The sides' writes on the host are independent, and each waits for Forklift's
        # webhook to test the credentials: both at once.
        with run_deadline.pool(len(remote)) as pool:
            written = list(zip(remote, pool.map(on_host, remote), strict=True))
        rewritten = [side.provider for side, (changed, _) in written if changed]
        held = {**existing, **{side.provider: obj for side, (_, obj) in written}}
        expected = {name: verdicts.take_up(host, namespace, name, recorder) for name in rewritten}

        say("waiting for Forklift to test the providers")
        verdict_phase = True  # from here on, what was saved stays: a re-run repairs it
        ready = verdicts.wait_all_ready(
            host,
            namespace,
            [side.provider for side in sides],
            max(0.1, deadline - time.monotonic()),
            expected={name: version for name, version in expected.items() if version},
            progress=progress,
            held=held,
        )
        if options.remote.bound:
            # The bound tokens are proven and in use: a long-lived token Secret of the same
            # account (a registration of --token-type secret before) goes, revoking its token.
            for side in remote:
                assert side.kube is not None
                remove_token_secrets(side.kube, pair_sides.remote_spec(side, options), recorder)
        for side in sides:
            provider = ready[side.provider]
            result.providers.append(
                ProviderState(
                    side.provider,
                    side.role,
                    side.context,
                    (provider.get("spec") or {}).get("url", ""),
                    "Ready",
                )
            )
        result.changes = recorder.changes
        events.registration(host, namespace, remote, recorder.changes, ready=ready, say=say)
        return result
    except (KeyboardInterrupt, run_deadline.Cancelled):
        run_deadline.cancel()  # what still runs in other threads stops at its next request
        if verdict_phase:
            raise run_deadline.Interrupted(
                "interrupted while waiting for Forklift: the registration is saved; `status` "
                "shows Forklift's verdict, and a re-run waits for it again",
                [],
            ) from None
        with run_deadline.shielded():
            left = _roll_back(kubes, recorder.changes, say, run_deadline.ROLL_BACK_SECONDS)
        summary = (
            "interrupted: what this run created was removed"
            if not left
            else f"interrupted: left behind {'; '.join(left)}; a re-run converges"
        )
        raise run_deadline.Interrupted(summary, left) from None
    except (errors.PermissionDenied, errors.AuthenticationFailed, errors.PreflightError) as refusal:
        # Bad input met mid-way (a permission, a name taken): no half-made registration stays.
        # Forklift's verdict is not such a refusal: the registration stays for status to show.
        if verdict_phase:
            events.registration(
                host, namespace, remote, recorder.changes, failure=refusal, saved=True, say=say
            )
            raise
        left = _roll_back(
            kubes,
            recorder.changes,
            say,
            max(run_deadline.ROLL_BACK_SECONDS, deadline - time.monotonic()),
        )
        if not left:
            raise
        raise type(refusal)(
            f"{refusal.cause} (could not remove what this run created: {'; '.join(left)})",
            fix=refusal.fix,
        ) from None
    except errors.MtvRegisterError as failure:  # nothing rolled back: what was saved stays
        events.registration(
            host, namespace, remote, recorder.changes, failure=failure, saved=verdict_phase, say=say
        )
        raise
    finally:
        for kube in kubes.values():
            kube.close()


def _roll_back(
    kubes: dict[str, Kube], changes: list[Change], say: Progress, timeout: float = 60.0
) -> list[str]:
    """Delete every object this run created, newest first; name those that stay."""
    from mtv_register.kube import (
        CLUSTER_ROLE,
        CLUSTER_ROLE_BINDING,
        PROVIDER,
        ROLE,
        ROLE_BINDING,
        SECRET,
        SERVICE_ACCOUNT,
    )

    kinds = {
        k.kind: k
        for k in (
            CLUSTER_ROLE,
            CLUSTER_ROLE_BINDING,
            NAMESPACE,
            PROVIDER,
            ROLE,
            ROLE_BINDING,
            SECRET,
            SERVICE_ACCOUNT,
        )
    }
    left = []
    namespaces = []
    for change in reversed(list(changes)):
        kind = kinds.get(change.kind)
        if change.action != "created" or kind is None or change.context not in kubes:
            continue
        try:
            kubes[change.context].delete(kind, change.name, change.namespace or None)
        except errors.MtvRegisterError as failure:
            left.append(f"{change.kind} {change.name} on {change.context}: {failure.cause}")
        else:
            say(f"rolled back: {change.kind} {change.name} on {change.context}")
            if kind is NAMESPACE:
                namespaces.append((kubes[change.context], change.name))
    # A deleted namespace stays Terminating while its controller empties it (seconds).
    deadline = time.monotonic() + timeout
    for kube, name in namespaces:
        try:
            wait_namespace_gone(kube, name, max(0.0, deadline - time.monotonic()))
        except errors.MtvRegisterError as failure:
            left.append(f"Namespace {name} on {kube.context}: {failure.cause}")
    return left


def _preflight_host(
    host: Kube, options: PairOptions, sides: list[Side]
) -> tuple[str, dict[str, Obj]]:
    namespace, existing = forklift.discover(host, options.mtv_namespace)
    for side in sides:
        if side.uses_host_provider:
            local = existing.get(side.provider)
            if local is None or (local.get("spec") or {}).get("url"):
                raise errors.PreflightError(
                    f'the MTV host {host.context} has no local provider "{side.provider}" '
                    f"in {namespace}",
                    fix="check the MTV installation, or pass --host for a separate MTV host",
                )
    return namespace, existing


@dataclass(frozen=True)
class Bootstrapped:
    """What bootstrapping a side gives: the proved token and the provider Secret as last read
    (None when there is none, or it was not read)."""

    token: IssuedToken
    recorded: Obj | None = field(default=None, repr=False)


def _bootstrap_side(
    side: Side,
    endpoint: pair_sides.Endpoint,
    options: PairOptions,
    recorder: Recorder,
    deadline: float,
    reuse: IssuedToken | None = None,
    registered: tuple[Kube, str] | None = None,  # (host, namespace) when the Provider exists
) -> Bootstrapped:
    assert side.kube is not None
    reread = registered is not None and reuse is None and not options.remote.bound
    recorded = _provider_secret(side, *registered) if registered and reread else None
    kept = pair_sides.kept_token(recorded, options.remote)
    token = bootstrap(
        side.kube,
        pair_sides.remote_spec(side, options),
        recorder,
        timeout=max(0.0, deadline - time.monotonic()),
        reuse=reuse or kept,
    )
    try:
        pair_sides.prove_token(side, endpoint, token, options)
    except errors.AuthenticationFailed:
        if kept is None or registered is None:
            raise
        # The Provider's token stopped working: revoked, or replaced by a rotation meanwhile.
        recorded = _provider_secret(side, *registered)
        newer = pair_sides.kept_token(recorded, options.remote)
        token = (
            newer
            if newer is not None and newer.token != kept.token
            else bootstrap(
                side.kube,
                pair_sides.remote_spec(side, options),
                recorder,
                timeout=max(0.0, deadline - time.monotonic()),
            )
        )
        pair_sides.prove_token(side, endpoint, token, options)
    return Bootstrapped(token, recorded)


def _provider_secret(side: Side, host: Kube, namespace: str) -> Obj | None:
    from mtv_register.kube import SECRET

    return host.get(SECRET, forklift.secret_name_for(side.provider), namespace)


def _render(
    result: PairResult,
    sides: list[Side],
    endpoints: dict[str, pair_sides.Endpoint],
    options: PairOptions,
    namespace: str,
) -> PairResult:
    """--dry-run: every manifest for every cluster, tokens redacted; nothing is written."""
    for side in sides:
        if side.uses_host_provider:
            continue
        for obj in pair_sides.remote_spec(side, options).manifests():
            result.manifests.append((side.context, obj))
        endpoint = endpoints[side.role]
        creds = ProviderSecret(
            url=endpoint.url,
            token=manifests.REDACTED,
            ca_pem=endpoint.ca_pem,
            insecure=options.insecure_skip_tls_verify,
            token_secret_ref=""
            if options.remote.bound
            else f"{options.remote.namespace}/{options.remote.token_secret}",
            token_created="",
            token_type=options.remote.token_type,
            service_account_ref=f"{options.remote.namespace}/{options.remote.service_account}",
        )
        secret = creds.to_secret(
            forklift.secret_name_for(side.provider), namespace, legacy_cacert=options.legacy_cacert
        )
        result.manifests.append((result.host, manifests.applicable_secret(secret)))
        result.manifests.append(
            (
                result.host,
                forklift.desired_provider(
                    side.provider, namespace, endpoint.url, pair_sides.settings(side, options)
                ),
            )
        )
    return result
