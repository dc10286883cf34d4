"""``label`` and ``annotate``: metadata changes sent as JSON merge patches.

The arguments mix resources and changes the way kubectl's do (``pod web
app=v2 tier-``): ``k=v`` sets, ``k-`` removes, anything else names a
resource and must come first. An existing key is never silently replaced:
without --overwrite a different value is an error, while the same value is
simply "not labeled". Only the keys that change are sent, so a concurrent
writer's other labels survive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kubelite.cli.apply import check_dry_run, dry_run_suffix
from kubelite.cli.clientset import Session
from kubelite.cli.errors import CliError, format_cli_error, format_status_error
from kubelite.cli.resources import meta, namespace_for, object_ref, parse_targets
from kubelite.machinery.errors import StatusError
from kubelite.machinery.patch import MERGE_PATCH
from kubelite.machinery.scheme import ResourceType, Scheme

_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def key_problem(key: str) -> str:
    """Why ``key`` is not a valid label/annotation key ("" when it is): ``[prefix/]name``."""
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return "prefix part must be non-empty"
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return "prefix part must be a lowercase DNS subdomain (e.g. 'example.com')"
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not _NAME.match(name):
        return ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
                "end with an alphanumeric character")
    return ""


def label_value_problem(value: str) -> str:
    if len(value) > 63:
        return "must be no more than 63 characters"
    if value and not _NAME.match(value):
        return ("a valid label value must be an empty string or consist of alphanumeric characters, '-', '_' "
                "or '.', and must start and end with an alphanumeric character")
    return ""


@dataclass
class Changes:
    """What the command line asked for: keys to set and keys to remove."""

    resources: list[str] = field(default_factory=list)
    set: dict[str, str] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)


def parse_changes(args: tuple[str, ...] | list[str], what: str) -> Changes:
    """Splits ``pod web a=1 b-`` into resources and changes, validating keys (and label values)."""
    out = Changes()
    seen_change = False
    for arg in args:
        if "=" in arg:
            key, _, value = arg.partition("=")
            problem = key_problem(key)
            if not problem and what == "label":
                problem = label_value_problem(value)
            if problem:
                raise CliError(f'invalid {what} spec: "{arg}": {problem}')
            if key in out.set and out.set[key] != value:
                raise CliError(f"{what} {key} is given more than once with different values")
            out.set[key] = value
            seen_change = True
        elif arg.endswith("-") and len(arg) > 1 and not arg.startswith("-"):
            key = arg[:-1]
            problem = key_problem(key)
            if problem:
                raise CliError(f'invalid {what} spec: "{arg}": {problem}')
            out.remove.append(key)
            seen_change = True
        else:
            if seen_change:
                raise CliError(f"all resources must be specified before {what} changes: {arg}")
            out.resources.append(arg)
    for key in out.remove:
        if key in out.set:
            raise CliError(f"can not both modify and remove the {what} {key!r} in the same command")
    if not out.set and not out.remove:
        raise CliError(f"at least one {what} update is required")
    return out


@dataclass
class MetaOptions:
    args: tuple[str, ...]
    overwrite: bool = False
    all: bool = False
    all_namespaces: bool = False
    label_selector: str = ""
    field_selector: str = ""
    resource_version: str = ""
    dry_run: str = "none"
    output: str = ""


@dataclass
class _Verb:
    field: str  # "labels" / "annotations"
    what: str  # "label" / "annotation"
    done: str  # "labeled"
    removed: str  # "unlabeled"
    nothing: str  # "not labeled"


LABEL = _Verb("labels", "label", "labeled", "unlabeled", "not labeled")
ANNOTATE = _Verb("annotations", "annotation", "annotated", "annotated", "not annotated")


def plan(current: dict[str, str], changes: Changes, overwrite: bool, verb: _Verb) -> tuple[dict[str, Any], str]:
    """The merge-patch body for one object's map and the outcome word; raises on a refused overwrite."""
    body: dict[str, Any] = {}
    added = False
    for key, value in changes.set.items():
        if key in current:
            if current[key] == value:
                continue
            if not overwrite:
                raise CliError(f"'{key}' already has a value ({current[key]}), and --overwrite is false")
        body[key] = value
        added = True
    removed = False
    for key in changes.remove:
        if key in current:
            body[key] = None
            removed = True
    word = verb.done if added else verb.removed if removed else verb.nothing
    return body, word


async def _targets(session: Session, opts: MetaOptions, scheme: Scheme, resources: list[str]) \
        -> list[tuple[ResourceType, str, str]]:
    targets = parse_targets(scheme, resources, "label")
    namespace = "" if opts.all_namespaces else session.namespace
    out: list[tuple[ResourceType, str, str]] = []
    for t in targets:
        if t.names:
            if opts.all or opts.label_selector:
                raise CliError("name cannot be provided when a selector is specified")
            out.extend((t.rt, namespace_for(t.rt, namespace), n) for n in t.names)
            continue
        if not (opts.all or opts.label_selector or opts.field_selector):
            raise CliError("resource(s) were provided, but no name was specified")
        listed = await session.client.list(t.rt.message, namespace_for(t.rt, namespace),
                                           label_selector=opts.label_selector, field_selector=opts.field_selector)
        out.extend((t.rt, str(meta(o).namespace), str(meta(o).name)) for o in listed.items)
    return out


async def run_meta_update(session: Session, opts: MetaOptions, scheme: Scheme, verb: _Verb) -> int:
    dry_run = check_dry_run(opts.dry_run)
    changes = parse_changes(opts.args, verb.what)
    if not changes.resources:
        raise CliError("one or more resources must be specified as <resource> <name> or <resource>/<name>")
    if opts.output not in ("", "name"):
        raise CliError(f'unable to match a printer suitable for the output format "{opts.output}", '
                       "allowed formats are: name")
    targets = await _targets(session, opts, scheme, changes.resources)
    if not targets:
        session.streams.err("No resources found")
        return 0
    failures = 0
    for rt, ns, name in targets:
        ref = object_ref(rt, name)
        try:
            current = await session.client.get(rt.message, name, ns)
            existing = dict(getattr(meta(current), verb.field))
            body, word = plan(existing, changes, opts.overwrite, verb)
            for key in changes.remove:
                if key not in existing:
                    session.streams.err(f'{verb.what} "{key}" not found.')
            if body or opts.resource_version:
                patch: dict[str, Any] = {"metadata": {verb.field: body}} if body else {"metadata": {}}
                if opts.resource_version:
                    patch["metadata"]["resourceVersion"] = opts.resource_version
                if dry_run != "client":
                    await session.client.patch(rt.message, name, ns, patch, patch_type=MERGE_PATCH,
                                               dry_run=dry_run == "server")
        except CliError as exc:
            session.streams.err(format_cli_error(exc))
            failures += 1
            continue
        except StatusError as exc:
            session.streams.err(format_status_error(exc, server=session.server))
            failures += 1
            continue
        session.streams.out(ref if opts.output == "name" else f"{ref} {word}{dry_run_suffix(dry_run)}")
    return 1 if failures else 0
