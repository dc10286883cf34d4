"""EtcdStorage against a real 3-member etcd cluster: semantics, batching, watch, failover."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.apiserver.pipeline import Admission
from kubelite.apiserver.registry.all import build_strategies
from kubelite.apiserver.store import ResourceStore
from kubelite.apiserver.watchcache import WatchCache
from kubelite.machinery.kinds import CONFIGMAPS, SCHEME
from kubelite.storage import (
    Claim,
    ClaimTakenError,
    CompactedError,
    ConflictError,
    Event,
    EventBatch,
    KeyExistsError,
    KeyNotFoundError,
    StorageError,
    TooLargeError,
    UnavailableError,
)
from kubelite.storage.etcd import EtcdStorage, EtcdWatchStream
from tests.support.apiserver import APIServerProcess
from tests.support.etcd import EtcdCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

STRATEGIES = build_strategies(SCHEME)


# -- helpers -------------------------------------------------------------------


async def collect(stream: EtcdWatchStream, until_revision: int, *, timeout: float = 20.0) -> list[EventBatch]:
    """Batches from ``stream`` until one reaches ``until_revision``."""
    out: list[EventBatch] = []

    async def run() -> None:
        async for batch in stream:
            if batch.events:
                out.append(batch)
            if batch.revision >= until_revision:
                return

    await asyncio.wait_for(run(), timeout)
    return out


def assert_exactly_once_in_order(batches: list[EventBatch]) -> list[Event]:
    revisions = [b.revision for b in batches]
    assert revisions == sorted(set(revisions)), "batches must have strictly increasing revisions"
    events: list[Event] = []
    for batch in batches:
        assert batch.events, "event batches are non-empty here"
        assert all(e.revision == batch.revision for e in batch.events)
        keys = [e.key for e in batch.events]
        assert len(keys) == len(set(keys)), "one revision touches a key once"
        events.extend(batch.events)
    return events


# -- basic semantics -----------------------------------------------------------


async def test_create_get_list_update_delete(storage: EtcdStorage) -> None:
    rev = await storage.create("/reg/pods/default/a", b"a1")
    assert rev > 0
    kv = await storage.get("/reg/pods/default/a")
    assert (kv.key, kv.value, kv.mod_revision, kv.create_revision) == ("/reg/pods/default/a", b"a1", rev, rev)

    rev_b = await storage.create("/reg/pods/default/b", b"b1")
    await storage.create("/reg/pods/other/c", b"c1")
    await storage.create("/reg/podsx/d", b"not a pod")
    items, list_rev = await storage.list("/reg/pods/")
    assert [i.key for i in items] == ["/reg/pods/default/a", "/reg/pods/default/b", "/reg/pods/other/c"]
    assert list_rev >= rev_b
    assert list_rev <= await storage.current_revision()

    rev2 = await storage.update("/reg/pods/default/a", b"a2", expected_revision=rev)
    assert rev2 > rev
    kv = await storage.get("/reg/pods/default/a")
    assert (kv.value, kv.mod_revision, kv.create_revision) == (b"a2", rev2, rev)

    deleted = await storage.delete("/reg/pods/default/a", expected_revision=rev2)
    assert deleted.value == b"a2" and deleted.create_revision == rev and deleted.mod_revision > rev2
    assert deleted.mod_revision <= await storage.current_revision()
    with pytest.raises(KeyNotFoundError):
        await storage.get("/reg/pods/default/a")

    # unconditional delete
    deleted_b = await storage.delete("/reg/pods/default/b")
    assert deleted_b.value == b"b1"


async def test_errors(storage: EtcdStorage) -> None:
    rev = await storage.create("/k/x", b"1")
    with pytest.raises(KeyExistsError) as exists:
        await storage.create("/k/x", b"2")
    assert exists.value.key == "/k/x"
    assert exists.value.current is not None and exists.value.current.value == b"1"

    with pytest.raises(KeyNotFoundError):
        await storage.get("/k/missing")
    with pytest.raises(KeyNotFoundError):
        await storage.update("/k/missing", b"v", expected_revision=rev)
    with pytest.raises(KeyNotFoundError):
        await storage.delete("/k/missing")
    with pytest.raises(KeyNotFoundError):
        await storage.delete("/k/missing", expected_revision=rev)
    assert isinstance(KeyNotFoundError("x"), StorageError)


async def test_cas_conflict_on_stale_revision(storage: EtcdStorage) -> None:
    rev1 = await storage.create("/k/cas", b"v1")
    rev2 = await storage.update("/k/cas", b"v2", expected_revision=rev1)
    with pytest.raises(ConflictError) as conflict:
        await storage.update("/k/cas", b"stale", expected_revision=rev1)
    assert conflict.value.key == "/k/cas"
    assert conflict.value.current is not None
    assert (conflict.value.current.value, conflict.value.current.mod_revision) == (b"v2", rev2)
    with pytest.raises(ConflictError):
        await storage.delete("/k/cas", expected_revision=rev1)
    assert (await storage.get("/k/cas")).value == b"v2"

    # Two writers racing from the same revision: exactly one wins.
    results = await asyncio.gather(
        *(storage.update("/k/cas", f"w{i}".encode(), expected_revision=rev2) for i in range(5)),
        return_exceptions=True,
    )
    wins = [r for r in results if isinstance(r, int)]
    assert len(wins) == 1
    assert all(isinstance(r, ConflictError) for r in results if not isinstance(r, int))


async def test_claims_and_releases(storage: EtcdStorage) -> None:
    ip = Claim("/reg/ranges/serviceips/10.96.0.20", b"default/svc-a")
    rev_a = await storage.create("/reg/services/default/svc-a", b"a", claims=[ip])
    assert (await storage.get(ip.key)).value == b"default/svc-a"

    # A second create claiming the same address fails and writes nothing.
    with pytest.raises(ClaimTakenError) as taken:
        await storage.create("/reg/services/default/svc-b", b"b", claims=[Claim(ip.key, b"default/svc-b")])
    assert taken.value.key == ip.key
    with pytest.raises(KeyNotFoundError):
        await storage.get("/reg/services/default/svc-b")

    # An update that moves svc-a to another address: claim the new one, release the old one.
    new_ip = Claim("/reg/ranges/serviceips/10.96.0.21", b"default/svc-a")
    rev_a2 = await storage.update(
        "/reg/services/default/svc-a", b"a2", expected_revision=rev_a, claims=[new_ip], releases=[ip.key]
    )
    with pytest.raises(KeyNotFoundError):
        await storage.get(ip.key)
    assert (await storage.get(new_ip.key)).mod_revision == rev_a2

    # The freed address can now be claimed.
    await storage.create("/reg/services/default/svc-b", b"b", claims=[Claim(ip.key, b"default/svc-b")])
    # Update with a taken claim fails.
    with pytest.raises(ClaimTakenError):
        await storage.update("/reg/services/default/svc-a", b"a3", expected_revision=rev_a2, claims=[ip])
    # Deleting svc-a releases its address in the same transaction.
    deleted = await storage.delete("/reg/services/default/svc-a", releases=[new_ip.key])
    assert deleted.value == b"a2"
    with pytest.raises(KeyNotFoundError):
        await storage.get(new_ip.key)
    with pytest.raises(ValueError):
        await storage.create("/x", b"", claims=[Claim("/x", b"")])


async def test_list_at_revision_and_compaction(storage: EtcdStorage) -> None:
    rev1 = await storage.create("/c/a", b"1")
    rev2 = await storage.create("/c/b", b"2")
    await storage.update("/c/a", b"1b", expected_revision=rev1)
    items, at = await storage.list("/c/", revision=rev1)
    assert at == rev1 and [(i.key, i.value) for i in items] == [("/c/a", b"1")]
    items, _ = await storage.list("/c/", revision=rev2)
    assert [(i.key, i.value) for i in items] == [("/c/a", b"1"), ("/c/b", b"2")]

    current = await storage.current_revision()
    await storage.compact(current)
    await storage.compact(current)  # compacting twice is harmless
    with pytest.raises(CompactedError) as compacted:
        await storage.list("/c/", revision=rev1)
    assert compacted.value.requested_revision == rev1
    assert compacted.value.compact_revision == current

    stream = storage.watch("/c/", start_revision=rev1)
    try:
        with pytest.raises(CompactedError) as watch_compacted:
            await asyncio.wait_for(stream.__anext__(), 10)
        assert watch_compacted.value.compact_revision == current
    finally:
        await stream.close()


# -- batching -------------------------------------------------------------------


async def test_concurrent_creates_are_batched(storage: EtcdStorage) -> None:
    before = (storage.stats.txns, storage.stats.batched_ops)
    revisions = await asyncio.gather(*(storage.create(f"/batch/{i:04d}", f"v{i}".encode()) for i in range(200)))
    txns = storage.stats.txns - before[0]
    ops = storage.stats.batched_ops - before[1]
    assert ops == 200
    assert txns < ops / 4, f"{txns} txns for {ops} ops"
    items, _ = await storage.list("/batch/")
    assert [(i.key, i.value, i.mod_revision) for i in items] == [
        (f"/batch/{i:04d}", f"v{i}".encode(), revisions[i]) for i in range(200)
    ]
    assert len(set(revisions)) == txns  # ops of one Txn share its revision


async def test_list_pages_share_one_revision(etcd_cluster: EtcdCluster, storage: EtcdStorage) -> None:
    await asyncio.gather(*(storage.create(f"/page/{i:03d}", b"v") for i in range(50)))
    paged = await EtcdStorage.open(etcd_cluster.endpoints, list_page_size=7)
    try:
        whole, rev = await storage.list("/page/")
        # Writes between pages do not leak into a list already under way.
        original = paged._range
        calls = 0

        async def range_then_write(operation: str, request: object, **kwargs: object) -> object:
            nonlocal calls
            calls += 1
            if calls == 2:
                await storage.create("/page/000a-late", b"late")
            return await original(operation, request, **kwargs)  # type: ignore[arg-type]

        paged._range = range_then_write  # type: ignore[method-assign]
        items, at = await paged.list("/page/")
        assert calls == 8 and at == rev and items == whole
        assert len((await paged.list("/page/"))[0]) == 51
        assert await paged.list("/page/", revision=rev) == (whole, rev)
    finally:
        await paged.close()


async def test_mixed_batch_gets_per_op_errors(storage: EtcdStorage) -> None:
    base = {i: await storage.create(f"/mix/{i}", b"old") for i in range(20)}
    await storage.create("/mix/ip-taken", b"someone")
    # Stale every third key behind the callers' backs.
    for i in range(0, 20, 3):
        base_rev = base[i]
        await storage.update(f"/mix/{i}", b"moved", expected_revision=base_rev)

    calls = []
    for i in range(20):  # updates: i % 3 == 0 conflict
        calls.append(storage.update(f"/mix/{i}", b"new", expected_revision=base[i]))
    for i in range(5):  # creates: the first exists
        calls.append(storage.create(f"/mix/{0 if i == 0 else 100 + i}", b"created"))
    calls.append(storage.create("/mix/claimer", b"c", claims=[Claim("/mix/ip-taken", b"me")]))
    calls.append(storage.delete("/mix/missing"))
    calls.append(storage.delete("/mix/1", expected_revision=1))  # stale, and /mix/1 is also updated above
    results = await asyncio.gather(*calls, return_exceptions=True)

    for i in range(20):
        if i % 3 == 0:
            assert isinstance(results[i], ConflictError), (i, results[i])
            err = results[i]
            assert isinstance(err, ConflictError) and err.current is not None and err.current.value == b"moved"
        else:
            assert isinstance(results[i], int), (i, results[i])
            assert (await storage.get(f"/mix/{i}")).value == b"new"
    assert isinstance(results[20], KeyExistsError)
    assert all(isinstance(r, int) for r in results[21:25])
    assert isinstance(results[25], ClaimTakenError) and results[25].key == "/mix/ip-taken"
    assert isinstance(results[26], KeyNotFoundError)
    assert isinstance(results[27], ConflictError)
    with pytest.raises(KeyNotFoundError):
        await storage.get("/mix/claimer")


async def test_batch_limits(etcd_cluster: EtcdCluster, storage: EtcdStorage) -> None:
    small = await EtcdStorage.open(etcd_cluster.endpoints, max_batch_ops=8)
    try:
        # Each op is 1 compare + 2 claims: at most 2 such ops fit in 8 compares.
        await asyncio.gather(
            *(small.create(f"/lim/{i}", b"x", claims=[Claim(f"/lim/c{i}a", b""), Claim(f"/lim/c{i}b", b"")])
              for i in range(30))
        )
        assert small.stats.batched_ops == 30 and small.stats.txns >= 15
        # Same key twice cannot share a Txn: both run, in separate ones.
        rev = await small.create("/lim/same", b"0")
        r = await asyncio.gather(
            small.update("/lim/same", b"1", expected_revision=rev),
            small.update("/lim/same", b"2", expected_revision=0),
        )
        assert r[1] > r[0]
        # ~1.2 MiB of values in one burst: split under etcd's 1.5 MiB request limit.
        big = b"x" * (100 * 1024)
        await asyncio.gather(*(storage.create(f"/big/{i}", big) for i in range(40)))
        assert len((await storage.list("/big/"))[0]) == 40
        # One op over the limit fails alone; its batch mates succeed.
        results = await asyncio.gather(
            storage.create("/big/ok1", b"x"), storage.create("/big/huge", b"x" * (1700 * 1024)),
            storage.create("/big/ok2", b"x"), return_exceptions=True,
        )
        assert isinstance(results[1], TooLargeError), results[1]
        assert isinstance(results[0], int) and isinstance(results[2], int)
    finally:
        await small.close()


# -- watch ---------------------------------------------------------------------


async def test_watch_sees_every_event_once_grouped_by_revision(storage: EtcdStorage) -> None:
    start = await storage.current_revision() + 1
    stream = storage.watch("/w/", start_revision=start)
    try:
        rev_a = await storage.create("/w/a", b"a1")
        await storage.create("/other/x", b"not watched")
        batch_revs = await asyncio.gather(*(storage.create(f"/w/b{i}", b"b") for i in range(50)))
        rev_u = await storage.update("/w/a", b"a2", expected_revision=rev_a)
        deleted = await storage.delete("/w/a")
        last = deleted.mod_revision

        batches = await collect(stream, last)
        events = assert_exactly_once_in_order(batches)
        assert len(events) == 53
        assert events[0] == Event("PUT", "/w/a", b"a1", None, rev_a, rev_a)
        assert all(b.revision >= start for b in batches)
        # Events of one Txn arrive as one batch.
        grouped = {b.revision: {e.key for e in b.events} for b in batches}
        for rev in set(batch_revs):
            assert grouped[rev] == {f"/w/b{i}" for i, r in enumerate(batch_revs) if r == rev}
        assert events[-2] == Event("PUT", "/w/a", b"a2", b"a1", rev_u, rev_a)
        assert events[-1] == Event("DELETE", "/w/a", b"a2", None, last, 0)

        # A second watch from the middle replays from exactly there.
        mid = sorted(set(batch_revs))[len(set(batch_revs)) // 2]
        replay = storage.watch("/w/", start_revision=mid)
        try:
            again = await collect(replay, last)
        finally:
            await replay.close()
        assert again[0].revision == mid and again == [b for b in batches if b.revision >= mid]
    finally:
        await stream.close()


async def test_request_progress(storage: EtcdStorage) -> None:
    start = await storage.current_revision() + 1
    stream = storage.watch("/p/", start_revision=start)
    try:
        rev = await storage.create("/p/a", b"1")
        # Writes outside the prefix move the store's revision without events for us.
        for i in range(3):
            await storage.create(f"/elsewhere/{i}", b"x")
        current = await storage.current_revision()
        first = await asyncio.wait_for(stream.__anext__(), 10)
        assert first.revision == rev and len(first.events) == 1
        await stream.request_progress()
        progress = await asyncio.wait_for(stream.__anext__(), 10)
        assert progress.events == () and progress.is_progress
        assert progress.revision >= current

        # Progress while events are flowing never claims a revision ahead of undelivered events.
        writer = asyncio.gather(*(storage.create(f"/p/n{i}", b"y") for i in range(100)))
        await stream.request_progress()
        seen: set[str] = set()
        progressed = 0
        async with asyncio.timeout(20):
            async for batch in stream:
                if batch.is_progress:
                    # Everything up to batch.revision must already have been delivered.
                    committed, _ = await storage.list("/p/n", revision=batch.revision)
                    assert {kv.key for kv in committed} <= seen
                    progressed += 1
                    if len(seen) == 100:
                        break
                    await stream.request_progress()
                else:
                    seen.update(e.key for e in batch.events)
                    if len(seen) == 100 and progressed:
                        break
        await writer
        assert progressed >= 1
    finally:
        await stream.close()


async def test_watch_from_now_and_close(storage: EtcdStorage) -> None:
    stream = storage.watch("/now/", start_revision=0)
    reader = asyncio.create_task(stream.__anext__())
    await asyncio.sleep(0.3)  # let the watch be created
    rev = await storage.create("/now/a", b"1")
    batch = await asyncio.wait_for(reader, 10)
    assert batch.revision == rev
    await stream.close()
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()

    # close() from another task ends a blocked iteration cleanly.
    idle = storage.watch("/idle/", start_revision=0)
    waiting = asyncio.create_task(idle.__anext__())
    await asyncio.sleep(0.3)
    await idle.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 5)


# -- failover ---------------------------------------------------------------------


@contextlib.asynccontextmanager
async def member_restored(cluster: EtcdCluster) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await asyncio.to_thread(cluster.ensure_running)


async def write_stream(
    storage: EtcdStorage,
    prefix: str,
    total: int,
    concurrency: int,
    acked: dict[str, tuple[bytes, int]],
    failed: list[BaseException],
    progress: asyncio.Event,
    trigger_at: int,
) -> None:
    """``total`` writes (a create, then an update of every other key), ``concurrency`` at a time."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    tag = uuid.uuid4().hex[:8]

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            key = f"{prefix}{i:04d}"
            value = f"{tag}-{i}-create".encode()
            try:
                rev = await storage.create(key, value)
                acked[key] = (value, rev)
                if i % 2 == 0:
                    new = f"{tag}-{i}-update".encode()
                    rev = await storage.update(key, new, expected_revision=rev)
                    acked[key] = (new, rev)
            except (UnavailableError, ConflictError, KeyExistsError) as exc:
                failed.append(exc)
            if len(acked) >= trigger_at:
                progress.set()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def run_failover(
    cluster: EtcdCluster, storage: EtcdStorage, victim: int | None, prefix: str
) -> tuple[dict[str, tuple[bytes, int]], list[BaseException], list[EventBatch]]:
    start = await storage.current_revision() + 1
    stream = storage.watch(prefix, start_revision=start)
    first = asyncio.create_task(stream.__anext__())  # opens the watch now
    await asyncio.sleep(0.2)
    acked: dict[str, tuple[bytes, int]] = {}
    failed: list[BaseException] = []
    halfway = asyncio.Event()
    writes = asyncio.create_task(write_stream(storage, prefix, 300, 8, acked, failed, halfway, 100))
    await asyncio.wait_for(halfway.wait(), 30)
    acked_before = len(acked)
    index = victim if victim is not None else stream._member  # the member the watch is on
    await asyncio.to_thread(cluster.stop_member, index)
    await asyncio.wait_for(writes, 60)
    assert len(acked) > acked_before + 50, "writing continued after the member stopped"

    # Every acknowledged write is there, with the acknowledged revision.
    for key, (value, rev) in acked.items():
        kv = await storage.get(key)
        assert (kv.value, kv.mod_revision) == (value, rev), key
    batches = [await asyncio.wait_for(first, 10)]
    last = max(rev for _, rev in acked.values())
    batches += await collect(stream, last, timeout=30)
    await stream.close()
    return acked, failed, [b for b in batches if b.events]


