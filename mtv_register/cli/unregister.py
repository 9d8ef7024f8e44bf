"""`unregister`: what `register` created goes, for one pair or a fleet; what others use stays."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mtv_register.cli import fleet
from mtv_register.cli.common import (
    BurstOption,
    Client,
    ClientOption,
    DestinationNameOption,
    DestinationOption,
    ExplainOption,
    HostOption,
    KubeconfigOption,
    MtvNamespaceOption,
    OcPathOption,
    Output,
    OutputOption,
    QpsOption,
    SaNamespaceOption,
    SourceNameOption,
    SourceOption,
    TimeoutOption,
    YesOption,
    aborted,
    check_client,
    connector_of,
    explaining,
    may_prompt,
    render,
    timeout_seconds,
)


def unregister(
    ctx: typer.Context,
    source: SourceOption = None,
    destination: DestinationOption = None,
    pairs: Annotated[
        Path | None,
        typer.Option(help="A fleet file, as register --pairs takes it: unregister every pair."),
    ] = None,
    parallel: Annotated[int, typer.Option(min=1, help="With --pairs: pairs at a time.")] = 4,
    host: HostOption = None,
    kubeconfig: KubeconfigOption = None,
    mtv_namespace: MtvNamespaceOption = None,
    source_name: SourceNameOption = None,
    destination_name: DestinationNameOption = None,
    service_account: Annotated[
        str, typer.Option(help="ServiceAccount register created on each cluster.")
    ] = "mtv-provider",
    sa_namespace: SaNamespaceOption = "mtv-register",
    role_name: Annotated[
        str, typer.Option(help="ClusterRole register created (removed when nothing else binds it).")
    ] = "live-migration-role",
    keep_remote: Annotated[
        bool,
        typer.Option(
            help="Remove only the Providers on the host; keep the credentials on the clusters."
        ),
    ] = False,
    timeout: TimeoutOption = "5m",
    yes: YesOption = False,
    interactive: Annotated[bool | None, typer.Option(help="Ask before deleting.")] = None,
    output: OutputOption = Output.text,
    client: ClientOption = Client.kubernetes,
    oc_path: OcPathOption = None,
    explain: ExplainOption = False,
    qps: QpsOption = None,
    burst: BurstOption = None,
) -> None:
    """Remove what `register` created, on every cluster, and nothing else: a Provider, or a
    cluster's credentials, that another registration still uses stays."""
    from mtv_register import deadline
    from mtv_register.bootstrap import RemoteSpec
    from mtv_register.errors import UsageError
    from mtv_register.fleet import load_pairs
    from mtv_register.orchestrator import PairOptions
    from mtv_register.unregister import unregister_fleet, unregister_pair

    check_client(client, oc_path, explain)
    seconds = timeout_seconds(timeout)
    if pairs is None and (source is None or destination is None):
        raise UsageError(
            "unregister needs --source and --destination, or --pairs FILE",
            fix="name the pair's contexts, or pass the fleet file register used",
        )
    if pairs is not None and (source is not None or destination is not None):
        raise UsageError(
            "--pairs takes the pairs from the file: --source/--destination would be ignored",
            fix="drop --source and --destination, or drop --pairs",
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
            service_account=service_account, namespace=sa_namespace, role_name=role_name
        ),
        connector=connector_of(ctx, client, oc_path, qps, burst),
    )
    asking = may_prompt(interactive, yes)
    if pairs is not None:
        every = load_pairs(pairs, options)
        if asking and not typer.confirm(
            f"Unregister the {len(every)} pairs of {pairs}?", default=False
        ):
            raise aborted()
        with explaining(explain, output), deadline.scope(seconds):
            results = unregister_fleet(every, keep_remote=keep_remote, parallel=parallel)
            fleet.report(results, output)
        return
    if asking and not typer.confirm(
        f"Remove the Providers of {source} and {destination} from "
        f"{options.host_context}{'' if keep_remote else ' and their credentials'}?",
        default=False,
    ):
        raise aborted()
    with explaining(explain, output), deadline.scope(seconds):
        changes = unregister_pair(options, keep_remote=keep_remote)

        def text() -> None:
            for change in changes:
                typer.echo(str(change))
            typer.echo("pair unregistered")

        render([vars(c) for c in changes], output, text, has_yaml=False)
