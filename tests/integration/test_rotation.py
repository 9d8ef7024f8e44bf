"""Rotation: `register`, then `rotate`, through the CLI and the library, on either backend.

A rotation leaves each Provider Ready on a new token with the old one revoked; a failure at any
step, a refused new token, a concurrent run or a dead token leaves a working Provider with one
token and no stray token Secret.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from mtv_register import clusters, manifests, naming, rotation, verdicts
from mtv_register.kube import CLUSTER_ROLE, SERVICE_ACCOUNT, Kube
from mtv_register.sandbox import MTV_NAMESPACE, Sandbox
from mtv_register.sandbox.mtv.controller import FORKLIFT_USER_AGENT
from mtv_register.timing import Timing
from tests.integration._rotation_support import (
    HOST,
    PROVIDERS,
    SA,
    SA_NAMESPACE,
    assert_healthy,
    health,
    managed_token_secrets,
    provider_secret,
    provider_token,
    referenced_token_secret,
    refused_over_https,
    register,
)
from tests.integration.conftest import (
    CliRun,
    active_backend,
    assert_nothing_written,
    mark,
    one_error_line,
    wait_for,
)
from tests.target import Target

# Every test here registers the pair, which waits for Forklift to find both Providers Ready,
# and a rotation waits for Forklift's re-test of the new token.
pytestmark = pytest.mark.needs_forklift


@pytest.fixture
def registered(target: Target) -> Target:
    register(target)
    assert_healthy(target)
    return target


def rotate_args(kubeconfig: Path, *extra: str, provider: str | None = None) -> list[str]:
    which = ["--provider", provider] if provider else ["--all"]
    return ["rotate", *which, "--host", HOST, "--kubeconfig", str(kubeconfig), *extra]


def actions(result: Result) -> dict[str, str]:
    """Provider -> action, from the text output ("Provider NAME ACTION[: reason]")."""
    found = {}
    for line in result.stdout.splitlines():
        match = re.match(r"Provider (\S+) ([a-z -]+?)(:|$)", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


# -- a clean rotation --------------------------------------------------------------------------


def test_rotate_all_revokes_the_old_tokens_and_leaves_providers_ready_on_new_ones(
    registered: Target, kubeconfig: Path, cli: CliRun
) -> None:
    old = {p: provider_token(registered, p) for p in PROVIDERS}
    old_secrets = {p: sorted(managed_token_secrets(registered, p)) for p in PROVIDERS}

    result = cli(*rotate_args(kubeconfig, "--max-age", "0s"))

    assert result.exit_code == 0, result.output
    assert actions(result) == {"source": "rotated", "destination": "rotated"}
    for provider in PROVIDERS:
        new = provider_token(registered, provider)
        assert new != old[provider]
        assert registered.authenticates(provider, new)
        assert registered.refuses(provider, old[provider])
        assert refused_over_https(registered, provider, old[provider])
        assert set(managed_token_secrets(registered, provider)).isdisjoint(old_secrets[provider])
        annotations = provider_secret(registered, provider)["metadata"]["annotations"]
        assert naming.ROTATED_AT_ANNOTATION in annotations
    assert_healthy(registered)


def test_a_second_rotation_rotates_the_rotated_token(
    registered: Target, kubeconfig: Path, cli: CliRun
) -> None:
    tokens = [provider_token(registered, "source")]
    for _ in range(2):
        assert cli(*rotate_args(kubeconfig, "--max-age", "0s")).exit_code == 0
        tokens.append(provider_token(registered, "source"))
    assert len(set(tokens)) == 3
    assert [registered.refuses("source", t) for t in tokens[:2]] == [True, True]
    assert registered.authenticates("source", tokens[2])
    assert_healthy(registered)


# -- --max-age -----------------------------------------------------------------------------------


def test_max_age_skips_a_token_younger_than_it_and_says_so(
    registered: Target, kubeconfig: Path, cli: CliRun
) -> None:
    before = {p: provider_token(registered, p) for p in PROVIDERS}
    since = mark(registered)

    result = cli(*rotate_args(kubeconfig, "--max-age", "1h"))

    assert result.exit_code == 0, result.output
    assert actions(result) == {"source": "skipped", "destination": "skipped"}
    assert "younger than --max-age 1h" in result.stdout
    assert_nothing_written(registered, since)
    assert {p: provider_token(registered, p) for p in PROVIDERS} == before


def test_max_age_zero_rotates_a_token_just_issued(
    registered: Target, kubeconfig: Path, cli: CliRun
) -> None:
    before = provider_token(registered, "source")
    result = cli(*rotate_args(kubeconfig, "--max-age", "0s", provider="source"))
    assert result.exit_code == 0, result.output
    assert actions(result) == {"source": "rotated"}
    assert provider_token(registered, "source") != before
    assert_healthy(registered)


@pytest.mark.parametrize("value", ["soon", "-1h", "10"])
def test_an_unparseable_max_age_is_a_usage_error(
    registered: Target, kubeconfig: Path, cli: CliRun, value: str
) -> None:
    since = mark(registered)
    result = cli(*rotate_args(kubeconfig, "--max-age", value))
    assert result.exit_code == 2, result.output
    assert "--max-age" in one_error_line(result)
    assert_nothing_written(registered, since)


# -- Forklift refuses the new token after the switch ---------------------------------------------


FORKLIFT = f"^{re.escape(FORKLIFT_USER_AGENT)}$"


@pytest.mark.sandbox_only("makes Forklift's connection test of the new token fail (a fault)")
def test_a_new_token_forklift_refuses_is_switched_back_to_the_old_one(
    registered: Target, sandbox: Sandbox, kubeconfig: Path, cli: CliRun
) -> None:
    old_token = provider_token(registered, "source")
    old_secrets = sorted(managed_token_secrets(registered, "source"))
    # Only Forklift's connection test lists storage classes: its first test after the switch
    # (of the new token) is refused with 401, which Forklift does not retry
    # (ConnectionAuthFailed); the test after the switch back (of the old one) is not refused.
    refused = sandbox["source"].cluster.faults.inject(
        "list", "^/apis/storage.k8s.io/v1/storageclasses$", count=1, status=401, agent=FORKLIFT
    )

    result = cli(*rotate_args(kubeconfig, "--max-age", "0s", provider="source"))

    assert refused.hits == 1
    assert result.exit_code == 10, result.output  # ProviderNotReady
    assert "rolled back" in result.stdout
    assert "switched back to the old token" in result.stderr
    assert provider_token(registered, "source") == old_token
    assert sorted(managed_token_secrets(registered, "source")) == old_secrets
    assert_healthy(registered)


@pytest.mark.sandbox_only("makes Forklift's connection test of the new token fail (a fault)")
def test_a_refusal_forklift_retries_is_waited_out_and_the_rotation_completes(
    registered: Target, sandbox: Sandbox, kubeconfig: Path, cli: CliRun
) -> None:
    """A 403 gives ConnectionTestFailed, which Forklift retries 3 s later: not a final verdict.
    The tool's own run of the lists passes, so it waits, and the retry passes."""
    old_token = provider_token(registered, "source")
    refused = sandbox["source"].cluster.faults.inject(
        "list", "^/apis/storage.k8s.io/v1/storageclasses$", count=1, status=403, agent=FORKLIFT
    )

    result = cli(*rotate_args(kubeconfig, "--max-age", "0s", provider="source"))

    assert refused.hits == 1
    assert result.exit_code == 0, result.output
    assert provider_token(registered, "source") != old_token
    assert registered.refuses("source", old_token)
    assert_healthy(registered)


