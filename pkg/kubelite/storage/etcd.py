"""EtcdStorage: the Storage contract on a multi-member etcd cluster (via aetcd).

Usage::

    storage = await EtcdStorage.open(["http://127.0.0.1:2379", ...])   # or:
    storage = EtcdStorage(endpoints); await storage.start()             # start() is optional
    async with EtcdStorage(endpoints) as storage: ...

Failover. aetcd's Client talks to one ``host:port``; we keep one
``_MemberClient`` (an aetcd.Client subclass that opens its own channel with
our options: unlimited receive size for big lists, keepalive, fast reconnect)
per member, and pick the member ourselves. One channel per member rather than
one multi-address gRPC channel because the choice of member has to follow
etcd's answers, not only the transport's: a member that is up but cut off from
the quorum answers "etcdserver: no leader" (we send etcd's ``hasleader``
metadata so it does so at once), and a watch must be re-opened on a *different*
member from the revision after the last one it delivered. Every request goes
to the current member; a transient failure (UNAVAILABLE, no leader, leader
changed, timeout) moves the current member to the next one and retries with a
short backoff, within ``request_timeout``.

Writes are never retried blindly. A write whose request may have reached etcd
without a reply (connection reset, timeout, "leader changed") is resolved by
reading the keys back: stored bytes equal to ours mean it committed, a key
that still satisfies the precondition means it did not (the op is queued
again, compare-guarded so it cannot apply twice), anything else is the real
error (Conflict, AlreadyExists, ...). An acknowledged write is committed by a
Raft quorum, hence durable.

Batching (group commit, see ``kubelite.storage.batcher``). create/update/
delete calls are queued; whenever fewer than ``max_inflight_txns``
transactions are in flight, the queue is cut into one Txn at once, so a lone
write goes out immediately (no timer) and, under load, writes pile up behind
the in-flight Txns and leave together. All writes of one Txn share one
revision.

Watches. One etcd watch stream per ``watch()`` call, with prev_kv, its events
grouped by revision into EventBatches. A broken stream is re-opened on
another member from the last delivered revision + 1, so the consumer sees no
gap and no duplicate. etcd 3.4's manual progress request is answered out of
band of the event queue (a notification can overtake events of earlier
revisions, fixed upstream in 3.4.25/3.5.8), so before yielding such a
notification we check against the store that nothing under the prefix changed
between the last delivered revision and the notified one.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import aetcd
import grpc
import grpc.aio
from aetcd import rpc

from kubelite.storage import metrics
from kubelite.storage.batcher import (
    BatchLimits,
    WriteOp,
    applied_revision,
    build_txn,
    check_preconditions,
    read_state,
    take_batch,
    to_key_value,
)
from kubelite.storage.interface import (
    Claim,
    CompactedError,
    Event,
    EventBatch,
    FutureRevisionError,
    KeyNotFoundError,
    KeyValue,
    RangePage,
    StorageError,
    TooLargeError,
    UnavailableError,
    WatchGapError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
_Batch = list[WriteOp]  # an alias: inside EtcdStorage, ``list`` names the method (hence builtins.list)

# etcd answers "etcdserver: no leader" at once, instead of queueing the request
# on a member cut off from the quorum, when the request carries this metadata
# (clientv3.WithRequireLeader). For watches it also cancels the stream when the
# member loses its leader, so we move to a member that still has one.
_METADATA = (("hasleader", "true"),)

_CHANNEL_OPTIONS: dict[str, Any] = {
    "grpc.max_receive_message_length": -1,  # a list of a big prefix easily exceeds gRPC's 4 MiB
    "grpc.max_send_message_length": -1,
    # etcd's --grpc-keepalive-min-time is 5 s: ping no faster than that, and only with calls open.
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.keepalive_permit_without_calls": 0,
    "grpc.http2.max_pings_without_data": 0,
    # A restarted member should be found again in about a second, not gRPC's two minutes.
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1_000,
}

_EVENT_DELETE = rpc.Event.EventType.Value("DELETE")


def parse_endpoints(endpoints: Sequence[str] | str) -> list[tuple[str, int]]:
    """``--etcd-servers`` forms: "http://h:p", "h:p", comma-separated lists."""
    items = [endpoints] if isinstance(endpoints, str) else list(endpoints)
    out: list[tuple[str, int]] = []
    for item in items:
        for raw in item.split(","):
            text = raw.strip()
            if not text:
                continue
            if "://" not in text:
                text = "http://" + text
            parts = urlsplit(text)
            if parts.scheme != "http":
                raise ValueError(f"etcd endpoint {raw!r}: only http:// is supported")
            if not parts.hostname:
                raise ValueError(f"etcd endpoint {raw!r}: no host")
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # IPv6 literal
            out.append((host, parts.port or 2379))
    if not out:
        raise ValueError("no etcd endpoints given")
    return out


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that makes [prefix, end) exactly the keys starting with prefix."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # empty (or all-0xff) prefix: every key from ``prefix`` on


class _MemberClient(aetcd.Client):  # type: ignore[misc]  # aetcd is untyped
    """aetcd's client for one member, plus the Watch stub aetcd keeps private."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host=host, port=port, options=dict(_CHANNEL_OPTIONS))
        self.endpoint = f"{host}:{port}"
        self.watchstub: Any = None

    async def connect(self) -> None:
        await super().connect()
        if self.watchstub is None:
            self.watchstub = rpc.WatchStub(self.channel)

    def _init_channel_attrs(self) -> None:
        super()._init_channel_attrs()
        self.watchstub = None


