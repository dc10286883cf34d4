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

Every other write (create, update, patch, a status or scale write) is an
``Update`` operation (``record_update``): its manager takes the fields the
write set or changed, from whoever owned them, without a conflict; fields the
write removed leave every entry. An apply later conflicts with those owners.
That path runs on every write of every component, so it works on the
protobuf messages themselves, not on their JSON form, and keeps field sets
as frozensets cached by their FieldsV1 JSON.

The schema is read from the proto descriptors (the codec's FieldInfo), the
same merge keys the strategic merge patch uses. Paths are tuples of FieldsV1
keys: ``f:<field or map key>``, ``k:<the merge key as JSON>``, ``v:<a set
member as JSON>``, and ``.`` for "this list item itself".
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _encode_string
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.message import Message

from kubelite.api.meta.v1 import generated_pb2 as metav1
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
    operation: str = "Apply"
    subresource: str = ""

    def who(self) -> str:
        """The owner as Kubernetes names it: an updater with its apiVersion, a subresource's writer with it."""
        text = json.dumps(self.manager)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text

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


def _entry_order(entry: Mapping[str, Any]) -> tuple[str, str, str, str, str]:
    """Kubernetes' order of managedFields: Apply before Update, then oldest first, then by identity."""
    return (str(entry.get("operation", "")), str(entry.get("time") or ""), str(entry.get("manager", "")),
            str(entry.get("apiVersion", "")), str(entry.get("subresource", "")))


def apply(live: Obj | None, intent: Mapping[str, Any], message_type: type[Message], manager: str,
          api_version: str, now: str, force: bool = False) -> Applied:
    """The object after ``manager`` applies ``intent`` to ``live`` (None: the object is created)."""
    base: Obj = copy.deepcopy(live) if live is not None else {}
    entries: list[Obj] = list((base.get("metadata") or {}).get("managedFields") or [])
    applied_set = field_set(intent, message_type)
    owned: dict[int, set[Path]] = {i: from_fields_v1(e.get("fieldsV1") or {}) for i, e in enumerate(entries)}
    # The applier's own entry: Apply entries are one per (manager, subresource), whatever the apiVersion.
    mine = [i for i, e in enumerate(entries)
            if e.get("manager") == manager and e.get("operation") == "Apply" and not e.get("subresource")]
    previous: set[Path] = set().union(*(owned[i] for i in mine)) if mine else set()

    conflicts: list[tuple[int, Conflict]] = []
    for i, entry in enumerate(entries):
        if i in mine:
            continue
        for path in sorted(_leaves(applied_set & owned[i])):
            if value_at(base, path) != value_at(intent, path):
                conflicts.append((i, Conflict(str(entry.get("manager", "")), str(entry.get("apiVersion", "")), path,
                                              str(entry.get("operation", "")), str(entry.get("subresource", "")))))
    if conflicts and not force and manager in UPGRADING_APPLIERS:
        # kubectl's (or kubelite's) first server-side apply of an object it applied client-side: the fields
        # its last-applied annotation still holds (same value live) are its own, not a conflict.
        allowed = _last_applied_fields(base, message_type)
        if all(c.path in allowed for _, c in conflicts):
            force = True
        else:
            conflicts = [(i, c) for i, c in conflicts if c.path not in allowed]
    if conflicts and not force:
        return Applied(base, [c for _, c in conflicts])
    for i, c in conflicts:  # forced: the applier takes these fields over
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
    kept.sort(key=_entry_order)
    merged.setdefault("metadata", {})["managedFields"] = kept
    return Applied(merged, [])


# The default managers of `kubectl apply --server-side` and of `kubelite apply --server-side`, which
# keeps kubectl's annotation for its client-side apply.
UPGRADING_APPLIERS = frozenset({"kubectl", "kubelite"})
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _last_applied_fields(live: Obj, message_type: type[Message]) -> set[Path]:
    """The leaves of live's client-side apply annotation that still have the annotation's value live.

    Kubernetes lets kubectl's server-side apply take these over without a
    conflict (only for the manager "kubectl", the upgrade path from
    ``kubectl apply``; here for kubelite's CLI too); an annotation of another
    apiVersion counts for nothing.
    """
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    try:
        last = json.loads(annotations.get(LAST_APPLIED) or "null")
    except ValueError:
        return set()
    if not isinstance(last, dict) or last.get("apiVersion") != live.get("apiVersion"):
        return set()
    return {p for p in _leaves(field_set(last, message_type))
            if value_at(live, p) is not _MISSING and value_at(live, p) == value_at(last, p)}


def conflict_message(conflicts: list[Conflict]) -> str:
    """One conflict on one line; several grouped by owner, one field per line (as Kubernetes words it)."""
    n = len(conflicts)
    if n == 1:
        return f"Apply failed with 1 conflict: conflict with {conflicts[0].who()}: {conflicts[0].field()}"
    by_owner: dict[str, list[str]] = {}
    for c in conflicts:
        by_owner.setdefault(c.who(), []).append(c.field())
    lines: list[str] = []
    for who in sorted(by_owner):
        lines.append(f"conflicts with {who}:")
        lines.extend(f"- {f}" for f in by_owner[who])
    return f"Apply failed with {n} conflicts: " + "\n".join(lines)


# --- Update operations: create, update, patch, subresource writes ---------------------------------------------

# Kubernetes keeps at most this many Update entries; older ones merge into one entry per apiVersion.
MAX_UPDATE_MANAGERS = 10
ANCIENT_CHANGES = "ancient-changes"

# What an Update compares: each path an object sets, with its value (see object_fields).
Values = dict[Path, Any]

_EMPTY: tuple[()] = ()  # the value of an empty object, list or map
_ROOT_SKIP = frozenset({"apiVersion", "kind", "status"})
_META_SKIP = frozenset(p[1][2:] for p in IGNORED if len(p) == 2 and p[0] == "f:metadata")


def object_fields(msg: Message, subresource: str = "") -> Values:
    """The paths ``msg`` sets (the same as ``field_set`` of its JSON form), each with a comparable value.

    A status write owns status only; every other write owns everything but
    status (the strategies reset the other part anyway, as Kubernetes'
    reset fields do). Read straight from the message through a per-type
    plan: no JSON form is built, which would cost several times more.
    """
    plan = _plan(msg.DESCRIPTOR)  # type: ignore[arg-type]  # the stubs type it python-or-upb
    out: Values = {}
    for fd, value in msg.ListFields():
        step = plan.steps[fd.number]
        name = step.key[2:]
        if (name != "status") if subresource == "status" else (name in _ROOT_SKIP):
            continue
        path = (step.key,)
        if name == "metadata" and step.sub is not None:
            _walk_fields(value, step.sub, path, out, _META_SKIP)
        else:
            _walk_step(value, step, path, out)
    return out


# How each field of a message type is walked.
# A value is kept as its bytes when it is a message (a Timestamp, list items): bytes compare the same
# way and do not change with the object they were read from.
_LEAF, _MESSAGE, _MAP, _MESSAGE_MAP, _KEYED_LIST, _SET_LIST, _ATOMIC_LIST, _MESSAGE_LEAF, _WKT_MAP, \
    _MESSAGE_LIST = range(10)


@dataclass(slots=True)
class _Step:
    key: str  # "f:<json name>"
    kind: int
    info: codec.FieldInfo
    sub: _Plan | None = None  # messages, map values and list items of message type
    merge_key: str = ""
    merge_field: codec.FieldInfo | None = None


@dataclass(slots=True)
class _Plan:
    steps: dict[int, _Step]
    # Fields written even when unset (Kubernetes' fields without omitempty): they count as set.
    always: tuple[tuple[int, str, codec.FieldInfo], ...]
    always_numbers: frozenset[int] = frozenset()
    # What a status write does not own, at the top of an object.
    all_but_status: frozenset[str] = frozenset()
    # The steps by the descriptor objects ListFields returns (cheaper than reading their numbers).
    by_descriptor: dict[Any, _Step] = field(default_factory=dict)


_PLANS: dict[str, _Plan] = {}


def _plan(descriptor: Descriptor) -> _Plan:
    plan = _PLANS.get(descriptor.full_name)
    if plan is None:
        info = codec.message_info(descriptor)
        plan = _Plan({}, ())
        _PLANS[descriptor.full_name] = plan  # before the fields: recursive types refer to it
        for number, fi in info.by_number.items():
            plan.steps[number] = _make_step(fi)
        plan.always = tuple((fi.descriptor.number, fi.json_name, fi) for fi in info.always)
        plan.always_numbers = frozenset(number for number, _, _ in plan.always)
        plan.all_but_status = frozenset(info.by_json) - {"status"}
    return plan


def _make_step(fi: codec.FieldInfo) -> _Step:
    key = "f:" + fi.json_name
    if fi.is_map:
        vfi = fi.map_value
        assert vfi is not None
        if vfi.is_message and not vfi.is_wkt and vfi.message is not None:
            return _Step(key, _MESSAGE_MAP, fi, _plan(vfi.message))
        return _Step(key, _WKT_MAP if vfi.is_message else _MAP, fi)
    if fi.repeated:
        if fi.is_message and fi.patch_merge_key and fi.message is not None:
            return _Step(key, _KEYED_LIST, fi, _plan(fi.message), fi.patch_merge_key,
                         codec.fields_of(fi.message).get(fi.patch_merge_key))
        if fi.merges_as_set:
            return _Step(key, _SET_LIST, fi)
        return _Step(key, _MESSAGE_LIST if fi.is_message else _ATOMIC_LIST, fi)
    if fi.is_message and not fi.is_wkt and fi.message is not None:
        return _Step(key, _MESSAGE, fi, _plan(fi.message))
    return _Step(key, _MESSAGE_LEAF if fi.is_message else _LEAF, fi)


def _walk_fields(msg: Message, plan: _Plan, prefix: Path, out: Values, skip: frozenset[str] = frozenset()) -> None:
    fields = msg.ListFields()
    by_descriptor = plan.by_descriptor
    for fd, value in fields:
        step = by_descriptor.get(fd)
        if step is None:  # first sight of this descriptor object
            step = by_descriptor[fd] = plan.steps[fd.number]
        if skip and step.key[2:] in skip:
            continue
        kind = step.kind
        path = (*prefix, step.key)
        # The two commonest kinds inline: this is the hot loop of every write.
        if kind == _LEAF:
            out[path] = value
        elif kind == _MESSAGE:
            n = len(out)
            _walk_fields(value, step.sub, path, out)  # type: ignore[arg-type]  # a _MESSAGE step has its plan
            if len(out) == n:
                out[path] = _EMPTY
        else:
            _walk_step(value, step, path, out)
    if plan.always:
        present = {fd.number for fd, _ in fields}
        steps = plan.steps
        for number, name, fi in plan.always:
            if number not in present and name not in skip:
                _walk_unset(fi, steps[number], (*prefix, steps[number].key), out)


def _walk_unset(fi: codec.FieldInfo, step: _Step, path: Path, out: Values) -> None:
    """An unset field that the JSON form writes anyway: its empty value, or the empty message's own such fields."""
    if step.kind == _MESSAGE and step.sub is not None and fi.message is not None:
        n = len(out)
        _walk_fields(message_factory.GetMessageClass(fi.message)(), step.sub, path, out)
        if len(out) == n:
            out[path] = _EMPTY
    elif step.kind != _LEAF or fi.is_message:
        out[path] = _EMPTY
    else:
        out[path] = fi.descriptor.default_value


def _walk_step(value: Any, step: _Step, path: Path, out: Values) -> None:
    kind = step.kind
    if kind == _LEAF:
        out[path] = value
    elif kind == _MESSAGE_LEAF:
        out[path] = value.SerializeToString(deterministic=True)
    elif kind == _MESSAGE:
        assert step.sub is not None
        n = len(out)
        _walk_fields(value, step.sub, path, out)
        if len(out) == n:
            out[path] = _EMPTY
    elif not value:
        out[path] = _EMPTY
    elif kind == _KEYED_LIST:
        assert step.sub is not None
        for item in value:
            item_path = (*path, _proto_item_key(item, step.merge_key, step.merge_field))
            out[(*item_path, ".")] = None
            _walk_fields(item, step.sub, item_path, out)
    elif kind == _MAP:
        for k, v in value.items():
            out[(*path, "f:" + (k if type(k) is str else codec.encode_map_key(k)))] = v
    elif kind == _WKT_MAP:
        for k, v in value.items():
            out[(*path, "f:" + (k if type(k) is str else codec.encode_map_key(k)))] = \
                v.SerializeToString(deterministic=True)
    elif kind == _MESSAGE_MAP:
        assert step.sub is not None
        for k, v in value.items():
            sub = (*path, "f:" + (k if type(k) is str else codec.encode_map_key(k)))
            n = len(out)
            _walk_fields(v, step.sub, sub, out)
            if len(out) == n:
                out[sub] = _EMPTY
    elif kind == _SET_LIST:
        for v in value:
            out[(*path, _set_key(v))] = None
    elif kind == _MESSAGE_LIST:
        out[path] = tuple(v.SerializeToString(deterministic=True) for v in value)  # an atomic list: one value
    else:
        out[path] = tuple(value)


def _json_scalar(value: Any) -> str:
    """json.dumps of a merge key's value, without its generic machinery (this runs for every list item)."""
    if type(value) is str:
        return _encode_string(value)
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if type(value) is int:
        return str(value)
    return json.dumps(value)


def _proto_item_key(item: Message, merge_key: str, kfi: codec.FieldInfo | None) -> str:
    """``_item_key`` of the item's JSON form, from the message (an unset key is null there, as here)."""
    value: Any = None
    if kfi is not None:
        raw = getattr(item, kfi.name)
        if raw or kfi.emit_empty:
            value = codec.encode_value(raw, kfi)
    return 'k:{"' + merge_key + '":' + _json_scalar(value) + "}"


def compare(old: Values, new: Values) -> tuple[frozenset[Path], frozenset[Path]]:
    """(the paths ``new`` sets or changes, the paths it no longer has) against ``old``."""
    changed = frozenset(p for p, v in new.items() if p not in old or old[p] != v)
    removed = frozenset(old.keys() - new.keys())
    return changed, removed


def diff(old: Message, new: Message, subresource: str = "") -> tuple[frozenset[Path], frozenset[Path]]:
    """``compare(object_fields(old), object_fields(new))``, walking only where the two differ.

    Most writes change a few fields of a large object (a condition, a label,
    replicas): equal fields and list items are compared by the protobuf
    runtime and skipped whole, so the cost follows the change, not the object.
    """
    changed: Values = {}
    removed: Values = {}
    plan = _plan(old.DESCRIPTOR)  # type: ignore[arg-type]  # the stubs type it python-or-upb
    _diff_fields(old, new, plan, (), changed, removed, plan.all_but_status if subresource == "status" else _ROOT_SKIP,
                 root=True)
    return frozenset(changed), frozenset(removed)


_MAPS = frozenset({_MAP, _WKT_MAP, _MESSAGE_MAP})
_LEAVES = frozenset({_LEAF, _MESSAGE_LEAF, _ATOMIC_LIST, _MESSAGE_LIST})


def _diff_fields(old: Message, new: Message, plan: _Plan, prefix: Path, changed: Values, removed: Values,
                 skip: frozenset[str] = frozenset(), root: bool = False) -> None:
    olds: dict[Any, Any] = dict(old.ListFields())
    news: dict[Any, Any] = dict(new.ListFields())
    by_descriptor = plan.by_descriptor
    for fd in news.keys() | olds.keys():
        step = by_descriptor.get(fd)
        if step is None:
            step = by_descriptor[fd] = plan.steps[fd.number]
        if skip and step.key[2:] in skip:
            continue
        path = (*prefix, step.key)
        o, n = olds.get(fd, _MISSING), news.get(fd, _MISSING)
        kind = step.kind
        if o is _MISSING or n is _MISSING:
            if root and step.key == "f:metadata" and step.sub is not None:
                # Only one side has metadata: compare what each side's walk (bookkeeping skipped) sees.
                a: Values = {}
                b: Values = {}
                if o is not _MISSING:
                    _walk_fields(o, step.sub, path, a, _META_SKIP)
                if n is not _MISSING:
                    _walk_fields(n, step.sub, path, b, _META_SKIP)
                _merge_compare(a, b, changed, removed)
            elif kind in _LEAVES and fd.number not in plan.always_numbers:
                (removed if n is _MISSING else changed)[path] = None
            else:
                _diff_walked(o, n, step, path, changed, removed, fd.number in plan.always_numbers)
        elif kind in _MAPS:
            _diff_walked(o, n, step, path, changed, removed, False)  # small; a map's == is slow Python
        elif o == n:
            continue
        elif kind in _LEAVES:
            changed[path] = None
        elif root and step.key == "f:metadata" and step.sub is not None:
            _diff_fields(o, n, step.sub, path, changed, removed, _META_SKIP)
        elif kind == _MESSAGE and step.sub is not None and o.ByteSize() and n.ByteSize():
            _diff_fields(o, n, step.sub, path, changed, removed)
        elif kind == _KEYED_LIST and step.sub is not None:
            _diff_keyed(o, n, step, path, changed, removed)
        else:
            _diff_walked(o, n, step, path, changed, removed, False)


def _diff_walked(o: Any, n: Any, step: _Step, path: Path, changed: Values, removed: Values, always: bool) -> None:
    """Both sides walked in full and compared: for leaves, maps and atomic lists, or when a side is unset."""
    a: Values = {}
    b: Values = {}
    for side, out in ((o, a), (n, b)):
        if side is not _MISSING:
            _walk_step(side, step, path, out)
        elif always:  # unset, but written anyway: what object_fields sees of it
            _walk_unset(step.info, step, path, out)
    _merge_compare(a, b, changed, removed)


def _merge_compare(a: Values, b: Values, changed: Values, removed: Values) -> None:
    for p, v in b.items():
        if p not in a or a[p] != v:
            changed[p] = None
    for p in a:
        if p not in b:
            removed[p] = None


def _diff_keyed(o: Any, n: Any, step: _Step, path: Path, changed: Values, removed: Values) -> None:
    """Lists with a merge key: items matched by their keys, equal items skipped, changed items diffed."""
    assert step.sub is not None
    olds = {_proto_item_key(item, step.merge_key, step.merge_field): item for item in o}
    news = {_proto_item_key(item, step.merge_key, step.merge_field): item for item in n}
    for key, item in news.items():
        item_path = (*path, key)
        before = olds.get(key)
        if before is None:
            added: Values = {(*item_path, "."): None}
            _walk_fields(item, step.sub, item_path, added)
            changed.update(dict.fromkeys(added))
        elif before != item:
            _diff_fields(before, item, step.sub, item_path, changed, removed)
    for key, item in olds.items():
        if key not in news:
            item_path = (*path, key)
            gone: Values = {(*item_path, "."): None}
            _walk_fields(item, step.sub, item_path, gone)
            removed.update(dict.fromkeys(gone))


# Field sets by their FieldsV1 JSON, and back: the entries of one kind of object repeat (every pod of a
# ReplicaSet has the same sets), so a write mostly parses and encodes nothing.
_CACHE_LIMIT = 4096
_SETS: dict[bytes, frozenset[Path]] = {}
_ENCODED: dict[frozenset[Path], bytes] = {}


def _remember(raw: bytes, paths: frozenset[Path]) -> None:
    if len(_SETS) >= _CACHE_LIMIT:
        _SETS.clear()
    if len(_ENCODED) >= _CACHE_LIMIT:
        _ENCODED.clear()
    _SETS[raw] = paths
    if raw[:1] == b"{":  # not the bytes of a legacy Struct: what set_entry_paths writes
        _ENCODED[paths] = raw


def entry_paths(entry: metav1.ManagedFieldsEntry) -> frozenset[Path]:
    """The field set of a managedFields entry."""
    raw = entry.fields_v1
    paths = _SETS.get(raw)
    if paths is None:
        doc = codec.raw_json_value(raw)
        paths = frozenset(from_fields_v1(doc)) if isinstance(doc, Mapping) else frozenset()
        _remember(raw, paths)
    return paths


def set_entry_paths(entry: metav1.ManagedFieldsEntry, paths: frozenset[Path]) -> None:
    raw = _ENCODED.get(paths)
    if raw is None:
        raw = codec.raw_json_bytes(to_fields_v1(paths))
        _remember(raw, paths)
    entry.fields_v1 = raw


def _is_reset(entries: RepeatedCompositeFieldContainer[metav1.ManagedFieldsEntry]) -> bool:
    """A single empty entry: the writer asks to clear the field ownership (Kubernetes' reset)."""
    return len(entries) == 1 and entries[0].ByteSize() == 0


def record_update(entries: RepeatedCompositeFieldContainer[metav1.ManagedFieldsEntry], changed: frozenset[Path],
                  removed: frozenset[Path], manager: str, api_version: str, subresource: str, now: int) -> bool:
    """Records an Update by ``manager`` in ``entries`` (an object's managedFields, changed in place).

    ``changed`` and ``removed`` are what the write set or changed and what
    it removed (``diff``; for a create, every field of the new object).

    The manager's entry (one per manager, apiVersion and subresource) gains
    what the write set or changed and gets the time; those fields leave
    every other entry (an Update takes ownership, it never conflicts), and
    fields the write removed leave every entry. Empty entries go; above
    MAX_UPDATE_MANAGERS Update entries the oldest merge. A write that
    changed nothing changes nothing here either. Returns whether it did.
    """
    if _is_reset(entries):
        del entries[:]
    if not changed and not removed:
        return False
    lost = changed | removed
    mine: metav1.ManagedFieldsEntry | None = None
    mine_paths: frozenset[Path] = frozenset()
    for i in range(len(entries) - 1, -1, -1):
        entry = entries[i]
        paths = entry_paths(entry)
        if (entry.manager == manager and entry.operation == "Update" and entry.api_version == api_version
                and entry.subresource == subresource):
            mine, mine_paths = entry, paths
            continue
        if paths.isdisjoint(lost) and paths:
            continue
        left = paths - lost
        if left:
            set_entry_paths(entry, left)
        else:
            del entries[i]
    if changed:
        if mine is None:
            mine = entries.add(manager=manager, operation="Update", api_version=api_version, fields_type="FieldsV1",
                               subresource=subresource)
        paths = (mine_paths - removed) | changed
        if paths != mine_paths:
            set_entry_paths(mine, paths)
        mine.time.seconds, mine.time.nanos = now, 0
    elif mine is not None:
        left = mine_paths - removed
        if left:
            if left != mine_paths:
                set_entry_paths(mine, left)
        else:
            entries.remove(mine)
    cap_update_entries(entries)
    entries.sort(key=lambda e: (e.operation, e.time.seconds, e.manager, e.api_version, e.subresource))
    return True


def cap_update_entries(entries: RepeatedCompositeFieldContainer[metav1.ManagedFieldsEntry],
                       limit: int = MAX_UPDATE_MANAGERS) -> None:
    """Above ``limit`` Update entries, the oldest merge into one ``ancient-changes`` entry per apiVersion.

    As in Kubernetes, the oldest entry of an apiVersion becomes that
    version's bucket only once a second one is merged into it; the bucket
    takes the time of the newest entry merged in.
    """
    updaters = [e for e in entries if e.operation == "Update"]
    count = len(updaters)
    if count <= limit:
        return
    updaters.sort(key=lambda e: (e.time.seconds, e.manager, e.subresource))
    buckets = {e.api_version: e for e in updaters if e.manager == ANCIENT_CHANGES and not e.subresource}
    first: dict[str, metav1.ManagedFieldsEntry] = {}
    merged: list[metav1.ManagedFieldsEntry] = []
    for entry in updaters:
        if count <= limit:
            break
        version = entry.api_version
        bucket = buckets.get(version)
        if bucket is entry:
            continue
        if bucket is None:
            if version not in first:
                first[version] = entry
                continue
            bucket = first[version]
            bucket.manager, bucket.subresource = ANCIENT_CHANGES, ""
            buckets[version] = bucket
        set_entry_paths(bucket, entry_paths(bucket) | entry_paths(entry))
        bucket.time.CopyFrom(entry.time)
        merged.append(entry)
        count -= 1
    for entry in merged:
        entries.remove(entry)
