"""`register --submariner`: the source Provider's setting, and the destination account's right to
manage the ServiceExports Forklift creates there, in a role of its own."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from mtv_register import manifests, naming
from mtv_register.api_kube import ApiKube
from tests.integration.conftest import CliRun
from tests.target import Target

MTV_NS = "openshift-mtv"
EXTRA_ROLE = naming.DEFAULT_ROLE_NAME + naming.SUBMARINER_SUFFIX
EXTRA_BINDING = naming.DEFAULT_SERVICE_ACCOUNT + naming.SUBMARINER_SUFFIX
PAIR = ("--source", "source", "--destination", "destination", "--host", "mtv")

pytestmark = pytest.mark.needs_forklift


def _may(target: Target, provider: str, context: str, verb: str) -> bool:
    """A SelfSubjectAccessReview with the Provider's own token: may it `verb` ServiceExports?"""
    secret = target.find("mtv", "secrets", f"{provider}-credentials", MTV_NS)
    assert secret is not None
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    kube = ApiKube.from_token(
        target.url(context), data["token"], ca_pem=data["ca.crt"], context=f"{context} as MTV"
    )
    try:
        review = kube.post(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {
                        "group": "multicluster.x-k8s.io",
                        "resource": "serviceexports",
                        "verb": verb,
                        "namespace": "vms",
                    }
                },
            },
        )
    finally:
        kube.close()
    return bool(review["status"]["allowed"])


def test_submariner_sets_the_source_setting_and_grants_serviceexports_in_an_extra_role(
    target: Target, kubeconfig: Path, cli: CliRun
) -> None:
    result = cli("register", "--kubeconfig", str(kubeconfig), *PAIR, "--submariner")
    assert result.exit_code == 0, result.output

    source = target.find("mtv", "providers", "source", MTV_NS)
    destination = target.find("mtv", "providers", "destination", MTV_NS)
    assert source is not None and destination is not None
    assert source["spec"]["settings"]["submariner"] == "true"
    assert "submariner" not in (destination["spec"].get("settings") or {})

    role = target.find("destination", "clusterroles", EXTRA_ROLE)
    assert role is not None
    assert role["rules"] == [
        {
            "apiGroups": ["multicluster.x-k8s.io"],
            "resources": ["serviceexports"],
            "verbs": ["get", "list", "create", "delete"],
        }
    ]
    binding = target.find("destination", "clusterrolebindings", EXTRA_BINDING)
    assert binding is not None and binding["roleRef"]["name"] == EXTRA_ROLE
    seed = target.find("destination", "clusterroles", naming.DEFAULT_ROLE_NAME)
    assert seed is not None and seed["rules"] == manifests.SEED_CLUSTER_ROLE_RULES
    assert target.find("source", "clusterroles", EXTRA_ROLE) is None
    assert _may(target, "destination", "destination", "create")
    assert _may(target, "destination", "destination", "delete")
    assert not _may(target, "source", "source", "create")

    status = cli("status", "--kubeconfig", str(kubeconfig), "--host", "mtv", "-o", "json")
    rows = {row["name"]: row for row in json.loads(status.stdout)["providers"]}
    assert (rows["source"]["submariner"], rows["destination"]["submariner"]) == (True, False)
    text = cli("status", "--kubeconfig", str(kubeconfig), "--host", "mtv")
    assert "source: Submariner is on" in text.stdout

    again = cli("register", "--kubeconfig", str(kubeconfig), *PAIR)  # the flag not given: kept
    assert again.exit_code == 0, again.output
    source = target.find("mtv", "providers", "source", MTV_NS)
    assert source is not None and source["spec"]["settings"]["submariner"] == "true"

    off = cli("register", "--kubeconfig", str(kubeconfig), *PAIR, "--no-submariner")
    assert off.exit_code == 0, off.output
    source = target.find("mtv", "providers", "source", MTV_NS)
    assert source is not None
    assert "submariner" not in (source["spec"].get("settings") or {})
    assert target.find("destination", "clusterroles", EXTRA_ROLE) is None
    assert target.find("destination", "clusterrolebindings", EXTRA_BINDING) is None

    on = cli("register", "--kubeconfig", str(kubeconfig), *PAIR, "--submariner")
    assert on.exit_code == 0, on.output
    gone = cli("unregister", "--kubeconfig", str(kubeconfig), *PAIR, "--yes")
    assert gone.exit_code == 0, gone.output
    assert target.find("destination", "clusterroles", EXTRA_ROLE) is None
    assert target.find("destination", "clusterrolebindings", EXTRA_BINDING) is None
