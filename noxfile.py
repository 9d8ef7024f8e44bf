"""Sessions: tests (the default), lint, typecheck, docs, demo, bench, e2e_kind. `nox` alone runs
tests, lint, typecheck and docs; CI runs `nox -s tests` through `.ci/run`."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite against the embedded sandbox (and the real kubectl)."""
    session.run("bash", ".ci/install-kubectl", external=True)
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


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
def bench(session: nox.Session) -> None:
    """Side-by-side measurements; writes benchmarks/results.json and docs/benchmarks.md."""
    session.run("bash", ".ci/install-kubectl", external=True)
    session.install(".", "matplotlib")  # not editable: start-up as users get it
    session.run("python", "-m", "benchmarks.bench", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """The docs check: docs/reference.md is what the CLI generates today, and every relative link
    in README.md and docs/ resolves (files and #anchors)."""
    from pathlib import Path

    session.install("-e", ".")
    fresh = Path(session.create_tmp()).resolve() / "reference.md"
    session.run("python", "scripts/gen_reference.py", "--output", str(fresh))
    session.run("python", "scripts/check_docs.py", "--reference", str(fresh))


E2E_CLUSTERS = {"source": "mtv-e2e-source", "destination": "mtv-e2e-destination"}
E2E_HOST_CONTEXT = "mtv-e2e-host"


@nox.session(python=PYTHON)
def e2e_kind(session: nox.Session) -> None:
    """tests/e2e against two real kind clusters (real token controller, RBAC, authentication).

    Skips, saying why, where Docker or kind is missing. Clusters it creates are deleted at the
    end unless `-- --keep-clusters`; other arguments go to pytest.
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

    kubeconfig = Path(session.create_tmp()).resolve() / "kubeconfig"
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
        destination = f"kind-{E2E_CLUSTERS['destination']}"
        kubectl("--context", destination, "apply", "-f", "kind-config/mtv-host.yaml")
        # The MTV host is the destination cluster under a context of its own, so that both
        # clusters of the pair are bootstrapped and registered (not the local `host` provider).
        kubectl(
            "config",
            "set-context",
            E2E_HOST_CONTEXT,
            "--cluster",
            destination,
            "--user",
            destination,
        )
        env = {
            "MTV_REGISTER_E2E_KUBECONFIG": str(kubeconfig),
            "MTV_REGISTER_E2E_SOURCE": f"kind-{E2E_CLUSTERS['source']}",
            "MTV_REGISTER_E2E_DESTINATION": destination,
            "MTV_REGISTER_E2E_HOST": E2E_HOST_CONTEXT,
        }
        for role, name in E2E_CLUSTERS.items():
            # The API server as the other cluster reaches it: port 6443 of the control-plane
            # container on the `kind` network. By its IP, which a Linux host (where the tests and
            # mtv-register run) reaches too; the container's name resolves only on that network.
            address = session.run(
                "docker",
                "inspect",
                f"{name}-control-plane",
                "--format",
                '{{ (index .NetworkSettings.Networks "kind").IPAddress }}',
                external=True,
                silent=True,
            )
            env[f"MTV_REGISTER_E2E_{role.upper()}_URL"] = f"https://{str(address).strip()}:6443"
        session.run("pytest", "tests/e2e", "-m", "kind", "-ra", *_pytest_args(session), env=env)
    finally:
        for name in [] if "--keep-clusters" in session.posargs else created:
            kind("delete", "cluster", "--name", name, "--kubeconfig", str(kubeconfig))


def _pytest_args(session: nox.Session) -> list[str]:
    return [arg for arg in session.posargs if arg != "--keep-clusters"]
