"""`mtv-register register` through the CLI (Typer's CliRunner, in-process) on the test's
clusters: human, JSON and dry-run output, prompts, the failures a user meets, and one exit code
for each class of failure, printed as one line with no traceback and no token."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mtv_register import manifests, naming
from mtv_register.kube import CLUSTER_ROLE, SECRET, SERVICE_ACCOUNT
from tests.conftest import SandboxFactory
from tests.integration.conftest import (
    CliRun,
    admin_client,
    assert_nothing_written,
    decoded,
    forklift_uninstalled,
    mark,
    one_error_line,
    register_args,
    shaped_target,
    snapshot_difference,
    wait_for,
)
from tests.target import Target

MTV_NS = "openshift-mtv"
NAMED_CERT = "the source served with a certificate from a second CA (the sandbox's named_cert)"


def provider_secret(target: Target, name: str) -> dict[str, Any] | None:
    return target.find(target.mtv_context, "secrets", f"{name}-credentials", MTV_NS)


def ready_providers(target: Target) -> dict[str, str]:
    return {
        p["metadata"]["name"]: (p.get("status") or {}).get("phase", "")
        for p in target.list(target.mtv_context, "providers", MTV_NS)
    }


# -- the happy path, as a user sees it ------------------------------------------------------------


@pytest.mark.needs_forklift
def test_register_then_rerun_reports_the_existing_registration(
    target: Target, kubeconfig: Path, cli: CliRun
) -> None:
    first = cli(*register_args(kubeconfig, "--yes"))

    assert first.exit_code == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"Provider {MTV_NS}/source (source, source) Ready on mtv",
        f"Provider {MTV_NS}/destination (destination, destination) Ready on mtv",
        "pair registered",
    ]
    assert "Provider openshift-mtv/source created on mtv" in first.stderr  # progress
    assert ready_providers(target) == {"host": "Ready", "source": "Ready", "destination": "Ready"}

    since = mark(target)
    again = cli(*register_args(kubeconfig, "--yes"))

    assert again.exit_code == 0, again.stderr
    assert again.stdout.splitlines()[-1] == "pair already registered, nothing changed"
    assert f"Provider {MTV_NS}/source (source, source) Ready on mtv" in again.stdout
    assert_nothing_written(target, since)


@pytest.mark.needs_forklift
def test_output_json_describes_the_registration_and_its_changes(
    target: Target, kubeconfig: Path, cli: CliRun
) -> None:
    first = cli(*register_args(kubeconfig, "--yes", "-o", "json"))
    assert first.exit_code == 0, first.stderr
    assert first.stderr == ""  # no progress lines around machine output
    report = json.loads(first.stdout)
    assert (report["host"], report["namespace"], report["changed"]) == ("mtv", MTV_NS, True)
    assert [(p["name"], p["phase"], p["url"]) for p in report["providers"]] == [
        ("source", "Ready", target.url("source")),
        ("destination", "Ready", target.url("destination")),
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


@pytest.mark.sandbox_only("makes the sandbox's Forklift re-test the Provider at once (force)")
@pytest.mark.needs_forklift
def test_a_cluster_role_drift_forklift_noticed_is_repaired_and_reported(
    target: Target, kubeconfig: Path, cli: CliRun
) -> None:
    assert cli(*register_args(kubeconfig, "--yes")).exit_code == 0
    target.settle()
    role = target.find("destination", "clusterroles", naming.DEFAULT_ROLE_NAME)
    assert role is not None
    destination = admin_client(kubeconfig, "destination")
    # forklift.konveyor.io only: no namespaces any more
    destination.patch(CLUSTER_ROLE, naming.DEFAULT_ROLE_NAME, {"rules": role["rules"][:1]})
    destination.close()
    forklift = target.sandbox["mtv"].forklift
    assert forklift is not None
    forklift.reconcile(MTV_NS, "destination", force=True)  # Forklift's next look at it
    assert ready_providers(target)["destination"] == "ConnectionFailed"

    repaired = cli(*register_args(kubeconfig, "--yes", "-o", "json"))

    assert repaired.exit_code == 0, repaired.stderr
    report = json.loads(repaired.stdout)
    assert report["changed"] is True
    assert [
        (c["context"], c["kind"], c["name"], c["action"])
        for c in report["changes"]
        if c["action"] != "unchanged"
    ] == [
        ("destination", "ClusterRole", naming.DEFAULT_ROLE_NAME, "updated"),
        ("mtv", "Secret", "destination-credentials", "touched: Forklift tests it again"),
    ]
    assert ready_providers(target) == {"host": "Ready", "source": "Ready", "destination": "Ready"}


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


@pytest.mark.needs_forklift
def test_dry_run_prints_every_manifest_for_every_cluster_tokens_redacted(
    target: Target, kubeconfig: Path, cli: CliRun
) -> None:
    assert cli(*register_args(kubeconfig, "--yes")).exit_code == 0  # real tokens now exist
    since = mark(target)

    result = cli(*register_args(kubeconfig, "--yes", "--dry-run"))

    assert result.exit_code == 0, result.stderr
    assert_nothing_written(target, since)
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
        assert document["metadata"]["labels"][naming.MANAGED_BY_LABEL] == "mtv-register"
        if document["kind"] == "ClusterRole":
            assert document["rules"] == manifests.SEED_CLUSTER_ROLE_RULES
        if context == "mtv" and document["kind"] == "Secret":
            assert document["stringData"]["token"] == manifests.REDACTED
            url = document["stringData"]["url"]
            assert url == target.url(document["metadata"]["name"].split("-")[0])
        if document["kind"] == "Provider":
            assert document["spec"]["url"] == target.url(document["metadata"]["name"])

    as_json = cli(*register_args(kubeconfig, "--yes", "--dry-run", "-o", "json"))
    listed = json.loads(as_json.stdout)
    assert [d["kind"] for d in listed["items"]] == [d["kind"] for _, d in documents]
    assert_nothing_written(target, since)


# -- prompts -------------------------------------------------------------------------------------


@pytest.mark.needs_forklift
def test_prompts_pick_contexts_and_names_then_confirm(
    target: Target, kubeconfig: Path, cli: CliRun
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
    assert ready_providers(target) == {"host": "Ready", "src-a": "Ready", "destination": "Ready"}


def test_declining_the_summary_changes_nothing(
    target: Target, kubeconfig: Path, cli: CliRun
) -> None:
    since = mark(target)

    result = cli(*register_args(kubeconfig, "--interactive"), input="\n\nn\n")

    assert result.exit_code == 1
    assert "aborted: nothing was changed" in result.stderr
    assert_nothing_written(target, since)


def test_an_invalid_provider_name_at_the_prompt_is_refused_at_once_and_asked_again(
    target: Target, kubeconfig: Path, cli: CliRun
) -> None:
    since = mark(target)

    # Not_Valid is refused before the next question, which is the same one again.
    result = cli(*register_args(kubeconfig, "--interactive"), input="Not_Valid\n\n\nn\n")

    assert result.exit_code == 1  # the summary declined: nothing written
    prompts = result.stdout.count("Provider name for source")
    assert prompts == 2, result.stdout
    assert '"Not_Valid" is not a valid Provider name' in result.stdout + result.stderr
    assert result.stdout.index("not a valid Provider name") < result.stdout.index(
        "Provider name for destination"
    )
    assert_nothing_written(target, since)


def test_names_given_as_flags_are_not_asked_for(
    target: Target, kubeconfig: Path, cli: CliRun
) -> None:
    since = mark(target)
    flags = ("--source-name", "src", "--destination-name", "dst", "--interactive")

    result = cli(*register_args(kubeconfig, *flags), input="n\n")

    assert "Provider name for" not in result.stdout
    assert result.exit_code == 1  # "n" answered the summary, not a name
    assert "on mtv: Provider src and its Secret src-credentials" in result.stdout
    assert_nothing_written(target, since)


def test_without_a_terminal_missing_choices_are_a_usage_error_not_a_prompt(
    kubeconfig: Path, cli: CliRun
) -> None:
    result = cli("register", "--kubeconfig", str(kubeconfig), "--source", "source")

    assert result.exit_code == 2
    assert "missing option --destination" in one_error_line(result)


# -- the failures the issue names ----------------------------------------------------------------


@pytest.mark.sandbox_only("a token controller that never fills token Secrets (token_delay 1 h)")
def test_a_token_never_filled_ends_in_a_timeout_naming_the_secret(
    make_sandbox: SandboxFactory, tmp_path: Path, cli: CliRun
) -> None:
    slow = shaped_target(make_sandbox, tmp_path, mtv_on="separate", token_delay=3600)
    started = time.monotonic()

    result = cli(*register_args(slow.kubeconfig, "--yes", "--timeout", "2s"))

    assert time.monotonic() - started < 10
    assert result.exit_code == 9
    line = one_error_line(result)
    assert 'token Secret "mtv-provider-token" in namespace "mtv-register"' in line
    assert "raise --timeout" in line
    assert provider_secret(slow, "source") is None  # nothing registered without a token


@pytest.mark.sandbox_only(NAMED_CERT)
@pytest.mark.needs_forklift
def test_a_named_certificate_with_the_root_ca_fails_clearly_and_kubeconfig_ca_works(
    make_sandbox: SandboxFactory, tmp_path: Path, cli: CliRun
) -> None:
    named = shaped_target(make_sandbox, tmp_path, mtv_on="separate", named_cert="source")
    since = mark(named)

    refused = cli(*register_args(named.kubeconfig, "--yes", "--ca-source", "root"))

    assert refused.exit_code == 5
    line = one_error_line(refused)
    assert "kube-root-ca.crt of source does not verify" in line
    assert "--ca-source kubeconfig" in line
    assert_nothing_written(named, since)  # nothing on the host, nor anywhere else

    accepted = cli(*register_args(named.kubeconfig, "--yes", "--ca-source", "kubeconfig"))

    assert accepted.exit_code == 0, accepted.stderr
    assert ready_providers(named) == {"host": "Ready", "source": "Ready", "destination": "Ready"}
    secret = provider_secret(named, "source")
    assert secret is not None
    ca = base64.b64decode(secret["data"]["ca.crt"]).decode()
    assert ca == named.serving_ca_pem("source") != named.root_ca_pem("source")


@pytest.mark.sandbox_only(
    "a fault makes the source refuse (401) what Forklift lists after the proof"
)
@pytest.mark.needs_forklift
def test_a_token_a_forklift_list_refuses_with_401_is_refused_by_forklifts_webhook(
    target: Target, kubeconfig: Path, cli: CliRun
) -> None:
    # The token works for the tool's proof and for discovery, but the source refuses it (401)
    # for a list of Forklift's connection test: that 401 comes back unwrapped, so forklift-api's
    # webhook denies the provider Secret with "Invalid credentials" (it would otherwise become
    # ConnectionAuthFailed on the Provider).
    target.sandbox["source"].cluster.faults.inject(
        "list", "^/apis/storage.k8s.io/v1/storageclasses$", status=401, count=1000
    )

    result = cli(*register_args(kubeconfig, "--yes"))

    assert result.exit_code == 10
    line = one_error_line(result)
    assert f'Forklift refused the provider Secret "{MTV_NS}/source-credentials"' in line
    assert 'admission webhook "secrets.forklift.konveyor" denied the request: Invalid' in line
    # The refusal comes with the write that gives the new Secret its owner (and the label the
    # webhook selects on): the Provider and Secret created before it are rolled back.
    assert target.find("mtv", "providers", "source", MTV_NS) is None
    assert provider_secret(target, "source") is None


@pytest.mark.sandbox_only("a fault makes the source refuse (403) Forklift's list of VMs")
@pytest.mark.needs_forklift
def test_a_url_forklift_cannot_use_surfaces_connection_test_failed_and_its_cause(
    target: Target, kubeconfig: Path, cli: CliRun
) -> None:
    target.sandbox["source"].cluster.faults.inject(
        "list", "^/apis/kubevirt.io/v1/virtualmachines$", status=403, count=1000
    )

    result = cli(*register_args(kubeconfig, "--yes"))

    # Forklift says only ConnectionTestFailed; the tool's own run of the same lists names why.
    assert result.exit_code == 7
    line = one_error_line(result)
    assert f'Provider "{MTV_NS}/source": the Provider\'s token may not list what Forklift' in line
    provider = target.find("mtv", "providers", "source", MTV_NS)
    assert provider is not None
    assert "ConnectionTestFailed" in {c["type"] for c in provider["status"]["conditions"]}


def test_a_url_of_another_cluster_is_caught_before_forklift_sees_the_token(
    target: Target, kubeconfig: Path, cli: CliRun, tmp_path: Path
) -> None:
    both = tmp_path / "both.pem"
    both.write_text(target.root_ca_pem("source") + target.root_ca_pem("destination"))
    wrong = target.url("destination")

    result = cli(
        *register_args(kubeconfig, "--yes", "--source-url", wrong, "--ca-source", f"file:{both}")
    )

    assert result.exit_code == 8
    line = one_error_line(result)
    assert f'{wrong} refused the token of serviceaccount "mtv-register/mtv-provider"' in line
    assert "--source-url" in line
    assert provider_secret(target, "source") is None


def test_a_cluster_role_too_narrow_for_forklift_is_caught_before_registering(
    target: Target, kubeconfig: Path, cli: CliRun
) -> None:
    for context in ("source", "destination"):
        kube = admin_client(kubeconfig, context)
        kube.create(
            CLUSTER_ROLE,
            {"metadata": {"name": "narrow"}, "rules": manifests.SEED_CLUSTER_ROLE_RULES[:1]},
        )
        kube.close()

    result = cli(*register_args(kubeconfig, "--yes", "--cluster-role", "narrow"))

    assert result.exit_code == 7
    line = one_error_line(result)
    assert "cannot list namespaces, the first step of Forklift's connection test" in line
    assert provider_secret(target, "source") is None


# -- one exit code per class of failure ----------------------------------------------------------

# Each makes one failure and gives the arguments that meet it. The kubeconfig is the test's own
# copy (external clusters share theirs); what must be undone is left on the stack.
MakeFailure = Callable[[Target, Path, contextlib.ExitStack], list[str]]
NOBODY = "nobody"  # a service account bound to nothing, in `default` on the source


def _edit_kubeconfig(kubeconfig: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    config = yaml.safe_load(kubeconfig.read_text())
    edit(config)
    kubeconfig.write_text(yaml.safe_dump(config))


def _entry(config: dict[str, Any], section: str, context: str) -> dict[str, Any]:
    """The `cluster` or `user` entry a context uses."""
    named = next(c["context"][section] for c in config["contexts"] if c["name"] == context)
    return next(e[section] for e in config[f"{section}s"] if e["name"] == named)


def _with_token(config: dict[str, Any], context: str, token: str) -> None:
    """The context's user authenticates with `token`, and only with it."""
    user = _entry(config, "user", context)
    user.clear()
    user["token"] = token


