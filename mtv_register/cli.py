"""The `mtv-register` command: parses, prompts, prints. No Kubernetes logic lives here.

Imports of the library stay inside the commands, so `mtv-register --help` starts fast.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from mtv_register.errors import MtvRegisterError
    from mtv_register.kube import Kube
    from mtv_register.orchestrator import PairOptions, PairResult

app = typer.Typer(
    name="mtv-register",
    help="Register OpenShift Virtualization clusters with MTV (Forklift), end to end.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,  # locals would print tokens
    rich_markup_mode=None,  # plain help: rendering it with rich costs ~80 ms of imports
    add_completion=True,
)
sandbox_app = typer.Typer(
    help="Simulated clusters to try and test mtv-register on, no cluster needed.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(sandbox_app, name="sandbox")


class Output(StrEnum):
    text = "text"
    json = "json"
    yaml = "yaml"


class TokenType(StrEnum):
    secret = "secret"
    bound = "bound"


class MtvOn(StrEnum):
    destination = "destination"
    separate = "separate"


class Client(StrEnum):
    kubernetes = "kubernetes"
    oc = "oc"


ClientOption = Annotated[
    Client,
    typer.Option(
        "--client",
        help="How to speak to the clusters: kubernetes (the Python client) or oc (the oc or "
        "kubectl binary, through openshift-client; see docs/oc-backend.md).",
    ),
]
OcPathOption = Annotated[
    str | None,
    typer.Option(help="With --client oc: the binary to run (default: oc on PATH, else kubectl)."),
]
ExplainOption = Annotated[
    bool,
    typer.Option(
        "--explain",
        help="With --client oc: print the commands the run executed, tokens redacted, as a "
        "runbook (after the result; on stderr with -o json/yaml).",
    ),
]


# Options several commands share, declared once.
HostOption = Annotated[str | None, typer.Option(help="Context of the MTV host.")]
KubeconfigOption = Annotated[
    Path | None, typer.Option(help="Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).")
]
MtvNamespaceOption = Annotated[
    str | None,
    typer.Option(
        help="MTV namespace on the host (default: openshift-mtv, then konveyor-forklift)."
    ),
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Never prompt.")]
OutputOption = Annotated[Output, typer.Option("--output", "-o", help="text, json or yaml.")]

_state: dict[str, Any] = {"verbose": 0}


def _camel(data: Any) -> Any:
    """JSON and YAML output in Kubernetes' convention: camelCase keys; seconds rounded to 0.1."""
    if isinstance(data, dict):
        return {
            _camel_key(str(k)): (round(v, 1) if isinstance(v, float) else _camel(v))
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [_camel(item) for item in data]
    return data


def _camel_key(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _err(message: str) -> None:
    typer.secho(message, err=True, fg=typer.colors.RED)


def _fail(error: MtvRegisterError) -> NoReturn:
    _err(f"error: {error.line()}")
    raise typer.Exit(error.exit_code)


def _run(action: Any) -> Any:
    """Run a library call; its errors become one red line and their exit code."""
    from mtv_register import deadline
    from mtv_register.errors import MtvRegisterError
    from mtv_register.redaction import scrub

    try:
        return action()
    except deadline.Cancelled:
        _err("interrupted: nothing more was sent; a re-run converges")
        raise typer.Exit(deadline.exit_code()) from None
    except MtvRegisterError as error:
        _fail(error)
    except KeyboardInterrupt as interrupt:
        deadline.cancel()
        summary = getattr(interrupt, "summary", "interrupted; a re-run converges")
        _err(summary)
        raise typer.Exit(deadline.exit_code()) from None
    except Exception as error:  # a bug: one line, the traceback only when asked for
        if _state["verbose"] >= 2:
            import traceback

            _err(scrub(traceback.format_exc()))
        _err(
            f"internal error: {scrub(type(error).__name__ + ': ' + str(error))} "
            "(re-run with -vv for details and report it)"
        )
        raise typer.Exit(1) from None


def _duration(value: str, flag: str) -> float:
    from mtv_register.durations import parse_duration
    from mtv_register.errors import UsageError

    try:
        return parse_duration(value).total_seconds()
    except ValueError as error:
        _fail(UsageError(f"{flag}: {error}"))


def _timeout(value: str) -> float:
    """`--timeout`: the whole command's deadline, in seconds, more than zero."""
    from mtv_register.errors import UsageError

    seconds = _duration(value, "--timeout")
    if seconds <= 0:
        _fail(
            UsageError(
                f"--timeout must be more than 0s, not {value}",
                fix="pass a positive duration, e.g. --timeout 5m",
            )
        )
    return seconds


def _quiet_insecure_requests() -> None:
    """The user chose no TLS verification and was warned once: urllib3's multi-line warning on
    every unverified request would only bury that line."""
    import warnings

    from urllib3.exceptions import InsecureRequestWarning

    warnings.filterwarnings("ignore", category=InsecureRequestWarning)


def _open_host(
    kubeconfig: str | None,
    host: str | None,
    client: Client,
    oc_path: str | None,
    *,
    in_cluster: bool = False,
) -> Kube:
    """The MTV host on the chosen backend (rotation.open_host)."""
    from mtv_register.rotation import open_host

    return open_host(
        kubeconfig=kubeconfig,
        host=host,
        in_cluster=in_cluster,
        backend=client.value,
        oc_path=oc_path,
    )


def _check_client(client: Client, oc_path: str | None, explain: bool) -> None:
    from mtv_register.errors import UsageError

    if client is Client.kubernetes and (oc_path or explain):
        flag = "--oc-path" if oc_path else "--explain"
        _fail(UsageError(f"{flag} needs --client oc", fix="add --client oc, or drop " + flag))


@contextlib.contextmanager
def _explaining(explain: bool, output: Output) -> Iterator[None]:
    """--explain: after the block (even a failed one), the commands it ran, as a runbook."""
    if not explain:
        yield
        return
    from mtv_register import oc_backend

    oc_backend.TRAIL.start()
    try:
        yield
    finally:
        typer.echo(oc_backend.TRAIL.runbook(), err=output is not Output.text)


def _interactive(flag: bool | None, yes: bool) -> bool:
    if yes:
        return False
    if flag is not None:
        return flag
    return sys.stdin.isatty() and sys.stdout.isatty()


def _print_version(value: bool) -> None:
    """Eager: runs before Typer asks for a command, so `mtv-register --version` works alone."""
    if value:
        from mtv_register import __version__

        typer.echo(f"mtv-register {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More logging (-v info, -vv debug).")
    ] = 0,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version.", is_eager=True, callback=_print_version
        ),
    ] = False,
) -> None:
    del version  # handled by its callback
    _state["verbose"] = verbose
    if verbose:
        import logging

        from mtv_register.redaction import install_logging

        install_logging(logging.DEBUG if verbose >= 2 else logging.INFO)


