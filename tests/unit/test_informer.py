"""Informer against a fake ListerWatcher: store contents and the deltas handlers see."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.meta.v1 import generated_pb2 as metav1
from kubelite.client import (
    DeletedFinalStateUnknown,
    Informer,
    ObjectList,
    Store,
    WatchEvent,
    meta_namespace_key,
    split_key,
)
from kubelite.machinery import errors


def cm(name: str, rv: str, namespace: str = "default", **data: str) -> core.ConfigMap:
    return core.ConfigMap(metadata=metav1.ObjectMeta(name=name, namespace=namespace, resource_version=rv),
                          data=data)


_END = object()


class FakeListerWatcher:
    """Lists return queued results; each watch stream plays what the test pushes into it."""

    def __init__(self, *lists: ObjectList[core.ConfigMap] | errors.StatusError) -> None:
        self.lists = list(lists)
        self.list_calls = 0
        self.watch_versions: list[str] = []
        self.streams: asyncio.Queue[asyncio.Queue[Any]] = asyncio.Queue()

    async def list(self) -> ObjectList[core.ConfigMap]:
        self.list_calls += 1
        result = self.lists.pop(0)
        if isinstance(result, errors.StatusError):
            raise result
        return result

    def watch(self, resource_version: str) -> AsyncIterator[WatchEvent[core.ConfigMap]]:
        self.watch_versions.append(resource_version)
        feed: asyncio.Queue[Any] = asyncio.Queue()
        self.streams.put_nowait(feed)
        return self._stream(feed)

    async def _stream(self, feed: asyncio.Queue[Any]) -> AsyncIterator[WatchEvent[core.ConfigMap]]:
        while True:
            item = await feed.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def next_stream(self) -> asyncio.Queue[Any]:
        return await asyncio.wait_for(self.streams.get(), 5)


class Recorder:
    def __init__(self, informer: Informer[core.ConfigMap]) -> None:
        self.informer = informer
        self.events: list[tuple[str, ...]] = []
        self.changed = asyncio.Event()

    def on_add(self, obj: core.ConfigMap) -> None:
        self._record("add", obj.metadata.name, obj.metadata.resource_version)

    def on_update(self, old: core.ConfigMap, new: core.ConfigMap) -> None:
        self._record("update", new.metadata.name, old.metadata.resource_version, new.metadata.resource_version)

    def on_delete(self, obj: core.ConfigMap | DeletedFinalStateUnknown) -> None:
        if isinstance(obj, DeletedFinalStateUnknown):
            self._record("tombstone", obj.key, obj.obj.metadata.resource_version)
        else:
            self._record("delete", obj.metadata.name, obj.metadata.resource_version)

    def _record(self, *event: str) -> None:
        self.events.append(event)
        self.changed.set()

    async def wait_for(self, n: int) -> list[tuple[str, ...]]:
        async def enough() -> None:
            while len(self.events) < n:
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(enough(), 5)
        return self.events


async def running(informer: Informer[Any]) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(informer.run(), name="test-informer")


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


def new_informer(lw: FakeListerWatcher, **kwargs: Any) -> tuple[Informer[core.ConfigMap], Recorder]:
    informer: Informer[core.ConfigMap] = Informer(lw, core.ConfigMap, initial_backoff=0.001, max_backoff=0.01,
                                                  **kwargs)
    rec = Recorder(informer)
    informer.add_handler(rec.on_add, rec.on_update, rec.on_delete)
    return informer, rec


def test_keys() -> None:
    assert meta_namespace_key(cm("a", "1", namespace="ns")) == "ns/a"
    assert meta_namespace_key(core.Node(metadata=metav1.ObjectMeta(name="n1"))) == "n1"
    assert split_key("ns/a") == ("ns", "a")
    assert split_key("n1") == ("", "n1")


async def test_initial_list_fires_adds_and_syncs() -> None:
    lw = FakeListerWatcher(ObjectList([cm("a", "1"), cm("b", "2")], "10"))
    informer, rec = new_informer(lw)
    task = await running(informer)
    try:
        await asyncio.wait_for(informer.wait_for_sync(), 5)
        assert informer.has_synced
        assert rec.events == [("add", "a", "1"), ("add", "b", "2")]
        assert sorted(informer.store.keys()) == ["default/a", "default/b"]
        assert informer.last_sync_resource_version == "10"
        await lw.next_stream()
        assert lw.watch_versions == ["10"]
    finally:
        await stop(task)


async def test_watch_events_update_store_and_handlers_see_it() -> None:
    lw = FakeListerWatcher(ObjectList([cm("a", "1")], "10"))
    informer: Informer[core.ConfigMap] = Informer(lw, core.ConfigMap)
    seen: list[tuple[str, str | None]] = []
    all_seen = asyncio.Event()

    def rv_in_store(name: str) -> str | None:
        obj = informer.store.get(f"default/{name}")
        return None if obj is None else obj.metadata.resource_version

    async def on_add(obj: core.ConfigMap) -> None:  # async handlers are awaited
        seen.append(("add", rv_in_store(obj.metadata.name)))

    def on_update(old: core.ConfigMap, new: core.ConfigMap) -> None:
        seen.append(("update", rv_in_store(new.metadata.name)))

    def on_delete(obj: core.ConfigMap) -> None:
        seen.append(("delete", rv_in_store(obj.metadata.name)))
        all_seen.set()

    informer.add_handler(on_add, on_update, on_delete)
    task = await running(informer)
    try:
        stream = await lw.next_stream()
        for event in [WatchEvent("ADDED", cm("b", "11")), WatchEvent("MODIFIED", cm("a", "12", x="y")),
                      WatchEvent("BOOKMARK", cm("", "13")), WatchEvent("DELETED", cm("b", "14"))]:
            stream.put_nowait(event)
        await asyncio.wait_for(all_seen.wait(), 5)
        assert seen == [("add", "1"), ("add", "11"), ("update", "12"), ("delete", None)]
        assert informer.store.keys() == ["default/a"]
        a = informer.store.get_by_key("default/a")
        assert a is not None and dict(a.data) == {"x": "y"}
        assert informer.last_sync_resource_version == "14"
    finally:
        await stop(task)


async def test_expired_relists_and_delivers_the_differences() -> None:
    lw = FakeListerWatcher(
        ObjectList([cm("a", "1"), cm("b", "1"), cm("c", "1")], "10"),
        ObjectList([cm("a", "11"), cm("b", "15"), cm("d", "15")], "30"),
    )
    informer, rec = new_informer(lw)
    task = await running(informer)
    try:
        stream = await lw.next_stream()
        stream.put_nowait(WatchEvent("MODIFIED", cm("a", "11")))
        await rec.wait_for(4)
        stream.put_nowait(errors.expired("too old resource version: 11 (25)"))
        await lw.next_stream()
        events = await rec.wait_for(7)
        # a is unchanged since the watch saw it; b changed, d is new, c vanished while we were away:
        # its deletion comes as a tombstone holding the last state cached.
        assert events[4:] == [("update", "b", "1", "15"), ("add", "d", "15"), ("tombstone", "default/c", "1")]
        assert sorted(informer.store.keys()) == ["default/a", "default/b", "default/d"]
        assert lw.list_calls == 2
        assert lw.watch_versions == ["10", "30"]
    finally:
        await stop(task)


async def test_other_watch_errors_resume_from_the_last_version() -> None:
    lw = FakeListerWatcher(ObjectList([], "10"))
    informer, rec = new_informer(lw)
    task = await running(informer)
    try:
        stream = await lw.next_stream()
        stream.put_nowait(WatchEvent("ADDED", cm("a", "12")))
        stream.put_nowait(errors.unavailable("connection reset"))
        stream = await lw.next_stream()
        stream.put_nowait(WatchEvent("BOOKMARK", cm("", "15")))
        stream.put_nowait(_END)  # a clean end resumes too
        stream = await lw.next_stream()
        stream.put_nowait(WatchEvent("ADDED", cm("b", "16")))
        assert await rec.wait_for(2) == [("add", "a", "12"), ("add", "b", "16")]
        assert lw.watch_versions == ["10", "12", "15"]
        assert lw.list_calls == 1  # no relist for a transport failure
    finally:
        await stop(task)


async def test_list_failures_are_retried() -> None:
    lw = FakeListerWatcher(errors.unavailable("down"), errors.unavailable("down"), ObjectList([cm("a", "1")], "5"))
    informer, rec = new_informer(lw)
    task = await running(informer)
    try:
        await asyncio.wait_for(informer.wait_for_sync(), 5)
        assert rec.events == [("add", "a", "1")]
        assert lw.list_calls == 3
    finally:
        await stop(task)


async def test_resync_redelivers_every_object_as_update() -> None:
    lw = FakeListerWatcher(ObjectList([cm("a", "1"), cm("b", "2")], "10"))
    informer, rec = new_informer(lw, resync_period=0.01)
    task = await running(informer)
    try:
        events = await rec.wait_for(6)
        assert events[:2] == [("add", "a", "1"), ("add", "b", "2")]
        assert set(events[2:6]) == {("update", "a", "1", "1"), ("update", "b", "2", "2")}
    finally:
        await stop(task)
    # The resync task is owned by run(): cancelling run() leaves no task behind.
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("informer-resync")]


async def test_failing_handler_does_not_stop_the_informer() -> None:
    lw = FakeListerWatcher(ObjectList([cm("a", "1")], "10"))
    informer, rec = new_informer(lw)

    def broken(obj: core.ConfigMap) -> None:
        raise RuntimeError("handler bug")

    informer.add_handler(on_add=broken)
    # Registered before `broken`, `rec` still sees everything after it.
    task = await running(informer)
    try:
        stream = await lw.next_stream()
        stream.put_nowait(WatchEvent("ADDED", cm("b", "11")))
        assert await rec.wait_for(2) == [("add", "a", "1"), ("add", "b", "11")]
    finally:
        await stop(task)


async def test_handlers_must_be_added_before_run() -> None:
    lw = FakeListerWatcher(ObjectList([], "1"))
    informer, _ = new_informer(lw)
    task = await running(informer)
    try:
        await informer.wait_for_sync()
        with pytest.raises(RuntimeError):
            informer.add_handler(on_add=lambda obj: None)
    finally:
        await stop(task)


def pod(name: str, node: str, rv: str = "1") -> core.Pod:
    return core.Pod(metadata=metav1.ObjectMeta(name=name, namespace="default", resource_version=rv),
                    spec=core.PodSpec(node_name=node))


def test_store_index_follows_updates_and_deletes() -> None:
    store: Store[core.Pod] = Store()
    store._put(pod("p1", "n1"))
    by_node: Callable[[core.Pod], list[str]] = lambda p: [p.spec.node_name] if p.spec.node_name else []  # noqa: E731
    store.add_index("node", by_node)  # indexes what is already there
    store._put(pod("p2", "n1"))
    store._put(pod("p3", ""))
    assert [p.metadata.name for p in store.by_index("node", "n1")] == ["p1", "p2"]
    store._put(pod("p2", "n2", rv="2"))
    assert store.index_keys("node", "n1") == ["default/p1"]
    assert store.index_keys("node", "n2") == ["default/p2"]
    store._delete("default/p1")
    assert store.by_index("node", "n1") == []
    store._replace([pod("p9", "n1")])
    assert store.index_keys("node", "n1") == ["default/p9"]
    assert store.index_keys("node", "n2") == []
    with pytest.raises(KeyError):
        store.by_index("missing", "x")


async def test_informer_index_by_node_name() -> None:
    pods = ObjectList([pod("p1", "n1"), pod("p2", "n2")], "5")

    class PodLW:
        async def list(self) -> ObjectList[core.Pod]:
            return pods

        async def watch(self, resource_version: str) -> AsyncIterator[WatchEvent[core.Pod]]:
            yield WatchEvent("MODIFIED", pod("p2", "n1", rv="6"))
            await asyncio.Event().wait()

    informer: Informer[core.Pod] = Informer(PodLW(), core.Pod)
    informer.add_index("nodeName", lambda p: [p.spec.node_name])
    bound = asyncio.Event()
    informer.add_handler(on_update=lambda old, new: bound.set())
    task = await running(informer)
    try:
        await asyncio.wait_for(bound.wait(), 5)
        assert [p.metadata.name for p in informer.by_index("nodeName", "n1")] == ["p1", "p2"]
        assert informer.by_index("nodeName", "n2") == []
    finally:
        await stop(task)



