"""Unit tests of `mtv_register.manifests`: the objects mtv-register creates, checked as data."""

from __future__ import annotations

import base64
import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mtv_register import manifests, naming
from mtv_register.manifests import (
    REDACTED,
    SEED_CLUSTER_ROLE_RULES,
    cluster_role,
    cluster_role_binding,
    managed_labels,
    owner_reference,
    provider,
    provider_secret,
    redact,
    service_account,
    token_secret,
)
from mtv_register.naming import (
    DEFAULT_ROLE_NAME,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    TOKEN_SECRET_ANNOTATION,
    is_dns1123_label,
    is_dns1123_subdomain,
    provider_name,
)

SEED = Path(__file__).parents[1] / "data" / "seed_procedure.txt"
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
URL = "https://api.source.example.com:6443"


def seed_cluster_role() -> dict:
    blocks = re.findall(r"```yaml\n(.*?)```", SEED.read_text(), flags=re.DOTALL)
    roles = [doc for doc in map(yaml.safe_load, blocks) if doc.get("kind") == "ClusterRole"]
    assert len(roles) == 1, "the seed has exactly one ClusterRole"
    return roles[0]


def decoded(secret: dict) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def a_provider_secret(**overrides) -> dict:
    arguments: dict[str, Any] = {
        "url": URL,
        "token": "sa-token-value",
        "ca_cert": CA,
        "insecure_skip_verify": False,
    }
    arguments.update(overrides)
    return provider_secret("source", "openshift-mtv", **arguments)


# --- ClusterRole, ServiceAccount, binding, token Secret ----------------------------------------


def test_cluster_role_rules_equal_the_seed_yaml_rules_in_order():
    seed = seed_cluster_role()
    assert seed["rules"] == SEED_CLUSTER_ROLE_RULES
    assert cluster_role()["rules"] == seed["rules"]


def test_cluster_role_has_the_seed_name_and_api_version_and_the_managed_by_label():
    seed = seed_cluster_role()
    role = cluster_role()
    assert role["apiVersion"] == seed["apiVersion"]
    assert role["kind"] == "ClusterRole"
    assert role["metadata"]["name"] == seed["metadata"]["name"] == DEFAULT_ROLE_NAME
    assert role["metadata"]["labels"] == {MANAGED_BY_LABEL: MANAGED_BY}


def test_cluster_role_takes_another_name():
    assert cluster_role("mtv-live-migration")["metadata"]["name"] == "mtv-live-migration"


def test_cluster_role_rules_are_a_copy_of_the_module_data():
    cluster_role()["rules"][0]["verbs"].append("delete")
    assert SEED_CLUSTER_ROLE_RULES[0]["verbs"] == ["get", "list", "watch"]


def test_managed_labels_adds_extra_labels_but_keeps_managed_by():
    labels = managed_labels({"team": "virt", MANAGED_BY_LABEL: "someone-else"})
    assert labels == {MANAGED_BY_LABEL: MANAGED_BY, "team": "virt"}
    assert managed_labels() == {MANAGED_BY_LABEL: MANAGED_BY}


def test_namespace_is_labelled_managed():
    ns = manifests.namespace("mtv-register")
    assert (ns["apiVersion"], ns["kind"]) == ("v1", "Namespace")
    assert ns["metadata"] == {"name": "mtv-register", "labels": {MANAGED_BY_LABEL: MANAGED_BY}}


