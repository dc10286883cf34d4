"""The watch cache, and the store's list and watch paths over it, driven through FakeStorage.

Each test asserts the exact items a watcher's queue holds, written as plain
data: ``[(type, "namespace/name", revision), ...]`` for one revision's events,
an int for a bookmark, None for the end of the stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest

from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.apiserver import watchcache
from kubelite.apiserver.health import StorageHealth
from kubelite.apiserver.pipeline import Admission, Attributes, UserInfo
from kubelite.apiserver.registry.strategy import Strategy
from kubelite.apiserver.store import ResourceStore, WatchChunk
from kubelite.apiserver.watchcache import CacheWatcher, Filter, OutOfWindow, WatchCache, WatchItem
from kubelite.machinery import errors
from kubelite.machinery.kinds import CONFIGMAPS, PODS
from kubelite.machinery.selectors import parse_field_selector, parse_label_selector
from kubelite.storage.interface import CompactedError, Storage, UnavailableError
from tests.unit.fakes_storage import FakeStorage, FakeWatchStream
from tests.unit.test_registry_helpers import load, strategy

PREFIX = "/registry/pods/"
ELSEWHERE = "/registry/services/default/other"  # a key no pod watch sees
USER = UserInfo("admin")
Seen = list[tuple[str, str, int]] | int | None


# --- helpers -----------------------------------------------------------------

def pod(name: str, namespace: str = "default", labels: dict[str, str] | None = None, node: str = "") -> bytes:
    """A pod as storage holds it (no resourceVersion)."""
    p = core_v1.Pod()
    p.metadata.name = name
    p.metadata.namespace = namespace
    p.metadata.labels.update(labels or {})
    p.spec.node_name = node
    return p.SerializeToString(deterministic=True)


def key(name: str, namespace: str = "default") -> str:
    return f"{PREFIX}{namespace}/{name}"


def seen(item: WatchItem) -> Seen:
    """A watcher's queue item as plain data."""
    if item is None or isinstance(item, int):
        return item
    return [(t, co.key.removeprefix(PREFIX), co.revision) for t, co in item]


def drain(w: CacheWatcher) -> list[Seen]:
    """Everything queued for a watcher right now, without waiting."""
    out: list[Seen] = []
    while not w.queue.empty():
        out.append(seen(w.queue.get_nowait()))
    return out


def labels(selector: str) -> Filter:
    return Filter(labels=parse_label_selector(selector))


# FakeStorage does no I/O: a few turns of the event loop let every task finish its work.
LOOP_TURNS = 100


async def caught_up(cache: WatchCache, revision: int) -> None:
    """Turns the event loop until the cache has applied ``revision``."""
    for _ in range(LOOP_TURNS):
        if cache.revision >= revision:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"the cache is at {cache.revision}, not {revision}")


async def cache_stream(storage: FakeStorage) -> FakeWatchStream:
    """The cache's own etcd watch, once its follower task has opened it."""
    for _ in range(LOOP_TURNS):
        if storage.streams:
            return storage.streams[0]
        await asyncio.sleep(0)
    raise AssertionError("the cache opened no watch")


@asynccontextmanager
async def running(storage: FakeStorage, **options: Any) -> AsyncIterator[WatchCache]:
    """A started pod cache over ``storage``, stopped afterwards."""
    options.setdefault("bookmark_interval", 3600.0)
    cache = WatchCache(strategy(PODS), cast(Storage, storage), PREFIX, PODS.message.FromString, **options)
    await cache.start()
    await asyncio.wait_for(cache.wait_ready(), 1.0)  # the start replays history up to the current revision
    try:
        yield cache
    finally:
        await cache.stop()


# --- list ---------------------------------------------------------------------

async def test_start_lists_and_list_filters_sort_by_key() -> None:
    """start() loads every object at the list revision; list() filters and sorts by key."""
    storage = FakeStorage()
    await storage.create(key("d"), pod("d", labels={"app": "web"}, node="n2"))  # 2
    await storage.create(key("c", "kube-system"), pod("c", "kube-system", {"app": "web"}))  # 3
    await storage.create(key("a"), pod("a", labels={"app": "web"}, node="n1"))  # 4
    await storage.create(key("b"), pod("b", labels={"app": "db"}))  # 5
    await storage.create(ELSEWHERE, b"x")  # 6: not a pod, but the list is read at 6

    def names(result: tuple[list[watchcache.CachedObject], int]) -> tuple[list[str], int]:
        return [co.key.removeprefix(PREFIX) for co in result[0]], result[1]

    async with running(storage) as cache:
        assert cache.ready and cache.revision == 6
        assert names(cache.list(Filter())) == (["default/a", "default/b", "default/d", "kube-system/c"], 6)
        assert names(cache.list(Filter(namespace="default"))) == (["default/a", "default/b", "default/d"], 6)
        assert names(cache.list(labels("app=web"))) == (["default/a", "default/d", "kube-system/c"], 6)
        assert names(cache.list(Filter(fields=parse_field_selector("spec.nodeName=n1")))) == (["default/a"], 6)
        both = Filter("default", parse_label_selector("app in (web)"), parse_field_selector("spec.nodeName!=n1"))
        assert names(cache.list(both)) == (["default/d"], 6)
        a = cache.get(key("a"))
        assert a is not None and a.revision == 4
        # The wire form carries the object's resourceVersion without re-encoding.
        assert PODS.message.FromString(a.wire).metadata.resource_version == "4"  # type: ignore[attr-defined]
        await storage.create(key("0"), pod("0"))  # 7: applied live, last in the cache's dict, first by key
        await caught_up(cache, 7)
        assert names(cache.list(Filter(namespace="default"))) == (["default/0", "default/a", "default/b",
                                                                   "default/d"], 7)


