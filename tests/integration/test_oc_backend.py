"""`--client oc` with the real kubectl as its binary (behind the suite's argv-logging wrapper):
the core flows give the same results on both backends (they run on each, as every integration
test does), every command names its context and carries no token, `--explain` prints them as a
runbook, and each backend starts without importing the other's client library."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from mtv_register import clusters, errors, naming, oc_backend, oc_trail
from mtv_register.api_kube import USER_AGENT
from mtv_register.kube import (
    CLUSTER_ROLE_BINDING,
    CONFIG_MAP,
    NAMESPACE,
    PROVIDER,
    SECRET,
    SERVICE_ACCOUNT,
    AlreadyExists,
    Conflict,
    Invalid,
    Kube,
)
from mtv_register.sandbox import MTV_NAMESPACE, Sandbox
from mtv_register.timing import Timing
from tests.integration._rotation_support import (
    PROVIDERS,
    health,
    provider_secret,
    provider_token,
    referenced_token_secret,
)
from tests.integration.conftest import (
    Backend,
    CliRun,
    Mark,
    assert_no_token_in_any_form,
    assert_nothing_written,
    mark,
    register_args,
    snapshot_difference,
    status_args,
    wait_for,
)
from tests.target import Target

pytestmark = pytest.mark.both_backends  # see tests/integration/conftest.py: backends_of

Obj = dict[str, Any]


# -- what the oc backend ran: the argv the suite's wrapper logged ----------------------------------


def argv_files(backend: Backend) -> set[Path]:
    """One file per command the wrapper ran (none on the kubernetes backend)."""
    if backend.oc_path is None:
        return set()
    folder = Path(backend.oc_path).parent / "argv"  # conftest's logging_wrapper writes there
    return set(folder.iterdir()) if folder.is_dir() else set()


def logged_commands(backend: Backend) -> list[list[str]]:
    """The argv of every command the oc backend ran, each as a list."""
    return [path.read_text().rstrip("\0").split("\0") for path in sorted(argv_files(backend))]


def logged_text(backend: Backend) -> str:
    return "\n".join(" ".join(argv) for argv in logged_commands(backend))


# -- which backend spoke ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Since:
    """Where a command starts: the clusters' mark, and the oc commands already logged."""

    clusters: Mark
    commands: frozenset[Path]


def since(target: Target, backend: Backend) -> Since:
    return Since(mark(target), frozenset(argv_files(backend)))


def user_agents_since(sandbox: Sandbox, since: dict[str, int]) -> set[str]:
    return {
        event["userAgent"].split("/")[0]
        for context, sc in sandbox.clusters.items()
        for event in sc.cluster.audit.since(since[context])
        if not event["userAgent"].startswith(("forklift-controller", "forklift-api"))
    }


def assert_spoken_by(target: Target, backend: Backend, start: Since) -> None:
    """Every request since `start` came from the test's backend, none from the other: from the
    sandbox's audit log. Clusters without one show only what the oc backend ran (its wrapper
    logged commands); the kubernetes backend leaves no trace outside an audit log."""
    if target.sandbox is not None:
        agents = user_agents_since(target.sandbox, start.clusters)
        if backend.oc_path is not None:
            assert agents <= {"kubectl", "kubectl-dispatcher"} and "kubectl" in agents, agents
        else:
            assert agents == {USER_AGENT.split("/")[0]}, agents
    elif backend.oc_path is not None:
        assert argv_files(backend) - start.commands, "the oc backend ran no command"


# -- credentials other than the admin's, made through the API so that any clusters have them ------

TEST_NAMESPACE = "oc-backend-test"


def admin(target: Target, context: str) -> Kube:
    """The admin of `context`, through the tool's own default client."""
    return clusters.Connector(timing=Timing.immediate()).connect(
        clusters.load_kubeconfig(target.kubeconfig), context
    )


