"""`status` and `unregister` against the sandbox: every Provider with its readiness, failing
condition, URL, token age and CA expiry; unregister leaving each cluster exactly as it was
before `register`, touching nothing the tool did not create."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from mtv_register import manifests
from mtv_register.orchestrator import register_pair, unregister_pair
from mtv_register.sandbox import Sandbox
from tests.conftest import SandboxFactory
from tests.integration.conftest import (
    CliRun,
    Snapshot,
    assert_no_mutation,
    marks,
    mutating_since,
    one_error_line,
    pair_options,
    provider_phase,
    register_args,
    settle_forklift,
    snapshot,
    snapshot_difference,
    wait_for,
)

MTV_NS = "openshift-mtv"
Obj = dict[str, Any]


def ca_not_after(pem: str) -> str:
    expiry = x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc
    return expiry.strftime("%Y-%m-%dT%H:%M:%SZ")


def unregister_args(kubeconfig: Path, *extra: str, host: str | None = "mtv") -> list[str]:
    args = ["unregister", "--source", "source", "--destination", "destination"]
    if host:
        args += ["--host", host]
    return [*args, "--kubeconfig", str(kubeconfig), *extra]


def break_provider_url(sandbox: Sandbox, name: str) -> None:
    """Point a Provider at a closed port: Forklift's connection test fails."""
    host = sandbox[sandbox.mtv_context].cluster
    providers = host.rtype("forklift.konveyor.io", "v1beta1", "providers")
    provider = host.store.get(providers, MTV_NS, name)
    provider["spec"]["url"] = "https://127.0.0.1:1"
    host.store.update(providers, provider)
    wait_for(lambda: provider_phase(sandbox, name) == "ConnectionFailed", what="Forklift's verdict")


# -- status --------------------------------------------------------------------------------------


def test_status_shows_every_provider_with_its_readiness_url_token_age_and_ca_expiry(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun
) -> None:
    assert cli(*register_args(kubeconfig, "--yes")).exit_code == 0
    settle_forklift(sandbox)
    break_provider_url(sandbox, "destination")

    result = cli("status", "--host", "mtv", "--kubeconfig", str(kubeconfig), "-o", "json")

    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["host"], report["namespace"]) == ("mtv", MTV_NS)
    rows = {row["name"]: row for row in report["providers"]}
    assert sorted(rows) == ["destination", "host", "source"]
    host, source, broken = rows["host"], rows["source"], rows["destination"]
    assert (host["ready"], host["managed"], host["url"]) == (True, False, "(local host)")
    assert (source["ready"], source["managed"], source["phase"]) == (True, True, "Ready")
    assert source["url"] == sandbox["source"].url
    assert source["message"] == ""
    assert source["tokenSecret"] == "mtv-register/mtv-provider-token"
    created = dt.datetime.strptime(source["tokenCreated"], "%Y-%m-%dT%H:%M:%SZ")
    age = dt.datetime.now(dt.UTC).replace(tzinfo=None) - created
    assert dt.timedelta(0) <= age < dt.timedelta(minutes=1)
    assert source["caExpires"] == ca_not_after(sandbox["source"].root_ca_pem)
    assert (broken["ready"], broken["phase"]) == (False, "ConnectionFailed")
    assert broken["url"] == "https://127.0.0.1:1"
    assert broken["message"].startswith("ConnectionTestFailed: ")


def test_status_table_and_remote_objects(sandbox: Sandbox, kubeconfig: Path, cli: CliRun) -> None:
    assert cli(*register_args(kubeconfig, "--yes")).exit_code == 0
    settle_forklift(sandbox)
    break_provider_url(sandbox, "destination")

    result = cli(
        "status",
        "--kubeconfig",
        str(kubeconfig),  # no --host: the current context, mtv
        "--remote",
        "source=source",
        "--remote",
        "destination=destination",
    )

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Providers on mtv (openshift-mtv)" in lines[0]
    row = {line.split()[1]: line for line in lines if line.startswith("│")}
    assert row["host"].split("│")[2].strip() == "yes"
    assert sandbox["source"].url in row["source"]
    assert "yes" in row["source"] and "ConnectionTestFailed" not in row["source"]
    assert ca_not_after(sandbox["source"].root_ca_pem)[:10] in row["source"]
    assert "ConnectionTestFailed" in row["destination"]
    assert row["destination"].split("│")[2].strip() == "no"
    assert (
        "source on source: clusterRole, serviceAccount, clusterRoleBinding; "
        "token Secrets: mtv-provider-token"
    ) in lines
    assert any(line.startswith("destination on destination: clusterRole") for line in lines)