# --- watch ---------------------------------------------------------------------

async def test_watch_from_none_sends_state_in_chunks_then_live(monkeypatch: pytest.MonkeyPatch) -> None:
    """A watch without a revision gets every matching object as ADDED, in INITIAL_CHUNK chunks, then changes."""
    monkeypatch.setattr(watchcache, "INITIAL_CHUNK", 2)
    storage = FakeStorage()
    for name in ("a", "b", "c", "d", "e"):  # 2..6
        await storage.create(key(name), pod(name))
    await storage.create(key("x", "other"), pod("x", "other"))  # 7
    async with running(storage) as cache:
        w = cache.watch(None, Filter(namespace="default"), allow_bookmarks=False)
        await storage.create(key("f"), pod("f"))  # 8
        await storage.update(key("a"), pod("a", labels={"v": "2"}), expected_revision=2)  # 9
        await storage.create(key("y", "other"), pod("y", "other"))  # 10
        await caught_up(cache, 10)
        assert drain(w) == [
            [("ADDED", "default/a", 2), ("ADDED", "default/b", 3)],
            [("ADDED", "default/c", 4), ("ADDED", "default/d", 5)],
            [("ADDED", "default/e", 6)],
            [("ADDED", "default/f", 8)],
            [("MODIFIED", "default/a", 9)],
        ]


async def test_watch_from_revision_replays_history_then_live_without_gap_or_duplicate() -> None:
    """A watch from N gets exactly the revisions after N, one item per revision, then live events."""
    storage = FakeStorage()
    async with running(storage) as cache:
        await cache_stream(storage)
        await storage.create(key("a"), pod("a"))  # 2
        await storage.create(key("b"), pod("b"))  # 3
        await storage.update(key("a"), pod("a", labels={"v": "2"}), expected_revision=2)  # 4
        storage.write_many({key("c"): pod("c"), key("d"): pod("d")}, [key("b")])  # 5: one transaction
        await storage.delete(key("a"))  # 6
        await caught_up(cache, 6)
        # Two writes the cache has not applied yet when the watchers register.
        await storage.create(key("e"), pod("e"))  # 7
        await storage.create(key("f"), pod("f"))  # 8
        assert cache.revision == 6
        from3 = cache.watch(3, Filter(), allow_bookmarks=False)
        from1 = cache.watch(1, Filter(), allow_bookmarks=False)
        from6 = cache.watch(6, Filter(), allow_bookmarks=False)
        with pytest.raises(ValueError):
            cache.watch(7, Filter(), allow_bookmarks=False)  # the store waits for the revision first
        await caught_up(cache, 8)
        live: list[Seen] = [[("ADDED", "default/e", 7)], [("ADDED", "default/f", 8)]]
        after3: list[Seen] = [
            [("MODIFIED", "default/a", 4)],
            [("ADDED", "default/c", 5), ("ADDED", "default/d", 5), ("DELETED", "default/b", 5)],
            [("DELETED", "default/a", 6)],
        ]
        assert drain(from3) == [*after3, *live]
        assert drain(from1) == [[("ADDED", "default/a", 2)], [("ADDED", "default/b", 3)], *after3, *live]
        assert drain(from6) == live