def _same_context(target: Target, kubeconfig: Path, _: contextlib.ExitStack) -> list[str]:
    return ["--destination", "source"]


def _zero_timeout(target: Target, kubeconfig: Path, _: contextlib.ExitStack) -> list[str]:
    return ["--timeout", "0s"]


def _unknown_context(target: Target, kubeconfig: Path, _: contextlib.ExitStack) -> list[str]:
    return ["--source", "nowhere"]


def _missing_kubeconfig(target: Target, kubeconfig: Path, _: contextlib.ExitStack) -> list[str]:
    return ["--kubeconfig", str(kubeconfig.parent / "absent")]


def _unreachable(target: Target, kubeconfig: Path, _: contextlib.ExitStack) -> list[str]:
    _edit_kubeconfig(
        kubeconfig, lambda c: _entry(c, "cluster", "source").update(server="https://127.0.0.1:1")
    )
    return []


def _wrong_ca(target: Target, kubeconfig: Path, _: contextlib.ExitStack) -> list[str]:
    other = base64.b64encode(target.serving_ca_pem("destination").encode()).decode()

    def edit(config: dict[str, Any]) -> None:
        cluster = _entry(config, "cluster", "source")
        cluster.pop("certificate-authority", None)
        cluster["certificate-authority-data"] = other

    _edit_kubeconfig(kubeconfig, edit)
    return []


