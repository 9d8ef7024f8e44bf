"""The real kubectl against the sandbox, with kubectl's defaults: the seed procedure step by step,
every verb DESIGN.md section 5 promises, the Forklift Provider kind, and the error wording."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from mtv_register.sandbox import MTV_NAMESPACE, Sandbox
from mtv_register.sandbox.cluster import ADMIN_USER

pytestmark = pytest.mark.kubectl

SEED = Path(__file__).parent.parent / "data" / "seed_procedure.txt"
ROLE = "live-migration-role"
SA_NAMESPACE, SA_NAME, TOKEN_SECRET = "mtv-access", "mtv-sa", "mtv-sa-token"
TOKEN_TIMEOUT = 10.0
WAIT_TIMEOUT = "20s"
T = TypeVar("T")
KubectlRunner = Callable[..., subprocess.CompletedProcess[str]]  # the conftest `kubectl` fixture


# -- helpers ---------------------------------------------------------------------------------


def until(condition: Callable[[], T], *, what: str, timeout: float = TOKEN_TIMEOUT) -> T:
    """Poll `condition` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def seed_manifests(*, secret: str, namespace: str, account: str) -> dict[str, str]:
    """The seed's ```yaml blocks by kind, placeholders filled in as a reader would."""
    blocks = re.findall(r"```yaml\n(.*?)```", SEED.read_text(), flags=re.DOTALL)
    filled = {
        "<name_of_secret>": secret,
        "<namespace_for_service_account>": namespace,
        "<service_account_name>": account,
    }
    manifests = {}
    for block in blocks:
        for placeholder, value in filled.items():
            block = block.replace(placeholder, value)
        assert "<" not in block, f"a placeholder is left in the seed's YAML:\n{block}"
        manifests[yaml.safe_load(block)["kind"]] = block
    return manifests


def write(tmp_path: Path, name: str, content: str | dict[str, Any]) -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return str(path)


def token_kubeconfig(sandbox: Sandbox, tmp_path: Path, name: str, token: str) -> str:
    """A kubeconfig whose `source` context authenticates with `token` (a file, never argv)."""
    config = sandbox.kubeconfig()
    config["clusters"] = [c for c in config["clusters"] if c["name"] == "source"]
    config["users"] = [{"name": name, "user": {"token": token}}]
    config["contexts"] = [{"name": "source", "context": {"cluster": "source", "user": name}}]
    config["current-context"] = "source"
    path = tmp_path / f"{name}.kubeconfig"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config))
    return str(path)


def get_json(kubectl: KubectlRunner, *args: str, context: str = "source") -> Any:
    return json.loads(kubectl("get", *args, "-o", "json", context=context).stdout)


def seed_service_account(
    kubectl: KubectlRunner, tmp_path: Path, *, namespace: str = SA_NAMESPACE
) -> str:
    """Steps 1-7 of the seed on `source`; returns the decoded service-account token."""
    manifests = seed_manifests(secret=TOKEN_SECRET, namespace=namespace, account=SA_NAME)
    created = kubectl("create", "-f", write(tmp_path, "role.yaml", manifests["ClusterRole"]))
    assert created.stdout.strip() == f"clusterrole.rbac.authorization.k8s.io/{ROLE} created"
    kubectl("create", "namespace", namespace)
    kubectl("create", "serviceaccount", SA_NAME, "-n", namespace)
    kubectl(
        "create",
        "clusterrolebinding",
        SA_NAME,
        f"--clusterrole={ROLE}",
        f"--serviceaccount={namespace}:{SA_NAME}",
    )
    applied = kubectl("apply", "-f", write(tmp_path, "secret.yaml", manifests["Secret"]))
    assert applied.stdout.strip() == f"secret/{TOKEN_SECRET} created"
    encoded = until(
        lambda: kubectl(
            "get", "secret", TOKEN_SECRET, "-n", namespace, "-o", "jsonpath={.data.token}"
        ).stdout.strip(),
        what="the token controller to fill the Secret",
    )
    return base64.b64decode(encoded).decode()


