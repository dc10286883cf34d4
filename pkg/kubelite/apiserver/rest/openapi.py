"""OpenAPI v3 documents generated from the proto descriptors, one per group-version.

kubectl reads them for two things: ``--validate=strict`` (its default) checks
that the PATCH operation of the object's kind declares the ``fieldValidation``
query parameter, and then lets the server validate; ``kubectl explain`` walks
the schemas, found by their ``x-kubernetes-group-version-kind``. The schemas
come from the same descriptors the codec decodes with, so they cannot drift
from what the server accepts: JSON names, int-or-string and quantity fields,
maps, enums and the strategic-merge keys of list fields.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from kubelite.apiserver.service import Registry
from kubelite.apiserver.store import ResourceStore
from kubelite.machinery import codec
from kubelite.machinery.codec import FORMAT_INT_OR_STRING, FORMAT_QUANTITY, FORMAT_RAW_JSON, FieldInfo

_INTEGERS32 = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32,
               FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32}
_INTEGERS64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64,
               FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64}
_WKT: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string"},
    "google.protobuf.Struct": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    "google.protobuf.Value": {"x-kubernetes-preserve-unknown-fields": True},
    "google.protobuf.Int64Value": {"type": "integer", "format": "int64"},
    "google.protobuf.UInt64Value": {"type": "integer", "format": "int64"},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.StringValue": {"type": "string"},
}

# Query parameters of the write operations that kubectl looks for.
_WRITE_PARAMS = [
    {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
    {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
    {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
]


def schema_name(descriptor: Descriptor) -> str:
    """Kubernetes' schema names: io.k8s.api.<group>.<version>.<Kind>, meta under io.k8s.apimachinery."""
    full = descriptor.full_name
    if full.startswith("kubelite.api.meta."):
        return "io.k8s.apimachinery.pkg.apis.meta." + full.removeprefix("kubelite.api.meta.")
    return "io.k8s.api." + full.removeprefix("kubelite.api.")


class OpenAPI:
    """Builds the documents once, on first use: the registry does not change while the server runs."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._docs: dict[str, dict[str, Any]] | None = None

    def _build(self) -> dict[str, dict[str, Any]]:
        if self._docs is None:
            by_gv: dict[str, list[ResourceStore]] = defaultdict(list)
            for store in self._registry.stores.values():
                rt = store.rt
                by_gv[f"apis/{rt.group}/{rt.version}" if rt.group else f"api/{rt.version}"].append(store)
            self._docs = {gv: _document(stores) for gv, stores in sorted(by_gv.items())}
        return self._docs

    def index(self) -> dict[str, Any]:
        paths = {}
        for gv, doc in self._build().items():
            digest = hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()
            paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest}"}
        return {"paths": paths}

    def document(self, gv: str) -> dict[str, Any] | None:
        return self._build().get(gv.strip("/"))


def _document(stores: list[ResourceStore]) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for store in sorted(stores, key=lambda s: s.rt.resource):
        rt = store.rt
        descriptor = cast(Descriptor, rt.message.DESCRIPTOR)
        _add_schema(descriptor, schemas)
        name = schema_name(descriptor)
        schemas[name]["x-kubernetes-group-version-kind"] = [{"group": rt.group, "kind": rt.kind,
                                                             "version": rt.version}]
        gvk = {"group": rt.group, "kind": rt.kind, "version": rt.version}
        ref = {"$ref": f"#/components/schemas/{name}"}
        base = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
        scope = f"{base}/namespaces/{{namespace}}/{rt.resource}" if rt.namespaced else f"{base}/{rt.resource}"
        ok = {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}
        body = {"content": {"application/json": {"schema": ref}}, "required": True}
        patch_body = {"content": {t: {"schema": {"type": "object"}} for t in (
            "application/json-patch+json", "application/merge-patch+json",
            "application/strategic-merge-patch+json", "application/apply-patch+yaml")}, "required": True}

        def op(action: str, **extra: Any) -> dict[str, Any]:
            return {"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk,  # noqa: B023
                    "responses": ok, **extra}  # noqa: B023

        paths[scope] = {"get": op("list"), "post": op("post", requestBody=body, parameters=_WRITE_PARAMS),
                        "delete": op("deletecollection")}
        paths[f"{scope}/{{name}}"] = {
            "get": op("get"), "put": op("put", requestBody=body, parameters=_WRITE_PARAMS),
            "patch": op("patch", requestBody=patch_body, parameters=[*_WRITE_PARAMS, {
                "name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": True}}]),
            "delete": op("delete")}
        for sub in sorted(store.subresources):
            paths[f"{scope}/{{name}}/{sub}"] = {"get": op("get")}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.37.0"}, "paths": paths,
            "components": {"schemas": schemas}}


def _add_schema(descriptor: Descriptor, schemas: dict[str, Any]) -> None:
    name = schema_name(descriptor)
    if name in schemas:
        return
    schemas[name] = {}  # placeholder first: messages refer to themselves (JSONSchemaProps-like recursion)
    props: dict[str, Any] = {}
    for fi in codec.fields_of(descriptor).values():
        props[fi.json_name] = _field_schema(fi, schemas)
    schemas[name] = {"type": "object", "description": "", "properties": props}


def _field_schema(fi: FieldInfo, schemas: dict[str, Any]) -> dict[str, Any]:
    if fi.is_map:
        assert fi.map_value is not None
        return {"type": "object", "additionalProperties": _value_schema(fi.map_value, schemas)}
    value = _value_schema(fi, schemas)
    if fi.repeated:
        out: dict[str, Any] = {"type": "array", "items": value}
        if fi.patch_merge_key:
            out["x-kubernetes-patch-merge-key"] = fi.patch_merge_key
        if fi.patch_strategy:
            out["x-kubernetes-patch-strategy"] = fi.patch_strategy
        return out
    return value


def _value_schema(fi: FieldInfo, schemas: dict[str, Any]) -> dict[str, Any]:
    t = fi.type
    if t == FieldDescriptor.TYPE_MESSAGE:
        desc = fi.message if fi.message is not None else fi.descriptor.message_type
        assert desc is not None
        if desc.full_name in _WKT:
            return dict(_WKT[desc.full_name])
        _add_schema(desc, schemas)
        # Kubernetes' v3 documents wrap references in allOf, so that a description and default can sit beside.
        return {"allOf": [{"$ref": f"#/components/schemas/{schema_name(desc)}"}], "default": {}}
    if fi.format == FORMAT_INT_OR_STRING:
        return {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
    if fi.format == FORMAT_QUANTITY:
        return {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}],
                "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?"
                           r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"}
    if t in _INTEGERS32:
        return {"type": "integer", "format": "int32"}
    if t in _INTEGERS64:
        return {"type": "integer", "format": "int64"}
    if t == FieldDescriptor.TYPE_BOOL:
        return {"type": "boolean"}
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return {"type": "number", "format": "double"}
    if t == FieldDescriptor.TYPE_BYTES:
        if fi.format == FORMAT_RAW_JSON:
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        return {"type": "string", "format": "byte"}
    if t == FieldDescriptor.TYPE_ENUM:
        enum = fi.descriptor.enum_type
        assert enum is not None
        return {"type": "string", "enum": [v.name for v in enum.values]}
    return {"type": "string"}
