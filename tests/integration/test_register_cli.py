"""`mtv-register register` through the CLI (Typer's CliRunner, in-process) against the sandbox:
human, JSON and dry-run output, prompts, the failures a user meets, and one exit code for each
class of failure, printed as one line with no traceback and no token."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mtv_register import manifests
from mtv_register.sandbox import Sandbox
from tests.conftest import SandboxFactory
from tests.integration.conftest import (
    CliRun,
    assert_no_mutation,
    marks,
    one_error_line,
    register_args,
    settle_forklift,
    wait_for,
)

MTV_NS = "openshift-mtv"


def provider_secret(sandbox: Sandbox, name: str) -> dict[str, Any] | None:
    host = sandbox[sandbox.mtv_context].cluster
    return host.store.find(host.rtype("", "v1", "secrets"), MTV_NS, f"{name}-credentials")


def ready_providers(sandbox: Sandbox) -> dict[str, str]:
    host = sandbox[sandbox.mtv_context].cluster
    items, _ = host.store.list(host.rtype("forklift.konveyor.io", "v1beta1", "providers"), MTV_NS)
    return {p["metadata"]["name"]: (p.get("status") or {}).get("phase", "") for p in items}


# -- the happy path, as a user sees it ------------------------------------------------------------


def test_register_then_rerun_reports_the_existing_registration(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun
) -> None:
    first = cli(*register_args(kubeconfig, "--yes"))

    assert first.exit_code == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"Provider {MTV_NS}/source (source, source) Ready on mtv",
        f"Provider {MTV_NS}/destination (destination, destination) Ready on mtv",
        "pair registered",
    ]
    assert "Provider openshift-mtv/source created on mtv" in first.stderr  # progress
    assert ready_providers(sandbox) == {"host": "Ready", "source": "Ready", "destination": "Ready"}

    since = marks(sandbox)
    again = cli(*register_args(kubeconfig, "--yes"))

    assert again.exit_code == 0, again.stderr
    assert again.stdout.splitlines()[-1] == "pair already registered, nothing changed"
    assert f"Provider {MTV_NS}/source (source, source) Ready on mtv" in again.stdout
    assert_no_mutation(sandbox, since)


def test_output_json_describes_the_registration_and_its_changes(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun
) -> None:
    first = cli(*register_args(kubeconfig, "--yes", "-o", "json"))
    assert first.exit_code == 0, first.stderr
    assert first.stderr == ""  # no progress lines around machine output
    report = json.loads(first.stdout)
    assert (report["host"], report["namespace"], report["changed"]) == ("mtv", MTV_NS, True)
    assert [(p["name"], p["phase"], p["url"]) for p in report["providers"]] == [
        ("source", "Ready", sandbox["source"].url),
        ("destination", "Ready", sandbox["destination"].url),
    ]
    assert {
        "context": "mtv",
        "kind": "Provider",
        "name": "source",
        "namespace": MTV_NS,
        "action": "created",
    } in report["changes"]

    again = json.loads(cli(*register_args(kubeconfig, "--yes", "--output", "json")).stdout)
    assert again["changed"] is False
    assert {c["action"] for c in again["changes"]} == {"unchanged"}


def test_a_cluster_role_drift_forklift_noticed_is_repaired_and_reported(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun
) -> None:
    assert cli(*register_args(kubeconfig, "--yes")).exit_code == 0
    settle_forklift(sandbox)
    destination = sandbox["destination"].cluster
    roles = destination.rtype("rbac.authorization.k8s.io", "v1", "clusterroles")
    role = destination.store.get(roles, "", manifests.DEFAULT_ROLE_NAME)
    role["rules"] = role["rules"][:1]  # forklift.konveyor.io only: no namespaces any more
    destination.store.update(roles, role)
    forklift = sandbox["mtv"].forklift
    assert forklift is not None
    forklift.reconcile(MTV_NS, "destination", force=True)  # Forklift's next look at it
    assert ready_providers(sandbox)["destination"] == "ConnectionFailed"

    repaired = cli(*register_args(kubeconfig, "--yes", "-o", "json"))

    assert repaired.exit_code == 0, repaired.stderr
    report = json.loads(repaired.stdout)
    assert report["changed"] is True
    assert [
        (c["context"], c["kind"], c["name"], c["action"])
        for c in report["changes"]
        if c["action"] != "unchanged"
    ] == [
        ("destination", "ClusterRole", manifests.DEFAULT_ROLE_NAME, "updated"),
        ("mtv", "Secret", "destination-credentials", "touched: Forklift tests it again"),
    ]
    assert ready_providers(sandbox) == {"host": "Ready", "source": "Ready", "destination": "Ready"}


# -- dry run -------------------------------------------------------------------------------------


def _documents(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(context, object) for each YAML document printed after its `# context:` comment."""
    found = []
    for chunk in text.split("# context: ")[1:]:
        context, _, body = chunk.partition("\n")
        documents = [d for d in yaml.safe_load_all(body) if d is not None]
        assert len(documents) == 1, chunk
        found.append((context, documents[0]))
    return found


