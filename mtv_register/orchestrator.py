"""A migration pair: connect, preflight everything, bootstrap both sides concurrently, then
register on the MTV host and wait for Forklift. Also its reverse (unregister) and `status`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mtv_register import clusters, errors, forklift, manifests, naming, verdicts
from mtv_register import deadline as run_deadline
from mtv_register.bootstrap import (
    IssuedToken,
    RemoteSpec,
    bootstrap,
    remove_token_secrets,
    teardown,
    wait_namespace_gone,
)
from mtv_register.kube import NAMESPACE, Kube
from mtv_register.provider_secret import ProviderSecret
from mtv_register.records import Change

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
class Side:
    """One cluster of the pair, as the host will see it."""

    role: str  # "source" or "destination"
    context: str
    provider: str
    uses_host_provider: bool  # the destination is the MTV host: its local `host` provider
    kube: Kube | None = None
    url: str = ""
    ca_pem: str | None = field(default=None, repr=False)
    token: IssuedToken | None = None
    secret_changed: bool = False  # the provider Secret was rewritten: Forklift re-tests it
    recorded: Obj | None = field(default=None, repr=False)  # the provider Secret, as first read


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
        return any(
            c.action not in ("unchanged", "would create", "would update") for c in self.changes
        )


Progress = Callable[[str], None]


def validate(options: PairOptions) -> None:
    """Refuse options that cannot work; the CLI asks before it warns about what they will do."""
    _validate(options)


def _check_distinct(options: PairOptions) -> None:
    if options.source == options.destination:
        raise errors.UsageError(
            f'the source and the destination are the same context ("{options.source}")',
            fix="pass two different contexts with --source and --destination",
        )


def _connect_pair(
    options: PairOptions,
) -> tuple[clusters.Kubeconfig, list[Side], dict[str, Kube]]:
    """The kubeconfig, the pair's sides each with its client, and one client per context (the
    host's too)."""
    kubeconfig = clusters.load_kubeconfig(options.kubeconfig)
    sides = sides_of(options)
    contexts = {options.host_context, *(s.context for s in sides)}
    kubes = {ctx: _connect(kubeconfig, ctx, options) for ctx in contexts}
    for side in sides:
        side.kube = kubes[side.context]
    return kubeconfig, sides, kubes


def _validate(options: PairOptions) -> None:
    _check_distinct(options)
    if options.timeout <= 0:
        raise errors.UsageError(
            f"--timeout must be more than 0s, not {options.timeout:g}s",
            fix="pass a positive duration, e.g. --timeout 5m",
        )
    ca = options.ca_source
    if ca not in clusters.CA_SOURCES and not ca.startswith("file:"):
        raise errors.UsageError(
            f'--ca-source "{ca}" is not known', fix="use root, kubeconfig, system or file:PATH"
        )
    if options.insecure_skip_tls_verify and options.ca_source != "root":
        raise errors.UsageError(
            "--insecure-skip-tls-verify cannot be used with --ca-source "
            f"{ca}: Forklift never takes a CA together with skipping TLS "
            "verification",
            fix="drop one of the two",
        )
    if options.remote.token_type not in ("secret", "bound"):
        raise errors.UsageError(
            f'--token-type "{options.remote.token_type}" is not known', fix="use secret or bound"
        )
    if options.remote.bound and options.remote.token_ttl < 600:
        raise errors.UsageError(
            f"--token-ttl must be at least 10m for bound tokens, not {options.remote.token_ttl}s",
            fix="the API server refuses shorter TokenRequests: pass e.g. --token-ttl 24h",
        )
    if options.url_source not in clusters.URL_SOURCES:
        raise errors.UsageError(
            f'--url-source "{options.url_source}" is not known',
            fix="use kubeconfig or infrastructure",
        )
    for flag, value in (
        ("--source-name", options.source_name),
        ("--destination-name", options.destination_name),
        ("--service-account", options.remote.service_account),
        ("--sa-namespace", options.remote.namespace),
    ):
        if value is not None and not naming.is_dns1123_label(value):
            raise errors.UsageError(
                f'{flag} "{value}" is not a valid name',
                fix="use lower-case letters, digits and '-', starting and ending with a letter "
                "or digit, at most 63 characters",
            )
    if options.ca_source.startswith("file:"):
        clusters.read_pem(Path(options.ca_source[5:]).expanduser())


