"""Operator verbs: scale (through the scale subresource), cordon, uncordon and drain.

`drain` is kubectl's: cordon the node, then evict its pods through the
eviction subresource, so that the API server checks each pod's
PodDisruptionBudget; refused evictions (429) are retried until the budget
allows them or the timeout ends. Pods that nothing would recreate, pods of
DaemonSets and pods with local data are refused up front unless the matching
flag says so, because draining them loses something.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from kubelite.api.autoscaling.v1 import generated_pb2 as autoscaling_v1
from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.api.policy.v1 import generated_pb2 as policy_v1
from kubelite.cli.clientset import Session
from kubelite.cli.errors import CliError
from kubelite.cli.resources import resolve_type
from kubelite.machinery.errors import StatusError
from kubelite.machinery.scheme import Scheme

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# How long a refused eviction waits before it is asked again (kubectl's pace).
EVICTION_RETRY_SECONDS = 5.0


@dataclass
class ScaleOptions:
    args: tuple[str, ...]
    replicas: int
    current_replicas: int = -1
    resource_version: str = ""


def _targets(scheme: Scheme, args: tuple[str, ...]) -> list[tuple[Any, str]]:
    """``deploy/web rs/x`` or ``deployment web x``: (resource type, name) pairs."""
    out: list[tuple[Any, str]] = []
    if args and all("/" in a for a in args):
        for arg in args:
            kind, _, name = arg.partition("/")
            out.append((resolve_type(scheme, kind), name))
    elif len(args) >= 2 and not any("/" in a for a in args):
        rt = resolve_type(scheme, args[0])
        out.extend((rt, name) for name in args[1:])
    else:
        raise CliError("expected TYPE NAME... or TYPE/NAME...")
    return out


async def run_scale(session: Session, opts: ScaleOptions, scheme: Scheme) -> int:
    if opts.replicas < 0:
        raise CliError("The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0")
    client, ns = session.client, session.namespace
    for rt, name in _targets(scheme, opts.args):
        scale = await client.get_subresource(rt.message, name, ns, "scale", autoscaling_v1.Scale)
        if opts.current_replicas >= 0 and scale.spec.replicas != opts.current_replicas:
            raise CliError(f"Expected replicas to be {opts.current_replicas}, was {scale.spec.replicas}")
        if opts.resource_version:
            scale.metadata.resource_version = opts.resource_version
        scale.spec.replicas = opts.replicas
        await client.update_subresource(rt.message, name, ns, "scale", scale)
        session.streams.out(f"{_singular(rt)}/{name} scaled")
    return 0


def _singular(rt: Any) -> str:
    return f"{rt.singular}.{rt.group}" if rt.group else str(rt.singular)


async def set_unschedulable(session: Session, nodes: tuple[str, ...], value: bool) -> int:
    if not nodes:
        raise CliError("at least one node name is required")
    verb = "cordoned" if value else "uncordoned"
    for name in nodes:
        node = await session.client.get(core_v1.Node, name)
        if node.spec.unschedulable == value:
            session.streams.out(f"node/{name} already {verb}")
            continue
        await session.client.patch(core_v1.Node, name, "", {"spec": {"unschedulable": value or None}})
        session.streams.out(f"node/{name} {verb}")
    return 0


@dataclass
class DrainOptions:
    node: str
    ignore_daemonsets: bool = False
    delete_emptydir_data: bool = False
    force: bool = False
    timeout: float = 0.0
    grace_period: int = -1
    pod_selector: str = ""
    disable_eviction: bool = False
    retry_seconds: float = EVICTION_RETRY_SECONDS


def _controller(pod: core_v1.Pod) -> Any:
    for ref in pod.metadata.owner_references:
        if ref.controller:
            return ref
    return None


def _drain_plan(pods: list[core_v1.Pod], opts: DrainOptions) -> tuple[list[core_v1.Pod], list[str], list[str]]:
    """(pods to evict, warnings, errors) in kubectl's words."""
    evict: list[core_v1.Pod] = []
    warnings: list[str] = []
    errors_: list[str] = []
    for pod in pods:
        ident = f"{pod.metadata.namespace}/{pod.metadata.name}"
        if MIRROR_ANNOTATION in pod.metadata.annotations:
            continue  # static pods belong to the kubelet: evicting their mirror does nothing
        if pod.status.phase in ("Succeeded", "Failed"):
            evict.append(pod)
            continue
        ctrl = _controller(pod)
        if ctrl is not None and ctrl.kind == "DaemonSet":
            if opts.ignore_daemonsets:
                warnings.append(f"ignoring DaemonSet-managed Pods: {ident}")
            else:
                errors_.append(f"cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): {ident}")
            continue
        if ctrl is None:
            if opts.force:
                warnings.append(f"deleting Pods that declare no controller: {ident}")
            else:
                errors_.append(f"cannot delete Pods that declare no controller (use --force to override): {ident}")
                continue
        if any(v.HasField("empty_dir") for v in pod.spec.volumes):
            if opts.delete_emptydir_data:
                warnings.append(f"deleting Pods with local storage: {ident}")
            else:
                errors_.append(f"cannot delete Pods with local storage (use --delete-emptydir-data to override): "
                               f"{ident}")
                continue
        evict.append(pod)
    return evict, warnings, errors_


