"""The scheduling loop: pop a pod, decide, assume, bind in the background.

Informer handlers feed two places: pods without a node (and with one of our
scheduler names) go to the queue; nodes and pods with a node go to the
cache, and each such change is a cluster event that may move unschedulable
pods back (see ``queue``). The loop itself is sequential and synchronous
from snapshot to assumption, so that the next decision already counts the
previous pod; only bindings and status writes are awaited, each in its own
owned task, with many bindings in flight so that the API server can commit
them together. A failed binding forgets the assumption and requeues the pod.

Side effects sit behind Protocols (``Binder``, ``ConditionWriter``,
``VictimDeleter``, the event recorder), so that unit tests drive the loop
with fakes.

Preemption follows Kubernetes: the victims are deleted (gracefully, each
with its own grace period; preemption does not go through the eviction API,
PodDisruptionBudgets are weighed in the choice instead), the preemptor is
nominated to the node (``status.nominatedNodeName``) and the room is held for
it; while its victims are still terminating it waits instead of preempting
again, and it is retried when their deletions arrive.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.policy.v1 import generated_pb2 as policy
from kubelite.client.informer import deleted_object
from kubelite.machinery.errors import StatusError
from kubelite.scheduler import metrics
from kubelite.scheduler.algorithm import schedule
from kubelite.scheduler.cache import Cache
from kubelite.scheduler.events import FAILED_SCHEDULING, PREEMPTED, SCHEDULED, EventRecorder, NullRecorder
from kubelite.scheduler.framework import ClusterEvent, FitError
from kubelite.scheduler.nodeinfo import PodInfo, Snapshot
from kubelite.scheduler.profile import Profile
from kubelite.scheduler.queue import QueuedPodInfo, SchedulingQueue, pod_key

log = logging.getLogger(__name__)

DEFAULT_MAX_IN_FLIGHT_BINDINGS = 1024
_TERMINAL = ("Succeeded", "Failed")


class Binder(Protocol):
    async def bind(self, pod: core.Pod, node_name: str) -> None: ...


class ConditionWriter(Protocol):
    async def set_unschedulable(self, pod: core.Pod, message: str, nominated_node: str = "",
                                node_reasons: Sequence[tuple[str, str, str]] = ()) -> None: ...


class VictimDeleter(Protocol):
    """Marks a preemption victim (condition DisruptionTarget, reason PreemptionByScheduler, ``message``)
    and deletes it gracefully, as its own grace period says."""

    async def delete_victim(self, victim: core.Pod, message: str) -> None: ...


class Scheduler:
    def __init__(self, profiles: Mapping[str, Profile], *, binder: Binder, conditions: ConditionWriter,
                 queue: SchedulingQueue | None = None, cache: Cache | None = None,
                 max_in_flight_bindings: int = DEFAULT_MAX_IN_FLIGHT_BINDINGS, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic, events: EventRecorder | None = None,
                 victims: VictimDeleter | None = None) -> None:
        if not profiles:
            raise ValueError("at least one profile is needed")
        self.profiles = dict(profiles)
        interests: dict[str, frozenset[ClusterEvent]] = {}
        for profile in self.profiles.values():
            interests.update(profile.events_by_plugin())
        self.queue = queue if queue is not None else SchedulingQueue(interests)
        self.cache = cache if cache is not None else Cache()
        self.snapshot = Snapshot()
        self._binder = binder
        self._conditions = conditions
        self._events: EventRecorder = events or NullRecorder()
        self._victims = victims
        # pod key -> the last FailedScheduling message sent: the same refusal is reported once.
        self._reported: dict[str, str] = {}
        # pod key -> its reservation on the node preemption nominated, so that other pods do not take
        # the room its victims free (kube-scheduler counts nominated pods when filtering, for pods of
        # lower or equal priority; here the room is held for everyone until the pod is tried again).
        self._nominated: dict[str, PodInfo] = {}
        self._rng = rng or random.Random()
        self._clock = clock
        self._start_index = 0
        self._slots = asyncio.Semaphore(max_in_flight_bindings)
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        # Results, for tests and benchmarks: pod key -> node (bound) and the number of failed attempts.
        self.scheduled = 0
        self.bound = 0
        self.failures = 0
        # pod key -> why it is Pending: the message, and (node, plugin, reason) for every node.
        self.last_error: dict[str, str] = {}
        self.node_reasons: dict[str, list[tuple[str, str, str]]] = {}
        for queue_name in ("active", "backoff", "unschedulable"):
            metrics.PENDING_PODS.labels(queue_name).set_function(
                lambda q=queue_name: float(self.queue.pending()[q]))  # type: ignore[misc]
        metrics.BINDINGS_IN_FLIGHT.set_function(lambda: float(self._in_flight))
        metrics.CACHE_SIZE.labels("nodes").set_function(lambda: float(self.cache.node_count))
        metrics.CACHE_SIZE.labels("pods").set_function(lambda: float(self.cache.pod_count))
        metrics.CACHE_SIZE.labels("pdbs").set_function(lambda: float(self.cache.pdb_count))

    def responsible_for(self, pod: core.Pod) -> bool:
        return (pod.spec.scheduler_name or "default-scheduler") in self.profiles

    # -- informer handlers: nodes -------------------------------------------------------------------------------

    def on_node_add(self, node: core.Node) -> None:
        self.cache.add_node(node)
        self.queue.move_all(ClusterEvent.NODE_ADD)

    def on_node_update(self, old: core.Node, new: core.Node) -> None:
        # Heartbeats rewrite a node's status every few seconds; plugins read none of it.
        if _node_scheduling_changed(old, new):
            self.cache.update_node(new)
            self.queue.move_all(ClusterEvent.NODE_UPDATE)

    def on_node_delete(self, obj: Any) -> None:
        node = deleted_object(obj)  # a relist's tombstone carries the last state seen
        self.cache.remove_node(node.metadata.name)

    # -- informer handlers: PodDisruptionBudgets (only preemption reads them; no pod moves) ------------------

    def on_pdb_add(self, pdb: policy.PodDisruptionBudget) -> None:
        self.cache.set_pdb(pdb)

    def on_pdb_update(self, old: policy.PodDisruptionBudget, new: policy.PodDisruptionBudget) -> None:
        self.cache.set_pdb(new)

    def on_pdb_delete(self, obj: Any) -> None:
        self.cache.remove_pdb(deleted_object(obj))

    # -- informer handlers: pods ----------------------------------------------------------------------------
    # One informer of every pod not finished, as kube-scheduler has: a binding arrives as one update
    # (pending -> assigned) rather than a deletion from one watch and an addition to another, which is
    # one watch event per pod fewer for the API server to send and for us to decode.

    def on_pod_add(self, pod: core.Pod) -> None:
        if pod.spec.node_name:
            if pod.status.phase in _TERMINAL:
                return
            self.cache.add_pod(pod)
            self.queue.move_all(ClusterEvent.POD_ADD)
        elif self._pending(pod) and not self._binding(pod):
            self.queue.add(pod)

    def on_pod_update(self, old: core.Pod, new: core.Pod) -> None:
        if new.spec.node_name and not old.spec.node_name:
            # Bound (our binding confirmed, or another scheduler's): out of the queue, into the cache.
            self._forget_pending(old)
            self.on_pod_add(new)
            return
        if new.spec.node_name:
            if new.status.phase in _TERMINAL:
                # A finished pod frees its resources, like a deleted one.
                self.cache.remove_pod(new)
                self.queue.move_all(ClusterEvent.POD_DELETE)
                return
            self.cache.update_pod(new)
            if old.metadata.labels != new.metadata.labels:
                self.queue.move_all(ClusterEvent.POD_UPDATE)
        elif not self._pending(new):
            self.queue.delete(new)
        elif not self._binding(new):
            # (Updates while our binding is in flight are our own status writes racing it: ignored.)
            self.queue.update(old, new)

    def on_pod_delete(self, obj: Any) -> None:
        pod = deleted_object(obj)
        if pod.spec.node_name:
            self.cache.remove_pod(pod)
            self.queue.move_all(ClusterEvent.POD_DELETE)
        else:
            self._forget_pending(pod)

    def _forget_pending(self, pod: core.Pod) -> None:
        """A pending pod went (deleted, or bound): drop what the queue and the explanations keep of it."""
        key = pod_key(pod)
        self.queue.delete(pod)
        self._reported.pop(key, None)
        if key not in self.queue:
            self.last_error.pop(key, None)
            self.node_reasons.pop(key, None)
        if pod.metadata.HasField("deletion_timestamp") or key not in self.queue:
            self._release_nomination(key)

    def _pending(self, pod: core.Pod) -> bool:
        """A pod this scheduler should place (ignoring whether a binding of ours is in flight)."""
        if not self.responsible_for(pod) or pod.metadata.HasField("deletion_timestamp"):
            return False
        return pod.status.phase not in _TERMINAL

    def _binding(self, pod: core.Pod) -> bool:
        """Our binding of this pod is in flight: it is assumed on a node (not merely nominated)."""
        key = pod_key(pod)
        return self.cache.is_assumed(key) and key not in self._nominated

    # -- the loop ---------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Schedules until cancelled; then waits for the bindings in flight."""
        timers = asyncio.get_running_loop().create_task(self.queue.run_timers(), name="scheduler-queue-timers")
        self._own(timers)
        try:
            while True:
                await self.schedule_next()
        finally:
            await self.close()

    async def schedule_next(self) -> None:
        await self._slots.acquire()
        try:
            qpi = await self.queue.pop()
        except BaseException:
            self._slots.release()
            raise
        if not self.schedule_one(qpi):
            self._slots.release()

    def schedule_one(self, qpi: QueuedPodInfo) -> bool:
        """One cycle; returns True when a binding was started (it then owns a slot)."""
        start = self._clock()
        pod_info = qpi.info
        profile = self.profiles.get(qpi.pod.spec.scheduler_name or "default-scheduler")
        if profile is None:
            self.queue.done(qpi)
            return False
        nominated = self._nominated.get(qpi.key)
        if nominated is not None and pod_info.nominated_node != nominated.node_name:
            # Our own status write may not have come back through the watch yet.
            pod_info = pod_info.with_nominated(nominated.node_name)
        self._release_nomination(qpi.key)
        self.cache.update_snapshot(self.snapshot)
        try:
            decision = schedule(profile, self.snapshot, pod_info, start_index=self._start_index, rng=self._rng,
                                explain=False)
        except FitError as err:
            self.failures += 1
            message = str(err)
            self.last_error[qpi.key] = message
            self.node_reasons[qpi.key] = err.node_reasons()
            metrics.SCHEDULE_ATTEMPTS.labels("unschedulable", profile.scheduler_name).inc()
            metrics.ATTEMPT_DURATION.labels("unschedulable", profile.scheduler_name).observe(self._clock() - start)
            log.info("unable to schedule pod %s: %s", qpi.key, message)
            if log.isEnabledFor(logging.DEBUG):
                for node, plugin, reason in err.node_reasons():
                    log.debug("pod %s: node %s refused by %s: %s", qpi.key, node, plugin, reason)
            self.queue.add_unschedulable(qpi, err.diagnosis.unschedulable_plugins)
            if err.diagnosis.nominated_node:
                self._preempt(qpi, err.diagnosis.nominated_node, err.diagnosis.victims, message)
                return False
            waiting_on = err.diagnosis.waiting_on
            if waiting_on:
                # Its victims are still terminating: keep holding their room for it.
                self._reserve(qpi, waiting_on)
            if self._reported.get(qpi.key) != message:
                self._reported[qpi.key] = message
                self._events.event(qpi.pod, "Warning", FAILED_SCHEDULING, message)
                self._spawn(self._write_unschedulable(qpi.pod, message, waiting_on), f"condition-{qpi.key}")
            return False
        except Exception:
            log.exception("scheduling pod %s failed", qpi.key)
            metrics.SCHEDULE_ATTEMPTS.labels("error", profile.scheduler_name).inc()
            self.queue.add_backoff(qpi)
            return False
        self._start_index = decision.next_start_index
        node = decision.result.suggested_host
        assumed = pod_info.with_node(node)
        self.cache.assume_pod(assumed)
        self.queue.done(qpi)
        self.scheduled += 1
        self.last_error.pop(qpi.key, None)
        self.node_reasons.pop(qpi.key, None)
        self._spawn(self._bind(qpi, node, start, profile.scheduler_name), f"bind-{qpi.key}")
        return True

    async def _bind(self, qpi: QueuedPodInfo, node: str, start: float, profile: str) -> None:
        self._in_flight += 1
        try:
            await self._binder.bind(qpi.pod, node)
        except StatusError as exc:
            self.cache.forget_pod(qpi.info.with_node(node))
            metrics.SCHEDULE_ATTEMPTS.labels("error", profile).inc()
            metrics.ATTEMPT_DURATION.labels("error", profile).observe(self._clock() - start)
            if exc.reason == "NotFound" or (exc.reason == "Conflict" and "already assigned" in exc.message):
                log.info("binding %s to %s: %s; not retried", qpi.key, node, exc.message)
                return
            log.warning("binding %s to %s failed (%s: %s); retrying after back-off", qpi.key, node, exc.reason,
                        exc.message)
            self.queue.add_backoff(qpi)
            # A freed assumption is a change of the cluster for everyone else.
            self.queue.move_all(ClusterEvent.POD_DELETE)
        else:
            self.bound += 1
            self._reported.pop(qpi.key, None)
            self._events.event(qpi.pod, "Normal", SCHEDULED, f"Successfully assigned {qpi.key} to {node}")
            metrics.SCHEDULE_ATTEMPTS.labels("scheduled", profile).inc()
            metrics.ATTEMPT_DURATION.labels("scheduled", profile).observe(self._clock() - start)
            log.debug("bound %s to %s", qpi.key, node)
        finally:
            self._in_flight -= 1
            self._slots.release()

    def _preempt(self, qpi: QueuedPodInfo, node: str, victims: tuple[PodInfo, ...], message: str) -> None:
        """Deletes the victims and nominates the node; the pod comes back when the deletions arrive."""
        metrics.PREEMPTION_ATTEMPTS.inc()
        metrics.PREEMPTION_VICTIMS.observe(len(victims))
        log.info("preempting %d pod(s) on %s for %s: %s", len(victims), node, qpi.key,
                 ", ".join(v.key for v in victims))
        self._reserve(qpi, node)
        profile = qpi.pod.spec.scheduler_name or "default-scheduler"
        for victim in victims:
            self._events.event(victim.pod, "Normal", PREEMPTED, f"Preempted by pod {qpi.info.uid} on node {node}")
            if self._victims is not None:
                self._spawn(self._delete_victim(victim.pod, f"{profile}: preempting to accommodate a higher "
                                                            "priority pod"), f"preempt-{victim.key}")
        self._reported[qpi.key] = message
        self._events.event(qpi.pod, "Warning", FAILED_SCHEDULING, message)
        self._spawn(self._write_unschedulable(qpi.pod, message, node), f"nominate-{qpi.key}")

    def _reserve(self, qpi: QueuedPodInfo, node: str) -> None:
        """Holds room on ``node`` for a nominated pod until it is tried again."""
        reservation = qpi.info.with_node(node)
        self.cache.assume_pod(reservation)
        self._nominated[qpi.key] = reservation

    def _release_nomination(self, key: str) -> None:
        reservation = self._nominated.pop(key, None)
        if reservation is not None:
            self.cache.forget_pod(reservation)

    async def _delete_victim(self, victim: core.Pod, message: str) -> None:
        assert self._victims is not None
        try:
            await self._victims.delete_victim(victim, message)
        except StatusError as exc:
            if exc.reason != "NotFound":
                log.warning("deleting preemption victim %s failed: %s: %s", pod_key(victim), exc.reason,
                            exc.message)

    async def _write_unschedulable(self, pod: core.Pod, message: str, nominated_node: str = "") -> None:
        try:
            await self._conditions.set_unschedulable(pod, message, nominated_node,
                                                     self.node_reasons.get(pod_key(pod), ()))
        except StatusError as exc:
            log.warning("writing PodScheduled=False on %s failed: %s: %s", pod_key(pod), exc.reason, exc.message)

    # -- owned tasks ------------------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._own(asyncio.get_running_loop().create_task(coro, name=name))

    def _own(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    async def wait_idle(self) -> None:
        """Waits for the bindings and status writes in flight (tests, benchmarks)."""
        while True:
            pending = [t for t in self._tasks if t.get_name() != "scheduler-queue-timers"]
            if not pending:
                return
            await asyncio.wait(pending)

    async def close(self) -> None:
        self.queue.close()
        tasks = list(self._tasks)
        for t in tasks:
            if t.get_name() == "scheduler-queue-timers":
                t.cancel()
        if tasks:
            await asyncio.wait(tasks)


def _node_scheduling_changed(old: core.Node, new: core.Node) -> bool:
    """Heartbeats change a node's status every few seconds; only some changes can help a pod."""
    if old.spec.unschedulable != new.spec.unschedulable or list(old.spec.taints) != list(new.spec.taints):
        return True
    if old.metadata.labels != new.metadata.labels:
        return True
    return (old.status.allocatable != new.status.allocatable or old.status.capacity != new.status.capacity
            or list(old.status.images) != list(new.status.images))
