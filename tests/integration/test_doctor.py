"""`doctor` on a healthy pair, and each check made to fail the way a cluster really breaks: the
finding names what it saw, the run exits 14, and where the fix is a command, running that very
command (the real kubectl, or mtv-register) clears it.

Breaks go through the API (an admin's patch, a deleted ConfigMap), so these run unchanged on the
sandbox and on the real clusters; each is undone after its test, since a real cluster's reset
only deletes what a test added. A fix that an operator carries out (HyperConverged to KubeVirt,
ForkliftController to its Deployment) clears only where the operator runs: on the sandbox, which
imitates both; the real stack runs neither.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import Result

from mtv_register.kube import (
    CLUSTER_ROLE,
    CLUSTER_SERVICE_VERSION,
    CONFIG_MAP,
    DEPLOYMENT,
    FORKLIFT_CONTROLLER,
    HYPERCONVERGED,
    INFRASTRUCTURE,
    KUBEVIRT,
    MERGE_PATCH,
    PROVIDER,
    SECRET,
    Kind,
    Kube,
)
from mtv_register.sandbox import MTV_NAMESPACE
from tests.conftest import SandboxFactory
from tests.integration.conftest import CliRun, admin, register_args, shaped_target
from tests.target import Target

Obj = dict[str, Any]
CNV = "openshift-cnv"
KUBEVIRT_NAME = "kubevirt-kubevirt-hyperconverged"
HCO_NAME = "kubevirt-hyperconverged"
NOT_READY = 14
OPERATORS = "the fix goes through an operator, which only the sandbox imitates"


def doctor(cli: CliRun, target: Target, *extra: str) -> tuple[Result, list[Obj]]:
    result = cli(
        "doctor", "--source", "source", "--destination", "destination", "--host", "mtv",
        "--kubeconfig", str(target.kubeconfig), "-o", "json", *extra,
    )  # fmt: skip
    return result, json.loads(result.stdout)["checks"]


def found(checks: list[Obj], check: str, cluster: str, result: str) -> list[Obj]:
    return [
        c for c in checks if (c["check"], c["cluster"], c["result"]) == (check, cluster, result)
    ]


def one_failure(result: Result, checks: list[Obj], check: str, cluster: str) -> Obj:
    """Exit 14, and exactly one failed finding of `check` on `cluster`: that one."""
    assert result.exit_code == NOT_READY, result.stdout
    failed = found(checks, check, cluster, "fail")
    assert len(failed) == 1, checks
    return failed[0]


def only_failure(checks: list[Obj], check: str, cluster: str) -> Obj:
    """The one failed finding, and that it is the only one: each break breaks one thing."""
    failed = [c for c in checks if c["result"] == "fail"]
    assert [(c["check"], c["cluster"]) for c in failed] == [(check, cluster)], failed
    return failed[0]


def run_fix(fix: str, cli: CliRun, target: Target) -> None:
    """The fix doctor printed, run as a user would paste it."""
    words = shlex.split(fix)
    if words[0] == "kubectl":
        binary = shutil.which("kubectl")
        assert binary is not None
        env = {**os.environ, "KUBECONFIG": str(target.kubeconfig)}
        done = subprocess.run(
            [binary, *words[1:]], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
    else:
        assert words[0] == "mtv-register", fix
        extra = ["--yes"] if words[1] == "register" else []
        result = cli(*words[1:], "--kubeconfig", str(target.kubeconfig), *extra)
        assert result.exit_code == 0, result.stdout + result.stderr


def first(kube: Kube, kind: Kind, namespace: str) -> Obj:
    items = kube.list(kind, namespace).get("items") or []
    assert items, f"no {kind.plural} in {namespace} on {kube.context}"
    return dict(items[0])


@contextlib.contextmanager
def changed(
    target: Target,
    context: str,
    kind: Kind,
    name: str,
    namespace: str | None,
    *,
    spec: Obj | None = None,
    status: Obj | None = None,
    delete: bool = False,
) -> Iterator[None]:
    """The object merge-patched (its spec or its status), or deleted, until the block ends;
    then as it was."""
    with admin(target, context) as kube:
        original = kube.get(kind, name, namespace)
        assert original is not None, f"{kind.plural} {name} on {context}"
        if delete:
            kube.delete(kind, name, namespace)
        if spec is not None:
            kube.patch(kind, name, spec, namespace)
        if status is not None:
            path = kind.path(namespace, name, "status")
            kube.request("PATCH", path, body={"status": status}, content_type=MERGE_PATCH)
        try:
            yield
        finally:
            _restore(kube, kind, original, deleted=delete)


def _restore(kube: Kube, kind: Kind, original: Obj, *, deleted: bool) -> None:
    meta = original["metadata"]
    name, namespace = meta["name"], meta.get("namespace")
    keep = {k: v for k, v in meta.items() if k in ("name", "namespace", "labels", "annotations")}
    if deleted:
        kube.create(
            kind, {**{k: v for k, v in original.items() if k != "status"}, "metadata": keep}
        )
    else:
        current = kube.get(kind, name, namespace)
        assert current is not None
        body = {k: v for k, v in original.items() if k != "status"}
        body["metadata"] = {**keep, "resourceVersion": current["metadata"]["resourceVersion"]}
        kube.replace(kind, body)
    if "status" in original:
        current = kube.get(kind, name, namespace)
        assert current is not None
        kube.request(
            "PUT",
            kind.path(namespace, name, "status"),
            body={**current, "status": original["status"]},
        )


def changes(
    target: Target, context: str, *edits: tuple[Kind, str, str, Obj]
) -> contextlib.ExitStack:
    """Each (kind, name, namespace, spec patch) merge-patched on `context` until the block
    ends, then as it was (`changed`)."""
    stack = contextlib.ExitStack()
    for kind, name, namespace, spec in edits:
        stack.enter_context(changed(target, context, kind, name, namespace, spec=spec))
    return stack


# -- a healthy pair ------------------------------------------------------------------------------


@pytest.mark.needs_forklift
def test_a_registered_pair_on_healthy_clusters_passes_every_check(
    cli: CliRun, target: Target
) -> None:
    assert cli(*register_args(target.kubeconfig, "--yes")).exit_code == 0
    result, checks = doctor(cli, target)
    assert result.exit_code == 0, result.stdout
    assert [c for c in checks if c["result"] != "ok"] == []
    seen = {(c["check"], c["cluster"]) for c in checks}
    for check in ("versions", "feature-gates", "kubevirt", "network"):
        assert {(check, "source"), (check, "destination")} <= seen, check
    assert ("versions", "mtv") in seen and ("feature-gates", "mtv") in seen
    for check in ("providers", "permissions", "expiry", "hygiene"):
        assert {(check, "source"), (check, "destination")} <= seen, check
    text = cli(
        "doctor", "--source", "source", "--destination", "destination", "--host", "mtv",
        "--kubeconfig", str(target.kubeconfig),
    )  # fmt: skip
    assert text.exit_code == 0
    assert text.stdout.count("✔") == len(checks) and "✘" not in text.stdout
    assert text.stdout.rstrip().endswith(f"{len(checks)} passed, 0 warning(s), 0 failed")


def test_an_unregistered_pair_fails_only_on_its_missing_providers(
    cli: CliRun, target: Target
) -> None:
    result, checks = doctor(cli, target)
    assert result.exit_code == NOT_READY
    failed = {(c["check"], c["cluster"]) for c in checks if c["result"] == "fail"}
    assert failed == {("providers", "source"), ("providers", "destination")}
    fix = found(checks, "providers", "source", "fail")[0]["fix"]
    assert fix == "mtv-register register --source source --destination destination --host mtv"


# -- the clusters --------------------------------------------------------------------------------


def test_an_old_virtualization_fails_and_unequal_minors_warn(cli: CliRun, target: Target) -> None:
    old = {"versions": [{"name": "operator", "version": "4.19.3"}]}
    with changed(target, "source", HYPERCONVERGED, HCO_NAME, CNV, status=old):
        result, checks = doctor(cli, target)
    failure = one_failure(result, checks, "versions", "source")
    assert "OpenShift Virtualization 4.19.3" in failure["saw"]
    assert "4.20 or later" in failure["saw"]
    newer = {"versions": [{"name": "operator", "version": "4.21.0"}]}
    with changed(target, "destination", HYPERCONVERGED, HCO_NAME, CNV, status=newer):
        result, checks = doctor(cli, target)
    pair = found(checks, "versions", "pair", "warn")
    assert len(pair) == 1 and "4.21 on destination" in pair[0]["saw"], checks
    assert not found(checks, "versions", "destination", "fail")


def test_an_mtv_before_2_10_fails(cli: CliRun, target: Target) -> None:
    with admin(target, "mtv") as kube:
        csv = first(kube, CLUSTER_SERVICE_VERSION, MTV_NAMESPACE)
    name = csv["metadata"]["name"]
    with changed(
        target,
        "mtv",
        CLUSTER_SERVICE_VERSION,
        name,
        MTV_NAMESPACE,
        spec={"spec": {"version": "2.9.4"}},
    ):
        result, checks = doctor(cli, target)
    failure = one_failure(result, checks, "versions", "mtv")
    assert failure["saw"].startswith("MTV 2.9.4")


def test_a_missing_feature_gate_is_fixed_by_the_kubevirt_patch_it_prints(
    cli: CliRun, target: Target
) -> None:
    """Without HyperConverged (plain KubeVirt) the fix patches KubeVirt itself."""
    with (
        changed(target, "destination", HYPERCONVERGED, HCO_NAME, CNV, delete=True),
        changed(
            target,
            "destination",
            KUBEVIRT,
            KUBEVIRT_NAME,
            CNV,
            spec={
                "spec": {
                    "configuration": {"developerConfiguration": {"featureGates": ["Snapshot"]}}
                }
            },
        ),  # fmt: skip
    ):
        result, checks = doctor(cli, target)
        assert result.exit_code == NOT_READY
        failure = found(checks, "feature-gates", "destination", "fail")
        assert len(failure) == 1
        assert "does not have the DecentralizedLiveMigration feature gate" in failure[0]["saw"]
        assert failure[0]["fix"].startswith("kubectl --context destination patch kubevirt ")
        run_fix(failure[0]["fix"], cli, target)
        _, checks = doctor(cli, target)
        assert found(checks, "feature-gates", "destination", "ok")
        with admin(target, "destination") as kube:
            kubevirt = kube.get(KUBEVIRT, KUBEVIRT_NAME, CNV)
        assert kubevirt is not None
        gates = kubevirt["spec"]["configuration"]["developerConfiguration"]["featureGates"]
        assert gates == ["Snapshot", "DecentralizedLiveMigration"]  # the others kept


def _gate_off(target: Target, context: str) -> contextlib.ExitStack:
    return changes(
        target,
        context,
        (
            HYPERCONVERGED,
            HCO_NAME,
            CNV,
            {"spec": {"featureGates": {"decentralizedLiveMigration": False}}},
        ),
        (
            KUBEVIRT,
            KUBEVIRT_NAME,
            CNV,
            {"spec": {"configuration": {"developerConfiguration": {"featureGates": []}}}},
        ),
    )


def test_a_feature_gate_turned_off_in_hyperconverged_names_the_hyperconverged_patch(
    cli: CliRun, target: Target
) -> None:
    with _gate_off(target, "source"):
        result, checks = doctor(cli, target)
    failure = one_failure(result, checks, "feature-gates", "source")
    assert "HyperConverged" in failure["saw"]
    assert failure["fix"] == (
        "kubectl --context source patch hyperconverged kubevirt-hyperconverged -n openshift-cnv "
        """--type merge -p '{"spec":{"featureGates":{"decentralizedLiveMigration":true}}}'"""
    )


@pytest.mark.sandbox_only(OPERATORS)
def test_the_hyperconverged_patch_it_prints_clears_the_gate(cli: CliRun, target: Target) -> None:
    with _gate_off(target, "source"):
        _, checks = doctor(cli, target)
        run_fix(found(checks, "feature-gates", "source", "fail")[0]["fix"], cli, target)
        _, checks = doctor(cli, target)
        assert found(checks, "feature-gates", "source", "ok")


def _flag_off(target: Target) -> contextlib.ExitStack:
    with admin(target, "mtv") as kube:
        controller = first(kube, FORKLIFT_CONTROLLER, MTV_NAMESPACE)["metadata"]["name"]
        deployment = kube.get(DEPLOYMENT, "forklift-controller", MTV_NAMESPACE)
    assert deployment is not None
    containers = deployment["spec"]["template"]["spec"]["containers"]
    for container in containers:
        for variable in container.get("env") or []:
            if variable["name"] == "FEATURE_OCP_LIVE_MIGRATION":
                variable["value"] = "false"
    return changes(
        target,
        "mtv",
        (
            FORKLIFT_CONTROLLER,
            controller,
            MTV_NAMESPACE,
            {"spec": {"feature_ocp_live_migration": "false"}},
        ),
        (
            DEPLOYMENT,
            "forklift-controller",
            MTV_NAMESPACE,
            {"spec": {"template": {"spec": {"containers": containers}}}},
        ),
    )


def test_forklift_without_its_live_migration_flag_names_the_forkliftcontroller_patch(
    cli: CliRun, target: Target
) -> None:
    with _flag_off(target):
        result, checks = doctor(cli, target)
    failure = one_failure(result, checks, "feature-gates", "mtv")
    assert failure["saw"] == "forklift-controller runs with FEATURE_OCP_LIVE_MIGRATION=false"
    assert " patch forkliftcontroller " in failure["fix"]
    assert '"feature_ocp_live_migration":"true"' in failure["fix"]


@pytest.mark.sandbox_only(OPERATORS)
def test_the_forkliftcontroller_patch_it_prints_clears_the_flag(
    cli: CliRun, target: Target
) -> None:
    with _flag_off(target):
        _, checks = doctor(cli, target)
        run_fix(found(checks, "feature-gates", "mtv", "fail")[0]["fix"], cli, target)
        _, checks = doctor(cli, target)
        assert found(checks, "feature-gates", "mtv", "ok")


def test_kubevirt_without_synchronization_addresses_fails(cli: CliRun, target: Target) -> None:
    with changed(
        target, "destination", KUBEVIRT, KUBEVIRT_NAME, CNV,
        status={"synchronizationAddresses": None},
    ):  # fmt: skip
        result, checks = doctor(cli, target)
    failure = one_failure(result, checks, "kubevirt", "destination")
    assert "synchronizationAddresses" in failure["saw"]


def test_a_missing_kubevirt_ca_config_map_fails(cli: CliRun, target: Target) -> None:
    with changed(target, "source", CONFIG_MAP, "kubevirt-ca", CNV, delete=True):
        result, checks = doctor(cli, target)
    assert result.exit_code == NOT_READY
    failure = found(checks, "kubevirt", "source", "fail")
    assert [f["saw"] for f in failure] == ["ConfigMap openshift-cnv/kubevirt-ca is missing"]


def _network_off(target: Target, context: str) -> contextlib.ExitStack:
    """No migration network in HyperConverged, nor in KubeVirt."""
    return changes(
        target,
        context,
        (HYPERCONVERGED, HCO_NAME, CNV, {"spec": {"liveMigrationConfig": {"network": None}}}),
        (
            KUBEVIRT,
            KUBEVIRT_NAME,
            CNV,
            {"spec": {"configuration": {"migrations": {"network": None}}}},
        ),
    )


def test_no_migration_network_fails_and_names_a_network_that_exists(
    cli: CliRun, target: Target
) -> None:
    with _network_off(target, "source"):
        result, checks = doctor(cli, target)
    assert result.exit_code == NOT_READY
    failure = found(checks, "network", "source", "fail")
    assert (
        len(failure) == 1
        and failure[0]["saw"] == "no migration network and no Submariner for this pair"
    )
    assert failure[0]["fix"].endswith(
        """--type merge -p '{"spec":{"liveMigrationConfig":{"network":"migration-network"}}}'"""
    )


def test_a_migration_network_without_its_definition_fails(cli: CliRun, target: Target) -> None:
    with changed(
        target, "destination", KUBEVIRT, KUBEVIRT_NAME, CNV,
        spec={"spec": {"configuration": {"migrations": {"network": "gone"}}}},
    ):  # fmt: skip
        _, checks = doctor(cli, target)
    failure = found(checks, "network", "destination", "fail")
    assert len(failure) == 1
    assert failure[0]["saw"] == (
        "the migration network openshift-cnv/gone has no NetworkAttachmentDefinition"
    )


# -- the Providers and their credentials ---------------------------------------------------------


@pytest.mark.needs_forklift
def test_a_role_edited_by_hand_names_the_rule_and_register_restores_it(
    cli: CliRun, target: Target
) -> None:
    assert cli(*register_args(target.kubeconfig, "--yes")).exit_code == 0
    with admin(target, "source") as kube:
        role = kube.get(CLUSTER_ROLE, "live-migration-role")
        assert role is not None
        role["rules"] = [r for r in role["rules"] if "datavolumes" not in r["resources"]]
        kube.replace(CLUSTER_ROLE, role)
    result, checks = doctor(cli, target)
    assert result.exit_code == NOT_READY
    failure = only_failure(checks, "permissions", "source")
    assert failure["saw"].startswith(
        "the token of mtv-register/mtv-provider lacks rule 7 of ClusterRole live-migration-role: "
        "get datavolumes.cdi.kubevirt.io, list datavolumes.cdi.kubevirt.io"
    )
    assert failure["fix"] == (
        "mtv-register register --source source --destination destination --host mtv"
    )
    run_fix(failure["fix"], cli, target)
    result, checks = doctor(cli, target)
    assert found(checks, "permissions", "source", "ok") and result.exit_code == 0


@pytest.mark.needs_forklift
def test_a_revoked_token_fails_and_the_rotation_it_prints_recovers_it(
    cli: CliRun, target: Target
) -> None:
    assert cli(*register_args(target.kubeconfig, "--yes")).exit_code == 0
    with admin(target, "destination") as kube:
        assert kube.delete(SECRET, "mtv-provider-token", "mtv-register")
    assert target.refuses("destination", _provider_token(target, "destination"))
    result, checks = doctor(cli, target)
    failure = one_failure(result, checks, "permissions", "destination")
    assert "(401)" in failure["saw"]
    assert failure["fix"] == (
        "mtv-register rotate --host mtv --provider destination --destination-context destination"
    )
    run_fix(failure["fix"], cli, target)
    _, checks = doctor(cli, target)
    assert found(checks, "permissions", "destination", "ok")


def _provider_token(target: Target, name: str) -> str:
    secret = target.find("mtv", "secrets", f"{name}-credentials", MTV_NAMESPACE)
    assert secret is not None
    return base64.b64decode(secret["data"]["token"]).decode()


@pytest.mark.needs_forklift
def test_a_ca_that_no_longer_verifies_the_server_fails(cli: CliRun, target: Target) -> None:
    assert cli(*register_args(target.kubeconfig, "--yes")).exit_code == 0
    other = base64.b64encode(target.root_ca_pem("destination").encode()).decode()
    with changed(
        target, "mtv", SECRET, "source-credentials", MTV_NAMESPACE,
        spec={"data": {"ca.crt": other, "cacert": other}},
    ):  # fmt: skip
        _, checks = doctor(cli, target)
    failure = found(checks, "expiry", "source", "fail")
    assert len(failure) == 1 and "does not verify" in failure[0]["saw"], checks


@pytest.mark.needs_forklift
def test_expiry_within_the_horizon_warns_and_strict_fails_on_it(
    cli: CliRun, target: Target
) -> None:
    assert (
        cli(
            *register_args(target.kubeconfig, "--yes", "--token-type", "bound", "--token-ttl", "2h")
        ).exit_code
        == 0
    )
    result, checks = doctor(cli, target)
    warned = found(checks, "expiry", "source", "warn")
    assert result.exit_code == 0  # warnings alone
    assert len(warned) == 1 and warned[0]["saw"].startswith("the token expires in 2 hours")
    assert warned[0]["fix"] == "mtv-register rotate --host mtv --provider source"
    strict, _ = doctor(cli, target, "--strict")
    assert strict.exit_code == NOT_READY
    _, checks = doctor(cli, target, "--warn-within", "1h")
    assert not found(checks, "expiry", "source", "warn")


@pytest.mark.needs_forklift
def test_a_ca_only_under_cacert_warns_and_fix_copies_it(cli: CliRun, target: Target) -> None:
    assert cli(*register_args(target.kubeconfig, "--yes")).exit_code == 0
    with admin(target, "mtv") as kube:
        kube.patch(SECRET, "source-credentials", {"data": {"ca.crt": None}}, MTV_NAMESPACE)
    result, checks = doctor(cli, target)
    assert result.exit_code == 0
    warned = found(checks, "hygiene", "source", "warn")
    assert len(warned) == 1 and warned[0]["fixable"] and "only under `cacert`" in warned[0]["saw"]
    fixed, after = doctor(cli, target, "--fix", "--yes")
    assert fixed.exit_code == 0
    assert not found(after, "hygiene", "source", "warn")
    secret = target.find("mtv", "secrets", "source-credentials", MTV_NAMESPACE)
    assert secret is not None and secret["data"]["ca.crt"] == secret["data"]["cacert"]


@pytest.mark.needs_forklift
def test_orphaned_credentials_warn_and_fix_removes_only_them(cli: CliRun, target: Target) -> None:
    """The source's Provider deleted by hand on the host: its account, token Secret and binding
    on the source are left, and nothing on the destination (still registered) is touched."""
    assert cli(*register_args(target.kubeconfig, "--yes")).exit_code == 0
    with admin(target, "mtv") as kube:
        assert kube.delete(PROVIDER, "source", MTV_NAMESPACE)
    checks = _doctor_on_a_token_last_used(cli, target, "2026-01-01")
    warned = found(checks, "hygiene", "source", "warn")
    assert len(warned) == 1 and warned[0]["fixable"], checks
    assert "ServiceAccount mtv-register/mtv-provider" in warned[0]["saw"]
    assert "Secret mtv-register/mtv-provider-token" in warned[0]["saw"]
    assert "ClusterRoleBinding mtv-provider" in warned[0]["saw"]
    assert found(checks, "hygiene", "destination", "ok")
    refused = cli(
        "doctor", "--source", "source", "--destination", "destination", "--host", "mtv",
        "--kubeconfig", str(target.kubeconfig), "--fix",
    )  # fmt: skip
    assert refused.exit_code == 2 and "--fix off a terminal needs --yes" in refused.stderr
    assert target.find("source", "serviceaccounts", "mtv-provider", "mtv-register") is not None
    doctor(cli, target, "--fix", "--yes")
    assert target.find("source", "serviceaccounts", "mtv-provider", "mtv-register") is None
    assert target.find("source", "secrets", "mtv-provider-token", "mtv-register") is None
    assert target.find("source", "clusterrolebindings", "mtv-provider") is None
    assert target.find("destination", "serviceaccounts", "mtv-provider", "mtv-register") is not None
    assert target.find("destination", "secrets", "mtv-provider-token", "mtv-register") is not None


def _doctor_on_a_token_last_used(
    cli: CliRun, target: Target, day: str, tries: int = 5
) -> list[dict[str, Any]]:
    """doctor's checks while the source's token Secret says its token was last used on `day`.
    Forklift may still be using the token of the Provider just deleted, and the API server then
    labels it with today again: run doctor until the label held for all of its run."""
    for _ in range(tries):
        _last_used(target, day)
        _, checks = doctor(cli, target)
        secret = target.find("source", "secrets", "mtv-provider-token", "mtv-register")
        assert secret is not None
        if secret["metadata"]["labels"].get("kubernetes.io/legacy-token-last-used") == day:
            return checks
        time.sleep(1)
    raise AssertionError(f"the token Secret's last-used label did not stay {day} for {tries} runs")


def _last_used(target: Target, day: str) -> None:
    """The source's token Secret as kube-apiserver labels it after its token was used on `day`."""
    with admin(target, "source") as kube:
        kube.patch(
            SECRET,
            "mtv-provider-token",
            {"metadata": {"labels": {"kubernetes.io/legacy-token-last-used": day}}},
            "mtv-register",
        )


