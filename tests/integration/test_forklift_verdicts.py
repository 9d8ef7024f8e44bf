"""What the tool makes of Forklift's verdicts (issue 13): a failed connection test is diagnosed
by the tool itself, a retried one is waited out, a changed Secret is proven taken up on each
Forklift version, and forklift-api's outage leaves nothing behind."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mtv_register import errors, manifests, naming, sides, verdicts
from mtv_register.bootstrap import RemoteSpec
from mtv_register.kube import CLUSTER_ROLE, SECRET, Kind
from mtv_register.orchestrator import register_pair
from mtv_register.registration import open_host
from mtv_register.rotation import RotateOptions, rotate_all
from tests.conftest import SandboxFactory
from tests.integration.conftest import (
    CliRun,
    admin,
    assert_no_token_in_any_form,
    pair_options,
    snapshot_difference,
)
from tests.target import Target

MTV_NS = "openshift-mtv"
CRD = Kind(
    "apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False
)
MISSING_CRD = "virtualmachineclusterinstancetypes.instancetype.kubevirt.io"
NARROW_ROLE = "mtv-register-test-namespaces-only"

pytestmark = pytest.mark.needs_forklift


def _registered_with(
    monkeypatch: pytest.MonkeyPatch, *, url: str | None = None, ca_pem: str | None = None
) -> None:
    """The source is registered with `url` or `ca_pem` instead of its own, past the tool's
    checks (as a URL that only the MTV host cannot reach would be)."""
    checks = sides.url_and_ca

    def overridden(side: sides.Side, *args: Any) -> sides.Endpoint:
        endpoint = checks(side, *args)
        if side.role != "source":
            return endpoint
        return sides.Endpoint(url or endpoint.url, ca_pem or endpoint.ca_pem)

    monkeypatch.setattr(sides, "url_and_ca", overridden)
    monkeypatch.setattr(sides, "prove_token", lambda *args: None)


def _condition(target: Target, name: str) -> dict[str, Any]:
    provider = target.find("mtv", "providers", name, MTV_NS)
    assert provider is not None
    return {c["type"]: c for c in provider["status"]["conditions"]}


def test_a_ca_that_does_not_verify_the_url_is_named_as_such(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    _registered_with(monkeypatch, ca_pem=target.root_ca_pem("destination"))

    with pytest.raises(errors.TlsError) as caught:
        register_pair(pair_options(target.kubeconfig))

    assert caught.value.exit_code == 5
    assert caught.value.line().startswith(
        f'Provider "{MTV_NS}/source": the CA in the provider Secret does not verify '
        f"{target.url('source')}"
    )
    assert "--ca-source" in caught.value.fix
    assert "x509" in _condition(target, "source")["ConnectionTestFailed"]["message"]


def test_an_unreachable_url_is_named_as_such(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    _registered_with(monkeypatch, url="https://127.0.0.1:1")

    with pytest.raises(errors.UnreachableError) as caught:
        register_pair(pair_options(target.kubeconfig))

    assert caught.value.exit_code == 4
    assert 'Provider "openshift-mtv/source": https://127.0.0.1:1 cannot be reached' in (
        caught.value.line()
    )
    message = _condition(target, "source")["ConnectionTestFailed"]["message"]
    assert "connection refused" in message


@pytest.fixture
def narrow_role(target: Target) -> Iterator[str]:
    """A ClusterRole on both clusters that lets its holder list namespaces and nothing else."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": NARROW_ROLE},
        "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list"]}],
    }
    for context in ("source", "destination"):
        with admin(target, context) as kube:
            kube.create(CLUSTER_ROLE, role)
    try:
        yield NARROW_ROLE
    finally:
        for context in ("source", "destination"):
            with admin(target, context) as kube:
                kube.delete(CLUSTER_ROLE, NARROW_ROLE)


def test_a_missing_permission_is_named_and_a_rerun_after_the_fix_is_ready(
    target: Target, narrow_role: str
) -> None:
    options = pair_options(
        target.kubeconfig, remote=RemoteSpec(role_name=narrow_role, existing_role=True)
    )
    with pytest.raises(errors.PermissionDenied) as caught:
        register_pair(options)

    assert caught.value.exit_code == 7
    line = caught.value.line()
    assert "the Provider's token may not list what Forklift lists" in line
    assert "storageclasses" in line
    assert "forbidden" in _condition(target, "source")["ConnectionTestFailed"]["message"]

    for context in ("source", "destination"):  # the administrator widens the role
        with admin(target, context) as kube:
            role = kube.get(CLUSTER_ROLE, narrow_role)
            assert role is not None
            role["rules"] = manifests.cluster_role()["rules"]
            kube.replace(CLUSTER_ROLE, role)
    result = register_pair(options)
    assert [p.phase for p in result.providers] == ["Ready", "Ready"]


