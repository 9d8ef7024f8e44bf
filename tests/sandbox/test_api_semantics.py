"""The sandbox answers the generic API as kube-apiserver 1.32 does: create, read, list, patch,
delete, watch and discovery, with the same codes, Status reasons and messages.

Every request goes through the official `kubernetes` client, as the project's code does.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections import deque
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import pytest
from kubernetes.client import ApiClient, ApiException

from mtv_register.sandbox import Sandbox
from tests.sandbox.helpers import refused, wait_for

T = TypeVar("T")
NS = "default"
RBAC = "rbac.authorization.k8s.io"
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def raw(api: ApiClient, method: str, path: str, **headers: str) -> Any:
    """A request the typed client has no method for; the answer is returned whatever its code."""
    return api.call_api(
        *api.param_serialize(
            method=method, resource_path=path, header_params=headers, auth_settings=["BearerToken"]
        )
    )


@pytest.fixture
def api(kubeconfig: Path) -> ApiClient:
    return kubernetes.config.new_client_from_config(str(kubeconfig), context="source")


@pytest.fixture
def core(api: ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api)


@pytest.fixture
def rbac(api: ApiClient) -> kubernetes.client.RbacAuthorizationV1Api:
    return kubernetes.client.RbacAuthorizationV1Api(api)


def secret(name: str, **fields: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "stringData": {"key": "value"}, **fields}


def binding(name: str, role: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": NS}],
    }


# -- create, read, update ----------------------------------------------------------------------


def test_create_answers_201_with_uid_resource_version_and_creation_timestamp(core) -> None:
    created, code, _ = core.create_namespaced_secret_with_http_info(NS, secret("fresh"))

    assert code == 201
    assert uuid.UUID(created.metadata.uid)
    assert int(created.metadata.resource_version) > 0
    assert created.metadata.creation_timestamp is not None
    assert created.data == {"key": base64.b64encode(b"value").decode()}
    assert created.type == "Opaque"


def test_generate_name_gives_each_object_its_own_name_with_the_prefix(core) -> None:
    names = {
        core.create_namespaced_secret(NS, {"metadata": {"generateName": "gen-"}}).metadata.name
        for _ in range(3)
    }

    assert len(names) == 3
    assert all(name.startswith("gen-") and len(name) > len("gen-") for name in names)


def test_creating_an_existing_secret_is_409_already_exists(core) -> None:
    core.create_namespaced_secret(NS, secret("twice"))

    code, body = refused(core.create_namespaced_secret, NS, secret("twice"))

    assert code == 409
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == 'secrets "twice" already exists'
    assert body["details"] == {"name": "twice", "kind": "secrets"}


def test_creating_an_existing_cluster_role_names_its_group(rbac) -> None:
    code, body = refused(rbac.create_cluster_role, {"metadata": {"name": "view"}, "rules": []})

    assert code == 409
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == f'clusterroles.{RBAC} "view" already exists'


def test_update_with_a_stale_resource_version_is_409_conflict(core) -> None:
    first = core.create_namespaced_secret(NS, secret("raced"))
    core.patch_namespaced_secret("raced", NS, {"metadata": {"labels": {"won": "yes"}}})

    stale = {
        "metadata": {"name": "raced", "resourceVersion": first.metadata.resource_version},
        "stringData": {"key": "mine"},
    }
    code, body = refused(core.replace_namespaced_secret, "raced", NS, stale)

    assert code == 409
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on secrets "raced": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )


def test_update_with_the_current_resource_version_succeeds_and_moves_it(core) -> None:
    first = core.create_namespaced_secret(NS, secret("kept"))
    body = {
        "metadata": {"name": "kept", "resourceVersion": first.metadata.resource_version},
        "stringData": {"key": "new"},
    }

    updated = core.replace_namespaced_secret("kept", NS, body)

    assert int(updated.metadata.resource_version) > int(first.metadata.resource_version)
    assert updated.metadata.uid == first.metadata.uid
    assert updated.data["key"] == base64.b64encode(b"new").decode()


def test_get_of_a_missing_secret_is_404_not_found(core) -> None:
    code, body = refused(core.read_namespaced_secret, "absent", NS)

    assert code == 404
    assert body["reason"] == "NotFound"
    assert body["message"] == 'secrets "absent" not found'


def test_a_name_that_is_not_a_dns_subdomain_is_422_invalid(core) -> None:
    code, body = refused(core.create_namespaced_secret, NS, secret("Bad_Name"))

    assert code == 422
    assert body["reason"] == "Invalid"
    assert body["message"] == (
        'Secret "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase '
        "RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
        "must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
        "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    )
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert body["details"]["causes"][0]["reason"] == "FieldValueInvalid"


def test_a_token_secret_without_its_service_account_annotation_is_422(core) -> None:
    body = {"metadata": {"name": "orphan-token"}, "type": "kubernetes.io/service-account-token"}

    code, status = refused(core.create_namespaced_secret, NS, body)

    assert code == 422
    assert status["message"] == (
        'Secret "orphan-token" is invalid: '
        "metadata.annotations[kubernetes.io/service-account.name]: Required value"
    )


def test_a_cluster_role_binding_without_a_role_name_is_422(rbac) -> None:
    code, body = refused(rbac.create_cluster_role_binding, binding("nameless", ""))

    assert code == 422
    assert (
        body["message"]
        == f'ClusterRoleBinding.{RBAC} "nameless" is invalid: roleRef.name: Required value'
    )
    assert body["details"]["group"] == RBAC
    assert body["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "roleRef.name"}
    ]


def test_changing_a_bindings_role_ref_is_422(rbac) -> None:
    rbac.create_cluster_role_binding(binding("fixed-role", "view"))

    code, body = refused(
        rbac.replace_cluster_role_binding, "fixed-role", binding("fixed-role", "edit")
    )

    assert code == 422
    assert body["message"] == (
        f'ClusterRoleBinding.{RBAC} "fixed-role" is invalid: roleRef: Invalid value: '
        f'rbac.RoleRef{{APIGroup:"{RBAC}", Kind:"ClusterRole", Name:"edit"}}: cannot change roleRef'
    )


def test_changing_a_secrets_type_is_422(core) -> None:
    core.create_namespaced_secret(NS, secret("typed"))

    code, body = refused(
        core.replace_namespaced_secret, "typed", NS, secret("typed", type="example.com/other")
    )

    assert code == 422
    assert body["message"] == (
        'Secret "typed" is invalid: type: Invalid value: "example.com/other": field is immutable'
    )


def test_a_namespace_in_the_body_differing_from_the_url_is_400(core) -> None:
    body = {"metadata": {"name": "elsewhere", "namespace": "kube-system"}}

    code, status = refused(core.create_namespaced_secret, NS, body)

    assert code == 400
    assert status["reason"] == "BadRequest"
    assert status["message"] == (
        "the namespace of the provided object does not match the namespace sent on the request"
    )


def test_creating_in_a_missing_namespace_is_404_for_the_namespace(core) -> None:
    code, body = refused(core.create_namespaced_secret, "nowhere", secret("lost"))

    assert code == 404
    assert body["message"] == 'namespaces "nowhere" not found'
    assert body["details"] == {"name": "nowhere", "kind": "namespaces"}


# -- list --------------------------------------------------------------------------------------


@pytest.fixture
def labelled(core) -> None:
    for name, labels in {
        "red-big": {"color": "red", "size": "big"},
        "red-small": {"color": "red", "size": "small"},
        "blue": {"color": "blue"},
        "plain": {},
    }.items():
        core.create_namespaced_config_map(NS, {"metadata": {"name": name, "labels": labels}})


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("color=red", {"red-big", "red-small"}),
        ("color==blue", {"blue"}),
        ("color!=red", {"blue", "plain"}),
        ("color in (blue,green)", {"blue"}),
        ("color notin (red)", {"blue", "plain"}),
        ("size", {"red-big", "red-small"}),
        ("!size", {"blue", "plain"}),
        ("color=red,size=small", {"red-small"}),
    ],
)
def test_label_selectors_match_as_the_real_server(core, labelled, selector, expected) -> None:
    items = core.list_namespaced_config_map(NS, label_selector=selector).items

    assert {item.metadata.name for item in items} - {"kube-root-ca.crt"} == expected


def test_field_selectors_match_on_name_and_on_secret_type(core) -> None:
    core.create_namespaced_secret(NS, secret("opaque"))
    core.create_namespaced_secret(NS, secret("tls", type="example.com/custom"))

    by_name = core.list_namespaced_secret(NS, field_selector="metadata.name=tls").items
    by_type = core.list_namespaced_secret(NS, field_selector="type=example.com/custom").items
    not_type = core.list_namespaced_secret(NS, field_selector="type!=example.com/custom").items

    assert [s.metadata.name for s in by_name] == ["tls"]
    assert [s.metadata.name for s in by_type] == ["tls"]
    assert [s.metadata.name for s in not_type] == ["opaque"]


def test_an_unknown_field_selector_is_400(core) -> None:
    code, body = refused(core.list_namespaced_secret, NS, field_selector="spec.color=red")

    assert code == 400
    assert body["message"] == "field label not supported: spec.color"


def test_limit_and_continue_page_through_every_item_once(core) -> None:
    for index in range(7):
        core.create_namespaced_secret(NS, secret(f"page-{index}"))

    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = core.list_namespaced_secret(NS, limit=3, _continue=token)
        pages += 1
        seen += [item.metadata.name for item in page.items]
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 7 - len(seen)

    assert pages == 3
    assert sorted(seen) == [f"page-{index}" for index in range(7)]


def test_a_list_carries_the_resource_version_of_the_collection(core) -> None:
    before = int(core.list_namespaced_secret(NS).metadata.resource_version)
    created = core.create_namespaced_secret(NS, secret("moves-it"))
    after = int(core.list_namespaced_secret(NS).metadata.resource_version)

    assert after >= int(created.metadata.resource_version) > before


# -- patch -------------------------------------------------------------------------------------


def test_merge_patch_sets_and_removes_keys(core) -> None:
    core.create_namespaced_config_map(
        NS, {"metadata": {"name": "merged"}, "data": {"keep": "1", "drop": "2"}}
    )

    patched = core.patch_namespaced_config_map(
        "merged",
        NS,
        {"data": {"drop": None, "add": "3"}},
        _content_type="application/merge-patch+json",
    )

    assert patched.data == {"keep": "1", "add": "3"}


def test_strategic_merge_patch_merges_service_account_secrets_by_name(core) -> None:
    account = {"metadata": {"name": "robot"}, "secrets": [{"name": "first"}]}
    core.create_namespaced_service_account(NS, account)

    merged = core.patch_namespaced_service_account("robot", NS, {"secrets": [{"name": "second"}]})
    replaced = core.patch_namespaced_service_account(
        "robot", NS, {"secrets": [{"name": "third"}]}, _content_type="application/merge-patch+json"
    )

    assert [ref.name for ref in merged.secrets] == ["first", "second"]
    assert [ref.name for ref in replaced.secrets] == ["third"]


def test_strategic_merge_patch_on_a_secret_keeps_the_other_keys(core) -> None:
    core.create_namespaced_secret(NS, secret("strategic"))

    patched = core.patch_namespaced_secret(
        "strategic", NS, {"stringData": {"other": "x"}, "metadata": {"labels": {"a": "b"}}}
    )

    assert set(patched.data) == {"key", "other"}
    assert patched.metadata.labels == {"a": "b"}


def test_json_patch_replaces_a_value(core) -> None:
    core.create_namespaced_config_map(NS, {"metadata": {"name": "jp"}, "data": {"k": "old"}})

    patched = core.patch_namespaced_config_map(
        "jp",
        NS,
        [
            {"op": "test", "path": "/data/k", "value": "old"},
            {"op": "replace", "path": "/data/k", "value": "new"},
        ],
    )

    assert patched.data == {"k": "new"}


def test_json_patch_with_a_failing_test_op_is_422_and_changes_nothing(core) -> None:
    core.create_namespaced_config_map(NS, {"metadata": {"name": "jp"}, "data": {"k": "old"}})
    ops = [
        {"op": "replace", "path": "/data/k", "value": "new"},
        {"op": "test", "path": "/data/k", "value": "other"},
    ]

    code, body = refused(core.patch_namespaced_config_map, "jp", NS, ops)

    assert code == 422
    assert body["reason"] == "Invalid"
    assert body["message"] == "the server rejected our request due to an error in our request"
    assert core.read_namespaced_config_map("jp", NS).data == {"k": "old"}


def test_patch_of_a_missing_object_is_404(core) -> None:
    code, body = refused(core.patch_namespaced_secret, "absent", NS, {"metadata": {"labels": {}}})

    assert code == 404
    assert body["message"] == 'secrets "absent" not found'


def test_strategic_merge_patch_on_a_custom_resource_is_415(api) -> None:
    custom = kubernetes.client.CustomObjectsApi(api)
    vm = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "vm"},
        "spec": {"running": False},
    }
    custom.create_namespaced_custom_object("kubevirt.io", "v1", NS, "virtualmachines", vm)

    code, body = refused(
        custom.patch_namespaced_custom_object,
        "kubevirt.io",
        "v1",
        NS,
        "virtualmachines",
        "vm",
        {"spec": {"running": True}},
        _content_type="application/strategic-merge-patch+json",
    )

    assert code == 415
    assert body["reason"] == "UnsupportedMediaType"
    assert body["message"] == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )


# -- delete ------------------------------------------------------------------------------------


def test_delete_answers_a_success_status_naming_the_object(core) -> None:
    created = core.create_namespaced_secret(NS, secret("gone"))

    answer = core.delete_namespaced_secret("gone", NS)

    assert answer["kind"] == "Status"
    assert answer["status"] == "Success"
    assert answer["details"] == {"name": "gone", "kind": "secrets", "uid": created.metadata.uid}
    assert refused(core.read_namespaced_secret, "gone", NS)[0] == 404


def test_deleting_a_service_account_answers_with_the_account(core) -> None:
    core.create_namespaced_service_account(NS, {"metadata": {"name": "returned"}})

    response = core.delete_namespaced_service_account("returned", NS, _preload_content=False)
    answer = json.loads(response.read())

    assert answer["kind"] == "ServiceAccount"
    assert answer["metadata"]["name"] == "returned"


def test_delete_with_a_mismatched_uid_precondition_is_409(core) -> None:
    created = core.create_namespaced_secret(NS, secret("guarded"))
    wrong = str(uuid.uuid4())

    code, body = refused(
        core.delete_namespaced_secret, "guarded", NS, body={"preconditions": {"uid": wrong}}
    )

    assert code == 409
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        f'Operation cannot be fulfilled on Secret "guarded": the UID in the precondition '
        f"({wrong}) does not match the UID in record ({created.metadata.uid}). "
        "The object might have been deleted and then recreated"
    )
    assert core.read_namespaced_secret("guarded", NS).metadata.uid == created.metadata.uid


def test_finalizers_keep_a_deleted_object_until_they_are_removed(core) -> None:
    held = {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    core.create_namespaced_config_map(NS, held)

    response = core.delete_namespaced_config_map("held", NS, _preload_content=False)
    answer = json.loads(response.read())
    still_there = core.read_namespaced_config_map("held", NS)

    assert response.status == 200
    assert answer["kind"] == "ConfigMap"
    assert answer["metadata"]["deletionTimestamp"]
    assert still_there.metadata.deletion_timestamp is not None
    assert still_there.metadata.deletion_grace_period_seconds == 0

    core.patch_namespaced_config_map(
        "held", NS, {"metadata": {"finalizers": None}}, _content_type="application/merge-patch+json"
    )

    assert refused(core.read_namespaced_config_map, "held", NS)[0] == 404


def test_deleting_a_namespace_removes_everything_in_it(core) -> None:
    core.create_namespace({"metadata": {"name": "doomed"}})
    core.create_namespaced_secret("doomed", secret("inside"))
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "also-inside"}})

    response = core.delete_namespace("doomed", _preload_content=False)
    answer = json.loads(response.read())

    assert answer["kind"] == "Namespace"
    assert answer["status"]["phase"] == "Terminating"

    def namespace_gone() -> bool:
        try:
            core.read_namespace("doomed")
        except ApiException as err:
            return err.status == 404
        return False

    wait_for(namespace_gone, what="the namespace to be deleted")
    assert core.list_namespaced_secret("doomed").items == []
    assert core.list_namespaced_config_map("doomed").items == []


# -- watch -------------------------------------------------------------------------------------


def test_watch_replays_added_modified_deleted_in_order(core) -> None:
    start = core.list_namespaced_secret(NS).metadata.resource_version
    core.create_namespaced_secret(NS, secret("watched"))
    core.patch_namespaced_secret("watched", NS, {"metadata": {"labels": {"seen": "yes"}}})
    core.delete_namespaced_secret("watched", NS)

    watch = kubernetes.watch.Watch()
    events = []
    for event in watch.stream(
        core.list_namespaced_secret,
        NS,
        field_selector="metadata.name=watched",
        resource_version=start,
        timeout_seconds=5,
    ):
        events.append(event)
        if len(events) == 3:
            watch.stop()

    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    versions = [int(e["object"].metadata.resource_version) for e in events]
    assert versions == sorted(versions) and len(set(versions)) == 3
    assert events[1]["object"].metadata.labels == {"seen": "yes"}


def test_watch_streams_changes_made_after_it_started(core) -> None:
    start = core.list_namespaced_config_map(NS).metadata.resource_version
    watch = kubernetes.watch.Watch()
    stream = watch.stream(
        core.list_namespaced_config_map, NS, resource_version=start, timeout_seconds=5
    )

    core.create_namespaced_config_map(NS, {"metadata": {"name": "live"}})
    first = next(stream)
    watch.stop()

    assert (first["type"], first["object"].metadata.name) == ("ADDED", "live")


def test_watch_from_a_compacted_resource_version_is_410_expired(
    sandbox: Sandbox, core, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = sandbox["source"].cluster.store
    monkeypatch.setattr(store, "_events", deque(store._events, maxlen=5))
    old = core.list_namespaced_config_map(NS).metadata.resource_version
    for index in range(8):
        core.create_namespaced_config_map(NS, {"metadata": {"name": f"churn-{index}"}})

    response = core.list_namespaced_config_map(
        NS, watch=True, resource_version=old, timeout_seconds=2, _preload_content=False
    )
    first = json.loads(response.read().splitlines()[0])

    assert response.status == 200  # as the real server: the error is a watch event
    assert first["type"] == "ERROR"
    assert first["object"]["code"] == 410
    assert first["object"]["reason"] == "Expired"
    assert first["object"]["message"].startswith(f"too old resource version: {old} (")

    with pytest.raises(ApiException) as caught:
        list(
            kubernetes.watch.Watch().stream(
                core.list_namespaced_config_map, NS, resource_version=old, timeout_seconds=2
            )
        )
    assert caught.value.status == 410


# -- discovery -----------------------------------------------------------------------------------


def test_version_is_kubernetes_1_32(api) -> None:
    version = kubernetes.client.VersionApi(api).get_code()

    assert (version.major, version.minor) == ("1", "32")
    assert version.git_version.startswith("v1.32.")


def test_legacy_discovery_lists_core_v1_and_the_groups(api) -> None:
    core_versions = kubernetes.client.CoreApi(api).get_api_versions()
    groups = {g.name: g for g in kubernetes.client.ApisApi(api).get_api_versions().groups}
    core_resources = kubernetes.client.CoreV1Api(api).get_api_resources()

    assert core_versions.versions == ["v1"]
    assert {RBAC, "apiextensions.k8s.io", "kubevirt.io"} <= set(groups)
    assert groups[RBAC].preferred_version.group_version == f"{RBAC}/v1"
    names = {r.name: r for r in core_resources.resources}
    assert names["secrets"].namespaced is True
    assert names["namespaces"].namespaced is False
    assert "serviceaccounts/token" in names


@pytest.mark.parametrize("path", ["/api", "/apis"])
def test_aggregated_discovery_answers_in_the_content_type_asked_for(api, path) -> None:
    response = raw(api, "GET", path, Accept=AGGREGATED)
    document = json.loads(response.read())

    assert response.status == 200
    assert response.headers["Content-Type"] == AGGREGATED
    assert document["kind"] == "APIGroupDiscoveryList"
    assert document["apiVersion"] == "apidiscovery.k8s.io/v2"
    groups = {item["metadata"].get("name", "") for item in document["items"]}
    if path == "/api":
        assert groups == {""}
    else:
        assert "" not in groups and {RBAC, "kubevirt.io"} <= groups


def test_plain_discovery_answers_json_when_aggregated_is_not_asked_for(api) -> None:
    response = raw(api, "GET", "/apis", Accept="application/json")

    assert response.headers["Content-Type"] == "application/json"
    assert json.loads(response.read())["kind"] == "APIGroupList"


def test_a_new_crd_is_served_and_discovered_once_created(api) -> None:
    extensions = kubernetes.client.ApiextensionsV1Api(api)
    custom = kubernetes.client.CustomObjectsApi(api)
    extensions.create_custom_resource_definition(
        {
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
    )

    def established() -> bool:
        crd = extensions.read_custom_resource_definition("widgets.example.com")
        conditions = (crd.status.conditions if crd.status else None) or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(established, what="the CRD to be established")
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    created = custom.create_namespaced_custom_object("example.com", "v1", NS, "widgets", widget)
    groups = {g.name for g in kubernetes.client.ApisApi(api).get_api_versions().groups}
    resources = json.loads(raw(api, "GET", "/apis/example.com/v1").read())

    assert created["metadata"]["uid"]
    assert created["metadata"]["generation"] == 1
    assert "example.com" in groups
    assert [r["name"] for r in resources["resources"]] == ["widgets"]


def test_openapi_v3_lists_every_group_version(api) -> None:
    response = raw(api, "GET", "/openapi/v3")
    paths = json.loads(response.read())["paths"]

    assert response.status == 200
    assert {"api/v1", f"apis/{RBAC}/v1", "apis/kubevirt.io/v1"} <= set(paths)
    spec = json.loads(raw(api, "GET", paths["api/v1"]["serverRelativeURL"]).read())
    assert spec["openapi"].startswith("3.")
