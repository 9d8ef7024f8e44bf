"""The integration tests' world: the clusters each test runs on (`target`: a fresh embedded
sandbox, or external clusters such as kind, see tests/target.py), the backend it runs on (the
default `kubernetes`; also `oc` for what that backend does its own way), the CLI in-process,
pair options, and what was written during a run (the sandbox's audit log, else a snapshot
difference).

Markers: `sandbox_only(reason)` for what needs the sandbox itself, `needs_forklift` for what
needs a Forklift controller, `both_backends` for what runs on both backends, and
`backends(*names, reason=...)` for what runs on the backends named; the first two are skipped,
saying why, where they cannot run."""

from __future__ import annotations

import base64
import contextlib
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from typer.testing import CliRunner, Result

from mtv_register import clusters, verdicts
from mtv_register.api_kube import USER_AGENT
from mtv_register.cli import app
from mtv_register.kube import PROVIDER, AlreadyExists, Kube, NotFound
from mtv_register.orchestrator import PairOptions, register_pair
from mtv_register.sandbox import ISSUED_TOKENS, MTV_NAMESPACE, Sandbox
from mtv_register.timing import Timing
from tests.conftest import (
    EXTRA_TOKENS,
    FAST_FORKLIFT,
    SandboxFactory,
    assert_no_token,
    clusters_option,
)
from tests.sandbox.helpers import wait_for as wait_for  # shared with the sandbox tests
from tests.target import (
    NO_FORKLIFT,
    SANDBOX_PROCESS,
    ExternalTarget,
    SandboxTarget,
    Target,
    sandbox_process,
)

BACKENDS = ("kubernetes", "oc")
LEGACY_TOKEN_LAST_USED = "kubernetes.io/legacy-token-last-used"
T = TypeVar("T")
Obj = dict[str, Any]
Snapshot = dict[str, dict[tuple[str, str, str], Obj]]
CliRun = Callable[..., Result]


def assert_no_token_in_any_form(text: str) -> None:
    """No sandbox token, as issued or base64-encoded as a Secret carries it."""
    assert_no_token(text)
    encoded = [base64.b64encode(token.encode()).decode() for token in list(ISSUED_TOKENS)]
    leaked = sum(1 for token in encoded if token in text)
    assert not leaked, f"{leaked} sandbox token(s) leaked base64-encoded"


# The commands that take --client.
BACKEND_COMMANDS = frozenset(
    {"register", "status", "doctor", "unregister", "rotate", "schedule", "unschedule"}
)


def make_cli(
    flags: tuple[str, ...] = (),
    held: Callable[[], set[str]] | None = None,
    timing: Timing | None = None,
) -> CliRun:
    """`mtv-register ARGS` in-process, with `flags` after the command when it takes `--client`,
    and `timing` (default: `Timing.immediate()`, the same tries without back-off) handed to the
    CLI as its context object; every result is checked for leaked tokens: the sandboxes' and
    those `held` returns before and after the command (which may delete some, or make new ones)."""
    runner = CliRunner()
    policy = timing or Timing.immediate()

    def run(*args: str, input: str | None = None) -> Result:
        argv = list(args)
        if argv and argv[0] in BACKEND_COMMANDS and "--client" not in argv:
            argv[1:1] = flags
        before = held() if held is not None else set()  # what the command may delete
        result = runner.invoke(app, argv, input=input, obj=policy)
        # CliRunner swallows an escaped exception that a real run would print as a traceback.
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(
            result.exception
        )
        output = result.stdout + result.stderr
        assert_no_token_in_any_form(output)
        if held is not None:
            assert_none_of(before | held(), output)
        assert "Traceback" not in output
        return result

    return run


def assert_none_of(tokens: set[str], text: str) -> None:
    """None of `tokens`, as they are or base64-encoded, in `text`; remembered for the scan of
    every test's captured output (tests/conftest.py)."""
    EXTRA_TOKENS.update(tokens)
    forms = tokens | {base64.b64encode(token.encode()).decode() for token in tokens}
    leaked = sum(1 for form in forms if form in text)
    assert not leaked, f"{leaked} token(s) of the clusters leaked"


@pytest.fixture
def cli(backend: Backend, target: Target) -> CliRun:
    """The CLI on the test's backend; on real clusters, output is also checked against every
    token the clusters hold."""
    return make_cli(backend.flags, None if target.sandbox else target.tokens)


# -- the clusters and the backend each test runs on ----------------------------------------------


