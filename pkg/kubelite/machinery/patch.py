"""JSON merge patch, JSON patch and strategic merge patch, plus kubectl-style apply patches.

``kubelite patch`` and the API server's patch call accept Kubernetes' three
patch types. The strategic one cannot be done on plain JSON: whether a list
is replaced or merged element by element (containers by ``name``, ports by
``containerPort``) is a property of the field, which Kubernetes keeps in Go
struct tags and kubelite keeps in the proto field options ``patch_merge_key``
and ``patch_strategy``. So every function here walks the JSON alongside the
message descriptors (through the codec's cached field tables) and never names
a kind.

``create_three_way_merge_patch`` is client-side apply: the last applied
manifest (from the ``kubectl.kubernetes.io/last-applied-configuration``
annotation), the new manifest and the live object give a patch that changes
what the user changed, removes what the user removed, and leaves alone what
the server or other actors set (defaults, status, fields never in a manifest).

All objects here are in the Kubernetes JSON form (``codec.encode`` output);
inputs are never modified.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import jsonpatch
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from kubelite.machinery import codec
from kubelite.machinery.codec import (
    FORMAT_NONE,
    FieldInfo,
    MessageInfo,
    message_info,
)
from kubelite.machinery.errors import StatusError, bad_request

LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"

# Patch content types, as the API names them; the one definition every package uses.
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
# Server-side apply (kubelite.machinery.fieldmanager): not a patch of the live object but the manager's intent.
APPLY_PATCH = "application/apply-patch+yaml"
# kubectl's short names (``kubelite patch --type``) -> content type.
PATCH_TYPES: dict[str, str] = {"json": JSON_PATCH, "merge": MERGE_PATCH, "strategic": STRATEGIC_MERGE_PATCH}
PATCH_CONTENT_TYPES = (MERGE_PATCH, STRATEGIC_MERGE_PATCH, JSON_PATCH)

_DIRECTIVE = "$patch"
_DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList/"
_SET_ELEMENT_ORDER = "$setElementOrder/"
_RETAIN_KEYS = "$retainKeys"

MessageType = type[Message] | Descriptor


class _Deleted:
    """Returned where a ``$patch: delete`` removes the object it sits in."""


_DELETED = _Deleted()


# --------------------------------------------------------------------------------------------
# RFC 7386 / RFC 6902
# --------------------------------------------------------------------------------------------


def load_apply_patch(body: bytes | str) -> dict[str, Any]:
    """An apply patch's intent: one YAML (or JSON, which is YAML) object."""
    try:
        docs = codec.load_documents(body.decode() if isinstance(body, bytes) else body, "apply patch")
    except UnicodeDecodeError as exc:
        raise bad_request(f"the apply patch is not UTF-8 text: {exc}") from exc
    if len(docs) != 1:
        raise bad_request(f"an apply patch is one object, not {len(docs)}")
    return docs[0]


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    _merge_in_place(result, patch)
    return result


