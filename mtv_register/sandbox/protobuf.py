"""Decode Kubernetes protobuf request bodies into JSON-shaped dicts.

The real ``kubectl`` (1.32) sends some request bodies as
``application/vnd.kubernetes.protobuf`` instead of JSON. The sandbox API server stores and
answers in JSON, so this module turns such a body into the dict ``json.loads`` would give for
the JSON form of the same object. It is a small wire-format reader plus declarative schemas for
the kinds the sandbox serves; it deliberately does not depend on the ``protobuf`` package.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, TypeAlias

PROTOBUF_CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

__all__ = ["MAGIC", "PROTOBUF_CONTENT_TYPE", "ProtobufError", "decode", "is_protobuf"]


class ProtobufError(ValueError):
    """The body is not a Kubernetes protobuf object this module can decode."""


class Scalar(Enum):
    STRING = "string"
    BYTES = "bytes"  # emitted base64-encoded, as in JSON
    INT = "int"
    BOOL = "bool"
    TIME = "time"  # metav1.Time, emitted as RFC 3339


@dataclass(frozen=True)
class MapOf:
    """A ``map<string, value>`` field: repeated entry messages {1 key, 2 value}."""

    value: Scalar


@dataclass(frozen=True)
class Repeated:
    item: Scalar | Schema


FieldType: TypeAlias = "Scalar | Schema | MapOf | Repeated"
Schema: TypeAlias = "Mapping[int, tuple[str, FieldType]]"

STRING, BYTES, INT, BOOL, TIME = Scalar.STRING, Scalar.BYTES, Scalar.INT, Scalar.BOOL, Scalar.TIME

# Field numbers follow k8s.io/api and k8s.io/apimachinery generated.proto.
TYPE_META: Schema = {1: ("apiVersion", STRING), 2: ("kind", STRING)}
OWNER_REFERENCE: Schema = {
    1: ("kind", STRING),
    3: ("name", STRING),
    4: ("uid", STRING),
    5: ("apiVersion", STRING),
    6: ("controller", BOOL),
    7: ("blockOwnerDeletion", BOOL),
}
OBJECT_META: Schema = {
    1: ("name", STRING),
    2: ("generateName", STRING),
    3: ("namespace", STRING),
    4: ("selfLink", STRING),
    5: ("uid", STRING),
    6: ("resourceVersion", STRING),
    7: ("generation", INT),
    8: ("creationTimestamp", TIME),
    9: ("deletionTimestamp", TIME),
    10: ("deletionGracePeriodSeconds", INT),
    11: ("labels", MapOf(STRING)),
    12: ("annotations", MapOf(STRING)),
    13: ("ownerReferences", Repeated(OWNER_REFERENCE)),
    14: ("finalizers", Repeated(STRING)),
}
OBJECT_REFERENCE: Schema = {
    1: ("kind", STRING),
    2: ("namespace", STRING),
    3: ("name", STRING),
    4: ("uid", STRING),
    5: ("apiVersion", STRING),
    6: ("resourceVersion", STRING),
    7: ("fieldPath", STRING),
}
POLICY_RULE: Schema = {
    1: ("verbs", Repeated(STRING)),
    2: ("apiGroups", Repeated(STRING)),
    3: ("resources", Repeated(STRING)),
    4: ("resourceNames", Repeated(STRING)),
    5: ("nonResourceURLs", Repeated(STRING)),
}
SUBJECT: Schema = {
    1: ("kind", STRING),
    2: ("apiGroup", STRING),
    3: ("name", STRING),
    4: ("namespace", STRING),
}
ROLE_REF: Schema = {1: ("apiGroup", STRING), 2: ("kind", STRING), 3: ("name", STRING)}
ROLE: Schema = {1: ("metadata", OBJECT_META), 2: ("rules", Repeated(POLICY_RULE))}
ROLE_BINDING: Schema = {
    1: ("metadata", OBJECT_META),
    2: ("subjects", Repeated(SUBJECT)),
    3: ("roleRef", ROLE_REF),
}
RESOURCE_ATTRIBUTES: Schema = {
    1: ("namespace", STRING),
    2: ("verb", STRING),
    3: ("group", STRING),
    4: ("version", STRING),
    5: ("resource", STRING),
    6: ("subresource", STRING),
    7: ("name", STRING),
}
NON_RESOURCE_ATTRIBUTES: Schema = {1: ("path", STRING), 2: ("verb", STRING)}
BOUND_OBJECT_REFERENCE: Schema = {
    1: ("kind", STRING),
    2: ("apiVersion", STRING),
    3: ("name", STRING),
    4: ("uid", STRING),
}

# Selected by the envelope's TypeMeta kind. Status fields are server-side and left out.
KINDS: dict[str, Schema] = {
    "Namespace": {
        1: ("metadata", OBJECT_META),
        2: ("spec", {1: ("finalizers", Repeated(STRING))}),
    },
    "ServiceAccount": {
        1: ("metadata", OBJECT_META),
        2: ("secrets", Repeated(OBJECT_REFERENCE)),
        3: ("imagePullSecrets", Repeated({1: ("name", STRING)})),
        4: ("automountServiceAccountToken", BOOL),
    },
    "Secret": {
        1: ("metadata", OBJECT_META),
        2: ("data", MapOf(BYTES)),
        3: ("type", STRING),
        4: ("stringData", MapOf(STRING)),
        5: ("immutable", BOOL),
    },
    "ConfigMap": {
        1: ("metadata", OBJECT_META),
        2: ("data", MapOf(STRING)),
        3: ("binaryData", MapOf(BYTES)),
        4: ("immutable", BOOL),
    },
    "ClusterRole": ROLE,  # aggregationRule (3) is controller-managed; skipped
    "Role": ROLE,
    "ClusterRoleBinding": ROLE_BINDING,
    "RoleBinding": ROLE_BINDING,
    "SelfSubjectAccessReview": {
        1: ("metadata", OBJECT_META),
        2: (
            "spec",
            {
                1: ("resourceAttributes", RESOURCE_ATTRIBUTES),
                2: ("nonResourceAttributes", NON_RESOURCE_ATTRIBUTES),
            },
        ),
    },
    "SelfSubjectRulesReview": {
        1: ("metadata", OBJECT_META),
        2: ("spec", {1: ("namespace", STRING)}),
    },
    "SelfSubjectReview": {1: ("metadata", OBJECT_META)},
    "TokenRequest": {
        1: ("metadata", OBJECT_META),
        2: (
            "spec",
            {
                1: ("audiences", Repeated(STRING)),
                3: ("boundObjectRef", BOUND_OBJECT_REFERENCE),
                4: ("expirationSeconds", INT),
            },
        ),
    },
}

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


def is_protobuf(content_type: str | None) -> bool:
    """Whether a Content-Type header names the Kubernetes protobuf encoding."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == PROTOBUF_CONTENT_TYPE