# -- register ------------------------------------------------------------------------------------


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
        _err(f"  {answer!r} is not a number from 1 to {len(choices)} or a context name")


@app.command()
def register(
    source: Annotated[str | None, typer.Option(help="Context of the source cluster.")] = None,
    destination: Annotated[
        str | None, typer.Option(help="Context of the destination cluster.")
    ] = None,
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
    sa_namespace: Annotated[
        str, typer.Option(help="Namespace of that ServiceAccount.")
    ] = "mtv-register",
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
    timeout: Annotated[str, typer.Option(help="Deadline for the whole run, e.g. 90s, 5m.")] = "5m",
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
) -> None:
    """Register a source/destination pair with MTV: credentials on both, Providers on the host."""
    from mtv_register import clusters, manifests
    from mtv_register.bootstrap import RemoteSpec
    from mtv_register.errors import UsageError
    from mtv_register.orchestrator import PairOptions, register_pair, sides_of

    _check_client(client, oc_path, explain)
    seconds = _timeout(timeout)
    if pairs is not None:
        if source or destination:
            _fail(
                UsageError(
                    "--pairs and --source/--destination exclude each other",
                    fix="put every pair in the --pairs file",
                )
            )
        source, destination = "-", "--"  # placeholders: each pair brings its own
    prompting = _interactive(interactive, yes) and pairs is None
    if prompting and (source is None or destination is None):
        config = _run(lambda: clusters.load_kubeconfig(kubeconfig))
        if source is None:
            source = _pick_context("Source", config.contexts, set())
        if destination is None:
            destination = _pick_context("Destination", config.contexts, {source})
        if host is None and typer.confirm("Is MTV installed on a separate cluster?", default=False):
            host = _pick_context("MTV host", config.contexts, {source, destination})
    missing = [
        flag
        for flag, value in (("--source", source), ("--destination", destination))
        if value is None
    ]
    if missing:
        _fail(
            UsageError(
                f"missing option {' and '.join(missing)}",
                fix="pass it, or run on a terminal to be prompted",
            )
        )
    assert source is not None and destination is not None
    options = PairOptions(
        source=source,
        destination=destination,
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
            token_ttl=int(_duration(token_ttl, "--token-ttl")),
        ),
        ca_source=ca_source,
        insecure_skip_tls_verify=insecure_skip_tls_verify,
        url_source=url_source,
        source_url=source_url,
        destination_url=destination_url,
        timeout=seconds,
        legacy_cacert=legacy_cacert,
        submariner=submariner,
        backend=client.value,
        oc_path=oc_path,
    )
    if pairs is not None:
        with _explaining(explain, output):
            _register_fleet(options, pairs, parallel, output)
        return
    if prompting:
        sides = sides_of(options)
        names = {}
        given = {"source": source_name, "destination": destination_name}
        for side in sides:
            if not side.uses_host_provider and given[side.role] is None:
                names[side.role] = typer.prompt(
                    f"Provider name for {side.context}",
                    default=side.provider,
                    value_proc=_provider_name,  # refused at once, and asked again
                )
        options = _with_names(options, names, manifests)
        _confirm_summary(options)
    if insecure_skip_tls_verify:
        from mtv_register.orchestrator import validate

        _run(lambda: validate(options))  # refused options get their one line, no warning first
        _err("warning: TLS verification is OFF for both providers (insecureSkipVerify: true)")
        _quiet_insecure_requests()

    def progress(line: str) -> None:
        if line.startswith("warning: "):
            _err(line)  # whatever the output format
        elif output is Output.text:
            typer.secho(f"  {line}", err=True, dim=True)

    from mtv_register import deadline

    with _explaining(explain, output), deadline.scope(seconds):
        result = _run(lambda: register_pair(options, dry_run=dry_run, progress=progress))
        _print_result(result, output, dry_run)