@pytest.mark.needs_forklift
def test_a_token_secret_used_lately_is_never_an_orphan_to_remove(
    cli: CliRun, target: Target
) -> None:
    """Another MTV host may hold it: the API server's last-used label keeps it."""
    assert cli(*register_args(target.kubeconfig, "--yes")).exit_code == 0
    today = dt.date.today().isoformat()
    _last_used(target, today)
    with admin(target, "mtv") as kube:
        assert kube.delete(PROVIDER, "source", MTV_NAMESPACE)
    _, checks = doctor(cli, target, "--fix", "--yes")
    assert target.find("source", "secrets", "mtv-provider-token", "mtv-register") is not None
    kept = [c for c in found(checks, "hygiene", "source", "warn") if "another MTV host" in c["saw"]]
    assert len(kept) == 1 and f"used on {today}" in kept[0]["saw"]
    assert target.find("source", "serviceaccounts", "mtv-provider", "mtv-register") is not None


@pytest.mark.needs_forklift
def test_a_provider_url_other_than_the_infrastructure_url_warns(
    cli: CliRun, target: Target
) -> None:
    assert cli(*register_args(target.kubeconfig, "--yes")).exit_code == 0
    elsewhere = {"apiServerURL": "https://api.elsewhere.example:6443"}
    with changed(target, "source", INFRASTRUCTURE, "cluster", None, status=elsewhere):
        result, checks = doctor(cli, target)
    warned = found(checks, "providers", "source", "warn")
    assert result.exit_code == 0
    assert len(warned) == 1 and "https://api.elsewhere.example:6443" in warned[0]["saw"]
    assert warned[0]["fix"] == (
        "mtv-register register --source source --destination destination --host mtv "
        "--url-source infrastructure"
    )


