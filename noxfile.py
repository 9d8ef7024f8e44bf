"""Sessions: tests (the default), lint, typecheck, docs, demo, bench, reliability,
sandbox_process, realstack, realstack_forklift, e2e_kind. `nox` alone runs tests, lint,
typecheck and docs; CI runs `nox -s tests`, then `nox -s realstack`, through `.ci/run`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


# Test processes for `nox -s tests`: each test has its own sandboxes (threads of its process),
# and most of a test's time is spent waiting on them, so more workers than cores pay off.
WORKERS = "6"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite against embedded sandboxes (and the real kubectl), in parallel
    (`pytest-xdist`); arguments go to pytest instead of the defaults."""
    session.run("bash", ".ci/install-kubectl", external=True)
    session.install("-e", ".[test]")
    # The real control planes' own tests run in `nox -s realstack`.
    session.run("pytest", *(session.posargs or ["-m", "not realstack", "-n", WORKERS]))


@nox.session(python=PYTHON)
def sandbox_process(session: nox.Session) -> None:
    """tests/integration against `sandbox up --no-forklift` in a process of its own, reached only
    over HTTPS as kind clusters are (`--clusters sandbox-process`): the external-cluster layer
    without building the real control planes."""
    session.run("bash", ".ci/install-kubectl", external=True)
    session.install("-e", ".[test]")
    session.run(
        "pytest", "tests/integration", "--clusters", "sandbox-process", "-q", *session.posargs
    )


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".", "mypy>=1.10", "types-PyYAML")
    session.run("mypy", "mtv_register")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The Quickstart's main job: register a pair on the embedded sandbox and show it."""
    session.install("-e", ".")
    session.run("mtv-register", "sandbox", "demo")