def _register_fleet(defaults: PairOptions, path: Path, parallel: int, output: Output) -> None:
    from mtv_register.orchestrator import load_pairs, register_fleet

    fleet = _run(lambda: load_pairs(path, defaults))

    def progress(outcome: Any) -> None:
        if output is Output.text:
            state = "ok" if outcome.ok else f"FAILED: {outcome.error}"
            typer.secho(
                f"  {outcome.pair}: {state} ({outcome.seconds:.1f}s)", err=True, dim=outcome.ok
            )

    results = _run(lambda: register_fleet(fleet, parallel=parallel, progress=progress))
    _fleet_report(results, output)


def _fleet_report(results: list[Any], output: Output) -> None:
    """A fleet's results as a table or JSON/YAML; exits 12 (one failed pair: its own code)."""
    from mtv_register.errors import PartialFailure

    if output is Output.json:
        typer.echo(
            json.dumps(
                _camel([{**vars(r), "providers": [vars(p) for p in r.providers]} for r in results]),
                indent=2,
            )
        )
    elif output is Output.yaml:
        import yaml

        typer.echo(
            yaml.safe_dump(
                _camel([{**vars(r), "providers": [vars(p) for p in r.providers]} for r in results]),
                sort_keys=False,
            ).rstrip()
        )
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{len(results)} pairs")
        for column in ("PAIR", "RESULT", "PROVIDERS", "SECONDS", "ERROR"):
            table.add_column(column)
        for r in results:
            table.add_row(
                r.pair,
                ("changed" if r.changed else "unchanged") if r.ok else "failed",
                ", ".join(p.name for p in r.providers),
                f"{r.seconds:.1f}",
                r.error,
            )
        Console(width=200).print(table)
    failed = [r for r in results if not r.ok]
    if failed:
        _err(f"error: {len(failed)} of {len(results)} pairs failed")
        raise typer.Exit(failed[0].exit_code if len(results) == 1 else PartialFailure.exit_code)


