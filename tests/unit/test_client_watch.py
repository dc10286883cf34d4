"""RetryWatcher: exactly-once delivery across API server restarts.

The server side is a real gRPC server over an event log that outlives it, so
stopping and restarting the server on the same port is what an API server
restart looks like to the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.service.v1 import service_pb2 as svc
from kubelite.client import Client, RetryWatcher, WatchEvent, retry_watch
from kubelite.machinery import errors
from kubelite.machinery.kinds import SCHEME
from tests.unit.test_client_grpc import FakeResources, configmap, pack, start_server


class EventLog(FakeResources):
    """A watch that serves every batch after the requested version, then waits for more."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[int, list[svc.WatchEvent]]] = []
        self.changed = asyncio.Condition()
        self.watch_versions: list[str] = []
        self.compacted = 0

    async def publish(self, rv: int, *events: tuple[str, str]) -> None:
        async with self.changed:
            self.batches.append((rv, [svc.WatchEvent(type=t, object=pack(configmap(n, rv=str(rv))))
                                      for t, n in events]))
            self.changed.notify_all()

    async def Watch(self, request: svc.WatchRequest, context: Any) -> AsyncIterator[svc.WatchResponse]:
        self.watch_versions.append(request.resource_version)
        sent = int(request.resource_version)
        if sent < self.compacted:
            err = errors.expired(f"too old resource version: {sent} ({self.compacted})")
            await context.abort(err.grpc_code, err.message, trailing_metadata=err.to_grpc_metadata())
        while True:
            for rv, events in list(self.batches):
                if rv > sent:
                    sent = rv
                    yield svc.WatchResponse(events=events)
            async with self.changed:
                await self.changed.wait()


async def next_events(watcher: RetryWatcher[core.ConfigMap], n: int) -> list[tuple[str, str, str]]:
    out = []
    for _ in range(n):
        event = await asyncio.wait_for(watcher.__anext__(), 20)
        out.append((event.type, event.object.metadata.name, event.resource_version))
    return out


async def test_resumes_from_last_version_after_server_restart() -> None:
    log = EventLog()
    server, port = await start_server(log)
    client = Client(f"127.0.0.1:{port}", scheme=SCHEME, timeout=5)
    watcher = retry_watch(client, core.ConfigMap, "default", resource_version="1")
    try:
        await log.publish(2, ("ADDED", "a"))
        await log.publish(3, ("MODIFIED", "a"), ("ADDED", "b"))
        assert await next_events(watcher, 3) == [("ADDED", "a", "2"), ("MODIFIED", "a", "3"), ("ADDED", "b", "3")]

        await server.stop(None)
        # Written while the server is down: the new server must serve it from version 3.
        await log.publish(4, ("DELETED", "a"))
        server, _ = await start_server(log, port)
        await log.publish(5, ("MODIFIED", "b"))
        await log.publish(6, ("BOOKMARK", ""))
        await log.publish(7, ("ADDED", "c"))

        # Exactly once: nothing from before the restart again, nothing lost, no bookmark.
        assert await next_events(watcher, 3) == [("DELETED", "a", "4"), ("MODIFIED", "b", "5"), ("ADDED", "c", "7")]
        assert watcher.resource_version == "7"
        assert log.watch_versions[0] == "1"
        assert set(log.watch_versions[1:]) == {"3"}
        assert watcher.reconnects >= 1
    finally:
        await watcher.aclose()
        await client.close()
        await server.stop(None)


async def test_expired_is_raised_for_a_relist() -> None:
    log = EventLog()
    log.compacted = 10
    server, port = await start_server(log)
    try:
        async with Client(f"127.0.0.1:{port}", scheme=SCHEME) as client:
            watcher = retry_watch(client, core.ConfigMap, resource_version="3")
            with pytest.raises(errors.StatusError) as info:
                await asyncio.wait_for(watcher.__anext__(), 20)
            assert info.value.reason == "Expired"
    finally:
        await server.stop(None)