async def test_watch_older_than_history_is_out_of_window() -> None:
    """Starts before the bounded history (or before the initial list) raise OutOfWindow."""
    storage = FakeStorage()
    async with running(storage, history_size=2) as cache:
        for name in ("a", "b", "c", "d"):  # 2..5: the history keeps 4 and 5
            await storage.create(key(name), pod(name))
        await caught_up(cache, 5)
        w = cache.watch(3, Filter(), allow_bookmarks=False)
        assert drain(w) == [[("ADDED", "default/c", 4)], [("ADDED", "default/d", 5)]]
        for too_old in (2, 1):
            with pytest.raises(OutOfWindow):
                cache.watch(too_old, Filter(), allow_bookmarks=False)
    async with running(storage, history_backfill=0) as fresh:  # without backfill: no history before its list
        assert fresh.revision == 5
        assert drain(fresh.watch(5, Filter(), allow_bookmarks=False)) == []
        with pytest.raises(OutOfWindow):
            fresh.watch(4, Filter(), allow_bookmarks=False)
    async with running(storage, history_backfill=2) as fresh:  # lists at 3, replays 4 and 5
        assert fresh.revision == 5
        assert drain(fresh.watch(3, Filter(), allow_bookmarks=False)) == [
            [("ADDED", "default/c", 4)], [("ADDED", "default/d", 5)]]
        with pytest.raises(OutOfWindow):
            fresh.watch(2, Filter(), allow_bookmarks=False)


async def test_start_replays_recent_revisions_into_history_before_it_is_ready() -> None:
    """A starting cache lists history_backfill revisions back and replays them: resuming watchers need no etcd watch."""
    storage = FakeStorage()
    await storage.create(key("a"), pod("a", node="n1"))  # 2
    await storage.create(key("b"), pod("b", node="n2"))  # 3
    await storage.update(key("a"), pod("a", node="n2"), expected_revision=2)  # 4
    await storage.delete(key("b"))  # 5
    await storage.create(ELSEWHERE, b"x")  # 6: only progress tells the cache it is at 6
    cache = WatchCache(strategy(PODS), cast(Storage, storage), PREFIX, PODS.message.FromString,
                       bookmark_interval=3600.0, history_backfill=4)
    await cache.start()  # lists at 2
    try:
        assert not cache.ready and cache.revision == 2
        assert cache.get(key("a")) is None  # a replaying cache is not a source of truth: callers read etcd
        await asyncio.wait_for(cache.wait_ready(), 1.0)
        assert cache.revision == 6 and cache.get(key("a")) is not None
        assert storage.watch_calls == [(PREFIX, 3)]
        n2 = cache.watch(2, on_node("n2"), allow_bookmarks=False)
        assert drain(n2) == [[("ADDED", "default/b", 3)], [("ADDED", "default/a", 4)], [("DELETED", "default/b", 5)]]
        n1 = cache.watch(3, on_node("n1"), allow_bookmarks=False)
        assert drain(n1) == [[("DELETED", "default/a", 4)]]
        with pytest.raises(OutOfWindow):
            cache.watch(1, Filter(), allow_bookmarks=False)
        assert [(co.key, co.revision) for co in cache.list(Filter())[0]] == [(key("a"), 4)]
    finally:
        await cache.stop()


async def test_start_backfill_beyond_compaction_replays_from_the_compaction_point() -> None:
    """A backfill that reaches past etcd's compaction point lists at the compaction point instead."""
    storage = FakeStorage()
    for name in ("a", "b", "c", "d"):  # 2..5
        await storage.create(key(name), pod(name))
    await storage.compact(4)
    async with running(storage, history_backfill=100) as cache:
        assert cache.revision == 5
        assert drain(cache.watch(4, Filter(), allow_bookmarks=False)) == [[("ADDED", "default/d", 5)]]
        with pytest.raises(OutOfWindow):
            cache.watch(3, Filter(), allow_bookmarks=False)
        assert storage.watch_calls == [(PREFIX, 5)]


async def test_selector_transitions_become_added_and_deleted() -> None:
    """Starting to match is ADDED, stopping is DELETED, still matching is MODIFIED; others are hidden."""
    storage = FakeStorage()
    async with running(storage) as cache:
        w = cache.watch(None, labels("app=web"), allow_bookmarks=False)
        await storage.create(key("a"), pod("a", labels={"app": "web"}))  # 2
        await storage.create(key("b"), pod("b", labels={"app": "db"}))  # 3
        await storage.update(key("b"), pod("b", labels={"app": "web"}), expected_revision=3)  # 4
        await storage.update(key("a"), pod("a", labels={"app": "db"}), expected_revision=2)  # 5
        await storage.update(key("b"), pod("b", labels={"app": "web"}, node="n1"), expected_revision=4)  # 6
        await storage.delete(key("a"))  # 7
        await storage.delete(key("b"))  # 8
        await caught_up(cache, 8)
        assert drain(w) == [
            [("ADDED", "default/a", 2)],
            [("ADDED", "default/b", 4)],
            [("DELETED", "default/a", 5)],
            [("MODIFIED", "default/b", 6)],
            [("DELETED", "default/b", 8)],
        ]


