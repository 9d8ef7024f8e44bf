"""The in-process Forklift (Driver A) on the sandbox's MTV host, seen over HTTPS: Staging then
Ready, the six lists of the host provider, a failed test retried, a Ready provider re-tested,
an auth failure that stops reconciling, and what differs between releases."""

from __future__ import annotations

import base64
import dataclasses
import re
import time
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from mtv_register.sandbox import MTV_NAMESPACE, Sandbox
from mtv_register.sandbox.mtv.controller import (
    CONNECTION_TEST_PATHS,
    CONTROLLER_USER,
    FORKLIFT_USER_AGENT,
)
from mtv_register.sandbox.store import Event
from tests.conftest import FAST_FORKLIFT, SandboxFactory
from tests.sandbox.helpers import wait_for
from tests.sandbox.test_api_controllers import (
    FORKLIFT,
    NS,
    client,
    conditions,
    connection_test_rules,
    provider_secret,
    register,
    settled,
    source_token,
)

Obj = dict[str, Any]
AGENT = f"^{re.escape(FORKLIFT_USER_AGENT)}$"


def start(make_sandbox: SandboxFactory, tmp_path: Path, **options: Any) -> tuple[Sandbox, Any]:
    sandbox = make_sandbox(mtv_on="separate", **options)
    kubeconfig = sandbox.write_kubeconfig(tmp_path / "kubeconfig")
    return sandbox, (client(kubeconfig, "source"), client(kubeconfig, "mtv"))


def ready_source(sandbox: Sandbox, source: Any, mtv: Any, **data: str) -> Obj:
    token = source_token(source, "reader", connection_test_rules())
    fields = data or {"ca.crt": sandbox["source"].root_ca_pem}
    register(mtv, "source", sandbox["source"].url, token=token, **fields)
    return settled(kubernetes.client.CustomObjectsApi(mtv), "source", "Ready", "ConnectionFailed")


def forklift_calls(sandbox: Sandbox, context: str) -> list[Obj]:
    return [
        e for e in sandbox[context].cluster.audit.events() if e["userAgent"] == FORKLIFT_USER_AGENT
    ]