def sides_of(options: PairOptions) -> list[Side]:
    host = options.host_context
    return [
        Side(
            "source",
            options.source,
            options.source_name or naming.provider_name(options.source),
            False,
        ),
        Side(
            "destination",
            options.destination,
            options.destination_name
            or (
                naming.HOST_PROVIDER_NAME
                if options.destination == host
                else naming.provider_name(options.destination)
            ),
            options.destination == host,
        ),
    ]


def _url_and_ca(side: Side, options: PairOptions, kubeconfig: clusters.Kubeconfig) -> None:
    assert side.kube is not None
    override = options.source_url if side.role == "source" else options.destination_url
    if override:
        side.url = override
    elif options.url_source == "infrastructure":
        side.url = clusters.infrastructure_url(side.kube)
    else:
        side.url = side.kube.url
    if options.insecure_skip_tls_verify:
        side.ca_pem, origin = None, "nowhere (TLS verification skipped)"
    elif options.ca_source == "root":
        side.ca_pem, origin = clusters.root_ca(side.kube), f"kube-root-ca.crt of {side.context}"
    elif options.ca_source == "kubeconfig":
        side.ca_pem = clusters.kubeconfig_ca(kubeconfig, side.context)
        origin = f"the kubeconfig entry of {side.context}"
        if side.ca_pem is None:
            raise errors.UsageError(
                f"the kubeconfig entry of {side.context} carries no CA",
                fix="use --ca-source root or --ca-source file:PATH",
            )
    elif options.ca_source == "system":
        side.ca_pem, origin = None, "the system trust store"
    else:
        path = Path(options.ca_source[5:]).expanduser()
        side.ca_pem, origin = clusters.read_pem(path), str(path)
    if side.ca_pem:
        clusters.check_not_expired(side.ca_pem, origin)
    clusters.prove_tls(
        side.url, side.ca_pem, insecure=options.insecure_skip_tls_verify, origin=origin
    )


def _prove_token(side: Side, options: PairOptions) -> None:
    """The service account's own token, over the URL and CA Forklift will use, can list what
    Forklift's connection test lists first."""
    assert side.token is not None and side.kube is not None
    kube = side.kube.connector.with_token(  # the same backend as the kubeconfig's clients
        side.url,
        side.token.token,
        ca_pem=side.ca_pem,
        insecure=options.insecure_skip_tls_verify,
        context=f"{side.context} as {side.token.service_account}",
    )
    account = f'serviceaccount "{side.token.namespace}/{side.token.service_account}"'
    try:
        kube.list(NAMESPACE, limit=1)
    except errors.AuthenticationFailed:
        # Not the kubeconfig's credentials: the token just issued, refused where Forklift will go.
        raise errors.AuthenticationFailed(
            f"{side.url} refused the token of {account} of {side.context} (401 Unauthorized)",
            fix=f"the {side.role} URL must be the API server of {side.context} itself: check "
            f"--{side.role}-url or --url-source",
        ) from None
    except errors.PermissionDenied as error:
        raise errors.PermissionDenied(
            f"the token of {account} cannot list namespaces, the first step of Forklift's "
            f"connection test: {error.cause}",
            fix="bind a ClusterRole with the seed's rules (drop --cluster-role, or widen it)",
        ) from None
    finally:
        kube.close()


def _connect(kubeconfig: clusters.Kubeconfig, context: str, options: PairOptions) -> Kube:
    return options.connector.connect(kubeconfig, context)


