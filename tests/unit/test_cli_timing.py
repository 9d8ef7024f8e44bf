"""The retry policy a caller puts in the CLI's root context object (`obj`) is the one every
command's requests run under: with one try, a single transient failure ends the command; with
six tries and no waits, the command goes through it and waits 0 s (the defaults: 0.2 s). No
default is patched; the one wait is recorded instead of slept."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from mtv_register import deadline
from mtv_register.cli import app
from mtv_register.sandbox import Sandbox
from mtv_register.timing import Timing

ONE_TRY = Timing(attempts=1, initial_wait=0.0, max_wait=0.0, honour_retry_after=False)
NO_WAITS = Timing.immediate()
GAVE_UP = "kept failing, 1 attempts"
MTV_REGISTER = "^mtv-register/"  # the tool's own requests, not the sandbox's Forklift's

PAIR = ["--source", "source", "--destination", "destination"]
# Each command's first request to the MTV host meets the fault.
COMMANDS = {
    "status": ["status"],
    "register": ["register", *PAIR, "--dry-run", "--yes"],
    "unregister": ["unregister", *PAIR, "--yes"],
    "unregister --pairs": ["unregister", "--pairs", "{pairs}", "-o", "json", "--yes"],
    "rotate": ["rotate", "--all", "--dry-run"],
    "schedule": [
        "schedule",
        "--every",
        "@daily",
        "--max-age",
        "30d",
        "--image",
        "i:1",
        "--dry-run",
    ],
    "unschedule": ["unschedule"],
}


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait between two tries of a request, in order (none is slept)."""
    asked: list[float] = []
    monkeypatch.setattr(deadline, "sleep", asked.append)
    return asked


def invoke(argv: list[str], policy: Timing) -> Result:
    result = CliRunner().invoke(app, argv, obj=policy)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result


def command_line(name: str, kubeconfig: Path) -> list[str]:
    pairs = kubeconfig.with_name("pairs.yaml")
    pairs.write_text("pairs:\n  - {source: source, destination: destination}\n")
    argv = [arg.replace("{pairs}", str(pairs)) for arg in COMMANDS[name]]
    return [*argv, "--host", "mtv", "--kubeconfig", str(kubeconfig)]


@pytest.mark.parametrize("name", COMMANDS)
def test_one_try_from_the_context_object_ends_at_the_first_transient_failure(
    sandbox: Sandbox, kubeconfig: Path, name: str
) -> None:
    fault = sandbox["mtv"].cluster.faults.inject("*", "", status=503, agent=MTV_REGISTER)

    result = invoke(command_line(name, kubeconfig), ONE_TRY)

    assert fault.hits == 1
    assert result.exit_code == 1
    assert GAVE_UP in result.stdout + result.stderr


@pytest.mark.parametrize("name", COMMANDS)
def test_tries_from_the_context_object_go_through_a_transient_failure_without_waiting(
    sandbox: Sandbox, kubeconfig: Path, waits: list[float], name: str
) -> None:
    fault = sandbox["mtv"].cluster.faults.inject("*", "", status=503, agent=MTV_REGISTER)

    result = invoke(command_line(name, kubeconfig), NO_WAITS)

    assert fault.hits == 1
    assert result.exit_code == 0, result.stderr
    assert "kept failing" not in result.stdout + result.stderr
    assert waits == [NO_WAITS.initial_wait]  # the defaults would have waited 0.2 s


@pytest.mark.parametrize(
    ("policy", "said"),
    [(ONE_TRY, ["Provider source failed", GAVE_UP]), (NO_WAITS, ["Provider source rotated"])],
)
def test_rotate_speaks_to_the_registered_cluster_under_the_context_objects_policy(
    sandbox: Sandbox, kubeconfig: Path, policy: Timing, said: list[str]
) -> None:
    host = ["--host", "mtv", "--kubeconfig", str(kubeconfig)]
    assert invoke(["register", *PAIR, "--yes", *host], NO_WAITS).exit_code == 0
    # After registering, only the Provider's own client (RotateOptions.timing) speaks to source.
    fault = sandbox["source"].cluster.faults.inject("*", "", status=503, agent=MTV_REGISTER)

    result = invoke(["rotate", "--provider", "source", "--max-age", "0s", *host], policy)

    assert fault.hits == 1
    assert all(words in result.stdout for words in said), result.stdout