@pytest.fixture(scope="session")
def _external(request: pytest.FixtureRequest) -> Iterator[ExternalTarget | None]:
    """The external clusters of the run (`--clusters`, MTV_REGISTER_TEST_CLUSTERS), if any."""
    chosen = clusters_option(request.config)
    if not chosen:
        yield None
        return
    with contextlib.ExitStack() as stack:
        path = stack.enter_context(sandbox_process()) if chosen == SANDBOX_PROCESS else Path(chosen)
        external = ExternalTarget(path)
        stack.callback(external.close)
        yield external


@pytest.fixture
def target(_external: ExternalTarget | None, tmp_path: Path) -> Iterator[Target]:
    """The clusters of this test: a fresh embedded sandbox (source, destination, separate `mtv`
    host), or the external clusters, reset after the test to what they were before the run."""
    if _external is not None:
        try:
            yield _external
        finally:
            _external.reset()
        return
    sandbox = Sandbox(mtv_on="separate", forklift_timing=FAST_FORKLIFT).start()
    try:
        kubeconfig = sandbox.write_kubeconfig(tmp_path / "kubeconfig")
        yield SandboxTarget(kubeconfig=kubeconfig, forklift=True, embedded=sandbox)
    finally:
        sandbox.stop()


@pytest.fixture
def sandbox(target: Target) -> Sandbox:
    """The embedded sandbox behind `target`: only for tests marked `sandbox_only`."""
    assert target.sandbox is not None, "a test that needs the sandbox must be marked sandbox_only"
    return target.sandbox


@pytest.fixture
def kubeconfig(target: Target) -> Path:
    return target.kubeconfig


@dataclass(frozen=True)
class Backend:
    """How the tool reaches the clusters in this test: `kubernetes` (the default) or `oc`, with
    the real kubectl as its binary behind a wrapper that logs every argv."""

    name: str
    oc_path: str | None = None

    @property
    def flags(self) -> tuple[str, ...]:
        return () if self.oc_path is None else ("--client", "oc", "--oc-path", self.oc_path)

    @property
    def agent(self) -> str:
        """A pattern for the User-Agent of its requests, to aim a fault at them."""
        return f"^{re.escape(USER_AGENT)}$" if self.oc_path is None else "^kubectl/"


ACTIVE: dict[str, Backend] = {}


def backends_of(node: Any) -> tuple[str, ...]:
    """The backends a test runs on: those its `backends(...)` marker names; both for what is
    marked `both_backends` (behaviour the oc backend implements in its own way: requests and
    their failures, waits, token clients, interrupts); else the default client alone."""
    only = node.get_closest_marker("backends")
    if only is not None:
        return tuple(only.args)
    return BACKENDS if node.get_closest_marker("both_backends") else ("kubernetes",)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", backends_of(metafunc.definition), indirect=True)


@pytest.fixture(autouse=True)
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Backend]:
    """The backend of this run of the test (see `backends_of`). On `oc`, no command line of the
    run may carry a token."""
    if request.param == "kubernetes":
        chosen = Backend("kubernetes")
    else:
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            pytest.fail("kubectl is not installed: .ci/run installs it (see .ci/install-kubectl)")
        chosen = Backend("oc", str(logging_wrapper(tmp_path, kubectl)))
        # kubectl caches discovery per host:port: a port reused by a later sandbox must not read it.
        monkeypatch.setenv("KUBECACHEDIR", str(tmp_path / "kube-cache"))
    ACTIVE["backend"] = chosen
    try:
        yield chosen
    finally:
        del ACTIVE["backend"]
    if chosen.oc_path is not None:
        argvs = "\n".join(path.read_text() for path in (tmp_path / "argv").iterdir())
        assert_no_token_in_any_form(argvs)
        assert_none_of(set(EXTRA_TOKENS), argvs)


def logging_wrapper(folder: Path, kubectl: str) -> Path:
    """A stand-in for `oc` that logs its argv (what `ps` shows to every user of the machine) to
    a file per command under `folder/argv`, then runs the real kubectl."""
    argv = folder / "argv"
    argv.mkdir(exist_ok=True)
    script = folder / "kubectl-logging"
    script.write_text(f"#!/bin/sh\nprintf '%s\\0' \"$@\" > '{argv}/'$$\nexec '{kubectl}' \"$@\"\n")
    script.chmod(0o755)
    return script


def active_backend() -> Backend:
    return ACTIVE.get("backend", Backend("kubernetes"))


@pytest.fixture(autouse=True)
def _what_these_clusters_run(
    request: pytest.FixtureRequest, _external: ExternalTarget | None
) -> None:
    """Skip, saying why, what these clusters cannot run; refuse a test that reaches into the
    sandbox without saying so."""
    node = request.node
    reaches_in = {"sandbox", "make_sandbox"} & set(request.fixturenames)
    only = node.get_closest_marker("sandbox_only")
    if reaches_in and only is None:
        pytest.fail(
            f"{node.nodeid} uses {', '.join(sorted(reaches_in))}: read the clusters through "
            "`target`, or mark it sandbox_only(reason)"
        )
    if _external is not None and only is not None:
        pytest.skip(f"needs the embedded sandbox: {only.args[0]}")
    forklift = _external is None or _external.forklift
    if node.get_closest_marker("needs_forklift") and not forklift:
        pytest.skip(NO_FORKLIFT)