class _Recorder:
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
    _validate(options)
    deadline = time.monotonic() + options.timeout
    say = progress or (lambda message: None)
    kubeconfig, sides, kubes = _connect_pair(options)
    recorder = _Recorder(progress)
    verdict_phase = False
    try:
        remote = [s for s in sides if not s.uses_host_provider]
        host = kubes[options.host_context]

        say(f"preflight: MTV host {host.context}, {', '.join(s.context for s in remote)}")
        with run_deadline.pool(len(remote) + 1) as pool:
            host_check = pool.submit(_preflight_host, host, options, sides)
            checks = [pool.submit(_url_and_ca, side, options, kubeconfig) for side in remote]
            namespace, existing = host_check.result()
            for check in checks:
                check.result()
        for side in remote:
            forklift.check_name_free(
                existing.get(side.provider), side.provider, side.url, host.context
            )
            if side.provider not in existing:
                twins = sorted(
                    name
                    for name, provider in existing.items()
                    if (provider.get("spec") or {}).get("url") == side.url
                )
                if twins:
                    say(
                        f"warning: {side.url} ({side.context}) already has Provider "
                        f"{', '.join(twins)} on {host.context}; a second one, "
                        f'"{side.provider}", is created (pass --{side.role}-name '
                        f"{twins[0]} to use it)"
                    )
        result = PairResult(host.context, namespace)
        if dry_run:
            return _render(result, sides, options, namespace)

        say("bootstrap: " + ", ".join(s.context for s in remote))
        with run_deadline.pool(len(remote)) as pool:
            futures = [
                pool.submit(
                    _bootstrap_side,
                    side,
                    options,
                    recorder,
                    deadline,
                    _reusable_bound_token(host, namespace, side, options, existing),
                    (host, namespace) if side.provider in existing else None,
                )
                for side in remote
            ]
            for future in futures:
                future.result()

        for side in remote:
            assert side.token is not None
            creds = _credentials(side, options)
            provider, changed = forklift.ensure_provider(
                host,
                namespace,
                side.provider,
                creds,
                existing.get(side.provider),
                recorder,
                legacy_cacert=options.legacy_cacert,
                current_secret=side.recorded,
                settings=_settings(side, options),
                pair=forklift.pair_key(sides[0].provider, sides[1].provider),
            )
            if not changed and verdicts.verdict(provider) in ("failed", "retrying"):
                # The tool just proved these credentials: let Forklift see the repaired cause.
                forklift.request_retest(host, namespace, side.provider, recorder)
                changed = True
            side.secret_changed = changed and side.provider in existing
        expected = {
            side.provider: forklift.take_up(host, namespace, side.provider, recorder)
            for side in remote
            if side.secret_changed
        }

        say("waiting for Forklift to test the providers")
        verdict_phase = True  # from here on, what was saved stays: a re-run repairs it
        ready = verdicts.wait_all_ready(
            host,
            namespace,
            [side.provider for side in sides],
            max(0.1, deadline - time.monotonic()),
            expected={name: version for name, version in expected.items() if version},
            progress=progress,
        )
        if options.remote.bound:
            # The bound tokens are proven and in use: a long-lived token Secret of the same
            # account (a registration of --token-type secret before) goes, revoking its token.
            for side in remote:
                assert side.kube is not None
                remove_token_secrets(side.kube, _remote_spec(side, options), recorder)
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
        return result
    except (KeyboardInterrupt, run_deadline.Cancelled):
        run_deadline.cancel()  # what still runs in other threads stops at its next request
        if verdict_phase:
            raise run_deadline.Interrupted(
                "interrupted while waiting for Forklift: the registration is saved; `status` "
                "shows Forklift's verdict, and a re-run waits for it again",
                [],
            ) from None
        with run_deadline.shielded(5.0):
            left = _roll_back(kubes, recorder.changes, say, 5.0)
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
            raise
        left = _roll_back(kubes, recorder.changes, say, max(5.0, deadline - time.monotonic()))
        if not left:
            raise
        raise type(refusal)(
            f"{refusal.cause} (could not remove what this run created: {'; '.join(left)})",
            fix=refusal.fix,
        ) from None
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


def _remote_spec(side: Side, options: PairOptions) -> RemoteSpec:
    """What to create on the side's cluster: a Submariner destination gets the extra role."""
    if options.submariner is not None and side.role == "destination":
        return replace(options.remote, submariner=options.submariner)
    return options.remote


def _settings(side: Side, options: PairOptions) -> forklift.Settings | None:
    """Forklift reads `submariner` on the source Provider only."""
    if options.submariner is None or side.role != "source":
        return None
    return {"submariner": "true" if options.submariner else None}


def _bootstrap_side(
    side: Side,
    options: PairOptions,
    recorder: _Recorder,
    deadline: float,
    reuse: IssuedToken | None = None,
    registered: tuple[Kube, str] | None = None,  # (host, namespace) when the Provider exists
) -> None:
    assert side.kube is not None
    kept = _kept_token(side, options, *registered) if registered and reuse is None else None
    side.token = bootstrap(
        side.kube,
        _remote_spec(side, options),
        recorder,
        timeout=max(0.0, deadline - time.monotonic()),
        reuse=reuse or kept,
    )
    try:
        _prove_token(side, options)
    except errors.AuthenticationFailed:
        if kept is None or registered is None:
            raise
        # The Provider's token stopped working: revoked, or replaced by a rotation meanwhile.
        newer = _kept_token(side, options, *registered)
        side.token = (
            newer
            if newer is not None and newer.token != kept.token
            else bootstrap(
                side.kube,
                _remote_spec(side, options),
                recorder,
                timeout=max(0.0, deadline - time.monotonic()),
            )
        )
        _prove_token(side, options)


