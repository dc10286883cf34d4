"""EventRecorder: dedup into counts, aggregation, per-object rate limit, never blocking or raising."""

from __future__ import annotations

import asyncio

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.meta.v1 import generated_pb2 as metav1
from kubelite.client.events import NORMAL, WARNING, EventRecorder
from kubelite.machinery import errors


class FakeSink:
    def __init__(self) -> None:
        self.events: dict[str, core.Event] = {}
        self.calls: list[str] = []
        self.fail: errors.StatusError | None = None
        self.gate: asyncio.Event | None = None

    async def create(self, event: core.Event) -> core.Event:
        return await self._write("create", event)

    async def update(self, event: core.Event) -> core.Event:
        if event.metadata.name not in self.events:
            raise errors.not_found("", "events", event.metadata.name)
        return await self._write("update", event)

    async def _write(self, verb: str, event: core.Event) -> core.Event:
        if self.gate is not None:
            await self.gate.wait()
        self.calls.append(verb)
        if self.fail is not None:
            raise self.fail
        self.events[event.metadata.name] = event
        return event


def pod(name: str = "web-1", uid: str = "u1") -> core.Pod:
    return core.Pod(api_version="v1", kind="Pod", metadata=metav1.ObjectMeta(name=name, namespace="ns", uid=uid))


async def recorder(sink: FakeSink, **kwargs: object) -> EventRecorder:
    rec = EventRecorder(sink, "replicaset-controller", **kwargs)  # type: ignore[arg-type]
    rec.start()
    return rec


async def test_an_event_has_kubernetes_shape() -> None:
    sink = FakeSink()
    rec = await recorder(sink)
    rec.event(pod(), NORMAL, "SuccessfulCreate", "Created pod: web-1")
    await rec.flush()
    await rec.stop()
    (event,) = sink.events.values()
    assert event.metadata.namespace == "ns"
    assert event.metadata.name.startswith("web-1.")
    ref = event.involved_object
    assert (ref.kind, ref.name, ref.uid) == ("Pod", "web-1", "u1")
    assert (event.type, event.reason, event.count) == (NORMAL, "SuccessfulCreate", 1)
    assert event.message == "Created pod: web-1"
    assert event.source.component == "replicaset-controller"
    assert event.first_timestamp == event.last_timestamp


async def test_identical_events_bump_count_and_series() -> None:
    sink = FakeSink()
    rec = await recorder(sink)
    for _ in range(3):
        rec.event(pod(), WARNING, "FailedCreate", "quota exceeded")
    rec.event(pod(), WARNING, "FailedCreate", "another message")
    rec.event(pod("web-2", "u2"), WARNING, "FailedCreate", "quota exceeded")
    await rec.flush()
    await rec.stop()
    assert sink.calls == ["create", "update", "update", "create", "create"]
    counts = sorted((e.involved_object.name, e.message, e.count) for e in sink.events.values())
    assert counts == [("web-1", "another message", 1), ("web-1", "quota exceeded", 3), ("web-2", "quota exceeded", 1)]
    bumped = next(e for e in sink.events.values() if e.count == 3)
    assert bumped.series.count == 3 and bumped.HasField("series")


async def test_an_event_gone_from_the_server_is_created_again() -> None:
    sink = FakeSink()
    rec = await recorder(sink)
    rec.event(pod(), NORMAL, "Pulled", "pulled")
    await rec.flush()
    sink.events.clear()  # expired by --event-ttl
    rec.event(pod(), NORMAL, "Pulled", "pulled")
    await rec.flush()
    await rec.stop()
    assert sink.calls == ["create", "create"]
    assert [e.count for e in sink.events.values()] == [1]


async def test_rate_limit_per_object_drops_the_excess() -> None:
    sink = FakeSink()
    rec = await recorder(sink, spam_burst=3, spam_qps=0.0)
    for i in range(5):
        rec.event(pod(), NORMAL, "Reason", f"message {i}")
    rec.event(pod("other", "u9"), NORMAL, "Reason", "message")
    await rec.flush()
    await rec.stop()
    assert len(sink.calls) == 4  # 3 for web-1, 1 for other
    assert rec.dropped == 2


async def test_many_similar_messages_are_combined() -> None:
    sink = FakeSink()
    rec = await recorder(sink, max_similar=2)
    for i in range(5):
        rec.event(pod(), WARNING, "FailedScheduling", f"0/{i} nodes are available")
    await rec.flush()
    await rec.stop()
    combined = [e for e in sink.events.values() if e.message.startswith("(combined from similar events): ")]
    assert len(combined) == 1 and combined[0].count == 3
    assert len(sink.events) == 3


async def test_failures_never_reach_the_caller_and_a_full_queue_drops() -> None:
    sink = FakeSink()
    sink.fail = errors.unavailable("api server down")
    sink.gate = asyncio.Event()
    rec = await recorder(sink, max_queued=2)
    rec.event(pod(), NORMAL, "A", "a")
    await asyncio.sleep(0)  # the writer takes the first and blocks on the gate
    rec.event(pod(), NORMAL, "B", "b")
    rec.event(pod(), NORMAL, "C", "c")
    rec.event(pod(), NORMAL, "D", "d")  # queue full: dropped, not raised
    rec.event(object(), NORMAL, "E", "not an API object")  # logged, not raised
    assert rec.dropped == 1
    sink.gate.set()
    await rec.flush()
    await rec.stop()
    assert sink.calls == ["create", "create", "create"]
