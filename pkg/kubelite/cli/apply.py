"""``apply``, ``create`` and ``replace`` from manifests.

apply is kubectl's client-side apply: the manifest as applied is remembered
in the ``kubectl.kubernetes.io/last-applied-configuration`` annotation, and
the next apply sends a strategic merge patch computed three ways (last
applied, new manifest, live object). Fields the user dropped from the
manifest are removed; fields set by others (controllers, defaults, ``kubectl
scale``) are left alone; an empty patch means ``unchanged`` and nothing is sent.

The manifest is normalized through decode → encode before it is compared or
stored, so that ``targetPort: "80"`` vs ``80`` or a quantity's spelling never
reads as a change and re-applying a file is idempotent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from kubelite.cli.clientset import Session
from kubelite.cli.errors import CliError, format_status_error
from kubelite.cli.manifests import Manifest, apply_namespace, read_manifests
from kubelite.cli.printers import as_list, to_json, to_yaml, without_managed_fields
from kubelite.cli.resources import kind_ref, meta, namespace_for, object_ref, to_dict
from kubelite.machinery.errors import StatusError
from kubelite.machinery.patch import LAST_APPLIED_ANNOTATION as LAST_APPLIED
from kubelite.machinery.patch import STRATEGIC_MERGE_PATCH
from kubelite.machinery.scheme import Scheme

DRY_RUN_VALUES = ("none", "client", "server")


def check_dry_run(value: str) -> str:
    value = value or "none"
    if value not in DRY_RUN_VALUES:
        raise CliError(f'Invalid dry-run value ({value}). Must be "none", "server", or "client".')
    return value


def dry_run_suffix(dry_run: str) -> str:
    return {"client": " (dry run)", "server": " (server dry run)"}.get(dry_run, "")


@dataclass
class ManifestOptions:
    filenames: tuple[str, ...]
    recursive: bool = False
    dry_run: str = "none"
    output: str = ""
    save_config: bool = False
    # Server-side apply (kubectl apply --server-side): the server merges and tracks field ownership.
    server_side: bool = False
    force_conflicts: bool = False
    field_manager: str = ""


def last_applied_text(obj: dict[str, Any]) -> str:
    """The annotation's value: compact JSON with sorted keys, like kubectl writes it."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def applied_form(m: Manifest) -> dict[str, Any]:
    """The normalized manifest without its own last-applied annotation."""
    data = to_dict(m.obj)
    md = data.get("metadata") or {}
    annotations = dict(md.get("annotations") or {})
    annotations.pop(LAST_APPLIED, None)
    if annotations:
        md["annotations"] = annotations
    else:
        md.pop("annotations", None)
    data["metadata"] = md
    return data


def annotated_copy(m: Manifest, text: str) -> Message:
    """A copy of the manifest's object carrying ``text`` as its last-applied annotation."""
    obj = type(m.obj)()
    obj.CopyFrom(m.obj)
    meta(obj).annotations[LAST_APPLIED] = text
    return obj


def with_last_applied(data: dict[str, Any], text: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(data))
    md = out.setdefault("metadata", {})
    md.setdefault("annotations", {})[LAST_APPLIED] = text
    return out


class Printer:
    """Collects per-object results for -o name|yaml|json, or prints kubectl's one-line outcome."""

    def __init__(self, session: Session, output: str, dry_run: str) -> None:
        if output not in ("", "name", "yaml", "json"):
            raise CliError(f'unable to match a printer suitable for the output format "{output}", '
                           "allowed formats are: json,name,yaml")
        self.session = session
        self.output = output
        self.suffix = dry_run_suffix(dry_run)
        self.objects: list[dict[str, Any]] = []

    def outcome(self, ref: str, word: str, obj: Any = None) -> None:
        if self.output == "name":
            self.session.streams.out(ref)
        elif self.output in ("yaml", "json"):
            if obj is not None:
                self.objects.append(without_managed_fields(obj if isinstance(obj, dict) else to_dict(obj)))
        else:
            self.session.streams.out(f"{ref} {word}{self.suffix}")

    def flush(self) -> None:
        if not self.objects:
            return
        data: Any = self.objects[0] if len(self.objects) == 1 else as_list(self.objects)
        text = to_yaml(data) if self.output == "yaml" else to_json(data)
        self.session.streams.out(text.rstrip("\n"))