async def test_failover_leader_stopped_during_writes(etcd_cluster: EtcdCluster, storage: EtcdStorage) -> None:
    async with member_restored(etcd_cluster):
        leader = etcd_cluster.leader_index()
        acked, failed, batches = await run_failover(etcd_cluster, storage, leader, "/fo1/")
        assert len(failed) <= 3, failed  # writes are retried/resolved, not failed
        events = assert_exactly_once_in_order(batches)
        by_key: dict[str, list[Event]] = {}
        for e in events:
            by_key.setdefault(e.key, []).append(e)
        for key, (value, rev) in acked.items():
            assert by_key[key][-1].value == value and by_key[key][-1].revision == rev


async def test_failover_watch_member_stopped(etcd_cluster: EtcdCluster, storage: EtcdStorage) -> None:
    async with member_restored(etcd_cluster):
        restarts = storage.stats.watch_restarts
        acked, failed, batches = await run_failover(etcd_cluster, storage, None, "/fo2/")
        assert storage.stats.watch_restarts > restarts
        assert len(failed) <= 3, failed
        events = assert_exactly_once_in_order(batches)
        creates = [e.key for e in events if e.type == "PUT" and e.prev_value is None]
        assert len(creates) == len(set(creates))
        assert set(acked) <= set(creates)
        # The stopped member comes back and catches up.
    await storage.get(next(iter(acked)))