async def test_stop_matching_deleted_carries_last_matching_state() -> None:
    """The DELETED for an object leaving a selector shows the state the watcher knew, at the new revision."""
    storage = FakeStorage()
    async with running(storage) as cache:
        w = cache.watch(None, labels("app=web"), allow_bookmarks=False)
        await storage.create(key("a"), pod("a", labels={"app": "web"}))  # 2
        await storage.update(key("a"), pod("a", labels={"app": "db"}), expected_revision=2)  # 3
        await caught_up(cache, 3)
        assert seen(w.queue.get_nowait()) == [("ADDED", "default/a", 2)]
        item = w.queue.get_nowait()
        assert isinstance(item, list) and item[0][0] == "DELETED"
        gone: Any = PODS.message.FromString(item[0][1].wire)
        assert gone.metadata.resource_version == "3"
        assert dict(gone.metadata.labels) == {"app": "web"}


# --- watcher index ---------------------------------------------------------------

def on_node(node: str) -> Filter:
    return Filter(fields=parse_field_selector(f"spec.nodeName={node}"))


@asynccontextmanager
async def counting_filters(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[int]]:
    """Counts Filter.matches calls while the block runs (one element: the count)."""
    count = [0]
    real = Filter.matches

    def matches(self: Filter, co: watchcache.CachedObject) -> bool:
        count[0] += 1
        return real(self, co)

    monkeypatch.setattr(Filter, "matches", matches)
    yield count
    monkeypatch.setattr(Filter, "matches", real)


async def test_pod_event_is_tested_only_against_its_nodes_watchers_and_unindexed_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """1,000 node watchers: an event for a pod on n7 costs the filter checks of n7's watcher and the unindexed one."""
    storage = FakeStorage()
    async with running(storage) as cache:
        await cache_stream(storage)
        nodes = {f"n{i}": cache.watch(None, on_node(f"n{i}"), allow_bookmarks=False) for i in range(1000)}
        everything = cache.watch(None, Filter(), allow_bookmarks=False)
        by_label = cache.watch(None, labels("app=web"), allow_bookmarks=False)
        assert cache.watcher_count == 1002
        async with counting_filters(monkeypatch) as count:
            await storage.create(key("a"), pod("a", labels={"app": "web"}, node="n7"))  # 2
            await caught_up(cache, 2)
            # ADDED: one check per candidate (n7's watcher, the label watcher, the unfiltered one).
            assert count[0] == 3
            count[0] = 0
            await storage.update(key("a"), pod("a", labels={"app": "web"}, node="n7"), expected_revision=2)  # 3
            await caught_up(cache, 3)
            # MODIFIED: new and previous state, for each of the same three candidates.
            assert count[0] == 6
        assert drain(nodes["n7"]) == [[("ADDED", "default/a", 2)], [("MODIFIED", "default/a", 3)]]
        assert drain(everything) == drain(by_label) == [[("ADDED", "default/a", 2)], [("MODIFIED", "default/a", 3)]]
        assert all(drain(w) == [] for name, w in nodes.items() if name != "n7")


async def test_index_follows_node_transitions_and_multi_key_transactions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Binding (unset -> n1), moving (n1 -> n2), a transaction over two nodes and deletion reach the right nodes."""
    storage = FakeStorage()
    async with running(storage) as cache:
        await cache_stream(storage)
        unbound = cache.watch(None, on_node(""), allow_bookmarks=False)  # the scheduler's view
        n1 = cache.watch(None, on_node("n1"), allow_bookmarks=False)
        n2 = cache.watch(None, on_node("n2"), allow_bookmarks=False)
        n3 = cache.watch(None, on_node("n3"), allow_bookmarks=False)
        not_n1 = cache.watch(None, Filter(fields=parse_field_selector("spec.nodeName!=n1")), allow_bookmarks=False)
        await storage.create(key("a"), pod("a"))  # 2
        await storage.update(key("a"), pod("a", node="n1"), expected_revision=2)  # 3: bound
        await storage.update(key("a"), pod("a", node="n2"), expected_revision=3)  # 4: moved
        storage.write_many({key("b"): pod("b", node="n1"), key("c"): pod("c", node="n2")}, [key("a")])  # 5
        await caught_up(cache, 5)
        assert drain(unbound) == [[("ADDED", "default/a", 2)], [("DELETED", "default/a", 3)]]
        assert drain(n1) == [[("ADDED", "default/a", 3)], [("DELETED", "default/a", 4)], [("ADDED", "default/b", 5)]]
        assert drain(n2) == [[("ADDED", "default/a", 4)], [("ADDED", "default/c", 5), ("DELETED", "default/a", 5)]]
        assert drain(n3) == []
        assert drain(not_n1) == [[("ADDED", "default/a", 2)], [("DELETED", "default/a", 3)],
                                 [("ADDED", "default/a", 4)], [("ADDED", "default/c", 5), ("DELETED", "default/a", 5)]]
        # Unwatching removes a watcher from its index slot (and an emptied slot goes).
        for w in (unbound, n1, n2, n3, not_n1):
            cache.unwatch(w)
        assert cache.watcher_count == 0
        async with counting_filters(monkeypatch) as count:
            await storage.create(key("d"), pod("d", node="n1"))  # 6
            await caught_up(cache, 6)
            assert count[0] == 0


async def test_name_selector_is_indexed_for_every_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kubelet's own-Node watch (metadata.name=<node>) is indexed too: other objects never test it."""
    storage = FakeStorage()
    async with running(storage) as cache:
        await cache_stream(storage)
        mine = cache.watch(None, Filter(fields=parse_field_selector("metadata.name=a")), allow_bookmarks=False)
        async with counting_filters(monkeypatch) as count:
            await storage.create(key("b"), pod("b"))  # 2
            await storage.create(key("a"), pod("a"))  # 3
            await caught_up(cache, 3)
            assert count[0] == 1
        assert drain(mine) == [[("ADDED", "default/a", 3)]]