# -- two rotations at once -----------------------------------------------------------------------


def host_client(kubeconfig: Path) -> Kube:
    """A client of the MTV host on the test's backend."""
    chosen = active_backend()
    return clusters.Connector(
        backend=chosen.name, oc_path=chosen.oc_path, timing=Timing.immediate()
    ).connect(clusters.load_kubeconfig(kubeconfig), HOST)


def rotate_concurrently(kubeconfig: Path, runs: int) -> list[list[rotation.RotationResult]]:
    """`runs` rotate_all calls started together, each with its own host client."""
    results: list[Any] = [None] * runs
    start = threading.Barrier(runs)
    options = rotation.RotateOptions(timeout=15, timing=Timing.immediate())

    def run(index: int) -> None:
        host = host_client(kubeconfig)
        try:
            start.wait()
            results[index] = rotation.rotate_all(
                host, MTV_NAMESPACE, None, options, lambda change: None
            )
        except BaseException as error:  # the assertion below names it
            results[index] = error
        finally:
            host.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    for outcome in results:
        assert isinstance(outcome, list), f"a rotation raised {outcome!r}"
    return results


def test_two_rotations_at_once_leave_one_working_token(
    registered: Target, kubeconfig: Path
) -> None:
    old = {p: provider_token(registered, p) for p in PROVIDERS}

    runs = rotate_concurrently(kubeconfig, 2)

    for provider in PROVIDERS:
        outcome = sorted(r.action for run in runs for r in run if r.provider == provider)
        assert "rotated" in outcome, outcome
        assert outcome in (
            ["rotated", "rotated"],
            ["lost-race", "rotated"],
            ["failed", "rotated"],
        ), outcome
        for run in runs:
            for r in run:
                assert "\n" not in r.reason
        assert registered.refuses(provider, old[provider])
    assert_healthy(registered)