def service_account_token(
    target: Target, context: str, name: str, *, cluster_role: str | None = None
) -> str:
    """The token of a new ServiceAccount `name` on `context`, allowed `cluster_role` cluster-wide
    (None: nothing but what every authenticated user may do). It is read from its token Secret,
    so the suite's token scans know it; the target's reset (or the sandbox's end) removes it."""
    kube = admin(target, context)
    try:
        with_namespace = {"name": name, "namespace": TEST_NAMESPACE}
        with contextlib.suppress(AlreadyExists):  # a second caller in the same test
            kube.create(NAMESPACE, {"metadata": {"name": TEST_NAMESPACE}})
        kube.create(SERVICE_ACCOUNT, {"metadata": with_namespace})
        if cluster_role is not None:
            kube.create(
                CLUSTER_ROLE_BINDING,
                {
                    "metadata": {"name": f"{TEST_NAMESPACE}-{name}"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": cluster_role,
                    },
                    "subjects": [{"kind": "ServiceAccount", **with_namespace}],
                },
            )
        kube.create(
            SECRET,
            {
                "metadata": {
                    "name": f"{name}-token",
                    "namespace": TEST_NAMESPACE,
                    "annotations": {"kubernetes.io/service-account.name": name},
                },
                "type": "kubernetes.io/service-account-token",
            },
        )
        token = [""]

        def issued() -> bool:
            secret = kube.get(SECRET, f"{name}-token", TEST_NAMESPACE) or {}
            token[0] = base64.b64decode((secret.get("data") or {}).get("token", "")).decode()
            return bool(token[0])

        wait_for(issued, what=f"the token of {name} on {context}")
        return token[0]
    finally:
        kube.close()


def kubeconfig_with_token(target: Target, context: str, token: str, path: Path) -> Path:
    """A kubeconfig (mode 0600) whose context `context` reaches that cluster as `token`."""
    data = yaml.safe_load(target.kubeconfig.read_text())
    named = next(c for c in data["contexts"] if c["name"] == context)
    cluster = next(c for c in data["clusters"] if c["name"] == named["context"]["cluster"])
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": "caller", "user": {"token": token}}],
                "contexts": [
                    {"name": context, "context": {"cluster": cluster["name"], "user": "caller"}}
                ],
                "current-context": context,
            }
        )
    )
    path.chmod(0o600)
    return path


# -- the core flows, on both backends -------------------------------------------------------------


@pytest.mark.needs_forklift
def test_register_on_a_separate_host_then_a_rerun_changes_nothing(
    target: Target, kubeconfig: Path, cli: CliRun, backend: Backend
) -> None:
    start = since(target, backend)
    first = cli(*register_args(kubeconfig, "--yes"))

    assert first.exit_code == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"Provider {MTV_NAMESPACE}/source (source, source) Ready on mtv",
        f"Provider {MTV_NAMESPACE}/destination (destination, destination) Ready on mtv",
        "pair registered",
    ]
    assert_spoken_by(target, backend, start)
    assert all(not health(target, provider) for provider in PROVIDERS)

    before = mark(target)
    again = cli(*register_args(kubeconfig, "--yes"))

    assert again.exit_code == 0, again.stderr
    assert again.stdout.splitlines()[-1] == "pair already registered, nothing changed"
    assert_nothing_written(target, before)


