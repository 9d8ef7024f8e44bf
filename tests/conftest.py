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
        "--reliability-report",
        default=None,
        metavar="PATH",
        help="After a run through every hardening scenario, write the reliability report there "
        "(nox -s reliability writes docs/reliability.md).",
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
    """With --reliability-report PATH, after a run that went through every hardening scenario,
    write the report from the figures the tests recorded: the document is the suite's output,
    not typed by hand. A plain test run writes nothing into the tree."""
    from tests.hardening import figures

    target = session.config.getoption("--reliability-report")
    if not target:
        return
    data = figures.snapshot()
    missing = [s for s in figures.EXPECTED_SECTIONS if s not in data["scenarios"]]
    if missing:
        raise pytest.UsageError(
            f"--reliability-report needs every hardening scenario; not run: {', '.join(missing)}"
        )
    write_reliability(Path(target), data, LEAK_SCAN, len(ISSUED_TOKENS))


def write_reliability(path: Path, data: dict[str, Any], scan: dict[str, int], issued: int) -> None:
    import datetime as dt

    lines = [
        "# Reliability",
        "",
        "Written by the test suite itself (`nox -s reliability`: `pytest tests/hardening "
        "--reliability-report`)",
        "at the end of a run that went through every hardening scenario; do not edit by hand.",
        f"Last written {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}.",
        "",
        "| scenarios | run | held |",
        "| --- | --- | --- |",
    ]
    for section in figures_order(data["scenarios"]):
        counts = data["scenarios"][section]
        lines.append(f"| {section} | {counts['run']} | {counts['held']} |")
    lines += [
        "",
        f"Tokens leaked: {scan['leaks']} (the output, logs and tracebacks of {scan['tests']} "
        f"tests were scanned for each of the {issued} tokens the sandboxes issued, as issued and "
        "base64-encoded).",
        "",
        "What each row means:",
        "",
        "- transient faults: every API request a clean `register` (or `rotate`) makes, failed "
        "once in turn with a 500, a 429 with Retry-After, a dropped connection, an answer lost "
        "after the work was done, and a 409 Conflict on updates; held = the run succeeded and "
        "every cluster ended with the same objects as a clean run, no duplicates, every Provider "
        "Ready.",
        "- persistent faults: the same requests failing every time; held = the command failed "
        "with one clear line (or succeeded through a fallback with the clean end state), and a "
        "re-run without the fault converged to the clean end state with nothing orphaned.",
        "- bad input: wrong flags, files, contexts, CAs and permissions; held = a documented "
        "non-zero exit code, one line naming cause and fix, no traceback, nothing written.",
        "- concurrency: two runs at once on the same pair; held = both ended cleanly and the end "
        "state equals one clean run.",
    ]
    failures = {k: v for k, v in data["failures"].items() if v}
    if failures:
        lines += ["", "## Scenarios that did not hold", ""]
        for section, details in failures.items():
            lines += [f"- {section}: {detail}" for detail in details]
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def figures_order(scenarios: dict[str, Any]) -> list[str]:
    from tests.hardening import figures

    known = [s for s in figures.EXPECTED_SECTIONS if s in scenarios]
    return known + sorted(set(scenarios) - set(known))