def _load(session: Session, opts: ManifestOptions, scheme: Scheme, stdin: Callable[[], str] | None,
          verb: str) -> list[Manifest]:
    manifests = read_manifests(opts.filenames, opts.recursive, scheme, stdin, verb=verb)
    apply_namespace(manifests, session.namespace, session.namespace_explicit)
    return manifests


def _check_names(manifests: list[Manifest], verb: str) -> None:
    """Objects without a name cannot be applied or replaced; caught before anything is sent."""
    problems = []
    for m in manifests:
        if not m.name:
            if meta(m.obj).generate_name and verb == "apply":
                problems.append(f'error when {verb}ing "{m.source}": cannot use generate name with apply')
            else:
                problems.append(f'error when {verb}ing "{m.source}": resource name may not be empty')
    if problems:
        raise CliError("\nerror: ".join(problems))


async def run_apply(session: Session, opts: ManifestOptions, scheme: Scheme,
                    stdin: Callable[[], str] | None = None) -> int:
    dry_run = check_dry_run(opts.dry_run)
    printer = Printer(session, opts.output, dry_run)
    manifests = _load(session, opts, scheme, stdin, "apply")
    _check_names(manifests, "apply")
    failures = 0
    if opts.force_conflicts and not opts.server_side:
        raise CliError("--force-conflicts only works with --server-side")
    for m in manifests:
        try:
            if opts.server_side:
                word, result = await apply_server_side(session, m, dry_run, opts)
            else:
                word, result = await apply_one(session, m, dry_run)
        except StatusError as exc:
            session.streams.err(format_status_error(exc, server=session.server))
            failures += 1
            continue
        printer.outcome(object_ref(m.rt, m.name), word, result)
    printer.flush()
    return 1 if failures else 0


async def apply_server_side(session: Session, m: Manifest, dry_run: str, opts: ManifestOptions,
                            ) -> tuple[str, Any]:
    """One object through server-side apply; kubectl prints "serverside-applied" whatever happened."""
    intent = dict(m.data)
    intent_meta = dict(intent.get("metadata") or {})
    if m.rt.namespaced:
        intent_meta["namespace"] = namespace_for(m.rt, m.namespace)
    intent["metadata"] = intent_meta
    if dry_run == "client":
        return "serverside-applied", m.obj
    try:
        result = await session.client.apply(intent, field_manager=opts.field_manager or "kubelite",
                                            force=opts.force_conflicts, dry_run=dry_run == "server")
    except StatusError as exc:
        if exc.reason == "Conflict" and exc.causes:
            exc.message = (f'Apply failed with {len(exc.causes)} conflict{"s" if len(exc.causes) != 1 else ""}: '
                           + "; ".join(f"{c.detail}: {c.field}" for c in exc.causes)
                           + "\nPlease review the fields above--they currently have other managers. Here are the "
                             "ways you can resolve this warning:\n* If you intend to manage all of these fields, "
                             "please re-run the apply command with the `--force-conflicts` flag.\n* If you do not "
                             "intend to manage all of the fields, please edit your manifest to remove references "
                             "to the fields that should keep their current managers.")
        else:
            exc.message = f'error when applying "{m.source}": {exc.message}'
        raise
    return "serverside-applied", result