@pytest.mark.needs_forklift
def test_register_with_bound_tokens_asks_the_token_request_api(
    target: Target, kubeconfig: Path, cli: CliRun, backend: Backend
) -> None:
    start = since(target, backend)

    result = cli(*register_args(kubeconfig, "--yes", "--token-type", "bound"))

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "pair registered"
    for context in PROVIDERS:
        if target.sandbox is not None:  # requests are counted in the sandbox's audit log only
            requests = [
                event["verb"]
                for event in target.sandbox[context].cluster.audit.since(start.clusters[context])
                if event["requestURI"].startswith(
                    "/api/v1/namespaces/mtv-register/serviceaccounts/mtv-provider/token"
                )
            ]
            assert requests == ["create"]
        # Anywhere: the token lives in no token Secret of the service account, so it came from
        # the TokenRequest API.
        token_secrets = [
            secret["metadata"]["name"]
            for secret in target.list(context, "secrets", "mtv-register")
            if secret.get("type") == naming.SERVICE_ACCOUNT_TOKEN_TYPE
        ]
        assert token_secrets == []
        expires = provider_secret(target, context)["metadata"]["annotations"][
            naming.TOKEN_EXPIRES_ANNOTATION
        ]
        left = dt.datetime.strptime(expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC) - (
            dt.datetime.now(dt.UTC)
        )
        assert dt.timedelta(hours=23) < left <= dt.timedelta(hours=24)  # the TTL asked for
    assert_spoken_by(target, backend, start)


@pytest.mark.needs_forklift
def test_status_reports_every_provider(
    target: Target, kubeconfig: Path, cli: CliRun, backend: Backend
) -> None:
    assert cli(*register_args(kubeconfig, "--yes")).exit_code == 0
    target.settle()
    start = since(target, backend)

    result = cli(*status_args(target, "--remote", "source=source", "-o", "json"))

    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    rows = {row["name"]: row for row in report["providers"]}
    assert (report["host"], report["namespace"]) == ("mtv", MTV_NAMESPACE)
    assert {name: row["ready"] for name, row in rows.items()} == {
        "host": True,
        "source": True,
        "destination": True,
    }
    assert rows["source"]["url"] == target.url("source")
    assert rows["source"]["tokenSecret"] == "mtv-register/mtv-provider-token"
    assert report["remotes"] == [
        {
            "context": "source",
            "provider": "source",
            "clusterRole": True,
            "serviceAccount": True,
            "clusterRoleBinding": True,
            "tokenSecrets": ["mtv-provider-token"],
            "leftoverTokenSecrets": [],
        }
    ]
    assert_nothing_written(target, start.clusters)
    assert_spoken_by(target, backend, start)


@pytest.mark.needs_forklift
def test_rotate_all_switches_every_provider_to_a_new_token_and_revokes_the_old(
    target: Target, kubeconfig: Path, cli: CliRun, backend: Backend
) -> None:
    assert cli(*register_args(kubeconfig, "--yes")).exit_code == 0
    before = {provider: provider_token(target, provider) for provider in PROVIDERS}
    start = since(target, backend)

    result = cli(
        "rotate", "--host", "mtv", "--kubeconfig", str(kubeconfig), "--all", "--max-age", "0s"
    )

    assert result.exit_code == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == [
        "Provider destination rotated",
        "Provider source rotated",
    ]
    for provider in PROVIDERS:
        assert provider_token(target, provider) != before[provider]
        assert referenced_token_secret(target, provider) != "mtv-provider-token"
        assert target.refuses(provider, before[provider])  # revoked
        assert health(target, provider) == ""
    assert_spoken_by(target, backend, start)


@pytest.mark.needs_forklift
def test_unregister_leaves_every_cluster_as_it_was(
    target: Target, kubeconfig: Path, cli: CliRun, backend: Backend
) -> None:
    target.settle()
    before = target.snapshot()
    assert cli(*register_args(kubeconfig, "--yes")).exit_code == 0
    start = since(target, backend)

    result = cli(
        "unregister",
        "--source",
        "source",
        "--destination",
        "destination",
        "--host",
        "mtv",
        "--kubeconfig",
        str(kubeconfig),
        "--yes",
    )

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "pair unregistered"
    target.settle()
    wait_for(
        lambda: not snapshot_difference(before, target.snapshot()),
        what="every cluster to be as before register",
    )
    assert_spoken_by(target, backend, start)


# -- what only the oc backend promises ------------------------------------------------------------


