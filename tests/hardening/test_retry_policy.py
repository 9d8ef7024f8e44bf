"""The HTTP client's retry policy, table-driven against the sandbox's injected faults: a
permanent status is tried once, a transient one until its limit, and a 429's Retry-After is
honoured up to its cap. The waits are recorded instead of slept, through the run's one sleep."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mtv_register import clusters, deadline, errors
from mtv_register.kube import SECRET
from mtv_register.sandbox import Sandbox
from mtv_register.timing import Timing

PATH = "/secrets/x$"
POLICY = Timing(attempts=4, initial_wait=0.2, max_wait=0.3, honour_retry_after=True)


@pytest.fixture(scope="module")
def sandbox_kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, Path]]:
    sandbox = Sandbox(mtv_on="separate").start()
    try:
        yield sandbox, sandbox.write_kubeconfig(tmp_path_factory.mktemp("timing") / "kubeconfig")
    finally:
        sandbox.stop()


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait the client asks for between two tries, in order (none is slept)."""
    asked: list[float] = []
    monkeypatch.setattr(deadline, "sleep", asked.append)
    return asked


@pytest.mark.parametrize(
    ("fault", "policy", "expect_waits", "expect_hits", "outcome"),
    [
        # A permanent status: one try, its own error.
        ({"status": 403, "count": 10}, POLICY, [], 1, errors.PermissionDenied),
        # Transient, then an answer: a back-off that doubles and stops growing at max_wait.
        ({"status": 503, "count": 3}, POLICY, [0.2, 0.3, 0.3], 3, None),
        # Transient every time: exactly `attempts` tries, then the exhausted error.
        ({"status": 500, "count": 10}, POLICY, [0.2, 0.3, 0.3], 4, errors.MtvRegisterError),
        # A 429's Retry-After replaces the back-off.
        ({"status": 429, "retry_after": 2, "count": 2}, POLICY, [2.0, 2.0], 2, None),
        # ... up to its cap of 30 s.
        ({"status": 429, "retry_after": 120, "count": 1}, POLICY, [30.0], 1, None),
        # A policy that does not honour it keeps its own back-off.
        (
            {"status": 429, "retry_after": 2, "count": 1},
            Timing(attempts=4, initial_wait=0.1, max_wait=1.0, honour_retry_after=False),
            [0.1],
            1,
            None,
        ),
        # A dropped connection is transient too.
        ({"drop": True, "count": 2}, POLICY, [0.2, 0.3], 2, None),
    ],
    ids=["403", "503x3", "500-forever", "429-retry-after", "429-capped", "429-ignored", "drop"],
)
def test_the_retry_policy(
    sandbox_kubeconfig: tuple[Sandbox, Path],
    waits: list[float],
    fault: dict[str, Any],
    policy: Timing,
    expect_waits: list[float],
    expect_hits: int,
    outcome: type[Exception] | None,
) -> None:
    sandbox, path = sandbox_kubeconfig
    faults = sandbox["source"].cluster.faults
    faults.clear()
    injected = faults.inject("get", PATH, **fault)
    kube = clusters.Connector(timing=policy).connect(clusters.load_kubeconfig(path), "source")
    try:
        if outcome is None:
            assert kube.get(SECRET, "x", "default") is None  # the answer after the faults
        else:
            with pytest.raises(outcome) as raised:
                kube.get(SECRET, "x", "default")
            if outcome is errors.MtvRegisterError:
                assert type(raised.value) is errors.MtvRegisterError
                assert f"{policy.attempts} attempts" in str(raised.value)
    finally:
        kube.close()
        faults.clear()
    assert injected.hits == expect_hits
    assert waits == pytest.approx(expect_waits)
