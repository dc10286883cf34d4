"""Events the scheduler reports on pods: Scheduled, and FailedScheduling deduplicated.

Events are best effort, as in Kubernetes: they go through a bounded queue to
a few sender tasks, so that a slow API server delays events, never
decisions, and a full queue drops events (counted) rather than growing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from prometheus_client import Counter

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.machinery.errors import StatusError

log = logging.getLogger(__name__)

DROPPED = Counter("scheduler_events_dropped_total", "Events not sent because the event queue was full.")


class EventRecorder(Protocol):
    def record(self, pod: core.Pod, type_: str, reason: str, message: str) -> None: ...


class NullRecorder:
    def record(self, pod: core.Pod, type_: str, reason: str, message: str) -> None:
        return None


def make_event(pod: core.Pod, type_: str, reason: str, message: str, component: str) -> core.Event:
    now = time.time()
    ev = core.Event(api_version="v1", kind="Event", type=type_, reason=reason, message=message, count=1,
                    reporting_component=component, action="Binding" if reason == "Scheduled" else "Scheduling")
    # Kubernetes names events <object>.<unique hex>; the time in nanoseconds is unique enough per pod.
    ev.metadata.name = f"{pod.metadata.name}.{time.time_ns():x}"
    ev.metadata.namespace = pod.metadata.namespace
    ref = ev.involved_object
    ref.kind, ref.api_version = "Pod", "v1"
    ref.namespace, ref.name, ref.uid = pod.metadata.namespace, pod.metadata.name, pod.metadata.uid
    ref.resource_version = pod.metadata.resource_version
    ev.source.component = component
    for ts in (ev.first_timestamp, ev.last_timestamp, ev.event_time):
        ts.FromNanoseconds(int(now * 1e9))
    ev.first_timestamp.nanos = ev.last_timestamp.nanos = 0
    return ev


class APIEventRecorder:
    def __init__(self, client: Client, component: str = "default-scheduler", *, queue_size: int = 10_000,
                 senders: int = 4) -> None:
        self._client = client
        self._component = component
        self._queue: asyncio.Queue[core.Event] = asyncio.Queue(queue_size)
        self._senders = senders

    def record(self, pod: core.Pod, type_: str, reason: str, message: str) -> None:
        try:
            self._queue.put_nowait(make_event(pod, type_, reason, message, self._component))
        except asyncio.QueueFull:
            DROPPED.inc()

    async def run(self) -> None:
        """Sends events until cancelled; run it in a task its owner cancels."""
        await asyncio.gather(*(self._send_loop() for _ in range(self._senders)))

    async def _send_loop(self) -> None:
        while True:
            ev = await self._queue.get()
            try:
                await self._client.create(ev)
            except StatusError as exc:
                log.debug("event %s/%s not recorded: %s: %s", ev.metadata.namespace, ev.reason, exc.reason,
                          exc.message)
