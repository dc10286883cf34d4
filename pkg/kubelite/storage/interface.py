"""The storage contract the API server is written against.

The API server never sees etcd: it sees keys, opaque value bytes and revisions
(a revision is the store-wide, monotonic version number that becomes an
object's ``resourceVersion``). Keeping the contract this small lets the
registry and the watch cache be tested against an in-memory fake, and keeps
every etcd and gRPC detail behind one boundary (``kubelite.storage.etcd``),
where failures are translated into the ``StorageError`` tree below.

Write preconditions are compare-and-swap on a key's ``mod_revision``; claims and
releases let one write atomically take or free "allocation" keys (a Service's
ClusterIP or NodePort) in the same transaction as the object itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable


@dataclass(frozen=True)
class KeyValue:
    """One stored key at one point in time."""

    key: str
    value: bytes
    mod_revision: int
    create_revision: int


@dataclass(frozen=True)
class RangePage:
    """One page of keys under a prefix, from a start key, at one revision.

    ``count`` is how many keys the range from the start key to the end of the
    prefix held at that revision, the returned ones included (etcd's range
    ``count``), so that a caller can report what remains without reading it.
    """

    items: list[KeyValue]
    revision: int
    more: bool
    count: int


@dataclass(frozen=True)
class Event:
    """One change of one key.

    ``value`` is the new value for a PUT and, for a DELETE, the value just before
    the deletion, so that a watcher can tell what went away without a cache.
    ``prev_value`` is the value a PUT replaced (None when the PUT created the key).
    """

    type: Literal["PUT", "DELETE"]
    key: str
    value: bytes
    prev_value: bytes | None
    revision: int
    create_revision: int


@dataclass(frozen=True)
class EventBatch:
    """Every event of one store revision under a watched prefix, in order.

    An empty ``events`` tuple is a progress notification: nothing happened
    under the prefix up to and including ``revision`` beyond what the stream
    has already delivered.
    """

    revision: int
    events: tuple[Event, ...]

    @property
    def is_progress(self) -> bool:
        return not self.events


@dataclass(frozen=True)
class Claim:
    """A key that must not exist yet and is created in the same transaction.

    Used for allocations (a ClusterIP, a NodePort): two writers racing for the
    same address cannot both win, because etcd evaluates both compares in one
    transaction.
    """

    key: str
    value: bytes


class StorageError(Exception):
    """Root of every failure the storage layer reports."""


class KeyExistsError(StorageError):
    """A create found its key already present."""

    def __init__(self, key: str, current: KeyValue | None = None) -> None:
        super().__init__(f"key {key!r} already exists")
        self.key = key
        self.current = current


class KeyNotFoundError(StorageError):
    """The key does not exist (get, update, delete)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} not found")
        self.key = key


class ConflictError(StorageError):
    """The stored mod_revision is not the one the writer expected.

    ``current`` is what is stored now, so the caller can report or retry
    without another read.
    """

    def __init__(self, key: str, current: KeyValue | None = None, expected_revision: int = 0) -> None:
        have = current.mod_revision if current is not None else 0
        super().__init__(f"key {key!r}: expected revision {expected_revision}, stored revision {have}")
        self.key = key
        self.current = current
        self.expected_revision = expected_revision


class ClaimTakenError(StorageError):
    """A Claim's key already exists (someone else holds that allocation)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"claim {key!r} is already taken")
        self.key = key


class WatchGapError(StorageError):
    """A watch reported progress past events it had not yet delivered.

    etcd before 3.4.25 may answer a progress request ahead of earlier events.
    The stream checks such answers, but cannot see a key created and deleted
    inside the window; when such an event turns up late, the consumer must
    relist (watchers then resume from their own revisions, served from etcd).
    """

    def __init__(self, revision: int, reported: int) -> None:
        super().__init__(f"event at revision {revision} arrived after progress to {reported} was reported")
        self.revision = revision
        self.reported = reported


class CompactedError(StorageError):
    """The requested revision is older than the store's compaction point.

    The caller must relist (Kubernetes' "410 Expired / too old resource version").
    ``compact_revision`` is 0 when the store did not say.
    """

    def __init__(self, requested_revision: int, compact_revision: int) -> None:
        super().__init__(
            f"revision {requested_revision} has been compacted (compacted up to {compact_revision})"
        )
        self.requested_revision = requested_revision
        self.compact_revision = compact_revision


class FutureRevisionError(StorageError):
    """A read asked for a revision the store has not reached yet."""

    def __init__(self, requested_revision: int) -> None:
        super().__init__(f"revision {requested_revision} is a future revision")
        self.requested_revision = requested_revision


class TooLargeError(StorageError):
    """etcd refused the write as too large (``--max-request-bytes``, 1.5 MiB by default)."""


class UnavailableError(StorageError):
    """No member answered in time (or the outcome of a write could not be learned)."""


@runtime_checkable
class WatchStream(Protocol):
    """One watch on one prefix; iterate it for EventBatches, close it when done."""

    def __aiter__(self) -> AsyncIterator[EventBatch]: ...

    async def request_progress(self) -> None:
        """Asks for a progress notification: the iterator then yields an empty
        EventBatch carrying the store's current revision."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class Storage(Protocol):
    """What the API server needs from its store. See ``kubelite.storage.etcd``."""

    async def create(self, key: str, value: bytes, *, claims: Sequence[Claim] = (), ttl: int = 0) -> int:
        """Creates ``key``; returns the write's revision. KeyExistsError / ClaimTakenError.

        ``ttl`` > 0 makes the key expire on its own after at least that many
        seconds (an etcd lease; leases are shared, so up to 5% later), which
        is how Events stop growing etcd without anyone deleting them.
        """
        ...

    async def get(self, key: str) -> KeyValue:
        """Linearizable read of one key. KeyNotFoundError."""
        ...

    async def list(self, prefix: str, *, revision: int = 0) -> tuple[list[KeyValue], int]:
        """Items under ``prefix`` sorted by key, and the revision they were read at.

        ``revision`` > 0 reads at that past revision (CompactedError when it was
        compacted); the returned revision is then ``revision`` itself.
        """
        ...

    async def list_page(self, prefix: str, *, start: str = "", limit: int, revision: int = 0) -> RangePage:
        """At most ``limit`` keys under ``prefix`` from ``start`` (inclusive; "" = the prefix's first key).

        Reads only those keys (a paged list reads each key once). ``revision``
        as for list(); the page's revision is the one it was read at.
        """
        ...

    async def update(
        self,
        key: str,
        value: bytes,
        *,
        expected_revision: int,
        claims: Sequence[Claim] = (),
        releases: Sequence[str] = (),
        ttl: int = 0,
    ) -> int:
        """Compare-and-swap on mod_revision; returns the write's revision.

        ``releases`` are keys deleted in the same transaction; ``ttl`` as for
        create (each write of the key restarts its time to live).
        ConflictError / KeyNotFoundError / ClaimTakenError.
        """
        ...

    async def delete(self, key: str, *, expected_revision: int = 0, releases: Sequence[str] = ()) -> KeyValue:
        """Deletes ``key`` (unconditionally when expected_revision is 0).

        Returns the deleted KeyValue with mod_revision set to the deletion's
        revision. KeyNotFoundError / ConflictError.
        """
        ...

    async def current_revision(self) -> int:
        """Linearizable read of the store's current revision."""
        ...

    def watch(self, prefix: str, *, start_revision: int) -> WatchStream:
        """Events under ``prefix`` with revision >= start_revision.

        Iteration raises CompactedError when start_revision was compacted.
        """
        ...

    async def compact(self, revision: int) -> None: ...

    async def close(self) -> None: ...
