"""The two sides of a pair, as the MTV host will see them: the options checked, each side's
Provider name and client, its API URL and CA (proved over TLS), the proof of its service
account's token, and what its cluster and its Provider get from the options."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtv_register import clusters, errors, forklift, naming
from mtv_register.bootstrap import RemoteSpec
from mtv_register.kube import NAMESPACE, Kube
from mtv_register.provider_secret import ProviderSecret
from mtv_register.timing import Expired, poll_until
from mtv_register.tokens import IssuedToken

if TYPE_CHECKING:
    from mtv_register.orchestrator import PairOptions

Obj = dict[str, Any]


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


def validate(options: PairOptions) -> None:
    """Refuse options that cannot work; the CLI asks before it warns about what they will do."""
    check_distinct(options)
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
    for side in sides:
        side.kube = kubes[side.context]
    return kubeconfig, sides, kubes


def _connect(kubeconfig: clusters.Kubeconfig, context: str, options: PairOptions) -> Kube:
    return options.connector.connect(kubeconfig, context)


def url_and_ca(side: Side, options: PairOptions, kubeconfig: clusters.Kubeconfig) -> None:
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


def prove_token(side: Side, options: PairOptions) -> None:
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


def credentials(side: Side, options: PairOptions) -> ProviderSecret:
    """What the side's provider Secret holds: its URL, CA and the token just issued."""
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
