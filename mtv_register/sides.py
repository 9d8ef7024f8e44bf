"""The two sides of a pair, as the MTV host will see them: the options checked, each side's
Provider name and client, its API URL and CA (proved over TLS), the proof of its service
account's token, and what its cluster and its Provider get from the options.

Every value here is frozen: a step returns what it found (an `Endpoint`, an `IssuedToken`)
and the registration passes it on, so no step reads what another left on a shared object."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtv_register import clusters, errors, forklift, naming
from mtv_register import deadline as run_deadline
from mtv_register.bootstrap import RemoteSpec
from mtv_register.kube import NAMESPACE, Kube
from mtv_register.provider_secret import ProviderSecret
from mtv_register.timing import Expired, poll_until
from mtv_register.tokens import IssuedToken

if TYPE_CHECKING:
    from mtv_register.orchestrator import PairOptions

Obj = dict[str, Any]


@dataclass(frozen=True)
class Side:
    """One cluster of the pair, as the host will see it; `kube` is set once connected."""

    role: str  # "source" or "destination"
    context: str
    provider: str
    uses_host_provider: bool  # the destination is the MTV host: its local `host` provider
    kube: Kube | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Endpoint:
    """Where Forklift will reach a side: its API URL and the CA that verifies it (None: the
    system trust store, or TLS verification skipped)."""

    url: str
    ca_pem: str | None = field(default=None, repr=False)


def validate(options: PairOptions) -> None:
    """Refuse options that cannot work; the CLI asks before it warns about what they will do."""
    check_distinct(options)
    run_deadline.check_timeout(options.timeout)
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


def check_distinct(options: PairOptions) -> None:
    if options.source == options.destination:
        raise errors.UsageError(
            f'the source and the destination are the same context ("{options.source}")',
            fix="pass two different contexts with --source and --destination",
        )


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


def connect_pair(
    options: PairOptions,
) -> tuple[clusters.Kubeconfig, list[Side], dict[str, Kube]]:
    """The kubeconfig, the pair's sides each with its client, and one client per context (the
    host's too)."""
    kubeconfig = clusters.load_kubeconfig(options.kubeconfig)
    sides = sides_of(options)
    contexts = {options.host_context, *(s.context for s in sides)}
    kubes = {ctx: _connect(kubeconfig, ctx, options) for ctx in contexts}
    return kubeconfig, [replace(side, kube=kubes[side.context]) for side in sides], kubes


def _connect(kubeconfig: clusters.Kubeconfig, context: str, options: PairOptions) -> Kube:
    return options.connector.connect(kubeconfig, context)


def url_and_ca(side: Side, options: PairOptions, kubeconfig: clusters.Kubeconfig) -> Endpoint:
    """The side's URL and CA as the options choose them, the CA not expired and proved to
    verify the URL over TLS."""
    assert side.kube is not None
    override = options.source_url if side.role == "source" else options.destination_url
    if override:
        url = override
    elif options.url_source == "infrastructure":
        url = clusters.infrastructure_url(side.kube)
    else:
        url = side.kube.url
    ca_pem: str | None
    if options.insecure_skip_tls_verify:
        ca_pem, origin = None, "nowhere (TLS verification skipped)"
    elif options.ca_source == "root":
        ca_pem, origin = clusters.root_ca(side.kube), f"kube-root-ca.crt of {side.context}"
    elif options.ca_source == "kubeconfig":
        ca_pem = clusters.kubeconfig_ca(kubeconfig, side.context)
        origin = f"the kubeconfig entry of {side.context}"
        if ca_pem is None:
            raise errors.UsageError(
                f"the kubeconfig entry of {side.context} carries no CA",
                fix="use --ca-source root or --ca-source file:PATH",
            )
    elif options.ca_source == "system":
        ca_pem, origin = None, "the system trust store"
    else:
        path = Path(options.ca_source[5:]).expanduser()
        ca_pem, origin = clusters.read_pem(path), str(path)
    if ca_pem:
        clusters.check_not_expired(ca_pem, origin)
    clusters.prove_tls(url, ca_pem, insecure=options.insecure_skip_tls_verify, origin=origin)
    return Endpoint(url, ca_pem)


def prove_token(side: Side, endpoint: Endpoint, token: IssuedToken, options: PairOptions) -> None:
    """The service account's own token, over the URL and CA Forklift will use, can list what
    Forklift's connection test lists first."""
    assert side.kube is not None
    kube = side.kube.connector.with_token(  # the same backend as the kubeconfig's clients
        endpoint.url,
        token.token,
        ca_pem=endpoint.ca_pem,
        insecure=options.insecure_skip_tls_verify,
        context=f"{side.context} as {token.service_account}",
    )
    account = f'serviceaccount "{token.namespace}/{token.service_account}"'
    try:
        # A token just issued may be refused for a moment: after an account of the same name
        # was deleted and made again, kube-apiserver checks the token's account uid against
        # its informer's copy, which may still be the old account's.
        poll_until(
            lambda: kube.list(NAMESPACE, limit=1),
            timeout=kube.timing.fresh_token_grace,
            wait=kube.timing.fresh_token_poll,
            pending=(errors.AuthenticationFailed,),
        )
    except Expired:
        # Not the kubeconfig's credentials: the token just issued, refused where Forklift will go.
        raise errors.AuthenticationFailed(
            f"{endpoint.url} refused the token of {account} of {side.context} (401 Unauthorized)",
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


def remote_spec(side: Side, options: PairOptions) -> RemoteSpec:
    """What to create on the side's cluster: a Submariner destination gets the extra role."""
    if options.submariner is not None and side.role == "destination":
        return replace(options.remote, submariner=options.submariner)
    return options.remote


def settings(side: Side, options: PairOptions) -> forklift.Settings | None:
    """Forklift reads `submariner` on the source Provider only."""
    if options.submariner is None or side.role != "source":
        return None
    return {"submariner": "true" if options.submariner else None}


def credentials(endpoint: Endpoint, token: IssuedToken, options: PairOptions) -> ProviderSecret:
    """What a side's provider Secret holds: its URL, CA and the token just issued."""
    return ProviderSecret(
        url=endpoint.url,
        token=token.token,
        ca_pem=endpoint.ca_pem,
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


def kept_token(recorded: Obj | None, remote: RemoteSpec) -> IssuedToken | None:
    """The token the provider Secret holds, when it comes from a token Secret of this service
    account: a re-run keeps it (a rotated one too) instead of switching back to the first."""
    if recorded is None or remote.bound:
        return None
    held = ProviderSecret.from_secret(recorded)
    ref_namespace, ref = held.token_secret
    account = remote.service_account
    if not held.token or ref_namespace != remote.namespace:
        return None
    if ref != naming.token_secret_name(account) and not ref.startswith(
        naming.token_secret_generate_name(account)
    ):
        return None
    return IssuedToken(ref, ref_namespace, account, held.token_created, held.token)


def reusable_bound_token(recorded: Obj | None, remote: RemoteSpec) -> IssuedToken | None:
    """A re-run with bound tokens keeps the Provider's token while more than half of its
    lifetime is left, so it changes nothing; a fresh one is requested otherwise."""
    if recorded is None or not remote.bound:
        return None
    held = ProviderSecret.from_secret(recorded)
    expires = held.expires_at
    if not held.bound or expires is None or not held.token:
        return None
    if (expires - dt.datetime.now(dt.UTC)).total_seconds() < remote.token_ttl / 2:
        return None
    return IssuedToken(
        "",
        remote.namespace,
        remote.service_account,
        held.token_created,
        held.token,
        expires=held.token_expires,
    )
