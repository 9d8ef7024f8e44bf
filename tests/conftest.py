"""Shared fixtures: sandboxes in threads of the test process, the real kubectl, token scanning."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mtv_register.sandbox import ISSUED_TOKENS, ForkliftTiming, Sandbox

SandboxFactory = Callable[..., Sandbox]
CLUSTERS_VARIABLE = "MTV_REGISTER_TEST_CLUSTERS"
# The in-process sandboxes of the tests run Forklift's order of events with short delays; a
# Sandbox left to its defaults (`sandbox up`, `sandbox demo`) keeps Forklift's real 3 s and 30 s.
FAST_FORKLIFT = ForkliftTiming.fast()
# Tokens of clusters other than the in-process sandboxes (external clusters), as tests saw them.
EXTRA_TOKENS: set[str] = set()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clusters",
        default=None,
        metavar="KUBECONFIG|sandbox-process",
        help="Run tests/integration against these clusters (contexts source, destination, mtv) "
        f"instead of embedded sandboxes; also ${CLUSTERS_VARIABLE}. `sandbox-process`: a "
        "`sandbox up --no-forklift` in its own process, reached only over HTTPS, as kind is.",
    )
    parser.addoption(
        "--reliability-figures",
        default=None,
        metavar="DIR",
        help="Write the figures the hardening tests recorded (and the token-leak scan's) to "
        "DIR/<worker>.json at the end of the run; scripts/write_reliability.py turns them into "
        "docs/reliability.md (nox -s reliability).",
    )


def clusters_option(config: pytest.Config) -> str:
    """The external clusters chosen for this run, or "" for embedded sandboxes."""
    return str(config.getoption("--clusters") or os.environ.get(CLUSTERS_VARIABLE, ""))


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No proxy, no user kubeconfig, no kubectl cache shared between tests or runs."""
    for name in (
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "KUBECONFIG",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir(exist_ok=True)


@pytest.fixture
def make_sandbox() -> Iterator[SandboxFactory]:
    started: list[Sandbox] = []

    def factory(**options: Any) -> Sandbox:
        sandbox = Sandbox(**{"forklift_timing": FAST_FORKLIFT, **options}).start()
        started.append(sandbox)
        return sandbox

    yield factory
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def sandbox(make_sandbox: SandboxFactory) -> Sandbox:
    """Source, destination (the MTV host), and a separate `mtv` host: every shape in one."""
    return make_sandbox(mtv_on="separate")


@pytest.fixture
def kubeconfig(sandbox: Sandbox, tmp_path: Path) -> Path:
    return sandbox.write_kubeconfig(tmp_path / "kubeconfig")


KubectlRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> KubectlRunner:
    """Run the real kubectl against the sandbox, with its own discovery cache."""
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.fail("kubectl is not installed: .ci/run installs it (see .ci/install-kubectl)")
    cache = tmp_path / "kube-cache"

    def run(
        *args: str, input: str | None = None, check: bool = True, context: str = "source"
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(cache)}
        result = subprocess.run(
            [binary, "--context", context, *args],
            input=input,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert_no_token(result.stdout + result.stderr, allowed=())
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            )
        return result

    return run


def assert_no_token(text: str, *, allowed: tuple[str, ...] = ()) -> None:
    """Fail when `text` holds any token a sandbox issued (the token itself is never shown)."""
    leaked = [t for t in list(ISSUED_TOKENS) if t not in allowed and t in text]
    if leaked:
        raise AssertionError(f"{len(leaked)} sandbox token(s) leaked into output")


LEAK_SCAN = {"tests": 0, "leaks": 0}


def _token_forms() -> list[str]:
    tokens = list(ISSUED_TOKENS) + list(EXTRA_TOKENS)
    return tokens + [base64.b64encode(t.encode()).decode() for t in tokens]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Every test fails when a token (as issued, or base64 as a Secret holds it) shows up in
    its captured stdout, stderr, log records or traceback."""
    outcome: Any = yield
    report = outcome.get_result()
    if report.when != "call" or item.get_closest_marker("prints_tokens"):
        return
    captured = "".join(content for _, content in report.sections)
    if report.longrepr is not None:
        captured += str(report.longrepr)
    LEAK_SCAN["tests"] += 1
    if any(form in captured for form in _token_forms()):
        LEAK_SCAN["leaks"] += 1
        report.outcome = "failed"
        report.sections = [(name, "<withheld: it contains a token>") for name, _ in report.sections]
        report.longrepr = "a sandbox token appeared in this test's output, logs or traceback"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With --reliability-figures DIR: this process's figures (each xdist worker writes its
    own file; the controller, which runs no test, writes none). A plain run writes nothing."""
    import json

    from tests.hardening import figures

    folder = session.config.getoption("--reliability-figures")
    if not folder or not LEAK_SCAN["tests"]:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    data = {**figures.snapshot(), "scan": LEAK_SCAN, "issued": len(ISSUED_TOKENS)}
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / f"{worker}.json").write_text(json.dumps(data, indent=1))