class _Failure(Enum):
    SAFE = "safe"  # the request certainly did not take effect: retry anywhere
    AMBIGUOUS = "ambiguous"  # it may have taken effect: reads retry, writes resolve
    FATAL = "fatal"  # etcd's final answer: translate and raise


class _AmbiguousWrite(Exception):
    """A write got no reply; whether it committed must be found out by reading."""


_SAFE_DETAILS = (
    "etcdserver: no leader",
    "etcdserver: too many requests",
    "etcdserver: not capable",
    "failed to connect",
    "connection refused",
    "connections to all backends failing",
    "dns resolution failed",
)
_AMBIGUOUS_DETAILS = (
    "etcdserver: leader changed",
    "etcdserver: request timed out",
    "etcdserver: server stopped",
    "raft proposal dropped",
    "etcdserver: unhealthy cluster",
)


def _classify(exc: grpc.aio.AioRpcError) -> _Failure:
    code = exc.code()
    details = (exc.details() or "").lower()
    if any(d in details for d in _SAFE_DETAILS):
        return _Failure.SAFE
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return _Failure.AMBIGUOUS
    if any(d in details for d in _AMBIGUOUS_DETAILS):
        return _Failure.AMBIGUOUS
    if code == grpc.StatusCode.UNKNOWN and "etcdserver" not in details and "mvcc" not in details:
        return _Failure.AMBIGUOUS  # transport trouble gRPC could not name
    return _Failure.FATAL


def _translate(exc: grpc.aio.AioRpcError, *, revision: int = 0) -> StorageError:
    details = exc.details() or ""
    if "required revision has been compacted" in details:
        return CompactedError(revision, 0)  # etcd's error does not say where; see _compact_revision_hint
    if "required revision is a future revision" in details:
        return FutureRevisionError(revision)
    if "request is too large" in details or "larger than max" in details:  # etcd's limit, or gRPC's
        return TooLargeError(f"etcd: {details}")
    return StorageError(f"etcd: {exc.code().name}: {details}")


@dataclass
class StorageStats:
    """Counters of one EtcdStorage (the Prometheus series are process-wide)."""

    txns: int = 0  # write transactions that got etcd's answer
    batched_ops: int = 0  # caller ops those transactions carried
    failed_txns: int = 0  # transactions whose compares failed (some op's precondition)
    ambiguous_txns: int = 0  # transactions without an answer, resolved by reading back
    retries: int = 0  # requests retried on another member
    watch_restarts: int = 0  # watch streams re-opened after a break


class LeaseManager:
    """Shares etcd leases between keys written with the same time to live.

    A lease per Event would cost a grant (a Raft write) per Event and as many
    timers in etcd. Instead a lease is granted for ``ttl`` plus a reuse window
    (5% of ttl, as kube-apiserver's lease manager), and every key written with
    that ttl during the window joins it, up to ``max_keys``: each key then
    lives between ttl and ttl + 5%.
    """

    REUSE_FRACTION = 0.05
    MAX_KEYS = 1000

    def __init__(self, grant: Callable[[int], Awaitable[int]], *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = MAX_KEYS) -> None:
        self._grant = grant
        self._clock = clock
        self._max_keys = max_keys
        self._current: dict[int, tuple[int, float, int]] = {}  # ttl -> (lease id, reusable until, keys)
        self._lock = asyncio.Lock()

    async def lease_for(self, ttl: int) -> int:
        """A lease ID for a key that must live at least ``ttl`` seconds; 0 for ttl 0 (no lease)."""
        if ttl <= 0:
            return 0
        async with self._lock:
            now = self._clock()
            lease = self._current.get(ttl)
            if lease is not None and now < lease[1] and lease[2] < self._max_keys:
                self._current[ttl] = (lease[0], lease[1], lease[2] + 1)
                return lease[0]
            window = max(1, int(ttl * self.REUSE_FRACTION))
            lease_id = await self._grant(ttl + window)
            self._current[ttl] = (lease_id, now + window, 1)
            return lease_id


