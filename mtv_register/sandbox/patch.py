"""Apply Kubernetes PATCH request bodies to stored objects, as kube-apiserver does.

The sandbox API server keeps objects as plain JSON dicts and must give the same PATCH results a
real cluster gives, because kubectl and the Python client send all three patch flavours: JSON
merge patch (RFC 7386), JSON patch (RFC 6902) and Kubernetes' strategic merge patch. Strategic
merge needs schema knowledge (which lists merge by which key); a real server reads it from Go
struct tags, here it is the small table below, covering the object shapes this project creates.
Server-side apply is not implemented: callers answer 415 for it.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any, Final

MERGE_PATCH: Final = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH: Final = "application/strategic-merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"
APPLY_PATCH: Final = "application/apply-patch+yaml"

# Strategic merge: lists merged element by element on the given key. Keys are dotted field paths
# with list positions elided; a path matches when it equals an entry or ends with "." + entry, so
# one entry covers a pod spec wherever it is nested (Pod, Deployment, Job, CronJob...). The
# longest matching entry wins. Lists matching nothing are replaced whole (e.g. RBAC rules).
STRATEGIC_MERGE_KEYS: Final[Mapping[str, str]] = {
    "metadata.ownerReferences": "uid",
    "status.conditions": "type",
    "spec.containers": "name",
    "spec.initContainers": "name",
    "containers.env": "name",
    "containers.ports": "containerPort",
    "containers.volumeMounts": "mountPath",
    "initContainers.env": "name",
    "initContainers.ports": "containerPort",
    "initContainers.volumeMounts": "mountPath",
    "spec.volumes": "name",
    "imagePullSecrets": "name",  # pod specs and ServiceAccounts
    "secrets": "name",  # ServiceAccounts
}
# Strategic merge: lists of primitives merged as an ordered set (original order, then new items).
STRATEGIC_SET_LISTS: Final[frozenset[str]] = frozenset({"metadata.finalizers"})

_DIRECTIVE: Final = "$patch"
_RETAIN_KEYS: Final = "$retainKeys"
_SET_ORDER: Final = "$setElementOrder/"
_DELETE_PRIMITIVES: Final = "$deleteFromPrimitiveList/"
_ARRAY_INDEX: Final = re.compile(r"0|[1-9][0-9]*")
_JSON_PATCH_OPS: Final = frozenset({"add", "remove", "replace", "move", "copy", "test"})


class PatchError(ValueError):
    """The patch cannot be applied.

    `reason` is the Kubernetes Status reason the caller should answer with: 'BadRequest' (the
    patch is malformed), 'Invalid' (well formed but fails, e.g. a JSON-patch test op or a path that
    does not exist) or 'UnsupportedMediaType'.
    """

    def __init__(self, message: str, *, reason: str = "BadRequest") -> None:
        super().__init__(message)
        self.reason = reason


def apply_patch(original: dict[str, Any], patch_body: bytes, content_type: str) -> dict[str, Any]:
    """Return a new object: `original` (left untouched) with the patch of `content_type` applied."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == JSON_PATCH:
        result = _apply_json_patch(copy.deepcopy(original), _parse(patch_body, unique_keys=True))
    elif media_type in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        patch = _parse(patch_body, unique_keys=False)
        if not isinstance(patch, dict):
            raise PatchError("a merge patch must be a JSON object")
        if media_type == MERGE_PATCH:
            result = json_merge_patch(original, patch)
        else:
            result = _smp_map(copy.deepcopy(original), patch, "") or {}
    else:
        raise PatchError(
            f"unsupported patch media type {media_type!r}", reason="UnsupportedMediaType"
        )
    if not isinstance(result, dict):
        raise PatchError("the patched document is not a JSON object", reason="Invalid")
    return result


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 MergePatch(target, patch) on any JSON values; neither argument is mutated."""
    return _merge_into(copy.deepcopy(target), patch)


def _merge_into(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_into(result.get(key), value)
    return result


def _parse(body: bytes, *, unique_keys: bool) -> Any:
    def no_constants(name: str) -> Any:
        raise PatchError(f"{name} is not valid JSON")

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        # RFC 6902 section A.13: an operation with a repeated member ("op" twice) is invalid.
        if unique_keys and len(obj) != len(pairs):
            raise PatchError("repeated member name in a patch object")
        return obj

    try:
        return json.loads(body, parse_constant=no_constants, object_pairs_hook=unique)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PatchError(f"patch body is not valid JSON: {exc}") from exc


# --- strategic merge patch -----------------------------------------------------------------


def _list_merge_key(path: str) -> str | None:
    """Merge key of the list at `path`: a field name, "" for a primitive set, None to replace."""

    def matches(entry: str) -> bool:
        return path == entry or path.endswith("." + entry)

    if any(matches(entry) for entry in STRATEGIC_SET_LISTS):
        return ""
    found = [entry for entry in STRATEGIC_MERGE_KEYS if matches(entry)]
    return STRATEGIC_MERGE_KEYS[max(found, key=len)] if found else None


def _smp_map(original: dict[str, Any], patch: dict[str, Any], path: str) -> dict[str, Any] | None:
    """Merge `patch` into `original` (mutated); None when the patch deletes the whole map."""
    directive = patch.get(_DIRECTIVE)
    if directive == "delete":
        return None
    if directive == "replace":
        original = {}
    elif directive is not None:
        raise PatchError(f"{path or '<root>'}: unknown {_DIRECTIVE} directive {directive!r}")
    fields: dict[str, Any] = {}
    orders: dict[str, Any] = {}
    deletions: dict[str, Any] = {}
    for key, value in patch.items():
        if key.startswith(_SET_ORDER) and key != _SET_ORDER:
            orders[key.removeprefix(_SET_ORDER)] = value
        elif key.startswith(_DELETE_PRIMITIVES) and key != _DELETE_PRIMITIVES:
            deletions[key.removeprefix(_DELETE_PRIMITIVES)] = value
        elif key.startswith("$") and key not in (_DIRECTIVE, _RETAIN_KEYS):
            raise PatchError(f"{path or '<root>'}: unknown patch directive {key!r}")
        elif not key.startswith("$"):
            fields[key] = value
    if _RETAIN_KEYS in patch:
        _retain_keys(original, fields, patch[_RETAIN_KEYS], path)
    for field, unwanted in deletions.items():
        if not isinstance(unwanted, list):
            raise PatchError(f"{path}: {_DELETE_PRIMITIVES}{field} must be a list")
        if isinstance(original.get(field), list):
            original[field] = [item for item in original[field] if item not in unwanted]
    for key, value in fields.items():
        subpath = f"{path}.{key}" if path else key
        current = original.get(key)
        if value is None:
            original.pop(key, None)
        elif isinstance(value, dict):
            merged = _smp_map(current if isinstance(current, dict) else {}, value, subpath)
            if merged is None:
                original.pop(key, None)
            else:
                original[key] = merged
        elif isinstance(value, list):
            original[key] = _smp_list(current if isinstance(current, list) else [], value, subpath)
        else:
            original[key] = value
    for field, order in orders.items():
        subpath = f"{path}.{field}" if path else field
        merge_key = _list_merge_key(subpath)
        if not isinstance(order, list):
            raise PatchError(f"{subpath}: {_SET_ORDER}{field} must be a list")
        if merge_key is not None and isinstance(original.get(field), list):
            original[field] = _set_element_order(original[field], order, merge_key, subpath)
    return original


def _retain_keys(original: dict[str, Any], fields: dict[str, Any], retain: Any, path: str) -> None:
    if not isinstance(retain, list) or not all(isinstance(key, str) for key in retain):
        raise PatchError(f"{path}: {_RETAIN_KEYS} must be a list of field names")
    unlisted = sorted(
        key for key, value in fields.items() if value is not None and key not in retain
    )
    if unlisted:
        raise PatchError(f"{path}: patched fields {unlisted} are missing from {_RETAIN_KEYS}")
    for key in [key for key in original if key not in retain]:
        del original[key]


def _smp_list(original: list[Any], patch: list[Any], path: str) -> list[Any]:
    merge_key = _list_merge_key(path)
    if merge_key is None:
        fresh = [(item, _smp_fresh(item, path)) for item in patch]
        # Only an element that was `{"$patch": "delete"}` merges into None; JSON nulls stay.
        return [new for old, new in fresh if new is not None or old is None]
    everything = [*original, *patch]
    if merge_key == "" or not any(isinstance(item, dict) for item in everything):
        # Upstream merges any merge-strategy list of primitives as a set.
        union: list[Any] = []
        for item in everything:
            if item not in union:
                union.append(item)
        return union
    if not all(isinstance(item, dict) for item in everything):
        raise PatchError(f"{path}: list elements must all be objects")
    result = list(original)
    replace = False
    additions: list[dict[str, Any]] = []
    for item in patch:
        directive = item.get(_DIRECTIVE)
        if directive is None:
            additions.append(item)
        elif directive == "replace":
            replace = True
        elif directive == "delete" and merge_key in item:
            result = [old for old in result if old.get(merge_key) != item[merge_key]]
        else:
            raise PatchError(f"{path}: bad {_DIRECTIVE} element {item!r} (merge key {merge_key})")
    if replace:
        result = []
    for item in additions:
        if merge_key not in item:
            raise PatchError(f"{path}: element {item!r} lacks its merge key {merge_key!r}")
        at = next((i for i, old in enumerate(result) if old.get(merge_key) == item[merge_key]), -1)
        merged = _smp_map(result[at] if at >= 0 else {}, item, path) or {}
        if at >= 0:
            result[at] = merged
        else:
            result.append(merged)
    return result


def _smp_fresh(value: Any, path: str) -> Any:
    """`value` as merged into nothing: directives resolved and stripped, null members dropped."""
    if isinstance(value, dict):
        return _smp_map({}, value, path)
    if isinstance(value, list):
        return _smp_list([], value, path)
    return value


def _set_element_order(items: list[Any], order: list[Any], merge_key: str, path: str) -> list[Any]:
    """Elements named in `order` first, in that order; then the others, in their current order."""
    if merge_key:
        if not all(isinstance(entry, dict) and merge_key in entry for entry in order):
            raise PatchError(f"{path}: {_SET_ORDER} entries must carry the key {merge_key!r}")
        wanted = [entry[merge_key] for entry in order]
    else:
        wanted = list(order)

    def identity(item: Any) -> Any:
        return item.get(merge_key) if merge_key and isinstance(item, dict) else item

    named = [item for item in items if identity(item) in wanted]
    named.sort(key=lambda item: wanted.index(identity(item)))
    return named + [item for item in items if identity(item) not in wanted]


# --- JSON patch (RFC 6902) -----------------------------------------------------------------


def _apply_json_patch(doc: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    for operation in operations:
        if not isinstance(operation, dict) or operation.get("op") not in _JSON_PATCH_OPS:
            raise PatchError(f"not a JSON patch operation: {operation!r}")
        op = operation["op"]
        path = _pointer(operation.get("path"), "path")
        if op in ("add", "replace", "test") and "value" not in operation:
            raise PatchError(f"{op} operation without a value: {operation!r}")
        source = _pointer(operation.get("from"), "from") if op in ("move", "copy") else []
        if op == "add":
            doc = _add(doc, path, copy.deepcopy(operation["value"]))
        elif op == "remove":
            _remove(doc, path)
        elif op == "replace":
            _get(doc, path)
            doc = _add(doc, path, copy.deepcopy(operation["value"]), replace=True)
        elif op == "move":
            if len(path) > len(source) and path[: len(source)] == source:
                raise PatchError("cannot move a value into one of its children", reason="Invalid")
            doc = _add(doc, path, _remove(doc, source))
        elif op == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, source)))
        elif not _json_equal(_get(doc, path), operation["value"]):
            raise PatchError(f"test failed at {operation['path']!r}", reason="Invalid")
    return doc


def _pointer(pointer: Any, member: str) -> list[str]:
    if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
        raise PatchError(f"{member} {pointer!r} is not a JSON pointer")
    if re.search(r"~(?![01])", pointer):
        raise PatchError(f"{member} {pointer!r} has a bad ~ escape")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]


def _index(array: list[Any], token: str, *, insert: bool) -> int:
    if insert and token == "-":
        return len(array)
    if not _ARRAY_INDEX.fullmatch(token) or int(token) >= len(array) + int(insert):
        raise PatchError(f"array index {token!r} is out of bounds", reason="Invalid")
    return int(token)


def _get(doc: Any, path: list[str]) -> Any:
    for token in path:
        if isinstance(doc, dict) and token in doc:
            doc = doc[token]
        elif isinstance(doc, list):
            doc = doc[_index(doc, token, insert=False)]
        else:
            raise PatchError(f"path element {token!r} does not exist", reason="Invalid")
    return doc


def _add(doc: Any, path: list[str], value: Any, *, replace: bool = False) -> Any:
    if not path:
        return value
    parent, last = _get(doc, path[:-1]), path[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list) and replace:
        parent[_index(parent, last, insert=False)] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, insert=True), value)
    else:
        raise PatchError(f"cannot add {last!r} to a scalar", reason="Invalid")
    return doc


def _remove(doc: Any, path: list[str]) -> Any:
    if not path:
        raise PatchError("cannot remove the whole document", reason="Invalid")
    parent, last = _get(doc, path[:-1]), path[-1]
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, insert=False))
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    raise PatchError(f"path element {last!r} does not exist", reason="Invalid")


def _json_equal(left: Any, right: Any) -> bool:
    """JSON equality: unlike Python's ==, true differs from 1 and "10" differs from 10."""
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(_json_equal, left, right))
    return type(left) is type(right) and bool(left == right)