def test_dry_run_prints_every_manifest_for_every_cluster_tokens_redacted(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun
) -> None:
    assert cli(*register_args(kubeconfig, "--yes")).exit_code == 0  # real tokens now exist
    since = marks(sandbox)

    result = cli(*register_args(kubeconfig, "--yes", "--dry-run"))

    assert result.exit_code == 0, result.stderr
    assert_no_mutation(sandbox, since)
    documents = _documents(result.stdout)
    remote = ["ClusterRole", "Namespace", "ServiceAccount", "ClusterRoleBinding", "Secret"]
    assert [(c, d["kind"]) for c, d in documents] == [
        *(("source", kind) for kind in remote),
        ("mtv", "Secret"),
        ("mtv", "Provider"),
        *(("destination", kind) for kind in remote),
        ("mtv", "Secret"),
        ("mtv", "Provider"),
    ]
    for context, document in documents:
        assert document["metadata"]["labels"][manifests.MANAGED_BY_LABEL] == "mtv-register"
        if document["kind"] == "ClusterRole":
            assert document["rules"] == manifests.SEED_CLUSTER_ROLE_RULES
        if context == "mtv" and document["kind"] == "Secret":
            assert document["data"]["token"] == manifests.REDACTED
            url = base64.b64decode(document["data"]["url"]).decode()
            assert url == sandbox[document["metadata"]["name"].split("-")[0]].url
        if document["kind"] == "Provider":
            assert document["spec"]["url"] == sandbox[document["metadata"]["name"]].url

    as_json = cli(*register_args(kubeconfig, "--yes", "--dry-run", "-o", "json"))
    listed = json.loads(as_json.stdout)
    assert [d["kind"] for d in listed["items"]] == [d["kind"] for _, d in documents]
    assert_no_mutation(sandbox, since)


# -- prompts -------------------------------------------------------------------------------------


def test_prompts_pick_contexts_and_names_then_confirm(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun
) -> None:
    answers = [
        "source",  # source context, by name
        "1",  # destination: first of the remaining contexts (destination, mtv)
        "y",  # MTV on a separate cluster
        "1",  # the MTV host: the only context left (mtv)
        "src-a",  # provider name for source
        "",  # provider name for destination: the default
        "y",  # proceed
    ]

    result = cli(
        "register",
        "--interactive",
        "--kubeconfig",
        str(kubeconfig),
        input="\n".join(answers) + "\n",
    )

    assert result.exit_code == 0, result.stdout + result.stderr
    assert "  1) destination\n  2) mtv\n" in result.stdout
    assert "on mtv: Provider src-a and its Secret src-a-credentials" in result.stdout
    assert ready_providers(sandbox) == {"host": "Ready", "src-a": "Ready", "destination": "Ready"}


def test_declining_the_summary_changes_nothing(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun
) -> None:
    since = marks(sandbox)

    result = cli(*register_args(kubeconfig, "--interactive"), input="\n\nn\n")

    assert result.exit_code == 1
    assert "aborted: nothing was changed" in result.stderr
    assert_no_mutation(sandbox, since)


def test_an_invalid_provider_name_at_the_prompt_is_a_usage_error(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun
) -> None:
    since = marks(sandbox)

    result = cli(*register_args(kubeconfig, "--interactive"), input="Not_Valid\n\n")

    assert result.exit_code == 2
    assert 'Provider name "Not_Valid" is not a valid name' in one_error_line(result)
    assert_no_mutation(sandbox, since)


def test_without_a_terminal_missing_choices_are_a_usage_error_not_a_prompt(
    kubeconfig: Path, cli: CliRun
) -> None:
    result = cli("register", "--kubeconfig", str(kubeconfig), "--source", "source")

    assert result.exit_code == 2
    assert "missing option --destination" in one_error_line(result)


# -- the failures the issue names ----------------------------------------------------------------


