"""`status` and `unregister`: every Provider with its readiness, failing condition, URL, token
age and CA expiry; unregister leaving each cluster exactly as it was before `register`, touching
nothing the tool did not create."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from mtv_register import manifests, naming
from mtv_register.kube import CLUSTER_ROLE, NAMESPACE, PROVIDER, SECRET
from mtv_register.sandbox import MTV_NAMESPACE
from mtv_register.unregister import unregister_pair
from tests.conftest import SandboxFactory
from tests.integration.conftest import (
    CliRun,
    Mark,
    Snapshot,
    admin,
    assert_nothing_written,
    mark,
    one_error_line,
    pair_options,
    register_anywhere,
    snapshot_difference,
    status_args,
    wait_for,
    writes_since,
)
from tests.target import SandboxTarget, Target

# On the default client only: status (with --remote) and unregister through the oc backend are
# test_oc_backend's (test_status_reports_every_provider, test_unregister_leaves_every_cluster_as_
# it_was); what these add is the library's logic, the same on both backends.

Obj = dict[str, Any]
REMOTES = ("source", "destination")  # each Provider named after its context
TOKEN_SECRET = f"{naming.DEFAULT_SERVICE_ACCOUNT_NAMESPACE}/mtv-provider-token"


def ca_not_after(pem: str) -> str:
    expiry = x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc
    return expiry.strftime("%Y-%m-%dT%H:%M:%SZ")


def unregister_args(kubeconfig: Path, *extra: str, host: str | None = "mtv") -> list[str]:
    args = ["unregister", "--source", "source", "--destination", "destination"]
    if host:
        args += ["--host", host]
    return [*args, "--kubeconfig", str(kubeconfig), *extra]


def break_provider_url(target: Target, name: str) -> None:
    """Point a Provider at a closed port: Forklift's connection test fails."""
    with admin(target, target.mtv_context) as kube:
        kube.patch(PROVIDER, name, {"spec": {"url": "https://127.0.0.1:1"}}, MTV_NAMESPACE)
    wait_for(lambda: target.provider_phase(name) == "ConnectionFailed", what="Forklift's verdict")


def provider_names(target: Target) -> list[str]:
    return sorted(p["metadata"]["name"] for p in target.list("mtv", "providers", MTV_NAMESPACE))


def with_current_context(kubeconfig: Path, context: str, folder: Path) -> Path:
    """A copy of the kubeconfig whose current context is `context`."""
    data = yaml.safe_load(kubeconfig.read_text())
    data["current-context"] = context
    copy = folder / "kubeconfig-current"
    copy.touch(mode=0o600)
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy


# -- status --------------------------------------------------------------------------------------