@pytest.mark.parametrize("rv", ["", "0"])
def test_needs_a_concrete_resource_version(rv: str) -> None:
    with pytest.raises(ValueError, match="concrete resourceVersion"):
        retry_watch(Client("127.0.0.1:1", scheme=SCHEME), core.ConfigMap, resource_version=rv)


class ScriptedSource:
    """A WatchSource whose streams follow a script: events, then an error or a clean end."""

    def __init__(self, script: list[tuple[list[WatchEvent[core.ConfigMap]], errors.StatusError | None]]) -> None:
        self.script = script
        self.versions: list[str] = []
        self.bookmarks_requested: list[bool] = []

    def watch(self, kind: type[Any], namespace: str = "", /, *, label_selector: str = "",
              field_selector: str = "", resource_version: str = "",
              allow_bookmarks: bool = False) -> AsyncIterator[WatchEvent[core.ConfigMap]]:
        self.versions.append(resource_version)
        self.bookmarks_requested.append(allow_bookmarks)
        events, error = self.script.pop(0) if self.script else ([], errors.unavailable("down"))
        return self._stream(events, error)

    async def _stream(self, events: list[WatchEvent[core.ConfigMap]],
                      error: errors.StatusError | None) -> AsyncIterator[WatchEvent[core.ConfigMap]]:
        for event in events:
            yield event
        if error is not None:
            raise error


def ev(kind: str, name: str, rv: str) -> WatchEvent[core.ConfigMap]:
    return WatchEvent(kind, configmap(name, rv=rv))


async def test_backoff_doubles_to_the_cap_and_resets_after_an_event() -> None:
    down = errors.unavailable("connection refused")
    source = ScriptedSource(
        [([], down)] * 6 + [([ev("ADDED", "a", "5")], errors.StatusError("InternalError", "RST_STREAM")),
                            ([], errors.timeout("deadline")), ([ev("ADDED", "b", "6")], None)]
    )
    sleeps: list[float] = []

    async def fake_sleep(delay: float) -> None:
        sleeps.append(delay)

    watcher: RetryWatcher[core.ConfigMap] = RetryWatcher(source, core.ConfigMap, resource_version="1",
                                                         sleep=fake_sleep)
    assert (await watcher.__anext__()).object.metadata.name == "a"
    assert (await watcher.__anext__()).object.metadata.name == "b"
    await watcher.aclose()
    assert sleeps == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 0.1, 0.2]
    assert source.versions == ["1"] * 7 + ["5", "5"]
    assert all(source.bookmarks_requested)


async def test_clean_end_resumes_at_once_and_bookmarks_advance_silently() -> None:
    source = ScriptedSource([
        ([ev("ADDED", "a", "2"), ev("BOOKMARK", "", "9")], None),
        ([ev("MODIFIED", "a", "10")], errors.forbidden("no")),
    ])
    sleeps: list[float] = []

    async def fake_sleep(delay: float) -> None:
        sleeps.append(delay)

    watcher: RetryWatcher[core.ConfigMap] = RetryWatcher(source, core.ConfigMap, resource_version="1",
                                                         sleep=fake_sleep)
    seen = []
    with pytest.raises(errors.StatusError) as info:
        async for event in watcher:
            seen.append((event.type, event.resource_version))
    assert info.value.reason == "Forbidden"  # not retryable: raised
    assert seen == [("ADDED", "2"), ("MODIFIED", "10")]
    assert source.versions == ["1", "9"]
    assert sleeps == []


async def test_yield_bookmarks_when_asked() -> None:
    source = ScriptedSource([([ev("BOOKMARK", "", "9")], errors.expired("gone"))])
    watcher: RetryWatcher[core.ConfigMap] = RetryWatcher(source, core.ConfigMap, resource_version="1",
                                                         yield_bookmarks=True)
    event = await watcher.__anext__()
    assert (event.type, event.resource_version) == ("BOOKMARK", "9")
    with pytest.raises(errors.StatusError):
        await watcher.__anext__()

