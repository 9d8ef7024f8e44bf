from __future__ import annotations

import pytest

from mtv_register import forklift
from tests.integration.conftest import cli as cli  # the in-process CLI fixture, shared


@pytest.fixture(autouse=True)
def _short_retest_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forklift's re-test shows within milliseconds in the sandbox; the 2 s grace a real
    Forklift needs would only slow the matrix down."""
    monkeypatch.setattr(forklift, "RETEST_GRACE_SECONDS", 0.2)