def pair_options(kubeconfig: Path, *, host: str | None = "mtv", **overrides: Any) -> PairOptions:
    """The pair source -> destination on the test's backend, with retries that never sleep."""
    chosen = active_backend()
    settings: dict[str, Any] = {
        "connector": clusters.Connector(chosen.name, chosen.oc_path, Timing.immediate()),
        "source": "source",
        "destination": "destination",
        "host": host,
        "kubeconfig": kubeconfig,
        "timeout": 30.0,
        **overrides,
    }
    return PairOptions(**settings)


@contextlib.contextmanager
def admin(target: Target, context: str) -> Iterator[Kube]:
    """The cluster's admin, through the tool's own client: to write what a person would."""
    kube = admin_client(target.kubeconfig, context)
    try:
        yield kube
    finally:
        kube.close()


PROVIDER_CRD = (
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/providers.forklift.konveyor.io"
)


def shaped_target(make_sandbox: SandboxFactory, tmp_path: Path, **shape: Any) -> SandboxTarget:
    """A sandbox of another shape than `target`'s (MTV on the destination, a slow token
    controller, a named certificate...), behind the same interface."""
    sandbox = make_sandbox(**shape)
    return SandboxTarget(
        kubeconfig=sandbox.write_kubeconfig(tmp_path / "shaped-kubeconfig"),
        forklift=True,
        mtv_context=sandbox.mtv_context,
        contexts=tuple(sandbox.clusters),
        embedded=sandbox,
    )


def decoded(secret: Obj, key: str) -> str:
    return base64.b64decode((secret.get("data") or {}).get(key, "")).decode()


def admin_client(kubeconfig: Path, context: str) -> Kube:
    """The cluster's admin through the tool's own client (the caller closes it)."""
    return clusters.Connector().connect(clusters.load_kubeconfig(kubeconfig), context)


def _providers_served(mtv: Kube) -> bool:
    try:
        mtv.list(PROVIDER, MTV_NAMESPACE)
    except NotFound:
        return False
    return True


@contextlib.contextmanager
def forklift_uninstalled(target: Target) -> Iterator[None]:
    """The Provider API gone from the MTV host (its CRD deleted through the API), and put back
    afterwards: external clusters are shared by the tests that follow."""
    mtv = admin_client(target.kubeconfig, target.mtv_context)
    saved = mtv.request("GET", PROVIDER_CRD)
    # A real API server deletes every Provider with the CRD, MTV's own `host` one included;
    # MTV's operator would create that again, so the fixture does.
    providers = mtv.list(PROVIDER, MTV_NAMESPACE).get("items", [])
    try:
        mtv.request("DELETE", PROVIDER_CRD)
        wait_for(lambda: not _providers_served(mtv), timeout=60, what="the Provider API to go")
        yield
    finally:
        # A real API server removes the Providers before the CRD; an operator may put it back.
        wait_for(lambda: _crd_state(mtv) != "terminating", timeout=60, what="the CRD's deletion")
        if _crd_state(mtv) == "gone":
            meta = saved["metadata"]
            kept = {k: meta[k] for k in ("name", "labels", "annotations") if k in meta}
            with contextlib.suppress(AlreadyExists):
                mtv.request(
                    "POST", PROVIDER_CRD.rsplit("/", 1)[0], body={**saved, "metadata": kept}
                )
        wait_for(lambda: _providers_served(mtv), timeout=60, what="the Provider API to return")
        for provider in providers:
            meta = provider["metadata"]
            kept = {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta}
            with contextlib.suppress(AlreadyExists):
                mtv.create(PROVIDER, {**provider, "metadata": kept, "status": {}})
        # Forklift tests each one again; the tests that follow meet them as they were (MTV's
        # `host` Ready, not Staging, which `status` counts as not Ready).
        for provider in providers:
            name, phase = provider["metadata"]["name"], (provider.get("status") or {}).get("phase")
            if phase:
                wait_for(
                    lambda name=name, phase=phase: target.provider_phase(name) == phase,
                    timeout=120,
                    what=f"Provider {name} to be {phase} again",
                )
        mtv.close()


def _crd_state(mtv: Kube) -> str:
    try:
        crd = mtv.request("GET", PROVIDER_CRD)
    except NotFound:
        return "gone"
    return "terminating" if crd["metadata"].get("deletionTimestamp") else "present"


