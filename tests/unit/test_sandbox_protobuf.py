"""Tests for the sandbox's Kubernetes protobuf request-body decoder.

Bodies are built with a tiny encoder below that mimics what kubectl's generated Go marshallers
emit: non-pointer strings, ints and Times are always written (as "", 0, or an empty message),
while nil pointers and empty slices or maps are left out.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from mtv_register.sandbox.protobuf import (
    MAGIC,
    PROTOBUF_CONTENT_TYPE,
    ProtobufError,
    decode,
    is_protobuf,
)

# --- test-side encoder -------------------------------------------------------------------------


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negatives are sign-extended to ten bytes, as in Go
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def ld(number: int, payload: bytes | str) -> bytes:
    """A length-delimited field: string, bytes or nested message."""
    data = payload.encode() if isinstance(payload, str) else payload
    return tag(number, 2) + varint(len(data)) + data


def vi(number: int, value: int) -> bytes:
    return tag(number, 0) + varint(value)


def map_field(number: int, entries: Mapping[str, str | bytes]) -> bytes:
    return b"".join(ld(number, ld(1, k) + ld(2, v)) for k, v in sorted(entries.items()))


def repeated(number: int, items: Sequence[str | bytes]) -> bytes:
    return b"".join(ld(number, item) for item in items)


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = ld(1, api_version) + ld(2, kind)
    return MAGIC + ld(1, type_meta) + ld(2, raw) + ld(3, "") + ld(4, "")


def object_meta(
    name: str = "",
    namespace: str = "",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    extra: bytes = b"",
) -> bytes:
    """ObjectMeta the way Go marshals a freshly built object: empty fields still present."""
    return (
        ld(1, name)
        + ld(2, "")
        + ld(3, namespace)
        + ld(4, "")
        + ld(5, "")
        + ld(6, "")
        + vi(7, 0)
        + ld(8, b"")  # zero creationTimestamp
        + map_field(11, labels or {})
        + map_field(12, annotations or {})
        + extra
    )


# --- kinds kubectl creates ---------------------------------------------------------------------


def test_namespace() -> None:
    body = envelope(
        "v1",
        "Namespace",
        ld(1, object_meta(name="demo")) + ld(2, b"") + ld(3, ld(1, "")),  # spec {}, status
    )
    assert decode(body) == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}


def test_namespace_spec_finalizers() -> None:
    body = envelope("v1", "Namespace", ld(1, object_meta(name="demo")) + ld(2, ld(1, "kubernetes")))
    assert decode(body)["spec"] == {"finalizers": ["kubernetes"]}


def test_service_account_with_namespace() -> None:
    body = envelope("v1", "ServiceAccount", ld(1, object_meta(name="mtv", namespace="ns")))
    assert decode(body) == {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "mtv", "namespace": "ns"},
    }


def test_service_account_image_pull_secrets_and_automount() -> None:
    raw = ld(1, object_meta(name="mtv")) + ld(3, ld(1, "pull")) + vi(4, 1)
    assert decode(envelope("v1", "ServiceAccount", raw)) == {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "mtv"},
        "imagePullSecrets": [{"name": "pull"}],
        "automountServiceAccountToken": True,
    }


def test_cluster_role_binding_for_service_account() -> None:
    # kubectl create clusterrolebinding x --clusterrole=r --serviceaccount=ns:sa
    subject = ld(1, "ServiceAccount") + ld(2, "") + ld(3, "sa") + ld(4, "ns")
    role_ref = ld(1, "rbac.authorization.k8s.io") + ld(2, "ClusterRole") + ld(3, "r")
    raw = ld(1, object_meta(name="x")) + ld(2, subject) + ld(3, role_ref)
    assert decode(envelope("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", raw)) == {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "x"},
        "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "r"},
    }


def test_role_binding_in_namespace() -> None:
    subject = ld(1, "User") + ld(2, "rbac.authorization.k8s.io") + ld(3, "alice") + ld(4, "")
    role_ref = ld(1, "rbac.authorization.k8s.io") + ld(2, "Role") + ld(3, "reader")
    raw = ld(1, object_meta(name="rb", namespace="ns")) + ld(2, subject) + ld(3, role_ref)
    decoded = decode(envelope("rbac.authorization.k8s.io/v1", "RoleBinding", raw))
    assert decoded["subjects"] == [
        {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}
    ]
    assert decoded["roleRef"]["kind"] == "Role"


def test_secret_with_binary_data_labels_and_annotations() -> None:
    data = {"password": b"s3cr3t", "blob": b"\xff\x00\xfe\x80", "empty": b""}
    meta = object_meta(
        name="creds",
        namespace="openshift-mtv",
        labels={"app": "mtv"},
        annotations={"note": "", "owner": "team"},
    )
    raw = ld(1, meta) + map_field(2, data) + ld(3, "Opaque")
    assert decode(envelope("v1", "Secret", raw)) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "creds",
            "namespace": "openshift-mtv",
            "labels": {"app": "mtv"},
            "annotations": {"note": "", "owner": "team"},
        },
        "data": {
            "blob": base64.b64encode(b"\xff\x00\xfe\x80").decode(),
            "empty": "",
            "password": "czNjcjN0",
        },
        "type": "Opaque",
    }


def test_secret_string_data_and_immutable() -> None:
    raw = ld(1, object_meta(name="s")) + map_field(4, {"token": "abc"}) + vi(5, 1)
    decoded = decode(envelope("v1", "Secret", raw))
    assert decoded["stringData"] == {"token": "abc"}
    assert decoded["immutable"] is True


def test_config_map_data_and_binary_data() -> None:
    raw = (
        ld(1, object_meta(name="cm"))
        + map_field(2, {"config.yaml": "a: 1\n"})
        + map_field(3, {"bin": b"\x00\x01"})
        + vi(4, 0)  # immutable: false is dropped like an unset field
    )
    assert decode(envelope("v1", "ConfigMap", raw)) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm"},
        "data": {"config.yaml": "a: 1\n"},
        "binaryData": {"bin": "AAE="},
    }


def test_cluster_role_with_two_rules() -> None:
    core_rule = (
        repeated(1, ["get", "list"]) + repeated(2, [""]) + repeated(3, ["secrets", "configmaps"])
    )
    forklift_rule = (
        repeated(1, ["*"])
        + repeated(2, ["forklift.konveyor.io"])
        + repeated(3, ["providers"])
        + repeated(4, ["host"])
    )
    raw = ld(1, object_meta(name="mtv-register")) + ld(2, core_rule) + ld(2, forklift_rule)
    assert decode(envelope("rbac.authorization.k8s.io/v1", "ClusterRole", raw)) == {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "mtv-register"},
        "rules": [
            # apiGroups [""] is the core group and must survive the empty-value dropping.
            {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["secrets", "configmaps"]},
            {
                "verbs": ["*"],
                "apiGroups": ["forklift.konveyor.io"],
                "resources": ["providers"],
                "resourceNames": ["host"],
            },
        ],
    }


def test_cluster_role_non_resource_urls() -> None:
    rule = repeated(1, ["get"]) + repeated(5, ["/healthz", "/version"])
    decoded = decode(envelope("rbac.authorization.k8s.io/v1", "ClusterRole", ld(2, rule)))
    assert decoded["rules"] == [{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/version"]}]
    assert "metadata" not in decoded


def test_self_subject_access_review_resource_attributes() -> None:
    # kubectl auth can-i create secrets -n ns
    attributes = b"".join(
        ld(number, value)
        for number, value in enumerate(["ns", "create", "", "", "secrets", "", ""], start=1)
    )
    status = vi(1, 0) + ld(2, "") + ld(3, "") + vi(4, 0)
    raw = ld(1, object_meta()) + ld(2, ld(1, attributes)) + ld(3, status)
    assert decode(envelope("authorization.k8s.io/v1", "SelfSubjectAccessReview", raw)) == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {"namespace": "ns", "verb": "create", "resource": "secrets"}
        },
    }


def test_self_subject_access_review_non_resource_attributes() -> None:
    raw = ld(1, object_meta()) + ld(2, ld(2, ld(1, "/metrics") + ld(2, "get")))
    decoded = decode(envelope("authorization.k8s.io/v1", "SelfSubjectAccessReview", raw))
    assert decoded["spec"] == {"nonResourceAttributes": {"path": "/metrics", "verb": "get"}}


def test_self_subject_rules_review() -> None:
    raw = ld(1, object_meta()) + ld(2, ld(1, "ns"))
    decoded = decode(envelope("authorization.k8s.io/v1", "SelfSubjectRulesReview", raw))
    assert decoded["spec"] == {"namespace": "ns"}


def test_self_subject_review() -> None:
    # kubectl auth whoami: empty metadata plus a server-side status the client leaves empty.
    raw = ld(1, object_meta()) + ld(2, ld(1, ld(1, "") + ld(2, "")))
    assert decode(envelope("authentication.k8s.io/v1", "SelfSubjectReview", raw)) == {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "SelfSubjectReview",
    }


def test_token_request() -> None:
    bound = ld(1, "Secret") + ld(2, "v1") + ld(3, "holder") + ld(4, "")
    spec = repeated(1, ["https://kubernetes.default.svc"]) + ld(3, bound) + vi(4, 3600)
    raw = ld(1, object_meta(name="mtv", namespace="ns")) + ld(2, spec)
    assert decode(envelope("authentication.k8s.io/v1", "TokenRequest", raw)) == {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "metadata": {"name": "mtv", "namespace": "ns"},
        "spec": {
            "audiences": ["https://kubernetes.default.svc"],
            "boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "holder"},
            "expirationSeconds": 3600,
        },
    }


def test_object_meta_timestamps_owner_references_and_ignored_fields() -> None:
    owner = (
        ld(1, "Provider")
        + ld(3, "host")
        + ld(4, "uid-1")
        + ld(5, "forklift.konveyor.io/v1beta1")
        + vi(6, 1)
        + vi(7, 0)
    )
    meta = (
        ld(1, "s")
        + ld(5, "uid-2")
        + ld(6, "42")
        + vi(7, 3)
        + ld(8, vi(1, 1_700_000_000) + vi(2, 500))
        + ld(9, b"")
        + vi(10, -1)
        + ld(13, owner)
        + repeated(14, ["forklift.konveyor.io/finalizer"])
        + ld(17, ld(1, "kubectl-create"))  # managedFields: ignored
    )
    assert decode(envelope("v1", "Secret", ld(1, meta)))["metadata"] == {
        "name": "s",
        "uid": "uid-2",
        "resourceVersion": "42",
        "generation": 3,
        "creationTimestamp": "2023-11-14T22:13:20Z",
        "deletionGracePeriodSeconds": -1,
        "ownerReferences": [
            {
                "kind": "Provider",
                "name": "host",
                "uid": "uid-1",
                "apiVersion": "forklift.konveyor.io/v1beta1",
                "controller": True,
            }
        ],
        "finalizers": ["forklift.konveyor.io/finalizer"],
    }


def test_unknown_fields_of_every_wire_type_are_skipped() -> None:
    unknown = (
        vi(99, 7)
        + tag(98, 1)
        + (1).to_bytes(8, "little")
        + ld(97, b"\x01\x02")
        + tag(96, 5)
        + (2).to_bytes(4, "little")
    )
    body = envelope("v1", "Namespace", unknown + ld(1, object_meta(name="demo") + unknown))
    assert decode(body + unknown) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "demo"},
    }


# --- malformed input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "magic"),
        (b'{"kind": "Namespace"}', "magic"),
        (ld(1, ld(2, "Namespace")), "magic"),
        (MAGIC + b"\x80", "truncated varint"),
        (MAGIC + ld(1, b"\x0a\xff"), "truncated varint"),
        (MAGIC + tag(2, 2) + varint(10) + b"abc", "field 2 truncated"),
        (MAGIC + tag(3, 1) + b"\x00\x00", "field 3 truncated"),
        (MAGIC + tag(1, 3), "wire type 3"),
        (MAGIC + b"\x00", "field number 0"),
        (MAGIC + b"\xff" * 11, "varint longer"),
        (envelope("v1", "Pod", b""), "unsupported kind 'Pod'"),
        (MAGIC + ld(2, b""), "unsupported kind ''"),
        (MAGIC + vi(1, 5), "field 1 should be length-delimited"),
        (envelope("v1", "Namespace", ld(1, vi(1, 5))), "field 1 should be length-delimited"),
        (envelope("v1", "Secret", ld(1, ld(7, "3"))), "field 7 should be a varint"),
        (envelope("v1", "Namespace", ld(1, ld(1, b"\xff"))), "not UTF-8"),
    ],
    ids=[
        "empty",
        "json",
        "no-magic",
        "truncated-tag",
        "truncated-nested-varint",
        "truncated-length-delimited",
        "truncated-fixed64",
        "group-wire-type",
        "field-zero",
        "overlong-varint",
        "unknown-kind",
        "missing-kind",
        "envelope-wire-type",
        "message-wire-type",
        "int-wire-type",
        "invalid-utf8",
    ],
)
def test_malformed_bodies_raise(body: bytes, message: str) -> None:
    with pytest.raises(ProtobufError, match=message):
        decode(body)


def test_protobuf_error_is_a_value_error() -> None:
    assert issubclass(ProtobufError, ValueError)


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (PROTOBUF_CONTENT_TYPE, True),
        ("application/vnd.kubernetes.protobuf; charset=binary", True),
        ("Application/VND.Kubernetes.Protobuf", True),
        ("application/json", False),
        ("application/vnd.kubernetes.protobuf;stream=watch", True),
        ("", False),
        (None, False),
    ],
)
def test_is_protobuf(content_type: str | None, expected: bool) -> None:
    assert is_protobuf(content_type) is expected


# --- cross-check against the protobuf package --------------------------------------------------


def _google_secret_classes() -> tuple[Any, Any]:
    """Secret and runtime.Unknown classes built from descriptors (proto2, as k8s uses)."""
    descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
    from google.protobuf import descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="k8s_subset.proto", package="k8s")
    proto.syntax = "proto2"

    def message(name: str, *fields: tuple[int, str, Any, bool]) -> Any:
        msg = proto.message_type.add(name=name)
        for number, field_name, kind, is_repeated in fields:
            added = msg.field.add(name=field_name, number=number)
            added.label = field.LABEL_REPEATED if is_repeated else field.LABEL_OPTIONAL
            if isinstance(kind, str):
                added.type, added.type_name = field.TYPE_MESSAGE, kind
            else:
                added.type = kind
        return msg

    def map_of(msg: Any, number: int, field_name: str, value_type: int) -> None:
        entry_name = field_name[0].upper() + field_name[1:] + "Entry"
        entry = msg.nested_type.add(name=entry_name)
        entry.options.map_entry = True
        entry.field.add(name="key", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
        entry.field.add(name="value", number=2, type=value_type, label=field.LABEL_OPTIONAL)
        msg.field.add(
            name=field_name,
            number=number,
            label=field.LABEL_REPEATED,
            type=field.TYPE_MESSAGE,
            type_name=f".k8s.{msg.name}.{entry_name}",
        )

    message(
        "TypeMeta",
        (1, "apiVersion", field.TYPE_STRING, False),
        (2, "kind", field.TYPE_STRING, False),
    )
    message("Unknown", (1, "typeMeta", ".k8s.TypeMeta", False), (2, "raw", field.TYPE_BYTES, False))
    message("Time", (1, "seconds", field.TYPE_INT64, False), (2, "nanos", field.TYPE_INT32, False))
    meta = message(
        "ObjectMeta",
        (1, "name", field.TYPE_STRING, False),
        (3, "namespace", field.TYPE_STRING, False),
        (7, "generation", field.TYPE_INT64, False),
        (8, "creationTimestamp", ".k8s.Time", False),
        (10, "deletionGracePeriodSeconds", field.TYPE_INT64, False),
        (14, "finalizers", field.TYPE_STRING, True),
    )
    map_of(meta, 11, "labels", field.TYPE_STRING)
    secret = message(
        "Secret",
        (1, "metadata", ".k8s.ObjectMeta", False),
        (3, "type", field.TYPE_STRING, False),
        (5, "immutable", field.TYPE_BOOL, False),
    )
    map_of(secret, 2, "data", field.TYPE_BYTES)

    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    secret_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("k8s.Secret"))
    unknown_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("k8s.Unknown"))
    return secret_class, unknown_class


def test_decoder_and_test_encoder_agree_with_protobuf_package() -> None:
    secret_class, unknown_class = _google_secret_classes()
    secret = secret_class()
    secret.metadata.name = "creds"
    secret.metadata.namespace = "ns"
    secret.metadata.generation = 2
    secret.metadata.creationTimestamp.seconds = 86_400
    secret.metadata.deletionGracePeriodSeconds = -30
    secret.metadata.labels["app"] = "mtv"
    secret.metadata.finalizers.append("f")
    secret.data["blob"] = b"\xff\xfe"
    secret.data["a"] = b"x"
    secret.type = "Opaque"
    secret.immutable = True
    unknown = unknown_class()
    unknown.typeMeta.apiVersion = "v1"
    unknown.typeMeta.kind = "Secret"
    unknown.raw = secret.SerializeToString(deterministic=True)
    google_body = MAGIC + unknown.SerializeToString(deterministic=True)

    meta = (
        ld(1, "creds")
        + ld(3, "ns")
        + vi(7, 2)
        + ld(8, vi(1, 86_400))
        + vi(10, -30)
        + map_field(11, {"app": "mtv"})
        + ld(14, "f")
    )
    raw = ld(1, meta) + map_field(2, {"blob": b"\xff\xfe", "a": b"x"}) + ld(3, "Opaque") + vi(5, 1)
    type_meta = ld(1, "v1") + ld(2, "Secret")
    assert MAGIC + ld(1, type_meta) + ld(2, raw) == google_body

    assert decode(google_body) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "creds",
            "namespace": "ns",
            "generation": 2,
            "creationTimestamp": "1970-01-02T00:00:00Z",
            "deletionGracePeriodSeconds": -30,
            "labels": {"app": "mtv"},
            "finalizers": ["f"],
        },
        "data": {"a": "eA==", "blob": "//4="},
        "type": "Opaque",
        "immutable": True,
    }