def _provider_name(answer: str) -> str:
    """A Provider name typed at a prompt: refused there (Typer asks again) when not a DNS
    label."""
    from mtv_register import manifests

    name = answer.strip()
    if not manifests.is_dns1123_label(name):
        raise typer.BadParameter(
            f"\"{name}\" is not a valid Provider name: use lower-case letters, digits and '-'"
        )
    return name


def _with_names(options: PairOptions, names: dict[str, str], manifests: Any) -> PairOptions:
    import dataclasses

    from mtv_register.errors import UsageError

    for name in names.values():
        if not manifests.is_dns1123_label(name):
            _fail(
                UsageError(
                    f'Provider name "{name}" is not a valid name',
                    fix="use lower-case letters, digits and '-'",
                )
            )
    return dataclasses.replace(
        options,
        source_name=names.get("source", options.source_name),
        destination_name=names.get("destination", options.destination_name),
    )


def _confirm_summary(options: PairOptions) -> None:
    from mtv_register.orchestrator import sides_of

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
        _err("aborted: nothing was changed")
        raise typer.Exit(1)


def _print_result(result: PairResult, output: Output, dry_run: bool) -> None:
    import yaml

    if dry_run:
        documents = [obj for _, obj in result.manifests]
        if output is Output.json:
            typer.echo(
                json.dumps({"kind": "List", "apiVersion": "v1", "items": documents}, indent=2)
            )
            return
        for context, obj in result.manifests:
            typer.echo(f"# context: {context}")
            typer.echo("---\n" + yaml.safe_dump(obj, sort_keys=False).rstrip())
        return
    summary = {
        "host": result.host,
        "namespace": result.namespace,
        "providers": [vars(p) for p in result.providers],
        "changes": [vars(c) for c in result.changes],
        "changed": result.mutated,
    }
    if output is Output.json:
        typer.echo(json.dumps(_camel(summary), indent=2))
    elif output is Output.yaml:
        typer.echo(yaml.safe_dump(_camel(summary), sort_keys=False).rstrip())
    else:
        verb = "registered" if result.mutated else "already registered, nothing changed"
        for provider in result.providers:
            typer.echo(
                f"Provider {result.namespace}/{provider.name} ({provider.role}, "
                f"{provider.context}) {provider.phase} on {result.host}"
            )
        typer.echo(f"pair {verb}")


# -- status and unregister -------------------------------------------------------------------


@app.command()
def status(
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
    timeout: Annotated[str, typer.Option(help="Deadline for the whole command.")] = "1m",
) -> None:
    """Every Provider on the MTV host: Ready or not and why, URL, token age, CA expiry. Exits 10
    when any Provider is not Ready."""
    from mtv_register import clusters
    from mtv_register.errors import UsageError
    from mtv_register.orchestrator import status as read_status

    _check_client(client, oc_path, explain)
    remotes: dict[str, str] = {}
    for item in remote or []:
        provider, _, context = item.partition("=")
        if not context:
            _fail(
                UsageError(
                    f'--remote "{item}" is not PROVIDER=CONTEXT',
                    fix="e.g. --remote source=my-source-context",
                )
            )
        remotes[context] = provider
    if host is None:
        config = _run(lambda: clusters.load_kubeconfig(kubeconfig))
        host = config.data.get("current-context") or None
        if host is None:
            _fail(UsageError("no --host and no current-context", fix="pass --host CONTEXT"))
    from mtv_register import deadline

    seconds = _timeout(timeout)
    with _explaining(explain, output), deadline.scope(seconds):
        report = _run(
            lambda: read_status(
                host=host,
                kubeconfig=kubeconfig,
                mtv_namespace=mtv_namespace,
                remotes=remotes,
                backend=client.value,
                oc_path=oc_path,
            )
        )
        _print_status(report, output)
    failing = [row["name"] for row in report["providers"] if not row["ready"]]
    if failing:
        from mtv_register.errors import ProviderNotReady

        # What a probe or a CronJob's check keys on: exit 10, as register's failed verdict.
        _err(f"error: {len(failing)} Provider(s) not Ready: {', '.join(failing)}")
        raise typer.Exit(ProviderNotReady.exit_code)


