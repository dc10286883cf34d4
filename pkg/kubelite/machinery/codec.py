"""Kubernetes JSON/YAML <-> protobuf messages, with Kubernetes' strictness.

Proto3 JSON (``google.protobuf.json_format``) is close to the Kubernetes JSON
form but not the same: it quotes int64, knows nothing of int-or-string and
quantity fields, silently accepts both field spellings, and reports the first
problem without a path. Users paste manifests from the Kubernetes docs and
expect kubectl's behaviour: every unknown field and every wrongly typed value
reported at once, by its full JSON path. So this module walks the message
descriptors itself, in one pass that checks and builds the message, and writes
the Kubernetes form back out (int64 as numbers, digit-only int-or-strings as
numbers, apiVersion/kind/metadata/spec/status first).

Everything is driven by descriptors and the custom field options in
meta/v1/generated.proto; there is no per-kind code. Per-descriptor field
tables are cached because the API server decodes every patch result and the
CLI every manifest.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

import yaml
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from kubelite.api.meta.v1 import generated_pb2 as metav1
from kubelite.machinery.errors import FieldError, StatusError, bad_request
from kubelite.machinery.scheme import UnknownKindError

if TYPE_CHECKING:
    from kubelite.machinery.scheme import Scheme

M = TypeVar("M", bound=Message)

# --------------------------------------------------------------------------------------------
# Field tables
# --------------------------------------------------------------------------------------------

FORMAT_NONE = metav1.FIELD_FORMAT_UNSPECIFIED
FORMAT_INT_OR_STRING = metav1.INT_OR_STRING
FORMAT_QUANTITY = metav1.QUANTITY
FORMAT_RAW_JSON = metav1.RAW_JSON

_INT32 = frozenset({FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32})
_UINT32 = frozenset({FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32})
_INT64 = frozenset({FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64})
_UINT64 = frozenset({FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64})
_FLOATS = frozenset({FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE})
_INT_RANGES: dict[int, tuple[int, int, str]] = {}
for _t in _INT32:
    _INT_RANGES[_t] = (-(2**31), 2**31 - 1, "int32")
for _t in _UINT32:
    _INT_RANGES[_t] = (0, 2**32 - 1, "uint32")
for _t in _INT64:
    _INT_RANGES[_t] = (-(2**63), 2**63 - 1, "int64")
for _t in _UINT64:
    _INT_RANGES[_t] = (0, 2**64 - 1, "uint64")

# Field names that lead an object when it is written out, in this order (kubectl's order).
_LEADING_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")

# Well-known types whose JSON form is a scalar; the codec handles these itself.
_TIMESTAMP = "google.protobuf.Timestamp"
_DURATION = "google.protobuf.Duration"
_INT_WRAPPERS = frozenset({"google.protobuf.Int64Value", "google.protobuf.UInt64Value"})


@dataclass(slots=True)
class FieldInfo:
    """What the codec and the patch functions need to know about one field."""

    name: str  # the proto (Python attribute) name
    json_name: str
    type: int  # FieldDescriptor.TYPE_*
    repeated: bool
    is_map: bool
    # Message fields (and map values of message type): the message descriptor.
    message: Descriptor | None
    # Maps: the value's FieldInfo (its json_name is "value") and the key's type.
    map_value: FieldInfo | None
    map_key_type: int
    format: int
    patch_merge_key: str
    patch_strategy: str
    oneof: str
    descriptor: FieldDescriptor = field(repr=False)
    # Written even when empty (Kubernetes' fields without omitempty; see the emit_empty option).
    emit_empty: bool = False

    @property
    def is_message(self) -> bool:
        return self.type == FieldDescriptor.TYPE_MESSAGE

    @property
    def is_wkt(self) -> bool:
        return self.message is not None and self.message.full_name.startswith("google.protobuf.")

    @property
    def merges_as_set(self) -> bool:
        """A repeated scalar whose strategic-merge strategy is "merge" (finalizers)."""
        return self.repeated and not self.is_map and not self.is_message and "merge" in self.patch_strategy


@dataclass(slots=True)
class MessageInfo:
    descriptor: Descriptor
    by_json: dict[str, FieldInfo]
    by_number: dict[int, FieldInfo]
    # field number -> position in the output (leading fields first, then declaration order)
    rank: dict[int, int]
    # Fields written even when unset, in output order.
    always: tuple[FieldInfo, ...] = ()


_INFO_CACHE: dict[str, MessageInfo] = {}


def message_info(descriptor: Descriptor) -> MessageInfo:
    """The cached field table of a message type, keyed by JSON name."""
    info = _INFO_CACHE.get(descriptor.full_name)
    if info is None:
        info = _build_info(descriptor)
        _INFO_CACHE[descriptor.full_name] = info
    return info


def fields_of(message_type: type[Message] | Message | Descriptor) -> Mapping[str, FieldInfo]:
    """Fields of a message type by their JSON name."""
    return message_info(_descriptor(message_type)).by_json


def _descriptor(message_type: type[Message] | Message | Descriptor) -> Descriptor:
    if isinstance(message_type, Descriptor):
        return message_type
    # The stubs type DESCRIPTOR as python-or-upb; at runtime it is always a Descriptor.
    return cast(Descriptor, message_type.DESCRIPTOR)


def _field_info(fd: FieldDescriptor) -> FieldInfo:
    ext: Any = fd.GetOptions().Extensions  # the stubs cannot type custom options
    fmt: int = ext[metav1.format] if fd.has_options else FORMAT_NONE
    merge_key: str = ext[metav1.patch_merge_key] if fd.has_options else ""
    strategy: str = ext[metav1.patch_strategy] if fd.has_options else ""
    emit_empty: bool = ext[metav1.emit_empty] if fd.has_options else False
    msg = fd.message_type
    is_map = bool(fd.is_repeated and msg is not None and msg.GetOptions().map_entry)
    map_value: FieldInfo | None = None
    map_key_type = 0
    if is_map and msg is not None:
        map_key_type = msg.fields_by_name["key"].type
        map_value = _field_info(msg.fields_by_name["value"])
        # The format option sits on the map field and applies to its values.
        if fmt != FORMAT_NONE:
            map_value.format = fmt
    return FieldInfo(
        name=fd.name,
        json_name=fd.json_name,
        type=fd.type,
        repeated=fd.is_repeated and not is_map,
        is_map=is_map,
        message=None if is_map else msg,
        map_value=map_value,
        map_key_type=map_key_type,
        format=fmt,
        patch_merge_key=merge_key,
        patch_strategy=strategy,
        oneof=fd.containing_oneof.name if fd.containing_oneof is not None else "",
        descriptor=fd,
        emit_empty=emit_empty,
    )


def _build_info(descriptor: Descriptor) -> MessageInfo:
    by_json: dict[str, FieldInfo] = {}
    by_number: dict[int, FieldInfo] = {}
    for fd in descriptor.fields:
        fi = _field_info(fd)
        by_json[fi.json_name] = fi
        by_number[fd.number] = fi
    ordered = sorted(
        descriptor.fields,
        key=lambda fd: (
            _LEADING_FIELDS.index(fd.json_name) if fd.json_name in _LEADING_FIELDS else len(_LEADING_FIELDS),
            fd.index,
        ),
    )
    rank = {fd.number: i for i, fd in enumerate(ordered)}
    always = tuple(by_number[fd.number] for fd in ordered if by_number[fd.number].emit_empty)
    return MessageInfo(descriptor=descriptor, by_json=by_json, by_number=by_number, rank=rank, always=always)


# --------------------------------------------------------------------------------------------
# YAML / JSON documents
# --------------------------------------------------------------------------------------------

_BaseLoader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BaseDumper: type[Any] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Loader(_BaseLoader):  # type: ignore[misc]
    """Safe loading as Kubernetes' YAML → JSON conversion sees it.

    Timestamps stay strings (Kubernetes converts YAML to JSON before decoding,
    so ``2024-01-01T00:00:00Z`` is a string to it), and a key given twice in
    one mapping is an error instead of the last one silently winning.
    """

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue  # the base class reports unhashable keys
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f'key "{key}" already set in map (first at line {seen[key].line + 1})',
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark
        result: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return result


# Drop the implicit timestamp resolver (Resolver keeps a per-class table; copy before editing).
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}


def load_documents(text: str, source: str = "") -> list[dict[str, Any]]:
    """Parses a YAML (or JSON) stream into objects.

    Empty documents are skipped and ``kind: List`` / ``kind: XxxList`` objects are
    expanded into their items, as kubectl does with a file of several objects.
    """
    where = source or "input"
    docs: list[Any]
    stripped = text.lstrip()
    if stripped.startswith("{") or stripped.startswith("["):
        # JSON is (nearly) YAML, but json gives better errors and is much faster.
        try:
            docs = [json.loads(text)]
        except json.JSONDecodeError:
            docs = _load_yaml(text, where)
    else:
        docs = _load_yaml(text, where)
    out: list[dict[str, Any]] = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        _expand(doc, out, f"{where}: document {i + 1}")
    return out


def _load_yaml(text: str, where: str) -> list[Any]:
    try:
        return list(yaml.load_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if mark is not None:
            msg = f"error parsing {where}: line {mark.line + 1}, column {mark.column + 1}: {problem}"
        else:
            msg = f"error parsing {where}: {problem}"
        raise bad_request(msg) from exc
    except yaml.YAMLError as exc:
        raise bad_request(f"error parsing {where}: {exc}") from exc


def _expand(doc: Any, out: list[dict[str, Any]], where: str) -> None:
    if not isinstance(doc, dict):
        raise bad_request(f"error parsing {where}: expected an object, got {_json_type(doc)}")
    kind = doc.get("kind")
    items = doc.get("items")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(items, list):
        for item in items:
            _expand(item, out, where)
        return
    out.append(doc)


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def decode(data: Mapping[str, Any], scheme: Scheme | None = None) -> Message:
    """Decodes an object whose type is named by its apiVersion and kind."""
    if scheme is None:
        from kubelite.machinery.kinds import SCHEME  # lazy: kinds imports generated code of every group

        scheme = SCHEME
    kind = data.get("kind")
    api_version = data.get("apiVersion")
    if not isinstance(kind, str) or not kind:
        raise bad_request(f"Object 'Kind' is missing in '{_compact(data)}'")
    if not isinstance(api_version, str) or not api_version:
        raise bad_request(f"Object 'apiVersion' is missing in '{_compact(data)}'")
    try:
        rt = scheme.for_kind(api_version, kind)
    except UnknownKindError as exc:
        raise bad_request(str(exc)) from None
    return decode_into(data, rt.message)


def decode_into(data: Mapping[str, Any], message_type: type[M], path: str = "") -> M:
    """Checks ``data`` against the message type and builds the message.

    Every problem is collected first; the StatusError (BadRequest) lists them
    all, each as a FieldError naming its JSON path.
    """
    msg = message_type()
    errors: list[FieldError] = []
    if not isinstance(data, Mapping):
        errors.append(_type_error(path or "<root>", "object", data))
    else:
        _decode_message(data, msg, message_info(_descriptor(msg)), path, errors)
    if errors:
        raise _decode_error(errors, message_type.DESCRIPTOR.name)
    return msg


def decode_unknown_allowed(data: Mapping[str, Any], message_type: type[M]) -> tuple[M, list[str]]:
    """Like ``decode_into``, but fields the type does not have are dropped and returned by path.

    The REST API's ``fieldValidation=Ignore|Warn``: the object is accepted
    without them (Warn reports each as a warning); every other problem (a
    wrong type, an invalid value) still refuses the request.
    """
    msg = message_type()
    errors: list[FieldError] = []
    if not isinstance(data, Mapping):
        errors.append(_type_error("<root>", "object", data))
    else:
        _decode_message(data, msg, message_info(_descriptor(msg)), "", errors)
    unknown = [e.field for e in errors if e.type == "UnknownField"]
    if len(unknown) < len(errors):
        raise _decode_error([e for e in errors if e.type != "UnknownField"], message_type.DESCRIPTOR.name)
    return msg, unknown


@overload
def from_json_bytes(data: bytes | str, message_type: type[M], scheme: Scheme | None = None) -> M: ...
@overload
def from_json_bytes(data: bytes | str, message_type: None = None,
                    scheme: Scheme | None = None) -> Message: ...
def from_json_bytes(
    data: bytes | str, message_type: type[Message] | None = None, scheme: Scheme | None = None
) -> Message:
    """Decodes one JSON object: into ``message_type``, or by its apiVersion/kind."""
    try:
        obj = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"error decoding JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise bad_request(f"error decoding JSON: expected an object, got {_json_type(obj)}")
    if message_type is not None:
        return decode_into(obj, message_type)
    return decode(obj, scheme)


def _decode_error(errors: list[FieldError], type_name: str) -> StatusError:
    unknown = [e for e in errors if e.type == "UnknownField"]
    other = [e for e in errors if e.type != "UnknownField"]
    parts: list[str] = []
    if other:
        parts.append(f"error decoding {type_name}: " + ", ".join(str(e) for e in other))
    if unknown:
        parts.append("strict decoding error: " + ", ".join(f'unknown field "{e.field}"' for e in unknown))
    return bad_request("; ".join(parts), errors)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _describe(value: Any) -> str:
    kind = _json_type(value)
    if isinstance(value, str):
        shown = value if len(value) <= 64 else value[:61] + "..."
        return f'{kind} "{shown}"'
    if isinstance(value, (bool, int, float)):
        return f"{kind} {json.dumps(value)}"
    return kind


def _type_error(path: str, expected: str, value: Any, extra: str = "") -> FieldError:
    detail = f"expected {expected}, got {_describe(value)}"
    if extra:
        detail = f"{detail}: {extra}"
    return FieldError("FieldValueTypeInvalid", path, detail)


def _compact(data: Mapping[str, Any]) -> str:
    try:
        text = json.dumps(data, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        text = repr(data)
    return text if len(text) <= 200 else text[:197] + "..."


class _Invalid:
    """Marks a value that failed conversion (its FieldError is already recorded)."""


_INVALID = _Invalid()


def _decode_message(
    data: Mapping[Any, Any], msg: Message, info: MessageInfo, path: str, errors: list[FieldError]
) -> None:
    by_json = info.by_json
    oneofs: dict[str, str] | None = None
    for key, value in data.items():
        fi = by_json.get(key) if isinstance(key, str) else None
        fpath = _join(path, str(key))
        if fi is None:
            errors.append(FieldError("UnknownField", fpath))
            continue
        if value is None:
            continue  # Kubernetes treats null as absent
        if fi.oneof:
            oneofs = oneofs if oneofs is not None else {}
            if fi.oneof in oneofs:
                errors.append(FieldError("FieldValueInvalid", fpath,
                                         f"may not be set together with {_join(path, oneofs[fi.oneof])}"))
                continue
            oneofs[fi.oneof] = key
        if fi.is_map:
            _decode_map(value, msg, fi, fpath, errors)
        elif fi.repeated:
            _decode_list(value, msg, fi, fpath, errors)
        elif fi.is_message:
            if not isinstance(value, Mapping) and not fi.is_wkt:
                errors.append(_type_error(fpath, "object", value))
                continue
            _decode_submessage(value, getattr(msg, fi.name), fi, fpath, errors)
        else:
            converted = _convert_scalar(value, fi, fpath, errors)
            if converted is not _INVALID:
                setattr(msg, fi.name, converted)


def _decode_submessage(value: Any, sub: Message, fi: FieldInfo, path: str, errors: list[FieldError]) -> None:
    """Fills a (sub-)message in place; a message given as {} still counts as set."""
    desc = _descriptor(sub)
    if desc.full_name.startswith("google.protobuf."):
        _decode_wkt(value, sub, path, errors)
        return
    if not isinstance(value, Mapping):
        errors.append(_type_error(path, "object", value))
        return
    sub.SetInParent()
    _decode_message(value, sub, message_info(desc), path, errors)


def _decode_wkt(value: Any, sub: Message, path: str, errors: list[FieldError]) -> None:
    name = sub.DESCRIPTOR.full_name
    if name in (_TIMESTAMP, _DURATION):
        expected = "RFC 3339 timestamp string" if name == _TIMESTAMP else "duration string like \"3.5s\""
        if not isinstance(value, str):
            errors.append(_type_error(path, expected, value))
            return
        try:
            sub.FromJsonString(value)  # type: ignore[attr-defined]
        except ValueError as exc:
            errors.append(_type_error(path, expected, value, str(exc)))
        return
    try:
        json_format.ParseDict(value, sub)
    except json_format.ParseError as exc:
        errors.append(FieldError("FieldValueTypeInvalid", path, str(exc)))


def _decode_list(value: Any, msg: Message, fi: FieldInfo, path: str, errors: list[FieldError]) -> None:
    if not isinstance(value, list):
        errors.append(_type_error(path, "array", value))
        return
    target = getattr(msg, fi.name)
    if fi.is_message:
        for i, item in enumerate(value):
            ipath = f"{path}[{i}]"
            sub = target.add()
            if item is None:
                continue  # a null element is an empty object, as in Kubernetes
            _decode_submessage(item, sub, fi, ipath, errors)
        return
    converted: list[Any] = []
    for i, item in enumerate(value):
        if item is None:
            converted.append(fi.descriptor.default_value)
            continue
        c = _convert_scalar(item, fi, f"{path}[{i}]", errors)
        if c is not _INVALID:
            converted.append(c)
    target.extend(converted)


def _decode_map(value: Any, msg: Message, fi: FieldInfo, path: str, errors: list[FieldError]) -> None:
    if not isinstance(value, Mapping):
        errors.append(_type_error(path, "object", value))
        return
    vfi = fi.map_value
    assert vfi is not None
    target = getattr(msg, fi.name)
    for raw_key, item in value.items():
        key = _convert_map_key(raw_key, fi.map_key_type, path, errors)
        if key is _INVALID:
            continue
        ipath = f"{path}[{key}]"
        if vfi.is_message:
            sub = target[key]  # creates the entry
            if item is not None:
                _decode_submessage(item, sub, vfi, ipath, errors)
            continue
        if item is None:
            target[key] = vfi.descriptor.default_value
            continue
        c = _convert_scalar(item, vfi, ipath, errors)
        if c is not _INVALID:
            target[key] = c


def _convert_map_key(raw: Any, key_type: int, path: str, errors: list[FieldError]) -> Any:
    if key_type == FieldDescriptor.TYPE_STRING:
        if isinstance(raw, str):
            return raw
        # YAML turns `80: x` or `true: x` into non-string keys; JSON (and Kubernetes) sees strings.
        if isinstance(raw, bool):
            return "true" if raw else "false"
        if isinstance(raw, (int, float)):
            return str(raw)
        errors.append(_type_error(path, "string keys", raw))
        return _INVALID
    if key_type == FieldDescriptor.TYPE_BOOL:
        if isinstance(raw, bool):
            return raw
        if raw in ("true", "false"):
            return raw == "true"
        errors.append(_type_error(path, "boolean keys", raw))
        return _INVALID
    lo, hi, name = _INT_RANGES[key_type]
    try:
        key = int(raw) if not isinstance(raw, bool) else None
    except (TypeError, ValueError):
        key = None
    if key is None or not lo <= key <= hi:
        errors.append(_type_error(path, f"{name} keys", raw))
        return _INVALID
    return key


_INT_STRING = re.compile(r"^-?[0-9]+$")


def _number_to_string(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _convert_scalar(value: Any, fi: FieldInfo, path: str, errors: list[FieldError]) -> Any:
    t = fi.type
    if t == FieldDescriptor.TYPE_STRING:
        if isinstance(value, str):
            return value
        if fi.format == FORMAT_INT_OR_STRING:
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
            if isinstance(value, float) and value.is_integer():
                return str(int(value))
            errors.append(_type_error(path, "integer or string", value))
            return _INVALID
        if fi.format == FORMAT_QUANTITY:
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                return _number_to_string(value)
            errors.append(_type_error(path, "quantity (number or string)", value))
            return _INVALID
        errors.append(_type_error(path, "string", value))
        return _INVALID
    if t == FieldDescriptor.TYPE_BOOL:
        if isinstance(value, bool):
            return value
        errors.append(_type_error(path, "boolean", value))
        return _INVALID
    if t in _INT_RANGES:
        lo, hi, name = _INT_RANGES[t]
        n: int | None = None
        if isinstance(value, bool):
            n = None
        elif isinstance(value, int):
            n = value
        elif isinstance(value, float) and value.is_integer():
            n = int(value)
        elif isinstance(value, str) and t in _INT64 | _UINT64 and _INT_STRING.match(value):
            n = int(value)  # proto3 JSON writes 64-bit integers as strings; accept them back
        if n is None:
            errors.append(_type_error(path, "integer", value))
            return _INVALID
        if not lo <= n <= hi:
            errors.append(FieldError("FieldValueTypeInvalid", path, f"value {n} is out of range for {name}"))
            return _INVALID
        return n
    if t in _FLOATS:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if value in ("NaN", "Infinity", "-Infinity"):
            return float(value)
        errors.append(_type_error(path, "number", value))
        return _INVALID
    if t == FieldDescriptor.TYPE_BYTES:
        if fi.format == FORMAT_RAW_JSON:
            if isinstance(value, Mapping):
                return raw_json_bytes(value)
            errors.append(_type_error(path, "object", value))
            return _INVALID
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                errors.append(_type_error(path, "base64-encoded string", value))
                return _INVALID
        if isinstance(value, bytes):  # YAML !!binary
            return value
        errors.append(_type_error(path, "base64-encoded string", value))
        return _INVALID
    if t == FieldDescriptor.TYPE_ENUM:
        enum = fi.descriptor.enum_type
        assert enum is not None
        if isinstance(value, str) and value in enum.values_by_name:
            return enum.values_by_name[value].number
        if isinstance(value, int) and not isinstance(value, bool) and value in enum.values_by_number:
            return value
        names = ", ".join(f'"{v.name}"' for v in enum.values)
        errors.append(FieldError("FieldValueNotSupported", path, f"supported values: {names}", value))
        return _INVALID
    errors.append(FieldError("FieldValueTypeInvalid", path, f"unsupported field type {t}"))
    return _INVALID


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def encode(msg: Message) -> dict[str, Any]:
    """The Kubernetes JSON form of a message, as plain dicts and lists.

    Unset and empty fields are left out (fields declared ``optional`` are kept
    when set, even to zero); int64 values are numbers.
    """
    return _encode_message(msg, message_info(_descriptor(msg)))


def _encode_message(msg: Message, info: MessageInfo) -> dict[str, Any]:
    fields = list(msg.ListFields())
    if len(fields) > 1:
        rank = info.rank
        fields.sort(key=lambda pair: rank[pair[0].number])
    by_number = info.by_number
    out: dict[str, Any] = {}
    for fd, value in fields:
        fi = by_number[fd.number]
        if fi.is_map:
            vfi = fi.map_value
            assert vfi is not None
            out[fi.json_name] = {_encode_map_key(k): _encode_value(v, vfi) for k, v in value.items()}
        elif fi.repeated:
            out[fi.json_name] = [_encode_value(v, fi) for v in value]
        else:
            out[fi.json_name] = _encode_value(value, fi)
    if info.always and len(out) < len(by_number):
        missing = [fi for fi in info.always if fi.json_name not in out]
        if missing:
            for fi in missing:
                out[fi.json_name] = _empty_value(fi)
            rank = info.rank
            out = {fi.json_name: out[fi.json_name] for fi in sorted(
                (info.by_json[k] for k in out), key=lambda f: rank[f.descriptor.number])}
    return out


def _empty_value(fi: FieldInfo) -> Any:
    """What Go's encoding/json writes for an empty field that has no omitempty."""
    if fi.is_map:
        return {}
    if fi.repeated:
        return []
    if fi.is_message:
        assert fi.message is not None
        return _encode_message(message_factory.GetMessageClass(fi.message)(), message_info(fi.message))
    return _encode_value(fi.descriptor.default_value, fi)


