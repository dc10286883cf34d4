"""``kubelite delete``: by name, by file, by selector or --all, and waiting until objects are gone.

Like kubectl, delete waits by default: an object with finalizers (or a
foreground cascade) only carries a deletionTimestamp after the call, and a
script that deletes then re-creates must not race it. The wait is a watch
from the resourceVersion the delete returned, so it cannot miss the final
DELETED event; a replacement with the same name but a new uid also counts
as gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubelite.cli.apply import check_dry_run, dry_run_suffix
from kubelite.cli.clientset import Session, close_iterator
from kubelite.cli.errors import CliError, ExitError, format_cli_error, format_status_error
from kubelite.cli.manifests import apply_namespace, read_manifests
from kubelite.cli.resources import kind_ref, meta, namespace_for, object_ref, parse_targets
from kubelite.machinery.errors import StatusError
from kubelite.machinery.scheme import ResourceType, Scheme

CASCADE = {"background": "Background", "foreground": "Foreground", "orphan": "Orphan",
           # kubectl's deprecated boolean spellings
           "true": "Background", "false": "Orphan"}


@dataclass
class DeleteOptions:
    args: tuple[str, ...] = ()
    filenames: tuple[str, ...] = ()
    recursive: bool = False
    label_selector: str = ""
    field_selector: str = ""
    all: bool = False
    all_namespaces: bool = False
    ignore_not_found: bool = False
    wait: bool = True
    timeout: float = 0.0
    cascade: str = "background"
    grace_period: int = -1
    now: bool = False
    force: bool = False
    dry_run: str = "none"
    output: str = ""


@dataclass(frozen=True)
class Victim:
    rt: ResourceType
    namespace: str
    name: str


def propagation_policy(cascade: str) -> str:
    try:
        return CASCADE[cascade.lower()]
    except KeyError:
        raise CliError(f'invalid cascade value ({cascade}). Must be "background", "foreground", or "orphan".') \
            from None


def grace_period_seconds(opts: DeleteOptions) -> int | None:
    """kubectl's rules: --now is 1; 0 only with --force (else 1, so nothing is force-deleted by accident)."""
    if opts.now:
        if opts.grace_period >= 0:
            raise CliError("--now and --grace-period cannot be specified together")
        return 1
    if opts.force:
        if opts.grace_period > 0:
            raise CliError("--force and --grace-period greater than 0 cannot be specified together")
        return 0
    if opts.grace_period == 0:
        return 1
    return opts.grace_period if opts.grace_period > 0 else None


async def collect(session: Session, opts: DeleteOptions, scheme: Scheme,
                  stdin: Callable[[], str] | None) -> list[Victim]:
    """The objects to delete; listing happens now so that -l/--all act on a snapshot."""
    if opts.filenames:
        if opts.args:
            raise CliError("cannot specify both resources as arguments and -f")
        manifests = read_manifests(opts.filenames, opts.recursive, scheme, stdin, verb="delete")
        apply_namespace(manifests, session.namespace, session.namespace_explicit)
        return [Victim(m.rt, namespace_for(m.rt, m.namespace), m.name) for m in manifests]
    if not opts.args:
        raise CliError("You must provide one or more resources by argument or filename.\n"
                       "Example resource specifications include:\n   '-f rsrc.yaml'\n   '--filename=rsrc.json'\n"
                       "   '<resource> <name>'\n   '<resource>'")
    targets = parse_targets(scheme, opts.args, "delete")
    selecting = opts.all or bool(opts.label_selector) or bool(opts.field_selector)
    namespace = "" if opts.all_namespaces else session.namespace
    victims: list[Victim] = []
    for t in targets:
        if t.names:
            if opts.all or opts.label_selector:
                raise CliError("name cannot be provided when a selector is specified")
            victims.extend(Victim(t.rt, namespace_for(t.rt, namespace), n) for n in t.names)
            continue
        if not selecting:
            raise CliError("resource(s) were provided, but no name was specified")
        listed = await session.client.list(t.rt.message, namespace_for(t.rt, namespace),
                                           label_selector=opts.label_selector, field_selector=opts.field_selector)
        for obj in listed.items:
            md = meta(obj)
            victims.append(Victim(t.rt, str(md.namespace), str(md.name)))
    return victims