@pytest.mark.needs_forklift
@pytest.mark.backends("oc", reason="checks the argv of the oc backend's commands")
def test_no_command_carries_a_token_and_each_names_its_kubeconfig_and_context(
    kubeconfig: Path, cli: CliRun, backend: Backend
) -> None:
    users_kubeconfig = kubeconfig.read_bytes()
    assert cli(*register_args(kubeconfig, "--yes")).exit_code == 0
    rotated = cli(
        "rotate", "--host", "mtv", "--kubeconfig", str(kubeconfig), "--all", "--max-age", "0s"
    )
    assert rotated.exit_code == 0, rotated.stderr

    commands = logged_commands(backend)
    assert len(commands) > 20
    assert_no_token_in_any_form(logged_text(backend))
    for argv in commands:
        flags = [arg.partition("=")[0] for arg in argv]
        assert "--kubeconfig" in flags and "--context" in flags, argv
        assert not any(flag in ("--token", "--as", "--username", "--password") for flag in flags)
        assert argv[0] in ("get", "create", "replace", "patch", "delete"), argv
        assert "use-context" not in argv and "set-context" not in argv
    token_kubeconfigs = {
        arg.partition("=")[2]
        for argv in commands
        for arg in argv
        if arg.startswith("--kubeconfig=") and oc_trail.TOKEN_KUBECONFIG_PREFIX in arg
    }
    assert token_kubeconfigs, "the service accounts' own clients ran no command"
    assert not [path for path in token_kubeconfigs if os.path.exists(path)], "left on disk"
    assert {arg for argv in commands for arg in argv if arg.startswith("--context=")} >= {
        "--context=source",
        "--context=destination",
        "--context=mtv",
    }
    assert kubeconfig.read_bytes() == users_kubeconfig  # its current context never switched


@pytest.mark.needs_forklift
@pytest.mark.backends("oc", reason="--explain prints the oc backend's commands")
def test_explain_prints_the_commands_as_a_runbook_after_the_result(
    kubeconfig: Path, cli: CliRun, backend: Backend
) -> None:
    result = cli(*register_args(kubeconfig, "--yes"), "--explain")

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[2] == "pair registered"
    runbook = [line for line in lines[3:] if not line.startswith("#")]
    assert lines[3].startswith("# mtv-register ran these ")
    assert len(runbook) == len(logged_commands(backend))  # every command, once
    assert all(line.startswith(f"{backend.oc_path} ") for line in runbook)
    assert all(" --context=" in line for line in runbook)
    assert any(
        "create" in line and "# stdin: Secret openshift-mtv/source-credentials" in line
        for line in runbook
    )
    assert any(oc_trail.TOKEN_KUBECONFIG_PREFIX in line for line in runbook)
    assert_no_token_in_any_form(result.stdout + result.stderr)


@pytest.mark.backends("oc", reason="--explain prints the oc backend's commands")
def test_explain_with_json_output_goes_to_stderr_and_shows_a_failure(
    target: Target, cli: CliRun, tmp_path: Path
) -> None:
    # A caller the MTV host lets read nothing: the Providers' list is refused (403).
    token = service_account_token(target, "mtv", "no-rights")
    refused = kubeconfig_with_token(target, "mtv", token, tmp_path / "no-rights")

    result = cli(
        "status",
        *("--host", "mtv", "--kubeconfig", str(refused), "-o", "json", "--explain"),
    )

    assert result.exit_code == errors.PermissionDenied.exit_code
    assert result.stdout == ""
    assert "# mtv-register ran these " in result.stderr
    assert "# exit 1: Forbidden" in result.stderr  # the runbook shows where it stopped


@pytest.mark.backends("kubernetes", reason="the default client refusing the oc backend's flags")
def test_oc_only_flags_are_refused_with_the_default_client(kubeconfig: Path, cli: CliRun) -> None:
    for flag in (["--explain"], ["--oc-path", "kubectl"]):
        result = cli("status", "--host", "mtv", "--kubeconfig", str(kubeconfig), *flag)

        assert result.exit_code == errors.UsageError.exit_code
        assert "needs --client oc" in result.stderr


