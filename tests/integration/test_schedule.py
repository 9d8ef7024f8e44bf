"""Scheduled rotation: `schedule` writes a CronJob and the least-privileged identity it runs as;
the CronJob's exact command, run as that identity from inside the "cluster", rotates every
Provider (recording an Event on each, or, with a Role that may not, none and the same result);
without its RoleBinding it is denied; `unschedule` removes all four objects.

`schedule` and `unschedule` take no `--client`: they run on the default backend whatever the
test's; the CronJob's `rotate` is run on the test's backend."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from mtv_register import clusters, naming, schedule
from mtv_register.kube import EVENT, ROLE, ROLE_BINDING, Kube
from mtv_register.sandbox import MTV_NAMESPACE, Sandbox
from mtv_register.timing import Timing
from tests.conftest import EXTRA_TOKENS
from tests.integration._rotation_support import (
    HOST,
    PROVIDERS,
    assert_healthy,
    provider_token,
    refused_over_https,
    register,
)
from tests.integration.conftest import (
    Backend,
    CliRun,
    assert_nothing_written,
    mark,
    marks,
    one_error_line,
    snapshot_difference,
    writes_since,
)
from tests.target import BY_PLURAL, Target

ROTATOR = naming.ROTATOR_NAME
ROTATOR_USER = f"system:serviceaccount:{MTV_NAMESPACE}:{ROTATOR}"
EVERY = "0 3 * * *"
# (plural, name) of what `schedule` writes on the MTV host.
SCHEDULED = (
    ("serviceaccounts", ROTATOR),
    ("roles", ROTATOR),
    ("rolebindings", ROTATOR),
    ("cronjobs", naming.ROTATION_CRONJOB),
)
# The same as keys of `Target.snapshot()`: (storage key, namespace, name).
SCHEDULED_KEYS = sorted(
    str((f"{BY_PLURAL[plural][0]}/{plural}", MTV_NAMESPACE, name)) for plural, name in SCHEDULED
)


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


def stored(target: Target, plural: str, name: str) -> Any:
    return target.find(HOST, plural, name, MTV_NAMESPACE)


def cron_job(target: Target) -> dict[str, Any]:
    found = stored(target, "cronjobs", naming.ROTATION_CRONJOB)
    assert found is not None, "no rotation CronJob"
    return dict(found)


def admin(kubeconfig: Path, context: str = HOST) -> Kube:
    return clusters.Connector(timing=Timing.immediate()).connect(
        clusters.load_kubeconfig(kubeconfig), context
    )


@pytest.fixture
def scheduled(target: Target, kubeconfig: Path, cli: CliRun) -> Target:
    """Rotation scheduled on the MTV host (no Provider registered)."""
    result = cli(*schedule_args(kubeconfig))
    assert result.exit_code == 0, result.output
    return target


@pytest.fixture
def pair_scheduled(target: Target, kubeconfig: Path, cli: CliRun) -> Target:
    """The pair registered (Forklift finds both Providers Ready), then rotation scheduled."""
    register(target)
    result = cli(*schedule_args(kubeconfig))
    assert result.exit_code == 0, result.output
    return target


@pytest.fixture
def in_the_pod(
    pair_scheduled: Target,
    kubeconfig: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
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
    token = answer["status"]["token"]
    EXTRA_TOKENS.add(token)  # in no Secret, and not the sandbox's on external clusters: scan for it
    folder = tmp_path / "sa"
    folder.mkdir()
    (folder / "token").write_text(token)
    (folder / "ca.crt").write_text(pair_scheduled.serving_ca_pem(HOST))
    address = urlsplit(pair_scheduled.url(HOST))
    assert address.hostname is not None
    monkeypatch.setenv("MTV_REGISTER_SERVICEACCOUNT_DIR", str(folder))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", address.hostname)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(address.port or 443))
    template = cron_job(pair_scheduled)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert template["serviceAccountName"] == ROTATOR
    return list(template["containers"][0]["args"])


# -- schedule ------------------------------------------------------------------------------------


def test_schedule_creates_the_rotator_account_role_binding_and_cron_job(
    scheduled: Target, kubeconfig: Path, cli: CliRun
) -> None:
    for plural, name in SCHEDULED:
        obj = stored(scheduled, plural, name)
        assert obj is not None, f"{plural}/{name} was not created"
        assert obj["metadata"]["labels"][naming.MANAGED_BY_LABEL] == naming.MANAGED_BY
    role = stored(scheduled, "roles", ROTATOR)
    assert role["rules"] == schedule.ROTATOR_RULES
    binding = stored(scheduled, "rolebindings", ROTATOR)
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
    assert pod["containers"][0]["args"] == schedule.rotation_command(MTV_NAMESPACE, "0s")

    since = mark(scheduled)
    again = cli(*schedule_args(kubeconfig))
    assert again.exit_code == 0, again.output
    assert_nothing_written(scheduled, since)


def test_schedule_dry_run_prints_the_manifests_and_writes_nothing(
    target: Target, kubeconfig: Path, cli: CliRun
) -> None:
    since = mark(target)

    result = cli(*schedule_args(kubeconfig, "--dry-run"))

    assert result.exit_code == 0, result.output
    printed = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert [doc["kind"] for doc in printed] == ["ServiceAccount", "Role", "RoleBinding", "CronJob"]
    assert_nothing_written(target, since)
    for plural, name in SCHEDULED:
        assert stored(target, plural, name) is None


@pytest.mark.parametrize(
    ("flag", "value"), [("--every", "every night"), ("--every", "0 3 * *"), ("--max-age", "1x")]
)
def test_schedule_refuses_a_bad_schedule_or_max_age(
    target: Target, kubeconfig: Path, cli: CliRun, flag: str, value: str
) -> None:
    args = schedule_args(kubeconfig)
    args[args.index(flag) + 1] = value
    since = mark(target)

    result = cli(*args)

    assert result.exit_code == 2, result.output
    assert flag in one_error_line(result)
    assert_nothing_written(target, since)


# -- the CronJob's run ---------------------------------------------------------------------------


@pytest.mark.needs_forklift
def test_the_cron_jobs_command_as_its_service_account_rotates_every_provider(
    pair_scheduled: Target, in_the_pod: list[str], cli: CliRun
) -> None:
    old = {p: provider_token(pair_scheduled, p) for p in PROVIDERS}

    result = cli(*in_the_pod)

    assert result.exit_code == 0, result.output
    assert sorted(result.stdout.splitlines()) == [
        "Provider destination rotated",
        "Provider source rotated",
    ]
    for provider in PROVIDERS:
        assert provider_token(pair_scheduled, provider) != old[provider]
        assert pair_scheduled.refuses(provider, old[provider])
        assert refused_over_https(pair_scheduled, provider, old[provider])
    assert_healthy(pair_scheduled)


@pytest.mark.needs_forklift
@pytest.mark.sandbox_only("reads who made each request, and its answer, from the audit log")
def test_the_cron_jobs_command_makes_every_request_as_its_account_and_none_is_refused(
    pair_scheduled: Target,
    sandbox: Sandbox,
    in_the_pod: list[str],
    cli: CliRun,
    backend: Backend,
) -> None:
    since = marks(sandbox)

    result = cli(*in_the_pod)

    assert result.exit_code == 0, result.output
    # Every request on the host was made as the rotator account, and none was refused:
    # the Role suffices.
    events = sandbox[HOST].cluster.audit.since(since[HOST])
    ours = [e for e in events if re.search(backend.agent, e["userAgent"])]
    assert ours
    assert {e["user"]["username"] for e in ours} == {ROTATOR_USER}
    assert [e["requestURI"] for e in ours if e["responseStatus"]["code"] >= 400] == []
    assert "update" in {e["verb"] for e in ours}  # the provider Secrets were switched by it
    recorded = [e for e in ours if e["verb"] == "create" and "/events.k8s.io/" in e["requestURI"]]
    assert len(recorded) == len(PROVIDERS)  # one Event on each Provider, by the same account


def tool_events(host: Kube) -> list[str]:
    """The names of the Events mtv-register recorded in the MTV namespace (a real server lists
    everyone's there: the pods' too)."""
    return sorted(
        e["metadata"]["name"]
        for e in host.list(EVENT, MTV_NAMESPACE).get("items", [])
        if e.get("reportingController") == naming.EVENT_CONTROLLER
    )


@pytest.mark.needs_forklift
def test_a_cron_job_whose_role_may_not_record_events_still_rotates(
    pair_scheduled: Target, in_the_pod: list[str], kubeconfig: Path, cli: CliRun
) -> None:
    """A Role written before the rotation recorded Events (or narrowed by hand): each Event is
    refused (403), and the rotation's result and exit code are as with it."""
    old = {p: provider_token(pair_scheduled, p) for p in PROVIDERS}
    host = admin(kubeconfig)
    try:
        role = host.get(ROLE, ROTATOR, MTV_NAMESPACE)
        assert role is not None
        role["rules"] = [r for r in role["rules"] if "events.k8s.io" not in r["apiGroups"]]
        host.replace(ROLE, role)
        before = tool_events(host)
    finally:
        host.close()

    result = cli(*in_the_pod)

    assert result.exit_code == 0, result.output
    assert sorted(result.stdout.splitlines()) == [
        "Provider destination rotated",
        "Provider source rotated",
    ]
    assert all(provider_token(pair_scheduled, p) != old[p] for p in PROVIDERS)
    host = admin(kubeconfig)
    try:
        assert tool_events(host) == before
    finally:
        host.close()
    assert_healthy(pair_scheduled)