def config_map(name: str, namespace: str = "default", **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def provider(name: str, url: str = "", secret: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "openshift", "url": url}
    if secret is not None:
        spec["secret"] = {"name": secret, "namespace": MTV_NAMESPACE}
    return {
        "apiVersion": "forklift.konveyor.io/v1beta1",
        "kind": "Provider",
        "metadata": {"name": name, "namespace": MTV_NAMESPACE},
        "spec": spec,
    }


def wait_ready(kubectl: KubectlRunner, name: str) -> None:
    waited = kubectl(
        "wait",
        "--for=jsonpath={.status.phase}=Ready",
        f"provider/{name}",
        "-n",
        MTV_NAMESPACE,
        f"--timeout={WAIT_TIMEOUT}",
        context="mtv",
    )
    assert waited.stdout.strip() == f"provider.forklift.konveyor.io/{name} condition met"


# -- 1. the seed procedure -------------------------------------------------------------------


def test_seed_procedure_gives_a_token_that_reads_namespaces_but_cannot_list_nodes_or_escalate(
    sandbox: Sandbox, kubectl: KubectlRunner, tmp_path: Path
) -> None:
    token = seed_service_account(kubectl, tmp_path)
    assert token
    as_sa = token_kubeconfig(sandbox, tmp_path, SA_NAME, token)
    user = f"system:serviceaccount:{SA_NAMESPACE}:{SA_NAME}"

    namespaces = kubectl("--kubeconfig", as_sa, "get", "namespaces")
    assert SA_NAMESPACE in namespaces.stdout.split()

    nodes = kubectl("--kubeconfig", as_sa, "get", "nodes", check=False)
    assert nodes.returncode == 1
    assert (
        f'nodes is forbidden: User "{user}" cannot list resource "nodes" in API group "" '
        "at the cluster scope"
    ) in nodes.stderr

    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "escalated"},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
    }
    escalate = kubectl(
        "--kubeconfig", as_sa, "create", "-f", write(tmp_path, "esc.yaml", role), check=False
    )
    assert escalate.returncode == 1
    assert "Error from server (Forbidden)" in escalate.stderr
    assert (
        f'clusterroles.rbac.authorization.k8s.io is forbidden: User "{user}" cannot create '
        'resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope'
    ) in escalate.stderr
    assert kubectl("get", "clusterrole", "escalated", check=False).returncode == 1


def test_seed_ca_step_prints_the_cluster_root_ca(sandbox: Sandbox, kubectl: KubectlRunner) -> None:
    printed = kubectl("get", "cm", "kube-root-ca.crt", r"-o=jsonpath={.data.ca\.crt}").stdout
    assert printed.startswith("-----BEGIN CERTIFICATE-----")
    assert printed == sandbox["source"].root_ca_pem


# -- 2. the verbs ----------------------------------------------------------------------------


def test_create_f_creates_and_get_o_json_returns_the_stored_object(
    kubectl: KubectlRunner, tmp_path: Path
) -> None:
    created = kubectl("create", "-f", write(tmp_path, "cm.yaml", config_map("cm", a="1")))
    assert created.stdout.strip() == "configmap/cm created"
    stored = get_json(kubectl, "configmap", "cm")
    assert stored["data"] == {"a": "1"}
    assert stored["metadata"]["uid"] and stored["metadata"]["resourceVersion"]


def test_apply_creates_then_reports_unchanged_then_configured(
    kubectl: KubectlRunner, tmp_path: Path
) -> None:
    path = write(tmp_path, "cm.yaml", config_map("applied", a="1"))
    assert kubectl("apply", "-f", path).stdout.strip() == "configmap/applied created"
    assert kubectl("apply", "-f", path).stdout.strip() == "configmap/applied unchanged"
    write(tmp_path, "cm.yaml", config_map("applied", a="2", b="3"))
    assert kubectl("apply", "-f", path).stdout.strip() == "configmap/applied configured"
    assert get_json(kubectl, "configmap", "applied")["data"] == {"a": "2", "b": "3"}