def test_a_token_never_filled_ends_in_a_timeout_naming_the_secret(
    make_sandbox: SandboxFactory, tmp_path: Path, cli: CliRun
) -> None:
    sandbox = make_sandbox(mtv_on="separate", token_delay=3600)
    kubeconfig = sandbox.write_kubeconfig(tmp_path / "kubeconfig")
    started = time.monotonic()

    result = cli(*register_args(kubeconfig, "--yes", "--timeout", "2s"))

    assert time.monotonic() - started < 10
    assert result.exit_code == 9
    line = one_error_line(result)
    assert 'token Secret "mtv-provider-token" in namespace "mtv-register"' in line
    assert "raise --timeout" in line
    assert provider_secret(sandbox, "source") is None  # nothing registered without a token


def test_a_named_certificate_with_the_root_ca_fails_clearly_and_kubeconfig_ca_works(
    make_sandbox: SandboxFactory, tmp_path: Path, cli: CliRun
) -> None:
    sandbox = make_sandbox(mtv_on="separate", named_cert="source")
    kubeconfig = sandbox.write_kubeconfig(tmp_path / "kubeconfig")
    since = marks(sandbox)

    refused = cli(*register_args(kubeconfig, "--yes", "--ca-source", "root"))

    assert refused.exit_code == 5
    line = one_error_line(refused)
    assert "kube-root-ca.crt of source does not verify" in line
    assert "--ca-source kubeconfig" in line
    assert_no_mutation(sandbox, since)  # nothing on the host, nor anywhere else

    accepted = cli(*register_args(kubeconfig, "--yes", "--ca-source", "kubeconfig"))

    assert accepted.exit_code == 0, accepted.stderr
    assert ready_providers(sandbox) == {"host": "Ready", "source": "Ready", "destination": "Ready"}
    secret = provider_secret(sandbox, "source")
    assert secret is not None
    ca = base64.b64decode(secret["data"]["ca.crt"]).decode()
    assert ca == sandbox["source"].serving_ca_pem != sandbox["source"].root_ca_pem


def test_a_token_forklift_rejects_surfaces_connection_auth_failed(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun
) -> None:
    # The token works for the tool's proof and Forklift's webhook (both list namespaces), but the
    # source refuses it for the rest of Forklift's connection test: an authenticating proxy or a
    # revocation in between, as MTV would meet it.
    sandbox["source"].cluster.faults.inject(
        "list", "^/apis/storage.k8s.io/v1/storageclasses$", status=401, count=1000
    )

    result = cli(*register_args(kubeconfig, "--yes"))

    assert result.exit_code == 10
    line = one_error_line(result)
    assert f'Provider "{MTV_NS}/source" not ready: ConnectionAuthFailed' in line


def test_a_url_forklift_cannot_use_surfaces_connection_test_failed(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun
) -> None:
    sandbox["source"].cluster.faults.inject(
        "list", "^/apis/kubevirt.io/v1/virtualmachines$", status=403, count=1000
    )

    result = cli(*register_args(kubeconfig, "--yes"))

    assert result.exit_code == 10
    assert f'Provider "{MTV_NS}/source" not ready: ConnectionTestFailed' in one_error_line(result)


def test_a_url_of_another_cluster_is_caught_before_forklift_sees_the_token(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun, tmp_path: Path
) -> None:
    both = tmp_path / "both.pem"
    both.write_text(sandbox["source"].root_ca_pem + sandbox["destination"].root_ca_pem)
    wrong = sandbox["destination"].url

    result = cli(
        *register_args(kubeconfig, "--yes", "--source-url", wrong, "--ca-source", f"file:{both}")
    )

    assert result.exit_code == 8
    line = one_error_line(result)
    assert f'{wrong} refused the token of serviceaccount "mtv-register/mtv-provider"' in line
    assert "--source-url" in line
    assert provider_secret(sandbox, "source") is None


def test_a_cluster_role_too_narrow_for_forklift_is_caught_before_registering(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun
) -> None:
    for context in ("source", "destination"):
        cluster = sandbox[context].cluster
        cluster.store.create(
            cluster.rtype("rbac.authorization.k8s.io", "v1", "clusterroles"),
            {"metadata": {"name": "narrow"}, "rules": manifests.SEED_CLUSTER_ROLE_RULES[:1]},
        )

    result = cli(*register_args(kubeconfig, "--yes", "--cluster-role", "narrow"))

    assert result.exit_code == 7
    line = one_error_line(result)
    assert "cannot list namespaces, the first step of Forklift's connection test" in line
    assert provider_secret(sandbox, "source") is None


# -- one exit code per class of failure ----------------------------------------------------------


