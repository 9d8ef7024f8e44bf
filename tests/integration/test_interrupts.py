"""Runs that stop when told (issue 14, part 2): `--timeout` bounds the whole command, a server
that accepts connections and never answers included; Ctrl-C and SIGTERM stop it at once, roll
back what it created, and exit 130 or 143 without a traceback."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import SandboxFactory
from tests.integration.conftest import (
    register_args,
    shaped_target,
    snapshot_difference,
)
from tests.target import Target


@pytest.fixture
def hung_server() -> Iterator[str]:
    """An address that accepts TCP connections and never answers a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()


def _with_source_at(kubeconfig: Path, url: str, tmp_path: Path) -> Path:
    config = yaml.safe_load(kubeconfig.read_text())
    context = next(c for c in config["contexts"] if c["name"] == "source")
    cluster = next(c for c in config["clusters"] if c["name"] == context["context"]["cluster"])
    cluster["cluster"]["server"] = url
    changed = tmp_path / "hung-kubeconfig"
    changed.write_text(yaml.safe_dump(config))
    return changed


def _mtv_register(*args: str, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mtv_register", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,  # type: ignore[call-overload]
    )


def test_timeout_bounds_a_run_against_a_server_that_never_answers(
    target: Target, tmp_path: Path, hung_server: str
) -> None:
    kubeconfig = _with_source_at(target.kubeconfig, hung_server, tmp_path)
    before = target.snapshot()
    started = time.monotonic()
    run = _mtv_register(*register_args(kubeconfig, "--yes", "--timeout", "3s"))
    out, err = run.communicate(timeout=60)
    took = time.monotonic() - started

    assert run.returncode in (4, 9), err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "--timeout" in lines[0] and "source" in lines[0]
    assert "Traceback" not in out + err
    # A functional ceiling, not a speed target: without the deadline this run took minutes.
    assert took < 3 + 10, f"{took:.1f}s"
    assert snapshot_difference(before, target.snapshot()) == {}


@pytest.mark.sandbox_only("a token controller that never fills token Secrets (token_delay 1 h)")
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_the_token_wait_rolls_back_and_exits_at_once(
    make_sandbox: SandboxFactory, tmp_path: Path, signum: int, code: int
) -> None:
    slow = shaped_target(make_sandbox, tmp_path, mtv_on="separate", token_delay=3600)
    before = slow.snapshot()
    run = _mtv_register(*register_args(slow.kubeconfig, "--yes", "--timeout", "5m"))
    assert run.stderr is not None
    for line in run.stderr:
        if "Secret mtv-register/mtv-provider-token created" in line:
            break
    time.sleep(0.3)  # inside the wait for the token controller
    sent = time.monotonic()
    run.send_signal(signum)
    if signum == signal.SIGINT:
        time.sleep(0.05)
        run.send_signal(signum)  # pressed again: still no traceback
    out, err = run.communicate(timeout=30)
    took = time.monotonic() - sent

    assert run.returncode == code, err
    assert "Traceback" not in out + err
    assert "interrupted: what this run created was removed" in err
    assert took < 5, f"{took:.1f}s"  # a functional ceiling: it used to wait for the token
    assert snapshot_difference(before, slow.snapshot()) == {}


def test_ctrl_c_at_a_prompt_exits_130(target: Target) -> None:
    run = _mtv_register(
        "register", "--kubeconfig", str(target.kubeconfig), "--interactive",
        stdin=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(2.0)  # at the first prompt
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=30)
    assert run.returncode == 130, err
    assert "Traceback" not in out + err


def test_status_is_bounded_by_its_timeout_against_a_server_that_never_answers(
    target: Target, tmp_path: Path, hung_server: str
) -> None:
    config = yaml.safe_load(target.kubeconfig.read_text())
    context = next(c for c in config["contexts"] if c["name"] == "mtv")
    cluster = next(c for c in config["clusters"] if c["name"] == context["context"]["cluster"])
    cluster["cluster"]["server"] = hung_server
    kubeconfig = tmp_path / "hung-host"
    kubeconfig.write_text(yaml.safe_dump(config))
    run = _mtv_register(
        "status", "--kubeconfig", str(kubeconfig), "--host", "mtv", "--timeout", "2s"
    )
    out, err = run.communicate(timeout=60)
    assert run.returncode in (4, 9), err
    assert "--timeout" in err and "Traceback" not in out + err