def test_replace_f_with_and_without_resource_version_in_the_file(
    kubectl: KubectlRunner, tmp_path: Path
) -> None:
    kubectl("create", "-f", write(tmp_path, "cm.yaml", config_map("replaced", a="1")))
    current = get_json(kubectl, "configmap", "replaced")
    current["data"] = {"a": "with-rv"}
    replaced = kubectl("replace", "-f", write(tmp_path, "with-rv.yaml", current))
    assert replaced.stdout.strip() == "configmap/replaced replaced"
    assert get_json(kubectl, "configmap", "replaced")["data"] == {"a": "with-rv"}

    without_rv = kubectl(
        "replace", "-f", write(tmp_path, "no-rv.yaml", config_map("replaced", a="no-rv"))
    )
    assert without_rv.stdout.strip() == "configmap/replaced replaced"
    assert get_json(kubectl, "configmap", "replaced")["data"] == {"a": "no-rv"}


def test_label_adds_a_label(kubectl: KubectlRunner, tmp_path: Path) -> None:
    kubectl("create", "-f", write(tmp_path, "cm.yaml", config_map("labelled")))
    labelled = kubectl("label", "configmap", "labelled", "team=mtv")
    assert labelled.stdout.strip() == "configmap/labelled labeled"
    selected = kubectl("get", "configmaps", "-l", "team=mtv", "-o", "name")
    assert selected.stdout.split() == ["configmap/labelled"]


def test_patch_merge_json_and_strategic_change_the_object_as_a_real_server_does(
    kubectl: KubectlRunner, tmp_path: Path
) -> None:
    kubectl("create", "-f", write(tmp_path, "cm.yaml", config_map("patched", a="1", b="2")))
    merged = kubectl("patch", "configmap", "patched", "--type=merge", "-p", '{"data":{"b":null}}')
    assert merged.stdout.strip() == "configmap/patched patched"
    kubectl(
        "patch", "configmap", "patched", "--type=json",
        "-p", '[{"op":"add","path":"/data/c","value":"3"}]',
    )  # fmt: skip
    assert get_json(kubectl, "configmap", "patched")["data"] == {"a": "1", "c": "3"}

    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "pulls", "namespace": "default"},
        "imagePullSecrets": [{"name": "first"}],
    }
    kubectl("create", "-f", write(tmp_path, "sa.yaml", account))
    # Strategic merge merges the list by `name`; a merge patch would have replaced it.
    kubectl(
        "patch", "serviceaccount", "pulls", "--type=strategic",
        "-p", '{"imagePullSecrets":[{"name":"second"}]}',
    )  # fmt: skip
    pulls = get_json(kubectl, "serviceaccount", "pulls")["imagePullSecrets"]
    assert sorted(p["name"] for p in pulls) == ["first", "second"]


def test_delete_removes_the_object_and_get_then_says_not_found(
    kubectl: KubectlRunner, tmp_path: Path
) -> None:
    kubectl("create", "-f", write(tmp_path, "cm.yaml", config_map("doomed")))
    deleted = kubectl("delete", "configmap", "doomed")
    assert deleted.stdout.strip() == 'configmap "doomed" deleted'
    gone = kubectl("get", "configmap", "doomed", check=False)
    assert gone.returncode == 1
    assert 'Error from server (NotFound): configmaps "doomed" not found' in gone.stderr


def test_get_jsonpath_and_all_namespaces_listing(kubectl: KubectlRunner, tmp_path: Path) -> None:
    kubectl("create", "namespace", "other")
    kubectl("create", "-f", write(tmp_path, "cm.yaml", config_map("here", "other", k="v")))
    value = kubectl("get", "configmap", "here", "-n", "other", "-o", "jsonpath={.data.k}")
    assert value.stdout == "v"
    listing = kubectl("get", "configmaps", "-A").stdout
    rows = [line.split() for line in listing.splitlines()]
    assert rows[0][:2] == ["NAMESPACE", "NAME"]
    assert ["other", "here"] in [row[:2] for row in rows]
    assert ["default", "kube-root-ca.crt"] in [row[:2] for row in rows]


