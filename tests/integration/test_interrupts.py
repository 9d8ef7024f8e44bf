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

pytestmark = pytest.mark.both_backends  # see tests/integration/conftest.py: backends_of


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


def _with_server_at(kubeconfig: Path, context_name: str, url: str, tmp_path: Path) -> Path:
    """A copy of `kubeconfig` in which `context_name` points at `url`."""
    config = yaml.safe_load(kubeconfig.read_text())
    context = next(c for c in config["contexts"] if c["name"] == context_name)
    cluster = next(c for c in config["clusters"] if c["name"] == context["context"]["cluster"])
    cluster["cluster"]["server"] = url
    changed = tmp_path / f"hung-{context_name}-kubeconfig"
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
    kubeconfig = _with_server_at(target.kubeconfig, "source", hung_server, tmp_path)
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
    kubeconfig = _with_server_at(target.kubeconfig, "mtv", hung_server, tmp_path)
    run = _mtv_register(
        "status", "--kubeconfig", str(kubeconfig), "--host", "mtv", "--timeout", "2s"
    )
    out, err = run.communicate(timeout=60)
    assert run.returncode in (4, 9), err
    assert "--timeout" in err and "Traceback" not in out + err


@pytest.mark.parametrize(
    "command",
    [
        ["unregister", "--source", "source", "--destination", "destination", "--yes"],
        ["rotate", "--all", "--max-age", "0s", "--yes"],
    ],
    ids=["unregister", "rotate"],
)
def test_unregister_and_rotate_are_bounded_by_their_timeout(
    target: Target, tmp_path: Path, hung_server: str, command: list[str]
) -> None:
    kubeconfig = _with_server_at(target.kubeconfig, "mtv", hung_server, tmp_path)
    before = target.snapshot()
    started = time.monotonic()
    run = _mtv_register(
        *command, "--host", "mtv", "--kubeconfig", str(kubeconfig), "--timeout", "2s"
    )
    out, err = run.communicate(timeout=60)
    took = time.monotonic() - started

    assert run.returncode in (4, 9), err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "--timeout" in lines[0], lines[0]
    assert "Traceback" not in out + err
    assert took < 2 + 10, f"{took:.1f}s"  # a functional ceiling: no deadline meant minutes
    assert snapshot_difference(before, target.snapshot()) == {}


def _registered_slow_target(make_sandbox: SandboxFactory, tmp_path: Path) -> Target:
    """A registered pair whose token controller then stops filling token Secrets."""
    slow = shaped_target(make_sandbox, tmp_path, mtv_on="separate")
    done = _mtv_register(*register_args(slow.kubeconfig, "--yes"))
    _, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    slow.sandbox.set_token_delay(3600)
    return slow


def _signal_after(run: subprocess.Popen[str], line_part: str, signum: int) -> float:
    """Send `signum` once the run printed a line containing `line_part`; when it was sent."""
    assert run.stderr is not None
    for line in run.stderr:
        if line_part in line:
            break
    else:
        pytest.fail(f"the run ended ({run.wait()}) before printing {line_part!r}")
    time.sleep(0.3)  # inside the wait that follows
    sent = time.monotonic()
    run.send_signal(signum)
    return sent


@pytest.mark.sandbox_only("a token controller that stops filling token Secrets (token_delay 1 h)")
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_a_rotation_undoes_it_and_exits_at_once(
    make_sandbox: SandboxFactory, tmp_path: Path, signum: int, code: int
) -> None:
    slow = _registered_slow_target(make_sandbox, tmp_path)
    before = slow.snapshot()
    run = _mtv_register(
        "rotate", "--all", "--max-age", "0s", "--host", "mtv",
        "--kubeconfig", str(slow.kubeconfig), "--timeout", "5m", "--yes",
    )  # fmt: skip
    sent = _signal_after(run, "Secret mtv-register/mtv-provider-token-", signum)
    out, err = run.communicate(timeout=30)
    took = time.monotonic() - sent

    assert run.returncode == code, err
    assert "Traceback" not in out + err
    assert "interrupted" in err and "a re-run converges" in err
    assert took < 5, f"{took:.1f}s"  # a functional ceiling: it used to wait for the token
    # The new token Secrets were removed: the registration is as it was.
    assert snapshot_difference(before, slow.snapshot()) == {}, err


@pytest.mark.sandbox_only("a token controller that never fills token Secrets (token_delay 1 h)")
def test_a_signal_during_a_fleet_stops_every_pair_at_once(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    slow = shaped_target(make_sandbox, tmp_path, mtv_on="separate", token_delay=3600)
    before = slow.snapshot()
    fleet = tmp_path / "pairs.yaml"
    fleet.write_text(
        yaml.safe_dump(
            {
                "pairs": [
                    {"source": "source", "destination": "destination"},
                    {
                        "source": "destination",
                        "destination": "source",
                        "sourceName": "destination-back",
                        "destinationName": "source-back",
                    },
                ]
            }
        )
    )
    run = _mtv_register(
        "register", "--pairs", str(fleet), "--host", "mtv",
        "--kubeconfig", str(slow.kubeconfig), "--yes", "--parallel", "2",
    )  # fmt: skip
    assert run.stderr is not None
    time.sleep(4.0)  # both pairs are inside the token wait by now
    sent = time.monotonic()
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=30)
    took = time.monotonic() - sent

    assert run.returncode == 143, err
    assert "Traceback" not in out + err
    assert "a re-run converges" in err
    assert took < 5, f"{took:.1f}s"
    # What a fleet run leaves when stopped is what a re-run picks up; here, each pair's
    # roll-back had its grace period and there is nothing left.
    assert snapshot_difference(before, slow.snapshot()) == {}
