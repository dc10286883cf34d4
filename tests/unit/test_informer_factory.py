"""SharedInformerFactory: one list+watch per kind however many consumers, listers, owned tasks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client import DeletedFinalStateUnknown, ObjectList, SharedInformerFactory, WatchEvent, deleted_object
from kubelite.machinery import errors
from kubelite.machinery.selectors import parse_label_selector
from tests.unit.test_informer import FakeListerWatcher, cm


def factory_with(sources: dict[type[Any], FakeListerWatcher]) -> tuple[SharedInformerFactory, list[type[Any]]]:
    built: list[type[Any]] = []

    def source_for(kind: type[Any], namespace: str, label_selector: str, field_selector: str) -> FakeListerWatcher:
        built.append(kind)
        return sources[kind]

    return SharedInformerFactory(source_for=source_for), built


async def test_two_consumers_of_one_kind_share_one_list_and_watch() -> None:
    lw = FakeListerWatcher(ObjectList([cm("a", "1", app="web")], "10"))
    factory, built = factory_with({core.ConfigMap: lw})
    first = factory.informer_for(core.ConfigMap)
    second = factory.informer_for(core.ConfigMap)
    assert first is second
    seen: dict[str, list[str]] = {"one": [], "two": []}
    first.add_handler(on_add=lambda obj: seen["one"].append(obj.metadata.name))
    second.add_handler(on_add=lambda obj: seen["two"].append(obj.metadata.name))
    factory.start()
    factory.start()  # idempotent: an informer runs once
    try:
        synced = await factory.wait_for_cache_sync(timeout=5)
        assert synced == {core.ConfigMap: True}
        assert seen == {"one": ["a"], "two": ["a"]}
        assert built == [core.ConfigMap]
        assert lw.list_calls == 1
        await lw.next_stream()
        assert lw.streams.empty()  # one watch only
    finally:
        await factory.shutdown()
    assert all(t.done() for t in factory._tasks.values())


async def test_lister_reads_by_namespace_and_selector() -> None:
    lw = FakeListerWatcher(ObjectList([cm("a", "1", "ns1"), cm("b", "2", "ns2"), cm("c", "3", "ns1")], "10"))
    factory, _ = factory_with({core.ConfigMap: lw})
    lister = factory.lister_for(core.ConfigMap)
    informer = factory.informer_for(core.ConfigMap)
    factory.start()
    try:
        await factory.wait_for_cache_sync(timeout=5)
        assert lister.has_synced
        assert sorted(o.metadata.name for o in lister.list("ns1")) == ["a", "c"]
        assert len(lister.list()) == 3
        assert lister.get("ns2", "b") is informer.store.get_by_key("ns2/b")
        assert lister.get("ns2", "a") is None
        # Labels: ConfigMap data is not labels; add a labelled one through the watch.
        stream = await lw.next_stream()
        labelled = cm("d", "11", "ns1")
        labelled.metadata.labels["app"] = "web"
        stream.put_nowait(WatchEvent("ADDED", labelled))
        for _ in range(100):
            if lister.get("ns1", "d") is not None:
                break
            await asyncio.sleep(0.01)
        assert [o.metadata.name for o in lister.list("ns1", parse_label_selector("app=web"))] == ["d"]
    finally:
        await factory.shutdown()


async def test_relist_deletion_arrives_as_a_tombstone() -> None:
    lw = FakeListerWatcher(ObjectList([cm("a", "1"), cm("b", "2")], "10"), ObjectList([cm("a", "1")], "20"))
    factory, _ = factory_with({core.ConfigMap: lw})
    informer = factory.informer_for(core.ConfigMap)
    deleted: list[Any] = []
    got = asyncio.Event()

    def on_delete(obj: Any) -> None:
        deleted.append(obj)
        got.set()

    informer.add_handler(on_delete=on_delete)
    factory.start()
    try:
        stream = await lw.next_stream()
        stream.put_nowait(errors.expired("too old"))
        await asyncio.wait_for(got.wait(), 5)
        assert isinstance(deleted[0], DeletedFinalStateUnknown)
        assert deleted[0].key == "default/b"
        assert deleted_object(deleted[0]).metadata.resource_version == "2"
        assert deleted_object(cm("x", "1")).metadata.name == "x"
    finally:
        await factory.shutdown()


async def test_wait_for_cache_sync_times_out_when_list_never_answers() -> None:
    lw = FakeListerWatcher(errors.unavailable("down"), errors.unavailable("down"), errors.unavailable("down"),
                           errors.unavailable("down"), errors.unavailable("down"), errors.unavailable("down"))
    factory, _ = factory_with({core.ConfigMap: lw})
    factory.informer_for(core.ConfigMap)
    factory.start()
    try:
        assert await factory.wait_for_cache_sync(timeout=0.05) == {core.ConfigMap: False}
    finally:
        await factory.shutdown()


async def test_start_after_shutdown_is_an_error() -> None:
    factory, _ = factory_with({})
    await factory.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        factory.start()


def test_factory_needs_a_source() -> None:
    with pytest.raises(ValueError, match="client or a source_for"):
        SharedInformerFactory()