def _print_status(report: dict[str, Any], output: Output) -> None:
    if output is Output.json:
        typer.echo(json.dumps(_camel(report), indent=2))
        return
    if output is Output.yaml:
        import yaml

        typer.echo(yaml.safe_dump(_camel(report), sort_keys=False).rstrip())
        return
    _status_table(report)


def _status_table(report: dict[str, Any]) -> None:
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.table import Table

    from mtv_register.durations import format_duration

    def age(stamp: str) -> str:
        if not stamp:
            return "-"
        created = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
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


@app.command()
def unregister(
    source: Annotated[str | None, typer.Option(help="Context of the source cluster.")] = None,
    destination: Annotated[
        str | None, typer.Option(help="Context of the destination cluster.")
    ] = None,
    pairs: Annotated[
        Path | None,
        typer.Option(help="A fleet file, as register --pairs takes it: unregister every pair."),
    ] = None,
    parallel: Annotated[int, typer.Option(min=1, help="With --pairs: pairs at a time.")] = 4,
    host: HostOption = None,
    kubeconfig: KubeconfigOption = None,
    mtv_namespace: MtvNamespaceOption = None,
    source_name: Annotated[str | None, typer.Option(help="Provider name of the source.")] = None,
    destination_name: Annotated[
        str | None, typer.Option(help="Provider name of the destination.")
    ] = None,
    service_account: Annotated[
        str, typer.Option(help="ServiceAccount register created on each cluster.")
    ] = "mtv-provider",
    sa_namespace: Annotated[
        str, typer.Option(help="Namespace of that ServiceAccount.")
    ] = "mtv-register",
    role_name: Annotated[
        str, typer.Option(help="ClusterRole register created (removed when nothing else binds it).")
    ] = "live-migration-role",
    keep_remote: Annotated[
        bool,
        typer.Option(
            help="Remove only the Providers on the host; keep the credentials on the clusters."
        ),
    ] = False,
    timeout: Annotated[str, typer.Option(help="Deadline for the whole run, e.g. 90s, 5m.")] = "5m",
    yes: YesOption = False,
    interactive: Annotated[bool | None, typer.Option(help="Ask before deleting.")] = None,
    output: OutputOption = Output.text,
    client: ClientOption = Client.kubernetes,
    oc_path: OcPathOption = None,
    explain: ExplainOption = False,
) -> None:
    """Remove what `register` created, on every cluster, and nothing else: a Provider, or a
    cluster's credentials, that another registration still uses stays."""
    from mtv_register import deadline
    from mtv_register.bootstrap import RemoteSpec
    from mtv_register.errors import UsageError
    from mtv_register.orchestrator import PairOptions, load_pairs, unregister_fleet, unregister_pair

    _check_client(client, oc_path, explain)
    seconds = _timeout(timeout)
    if pairs is None and (source is None or destination is None):
        _fail(
            UsageError(
                "unregister needs --source and --destination, or --pairs FILE",
                fix="name the pair's contexts, or pass the fleet file register used",
            )
        )
    if pairs is not None and (source is not None or destination is not None):
        _fail(
            UsageError(
                "--pairs takes the pairs from the file: --source/--destination would be ignored",
                fix="drop --source and --destination, or drop --pairs",
            )
        )
    options = PairOptions(
        source=source or "-",
        destination=destination or "--",
        host=host,
        kubeconfig=kubeconfig,
        mtv_namespace=mtv_namespace,
        source_name=source_name,
        destination_name=destination_name,
        remote=RemoteSpec(
            service_account=service_account, namespace=sa_namespace, role_name=role_name
        ),
        backend=client.value,
        oc_path=oc_path,
    )
    if pairs is not None:
        fleet = _run(lambda: load_pairs(pairs, options))
        if _interactive(interactive, yes) and not typer.confirm(
            f"Unregister the {len(fleet)} pairs of {pairs}?", default=False
        ):
            _err("aborted: nothing was changed")
            raise typer.Exit(1)
        with _explaining(explain, output), deadline.scope(seconds):
            results = _run(
                lambda: unregister_fleet(fleet, keep_remote=keep_remote, parallel=parallel)
            )
            _fleet_report(results, output)
        return
    if _interactive(interactive, yes) and not typer.confirm(
        f"Remove the Providers of {source} and {destination} from "
        f"{options.host_context}{'' if keep_remote else ' and their credentials'}?",
        default=False,
    ):
        _err("aborted: nothing was changed")
        raise typer.Exit(1)
    with _explaining(explain, output), deadline.scope(seconds):
        changes = _run(lambda: unregister_pair(options, keep_remote=keep_remote))
        if output is Output.json:
            typer.echo(json.dumps(_camel([vars(c) for c in changes]), indent=2))
        else:
            for change in changes:
                typer.echo(str(change))
            typer.echo("pair unregistered")


