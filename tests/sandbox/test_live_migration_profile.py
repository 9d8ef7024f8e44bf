"""The prerequisites of cross-cluster live migration on the sandbox, as `doctor` reads them:
healthy on every cluster by default, each break breaking exactly what it names on exactly its
context, the HCO and forklift operator imitation carrying a fix through, and the CRDs served
here the same as the real stack's (kind-config/crds).

Everything is read and written through the API with the official `kubernetes` client.
"""

from __future__ import annotations

import ipaddress
import json
import os
import selectors
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from cryptography import x509
from kubernetes.client import ApiClient
from typer.testing import CliRunner

from mtv_register.cli import app
from mtv_register.sandbox import BREAKS, Sandbox
from mtv_register.sandbox.mtv.profile import (
    CA_BUNDLE_KEY,
    FORKLIFT_CRDS,
    VIRTUALIZATION_CRDS,
    breakable_objects,
)
from tests.conftest import SandboxFactory

Obj = dict[str, Any]
CNV = "openshift-cnv"
MTV = "openshift-mtv"
GATE = "DecentralizedLiveMigration"
FLAG = "FEATURE_OCP_LIVE_MIGRATION"
CRDS = Path(__file__).resolve().parents[2] / "kind-config" / "crds"
FORKLIFT = ("forklift.konveyor.io", "v1beta1")
CSV = ("operators.coreos.com", "v1alpha1", "clusterserviceversions")
NAD = ("k8s.cni.cncf.io", "v1", "network-attachment-definitions")
# What `doctor` reads, by a short name: (group, version, plural, namespace, name).
WHERE = {
    "hco": ("hco.kubevirt.io", "v1beta1", "hyperconvergeds", CNV, "kubevirt-hyperconverged"),
    "kubevirt": ("kubevirt.io", "v1", "kubevirts", CNV, "kubevirt-kubevirt-hyperconverged"),
    "kubevirt-ca": ("", "v1", "configmaps", CNV, "kubevirt-ca"),
    "external-ca": ("", "v1", "configmaps", CNV, "kubevirt-external-ca"),
    "nad": (*NAD, CNV, "migration-network"),
    "controller": (*FORKLIFT, "forkliftcontrollers", MTV, "forklift-controller"),
    "deployment": ("apps", "v1", "deployments", MTV, "forklift-controller"),
    "csv": (*CSV, MTV, "mtv-operator.v2.12.5"),
    "old-csv": (*CSV, MTV, "mtv-operator.v2.9.4"),
}
MTV_OBJECTS = ("controller", "deployment", "csv", "old-csv")


def client(sandbox: Sandbox, context: str) -> ApiClient:
    cluster = sandbox[context]
    configuration = kubernetes.client.Configuration(
        host=cluster.url,
        ca_cert_data=cluster.serving_ca_pem,
        api_key={"authorization": f"Bearer {cluster.admin_token}"},
    )
    return ApiClient(configuration)


def path(what: str) -> str:
    group, version, plural, namespace, name = WHERE[what]
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    return f"{base}/namespaces/{namespace}/{plural}/{name}"


