"""Scheduled rotation: `schedule` writes a CronJob and the least-privileged identity it runs as;
the CronJob's exact command, run as that identity from inside the "cluster", rotates every
Provider; without its RoleBinding it is denied; `unschedule` removes all four objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from mtv_register import clusters, manifests
from mtv_register.kube import ROLE_BINDING, Kube, RetryPolicy
from mtv_register.sandbox import MTV_NAMESPACE, Sandbox
from tests.integration._rotation_support import (
    HOST,
    PROVIDERS,
    assert_healthy,
    authenticates,
    fast_waits,
    provider_token,
    refused_over_https,
    register,
)
from tests.integration.conftest import (
    CliRun,
    assert_no_mutation,
    marks,
    mutating_since,
    one_error_line,
)

ROTATOR = manifests.ROTATOR_NAME
ROTATOR_USER = f"system:serviceaccount:{MTV_NAMESPACE}:{ROTATOR}"
EVERY = "0 3 * * *"
# (API group, version, plural, name) of what `schedule` writes on the MTV host.
SCHEDULED = (
    ("", "v1", "serviceaccounts", ROTATOR),
    ("rbac.authorization.k8s.io", "v1", "roles", ROTATOR),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", ROTATOR),
    ("batch", "v1", "cronjobs", manifests.ROTATION_CRONJOB),
)


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_waits(monkeypatch)


def schedule_args(kubeconfig: Path, *extra: str) -> list[str]:
    return [
        "schedule",
        "--host",
        HOST,
        "--kubeconfig",
        str(kubeconfig),
        "--every",
        EVERY,
        "--max-age",
        "0s",
        "--image",
        "x",
        *extra,
    ]


def stored(sandbox: Sandbox, group: str, version: str, plural: str, name: str) -> Any:
    cluster = sandbox[HOST].cluster
    return cluster.store.find(cluster.rtype(group, version, plural), MTV_NAMESPACE, name)


def cron_job(sandbox: Sandbox) -> dict[str, Any]:
    found = stored(sandbox, "batch", "v1", "cronjobs", manifests.ROTATION_CRONJOB)
    assert found is not None, "no rotation CronJob"
    return dict(found)


def admin(kubeconfig: Path, context: str = HOST) -> Kube:
    return clusters.connect(
        clusters.load_kubeconfig(kubeconfig), context, retry=RetryPolicy.immediate()
    )


@pytest.fixture
def scheduled(sandbox: Sandbox, kubeconfig: Path, cli: CliRun) -> Sandbox:
    register(sandbox, kubeconfig)
    result = cli(*schedule_args(kubeconfig))
    assert result.exit_code == 0, result.output
    return sandbox


@pytest.fixture
def in_the_pod(
    scheduled: Sandbox, kubeconfig: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """The CronJob's pod, simulated: a TokenRequest token of the rotator account and the host's
    CA where the pod would find them, the API address in the environment. Returns the exact
    arguments the CronJob's container runs."""
    host = admin(kubeconfig)
    try:
        answer = host.post(
            f"/api/v1/namespaces/{MTV_NAMESPACE}/serviceaccounts/{ROTATOR}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600},
            },
        )
    finally:
        host.close()
    folder = tmp_path / "sa"
    folder.mkdir()
    (folder / "token").write_text(answer["status"]["token"])
    (folder / "ca.crt").write_text(scheduled[HOST].serving_ca_pem)
    address = urlsplit(scheduled[HOST].url)
    monkeypatch.setenv("MTV_REGISTER_SERVICEACCOUNT_DIR", str(folder))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(address.port))
    template = cron_job(scheduled)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert template["serviceAccountName"] == ROTATOR
    return list(template["containers"][0]["args"])


# -- schedule ------------------------------------------------------------------------------------


def test_schedule_creates_the_rotator_account_role_binding_and_cron_job(
    scheduled: Sandbox, kubeconfig: Path, cli: CliRun
) -> None:
    for group, version, plural, name in SCHEDULED:
        obj = stored(scheduled, group, version, plural, name)
        assert obj is not None, f"{plural}/{name} was not created"
        assert obj["metadata"]["labels"][manifests.MANAGED_BY_LABEL] == manifests.MANAGED_BY
    role = stored(scheduled, "rbac.authorization.k8s.io", "v1", "roles", ROTATOR)
    assert role["rules"] == manifests.ROTATOR_RULES
    binding = stored(scheduled, "rbac.authorization.k8s.io", "v1", "rolebindings", ROTATOR)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": ROTATOR,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": ROTATOR, "namespace": MTV_NAMESPACE}
    ]
    spec = cron_job(scheduled)["spec"]
    assert spec["schedule"] == EVERY
    assert spec["concurrencyPolicy"] == "Forbid"  # two scheduled rotations never overlap
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == ROTATOR
    assert pod["containers"][0]["image"] == "x"
    assert pod["containers"][0]["args"] == manifests.rotation_command(MTV_NAMESPACE, "0s")

    since = marks(scheduled)
    again = cli(*schedule_args(kubeconfig))
    assert again.exit_code == 0, again.output
    assert_no_mutation(scheduled, since)


