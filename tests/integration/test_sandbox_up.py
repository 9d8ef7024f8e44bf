"""The issue's "done when", as a user runs it: `mtv-register sandbox up` in one process, then
register, register again, status and unregister as separate processes, on the test's backend;
SIGTERM stops the sandbox cleanly. The test serves its own sandbox, so it runs the same whatever
clusters the run was given."""

from __future__ import annotations

import base64
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mtv_register import clusters
from mtv_register.kube import SECRET
from tests.conftest import EXTRA_TOKENS
from tests.integration.conftest import BACKEND_COMMANDS, Backend

DEADLINE = 30.0


def read_line(process: subprocess.Popen[str], deadline: float) -> str:
    """The next stdout line of `process`, or fail at `deadline` (never a blind sleep)."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(timeout=max(0.0, deadline - time.monotonic())):
                return process.stdout.readline()
    raise AssertionError("the sandbox did not print its ready line in time")


@pytest.fixture
def sandbox_up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    kubeconfig = tmp_path / "kubeconfig"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mtv_register",
            "sandbox",
            "up",
            "--kubeconfig",
            str(kubeconfig),
            "--mtv-on",
            "separate",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = read_line(process, time.monotonic() + DEADLINE)
        assert line == f"sandbox ready: {kubeconfig.resolve()}\n", line
        yield process, kubeconfig
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=DEADLINE)


OUTPUTS: list[str] = []


def mtv_register(
    backend: Backend, kubeconfig: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """`mtv-register ARGS` in a process of its own, on `backend` for the commands that take it."""
    argv = list(args)
    if argv[0] in BACKEND_COMMANDS:
        argv[1:1] = backend.flags
    result = subprocess.run(
        [sys.executable, "-m", "mtv_register", *argv, "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    OUTPUTS.append(result.stdout + result.stderr)
    assert "Traceback" not in result.stderr
    return result


def sandbox_tokens(kubeconfig: Path) -> list[str]:
    """The tokens living in the sandbox process (the admins' and the registered service
    accounts'), read through its API: this process's own ISSUED_TOKENS knows none of them, so
    they are handed to the suite's scans (of each test's output, and of the oc backend's argv)."""
    config = clusters.load_kubeconfig(kubeconfig)
    tokens = [user["user"]["token"] for user in config.data["users"]]
    for context in ("source", "destination"):
        kube = clusters.Connector().connect(config, context)
        try:
            secret = kube.get(SECRET, "mtv-provider-token", "mtv-register") or {}
        finally:
            kube.close()
        tokens.append(base64.b64decode(secret["data"]["token"]).decode())
    EXTRA_TOKENS.update(tokens)
    return tokens


def assert_no_sandbox_token(tokens: list[str], texts: list[str]) -> None:
    forms = [*tokens, *(base64.b64encode(t.encode()).decode() for t in tokens)]
    leaked = sum(1 for form in forms for text in texts if form in text)
    assert not leaked, f"{leaked} sandbox token(s) leaked into the output"


def test_sandbox_up_register_rerun_status_unregister_then_sigterm(
    sandbox_up: tuple[subprocess.Popen[str], Path], backend: Backend
) -> None:
    process, kubeconfig = sandbox_up
    pair = ("--source", "source", "--destination", "destination", "--host", "mtv", "--yes")

    OUTPUTS.clear()
    first = mtv_register(backend, kubeconfig, "register", *pair)
    assert first.returncode == 0, first.stderr
    tokens = sandbox_tokens(kubeconfig)
    assert first.stdout.splitlines() == [
        "Provider openshift-mtv/source (source, source) Ready on mtv",
        "Provider openshift-mtv/destination (destination, destination) Ready on mtv",
        "pair registered",
    ]

    again = mtv_register(backend, kubeconfig, "register", *pair)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == "pair already registered, nothing changed"

    status = mtv_register(backend, kubeconfig, "status", "--host", "mtv", "-o", "json")
    assert status.returncode == 0, status.stderr
    rows = {row["name"]: row for row in json.loads(status.stdout)["providers"]}
    assert {name: row["ready"] for name, row in rows.items()} == {
        "destination": True,
        "host": True,
        "source": True,
    }
    table = mtv_register(backend, kubeconfig, "status", "--host", "mtv")
    assert table.returncode == 0, table.stderr
    assert all(name in table.stdout for name in ("source", "destination", "host"))

    removed = mtv_register(backend, kubeconfig, "unregister", *pair)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.splitlines()[-1] == "pair unregistered"
    after = mtv_register(
        backend,
        kubeconfig,
        "status",
        "--host",
        "mtv",
        "-o",
        "json",
        "--remote",
        "source=source",
        "--remote",
        "destination=destination",
    )
    report = json.loads(after.stdout)
    assert [row["name"] for row in report["providers"]] == ["host"]
    for remote in report["remotes"]:
        assert not any(remote[k] for k in ("clusterRole", "serviceAccount", "clusterRoleBinding"))
        assert remote["tokenSecrets"] == []

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=DEADLINE) == 0
    assert process.stderr is not None
    stderr = process.stderr.read()
    assert "Traceback" not in stderr
    assert_no_sandbox_token(tokens, [*OUTPUTS, stderr])
    if backend.oc_path is not None:  # the commands did run through the oc backend's binary
        assert any((Path(backend.oc_path).parent / "argv").iterdir())


def _sandbox_up(kubeconfig: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mtv_register", "sandbox", "up", "--kubeconfig", str(kubeconfig),
         *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


def test_sandbox_up_refuses_an_existing_kubeconfig(tmp_path: Path) -> None:
    mine = tmp_path / "config"
    mine.write_text("the user's own kubeconfig\n")
    process = _sandbox_up(mine)
    _, err = process.communicate(timeout=DEADLINE)
    assert process.returncode == 2
    assert err.startswith(f"error: {mine} exists: the sandbox would overwrite it")
    assert "--force" in err
    assert mine.read_text() == "the user's own kubeconfig\n"


def test_sandbox_up_writes_0600_and_removes_its_kubeconfig_when_it_stops(tmp_path: Path) -> None:
    (tmp_path / "kube").mkdir()
    path = tmp_path / "kube" / "config"
    path.write_text("old\n")
    process = _sandbox_up(path, "--force")
    try:
        line = read_line(process, time.monotonic() + DEADLINE)
        assert line == f"sandbox ready: {path.resolve()}\n", line
        assert path.stat().st_mode & 0o777 == 0o600
        assert "current-context" in path.read_text()
        assert [p.name for p in path.parent.iterdir()] == ["config"]  # no temporary file left
    finally:
        process.terminate()
        process.wait(timeout=DEADLINE)
    assert process.returncode == 0
    assert not path.exists()
