"""The watch cache: one etcd watch per resource, fanned out from memory.

Kubernetes' cacher, in small: the cache lists a resource once, then follows a
single etcd watch on its key prefix. Every API watch on the resource is served
from here, so 500 watchers cost one etcd stream, and lists can be served from
memory. A bounded history of recent revisions lets a watcher resume from a
resourceVersion without a gap; older starting points are answered by the
store from etcd directly (``OutOfWindow``), so a client survives an API server
restart (whose fresh cache has no history) without relisting.

Objects are kept decoded (for selectors) and as the bytes etcd holds, which
lack ``metadata.resourceVersion``. The wire form appends a tiny serialized
message carrying only the resourceVersion: protobuf parsing merges
concatenated messages, so an object is sent without being re-encoded.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from kubelite.apiserver.registry.strategy import Strategy
from kubelite.machinery import errors
from kubelite.machinery.selectors import FieldSelector, LabelSelector
from kubelite.storage.interface import (
    CompactedError,
    EventBatch,
    KeyValue,
    Storage,
    StorageError,
    WatchGapError,
    WatchStream,
)

log = logging.getLogger(__name__)

# A watcher that falls this many responses behind is closed; its client
# resumes from the last resourceVersion it saw (as Kubernetes' cacher does).
WATCHER_QUEUE_LIMIT = 10_000
# Initial ADDED events are sent in chunks of this many objects.
INITIAL_CHUNK = 1_000


def rv_suffix(rt_message: type[Message], revision: int) -> bytes:
    """Serialized ``{metadata: {resourceVersion: "<revision>"}}`` for the kind."""
    msg = rt_message()
    msg.metadata.resource_version = str(revision)  # type: ignore[attr-defined]
    return msg.SerializeToString()


@dataclass(frozen=True, slots=True)
class CachedObject:
    """One state of one object, as the cache keeps it: the wire bytes and what selectors read.

    No decoded message is kept: a decoded protobuf costs several kilobytes
    (its arena) against the few hundred bytes of its wire form, and the
    cache holds every object plus its history. ``obj`` decodes on demand.
    """

    key: str
    wire: bytes  # the value as stored in etcd (no resourceVersion), then the resourceVersion suffix
    raw_len: int  # where the stored value ends in ``wire`` (one bytes object per state, not two)
    revision: int
    namespace: str
    labels: Mapping[str, str]
    fields: Mapping[str, str]
    decode: Callable[[bytes], Message] = field(repr=False, compare=False)

    @property
    def obj(self) -> Message:
        """The object, decoded afresh at each access (the caller's own copy, with its resourceVersion)."""
        return self.decode(self.wire)

    @property
    def raw(self) -> bytes:
        """The value as stored in etcd (a copy: read it once)."""
        return self.wire[:self.raw_len]

    def restamped(self, revision: int, suffix: bytes) -> CachedObject:
        """This state as of a later revision, without decoding it again (the DELETED events' objects)."""
        return dataclasses.replace(self, wire=self.raw + suffix, revision=revision)


@dataclass(frozen=True, slots=True)
class CacheEvent:
    type: str  # ADDED, MODIFIED, DELETED
    obj: CachedObject  # for DELETED: the last state, at the deletion's revision
    # The previous state at this event's revision: what a watcher the object
    # stopped matching receives with DELETED, so that it never sees an object
    # outside its selector (a kubelet watching spec.nodeName=<node>).
    prev: CachedObject | None


@dataclass(frozen=True, slots=True)
class CacheBatch:
    revision: int
    events: tuple[CacheEvent, ...]


@dataclass(frozen=True)
class Filter:
    """Which objects a list or watch wants: namespace, labels, fields."""

    namespace: str = ""
    labels: LabelSelector | None = None
    fields: FieldSelector | None = None

    def matches(self, co: CachedObject) -> bool:
        if self.namespace and co.namespace != self.namespace:
            return False
        if self.labels is not None and not self.labels.matches(co.labels):
            return False
        return self.fields is None or self.fields.matches(co.fields)


class OutOfWindow(Exception):
    """The requested revision is older than the cache's history."""


# One item on a watcher's queue: the (type, object) pairs of one revision, a
# bookmark revision, or the end of the stream (None).
WatchItem = list[tuple[str, CachedObject]] | int | None


@dataclass(eq=False)
class CacheWatcher:
    filter: Filter
    allow_bookmarks: bool
    sent_revision: int
    # Unbounded so that a history replay always fits; live delivery checks
    # the limit itself (``offer``).
    queue: asyncio.Queue[WatchItem] = field(default_factory=asyncio.Queue)
    closed: bool = False
    # (field, value) when the filter pins an indexed field to one value: the
    # cache then offers this watcher only the events of objects with that value.
    index_key: tuple[str, str] | None = None

    def offer(self, item: WatchItem) -> bool:
        if self.queue.qsize() >= WATCHER_QUEUE_LIMIT:
            return False
        self.queue.put_nowait(item)
        return True

    def convert_event(self, ev: CacheEvent) -> tuple[str, CachedObject] | None:
        """One event as this watcher sees it, or None when it does not concern the watcher.

        An object that starts or stops matching the filter appears to the
        watcher as ADDED or DELETED, as in Kubernetes.
        """
        f = self.filter
        cur = f.matches(ev.obj)
        if ev.type == "MODIFIED":
            old = ev.prev is not None and f.matches(ev.prev)
            if cur and old:
                return "MODIFIED", ev.obj
            if cur:
                return "ADDED", ev.obj
            if old:
                assert ev.prev is not None
                return "DELETED", ev.prev
            return None
        return (ev.type, ev.obj) if cur else None

    def convert(self, batch: CacheBatch) -> list[tuple[str, CachedObject]]:
        """The events of a batch as this watcher sees them."""
        out: list[tuple[str, CachedObject]] = []
        for ev in batch.events:
            seen = self.convert_event(ev)
            if seen is not None:
                out.append(seen)
        return out


# Fields whose watchers the cache indexes, by resource: a kubelet watches its
# pods by spec.nodeName and its Node by metadata.name, so that with thousands
# of nodes an event is offered to a handful of watchers, not to all of them
# (kube-apiserver's cacher "triggers"). Every resource indexes metadata.name.
INDEXED_FIELDS: Mapping[str, tuple[str, ...]] = {
    "pods": ("spec.nodeName", "metadata.name"),
}
DEFAULT_INDEXED_FIELDS = ("metadata.name",)


class WatcherIndex:
    """The live watchers of one cache, indexed by the field value their filter pins.

    ``candidates`` gives, for one event, the watchers that may want it: the
    unindexed ones plus those indexed under the object's value of each
    indexed field, and under the previous state's value (a pod that moved
    between nodes is a DELETED for the old node's watchers).
    """

    def __init__(self, fields: tuple[str, ...]) -> None:
        self.fields = fields
        self.unindexed: set[CacheWatcher] = set()
        self.by_value: dict[str, dict[str, set[CacheWatcher]]] = {f: {} for f in fields}

    def __len__(self) -> int:
        return len(self.unindexed) + sum(len(ws) for by in self.by_value.values() for ws in by.values())

    def __iter__(self) -> Iterator[CacheWatcher]:
        yield from self.unindexed
        for by in self.by_value.values():
            for ws in by.values():
                yield from ws

    def key_for(self, flt: Filter) -> tuple[str, str] | None:
        if flt.fields is None:
            return None
        for f in self.fields:
            value = flt.fields.requires(f)
            if value is not None:
                return f, value
        return None

    def add(self, w: CacheWatcher) -> None:
        w.index_key = self.key_for(w.filter)
        if w.index_key is None:
            self.unindexed.add(w)
        else:
            f, value = w.index_key
            self.by_value[f].setdefault(value, set()).add(w)

    def discard(self, w: CacheWatcher) -> None:
        if w.index_key is None:
            self.unindexed.discard(w)
            return
        f, value = w.index_key
        ws = self.by_value[f].get(value)
        if ws is not None:
            ws.discard(w)
            if not ws:
                del self.by_value[f][value]

    def candidates(self, ev: CacheEvent) -> Iterator[CacheWatcher]:
        """Each watcher that may want ``ev``, once."""
        yield from self.unindexed
        for f, by in self.by_value.items():
            if not by:
                continue
            value = ev.obj.fields.get(f, "")
            yield from by.get(value, ())
            if ev.prev is not None:
                old = ev.prev.fields.get(f, "")
                if old != value:
                    yield from by.get(old, ())


class WatchCache:
    """Cache of one resource: current objects, recent history, live watchers."""

    def __init__(
        self,
        strategy: Strategy,
        storage: Storage,
        prefix: str,
        decode: Callable[[bytes], Message],
        *,
        history_size: int = 10_000,
        bookmark_interval: float = 30.0,
        history_backfill: int | None = None,
        watch_timeout: float = 1800.0,
    ) -> None:
        self.strategy = strategy
        self.rt = strategy.rt
        self._storage = storage
        self._prefix = prefix
        self._decode = decode
        if history_size < 1:
            raise ValueError("the watch cache needs a history of at least one revision")
        self._objects: dict[str, CachedObject] = {}
        self._history: collections.deque[CacheBatch] = collections.deque(maxlen=history_size)
        # Every event with a revision above this is in the history.
        self._oldest = 0
        self.revision = 0
        self._watchers = WatcherIndex(INDEXED_FIELDS.get(self.rt.resource, DEFAULT_INDEXED_FIELDS))
        self._stream: WatchStream | None = None
        self._progress_wanted = False
        self._advanced = asyncio.Condition()
        self._ready = asyncio.Event()
        self._bookmark_interval = bookmark_interval
        # Watches served from this cache end after this long, jittered (ResourceStore.watch).
        self.watch_timeout = watch_timeout
        # How many store revisions before the current one a starting cache
        # replays into its history (default: as many as the history holds).
        self._backfill = history_size if history_backfill is None else max(history_backfill, 0)
        # The revision a starting cache must reach before it is ready.
        self._ready_at = 0
        # A revision etcd reported that the cache has not reached yet, and when (readiness).
        self._lag_target = 0
        self._lag_since = 0.0
        self._task: asyncio.Task[None] | None = None
        self._bookmark_task: asyncio.Task[None] | None = None

    # --- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        """Lists, then follows etcd; ready once the cache has reached etcd's revision at start.

        The list is read ``history_backfill`` revisions in the past, and the
        etcd watch replays the revisions since into the history, so that
        clients resuming from a resourceVersion after an API server restart
        are served from this cache instead of one etcd watch each. A past
        revision that etcd compacted falls back to the compaction point, then
        to the current state (no history, as before).
        """
        current = await self._storage.current_revision()
        await self._relist(at=max(current - self._backfill, 1) if self._backfill else 0, ready_at=current)
        self._task = asyncio.create_task(self._follow(), name=f"watchcache:{self.rt.group_resource}")
        self._bookmark_task = asyncio.create_task(self._bookmarks(), name=f"bookmarks:{self.rt.group_resource}")

    async def stop(self) -> None:
        for task in (self._task, self._bookmark_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._stream is not None:
            await self._stream.close()
        for w in list(self._watchers):
            self._close_watcher(w)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    def make(self, key: str, raw: bytes, revision: int, suffix: bytes | None = None) -> CachedObject:
        """Decodes a stored value into the cache's form (also used for reads that bypass the cache).

        ``suffix`` is ``rv_suffix`` for the revision, when the caller has it already.
        """
        wire = raw + (suffix if suffix is not None else rv_suffix(self.rt.message, revision))
        obj = self._decode(wire)
        meta: Any = obj.metadata  # type: ignore[attr-defined]
        return CachedObject(
            key=key, wire=wire, raw_len=len(raw), revision=revision,
            namespace=meta.namespace, labels=dict(meta.labels), fields=self.strategy.field_set(obj),
            decode=self._decode,
        )

    async def _relist(self, at: int = 0, ready_at: int = 0) -> None:
        """Loads the state at revision ``at`` (0: now); ready when the cache reaches ``ready_at``."""
        items: list[KeyValue] = []
        revision = 0
        while True:
            try:
                items, revision = await self._storage.list(self._prefix, revision=at)
                break
            except CompactedError as exc:
                if not at:
                    raise
                # Replay from the compaction point when etcd says where it is, else give up the history.
                at = exc.compact_revision if exc.compact_revision > at else 0
        self._objects = {kv.key: self.make(kv.key, kv.value, kv.mod_revision) for kv in items}
        self._history.clear()
        self._oldest = revision
        self.revision = revision
        # Watchers cannot be told what they missed across a relist: end their
        # streams so that they resume (or get Expired) from their own revision.
        for w in list(self._watchers):
            self._close_watcher(w)
        self._ready_at = ready_at
        if self.revision >= ready_at:
            self._ready.set()
        else:
            self._ready.clear()
            self._progress_wanted = True  # the replay ends with etcd's answer, if no event gets there first
        async with self._advanced:
            self._advanced.notify_all()

    async def _follow(self) -> None:
        """Applies the etcd watch to the cache, forever; relists after compaction."""
        while True:
            try:
                self._stream = self._storage.watch(self._prefix, start_revision=self.revision + 1)
                if self._progress_wanted:
                    self._progress_wanted = False
                    await self._stream.request_progress()
                async for batch in self._stream:
                    await self._apply(batch)
            except asyncio.CancelledError:
                raise
            except (CompactedError, WatchGapError) as exc:
                log.warning("watch cache %s: %s; relisting", self.rt.group_resource, exc)
                await self._relist_with_retry()
            except StorageError as exc:
                log.warning("watch cache %s: watch failed (%s), resuming", self.rt.group_resource, exc)
                await asyncio.sleep(0.5)
            except Exception:
                log.exception("watch cache %s: unexpected failure, relisting", self.rt.group_resource)
                await asyncio.sleep(0.5)
                await self._relist_with_retry()
            finally:
                if self._stream is not None:
                    with contextlib.suppress(Exception):
                        await self._stream.close()
                    self._stream = None

    async def _relist_with_retry(self) -> None:
        while True:
            try:
                await self._relist()
                return
            except StorageError as exc:
                log.warning("watch cache %s: relist failed: %s", self.rt.group_resource, exc)
                await asyncio.sleep(1.0)

    async def _bookmarks(self) -> None:
        """Keeps idle resources' revision fresh and tells bookmark-aware watchers about it."""
        while True:
            if not self._ready.is_set():
                # Replaying history at start: ask for progress often, so that the
                # cache learns it has caught up even when nothing more is written.
                await asyncio.sleep(0.2)
                if self._stream is not None:
                    with contextlib.suppress(StorageError):
                        await self._stream.request_progress()
                continue
            await asyncio.sleep(self._bookmark_interval)
            if self._stream is not None:
                with contextlib.suppress(StorageError):
                    await self._stream.request_progress()
            for w in list(self._watchers):
                if w.allow_bookmarks and w.sent_revision < self.revision:
                    w.sent_revision = self.revision
                    if not w.offer(self.revision):
                        self._close_watcher(w)

    # --- applying changes ------------------------------------------------

    async def _apply(self, batch: EventBatch) -> None:
        if batch.events:
            events: list[CacheEvent] = []
            # One etcd revision per batch: one resourceVersion suffix for all its objects.
            suffix = rv_suffix(self.rt.message, batch.revision)
            for ev in batch.events:
                prev = self._objects.get(ev.key)
                if ev.type == "PUT":
                    co = self.make(ev.key, ev.value, ev.revision, suffix)
                    self._objects[ev.key] = co
                    # The previous state is only re-stamped, not decoded again: selectors read its
                    # labels and fields, watchers it stopped matching its wire form.
                    before = prev.restamped(ev.revision, suffix) if prev is not None else None
                    events.append(CacheEvent("MODIFIED" if prev is not None else "ADDED", co, before))
                else:
                    # etcd reports the deleted value: the cached state, unless the cache missed a change.
                    if prev is not None and prev.raw_len == len(ev.value) and prev.raw == ev.value:
                        co = prev.restamped(ev.revision, suffix)
                    else:
                        co = self.make(ev.key, ev.value, ev.revision, suffix)
                    self._objects.pop(ev.key, None)
                    events.append(CacheEvent("DELETED", co, prev))
            cb = CacheBatch(batch.revision, tuple(events))
            if len(self._history) == self._history.maxlen:
                self._oldest = self._history[0].revision
            self._history.append(cb)
            self._dispatch(cb)
        if batch.revision > self.revision:
            self.revision = batch.revision
            if self.revision >= self._ready_at and not self._ready.is_set():
                log.info("watch cache %s: ready at revision %d, history from %d", self.rt.group_resource,
                         self.revision, self._oldest)
                self._ready.set()
            async with self._advanced:
                self._advanced.notify_all()

    def _dispatch(self, cb: CacheBatch) -> None:
        """Offers each watcher its view of the batch, testing only the watchers the index names."""
        if len(cb.events) == 1:
            ev = cb.events[0]
            for w in list(self._watchers.candidates(ev)):
                seen = w.convert_event(ev)
                if seen is not None:
                    self._deliver(w, cb.revision, [seen])
            return
        # Several events at one revision (a multi-key transaction): one item per watcher, in event order.
        per_watcher: dict[CacheWatcher, list[tuple[str, CachedObject]]] = {}
        for ev in cb.events:
            for w in self._watchers.candidates(ev):
                # A watcher sits under one index key, so it is offered each event at most once.
                seen = w.convert_event(ev)
                if seen is not None:
                    per_watcher.setdefault(w, []).append(seen)
        for w, out in per_watcher.items():
            self._deliver(w, cb.revision, out)

    def _deliver(self, w: CacheWatcher, revision: int, out: list[tuple[str, CachedObject]]) -> None:
        if w.closed:
            return
        w.sent_revision = revision
        if not w.offer(out):
            log.info("watch cache %s: closing a watcher that fell behind", self.rt.group_resource)
            self._close_watcher(w)

    def _close_watcher(self, w: CacheWatcher) -> None:
        if w.closed:
            return
        w.closed = True
        self._watchers.discard(w)
        w.queue.put_nowait(None)

    # --- reading ---------------------------------------------------------

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def wait_for_revision(self, revision: int, timeout: float = 3.0) -> None:
        """Waits until the cache has seen ``revision``; asks etcd for progress to get there."""
        if self.revision >= revision:
            return
        if self._stream is not None:
            with contextlib.suppress(StorageError):
                await self._stream.request_progress()
        else:
            # Between streams (start, relist, retry): ask as soon as the next one opens.
            self._progress_wanted = True

        async def advanced() -> None:
            async with self._advanced:
                await self._advanced.wait_for(lambda: self.revision >= revision)

        try:
            await asyncio.wait_for(advanced(), timeout)
        except TimeoutError:
            raise errors.StatusError(
                "Timeout", f"Too large resource version: {revision}, current: {self.revision}",
                retry_after_seconds=1,
            ) from None

    async def observe_store_revision(self, revision: int, now: float) -> None:
        """The health monitor saw etcd at ``revision`` at time ``now``.

        Remembers the first such revision the cache has not reached and asks
        etcd for progress, so that an idle resource catches up at once; the
        cache is behind when it has not reached that revision in time.
        """
        if self._lag_target and self.revision >= self._lag_target:
            self._lag_target = 0
        if self.revision >= revision or self._lag_target:
            return
        self._lag_target, self._lag_since = revision, now
        if self._stream is not None:
            with contextlib.suppress(StorageError):
                await self._stream.request_progress()
        else:
            self._progress_wanted = True

    def behind(self, now: float, max_lag: float) -> bool:
        """True while a revision etcd reported more than ``max_lag`` seconds ago is still ahead of the cache."""
        return bool(self._lag_target) and self.revision < self._lag_target and now - self._lag_since > max_lag

    def get(self, key: str) -> CachedObject | None:
        """The cached object, or None (also while a starting cache replays its history: read etcd)."""
        return self._objects.get(key) if self._ready.is_set() else None

    def list(self, flt: Filter) -> tuple[list[CachedObject], int]:
        """Matching objects sorted by key, and the revision they reflect."""
        prefix = f"{self._prefix}{flt.namespace}/" if flt.namespace and self.rt.namespaced else self._prefix
        items = [co for key, co in self._objects.items() if key.startswith(prefix) and flt.matches(co)]
        items.sort(key=lambda co: co.key)
        return items, self.revision

    def watch(self, revision: int | None, flt: Filter, allow_bookmarks: bool) -> CacheWatcher:
        """Registers a watcher. ``None`` = current state as ADDED events, then changes.

        Runs without awaiting, so that nothing can slip between the snapshot
        or history replay and the live events.
        """
        if revision is None:
            start = self.revision
            snapshot = [("ADDED", co) for co in self.list(flt)[0]]
            initial: Iterable[list[tuple[str, CachedObject]]] = (
                snapshot[i:i + INITIAL_CHUNK] for i in range(0, len(snapshot), INITIAL_CHUNK))
        else:
            if revision < self._oldest:
                raise OutOfWindow(revision)
            if revision > self.revision:
                raise ValueError("wait_for_revision first")
            start = revision
            initial = []
        w = CacheWatcher(flt, allow_bookmarks, start)
        if revision is not None:
            for cb in self._history:
                if cb.revision > revision:
                    out = w.convert(cb)
                    if out:
                        w.sent_revision = cb.revision
                        w.queue.put_nowait(out)
        else:
            for chunk in initial:
                w.queue.put_nowait(chunk)
        self._watchers.add(w)
        return w

    def expire(self, w: CacheWatcher) -> None:
        """Ends a watcher's stream after what it has queued (its server-chosen timeout passed).

        A bookmark-aware watcher gets the cache's revision first, so that it
        resumes from there rather than from its last event.
        """
        if not w.closed and w.allow_bookmarks and w.sent_revision < self.revision:
            w.sent_revision = self.revision
            w.queue.put_nowait(self.revision)
        self._close_watcher(w)

    def unwatch(self, w: CacheWatcher) -> None:
        self._watchers.discard(w)
        w.closed = True