@nox.session(python=PYTHON)
def reliability(session: nox.Session) -> None:
    """The fault matrix, bad input, concurrency and the token-leak scan, in parallel; then
    docs/reliability.md, written from the figures they recorded."""
    session.install("-e", ".[test]")
    session.run("bash", ".ci/install-kubectl", external=True)
    figures = Path(session.create_tmp()).resolve() / "reliability-figures"
    with contextlib.suppress(FileNotFoundError):
        for old in figures.iterdir():
            old.unlink()
    session.run(
        "pytest", "tests/hardening", "-q", "-n", WORKERS, "--reliability-figures", str(figures)
    )
    session.run("python", "scripts/write_reliability.py", str(figures), "docs/reliability.md")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Side-by-side measurements; writes benchmarks/results.json and docs/benchmarks.md."""
    session.run("bash", ".ci/install-kubectl", external=True)
    session.install(".", "matplotlib")  # not editable: start-up as users get it
    session.run("python", "-m", "benchmarks.bench", *session.posargs)
    if session.posargs:
        return  # only the steps asked for
    # The pair and a fleet on the real stack (issue 17): its binaries built as realstack builds
    # them (from the cache once built), then benchmarks/realstack_ready.py against it.
    import shutil

    if shutil.which("go") is None:
        session.warn("no `go` on PATH: the real-stack figures were not measured")
        return
    _realstack_prepare(session)
    with _real_clusters(session, []) as kubeconfig:
        session.run(
            "python",
            "-m",
            "benchmarks.realstack_ready",
            "--kubeconfig",
            str(kubeconfig),
            "--audit-dir",
            str(kubeconfig.parent / "audit"),
        )


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """The docs check: docs/reference.md is what the CLI generates today, and every relative link
    in README.md and docs/ resolves (files and #anchors)."""
    from pathlib import Path

    session.install("-e", ".")
    fresh = Path(session.create_tmp()).resolve() / "reference.md"
    session.run("python", "scripts/gen_reference.py", "--output", str(fresh))
    session.run("python", "scripts/check_docs.py", "--reference", str(fresh))


REALSTACK_OPTIONS = ("--kubernetes", "--forklift")
REALSTACK_READY = "real clusters ready: "


@nox.session(python=PYTHON)
def realstack(session: nox.Session) -> None:
    """tests/integration (both backends) and tests/e2e against three real control planes built
    from the Kubernetes Go modules: `python -m tests.realstack up` (source, destination and a
    separate MTV host, with Forklift). `-- --kubernetes v1.34.4` picks the other Kubernetes,
    `-- --forklift v2.10.6` another Forklift (or `none`); other arguments go to pytest. Skips,
    saying why, where Go is missing. The first run builds the binaries (about 25 minutes on 2
    cores); later runs take them from the cache."""
    chosen, pytest_args = _split_options(session.posargs, REALSTACK_OPTIONS)
    _realstack_prepare(session)
    with _real_clusters(session, chosen) as kubeconfig:
        session.run(
            "pytest", "tests/integration", "--clusters", str(kubeconfig), "-ra", *pytest_args
        )
        session.run(
            "pytest",
            "tests/differential",
            "tests/launcher",
            "--clusters",
            str(kubeconfig),
            "-ra",
            *pytest_args,
        )
        session.run(
            "pytest",
            "tests/e2e",
            "-ra",
            *pytest_args,
            env={
                "MTV_REGISTER_E2E_KUBECONFIG": str(kubeconfig),
                "MTV_REGISTER_E2E_SOURCE": "source",
                "MTV_REGISTER_E2E_DESTINATION": "destination",
                "MTV_REGISTER_E2E_HOST": "mtv",
            },
        )


FORKLIFT_VERSIONS = ("v2.12.5", "v2.11.7", "v2.10.6")


@nox.session(python=PYTHON)
def realstack_forklift(session: nox.Session) -> None:
    """Every `needs_forklift` test of tests/integration on the real clusters once per Forklift
    release (v2.12.5, v2.11.7, v2.10.6), each on clusters of its own. `-- --kubernetes v1.34.4`
    picks the other Kubernetes; other arguments go to pytest."""
    chosen, pytest_args = _split_options(session.posargs, ("--kubernetes",))
    _realstack_prepare(session)
    for version in FORKLIFT_VERSIONS:
        session.log(f"Forklift {version}")
        with _real_clusters(session, [*chosen, "--forklift", version]) as kubeconfig:
            session.run(
                "pytest",
                "tests/integration",
                "--clusters",
                str(kubeconfig),
                "-m",
                "needs_forklift",
                "-ra",
                *pytest_args,
            )


def _realstack_prepare(session: nox.Session) -> None:
    import shutil

    if shutil.which("go") is None:
        session.skip(
            "the `go` command is not on PATH: the real control planes are built from Go modules "
            "(Go 1.26+ and the Go module proxy); no cluster was started and no test ran"
        )
    session.run("bash", ".ci/install-kubectl", external=True)
    session.install("-e", ".[test]")


@contextlib.contextmanager
def _real_clusters(session: nox.Session, options: list[str]) -> Iterator[Path]:
    """`python -m tests.realstack up` with `options`, until the block ends: its kubeconfig."""
    import shutil
    import subprocess
    import time

    folder = Path(session.create_tmp()).resolve() / "realstack"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    kubeconfig = folder / "kubeconfig"
    # The session's own Python: a bare "python" would be the machine's, which on a fresh machine
    # has none of the project's dependencies (Popen does not see the PATH session.run sets).
    python = str(Path(session.bin) / "python")
    command = [python, "-m", "tests.realstack", "up", "--kubeconfig", str(kubeconfig)]
    command += ["--audit-dir", str(folder / "audit"), *options]
    session.log(" ".join(command))
    started = time.monotonic()
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert launcher.stdout is not None
        line = launcher.stdout.readline()
        if not line.startswith(REALSTACK_READY):
            session.error(f"the real clusters did not start ({launcher.wait()}): see above")
        session.log(f"real clusters up after {time.monotonic() - started:.0f}s")
        yield kubeconfig
    finally:
        launcher.terminate()
        launcher.wait(60)


def _split_options(args: list[str], names: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """`args` split into the options named (with their values) and the rest."""
    chosen: list[str] = []
    rest: list[str] = []
    values = iter(args)
    for arg in values:
        name = arg.split("=", 1)[0]
        if name in names:
            chosen += [arg] if "=" in arg else [arg, next(values, "")]
        else:
            rest.append(arg)
    return chosen, rest


E2E_CLUSTERS = {
    "source": "mtv-e2e-source",
    "destination": "mtv-e2e-destination",
    "mtv": "mtv-e2e-mtv",
}


@nox.session(python=PYTHON)
def e2e_kind(session: nox.Session) -> None:
    """tests/integration, then tests/e2e, against three real kind clusters (source, destination
    and a separate MTV host): the real token controller, RBAC, TokenRequest and authentication.

    tests/integration runs as it does on the sandbox, chosen by MTV_REGISTER_TEST_CLUSTERS; what
    needs the Forklift controller (kind has none) or the sandbox's fault injection is skipped with
    that reason. Skips, saying why, where Docker or kind is missing. Clusters it creates are
    deleted at the end unless `-- --keep-clusters`; other arguments go to pytest.
    """
    import shutil
    import subprocess
    from pathlib import Path

    missing = [tool for tool in ("docker", "kind") if shutil.which(tool) is None]
    if missing:
        session.skip(
            f"{' and '.join(missing)} not on PATH: e2e_kind needs Docker and kind to create its "
            "clusters; no cluster was created and no test ran"
        )
    try:
        probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
        problem = "" if probe.returncode == 0 else (probe.stderr.strip().splitlines() or ["?"])[-1]
    except subprocess.TimeoutExpired:
        problem = "no answer within 60s"
    if problem:
        session.skip(
            f"the Docker daemon is not usable (docker info: {problem}); no cluster was created "
            "and no test ran"
        )
    session.run("bash", ".ci/install-kubectl", external=True)
    session.install("-e", ".[test]")

    folder = Path(session.create_tmp()).resolve()
    kubeconfig = folder / "kubeconfig"  # kind's own contexts: kind-mtv-e2e-*
    kubeconfig.unlink(missing_ok=True)

    def kind(*args: str) -> str:
        return str(session.run("kind", *args, external=True, silent=True))

    def kubectl(*args: str) -> None:
        session.run("kubectl", "--kubeconfig", str(kubeconfig), *args, external=True)

    existing = kind("get", "clusters").split()
    created: list[str] = []
    try:
        for role, name in E2E_CLUSTERS.items():
            if name in existing:
                session.log(f"reusing the kind cluster {name}")
                kind("export", "kubeconfig", "--name", name, "--kubeconfig", str(kubeconfig))
            else:
                created.append(name)
                config = f"kind-config/{role}.yaml"
                session.log(f"creating the kind cluster {name} from {config}")
                # Into the session's own kubeconfig: the user's ~/.kube/config is left alone.
                kind(
                    "create",
                    "cluster",
                    "--name",
                    name,
                    "--config",
                    config,
                    "--wait",
                    "120s",
                    "--kubeconfig",
                    str(kubeconfig),
                )
            kubectl("--context", f"kind-{name}", "apply", "-f", "kind-config/crds/")
            kubectl(
                "--context", f"kind-{name}", "wait", "--for=condition=Established", "crd", "--all"
            )
        kubectl(
            "--context", f"kind-{E2E_CLUSTERS['mtv']}", "apply", "-f", "kind-config/mtv-host.yaml"
        )
        # The API server as the other clusters reach it: port 6443 of the control-plane
        # container on the `kind` network. By its IP, which a Linux host (where the tests and
        # mtv-register run) reaches too; the container's name resolves only on that network.
        urls = {}
        for role, name in E2E_CLUSTERS.items():
            address = session.run(
                "docker",
                "inspect",
                f"{name}-control-plane",
                "--format",
                '{{ (index .NetworkSettings.Networks "kind").IPAddress }}',
                external=True,
                silent=True,
            )
            urls[role] = f"https://{str(address).strip()}:6443"
        integration = folder / "integration-kubeconfig"
        _write_role_kubeconfig(kubeconfig, integration, urls)
        session.log("tests/integration on the kind clusters (contexts source, destination, mtv)")
        session.run(
            "pytest",
            "tests/integration",
            "-ra",
            *_pytest_args(session),
            env={"MTV_REGISTER_TEST_CLUSTERS": str(integration)},
        )
        env = {
            "MTV_REGISTER_E2E_KUBECONFIG": str(kubeconfig),
            "MTV_REGISTER_E2E_SOURCE": f"kind-{E2E_CLUSTERS['source']}",
            "MTV_REGISTER_E2E_DESTINATION": f"kind-{E2E_CLUSTERS['destination']}",
            "MTV_REGISTER_E2E_HOST": f"kind-{E2E_CLUSTERS['mtv']}",
            "MTV_REGISTER_E2E_SOURCE_URL": urls["source"],
            "MTV_REGISTER_E2E_DESTINATION_URL": urls["destination"],
        }
        session.log("tests/e2e: the CLI as a user runs it, with --source-url/--destination-url")
        session.run("pytest", "tests/e2e", "-m", "kind", "-ra", *_pytest_args(session), env=env)
    finally:
        for name in [] if "--keep-clusters" in session.posargs else created:
            kind("delete", "cluster", "--name", name, "--kubeconfig", str(kubeconfig))


def _write_role_kubeconfig(kind_config: Path, path: Path, urls: dict[str, str]) -> None:
    """A kubeconfig with one context per role (source, destination, mtv), as tests/integration
    expects, each server the address the other clusters reach (`urls`), so the URL registered
    is the kubeconfig's, as on the sandbox."""
    import yaml

    data = yaml.safe_load(kind_config.read_text())
    by_name = {entry["name"]: entry for entry in data["contexts"]}
    clusters = {entry["name"]: entry["cluster"] for entry in data["clusters"]}
    users = {entry["name"]: entry["user"] for entry in data["users"]}
    out: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": []}
    out["contexts"] = []
    for role, name in E2E_CLUSTERS.items():
        context = by_name[f"kind-{name}"]["context"]
        cluster = {**clusters[context["cluster"]], "server": urls[role]}
        out["clusters"].append({"name": role, "cluster": cluster})
        out["users"].append({"name": f"{role}-admin", "user": users[context["user"]]})
        out["contexts"].append(
            {"name": role, "context": {"cluster": role, "user": f"{role}-admin"}}
        )
    out["current-context"] = "mtv"
    path.write_text(yaml.safe_dump(out, sort_keys=False))
    path.chmod(0o600)


def _pytest_args(session: nox.Session) -> list[str]:
    return [arg for arg in session.posargs if arg != "--keep-clusters"]
