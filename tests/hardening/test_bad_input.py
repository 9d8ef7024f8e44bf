"""Bad input through the CLI: every case ends with a documented, non-zero exit code, one line on
stderr that names the cause and the fix, no traceback, no token, and nothing written on any
cluster (or, where the run had begun writing when it met the cause, everything it wrote removed
again, so every cluster holds exactly the objects it held before)."""

from __future__ import annotations

import datetime as dt
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from mtv_register import manifests
from mtv_register.cli import app
from mtv_register.clusters import Connector, load_kubeconfig
from mtv_register.errors import EXIT_CODES
from mtv_register.kube import Kind
from mtv_register.orchestrator import register_pair
from mtv_register.sandbox import Sandbox
from mtv_register.sandbox.certs import new_ca
from tests.hardening import figures
from tests.hardening.matrix import marks, objects, options
from tests.integration.conftest import assert_no_token_in_any_form

FAILURE_CODES = set(EXIT_CODES.values()) - {0}
CRD = Kind(
    "apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False
)
READ_EVERYTHING = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]


@dataclass
class World:
    sandbox: Sandbox
    kubeconfig: Path
    tmp: Path

    def edit_kubeconfig(self, edit: Callable[[dict[str, Any]], None]) -> None:
        config = yaml.safe_load(self.kubeconfig.read_text())
        edit(config)
        self.kubeconfig.write_text(yaml.safe_dump(config))

    def add_context(self, name: str, cluster: str, *, server: str = "", token: str = "") -> None:
        """A context `name` on `cluster`'s entry (or another `server`), as its admin or `token`."""

        def edit(config: dict[str, Any]) -> None:
            entry = dict(next(c["cluster"] for c in config["clusters"] if c["name"] == cluster))
            if server:
                entry["server"] = server
            config["clusters"].append({"name": name, "cluster": entry})
            user = f"{cluster}-admin"
            if token:
                user = name
                config["users"].append({"name": name, "user": {"token": token}})
            config["contexts"].append({"name": name, "context": {"cluster": name, "user": user}})

        self.edit_kubeconfig(edit)

    def file(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path

    def register(self, *extra: str, host: str = "mtv") -> list[str]:
        return [
            "register",
            "--source",
            "source",
            "--destination",
            "destination",
            "--host",
            host,
            "--kubeconfig",
            str(self.kubeconfig),
            "--yes",
            *extra,
        ]

    def on_host(self, command: str, *extra: str) -> list[str]:
        return [command, "--host", "mtv", "--kubeconfig", str(self.kubeconfig), *extra]


@dataclass(frozen=True)
class Case:
    code: int
    cause: str  # words the cause must hold
    fix: str  # words the fix must hold
    prepare: Callable[[World], list[str]]  # makes the bad input, returns the command line
    rolls_back: bool = False  # meets the cause mid-way by design: it removes what it wrote


# -- the bad inputs --------------------------------------------------------------------------------


def _unknown_context(w: World) -> list[str]:
    return w.register("--source", "nowhere")


def _missing_kubeconfig(w: World) -> list[str]:
    return [*w.register(), "--kubeconfig", str(w.tmp / "absent")]


def _kubeconfig_not_yaml(w: World) -> list[str]:
    path = w.file("broken", "apiVersion: v1\ncontexts: [\n  - name: a\n    : {\n")
    return [*w.register(), "--kubeconfig", str(path)]


def _kubeconfig_without_contexts(w: World) -> list[str]:
    path = w.file("empty", "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\n")
    return [*w.register(), "--kubeconfig", str(path)]


def _kubeconfig_a_directory(w: World) -> list[str]:
    return [*w.register(), "--kubeconfig", str(w.tmp)]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _unreachable_server(w: World) -> list[str]:
    w.add_context("dead", "source", server=f"https://127.0.0.1:{_closed_port()}")
    return w.register("--source", "dead")


def _ca_of_another_cluster(w: World) -> list[str]:
    other = w.file("other.pem", w.sandbox["destination"].root_ca_pem)
    return w.register("--ca-source", f"file:{other}")


def _expired_ca(w: World) -> list[str]:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    expired = new_ca("expired-ca", not_before=start, valid_for=dt.timedelta(days=1))
    return w.register("--ca-source", f"file:{w.file('expired.pem', expired.pem)}")


def _ca_not_pem(w: World) -> list[str]:
    not_pem = w.file("ca.txt", "not a certificate\n")
    return w.register("--ca-source", f"file:{not_pem}")


def _ca_file_missing(w: World) -> list[str]:
    return w.register("--ca-source", f"file:{w.tmp / 'absent.pem'}")


def _ca_file_and_insecure(w: World) -> list[str]:
    ca = w.file("source.pem", w.sandbox["source"].root_ca_pem)
    return w.register("--ca-source", f"file:{ca}", "--insecure-skip-tls-verify")


def _unknown_ca_source(w: World) -> list[str]:
    return w.register("--ca-source", "somewhere")


def _url_not_https(w: World) -> list[str]:
    return w.register("--source-url", w.sandbox["source"].url.replace("https:", "http:"))


def _forklift_crd_deleted(w: World) -> list[str]:
    admin = Connector().connect(load_kubeconfig(w.kubeconfig), "mtv")
    try:
        admin.delete(CRD, "providers.forklift.konveyor.io")
    finally:
        admin.close()
    host = w.sandbox["mtv"].cluster
    _wait_for(
        lambda: host.registry.lookup("forklift.konveyor.io", "v1beta1", "providers") is None,
        "the Provider API to be gone",
    )
    return w.register()


def _host_without_forklift(w: World) -> list[str]:
    return w.register(host="destination")


def _mtv_namespace_missing(w: World) -> list[str]:
    return w.register("--mtv-namespace", "nope")


def _limited_user(w: World, cluster: str, rules: list[dict[str, Any]] | None) -> str:
    """A context `limited` on `cluster` as a user bound to `rules` (None: no role at all)."""
    target = w.sandbox[cluster].cluster
    token = target.add_user("limited", ())
    if rules is not None:
        rbac = "rbac.authorization.k8s.io"
        target.store.create(
            target.rtype(rbac, "v1", "clusterroles"),
            {"metadata": {"name": "limited"}, "rules": rules},
        )
        target.store.create(
            target.rtype(rbac, "v1", "clusterrolebindings"),
            {
                "metadata": {"name": "limited"},
                "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "limited"},
                "subjects": [{"apiGroup": rbac, "kind": "User", "name": "limited"}],
            },
        )
    w.add_context("limited", cluster, token=token)
    return "limited"


def _user_without_any_role(w: World) -> list[str]:
    return w.register("--source", _limited_user(w, "source", None))


def _user_who_may_only_read(w: World) -> list[str]:
    # Reads pass (the CA, the ClusterRole's absence); the first create is refused, while the
    # destination, with an admin, is bootstrapped meanwhile.
    return w.register("--source", _limited_user(w, "source", READ_EVERYTHING))


def _bound_token_user_who_may_only_read(w: World) -> list[str]:
    # As above, and the destination also gets the Role that lets its account renew its token.
    return [*_user_who_may_only_read(w), "--token-type", "bound"]


def _host_user_who_may_only_read(w: World) -> list[str]:
    # Both clusters are bootstrapped before the host refuses the provider Secret.
    return w.register(host=_limited_user(w, "mtv", READ_EVERYTHING))


def _refused_credentials(w: World) -> list[str]:
    w.add_context("stale", "source", token="a-token-no-cluster-issued")
    return w.register("--source", "stale")


def _cluster_role_on_one_side_only(w: World) -> list[str]:
    target = w.sandbox["destination"].cluster
    target.store.create(
        target.rtype("rbac.authorization.k8s.io", "v1", "clusterroles"),
        {"metadata": {"name": "mine"}, "rules": manifests.SEED_CLUSTER_ROLE_RULES},
    )
    return w.register("--cluster-role", "mine")


def _invalid_provider_name(w: World) -> list[str]:
    return w.register("--source-name", "Bad_Name")


def _source_is_destination(w: World) -> list[str]:
    return w.register("--destination", "source")


def _provider_name_taken(w: World) -> list[str]:
    register_pair(options(w.kubeconfig, source_name="x"))  # `x` registers the source's URL
    return [
        *w.register("--source-name", "x"),
        "--source",
        "destination",
        "--destination",
        "source",
    ]


def _zero_timeout(w: World) -> list[str]:
    return w.register("--timeout", "0s")


def _negative_timeout(w: World) -> list[str]:
    return w.register("--timeout", "-5s")


def _unparseable_timeout(w: World) -> list[str]:
    return w.register("--timeout", "soon")


def _rotate_max_age_not_a_duration(w: World) -> list[str]:
    return w.on_host("rotate", "--all", "--max-age", "abc")


def _rotate_neither_provider_nor_all(w: World) -> list[str]:
    return w.on_host("rotate")


def _rotate_provider_and_all(w: World) -> list[str]:
    return w.on_host("rotate", "--all", "--provider", "source")


def _rotate_unknown_provider(w: World) -> list[str]:
    return w.on_host("rotate", "--provider", "nope")


def _rotate_zero_timeout(w: World) -> list[str]:
    return w.on_host("rotate", "--all", "--timeout", "0s")


def _rotate_unknown_recovery_context(w: World) -> list[str]:
    return w.on_host("rotate", "--all", "--source-context", "nowhere")


def _schedule_not_cron(w: World) -> list[str]:
    return w.on_host(
        "schedule", "--every", "not cron", "--max-age", "30d", "--image", "quay.io/x/y:1"
    )


def _schedule_max_age_not_a_duration(w: World) -> list[str]:
    return w.on_host("schedule", "--every", "@daily", "--max-age", "a month", "--image", "i:1")


def _status_remote_not_a_pair(w: World) -> list[str]:
    return w.on_host("status", "--remote", "bad")


def _status_unknown_host(w: World) -> list[str]:
    return ["status", "--host", "nowhere", "--kubeconfig", str(w.kubeconfig)]


def _status_remote_unknown_context(w: World) -> list[str]:
    return w.on_host("status", "--remote", "source=nowhere")


def _unregister_same_context(w: World) -> list[str]:
    return [
        "unregister",
        "--source",
        "source",
        "--destination",
        "source",
        "--host",
        "mtv",
        "--kubeconfig",
        str(w.kubeconfig),
        "--yes",
    ]


def _unregister_unknown_context(w: World) -> list[str]:
    return [
        "unregister",
        "--source",
        "nowhere",
        "--destination",
        "destination",
        "--host",
        "mtv",
        "--kubeconfig",
        str(w.kubeconfig),
        "--yes",
    ]


CASES: dict[str, Case] = {
    "unknown context": Case(3, 'context "nowhere" is not in', "use one of", _unknown_context),
    "missing kubeconfig file": Case(3, "does not exist", "--kubeconfig", _missing_kubeconfig),
    "kubeconfig not YAML": Case(3, "is not valid YAML", "repair the file", _kubeconfig_not_yaml),
    "kubeconfig without contexts": Case(
        3, "has no contexts", "kubeconfig with contexts", _kubeconfig_without_contexts
    ),
    "kubeconfig is a directory": Case(3, "is a directory", "--kubeconfig", _kubeconfig_a_directory),
    "unreachable server": Case(
        4, "cannot reach https://127.0.0.1:", "cluster is up", _unreachable_server
    ),
    "CA of another cluster": Case(
        5, "does not verify", "--ca-source file:", _ca_of_another_cluster
    ),
    "expired CA": Case(5, "expired on", "renew the cluster CA", _expired_ca),
    "CA file not PEM": Case(2, "is not a PEM certificate", "give a PEM file", _ca_not_pem),
    "CA file missing": Case(2, "cannot be read", "readable PEM file", _ca_file_missing),
    "CA file with --insecure-skip-tls-verify": Case(
        2, "--insecure-skip-tls-verify cannot be used", "drop one", _ca_file_and_insecure
    ),
    "unknown --ca-source": Case(2, '"somewhere" is not known', "file:PATH", _unknown_ca_source),
    "API URL not https": Case(2, "is not an https:// URL", "API server URL", _url_not_https),
    "Forklift CRD deleted": Case(
        6, "Forklift is not installed on mtv", "install the MTV operator", _forklift_crd_deleted
    ),
    "host without Forklift": Case(
        6, "Forklift is not installed on destination", "right --host", _host_without_forklift
    ),
    "MTV namespace missing": Case(
        6, 'namespace "nope" does not exist', "--mtv-namespace", _mtv_namespace_missing
    ),
    "user without any role": Case(7, 'User "limited"', "permissions", _user_without_any_role),
    "user who may not create ClusterRoles": Case(
        7, 'User "limited" cannot create', "permissions", _user_who_may_only_read, True
    ),
    "bound tokens, user who may not create ClusterRoles": Case(
        7, 'User "limited" cannot create', "permissions", _bound_token_user_who_may_only_read, True
    ),
    "host user who may not create Secrets": Case(
        7, 'User "limited" cannot create', "permissions", _host_user_who_may_only_read, True
    ),
    "credentials refused": Case(8, "refused the credentials", "log in", _refused_credentials),
    "--cluster-role on one cluster only": Case(
        6,
        'ClusterRole "mine" does not exist on source',
        "create it first",
        _cluster_role_on_one_side_only,
        True,
    ),
    "invalid Provider name": Case(
        2, '--source-name "Bad_Name" is not a valid name', "lower-case", _invalid_provider_name
    ),
    "source equals destination": Case(
        2, "are the same context", "two different contexts", _source_is_destination
    ),
    "Provider name taken for another URL": Case(
        6, 'Provider "x" on mtv already registers', "choose another name", _provider_name_taken
    ),
    "zero --timeout": Case(2, "--timeout must be more than 0s", "positive", _zero_timeout),
    "negative --timeout": Case(2, "must not be negative", "like 90s", _negative_timeout),
    "unparseable --timeout": Case(2, 'invalid duration "soon"', "like 90s", _unparseable_timeout),
    "rotate --max-age abc": Case(
        2, 'invalid duration "abc"', "like 90s", _rotate_max_age_not_a_duration
    ),
    "rotate with neither --provider nor --all": Case(
        2, "say which Providers", "--provider NAME", _rotate_neither_provider_nor_all
    ),
    "rotate with --provider and --all": Case(
        2, "say which Providers", "not both", _rotate_provider_and_all
    ),
    "rotate --provider nope": Case(2, "no Provider nope", "pick from", _rotate_unknown_provider),
    "rotate zero --timeout": Case(
        2, "--timeout must be more than 0s", "positive", _rotate_zero_timeout
    ),
    "rotate unknown --source-context": Case(
        3, 'context "nowhere" is not in', "use one of", _rotate_unknown_recovery_context
    ),
    'schedule --every "not cron"': Case(
        2, '"not cron" is not a cron schedule', "five fields", _schedule_not_cron
    ),
    "schedule --max-age not a duration": Case(
        2, 'invalid duration "a month"', "like 90s", _schedule_max_age_not_a_duration
    ),
    "status --remote bad": Case(
        2, '--remote "bad" is not PROVIDER=CONTEXT', "--remote source=", _status_remote_not_a_pair
    ),
    "status unknown --host": Case(
        3, 'context "nowhere" is not in', "use one of", _status_unknown_host
    ),
    "status --remote unknown context": Case(
        3, 'context "nowhere" is not in', "use one of", _status_remote_unknown_context
    ),
    "unregister source equals destination": Case(
        2, "are the same context", "two different contexts", _unregister_same_context
    ),
    "unregister unknown context": Case(
        3, 'context "nowhere" is not in', "use one of", _unregister_unknown_context
    ),
}


# -- the contract ----------------------------------------------------------------------------------


def _wait_for(predicate: Callable[[], Any], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.02)


def _run(args: list[str]) -> Result:
    return CliRunner().invoke(app, args)


def _output_problems(result: Result, case: Case) -> list[str]:
    problems = []
    if result.exit_code != case.code or result.exit_code not in FAILURE_CODES:
        problems.append(f"exit code {result.exit_code}, not {case.code}")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        problems.append(f"escaped: {type(result.exception).__name__}")
    both = result.stdout + result.stderr
    if "Traceback" in both:
        problems.append("a traceback")
    try:
        assert_no_token_in_any_form(both)
    except AssertionError as leak:
        problems.append(str(leak))
    # Progress lines (indented) may precede the failure; apart from them, one line is said.
    said = [line for line in result.stderr.splitlines() if line and not line.startswith("  ")]
    if len(said) != 1:
        return [*problems, f"{len(said)} lines on stderr: {said}"]
    line = said[0]
    if result.stderr.rstrip().splitlines()[-1] != line or not line.startswith("error: "):
        problems.append(f"not an error line last: {line!r}")
    if case.cause not in line:
        problems.append(f"the cause {case.cause!r} is not in {line!r}")
    elif case.fix not in line.split(case.cause, 1)[1]:
        problems.append(f"no fix {case.fix!r} after the cause in {line!r}")
    return problems


def _written(sandbox: Sandbox, since: dict[str, int]) -> dict[str, list[str]]:
    return {
        context: [
            f"{event['verb']} {event['requestURI']}"
            for event in sc.cluster.audit.mutating(since[context])
        ]
        for context, sc in sandbox.clusters.items()
        if sc.cluster.audit.mutating(since[context])
    }


def _changed(before: dict[str, Counter[str]], sandbox: Sandbox) -> dict[str, Any]:
    after = objects(sandbox)
    return {
        context: {"added": sorted(after[context] - counts), "gone": sorted(counts - after[context])}
        for context, counts in before.items()
        if after[context] != counts
    }


def _world_problems(case: Case, sandbox: Sandbox, since: dict[str, int], before: Any) -> list[str]:
    if not case.rolls_back:
        written = _written(sandbox, since)
        return [f"mutating requests: {written}"] if written else []
    try:  # a rollback's namespace deletion finishes in the background, as on a real cluster
        _wait_for(lambda: not _changed(before, sandbox), "the rollback to complete")
    except AssertionError:
        return [f"not rolled back: {_changed(before, sandbox)}"]
    return []


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_fails_with_one_line_and_writes_nothing(
    name: str, sandbox: Sandbox, kubeconfig: Path, tmp_path: Path
) -> None:
    case = CASES[name]
    args = case.prepare(World(sandbox, kubeconfig, tmp_path))
    since, before = marks(sandbox), objects(sandbox)

    result = _run(args)

    problems = _output_problems(result, case) + _world_problems(case, sandbox, since, before)
    figures.record("bad input", not problems, f"{name}: {'; '.join(problems)}")
    assert not problems, f"{name}: {problems}\nstderr: {result.stderr}"


def test_rotate_max_age_0s_is_valid_and_rotates_now(
    sandbox: Sandbox, kubeconfig: Path, tmp_path: Path
) -> None:
    register_pair(options(kubeconfig))
    world = World(sandbox, kubeconfig, tmp_path)

    result = _run(world.on_host("rotate", "--all", "--max-age", "0s"))

    assert_no_token_in_any_form(result.stdout + result.stderr)
    # A valid input, so not counted among the bad inputs of the reliability report.
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Provider destination rotated",
        "Provider source rotated",
    ]
