"""EtcdWatchStream's handling of its gRPC call, against a fake Watch stub.

The integration suite covers resumption on a real cluster; these tests pin
what it cannot time on demand: a close() or a cancellation that lands while
the stream is still being opened.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kubelite.storage.etcd import EtcdStorage


class FakeWatchCall:
    """A Watch call whose first write (the create request) blocks until released."""

    def __init__(self, writing: asyncio.Event) -> None:
        self.release = asyncio.Event()
        self.writing = writing
        self.cancelled = False

    async def write(self, request: Any) -> None:
        self.writing.set()
        await self.release.wait()

    def cancel(self) -> bool:
        self.cancelled = True
        return True


class FakeWatchMember:
    def __init__(self) -> None:
        self.endpoint = "fake:2379"
        self.calls: list[FakeWatchCall] = []
        self.writing = asyncio.Event()  # some call is writing its create request
        self.watchstub = self

    def Watch(self, metadata: Any = None) -> FakeWatchCall:
        self.calls.append(FakeWatchCall(self.writing))
        return self.calls[-1]

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None


@pytest.fixture
async def fake() -> Any:
    storage = EtcdStorage(["127.0.0.1:1"])
    member = FakeWatchMember()
    storage._members = [member]  # type: ignore[list-item]
    yield storage, member
    await storage.close()


async def first_write(member: FakeWatchMember) -> FakeWatchCall:
    await member.writing.wait()
    return member.calls[0]


async def test_close_while_opening_ends_the_etcd_watch(fake: Any) -> None:
    storage, member = fake
    watch = storage.watch("/p/", start_revision=5)
    reader = asyncio.create_task(anext(aiter(watch)))
    call = await asyncio.wait_for(first_write(member), 1)
    await watch.close()  # from another task, while the create request is being written
    call.release.set()
    with pytest.raises(StopAsyncIteration):
        await reader
    assert call.cancelled


async def test_cancelled_while_opening_ends_the_etcd_watch(fake: Any) -> None:
    storage, member = fake
    watch = storage.watch("/p/", start_revision=5)
    reader = asyncio.create_task(anext(aiter(watch)))
    call = await asyncio.wait_for(first_write(member), 1)
    reader.cancel()  # the consumer's task is shut down mid-open
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert call.cancelled


async def test_an_event_behind_reported_progress_is_a_gap_not_a_silent_drop() -> None:
    """etcd < 3.4.25 may report progress ahead of events; a late event must make the consumer relist."""
    from aetcd.rpc import kv_pb2

    from kubelite.storage.etcd import EtcdWatchStream
    from kubelite.storage.interface import WatchGapError

    storage = EtcdStorage(["127.0.0.1:1"])
    stream = EtcdWatchStream(storage, "/p/", start_revision=3)
    stream._progress(4)  # progress to 4 was reported (judged true) ...
    late = kv_pb2.Event(type=kv_pb2.Event.PUT, kv=kv_pb2.KeyValue(key=b"/p/tmp", value=b"v", create_revision=3,
                                                                    mod_revision=3))
    with pytest.raises(WatchGapError) as err:  # ... then the event at 3 arrives
        stream._take_events([late])
    assert (err.value.revision, err.value.reported) == (3, 4)
    await storage.close()
