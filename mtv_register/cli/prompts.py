"""`register` on a terminal: the contexts and Provider names it was not given, then what it will
do, confirmed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mtv_register import naming
from mtv_register.cli.common import aborted, err

if TYPE_CHECKING:
    from mtv_register.orchestrator import PairOptions


def ask_contexts(
    kubeconfig: Path | None, source: str | None, destination: str | None, host: str | None
) -> tuple[str, str, str | None]:
    """The source, destination and MTV host, each picked from the kubeconfig when not given."""
    from mtv_register import clusters

    contexts = clusters.load_kubeconfig(kubeconfig).contexts
    if source is None:
        source = _pick_context("Source", contexts, set())
    if destination is None:
        destination = _pick_context("Destination", contexts, {source})
    if host is None and typer.confirm("Is MTV installed on a separate cluster?", default=False):
        host = _pick_context("MTV host", contexts, {source, destination})
    return source, destination, host


def _pick_context(label: str, contexts: list[str], exclude: set[str]) -> str:
    choices = [c for c in contexts if c not in exclude] or contexts
    typer.echo(f"{label} cluster: pick a kubeconfig context")
    for number, context in enumerate(choices, 1):
        typer.echo(f"  {number}) {context}")
    while True:
        answer = typer.prompt(f"{label} context", default="1").strip()
        if answer.isdigit() and 1 <= int(answer) <= len(choices):
            return choices[int(answer) - 1]
        if answer in contexts:
            return answer
        err(f"  {answer!r} is not a number from 1 to {len(choices)} or a context name")


def ask_names(options: PairOptions) -> PairOptions:
    """`options` with a Provider name asked for each side that has none."""
    from mtv_register.sides import sides_of

    given = {"source": options.source_name, "destination": options.destination_name}
    names = {
        side.role: typer.prompt(
            f"Provider name for {side.context}",
            default=side.provider,
            value_proc=_provider_name,  # refused at once, and asked again
        )
        for side in sides_of(options)
        if not side.uses_host_provider and given[side.role] is None
    }
    return dataclasses.replace(
        options,
        source_name=names.get("source", options.source_name),
        destination_name=names.get("destination", options.destination_name),
    )


def _provider_name(answer: str) -> str:
    """A Provider name typed at a prompt: refused there (Typer asks again) when not a DNS
    label."""

    name = answer.strip()
    if not naming.is_dns1123_label(name):
        raise typer.BadParameter(
            f"\"{name}\" is not a valid Provider name: use lower-case letters, digits and '-'"
        )
    return name


def confirm_summary(options: PairOptions) -> None:
    from mtv_register.sides import sides_of

    remote = options.remote
    typer.echo("\nmtv-register will:")
    for side in sides_of(options):
        if side.uses_host_provider:
            typer.echo(f"  - use the local `host` Provider of {side.context} as the {side.role}")
            continue
        typer.echo(
            f"  - on {side.context}: ClusterRole {remote.role_name}, ServiceAccount "
            f"{remote.namespace}/{remote.service_account}, its ClusterRoleBinding and "
            f"token Secret {remote.token_secret}"
        )
        typer.echo(
            f"  - on {options.host_context}: Provider {side.provider} and its Secret "
            f"{side.provider}-credentials"
        )
    if not typer.confirm("Proceed?", default=True):
        raise aborted()
