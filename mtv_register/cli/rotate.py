"""`rotate`, and its schedule: `schedule` writes the CronJob that runs it, `unschedule` removes
it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from mtv_register.cli.common import (
    BurstOption,
    Client,
    ClientOption,
    ExplainOption,
    HostOption,
    KubeconfigOption,
    MtvNamespaceOption,
    OcPathOption,
    Output,
    OutputOption,
    QpsOption,
    YesOption,
    check_client,
    connector_of,
    duration,
    explaining,
    render,
    timeout_seconds,
)


def rotate(
    ctx: typer.Context,
    host: HostOption = None,
    kubeconfig: KubeconfigOption = None,
    in_cluster: Annotated[
        bool, typer.Option(help="Use the pod's service account (the scheduled CronJob).")
    ] = False,
    mtv_namespace: MtvNamespaceOption = None,
    provider: Annotated[
        list[str] | None, typer.Option(help="A Provider to rotate (repeatable).")
    ] = None,
    all_providers: Annotated[
        bool, typer.Option("--all", help="Every Provider mtv-register registered.")
    ] = False,
    max_age: Annotated[
        str | None, typer.Option(help="Skip tokens younger than this (0s: rotate now).")
    ] = None,
    before_expiry: Annotated[
        str | None, typer.Option(help="Bound tokens: renew only those expiring within this.")
    ] = None,
    source_context: Annotated[
        str | None,
        typer.Option(help="Admin context to recover the source's Provider when its token is dead."),
    ] = None,
    destination_context: Annotated[
        str | None,
        typer.Option(
            help="Admin context to recover the destination's Provider when its token is dead."
        ),
    ] = None,
    parallel: Annotated[int, typer.Option(help="Providers rotated at once.", min=1)] = 4,
    timeout: Annotated[
        str, typer.Option(help="Deadline for the whole run (every Provider's rotation in it).")
    ] = "15m",
    dry_run: Annotated[bool, typer.Option(help="Say what would rotate; change nothing.")] = False,
    yes: YesOption = False,
    output: OutputOption = Output.text,
    client: ClientOption = Client.kubernetes,
    oc_path: OcPathOption = None,
    explain: ExplainOption = False,
    qps: QpsOption = None,
    burst: BurstOption = None,
) -> None:
    """Rotate Provider credentials with no downtime, using each Provider's own token."""
    from mtv_register import deadline
    from mtv_register.errors import PartialFailure, UsageError
    from mtv_register.rotation import RotateOptions, run

    check_client(client, oc_path, explain)
    if bool(provider) == all_providers:
        raise UsageError(
            "say which Providers to rotate",
            fix="pass --provider NAME (repeatable) or --all, not both",
        )
    age = None if max_age is None else dt.timedelta(seconds=duration(max_age, "--max-age"))
    seconds = timeout_seconds(timeout)
    renew = (
        None
        if before_expiry is None
        else dt.timedelta(seconds=duration(before_expiry, "--before-expiry"))
    )
    connector = connector_of(ctx, client, oc_path, qps, burst)
    options = RotateOptions(
        max_age=age,
        max_age_label=max_age or "",
        dry_run=dry_run,
        timeout=seconds,
        before_expiry=renew,
        timing=connector.timing,
    )
    with explaining(explain, output), deadline.scope(seconds):
        results = run(
            kubeconfig=_config_path(kubeconfig),
            host=host,
            in_cluster=in_cluster,
            mtv_namespace=mtv_namespace,
            names=provider or None,
            options=options,
            report=_show_change if output is Output.text else (lambda change: None),
            parallel=parallel,
            admin_contexts=[c for c in (source_context, destination_context) if c],
            connector=connector,
        )

        def text() -> None:
            for result in results:
                detail = f": {result.reason}" if result.reason else ""
                typer.echo(f"Provider {result.provider} {result.action}{detail}")
            if not results:
                typer.echo("no Provider registered by mtv-register was found")

        render([vars(r) for r in results], output, text, has_yaml=False)
    failed = [r for r in results if r.action == "failed"]
    if failed:
        code = failed[0].exit_code if len(failed) == 1 else PartialFailure.exit_code
        raise typer.Exit(code or 1)


def _show_change(change: object) -> None:
    typer.secho(f"  {change}", err=True, dim=True)


def schedule(
    ctx: typer.Context,
    every: Annotated[str, typer.Option(help='Cron schedule, e.g. "0 3 * * *".')],
    max_age: Annotated[str, typer.Option(help="Rotate tokens older than this, e.g. 30d.")],
    image: Annotated[str, typer.Option(help="Image with mtv-register (see Containerfile).")],
    host: HostOption = None,
    kubeconfig: KubeconfigOption = None,
    mtv_namespace: MtvNamespaceOption = None,
    dry_run: Annotated[bool, typer.Option(help="Print the manifests; write nothing.")] = False,
    client: ClientOption = Client.kubernetes,
    oc_path: OcPathOption = None,
    explain: ExplainOption = False,
    qps: QpsOption = None,
    burst: BurstOption = None,
) -> None:
    """Rotate on a schedule: a CronJob in the MTV namespace, as a least-privileged account.

    --client chooses how this command writes the schedule; the CronJob's own runs use the image's
    default client."""
    import yaml

    from mtv_register.errors import UsageError
    from mtv_register.schedule import check_cron, install

    check_client(client, oc_path, explain)
    duration(max_age, "--max-age")
    check_cron(every)  # before the kubeconfig is read: a bad schedule is the first thing said
    if not image.strip() or any(c.isspace() for c in image):
        raise UsageError(
            f"--image {image!r} is not an image reference",
            fix="pass the image with mtv-register, e.g. quay.io/example/mtv-register:0.1.0",
        )
    with explaining(explain, Output.text):  # the runbook after the result
        objects = install(
            kubeconfig=_config_path(kubeconfig),
            host=host,
            mtv_namespace=mtv_namespace,
            every=every,
            max_age=max_age,
            image=image,
            report=lambda change: typer.echo(str(change)),
            dry_run=dry_run,
            connector=connector_of(ctx, client, oc_path, qps, burst),
        )
        if dry_run:
            for obj in objects:
                typer.echo("---\n" + yaml.safe_dump(obj, sort_keys=False).rstrip())
        else:
            typer.echo(f"rotation scheduled: {every}, tokens older than {max_age}")


def unschedule(
    ctx: typer.Context,
    host: HostOption = None,
    kubeconfig: KubeconfigOption = None,
    mtv_namespace: MtvNamespaceOption = None,
    client: ClientOption = Client.kubernetes,
    oc_path: OcPathOption = None,
    explain: ExplainOption = False,
    qps: QpsOption = None,
    burst: BurstOption = None,
) -> None:
    """Remove the rotation CronJob and its account."""
    from mtv_register.schedule import remove

    check_client(client, oc_path, explain)
    with explaining(explain, Output.text):  # the runbook after the result
        remove(
            kubeconfig=_config_path(kubeconfig),
            host=host,
            mtv_namespace=mtv_namespace,
            report=lambda change: typer.echo(str(change)),
            connector=connector_of(ctx, client, oc_path, qps, burst),
        )
        typer.echo("rotation unscheduled")


def _config_path(kubeconfig: Path | None) -> str | None:
    return str(kubeconfig) if kubeconfig else None