@pytest.mark.needs_forklift
def test_submariner_asked_for_without_serviceexports_on_the_destination_fails(
    cli: CliRun, target: Target
) -> None:
    assert cli(*register_args(target.kubeconfig, "--yes")).exit_code == 0
    with admin(target, "mtv") as kube:
        kube.patch(
            PROVIDER, "source", {"spec": {"settings": {"submariner": "true"}}}, MTV_NAMESPACE
        )
    result, checks = doctor(cli, target)
    assert result.exit_code == NOT_READY
    failure = found(checks, "network", "destination", "fail")  # (Forklift re-tests the source)
    assert len(failure) == 1
    assert "does not serve serviceexports.multicluster.x-k8s.io" in failure[0]["saw"]


@pytest.mark.sandbox_only("a fault makes the source refuse (403) the read of KubeVirt")
def test_a_check_it_may_not_run_is_a_warning_that_says_so(cli: CliRun, target: Target) -> None:
    assert target.sandbox is not None
    target.sandbox["source"].cluster.faults.inject(
        "list", "^/apis/kubevirt.io/v1/kubevirts$", status=403, count=1000
    )
    result, checks = doctor(cli, target)
    skipped = [c for c in checks if not c["ran"]]
    assert {(c["check"], c["cluster"]) for c in skipped} == {
        ("feature-gates", "source"), ("kubevirt", "source"), ("network", "source"),
    }  # fmt: skip
    assert all(c["result"] == "warn" and c["saw"].startswith("not checked: ") for c in skipped)
    assert all("docs/security.md" in c["fix"] for c in skipped)
    report = json.loads(result.stdout)
    assert "feature-gates on source" in report["notChecked"]


