"""``kubelite get``: tables per kind, -o yaml|json|name|wide|jsonpath|custom-columns, and -w.

Listing happens first (names → get, otherwise list with selectors); then the
results print as one table per kind. With -w the rows keep coming from a
watch that starts at the list's resourceVersion and, through retry_watch,
resumes across API server restarts, so a watching user misses no change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubelite.cli.clientset import Session, close_iterator
from kubelite.cli.errors import CliError, format_status_error
from kubelite.cli.printers import (
    CustomColumnsPrinter,
    JSONPathPrinter,
    TableOptions,
    TablePrinter,
    TemplatePrinter,
    as_list,
    template_printer,
    to_json,
    to_yaml,
    without_managed_fields,
)
from kubelite.cli.resources import Target, kind_ref, namespace_for, object_ref, parse_targets, to_dict
from kubelite.machinery.errors import StatusError
from kubelite.machinery.scheme import ResourceType, Scheme
from kubelite.machinery.tables import TABLES, Obj


def output_printer(opts: GetOptions) -> TemplatePrinter | None:
    """The jsonpath/custom-columns printer -o asks for (None for the built-in formats); bad -o is a CliError."""
    return template_printer(opts.output, opts.allow_missing_template_keys, opts.no_headers)


def text_lines(text: str) -> list[str]:
    """jsonpath output as lines for Streams.out; a final newline is implied (kubectl would print none)."""
    if not text:
        return []
    return text.removesuffix("\n").split("\n")


@dataclass
class GetOptions:
    args: tuple[str, ...]
    output: str = ""
    all_namespaces: bool = False
    label_selector: str = ""
    field_selector: str = ""
    show_labels: bool = False
    label_columns: tuple[str, ...] = ()
    no_headers: bool = False
    watch: bool = False
    watch_only: bool = False
    ignore_not_found: bool = False
    allow_missing_template_keys: bool = True
    # -o yaml|json keep metadata.managedFields only when asked, as kubectl prints them.
    show_managed_fields: bool = False


@dataclass
class Fetched:
    """What one kind contributed: its objects (JSON form) and the list's resourceVersion."""

    target: Target
    items: list[Obj] = field(default_factory=list)
    resource_version: str = ""


def no_resources_message(rt: ResourceType | None, namespace: str, all_namespaces: bool) -> str:
    if all_namespaces or (rt is not None and not rt.namespaced):
        return "No resources found"
    return f"No resources found in {namespace} namespace."


async def fetch(session: Session, target: Target, namespace: str, opts: GetOptions) -> tuple[Fetched, int]:
    """Gets the named objects or lists the kind; NotFound for a name is printed, counted, and skipped."""
    rt = target.rt
    ns = namespace_for(rt, namespace)
    result = Fetched(target)
    failures = 0
    if target.names:
        for name in target.names:
            try:
                obj = await session.client.get(rt.message, name, ns)
            except StatusError as exc:
                if exc.reason == "NotFound" and opts.ignore_not_found:
                    continue
                session.streams.err(format_status_error(exc, server=session.server))
                failures += 1
                continue
            result.items.append(to_dict(obj))
    else:
        listed = await session.client.list(rt.message, ns, label_selector=opts.label_selector,
                                           field_selector=opts.field_selector)
        result.items = [to_dict(o) for o in listed.items]
        result.resource_version = str(listed.resource_version or "")
    return result, failures


def _with_type(obj: Obj, rt: ResourceType) -> Obj:
    """Items of a list may come without apiVersion/kind; -o yaml should show them like kubectl."""
    if not obj.get("apiVersion") or not obj.get("kind"):
        obj = {"apiVersion": rt.api_version, "kind": rt.kind, **obj}
    return obj


def _printed(obj: Obj, rt: ResourceType, opts: GetOptions) -> Obj:
    """An object as -o yaml|json prints it: typed, and without managedFields unless --show-managed-fields."""
    obj = _with_type(obj, rt)
    return obj if opts.show_managed_fields else without_managed_fields(obj)


def table_options(opts: GetOptions, prefix: str = "") -> TableOptions:
    return TableOptions(wide=opts.output == "wide", all_namespaces=opts.all_namespaces,
                        show_labels=opts.show_labels, label_columns=opts.label_columns,
                        no_headers=opts.no_headers, name_prefix=prefix)


def render(fetched: list[Fetched], opts: GetOptions, single_object: bool,
           printer: TemplatePrinter | None = None) -> list[str]:
    """The lines ``get`` prints for what it fetched, in the requested format (``printer``: see output_printer)."""
    if isinstance(printer, JSONPathPrinter):
        # Like -o json: the object itself, or a List of them, with apiVersion/kind filled in.
        objs = [_with_type(o, f.target.rt) for f in fetched for o in f.items]
        return text_lines(printer.text(objs[0] if single_object and len(objs) == 1 else as_list(objs)))
    if isinstance(printer, CustomColumnsPrinter):
        return printer.render(_with_type(o, f.target.rt) for f in fetched for o in f.items)
    if opts.output in ("yaml", "json"):
        objs = [_printed(o, f.target.rt, opts) for f in fetched for o in f.items]
        data: Any = objs[0] if single_object and len(objs) == 1 else as_list(objs)
        text = to_yaml(data) if opts.output == "yaml" else to_json(data)
        return text.rstrip("\n").split("\n")
    if opts.output == "name":
        return [object_ref(f.target.rt, str(o.get("metadata", {}).get("name", ""))) for f in fetched for o in f.items]
    lines: list[str] = []
    several_kinds = len(fetched) > 1
    for f in fetched:
        if not f.items:
            continue
        prefix = kind_ref(f.target.rt) + "/" if several_kinds else ""
        table = TablePrinter(TABLES.lookup(f.target.rt.group, f.target.rt.kind), table_options(opts, prefix))
        if lines:
            lines.append("")
        lines.extend(table.render(f.items))
    return lines


