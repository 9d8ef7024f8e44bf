"""Inputs refused (or accepted) before any cluster is spoken to."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mtv_register import __version__
from mtv_register.cli import app


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.stdout + result.stderr


def test_version_alone_prints_the_version() -> None:
    assert run("--version") == (0, f"mtv-register {__version__}\n")


@pytest.mark.parametrize(
    ("every", "named"),
    [
        ("99 3 * * *", "99 is out of range for the minute (0-59)"),
        ("0 24 * * *", "24 is out of range for the hour (0-23)"),
        ("0 3 0 * *", "0 is out of range for the day of month (1-31)"),
        ("0 3 * 13 *", "13 is out of range for the month (1-12)"),
        ("0 3 * * 8", "8 is out of range for the day of week (0-7)"),
        ("0 3 * *", "is not a cron schedule"),
    ],
)
def test_schedule_refuses_a_cron_field_out_of_range(every: str, named: str) -> None:
    code, output = run("schedule", "--every", every, "--image", "img:1", "--max-age", "30d")
    assert code == 2
    assert output.count("\n") == 1 and output.startswith("error: ")
    assert named in output


@pytest.mark.parametrize("every", ["*/15 1-5 1,15 * MON-FRI", "@daily", "0 3 * * 7"])
def test_schedule_takes_what_the_cronjob_controller_takes(every: str) -> None:
    code, output = run(
        "schedule", "--every", every, "--image", "img:1", "--max-age", "30d", "--dry-run",
        "--kubeconfig", "/nonexistent",
    )  # fmt: skip
    assert "out of range" not in output and "not a cron schedule" not in output, output
    assert code == 3  # it went on, to the kubeconfig


@pytest.mark.parametrize("image", ["", " ", "a b"])
def test_schedule_refuses_an_empty_image(image: str) -> None:
    code, output = run("schedule", "--every", "@daily", "--image", image, "--max-age", "30d")
    assert code == 2
    assert "is not an image reference" in output


def _kubeconfig(tmp_path: Path, user: dict[str, str], contexts: list[str], **extra: str) -> Path:
    """A kubeconfig of `contexts` on one unreachable server, all as `user`."""
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": user}],
                "contexts": [
                    {"name": name, "context": {"cluster": "c", "user": "u"}} for name in contexts
                ],
                **extra,
            }
        )
    )
    return kubeconfig


def test_a_context_without_credentials_is_an_unusable_context(tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path, {}, ["a", "b"], **{"current-context": "a"})
    code, output = run(
        "register", "--kubeconfig", str(kubeconfig), "--source", "a", "--destination", "b", "--yes"
    )
    assert code == 3
    assert ('context "a"' in output or 'context "b"' in output) and "has no credentials" in output
    assert "system:anonymous" in output and output.count("\n") == 1


@pytest.mark.parametrize(
    "command",
    [
        ["register", "--source", "a", "--destination", "b", "--yes"],
        ["unregister", "--source", "a", "--destination", "b", "--yes"],
        ["status", "--host", "a"],
        ["rotate", "--all", "--host", "a"],
    ],
)
@pytest.mark.parametrize("timeout", ["0s", "0m"])
def test_every_command_refuses_a_timeout_that_leaves_no_time(
    tmp_path: Path, command: list[str], timeout: str
) -> None:
    """One check (the library's), one line, whatever unit the zero is written in."""
    kubeconfig = _kubeconfig(tmp_path, {"token": "t"}, ["a"], **{"current-context": "a"})
    code, output = run(*command, "--kubeconfig", str(kubeconfig), "--timeout", timeout)
    assert code == 2, output
    assert output == (
        "error: --timeout must be more than 0s, not 0s: pass a positive duration, e.g. "
        "--timeout 5m\n"
    ), output


def test_status_without_host_or_current_context_names_the_fix(tmp_path: Path) -> None:
    code, output = run("status", "--kubeconfig", str(_kubeconfig(tmp_path, {"token": "t"}, ["a"])))
    assert code == 2
    assert "no --host and no current-context in the kubeconfig" in output
    assert "pass --host CONTEXT" in output


RATE_COMMANDS = [
    ["register", "--source", "a", "--destination", "b", "--yes"],
    ["register", "--pairs", "PAIRS", "--yes"],
    ["unregister", "--source", "a", "--destination", "b", "--yes"],
    ["status", "--host", "a"],
    ["rotate", "--all", "--host", "a"],
    ["doctor", "--source", "a", "--destination", "b"],
]


@pytest.mark.parametrize("command", RATE_COMMANDS, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize(
    ("flags", "line"),
    [
        (
            ["--qps", "-1"],
            "error: --qps must be 0 (no limit) or a positive number of requests a second, not "
            "-1: pass e.g. --qps 20\n",
        ),
        (
            ["--burst", "0"],
            "error: --burst must be at least 1 request, not 0: pass e.g. --burst 50\n",
        ),
    ],
)
def test_every_command_refuses_a_rate_out_of_range_before_any_request(
    tmp_path: Path, command: list[str], flags: list[str], line: str
) -> None:
    """The library's one check: one line, exit 2; the kubeconfig's server is never tried."""
    kubeconfig = _kubeconfig(tmp_path, {"token": "t"}, ["a", "b"], **{"current-context": "a"})
    pairs = tmp_path / "pairs.yaml"
    pairs.write_text("pairs:\n- source: a\n  destination: b\n")
    argv = [str(pairs) if arg == "PAIRS" else arg for arg in command]
    code, output = run(*argv, "--kubeconfig", str(kubeconfig), *flags)
    assert (code, output) == (2, line)