@pytest.fixture
def crd_missing_on_source(target: Target) -> Iterator[str]:
    with admin(target, "source") as kube:
        crd = kube.get(CRD, MISSING_CRD)
        assert crd is not None
        kube.delete(CRD, MISSING_CRD)
        _wait(lambda: kube.get(CRD, MISSING_CRD) is None, "the CRD to go")
    try:
        yield MISSING_CRD
    finally:
        kept = {k: crd[k] for k in ("apiVersion", "kind", "spec")}
        kept["metadata"] = {
            k: v for k, v in crd["metadata"].items() if k in ("name", "labels", "annotations")
        }
        with admin(target, "source") as kube:
            kube.create(CRD, kept)
            _wait(lambda: _established(kube.get(CRD, MISSING_CRD)), "the CRD to be served")


def _established(crd: dict[str, Any] | None) -> bool:
    found = ((crd or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in found)


def _wait(done: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_crd_missing_on_the_remote_is_named(target: Target, crd_missing_on_source: str) -> None:
    with pytest.raises(errors.PreflightError) as caught:
        register_pair(pair_options(target.kubeconfig))

    assert caught.value.exit_code == 6
    line = caught.value.line()
    assert f"(the {crd_missing_on_source} CRD is missing)" in line
    assert "install OpenShift Virtualization" in line
    message = _condition(target, "source")["ConnectionTestFailed"]["message"]
    assert "virtualmachineclusterinstancetypes" in message


def test_a_forklift_api_outage_is_a_clear_retryable_error_that_leaves_nothing_behind(
    target: Target, kubeconfig: Path, cli: CliRun
) -> None:
    before = target.snapshot()
    with target.forklift_api_down():
        result = cli(
            "register",
            "--kubeconfig",
            str(kubeconfig),
            "--source",
            "source",
            "--destination",
            "destination",
            "--host",
            "mtv",
            "--timeout",
            "60s",
        )
    assert result.exit_code == 6, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    assert "could not call the admission webhook" in lines[0]
    assert "forklift-api" in lines[0]
    assert "re-run" in lines[0]
    assert "Traceback" not in result.output
    assert snapshot_difference(before, target.snapshot()) == {}
    assert_no_token_in_any_form(result.output)

    again = cli(
        "register",
        "--kubeconfig",
        str(kubeconfig),
        "--source",
        "source",
        "--destination",
        "destination",
        "--host",
        "mtv",
    )
    assert again.exit_code == 0, again.output


@pytest.mark.sandbox_only("counts forklift-api's requests in the source's audit log")
def test_a_first_registration_tests_each_secret_once_and_waits_without_a_list(
    target: Target,
) -> None:
    """The webhook selects Secrets by label: a new Secret gets it with its owner reference, so
    forklift-api's connection test runs inside one write per side, not two."""
    audit, host = (target.sandbox[c].cluster.audit for c in ("source", "mtv"))
    start, host_start = audit.mark(), host.mark()

    register_pair(pair_options(target.kubeconfig))

    namespaces_lists = [
        event
        for event in audit.since(start)
        if event["userAgent"].startswith("forklift-api")
        and event["requestURI"].split("?")[0] == "/api/v1/namespaces"
    ]
    assert len(namespaces_lists) == 1  # the first of the test's lists, once
    secret = target.find("mtv", "secrets", "source-credentials", MTV_NS)
    assert secret is not None
    assert secret["metadata"]["labels"][naming.PROVIDER_SECRET_WEBHOOK_LABEL] == "providers"
    assert [ref["kind"] for ref in secret["metadata"]["ownerReferences"]] == ["Provider"]
    # The wait for Forklift watches from the Providers as written: no list of them first.
    waits = [
        f"{event['verb']} {event['requestURI'].split('?')[0]}"
        for event in host.since(host_start)
        if event["userAgent"].startswith("mtv-register")
        and event["requestURI"].startswith(
            f"/apis/forklift.konveyor.io/v1beta1/namespaces/{MTV_NS}/providers"
        )
        and event["verb"] in ("list", "watch")
    ]
    assert waits == [f"watch /apis/forklift.konveyor.io/v1beta1/namespaces/{MTV_NS}/providers"]


def test_a_rotation_waits_until_forklift_took_the_new_secret_up(target: Target) -> None:
    """2.11+: status.secretResourceVersion is the switched Secret's; up to 2.10 the tool changes
    the Provider's generation first, and the verdict of that generation is the proof."""
    register_pair(pair_options(target.kubeconfig))
    old = _token_secret_ref(target)

    host = open_host(kubeconfig=str(target.kubeconfig), host="mtv", in_cluster=False)
    try:
        results = rotate_all(
            host, MTV_NS, ["source"], RotateOptions(timeout=60), lambda change: None
        )
    finally:
        host.close()
    assert [r.action for r in results] == ["rotated"], results

    provider = target.find("mtv", "providers", "source", MTV_NS)
    secret = target.find("mtv", "secrets", "source-credentials", MTV_NS)
    assert provider is not None and secret is not None
    assert verdicts.verdict(provider) == "ready"
    version = secret["metadata"]["resourceVersion"]
    if verdicts.tracks_secret_version(provider):
        assert provider["status"]["secretResourceVersion"] == version
        assert verdicts.SECRET_VERSION_SETTING not in (provider["spec"].get("settings") or {})
    else:
        assert provider["spec"]["settings"][verdicts.SECRET_VERSION_SETTING] == version
        assert provider["status"]["observedGeneration"] == provider["metadata"]["generation"]
    assert _token_secret_ref(target) != old
    old_token = base64.b64decode(old[1]).decode()
    assert target.refuses("source", old_token)


def _token_secret_ref(target: Target) -> tuple[str, str]:
    secret = target.find("mtv", "secrets", "source-credentials", MTV_NS)
    assert secret is not None
    return (
        secret["metadata"]["annotations"][naming.TOKEN_SECRET_ANNOTATION],
        secret["data"]["token"],
    )


def test_status_flags_a_provider_secret_that_carries_the_ca_only_under_cacert(
    target: Target, kubeconfig: Path, cli: CliRun
) -> None:
    register_pair(pair_options(target.kubeconfig))
    with admin(target, "mtv") as kube:
        secret = kube.get(SECRET, "source-credentials", MTV_NS)
        assert secret is not None
        assert secret["data"]["ca.crt"] == secret["data"]["cacert"]  # both while 2.11 reads cacert
        del secret["data"]["ca.crt"]
        kube.replace(SECRET, secret)

    result = cli("status", "--kubeconfig", str(kubeconfig), "--host", "mtv", "-o", "json")
    rows = {row["name"]: row for row in json.loads(result.output)["providers"]}
    assert rows["source"]["caOnlyUnderCacert"] is True
    assert rows["destination"]["caOnlyUnderCacert"] is False
    text = cli("status", "--kubeconfig", str(kubeconfig), "--host", "mtv")
    assert "only under the key cacert" in text.output


@pytest.mark.sandbox_only("a fault makes Forklift's first two connection tests fail (503)")
def test_a_failed_test_forklift_retries_is_waited_out(target: Target) -> None:
    sandbox = target.sandbox
    assert sandbox is not None
    sandbox["source"].cluster.faults.inject(
        "list", "^/apis/storage.k8s.io/v1/storageclasses$", status=503, count=2 * 11
    )
    lines: list[str] = []
    result = register_pair(pair_options(target.kubeconfig), progress=lines.append)

    assert [p.phase for p in result.providers] == ["Ready", "Ready"]
    assert any("Forklift retries: ConnectionTestFailed" in line for line in lines), lines


@pytest.mark.sandbox_only("reads the collector the sandbox's Forklift holds for the Provider")
@pytest.mark.parametrize("version", ["v2.10.6", "v2.11.7", "v2.12.5"])
def test_after_a_rotation_forklift_uses_the_new_secret_on_every_version(
    make_sandbox: SandboxFactory, tmp_path: Path, version: str
) -> None:
    """On 2.10 Forklift keeps the client of the Secret it first read until the Provider's
    generation changes: without the tool changing it, the collector would hold the revoked
    token while the Provider still shows Ready."""
    sandbox = make_sandbox(mtv_on="separate", forklift_version=version)
    kubeconfig = sandbox.write_kubeconfig(tmp_path / "kubeconfig")
    register_pair(pair_options(kubeconfig))
    host = open_host(kubeconfig=str(kubeconfig), host="mtv", in_cluster=False)
    try:
        results = rotate_all(
            host, MTV_NS, ["source"], RotateOptions(timeout=30), lambda change: None
        )
    finally:
        host.close()
    assert [r.action for r in results] == ["rotated"]

    forklift = sandbox["mtv"].forklift
    assert forklift is not None
    forklift.reconcile(MTV_NS, "source")
    cluster = sandbox["mtv"].cluster
    secret = cluster.store.get(cluster.rtype("", "v1", "secrets"), MTV_NS, "source-credentials")
    collector = forklift.collector(MTV_NS, "source")
    assert collector is not None
    assert collector.secret_resource_version == secret["metadata"]["resourceVersion"]
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert collector.token == token


def test_status_exits_10_while_a_provider_is_not_ready(
    target: Target, kubeconfig: Path, cli: CliRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    _registered_with(monkeypatch, url="https://127.0.0.1:1")
    with pytest.raises(errors.UnreachableError):
        register_pair(pair_options(target.kubeconfig))

    result = cli("status", "--kubeconfig", str(kubeconfig), "--host", "mtv", "-o", "json")
    assert result.exit_code == 10
    rows = {row["name"]: row for row in json.loads(result.stdout)["providers"]}
    assert rows["source"]["ready"] is False
    assert rows["source"]["message"].startswith("ConnectionTestFailed: ")
    last = result.stderr.strip().splitlines()[-1]
    # (on Forklift's real timing the destination may still be in Staging: it is counted too)
    assert last.startswith("error: ") and " Provider(s) not Ready: " in last
    assert "source" in last.split(": ", 1)[1]
