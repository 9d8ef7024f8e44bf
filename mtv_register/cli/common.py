"""What every command shares: the choices, the options declared once, the one wrapper that turns
a failure into one red line and its exit code, the output formats, and how clients are made
(`connector_of`: the backend flags and the Timing a caller passes in the root context's `obj`)."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import typer

from mtv_register.timing import DEFAULT_BURST, DEFAULT_QPS  # light: no client is loaded

if TYPE_CHECKING:
    from mtv_register.clusters import Connector
    from mtv_register.timing import Timing


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
SourceOption = Annotated[str | None, typer.Option(help="Context of the source cluster.")]
DestinationOption = Annotated[str | None, typer.Option(help="Context of the destination cluster.")]
SourceNameOption = Annotated[str | None, typer.Option(help="Provider name of the source.")]
DestinationNameOption = Annotated[
    str | None, typer.Option(help="Provider name of the destination.")
]
SaNamespaceOption = Annotated[str, typer.Option(help="Namespace of that ServiceAccount.")]
TimeoutOption = Annotated[str, typer.Option(help="Deadline for the whole run, e.g. 90s, 5m.")]
QpsOption = Annotated[
    float | None,
    typer.Option(
        help="Requests a second to each API server, shared by every pair and client of the run "
        "(0: no limit).",
        show_default=f"{DEFAULT_QPS:g}",
    ),
]
BurstOption = Annotated[
    int | None,
    typer.Option(
        help="Requests that may go at once to an API server before --qps paces them.",
        show_default=str(DEFAULT_BURST),
    ),
]

# verbose: -v's count; runbook: an --explain runbook still to print (True: on stderr).
_state: dict[str, Any] = {"verbose": 0, "runbook": None}

Command = TypeVar("Command", bound=Callable[..., Any])


def set_verbosity(verbose: int) -> None:
    _state["verbose"] = verbose
    if verbose:
        import logging

        from mtv_register.redaction import install_logging

        install_logging(logging.DEBUG if verbose >= 2 else logging.INFO)


def err(message: str) -> None:
    typer.secho(message, err=True, fg=typer.colors.RED)


def command(function: Command) -> Command:
    """A command whose failures end as one red line and their exit code: the one place the
    library's root error is caught."""

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt as interrupt:
            from mtv_register import deadline

            deadline.cancel()
            err(getattr(interrupt, "summary", "interrupted; a re-run converges"))
            raise typer.Exit(deadline.exit_code()) from None
        except Exception as error:
            raise typer.Exit(_reported(error)) from None
        finally:
            _print_runbook()  # after the error's line, as after the result

    return cast(Command, run)


def _reported(error: Exception) -> int:
    """Print `error` as one line; its exit code. Called while it is being handled."""
    from mtv_register import deadline
    from mtv_register.errors import MtvRegisterError
    from mtv_register.redaction import scrub

    if isinstance(error, deadline.Cancelled):
        err("interrupted: nothing more was sent; a re-run converges")
        return deadline.exit_code()
    if isinstance(error, MtvRegisterError):
        err(f"error: {error.line()}")
        return error.exit_code
    if _state["verbose"] >= 2:  # a bug: one line, the traceback only when asked for
        import traceback

        err(scrub(traceback.format_exc()))
    err(
        f"internal error: {scrub(type(error).__name__ + ': ' + str(error))} "
        "(re-run with -vv for details and report it)"
    )
    return 1


def timing_of(ctx: typer.Context) -> Timing | None:
    """The Timing in the root context's `obj` (tests invoke the app with
    `obj=Timing.immediate()`), or None: the library's defaults."""
    from mtv_register.timing import Timing

    policy = ctx.find_root().obj
    return policy if isinstance(policy, Timing) else None


def connector_of(
    ctx: typer.Context,
    client: Client,
    oc_path: str | None,
    qps: float | None = None,
    burst: int | None = None,
) -> Connector:
    """How this command's clients are made: `--client`, `--oc-path` and the context's Timing,
    with `--qps` and `--burst` when given (the library refuses values out of range)."""
    import dataclasses

    from mtv_register.clusters import Connector
    from mtv_register.timing import Timing

    timing = timing_of(ctx) or Timing()
    timing = dataclasses.replace(
        timing,
        qps=timing.qps if qps is None else qps,
        burst=timing.burst if burst is None else burst,
    )
    return Connector(client.value, oc_path, timing)


def duration(value: str, flag: str) -> float:
    from mtv_register.durations import parse_duration
    from mtv_register.errors import UsageError

    try:
        return parse_duration(value).total_seconds()
    except ValueError as error:
        raise UsageError(f"{flag}: {error}") from None


def timeout_seconds(value: str) -> float:
    """`--timeout` as seconds; the library refuses one that leaves no time
    (`deadline.check_timeout`)."""
    return duration(value, "--timeout")


def check_client(client: Client, oc_path: str | None, explain: bool) -> None:
    from mtv_register.errors import UsageError

    if client is Client.kubernetes and (oc_path or explain):
        flag = "--oc-path" if oc_path else "--explain"
        raise UsageError(f"{flag} needs --client oc", fix="add --client oc, or drop " + flag)


def may_prompt(flag: bool | None, yes: bool) -> bool:
    """--interactive as given; by default, when on a terminal; never with --yes."""
    if yes:
        return False
    if flag is not None:
        return flag
    return sys.stdin.isatty() and sys.stdout.isatty()


def aborted() -> typer.Exit:
    err("aborted: nothing was changed")
    return typer.Exit(1)


@contextlib.contextmanager
def explaining(explain: bool, output: Output) -> Iterator[None]:
    """--explain: after the block, the commands it ran, as a runbook. After a failed block,
    `command` prints it, once the error's line is out."""
    if not explain:
        yield
        return
    from mtv_register import oc_trail

    oc_trail.TRAIL.start()
    _state["runbook"] = output is not Output.text
    yield
    _print_runbook()


def _print_runbook() -> None:
    on_stderr = _state["runbook"]
    if on_stderr is None:
        return
    from mtv_register import oc_trail

    _state["runbook"] = None
    typer.echo(oc_trail.TRAIL.runbook(), err=on_stderr)


def render(data: Any, output: Output, text: Callable[[], None], *, has_yaml: bool = True) -> None:
    """`data` as JSON or YAML, in Kubernetes' convention, or `text()` prints it for people.
    Without `has_yaml`, -o yaml prints the text."""
    if output is Output.json:
        typer.echo(json.dumps(camel(data), indent=2))
    elif output is Output.yaml and has_yaml:
        import yaml

        typer.echo(yaml.safe_dump(camel(data), sort_keys=False).rstrip())
    else:
        text()


def camel(data: Any) -> Any:
    """camelCase keys; seconds rounded to 0.1."""
    if isinstance(data, dict):
        return {
            _camel_key(str(k)): (round(v, 1) if isinstance(v, float) else camel(v))
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [camel(item) for item in data]
    return data


def _camel_key(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