def _merge_in_place(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            current = target.get(key)
            if not isinstance(current, dict):
                current = target[key] = {}
            _merge_in_place(current, value)
        else:
            target[key] = copy.deepcopy(value)


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 operations (a list, or its JSON text).

    As kube-apiserver answers: a patch that cannot be read (not JSON, not a
    list, an unknown operation) is a BadRequest (400); one that reads but
    does not apply to this object (a failed ``test``, a missing path) is
    Invalid (422), so that a client guarding a change with ``test`` can tell.
    """
    try:
        if isinstance(ops, (str, bytes)):
            ops = json.loads(ops)
        if not isinstance(ops, list):
            raise bad_request("a JSON patch must be a list of operations")
        return jsonpatch.apply_patch(target, ops, in_place=False)
    except StatusError:
        raise
    except json.JSONDecodeError as exc:
        raise bad_request(f"error decoding JSON patch: {exc}") from exc
    except jsonpatch.InvalidJsonPatch as exc:
        raise bad_request(f"error decoding JSON patch: {exc}") from exc
    except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPatchTestFailed, jsonpatch.JsonPointerException) as exc:
        raise StatusError("Invalid", f"the server rejected our request due to an error in our request: "
                                     f"error applying JSON patch: {exc}") from exc
    except (jsonpatch.JsonPatchException, KeyError, TypeError, ValueError, IndexError) as exc:
        raise bad_request(f"error applying JSON patch: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Schema walking: a message's fields, or a proto map's values
# --------------------------------------------------------------------------------------------

# Where a JSON object sits: a message (MessageInfo), a proto map (its FieldInfo), or unknown (None).
_Schema = MessageInfo | FieldInfo | None


def _field(schema: _Schema, key: str) -> FieldInfo | None:
    if schema is None:
        return None
    if isinstance(schema, MessageInfo):
        return schema.by_json.get(key)
    return schema.map_value  # every key of a map shares the value type


def _object_schema(fi: FieldInfo | None) -> _Schema:
    """The schema of the JSON object stored in field ``fi`` (a message or a map)."""
    if fi is None:
        return None
    if fi.is_map:
        return fi
    if fi.message is not None and not fi.is_wkt:
        return message_info(fi.message)
    return None


def _element_schema(fi: FieldInfo) -> _Schema:
    return message_info(fi.message) if fi.message is not None and not fi.is_wkt else None


def _root_schema(message_type: MessageType | None) -> _Schema:
    if message_type is None:
        return None
    desc = message_type if isinstance(message_type, Descriptor) else message_type.DESCRIPTOR
    return message_info(desc)  # type: ignore[arg-type]


def _is_keyed_list(fi: FieldInfo | None) -> bool:
    return (fi is not None and fi.repeated and fi.is_message and bool(fi.patch_merge_key)
            and "replace" not in fi.patch_strategy)


def _is_set_list(fi: FieldInfo | None) -> bool:
    return fi is not None and fi.merges_as_set


# --------------------------------------------------------------------------------------------
# Strategic merge patch
# --------------------------------------------------------------------------------------------


def strategic_merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any],
                          message_type: MessageType | None) -> dict[str, Any]:
    """Applies a strategic merge patch to an object of ``message_type``."""
    if not isinstance(patch, Mapping):
        raise bad_request("a strategic merge patch must be a JSON object")
    base = copy.deepcopy(dict(target)) if isinstance(target, Mapping) else {}
    result = _smp_object(base, patch, _root_schema(message_type), "")
    return {} if isinstance(result, _Deleted) else result


def _strip_directives(value: Any) -> Any:
    """A copy of a patch fragment without ``$`` keys, for values that are inserted whole."""
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def _smp_object(target: dict[str, Any], patch: Mapping[str, Any], schema: _Schema,
                path: str) -> dict[str, Any] | _Deleted:
    directive = patch.get(_DIRECTIVE)
    if directive == "delete":
        return _DELETED
    if directive == "replace":
        return dict(_strip_directives(patch))
    if directive not in (None, "merge"):
        raise bad_request(f'unknown patch directive "$patch: {directive}" at {path or "the top level"}')
    retain = patch.get(_RETAIN_KEYS)
    if retain is not None:
        if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
            raise bad_request(f"{path or 'the top level'}: $retainKeys must be a list of field names")
        stray = [k for k in patch if not k.startswith("$") and k not in retain]
        if stray:
            raise bad_request(f'{path or "the top level"}: "{stray[0]}" is not present in the $retainKeys list')
    for key, value in patch.items():
        if key.startswith("$"):
            continue  # directives: $retainKeys and $setElementOrder/... are applied after the merge
        kpath = f"{path}.{key}" if path else key
        if value is None:
            target.pop(key, None)
            continue
        merged = _smp_value(target.get(key), value, _field(schema, key), kpath)
        if isinstance(merged, _Deleted):
            target.pop(key, None)
        else:
            target[key] = merged
    for key, value in patch.items():
        if key.startswith(_DELETE_FROM_PRIMITIVE_LIST):
            name = key[len(_DELETE_FROM_PRIMITIVE_LIST):]
            if not isinstance(value, list):
                raise bad_request(f"{key} must be a list")
            current = target.get(name)
            if isinstance(current, list):
                remaining = [v for v in current if v not in value]
                if remaining:
                    target[name] = remaining
                else:
                    target.pop(name)
        elif key.startswith(_SET_ELEMENT_ORDER):
            name = key[len(_SET_ELEMENT_ORDER):]
            if not isinstance(value, list):
                raise bad_request(f"{key} must be a list")
            current = target.get(name)
            if isinstance(current, list):
                target[name] = _in_order(current, value, _field(schema, name))
    if retain is not None:
        # Fields of a union (a Deployment's strategy, a volume's source) the patch does not keep are cleared.
        for key in [k for k in target if k not in retain]:
            del target[key]
    return target


def _in_order(current: list[Any], order: list[Any], fi: FieldInfo | None) -> list[Any]:
    """$setElementOrder: the listed elements in the patch's order, then the others as they were."""
    key = fi.patch_merge_key if fi is not None else ""

    def ident(e: Any) -> Any:
        return json.dumps(e.get(key) if key and isinstance(e, dict) else e, sort_keys=True)

    wanted = [ident(o) for o in order]
    rank = {w: i for i, w in enumerate(wanted)}
    listed = sorted((e for e in current if ident(e) in rank), key=lambda e: rank[ident(e)])
    return listed + [e for e in current if ident(e) not in rank]


def _smp_value(current: Any, value: Any, fi: FieldInfo | None, path: str) -> Any:
    if isinstance(value, dict):
        if fi is not None and fi.repeated:
            return _strip_directives(value)  # wrong type: the decoder will name it
        if fi is not None and fi.is_wkt:
            return _strip_directives(value)
        base = current if isinstance(current, dict) else {}
        return _smp_object(base, value, _object_schema(fi), path)
    if isinstance(value, list):
        if _is_keyed_list(fi):
            assert fi is not None
            return _merge_keyed_list(current, value, fi, path)
        if _is_set_list(fi):
            return _union(current if isinstance(current, list) else [], value)
        return _strip_directives(value)
    return value


def _union(current: list[Any], added: list[Any]) -> list[Any]:
    out = list(current)
    for v in added:
        if v not in out:
            out.append(v)
    return out


def _merge_keyed_list(current: Any, patch: list[Any], fi: FieldInfo, path: str) -> list[Any]:
    key = fi.patch_merge_key
    if any(isinstance(e, dict) and e.get(_DIRECTIVE) == "replace" for e in patch):
        # One `{"$patch": "replace"}` element: the list becomes exactly the other elements.
        return [_strip_directives(e) for e in patch if not (isinstance(e, dict) and e.get(_DIRECTIVE))]
    result: list[Any] = copy.copy(current) if isinstance(current, list) else []
    schema = _element_schema(fi)
    for i, elem in enumerate(patch):
        epath = f"{path}[{i}]"
        if not isinstance(elem, dict):
            raise bad_request(f"{epath}: expected an object in a list merged by {key!r}, got {elem!r}")
        if key not in elem:
            raise bad_request(f'{epath}: does not contain the merge key "{key}"')
        kv = elem[key]
        found = [j for j, e in enumerate(result) if isinstance(e, dict) and e.get(key) == kv]
        directive = elem.get(_DIRECTIVE)
        if directive == "delete":
            for j in reversed(found):
                del result[j]
            continue
        if directive not in (None, "merge"):
            raise bad_request(f'{epath}: unknown patch directive "$patch: {directive}"')
        if not found:
            merged = _smp_object({}, elem, schema, epath)
            if not isinstance(merged, _Deleted):
                result.append(merged)
            continue
        j = found[0]
        merged = _smp_object(copy.deepcopy(result[j]), elem, schema, epath)
        if isinstance(merged, _Deleted):
            del result[j]
        else:
            result[j] = merged
    return result


# --------------------------------------------------------------------------------------------
# Creating patches (kubectl apply)
# --------------------------------------------------------------------------------------------


class _NoChange:
    pass


_NO_CHANGE = _NoChange()


def create_two_way_merge_patch(original: Mapping[str, Any], modified: Mapping[str, Any],
                               message_type: MessageType | None) -> dict[str, Any]:
    """The strategic merge patch that turns ``original`` into ``modified``."""
    return _diff(original, modified, _root_schema(message_type), ignore_changes=False, ignore_deletions=False)


def create_three_way_merge_patch(original: Mapping[str, Any] | None, modified: Mapping[str, Any],
                                 current: Mapping[str, Any], message_type: MessageType | None) -> dict[str, Any]:
    """Client-side apply: a strategic merge patch to send for ``modified``.

    ``original`` is the last applied configuration (None when the object was
    not created by apply), ``current`` the live object. The patch sets every
    field of ``modified`` that differs from ``current``, deletes what
    ``original`` had and ``modified`` no longer has, and does not touch fields
    only ``current`` has. An empty dict means there is nothing to change.
    Callers put the new last-applied annotation into ``modified`` first, as
    kubectl does, so the patch also records it.
    """
    schema = _root_schema(message_type)
    # Changes and additions relative to what is live ...
    delta = _diff(current, modified, schema, ignore_changes=False, ignore_deletions=True)
    # ... and removals relative to what was applied last time.
    deletions = _diff(original or {}, modified, schema, ignore_changes=True, ignore_deletions=False)
    return _merge_patches(deletions, delta, schema)


def _equal(a: Any, b: Any, fi: FieldInfo | None) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False  # True == 1 in Python, not in JSON
    if a == b:
        return True
    if fi is not None and fi.format != FORMAT_NONE and not isinstance(a, (dict, list)) \
            and not isinstance(b, (dict, list)):
        # `targetPort: 80` and "80", `cpu: 0.5` and "0.5" are the same value.
        return _scalar_text(a) == _scalar_text(b)
    return False


def _scalar_text(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _diff(a: Mapping[str, Any], b: Mapping[str, Any], schema: _Schema, *, ignore_changes: bool,
          ignore_deletions: bool) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for key, bv in b.items():
        fi = _field(schema, key)
        av = a.get(key)
        if av is None:
            if bv is not None and not ignore_changes:
                patch[key] = copy.deepcopy(bv)  # an addition
            continue
        if _is_set_list(fi) and isinstance(av, list) and isinstance(bv, list):
            added = [v for v in bv if v not in av]
            removed = [v for v in av if v not in bv]
            if added and not ignore_changes:
                patch[key] = added
            if removed and not ignore_deletions:
                patch[_DELETE_FROM_PRIMITIVE_LIST + key] = removed
            continue
        sub = _diff_value(av, bv, fi, ignore_changes=ignore_changes, ignore_deletions=ignore_deletions)
        if not isinstance(sub, _NoChange):
            patch[key] = sub
    if not ignore_deletions:
        for key, av in a.items():
            if av is not None and b.get(key) is None and key not in patch:
                patch[key] = None
    return patch


def _diff_value(av: Any, bv: Any, fi: FieldInfo | None, *, ignore_changes: bool,
                ignore_deletions: bool) -> Any:
    if bv is None:
        return _NO_CHANGE if ignore_changes else None  # an explicit null: delete
    if isinstance(av, dict) and isinstance(bv, dict) and not (fi is not None and (fi.repeated or fi.is_wkt)):
        sub = _diff(av, bv, _object_schema(fi), ignore_changes=ignore_changes, ignore_deletions=ignore_deletions)
        return sub if sub else _NO_CHANGE
    if isinstance(av, list) and isinstance(bv, list) and _is_keyed_list(fi):
        assert fi is not None
        return _diff_keyed_list(av, bv, fi, ignore_changes=ignore_changes, ignore_deletions=ignore_deletions)
    if _equal(av, bv, fi):
        return _NO_CHANGE
    return _NO_CHANGE if ignore_changes else copy.deepcopy(bv)


def _diff_keyed_list(al: list[Any], bl: list[Any], fi: FieldInfo, *, ignore_changes: bool,
                     ignore_deletions: bool) -> Any:
    key = fi.patch_merge_key
    keyed = all(isinstance(e, dict) and key in e for e in al + bl)
    if not keyed:
        # Without merge keys there is nothing to match on: treat the list as a value.
        if al == bl:
            return _NO_CHANGE
        return _NO_CHANGE if ignore_changes else copy.deepcopy(bl)
    schema = _element_schema(fi)
    old = {_hashable(e[key]): e for e in al}
    new_keys = {_hashable(e[key]) for e in bl}
    out: list[Any] = []
    for be in bl:
        ae = old.get(_hashable(be[key]))
        if ae is None:
            if not ignore_changes:
                out.append(copy.deepcopy(be))
            continue
        sub = _diff(ae, be, schema, ignore_changes=ignore_changes, ignore_deletions=ignore_deletions)
        if sub:
            out.append({key: be[key], **sub})
    if not ignore_deletions:
        for ae in al:
            if _hashable(ae[key]) not in new_keys:
                out.append({key: ae[key], _DIRECTIVE: "delete"})
    return out if out else _NO_CHANGE


def _hashable(v: Any) -> Any:
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v


def _merge_patches(first: dict[str, Any], second: dict[str, Any], schema: _Schema) -> dict[str, Any]:
    """Combines two patches for the same object; ``second`` wins where both set a value."""
    result = copy.deepcopy(first)
    for key, v2 in second.items():
        if key not in result:
            result[key] = copy.deepcopy(v2)
            continue
        v1 = result[key]
        fi = _field(schema, key)
        if isinstance(v1, dict) and isinstance(v2, dict) and v1.get(_DIRECTIVE) is None \
                and v2.get(_DIRECTIVE) is None:
            result[key] = _merge_patches(v1, v2, _object_schema(fi))
        elif isinstance(v1, list) and isinstance(v2, list) and _is_keyed_list(fi):
            assert fi is not None
            result[key] = _merge_keyed_patch_lists(v1, v2, fi)
        elif isinstance(v1, list) and isinstance(v2, list) and (
                key.startswith(_DELETE_FROM_PRIMITIVE_LIST) or _is_set_list(fi)):
            result[key] = _union(v1, v2)
        else:
            result[key] = copy.deepcopy(v2)
    return result


def _merge_keyed_patch_lists(l1: list[Any], l2: list[Any], fi: FieldInfo) -> list[Any]:
    key = fi.patch_merge_key
    out = copy.deepcopy(l1)
    schema = _element_schema(fi)
    for e2 in l2:
        if not isinstance(e2, dict) or key not in e2:
            out.append(copy.deepcopy(e2))
            continue
        match = next((i for i, e1 in enumerate(out) if isinstance(e1, dict) and e1.get(key) == e2[key]), None)
        if match is None:
            out.append(copy.deepcopy(e2))
        elif out[match].get(_DIRECTIVE) or e2.get(_DIRECTIVE):
            out[match] = copy.deepcopy(e2)
        else:
            out[match] = _merge_patches(out[match], e2, schema)
    return out


# --------------------------------------------------------------------------------------------
# One entry point for the API server
# --------------------------------------------------------------------------------------------


def apply_patch(target: Mapping[str, Any], patch: Any, patch_type: str,
                message_type: MessageType | None) -> dict[str, Any]:
    """Applies a patch given as parsed JSON (or JSON text) by its content type or kubectl's short name."""
    kind = PATCH_TYPES.get(patch_type, patch_type)
    if isinstance(patch, (str, bytes)):
        try:
            patch = json.loads(patch)
        except json.JSONDecodeError as exc:
            raise bad_request(f"error decoding patch: {exc}") from exc
    if kind == JSON_PATCH:
        result = json_patch(dict(target), patch)
    elif kind == MERGE_PATCH:
        if not isinstance(patch, dict):
            raise bad_request("a merge patch must be a JSON object")
        result = json_merge_patch(dict(target), patch)
    elif kind == STRATEGIC_MERGE_PATCH:
        if not isinstance(patch, dict):
            raise bad_request("a strategic merge patch must be a JSON object")
        result = strategic_merge_patch(target, patch, message_type)
    else:
        raise StatusError("UnsupportedMediaType", f"the patch type {patch_type!r} is not supported; "
                          f"use one of {', '.join(sorted(PATCH_TYPES))}")
    if not isinstance(result, dict):
        raise bad_request("the patched object is not a JSON object")
    return result
