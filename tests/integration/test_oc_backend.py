"""`--client oc` against the sandbox, with the real kubectl as its binary: the core flows give the
same results as the default backend (each such test runs on both), every command names its
context and carries no token, `--explain` prints them as a runbook, and each backend starts
without importing the other's client library."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from mtv_register import clusters, errors, manifests, oc_backend
from mtv_register.kube import (
    CONFIG_MAP,
    NAMESPACE,
    PROVIDER,
    SECRET,
    USER_AGENT,
    AlreadyExists,
    Conflict,
    Invalid,
    Kube,
    RetryPolicy,
)
from mtv_register.sandbox import MTV_NAMESPACE, Sandbox
from tests.conftest import SandboxFactory
from tests.integration._rotation_support import (
    PROVIDERS,
    fast_waits,
    health,
    provider_secret,
    provider_token,
    referenced_token_secret,
)
from tests.integration.conftest import (
    CliRun,
    assert_no_mutation,
    assert_no_token_in_any_form,
    marks,
    register_args,
    settle_forklift,
    snapshot,
    snapshot_difference,
    wait_for,
)

BACKENDS = ("kubernetes", "oc")
Obj = dict[str, Any]


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fast_waits(monkeypatch)
    # kubectl caches discovery per host:port: a port reused by a later sandbox must not read it.
    monkeypatch.setenv("KUBECACHEDIR", str(tmp_path / "kube-cache"))


@pytest.fixture
def kubectl_path() -> str:
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.fail("kubectl is not installed: .ci/run installs it (see .ci/install-kubectl)")
    return binary


@pytest.fixture
def argv_log(tmp_path: Path) -> Path:
    """One file per command the wrapper ran, holding its argv NUL-separated."""
    folder = tmp_path / "argv"
    folder.mkdir()
    return folder


@pytest.fixture
def wrapper(tmp_path: Path, kubectl_path: str, argv_log: Path) -> Path:
    """A stand-in for `oc` that logs its argv (what `ps` shows to every user of the machine),
    then runs the real kubectl."""
    script = tmp_path / "kubectl-logging"
    script.write_text(
        f"#!/bin/sh\nprintf '%s\\0' \"$@\" > '{argv_log}/'$$\nexec '{kubectl_path}' \"$@\"\n"
    )
    script.chmod(0o755)
    return script


def logged_commands(argv_log: Path) -> list[list[str]]:
    return [path.read_text().rstrip("\0").split("\0") for path in argv_log.iterdir()]


def logged_text(argv_log: Path) -> str:
    return "\n".join(" ".join(argv) for argv in logged_commands(argv_log))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, wrapper: Path) -> list[str]:
    """The CLI flags that select each backend; the oc one runs kubectl through `wrapper`."""
    return [] if request.param == "kubernetes" else ["--client", "oc", "--oc-path", str(wrapper)]


def user_agents_since(sandbox: Sandbox, since: dict[str, int]) -> set[str]:
    return {
        event["userAgent"].split("/")[0]
        for context, sc in sandbox.clusters.items()
        for event in sc.cluster.audit.since(since[context])
        if not event["userAgent"].startswith("forklift-controller")
    }


def assert_spoken_by(sandbox: Sandbox, since: dict[str, int], flags: list[str]) -> None:
    """Every request of the run came from the chosen backend, none from the other."""
    agents = user_agents_since(sandbox, since)
    if flags:
        assert agents <= {"kubectl", "kubectl-dispatcher"} and "kubectl" in agents, agents
    else:
        assert agents == {USER_AGENT.split("/")[0]}, agents


# -- the core flows, on both backends -------------------------------------------------------------


def test_register_on_a_separate_host_then_a_rerun_changes_nothing(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun, backend: list[str]
) -> None:
    since = marks(sandbox)
    first = cli(*register_args(kubeconfig, "--yes", *backend))

    assert first.exit_code == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"Provider {MTV_NAMESPACE}/source (source, source) Ready on mtv",
        f"Provider {MTV_NAMESPACE}/destination (destination, destination) Ready on mtv",
        "pair registered",
    ]
    assert_spoken_by(sandbox, since, backend)
    assert all(not health(sandbox, provider) for provider in PROVIDERS)

    since = marks(sandbox)
    again = cli(*register_args(kubeconfig, "--yes", *backend))

    assert again.exit_code == 0, again.stderr
    assert again.stdout.splitlines()[-1] == "pair already registered, nothing changed"
    assert_no_mutation(sandbox, since)


def test_register_with_bound_tokens_asks_the_token_request_api(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun, backend: list[str]
) -> None:
    since = marks(sandbox)

    result = cli(*register_args(kubeconfig, "--yes", "--token-type", "bound", *backend))

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "pair registered"
    for context in PROVIDERS:
        requests = [
            event["verb"]
            for event in sandbox[context].cluster.audit.since(since[context])
            if event["requestURI"].startswith(
                "/api/v1/namespaces/mtv-register/serviceaccounts/mtv-provider/token"
            )
        ]
        assert requests == ["create"]
        expires = provider_secret(sandbox, context)["metadata"]["annotations"][
            manifests.TOKEN_EXPIRES_ANNOTATION
        ]
        left = dt.datetime.strptime(expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC) - (
            dt.datetime.now(dt.UTC)
        )
        assert dt.timedelta(hours=23) < left <= dt.timedelta(hours=24)  # the TTL asked for
    assert_spoken_by(sandbox, since, backend)


def test_status_reports_every_provider(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun, backend: list[str]
) -> None:
    assert cli(*register_args(kubeconfig, "--yes")).exit_code == 0
    settle_forklift(sandbox)
    since = marks(sandbox)

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
        *backend,
    )

    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    rows = {row["name"]: row for row in report["providers"]}
    assert (report["host"], report["namespace"]) == ("mtv", MTV_NAMESPACE)
    assert {name: row["ready"] for name, row in rows.items()} == {
        "host": True,
        "source": True,
        "destination": True,
    }
    assert rows["source"]["url"] == sandbox["source"].url
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
    assert_no_mutation(sandbox, since)
    assert_spoken_by(sandbox, since, backend)


def test_rotate_all_switches_every_provider_to_a_new_token_and_revokes_the_old(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun, backend: list[str]
) -> None:
    assert cli(*register_args(kubeconfig, "--yes")).exit_code == 0
    before = {provider: provider_token(sandbox, provider) for provider in PROVIDERS}
    since = marks(sandbox)

    result = cli(
        "rotate",
        "--host",
        "mtv",
        "--kubeconfig",
        str(kubeconfig),
        "--all",
        "--max-age",
        "0s",
        *backend,
    )

    assert result.exit_code == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == [
        "Provider destination rotated",
        "Provider source rotated",
    ]
    for provider in PROVIDERS:
        assert provider_token(sandbox, provider) != before[provider]
        assert referenced_token_secret(sandbox, provider) != "mtv-provider-token"
        assert sandbox[provider].cluster.authenticate(before[provider]) is None  # revoked
        assert health(sandbox, provider) == ""
    assert_spoken_by(sandbox, since, backend)


def test_unregister_leaves_every_cluster_as_it_was(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun, backend: list[str]
) -> None:
    settle_forklift(sandbox)
    before = snapshot(sandbox)
    assert cli(*register_args(kubeconfig, "--yes")).exit_code == 0
    since = marks(sandbox)

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
        *backend,
    )

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "pair unregistered"
    settle_forklift(sandbox)
    wait_for(
        lambda: not snapshot_difference(before, snapshot(sandbox)),
        what="every cluster to be as before register",
    )
    assert_spoken_by(sandbox, since, backend)


# -- what only the oc backend promises ------------------------------------------------------------


def test_no_command_carries_a_token_and_each_names_its_kubeconfig_and_context(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun, wrapper: Path, argv_log: Path
) -> None:
    oc = ["--client", "oc", "--oc-path", str(wrapper)]
    users_kubeconfig = kubeconfig.read_bytes()
    assert cli(*register_args(kubeconfig, "--yes", *oc)).exit_code == 0
    rotated = cli(
        "rotate", "--host", "mtv", "--kubeconfig", str(kubeconfig), "--all", "--max-age", "0s", *oc
    )
    assert rotated.exit_code == 0, rotated.stderr

    commands = logged_commands(argv_log)
    assert len(commands) > 20
    assert_no_token_in_any_form(logged_text(argv_log))
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
        if arg.startswith("--kubeconfig=") and oc_backend.TOKEN_KUBECONFIG_PREFIX in arg
    }
    assert token_kubeconfigs, "the service accounts' own clients ran no command"
    assert not [path for path in token_kubeconfigs if os.path.exists(path)], "left on disk"
    assert {arg for argv in commands for arg in argv if arg.startswith("--context=")} >= {
        "--context=source",
        "--context=destination",
        "--context=mtv",
    }
    assert kubeconfig.read_bytes() == users_kubeconfig  # its current context never switched


def test_explain_prints_the_commands_as_a_runbook_after_the_result(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun, wrapper: Path, argv_log: Path
) -> None:
    result = cli(
        *register_args(kubeconfig, "--yes", "--client", "oc", "--oc-path", str(wrapper)),
        "--explain",
    )

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[2] == "pair registered"
    runbook = [line for line in lines[3:] if not line.startswith("#")]
    assert lines[3].startswith("# mtv-register ran these ")
    assert len(runbook) == len(logged_commands(argv_log))  # every command, once
    assert all(line.startswith(f"{wrapper} ") for line in runbook)
    assert all(" --context=" in line for line in runbook)
    assert any(
        "create" in line and "# stdin: Secret openshift-mtv/source-credentials" in line
        for line in runbook
    )
    assert any(oc_backend.TOKEN_KUBECONFIG_PREFIX in line for line in runbook)
    assert_no_token_in_any_form(result.stdout + result.stderr)


def test_explain_with_json_output_goes_to_stderr_and_shows_a_failure(
    sandbox: Sandbox, kubeconfig: Path, cli: CliRun, wrapper: Path
) -> None:
    sandbox["mtv"].cluster.faults.inject("list", "/providers", status=403, count=100)

    result = cli(
        "status",
        *("--host", "mtv", "--kubeconfig", str(kubeconfig), "-o", "json"),
        *("--client", "oc", "--oc-path", str(wrapper), "--explain"),
    )

    assert result.exit_code == errors.PermissionDenied.exit_code
    assert result.stdout == ""
    assert "# mtv-register ran these " in result.stderr
    assert "# exit 1: Forbidden" in result.stderr  # the runbook shows where it stopped


def test_oc_only_flags_are_refused_with_the_default_client(kubeconfig: Path, cli: CliRun) -> None:
    for flag in (["--explain"], ["--oc-path", "kubectl"]):
        result = cli("status", "--host", "mtv", "--kubeconfig", str(kubeconfig), *flag)

        assert result.exit_code == errors.UsageError.exit_code
        assert "needs --client oc" in result.stderr


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


def test_in_cluster_rotation_runs_with_the_pods_token_file(
    sandbox: Sandbox,
    kubeconfig: Path,
    cli: CliRun,
    wrapper: Path,
    argv_log: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert cli(*register_args(kubeconfig, "--yes")).exit_code == 0
    folder = tmp_path / "serviceaccount"
    folder.mkdir()
    (folder / "token").write_text(sandbox["mtv"].admin_token)
    (folder / "ca.crt").write_text(sandbox["mtv"].serving_ca_pem)
    monkeypatch.setenv("MTV_REGISTER_SERVICEACCOUNT_DIR", str(folder))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(urlsplit(sandbox["mtv"].url).port))

    result = cli(
        *("rotate", "--in-cluster", "--mtv-namespace", MTV_NAMESPACE, "--all", "--max-age", "0s"),
        *("--client", "oc", "--oc-path", str(wrapper)),
    )

    assert result.exit_code == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == [
        "Provider destination rotated",
        "Provider source rotated",
    ]
    assert any("--context=in-cluster" in argv for argv in logged_commands(argv_log))
    assert_no_token_in_any_form(logged_text(argv_log))


# -- one door, two implementations: the same answers and the same errors --------------------------

Connect = Callable[..., Kube]


@pytest.fixture(params=BACKENDS)
def connect(
    request: pytest.FixtureRequest, kubeconfig: Path, kubectl_path: str
) -> Iterator[Connect]:
    config = clusters.load_kubeconfig(kubeconfig)
    opened: list[Kube] = []

    def open_client(context: str = "source", **overrides: Any) -> Kube:
        client = clusters.connect(
            overrides.pop("config", config),
            context,
            retry=RetryPolicy.immediate(),
            backend=request.param,
            oc_path=kubectl_path,
        )
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
    ("fault", "expected"),
    [
        ({"status": 403}, errors.PermissionDenied),
        ({"status": 401}, errors.AuthenticationFailed),
        ({"status": 500, "count": 100}, errors.MtvRegisterError),
    ],
)
def test_both_backends_raise_the_same_error_for_the_same_answer(
    sandbox: Sandbox, connect: Connect, fault: dict[str, Any], expected: type[Exception]
) -> None:
    sandbox["source"].cluster.faults.inject("get", "/secrets/x$", **fault)

    with pytest.raises(expected) as raised:
        connect().get(SECRET, "x", "default")

    assert type(raised.value) is expected  # not a subclass standing in for it


def test_both_backends_retry_a_transient_failure_until_it_passes(
    sandbox: Sandbox, connect: Connect
) -> None:
    fault = sandbox["source"].cluster.faults.inject("get", "/secrets/x$", status=503, count=2)

    assert connect().get(SECRET, "x", "default") is None

    assert fault.hits == 2


def test_both_backends_retry_a_dropped_connection(sandbox: Sandbox, connect: Connect) -> None:
    fault = sandbox["source"].cluster.faults.inject("get", "/secrets/x$", drop=True, count=2)

    assert connect().get(SECRET, "x", "default") is None

    assert fault.hits == 2


def test_both_backends_say_forklift_is_missing_the_same_way(
    make_sandbox: SandboxFactory, connect: Connect, tmp_path: Path
) -> None:
    from mtv_register import forklift

    plain = make_sandbox(mtv_on="destination")
    config = clusters.load_kubeconfig(plain.write_kubeconfig(tmp_path / "plain"))

    with pytest.raises(errors.PreflightError, match="Forklift is not installed on source"):
        forklift.list_providers(connect("source", config=config), MTV_NAMESPACE)


def test_both_backends_name_an_unreachable_server_and_a_wrong_ca(
    sandbox: Sandbox, connect: Connect, tmp_path: Path
) -> None:
    data = sandbox.kubeconfig()
    entries = {c["name"]: c["cluster"] for c in data["clusters"]}
    entries["source"]["server"] = "https://127.0.0.1:1"
    entries["destination"]["certificate-authority-data"] = entries["mtv"][
        "certificate-authority-data"
    ]
    path = tmp_path / "broken"
    path.write_text(yaml.safe_dump(data))
    config = clusters.load_kubeconfig(path)

    with pytest.raises(errors.UnreachableError, match=r"cannot reach https://127\.0\.0\.1:1 "):
        connect("source", config=config).get(PROVIDER, "x", MTV_NAMESPACE)
    with pytest.raises(errors.TlsError, match="context destination"):
        connect("destination", config=config).get(PROVIDER, "x", MTV_NAMESPACE)


def test_a_token_client_keeps_its_token_in_a_private_kubeconfig_removed_on_close(
    sandbox: Sandbox, kubectl_path: str
) -> None:
    client = oc_backend.client_class(kubectl_path).from_token(
        sandbox["source"].url,
        sandbox["source"].admin_token,
        ca_pem=sandbox["source"].serving_ca_pem,
        context="source as admin",
        retry=RetryPolicy.immediate(),
    )
    path = Path(client.kubeconfig)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert client.get(NAMESPACE, "default") is not None
    client.close()
    assert not path.parent.exists()


# -- start-up stays lazy --------------------------------------------------------------------------


@pytest.mark.parametrize(("flags", "absent"), [((), "openshift_client"), (("oc",), "kubernetes")])
def test_a_run_on_one_backend_never_imports_the_other(
    sandbox: Sandbox, kubeconfig: Path, kubectl_path: str, flags: tuple[str, ...], absent: str
) -> None:
    args = ["status", "--host", "mtv", "--kubeconfig", str(kubeconfig), "-o", "json"]
    if flags:
        args += ["--client", "oc", "--oc-path", kubectl_path]
    probe = (
        "import json, sys\n"
        "from mtv_register.cli import app\n"
        f"try:\n    app({args!r})\n"
        "except SystemExit as done:\n    assert not done.code, done.code\n"
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
    assert ("kubernetes" if absent == "openshift_client" else "openshift_client") in loaded
