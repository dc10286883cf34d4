"""Tables, ages and the -o formats (yaml, json, jsonpath, custom-columns), printed the way kubectl prints them.

The columns of each kind live in kubelite.machinery.tables, shared with the
API server's Table responses, so that kubectl and kubelite print the same.

Columns are aligned like Go's tabwriter as kubectl configures it: every
column but the last is padded to its widest cell plus three spaces (at least
six characters wide); the last column is not padded, so lines carry no
trailing blanks and pipe cleanly into awk/grep.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from kubelite.cli.errors import CliError
from kubelite.cli.jsonpath import ExecuteError, JSONPath, ParseError, go_sprint, relaxed_expression
from kubelite.machinery.tables import (  # re-exported: the CLI's modules know them from here
    NONE,
    Obj,
    TableSpec,
    dig,
    format_labels,
    name_of,
    namespace_of,
)

# --- tabwriter --------------------------------------------------------------------------------------------

MIN_WIDTH = 6
PADDING = 3


def format_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Aligns cells into columns the way kubectl's tabwriter does (see module docstring)."""
    if not rows:
        return []
    ncols = max(len(r) for r in rows)
    widths = [MIN_WIDTH] * ncols
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths[i], len(cell) + PADDING)
    lines = []
    for row in rows:
        parts = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        parts.append(row[-1] if row else "")
        lines.append("".join(parts))
    return lines


@dataclass
class TableOptions:
    wide: bool = False
    all_namespaces: bool = False
    show_labels: bool = False
    label_columns: tuple[str, ...] = ()
    no_headers: bool = False
    # ``pod/`` in front of names: kubectl does this when several kinds are printed together.
    name_prefix: str = ""


@dataclass
class TablePrinter:
    """Builds rows for one kind; header and rows are rendered together so columns line up."""

    spec: TableSpec
    options: TableOptions
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def headers(self) -> list[str]:
        cols = list(self.spec.headers)
        if self.options.wide and self.spec.wide_row is not None:
            cols += self.spec.wide_headers
        cols += [c.rpartition("/")[2].upper() for c in self.options.label_columns]
        if self.options.show_labels:
            cols.append("LABELS")
        if self.options.all_namespaces:
            cols.insert(0, "NAMESPACE")
        return cols

    def row(self, obj: Obj) -> list[str]:
        cells: list[str] = []
        if self.spec.name_column:
            cells.append(self.options.name_prefix + name_of(obj))
        cells += self.spec.row(obj, self.now)
        if self.options.wide and self.spec.wide_row is not None:
            cells += self.spec.wide_row(obj, self.now)
        labels = dig(obj, "metadata", "labels", default={})
        cells += [labels.get(c, "") for c in self.options.label_columns]
        if self.options.show_labels:
            cells.append(format_labels(labels))
        if self.options.all_namespaces:
            cells.insert(0, namespace_of(obj))
        return cells

    def render(self, objs: Iterable[Obj], headers: bool = True) -> list[str]:
        items = list(objs)
        if self.spec.sort_key is not None:
            items.sort(key=self.spec.sort_key)
        rows = [self.row(o) for o in items]
        if headers and not self.options.no_headers:
            rows.insert(0, self.headers())
        return format_table(rows)


# --- yaml / json ------------------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings as literal blocks, list items flush with their key (as kubectl)."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    # A string that would read back as another type ("101", "true", a timestamp) gets
    # double quotes, as kubectl writes them (PyYAML would pick single quotes).
    resolve: Any = dumper.resolve  # untyped in types-pyyaml
    if not value or resolve(yaml.ScalarNode, value, (True, False)) != "tag:yaml.org,2002:str":
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str_representer)


def to_yaml(data: Any) -> str:
    """YAML with sorted keys and no line wrapping, as ``kubectl get -o yaml`` writes it."""
    text: str = yaml.dump(data, Dumper=_Dumper, default_flow_style=False, sort_keys=True,
                          allow_unicode=True, width=1 << 30)
    return text


def to_json(data: Any) -> str:
    return json.dumps(data, indent=4, ensure_ascii=False)


def as_list(items: list[Obj], resource_version: str = "") -> Obj:
    """kubectl's wrapper for several objects: ``apiVersion: v1, kind: List``."""
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": resource_version}}


# --- jsonpath / custom-columns ----------------------------------------------------------------------------