@pytest.mark.backends("oc", reason="checks the oc backend's --oc-path")
def test_an_oc_path_that_is_not_a_binary_is_one_clear_line(
    kubeconfig: Path, cli: CliRun, tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-oc")
    result = cli(
        "status", "--host", "mtv", "--kubeconfig", str(kubeconfig), "--client", "oc",
        "--oc-path", missing,
    )  # fmt: skip

    assert result.exit_code == errors.UsageError.exit_code
    assert result.stderr.strip() == (
        f"error: --oc-path {missing} is not an executable file: pass the path of oc or kubectl"
    )


@pytest.mark.needs_forklift
@pytest.mark.backends("oc", reason="checks the argv of the oc backend's in-cluster commands")
def test_in_cluster_rotation_runs_with_the_pods_token_file(
    target: Target,
    kubeconfig: Path,
    cli: CliRun,
    backend: Backend,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert cli(*register_args(kubeconfig, "--yes")).exit_code == 0
    folder = tmp_path / "serviceaccount"
    folder.mkdir()
    pod = service_account_token(target, "mtv", "pod", cluster_role="cluster-admin")
    (folder / "token").write_text(pod)
    (folder / "ca.crt").write_text(target.serving_ca_pem("mtv"))
    server = urlsplit(target.url("mtv"))
    monkeypatch.setenv("MTV_REGISTER_SERVICEACCOUNT_DIR", str(folder))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", str(server.hostname))
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(server.port or 443))

    result = cli(
        *("rotate", "--in-cluster", "--mtv-namespace", MTV_NAMESPACE, "--all", "--max-age", "0s")
    )

    assert result.exit_code == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == [
        "Provider destination rotated",
        "Provider source rotated",
    ]
    assert any("--context=in-cluster" in argv for argv in logged_commands(backend))
    assert_no_token_in_any_form(logged_text(backend))


# -- one door, two implementations: the same answers and the same errors --------------------------

Connect = Callable[..., Kube]


@pytest.fixture
def connect(kubeconfig: Path, backend: Backend) -> Iterator[Connect]:
    """A client of the test's backend for a context (`config`: another kubeconfig)."""
    config = clusters.load_kubeconfig(kubeconfig)
    opened: list[Kube] = []

    def open_client(context: str = "source", **overrides: Any) -> Kube:
        client = clusters.Connector(
            backend=backend.name, oc_path=backend.oc_path, timing=Timing.immediate()
        ).connect(overrides.pop("config", config), context)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


def config_map(name: str, **data: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": data,
    }


def test_both_backends_read_write_and_refuse_alike(connect: Connect) -> None:
    kube = connect()
    created = kube.create(CONFIG_MAP, config_map("door", a="1"))

    assert kube.get(CONFIG_MAP, "door", "default") == created
    assert kube.get(CONFIG_MAP, "absent", "default") is None
    with pytest.raises(AlreadyExists):
        kube.create(CONFIG_MAP, config_map("door"))
    patched = kube.patch(CONFIG_MAP, "door", {"data": {"b": "2"}}, "default")
    assert patched["data"] == {"a": "1", "b": "2"}
    with pytest.raises(Conflict):
        kube.replace(CONFIG_MAP, created)  # the resourceVersion read before the patch
    with pytest.raises(Invalid):
        kube.create(CONFIG_MAP, config_map("Not_A_Name"))
    names = [item["metadata"]["name"] for item in kube.list(CONFIG_MAP, "default")["items"]]
    assert "door" in names
    assert len(kube.list(NAMESPACE, limit=1)["items"]) == 1
    assert kube.delete(CONFIG_MAP, "door", "default") is True
    assert kube.delete(CONFIG_MAP, "door", "default") is False


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        pytest.param("no-rights", errors.PermissionDenied, id="403"),
        pytest.param("unknown", errors.AuthenticationFailed, id="401"),
    ],
)
def test_both_backends_raise_the_same_error_for_the_same_answer(
    target: Target, connect: Connect, tmp_path: Path, caller: str, expected: type[Exception]
) -> None:
    # 403: a service account the cluster knows but lets read nothing; 401: a token it never issued.
    token = service_account_token(target, "source", caller) if caller == "no-rights" else "x.y.z"
    config = clusters.load_kubeconfig(
        kubeconfig_with_token(target, "source", token, tmp_path / caller)
    )

    with pytest.raises(expected) as raised:
        connect(config=config).get(SECRET, "x", "default")

    assert type(raised.value) is expected  # not a subclass standing in for it


