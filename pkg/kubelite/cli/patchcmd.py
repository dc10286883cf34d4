"""``kubelite patch``: strategic (default), merge or JSON patches, given as JSON or YAML.

kubectl reports ``patched (no change)`` when the patch left the object as it
was; the object is read first so the resourceVersion before and after can
tell the two apart without diffing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from kubelite.cli.apply import Printer, check_dry_run
from kubelite.cli.clientset import Session
from kubelite.cli.edit import read_text
from kubelite.cli.errors import CliError, format_status_error
from kubelite.cli.manifests import apply_namespace, read_manifests
from kubelite.cli.resources import meta, namespace_for, object_ref, parse_targets
from kubelite.machinery.errors import StatusError
from kubelite.machinery.patch import PATCH_TYPES
from kubelite.machinery.scheme import ResourceType, Scheme


@dataclass
class PatchOptions:
    args: tuple[str, ...] = ()
    patch: str = ""
    patch_file: str = ""
    patch_type: str = "strategic"
    filenames: tuple[str, ...] = ()
    subresource: str = ""
    dry_run: str = "none"
    output: str = ""


def parse_patch(text: str, patch_type: str) -> Any:
    """JSON first, YAML as kubectl also accepts it; a JSON patch must be a list, the others an object."""
    try:
        body = json.loads(text)
    except ValueError:
        try:
            body = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CliError(f'unable to parse "{text}": {exc}') from None
    if patch_type == "json":
        if not isinstance(body, list):
            raise CliError(f'unable to parse "{text}": a json patch must be a list of operations')
    elif not isinstance(body, dict):
        raise CliError(f'unable to parse "{text}": a {patch_type} patch must be an object')
    return body


async def run_patch(session: Session, opts: PatchOptions, scheme: Scheme,
                    stdin: Callable[[], str] | None = None) -> int:
    if opts.patch_type not in PATCH_TYPES:
        raise CliError(f'--type must be one of [{" ".join(sorted(PATCH_TYPES))}], not "{opts.patch_type}"')
    dry_run = check_dry_run(opts.dry_run)
    if opts.patch and opts.patch_file:
        raise CliError("--patch and --patch-file are mutually exclusive")
    text = opts.patch
    if opts.patch_file:
        try:
            text = read_text(opts.patch_file)
        except OSError as exc:
            raise CliError(f"unable to read patch file {opts.patch_file}: {exc.strerror or exc}") from exc
    if not text:
        raise CliError("must specify --patch or --patch-file containing the contents of the patch")
    body = parse_patch(text, opts.patch_type)
    if opts.subresource not in ("", "status"):
        raise CliError(f'invalid subresource value: "{opts.subresource}". Must be one of [status]')
    printer = Printer(session, opts.output, dry_run)

    objects: list[tuple[ResourceType, str, str]] = []
    if opts.filenames:
        manifests = read_manifests(opts.filenames, False, scheme, stdin, verb="patch")
        apply_namespace(manifests, session.namespace, session.namespace_explicit)
        objects = [(m.rt, namespace_for(m.rt, m.namespace), m.name) for m in manifests]
    else:
        if not opts.args:
            raise CliError("You must provide one or more resources by argument or filename.")
        for t in parse_targets(scheme, opts.args, "patch"):
            if not t.names:
                raise CliError("resource(s) were provided, but no name was specified")
            objects.extend((t.rt, namespace_for(t.rt, session.namespace), n) for n in t.names)

    failures = 0
    for rt, ns, name in objects:
        try:
            before = await session.client.get(rt.message, name, ns)
            if dry_run == "client":
                printer.outcome(object_ref(rt, name), "patched", before)
                continue
            after = await session.client.patch(rt.message, name, ns, body, patch_type=PATCH_TYPES[opts.patch_type],
                                               subresource=opts.subresource, dry_run=dry_run == "server")
        except StatusError as exc:
            session.streams.err(format_status_error(exc, server=session.server))
            failures += 1
            continue
        changed = str(meta(after).resource_version) != str(meta(before).resource_version)
        printer.outcome(object_ref(rt, name), "patched" if changed or dry_run == "server" else "patched (no change)",
                        after)
    printer.flush()
    return 1 if failures else 0