@pytest.fixture
def as_service_account(sandbox: Sandbox, kubectl: KubectlRunner, tmp_path: Path) -> str:
    """A kubeconfig for the seed's service account on `source`, after the seed's steps."""
    token = seed_service_account(kubectl, tmp_path)
    return token_kubeconfig(sandbox, tmp_path, SA_NAME, token)


def test_auth_whoami_prints_the_admin_and_the_service_account_usernames(
    kubectl: KubectlRunner, as_service_account: str
) -> None:
    admin = kubectl("auth", "whoami")
    assert ["Username", ADMIN_USER] in [line.split() for line in admin.stdout.splitlines()]
    whoami = kubectl("--kubeconfig", as_service_account, "auth", "whoami")
    username = f"system:serviceaccount:{SA_NAMESPACE}:{SA_NAME}"
    assert ["Username", username] in [line.split() for line in whoami.stdout.splitlines()]


def test_auth_can_i_prints_yes_with_exit_0_and_no_with_exit_1(
    kubectl: KubectlRunner, as_service_account: str
) -> None:
    allowed = kubectl("--kubeconfig", as_service_account, "auth", "can-i", "list", "namespaces")
    assert (allowed.returncode, allowed.stdout.strip()) == (0, "yes")
    refused = kubectl(
        "--kubeconfig", as_service_account, "auth", "can-i", "list", "nodes", check=False
    )
    assert (refused.returncode, refused.stdout.strip()) == (1, "no")
    admin = kubectl("auth", "can-i", "list", "nodes")
    assert (admin.returncode, admin.stdout.strip()) == (0, "yes")


# -- 3. the Forklift Provider kind -------------------------------------------------------------


def test_get_providers_all_namespaces_lists_the_host_provider(kubectl: KubectlRunner) -> None:
    listing = kubectl("get", "providers", "-A", context="mtv").stdout
    assert [MTV_NAMESPACE, "host"] in [line.split()[:2] for line in listing.splitlines()]


def test_provider_without_url_applied_waited_ready_and_deleted(
    kubectl: KubectlRunner, tmp_path: Path
) -> None:
    path = write(tmp_path, "provider.yaml", provider("local"))
    applied = kubectl("apply", "-f", path, context="mtv")
    assert applied.stdout.strip() == "provider.forklift.konveyor.io/local created"
    shown = kubectl("get", "provider", "local", "-n", MTV_NAMESPACE, context="mtv")
    assert "local" in shown.stdout.split()
    wait_ready(kubectl, "local")

    deleted = kubectl("delete", "-f", path, context="mtv")
    assert deleted.stdout.strip() == 'provider.forklift.konveyor.io "local" deleted'
    gone = kubectl("get", "provider", "local", "-n", MTV_NAMESPACE, context="mtv", check=False)
    assert gone.returncode == 1
    assert "(NotFound)" in gone.stderr


def test_provider_with_a_source_token_secret_made_by_kubectl_becomes_ready(
    sandbox: Sandbox, kubectl: KubectlRunner, tmp_path: Path
) -> None:
    token = seed_service_account(kubectl, tmp_path)
    ca = kubectl("get", "cm", "kube-root-ca.crt", r"-o=jsonpath={.data.ca\.crt}").stdout
    token_file, ca_file = tmp_path / "token", tmp_path / "ca.crt"
    token_file.touch(mode=0o600)
    token_file.write_text(token)
    ca_file.write_text(ca)
    kubectl(
        "create", "secret", "generic", "source-credentials", "-n", MTV_NAMESPACE,
        f"--from-file=token={token_file}", f"--from-file=cacert={ca_file}",
        f"--from-literal=url={sandbox['source'].url}", context="mtv",
    )  # fmt: skip
    # The labels bring the Secret under Forklift's admission webhook, which tests the token.
    kubectl(
        "label", "secret", "source-credentials", "-n", MTV_NAMESPACE,
        "createdForResourceType=providers", "createdForProviderType=openshift", context="mtv",
    )  # fmt: skip

    remote = provider("source", sandbox["source"].url, "source-credentials")
    kubectl("apply", "-f", write(tmp_path, "provider.yaml", remote), context="mtv")
    wait_ready(kubectl, "source")
    status = get_json(kubectl, "provider", "source", "-n", MTV_NAMESPACE, context="mtv")["status"]
    assert "ConnectionTestSucceeded" in [c["type"] for c in status["conditions"]]