# -- sandbox -----------------------------------------------------------------------------------


@sandbox_app.command("up")
def sandbox_up(
    kubeconfig: Annotated[Path, typer.Option(help="Where to write the sandbox's kubeconfig.")],
    audit_dir: Annotated[
        Path | None, typer.Option(help="Write one audit log per cluster here (<context>.log).")
    ] = None,
    token_delay: Annotated[
        float,
        typer.Option(help="Seconds before the token controller fills a token Secret.", min=0.0),
    ] = 0.0,
    sources: Annotated[int, typer.Option(help="Number of source clusters.", min=1)] = 1,
    mtv_on: Annotated[
        MtvOn, typer.Option(help="MTV on the destination, or on a separate `mtv` cluster.")
    ] = MtvOn.destination,
    named_cert: Annotated[
        str | None,
        typer.Option(help="Serve this context's API with a certificate from a second CA."),
    ] = None,
    forklift: Annotated[
        bool,
        typer.Option(
            help="Run Forklift's provider controller on the MTV host; without it, as on kind, "
            "Providers are never tested."
        ),
    ] = True,
    forklift_version: Annotated[
        str,
        typer.Option(help="The Forklift release the MTV host imitates: v2.12.5, v2.11.7, v2.10.6."),
    ] = "v2.12.5",
    force: Annotated[
        bool,
        typer.Option(help="Overwrite an existing file at --kubeconfig (it is removed at the end)."),
    ] = False,
) -> None:
    """Serve simulated clusters until interrupted (SIGINT or SIGTERM). The kubeconfig is written
    atomically with mode 0600 and removed when the sandbox stops."""
    import os
    import signal
    import tempfile
    import threading

    from mtv_register.errors import UsageError
    from mtv_register.sandbox import Sandbox

    target = kubeconfig.expanduser().resolve()
    if target.exists() and not force:
        _fail(
            UsageError(
                f"{target} exists: the sandbox would overwrite it (and remove it when it stops)",
                fix="pass another --kubeconfig path, or --force to replace that file",
            )
        )

    try:
        sandbox = Sandbox(
            sources=sources,
            mtv_on=mtv_on.value,
            token_delay=token_delay,
            named_cert=named_cert,
            audit_dir=audit_dir,
            forklift=forklift,
            forklift_version=forklift_version,
        )
    except ValueError as error:
        _fail(UsageError(str(error)))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    sandbox.start()
    written = False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            os.close(handle)  # mkstemp made it 0600
            sandbox.write_kubeconfig(Path(temporary))
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        written = True
        typer.echo(f"sandbox ready: {target}")
        sys.stdout.flush()
        stop.wait()
    finally:
        sandbox.stop()
        if written:
            target.unlink(missing_ok=True)


