"""`python -m tests.realstack up` leaves nothing behind, however it is stopped: SIGTERM or
SIGINT half-way through a start or a build, after it is ready, or a SIGKILL of the launcher
itself (its children die with it).

These start real control planes, so they run where the binaries are already built
(`nox -s realstack` builds them first); elsewhere they skip, saying why.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.realstack.build import COMPLETE, DEFAULT_KUBERNETES, ControlPlaneModule, cache_root

ROOT = Path(__file__).resolve().parents[2]
# Read at import, before the tests' own HOME is set (tests/conftest.py): the machine's cache.
CACHE = cache_root()
BUILT = CACHE / "bin" / ControlPlaneModule(DEFAULT_KUBERNETES).key
STARTED: list[subprocess.Popen[str]] = []

pytestmark = [
    pytest.mark.realstack,
    pytest.mark.skipif(
        not (BUILT / COMPLETE).is_file(),
        reason=f"the Kubernetes {DEFAULT_KUBERNETES} binaries are not built here: "
        "`python -m tests.realstack build` (or `nox -s realstack`) builds them",
    ),
]


def children() -> dict[int, int]:
    """Every process by pid, with its parent's pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            found[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return found


def descendants(pid: int) -> set[int]:
    parents = children()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def name_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def alive(pids: set[int]) -> set[int]:
    """Those of `pids` still running (a zombie has exited)."""
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.add(pid)
    return running


@pytest.fixture(autouse=True)
def _no_launcher_outlives_its_test() -> Iterator[None]:
    yield
    while STARTED:
        launcher = STARTED.pop()
        if launcher.poll() is None:
            launcher.kill()  # its children follow it (PR_SET_PDEATHSIG)
            launcher.wait()


def launch(tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.realstack",
            "up",
            "--kubeconfig",
            str(tmp_path / "kc"),
            "--audit-dir",
            str(tmp_path / "audit"),
            "--forklift",
            "none",
        ],
        cwd=ROOT,
        env={**os.environ, "MTV_REGISTER_REALSTACK_CACHE": str(CACHE), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    STARTED.append(launcher)
    return launcher


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:g}s"
        time.sleep(0.05)


def folders_of(pids: set[int]) -> set[Path]:
    """The launcher's temporary folders, as its servers' command lines name them."""
    found = set()
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for arg in argv:
            match = re.search(rb"(/[^=]*/mtv-register-realstack-[^/]+)/", arg)
            if match:
                found.add(Path(match.group(1).decode()))
    return found


def assert_all_gone(seen: set[int], launcher: subprocess.Popen[str], tmp_path: Path) -> None:
    folders = folders_of(seen)
    launcher.wait(60)
    wait_until(lambda: not alive(seen), 10, "every child process to end")
    assert not (tmp_path / "kc").exists(), "the kubeconfig of a stopped stack was left behind"
    assert not [f for f in folders if f.exists()], "the launcher's temporary files were left"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_half_way_through_the_start_leaves_no_process(
    tmp_path: Path, signum: signal.Signals
) -> None:
    launcher = launch(tmp_path)
    # The second cluster's etcd: the first cluster is up, the second is starting.
    wait_until(
        lambda: sum(name_of(p) == "etcd" for p in descendants(launcher.pid)) >= 2,
        300,
        "a second etcd",
    )
    seen = descendants(launcher.pid)
    assert {"etcd", "kube-apiserver"} <= {name_of(p) for p in seen}

    launcher.send_signal(signum)

    assert_all_gone(seen, launcher, tmp_path)
    assert launcher.returncode == 0
    assert "Traceback" not in (launcher.stderr.read() if launcher.stderr else "")


def test_once_ready_sigterm_stops_every_cluster_and_keeps_the_audit_logs(tmp_path: Path) -> None:
    launcher = launch(tmp_path)
    assert launcher.stdout is not None
    line = launcher.stdout.readline()
    assert line == f"real clusters ready: {tmp_path / 'kc'}\n"
    seen = descendants(launcher.pid)
    names = sorted(name_of(p) for p in seen)
    assert names.count("kube-apiserver") == 3 and names.count("etcd") == 3, names
    assert names.count("kube-controller") == 3, names  # comm is cut at 15 characters

    launcher.terminate()

    assert_all_gone(seen, launcher, tmp_path)
    assert sorted(p.name for p in (tmp_path / "audit").iterdir()) == [
        "destination.log",
        "mtv.log",
        "source.log",
    ]


def test_a_killed_launcher_takes_its_clusters_with_it(tmp_path: Path) -> None:
    launcher = launch(tmp_path)
    wait_until(
        lambda: any(name_of(p) == "kube-apiserver" for p in descendants(launcher.pid)),
        300,
        "the first kube-apiserver",
    )
    seen = descendants(launcher.pid)
    folders = folders_of(seen)
    assert folders

    launcher.kill()  # no handler runs: the kernel ends the children (PR_SET_PDEATHSIG)

    launcher.wait(10)
    wait_until(lambda: not alive(seen), 10, "every child process to end")
    for folder in folders:  # no handler ran to remove it: the one thing left
        shutil.rmtree(folder)


def test_an_interrupted_build_leaves_no_compiler_running(tmp_path: Path) -> None:
    """A build into an empty binary cache (Go's module and build caches shared, so it is quick)
    interrupted as soon as `go` runs."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for shared in ("gomod", "gocache"):
        (cache / shared).symlink_to(CACHE / shared)
    launcher = launch(tmp_path, {"MTV_REGISTER_REALSTACK_CACHE": str(cache)})

    def go_started() -> bool:
        if launcher.poll() is not None:  # ended before any build: say what it printed
            out, err = launcher.communicate()
            pytest.fail(f"the launcher ended ({launcher.returncode}) before go ran: {out}{err}")
        return any(name_of(p) == "go" for p in descendants(launcher.pid))

    wait_until(go_started, 60, "go to start")
    time.sleep(1.0)  # compilers and the linker under way
    seen = descendants(launcher.pid)

    launcher.send_signal(signal.SIGINT)

    assert_all_gone(seen, launcher, tmp_path)
    assert list((cache / "bin").iterdir()) == [], "a half-built cache entry stayed"