def test_a_provider_is_staging_first_then_ready_each_write_observing_its_generation(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox, (source, mtv) = start(make_sandbox, tmp_path)
    written: list[Obj] = []

    def watch(event: Event) -> None:
        if event.obj.get("kind") == "Provider" and event.obj["metadata"]["name"] == "source":
            written.append(event.obj.get("status") or {})

    sandbox["mtv"].cluster.store.add_listener(watch)

    ready = ready_source(sandbox, source, mtv)

    phases = [s.get("phase") for s in written if s]
    assert phases == ["Staging", "Ready"]
    assert all(s["observedGeneration"] == 1 for s in written if s)
    assert "InventoryCreated" not in {c["type"] for c in written[1]["conditions"]}
    assert ready["status"]["phase"] == "Ready"


def test_the_host_provider_runs_the_six_lists_with_the_controllers_own_identity(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox, _ = start(make_sandbox, tmp_path)

    calls = forklift_calls(sandbox, "mtv")

    assert {e["user"]["username"] for e in calls} == {CONTROLLER_USER}
    first_test = [e["requestURI"] for e in calls[:8]]
    assert first_test == ["/api", "/apis", *(f"{p}?limit=1" for p in CONNECTION_TEST_PATHS)]


def test_a_failed_test_is_retried_and_the_provider_becomes_ready_unchanged(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox, (source, mtv) = start(make_sandbox, tmp_path)
    refused = sandbox["source"].cluster.faults.inject(
        "list", "^/apis/storage.k8s.io/v1/storageclasses$", status=403, agent=AGENT
    )
    custom = kubernetes.client.CustomObjectsApi(mtv)

    first = ready_source(sandbox, source, mtv)
    ready = settled(custom, "source", "Ready")

    assert refused.hits == 1
    assert first["status"]["phase"] == "ConnectionFailed"
    assert "storageclasses" in conditions(first)["ConnectionTestFailed"]["message"]
    assert ready["metadata"]["generation"] == first["metadata"]["generation"]


def test_a_ready_provider_whose_token_dies_falls_out_of_ready_at_its_next_test(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    timing = dataclasses.replace(FAST_FORKLIFT, ready_recheck=0.3)
    sandbox, (source, mtv) = start(make_sandbox, tmp_path, forklift_timing=timing)
    ready_source(sandbox, source, mtv)

    kubernetes.client.CoreV1Api(source).delete_namespaced_secret("reader-token", NS)

    failed = settled(kubernetes.client.CustomObjectsApi(mtv), "source", "ConnectionFailed")
    assert conditions(failed)["ConnectionTestFailed"]["message"].endswith("Unauthorized")


def test_an_auth_failure_is_not_retried(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    """A 401 that a list itself answers (discovery passed) is ConnectionAuthFailed, after which
    Forklift stops requeueing: only an event on the Provider or its Secret wakes it again."""
    sandbox, (source, mtv) = start(make_sandbox, tmp_path)
    sandbox["source"].cluster.faults.inject(
        "list", "^/apis/storage.k8s.io/v1/storageclasses$", status=401, agent=AGENT
    )

    failed = ready_source(sandbox, source, mtv)
    assert "ConnectionAuthFailed" in conditions(failed)
    forklift = sandbox["mtv"].forklift
    assert forklift is not None and forklift.settle(5)
    tested = len(forklift_calls(sandbox, "source"))
    time.sleep(4 * FAST_FORKLIFT.retry)  # four retries' worth: none may come

    assert len(forklift_calls(sandbox, "source")) == tested


def rotate(mtv: Any, token: str, **data: str) -> None:
    kubernetes.client.CoreV1Api(mtv).replace_namespaced_secret(
        "source-secret", MTV_NAMESPACE, provider_secret("source-secret", token=token, **data)
    )


def bump_generation(mtv: Any) -> None:
    kubernetes.client.CustomObjectsApi(mtv).patch_namespaced_custom_object(
        *FORKLIFT, MTV_NAMESPACE, "providers", "source", {"spec": {"settings": {"k": "v"}}}
    )


def secret_version(mtv: Any) -> str:
    found = kubernetes.client.CoreV1Api(mtv).read_namespaced_secret("source-secret", MTV_NAMESPACE)
    return str(found.metadata.resource_version)


def recorded_version(mtv: Any) -> str:
    found = kubernetes.client.CustomObjectsApi(mtv).get_namespaced_custom_object(
        *FORKLIFT, MTV_NAMESPACE, "providers", "source"
    )
    return str(found["status"].get("secretResourceVersion", ""))


def token_of(mtv: Any) -> str:
    found = kubernetes.client.CoreV1Api(mtv).read_namespaced_secret("source-secret", MTV_NAMESPACE)
    return base64.b64decode(found.data["token"]).decode()


def test_2_10_keeps_the_old_token_after_a_secret_change_until_the_generation_changes(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox, (source, mtv) = start(make_sandbox, tmp_path, forklift_version="v2.10.6")
    ready = ready_source(sandbox, source, mtv, cacert=sandbox["source"].root_ca_pem)
    forklift = sandbox["mtv"].forklift
    assert forklift is not None and ready["status"]["phase"] == "Ready"
    old = token_of(mtv)
    second = source_token(source, "second", connection_test_rules())

    rotate(mtv, second, cacert=sandbox["source"].root_ca_pem)
    assert forklift.settle(5)
    kept = forklift.collector(MTV_NAMESPACE, "source")
    bump_generation(mtv)
    wait_for(
        lambda: (c := forklift.collector(MTV_NAMESPACE, "source")) and c.token == second,
        what="a collector with the new token",
    )

    assert kept is not None and kept.token == old
    status = settled(kubernetes.client.CustomObjectsApi(mtv), "source", "Ready")["status"]
    assert "secretResourceVersion" not in status


def test_2_12_takes_the_new_token_at_once_and_records_the_secrets_version(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox, (source, mtv) = start(make_sandbox, tmp_path)
    ready_source(sandbox, source, mtv)
    forklift = sandbox["mtv"].forklift
    assert forklift is not None
    second = source_token(source, "second", connection_test_rules())

    rotate(mtv, second, **{"ca.crt": sandbox["source"].root_ca_pem})
    recorded = wait_for(
        lambda: recorded_version(mtv) == secret_version(mtv),
        what="status.secretResourceVersion to follow the Secret",
    )

    collector = forklift.collector(MTV_NAMESPACE, "source")
    assert recorded and collector is not None and collector.token == second


@pytest.mark.parametrize(
    ("release", "key", "phase"),
    [
        ("v2.12.5", "ca.crt", "Ready"),
        ("v2.12.5", "cacert", "Ready"),
        ("v2.11.7", "ca.crt", "ConnectionFailed"),
        ("v2.11.7", "cacert", "Ready"),
    ],
)
def test_the_ca_is_read_from_ca_crt_only_from_2_12(
    make_sandbox: SandboxFactory, tmp_path: Path, release: str, key: str, phase: str
) -> None:
    sandbox, (source, mtv) = start(make_sandbox, tmp_path, forklift_version=release)

    found = ready_source(sandbox, source, mtv, **{key: sandbox["source"].root_ca_pem})

    assert found["status"]["phase"] == phase
    if phase == "ConnectionFailed":
        message = conditions(found)["ConnectionTestFailed"]["message"]
        assert message.endswith("x509: certificate signed by unknown authority")


def test_an_unknown_forklift_version_is_refused() -> None:
    with pytest.raises(ValueError, match=re.escape("v2.12.5, v2.11.7, v2.10.6")):
        Sandbox(forklift_version="v2.9.0")


def test_sandbox_up_refuses_an_unknown_forklift_version_before_starting(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mtv_register.cli import app

    result = CliRunner().invoke(
        app,
        ["sandbox", "up", "--kubeconfig", str(tmp_path / "k"), "--forklift-version", "v2.9.0"],
    )

    assert result.exit_code == 2
    assert "v2.12.5, v2.11.7, v2.10.6" in result.output
    assert not (tmp_path / "k").exists()