def _edit_kubeconfig(kubeconfig: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    config = yaml.safe_load(kubeconfig.read_text())
    edit(config)
    kubeconfig.write_text(yaml.safe_dump(config))


def _cluster_entry(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c["cluster"] for c in config["clusters"] if c["name"] == name)


def _user_entry(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(u["user"] for u in config["users"] if u["name"] == name)


def _same_context(sandbox: Sandbox, kubeconfig: Path) -> list[str]:
    return ["--destination", "source"]


def _zero_timeout(sandbox: Sandbox, kubeconfig: Path) -> list[str]:
    return ["--timeout", "0s"]


def _unknown_context(sandbox: Sandbox, kubeconfig: Path) -> list[str]:
    return ["--source", "nowhere"]


def _missing_kubeconfig(sandbox: Sandbox, kubeconfig: Path) -> list[str]:
    return ["--kubeconfig", str(kubeconfig.parent / "absent")]


def _unreachable(sandbox: Sandbox, kubeconfig: Path) -> list[str]:
    _edit_kubeconfig(
        kubeconfig, lambda c: _cluster_entry(c, "source").update(server="https://127.0.0.1:1")
    )
    return []


def _wrong_ca(sandbox: Sandbox, kubeconfig: Path) -> list[str]:
    other = base64.b64encode(sandbox["destination"].serving_ca_pem.encode()).decode()
    _edit_kubeconfig(
        kubeconfig,
        lambda c: _cluster_entry(c, "source").update({"certificate-authority-data": other}),
    )
    return []


def _no_forklift_namespace(sandbox: Sandbox, kubeconfig: Path) -> list[str]:
    return ["--mtv-namespace", "nowhere"]


def _forklift_absent(sandbox: Sandbox, kubeconfig: Path) -> list[str]:
    mtv = sandbox["mtv"].cluster
    crds = mtv.rtype("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    mtv.store.delete(crds, "", "providers.forklift.konveyor.io")
    wait_for(
        lambda: mtv.registry.lookup("forklift.konveyor.io", "v1beta1", "providers") is None,
        what="the Provider API to be gone",
    )
    return []


def _no_permission(sandbox: Sandbox, kubeconfig: Path) -> list[str]:
    token = sandbox["source"].cluster.add_user("alice")
    _edit_kubeconfig(kubeconfig, lambda c: _user_entry(c, "source-admin").update(token=token))
    return []


def _refused_credentials(sandbox: Sandbox, kubeconfig: Path) -> list[str]:
    _edit_kubeconfig(kubeconfig, lambda c: _user_entry(c, "source-admin").update(token="expired"))
    return []


def _other_writer(sandbox: Sandbox, kubeconfig: Path) -> list[str]:
    cluster = sandbox["source"].cluster
    roles = cluster.rtype("rbac.authorization.k8s.io", "v1", "clusterroles")
    cluster.store.create(
        roles,
        {
            "metadata": {
                "name": manifests.DEFAULT_ROLE_NAME,
                "labels": {manifests.MANAGED_BY_LABEL: manifests.MANAGED_BY},
            },
            "rules": [],
        },
    )
    cluster.faults.inject("update", "/clusterroles/", status=409, count=100)
    return []


@pytest.mark.parametrize(
    ("make_failure", "code", "words"),
    [
        (_same_context, 2, "the source and the destination are the same context"),
        (_zero_timeout, 2, "--timeout must be more than 0s"),
        (_unknown_context, 3, 'context "nowhere" is not in'),
        (_missing_kubeconfig, 3, "does not exist"),
        (_unreachable, 4, "cannot reach https://127.0.0.1:1"),
        (_wrong_ca, 5, "TLS to"),
        (_no_forklift_namespace, 6, 'namespace "nowhere" does not exist on mtv'),
        (_forklift_absent, 6, "Forklift is not installed on mtv"),
        (_no_permission, 7, 'User "alice" cannot get resource "configmaps"'),
        (_refused_credentials, 8, "refused the credentials (401 Unauthorized)"),
        (_other_writer, 11, "the object has been modified"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_each_class_of_failure_has_its_exit_code_and_one_line(
    sandbox: Sandbox,
    kubeconfig: Path,
    cli: CliRun,
    make_failure: Callable[[Sandbox, Path], list[str]],
    code: int,
    words: str,
) -> None:
    extra = make_failure(sandbox, kubeconfig)
    since = marks(sandbox)

    result = cli(*register_args(kubeconfig, "--yes"), *extra)

    assert result.exit_code == code, result.stderr
    assert words in one_error_line(result)
    if code != 11:  # the other writer's conflict happens mid-way, by design of the test
        assert_no_mutation(sandbox, since)


def test_a_usage_error_typer_detects_is_exit_code_2(kubeconfig: Path, cli: CliRun) -> None:
    result = cli(*register_args(kubeconfig, "--yes", "--output", "xml"))

    assert result.exit_code == 2
    assert "Traceback" not in result.stderr