@pytest.mark.needs_forklift
def test_without_its_role_binding_the_cron_jobs_command_is_denied(
    pair_scheduled: Target, in_the_pod: list[str], kubeconfig: Path, cli: CliRun
) -> None:
    old = {p: provider_token(pair_scheduled, p) for p in PROVIDERS}
    host = admin(kubeconfig)
    try:
        assert host.delete(ROLE_BINDING, ROTATOR, MTV_NAMESPACE)
    finally:
        host.close()
    since = mark(pair_scheduled)

    result = cli(*in_the_pod)

    assert result.exit_code == 7, result.output  # PermissionDenied
    assert ROTATOR in one_error_line(result)
    assert_nothing_written(pair_scheduled, since)
    assert {p: provider_token(pair_scheduled, p) for p in PROVIDERS} == old
    assert_healthy(pair_scheduled)


# -- unschedule ----------------------------------------------------------------------------------


def unschedule_removes_exactly_the_four_objects(target: Target, cli: CliRun) -> None:
    """`unschedule` deletes the four objects and writes nothing else (in the sandbox: no other
    mutating request, on any cluster); a second one writes nothing at all."""
    before, since = target.snapshot(), mark(target)

    result = cli("unschedule", "--host", HOST, "--kubeconfig", str(target.kubeconfig))

    assert result.exit_code == 0, result.output
    for plural, name in SCHEDULED:
        assert stored(target, plural, name) is None, f"{plural}/{name} stays"
    assert snapshot_difference(before, target.snapshot()) == {
        HOST: {"added": [], "removed": SCHEDULED_KEYS, "changed": []}
    }
    made = writes_since(target, since)
    if target.sandbox is not None:  # the audit log also sees a write that changed nothing
        assert set(made) == {HOST}, made
        deleted = sorted(
            urlsplit(uri.split(" ", 1)[1]).path.rsplit("/", 2)[-2] for uri in made[HOST]
        )
        assert deleted == ["cronjobs", "rolebindings", "roles", "serviceaccounts"]

    since = mark(target)
    again = cli("unschedule", "--host", HOST, "--kubeconfig", str(target.kubeconfig))
    assert again.exit_code == 0, again.output
    assert_nothing_written(target, since)


def test_unschedule_removes_the_four_objects_and_nothing_else(
    scheduled: Target, cli: CliRun
) -> None:
    unschedule_removes_exactly_the_four_objects(scheduled, cli)


@pytest.mark.needs_forklift
def test_unschedule_leaves_the_registrations_working(pair_scheduled: Target, cli: CliRun) -> None:
    unschedule_removes_exactly_the_four_objects(pair_scheduled, cli)
    assert_healthy(pair_scheduled)  # the registrations are untouched