async def test_unavailable_without_quorum(etcd_cluster: EtcdCluster) -> None:
    store = await EtcdStorage.open(etcd_cluster.endpoints, request_timeout=1.5)
    try:
        async with member_restored(etcd_cluster):
            await asyncio.to_thread(etcd_cluster.stop_member, 1)
            await asyncio.to_thread(etcd_cluster.stop_member, 2)
            with pytest.raises(UnavailableError):
                await store.create("/noquorum/a", b"x")
            with pytest.raises(UnavailableError):
                await store.get("/noquorum/a")
        # Quorum is back: the same client works again.
        await asyncio.to_thread(etcd_cluster.leader_index)
        await store.delete_prefix("/noquorum/")
        assert await store.create("/noquorum/b", b"y") > 0
    finally:
        await store.close()


# -- paged reads -----------------------------------------------------------------


def keys_read(operation: str) -> float:
    """The process-wide etcd_read_keys_total counter for ``operation``."""
    return REGISTRY.get_sample_value("etcd_read_keys_total", {"operation": operation}) or 0.0


async def test_list_page_reads_one_page_with_the_count_of_the_rest(storage: EtcdStorage) -> None:
    """A Range with a limit from a start key: the page, `more`, etcd's count, a pinned revision; only its keys read."""
    await asyncio.gather(*(storage.create(f"/lp/{i:02d}", b"v") for i in range(10)))
    await storage.create("/lpx", b"not under the prefix")
    before = keys_read("list_page")
    first = await storage.list_page("/lp/", limit=4)
    assert [kv.key for kv in first.items] == ["/lp/00", "/lp/01", "/lp/02", "/lp/03"]
    assert (first.more, first.count) == (True, 10)
    await storage.create("/lp/05a", b"late")  # after the first page: invisible at its revision
    rest = await storage.list_page("/lp/", start="/lp/03\0", limit=100, revision=first.revision)
    assert [kv.key for kv in rest.items] == [f"/lp/{i:02d}" for i in range(4, 10)]
    assert (rest.more, rest.count, rest.revision) == (False, 6, first.revision)
    assert keys_read("list_page") - before == 10
    with pytest.raises(ValueError):
        await storage.list_page("/lp/", start="/other", limit=1)