def test_service_account_never_lists_a_token_secret():
    sa = service_account("mtv-provider", "mtv-register")
    assert (sa["apiVersion"], sa["kind"]) == ("v1", "ServiceAccount")
    assert sa["metadata"]["name"] == "mtv-provider"
    assert sa["metadata"]["namespace"] == "mtv-register"
    assert sa["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY
    assert "secrets" not in sa


def test_cluster_role_binding_is_named_after_the_service_account_and_binds_it_to_the_role():
    binding = cluster_role_binding("mtv-provider", "mtv-register", "live-migration-role")
    assert binding["apiVersion"] == "rbac.authorization.k8s.io/v1"
    assert binding["kind"] == "ClusterRoleBinding"
    assert binding["metadata"]["name"] == "mtv-provider"
    assert "namespace" not in binding["metadata"]
    assert binding["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "live-migration-role",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "mtv-provider", "namespace": "mtv-register"}
    ]


def test_token_secret_is_a_service_account_token_annotated_with_its_account():
    secret = token_secret("mtv-provider", "mtv-register")
    assert (secret["apiVersion"], secret["kind"]) == ("v1", "Secret")
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["name"] == "mtv-provider-token"
    assert secret["metadata"]["namespace"] == "mtv-register"
    assert secret["metadata"]["annotations"] == {
        "kubernetes.io/service-account.name": "mtv-provider"
    }
    assert secret["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY
    assert "data" not in secret


def test_token_secret_for_rotation_uses_generate_name():
    secret = token_secret(
        "mtv-provider",
        "mtv-register",
        generate_name=naming.token_secret_generate_name("mtv-provider"),
    )
    assert secret["metadata"]["generateName"] == "mtv-provider-token-"
    assert "name" not in secret["metadata"]


def test_token_secret_takes_an_explicit_name():
    secret = token_secret("mtv-provider", "mtv-register", name="custom")
    assert secret["metadata"]["name"] == "custom"


def test_token_secret_refuses_both_name_and_generate_name():
    with pytest.raises(ValueError, match="not both"):
        token_secret("mtv-provider", "mtv-register", name="a", generate_name="a-")


# --- Provider Secret and Provider --------------------------------------------------------------


def test_provider_secret_holds_token_url_and_ca_under_both_ca_keys():
    secret = a_provider_secret()
    assert (secret["apiVersion"], secret["kind"], secret["type"]) == ("v1", "Secret", "Opaque")
    assert secret["metadata"]["name"] == "source"
    assert secret["metadata"]["namespace"] == "openshift-mtv"
    assert "stringData" not in secret
    assert decoded(secret) == {
        "token": "sa-token-value",
        "url": URL,
        "ca.crt": CA,
        "cacert": CA,
        "insecureSkipVerify": "false",
    }


def test_provider_secret_data_is_standard_base64_of_the_utf8_values():
    secret = a_provider_secret(token="tök+/=")
    assert secret["data"]["token"] == base64.b64encode("tök+/=".encode()).decode()
    assert all(isinstance(value, str) for value in secret["data"].values())


def test_provider_secret_without_legacy_cacert_has_only_ca_crt():
    data = decoded(a_provider_secret(legacy_cacert=False))
    assert data["ca.crt"] == CA
    assert "cacert" not in data


def test_provider_secret_carries_forklift_and_managed_by_labels():
    secret = a_provider_secret(labels={naming.PAIR_LABEL: "source-to-destination"})
    assert secret["metadata"]["labels"] == {
        MANAGED_BY_LABEL: MANAGED_BY,
        "createdForProviderType": "openshift",
        "createdForResourceType": "providers",
        naming.PAIR_LABEL: "source-to-destination",
    }


def test_provider_secret_records_where_the_token_secret_is():
    secret = a_provider_secret(token_secret_ref="mtv-register/mtv-provider-token")
    assert secret["metadata"]["annotations"] == {
        TOKEN_SECRET_ANNOTATION: "mtv-register/mtv-provider-token"
    }
    assert "annotations" not in a_provider_secret()["metadata"]


def test_provider_secret_refuses_a_ca_together_with_insecure_skip_verify():
    with pytest.raises(ValueError, match="not both") as caught:
        a_provider_secret(insecure_skip_verify=True)
    assert "sa-token-value" not in str(caught.value)


def test_provider_secret_insecure_records_true_and_no_ca():
    data = decoded(a_provider_secret(ca_cert=None, insecure_skip_verify=True))
    assert data["insecureSkipVerify"] == "true"
    assert "ca.crt" not in data
    assert "cacert" not in data


def test_provider_secret_without_ca_and_verified_uses_system_trust():
    data = decoded(a_provider_secret(ca_cert=None))
    assert data["insecureSkipVerify"] == "false"
    assert "ca.crt" not in data


def test_provider_secret_refuses_an_empty_token():
    with pytest.raises(ValueError, match="token is empty"):
        a_provider_secret(token="")


def test_provider_spec_points_at_the_cluster_and_its_secret():
    obj = provider(
        "source",
        "openshift-mtv",
        url=URL,
        secret_name="source-abc12",
        secret_namespace="openshift-mtv",
    )
    assert obj["apiVersion"] == "forklift.konveyor.io/v1beta1"
    assert obj["kind"] == "Provider"
    assert obj["metadata"] == {
        "name": "source",
        "namespace": "openshift-mtv",
        "labels": {MANAGED_BY_LABEL: MANAGED_BY},
    }
    assert obj["spec"] == {
        "type": "openshift",
        "url": URL,
        "secret": {"name": "source-abc12", "namespace": "openshift-mtv"},
    }


def test_owner_reference_points_at_the_stored_object():
    stored = provider(
        "source", "openshift-mtv", url=URL, secret_name="s", secret_namespace="openshift-mtv"
    )
    stored["metadata"]["uid"] = "0b5e8d2c-1111-2222-3333-444455556666"
    assert owner_reference(stored) == {
        "apiVersion": "forklift.konveyor.io/v1beta1",
        "kind": "Provider",
        "name": "source",
        "uid": "0b5e8d2c-1111-2222-3333-444455556666",
        "controller": False,
        "blockOwnerDeletion": False,
    }
    ref = owner_reference(stored, controller=True, block_owner_deletion=True)
    assert (ref["controller"], ref["blockOwnerDeletion"]) == (True, True)


def test_owner_reference_refuses_an_object_without_uid():
    unstored = provider(
        "source", "openshift-mtv", url=URL, secret_name="s", secret_namespace="openshift-mtv"
    )
    with pytest.raises(ValueError, match=r'Provider "source".*metadata\.uid'):
        owner_reference(unstored)


# --- Redaction ---------------------------------------------------------------------------------


def test_redact_hides_tokens_in_data_and_string_data_and_leaves_the_input_alone():
    secret = a_provider_secret()
    secret["stringData"] = {"token": "plain-token", "url": URL}
    original = copy.deepcopy(secret)

    shown = redact(secret)

    assert shown["data"]["token"] == REDACTED
    assert shown["stringData"]["token"] == REDACTED
    assert shown["data"]["url"] == secret["data"]["url"]
    assert shown["stringData"]["url"] == URL
    assert secret == original


def test_redact_hides_tokens_nested_in_lists_and_in_last_applied_configuration():
    secret = a_provider_secret()
    secret["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": '{"data":{"token":"c2VjcmV0"}}'
    }
    listing = {"apiVersion": "v1", "kind": "List", "items": [secret]}

    shown = redact(listing)

    item = shown["items"][0]
    assert item["data"]["token"] == REDACTED
    assert item["metadata"]["annotations"] == {
        "kubectl.kubernetes.io/last-applied-configuration": REDACTED
    }
    assert (
        "c2VjcmV0"
        in secret["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    )


def test_redact_keeps_an_unfilled_token_empty():
    secret = token_secret("mtv-provider", "mtv-register")
    secret["data"] = {"token": ""}
    assert redact(secret)["data"]["token"] == ""


# --- Names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ("source", "source"),
        ("Source_Cluster", "source-cluster"),
        (
            "default/api-prod-example-com:6443/kube:admin",
            "default-api-prod-example-com-6443-kube-admin",
        ),
        ("--edge--", "edge"),
        ("Zürich", "zurich"),
        ("10.0.0.1", "10-0-0-1"),
    ],
)
def test_provider_name_turns_a_context_into_a_dns1123_label(context, expected):
    assert provider_name(context) == expected


def test_provider_name_cuts_long_names_to_63_and_keeps_them_distinct():
    first = provider_name("cluster-" + "a" * 80 + "-one")
    second = provider_name("cluster-" + "a" * 80 + "-two")
    assert len(first) <= 63 and len(second) <= 63
    assert is_dns1123_label(first) and is_dns1123_label(second)
    assert first.startswith("cluster-aaaa")
    assert first != second
    assert provider_name("cluster-" + "a" * 80 + "-one") == first


@pytest.mark.parametrize("context", ["", "___", "::/", "日本"])
def test_provider_name_of_only_invalid_characters_is_never_empty(context):
    name = provider_name(context)
    assert name.startswith("provider-")
    assert is_dns1123_label(name)


def test_provider_name_of_different_unusable_contexts_differ():
    assert provider_name("___") != provider_name("::/")


@pytest.mark.parametrize(
    ("name", "label", "subdomain"),
    [
        ("source", True, True),
        ("a", True, True),
        ("0abc", True, True),
        ("a-b", True, True),
        ("a" * 63, True, True),
        ("a" * 64, False, True),
        ("a.b", False, True),
        ("a" * 253, False, True),
        ("a" * 254, False, False),
        ("", False, False),
        ("-a", False, False),
        ("a-", False, False),
        ("A", False, False),
        ("a_b", False, False),
        ("a..b", False, False),
        ("a\n", False, False),
    ],
)
def test_dns1123_checks(name, label, subdomain):
    assert is_dns1123_label(name) is label
    assert is_dns1123_subdomain(name) is subdomain