@sandbox_app.command("demo")
def sandbox_demo(
    token_delay: Annotated[float, typer.Option(help="Token controller delay, seconds.")] = 0.5,
) -> None:
    """Bring up a sandbox, register a pair on a separate MTV host, show it, tear it down."""
    import os
    import shutil
    import subprocess
    import tempfile

    from mtv_register.orchestrator import PairOptions, register_pair
    from mtv_register.orchestrator import status as read_status
    from mtv_register.sandbox import Sandbox

    with tempfile.TemporaryDirectory(prefix="mtv-register-demo-") as folder:
        kubeconfig = Path(folder, "kubeconfig")
        typer.secho("1. starting the sandbox: clusters source, destination and mtv", bold=True)
        with Sandbox(mtv_on="separate", token_delay=token_delay) as sandbox:
            sandbox.write_kubeconfig(kubeconfig)
            for context, cluster in sandbox.clusters.items():
                typer.echo(f"   {context:<12} {cluster.url}")
            typer.secho(
                "2. mtv-register register --source source --destination destination "
                f"--host mtv --kubeconfig {kubeconfig} --yes",
                bold=True,
            )
            options = PairOptions(
                source="source",
                destination="destination",
                host="mtv",
                kubeconfig=kubeconfig,
                timeout=120,
            )
            result = _run(
                lambda: register_pair(options, progress=lambda line: typer.echo(f"   {line}"))
            )
            _print_result(result, Output.text, dry_run=False)
            typer.secho("3. again: a second run changes nothing", bold=True)
            again = _run(lambda: register_pair(options))
            _print_result(again, Output.text, dry_run=False)
            typer.secho("4. mtv-register status --host mtv", bold=True)
            _status_table(_run(lambda: read_status(host="mtv", kubeconfig=kubeconfig)))
            command = [
                "kubectl",
                "--kubeconfig",
                str(kubeconfig),
                "--context",
                "mtv",
                "get",
                "providers",
                "-n",
                "openshift-mtv",
            ]
            typer.secho(f"5. {' '.join(command)}", bold=True)
            if shutil.which("kubectl"):
                env = {**os.environ, "KUBECACHEDIR": str(Path(folder, "cache"))}
                subprocess.run(command, env=env, check=False, timeout=60)
            else:
                typer.echo("   (kubectl is not installed; skipped)")
        typer.secho("6. sandbox stopped; nothing was left behind", bold=True)


# -- rotation and its schedule -------------------------------------------------------------------


@app.command()
def rotate(
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
) -> None:
    """Rotate Provider credentials with no downtime, using each Provider's own token."""
    import datetime as dt

    from mtv_register.errors import PartialFailure, UsageError
    from mtv_register.rotation import RotateOptions, recovery_for, rotate_all

    _check_client(client, oc_path, explain)
    if bool(provider) == all_providers:
        _fail(
            UsageError(
                "say which Providers to rotate",
                fix="pass --provider NAME (repeatable) or --all, not both",
            )
        )
    age = None if max_age is None else dt.timedelta(seconds=_duration(max_age, "--max-age"))
    seconds = _timeout(timeout)
    config_path = str(kubeconfig) if kubeconfig else None
    renew = (
        None
        if before_expiry is None
        else dt.timedelta(seconds=_duration(before_expiry, "--before-expiry"))
    )
    options = RotateOptions(
        max_age=age,
        max_age_label=max_age or "",
        dry_run=dry_run,
        timeout=seconds,
        before_expiry=renew,
    )
    progress = (
        None
        if output is not Output.text
        else (lambda change: typer.secho(f"  {change}", err=True, dim=True))
    )

    def run() -> list[Any]:
        from mtv_register import forklift

        kube = _open_host(config_path, host, client, oc_path, in_cluster=in_cluster)
        try:
            # The CronJob's pod runs in the namespace `schedule` checked, and its Role grants
            # nothing on Namespace objects: there, take the namespace as given.
            namespace = (
                mtv_namespace
                if in_cluster and mtv_namespace
                else forklift.find_mtv_namespace(kube, mtv_namespace)
            )
            recovery = recovery_for(
                config_path,
                [c for c in (source_context, destination_context) if c],
                backend=client.value,
                oc_path=oc_path,
            )
            return rotate_all(
                kube,
                namespace,
                provider or None,
                options,
                progress or (lambda change: None),
                parallel=parallel,
                recovery=recovery,
            )
        finally:
            kube.close()

    from mtv_register import deadline

    with _explaining(explain, output), deadline.scope(seconds):
        results = _run(run)
        if output is Output.json:
            typer.echo(json.dumps(_camel([vars(r) for r in results]), indent=2))
        else:
            for result in results:
                detail = f": {result.reason}" if result.reason else ""
                typer.echo(f"Provider {result.provider} {result.action}{detail}")
            if not results:
                typer.echo("no Provider registered by mtv-register was found")
    failed = [r for r in results if r.action == "failed"]
    if failed:
        code = failed[0].exit_code if len(failed) == 1 else PartialFailure.exit_code
        raise typer.Exit(code or 1)