def _no_forklift_namespace(target: Target, kubeconfig: Path, _: contextlib.ExitStack) -> list[str]:
    return ["--mtv-namespace", "nowhere"]


def _forklift_absent(target: Target, kubeconfig: Path, stack: contextlib.ExitStack) -> list[str]:
    stack.enter_context(forklift_uninstalled(target))
    return []


def _no_permission(target: Target, kubeconfig: Path, _: contextlib.ExitStack) -> list[str]:
    source = admin_client(target.kubeconfig, "source")
    source.create(SERVICE_ACCOUNT, {"metadata": {"name": NOBODY, "namespace": "default"}})
    source.create(
        SECRET,
        {
            "metadata": {
                "name": f"{NOBODY}-token",
                "namespace": "default",
                "annotations": {naming.SERVICE_ACCOUNT_NAME_ANNOTATION: NOBODY},
            },
            "type": naming.SERVICE_ACCOUNT_TOKEN_TYPE,
        },
    )
    source.close()
    token = wait_for(
        lambda: decoded(
            target.find("source", "secrets", f"{NOBODY}-token", "default") or {}, "token"
        ),
        what=f"the token of {NOBODY}",
    )
    _edit_kubeconfig(kubeconfig, lambda c: _with_token(c, "source", token))
    return []


