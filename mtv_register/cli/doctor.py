"""`doctor`: a pair's readiness for cross-cluster live migration, and its credentials' health."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mtv_register.cli.common import (
    BurstOption,
    Client,
    ClientOption,
    DestinationNameOption,
    ExplainOption,
    HostOption,
    KubeconfigOption,
    MtvNamespaceOption,
    OcPathOption,
    Output,
    OutputOption,
    QpsOption,
    SourceNameOption,
    TimeoutOption,
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
    from mtv_register.doctor import DoctorReport
    from mtv_register.findings import Finding


def doctor(
    ctx: typer.Context,
    source: Annotated[str, typer.Option(help="Context of the source cluster.")],
    destination: Annotated[str, typer.Option(help="Context of the destination cluster.")],
    host: HostOption = None,
    kubeconfig: KubeconfigOption = None,
    mtv_namespace: MtvNamespaceOption = None,
    source_name: SourceNameOption = None,
    destination_name: DestinationNameOption = None,
    warn_within: Annotated[
        str, typer.Option(help="Warn of a token or CA that expires within this, e.g. 30d.")
    ] = "30d",
    strict: Annotated[bool, typer.Option(help="Warnings fail too (exit 14).")] = False,
    fix: Annotated[
        bool,
        typer.Option(
            help="Remove orphaned credentials and copy cacert-only CAs to ca.crt, after a "
            "confirmation (--yes off a terminal). Cluster configuration is never changed."
        ),
    ] = False,
    yes: YesOption = False,
    output: OutputOption = Output.text,
    client: ClientOption = Client.kubernetes,
    oc_path: OcPathOption = None,
    explain: ExplainOption = False,
    qps: QpsOption = None,
    burst: BurstOption = None,
    timeout: TimeoutOption = "2m",
) -> None:
    """Is this pair ready for cross-cluster live migration, and are its credentials sound? Each
    check prints ✔, ✘ or ! with what it saw and the fix. Exits 14 when a check fails (or, with
    --strict, warns)."""
    import datetime as dt

    from mtv_register import deadline
    from mtv_register.doctor import DoctorOptions, diagnose
    from mtv_register.errors import NotReadyForLiveMigration, UsageError

    check_client(client, oc_path, explain)
    within = dt.timedelta(seconds=duration(warn_within, "--warn-within"))
    seconds = timeout_seconds(timeout)
    if fix and not may_prompt(None, yes) and not yes:  # off a terminal, nobody to ask
        raise UsageError("--fix off a terminal needs --yes", fix="add --yes to apply the repairs")
    options = DoctorOptions(
        source=source,
        destination=destination,
        host=host,
        kubeconfig=kubeconfig,
        mtv_namespace=mtv_namespace,
        source_name=source_name,
        destination_name=destination_name,
        warn_within=within,
        strict=strict,
        connector=connector_of(ctx, client, oc_path, qps, burst),
    )

    def confirm(repairs: list[Finding]) -> bool:
        typer.echo("doctor --fix will:", err=output is not Output.text)
        for finding in repairs:
            assert finding.repair is not None
            typer.echo(f"  - {finding.repair.what}", err=output is not Output.text)
        return yes or typer.confirm("Apply these repairs?", default=False)

    with explaining(explain, output), deadline.scope(seconds):
        report = diagnose(options, confirm=confirm if fix else None)
        render(report.as_dict(), output, lambda: show_report(report))
    if not report.healthy:
        raise typer.Exit(NotReadyForLiveMigration.exit_code)


def show_report(report: DoctorReport) -> None:
    """The report for people: one line per check, its fix under it, and the summary."""
    from mtv_register.findings import FAIL, MARKS, OK, WARN

    typer.echo(
        f"doctor: {report.source} → {report.destination}, MTV host {report.host} "
        f"({report.namespace})"
    )
    for line in report.repaired:
        typer.echo(f"fixed: {line}")
    width = max((len(f.check) for f in report.findings), default=0)
    where = max((len(f.where) for f in report.findings), default=0)
    for finding in report.findings:
        colour = {OK: typer.colors.GREEN, WARN: typer.colors.YELLOW, FAIL: typer.colors.RED}
        mark = typer.style(MARKS[finding.result], fg=colour[finding.result])
        typer.echo(f"{mark} {finding.check:<{width}}  {finding.where:<{where}}  {finding.saw}")
        if finding.fix and finding.result != OK:
            typer.echo(f"  {'':<{width}}  {'':<{where}}  fix: {finding.fix}")
    summary = (
        f"{report.count(OK)} passed, {report.count(WARN)} warning(s), {report.count(FAIL)} failed"
    )
    if report.healthy:
        typer.echo(summary)
    else:
        err(
            summary
            + (" (--strict: warnings fail)" if report.strict and not report.count(FAIL) else "")
        )