class EtcdStorage:
    """The Storage contract on etcd. See the module docstring for the design.

    ``request_timeout`` bounds each call, retries and failover included (a
    write that has to be resolved after an unanswered Txn may take up to about
    twice that). ``max_batch_ops`` caps the entries in each of a Txn's compare,
    success and failure lists (etcd's ``--max-txn-ops``, default 128);
    ``max_txn_bytes`` its size (etcd's ``--max-request-bytes``, 1.5 MiB);
    ``max_inflight_txns`` how many Txns are outstanding at once;
    ``attempt_timeout`` how long one attempt on one member may take
    (default: a third of request_timeout, at least 1 s); ``list_page_size``
    how many keys one Range of a list() reads (pages share one revision).
    """

    def __init__(
        self,
        endpoints: Sequence[str] | str,
        *,
        request_timeout: float = 5.0,
        max_batch_ops: int = 128,
        max_txn_bytes: int = BatchLimits.max_bytes,
        max_inflight_txns: int = 2,
        attempt_timeout: float | None = None,
        list_page_size: int = 5000,
    ) -> None:
        if max_batch_ops < 1 or max_inflight_txns < 1:
            raise ValueError("max_batch_ops and max_inflight_txns must be positive")
        self._members = [_MemberClient(host, port) for host, port in parse_endpoints(endpoints)]
        self._current = 0
        self._request_timeout = request_timeout
        # One attempt must leave time to try another member within request_timeout.
        # A proposal a follower forwarded to a leader that just died is answered
        # only after etcd's own timeout (7 s), so we stop waiting well before: a
        # Txn that timed out is then resolved by reading back, never lost.
        self._attempt_timeout = attempt_timeout or max(1.0, request_timeout / 3)
        self._limits = BatchLimits(max_ops=max_batch_ops, max_bytes=max_txn_bytes)
        self._max_inflight = max_inflight_txns
        self._list_page = list_page_size
        self._pending: deque[WriteOp] = deque()
        self._inflight: dict[asyncio.Task[None], frozenset[str]] = {}  # Txn task -> its keys
        self._txn_seq = 0
        self._seen_revision = 0  # highest header revision seen: a lower bound for any later write
        self._closed = False  # no new calls; in-flight Txns still finish
        self._shut = False  # channels closed
        self._watches: weakref.WeakSet[EtcdWatchStream] = weakref.WeakSet()
        self._leases = LeaseManager(self._grant_lease)
        self.stats = StorageStats()

    @property
    def endpoints(self) -> list[str]:
        return [f"http://{m.endpoint}" for m in self._members]

    # -- lifecycle -------------------------------------------------------

    @classmethod
    async def open(cls, endpoints: Sequence[str] | str, **kwargs: Any) -> EtcdStorage:
        """Constructs and starts (fails with UnavailableError if no member answers)."""
        storage = cls(endpoints, **kwargs)
        try:
            await storage.start()
        except BaseException:
            await storage.close()
            raise
        return storage

    async def start(self) -> None:
        """Checks that the cluster answers a linearizable read. Optional: every
        call connects lazily; this only makes a bad ``--etcd-servers`` fail early."""
        await self.current_revision()

    async def close(self) -> None:
        """Fails queued writes, waits for in-flight Txns, closes watches and channels."""
        if self._closed:
            return
        self._closed = True
        self._fail_pending()
        while self._inflight:
            # In-flight Txns are bounded by request_timeout; letting them finish means
            # no caller is left without an answer to a write that did commit.
            await asyncio.gather(*self._inflight, return_exceptions=True)
        self._fail_pending()  # ops a finished Txn queued again
        for watch in list(self._watches):
            await watch.close()
        self._shut = True
        for member in self._members:
            with contextlib.suppress(Exception):
                await member.close()

    def _fail_pending(self) -> None:
        while self._pending:
            op = self._pending.popleft()
            _fail(op, _unanswered(op, "storage closed before the write was committed"))

    async def __aenter__(self) -> EtcdStorage:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- member choice and retries ----------------------------------------

    def _pick(self) -> tuple[int, _MemberClient]:
        return self._current, self._members[self._current]

    def _failover(self, index: int) -> None:
        """Moves off member ``index`` unless another caller already did."""
        if self._current == index and len(self._members) > 1:
            self._current = (index + 1) % len(self._members)
            log.debug("etcd: switching to member %s", self._members[self._current].endpoint)

    def _observe_header(self, header: Any) -> None:
        revision = int(header.revision)
        if revision > self._seen_revision:
            self._seen_revision = revision

    async def _call(
        self,
        operation: str,
        invoke: Callable[[_MemberClient, float], Awaitable[T]],
        *,
        deadline: float | None = None,
        write: bool = False,
        revision: int = 0,
    ) -> T:
        """Runs ``invoke(member, timeout)`` on the current member, failing over.

        Transient failures are retried on the next member with backoff until
        ``deadline``. For a write, a failure after which the request may have
        been applied raises _AmbiguousWrite instead of a retry.
        """
        if self._shut:
            raise UnavailableError("storage is closed")
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self._request_timeout
        backoff = 0.025
        tried = 0
        while True:
            index, member = self._pick()
            remaining = deadline - loop.time()
            timeout = min(remaining, self._attempt_timeout)
            started = time.perf_counter()
            try:
                if timeout <= 0:
                    raise TimeoutError
                await member.connect()
                result = await invoke(member, timeout)
            except grpc.aio.AioRpcError as exc:
                metrics.REQUEST_DURATION.labels(operation).observe(time.perf_counter() - started)
                metrics.REQUEST_ERRORS.labels(operation, exc.code().name).inc()
                kind = _classify(exc)
                if kind is _Failure.FATAL:
                    raise _translate(exc, revision=revision) from exc
                log.debug("etcd %s on %s failed (%s): %s", operation, member.endpoint, kind.value, exc.details())
                self._failover(index)
                if write and kind is _Failure.AMBIGUOUS:
                    raise _AmbiguousWrite(exc.details()) from exc
                tried += 1
                if loop.time() + backoff >= deadline:
                    raise UnavailableError(
                        f"etcd {operation}: no member answered within {self._request_timeout:g}s "
                        f"({tried} attempts; last: {exc.code().name}: {exc.details()})"
                    ) from exc
                self.stats.retries += 1
                metrics.RETRIES.labels(operation).inc()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 0.4)
                continue
            except TimeoutError as exc:
                raise UnavailableError(f"etcd {operation}: timed out after {self._request_timeout:g}s") from exc
            except aetcd.ClientError as exc:  # only connect() raises these (channel setup)
                raise UnavailableError(f"etcd {operation}: {exc}") from exc
            metrics.REQUEST_DURATION.labels(operation).observe(time.perf_counter() - started)
            return result

    async def _range(self, operation: str, request: Any, *, deadline: float | None = None) -> Any:
        response = await self._call(
            operation,
            lambda m, t: m.kvstub.Range(request, timeout=t, metadata=_METADATA),
            deadline=deadline,
            revision=int(request.revision),
        )
        self._observe_header(response.header)
        if response.kvs:
            metrics.KEYS_READ.labels(operation).inc(len(response.kvs))
        return response

    # -- reads -------------------------------------------------------------

    async def get(self, key: str) -> KeyValue:
        response = await self._range("get", rpc.RangeRequest(key=key.encode()))
        if not response.kvs:
            raise KeyNotFoundError(key)
        return to_key_value(response.kvs[0])

    async def get_at(self, key: str, revision: int, *, deadline: float | None = None) -> KeyValue | None:
        """The key as it was at ``revision`` (None if absent then)."""
        response = await self._range("get", rpc.RangeRequest(key=key.encode(), revision=revision), deadline=deadline)
        return to_key_value(response.kvs[0]) if response.kvs else None

    async def list(self, prefix: str, *, revision: int = 0) -> tuple[list[KeyValue], int]:
        """Items under ``prefix`` sorted by key, and the revision they were read at:
        the header revision for a current read, ``revision`` itself for a past one."""
        key = prefix.encode() or b"\0"
        end = prefix_end(prefix.encode())
        at = max(revision, 0)
        items: builtins.list[KeyValue] = []
        # Pages of list_page_size keys, all read at the first page's revision: one
        # consistent snapshot without one giant message (or one long read on etcd).
        while True:
            request = rpc.RangeRequest(key=key, range_end=end, revision=at, limit=self._list_page)
            try:
                response = await self._range("list", request)
            except CompactedError as exc:
                raise CompactedError(at, await self._compact_revision_hint(at)) from exc
            items.extend(to_key_value(kv) for kv in response.kvs)
            if at <= 0:
                at = int(response.header.revision)
            if not response.more or not response.kvs:
                return items, at
            key = bytes(response.kvs[-1].key) + b"\0"

    async def list_page(self, prefix: str, *, start: str = "", limit: int, revision: int = 0) -> RangePage:
        """One Range with a limit: the keys of one page, and etcd's count of the rest of the range."""
        if limit < 1:
            raise ValueError("list_page needs a positive limit")
        if start and not start.startswith(prefix):
            raise ValueError(f"start key {start!r} is not under {prefix!r}")
        at = max(revision, 0)
        request = rpc.RangeRequest(key=(start or prefix).encode() or b"\0", range_end=prefix_end(prefix.encode()),
                                   revision=at, limit=limit)
        try:
            response = await self._range("list_page", request)
        except CompactedError as exc:
            raise CompactedError(at, await self._compact_revision_hint(at)) from exc
        return RangePage(items=[to_key_value(kv) for kv in response.kvs],
                         revision=at or int(response.header.revision), more=bool(response.more),
                         count=int(response.count))

    async def current_revision(self) -> int:
        response = await self._range("current_revision", rpc.RangeRequest(key=b"\0", count_only=True))
        return int(response.header.revision)

    async def _compact_revision_hint(self, revision: int) -> int:
        """etcd's "compacted" error carries no revision; a watch creation does."""
        with contextlib.suppress(Exception):
            return await asyncio.wait_for(self._probe_compact_revision(max(revision, 1)), 1.0)
        return 0

    async def _probe_compact_revision(self, revision: int) -> int:
        _, member = self._pick()
        await member.connect()
        call = member.watchstub.Watch(metadata=_METADATA)
        try:
            create = rpc.WatchCreateRequest(key=b"\0", start_revision=revision)
            await call.write(rpc.WatchRequest(create_request=create))
            # The "created" reply comes first; the compaction notice follows when
            # etcd syncs the watcher (the caller's timeout bounds the wait).
            for _ in range(4):
                response = await call.read()
                if response is grpc.aio.EOF:
                    break
                if response.compact_revision:
                    return int(response.compact_revision)
                if response.canceled:
                    break
            return 0
        finally:
            call.cancel()

    # -- writes ------------------------------------------------------------

    async def create(self, key: str, value: bytes, *, claims: Sequence[Claim] = (), ttl: int = 0) -> int:
        op = self._new_op("create", key, value, claims=tuple(claims), lease=await self._leases.lease_for(ttl))
        return int(await self._submit(op))

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
        """CAS on mod_revision. ``expected_revision`` 0 means "whatever is stored" (the key must exist)."""
        op = self._new_op(
            "update", key, value, expected_revision=expected_revision, claims=tuple(claims), releases=tuple(releases),
            lease=await self._leases.lease_for(ttl),
        )
        return int(await self._submit(op))

    async def delete(self, key: str, *, expected_revision: int = 0, releases: Sequence[str] = ()) -> KeyValue:
        op = self._new_op("delete", key, b"", expected_revision=expected_revision, releases=tuple(releases))
        result = await self._submit(op)
        assert isinstance(result, KeyValue)
        return result

    async def delete_prefix(self, prefix: str) -> int:
        """Deletes every key under ``prefix`` in one request (not batched; for tests
        and tooling). Returns how many keys went away."""
        key = prefix.encode()
        return await self._delete_range(key or b"\0", prefix_end(key))

    async def delete_range(self, start: str, end: str = "") -> int:
        """Deletes keys in [start, end) ("" end: every key from ``start`` on); tests and tooling."""
        return await self._delete_range(start.encode() or b"\0", end.encode() or b"\0")

    async def _delete_range(self, key: bytes, end: bytes) -> int:
        request = rpc.DeleteRangeRequest(key=key, range_end=end)
        response = await self._call(
            "delete_range", lambda m, t: m.kvstub.DeleteRange(request, timeout=t, metadata=_METADATA)
        )
        self._observe_header(response.header)
        return int(response.deleted)

    async def compact(self, revision: int) -> None:
        """Compacts history below ``revision``; compacting an already compacted revision is a no-op."""
        request = rpc.CompactionRequest(revision=revision, physical=False)
        try:
            await self._call("compact", lambda m, t: m.kvstub.Compact(request, timeout=t, metadata=_METADATA))
        except CompactedError:
            return

    def _new_op(
        self,
        kind: Literal["create", "update", "delete"],
        key: str,
        value: bytes,
        *,
        expected_revision: int = 0,
        claims: tuple[Claim, ...] = (),
        releases: tuple[str, ...] = (),
        lease: int = 0,
    ) -> WriteOp:
        if not key:
            raise ValueError("empty key")
        if self._closed:
            raise UnavailableError("storage is closed")
        loop = asyncio.get_running_loop()
        return WriteOp(
            kind=kind,
            key=key,
            value=bytes(value),
            future=loop.create_future(),
            deadline=loop.time() + self._request_timeout,
            expected_revision=max(expected_revision, 0),
            claims=claims,
            releases=releases,
            lease=lease,
        )

    async def _grant_lease(self, ttl: int) -> int:
        request = rpc.LeaseGrantRequest(TTL=ttl)
        response = await self._call("lease_grant",
                                    lambda m, t: m.leasestub.LeaseGrant(request, timeout=t, metadata=_METADATA))
        return int(response.ID)

    async def _submit(self, op: WriteOp) -> Any:
        self._pending.append(op)
        self._dispatch()
        return await op.future

    def _dispatch(self) -> None:
        """Cuts queued ops into Txns while there is room in flight."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        while self._pending and len(self._inflight) < self._max_inflight:
            busy = frozenset().union(*self._inflight.values())
            batch = take_batch(self._pending, self._limits, busy=busy)
            if not batch:
                break  # everything queued waits for a key in flight
            now = loop.time()
            live: list[WriteOp] = []
            for op in batch:
                if op.deadline <= now:
                    _fail(op, _unanswered(op, "timed out before it could be sent"))
                else:
                    live.append(op)
            if not live:
                continue
            self._txn_seq += 1
            task = asyncio.create_task(self._commit(live), name=f"etcd-txn-{self._txn_seq}")
            self._inflight[task] = frozenset().union(*(op.keys for op in live))
            task.add_done_callback(self._commit_done)

    def _commit_done(self, task: asyncio.Task[None]) -> None:
        del self._inflight[task]
        if not task.cancelled() and task.exception() is not None:
            log.error("etcd write transaction failed unexpectedly", exc_info=task.exception())
        self._dispatch()

    def _requeue(self, ops: _Batch) -> None:
        """Puts ops back at the head of the queue: they have waited longest."""
        self._pending.extendleft(reversed(ops))

    async def _commit(self, batch: _Batch) -> None:
        try:
            await self._commit_once(batch)
        except BaseException as exc:
            for op in batch:
                _fail(op, UnavailableError(f"write to {op.key!r} failed: {exc!r}"))
            raise

    async def _commit_once(self, batch: _Batch) -> None:
        plan = build_txn(batch)
        floor = self._seen_revision
        try:
            response = await self._call(
                "txn",
                lambda m, t: m.kvstub.Txn(plan.request, timeout=t, metadata=_METADATA),
                write=True,
            )
        except _AmbiguousWrite as exc:
            self.stats.ambiguous_txns += 1
            metrics.TXNS.labels("error").inc()
            log.warning("etcd txn of %d ops got no answer (%s); reading back", len(batch), exc)
            for op in batch:
                op.floor = op.floor or floor
            await self._resolve(batch)
            return
        except StorageError as exc:
            metrics.TXNS.labels("error").inc()
            if len(batch) > 1 and not isinstance(exc, UnavailableError):
                # etcd refused the request as a whole (too large, too many ops): let
                # each op go alone so that only the culprit gets the error.
                for op in batch:
                    op.solo = True
                self._requeue(batch)
                return
            for op in batch:
                _fail(op, _copy_error(exc))
            return

        self._observe_header(response.header)
        self.stats.txns += 1
        self.stats.batched_ops += len(batch)
        metrics.BATCH_SIZE.observe(len(batch))
        revision = int(response.header.revision)
        if response.succeeded:
            metrics.TXNS.labels("succeeded").inc()
            for i, op in enumerate(batch):
                if op.kind == "delete":
                    prev = response.responses[plan.delete_index[i]].response_delete_range.prev_kvs[0]
                    _succeed(op, KeyValue(op.key, bytes(prev.value), revision, int(prev.create_revision)))
                else:
                    _succeed(op, revision)
            return

        metrics.TXNS.labels("failed").inc()
        self.stats.failed_txns += 1
        state = read_state(plan.read_keys, response.responses)
        retry: list[WriteOp] = []
        failed = 0
        for op in batch:
            error = check_preconditions(op, state)
            if error is None:
                retry.append(op)
                continue
            failed += 1
            if op.maybe_applied:
                await self._settle_maybe_applied(op, error, state, revision)
            else:
                _fail(op, error)
        if retry and not failed:
            # Cannot happen if our checks mirror the compares; do not loop on it.
            for op in retry:
                _fail(op, StorageError(f"write to {op.key!r}: transaction failed with no failed precondition"))
            return
        self._requeue(retry)

    async def _settle_maybe_applied(
        self, op: WriteOp, error: StorageError, state: dict[str, KeyValue | None], revision: int
    ) -> None:
        """An op whose earlier Txn had no answer now fails its precondition: was it us?"""
        applied = applied_revision(op, state)
        if applied:
            _succeed(op, applied)
            return
        if op.kind == "delete" and isinstance(error, KeyNotFoundError):
            deleted = await self._find_deletion(op, revision)
            if deleted is not None:
                _succeed(op, deleted)
                return
        _fail(op, error)

    async def _resolve(self, batch: _Batch) -> None:
        """Finds out, by reading, what became of a Txn that got no answer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._request_timeout
        keys = list(dict.fromkeys(k for op in batch for k in op.read_keys))
        request = rpc.TxnRequest(
            success=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k.encode())) for k in keys]
        )
        try:
            response = await self._call(
                "resolve",
                lambda m, t: m.kvstub.Txn(request, timeout=t, metadata=_METADATA),
                deadline=deadline,
            )
        except StorageError as exc:
            for op in batch:
                _fail(op, UnavailableError(f"write to {op.key!r}: outcome unknown ({exc})"))
            return
        self._observe_header(response.header)
        state = read_state(keys, response.responses)
        revision = int(response.header.revision)
        retry: list[WriteOp] = []
        for op in batch:
            error = check_preconditions(op, state)
            if error is not None:
                await self._settle_maybe_applied(op, error, state, revision)
            elif applied := applied_revision(op, state):
                _succeed(op, applied)  # an unconditional update whose bytes are in place
            else:
                # Not applied yet, but the Txn may still be in etcd's pipeline: the
                # retry's compare then fails and finds our bytes.
                op.maybe_applied = True
                retry.append(op)
        self._requeue(retry)

    async def _find_deletion(self, op: WriteOp, current: int) -> KeyValue | None:
        """When did ``op.key`` go away, and what was it then? None if it cannot
        have been our delete (absent at the start, or changed by someone else)."""
        low = op.expected_revision or op.floor
        if low <= 0 or low >= current:
            return None
        try:
            before = await self.get_at(op.key, low)
            if before is None or (op.expected_revision and before.mod_revision != op.expected_revision):
                return None
            high = current  # absent at ``high``, present (as ``before``) at ``low``
            while high - low > 1:
                mid = (low + high) // 2
                seen = await self.get_at(op.key, mid)
                if seen is None:
                    high = mid
                elif seen.mod_revision != before.mod_revision and op.expected_revision:
                    return None  # rewritten since our expected revision: our compare would fail
                else:
                    low, before = mid, seen
        except StorageError:
            return None
        return KeyValue(op.key, before.value, high, before.create_revision)

    # -- watch ---------------------------------------------------------------

    def watch(self, prefix: str, *, start_revision: int) -> EtcdWatchStream:
        """A stream of EventBatches under ``prefix`` from ``start_revision`` on
        (0: from now). The etcd stream opens on the first iteration step."""
        if self._closed:
            raise UnavailableError("storage is closed")
        stream = EtcdWatchStream(self, prefix, start_revision)
        self._watches.add(stream)
        return stream

    async def _progress_is_true(self, prefix: bytes, after: int, upto: int) -> bool:
        """Did nothing under ``prefix`` change in revisions (after, upto]?

        A key put in that window has mod_revision > after at ``upto``; with none,
        every key at ``upto`` already existed unchanged at ``after``, so equal
        counts mean nothing was deleted either. Blind spot: a key created and
        deleted inside the window leaves no trace in a Range, so its two events
        can still be on their way when we say yes.
        """
        after = max(after, 1)  # revision 1 is etcd's initial, empty store
        end = prefix_end(prefix)
        request = rpc.TxnRequest(
            success=[
                # keys_only, not count_only: etcd's count ignores the mod_revision filter
                rpc.RequestOp(request_range=rpc.RangeRequest(
                    key=prefix, range_end=end, revision=upto, min_mod_revision=after + 1, keys_only=True)),
                rpc.RequestOp(request_range=rpc.RangeRequest(key=prefix, range_end=end, revision=after,
                                                             count_only=True)),
                rpc.RequestOp(request_range=rpc.RangeRequest(key=prefix, range_end=end, revision=upto,
                                                             count_only=True)),
            ]
        )
        try:
            response = await self._call(
                "progress_check", lambda m, t: m.kvstub.Txn(request, timeout=t, metadata=_METADATA)
            )
        except CompactedError:
            # ``after`` is gone from history, so the check is impossible; etcd's
            # notification is the best we know.
            return True
        changed = len(response.responses[0].response_range.kvs)
        before, now = (int(r.response_range.count) for r in response.responses[1:])
        return changed == 0 and before == now