def _refused_credentials(target: Target, kubeconfig: Path, _: contextlib.ExitStack) -> list[str]:
    _edit_kubeconfig(kubeconfig, lambda c: _with_token(c, "source", "expired"))
    return []


def _other_writer(target: Target, kubeconfig: Path, _: contextlib.ExitStack) -> list[str]:
    assert target.sandbox is not None
    cluster = target.sandbox["source"].cluster
    roles = cluster.rtype("rbac.authorization.k8s.io", "v1", "clusterroles")
    cluster.store.create(
        roles,
        {
            "metadata": {
                "name": naming.DEFAULT_ROLE_NAME,
                "labels": {naming.MANAGED_BY_LABEL: naming.MANAGED_BY},
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
        (
            _no_permission,
            7,
            f'User "system:serviceaccount:default:{NOBODY}" cannot get resource "configmaps"',
        ),
        (_refused_credentials, 8, "refused the credentials (401 Unauthorized)"),
        pytest.param(
            _other_writer,
            11,
            'ClusterRole "live-migration-role" keeps changing on source (5 tries)',
            marks=pytest.mark.sandbox_only("a fault answers 409 to every update of the role"),
        ),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
@pytest.mark.both_backends  # each backend turns failures into errors its own way
def test_each_class_of_failure_has_its_exit_code_and_one_line(
    target: Target,
    cli: CliRun,
    tmp_path: Path,
    make_failure: MakeFailure,
    code: int,
    words: str,
) -> None:
    kubeconfig = tmp_path / "edited-kubeconfig"
    kubeconfig.touch(mode=0o600)  # it holds the admins' credentials
    kubeconfig.write_text(target.kubeconfig.read_text())
    with contextlib.ExitStack() as undo:
        extra = make_failure(target, kubeconfig, undo)
        since = mark(target)

        result = cli(*register_args(kubeconfig, "--yes"), *extra)

        assert result.exit_code == code, result.stderr
        assert words in one_error_line(result)
        if code != 11:  # the other writer's conflict happens mid-way, by design of the test
            assert_nothing_written(target, since)


def test_a_usage_error_typer_detects_is_exit_code_2(kubeconfig: Path, cli: CliRun) -> None:
    result = cli(*register_args(kubeconfig, "--yes", "--output", "xml"))

    assert result.exit_code == 2
    assert "Traceback" not in result.stderr


def test_a_wrong_kubeconfig_ca_is_blamed_on_the_kubeconfig_not_on_ca_source(
    target: Target, kubeconfig: Path, cli: CliRun, tmp_path: Path
) -> None:
    config = yaml.safe_load(kubeconfig.read_text())
    contexts = {c["name"]: c["context"]["cluster"] for c in config["contexts"]}
    clusters = {c["name"]: c["cluster"] for c in config["clusters"]}
    other = base64.b64encode(target.serving_ca_pem("destination").encode()).decode()
    source = clusters[contexts["source"]]
    source.pop("certificate-authority", None)
    source["certificate-authority-data"] = other
    wrong = tmp_path / "wrong-ca"
    wrong.write_text(yaml.safe_dump(config))

    result = cli(*register_args(wrong, "--yes"))

    assert result.exit_code == 5
    line = one_error_line(result)
    assert "the kubeconfig's certificate-authority for context source does not verify" in line
    assert "--ca-source does not apply" in line


def _keys(data: Any) -> set[str]:
    if isinstance(data, dict):
        return set(data) | {k for v in data.values() for k in _keys(v)}
    if isinstance(data, list):
        return {k for item in data for k in _keys(item)}
    return set()


@pytest.mark.needs_forklift
def test_every_json_output_is_camel_case(kubeconfig: Path, cli: CliRun, tmp_path: Path) -> None:
    import re

    outputs = [
        cli(*register_args(kubeconfig, "--yes", "-o", "json")),
        cli("status", "--host", "mtv", "--kubeconfig", str(kubeconfig), "-o", "json"),
        cli(
            "rotate", "--all", "--host", "mtv", "--kubeconfig", str(kubeconfig),
            "--max-age", "0s", "-o", "json",
        ),
        cli(
            "unregister", "--source", "source", "--destination", "destination", "--host", "mtv",
            "--kubeconfig", str(kubeconfig), "--yes", "-o", "json",
        ),
    ]  # fmt: skip
    for result in outputs:
        assert result.exit_code == 0, result.output
        keys = _keys(json.loads(result.stdout))
        assert keys, result.stdout
        assert all(re.fullmatch(r"[a-z][A-Za-z0-9]*", k) for k in keys), sorted(keys)


def test_the_dry_run_output_is_accepted_by_kubectl_apply_dry_run_server(
    target: Target, kubeconfig: Path, cli: CliRun
) -> None:
    import shutil
    import subprocess

    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is installed by .ci/install-kubectl"
    result = cli(*register_args(kubeconfig, "--yes", "--dry-run"))
    assert result.exit_code == 0, result.output
    by_context: dict[str, list[str]] = {}
    context = ""
    for line in result.stdout.splitlines(keepends=True):
        if line.startswith("# context: "):
            context = line.removeprefix("# context: ").strip()
            by_context.setdefault(context, [])
        elif context:
            by_context[context].append(line)
    host = "".join(by_context["mtv"])
    assert "\nstringData:\n" in host and "\ndata:\n" not in host
    before = target.snapshot()
    for name, lines in by_context.items():
        # On the registered clusters the objects go into a namespace the output creates, which
        # a server-side dry run refuses as not found (the real API server does too).
        mode = "server" if name == "mtv" else "client"
        applied = subprocess.run(
            [kubectl, "--kubeconfig", str(kubeconfig), "--context", name, "apply",
             f"--dry-run={mode}", "-f", "-"],
            input="".join(lines), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert applied.returncode == 0, f"{name}: {applied.stderr}"
    assert snapshot_difference(before, target.snapshot()) == {}