BROKEN = {  # `sandbox up --break NAME`: the checks it fails, on which cluster
    "feature-gate": {("feature-gates", "source")},
    "mtv-flag": {("feature-gates", "mtv")},
    "sync-addresses": {("kubevirt", "destination")},
    "kubevirt-ca": {("kubevirt", "source")},
    "migration-network": {("network", "source")},
    "old-virtualization": {("versions", "source")},
    "old-mtv": {("versions", "mtv")},
}


@pytest.mark.sandbox_only("the sandbox's --break flags")
@pytest.mark.parametrize("name", list(BROKEN))
def test_each_break_of_the_sandbox_fails_its_check(
    make_sandbox: SandboxFactory, tmp_path: Path, cli: CliRun, name: str
) -> None:
    broken = shaped_target(make_sandbox, tmp_path, mtv_on="separate", breaks=[name])
    result, checks = doctor(cli, broken)
    assert result.exit_code == NOT_READY
    failed = {(c["check"], c["cluster"]) for c in checks if c["result"] == "fail"}
    assert failed - {("providers", "source"), ("providers", "destination")} == BROKEN[name]


@pytest.mark.needs_forklift
def test_skipping_tls_verification_warns_and_the_register_it_prints_verifies_again(
    cli: CliRun, target: Target
) -> None:
    insecure = register_args(target.kubeconfig, "--yes", "--insecure-skip-tls-verify")
    assert cli(*insecure).exit_code == 0
    result, checks = doctor(cli, target)
    assert result.exit_code == 0  # a warning
    warned = found(checks, "hygiene", "source", "warn")
    assert len(warned) == 1 and "skips TLS verification" in warned[0]["saw"]
    assert warned[0]["fix"].endswith("--host mtv --ca-source root")
    run_fix(warned[0]["fix"], cli, target)
    _, checks = doctor(cli, target)
    assert not found(checks, "hygiene", "source", "warn")
    assert found(checks, "expiry", "source", "ok")  # its CA verifies the server again