async def test_paged_list_of_10000_objects_reads_each_key_once(storage: EtcdStorage) -> None:
    """ResourceStore.list with limit/continue over 10,000 ConfigMaps in etcd: 10,000 keys read, by the metric."""
    namespace = f"paged-{uuid.uuid4().hex[:6]}"
    prefix = f"/registry/configmaps/{namespace}/"

    def configmap(i: int) -> bytes:
        cm = core_v1.ConfigMap()
        cm.metadata.name, cm.metadata.namespace = f"cm-{i:05d}", namespace
        cm.data["i"] = str(i)
        return cm.SerializeToString(deterministic=True)

    try:
        await asyncio.gather(*(storage.create(f"{prefix}cm-{i:05d}", configmap(i)) for i in range(10_000)))
        store = ResourceStore(STRATEGIES[("", "configmaps")], storage, Admission(),
                              lambda s: WatchCache(s.strategy, storage, s.prefix, s.decode))
        before = keys_read("list_page")
        names: list[str] = []
        remaining: list[int | None] = []
        token = ""
        while True:
            page = await store.list(namespace, limit=500, continue_token=token)
            items, _, token = page
            names.extend(CONFIGMAPS.message.FromString(w).metadata.name for w in items)  # type: ignore[attr-defined]
            remaining.append(page.remaining_item_count)
            if not token:
                break
        assert names == [f"cm-{i:05d}" for i in range(10_000)]
        assert remaining == [10_000 - 500 * n for n in range(1, 20)] + [None]
        assert keys_read("list_page") - before == 10_000
    finally:
        await storage.delete_range(prefix, prefix[:-1] + "0")