def _succeed(op: WriteOp, result: Any) -> None:
    if not op.future.done():
        op.future.set_result(result)


def _fail(op: WriteOp, error: BaseException) -> None:
    if not op.future.done():
        op.future.set_exception(error)


def _unanswered(op: WriteOp, why: str) -> UnavailableError:
    """The error of a queued op that is given up: after an unanswered Txn it may have committed."""
    if op.maybe_applied:
        return UnavailableError(f"write to {op.key!r}: outcome unknown, no answer from etcd ({why})")
    return UnavailableError(f"write to {op.key!r}: {why}")


def _copy_error(exc: StorageError) -> StorageError:
    """Each caller gets its own exception object (tracebacks are per raise)."""
    copy = type(exc)(str(exc)) if isinstance(exc, UnavailableError | TooLargeError) else StorageError(str(exc))
    copy.__cause__ = exc.__cause__ or exc
    return copy


def _to_event(ev: Any) -> Event:
    kv = ev.kv
    has_prev = ev.HasField("prev_kv")
    if ev.type == _EVENT_DELETE:
        return Event(
            type="DELETE",
            key=kv.key.decode(),
            value=bytes(ev.prev_kv.value) if has_prev else b"",
            prev_value=None,
            revision=int(kv.mod_revision),
            create_revision=0,
        )
    modified = int(kv.create_revision) != int(kv.mod_revision)
    return Event(
        type="PUT",
        key=kv.key.decode(),
        value=bytes(kv.value),
        prev_value=bytes(ev.prev_kv.value) if (modified and has_prev) else None,
        revision=int(kv.mod_revision),
        create_revision=int(kv.create_revision),
    )