async def run_get(session: Session, opts: GetOptions, scheme: Scheme) -> int:
    printer = output_printer(opts)
    targets = parse_targets(scheme, opts.args, "get")
    named = any(t.names for t in targets)
    if named and opts.all_namespaces:
        raise CliError("a resource cannot be retrieved by name across all namespaces")
    if opts.watch or opts.watch_only:
        if len(targets) != 1:
            raise CliError("you may only specify a single resource type")
    namespace = "" if opts.all_namespaces else session.namespace

    fetched: list[Fetched] = []
    failures = 0
    for target in targets:
        result, failed = await fetch(session, target, namespace, opts)
        fetched.append(result)
        failures += failed

    if opts.watch or opts.watch_only:
        return await watch(session, fetched[0], namespace, opts, failures, printer)

    total = sum(len(f.items) for f in fetched)
    single_object = len(targets) == 1 and len(targets[0].names) == 1
    if total == 0 and not named:
        if opts.output in ("yaml", "json") or printer is not None:
            # kubectl's generic printers print the empty List (a custom-columns header, say).
            for line in render(fetched, opts, single_object=False, printer=printer):
                session.streams.out(line)
        elif not opts.ignore_not_found:
            rt = targets[0].rt if len(targets) == 1 else None
            session.streams.err(no_resources_message(rt, namespace, opts.all_namespaces))
        return 0
    if total:
        for line in render(fetched, opts, single_object, printer):
            session.streams.out(line)
    return 1 if failures else 0


class StreamingTable:
    """Keeps watched rows aligned with what was printed before; columns only ever widen."""

    def __init__(self, printer: TablePrinter) -> None:
        self.printer = printer
        self.widths: list[int] = []

    def lines(self, rows: list[list[str]]) -> list[str]:
        for row in rows:
            for i, cell in enumerate(row[:-1]):
                need = max(6, len(cell) + 3)
                if i >= len(self.widths):
                    self.widths.append(need)
                else:
                    self.widths[i] = max(self.widths[i], need)
        return ["".join(c.ljust(self.widths[i]) for i, c in enumerate(r[:-1])) + (r[-1] if r else "") for r in rows]


async def watch(session: Session, first: Fetched, namespace: str, opts: GetOptions, failures: int,
                template: TemplatePrinter | None = None) -> int:
    """Prints the initial state (unless --watch-only), then one row/document per event until interrupted."""
    rt = first.target.rt
    printer = TablePrinter(TABLES.lookup(rt.group, rt.kind), table_options(opts))
    table = StreamingTable(printer)
    printed_header = False

    def emit(objs: list[Obj]) -> None:
        nonlocal printed_header
        if isinstance(template, JSONPathPrinter):
            for obj in objs:
                for line in text_lines(template.text(_with_type(obj, rt))):
                    session.streams.out(line)
            return
        if isinstance(template, CustomColumnsPrinter):
            rows = [template.row(_with_type(o, rt)) for o in objs]
            if not printed_header and not opts.no_headers:
                rows.insert(0, template.headers())
            printed_header = True
            for line in table.lines(rows):
                session.streams.out(line)
            return
        if opts.output in ("yaml", "json"):
            for obj in objs:
                obj = _printed(obj, rt, opts)
                if opts.output == "yaml":
                    session.streams.out("---")
                    session.streams.out(to_yaml(obj).rstrip("\n"))
                else:
                    session.streams.out(to_json(obj))
            return
        if opts.output == "name":
            for obj in objs:
                session.streams.out(object_ref(rt, str(obj.get("metadata", {}).get("name", ""))))
            return
        printer.now = datetime.now(UTC)
        rows = [printer.row(o) for o in objs]
        if not printed_header and not opts.no_headers:
            rows.insert(0, printer.headers())
        printed_header = True
        for line in table.lines(rows):
            session.streams.out(line)

    if not opts.watch_only:
        if first.items:
            emit(first.items)
        elif not first.target.names:
            session.streams.err(no_resources_message(rt, namespace, opts.all_namespaces))

    names = set(first.target.names)
    field_selector = opts.field_selector
    if len(names) == 1:
        only = f"metadata.name={next(iter(names))}"
        field_selector = f"{field_selector},{only}" if field_selector else only
    resource_version = first.resource_version
    if not resource_version:
        # Named gets carry no list resourceVersion: list once to learn where "now" is.
        listed = await session.client.list(rt.message, namespace_for(rt, namespace),
                                           label_selector=opts.label_selector, field_selector=field_selector)
        resource_version = str(listed.resource_version or "")
    stream = session.watch(rt.message, namespace_for(rt, namespace), opts.label_selector, field_selector,
                           resource_version)
    try:
        async for event in stream:
            if event.type in ("BOOKMARK", "ERROR"):
                continue
            obj = to_dict(event.object)
            if names and str(obj.get("metadata", {}).get("name", "")) not in names:
                continue
            emit([obj])
    finally:
        await close_iterator(stream)
    return 1 if failures else 0