def test_a_rotation_overtaken_by_another_removes_its_own_token_secret(
    registered: Target, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slow run read the provider Secret (and so the old token) before the fast run
    rotated and revoked it: its new Secret must still go, and the fast run's token stay."""
    first_done = threading.Event()
    real_wait = rotation.wait_for_token

    calls = iter(range(1_000))

    def slow_second_run(kube: Kube, secret: dict[str, Any], timeout: float) -> Any:
        first_call = next(calls) == 0  # the slow run's: it is started first
        issued = real_wait(kube, secret, timeout)
        if first_call:
            assert first_done.wait(30)
        return issued

    monkeypatch.setattr(rotation, "wait_for_token", slow_second_run)
    old = {p: provider_token(registered, p) for p in PROVIDERS}
    fast = host_client(kubeconfig)
    slow_results: list[rotation.RotationResult] = []
    options = rotation.RotateOptions(timeout=15, timing=Timing.immediate())

    def slow() -> None:
        host = host_client(kubeconfig)
        try:
            slow_results.extend(
                rotation.rotate_all(host, MTV_NAMESPACE, ["source"], options, lambda c: None)
            )
        finally:
            host.close()

    slow_thread = threading.Thread(target=slow)
    slow_thread.start()
    try:
        # Both have read the provider Secret once the slow run's new Secret exists.
        wait_for(
            lambda: len(managed_token_secrets(registered, "source")) == 2,
            what="the slow run's new token Secret",
        )
        fast_results = rotation.rotate_all(
            fast, MTV_NAMESPACE, ["source"], options, lambda change: None
        )
    finally:
        first_done.set()
        slow_thread.join(timeout=30)
        fast.close()

    assert [r.action for r in fast_results] == ["rotated"]
    assert len(slow_results) == 1 and slow_results[0].action in ("lost-race", "failed")
    assert registered.refuses("source", old["source"])
    assert_healthy(registered, "source")


def test_the_late_clean_up_of_one_rotation_spares_the_token_of_the_next(
    registered: Target, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run A switches and sees Ready, then stalls before revoking; run B, started after A's
    switch, rotates A's token in turn and sees Ready. A's late clean-up must not revoke the
    token the Provider now holds (B's), and B's must revoke A's."""
    second_ready, first_done = threading.Event(), threading.Event()
    real_wait_ready = verdicts.wait_ready
    calls = iter(range(1_000))

    def ordered_wait_ready(*args: Any, **kwargs: Any) -> Any:
        first = next(calls) == 0
        provider = real_wait_ready(*args, **kwargs)
        if first:
            assert second_ready.wait(30)  # A stalls after Ready, before its clean-up
        else:
            second_ready.set()
            assert first_done.wait(30)  # B cleans up only after A has
        return provider

    monkeypatch.setattr(verdicts, "wait_ready", ordered_wait_ready)
    original = referenced_token_secret(registered, "source")
    options = rotation.RotateOptions(timeout=15, timing=Timing.immediate())
    results: dict[str, list[rotation.RotationResult]] = {}

    def run(label: str, done: threading.Event | None) -> None:
        host = host_client(kubeconfig)
        try:
            results[label] = rotation.rotate_all(
                host, MTV_NAMESPACE, ["source"], options, lambda change: None
            )
        finally:
            host.close()
            if done is not None:
                done.set()

    first = threading.Thread(target=run, args=("A", first_done))
    first.start()
    wait_for(
        lambda: referenced_token_secret(registered, "source") != original,
        what="run A to switch the provider Secret",
    )
    second = threading.Thread(target=run, args=("B", None))
    second.start()
    first.join(timeout=60)
    second.join(timeout=60)

    assert_healthy(registered, "source")  # not: Ready on B's token, which A revoked
    assert [r.action for r in results["A"]] == ["rotated"], results["A"]
    assert [r.action for r in results["B"]] == ["rotated"], results["B"]
    assert referenced_token_secret(registered, "source") == results["B"][0].new_secret


# -- a dead token: recovery with admin credentials ----------------------------------------------


def test_a_dead_token_fails_rotation_and_is_recovered_with_an_admin_context(
    registered: Target, kubeconfig: Path, cli: CliRun
) -> None:
    dead = provider_token(registered, "source")
    admin = clusters.Connector().connect(clusters.load_kubeconfig(kubeconfig), "source")
    try:
        (name,) = managed_token_secrets(registered, "source")
        assert admin.delete(rotation.SECRET, name, SA_NAMESPACE)  # behind the tool's back
    finally:
        admin.close()
    assert registered.refuses("source", dead)

    failed = cli(*rotate_args(kubeconfig, "--max-age", "0s"))

    assert failed.exit_code == 8, failed.output  # AuthenticationFailed
    assert actions(failed) == {"source": "failed", "destination": "rotated"}
    (line,) = [x for x in failed.stdout.splitlines() if x.startswith("Provider source")]
    assert "--source-context" in line, line
    assert provider_token(registered, "source") == dead  # nothing was switched to

    recovered = cli(*rotate_args(kubeconfig, "--max-age", "0s", "--source-context", "source"))

    assert recovered.exit_code == 0, recovered.output
    assert actions(recovered)["source"] == "recovered"
    assert provider_token(registered, "source") != dead, recovered.output
    assert_healthy(registered)


def test_rotation_never_lists_the_token_secret_in_the_service_account(
    registered: Target, kubeconfig: Path, cli: CliRun
) -> None:
    assert cli(*rotate_args(kubeconfig, "--max-age", "0s")).exit_code == 0
    account = registered.find("source", "serviceaccounts", SA, SA_NAMESPACE)
    assert account is not None
    assert not account.get("secrets")
    assert not health(registered, "source")


@pytest.mark.parametrize("how", ["cluster-role", "bound"])
def test_recovery_restores_the_registration_as_it_was_made(
    target: Target, kubeconfig: Path, cli: CliRun, how: str
) -> None:
    """A --cluster-role registration stays bound to that role (the default one is not made);
    a bound-token registration gets a bound token again, with its lifetime, and no token
    Secret."""
    role = "mtv-register-test-own-role"
    own = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": role},
        "rules": manifests.SEED_CLUSTER_ROLE_RULES,
    }
    extra = ["--cluster-role", role] if how == "cluster-role" else ["--token-type", "bound"]
    admins = {
        c: clusters.Connector().connect(clusters.load_kubeconfig(kubeconfig), c) for c in PROVIDERS
    }
    try:
        if how == "cluster-role":
            for kube in admins.values():
                kube.create(CLUSTER_ROLE, own)
        registered = cli(
            "register", "--kubeconfig", str(kubeconfig), "--source", "source",
            "--destination", "destination", "--host", HOST, "--yes", "--token-ttl", "2h", *extra,
        )  # fmt: skip
        assert registered.exit_code == 0, registered.output
        dead = provider_token(target, "source")
        # Behind the tool's back: the account goes, and with it every token it had.
        admins["source"].delete(SERVICE_ACCOUNT, SA, SA_NAMESPACE)
        assert target.refuses("source", dead)

        recovered = cli(*rotate_args(kubeconfig, "--max-age", "0s", "--source-context", "source"))

        assert recovered.exit_code == 0, recovered.output
        assert actions(recovered)["source"] == "recovered"
        assert target.authenticates("source", provider_token(target, "source"))
        binding = target.find("source", "clusterrolebindings", SA)
        assert binding is not None
        secret = provider_secret(target, "source")
        annotations = secret["metadata"]["annotations"]
        if how == "cluster-role":
            assert binding["roleRef"]["name"] == role
            assert target.find("source", "clusterroles", naming.DEFAULT_ROLE_NAME) is None
        else:
            assert annotations[naming.TOKEN_TYPE_ANNOTATION] == "bound"
            assert annotations[naming.TOKEN_TTL_ANNOTATION] == "7200"
            secrets = target.list("source", "secrets", SA_NAMESPACE)
            assert not [s for s in secrets if s.get("type") == naming.SERVICE_ACCOUNT_TOKEN_TYPE]
        assert target.provider_phase("source") == "Ready"
    finally:
        cli(
            "unregister", "--kubeconfig", str(kubeconfig), "--source", "source",
            "--destination", "destination", "--host", HOST, "--yes",
        )  # fmt: skip
        if how == "cluster-role":
            for kube in admins.values():
                kube.delete(CLUSTER_ROLE, role)
        for kube in admins.values():
            kube.close()