# -- readiness -----------------------------------------------------------------------


def readyz(api: APIServerProcess) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{api.http_port}/readyz?verbose", timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def wait_readyz(api: APIServerProcess, status: int, timeout: float) -> str:
    """Polls /readyz until it answers ``status``; returns the verbose body."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got, body = await asyncio.to_thread(readyz, api)
        if got == status:
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"/readyz stayed {got}, not {status}:\n{body}")
        await asyncio.sleep(0.2)


@pytest.mark.timeout(180)
async def test_readyz_is_false_while_etcd_is_down_and_true_after(
        etcd_cluster: EtcdCluster, apiserver: APIServerProcess) -> None:
    """Every etcd member stopped: the API server's /readyz fails naming etcd; members back: ready again."""
    etcd_cluster.ensure_running()
    if apiserver.proc is None:
        apiserver.start()
    await wait_readyz(apiserver, 200, 30)
    try:
        await asyncio.to_thread(lambda: [etcd_cluster.stop_member(i) for i in range(len(etcd_cluster.members))])
        body = await wait_readyz(apiserver, 503, 60)
        assert "[-]etcd failed" in body
    finally:
        await asyncio.to_thread(etcd_cluster.ensure_running)
    body = await wait_readyz(apiserver, 200, 90)
    assert "[+]etcd ok" in body and "[+]watch-cache:pods ok" in body