def raw_json_bytes(value: Any) -> bytes:
    """A RAW_JSON field's stored form: compact JSON with sorted keys, so that equal documents are equal bytes."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def raw_json_value(raw: bytes) -> Any:
    """A RAW_JSON field's document. Objects stored before the field was bytes hold a
    google.protobuf.Struct there (its bytes never start with "{"): read as such."""
    if not raw:
        return {}
    if raw[:1] == b"{":
        return json.loads(raw)
    from google.protobuf import struct_pb2

    return json_format.MessageToDict(struct_pb2.Struct.FromString(raw))


def encode_value(value: Any, fi: FieldInfo) -> Any:
    """The JSON form of one non-repeated value of field ``fi`` (server-side apply's keys use it)."""
    return _encode_value(value, fi)


def encode_map_key(key: Any) -> str:
    """A protobuf map key as the JSON object key it becomes."""
    return _encode_map_key(key)


def _encode_map_key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def _encode_value(value: Any, fi: FieldInfo) -> Any:
    t = fi.type
    if t == FieldDescriptor.TYPE_STRING:
        if fi.format == FORMAT_INT_OR_STRING and _INT_STRING.match(value) and str(int(value)) == value:
            return int(value)
        return value
    if t == FieldDescriptor.TYPE_MESSAGE:
        desc = value.DESCRIPTOR
        if desc.full_name.startswith("google.protobuf."):
            if desc.full_name in _INT_WRAPPERS:
                return int(value.value)
            return json_format.MessageToDict(value)
        return _encode_message(value, message_info(desc))
    if t in _FLOATS:
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if t == FieldDescriptor.TYPE_BYTES:
        if fi.format == FORMAT_RAW_JSON:
            return raw_json_value(value)
        return base64.b64encode(value).decode("ascii")
    if t == FieldDescriptor.TYPE_ENUM:
        enum = fi.descriptor.enum_type
        assert enum is not None
        ev = enum.values_by_number.get(value)
        return ev.name if ev is not None else value
    return value  # ints (int64 included: numbers, not strings) and bools


# --------------------------------------------------------------------------------------------
# Text forms
# --------------------------------------------------------------------------------------------


def to_json(obj: Message | Mapping[str, Any], indent: int | None = None) -> str:
    data = encode(obj) if isinstance(obj, Message) else obj
    if indent is None:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return json.dumps(data, indent=indent, ensure_ascii=False)


class _Dumper(_BaseDumper):  # type: ignore[misc]
    """Block-style YAML in insertion order, multi-line strings as literal blocks (as kubectl prints).

    Sequences stay "indentless" (``- name: x`` directly under ``containers:``),
    which is also what kubectl prints.
    """


def _represent_str(dumper: Any, value: str) -> Any:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


def _represent_dict(dumper: Any, value: Mapping[Any, Any]) -> Any:
    return dumper.represent_mapping("tag:yaml.org,2002:map", list(value.items()))


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(dict, _represent_dict)


def to_yaml(obj: Message | Mapping[str, Any] | Iterable[Message | Mapping[str, Any]]) -> str:
    """Block-style YAML; several objects become a multi-document stream."""
    if isinstance(obj, (Message, Mapping)):
        data = encode(obj) if isinstance(obj, Message) else obj
        return str(yaml.dump(data, Dumper=_Dumper, default_flow_style=False, sort_keys=False,
                             allow_unicode=True))
    docs = [encode(o) if isinstance(o, Message) else o for o in obj]
    return str(yaml.dump_all(docs, Dumper=_Dumper, default_flow_style=False, sort_keys=False,
                             allow_unicode=True))


@overload
def deep_copy(msg: M) -> M: ...
@overload
def deep_copy(msg: dict[str, Any]) -> dict[str, Any]: ...
def deep_copy(msg: Any) -> Any:
    """A copy that shares nothing with the original (objects from caches are read-only)."""
    if isinstance(msg, Message):
        new = type(msg)()
        new.CopyFrom(msg)
        return new
    import copy

    return copy.deepcopy(msg)