async def run_delete(session: Session, opts: DeleteOptions, scheme: Scheme,
                     stdin: Callable[[], str] | None = None) -> int:
    policy = propagation_policy(opts.cascade)
    grace = grace_period_seconds(opts)
    dry_run = check_dry_run(opts.dry_run)
    if opts.output not in ("", "name"):
        raise CliError(f'unable to match a printer suitable for the output format "{opts.output}", '
                       "allowed formats are: name")
    victims = await collect(session, opts, scheme, stdin)
    if not victims:
        session.streams.err("No resources found")
        return 0
    if grace == 0:
        session.streams.err("Warning: Immediate deletion does not wait for confirmation that the running "
                            "resource has been terminated. The resource may continue to run on the cluster "
                            "indefinitely.")
    suffix = dry_run_suffix(dry_run)
    word = "force deleted" if grace == 0 else "deleted"
    failures = 0
    waiting: list[tuple[Victim, Any]] = []
    for v in victims:
        try:
            if dry_run == "client":
                await session.client.get(v.rt.message, v.name, v.namespace)
                result = None
            else:
                result = await session.client.delete(v.rt.message, v.name, v.namespace, propagation_policy=policy,
                                                     grace_period_seconds=grace,
                                                     dry_run=dry_run == "server")
        except StatusError as exc:
            if exc.reason == "NotFound" and opts.ignore_not_found:
                continue
            session.streams.err(format_status_error(exc, server=session.server))
            failures += 1
            continue
        if opts.output == "name":
            session.streams.out(object_ref(v.rt, v.name))
        else:
            session.streams.out(f'{kind_ref(v.rt)} "{v.name}" {word}{suffix}')
        if result is not None and not result.deleted and dry_run == "none":
            waiting.append((v, result.object))

    if opts.wait and waiting:
        try:
            async with asyncio.timeout(opts.timeout if opts.timeout > 0 else None):
                for v, obj in waiting:
                    await wait_for_deletion(session, v, obj)
        except TimeoutError:
            for v, _ in waiting:
                session.streams.err(format_cli_error(
                    f"timed out waiting for the condition on {v.rt.group_resource}/{v.name}"))
            raise ExitError(1) from None
    return 1 if failures else 0


async def wait_for_deletion(session: Session, v: Victim, last: Any) -> None:
    """Returns once the object (this uid) no longer exists."""
    md = meta(last)
    uid, rv = str(md.uid), str(md.resource_version)
    if not rv:
        try:
            current = await session.client.get(v.rt.message, v.name, v.namespace)
        except StatusError as exc:
            if exc.reason == "NotFound":
                return
            raise
        cmd = meta(current)
        if uid and str(cmd.uid) != uid:
            return
        uid, rv = str(cmd.uid), str(cmd.resource_version)
    stream = session.watch(v.rt.message, v.namespace, "", f"metadata.name={v.name}", rv)
    try:
        async for event in stream:
            emd = meta(event.object)
            if str(emd.name) != v.name:
                continue
            if event.type == "DELETED" and (not uid or str(emd.uid) == uid):
                return
            if event.type in ("ADDED", "MODIFIED") and uid and str(emd.uid) != uid:
                return
    finally:
        await close_iterator(stream)
    # The stream ended without a verdict: ask directly.
    try:
        current = await session.client.get(v.rt.message, v.name, v.namespace)
    except StatusError as exc:
        if exc.reason == "NotFound":
            return
        raise
    if uid and str(meta(current).uid) != uid:
        return
    raise CliError(f"the watch for {v.rt.group_resource}/{v.name} ended before the object was deleted")