def _kept_token(side: Side, options: PairOptions, host: Kube, namespace: str) -> IssuedToken | None:
    """The token the provider Secret holds, when it comes from a token Secret of this service
    account: a re-run keeps it (a rotated one too) instead of switching back to the first."""
    from mtv_register.kube import SECRET

    if options.remote.bound:
        return None
    side.recorded = host.get(SECRET, forklift.secret_name_for(side.provider), namespace)
    if side.recorded is None:
        return None
    held = ProviderSecret.from_secret(side.recorded)
    ref_namespace, ref = held.token_secret
    account = options.remote.service_account
    if not held.token or ref_namespace != options.remote.namespace:
        return None
    if ref != naming.token_secret_name(account) and not ref.startswith(
        naming.token_secret_generate_name(account)
    ):
        return None
    return IssuedToken(ref, ref_namespace, account, held.token_created, held.token)


def _credentials(side: Side, options: PairOptions) -> ProviderSecret:
    assert side.token is not None
    token = side.token
    return ProviderSecret(
        url=side.url,
        token=token.token,
        ca_pem=side.ca_pem,
        insecure=options.insecure_skip_tls_verify,
        token_secret_ref="" if options.remote.bound else f"{token.namespace}/{token.secret_name}",
        token_created=token.created,
        token_type=options.remote.token_type,
        service_account_ref=f"{token.namespace}/{token.service_account}",
        token_expires=token.expires,
        cluster_role=("existing:" if options.remote.existing_role else "")
        + options.remote.role_name,
        token_ttl=options.remote.token_ttl,
    )


def _reusable_bound_token(
    host: Kube, namespace: str, side: Side, options: PairOptions, existing: dict[str, Obj]
) -> IssuedToken | None:
    """A re-run with bound tokens keeps the Provider's token while more than half of its
    lifetime is left, so it changes nothing; a fresh one is requested otherwise."""
    import datetime as dt

    from mtv_register.kube import SECRET

    if not options.remote.bound or side.provider not in existing:
        return None
    secret = host.get(SECRET, forklift.secret_name_for(side.provider), namespace)
    if secret is None:
        return None
    held = ProviderSecret.from_secret(secret)
    expires = held.expires_at
    if not held.bound or expires is None or not held.token:
        return None
    if (expires - dt.datetime.now(dt.UTC)).total_seconds() < options.remote.token_ttl / 2:
        return None
    return IssuedToken(
        "",
        options.remote.namespace,
        options.remote.service_account,
        held.token_created,
        held.token,
        expires=held.token_expires,
    )


def _render(
    result: PairResult, sides: list[Side], options: PairOptions, namespace: str
) -> PairResult:
    """--dry-run: every manifest for every cluster, tokens redacted; nothing is written."""
    for side in sides:
        if side.uses_host_provider:
            continue
        for obj in _remote_spec(side, options).manifests():
            result.manifests.append((side.context, obj))
        creds = ProviderSecret(
            url=side.url,
            token=manifests.REDACTED,
            ca_pem=side.ca_pem,
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
                    side.provider, namespace, side.url, _settings(side, options)
                ),
            )
        )
    return result


# -- unregister ----------------------------------------------------------------------------------


def unregister_pair(
    options: PairOptions, *, keep_remote: bool = False, progress: Progress | None = None
) -> list[Change]:
    """Remove the pair's registration. A Provider another pair still uses stays (the pair
    leaves its record); a cluster's credentials go only when no Provider on the host points
    at that cluster any more. Names that match no Provider are refused, touching nothing."""
    _check_distinct(options)
    _, sides, kubes = _connect_pair(options)
    recorder = _Recorder(progress)
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
            s.provider: forklift.release_provider(host, namespace, s.provider, pair, recorder)
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