def test_schedule_dry_run_prints_the_manifests_and_writes_nothing(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun
) -> None:
    since = marks(sandbox)

    result = cli(*schedule_args(kubeconfig, "--dry-run"))

    assert result.exit_code == 0, result.output
    printed = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert [doc["kind"] for doc in printed] == ["ServiceAccount", "Role", "RoleBinding", "CronJob"]
    assert_no_mutation(sandbox, since)
    for group, version, plural, name in SCHEDULED:
        assert stored(sandbox, group, version, plural, name) is None


@pytest.mark.parametrize(
    ("flag", "value"), [("--every", "every night"), ("--every", "0 3 * *"), ("--max-age", "1x")]
)
def test_schedule_refuses_a_bad_schedule_or_max_age(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun, flag: str, value: str
) -> None:
    args = schedule_args(kubeconfig)
    args[args.index(flag) + 1] = value
    since = marks(sandbox)

    result = cli(*args)

    assert result.exit_code == 2, result.output
    assert flag in one_error_line(result)
    assert_no_mutation(sandbox, since)


# -- the CronJob's run ---------------------------------------------------------------------------


def test_the_cron_jobs_command_as_its_service_account_rotates_every_provider(
    scheduled: Sandbox, in_the_pod: list[str], cli: CliRun
) -> None:
    old = {p: provider_token(scheduled, p) for p in PROVIDERS}
    since = marks(scheduled)

    result = cli(*in_the_pod)

    assert result.exit_code == 0, result.output
    assert sorted(result.stdout.splitlines()) == [
        "Provider destination rotated",
        "Provider source rotated",
    ]
    for provider in PROVIDERS:
        assert provider_token(scheduled, provider) != old[provider]
        assert not authenticates(scheduled, provider, old[provider])
        assert refused_over_https(scheduled, provider, old[provider])
    assert_healthy(scheduled)
    # Every request on the host was made as the rotator account, and none was refused:
    # the Role suffices.
    events = scheduled[HOST].cluster.audit.since(since[HOST])
    ours = [e for e in events if e["userAgent"].startswith("mtv-register/")]
    assert ours
    assert {e["user"]["username"] for e in ours} == {ROTATOR_USER}
    assert [e["requestURI"] for e in ours if e["responseStatus"]["code"] >= 400] == []
    assert "update" in {e["verb"] for e in ours}  # the provider Secrets were switched by it


def test_without_its_role_binding_the_cron_jobs_command_is_denied(
    scheduled: Sandbox, in_the_pod: list[str], kubeconfig: Path, cli: CliRun
) -> None:
    old = {p: provider_token(scheduled, p) for p in PROVIDERS}
    host = admin(kubeconfig)
    try:
        assert host.delete(ROLE_BINDING, ROTATOR, MTV_NAMESPACE)
    finally:
        host.close()
    since = marks(scheduled)

    result = cli(*in_the_pod)

    assert result.exit_code == 7, result.output  # PermissionDenied
    assert ROTATOR in one_error_line(result)
    assert mutating_since(scheduled, since) == {context: [] for context in scheduled.clusters}
    assert {p: provider_token(scheduled, p) for p in PROVIDERS} == old
    assert_healthy(scheduled)


# -- unschedule ----------------------------------------------------------------------------------


def test_unschedule_removes_the_four_objects_and_nothing_else(
    scheduled: Sandbox, kubeconfig: Path, cli: CliRun
) -> None:
    since = marks(scheduled)

    result = cli("unschedule", "--host", HOST, "--kubeconfig", str(kubeconfig))

    assert result.exit_code == 0, result.output
    for group, version, plural, name in SCHEDULED:
        assert stored(scheduled, group, version, plural, name) is None, f"{plural}/{name} stays"
    deleted = sorted(
        urlsplit(uri.split(" ", 1)[1]).path.rsplit("/", 2)[-2]
        for uri in mutating_since(scheduled, since)[HOST]
    )
    assert deleted == ["cronjobs", "rolebindings", "roles", "serviceaccounts"]
    assert all(
        not requests for c, requests in mutating_since(scheduled, since).items() if c != HOST
    )
    assert_healthy(scheduled)  # the registrations are untouched

    since = marks(scheduled)
    again = cli("unschedule", "--host", HOST, "--kubeconfig", str(kubeconfig))
    assert again.exit_code == 0, again.output
    assert_no_mutation(scheduled, since)