def decode(body: bytes) -> dict[str, Any]:
    """Decode a ``k8s\\0``-prefixed runtime.Unknown envelope into the object's JSON form."""
    if not body.startswith(MAGIC):
        raise ProtobufError("not a Kubernetes protobuf body: missing 'k8s\\x00' magic prefix")
    type_meta: dict[str, Any] = {}
    raw = b""
    for number, wire_type, value in _fields(body[len(MAGIC) :]):
        if number == 1:
            type_meta = _decode_message(_length_delimited(number, wire_type, value), TYPE_META)
        elif number == 2:
            raw = _length_delimited(number, wire_type, value)
    kind = type_meta.get("kind", "")
    schema = KINDS.get(kind)
    if schema is None:
        raise ProtobufError(f"unsupported kind {kind!r} in protobuf body")
    header = {"apiVersion": type_meta.get("apiVersion", ""), "kind": kind}
    return header | _decode_message(raw, schema)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while pos < len(buf):
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError("malformed protobuf: varint longer than 10 bytes")
    raise ProtobufError("malformed protobuf: truncated varint")


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) for every field; values are ints or raw bytes."""
    pos = 0
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise ProtobufError("malformed protobuf: field number 0")
        value: int | bytes
        if wire_type == VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire_type in (FIXED64, FIXED32, LENGTH_DELIMITED):
            if wire_type == LENGTH_DELIMITED:
                size, pos = _read_varint(buf, pos)
            else:
                size = 8 if wire_type == FIXED64 else 4
            if pos + size > len(buf):
                raise ProtobufError(f"malformed protobuf: field {number} truncated")
            chunk = buf[pos : pos + size]
            value = chunk if wire_type == LENGTH_DELIMITED else int.from_bytes(chunk, "little")
            pos += size
        else:
            raise ProtobufError(f"malformed protobuf: unsupported wire type {wire_type}")
        yield number, wire_type, value


def _length_delimited(number: int, wire_type: int, value: int | bytes) -> bytes:
    if wire_type != LENGTH_DELIMITED or not isinstance(value, bytes):
        raise ProtobufError(f"malformed protobuf: field {number} should be length-delimited")
    return value


def _decode_message(buf: bytes, schema: Schema) -> dict[str, Any]:
    """Decode one message, dropping unset (empty, zero, false) fields like JSON omitempty."""
    out: dict[str, Any] = {}
    for number, wire_type, value in _fields(buf):
        if number not in schema:
            continue
        name, field_type = schema[number]
        if isinstance(field_type, Repeated):
            # Items are kept even when empty: apiGroups [""] names the core group.
            out.setdefault(name, []).append(
                _decode_value(number, wire_type, value, field_type.item)
            )
        elif isinstance(field_type, MapOf):
            entry_schema: Schema = {1: ("key", STRING), 2: ("value", field_type.value)}
            entry = _decode_message(_length_delimited(number, wire_type, value), entry_schema)
            out.setdefault(name, {})[entry.get("key", "")] = entry.get("value", "")
        else:
            out[name] = _decode_value(number, wire_type, value, field_type)
    return {name: value for name, value in out.items() if value}


def _decode_value(
    number: int, wire_type: int, value: int | bytes, field_type: Scalar | Schema
) -> Any:
    if field_type in (Scalar.INT, Scalar.BOOL):
        if wire_type != VARINT or not isinstance(value, int):
            raise ProtobufError(f"malformed protobuf: field {number} should be a varint")
        if field_type is Scalar.BOOL:
            return value != 0
        # int32/int64 negatives are sign-extended to 64 bits on the wire.
        return value - (1 << 64) if value >= 1 << 63 else value
    raw = _length_delimited(number, wire_type, value)
    if field_type is Scalar.STRING:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtobufError(f"malformed protobuf: field {number} is not UTF-8") from exc
    if field_type is Scalar.BYTES:
        return base64.b64encode(raw).decode("ascii")
    if field_type is Scalar.TIME:
        return _decode_time(raw)
    assert not isinstance(field_type, Scalar)
    return _decode_message(raw, field_type)


def _decode_time(raw: bytes) -> str | None:
    seconds = _decode_message(raw, {1: ("seconds", INT)}).get("seconds", 0)
    if not seconds:
        return None  # the zero Time is sent as an empty message
    try:
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    except OverflowError as exc:
        raise ProtobufError(f"malformed protobuf: timestamp {seconds} out of range") from exc
    return moment.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
