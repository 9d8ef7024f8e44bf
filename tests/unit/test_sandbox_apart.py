"""The sandbox stands apart from the product. Without `mtv_register.sandbox` (the rotation image
leaves it out) every command but `sandbox ...` works, and those end with one line and their own
exit code. In the source: only the CLI's sandbox commands import the sandbox, only its demo
imports the product, the generic API server never imports the OpenShift Virtualization/MTV
profile (`mtv_register.sandbox.mtv`), and no module of that profile is named like one of the
product's."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mtv_register.errors import SandboxMissing

PACKAGE = Path(__file__).resolve().parents[2] / "mtv_register"
SANDBOX = PACKAGE / "sandbox"
PROFILE = SANDBOX / "mtv"
# The console script, in a process where the sandbox cannot be imported, as in the image.
WITHOUT_SANDBOX = (
    "import sys\n"
    "sys.modules['mtv_register.sandbox'] = None\n"
    "from mtv_register.cli import main\n"
    "sys.argv = ['mtv-register', *sys.argv[1:]]\n"
    "main()\n"
)


def without_sandbox(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_SANDBOX, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("command", ["rotate", "register"])
def test_help_works_without_the_sandbox(command: str) -> None:
    ran = without_sandbox(command, "--help")

    assert ran.returncode == 0, ran.stderr
    assert "Usage: mtv-register " + command in ran.stdout


def test_status_and_a_schedule_dry_run_work_without_the_sandbox(kubeconfig: Path) -> None:
    host = ["--host", "mtv", "--kubeconfig", str(kubeconfig)]

    status = without_sandbox("status", *host, "-o", "json")
    schedule = without_sandbox(
        "schedule", "--every", "@daily", "--max-age", "30d", "--image", "i:1", "--dry-run", *host
    )

    assert status.returncode == 0, status.stderr
    assert [p["name"] for p in json.loads(status.stdout)["providers"]] == ["host"]
    assert schedule.returncode == 0, schedule.stderr
    assert "kind: CronJob" in schedule.stdout


@pytest.mark.parametrize("command", [["demo"], ["up", "--kubeconfig", "unused.kubeconfig"]])
def test_sandbox_commands_without_the_sandbox_end_with_one_line_and_their_code(
    command: list[str],
) -> None:
    ran = without_sandbox("sandbox", *command)

    assert ran.returncode == SandboxMissing.exit_code == 13
    assert ran.stdout == ""
    assert ran.stderr.splitlines() == [
        "error: this installation of mtv-register has no sandbox (the rotation image leaves it "
        "out): install the mtv-register package (pip install mtv-register) to run it"
    ]


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, written out in full (`from a import b` gives a and a.b)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _modules(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def test_only_the_cli_sandbox_commands_import_the_sandbox() -> None:
    product = [p for p in _modules(PACKAGE) if not p.is_relative_to(SANDBOX)]

    importers = {
        _name(p) for p in product if any(_within(n, "mtv_register.sandbox") for n in _imports(p))
    }

    assert product
    assert importers == {"mtv_register/cli/sandbox.py"}


def test_only_the_demo_imports_the_product_from_the_sandbox() -> None:
    importers = {
        _name(p)
        for p in _modules(SANDBOX)
        if any(
            _within(n, "mtv_register") and not _within(n, "mtv_register.sandbox")
            for n in _imports(p)
        )
    }

    assert importers == {"mtv_register/sandbox/demo.py"}


def test_the_generic_api_server_never_imports_the_mtv_profile() -> None:
    # The package's `__init__` (Sandbox) is where the two are put together.
    generic = [
        p for p in _modules(SANDBOX) if not p.is_relative_to(PROFILE) and p.name != "__init__.py"
    ]

    importers = {
        _name(p)
        for p in generic
        if any(_within(n, "mtv_register.sandbox.mtv") for n in _imports(p))
    }

    assert len(generic) > 10
    assert importers == set()


def test_no_module_of_the_mtv_profile_is_named_like_one_of_the_product() -> None:
    product = {p.stem for p in _modules(PACKAGE) if not p.is_relative_to(SANDBOX)}
    profile = {p.stem for p in _modules(PROFILE)} - {"__init__"}

    assert "forklift" in product
    assert profile
    assert profile & product == set()
