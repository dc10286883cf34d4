"""A dict-backed Storage (kubelite.storage.interface) for hermetic unit tests.

Keeps keys, values and revisions like etcd does (one store-wide revision,
compare-and-swap on mod_revision, claims and releases in the same "transaction")
so that the generic store, the strategies and the watch cache can be driven end
to end without etcd. Every write is kept as a list of Events, which gives reads
at a past revision, watches from a past revision (one EventBatch per revision,
then live batches as writes happen) and compaction, with etcd's rules:
a read or a watch below the compaction point fails with CompactedError, one at
the compaction point itself still works.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from kubelite.storage.interface import (
    Claim,
    ClaimTakenError,
    CompactedError,
    ConflictError,
    Event,
    EventBatch,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    RangePage,
    StorageError,
)

# What a FakeWatchStream's queue holds: a batch, a failure to raise, or the end (None).
_StreamItem = EventBatch | StorageError | None


class FakeWatchStream:
    """One watch on a prefix: the history from its start revision, then live writes.

    Writes reach the stream synchronously (``FakeStorage._commit``), so a test
    decides exactly what is queued before the consumer next runs.
    """

    def __init__(self, storage: FakeStorage, prefix: str) -> None:
        self.prefix = prefix
        self.progress_requests = 0
        self.closed = False
        self._storage = storage
        self._queue: asyncio.Queue[_StreamItem] = asyncio.Queue()

    def offer(self, revision: int, events: Sequence[Event]) -> None:
        """Queues the events of one revision under this stream's prefix, if any."""
        mine = tuple(ev for ev in events if ev.key.startswith(self.prefix))
        if mine and not self.closed:
            self._queue.put_nowait(EventBatch(revision, mine))

    def fail(self, exc: StorageError) -> None:
        """Drops the batches not yet read; the next read raises ``exc`` (a broken etcd stream)."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(exc)

    def __aiter__(self) -> FakeWatchStream:
        return self

    async def __anext__(self) -> EventBatch:
        if self.closed:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is None:
            raise StopAsyncIteration
        if isinstance(item, StorageError):
            await self.close()
            raise item
        return item

    async def request_progress(self) -> None:
        self.progress_requests += 1
        if not self.closed:
            # Every write up to now is already queued: the notification follows them.
            self._queue.put_nowait(EventBatch(self._storage.revision, ()))

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self in self._storage.streams:
            self._storage.streams.remove(self)
        self._queue.put_nowait(None)


class FakeStorage:
    def __init__(self) -> None:
        self.data: dict[str, KeyValue] = {}
        self.revision = 1
        # Every change ever made, in revision order (compaction only hides it).
        self.history: list[Event] = []
        self.compacted = 0
        self.streams: list[FakeWatchStream] = []  # open watches
        self.watch_calls: list[tuple[str, int]] = []  # (prefix, start_revision) of every watch()
        self.ttls: dict[str, int] = {}  # the ttl asked for at each key's last write (0: none)
        self.keys_read = 0  # keys returned by list_page (what EtcdStorage counts in etcd_read_keys_total)

    def _claim(self, claims: Sequence[Claim]) -> None:
        for c in claims:
            if c.key in self.data:
                raise ClaimTakenError(c.key)

    def _commit(self, puts: Mapping[str, bytes], deletes: Sequence[str] = ()) -> int:
        """Applies one transaction at a new revision and tells the open watches."""
        self.revision += 1
        rev = self.revision
        events: list[Event] = []
        for key, value in puts.items():
            prev = self.data.get(key)
            created = prev.create_revision if prev is not None else rev
            self.data[key] = KeyValue(key, value, rev, created)
            events.append(Event("PUT", key, value, prev.value if prev is not None else None, rev, created))
        for key in deletes:
            gone = self.data.pop(key, None)
            if gone is not None:
                events.append(Event("DELETE", key, gone.value, None, rev, 0))
        self.history.extend(events)
        for stream in list(self.streams):
            stream.offer(rev, events)
        return rev

    async def create(self, key: str, value: bytes, *, claims: Sequence[Claim] = (), ttl: int = 0) -> int:
        self.ttls[key] = ttl
        if key in self.data:
            raise KeyExistsError(key, self.data[key])
        self._claim(claims)
        return self._commit({**{c.key: c.value for c in claims}, key: value})

    async def get(self, key: str) -> KeyValue:
        try:
            return self.data[key]
        except KeyError:
            raise KeyNotFoundError(key) from None

    async def list(self, prefix: str, *, revision: int = 0) -> tuple[list[KeyValue], int]:
        if not revision:
            return [kv for k, kv in sorted(self.data.items()) if k.startswith(prefix)], self.revision
        if revision < self.compacted:
            raise CompactedError(revision, self.compacted)
        if revision > self.revision:
            raise FutureRevisionError(revision)
        state: dict[str, KeyValue] = {}
        for ev in self.history:
            if ev.revision > revision:
                break
            if ev.type == "PUT":
                state[ev.key] = KeyValue(ev.key, ev.value, ev.revision, ev.create_revision)
            else:
                state.pop(ev.key, None)
        return [kv for k, kv in sorted(state.items()) if k.startswith(prefix)], revision

    async def list_page(self, prefix: str, *, start: str = "", limit: int, revision: int = 0) -> RangePage:
        if limit < 1:
            raise ValueError("list_page needs a positive limit")
        items, at = await self.list(prefix, revision=revision)
        rest = [kv for kv in items if kv.key >= start] if start else items
        page = rest[:limit]
        self.keys_read += len(page)
        return RangePage(page, at, len(rest) > limit, len(rest))

    async def update(self, key: str, value: bytes, *, expected_revision: int, claims: Sequence[Claim] = (),
                     releases: Sequence[str] = (), ttl: int = 0) -> int:
        self.ttls[key] = ttl
        current = await self.get(key)
        if expected_revision and current.mod_revision != expected_revision:
            raise ConflictError(key, current, expected_revision)
        self._claim(claims)
        return self._commit({**{c.key: c.value for c in claims}, key: value}, releases)

    async def delete(self, key: str, *, expected_revision: int = 0, releases: Sequence[str] = ()) -> KeyValue:
        current = await self.get(key)
        if expected_revision and current.mod_revision != expected_revision:
            raise ConflictError(key, current, expected_revision)
        revision = self._commit({}, [key, *releases])
        return KeyValue(key, current.value, revision, current.create_revision)

    def write_many(self, puts: Mapping[str, bytes], deletes: Sequence[str] = ()) -> int:
        """Test hook: several keys changed in one transaction, hence one revision."""
        return self._commit(puts, deletes)

    async def current_revision(self) -> int:
        return self.revision

    def watch(self, prefix: str, *, start_revision: int) -> FakeWatchStream:
        self.watch_calls.append((prefix, start_revision))
        stream = FakeWatchStream(self, prefix)
        start = start_revision if start_revision > 0 else self.revision + 1
        if start < self.compacted:
            stream.fail(CompactedError(start, self.compacted))
            return stream
        by_revision: dict[int, list[Event]] = {}
        for ev in self.history:
            if ev.revision >= start:
                by_revision.setdefault(ev.revision, []).append(ev)
        for rev, events in by_revision.items():
            stream.offer(rev, events)
        self.streams.append(stream)
        return stream

    def break_watches(self, exc: StorageError) -> None:
        """Test hook: every open watch drops what it has not delivered and raises ``exc``."""
        for stream in self.streams:
            stream.fail(exc)

    async def compact(self, revision: int) -> None:
        if revision > self.revision:
            raise FutureRevisionError(revision)
        self.compacted = max(self.compacted, revision)

    async def close(self) -> None:
        for stream in list(self.streams):
            await stream.close()