async def run_drain(session: Session, opts: DrainOptions) -> int:
    await set_unschedulable(session, (opts.node,), True)
    client = session.client
    pods = (await client.list(core_v1.Pod, "", field_selector=f"spec.nodeName={opts.node}",
                              label_selector=opts.pod_selector)).items
    evict, warnings, errors_ = _drain_plan(pods, opts)
    if errors_:
        raise CliError("unable to drain node \"" + opts.node + "\" due to error: " + ", ".join(errors_) +
                       ", continuing command...\nThere are pending nodes to be drained:\n " + opts.node)
    if warnings:
        session.streams.err("Warning: " + "; ".join(warnings))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + opts.timeout if opts.timeout > 0 else None
    await asyncio.gather(*(_evict_and_wait(session, pod, opts, deadline) for pod in evict))
    session.streams.out(f"node/{opts.node} drained")
    return 0


async def _evict_and_wait(session: Session, pod: core_v1.Pod, opts: DrainOptions, deadline: float | None) -> None:
    client = session.client
    ns, name, uid = pod.metadata.namespace, pod.metadata.name, pod.metadata.uid
    loop = asyncio.get_running_loop()
    session.streams.out(f"evicting pod {ns}/{name}")
    eviction = policy_v1.Eviction(api_version="policy/v1", kind="Eviction")
    eviction.metadata.name, eviction.metadata.namespace = name, ns
    if opts.grace_period >= 0:
        eviction.delete_options.grace_period_seconds = opts.grace_period
    eviction.delete_options.preconditions.uid = uid
    while True:
        try:
            if opts.disable_eviction:
                grace = opts.grace_period if opts.grace_period >= 0 else None
                await client.delete(core_v1.Pod, name, ns, uid=uid, grace_period_seconds=grace)
            else:
                await client.create_subresource(core_v1.Pod, name, ns, "eviction", eviction)
            break
        except StatusError as exc:
            if exc.reason == "NotFound" or (exc.reason == "Conflict" and "UID" in exc.message):
                break  # already gone (or replaced by a new pod of the same name)
            if exc.reason != "TooManyRequests":
                raise
            _check_deadline(deadline, loop, opts)
            session.streams.err(f'error when evicting pods/"{name}" -n "{ns}" (will retry after '
                                f'{opts.retry_seconds:g}s): {exc.message}')
            pause = opts.retry_seconds if deadline is None else min(opts.retry_seconds, deadline - loop.time())
            await asyncio.sleep(max(0.0, pause))
    await _wait_gone(session, ns, name, uid, deadline, opts)
    session.streams.out(f"pod/{name} evicted")


async def _wait_gone(session: Session, ns: str, name: str, uid: str, deadline: float | None,
                     opts: DrainOptions) -> None:
    """Until the pod with this uid no longer exists (its kubelet confirmed the termination)."""
    loop = asyncio.get_running_loop()

    try:
        current = await session.client.get(core_v1.Pod, name, ns)
    except StatusError as exc:
        if exc.reason == "NotFound":
            return
        raise
    if current.metadata.uid != uid:
        return

    async def gone() -> None:
        since = current.metadata.resource_version
        async for event in session.watch(core_v1.Pod, ns, "", f"metadata.name={name}", since):
            obj = event.object
            if event.type == "DELETED" or obj.metadata.uid != uid:
                return
    timeout = None if deadline is None else max(0.0, deadline - loop.time())
    try:
        await asyncio.wait_for(gone(), timeout)
    except TimeoutError:
        _check_deadline(deadline, loop, opts, force=True)


def _check_deadline(deadline: float | None, loop: asyncio.AbstractEventLoop, opts: DrainOptions,
                    force: bool = False) -> None:
    if deadline is not None and (force or loop.time() >= deadline):
        raise CliError(f"drain did not complete within {opts.timeout:g}s")