def test_status_of_remote_objects_after_unregister_shows_none(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun
) -> None:
    options = pair_options(kubeconfig)
    register_pair(options)
    unregister_pair(options)

    result = cli(
        "status",
        "--host",
        "mtv",
        "--kubeconfig",
        str(kubeconfig),
        "--remote",
        "source=source",
        "-o",
        "json",
    )

    report = json.loads(result.stdout)
    assert [row["name"] for row in report["providers"]] == ["host"]
    assert report["remotes"] == [
        {
            "context": "source",
            "provider": "source",
            "clusterRole": False,
            "serviceAccount": False,
            "clusterRoleBinding": False,
            "tokenSecrets": [],
            "leftoverTokenSecrets": [],
        }
    ]


def test_status_rejects_a_malformed_remote(kubeconfig: Path, cli: CliRun) -> None:
    result = cli("status", "--kubeconfig", str(kubeconfig), "--remote", "source")

    assert result.exit_code == 2
    assert '--remote "source" is not PROVIDER=CONTEXT' in one_error_line(result)


# -- unregister ----------------------------------------------------------------------------------


def _until_as_before(sandbox: Sandbox, before: Snapshot) -> None:
    """Namespace termination is asynchronous, as on a real cluster: poll until it is done."""
    last: dict[str, Any] = {}

    def same() -> bool:
        last.clear()
        last.update(snapshot_difference(before, snapshot(sandbox)))
        return not last

    try:
        wait_for(same, what="every cluster to be as before")
    except AssertionError:
        raise AssertionError(f"left behind or touched: {last}") from None


def _audit_key(event: Obj) -> tuple[str, str, str]:
    """The snapshot key of an audit event's object (a Namespace's objectRef names itself as its
    namespace, as kube-apiserver's does)."""
    ref = event.get("objectRef") or {}
    resource = ref.get("resource", "")
    return (
        f"{ref.get('apiGroup', '')}/{resource}",
        "" if resource == "namespaces" else ref.get("namespace", ""),
        ref.get("name", ""),
    )


@pytest.mark.parametrize("mtv_on", ["separate", "destination"])
def test_unregister_leaves_every_cluster_as_it_was_and_touches_only_its_own(
    make_sandbox: SandboxFactory, tmp_path: Path, cli: CliRun, mtv_on: str
) -> None:
    sandbox = make_sandbox(mtv_on=mtv_on)
    kubeconfig = sandbox.write_kubeconfig(tmp_path / "kubeconfig")
    host = "mtv" if mtv_on == "separate" else None
    settle_forklift(sandbox)
    before = snapshot(sandbox)
    assert cli(*register_args(kubeconfig, "--yes", host=host)).exit_code == 0
    settle_forklift(sandbox)
    registered = snapshot(sandbox)
    created = {
        context: set(registered[context]) - set(before[context]) for context in sandbox.clusters
    }
    since = marks(sandbox)

    result = cli(*unregister_args(kubeconfig, "--yes", host=host))

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "pair unregistered"
    assert "Provider openshift-mtv/source deleted on" in result.stdout
    _until_as_before(sandbox, before)
    for context, sc in sandbox.clusters.items():
        for event in sc.cluster.audit.mutating(since[context]):
            assert _audit_key(event) in created[context], (context, event["requestURI"])
    host_provider = before[sandbox.mtv_context][("forklift.konveyor.io/providers", MTV_NS, "host")]
    assert provider_phase(sandbox, "host") == host_provider["status"]["phase"] == "Ready"

    since = marks(sandbox)
    again = cli(*unregister_args(kubeconfig, "--yes", host=host))
    assert again.exit_code == 0, again.stderr
    assert_no_mutation(sandbox, since)


