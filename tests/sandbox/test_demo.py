"""`mtv-register sandbox demo`, the Quickstart's first command, start to end."""

from __future__ import annotations

from typer.testing import CliRunner

from mtv_register.cli import app
from mtv_register.timing import Timing
from tests.conftest import assert_no_token


def test_the_demo_registers_twice_shows_status_and_a_healthy_doctor_and_leaves_nothing() -> None:
    result = CliRunner().invoke(
        app, ["sandbox", "demo", "--token-delay", "0.1"], obj=Timing.immediate()
    )
    output = result.stdout + result.stderr
    assert result.exit_code == 0, output
    assert_no_token(output)
    steps = [
        line for line in result.stdout.splitlines() if line[:2] in {f"{n}." for n in range(1, 8)}
    ]
    assert [step.split(" ")[0] for step in steps] == ["1.", "2.", "3.", "4.", "5.", "6.", "7."]
    assert "6. mtv-register doctor --source source --destination destination --host mtv" in steps
    assert "nothing changed" in output or "unchanged" in output
    summary = [line for line in result.stdout.splitlines() if line.endswith(" failed")]
    assert len(summary) == 1 and summary[0].endswith(" 0 warning(s), 0 failed"), summary
    assert "✘" not in result.stdout