@pytest.mark.needs_forklift
def test_a_ca_expiring_within_the_horizon_warns(cli: CliRun, target: Target) -> None:
    assert cli(*register_args(target.kubeconfig, "--yes")).exit_code == 0
    _, checks = doctor(cli, target, "--warn-within", "36500d")
    warned = [c for c in found(checks, "expiry", "source", "warn") if "the CA" in c["saw"]]
    assert len(warned) == 1 and warned[0]["saw"].startswith("the CA expires in ")
    assert "copies the new one" in warned[0]["fix"]


@pytest.mark.sandbox_only(OPERATORS)
def test_the_migration_network_patch_it_prints_clears_the_network(
    cli: CliRun, target: Target
) -> None:
    with _network_off(target, "source"):
        _, checks = doctor(cli, target)
        run_fix(found(checks, "network", "source", "fail")[0]["fix"], cli, target)
        _, checks = doctor(cli, target)
        assert found(checks, "network", "source", "ok")


def _documented_roles() -> dict[str, Obj]:
    """The ClusterRoles of docs/security.md, by name."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    blocks = text.split("```yaml\n")[1:]
    roles = [doc for block in blocks for doc in yaml.safe_load_all(block.split("```")[0]) if doc]
    return {role["metadata"]["name"]: role for role in roles if role.get("kind") == "ClusterRole"}


def _reader(kube: Kube, roles: list[Obj], namespace: str | None = None) -> str:
    """An account holding `roles` (cluster-wide, or in `namespace`), and a token of it."""
    from mtv_register.kube import CLUSTER_ROLE_BINDING, ROLE_BINDING, SERVICE_ACCOUNT

    account = {"metadata": {"name": "doctor-reader", "namespace": "default"}}
    kube.create(SERVICE_ACCOUNT, {"apiVersion": "v1", "kind": "ServiceAccount", **account})
    subject = [{"kind": "ServiceAccount", "name": "doctor-reader", "namespace": "default"}]
    for role in roles:
        name = role["metadata"]["name"]
        kube.create(CLUSTER_ROLE, {**role, "metadata": {"name": name}})
        scoped = namespace is not None and name != "mtv-register-host-namespaces"
        kind = ROLE_BINDING if scoped else CLUSTER_ROLE_BINDING
        meta: Obj = {"name": name, **({"namespace": namespace} if scoped else {})}
        kube.create(
            kind,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": kind.kind,
                "metadata": meta,
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": name,
                },
                "subjects": subject,
            },
        )
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
    answer = kube.post(SERVICE_ACCOUNT.path("default", "doctor-reader", "token"), request)
    return str(answer["status"]["token"])


@pytest.mark.needs_forklift
def test_the_reads_security_md_lists_are_enough_for_every_check(
    cli: CliRun, target: Target, tmp_path: Path
) -> None:
    assert cli(*register_args(target.kubeconfig, "--yes")).exit_code == 0
    roles = _documented_roles()
    tokens = {}
    for context in ("source", "destination"):
        with admin(target, context) as kube:
            tokens[context] = _reader(kube, [roles["mtv-register-doctor"]])
    with admin(target, "mtv") as kube:
        host_roles = [roles["mtv-register-doctor-host"], roles["mtv-register-host-namespaces"]]
        tokens["mtv"] = _reader(kube, host_roles, MTV_NAMESPACE)
    config = yaml.safe_load(target.kubeconfig.read_text())
    users = {c["name"]: c["context"]["user"] for c in config["contexts"]}
    for user in config["users"]:
        context = next(c for c, u in users.items() if u == user["name"])
        user["user"] = {"token": tokens[context]}
    reader = tmp_path / "reader-kubeconfig"
    reader.write_text(yaml.safe_dump(config))
    result = cli(
        "doctor", "--source", "source", "--destination", "destination", "--host", "mtv",
        "--kubeconfig", str(reader), "-o", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stdout
    report = json.loads(result.stdout)
    assert report["notChecked"] == [] and report["summary"]["failed"] == 0
    assert {c["result"] for c in report["checks"]} == {"ok"}