# --- bookmarks, revisions ---------------------------------------------------------------

async def test_bookmarks_follow_progress_only_for_watchers_that_allow_them() -> None:
    """A progress notification advances the cache; only allow_bookmarks watchers get the revision, once."""
    storage = FakeStorage()
    async with running(storage, bookmark_interval=0.01) as cache:
        with_bm = cache.watch(None, Filter(), allow_bookmarks=True)
        without = cache.watch(None, Filter(), allow_bookmarks=False)
        await storage.create(ELSEWHERE, b"x")  # 2: no pod event; only progress tells the cache
        assert await asyncio.wait_for(with_bm.queue.get(), 1.0) == 2
        assert cache.revision == 2
        await asyncio.sleep(0.05)  # several more ticks, no new revision
        assert drain(with_bm) == []
        assert drain(without) == []


async def test_wait_for_revision() -> None:
    """Returns at once when reached, asks etcd for progress when not, times out when it never comes."""
    storage = FakeStorage()
    async with running(storage) as cache:
        stream = await cache_stream(storage)
        await cache.wait_for_revision(1)
        assert stream.progress_requests == 0
        await storage.create(ELSEWHERE, b"x")  # 2
        await cache.wait_for_revision(2, timeout=1.0)
        assert (cache.revision, stream.progress_requests) == (2, 1)
        with pytest.raises(errors.StatusError) as info:
            await cache.wait_for_revision(7, timeout=0.05)
        assert info.value.reason == "Timeout"


# --- slow watchers, compaction ----------------------------------------------------

async def test_slow_watcher_is_closed_and_others_keep_receiving(monkeypatch: pytest.MonkeyPatch) -> None:
    """A watcher whose queue reaches WATCHER_QUEUE_LIMIT ends with None; a reading one sees everything."""
    monkeypatch.setattr(watchcache, "WATCHER_QUEUE_LIMIT", 3)
    storage = FakeStorage()
    async with running(storage) as cache:
        slow = cache.watch(None, Filter(), allow_bookmarks=False)
        fast = cache.watch(None, Filter(), allow_bookmarks=False)
        got: list[Seen] = []
        for i in range(6):  # 2..7
            await storage.create(key(f"p{i}"), pod(f"p{i}"))
            await caught_up(cache, 2 + i)
            got += drain(fast)
        assert got == [[("ADDED", f"default/p{i}", 2 + i)] for i in range(6)]
        assert drain(slow) == [[("ADDED", "default/p0", 2)], [("ADDED", "default/p1", 3)],
                               [("ADDED", "default/p2", 4)], None]
        assert slow.closed and cache.watcher_count == 1


async def test_compacted_cache_stream_relists_and_ends_watchers() -> None:
    """CompactedError on the cache's stream: relist, every watcher ends, the new state is served."""
    storage = FakeStorage()
    await storage.create(key("a"), pod("a"))  # 2
    await storage.create(key("b"), pod("b"))  # 3
    async with running(storage) as cache:
        await cache_stream(storage)
        old = cache.watch(None, Filter(), allow_bookmarks=False)
        # Changes the stream never delivers: only the relist can show them.
        await storage.update(key("a"), pod("a", labels={"v": "2"}), expected_revision=2)  # 4
        await storage.delete(key("b"))  # 5
        await storage.create(key("c"), pod("c"))  # 6
        await storage.compact(6)
        storage.break_watches(CompactedError(4, 6))
        await caught_up(cache, 6)
        assert drain(old) == [[("ADDED", "default/a", 2), ("ADDED", "default/b", 3)], None]
        assert cache.watcher_count == 0
        assert [(co.key, co.revision) for co in cache.list(Filter())[0]] == [(key("a"), 4), (key("c"), 6)]
        with pytest.raises(OutOfWindow):
            cache.watch(5, Filter(), allow_bookmarks=False)
        new = cache.watch(None, Filter(), allow_bookmarks=False)
        await storage.create(key("d"), pod("d"))  # 7: the re-opened stream delivers it
        await caught_up(cache, 7)
        assert drain(new) == [[("ADDED", "default/a", 4), ("ADDED", "default/c", 6)], [("ADDED", "default/d", 7)]]
        # Listed at 1 and replayed 2..3 at start; after the relist at 6, resumed at 7.
        assert storage.watch_calls == [(PREFIX, 2), (PREFIX, 7)]


