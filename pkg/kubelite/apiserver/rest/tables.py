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

from datetime import UTC, datetime
from typing import Any

from kubelite.machinery.tables import TABLES, TableSpec, name_of

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


def row(spec: TableSpec, obj: dict[str, Any], now: datetime, include: str) -> dict[str, Any]:
    cells: list[Any] = [name_of(obj)] if spec.name_column else []
    cells += spec.row(obj, now)
    if spec.wide_row is not None:
        cells += spec.wide_row(obj, now)
    out: dict[str, Any] = {"cells": cells}
    if include == "Object":
        out["object"] = obj
    elif include == "Metadata":
        out["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                         "metadata": obj.get("metadata", {})}
    return out


def table(group: str, kind: str, objs: list[dict[str, Any]], list_meta: dict[str, Any], include: str,
          with_columns: bool = True) -> dict[str, Any]:
    spec = TABLES.lookup(group, kind)
    now = datetime.now(UTC)
    items = sorted(objs, key=spec.sort_key) if spec.sort_key is not None else objs
    out: dict[str, Any] = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta}
    if with_columns:
        out["columnDefinitions"] = column_definitions(spec)
    out["rows"] = [row(spec, o, now, include) for o in items]
    return out
