"""``rollout status|history|undo|restart|pause|resume``: kubectl's rollout verbs for Deployments.

A rollout is the Deployment controller's business; these verbs only read
what it reports and write the few fields a user owns:

* ``status`` follows the Deployment through a watch (no polling) and says
  what kubectl says, in the same order of checks: the spec not yet observed,
  the progress deadline exceeded (an error), new replicas not all updated,
  old replicas pending termination, updated replicas not all available, done.
  Beyond kubectl it also watches the new ReplicaSet's pods and gives up as
  soon as one cannot pull its image or is crash-looping, naming the pod and
  the reason: waiting out a ten-minute deadline for ErrImagePull tells the
  user nothing new.
* ``history`` lists the revisions the ReplicaSets carry; ``--revision N``
  shows that revision's pod template.
* ``undo`` is client-side, as in kubectl since apps/v1 dropped rollbackTo:
  the chosen ReplicaSet's template (minus its pod-template-hash label) and
  annotations are written into the Deployment, whose controller then finds
  that ReplicaSet again and gives it the next revision number.
* ``restart`` stamps ``kubectl.kubernetes.io/restartedAt`` on the pod
  template, which is a new template and so a rolling replacement of every pod.
* ``pause``/``resume`` set ``spec.paused``.

The decisions are pure functions of the objects (``status_message``,
``choose_rollback``, ``rollback_deployment``, ``pod_failure``, ...) so that
unit tests check them without a server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.cli.apply import check_dry_run, dry_run_suffix
from kubelite.cli.clientset import Session, close_iterator
from kubelite.cli.describe import DescribeWriter, pod_template_section
from kubelite.cli.errors import CliError, format_cli_error, format_status_error
from kubelite.cli.printers import as_list, to_json, to_yaml
from kubelite.cli.resources import object_ref, to_dict
from kubelite.cli.workloads import ObjectRef, Selection, resolve_objects
from kubelite.controllers import deploymentutil as du
from kubelite.machinery.errors import StatusError
from kubelite.machinery.scheme import Scheme
from kubelite.machinery.tables import NONE

CHANGE_CAUSE = "kubernetes.io/change-cause"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
# Annotations that describe the Deployment itself, not a revision: undo keeps the Deployment's own.
_ROLLBACK_KEEPS = frozenset({du.LAST_APPLIED, du.REVISION, du.REVISION_HISTORY, du.DESIRED_REPLICAS,
                             du.MAX_REPLICAS, "deprecated.deployment.rollback.to"})
# Waiting reasons after which a new pod will not become ready by itself.
FATAL_WAITING_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
                                   "CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError",
                                   "RunContainerError"})
# Conflicting writers (the controller writes the Deployment's metadata too) are retried this often.
_UPDATE_ATTEMPTS = 5


class RolloutFailed(CliError):
    """The rollout will not finish by itself (deadline exceeded, pods failing)."""


# -- selecting Deployments ----------------------------------------------------------------


def _only_deployments(refs: list[ObjectRef], what: str) -> list[ObjectRef]:
    for ref in refs:
        if ref.rt.message is not apps.Deployment:
            raise CliError(f"no {what} has been implemented for {ref.rt.kind} (only Deployments roll out here)")
    return refs


async def _deployments(session: Session, scheme: Scheme, sel: Selection, verb: str, what: str,
                       stdin: Callable[[], str] | None = None) -> list[ObjectRef]:
    refs = _only_deployments(await resolve_objects(session, scheme, sel, verb, stdin), what)
    if not refs:
        raise CliError("no objects passed to " + verb)
    return refs


async def owned_replicasets(session: Session, d: apps.Deployment) -> list[apps.ReplicaSet]:
    """The ReplicaSets whose controller is ``d`` (by uid: a namesake's are not ours)."""
    listed = await session.client.list(apps.ReplicaSet, d.metadata.namespace)
    return [rs for rs in listed.items
            if any(r.controller and r.uid == d.metadata.uid for r in rs.metadata.owner_references)]


# -- status ------------------------------------------------------------------------------------


def status_message(d: apps.Deployment, revision: int = 0) -> tuple[str, bool]:
    """(kubectl's line for this state, whether the rollout is done); RolloutFailed past the deadline."""
    name = d.metadata.name
    if revision > 0:
        current = du.revision_of(d)
        if current != revision:
            raise CliError(f"desired revision ({revision}) is different from the running revision ({current})")
    if d.metadata.generation > d.status.observed_generation:
        return "Waiting for deployment spec update to be observed...", False
    cond = du.get_condition(d.status, "Progressing")
    if cond is not None and cond.reason == du.TIMED_OUT:
        raise RolloutFailed(f'deployment "{name}" exceeded its progress deadline')
    replicas = du.replicas_of(d)
    s = d.status
    if s.updated_replicas < replicas:
        return (f'Waiting for deployment "{name}" rollout to finish: {s.updated_replicas} out of {replicas} new '
                "replicas have been updated..."), False
    if s.replicas > s.updated_replicas:
        return (f'Waiting for deployment "{name}" rollout to finish: {s.replicas - s.updated_replicas} old replicas '
                "are pending termination..."), False
    if s.available_replicas < s.updated_replicas:
        return (f'Waiting for deployment "{name}" rollout to finish: {s.available_replicas} of '
                f"{s.updated_replicas} updated replicas are available..."), False
    return f'deployment "{name}" successfully rolled out', True


def new_template_hash(d: apps.Deployment) -> str:
    """The pod-template-hash of the Deployment's current template: its new ReplicaSet's pods carry it."""
    collision = d.status.collision_count if d.status.HasField("collision_count") else None
    return du.compute_hash(d.spec.template, collision)


def pod_failure(pod: core.Pod) -> str:
    """Why ``pod`` will not become ready by itself ("" when nothing says so)."""
    if pod.metadata.HasField("deletion_timestamp"):
        return ""
    for status in [*pod.status.init_container_statuses, *pod.status.container_statuses]:
        waiting = status.state.waiting
        if waiting.reason in FATAL_WAITING_REASONS:
            detail = f": {waiting.message}" if waiting.message else ""
            return f'container "{status.name}": {waiting.reason}{detail}'
    return ""


@dataclass
class StatusOptions:
    selection: Selection
    watch: bool = True
    timeout: float = 0.0  # seconds; 0 = no limit
    revision: int = 0


async def _merged(sources: dict[str, AsyncIterator[Any]]) -> AsyncIterator[tuple[str, Any]]:
    """Events of several watches as one stream of (source, event); the watches end with the consumer."""
    queue: asyncio.Queue[tuple[str, Any] | BaseException] = asyncio.Queue()

    async def pump(name: str, it: AsyncIterator[Any]) -> None:
        try:
            async for event in it:
                await queue.put((name, event))
            await queue.put(CliError(f"the watch of {name} ended"))
        except Exception as exc:  # handed to the consumer, who raises it
            await queue.put(exc)

    tasks = [asyncio.get_running_loop().create_task(pump(name, it), name=f"rollout-status-watch-{name}")
             for name, it in sources.items()]
    try:
        while True:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for it in sources.values():
            with contextlib.suppress(Exception):
                await close_iterator(it)


async def run_status(session: Session, opts: StatusOptions, scheme: Scheme,
                     stdin: Callable[[], str] | None = None) -> int:
    refs = await _deployments(session, scheme, opts.selection, "rollout status", "status viewer", stdin)
    if len(refs) != 1:
        raise CliError("rollout status is only supported on individual resources and resource collections "
                       f"of one object; {len(refs)} were given")
    ref = refs[0]
    client = session.client
    d = await client.get(apps.Deployment, ref.name, ref.namespace)
    message, done = status_message(d, opts.revision)
    session.streams.out(message)
    if done or not opts.watch:
        return 0
    try:
        await asyncio.wait_for(_follow(session, d, opts.revision, message), opts.timeout or None)
    except TimeoutError:
        raise CliError("timed out waiting for the condition") from None
    return 0


async def _follow(session: Session, d: apps.Deployment, revision: int, last: str) -> None:
    """Prints each new status line until the rollout is done; raises when it cannot finish."""
    client, ns, name = session.client, d.metadata.namespace, d.metadata.name
    selector = ",".join(f"{k}={v}" for k, v in sorted(d.spec.selector.match_labels.items()))
    pods_list = await client.list(core.Pod, ns, label_selector=selector)
    pods = {p.metadata.uid: p for p in pods_list.items}
    sources = {
        "deployment": session.watch(apps.Deployment, ns, "", f"metadata.name={name}", d.metadata.resource_version),
        "pods": session.watch(core.Pod, ns, selector, "", pods_list.resource_version),
    }

    def check_pods() -> None:
        if d.metadata.generation > d.status.observed_generation:
            return  # the new template's ReplicaSet may not exist yet
        wanted = new_template_hash(d)
        for pod in sorted(pods.values(), key=lambda p: p.metadata.name):
            if pod.metadata.labels.get(du.POD_TEMPLATE_HASH) != wanted:
                continue
            why = pod_failure(pod)
            if why:
                raise RolloutFailed(f'deployment "{name}" rollout failed: pod "{pod.metadata.name}" {why}')

    check_pods()
    async for source, event in _merged(sources):
        if event.type in ("BOOKMARK", "ERROR"):
            continue
        if source == "pods":
            if event.type == "DELETED":
                pods.pop(event.object.metadata.uid, None)
            else:
                pods[event.object.metadata.uid] = event.object
            check_pods()
            continue
        if event.type == "DELETED":
            raise CliError("object has been deleted")
        d = event.object
        message, done = status_message(d, revision)
        if message != last:  # kubectl repeats a line per event; one per change reads better
            session.streams.out(message)
            last = message
        if done:
            return
        check_pods()


# -- history -----------------------------------------------------------------------------------


def revisions(rss: list[apps.ReplicaSet]) -> dict[int, apps.ReplicaSet]:
    """Revision number → ReplicaSet (a rolled-back-to ReplicaSet answers only to its newest number)."""
    out: dict[int, apps.ReplicaSet] = {}
    for rs in rss:
        number = du.revision_of(rs)
        if number > 0:
            out[number] = rs
    return out


def history_table(by_revision: dict[int, apps.ReplicaSet]) -> list[str]:
    rows = [("REVISION", "CHANGE-CAUSE")]
    for number in sorted(by_revision):
        cause = by_revision[number].metadata.annotations.get(CHANGE_CAUSE, "") or NONE
        rows.append((str(number), cause))
    width = max(len(r[0]) for r in rows) + 2
    return [f"{r[0].ljust(width)}{r[1]}" for r in rows]


def template_lines(template: core.PodTemplateSpec) -> list[str]:
    w = DescribeWriter()
    pod_template_section(w, to_dict(template))
    return w.render()


@dataclass
class HistoryOptions:
    selection: Selection
    revision: int = 0
    output: str = ""


async def run_history(session: Session, opts: HistoryOptions, scheme: Scheme,
                      stdin: Callable[[], str] | None = None) -> int:
    if opts.output not in ("", "yaml", "json"):
        raise CliError(f'unable to match a printer suitable for the output format "{opts.output}", '
                       "allowed formats are: json,yaml")
    if opts.revision < 0:
        raise CliError(f"--revision must be a positive integer: {opts.revision}")
    refs = await _deployments(session, scheme, opts.selection, "rollout history", "history viewer", stdin)
    printed: list[dict[str, Any]] = []
    for ref in refs:
        d = await session.client.get(apps.Deployment, ref.name, ref.namespace)
        by_revision = revisions(await owned_replicasets(session, d))
        if opts.revision:
            rs = by_revision.get(opts.revision)
            if rs is None:
                raise CliError(f"unable to find the specified revision {opts.revision} for "
                               f"{object_ref(ref.rt, ref.name)}")
            if opts.output:
                printed.append(to_dict(rs))
                continue
            session.streams.out(f"{object_ref(ref.rt, ref.name)} with revision #{opts.revision}")
            for line in template_lines(rs.spec.template):
                session.streams.out(line)
            continue
        if opts.output:
            printed.extend(to_dict(by_revision[n]) for n in sorted(by_revision))
            continue
        session.streams.out(object_ref(ref.rt, ref.name))
        if not by_revision:
            session.streams.out("No rollout history found.")
            continue
        for line in history_table(by_revision):
            session.streams.out(line)
        session.streams.out("")
    if opts.output:
        data: Any = printed[0] if len(printed) == 1 and opts.revision else as_list(printed)
        text = to_yaml(data) if opts.output == "yaml" else to_json(data)
        session.streams.out(text.rstrip("\n"))
    return 0


# -- undo --------------------------------------------------------------------------------------


def choose_rollback(d: apps.Deployment, rss: list[apps.ReplicaSet], to_revision: int) -> apps.ReplicaSet:
    """The ReplicaSet to roll back to: revision ``to_revision``, or (0) the one before the newest."""
    if to_revision < 0:
        raise CliError(f"unable to find specified revision {to_revision} in history")
    by_revision = revisions(rss)
    if to_revision > 0:
        rs = by_revision.get(to_revision)
        if rs is None:
            known = ", ".join(str(n) for n in sorted(by_revision)) or "none"
            raise CliError(f"unable to find specified revision {to_revision} in history "
                           f"(deployment {d.metadata.name!r} has revisions: {known})")
        return rs
    numbers = sorted(by_revision)
    if len(numbers) < 2:
        raise CliError(f'no rollout history found for deployment "{d.metadata.name}"')
    return by_revision[numbers[-2]]


def rollback_deployment(d: apps.Deployment, rs: apps.ReplicaSet) -> apps.Deployment | None:
    """``d`` with ``rs``'s template and annotations, or None when the template already is ``rs``'s."""
    if du.equal_ignore_hash(rs.spec.template, d.spec.template):
        return None
    out = apps.Deployment()
    out.CopyFrom(d)
    out.spec.template.CopyFrom(du.template_without_hash(rs.spec.template))
    annotations = {k: v for k, v in d.metadata.annotations.items() if k in _ROLLBACK_KEEPS}
    annotations.update({k: v for k, v in rs.metadata.annotations.items() if k not in _ROLLBACK_KEEPS})
    out.metadata.annotations.clear()
    out.metadata.annotations.update(annotations)
    return out


@dataclass
class UndoOptions:
    selection: Selection
    to_revision: int = 0
    dry_run: str = "none"


async def run_undo(session: Session, opts: UndoOptions, scheme: Scheme,
                   stdin: Callable[[], str] | None = None) -> int:
    dry_run = check_dry_run(opts.dry_run)
    refs = await _deployments(session, scheme, opts.selection, "rollout undo", "rollbacker", stdin)
    failures = 0
    for ref in refs:
        try:
            word = await _undo_one(session, ref, opts.to_revision, dry_run)
        except CliError as exc:
            session.streams.err(format_cli_error(exc))
            failures += 1
            continue
        except StatusError as exc:
            session.streams.err(format_status_error(exc, server=session.server))
            failures += 1
            continue
        session.streams.out(f"{object_ref(ref.rt, ref.name)} {word}{dry_run_suffix(dry_run)}")
    return 1 if failures else 0


async def _undo_one(session: Session, ref: ObjectRef, to_revision: int, dry_run: str) -> str:
    for attempt in range(_UPDATE_ATTEMPTS):
        d = await session.client.get(apps.Deployment, ref.name, ref.namespace)
        if d.spec.paused:
            raise CliError("you cannot rollback a paused deployment; resume it first with 'kubelite rollout resume' "
                           "and try again")
        rs = choose_rollback(d, await owned_replicasets(session, d), to_revision)
        revision = du.revision_of(rs)
        rolled = rollback_deployment(d, rs)
        if rolled is None:
            return f"skipped rollback (current template already matches revision {revision})"
        if dry_run == "client":
            return "rolled back"
        try:
            await session.client.update(rolled, dry_run=dry_run == "server")
        except StatusError as exc:
            if exc.reason == "Conflict" and attempt + 1 < _UPDATE_ATTEMPTS:
                continue  # the controller wrote the Deployment meanwhile: read it again
            raise CliError(f"failed restoring revision {revision}: {exc.message}") from exc
        return "rolled back"
    raise AssertionError("unreachable")


# -- restart, pause, resume ----------------------------------------------------------------------


def restarted_at(now: datetime | None = None) -> str:
    """RFC 3339 in UTC, to the second, as kubectl stamps it."""
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class MarkOptions:
    """restart, pause and resume take only the selection."""

    selection: Selection


async def _each(session: Session, refs: list[ObjectRef],
                one: Callable[[apps.Deployment, ObjectRef], Any]) -> int:
    failures = 0
    for ref in refs:
        try:
            d = await session.client.get(apps.Deployment, ref.name, ref.namespace)
            word = await one(d, ref)
        except CliError as exc:
            session.streams.err(format_cli_error(exc))
            failures += 1
            continue
        except StatusError as exc:
            session.streams.err(format_status_error(exc, server=session.server))
            failures += 1
            continue
        session.streams.out(f"{object_ref(ref.rt, ref.name)} {word}")
    return 1 if failures else 0


async def run_restart(session: Session, opts: MarkOptions, scheme: Scheme,
                      stdin: Callable[[], str] | None = None) -> int:
    refs = await _deployments(session, scheme, opts.selection, "rollout restart", "restarter", stdin)

    async def one(d: apps.Deployment, ref: ObjectRef) -> str:
        if d.spec.paused:
            raise CliError(f'{ref.rt.group_resource} "{ref.name}" can\'t restart paused deployment (run rollout '
                           "resume first)")
        stamp = restarted_at()
        if d.spec.template.metadata.annotations.get(RESTARTED_AT) == stamp:
            raise CliError(f'{ref.rt.group_resource} "{ref.name}" was already restarted at {stamp}; try again in '
                           "a second")
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
        await session.client.patch(apps.Deployment, ref.name, ref.namespace, patch)
        return "restarted"

    return await _each(session, refs, one)


async def run_pause(session: Session, opts: MarkOptions, scheme: Scheme, paused: bool,
                    stdin: Callable[[], str] | None = None) -> int:
    verb = "rollout pause" if paused else "rollout resume"
    refs = await _deployments(session, scheme, opts.selection, verb, "pauser" if paused else "resumer", stdin)

    async def one(d: apps.Deployment, ref: ObjectRef) -> str:
        if d.spec.paused == paused:
            state = "already paused" if paused else "not paused"
            raise CliError(f'{ref.rt.group_resource} "{ref.name}" is {state}')
        await session.client.patch(apps.Deployment, ref.name, ref.namespace, {"spec": {"paused": paused or None}})
        return "paused" if paused else "resumed"

    return await _each(session, refs, one)