async def test_relist_wakes_revision_waiters() -> None:
    """A wait_for_revision pending across a relist returns once the relist reaches the revision."""
    storage = FakeStorage()
    async with running(storage) as cache:
        await cache_stream(storage)
        waiter = asyncio.create_task(cache.wait_for_revision(2, timeout=0.3), name="waiter")
        for _ in range(5):  # the waiter's progress request is answered at 1: it keeps waiting
            await asyncio.sleep(0)
        assert not waiter.done()
        await storage.create(ELSEWHERE, b"x")  # 2
        storage.break_watches(CompactedError(2, 0))  # the relist reads the store at 2
        await waiter
        assert cache.revision == 2


def test_cache_refuses_an_empty_history() -> None:
    """Resuming a watch needs at least the latest revision's events; size 0 is refused up front."""
    with pytest.raises(ValueError, match="at least one revision"):
        WatchCache(Strategy(PODS), cast(Storage, FakeStorage()), "/registry/pods/", PODS.message.FromString,
                   history_size=0)


# --- through the ResourceStore -------------------------------------------------------------

def configmap(name: str, **data: str) -> core_v1.ConfigMap:
    return load({"metadata": {"name": name}, "data": data}, core_v1.ConfigMap)


def decoded(wire: bytes) -> tuple[str, str]:
    """(name, resourceVersion) of a configmap in wire form."""
    cm: Any = CONFIGMAPS.message.FromString(wire)
    return cm.metadata.name, cm.metadata.resource_version


def chunk(item: WatchChunk) -> list[tuple[str, str, str]] | int:
    if isinstance(item, int):
        return item
    return [(t, *decoded(wire)) for t, wire in item]


def watch(store: ResourceStore, resource_version: str) -> AsyncGenerator[WatchChunk, None]:
    """store.watch on namespace default."""
    return store.watch("default", "", "", resource_version, allow_bookmarks=False)


def verb(name: str = "", v: str = "create") -> Attributes:
    return Attributes(USER, v, CONFIGMAPS, "default", name)


@asynccontextmanager
async def configmap_store(storage: FakeStorage, start: bool = True, **options: Any) -> AsyncIterator[ResourceStore]:
    """A configmap ResourceStore whose cache runs over ``storage`` (started by the caller if start=False)."""
    options.setdefault("bookmark_interval", 3600.0)

    def cache_factory(store: ResourceStore) -> WatchCache:
        return WatchCache(store.strategy, cast(Storage, storage), store.prefix, store.decode, **options)

    store = ResourceStore(strategy(CONFIGMAPS), cast(Storage, storage), Admission(), cache_factory)
    if start:
        await store.cache.start()
    try:
        yield store
    finally:
        await store.cache.stop()


async def test_store_watch_without_revision_sends_state_then_changes() -> None:
    """store.watch from "" yields ADDED for what exists, then live changes; closing unregisters."""
    storage = FakeStorage()
    async with configmap_store(storage) as store:
        await store.create(verb(), configmap("a"))  # 2
        await store.create(verb(), configmap("b"))  # 3
        await caught_up(store.cache, 3)
        events = watch(store, "")
        assert chunk(await anext(events)) == [("ADDED", "a", "2"), ("ADDED", "b", "3")]
        assert store.cache.watcher_count == 1
        await store.update(verb("a", "update"), configmap("a", k="v"))  # 4
        assert chunk(await asyncio.wait_for(anext(events), 1.0)) == [("MODIFIED", "a", "4")]
        await events.aclose()
        assert store.cache.watcher_count == 0


async def test_store_watch_older_than_cache_is_served_from_storage() -> None:
    """A resourceVersion before the cache's window falls back to a storage watch, with transitions."""
    storage = FakeStorage()
    async with configmap_store(storage, start=False, history_backfill=0) as store:
        await store.create(verb(), configmap("a"))  # 2
        await store.update(verb("a", "update"), configmap("a", k="v"))  # 3
        await store.create(verb(), configmap("b"))  # 4
        await store.cache.start()  # lists at 4 and replays nothing: no history before it
        await cache_stream(storage)
        events = watch(store, "2")
        assert chunk(await anext(events)) == [("MODIFIED", "a", "3")]
        assert chunk(await anext(events)) == [("ADDED", "b", "4")]
        await store.delete(verb("b", "delete"))  # 5
        assert chunk(await asyncio.wait_for(anext(events), 1.0)) == [("DELETED", "b", "5")]
        assert store.cache.watcher_count == 0
        assert storage.watch_calls[-1] == (store.prefix, 3)
        await events.aclose()
        for _ in range(3):
            await asyncio.sleep(0)
        assert len(storage.streams) == 1  # only the cache's own stream is left open


