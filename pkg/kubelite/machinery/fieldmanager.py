"""Server-side apply: field ownership, conflicts and the merge, over the Kubernetes JSON form of objects.

An apply sends the manager's whole intent for an object. The server keeps,
per manager, the set of fields it last applied (``metadata.managedFields``,
in Kubernetes' FieldsV1 form) and:

- refuses (409) to change a field another manager owns to a different value,
  unless ``force``, which moves the field to the applier;
- merges the intent into the live object the way the schema says lists and
  maps combine: maps and objects field by field, lists with a merge key
  (containers by ``name``, ports by ``containerPort``...) item by item,
  lists of scalars with the ``merge`` strategy (finalizers) as sets, every
  other list as a whole;
- removes the fields the manager applied last time and no longer mentions,
  unless another manager owns them too.

The schema is read from the proto descriptors (the codec's FieldInfo), the
same merge keys the strategic merge patch uses. Paths are tuples of FieldsV1
keys: ``f:<field or map key>``, ``k:<the merge key as JSON>``, ``v:<a set
member as JSON>``, and ``.`` for "this list item itself".
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from kubelite.machinery import codec

Path = tuple[str, ...]
Obj = dict[str, Any]

# Fields no manager owns: identity and server bookkeeping.
IGNORED: frozenset[Path] = frozenset({
    ("f:apiVersion",), ("f:kind",), ("f:status",),
    ("f:metadata", "f:name"), ("f:metadata", "f:namespace"), ("f:metadata", "f:uid"),
    ("f:metadata", "f:resourceVersion"), ("f:metadata", "f:generation"),
    ("f:metadata", "f:creationTimestamp"), ("f:metadata", "f:deletionTimestamp"),
    ("f:metadata", "f:deletionGracePeriodSeconds"), ("f:metadata", "f:managedFields"),
    ("f:metadata", "f:selfLink"),
})


def _ignored(path: Path) -> bool:
    return any(path[:len(p)] == p for p in IGNORED)


def _item_key(item: Mapping[str, Any], merge_key: str) -> str:
    return "k:" + json.dumps({merge_key: item.get(merge_key)}, separators=(",", ":"), sort_keys=True)


def _set_key(value: Any) -> str:
    return "v:" + json.dumps(value, separators=(",", ":"))


def field_set(obj: Mapping[str, Any], message_type: type[Message] | Descriptor) -> set[Path]:
    """The paths an object sets: its leaves, empty objects, list items (with ".") and set members."""
    out: set[Path] = set()
    _walk_message(obj, codec.fields_of(message_type), (), out)
    return {p for p in out if not _ignored(p)}


def _walk_message(obj: Mapping[str, Any], fields: Mapping[str, codec.FieldInfo], prefix: Path, out: set[Path]) -> None:
    for key, value in obj.items():
        fi = fields.get(key)
        path = (*prefix, f"f:{key}")
        if fi is None or value is None:
            continue
        _walk_value(value, fi, path, out)


def _walk_value(value: Any, fi: codec.FieldInfo, path: Path, out: set[Path]) -> None:
    if fi.is_map:
        if not isinstance(value, Mapping) or not value:
            out.add(path)
            return
        vfi = fi.map_value
        assert vfi is not None
        for k, v in value.items():
            sub = (*path, f"f:{k}")
            if vfi.is_message and not vfi.is_wkt and isinstance(v, Mapping) and v:
                assert vfi.message is not None
                _walk_message(v, codec.fields_of(vfi.message), sub, out)
            else:
                out.add(sub)
        return
    if fi.repeated:
        if not isinstance(value, list) or not value:
            out.add(path)
            return
        if fi.is_message and fi.patch_merge_key and fi.message is not None:
            fields = codec.fields_of(fi.message)
            for item in value:
                if not isinstance(item, Mapping):
                    continue
                item_path = (*path, _item_key(item, fi.patch_merge_key))
                out.add((*item_path, "."))
                _walk_message(item, fields, item_path, out)
            return
        if fi.merges_as_set:
            out.update((*path, _set_key(v)) for v in value)
            return
        out.add(path)  # an atomic list: one value
        return
    if fi.is_message and not fi.is_wkt and isinstance(value, Mapping) and value:
        assert fi.message is not None
        _walk_message(value, codec.fields_of(fi.message), path, out)
        return
    out.add(path)


# --- FieldsV1 ----------------------------------------------------------------------------------------------


def to_fields_v1(paths: Iterable[Path]) -> Obj:
    root: Obj = {}
    for path in sorted(paths):
        node = root
        for element in path:
            node = node.setdefault(element, {})
    return root


def from_fields_v1(doc: Mapping[str, Any]) -> set[Path]:
    out: set[Path] = set()

    def walk(node: Mapping[str, Any], prefix: Path) -> None:
        for key, child in node.items():
            path = (*prefix, key)
            if isinstance(child, Mapping) and child:
                walk(child, path)
            else:
                out.add(path)

    walk(doc, ())
    return out


# --- reading and writing at a path --------------------------------------------------------------------------


_MISSING = object()


def _step(node: Any, element: str) -> Any:
    if element.startswith("f:"):
        return node.get(element[2:], _MISSING) if isinstance(node, Mapping) else _MISSING
    if element.startswith("k:"):
        want = json.loads(element[2:])
        if isinstance(node, list):
            for item in node:
                if isinstance(item, Mapping) and all(item.get(k) == v for k, v in want.items()):
                    return item
        return _MISSING
    if element.startswith("v:"):
        value = json.loads(element[2:])
        return value if isinstance(node, list) and value in node else _MISSING
    return node  # "."


def value_at(obj: Any, path: Path) -> Any:
    node = obj
    for element in path:
        node = _step(node, element)
        if node is _MISSING:
            return _MISSING
    return node


def _remove(obj: Any, path: Path) -> None:
    parent = value_at(obj, path[:-1]) if len(path) > 1 else obj
    last = path[-1]
    if last == ".":  # the list item itself: its parent is the item, its grandparent the list
        if len(path) < 2:
            return
        lst = value_at(obj, path[:-2])
        item = value_at(obj, path[:-1])
        if isinstance(lst, list) and item is not _MISSING:
            lst.remove(item)
        return
    if isinstance(parent, dict) and last.startswith("f:"):
        parent.pop(last[2:], None)
    elif isinstance(parent, list) and last.startswith("v:"):
        value = json.loads(last[2:])
        if value in parent:
            parent.remove(value)


# --- the merge -----------------------------------------------------------------------------------------------


def merge(live: Any, applied: Any, fields: Mapping[str, codec.FieldInfo]) -> Any:
    """``applied`` over the object ``live`` as the schema combines them (see the module docstring)."""
    if not isinstance(live, dict) or not isinstance(applied, Mapping):
        return copy.deepcopy(applied)
    out = dict(live)
    for key, value in applied.items():
        sub = fields.get(key)
        out[key] = _merge_field(live[key], value, sub) if sub is not None and key in live else copy.deepcopy(value)
    return out


def _merge_field(live: Any, applied: Any, fi: codec.FieldInfo) -> Any:
    if fi.is_map:
        if not isinstance(live, dict) or not isinstance(applied, Mapping):
            return copy.deepcopy(applied)
        vfi = fi.map_value
        out = dict(live)
        for k, v in applied.items():
            if vfi is not None and vfi.is_message and not vfi.is_wkt and vfi.message is not None and k in live:
                out[k] = merge(live[k], v, codec.fields_of(vfi.message))
            else:
                out[k] = copy.deepcopy(v)
        return out
    if fi.repeated:
        if not isinstance(live, list) or not isinstance(applied, list):
            return copy.deepcopy(applied)
        if fi.is_message and fi.patch_merge_key and fi.message is not None:
            fields = codec.fields_of(fi.message)
            key = fi.patch_merge_key
            out_list = [copy.deepcopy(i) for i in live]
            for item in applied:
                match = next((i for i, cur in enumerate(out_list)
                              if isinstance(cur, Mapping) and isinstance(item, Mapping)
                              and cur.get(key) == item.get(key)), None)
                if match is None:
                    out_list.append(copy.deepcopy(item))
                else:
                    out_list[match] = merge(out_list[match], item, fields)
            return out_list
        if fi.merges_as_set:
            return list(live) + [v for v in applied if v not in live]
        return copy.deepcopy(applied)
    if fi.is_message and not fi.is_wkt and fi.message is not None:
        return merge(live, applied, codec.fields_of(fi.message))
    return copy.deepcopy(applied)


# --- apply -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conflict:
    manager: str
    api_version: str
    path: Path

    def field(self) -> str:
        """Kubernetes' way of naming the field in a conflict: .spec.replicas, .spec.containers[name="web"].image."""
        out = ""
        for element in self.path:
            if element.startswith("f:"):
                out += "." + element[2:]
            elif element.startswith("k:"):
                keys = json.loads(element[2:])
                out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
            elif element.startswith("v:"):
                out += "[" + element[2:] + "]"
        return out


