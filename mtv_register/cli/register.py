"""`register`: one pair, or a fleet with --pairs; prompts for what is missing on a terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mtv_register.cli import fleet, prompts
from mtv_register.cli.common import (
    BurstOption,
    Client,
    ClientOption,
    DestinationOption,
    ExplainOption,
    KubeconfigOption,
    MtvNamespaceOption,
    OcPathOption,
    Output,
    OutputOption,
    QpsOption,
    SaNamespaceOption,
    SourceOption,
    TimeoutOption,
    TokenType,
    YesOption,
    check_client,
    connector_of,
    duration,
    err,
    explaining,
    may_prompt,
    render,
    timeout_seconds,
)

if TYPE_CHECKING:
    from mtv_register.orchestrator import PairResult


def register(
    ctx: typer.Context,
    source: SourceOption = None,
    destination: DestinationOption = None,
    host: Annotated[
        str | None, typer.Option(help="Context of the MTV host (default: the destination).")
    ] = None,
    kubeconfig: KubeconfigOption = None,
    mtv_namespace: MtvNamespaceOption = None,
    source_name: Annotated[
        str | None,
        typer.Option(help="Provider name of the source (default: its context, DNS-1123)."),
    ] = None,
    destination_name: Annotated[
        str | None,
        typer.Option(
            help="Provider name of the destination (default: its context; `host` when the "
            "destination is the MTV host)."
        ),
    ] = None,
    service_account: Annotated[
        str, typer.Option(help="ServiceAccount created on each cluster.")
    ] = "mtv-provider",
    sa_namespace: SaNamespaceOption = "mtv-register",
    role_name: Annotated[
        str, typer.Option(help="ClusterRole with the seed's rules.")
    ] = "live-migration-role",
    cluster_role: Annotated[
        str | None,
        typer.Option(
            help="Bind this existing (narrower) ClusterRole instead of creating the seed's."
        ),
    ] = None,
    ca_source: Annotated[
        str,
        typer.Option(
            help="Where the CA comes from: root (kube-root-ca.crt), kubeconfig, system, file:PATH."
        ),
    ] = "root",
    insecure_skip_tls_verify: Annotated[
        bool,
        typer.Option(help="Do not verify the API servers' certificates (recorded in the Secret)."),
    ] = False,
    url_source: Annotated[
        str,
        typer.Option(
            help="Where the API URL comes from: kubeconfig or infrastructure (OpenShift)."
        ),
    ] = "kubeconfig",
    source_url: Annotated[
        str | None, typer.Option(help="API URL of the source, as the MTV host reaches it.")
    ] = None,
    destination_url: Annotated[
        str | None, typer.Option(help="API URL of the destination, as the MTV host reaches it.")
    ] = None,
    legacy_cacert: Annotated[
        bool, typer.Option(help="Also write the CA under the deprecated `cacert` key.")
    ] = True,
    submariner: Annotated[
        bool | None,
        typer.Option(
            "--submariner/--no-submariner",
            help="Live migration over Submariner: sets the source Provider's "
            "settings.submariner and lets the destination's account manage ServiceExports "
            "(an additional ClusterRole). Left as it is when not given.",
        ),
    ] = None,
    token_type: Annotated[
        TokenType,
        typer.Option(
            help="secret: a long-lived token Secret (the seed's way); bound: an expiring token "
            "from the TokenRequest API."
        ),
    ] = TokenType.secret,
    token_ttl: Annotated[
        str, typer.Option(help="Lifetime of a bound token (at least 10m).")
    ] = "24h",
    timeout: TimeoutOption = "5m",
    dry_run: Annotated[
        bool, typer.Option(help="Write nothing; print every manifest as YAML, tokens redacted.")
    ] = False,
    output: OutputOption = Output.text,
    pairs: Annotated[
        Path | None,
        typer.Option(
            help="Register a fleet: a YAML list of {source, destination[, host, sourceName, "
            "destinationName]} pairs; other flags apply to every pair."
        ),
    ] = None,
    parallel: Annotated[
        int, typer.Option(help="With --pairs: pairs registered at once.", min=1)
    ] = 4,
    yes: YesOption = False,
    interactive: Annotated[
        bool | None, typer.Option(help="Prompt for missing choices (default: when on a terminal).")
    ] = None,
    client: ClientOption = Client.kubernetes,
    oc_path: OcPathOption = None,
    explain: ExplainOption = False,
    qps: QpsOption = None,
    burst: BurstOption = None,
) -> None:
    """Register a source/destination pair with MTV: credentials on both, Providers on the host."""
    from mtv_register import deadline
    from mtv_register.bootstrap import RemoteSpec
    from mtv_register.errors import UsageError
    from mtv_register.orchestrator import PairOptions, register_pair
    from mtv_register.sides import validate

    check_client(client, oc_path, explain)
    seconds = timeout_seconds(timeout)
    if pairs is not None and dry_run:
        raise UsageError(
            "--dry-run renders one pair: with --pairs it would register the whole fleet",
            fix="drop --dry-run, or dry-run each pair with --source/--destination",
        )
    if pairs is not None and (source or destination):
        raise UsageError(
            "--pairs and --source/--destination exclude each other",
            fix="put every pair in the --pairs file",
        )
    prompting = may_prompt(interactive, yes) and pairs is None
    if prompting and (source is None or destination is None):
        source, destination, host = prompts.ask_contexts(kubeconfig, source, destination, host)
    if pairs is None:
        missing = [
            flag
            for flag, value in (("--source", source), ("--destination", destination))
            if value is None
        ]
        if missing:
            raise UsageError(
                f"missing option {' and '.join(missing)}",
                fix="pass it, or run on a terminal to be prompted",
            )
    options = PairOptions(
        source=source or "",  # with --pairs, each pair names its own source and destination
        destination=destination or "",
        host=host,
        kubeconfig=kubeconfig,
        mtv_namespace=mtv_namespace,
        source_name=source_name,
        destination_name=destination_name,
        remote=RemoteSpec(
            service_account=service_account,
            namespace=sa_namespace,
            role_name=cluster_role or role_name,
            existing_role=cluster_role is not None,
            token_type=token_type.value,
            token_ttl=int(duration(token_ttl, "--token-ttl")),
        ),
        ca_source=ca_source,
        insecure_skip_tls_verify=insecure_skip_tls_verify,
        url_source=url_source,
        source_url=source_url,
        destination_url=destination_url,
        timeout=seconds,
        legacy_cacert=legacy_cacert,
        submariner=submariner,
        connector=connector_of(ctx, client, oc_path, qps, burst),
    )
    if pairs is not None:
        with explaining(explain, output):
            fleet.register_all(options, pairs, parallel, output)
        return
    if prompting:
        options = prompts.ask_names(options)
        prompts.confirm_summary(options)
    if insecure_skip_tls_verify:
        validate(options)  # refused options get their one line, no warning first
        err("warning: TLS verification is OFF for both providers (insecureSkipVerify: true)")
        _quiet_insecure_requests()

    def progress(line: str) -> None:
        if line.startswith("warning: "):
            err(line)  # whatever the output format
        elif output is Output.text:
            typer.secho(f"  {line}", err=True, dim=True)

    with explaining(explain, output), deadline.scope(seconds):
        result = register_pair(options, dry_run=dry_run, progress=progress)
        print_result(result, output, dry_run)


def _quiet_insecure_requests() -> None:
    """The user chose no TLS verification and was warned once: urllib3's multi-line warning on
    every unverified request would only bury that line."""
    import warnings

    from urllib3.exceptions import InsecureRequestWarning

    warnings.filterwarnings("ignore", category=InsecureRequestWarning)


def print_result(result: PairResult, output: Output, dry_run: bool) -> None:
    if dry_run:
        _print_manifests(result, output)
        return
    summary = {
        "host": result.host,
        "namespace": result.namespace,
        "providers": [vars(p) for p in result.providers],
        "changes": [vars(c) for c in result.changes],
        "changed": result.mutated,
    }
    render(summary, output, lambda: _print_providers(result))


def _print_providers(result: PairResult) -> None:
    verb = "registered" if result.mutated else "already registered, nothing changed"
    for provider in result.providers:
        typer.echo(
            f"Provider {result.namespace}/{provider.name} ({provider.role}, "
            f"{provider.context}) {provider.phase} on {result.host}"
        )
    typer.echo(f"pair {verb}")


def _print_manifests(result: PairResult, output: Output) -> None:
    """--dry-run: the manifests as they are (JSON: one List), each YAML one under its context."""
    if output is Output.json:
        documents = [obj for _, obj in result.manifests]
        typer.echo(json.dumps({"kind": "List", "apiVersion": "v1", "items": documents}, indent=2))
        return
    import yaml

    for context, obj in result.manifests:
        typer.echo(f"# context: {context}")
        typer.echo("---\n" + yaml.safe_dump(obj, sort_keys=False).rstrip())