def _fleet_entry(
    options: PairOptions, work: Callable[[PairOptions], tuple[list[ProviderState], bool]]
) -> FleetResult:
    """One pair of a fleet: `work` gives (providers, changed); a failure is the pair's result."""
    label = f"{options.source} -> {options.destination}"
    started = time.monotonic()
    try:
        providers, changed = work(options)
    except errors.MtvRegisterError as failure:
        return FleetResult(
            label,
            False,
            time.monotonic() - started,
            error=failure.line(),
            exit_code=failure.exit_code,
        )
    return FleetResult(label, True, time.monotonic() - started, providers, changed)


def unregister_fleet(
    pairs: list[PairOptions], *, keep_remote: bool, parallel: int
) -> list[FleetResult]:
    """Unregister every pair, `parallel` at a time; one failing pair never stops the others.
    Shared Providers and credentials go with the last pair that uses them."""

    def one(options: PairOptions) -> FleetResult:
        def work(pair: PairOptions) -> tuple[list[ProviderState], bool]:
            changes = unregister_pair(pair, keep_remote=keep_remote)
            return [], any(c.action != "unchanged" for c in changes)

        return _fleet_entry(options, work)

    with run_deadline.pool(parallel) as pool:
        return list(pool.map(one, pairs))


# -- status --------------------------------------------------------------------------------------


def provider_status(host: Kube, namespace: str) -> list[Obj]:
    """One row per Provider on the host: readiness, failing condition, URL, token age, CA
    expiry, last rotation."""
    from mtv_register.kube import SECRET

    rows = []
    for name, provider in sorted(forklift.list_providers(host, namespace).items()):
        spec = provider.get("spec") or {}
        row: Obj = {
            "name": name,
            "namespace": namespace,
            "url": spec.get("url", "") or "(local host)",
            "managed": forklift.is_managed(provider),
            "phase": (provider.get("status") or {}).get("phase", "Unknown"),
            "ready": verdicts.verdict(provider) == "ready",
            "message": "",
            "tokenCreated": "",
            "tokenType": "",
            "tokenExpires": "",
            "caExpires": "",
            "tokenSecret": "",
            "caOnlyUnderCacert": False,
            "submariner": (spec.get("settings") or {}).get("submariner") == "true",
        }
        if verdicts.verdict(provider) in ("failed", "retrying"):
            row["message"] = verdicts.failure_message(provider)
        ref = spec.get("secret") or {}
        secret = (
            host.get(SECRET, ref["name"], ref.get("namespace") or namespace)
            if ref.get("name")
            else None
        )
        if secret is not None:
            held = ProviderSecret.from_secret(secret)
            row["tokenCreated"] = held.token_created
            row["tokenType"] = held.token_type
            row["tokenExpires"] = held.token_expires
            row["tokenSecret"] = held.token_secret_ref
            row["rotatedAt"] = held.rotated_at
            # Forklift 2.12 reads `ca.crt`, then `cacert`, which 2.14 is to drop.
            row["caOnlyUnderCacert"] = held.ca_only_under_cacert
            if held.ca_pem:
                try:
                    row["caExpires"] = naming.stamp(clusters.ca_expiry(held.ca_pem))
                except errors.MtvRegisterError:
                    row["caExpires"] = "(not a PEM certificate)"
        rows.append(row)
    return rows


def status(
    *,
    host: str,
    kubeconfig: str | Path | None = None,
    mtv_namespace: str | None = None,
    remotes: dict[str, str] | None = None,
    connector: clusters.Connector | None = None,
) -> Obj:
    connector = connector or clusters.Connector()
    config = clusters.load_kubeconfig(kubeconfig)
    host_kube = connector.connect(config, host)
    try:
        namespace = forklift.find_mtv_namespace(host_kube, mtv_namespace)
        rows = provider_status(host_kube, namespace)
    finally:
        host_kube.close()
    remote_rows = []
    in_use = {row["name"]: row.get("tokenSecret", "").partition("/")[2] for row in rows}
    for context, provider in (remotes or {}).items():
        remote = connector.connect(config, context)
        remote_rows.append(_remote_objects(remote, context, provider, in_use.get(provider, "")))
    return {"host": host, "namespace": namespace, "providers": rows, "remotes": remote_rows}


