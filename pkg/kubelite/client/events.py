"""Events (core/v1 Event): what controllers tell users, without flooding etcd.

A controller that fails to create a pod every few seconds would write an Event
each time; a crash-looping cluster would write millions. Kubernetes' recorder
keeps this bounded, and so does this one:

* **Deduplication**: an event with the same involved object, type, reason,
  message and source as one already written bumps that Event's ``count``,
  ``lastTimestamp`` and ``series`` instead of creating another.
* **Aggregation**: more than ``max_similar`` events for one object and reason
  with different messages inside ``aggregate_window`` collapse into one Event
  whose message says "(combined from similar events)".
* **Rate limiting**: a token bucket per (source, involved object), 25 events
  burst then one per 5 minutes, as in Kubernetes; excess events are dropped.
* **Never in the caller's way**: ``event()`` is synchronous, puts the event on
  a bounded queue and returns; one owned task writes them. A full queue or a
  failing API server drops events (and logs), it never raises into the caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.machinery.errors import StatusError

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"

MAX_QUEUED = 1000
CACHE_SIZE = 4096
SPAM_BURST = 25
SPAM_QPS = 1.0 / 300.0
MAX_SIMILAR = 10
AGGREGATE_WINDOW = 600.0
COMBINED_PREFIX = "(combined from similar events): "


class EventSink(Protocol):
    """Where events are written: the API server (``ClientEventSink``) or a fake."""

    async def create(self, event: core.Event) -> core.Event: ...

    async def update(self, event: core.Event) -> core.Event: ...


class ClientEventSink:
    def __init__(self, client: Client) -> None:
        self._client = client

    async def create(self, event: core.Event) -> core.Event:
        return await self._client.create(event)

    async def update(self, event: core.Event) -> core.Event:
        return await self._client.update(event)


def object_reference(obj: Any) -> core.ObjectReference:
    """The ObjectReference of an API object (its kind from ``kind`` or the message name)."""
    meta = obj.metadata
    kind = getattr(obj, "kind", "") or type(obj).DESCRIPTOR.name
    return core.ObjectReference(kind=kind, namespace=meta.namespace, name=meta.name, uid=meta.uid,
                                api_version=getattr(obj, "api_version", ""),
                                resource_version=meta.resource_version)


class _TokenBucket:
    def __init__(self, burst: int, qps: float, clock: Callable[[], float]) -> None:
        self._burst = burst
        self._qps = qps
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(float(self._burst), self._tokens + (now - self._last) * self._qps)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


@dataclass
class _Written:
    """What the recorder remembers of an Event it wrote, to bump it next time."""

    event: core.Event
    count: int


@dataclass
class _Similar:
    messages: set[str] = field(default_factory=set)
    first_seen: float = 0.0


class EventRecorder:
    """Records events for one component (``source.component``, ``reportingComponent``).

    Call ``start()`` inside the event loop and ``await stop()`` on shutdown;
    events recorded before ``start()`` wait in the queue.
    """

    def __init__(
        self,
        sink: EventSink | Client,
        component: str,
        host: str = "",
        *,
        max_queued: int = MAX_QUEUED,
        spam_burst: int = SPAM_BURST,
        spam_qps: float = SPAM_QPS,
        max_similar: int = MAX_SIMILAR,
        aggregate_window: float = AGGREGATE_WINDOW,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sink: EventSink = ClientEventSink(sink) if isinstance(sink, Client) else sink
        self.component = component
        self.host = host
        self._queue: asyncio.Queue[core.Event] = asyncio.Queue(max_queued)
        self._spam_burst = spam_burst
        self._spam_qps = spam_qps
        self._max_similar = max_similar
        self._aggregate_window = aggregate_window
        self._clock = clock
        self._now = now
        self._buckets: OrderedDict[tuple[str, ...], _TokenBucket] = OrderedDict()
        self._written: OrderedDict[tuple[str, ...], _Written] = OrderedDict()
        self._similar: OrderedDict[tuple[str, ...], _Similar] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    # -- the caller's side ----------------------------------------------------------

    def event(self, obj: Any, type_: str, reason: str, message: str) -> None:
        """Records an event about ``obj``; returns at once and never raises."""
        try:
            self._record(object_reference(obj), type_, reason, message)
        except Exception:
            log.exception("recording event %s for %s failed", reason, getattr(obj, "metadata", obj))

    def eventf(self, obj: Any, type_: str, reason: str, fmt: str, *args: Any) -> None:
        self.event(obj, type_, reason, fmt % args if args else fmt)

    def _record(self, ref: core.ObjectReference, type_: str, reason: str, message: str) -> None:
        if type_ not in (NORMAL, WARNING):
            log.warning("event type %r is neither Normal nor Warning; recorded as Normal", type_)
            type_ = NORMAL
        log.debug("event %s %s/%s %s: %s", ref.kind, ref.namespace, ref.name, reason, message)
        now = self._now()
        event = core.Event(api_version="v1", kind="Event", involved_object=ref, reason=reason, message=message,
                           type=type_, count=1, reporting_component=self.component, reporting_instance=self.host)
        event.metadata.namespace = ref.namespace or "default"
        event.source.component = self.component
        event.source.host = self.host
        event.first_timestamp.FromDatetime(now)
        event.last_timestamp.FromDatetime(now)
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            # One line for the first drop and then one per thousand: a flood of events must not become a
            # flood of log lines (a scheduler binding thousands of pods a second records one event each).
            if self.dropped % 1000 == 1:
                log.warning("event queue full; dropped %s %s for %s/%s (%d dropped so far)", type_, reason,
                            ref.namespace, ref.name, self.dropped)

    # -- the writer -------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"events-{self.component}")

    async def stop(self, drain_timeout: float = 2.0) -> None:
        """Writes what is queued (for at most ``drain_timeout`` s), then stops the writer."""
        if self._task is None:
            return
        try:
            async with asyncio.timeout(drain_timeout):
                await self._queue.join()
        except TimeoutError:
            log.info("stopping the event recorder with %d events unwritten", self._queue.qsize())
        self._task.cancel()
        await asyncio.wait([self._task])
        self._task = None

    async def flush(self) -> None:
        """Waits until every event recorded so far is written or dropped (tests use this)."""
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._write(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("writing event %s failed", event.reason)
            finally:
                self._queue.task_done()

    async def _write(self, event: core.Event) -> None:
        ref = event.involved_object
        if not self._allowed(ref):
            self.dropped += 1
            log.debug("event %s for %s/%s dropped by the rate limit", event.reason, ref.namespace, ref.name)
            return
        self._aggregate(event)
        key = _event_key(event)
        seen = self._written.get(key)
        if seen is not None:
            bumped = core.Event()
            bumped.CopyFrom(seen.event)
            bumped.count = seen.count + 1
            bumped.last_timestamp.CopyFrom(event.last_timestamp)
            bumped.series.count = bumped.count
            bumped.series.last_observed_time.CopyFrom(event.last_timestamp)
            try:
                written = await self._sink.update(bumped)
            except StatusError as exc:
                if exc.reason not in ("NotFound", "Conflict"):
                    log.warning("updating event %s failed: %s", seen.event.metadata.name, exc)
                    return
                # Gone (event TTL) or changed under us: start a fresh one, as Kubernetes does.
                self._written.pop(key, None)
            else:
                self._remember(key, written, bumped.count)
                return
        fresh = core.Event()
        fresh.CopyFrom(event)
        fresh.metadata.name = f"{ref.name or 'event'}.{time.time_ns():x}"
        try:
            written = await self._sink.create(fresh)
        except StatusError as exc:
            log.warning("creating event %s for %s/%s failed: %s", event.reason, ref.namespace, ref.name, exc)
            return
        self._remember(key, written, fresh.count)

    def _allowed(self, ref: core.ObjectReference) -> bool:
        key = (self.component, ref.kind, ref.namespace, ref.name, ref.uid)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _TokenBucket(self._spam_burst, self._spam_qps, self._clock)
            _trim(self._buckets)
        else:
            self._buckets.move_to_end(key)
        return bucket.take()

    def _aggregate(self, event: core.Event) -> None:
        """Rewrites ``event`` into the combined form when too many similar ones differ only by message."""
        ref = event.involved_object
        key = (event.source.component, ref.kind, ref.namespace, ref.name, ref.uid, event.type, event.reason)
        now = self._clock()
        similar = self._similar.get(key)
        if similar is None or now - similar.first_seen > self._aggregate_window:
            similar = self._similar[key] = _Similar(first_seen=now)
            _trim(self._similar)
        similar.messages.add(event.message)
        if len(similar.messages) > self._max_similar:
            event.message = COMBINED_PREFIX + event.message

    def _remember(self, key: tuple[str, ...], written: core.Event, count: int) -> None:
        self._written[key] = _Written(written, count)
        self._written.move_to_end(key)
        _trim(self._written)


def _event_key(event: core.Event) -> tuple[str, ...]:
    ref = event.involved_object
    message = event.message
    if message.startswith(COMBINED_PREFIX):
        message = COMBINED_PREFIX  # every combined message bumps one Event
    return (event.source.component, event.source.host, ref.kind, ref.namespace, ref.name, ref.uid,
            ref.api_version, event.type, event.reason, message)


def _trim(cache: OrderedDict[Any, Any]) -> None:
    while len(cache) > CACHE_SIZE:
        cache.popitem(last=False)
