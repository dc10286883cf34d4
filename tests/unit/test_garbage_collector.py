"""Garbage collector over fake caches: background, foreground, orphan, dangling references."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.controller import InstrumentedQueue
from kubelite.client.workqueue import ItemExponentialFailureRateLimiter, process_next_item
from kubelite.controllers.garbagecollector import GarbageCollector
from kubelite.machinery.kinds import SCHEME
from tests.unit.fakes_controllers import FakeWriter, pod, replicaset


class FakeStore:
    def __init__(self) -> None:
        self.items: dict[str, Any] = {}

    def get_by_key(self, key: str) -> Any:
        return self.items.get(key)


class FakeInformer:
    def __init__(self) -> None:
        self.store = FakeStore()

    def add_handler(self, *args: Any) -> None:
        pass


class Harness:
    def __init__(self) -> None:
        self.informers = {"Pod": FakeInformer(), "ReplicaSet": FakeInformer(), "Deployment": FakeInformer()}
        self.writer = FakeWriter()
        queue: InstrumentedQueue[str] = InstrumentedQueue("gc", ItemExponentialFailureRateLimiter(0.001, 0.01),
                                                          registry=CollectorRegistry())
        self.gc = GarbageCollector(self.informers, self.writer, SCHEME, queue=queue)  # type: ignore[arg-type]

    def add(self, obj: Any) -> Any:
        name = type(obj).DESCRIPTOR.name
        self.informers[name].store.items[f"{obj.metadata.namespace}/{obj.metadata.name}"] = obj
        self.writer.put(obj)
        self.gc.on_add(obj)
        return obj

    def remove(self, obj: Any) -> None:
        name = type(obj).DESCRIPTOR.name
        self.informers[name].store.items.pop(f"{obj.metadata.namespace}/{obj.metadata.name}", None)
        self.writer.objects.pop((type(obj), obj.metadata.namespace, obj.metadata.name), None)
        self.gc.on_delete(obj)

    async def drain(self) -> None:
        while len(self.gc.queue):
            assert await process_next_item(self.gc.queue, self.gc.sync)


def owned_pod(name: str, owner: Any, block: bool = True) -> core.Pod:
    p = pod(name, {"app": "web"}, owner)
    p.metadata.owner_references[0].block_owner_deletion = block
    return p


async def test_background_deletes_dependents_whose_owner_is_gone() -> None:
    h = Harness()
    rs = h.add(replicaset("web", 2, {"app": "web"}))
    h.add(owned_pod("a", rs))
    h.add(owned_pod("b", rs))
    await h.drain()
    assert h.writer.deleted == []  # the owner exists: nothing to do
    h.remove(rs)
    await h.drain()
    assert sorted(name for _, _, name, _ in h.writer.deleted) == ["a", "b"]
    assert {policy for *_, policy in h.writer.deleted} == {"Background"}


async def test_cache_lag_is_checked_with_a_live_read() -> None:
    h = Harness()
    rs = replicaset("web", 1, {"app": "web"})
    h.writer.put(rs)  # exists on the server, not yet in the cache
    h.add(owned_pod("a", rs))
    await h.drain()
    assert h.writer.deleted == []


async def test_an_owner_of_the_same_name_but_another_uid_is_absent() -> None:
    h = Harness()
    old = replicaset("web", 1, {"app": "web"})
    h.writer.put(replicaset("web", 1, {"app": "web"}))  # re-created: new uid
    h.add(owned_pod("a", old))
    await h.drain()
    assert [name for _, _, name, _ in h.writer.deleted] == ["a"]


async def test_dangling_reference_is_removed_when_another_owner_lives() -> None:
    h = Harness()
    alive = h.add(replicaset("alive", 1, {"app": "web"}))
    gone = replicaset("gone", 1, {"app": "web"})
    p = owned_pod("a", alive)
    p.metadata.owner_references.add(api_version="apps/v1", kind="ReplicaSet", name="gone", uid=gone.metadata.uid)
    h.add(p)
    await h.drain()
    ((_, name, patch),) = h.writer.patches
    assert name == "a"
    assert [r["uid"] for r in patch["metadata"]["ownerReferences"]] == [alive.metadata.uid]
    assert patch["metadata"]["resourceVersion"] == p.metadata.resource_version
    assert h.writer.deleted == []


async def test_orphan_removes_references_then_the_finalizer() -> None:
    h = Harness()
    rs = replicaset("web", 1, {"app": "web"})
    rs.metadata.deletion_timestamp.seconds = 5
    rs.metadata.finalizers.append("orphan")
    h.add(rs)
    h.add(owned_pod("a", rs))
    await h.drain()
    assert [(name, patch["metadata"]["ownerReferences"]) for _, name, patch in h.writer.patches] == [("a", [])]
    (updated,) = h.writer.updates
    assert list(updated.metadata.finalizers) == []
    assert h.writer.deleted == []


async def test_foreground_deletes_dependents_then_releases_the_owner() -> None:
    h = Harness()
    d = apps.Deployment(api_version="apps/v1", kind="Deployment")
    d.metadata.name = "web"
    d.metadata.namespace = "ns"
    d.metadata.uid = "d-uid"
    d.metadata.resource_version = "3"
    d.metadata.deletion_timestamp.seconds = 5
    d.metadata.finalizers.append("foregroundDeletion")
    rs = replicaset("web-1", 1, {"app": "web"})
    rs.metadata.owner_references.add(api_version="apps/v1", kind="Deployment", name="web", uid="d-uid",
                                     controller=True, block_owner_deletion=True)
    h.add(d)
    h.add(rs)
    h.add(owned_pod("a", rs))
    await h.drain()
    # The ReplicaSet has dependents itself: deleted in foreground too. The Deployment waits.
    assert ("ReplicaSet", "ns", "web-1", "Foreground") in h.writer.deleted
    assert h.writer.updates == []
    h.remove(rs)
    await h.drain()
    (updated,) = h.writer.updates
    assert updated.metadata.name == "web" and list(updated.metadata.finalizers) == []


async def test_non_blocking_dependents_do_not_hold_a_foreground_owner() -> None:
    h = Harness()
    rs = replicaset("web", 1, {"app": "web"})
    rs.metadata.deletion_timestamp.seconds = 5
    rs.metadata.finalizers.append("foregroundDeletion")
    h.add(rs)
    h.add(owned_pod("a", rs, block=False))
    await h.drain()
    assert ("Pod", "ns", "a", "Background") in h.writer.deleted
    assert len(h.writer.updates) == 1