def request(api: ApiClient, method: str, url: str, body: Obj | None = None) -> Obj | None:
    """One call; its JSON answer, or None for a 404."""
    media = "application/merge-patch+json" if method == "PATCH" else "application/json"
    answer = api.call_api(
        *api.param_serialize(
            method=method,
            resource_path=url,
            header_params={"Content-Type": media, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
    )
    answer.read()
    if answer.status == 404:
        return None
    assert answer.status < 300, answer.data
    return dict(json.loads(answer.data))


def read(sandbox: Sandbox, context: str, what: str) -> Obj | None:
    return request(client(sandbox, context), "GET", path(what))


def patch(sandbox: Sandbox, context: str, what: str, body: Obj) -> Obj:
    patched = request(client(sandbox, context), "PATCH", path(what), body)
    assert patched is not None
    return patched


def env_of(deployment: Obj) -> dict[str, str]:
    main = next(c for c in deployment["spec"]["template"]["spec"]["containers"])
    assert main["name"] == "main"
    return {e["name"]: e["value"] for e in main["env"]}


def gates_of(kubevirt: Obj) -> list[str]:
    return list(kubevirt["spec"]["configuration"]["developerConfiguration"]["featureGates"])


def certificates(bundle: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(bundle.encode())


def comparable(sandbox: Sandbox, context: str) -> dict[str, Obj | None]:
    """The objects of WHERE on one cluster as two sandboxes can compare them: without what the
    server stamps, and with each CA bundle as its certificates' issuers (`CN=kubevirt.io@`)."""
    seen: dict[str, Obj | None] = {}
    for what in WHERE:
        obj = read(sandbox, context, what)
        if obj is not None:
            obj["metadata"] = {
                k: v
                for k, v in obj["metadata"].items()
                if k not in ("uid", "resourceVersion", "creationTimestamp", "generation")
            }
            if CA_BUNDLE_KEY in (obj.get("data") or {}):
                # Each sandbox makes its own CAs, named after the second they were made in.
                issued = certificates(obj["data"][CA_BUNDLE_KEY])
                obj["data"][CA_BUNDLE_KEY] = [c.subject.rfc4514_string()[:15] for c in issued]
        seen[what] = obj
    return seen


@pytest.fixture
def healthy(make_sandbox: SandboxFactory) -> Sandbox:
    return make_sandbox(mtv_on="separate", forklift=False)


# -- healthy by default --------------------------------------------------------------------------


def test_every_cluster_holds_hyperconverged_kubevirt_its_cas_and_a_migration_network(
    healthy: Sandbox,
) -> None:
    addresses = set()
    for context in ("source", "destination", "mtv"):
        hco, kubevirt = read(healthy, context, "hco"), read(healthy, context, "kubevirt")
        assert hco is not None and kubevirt is not None, context
        assert hco["spec"]["featureGates"]["decentralizedLiveMigration"] is True
        assert hco["spec"]["liveMigrationConfig"]["network"] == "migration-network"
        assert hco["status"]["versions"] == [{"name": "operator", "version": "4.20.1"}]
        available = [c for c in hco["status"]["conditions"] if c["type"] == "Available"]
        assert [c["status"] for c in available] == ["True"]

        assert gates_of(kubevirt) == [GATE]
        assert kubevirt["spec"]["configuration"]["migrations"]["network"] == "migration-network"
        assert kubevirt["status"]["phase"] == "Deployed"
        assert kubevirt["status"]["observedKubeVirtVersion"] == "v1.6.2"
        [address] = kubevirt["status"]["synchronizationAddresses"]
        host, port = address.rsplit(":", 1)
        assert ipaddress.ip_address(host) in ipaddress.ip_network("10.128.0.0/14")
        assert port == "9185"
        addresses.add(address)

        nad = read(healthy, context, "nad")
        assert nad is not None
        config = json.loads(nad["spec"]["config"])
        assert config["name"] == "migration-network" and config["type"] == "macvlan"

        own = read(healthy, context, "kubevirt-ca")
        external = read(healthy, context, "external-ca")
        assert own is not None and external is not None
        [own_ca] = certificates(own["data"][CA_BUNDLE_KEY])
        assert own_ca.subject.rfc4514_string().startswith("CN=kubevirt.io@")
        assert own["data"][CA_BUNDLE_KEY] == healthy[context].kubevirt_ca_pem
        # The CA exchange done: each cluster trusts the others' KubeVirt CAs, not its own.
        others = {healthy[c].kubevirt_ca_pem for c in healthy.contexts if c != context}
        trusted = certificates(external["data"][CA_BUNDLE_KEY])
        assert len(trusted) == 2 and set(trusted) == {certificates(pem)[0] for pem in others}
    assert len(addresses) == 3  # one per cluster


def test_only_the_mtv_host_holds_mtv_with_live_migration_on(healthy: Sandbox) -> None:
    controller = read(healthy, "mtv", "controller")
    deployment = read(healthy, "mtv", "deployment")
    csv = read(healthy, "mtv", "csv")
    assert controller is not None and deployment is not None and csv is not None
    assert controller["spec"]["feature_ocp_live_migration"] == "true"
    assert env_of(deployment)[FLAG] == "true"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == "2.12.5"
    assert csv["spec"]["version"] == "2.12.5"
    assert csv["spec"]["displayName"] == "Migration Toolkit for Virtualization Operator"
    assert csv["status"]["phase"] == "Succeeded"
    for context in ("source", "destination"):
        assert [read(healthy, context, what) for what in MTV_OBJECTS] == [None] * 4, context


def test_the_mtv_host_imitates_the_forklift_release_it_is_given() -> None:
    placed = breakable_objects(
        cluster="mtv", kubevirt_ca="", external_ca="", forklift_version="v2.10.6"
    )
    by_plural = {plural: obj for _, _, plural, obj in placed}

    assert by_plural["clusterserviceversions"]["metadata"]["name"] == "mtv-operator.v2.10.6"
    assert by_plural["clusterserviceversions"]["spec"]["version"] == "2.10.6"
    labels = by_plural["deployments"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/version"] == "2.10.6"


# -- breaks --------------------------------------------------------------------------------------


def _no_network(seen: dict[str, Any]) -> bool:
    return (
        "network" not in seen["hco"]["spec"]["liveMigrationConfig"]
        and "network" not in seen["kubevirt"]["spec"]["configuration"]["migrations"]
        and seen["nad"] is None
    )


# break -> (its default context, the objects it changes there, what they must show)
BROKEN = {
    "feature-gate": (
        "source",
        {"hco", "kubevirt"},
        lambda seen: (
            seen["hco"]["spec"]["featureGates"]["decentralizedLiveMigration"] is False
            and gates_of(seen["kubevirt"]) == []
        ),
    ),
    "mtv-flag": (
        "mtv",
        {"controller", "deployment"},
        lambda seen: (
            seen["controller"]["spec"]["feature_ocp_live_migration"] == "false"
            and env_of(seen["deployment"])[FLAG] == "false"
        ),
    ),
    "sync-addresses": (
        "destination",
        {"kubevirt"},
        lambda seen: (
            "synchronizationAddresses" not in seen["kubevirt"]["status"]
            and seen["kubevirt"]["status"]["phase"] == "Deployed"
        ),
    ),
    "kubevirt-ca": ("source", {"kubevirt-ca"}, lambda seen: seen["kubevirt-ca"] is None),
    "migration-network": ("source", {"hco", "kubevirt", "nad"}, _no_network),
    "old-virtualization": (
        "source",
        {"hco", "kubevirt"},
        lambda seen: (
            seen["hco"]["status"]["versions"] == [{"name": "operator", "version": "4.19.3"}]
            and seen["kubevirt"]["status"]["observedKubeVirtVersion"] == "v1.5.3"
        ),
    ),
    "old-mtv": (
        "mtv",
        {"csv", "old-csv"},
        lambda seen: (
            seen["csv"] is None
            and seen["old-csv"]["spec"]["version"] == "2.9.4"
            and seen["old-csv"]["status"]["phase"] == "Succeeded"
        ),
    ),
}


def test_every_break_is_tested_here() -> None:
    assert set(BROKEN) == set(BREAKS)
    assert {name: BROKEN[name][0] for name in BROKEN} == {
        name: {"source": "source", "destination": "destination", "mtv-host": "mtv"}[b.default]
        for name, b in BREAKS.items()
    }


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_break_changes_what_it_names_on_its_default_context_only(
    healthy: Sandbox, make_sandbox: SandboxFactory, name: str
) -> None:
    context, changes, shows = BROKEN[name]
    broken = make_sandbox(mtv_on="separate", forklift=False, breaks=[name])

    for each in broken.contexts:
        before, after = comparable(healthy, each), comparable(broken, each)
        differ = {what for what in WHERE if before[what] != after[what]}
        assert differ == (changes if each == context else set()), each
    assert shows(comparable(broken, context))


def test_a_break_falls_on_the_context_it_is_given(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox(
        forklift=False, breaks=["sync-addresses@source", "kubevirt-ca@destination"]
    )

    source, destination = (
        read(sandbox, "source", "kubevirt"),
        read(sandbox, "destination", "kubevirt"),
    )
    assert source is not None and destination is not None
    assert "synchronizationAddresses" not in source["status"]
    assert destination["status"]["synchronizationAddresses"]
    assert read(sandbox, "destination", "kubevirt-ca") is None
    assert read(sandbox, "source", "kubevirt-ca") is not None


def test_breaks_are_placed_on_their_contexts_before_anything_starts() -> None:
    several = Sandbox(sources=2, breaks=["feature-gate", "old-mtv", "feature-gate@source-2"])
    separate = Sandbox(mtv_on="separate", breaks=["mtv-flag", "sync-addresses"])

    assert several.breaks == {
        "source-1": {"feature-gate"},
        "source-2": {"feature-gate"},
        "destination": {"old-mtv"},  # the MTV host
    }
    assert separate.breaks == {
        "source": set(),
        "destination": {"sync-addresses"},
        "mtv": {"mtv-flag"},
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("unheard-of", "--break 'unheard-of' is not one of feature-gate, mtv-flag, sync-addresses"),
        ("feature-gate@nowhere", "--break 'feature-gate@nowhere': 'nowhere' is not one of"),
        ("kubevirt-ca@", "--break 'kubevirt-ca@': '' is not one of"),
        (
            "mtv-flag@source",
            "--break 'mtv-flag@source': mtv-flag breaks the MTV host, which is 'destination'",
        ),
    ],
)
def test_a_break_that_cannot_be_placed_is_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        Sandbox(breaks=[spec])

    assert str(refused.value).startswith(message)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("unheard-of", "--break 'unheard-of' is not one of feature-gate, "),
        ("old-mtv@nowhere", "--break 'old-mtv@nowhere': 'nowhere' is not one of ['source', "),
    ],
)
def test_sandbox_up_refuses_a_bad_break_in_one_line_before_starting(
    tmp_path: Path, spec: str, says: str
) -> None:
    kubeconfig = tmp_path / "k"
    result = CliRunner().invoke(
        app,
        [
            "sandbox",
            "up",
            "--kubeconfig",
            str(kubeconfig),
            "--break",
            "feature-gate",
            "--break",
            spec,
        ],
    )

    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"error: {says}")
    assert not kubeconfig.exists()


def test_sandbox_up_serves_the_breaks_it_is_given(tmp_path: Path) -> None:
    """`--break` repeated, with and without a context, in `sandbox up`'s own process."""
    kubeconfig = tmp_path / "kubeconfig"
    process = subprocess.Popen(
        [sys.executable, "-m", "mtv_register", "sandbox", "up", "--kubeconfig", str(kubeconfig),
         "--mtv-on", "separate", "--no-forklift",
         "--break", "feature-gate", "--break", "sync-addresses@source", "--break", "old-mtv"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=30), "sandbox up printed no ready line"
        assert process.stdout.readline() == f"sandbox ready: {kubeconfig.resolve()}\n"

        def api(context: str) -> kubernetes.client.CustomObjectsApi:
            connected = kubernetes.config.new_client_from_config(str(kubeconfig), context=context)
            return kubernetes.client.CustomObjectsApi(connected)

        def get(context: str, what: str) -> Obj:
            group, version, plural, namespace, name = WHERE[what]
            found = api(context).get_namespaced_custom_object(
                group, version, namespace, plural, name
            )
            return dict(found)

        source_hco, source_kubevirt = get("source", "hco"), get("source", "kubevirt")
        assert source_hco["spec"]["featureGates"]["decentralizedLiveMigration"] is False
        assert gates_of(source_kubevirt) == []
        assert "synchronizationAddresses" not in source_kubevirt["status"]
        assert gates_of(get("destination", "kubevirt")) == [GATE]
        assert get("mtv", "old-csv")["spec"]["version"] == "2.9.4"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert not kubeconfig.exists()


# -- the operators' imitation --------------------------------------------------------------------


def test_a_hyperconverged_change_reaches_kubevirt_at_once_both_ways(healthy: Sandbox) -> None:
    developer = {"developerConfiguration": {"featureGates": ["Snapshot", GATE]}}
    patch(healthy, "source", "kubevirt", {"spec": {"configuration": developer}})

    patch(
        healthy, "source", "hco", {"spec": {"featureGates": {"decentralizedLiveMigration": False}}}
    )
    off = read(healthy, "source", "kubevirt")
    patch(
        healthy, "source", "hco", {"spec": {"featureGates": {"decentralizedLiveMigration": True}}}
    )
    on = read(healthy, "source", "kubevirt")
    patch(healthy, "source", "hco", {"spec": {"liveMigrationConfig": {"network": None}}})
    no_network = read(healthy, "source", "kubevirt")
    patch(healthy, "source", "hco", {"spec": {"liveMigrationConfig": {"network": "fast-lane"}}})
    other_network = read(healthy, "source", "kubevirt")

    assert off is not None and on is not None and no_network is not None and other_network
    assert gates_of(off) == ["Snapshot"]  # the other gates kept
    assert gates_of(on) == ["Snapshot", GATE]
    assert "network" not in no_network["spec"]["configuration"]["migrations"]
    assert no_network["spec"]["configuration"]["migrations"]["progressTimeout"] == 150
    assert other_network["spec"]["configuration"]["migrations"]["network"] == "fast-lane"
    # Only the cluster whose HyperConverged changed.
    destination = read(healthy, "destination", "kubevirt")
    assert destination is not None and gates_of(destination) == [GATE]


def test_a_forkliftcontroller_change_reaches_its_deployment_at_once_both_ways(
    healthy: Sandbox,
) -> None:
    patch(healthy, "mtv", "controller", {"spec": {"feature_ocp_live_migration": "false"}})
    off = read(healthy, "mtv", "deployment")
    patch(healthy, "mtv", "controller", {"spec": {"feature_ocp_live_migration": "true"}})
    on = read(healthy, "mtv", "deployment")

    assert off is not None and on is not None
    assert env_of(off) == {"ROLE": "main", FLAG: "false"}
    assert env_of(on) == {"ROLE": "main", FLAG: "true"}
    assert on["metadata"]["generation"] == off["metadata"]["generation"] + 1


def test_a_hand_edit_of_what_an_operator_manages_stays(healthy: Sandbox) -> None:
    """Only an owner's change is carried: doctor's tests break KubeVirt and the Deployment
    directly."""
    migrations = {"migrations": {"network": "gone"}}
    patch(healthy, "destination", "kubevirt", {"spec": {"configuration": migrations}})
    env = [{"name": "ROLE", "value": "main"}, {"name": FLAG, "value": "false"}]
    containers = [{"name": "main", "env": env}]
    patch(
        healthy, "mtv", "deployment", {"spec": {"template": {"spec": {"containers": containers}}}}
    )

    kubevirt, deployment = (
        read(healthy, "destination", "kubevirt"),
        read(healthy, "mtv", "deployment"),
    )
    assert kubevirt is not None and deployment is not None
    assert kubevirt["spec"]["configuration"]["migrations"]["network"] == "gone"
    assert env_of(deployment)[FLAG] == "false"


# -- the same CRDs as the real stack -------------------------------------------------------------


def _served(definition: Obj) -> Obj:
    spec = definition["spec"]
    return {
        "name": definition["metadata"]["name"],
        "group": spec["group"],
        "scope": spec["scope"],
        "names": spec["names"],
        "versions": [
            {k: v[k] for k in ("name", "served", "storage") if k in v}
            | {"subresources": sorted(v.get("subresources") or {})}
            for v in spec["versions"]
        ],
    }


def test_the_profile_serves_exactly_the_crds_of_kind_config() -> None:
    """The real stack installs kind-config/crds (forklift.konveyor.io.yaml on the MTV host only),
    the sandbox the profile's CRD tuples: the same kinds, names, scopes and subresources."""
    files: dict[str, list[Obj]] = {}
    for file in sorted(CRDS.glob("*.yaml")):
        files[file.name] = [_served(d) for d in yaml.safe_load_all(file.read_text()) if d]
    on_mtv = files.pop("forklift.konveyor.io.yaml")
    everywhere = [d for documents in files.values() for d in documents]

    def by_name(definitions: list[Obj]) -> dict[str, Obj]:
        return {d["name"]: d for d in definitions}

    assert by_name(everywhere) == by_name([_served(d) for d in VIRTUALIZATION_CRDS])
    assert by_name(on_mtv) == by_name([_served(d) for d in FORKLIFT_CRDS])
    for name, documents in files.items():  # one file per API group, named after it
        assert {d["group"] for d in documents} == {name.removesuffix(".yaml")}


def test_the_served_kinds_answer_in_discovery(healthy: Sandbox) -> None:
    api = client(healthy, "mtv")
    for group, version, plural in (
        ("hco.kubevirt.io", "v1beta1", "hyperconvergeds"),
        ("operators.coreos.com", "v1alpha1", "clusterserviceversions"),
    ):
        listing = request(api, "GET", f"/apis/{group}/{version}")
        assert listing is not None
        entry = next(r for r in listing["resources"] if r["name"] == plural)
        assert entry["namespaced"] is True
        assert f"{plural}/status" in {r["name"] for r in listing["resources"]}