# -- 4. error wording --------------------------------------------------------------------------


def test_create_of_an_existing_object_is_already_exists(
    kubectl: KubectlRunner, tmp_path: Path
) -> None:
    path = write(tmp_path, "cm.yaml", config_map("twice"))
    kubectl("create", "-f", path)
    again = kubectl("create", "-f", path, check=False)
    assert again.returncode == 1
    assert (
        f'Error from server (AlreadyExists): error when creating "{path}": '
        'configmaps "twice" already exists'
    ) in again.stderr


def test_replace_with_a_stale_resource_version_is_a_conflict(
    kubectl: KubectlRunner, tmp_path: Path
) -> None:
    kubectl("create", "-f", write(tmp_path, "cm.yaml", config_map("raced", a="1")))
    stale = get_json(kubectl, "configmap", "raced")
    kubectl("label", "configmap", "raced", "moved=on")
    stale["data"] = {"a": "2"}
    raced = kubectl("replace", "-f", write(tmp_path, "stale.yaml", stale), check=False)
    assert raced.returncode == 1
    assert "Error from server (Conflict)" in raced.stderr
    assert (
        'Operation cannot be fulfilled on configmaps "raced": the object has been modified'
    ) in raced.stderr


def test_a_wrong_token_must_log_in_to_the_server(
    sandbox: Sandbox, kubectl: KubectlRunner, tmp_path: Path
) -> None:
    wrong = token_kubeconfig(sandbox, tmp_path, "stranger", "not-a-token-of-this-cluster")
    # With no discovery cache the 401 comes from discovery, which kubectl words generically.
    cold = kubectl("--kubeconfig", wrong, "get", "namespaces", check=False)
    assert cold.returncode == 1
    assert (
        "error: You must be logged in to the server "
        "(the server has asked for the client to provide credentials)"
    ) in cold.stderr
    kubectl("get", "namespaces")  # the admin fills the discovery cache kubectl keeps per server
    warm = kubectl("--kubeconfig", wrong, "get", "namespaces", check=False)
    assert warm.returncode == 1
    assert "error: You must be logged in to the server (Unauthorized)" in warm.stderr


def test_an_invalid_name_is_invalid(kubectl: KubectlRunner, tmp_path: Path) -> None:
    one = write(tmp_path, "one.yaml", config_map("Not_A_Name"))
    refused = kubectl("create", "-f", one, check=False)
    assert refused.returncode == 1
    # kubectl words a lone 422 itself; "Error from server (Invalid)" is its wording in a list.
    assert (
        'The ConfigMap "Not_A_Name" is invalid: metadata.name: Invalid value: "Not_A_Name": '
        "a lowercase RFC 1123 subdomain"
    ) in refused.stderr
    two = write(tmp_path, "two.yaml", "---\n".join(
        yaml.safe_dump(config_map(name)) for name in ("Bad_One", "Bad_Two")
    ))  # fmt: skip
    refused = kubectl("create", "-f", two, check=False)
    assert refused.returncode == 1
    for name in ("Bad_One", "Bad_Two"):
        assert (
            f'Error from server (Invalid): error when creating "{two}": ConfigMap "{name}" is '
            f'invalid: metadata.name: Invalid value: "{name}"'
        ) in refused.stderr
    assert kubectl("get", "configmaps", "-o", "name").stdout.split() == [
        "configmap/kube-root-ca.crt"
    ]
