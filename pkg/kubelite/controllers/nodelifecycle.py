"""Node lifecycle: notice nodes that stopped reporting, taint them, evict their pods.

Kubelets renew a Lease (``kube-node-lease/<node>``) every few seconds and post
node status less often. This controller, like Kubernetes', judges a node by
when *it observed* the last renewal or status heartbeat, on its own
monotonic clock, never by the timestamps written in them (clock skew between
machines must not make a node look dead or alive). A node silent for
``--node-monitor-grace-period`` (40 s):

* gets its conditions set to Unknown (``NodeStatusUnknown``, "Kubelet
  stopped posting node status."), its pods marked not ready (so Endpoints
  drop them at once) and a ``NodeNotReady`` event;
* gets the taint ``node.kubernetes.io/unreachable:NoExecute`` (and
  ``:NoSchedule``); a node whose kubelet reports Ready=False gets
  ``node.kubernetes.io/not-ready`` instead. A node that recovers loses them.

The ``TaintManager`` then evicts (deletes) every pod on a NoExecute-tainted
node that does not tolerate the taint, or once its ``tolerationSeconds``
have run out since the taint was added (the API server gives pods 300 s for
both taints by default), so their controllers recreate them elsewhere, and a
node that stays gone keeps no pods. Each check is level-triggered: the
monitor re-examines every node each ``--node-monitor-period``, and the taint
manager requeues a pod for the moment its toleration ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubelite.api.coordination.v1 import generated_pb2 as coordination
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.controller import InstrumentedQueue
from kubelite.client.events import NORMAL, EventRecorder
from kubelite.client.informer import Informer, deleted_object, meta_namespace_key, split_key
from kubelite.controllers.util import Lister, Writer, is_being_deleted, now_seconds, set_now, ts_seconds
from kubelite.machinery.errors import StatusError

log = logging.getLogger(__name__)

NODE_LEASE_NAMESPACE = "kube-node-lease"
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
NO_EXECUTE = "NoExecute"
NO_SCHEDULE = "NoSchedule"
# The conditions a silent kubelet can no longer vouch for.
MONITORED_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


@dataclass
class _Health:
    """What this controller last saw of a node, and when (its own monotonic clock)."""

    probe: float
    heartbeat: str = ""
    lease_renew: str = ""


def _ready_condition(node: core.Node) -> core.NodeCondition | None:
    for cond in node.status.conditions:
        if cond.type == "Ready":
            return cond
    return None


def wanted_taints(node: core.Node) -> set[tuple[str, str]]:
    """The (key, effect) lifecycle taints a node should carry given its Ready condition."""
    ready = _ready_condition(node)
    if ready is None or ready.status == "Unknown":
        key = UNREACHABLE if ready is not None else ""
    elif ready.status == "False":
        key = NOT_READY
    else:
        key = ""
    if not key:
        return set()
    return {(key, NO_EXECUTE), (key, NO_SCHEDULE)}


class NodeLifecycleController:
    name = "nodelifecycle"

    def __init__(self, node_lister: Lister[core.Node], lease_lister: Lister[coordination.Lease],
                 pods_on_node: Callable[[str], list[core.Pod]], client: Writer, recorder: EventRecorder, *,
                 grace_period: float = 40.0, monitor_period: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, queue: InstrumentedQueue[str] | None = None) -> None:
        self.nodes = node_lister
        self.leases = lease_lister
        self.pods_on_node = pods_on_node
        self.client = client
        self.recorder = recorder
        self.grace_period = grace_period
        self.monitor_period = monitor_period
        self.clock = clock
        self.queue: InstrumentedQueue[str] = queue or InstrumentedQueue(self.name)
        self._health: dict[str, _Health] = {}

    def attach(self, node_informer: Informer[core.Node], lease_informer: Informer[coordination.Lease]) -> None:
        node_informer.add_handler(self.add_node, lambda old, new: self.enqueue(new), self.delete_node)
        lease_informer.add_handler(self._lease_changed, lambda old, new: self._lease_changed(new))

    def enqueue(self, node: core.Node) -> None:
        self.queue.add(node.metadata.name)

    def add_node(self, node: core.Node) -> None:
        self.recorder.event(node, NORMAL, "RegisteredNode",
                            f"Node {node.metadata.name} event: Registered Node {node.metadata.name} in Controller")
        self.enqueue(node)

    def delete_node(self, obj: Any) -> None:
        node: core.Node = deleted_object(obj)
        self._health.pop(node.metadata.name, None)
        self.recorder.event(node, NORMAL, "RemovingNode",
                            f"Node {node.metadata.name} event: Removing Node {node.metadata.name} from Controller")

    def _lease_changed(self, lease: coordination.Lease) -> None:
        """A renewal matters at once only for a node we consider unhealthy (it may be back);
        for healthy nodes the monitor's next pass notices it, well within the grace period,
        so a thousand kubelets renewing cost no syncs."""
        if lease.metadata.namespace != NODE_LEASE_NAMESPACE:
            return
        node = self.nodes.get("", lease.metadata.name)
        if node is None:
            return
        ready = _ready_condition(node)
        lifecycle_tainted = any(t.key in (UNREACHABLE, NOT_READY) for t in node.spec.taints)
        if ready is None or ready.status != "True" or lifecycle_tainted:
            self.queue.add(lease.metadata.name)

    async def monitor(self) -> None:
        """Re-examines every node each monitor period: silence produces no events to react to."""
        while True:
            for node in self.nodes.list():
                self.queue.add(node.metadata.name)
            await asyncio.sleep(self.monitor_period)

    def _observe(self, node: core.Node) -> _Health:
        now = self.clock()
        name = node.metadata.name
        health = self._health.get(name)
        if health is None:
            # New to us (or we just started): it gets a full grace period from now.
            health = self._health[name] = _Health(probe=now)
        ready = _ready_condition(node)
        heartbeat = ready.last_heartbeat_time.ToJsonString() if ready is not None and \
            ready.HasField("last_heartbeat_time") else ""
        lease = self.leases.get(NODE_LEASE_NAMESPACE, name)
        renew = lease.spec.renew_time.ToJsonString() if lease is not None and \
            lease.spec.HasField("renew_time") else ""
        if heartbeat != health.heartbeat or renew != health.lease_renew:
            health.heartbeat, health.lease_renew, health.probe = heartbeat, renew, now
        return health

    async def sync(self, key: str) -> None:
        cached = self.nodes.get("", key)
        if cached is None:
            return
        node = core.Node()
        node.CopyFrom(cached)
        health = self._observe(node)
        silent_for = self.clock() - health.probe
        if silent_for > self.grace_period:
            if await self._mark_unknown(node):
                await self._mark_pods_not_ready(key)
        else:
            # Wake up when the grace period would run out, not only on the next tick.
            self.queue.add_after(key, self.grace_period - silent_for + 0.1)
        await self._reconcile_taints(node)

    async def _mark_unknown(self, node: core.Node) -> bool:
        """Sets the monitored conditions to Unknown; True if Ready changed now."""
        ready = _ready_condition(node)
        if ready is not None and ready.status == "Unknown":
            return False
        now = now_seconds()
        never = ready is None
        reason = "NodeStatusNeverUpdated" if never else "NodeStatusUnknown"
        message = "Kubelet never posted node status." if never else "Kubelet stopped posting node status."
        present = {c.type: c for c in node.status.conditions}
        for ctype in MONITORED_CONDITIONS:
            cond = present.get(ctype)
            if cond is None:
                cond = node.status.conditions.add(type=ctype)
            if cond.status != "Unknown":
                set_now(cond.last_transition_time, now)
            cond.status = "Unknown"
            cond.reason = reason
            cond.message = message
        written: core.Node = await self.client.update_status(node)
        node.CopyFrom(written)
        log.info("node %s: no heartbeat for more than %.0fs; Ready=Unknown", node.metadata.name,
                 self.grace_period)
        self.recorder.event(node, NORMAL, "NodeNotReady", f"Node {node.metadata.name} status is now: NodeNotReady")
        return True

    async def _mark_pods_not_ready(self, node_name: str) -> None:
        for pod in self.pods_on_node(node_name):
            if is_being_deleted(pod) or pod.status.phase in ("Succeeded", "Failed"):
                continue
            copy = core.Pod()
            copy.CopyFrom(pod)
            changed = False
            for cond in copy.status.conditions:
                if cond.type == "Ready" and cond.status != "False":
                    cond.status = "False"
                    set_now(cond.last_transition_time)
                    changed = True
            if not changed:
                continue
            try:
                await self.client.update_status(copy)
            except StatusError as exc:
                if exc.reason not in ("NotFound", "Conflict"):
                    raise

    async def _reconcile_taints(self, node: core.Node) -> None:
        wanted = wanted_taints(node)
        ours = {(t.key, t.effect) for t in node.spec.taints if t.key in (UNREACHABLE, NOT_READY)}
        if ours == wanted:
            return
        kept = [t for t in node.spec.taints
                if t.key not in (UNREACHABLE, NOT_READY) or (t.key, t.effect) in wanted]
        present = {(t.key, t.effect) for t in kept}
        for key, effect in sorted(wanted - present):
            taint = core.Taint(key=key, effect=effect)
            set_now(taint.time_added)
            taint.time_added.nanos = 0
            kept.append(taint)
        del node.spec.taints[:]
        node.spec.taints.extend(kept)
        await self.client.update(node)
        log.info("node %s: lifecycle taints now %s", node.metadata.name, sorted(wanted) or "none")


# -- taint-based eviction ------------------------------------------------------------------


def tolerates(toleration: core.Toleration, taint: core.Taint) -> bool:
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.key and toleration.key != taint.key:
        return False
    if toleration.operator == "Exists":
        return True
    if not toleration.key:
        return False  # an empty key matches everything only with Exists
    return toleration.value == taint.value


def eviction_delay(pod: core.Pod, taints: list[core.Taint], now: float) -> float | None:
    """Seconds until ``pod`` must go (0: now), or None if it tolerates the taints for ever."""
    deadline: float | None = None
    for taint in taints:
        matching = [t for t in pod.spec.tolerations if tolerates(t, taint)]
        if not matching:
            return 0.0
        bounded = [t.toleration_seconds for t in matching if t.HasField("toleration_seconds")]
        if len(bounded) < len(matching):
            continue  # one toleration without a limit: tolerated for ever
        added = ts_seconds(taint.time_added) or now
        ends = added + max(0, min(bounded))
        deadline = ends if deadline is None else min(deadline, ends)
    if deadline is None:
        return None
    return max(0.0, deadline - now)


class TaintManager:
    """Deletes pods from NoExecute-tainted nodes once they no longer tolerate the taint."""

    name = "taint-eviction-controller"

    def __init__(self, node_lister: Lister[core.Node], pod_lister: Lister[core.Pod],
                 pods_on_node: Callable[[str], list[core.Pod]], client: Writer, recorder: EventRecorder, *,
                 now: Callable[[], float] = now_seconds, queue: InstrumentedQueue[str] | None = None) -> None:
        self.nodes = node_lister
        self.pods = pod_lister
        self.pods_on_node = pods_on_node
        self.client = client
        self.recorder = recorder
        self.now = now
        self.queue: InstrumentedQueue[str] = queue or InstrumentedQueue("taint_eviction")

    def attach(self, node_informer: Informer[core.Node], pod_informer: Informer[core.Pod]) -> None:
        node_informer.add_handler(self.node_changed, lambda old, new: self.node_changed(new))
        pod_informer.add_handler(self.pod_changed, lambda old, new: self.pod_changed(new))

    def node_changed(self, node: core.Node) -> None:
        if any(t.effect == NO_EXECUTE for t in node.spec.taints):
            for pod in self.pods_on_node(node.metadata.name):
                self.queue.add(meta_namespace_key(pod))

    def pod_changed(self, pod: core.Pod) -> None:
        if pod.spec.node_name and not is_being_deleted(pod):
            node = self.nodes.get("", pod.spec.node_name)
            if node is not None and any(t.effect == NO_EXECUTE for t in node.spec.taints):
                self.queue.add(meta_namespace_key(pod))

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        pod = self.pods.get(namespace, name)
        if pod is None or is_being_deleted(pod) or not pod.spec.node_name:
            return
        node = self.nodes.get("", pod.spec.node_name)
        if node is None:
            return  # pod GC deals with pods of deleted nodes
        taints = [t for t in node.spec.taints if t.effect == NO_EXECUTE]
        if not taints:
            return
        delay = eviction_delay(pod, taints, self.now())
        if delay is None:
            return
        if delay > 0:
            self.queue.add_after(key, delay)
            return
        self.recorder.event(pod, NORMAL, "TaintManagerEviction", f"Marking for deletion Pod {key}")
        log.info("evicting pod %s from node %s (taints %s)", key, node.metadata.name,
                 ", ".join(f"{t.key}:{t.effect}" for t in taints))
        try:
            await self.client.delete(core.Pod, name, namespace, uid=pod.metadata.uid)
        except StatusError as exc:
            if exc.reason != "NotFound":
                raise
