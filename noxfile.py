"""Sessions: tests (the default), lint, typecheck, demo. `nox` alone runs tests, lint and
typecheck; CI runs `nox -s tests` through `.ci/run`."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
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
    session.install("-e", ".", "matplotlib")
    session.run("python", "-m", "benchmarks.bench", *session.posargs)
