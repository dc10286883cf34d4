"""The scheduling queue: active, back-off and unschedulable pods, moved by cluster events.

* activeQ holds pods ready for a scheduling attempt, highest priority first,
  then oldest first (Kubernetes' PrioritySort).
* backoffQ holds pods that failed recently: each waits 1 s after its first
  failure, doubling per attempt up to 10 s, so that a pod that cannot fit does
  not monopolise the scheduler.
* unschedulable pods wait for a cluster event that could make them fit: a node
  added or changed, an assigned pod deleted. A pod remembers which plugins
  refused it, and only events those plugins registered for move it (a new
  pod elsewhere cannot cure an untolerated taint). This is what replaces
  polling; a flush after 60 s in unschedulable is the safety net for events
  nobody thought of.

A move request that arrives while a pod is being scheduled (its cycle began
before the event) sends that pod to backoffQ instead of unschedulable when its
attempt fails, so an event that raced with the attempt is never lost.

Timers are exact rather than periodic: one task sleeps until the earliest
back-off expiry or flush deadline, and wakes early when either moves closer.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.machinery import schedulingreasons
from kubelite.scheduler.framework import ClusterEvent
from kubelite.scheduler.nodeinfo import PodInfo

log = logging.getLogger(__name__)

ACTIVE = "active"
BACKOFF = "backoff"
UNSCHEDULABLE = "unschedulable"
IN_FLIGHT = "in-flight"

DEFAULT_MAX_IN_UNSCHEDULABLE = 60.0


def pod_key(pod: core.Pod) -> str:
    return f"{pod.metadata.namespace}/{pod.metadata.name}"


@dataclass(eq=False)
class QueuedPodInfo:
    pod: core.Pod
    info: PodInfo
    # When the pod first entered the queue (its age for ordering; attempt latency from here).
    timestamp: float
    attempts: int = 0
    last_attempt: float = 0.0
    unschedulable_plugins: set[str] = field(default_factory=set)
    # The scheduling cycle of the pod's last pop.
    cycle: int = 0
    where: str = ""
    since: float = 0.0
    deleted: bool = False

    @property
    def key(self) -> str:
        return self.info.key


def _scheduling_relevant(old: core.Pod, new: core.Pod) -> bool:
    """Whether an update could change a decision: not status, resourceVersion, managed fields or the
    scheduler's own record of the refusals."""
    if old.metadata.labels != new.metadata.labels or _annotations(old) != _annotations(new):
        return True
    return old.spec.SerializeToString(deterministic=True) != new.spec.SerializeToString(deterministic=True)


def _annotations(pod: core.Pod) -> dict[str, str]:
    return {k: v for k, v in pod.metadata.annotations.items() if k != schedulingreasons.ANNOTATION}