@dataclass
class Applied:
    object: Obj
    conflicts: list[Conflict]


def _leaves(paths: set[Path]) -> set[Path]:
    return {p for p in paths if p[-1] != "."}


def apply(live: Obj | None, intent: Mapping[str, Any], message_type: type[Message], manager: str,
          api_version: str, now: str, force: bool = False) -> Applied:
    """The object after ``manager`` applies ``intent`` to ``live`` (None: the object is created)."""
    base: Obj = copy.deepcopy(live) if live is not None else {}
    entries: list[Obj] = list((base.get("metadata") or {}).get("managedFields") or [])
    applied_set = field_set(intent, message_type)
    owned: dict[int, set[Path]] = {i: from_fields_v1(e.get("fieldsV1") or {}) for i, e in enumerate(entries)}
    mine = [i for i, e in enumerate(entries) if e.get("manager") == manager and e.get("operation") == "Apply"]
    previous: set[Path] = set().union(*(owned[i] for i in mine)) if mine else set()

    conflicts: list[Conflict] = []
    for i, entry in enumerate(entries):
        if i in mine:
            continue
        for path in sorted(_leaves(applied_set & owned[i])):
            if value_at(base, path) != value_at(intent, path):
                conflicts.append(Conflict(str(entry.get("manager", "")), str(entry.get("apiVersion", "")), path))
    if conflicts and not force:
        return Applied(base, conflicts)
    for c in conflicts:  # forced: the applier takes these fields over
        for i, entry in enumerate(entries):
            if entry.get("manager") == c.manager:
                owned[i].discard(c.path)

    merged = merge(base, intent, codec.fields_of(message_type))
    others = set().union(*(owned[i] for i in owned if i not in mine)) if owned else set()
    # Whole list items first (their own fields then go with them), then single fields; sorted for determinism.
    for path in sorted(previous - applied_set, key=lambda p: (p[-1] != ".", len(p), p)):
        # A list item ("."), or an object, stays while another manager owns something inside it.
        scope = path[:-1] if path[-1] == "." else path
        if not any(o[:len(scope)] == scope for o in others):
            _remove(merged, path)

    kept: list[Obj] = []
    for i, entry in enumerate(entries):
        if i in mine or not owned[i]:
            continue
        kept.append({**entry, "fieldsV1": to_fields_v1(owned[i])})
    kept.append({"manager": manager, "operation": "Apply", "apiVersion": api_version, "time": now,
                 "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(applied_set)})
    merged.setdefault("metadata", {})["managedFields"] = kept
    return Applied(merged, [])


def conflict_message(conflicts: list[Conflict]) -> str:
    n = len(conflicts)
    parts = [f'conflict with "{c.manager}"' + (f" using {c.api_version}" if c.api_version else "") + f": {c.field()}"
             for c in conflicts]
    head = f"Apply failed with {n} conflict{'s' if n != 1 else ''}: "
    return head + "\n".join(parts) if n > 1 else head + parts[0]