def _remote_objects(kube: Kube, context: str, provider: str, in_use: str = "") -> Obj:
    """The objects behind a Provider on its cluster; `leftoverTokenSecrets` are token Secrets
    of the account other than the one the Provider uses (an interrupted rotation's): each one's
    token still works until it is deleted."""
    from mtv_register.kube import CLUSTER_ROLE, CLUSTER_ROLE_BINDING, SECRET, SERVICE_ACCOUNT

    spec = RemoteSpec()
    selector = f"{naming.MANAGED_BY_LABEL}={naming.MANAGED_BY}"
    try:
        secrets = kube.list(SECRET, spec.namespace, label_selector=selector).get("items", [])
        return {
            "context": context,
            "provider": provider,
            "clusterRole": kube.get(CLUSTER_ROLE, spec.role_name) is not None,
            "serviceAccount": kube.get(SERVICE_ACCOUNT, spec.service_account, spec.namespace)
            is not None,
            "clusterRoleBinding": kube.get(CLUSTER_ROLE_BINDING, spec.service_account) is not None,
            "tokenSecrets": [s["metadata"]["name"] for s in secrets],
            "leftoverTokenSecrets": [
                s["metadata"]["name"]
                for s in secrets
                if s.get("type") == naming.SERVICE_ACCOUNT_TOKEN_TYPE
                and in_use
                and s["metadata"]["name"] != in_use
            ],
        }
    finally:
        kube.close()


# -- fleets ----------------------------------------------------------------------------------------

PAIR_KEYS = {
    "source",
    "destination",
    "host",
    "sourceName",
    "destinationName",
    "mtvNamespace",
    "sourceUrl",
    "destinationUrl",
}


@dataclass
class FleetResult:
    pair: str
    ok: bool
    seconds: float
    providers: list[ProviderState] = field(default_factory=list)
    changed: bool = False
    error: str = ""
    exit_code: int = 0


def load_pairs(path: Path, defaults: PairOptions) -> list[PairOptions]:
    """A fleet file: `pairs:` (or a bare list) of {source, destination[, host, sourceName,
    destinationName, mtvNamespace, sourceUrl, destinationUrl]}; the rest comes from flags."""
    import dataclasses

    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise errors.UsageError(
            f"--pairs {path} cannot be read: {err.strerror}", fix="pass a readable YAML file"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise errors.UsageError(
            f"--pairs {path} is not valid YAML{where}",
            fix="fix the file (a list of {source, destination} entries)",
        ) from None
    entries = data.get("pairs") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise errors.UsageError(
            f"--pairs {path} has no list of pairs",
            fix="write `pairs:` followed by entries with source and destination",
        )
    pairs = []
    for index, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise errors.UsageError(
                f"--pairs {path}: entry {index} is not a mapping",
                fix="give each entry source: and destination:",
            )
        unknown = sorted(set(entry) - PAIR_KEYS)
        missing = [k for k in ("source", "destination") if not entry.get(k)]
        if unknown or missing:
            problem = (
                f"unknown key {', '.join(unknown)}"
                if unknown
                else f"missing {' and '.join(missing)}"
            )
            raise errors.UsageError(
                f"--pairs {path}: entry {index}: {problem}",
                fix=f"use only: {', '.join(sorted(PAIR_KEYS))}",
            )
        pairs.append(
            dataclasses.replace(
                defaults,
                source=str(entry["source"]),
                destination=str(entry["destination"]),
                host=entry.get("host", defaults.host),
                source_name=entry.get("sourceName"),
                destination_name=entry.get("destinationName"),
                mtv_namespace=entry.get("mtvNamespace", defaults.mtv_namespace),
                source_url=entry.get("sourceUrl"),
                destination_url=entry.get("destinationUrl"),
            )
        )
    for pair in pairs:
        _validate(pair)
    return pairs


def register_fleet(
    pairs: list[PairOptions],
    *,
    parallel: int,
    progress: Callable[[FleetResult], None] | None = None,
) -> list[FleetResult]:
    """Register every pair, `parallel` at a time; one failing pair never stops the others."""
    from concurrent.futures import as_completed

    def one(options: PairOptions) -> FleetResult:
        def work(pair: PairOptions) -> tuple[list[ProviderState], bool]:
            result = register_pair(pair)
            return result.providers, result.mutated

        return _fleet_entry(options, work)

    results: dict[int, FleetResult] = {}
    with run_deadline.pool(parallel) as pool:
        futures = {pool.submit(one, pair): index for index, pair in enumerate(pairs)}
        for future in as_completed(futures):
            outcome = future.result()
            results[futures[future]] = outcome
            if progress is not None:
                progress(outcome)
    return [results[index] for index in range(len(pairs))]
