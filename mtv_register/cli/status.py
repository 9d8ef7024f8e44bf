"""`status`: every Provider on the MTV host, and the objects behind some on their clusters."""

from __future__ import annotations

from typing import Annotated, Any

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
    check_client,
    connector_of,
    err,
    explaining,
    render,
    timeout_seconds,
)


def status(
    ctx: typer.Context,
    host: HostOption = None,
    kubeconfig: KubeconfigOption = None,
    mtv_namespace: MtvNamespaceOption = None,
    remote: Annotated[
        list[str] | None,
        typer.Option(
            help="PROVIDER=CONTEXT: also show the objects behind a Provider on its cluster."
        ),
    ] = None,
    output: OutputOption = Output.text,
    client: ClientOption = Client.kubernetes,
    oc_path: OcPathOption = None,
    explain: ExplainOption = False,
    qps: QpsOption = None,
    burst: BurstOption = None,
    timeout: Annotated[str, typer.Option(help="Deadline for the whole command.")] = "1m",
) -> None:
    """Every Provider on the MTV host: Ready or not and why, URL, token age, CA expiry. Exits 10
    when any Provider is not Ready."""
    from mtv_register import deadline
    from mtv_register.errors import ProviderNotReady
    from mtv_register.status import status as read_status

    check_client(client, oc_path, explain)
    remotes = _remotes(remote or [])
    seconds = timeout_seconds(timeout)
    with explaining(explain, output), deadline.scope(seconds):
        report = read_status(
            host=host,
            kubeconfig=kubeconfig,
            mtv_namespace=mtv_namespace,
            remotes=remotes,
            connector=connector_of(ctx, client, oc_path, qps, burst),
        )
        render(report, output, lambda: status_table(report))
    failing = [row["name"] for row in report["providers"] if not row["ready"]]
    if failing:
        # What a probe or a CronJob's check keys on: exit 10, as register's failed verdict.
        err(f"error: {len(failing)} Provider(s) not Ready: {', '.join(failing)}")
        raise typer.Exit(ProviderNotReady.exit_code)


def _remotes(items: list[str]) -> dict[str, str]:
    """--remote PROVIDER=CONTEXT, as {context: provider}."""
    from mtv_register.errors import UsageError

    remotes: dict[str, str] = {}
    for item in items:
        provider, _, context = item.partition("=")
        if not context:
            raise UsageError(
                f'--remote "{item}" is not PROVIDER=CONTEXT',
                fix="e.g. --remote source=my-source-context",
            )
        remotes[context] = provider
    return remotes


def status_table(report: dict[str, Any]) -> None:
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.table import Table

    from mtv_register.durations import format_duration
    from mtv_register.naming import parse_stamp

    def age(stamp: str) -> str:
        created = parse_stamp(stamp)
        if created is None:
            return "-"
        return format_duration(datetime.now(UTC) - created)

    table = Table(title=f"Providers on {report['host']} ({report['namespace']})")
    for column in (
        "NAME",
        "READY",
        "PHASE",
        "URL",
        "TOKEN AGE",
        "TOKEN EXPIRES",
        "ROTATED",
        "CA EXPIRES",
        "MANAGED",
        "MESSAGE",
    ):
        table.add_column(column)
    for row in report["providers"]:
        table.add_row(
            row["name"],
            "yes" if row["ready"] else "no",
            row["phase"],
            row["url"],
            age(row["tokenCreated"]),
            row.get("tokenExpires", "")[:16].replace("T", " ") or "-",
            (age(row["rotatedAt"]) + " ago") if row.get("rotatedAt") else "-",
            row["caExpires"][:10] or "-",
            "yes" if row["managed"] else "no",
            row["message"],
        )
    console = Console(width=200)
    console.print(table)
    for row in report["providers"]:
        if row.get("caOnlyUnderCacert"):
            console.print(
                f"{row['name']}: its Secret carries the CA only under the key cacert, which "
                "Forklift 2.14 drops: re-run register (it writes ca.crt too)"
            )
        if row.get("submariner"):
            console.print(f"{row['name']}: Submariner is on (spec.settings.submariner)")
    for remote in report["remotes"]:
        present = (
            ", ".join(
                k for k in ("clusterRole", "serviceAccount", "clusterRoleBinding") if remote[k]
            )
            or "none"
        )
        console.print(
            f"{remote['provider']} on {remote['context']}: {present}; token Secrets: "
            f"{', '.join(remote['tokenSecrets']) or 'none'}"
            + (
                f"; LEFT BEHIND (their tokens still work): "
                f"{', '.join(remote['leftoverTokenSecrets'])}"
                if remote.get("leftoverTokenSecrets")
                else ""
            )
        )