class EtcdWatchStream:
    """One etcd watch, re-opened on another member when its stream breaks.

    Iterate it (``async for batch in stream``) from one task; request_progress()
    and close() may be called from others. ``_next`` is the first revision not
    yet known to be delivered: every re-open starts there, so nothing is missed
    or repeated.
    """

    _PROGRESS_RETRIES = 50

    def __init__(self, storage: EtcdStorage, prefix: str, start_revision: int) -> None:
        self._storage = storage
        self._key = prefix.encode()
        self._range_end = prefix_end(self._key)
        self._next = max(start_revision, 0)
        self._call: Any = None
        self._member = -1
        self._watch_id: int | None = None
        self._buffer: deque[EventBatch] = deque()
        self._closed = False
        self._write_lock = asyncio.Lock()
        self._progress_wanted = False
        self._progress_attempts = 0
        self._broken_since: float | None = None
        self._opened_at = 0.0

    def __aiter__(self) -> AsyncIterator[EventBatch]:
        return self

    async def __anext__(self) -> EventBatch:
        while True:
            if self._buffer:
                return self._buffer.popleft()
            if self._closed:
                raise StopAsyncIteration
            if self._call is None:
                await self._open()
                continue
            try:
                response = await self._call.read()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._closed and (task is None or not task.cancelling()):
                    raise StopAsyncIteration from None
                raise
            except grpc.aio.AioRpcError as exc:
                if self._closed:
                    raise StopAsyncIteration from None
                if _classify(exc) is _Failure.FATAL:
                    raise _translate(exc, revision=self._next) from exc
                await self._broken(f"{exc.code().name}: {exc.details()}")
                continue
            if response is grpc.aio.EOF:
                if self._closed:
                    raise StopAsyncIteration
                await self._broken("stream ended")
                continue
            await self._handle(response)

    async def request_progress(self) -> None:
        """Asks etcd for a progress notification; the iterator then yields an empty
        EventBatch whose revision covers everything delivered so far."""
        self._progress_wanted = True
        self._progress_attempts = 0
        await self._send_progress_request()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._call is not None:
            self._call.cancel()
            self._call = None

    # -- internals -----------------------------------------------------------

    async def _send_progress_request(self) -> None:
        call = self._call
        if call is None or self._watch_id is None:
            return  # sent once the watch is (re)created
        try:
            async with self._write_lock:
                await call.write(rpc.WatchRequest(progress_request=rpc.WatchProgressRequest()))
        except Exception as exc:  # the stream broke; the reader re-opens and asks again
            log.debug("watch progress request failed: %r", exc)

    async def _open(self) -> None:
        storage = self._storage
        index, member = storage._pick()
        if index == self._member and len(storage._members) > 1:
            storage._failover(index)
            index, member = storage._pick()
        self._member = index
        self._watch_id = None
        call: Any = None
        try:
            await member.connect()
            call = member.watchstub.Watch(metadata=_METADATA)
            create = rpc.WatchCreateRequest(
                key=self._key,
                range_end=self._range_end,
                start_revision=self._next,
                prev_kv=True,
                progress_notify=True,
            )
            async with self._write_lock:
                await call.write(rpc.WatchRequest(create_request=create))
            if not self._closed:  # close() does not see a call still being opened
                self._call, call = call, None
                self._opened_at = time.perf_counter()
        except (grpc.aio.AioRpcError, aetcd.ClientError, grpc.aio.UsageError, asyncio.InvalidStateError) as exc:
            await self._broken(f"cannot open watch on {member.endpoint}: {exc!r}")
        finally:
            if call is not None:  # not handed over (failed, cancelled or closed meanwhile): end the etcd watch
                call.cancel()

    async def _broken(self, why: str) -> None:
        """Drops the current stream; waits a little before the next _open()."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._broken_since is None:
            self._broken_since = now
        elif now - self._broken_since > self._storage._request_timeout:
            await self.close()
            raise UnavailableError(f"watch on {self._key.decode()!r}: no member served it ({why})")
        if self._call is not None:
            self._call.cancel()
            self._call = None
        if self._member >= 0:
            self._storage._failover(self._member)
        self._storage.stats.watch_restarts += 1
        metrics.WATCH_RESTARTS.inc()
        log.info("watch on %r broke (%s); resuming from revision %d", self._key.decode(), why, self._next)
        await asyncio.sleep(0.05)

    async def _handle(self, response: Any) -> None:
        storage = self._storage
        header_revision = int(response.header.revision)
        if response.compact_revision:
            await self.close()
            raise CompactedError(self._next, int(response.compact_revision))
        if response.canceled:
            await self._broken(f"watch canceled: {response.cancel_reason}")
            return
        self._broken_since = None
        if response.created:
            metrics.REQUEST_DURATION.labels("watch").observe(time.perf_counter() - self._opened_at)
            self._watch_id = int(response.watch_id)
            if self._next <= 0:
                self._next = header_revision + 1
            if self._progress_wanted:
                await self._send_progress_request()
            return
        if response.events:
            self._take_events(response.events)
            return
        # An empty response is a progress notification. Our own watch's (periodic,
        # progress_notify) come in order with events; id -1 ones answer
        # request_progress and may overtake events (etcd 3.4 < 3.4.25).
        delivered = self._next - 1
        if header_revision <= delivered:
            self._progress(delivered)
            return
        trusted = int(response.watch_id) == self._watch_id
        if not trusted:
            try:
                trusted = await storage._progress_is_true(self._key, delivered, header_revision)
            except StorageError as exc:  # cannot check now: treat it as not yet true
                log.debug("watch progress check failed: %s", exc)
        if trusted:
            self._progress(header_revision)
            return
        if self._progress_wanted and self._progress_attempts < self._PROGRESS_RETRIES:
            # Events up to header_revision are still on their way: ask again.
            self._progress_attempts += 1
            await asyncio.sleep(0.02)
            await self._send_progress_request()

    def _progress(self, revision: int) -> None:
        self._next = max(self._next, revision + 1)
        self._progress_wanted = False
        self._buffer.append(EventBatch(revision=revision, events=()))

    def _take_events(self, events: Any) -> None:
        group: list[Event] = []
        revision = 0
        for raw in events:
            event = _to_event(raw)
            if event.revision < self._next:
                # A re-open starts at _next, so etcd never sends these again; only a
                # progress notification wrongly judged true (see _progress_is_true)
                # puts an event behind us, after the consumer was told it is past
                # this revision. Dropping it would lose it: the consumer relists.
                raise WatchGapError(event.revision, self._next - 1)
            if group and event.revision != revision:
                self._buffer.append(EventBatch(revision=revision, events=tuple(group)))
                group = []
            revision = event.revision
            group.append(event)
        if group:
            self._buffer.append(EventBatch(revision=revision, events=tuple(group)))
            # etcd never splits one revision across responses (we do not ask for fragments).
            self._next = revision + 1