def test_unregister_keeps_what_it_did_not_create(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun
) -> None:
    source, mtv = sandbox["source"].cluster, sandbox["mtv"].cluster
    rbac = ("rbac.authorization.k8s.io", "v1")
    source.store.create(  # made by hand following the seed, before the tool existed
        source.rtype(*rbac, "clusterroles"),
        {
            "metadata": {"name": manifests.DEFAULT_ROLE_NAME},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        },
    )
    source.store.create(
        source.rtype("", "v1", "namespaces"), {"metadata": {"name": "mtv-register"}}
    )
    wait_for(
        lambda: source.store.find(
            source.rtype("", "v1", "serviceaccounts"), "mtv-register", "default"
        ),
        what="the namespace's default ServiceAccount",
    )
    source.store.create(
        source.rtype("", "v1", "secrets"),
        {"metadata": {"name": "keep-me", "namespace": "mtv-register"}, "data": {}},
    )
    mtv.store.create(
        mtv.rtype("", "v1", "secrets"),
        {"metadata": {"name": "other-credentials", "namespace": MTV_NS}, "data": {}},
    )
    settle_forklift(sandbox)
    before = snapshot(sandbox)
    assert cli(*register_args(kubeconfig, "--yes")).exit_code == 0
    settle_forklift(sandbox)

    result = cli(*unregister_args(kubeconfig, "--yes"))

    assert result.exit_code == 0, result.stderr
    assert "ClusterRole live-migration-role kept (not managed by mtv-register) on source" in (
        result.stdout
    )
    assert "Namespace mtv-register deleted on source" not in result.stdout
    role_key = ("rbac.authorization.k8s.io/clusterroles", "", manifests.DEFAULT_ROLE_NAME)
    # All the tool made is gone; what it found stays, only the role keeps the seed's rules.
    only_the_role = {"source": {"added": [], "removed": [], "changed": [str(role_key)]}}
    wait_for(
        lambda: snapshot_difference(before, snapshot(sandbox)) == only_the_role,
        what="every cluster to be as before but the hand-made role's rules",
    )
    role = snapshot(sandbox)["source"][role_key]
    assert role["rules"] == manifests.SEED_CLUSTER_ROLE_RULES
    assert manifests.MANAGED_BY_LABEL not in (role["metadata"].get("labels") or {})


def test_unregister_keep_remote_removes_only_the_providers(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun
) -> None:
    settle_forklift(sandbox)
    before = snapshot(sandbox)
    assert cli(*register_args(kubeconfig, "--yes")).exit_code == 0
    since = marks(sandbox)

    kept = cli(*unregister_args(kubeconfig, "--yes", "--keep-remote", "-o", "json"))

    assert kept.exit_code == 0, kept.stderr
    changes = json.loads(kept.stdout)
    assert {(c["context"], c["kind"], c["action"]) for c in changes} <= {
        ("mtv", "Provider", "deleted"),
        ("mtv", "Secret", "deleted"),
    }
    made = mutating_since(sandbox, since)
    assert made["source"] == made["destination"] == []
    for context in ("source", "destination"):
        remote = cli(
            "status",
            "--host",
            "mtv",
            "--kubeconfig",
            str(kubeconfig),
            "--remote",
            f"{context}={context}",
            "-o",
            "json",
        )
        (objects,) = json.loads(remote.stdout)["remotes"]
        assert objects["clusterRole"] and objects["tokenSecrets"] == ["mtv-provider-token"]

    assert cli(*unregister_args(kubeconfig, "--yes")).exit_code == 0
    _until_as_before(sandbox, before)


def test_declining_unregister_changes_nothing(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun
) -> None:
    register_pair(pair_options(kubeconfig))
    since = marks(sandbox)

    result = cli(*unregister_args(kubeconfig, "--interactive"), input="n\n")

    assert result.exit_code == 1
    assert "aborted: nothing was changed" in result.stderr
    assert_no_mutation(sandbox, since)
