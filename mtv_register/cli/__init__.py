"""The `mtv-register` command: parses, prompts, prints. No Kubernetes logic lives here.

Imports of the library stay inside the commands, so `mtv-register --help` starts fast. One module
per command group; `common` holds what they share.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mtv_register.cli import doctor, register, rotate, sandbox, status, unregister
from mtv_register.cli.common import command, err, set_verbosity

__all__ = ["app", "main"]

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

# In the order `--help` lists them.
app.command()(command(register.register))
app.command()(command(status.status))
app.command()(command(doctor.doctor))
app.command()(command(unregister.unregister))
app.command()(command(rotate.rotate))
app.command()(command(rotate.schedule))
app.command()(command(rotate.unschedule))
sandbox_app.command("up")(command(sandbox.up))
sandbox_app.command("demo")(command(sandbox.demo))


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
    set_verbosity(verbose)


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
        err("interrupted; a re-run converges")
        code = deadline.exit_code()
    if deadline.cancelled() and code not in (130, 143):
        code = deadline.exit_code()  # e.g. Ctrl-C at a prompt, which Typer words "Aborted!"
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
