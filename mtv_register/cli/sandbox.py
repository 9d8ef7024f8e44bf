"""`sandbox up` serves simulated clusters until stopped; `sandbox demo` shows a registration on
them, start to end (`mtv_register.sandbox.demo`). Where the sandbox is not installed (the
rotation image leaves it out), both end with one line and exit code 13 (`errors.SandboxMissing`)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mtv_register.cli.common import MtvOn, Output, timing_of

if TYPE_CHECKING:
    from mtv_register.doctor import DoctorReport
    from mtv_register.orchestrator import PairResult
    from mtv_register.sandbox import Sandbox


@contextlib.contextmanager
def _installed() -> Iterator[None]:
    """The sandbox's imports: where it is not installed, one line and exit 13, no traceback."""
    try:
        yield
    except ImportError as error:
        if error.name != "mtv_register.sandbox":
            raise
        from mtv_register.errors import SandboxMissing

        raise SandboxMissing(
            "this installation of mtv-register has no sandbox (the rotation image leaves it out)",
            fix="install the mtv-register package (pip install mtv-register) to run it",
        ) from None


def up(
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
    breaks: Annotated[
        list[str] | None,
        typer.Option(
            "--break",
            metavar="NAME[@CONTEXT]",
            help="Break a prerequisite of cross-cluster live migration: NAME, or NAME@CONTEXT "
            "for another cluster. feature-gate, kubevirt-ca, migration-network and "
            "old-virtualization break the source by default, sync-addresses the destination, "
            "mtv-flag and old-mtv the MTV host (only).",
        ),
    ] = None,
) -> None:
    """Serve simulated clusters until interrupted (SIGINT or SIGTERM). The kubeconfig is written
    atomically with mode 0600 and removed when the sandbox stops."""
    import signal
    import threading

    from mtv_register.errors import UsageError

    with _installed():
        from mtv_register.sandbox import Sandbox

    target = kubeconfig.expanduser().resolve()
    if target.exists() and not force:
        raise UsageError(
            f"{target} exists: the sandbox would overwrite it (and remove it when it stops)",
            fix="pass another --kubeconfig path, or --force to replace that file",
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
            breaks=breaks or (),
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    sandbox.start()
    written = False
    try:
        _write_atomically(sandbox, target)
        written = True
        typer.echo(f"sandbox ready: {target}")
        sys.stdout.flush()
        stop.wait()
    finally:
        sandbox.stop()
        if written:
            target.unlink(missing_ok=True)


def _write_atomically(sandbox: Sandbox, target: Path) -> None:
    """The sandbox's kubeconfig at `target`, mode 0600, whole or not at all."""
    import os
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        os.close(handle)  # mkstemp made it 0600
        sandbox.write_kubeconfig(Path(temporary))
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def demo(
    ctx: typer.Context,
    token_delay: Annotated[float, typer.Option(help="Token controller delay, seconds.")] = 0.5,
) -> None:
    """Bring up a sandbox, register a pair on a separate MTV host, show it, tear it down."""
    with _installed():
        from mtv_register.sandbox import demo as sandbox_demo

    sandbox_demo.run(_Shown(), token_delay=token_delay, timing=timing_of(ctx))


class _Shown:
    """The demo on the terminal: steps in bold, results as `register` and `status` print them."""

    def step(self, heading: str) -> None:
        typer.secho(heading, bold=True)

    def line(self, text: str) -> None:
        typer.echo(text)

    def result(self, result: PairResult) -> None:
        from mtv_register.cli.register import print_result

        print_result(result, Output.text, dry_run=False)

    def status(self, report: dict[str, Any]) -> None:
        from mtv_register.cli.status import status_table

        status_table(report)

    def doctor(self, report: DoctorReport) -> None:
        from mtv_register.cli.doctor import show_report

        show_report(report)
