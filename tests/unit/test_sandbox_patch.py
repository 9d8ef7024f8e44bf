"""Tests for the sandbox PATCH engine: RFC 7386, RFC 6902 and Kubernetes strategic merge."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from mtv_register.sandbox.patch import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    PatchError,
    apply_patch,
    json_merge_patch,
)


def _merge(original: dict[str, Any], patch: Any) -> dict[str, Any]:
    return apply_patch(original, json.dumps(patch).encode(), MERGE_PATCH)


def _json_patch(original: dict[str, Any], operations: Any) -> dict[str, Any]:
    return apply_patch(original, json.dumps(operations).encode(), JSON_PATCH)


def _smp(original: dict[str, Any], patch: Any) -> dict[str, Any]:
    return apply_patch(original, json.dumps(patch).encode(), STRATEGIC_MERGE_PATCH)


def _reason(excinfo: pytest.ExceptionInfo[PatchError]) -> str:
    return excinfo.value.reason


def _directive_keys(value: Any) -> list[str]:
    """Every key starting with "$", at any depth."""
    if isinstance(value, dict):
        own = [key for key in value if key.startswith("$")]
        return own + [found for child in value.values() for found in _directive_keys(child)]
    if isinstance(value, list):
        return [found for child in value for found in _directive_keys(child)]
    return []


# --- media types -----------------------------------------------------------------------------


def test_media_type_parameters_are_ignored() -> None:
    result = apply_patch({"a": 1}, b'{"b": 2}', "application/merge-patch+json; charset=utf-8")
    assert result == {"a": 1, "b": 2}


@pytest.mark.parametrize("media_type", [APPLY_PATCH, "application/json", "text/plain"])
def test_unsupported_media_type_including_server_side_apply_is_refused(media_type: str) -> None:
    with pytest.raises(PatchError) as excinfo:
        apply_patch({}, b"{}", media_type)
    assert _reason(excinfo) == "UnsupportedMediaType"


@pytest.mark.parametrize("media_type", [MERGE_PATCH, STRATEGIC_MERGE_PATCH, JSON_PATCH])
@pytest.mark.parametrize("body", [b"", b"{not json", b'{"a": NaN}', b"\xff\xfe\x00"])
def test_body_that_is_not_json_is_bad_request(media_type: str, body: bytes) -> None:
    with pytest.raises(PatchError) as excinfo:
        apply_patch({"a": 1}, body, media_type)
    assert _reason(excinfo) == "BadRequest"


@pytest.mark.parametrize("media_type", [MERGE_PATCH, STRATEGIC_MERGE_PATCH])
@pytest.mark.parametrize("body", [b"[1]", b'"x"', b"null", b"3"])
def test_merge_patch_that_is_not_an_object_is_bad_request(media_type: str, body: bytes) -> None:
    with pytest.raises(PatchError) as excinfo:
        apply_patch({"a": 1}, body, media_type)
    assert _reason(excinfo) == "BadRequest"


def test_patch_error_is_a_value_error_defaulting_to_bad_request() -> None:
    error = PatchError("boom")
    assert isinstance(error, ValueError)
    assert error.reason == "BadRequest"
    assert str(error) == "boom"


# --- JSON merge patch (RFC 7386) ---------------------------------------------------------------

RFC7386_APPENDIX_A = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("original", "patch", "expected"), RFC7386_APPENDIX_A)
def test_json_merge_patch_matches_every_rfc7386_appendix_example(
    original: Any, patch: Any, expected: Any
) -> None:
    before = copy.deepcopy(original)
    assert json_merge_patch(original, patch) == expected
    assert original == before


@pytest.mark.parametrize(
    ("original", "patch", "expected"),
    [
        case
        for case in RFC7386_APPENDIX_A
        if isinstance(case[0], dict) and isinstance(case[1], dict)
    ],
)
def test_merge_patch_media_type_applies_rfc7386_object_examples(
    original: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert _merge(original, patch) == expected


def test_merge_patch_replaces_lists_whole_even_merge_keyed_ones() -> None:
    original = {"metadata": {"ownerReferences": [{"uid": "1"}], "finalizers": ["a"]}}
    patch = {"metadata": {"ownerReferences": [{"uid": "2"}], "finalizers": ["b"]}}
    assert _merge(original, patch) == patch


# --- JSON patch (RFC 6902) ---------------------------------------------------------------------


def test_json_patch_a1_adds_an_object_member() -> None:
    ops = [{"op": "add", "path": "/baz", "value": "qux"}]
    assert _json_patch({"foo": "bar"}, ops) == {"baz": "qux", "foo": "bar"}


def test_json_patch_a2_adds_an_array_element() -> None:
    ops = [{"op": "add", "path": "/foo/1", "value": "qux"}]
    assert _json_patch({"foo": ["bar", "baz"]}, ops) == {"foo": ["bar", "qux", "baz"]}


def test_json_patch_a3_removes_an_object_member() -> None:
    ops = [{"op": "remove", "path": "/baz"}]
    assert _json_patch({"baz": "qux", "foo": "bar"}, ops) == {"foo": "bar"}


def test_json_patch_a4_removes_an_array_element() -> None:
    ops = [{"op": "remove", "path": "/foo/1"}]
    assert _json_patch({"foo": ["bar", "qux", "baz"]}, ops) == {"foo": ["bar", "baz"]}


def test_json_patch_a5_replaces_a_value() -> None:
    ops = [{"op": "replace", "path": "/baz", "value": "boo"}]
    assert _json_patch({"baz": "qux", "foo": "bar"}, ops) == {"baz": "boo", "foo": "bar"}


def test_json_patch_a6_moves_a_value() -> None:
    original = {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}
    ops = [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]
    expected = {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}
    assert _json_patch(original, ops) == expected


def test_json_patch_a7_moves_an_array_element() -> None:
    ops = [{"op": "move", "from": "/foo/1", "path": "/foo/3"}]
    result = _json_patch({"foo": ["all", "grass", "cows", "eat"]}, ops)
    assert result == {"foo": ["all", "cows", "eat", "grass"]}


def test_json_patch_a8_passing_tests_leave_the_document_unchanged() -> None:
    original = {"baz": "qux", "foo": ["a", 2, "c"]}
    ops = [
        {"op": "test", "path": "/baz", "value": "qux"},
        {"op": "test", "path": "/foo/1", "value": 2},
    ]
    assert _json_patch(original, ops) == original


def test_json_patch_a9_failed_test_is_invalid() -> None:
    with pytest.raises(PatchError) as excinfo:
        _json_patch({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}])
    assert _reason(excinfo) == "Invalid"


def test_json_patch_a10_adds_a_nested_member_object() -> None:
    ops = [{"op": "add", "path": "/child", "value": {"grandchild": {}}}]
    assert _json_patch({"foo": "bar"}, ops) == {"foo": "bar", "child": {"grandchild": {}}}


def test_json_patch_a11_ignores_unrecognized_operation_members() -> None:
    ops = [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}]
    assert _json_patch({"foo": "bar"}, ops) == {"foo": "bar", "baz": "qux"}


def test_json_patch_a12_adding_to_a_nonexistent_target_is_invalid() -> None:
    with pytest.raises(PatchError) as excinfo:
        _json_patch({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}])
    assert _reason(excinfo) == "Invalid"


def test_json_patch_a13_operation_with_repeated_op_member_is_bad_request() -> None:
    body = b'[{"op": "add", "path": "/baz", "value": "qux", "op": "remove"}]'
    with pytest.raises(PatchError) as excinfo:
        apply_patch({"foo": "bar"}, body, JSON_PATCH)
    assert _reason(excinfo) == "BadRequest"


def test_json_patch_a14_unescapes_tilde_one_before_tilde_zero() -> None:
    original = {"/": 9, "~1": 10}
    assert _json_patch(original, [{"op": "test", "path": "/~01", "value": 10}]) == original


def test_json_patch_a15_string_never_equals_number_in_test() -> None:
    with pytest.raises(PatchError) as excinfo:
        _json_patch({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}])
    assert _reason(excinfo) == "Invalid"


def test_json_patch_a16_appends_an_array_value_with_dash() -> None:
    ops = [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}]
    assert _json_patch({"foo": ["bar"]}, ops) == {"foo": ["bar", ["abc", "def"]]}


def test_json_patch_copies_a_value_without_aliasing_it() -> None:
    ops = [
        {"op": "copy", "from": "/a", "path": "/b"},
        {"op": "add", "path": "/b/x", "value": 2},
    ]
    assert _json_patch({"a": {"x": 1}}, ops) == {"a": {"x": 1}, "b": {"x": 2}}


def test_json_patch_slash_escape_reaches_annotation_keys() -> None:
    original = {"metadata": {"annotations": {"example.com/owner": "a"}}}
    ops = [{"op": "replace", "path": "/metadata/annotations/example.com~1owner", "value": "b"}]
    assert _json_patch(original, ops) == {"metadata": {"annotations": {"example.com/owner": "b"}}}


def test_json_patch_test_distinguishes_booleans_from_numbers() -> None:
    assert _json_patch({"a": 1.0}, [{"op": "test", "path": "/a", "value": 1}]) == {"a": 1.0}
    with pytest.raises(PatchError) as excinfo:
        _json_patch({"a": True}, [{"op": "test", "path": "/a", "value": 1}])
    assert _reason(excinfo) == "Invalid"


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "remove", "path": "/missing"},
        {"op": "replace", "path": "/missing", "value": 1},
        {"op": "move", "from": "/missing", "path": "/b"},
        {"op": "copy", "from": "/missing", "path": "/b"},
        {"op": "test", "path": "/missing", "value": 1},
        {"op": "add", "path": "/list/3", "value": 1},
        {"op": "add", "path": "/list/01", "value": 1},
        {"op": "remove", "path": "/list/2"},
        {"op": "remove", "path": "/list/-"},
        {"op": "replace", "path": "/list/-1", "value": 1},
        {"op": "add", "path": "/a/x", "value": 1},
        {"op": "move", "from": "/list", "path": "/list/0"},
        {"op": "remove", "path": ""},
    ],
)
def test_json_patch_missing_path_or_index_out_of_bounds_is_invalid(
    operation: dict[str, Any],
) -> None:
    with pytest.raises(PatchError) as excinfo:
        _json_patch({"a": 1, "list": [1, 2]}, [operation])
    assert _reason(excinfo) == "Invalid"


@pytest.mark.parametrize(
    "operations",
    [
        {"op": "add", "path": "/a", "value": 1},
        ["add"],
        [{"path": "/a", "value": 1}],
        [{"op": "add", "value": 1}],
        [{"op": "frobnicate", "path": "/a"}],
        [{"op": "add", "path": "/a"}],
        [{"op": "move", "path": "/a"}],
        [{"op": "add", "path": "a", "value": 1}],
        [{"op": "add", "path": "/a~2", "value": 1}],
    ],
)
def test_json_patch_malformed_document_is_bad_request(operations: Any) -> None:
    with pytest.raises(PatchError) as excinfo:
        _json_patch({"a": 1}, operations)
    assert _reason(excinfo) == "BadRequest"


def test_json_patch_is_atomic_and_never_mutates_original() -> None:
    original = {"a": {"b": [1, 2]}}
    ops = [{"op": "add", "path": "/a/b/-", "value": 3}, {"op": "test", "path": "/a", "value": 0}]
    with pytest.raises(PatchError):
        _json_patch(original, ops)
    assert original == {"a": {"b": [1, 2]}}


def test_json_patch_replacing_the_root_with_a_non_object_is_invalid() -> None:
    with pytest.raises(PatchError) as excinfo:
        _json_patch({"a": 1}, [{"op": "replace", "path": "", "value": [1]}])
    assert _reason(excinfo) == "Invalid"


# --- strategic merge patch ---------------------------------------------------------------------


def _owner(uid: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": uid}


def test_strategic_adding_a_second_owner_reference_keeps_the_first() -> None:
    original = {"metadata": {"name": "x", "ownerReferences": [_owner("u1", "first")]}}
    patch = {"metadata": {"ownerReferences": [_owner("u2", "second")]}}
    result = _smp(original, patch)
    assert result["metadata"]["ownerReferences"] == [_owner("u1", "first"), _owner("u2", "second")]


def test_strategic_owner_reference_with_same_uid_is_merged_not_duplicated() -> None:
    original = {"metadata": {"ownerReferences": [_owner("u1", "first")]}}
    patch = {"metadata": {"ownerReferences": [{"uid": "u1", "controller": True}]}}
    merged = _smp(original, patch)["metadata"]["ownerReferences"]
    assert merged == [{**_owner("u1", "first"), "controller": True}]


def test_strategic_conditions_merge_by_type() -> None:
    original = {
        "status": {
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "Pending"},
                {"type": "Validated", "status": "True"},
            ]
        }
    }
    patch = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": None}]}}
    assert _smp(original, patch)["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "Validated", "status": "True"},
    ]


def _deployment(containers: list[dict[str, Any]], **pod_spec: Any) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": containers, **pod_spec}}}}


def test_strategic_containers_merge_by_name_and_their_env_by_name() -> None:
    original = _deployment(
        [
            {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
            {"name": "sidecar", "image": "side:1"},
        ]
    )
    patch = _deployment(
        [
            {
                "name": "app",
                "image": "app:2",
                "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "9"}],
            }
        ]
    )
    assert _smp(original, patch)["spec"]["template"]["spec"]["containers"] == [
        {
            "name": "app",
            "image": "app:2",
            "env": [{"name": "A", "value": "9"}, {"name": "B", "value": "2"}],
        },
        {"name": "sidecar", "image": "side:1"},
    ]


def test_strategic_container_ports_mounts_volumes_and_pull_secrets_merge_by_their_keys() -> None:
    original = _deployment(
        [
            {
                "name": "app",
                "ports": [{"containerPort": 80, "name": "http"}],
                "volumeMounts": [{"mountPath": "/a", "name": "va"}],
            }
        ],
        volumes=[{"name": "va", "emptyDir": {}}],
        imagePullSecrets=[{"name": "pull-a"}],
        initContainers=[{"name": "init", "image": "i:1"}],
    )
    patch = _deployment(
        [
            {
                "name": "app",
                "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}],
                "volumeMounts": [{"mountPath": "/b", "name": "vb"}],
            }
        ],
        volumes=[{"name": "vb", "secret": {"secretName": "s"}}],
        imagePullSecrets=[{"name": "pull-b"}],
        initContainers=[{"name": "init", "image": "i:2"}],
    )
    pod = _smp(original, patch)["spec"]["template"]["spec"]
    assert pod["containers"][0]["ports"] == [
        {"containerPort": 80, "name": "http", "protocol": "TCP"},
        {"containerPort": 443},
    ]
    assert [m["mountPath"] for m in pod["containers"][0]["volumeMounts"]] == ["/a", "/b"]
    assert [v["name"] for v in pod["volumes"]] == ["va", "vb"]
    assert pod["imagePullSecrets"] == [{"name": "pull-a"}, {"name": "pull-b"}]
    assert pod["initContainers"] == [{"name": "init", "image": "i:2"}]


def test_strategic_cronjob_template_containers_merge_by_name() -> None:
    def cronjob(containers: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": containers}}}}}
        }

    original = cronjob([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}])
    result = _smp(original, cronjob([{"name": "b", "image": "b:2"}]))
    containers = result["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert containers == [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}]


def test_strategic_service_account_secrets_and_pull_secrets_merge_by_name() -> None:
    original = {"secrets": [{"name": "token-a"}], "imagePullSecrets": [{"name": "pull-a"}]}
    patch = {"secrets": [{"name": "token-b"}], "imagePullSecrets": [{"name": "pull-b"}]}
    assert _smp(original, patch) == {
        "secrets": [{"name": "token-a"}, {"name": "token-b"}],
        "imagePullSecrets": [{"name": "pull-a"}, {"name": "pull-b"}],
    }


def test_strategic_patch_delete_element_removes_it_from_the_list() -> None:
    original = _deployment([{"name": "a"}, {"name": "b"}, {"name": "c"}])
    patch = _deployment([{"name": "b", "$patch": "delete"}])
    containers = _smp(original, patch)["spec"]["template"]["spec"]["containers"]
    assert containers == [{"name": "a"}, {"name": "c"}]


def test_strategic_patch_delete_element_without_merge_key_is_bad_request() -> None:
    with pytest.raises(PatchError) as excinfo:
        _smp(_deployment([{"name": "a"}]), _deployment([{"$patch": "delete"}]))
    assert _reason(excinfo) == "BadRequest"


def test_strategic_merged_list_element_without_merge_key_is_bad_request() -> None:
    with pytest.raises(PatchError) as excinfo:
        _smp(_deployment([{"name": "a"}]), _deployment([{"image": "x"}]))
    assert _reason(excinfo) == "BadRequest"


def test_strategic_unknown_patch_directive_is_bad_request() -> None:
    with pytest.raises(PatchError) as excinfo:
        _smp({"spec": {"a": 1}}, {"spec": {"$patch": "explode"}})
    assert _reason(excinfo) == "BadRequest"


def test_strategic_patch_replace_on_a_map_replaces_it_whole() -> None:
    original = {"data": {"a": "1", "b": "2"}, "kind": "ConfigMap"}
    patch = {"data": {"$patch": "replace", "c": "3"}}
    assert _smp(original, patch) == {"data": {"c": "3"}, "kind": "ConfigMap"}


def test_strategic_patch_replace_in_a_list_replaces_the_list_with_the_other_elements() -> None:
    original = _deployment([{"name": "a", "image": "a:1"}, {"name": "b"}])
    patch = _deployment([{"$patch": "replace"}, {"name": "c", "image": "c:1"}])
    containers = _smp(original, patch)["spec"]["template"]["spec"]["containers"]
    assert containers == [{"name": "c", "image": "c:1"}]


def test_strategic_patch_delete_on_a_map_removes_the_map() -> None:
    original = {"metadata": {"name": "x", "labels": {"a": "b"}}}
    patch = {"metadata": {"labels": {"$patch": "delete"}}}
    assert _smp(original, patch) == {"metadata": {"name": "x"}}


def test_strategic_retain_keys_keeps_only_listed_keys_after_merging() -> None:
    original = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    assert _smp(original, patch) == {"spec": {"strategy": {"type": "Recreate"}}}


def test_strategic_retain_keys_must_list_every_patched_field() -> None:
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 2}}}}
    with pytest.raises(PatchError) as excinfo:
        _smp({"spec": {"strategy": {}}}, patch)
    assert _reason(excinfo) == "BadRequest"


def test_strategic_set_element_order_puts_named_elements_first_in_that_order() -> None:
    original = _deployment([{"name": "a"}, {"name": "b"}, {"name": "injected"}])
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}],
                    "containers": [{"name": "c", "image": "c:1"}],
                }
            }
        }
    }
    containers = _smp(original, patch)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["c", "b", "a", "injected"]


def test_strategic_set_element_order_orders_a_primitive_set_list() -> None:
    original = {"metadata": {"finalizers": ["x", "y"]}}
    patch = {"metadata": {"$setElementOrder/finalizers": ["y", "z", "x"], "finalizers": ["z"]}}
    assert _smp(original, patch)["metadata"]["finalizers"] == ["y", "z", "x"]


def test_strategic_kubectl_apply_shape_with_top_level_directive_is_applied_cleanly() -> None:
    original = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "annotations": {"other": "keep"}},
        "stringData": {"old": "x"},
    }
    patch = {
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "$setElementOrder/containers": [{"name": "a"}],
        "stringData": {"k": "v"},
    }
    result = _smp(original, patch)
    assert result == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "s",
            "annotations": {
                "other": "keep",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
            },
        },
        "stringData": {"old": "x", "k": "v"},
    }


def test_strategic_delete_from_primitive_list_removes_finalizers() -> None:
    original = {"metadata": {"finalizers": ["a", "b", "c"]}}
    patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "missing"]}}
    assert _smp(original, patch) == {"metadata": {"finalizers": ["a", "c"]}}


def test_strategic_finalizers_merge_as_an_ordered_union() -> None:
    original = {"metadata": {"finalizers": ["a", "b"]}}
    patch = {"metadata": {"finalizers": ["c", "b", "d"]}}
    assert _smp(original, patch)["metadata"]["finalizers"] == ["a", "b", "c", "d"]


def test_strategic_cluster_role_rules_are_replaced_whole() -> None:
    original = {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}
    patch = {"rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list"]}]}
    assert _smp(original, patch) == patch


def test_strategic_binding_subjects_are_replaced_whole() -> None:
    original = {"subjects": [{"kind": "ServiceAccount", "name": "a", "namespace": "n"}]}
    patch = {"subjects": [{"kind": "ServiceAccount", "name": "b", "namespace": "n"}]}
    assert _smp(original, patch) == patch


def test_strategic_null_deletes_a_key_and_is_never_stored() -> None:
    original = {"metadata": {"labels": {"a": "1", "b": "2"}}, "data": {"k": "v"}}
    patch = {"metadata": {"labels": {"a": None, "new": None}}, "data": None, "extra": {"x": None}}
    assert _smp(original, patch) == {"metadata": {"labels": {"b": "2"}}, "extra": {}}


def test_strategic_unmatched_paths_fall_back_to_merge_patch_semantics() -> None:
    original = {"spec": {"map": {"a": 1}, "list": [1, 2], "scalar": "x"}}
    patch = {"spec": {"map": {"b": 2}, "list": [3], "scalar": {"now": "map"}}}
    expected = {"spec": {"map": {"a": 1, "b": 2}, "list": [3], "scalar": {"now": "map"}}}
    assert _smp(original, patch) == expected


def test_strategic_no_directive_key_leaks_into_the_output() -> None:
    original = _deployment(
        [{"name": "a", "env": [{"name": "E", "value": "1"}]}, {"name": "b"}],
        volumes=[{"name": "v", "emptyDir": {}}],
    )
    original["metadata"] = {"finalizers": ["f1", "f2"], "labels": {"l": "1"}}
    patch: dict[str, Any] = {
        "$setElementOrder/containers": [{"name": "a"}],
        "metadata": {
            "$deleteFromPrimitiveList/finalizers": ["f1"],
            "$setElementOrder/finalizers": ["f2"],
            "labels": {"$patch": "replace", "m": "2"},
            "annotations": {"$retainKeys": ["x"], "x": "y"},
        },
        "spec": {
            "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                    "containers": [
                        {
                            "name": "a",
                            "$setElementOrder/env": [{"name": "F"}, {"name": "E"}],
                            "env": [{"name": "F", "value": "2"}],
                            "resources": {"$patch": "replace", "limits": {"cpu": "1"}},
                        },
                        {"name": "new", "env": [{"name": "X", "$patch": "delete"}]},
                    ],
                    "volumes": [{"name": "v", "$patch": "delete"}],
                    "nodeSelector": {"$patch": "delete"},
                    "tolerations": [{"key": "k", "$patch": "replace"}],
                    "imagePullSecrets": [
                        {"$patch": "replace"},
                        {"name": "p", "x": {"$retainKeys": []}},
                    ],
                }
            },
        },
    }
    result = _smp(original, patch)
    assert _directive_keys(result) == []
    containers = result["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["b", "a", "new"]
    assert [e["name"] for e in containers[1]["env"]] == ["F", "E"]
    assert result["metadata"]["finalizers"] == ["f2"]


@pytest.mark.parametrize(
    ("media_type", "patch"),
    [
        (MERGE_PATCH, {"spec": {"template": {"spec": {"containers": [{"name": "z"}]}}}}),
        (STRATEGIC_MERGE_PATCH, _deployment([{"name": "a", "env": [{"name": "E", "value": "2"}]}])),
        (STRATEGIC_MERGE_PATCH, _deployment([{"name": "a", "$patch": "delete"}])),
        (
            JSON_PATCH,
            [{"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {}}],
        ),
    ],
)
def test_original_is_never_mutated_and_result_shares_no_containers(
    media_type: str, patch: Any
) -> None:
    original = _deployment([{"name": "a", "env": [{"name": "E", "value": "1"}]}])
    original["metadata"] = {"finalizers": ["f"]}
    before = copy.deepcopy(original)
    result = apply_patch(original, json.dumps(patch).encode(), media_type)
    assert original == before
    result["metadata"]["finalizers"].append("mutated")
    assert original == before