async def apply_one(session: Session, m: Manifest, dry_run: str) -> tuple[str, Any]:
    """Creates or patches one object; returns kubectl's outcome word and the resulting object."""
    from kubelite.machinery.patch import create_three_way_merge_patch

    rt = m.rt
    ns = namespace_for(rt, m.namespace)
    modified = applied_form(m)
    text = last_applied_text(modified)
    try:
        current = await session.client.get(rt.message, m.name, ns)
    except StatusError as exc:
        if exc.reason != "NotFound":
            exc.message = (f'error when retrieving current configuration of {kind_ref(rt)} "{m.name}" '
                           f'from "{m.source}": {exc.message}')
            raise
        current = None

    if current is None:
        obj = annotated_copy(m, text)
        if dry_run == "client":
            return "created", obj
        try:
            created = await session.client.create(obj, dry_run=dry_run == "server")
        except StatusError as exc:
            exc.message = f'error when creating "{m.source}": {exc.message}'
            raise
        return "created", created

    current_data = to_dict(current)
    annotations = (current_data.get("metadata") or {}).get("annotations") or {}
    original: dict[str, Any] | None = None
    if LAST_APPLIED in annotations:
        try:
            loaded = json.loads(annotations[LAST_APPLIED])
            original = loaded if isinstance(loaded, dict) else None
        except ValueError:
            original = None
    else:
        session.streams.err(
            f"Warning: {rt.group_resource}/{m.name} is missing the {LAST_APPLIED} annotation, which "
            "apply uses to know which fields it manages. It will be added now; fields removed from the "
            "manifest before this apply cannot be pruned.")
    patch = create_three_way_merge_patch(original, with_last_applied(modified, text), current_data, rt.message)
    if not patch:
        return "unchanged", current
    if dry_run == "client":
        return "configured", current
    try:
        patched = await session.client.patch(rt.message, m.name, ns, patch, patch_type=STRATEGIC_MERGE_PATCH,
                                              dry_run=dry_run == "server")
    except StatusError as exc:
        exc.message = f'error when applying patch to {kind_ref(rt)} "{m.name}" from "{m.source}": {exc.message}'
        raise
    return "configured", patched


async def run_create(session: Session, opts: ManifestOptions, scheme: Scheme,
                     stdin: Callable[[], str] | None = None) -> int:
    dry_run = check_dry_run(opts.dry_run)
    printer = Printer(session, opts.output, dry_run)
    manifests = _load(session, opts, scheme, stdin, "create")
    failures = 0
    for m in manifests:
        obj = annotated_copy(m, last_applied_text(applied_form(m))) if opts.save_config else m.obj
        if dry_run == "client":
            printer.outcome(object_ref(m.rt, m.name or meta(obj).generate_name), "created", obj)
            continue
        try:
            created = await session.client.create(obj, dry_run=dry_run == "server")
        except StatusError as exc:
            session.streams.err(format_status_error(exc, f'error when creating "{m.source}"', session.server))
            failures += 1
            continue
        printer.outcome(object_ref(m.rt, str(meta(created).name)), "created", created)
    printer.flush()
    return 1 if failures else 0


async def run_replace(session: Session, opts: ManifestOptions, scheme: Scheme,
                      stdin: Callable[[], str] | None = None) -> int:
    dry_run = check_dry_run(opts.dry_run)
    printer = Printer(session, opts.output, dry_run)
    manifests = _load(session, opts, scheme, stdin, "replace")
    _check_names(manifests, "replace")
    failures = 0
    for m in manifests:
        obj = annotated_copy(m, last_applied_text(applied_form(m))) if opts.save_config else m.obj
        try:
            if dry_run == "client":
                # Still check the object exists, as replace would.
                await session.client.get(m.rt.message, m.name, namespace_for(m.rt, m.namespace))
                replaced: Any = obj
            else:
                replaced = await session.client.update(obj, dry_run=dry_run == "server")
        except StatusError as exc:
            session.streams.err(format_status_error(exc, f'error when replacing "{m.source}"', session.server))
            failures += 1
            continue
        printer.outcome(object_ref(m.rt, m.name), "replaced", replaced)
    printer.flush()
    return 1 if failures else 0