@app.command()
def schedule(
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
) -> None:
    """Rotate on a schedule: a CronJob in the MTV namespace, as a least-privileged account.

    --client chooses how this command writes the schedule; the CronJob's own runs use the image's
    default client."""
    import yaml

    from mtv_register import forklift
    from mtv_register.errors import UsageError
    from mtv_register.rotation import check_cron, schedule_manifests
    from mtv_register.rotation import schedule as write_schedule

    _check_client(client, oc_path, explain)
    _duration(max_age, "--max-age")
    _run(lambda: check_cron(every))
    if not image.strip() or any(c.isspace() for c in image):
        _fail(
            UsageError(
                f"--image {image!r} is not an image reference",
                fix="pass the image with mtv-register, e.g. quay.io/example/mtv-register:0.1.0",
            )
        )
    config_path = str(kubeconfig) if kubeconfig else None

    def run() -> list[Any]:
        kube = _open_host(config_path, host, client, oc_path)
        try:
            namespace = forklift.find_mtv_namespace(kube, mtv_namespace)
            if dry_run:
                return schedule_manifests(namespace, every=every, max_age=max_age, image=image)
            return write_schedule(
                kube,
                namespace,
                every=every,
                max_age=max_age,
                image=image,
                report=lambda change: typer.echo(str(change)),
            )
        finally:
            kube.close()

    with _explaining(explain, Output.text):  # the runbook after the result
        objects = _run(run)
        if dry_run:
            for obj in objects:
                typer.echo("---\n" + yaml.safe_dump(obj, sort_keys=False).rstrip())
        else:
            typer.echo(f"rotation scheduled: {every}, tokens older than {max_age}")


@app.command()
def unschedule(
    host: HostOption = None,
    kubeconfig: KubeconfigOption = None,
    mtv_namespace: MtvNamespaceOption = None,
    client: ClientOption = Client.kubernetes,
    oc_path: OcPathOption = None,
    explain: ExplainOption = False,
) -> None:
    """Remove the rotation CronJob and its account."""
    from mtv_register import forklift
    from mtv_register.rotation import unschedule as remove_schedule

    _check_client(client, oc_path, explain)
    config_path = str(kubeconfig) if kubeconfig else None

    def run() -> None:
        kube = _open_host(config_path, host, client, oc_path)
        try:
            namespace = forklift.find_mtv_namespace(kube, mtv_namespace)
            remove_schedule(kube, namespace, lambda change: typer.echo(str(change)))
        finally:
            kube.close()

    with _explaining(explain, Output.text):  # the runbook after the result
        _run(run)
        typer.echo("rotation unscheduled")


def main() -> None:
    """The console script: Ctrl-C and SIGTERM cancel the run (every wait wakes, no request
    follows, what was created mid-way is rolled back) and end it with 130 or 143, never a
    traceback; the process exits without waiting for threads still blocked in a request."""
    import os
    import signal

    from mtv_register import deadline

    def on_signal(signum: int, frame: object) -> None:
        first = not deadline.cancelled()
        deadline.cancel(signum)
        if first:
            raise KeyboardInterrupt  # unwinds the main thread: roll-back, then exit

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code: int = 0
    try:
        app()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except KeyboardInterrupt:
        _err("interrupted; a re-run converges")
        code = deadline.exit_code()
    if deadline.cancelled() and code not in (130, 143):
        code = deadline.exit_code()  # e.g. Ctrl-C at a prompt, which Typer words "Aborted!"
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