@pytest.mark.sandbox_only("only an injected fault makes the API server answer 500 to a GET")
def test_both_backends_raise_the_same_error_for_a_server_error(
    sandbox: Sandbox, connect: Connect
) -> None:
    sandbox["source"].cluster.faults.inject("get", "/secrets/x$", status=500, count=100)

    with pytest.raises(errors.MtvRegisterError) as raised:
        connect().get(SECRET, "x", "default")

    assert type(raised.value) is errors.MtvRegisterError  # not a subclass standing in for it


@pytest.mark.sandbox_only("injects two 503 answers and counts the requests they caught")
def test_both_backends_retry_a_transient_failure_until_it_passes(
    sandbox: Sandbox, connect: Connect
) -> None:
    fault = sandbox["source"].cluster.faults.inject("get", "/secrets/x$", status=503, count=2)

    assert connect().get(SECRET, "x", "default") is None

    assert fault.hits == 2


@pytest.mark.sandbox_only("drops two connections and counts the requests they caught")
def test_both_backends_retry_a_dropped_connection(sandbox: Sandbox, connect: Connect) -> None:
    fault = sandbox["source"].cluster.faults.inject("get", "/secrets/x$", drop=True, count=2)

    assert connect().get(SECRET, "x", "default") is None

    assert fault.hits == 2


@pytest.mark.backends("oc", reason="--explain lists the oc backend's commands")
def test_schedule_and_unschedule_write_through_the_oc_backend(target: Target, cli: CliRun) -> None:
    host = ["--host", "mtv", "--kubeconfig", str(target.kubeconfig), "--explain"]
    every = ["--every", "0 3 * * *", "--max-age", "30d", "--image", "example.com/mtv-register:1"]

    scheduled = cli("schedule", *host, *every)
    unscheduled = cli("unschedule", *host)

    assert scheduled.exit_code == 0, scheduled.stderr
    assert unscheduled.exit_code == 0, unscheduled.stderr
    made = [line for line in scheduled.stdout.splitlines() if " --context=mtv " in line]
    assert [line.rsplit("# stdin: ", 1)[1] for line in made if " create " in line] == [
        "ServiceAccount openshift-mtv/mtv-register-rotator",
        "Role openshift-mtv/mtv-register-rotator",
        "RoleBinding openshift-mtv/mtv-register-rotator",
        "CronJob openshift-mtv/mtv-register-rotate",
    ]
    assert scheduled.stdout.index("rotation scheduled") < scheduled.stdout.index("# mtv-register")
    removed = [line for line in unscheduled.stdout.splitlines() if " delete " in line]
    assert any(" cronjobs.v1.batch mtv-register-rotate " in line for line in removed), removed
    assert target.find("mtv", "cronjobs", "mtv-register-rotate", MTV_NAMESPACE) is None