def _untested(
    kube: Kube, namespace: str, names: list[str], timeout: float, **_: Any
) -> dict[str, Obj]:
    """What `verdicts.wait_all_ready` returns, without waiting for a verdict."""
    return {name: kube.get(PROVIDER, name, namespace) or {} for name in names}


def register_anywhere(
    target: Target, monkeypatch: pytest.MonkeyPatch, *, host: str | None = "mtv"
) -> None:
    """Register the pair on the test's backend, to set up what a test then looks at: waiting
    for Forklift's verdict where Forklift runs. Without it (kind) no Provider is ever tested, so
    the run does all its writes and skips only the wait for a verdict that cannot come. Never
    used for the command under test: that needs `needs_forklift`."""
    with monkeypatch.context() as patch:
        if not target.forklift:
            patch.setattr(verdicts, "wait_all_ready", _untested)
        result = register_pair(pair_options(target.kubeconfig, host=host))
    assert result.changes
    target.settle()


def register_args(kubeconfig: Path, *extra: str, host: str | None = "mtv") -> list[str]:
    args = ["register", "--source", "source", "--destination", "destination"]
    if host:
        args += ["--host", host]
    return [*args, "--kubeconfig", str(kubeconfig), *extra]


def fleet_args(target: Target, pairs: Path, *extra: str) -> list[str]:
    """`register --pairs` of the fleet file `pairs` into the target's MTV host."""
    host = ["--host", target.mtv_context, "--kubeconfig", str(target.kubeconfig)]
    return ["register", "--pairs", str(pairs), *host, "--yes", *extra]


def status_args(target: Target, *extra: str) -> list[str]:
    return ["status", "--host", target.mtv_context, "--kubeconfig", str(target.kubeconfig), *extra]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def one_error_line(result: Result) -> str:
    """The failure's single `error:` line (progress lines may precede it)."""
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == lines[0]
    return lines[0]


def marks(sandbox: Sandbox) -> dict[str, int]:
    return {context: sc.cluster.audit.mark() for context, sc in sandbox.clusters.items()}


def mutating_since(sandbox: Sandbox, since: dict[str, int]) -> dict[str, list[str]]:
    """Per cluster, the mutating requests made since `since` ("verb URI")."""
    return {
        context: [
            f"{event['verb']} {event['requestURI']}"
            for event in sc.cluster.audit.mutating(since[context])
        ]
        for context, sc in sandbox.clusters.items()
    }


Mark = Any  # where a run starts, to compare its end with


def mark(target: Target) -> Mark:
    """Where to count writes from: each cluster's audit log position in the sandbox, else a
    snapshot of the objects of the types the tool writes."""
    return marks(target.sandbox) if target.sandbox is not None else target.snapshot()


def writes_since(target: Target, since: Mark) -> dict[str, Any]:
    """Per cluster, what was written since `since`: every mutating request from the sandbox's
    audit log; on other clusters, the objects added, removed or changed (a write that changed
    nothing is seen by the audit log only)."""
    if target.sandbox is not None:
        return {c: made for c, made in mutating_since(target.sandbox, since).items() if made}
    return snapshot_difference(since, target.snapshot())


def assert_nothing_written(target: Target, since: Mark) -> None:
    assert writes_since(target, since) == {}


def snapshot_difference(before: Snapshot, after: Snapshot) -> dict[str, Obj]:
    """What differs per cluster: objects added, removed, or changed (a Provider's status, which
    Forklift writes, and its resourceVersion are not changes the tool made)."""

    def comparable(key: tuple[str, str, str], obj: Obj) -> Obj:
        # resourceVersion and managedFields are the server's bookkeeping of any write, Forklift's
        # status writes included (each one stamps its managedFields entry with the time).
        bookkeeping = ("resourceVersion", "managedFields")
        meta = {k: v for k, v in obj["metadata"].items() if k not in bookkeeping}
        if key[0] == "forklift.konveyor.io/providers":
            obj = {k: v for k, v in obj.items() if k != "status"}
        elif key[0] == "/secrets":
            # The API server labels a token Secret with the day its token was last used.
            labels = dict(meta.get("labels") or {})
            labels.pop(LEGACY_TOKEN_LAST_USED, None)
            meta["labels"] = labels
        return {**obj, "metadata": meta}

    difference: dict[str, Obj] = {}
    for context in before:
        old, new = before[context], after[context]
        added = sorted(str(k) for k in set(new) - set(old))
        removed = sorted(str(k) for k in set(old) - set(new))
        changed = sorted(
            str(k) for k in set(old) & set(new) if comparable(k, old[k]) != comparable(k, new[k])
        )
        if added or removed or changed:
            difference[context] = {"added": added, "removed": removed, "changed": changed}
    return difference