def without_managed_fields(obj: Any) -> Any:
    """An object's JSON form without metadata.managedFields: what kubectl's -o yaml|json print by default."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict) or "managedFields" not in meta:
        return obj
    return {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


BUILTIN_FORMATS = ("wide", "yaml", "json", "name")
TEMPLATE_FORMATS = ("jsonpath", "jsonpath-file", "custom-columns", "custom-columns-file")


def _read_template(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        reason = (exc.strerror or str(exc))
        raise CliError(f"error reading {what} {path}, open {path}: {reason[:1].lower()}{reason[1:]}") from exc


def _compile(template: str) -> JSONPath:
    try:
        return JSONPath(template)
    except ParseError as exc:
        raise CliError(f"error parsing jsonpath {template}, {exc}") from exc


@dataclass(frozen=True)
class JSONPathPrinter:
    """``-o jsonpath=TEMPLATE``: the template run over the object (or the List of several)."""

    path: JSONPath
    allow_missing_keys: bool = True

    def text(self, data: Any) -> str:
        try:
            return self.path.execute(data, self.allow_missing_keys)
        except ExecuteError as exc:
            raise CliError(f"error executing jsonpath {json.dumps(self.path.template)}: "
                           f"Error executing template: {exc}") from exc


@dataclass(frozen=True)
class Column:
    header: str
    path: JSONPath


@dataclass(frozen=True)
class CustomColumnsPrinter:
    """``-o custom-columns=HEADER:PATH,...``: one row per object, ``<none>`` where a path finds nothing."""

    columns: tuple[Column, ...]
    no_headers: bool = False

    def headers(self) -> list[str]:
        return [c.header for c in self.columns]

    def row(self, obj: Obj) -> list[str]:
        cells = []
        for column in self.columns:
            try:
                groups = column.path.find(obj, allow_missing=True)
            except ExecuteError as exc:
                raise CliError(str(exc)) from exc
            if not groups or not groups[0]:
                cells.append(NONE)
            else:
                cells.append(",".join(go_sprint(v) for group in groups for v in group))
        return cells

    def render(self, objs: Iterable[Obj]) -> list[str]:
        rows = [self.row(o) for o in objs]
        if not self.no_headers:
            rows.insert(0, self.headers())
        return format_table(rows)


def _column(header: str, path: str) -> Column:
    try:
        template = relaxed_expression(path)
    except ParseError as exc:
        raise CliError(str(exc)) from exc
    return Column(header, _compile(template))


def custom_columns_from_spec(spec: str, no_headers: bool = False) -> CustomColumnsPrinter:
    """``NAME:.metadata.name,NODE:.spec.nodeName`` (split at commas, each at its first colon)."""
    columns = []
    for part in spec.split(","):
        header, colon, path = part.partition(":")
        if not colon:
            raise CliError(f"unexpected custom-columns spec: {part}, expected <header>:<json-path-expr>")
        columns.append(_column(header, path))
    return CustomColumnsPrinter(tuple(columns), no_headers)


def custom_columns_from_template(text: str, no_headers: bool = False) -> CustomColumnsPrinter:
    """A custom-columns file: a line of headers, then a line of paths, both whitespace-separated."""
    lines = text.splitlines()
    expected = "Expected format is one line of space separated headers, one line of space separated column specs."
    if not lines:
        raise CliError(f"invalid template, missing header line. {expected}")
    if len(lines) < 2:
        raise CliError(f"invalid template, missing spec line. {expected}")
    headers, paths = lines[0].split(), lines[1].split()
    if len(headers) != len(paths):
        raise CliError(f"number of headers ({len(headers)}) and field specifications ({len(paths)}) don't match")
    return CustomColumnsPrinter(tuple(_column(h, p) for h, p in zip(headers, paths, strict=True)), no_headers)


TemplatePrinter = JSONPathPrinter | CustomColumnsPrinter


def template_printer(output: str, allow_missing_keys: bool = True,
                     no_headers: bool = False) -> TemplatePrinter | None:
    """The printer for a jsonpath/custom-columns ``-o`` value; None for the built-in formats.

    Anything else is kubectl's "unable to match a printer" error listing every format.
    """
    if output in ("", *BUILTIN_FORMATS):
        return None
    fmt, _, value = output.partition("=")
    if fmt not in TEMPLATE_FORMATS:
        allowed = ",".join(sorted(BUILTIN_FORMATS + TEMPLATE_FORMATS))
        raise CliError(f'unable to match a printer suitable for the output format "{output}", '
                       f"allowed formats are: {allowed}")
    if fmt.startswith("jsonpath"):
        if not value:
            raise CliError("template format specified but no template given")
        template = _read_template(value, "--template") if fmt == "jsonpath-file" else value
        return JSONPathPrinter(_compile(template), allow_missing_keys)
    if not value:
        raise CliError("custom-columns format specified but no custom columns given")
    if fmt == "custom-columns-file":
        return custom_columns_from_template(_read_template(value, "template"), no_headers)
    return custom_columns_from_spec(value, no_headers)