class SchedulingQueue:
    def __init__(self, events_by_plugin: Mapping[str, frozenset[ClusterEvent]] | None = None, *,
                 initial_backoff: float = 1.0, max_backoff: float = 10.0,
                 max_in_unschedulable: float = DEFAULT_MAX_IN_UNSCHEDULABLE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._events_by_plugin = dict(events_by_plugin or {})
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_in_unschedulable = max_in_unschedulable
        self._clock = clock
        self._pods: dict[str, QueuedPodInfo] = {}
        self._active: list[tuple[int, float, int, QueuedPodInfo]] = []
        self._backoff: list[tuple[float, int, QueuedPodInfo]] = []
        self._seq = itertools.count()
        self._counts = {ACTIVE: 0, BACKOFF: 0, UNSCHEDULABLE: 0, IN_FLIGHT: 0}
        # Kept apart so that a cluster event costs the number of unschedulable pods, not of all pods.
        self._unschedulable: dict[str, QueuedPodInfo] = {}
        self._ready = asyncio.Event()
        self._timer_changed = asyncio.Event()
        self._closed = False
        self.scheduling_cycle = 0
        self._move_request_cycle = -1

    # -- what the informers tell us ----------------------------------------------------------------------------

    def add(self, pod: core.Pod) -> None:
        key = pod_key(pod)
        existing = self._pods.get(key)
        if existing is not None:
            self.update(existing.pod, pod)
            return
        now = self._clock()
        qpi = QueuedPodInfo(pod, PodInfo(pod), timestamp=now)
        self._pods[key] = qpi
        self._to_active(qpi)

    def update(self, old: core.Pod | None, new: core.Pod) -> None:
        key = pod_key(new)
        qpi = self._pods.get(key)
        if qpi is None:
            self.add(new)
            return
        relevant = old is None or _scheduling_relevant(qpi.pod, new)
        qpi.pod = new
        if relevant:
            qpi.info = PodInfo(new)
            if qpi.where == UNSCHEDULABLE:
                # The pod itself changed (tolerations, labels): try again, respecting its back-off.
                self._requeue(qpi)

    def delete(self, pod: core.Pod) -> None:
        qpi = self._pods.pop(pod_key(pod), None)
        if qpi is None:
            return
        qpi.deleted = True
        self._leave(qpi)  # lazy deletion: heap entries of a removed pod are skipped

    def __contains__(self, key: str) -> bool:
        return key in self._pods

    def get(self, key: str) -> QueuedPodInfo | None:
        return self._pods.get(key)

    # -- the scheduler's side ----------------------------------------------------------------------------------

    async def pop(self) -> QueuedPodInfo:
        """The next pod to schedule; waits while activeQ is empty."""
        while True:
            while self._active:
                _, _, _, qpi = heapq.heappop(self._active)
                if qpi.where != ACTIVE or self._pods.get(qpi.key) is not qpi:
                    continue
                self._move(qpi, IN_FLIGHT)
                self.scheduling_cycle += 1
                qpi.cycle = self.scheduling_cycle
                qpi.attempts += 1
                qpi.last_attempt = self._clock()
                return qpi
            if self._closed:
                raise asyncio.CancelledError("the scheduling queue is closed")
            self._ready.clear()
            await self._ready.wait()

    def done(self, qpi: QueuedPodInfo) -> None:
        """The pod was scheduled (assumed): it leaves the queue."""
        if self._pods.get(qpi.key) is qpi:
            del self._pods[qpi.key]
            self._leave(qpi)

    def add_unschedulable(self, qpi: QueuedPodInfo, plugins: Iterable[str]) -> None:
        """After a FitError: wait for an event that one of the refusing plugins cares about."""
        if qpi.deleted or self._pods.get(qpi.key) is not qpi:
            return
        qpi.unschedulable_plugins = set(plugins)
        if self._move_request_cycle >= qpi.cycle:
            # Something changed while this attempt ran: the failure may be stale.
            self._to_backoff(qpi)
        else:
            self._move(qpi, UNSCHEDULABLE)
            self._timer_changed.set()

    def add_backoff(self, qpi: QueuedPodInfo) -> None:
        """After an error (a failed binding, say): retry after the pod's back-off."""
        if qpi.deleted:
            return
        if self._pods.get(qpi.key) is None:
            # It left the queue when it was assumed; it comes back now.
            self._pods[qpi.key] = qpi
            qpi.where = ""
        self._to_backoff(qpi)

    def move_all(self, event: ClusterEvent) -> int:
        """A cluster event: unschedulable pods it might help go to backoffQ or activeQ. Returns how many."""
        self._move_request_cycle = self.scheduling_cycle
        moved = 0
        for qpi in list(self._unschedulable.values()):
            if self._interested(qpi, event):
                self._requeue(qpi)
                moved += 1
        return moved

    def _interested(self, qpi: QueuedPodInfo, event: ClusterEvent) -> bool:
        if event in (ClusterEvent.UNSCHEDULABLE_TIMEOUT, ClusterEvent.FORCE_ACTIVATE):
            return True
        if not qpi.unschedulable_plugins:
            return True
        for plugin in qpi.unschedulable_plugins:
            events = self._events_by_plugin.get(plugin)
            if events is None or event in events:
                return True
        return False

    # -- counts (metrics) --------------------------------------------------------------------------------------

    def pending(self) -> dict[str, int]:
        return {ACTIVE: self._counts[ACTIVE], BACKOFF: self._counts[BACKOFF],
                UNSCHEDULABLE: self._counts[UNSCHEDULABLE]}

    def __len__(self) -> int:
        return len(self._pods)

    # -- moves ------------------------------------------------------------------------------------------------

    def _leave(self, qpi: QueuedPodInfo) -> None:
        if qpi.where:
            self._counts[qpi.where] -= 1
            if qpi.where == UNSCHEDULABLE:
                self._unschedulable.pop(qpi.key, None)
        qpi.where = ""

    def _move(self, qpi: QueuedPodInfo, where: str) -> None:
        self._leave(qpi)
        qpi.where = where
        qpi.since = self._clock()
        self._counts[where] += 1
        if where == UNSCHEDULABLE:
            self._unschedulable[qpi.key] = qpi

    def _to_active(self, qpi: QueuedPodInfo) -> None:
        self._move(qpi, ACTIVE)
        heapq.heappush(self._active, (-qpi.info.priority, qpi.timestamp, next(self._seq), qpi))
        self._ready.set()

    def backoff_duration(self, qpi: QueuedPodInfo) -> float:
        if qpi.attempts <= 0:
            return 0.0
        return float(min(self.initial_backoff * 2 ** (qpi.attempts - 1), self.max_backoff))

    def _backoff_expiry(self, qpi: QueuedPodInfo) -> float:
        return qpi.last_attempt + self.backoff_duration(qpi)

    def _to_backoff(self, qpi: QueuedPodInfo) -> None:
        expiry = self._backoff_expiry(qpi)
        if expiry <= self._clock():
            self._to_active(qpi)
            return
        self._move(qpi, BACKOFF)
        heapq.heappush(self._backoff, (expiry, next(self._seq), qpi))
        self._timer_changed.set()

    def _requeue(self, qpi: QueuedPodInfo) -> None:
        if self._backoff_expiry(qpi) > self._clock():
            self._to_backoff(qpi)
        else:
            self._to_active(qpi)

    # -- timers -----------------------------------------------------------------------------------------------

    def flush(self) -> float | None:
        """Moves due pods; returns the seconds until the next deadline (None: nothing pending)."""
        now = self._clock()
        while self._backoff and self._backoff[0][0] <= now:
            _, _, qpi = heapq.heappop(self._backoff)
            if qpi.where == BACKOFF and self._pods.get(qpi.key) is qpi:
                self._to_active(qpi)
        deadlines = []
        while self._backoff and (self._backoff[0][2].where != BACKOFF
                                 or self._pods.get(self._backoff[0][2].key) is not self._backoff[0][2]):
            heapq.heappop(self._backoff)
        if self._backoff:
            deadlines.append(self._backoff[0][0])
        stale = [q for q in self._unschedulable.values() if now - q.since >= self.max_in_unschedulable]
        if stale:
            self._move_request_cycle = self.scheduling_cycle
            for qpi in stale:
                self._requeue(qpi)
        oldest = min((q.since for q in self._unschedulable.values()), default=None)
        if oldest is not None:
            deadlines.append(oldest + self.max_in_unschedulable)
        return max(0.0, min(deadlines) - self._clock()) if deadlines else None

    async def run_timers(self) -> None:
        """Runs until cancelled: moves pods whose back-off ended and flushes long-unschedulable ones."""
        while True:
            self._timer_changed.clear()
            delay = self.flush()
            try:
                await asyncio.wait_for(self._timer_changed.wait(), timeout=delay)
            except TimeoutError:
                pass

    def close(self) -> None:
        self._closed = True
        self._ready.set()