async def test_closing_a_storage_served_watch_closes_its_stream_at_once() -> None:
    """aclose() on a watch served from storage closes the storage watch before it returns."""
    storage = FakeStorage()
    async with configmap_store(storage, start=False, history_backfill=0) as store:
        await store.create(verb(), configmap("a"))  # 2
        await store.create(verb(), configmap("b"))  # 3
        await store.cache.start()
        await cache_stream(storage)
        events = watch(store, "2")
        assert chunk(await anext(events)) == [("ADDED", "b", "3")]
        served = storage.streams[-1]
        await events.aclose()
        assert served.closed


async def test_store_watch_from_compacted_revision_is_expired() -> None:
    """Outside the cache window and compacted in storage: StatusError Expired, so the client relists."""
    storage = FakeStorage()
    async with configmap_store(storage, start=False) as store:
        for name in ("a", "b", "c"):  # 2..4
            await store.create(verb(), configmap(name))
        await storage.compact(4)
        await store.cache.start()
        await cache_stream(storage)
        events = watch(store, "2")
        with pytest.raises(errors.StatusError) as info:
            await anext(events)
        assert info.value.reason == "Expired"
        assert len(storage.streams) == 1


async def test_store_list_pages_at_one_revision_and_full_list_is_consistent() -> None:
    """limit/continue pages all show the first page's revision; a full list waits for the latest write."""
    storage = FakeStorage()
    async with configmap_store(storage) as store:
        for i in range(5):  # c0..c4 at 2..6
            await store.create(verb(), configmap(f"c{i}"))
        items, rev, token = await store.list("default", limit=2)
        assert ([decoded(w) for w in items], rev) == ([("c0", "2"), ("c1", "3")], 6)
        await store.delete(verb("c2", "delete"))  # 7: later pages still show it
        await store.create(verb(), configmap("c10"))  # 8: sorts between c1 and c2, never shown
        items, rev, token2 = await store.list("default", limit=2, continue_token=token)
        assert ([decoded(w) for w in items], rev) == ([("c2", "4"), ("c3", "5")], 6)
        items, rev, last = await store.list("default", limit=2, continue_token=token2)
        assert ([decoded(w) for w in items], rev, last) == ([("c4", "6")], 6, "")
        # Without a limit the cache answers, after catching up with storage's revision.
        items, rev, _ = await store.list("default")
        assert [decoded(w)[0] for w in items] == ["c0", "c1", "c10", "c3", "c4"] and rev == 8
        await storage.compact(8)
        with pytest.raises(errors.StatusError) as info:
            await store.list("default", limit=2, continue_token=token2)
        assert info.value.reason == "Expired"


async def test_paged_list_reads_each_key_once_and_reports_remaining_items() -> None:
    """Without selectors a page reads exactly its keys; remainingItemCount counts what follows."""
    storage = FakeStorage()
    async with configmap_store(storage) as store:
        for i in range(10):  # c00..c09 at 2..11
            await store.create(verb(), configmap(f"c{i:02d}"))
        await store.create(Attributes(USER, "create", CONFIGMAPS, "other", ""),
                           load({"metadata": {"name": "x", "namespace": "other"}}, core_v1.ConfigMap))  # 12
        pages: list[tuple[list[str], int | None]] = []
        token = ""
        while True:
            page = await store.list("default", limit=3, continue_token=token)
            items, _, token = page
            pages.append(([decoded(w)[0] for w in items], page.remaining_item_count))
            if not token:
                break
        assert pages == [(["c00", "c01", "c02"], 7), (["c03", "c04", "c05"], 4), (["c06", "c07", "c08"], 1),
                         (["c09"], None)]
        assert storage.keys_read == 10  # the other namespace's key is outside the prefix, never read


async def test_paged_list_with_a_selector_reads_on_until_the_page_is_full() -> None:
    """A label selector that drops most keys still fills the page, no key is read twice, no remaining count."""
    storage = FakeStorage()
    async with configmap_store(storage) as store:
        for i in range(20):  # every fifth is a match: c00, c05, c10, c15
            cm = configmap(f"c{i:02d}")
            if i % 5 == 0:
                cm.metadata.labels["pick"] = "yes"
            await store.create(verb(), cm)
        page = await store.list("default", "pick=yes", limit=2)
        items, _, token = page
        assert [decoded(w)[0] for w in items] == ["c00", "c05"] and token and page.remaining_item_count is None
        # Chunks of 2, then 4 keys: c00..c05, and the page is full at its last key.
        assert storage.keys_read == 6
        page = await store.list("default", "pick=yes", limit=2, continue_token=token)
        items, _, token = page
        assert [decoded(w)[0] for w in items] == ["c10", "c15"]
        # From c06: chunks of 2, 4 and 8 (c06..c19); the page fills at c15, c16..c19 are read again next time.
        assert storage.keys_read == 6 + 14
        page = await store.list("default", "pick=yes", limit=2, continue_token=token)
        assert (page[0], page[2]) == ([], "")  # c16..c19 hold no match: an empty last page, as in Kubernetes
        with pytest.raises(errors.StatusError) as info:  # a token for another prefix is refused
            await store.list("kube-system", limit=2, continue_token=token)
        assert info.value.reason == "BadRequest"


