"""Events about pods and the node (Pulling, Started, BackOff, Killing, ...).

Recording an event must never slow a pod sync or fail it: ``record`` only
appends to a bounded queue, and one owned task writes the events to the API
server. Repeats of the same (object, reason, message) within a short window
bump the count of the first Event instead of creating another, as Kubernetes'
event correlator does, so a crash-looping pod does not flood etcd.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass

from google.protobuf.message import Message

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.machinery.errors import StatusError

log = logging.getLogger(__name__)
MAX_QUEUED = 1000
# Same object, reason and message within this window -> one Event with a count.
AGGREGATE_SECONDS = 600.0


@dataclass(frozen=True)
class _Pending:
    ref: core.ObjectReference
    type: str
    reason: str
    message: str
    at: float


def pod_ref(pod: core.Pod, field_path: str = "") -> core.ObjectReference:
    return core.ObjectReference(kind="Pod", namespace=pod.metadata.namespace, name=pod.metadata.name,
                                uid=pod.metadata.uid, api_version="v1", field_path=field_path)


class EventRecorder:
    def __init__(self, client: Client, component: str, host: str) -> None:
        self._client = client
        self._source = core.EventSource(component=component, host=host)
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(MAX_QUEUED)
        # (uid, reason, message) -> (event name, namespace, count, first seen)
        self._seen: dict[tuple[str, str, str, str], tuple[str, int, float]] = {}

    def record(self, ref: core.ObjectReference, type_: str, reason: str, message: str) -> None:
        log.info("event %s %s/%s %s: %s", type_, ref.namespace, ref.name, reason, message)
        with contextlib.suppress(asyncio.QueueFull):  # under a storm, dropping events beats blocking syncs
            self._queue.put_nowait(_Pending(ref, type_, reason, message, time.time()))

    async def run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._write(item)
            except StatusError as exc:
                log.warning("could not write event %s for %s/%s: %s", item.reason, item.ref.namespace,
                            item.ref.name, exc)

    async def _write(self, item: _Pending) -> None:
        key = (item.ref.uid, item.ref.field_path, item.reason, item.message)
        seen = self._seen.get(key)
        ns = item.ref.namespace or "default"
        if seen is not None and item.at - seen[2] < AGGREGATE_SECONDS:
            name, count, first = seen
            try:
                ev = await self._client.get(core.Event, name, ns)
                ev.count = count + 1
                _stamp(ev, "last_timestamp", item.at)
                await self._client.update(ev)
                self._seen[key] = (name, count + 1, first)
                return
            except StatusError:
                pass  # gone (TTL) or conflicting: write a new one
        ev = core.Event(api_version="v1", kind="Event", involved_object=item.ref, reason=item.reason,
                        message=item.message, source=self._source, count=1, type=item.type,
                        reporting_component=self._source.component, reporting_instance=self._source.host)
        ev.metadata.name = f"{item.ref.name}.{secrets.token_hex(8)}"
        ev.metadata.namespace = ns
        _stamp(ev, "first_timestamp", item.at)
        _stamp(ev, "last_timestamp", item.at)
        _stamp(ev, "event_time", item.at)
        created = await self._client.create(ev)
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[key] = (created.metadata.name, 1, item.at)


def _stamp(msg: Message, field: str, at: float) -> None:
    ts = getattr(msg, field)
    ts.seconds = int(at)
    ts.nanos = int((at - int(at)) * 1e9) // 1000 * 1000