@pytest.mark.sandbox_only("drops every connection and counts the requests")
@pytest.mark.backends("oc", reason="kubectl's own retries of a dropped read")
def test_a_read_kubectl_already_retried_is_not_retried_again(
    sandbox: Sandbox, connect: Connect
) -> None:
    fault = sandbox["source"].cluster.faults.inject("get", "/secrets/x$", drop=True, count=1000)

    with pytest.raises(errors.MtvRegisterError, match="kept dropping the connection") as raised:
        connect().get(SECRET, "x", "default")

    assert "retried by kubectl-logging itself" in str(raised.value)
    # client-go's own attempts (12 with kubectl 1.32), once: not again for each of the tool's
    # attempts (which made 72 before).
    assert 2 <= fault.hits <= 12


def test_both_backends_say_forklift_is_missing_the_same_way(connect: Connect) -> None:
    from mtv_register import forklift

    # Forklift runs on the MTV host (`mtv`) only: the source cluster has none.
    with pytest.raises(errors.PreflightError, match="Forklift is not installed on source"):
        forklift.list_providers(connect("source"), MTV_NAMESPACE)


def test_both_backends_name_an_unreachable_server_and_a_wrong_ca(
    target: Target, connect: Connect, tmp_path: Path
) -> None:
    data = yaml.safe_load(target.kubeconfig.read_text())
    of_context = {c["name"]: c["context"]["cluster"] for c in data["contexts"]}
    entries = {c["name"]: c["cluster"] for c in data["clusters"]}
    entries[of_context["source"]]["server"] = "https://127.0.0.1:1"
    wrong = entries[of_context["destination"]]
    wrong.pop("certificate-authority", None)
    wrong["certificate-authority-data"] = base64.b64encode(
        target.serving_ca_pem("mtv").encode()
    ).decode()
    path = tmp_path / "broken"
    path.write_text(yaml.safe_dump(data))
    config = clusters.load_kubeconfig(path)

    with pytest.raises(errors.UnreachableError, match=r"cannot reach https://127\.0\.0\.1:1 "):
        connect("source", config=config).get(PROVIDER, "x", MTV_NAMESPACE)
    with pytest.raises(errors.TlsError, match="context destination"):
        connect("destination", config=config).get(PROVIDER, "x", MTV_NAMESPACE)


@pytest.mark.backends("oc", reason="the oc backend's private kubeconfig for a token client")
def test_a_token_client_keeps_its_token_in_a_private_kubeconfig_removed_on_close(
    target: Target, backend: Backend
) -> None:
    assert backend.oc_path is not None
    token = service_account_token(target, "source", "reader", cluster_role="view")
    client = oc_backend.OcKube.from_token(
        target.url("source"),
        token,
        ca_pem=target.serving_ca_pem("source"),
        context="source as reader",
        oc_path=backend.oc_path,
        timing=Timing.immediate(),
    )
    path = Path(client.kubeconfig)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert client.get(NAMESPACE, "default") is not None
    client.close()
    assert not path.parent.exists()


# -- start-up stays lazy --------------------------------------------------------------------------


def test_a_run_on_one_backend_never_imports_the_other(target: Target, backend: Backend) -> None:
    used, absent = (
        ("kubernetes", "openshift_client")
        if backend.oc_path is None
        else ("openshift_client", "kubernetes")
    )
    args = ["status", "--host", "mtv", "--kubeconfig", str(target.kubeconfig), "-o", "json"]
    args += backend.flags
    probe = (
        "import json, sys\n"
        "from mtv_register.cli import app\n"
        f"try:\n    app({args!r})\n"
        "except SystemExit as done:\n"
        f"    assert (done.code or 0) == {target.status_exit}, done.code\n"
        "loaded = sorted({name.split('.')[0] for name in sys.modules})\n"
        "print(json.dumps(loaded), file=sys.stderr)\n"
    )

    ran = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )

    assert ran.returncode == 0, ran.stderr[-2000:]
    loaded = json.loads(ran.stderr.strip().splitlines()[-1])
    assert json.loads(ran.stdout)["namespace"] == MTV_NAMESPACE  # it did run
    assert absent not in loaded
    assert used in loaded
