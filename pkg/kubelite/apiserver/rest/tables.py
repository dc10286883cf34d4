"""meta.k8s.io/v1 Table responses, from the same column definitions ``kubelite get`` prints.

kubectl asks for ``application/json;as=Table;v=v1;g=meta.k8s.io`` and prints
whatever columns the server sends (priority 0 normally, priority 1 too with
``-o wide``), so these tables are why ``kubectl get pods`` reads like
``kubelite get pods``. Each row carries the object as PartialObjectMetadata
(``includeObject=Metadata``, the default), the whole object
(``includeObject=Object``) or nothing (``None``): kubectl needs the metadata
for ``--show-labels``, ``-L`` and the namespace column.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from kubelite.machinery.tables import DEFERRED, TABLES, TableSpec, name_of, resolve_times

TABLE_MEDIA = ("as=table", "g=meta.k8s.io")
INCLUDE_OBJECT = ("None", "Metadata", "Object")


def wants_table(accept: str) -> bool:
    """Whether an Accept header asks for a Table (v1 or v1beta1) before anything else it accepts."""
    for part in accept.split(","):
        params = {p.strip().lower() for p in part.split(";")[1:]}
        if all(m in params for m in TABLE_MEDIA):
            return True
        media = part.split(";")[0].strip()
        if media in ("application/json", "*/*", "application/*"):
            return False
    return False


def _title(header: str) -> str:
    words = [w.capitalize() for w in header.split()]
    return " ".join(words).replace("-Ip", "-IP").replace("Ip", "IP")


def column_definitions(spec: TableSpec) -> list[dict[str, Any]]:
    cols: list[dict[str, Any]] = []
    headers = list(spec.headers)
    for i, header in enumerate(headers):
        fmt = "name" if i == 0 and spec.name_column else ""
        cols.append({"name": _title(header), "type": "string", "format": fmt, "description": "", "priority": 0})
    for header in spec.wide_headers if spec.wide_row is not None else ():
        cols.append({"name": _title(header), "type": "string", "format": "", "description": "", "priority": 1})
    return cols


@dataclass(frozen=True, slots=True)
class Row:
    """One object state's row, with its durations left as marks (machinery.tables.DEFERRED).

    A row is then a function of the object alone, so a list or a watch
    event builds it once per object state and only formats the durations
    per request; ``metadata`` is the PartialObjectMetadata's ``metadata``
    already in JSON.
    """

    cells: tuple[str, ...]
    metadata: bytes
    resource_version: str
    sort_key: Any


def spec_for(group: str, kind: str) -> TableSpec:
    return TABLES.lookup(group, kind)


def build_row(spec: TableSpec, obj: dict[str, Any]) -> Row:
    cells: list[str] = [name_of(obj)] if spec.name_column else []
    cells += spec.row(obj, DEFERRED)
    if spec.wide_row is not None:
        cells += spec.wide_row(obj, DEFERRED)
    key = spec.sort_key(obj) if spec.sort_key is not None else None
    meta = obj.get("metadata", {})
    return Row(tuple(cells), orjson.dumps(meta), str(meta.get("resourceVersion", "")), key)


_META_HEAD = b'{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":'


def table(spec: TableSpec, rows: list[Row], objects: list[bytes] | None, list_meta: dict[str, Any], include: str,
          with_columns: bool = True) -> dict[str, Any]:
    """The Table document (``objects``: each row's object in JSON, needed for includeObject=Object)."""
    now = time.time()
    order: list[int] | range = range(len(rows))
    if spec.sort_key is not None:
        order = sorted(order, key=lambda i: rows[i].sort_key)
    out: dict[str, Any] = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta}
    if with_columns:
        out["columnDefinitions"] = column_definitions(spec)
    items: list[dict[str, Any]] = []
    for i in order:
        r = rows[i]
        item: dict[str, Any] = {"cells": [resolve_times(c, now) for c in r.cells]}
        if include == "Metadata":
            item["object"] = orjson.Fragment(b"".join((_META_HEAD, r.metadata, b"}")))
        elif include == "Object" and objects is not None:
            item["object"] = orjson.Fragment(objects[i])
        items.append(item)
    out["rows"] = items
    return out


def table_of(group: str, kind: str, objs: list[dict[str, Any]], list_meta: dict[str, Any], include: str,
             with_columns: bool = True) -> dict[str, Any]:
    """A Table of objects at hand (a write's answer): rows built on the spot, not cached."""
    spec = spec_for(group, kind)
    rows = [build_row(spec, o) for o in objs]
    return table(spec, rows, [orjson.dumps(o) for o in objs], list_meta, include, with_columns)


class RowCache:
    """Rows by the object state's wire bytes, like the REST API's JSONCache and bounded the same way.

    ``json_of`` gives a state's cached JSON: the row is built from it on a
    miss. Measured on 10,000 pods, parsing each object's JSON again for every
    Table list was half of the list's time.
    """

    def __init__(self, json_of: Callable[[Any, bytes], bytes], max_bytes: int = 64 * 1024 * 1024) -> None:
        self._json_of = json_of
        self._entries: dict[bytes, Row] = {}
        self._size = 0
        self._max = max_bytes

    def get(self, store: Any, spec: TableSpec, wire: bytes) -> Row:
        hit = self._entries.get(wire)
        if hit is not None:
            return hit
        row = build_row(spec, orjson.loads(self._json_of(store, wire)))
        self._entries[wire] = row
        self._size += _cost(row)
        while self._size > self._max and self._entries:
            old = next(iter(self._entries))
            self._size -= _cost(self._entries.pop(old))
        return row


def _cost(row: Row) -> int:
    # What a row adds: the wire bytes it is keyed by are the watch cache's own object.
    return len(row.metadata) + sum(len(c) for c in row.cells) + 64 * len(row.cells) + 200