def test_status_shows_every_provider_with_its_url_token_age_and_ca_expiry(
    target: Target, cli: CliRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = provider_names(target)  # Forklift's own `host`, where Forklift runs
    register_anywhere(target, monkeypatch)

    result = cli(*status_args(target, "-o", "json"))

    assert result.exit_code == target.status_exit, result.stderr
    report = json.loads(result.stdout)
    assert (report["host"], report["namespace"]) == ("mtv", MTV_NAMESPACE)
    rows = {row["name"]: row for row in report["providers"]}
    assert sorted(rows) == sorted([*found, *REMOTES])
    for context in REMOTES:
        row = rows[context]
        assert row["managed"] is True
        assert row["url"] == target.url(context)
        assert row["tokenSecret"] == TOKEN_SECRET
        created = dt.datetime.strptime(row["tokenCreated"], "%Y-%m-%dT%H:%M:%SZ")
        age = dt.datetime.now(dt.UTC).replace(tzinfo=None) - created
        assert dt.timedelta(0) <= age < dt.timedelta(minutes=1)
        assert row["caExpires"] == ca_not_after(target.root_ca_pem(context))


@pytest.mark.needs_forklift
def test_status_shows_every_provider_with_its_readiness_and_failing_condition(
    target: Target, cli: CliRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_anywhere(target, monkeypatch)
    break_provider_url(target, "destination")

    result = cli(*status_args(target, "-o", "json"))

    assert result.exit_code == 10, result.stderr  # a Provider is not Ready
    rows = {row["name"]: row for row in json.loads(result.stdout)["providers"]}
    assert sorted(rows) == ["destination", "host", "source"]
    host, source, broken = rows["host"], rows["source"], rows["destination"]
    assert (host["ready"], host["managed"], host["url"]) == (True, False, "(local host)")
    assert (source["ready"], source["managed"], source["phase"]) == (True, True, "Ready")
    assert source["message"] == ""
    assert (broken["ready"], broken["phase"]) == (False, "ConnectionFailed")
    assert broken["url"] == "https://127.0.0.1:1"
    assert broken["message"].startswith("ConnectionTestFailed: ")


def _table(result: Any) -> tuple[list[str], dict[str, str]]:
    """The table's lines, and its rows by Provider name."""
    lines = result.stdout.splitlines()
    return lines, {line.split()[1]: line for line in lines if line.startswith("│")}


def test_status_table_and_remote_objects(
    target: Target, cli: CliRun, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    register_anywhere(target, monkeypatch)
    kubeconfig = with_current_context(target.kubeconfig, "mtv", tmp_path)

    result = cli(
        "status",
        "--kubeconfig",
        str(kubeconfig),  # no --host: the current context, mtv
        "--remote",
        "source=source",
        "--remote",
        "destination=destination",
    )

    assert result.exit_code == target.status_exit, result.stderr
    lines, row = _table(result)
    assert "Providers on mtv (openshift-mtv)" in lines[0]
    assert target.url("source") in row["source"]
    assert ca_not_after(target.root_ca_pem("source"))[:10] in row["source"]
    assert target.url("destination") in row["destination"]
    assert (
        "source on source: clusterRole, serviceAccount, clusterRoleBinding; "
        "token Secrets: mtv-provider-token"
    ) in lines
    assert any(line.startswith("destination on destination: clusterRole") for line in lines)


@pytest.mark.needs_forklift
def test_status_table_shows_readiness_and_the_failing_condition(
    target: Target, cli: CliRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_anywhere(target, monkeypatch)
    break_provider_url(target, "destination")

    result = cli(*status_args(target))

    assert result.exit_code == 10, result.stderr
    assert result.stderr.splitlines()[-1] == "error: 1 Provider(s) not Ready: destination"
    _, row = _table(result)
    assert row["host"].split("│")[2].strip() == "yes"
    assert row["source"].split("│")[2].strip() == "yes"
    assert "ConnectionTestFailed" not in row["source"]
    assert "ConnectionTestFailed" in row["destination"]
    assert row["destination"].split("│")[2].strip() == "no"


def test_status_of_remote_objects_after_unregister_shows_none(
    target: Target, cli: CliRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = provider_names(target)
    register_anywhere(target, monkeypatch)
    unregister_pair(pair_options(target.kubeconfig))

    result = cli(*status_args(target, "--remote", "source=source", "-o", "json"))

    assert result.exit_code == target.status_exit, result.stderr
    report = json.loads(result.stdout)
    assert [row["name"] for row in report["providers"]] == found
    assert not set(REMOTES) & set(found)
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


def test_status_rejects_a_malformed_remote(target: Target, cli: CliRun) -> None:
    since = mark(target)

    result = cli("status", "--kubeconfig", str(target.kubeconfig), "--remote", "source")

    assert result.exit_code == 2
    assert '--remote "source" is not PROVIDER=CONTEXT' in one_error_line(result)
    assert_nothing_written(target, since)


# -- unregister ----------------------------------------------------------------------------------


def _until_as_before(target: Target, before: Snapshot) -> None:
    """Namespace termination is asynchronous, as on a real cluster: poll until it is done."""
    last: dict[str, Any] = {}

    def same() -> bool:
        last.clear()
        last.update(snapshot_difference(before, target.snapshot()))
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


def _touched_since(target: Target, since: Mark) -> dict[str, set[str]]:
    """Per cluster, the objects written since `since`: every object a mutating request named, in
    the sandbox's audit log; elsewhere, the objects added, removed or changed."""
    if target.sandbox is not None:
        return {
            context: {str(_audit_key(event)) for event in sc.cluster.audit.mutating(since[context])}
            for context, sc in target.sandbox.clusters.items()
        }
    return {
        context: {*found["added"], *found["removed"], *found["changed"]}
        for context, found in writes_since(target, since).items()
    }


def _unregister_leaves_every_cluster_as_it_was(
    target: Target, cli: CliRun, monkeypatch: pytest.MonkeyPatch, host: str | None
) -> None:
    target.settle()
    before = target.snapshot()
    register_anywhere(target, monkeypatch, host=host)
    registered = target.snapshot()
    created = {
        context: {str(key) for key in set(registered[context]) - set(before[context])}
        for context in target.contexts
    }
    since = mark(target)

    result = cli(*unregister_args(target.kubeconfig, "--yes", host=host))

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "pair unregistered"
    assert "Provider openshift-mtv/source deleted on" in result.stdout
    _until_as_before(target, before)
    for context, touched in _touched_since(target, since).items():
        assert touched <= created[context], (context, sorted(touched - created[context]))
    if target.forklift:  # Forklift's own Provider of the host, untouched
        key = ("forklift.konveyor.io/providers", MTV_NAMESPACE, "host")
        assert target.provider_phase("host") == before[target.mtv_context][key]["status"]["phase"]
        assert target.provider_phase("host") == "Ready"

    since = mark(target)
    again = cli(*unregister_args(target.kubeconfig, "--yes", host=host))
    assert again.exit_code == 0, again.stderr
    assert_nothing_written(target, since)


def test_unregister_leaves_every_cluster_as_it_was_and_touches_only_its_own(
    target: Target, cli: CliRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unregister_leaves_every_cluster_as_it_was(target, cli, monkeypatch, "mtv")


@pytest.mark.sandbox_only("MTV on the destination cluster: a sandbox shape (mtv_on=destination)")
def test_unregister_with_mtv_on_the_destination_leaves_every_cluster_as_it_was(
    make_sandbox: SandboxFactory, tmp_path: Path, cli: CliRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = make_sandbox(mtv_on="destination")
    kubeconfig = sandbox.write_kubeconfig(tmp_path / "kubeconfig")
    target = SandboxTarget(
        kubeconfig=kubeconfig,
        forklift=True,
        mtv_context="destination",
        contexts=("source", "destination"),
        embedded=sandbox,
    )
    _unregister_leaves_every_cluster_as_it_was(target, cli, monkeypatch, None)


def test_unregister_keeps_what_it_did_not_create(
    target: Target, cli: CliRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = naming.DEFAULT_SERVICE_ACCOUNT_NAMESPACE
    with admin(target, "source") as source:  # made by hand following the seed, before the tool
        source.create(
            CLUSTER_ROLE,
            {
                "apiVersion": CLUSTER_ROLE.api_version,
                "kind": CLUSTER_ROLE.kind,
                "metadata": {"name": naming.DEFAULT_ROLE_NAME},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
            },
        )
        source.create(
            NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        )
        wait_for(
            lambda: target.find("source", "serviceaccounts", "default", namespace),
            what="the namespace's default ServiceAccount",
        )
        source.create(
            SECRET,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "keep-me", "namespace": namespace},
                "data": {},
            },
        )
    with admin(target, "mtv") as mtv:
        mtv.create(
            SECRET,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "other-credentials", "namespace": MTV_NAMESPACE},
                "data": {},
            },
        )
    target.settle()
    before = target.snapshot()
    register_anywhere(target, monkeypatch)

    result = cli(*unregister_args(target.kubeconfig, "--yes"))

    assert result.exit_code == 0, result.stderr
    assert "ClusterRole live-migration-role kept (not managed by mtv-register) on source" in (
        result.stdout
    )
    assert "Namespace mtv-register deleted on source" not in result.stdout
    role_key = ("rbac.authorization.k8s.io/clusterroles", "", naming.DEFAULT_ROLE_NAME)
    # All the tool made is gone; what it found stays, only the role keeps the seed's rules.
    only_the_role = {"source": {"added": [], "removed": [], "changed": [str(role_key)]}}
    wait_for(
        lambda: snapshot_difference(before, target.snapshot()) == only_the_role,
        what="every cluster to be as before but the hand-made role's rules",
    )
    role = target.find("source", "clusterroles", naming.DEFAULT_ROLE_NAME)
    assert role is not None
    assert role["rules"] == manifests.SEED_CLUSTER_ROLE_RULES
    assert naming.MANAGED_BY_LABEL not in (role["metadata"].get("labels") or {})


def test_unregister_keep_remote_removes_only_the_providers(
    target: Target, cli: CliRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    target.settle()
    before = target.snapshot()
    register_anywhere(target, monkeypatch)
    since = mark(target)

    kept = cli(*unregister_args(target.kubeconfig, "--yes", "--keep-remote", "-o", "json"))

    assert kept.exit_code == 0, kept.stderr
    changes = json.loads(kept.stdout)
    assert {(c["context"], c["kind"], c["action"]) for c in changes} <= {
        ("mtv", "Provider", "deleted"),
        ("mtv", "Secret", "deleted"),
    }
    assert ("mtv", "Provider", "deleted") in {
        (c["context"], c["kind"], c["action"]) for c in changes
    }
    assert set(writes_since(target, since)) <= {"mtv"}
    for context in REMOTES:
        remote = cli(*status_args(target, "--remote", f"{context}={context}", "-o", "json"))
        (objects,) = json.loads(remote.stdout)["remotes"]
        assert objects["clusterRole"] and objects["tokenSecrets"] == ["mtv-provider-token"]

    assert cli(*unregister_args(target.kubeconfig, "--yes")).exit_code == 0
    _until_as_before(target, before)


def test_declining_unregister_changes_nothing(
    target: Target, cli: CliRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_anywhere(target, monkeypatch)
    since = mark(target)

    result = cli(*unregister_args(target.kubeconfig, "--interactive"), input="n\n")

    assert result.exit_code == 1
    assert "aborted: nothing was changed" in result.stderr
    assert_nothing_written(target, since)
