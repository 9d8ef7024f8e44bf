from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.integration.conftest import CliRun, make_cli


@pytest.fixture
def cli() -> CliRun:
    """The CLI in-process on the default backend, every result checked for leaked tokens."""
    return make_cli()


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """`-vv` puts the CLI's stderr handler on the root logger, bound to the stream CliRunner
    lent that one run: it must not outlive the test, or every later test logs into a closed
    stream and prints "--- Logging error --- Traceback" where the CLI printed nothing."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