async def test_watches_end_after_the_server_chosen_timeout() -> None:
    """Cache- and storage-served watches end by themselves after watch_timeout (jittered up to 2x), cleanly."""
    storage = FakeStorage()
    async with configmap_store(storage, start=False, history_backfill=0, watch_timeout=0.05) as store:
        await store.create(verb(), configmap("a"))  # 2
        await store.cache.start()
        await store.create(verb(), configmap("b"))  # 3
        await caught_up(store.cache, 3)
        await storage.create(ELSEWHERE, b"x")  # 4: the bookmark before the end carries it
        await store.cache.wait_for_revision(4)
        got: list[list[tuple[str, str, str]] | int] = []
        with_bookmarks = store.watch("default", "", "", "2", allow_bookmarks=True)
        async for item in with_bookmarks:  # the loop ends: the server ended the stream
            got.append(chunk(item))
        assert got == [[("ADDED", "b", "3")], 4]
        assert store.cache.watcher_count == 0
        from_storage = [chunk(item) async for item in watch(store, "1")]  # older than the cache: etcd serves it
        assert from_storage == [[("ADDED", "a", "2")], [("ADDED", "b", "3")]]
        assert len(storage.streams) == 1  # the storage watch was closed; the cache's own remains


# --- readiness ---------------------------------------------------------------------------

async def test_readiness_follows_etcd_reachability_and_cache_lag(monkeypatch: pytest.MonkeyPatch) -> None:
    """etcd failing or hanging makes etcd_ok false; a cache that does not reach etcd's revision in time is behind."""
    storage = FakeStorage()
    now = [0.0]
    async with running(storage) as cache:
        stream = await cache_stream(storage)
        health = StorageHealth(cast(Storage, storage), [cache], timeout=0.01, max_cache_lag=10.0,
                               clock=lambda: now[0])
        await health.check_once()
        assert health.etcd_ok() and health.cache_ok(cache)

        async def unavailable() -> int:
            raise UnavailableError("no member answered")

        async def hangs() -> int:
            await asyncio.Event().wait()
            return 0

        for broken in (unavailable, hangs):
            monkeypatch.setattr(storage, "current_revision", broken)
            await health.check_once()
            assert not health.etcd_ok()
            monkeypatch.undo()
            await health.check_once()
            assert health.etcd_ok()

        async def unanswered() -> None:
            stream.progress_requests += 1

        monkeypatch.setattr(stream, "request_progress", unanswered)  # the cache's stream is stuck
        await storage.create(ELSEWHERE, b"x")  # 2: a pod cache learns of it only through progress
        await health.check_once()
        assert stream.progress_requests == 1 and health.cache_ok(cache)  # asked; not late yet
        now[0] = 10.5
        await health.check_once()
        assert not health.cache_ok(cache)
        monkeypatch.undo()
        await stream.request_progress()
        await caught_up(cache, 2)
        assert health.cache_ok(cache)
        await health.check_once()
        assert health.cache_ok(cache)


async def test_cached_objects_decode_on_demand_and_deleted_states_are_restamped() -> None:
    """obj is a fresh decoded copy each time; a DELETED carries the deletion's resourceVersion on its wire form."""
    storage = FakeStorage()
    async with running(storage) as cache:
        w = cache.watch(None, Filter(), allow_bookmarks=False)
        await storage.create(key("a"), pod("a", labels={"v": "1"}))  # 2
        await storage.delete(key("a"))  # 3
        await caught_up(cache, 3)
        added, deleted = w.queue.get_nowait(), w.queue.get_nowait()
        assert isinstance(added, list) and isinstance(deleted, list)
        first: Any = added[0][1].obj
        first.metadata.labels["v"] = "changed"  # the caller's own copy
        assert dict(added[0][1].obj.metadata.labels) == {"v": "1"}
        gone: Any = PODS.message.FromString(deleted[0][1].wire)
        assert deleted[0][0] == "DELETED"
        assert (gone.metadata.resource_version, dict(gone.metadata.labels)) == ("3", {"v": "1"})
        assert deleted[0][1].raw == pod("a", labels={"v": "1"})
