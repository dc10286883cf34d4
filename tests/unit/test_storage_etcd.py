"""EtcdStorage's batching, retry and ambiguity resolution against an in-memory fake etcd.

The integration suite shows the same behaviour on a real cluster, but cannot
make a Txn commit and then lose its reply on demand; the fake can.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
import pytest
from aetcd import rpc

from kubelite.storage import (
    Claim,
    ClaimTakenError,
    ConflictError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    TooLargeError,
    UnavailableError,
)
from kubelite.storage.batcher import BatchLimits, WriteOp, build_txn, check_preconditions, take_batch
from kubelite.storage.etcd import EtcdStorage, parse_endpoints, prefix_end

_CREATE = rpc.Compare.CompareTarget.Value("CREATE")
_MOD = rpc.Compare.CompareTarget.Value("MOD")
_EQUAL = rpc.Compare.CompareResult.Value("EQUAL")
_GREATER = rpc.Compare.CompareResult.Value("GREATER")


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


class FakeEtcd:
    """Exact-key and prefix Range, Txn with CREATE/MOD compares, history by revision."""

    def __init__(self) -> None:
        self.revision = 1
        self.data: dict[bytes, Any] = {}
        self.history: dict[int, dict[bytes, Any]] = {1: {}}
        self.txn_calls = 0
        # Hooks: called before (fail_before) / after (fail_after) applying a Txn;
        # returning an exception makes the call raise it.
        self.fail_before: deque[grpc.aio.AioRpcError | None] = deque()
        self.fail_after: deque[grpc.aio.AioRpcError | None] = deque()
        self.on_txn: Callable[[], None] | None = None
        self.reject: Callable[[Any], grpc.aio.AioRpcError | None] = lambda req: None

    def header(self) -> Any:
        return rpc.ResponseHeader(revision=self.revision)

    def _range(self, req: Any) -> Any:
        store = self.data if req.revision <= 0 else self.history[max(r for r in self.history if r <= req.revision)]
        if req.range_end:
            end = req.range_end
            keys = sorted(k for k in store if k >= req.key and (end == b"\0" or k < end))
        else:
            keys = [req.key] if req.key in store else []
        kvs = [store[k] for k in keys if store[k].mod_revision >= req.min_mod_revision]
        resp = rpc.RangeResponse(header=self.header(), count=len(keys))
        if not req.count_only:
            resp.kvs.extend(kvs)
        return resp

    def _compare(self, c: Any) -> bool:
        kv = self.data.get(c.key)
        have = (kv.create_revision if c.target == _CREATE else kv.mod_revision) if kv is not None else 0
        want = c.create_revision if c.target == _CREATE else c.mod_revision
        return have == want if c.result == _EQUAL else have > want

    async def Range(self, req: Any, timeout: float = 0, metadata: Any = None) -> Any:
        return self._range(req)

    async def DeleteRange(self, req: Any, timeout: float = 0, metadata: Any = None) -> Any:
        self.revision += 1
        keys = [k for k in self.data if k >= req.key and (req.range_end == b"\0" or k < req.range_end)]
        for k in keys:
            del self.data[k]
        self.history[self.revision] = dict(self.data)
        return rpc.DeleteRangeResponse(header=self.header(), deleted=len(keys))

    async def Txn(self, req: Any, timeout: float = 0, metadata: Any = None) -> Any:
        self.txn_calls += 1
        if self.on_txn:
            self.on_txn()
        if self.fail_before and (exc := self.fail_before.popleft()) is not None:
            raise exc
        if (rejected := self.reject(req)) is not None:
            raise rejected
        writes = any(op.HasField("request_put") or op.HasField("request_delete_range") for op in req.success)
        ok = all(self._compare(c) for c in req.compare)
        if ok and writes:
            self.revision += 1
        responses = []
        for op in req.success if ok else req.failure:
            if op.HasField("request_range"):
                responses.append(rpc.ResponseOp(response_range=self._range(op.request_range)))
            elif op.HasField("request_put"):
                p = op.request_put
                old = self.data.get(p.key)
                self.data[p.key] = rpc.KeyValue(
                    key=p.key, value=p.value, mod_revision=self.revision,
                    create_revision=old.create_revision if old else self.revision,
                )
                responses.append(rpc.ResponseOp(response_put=rpc.PutResponse(header=self.header())))
            else:
                d = op.request_delete_range
                old = self.data.pop(d.key, None)
                resp = rpc.DeleteRangeResponse(header=self.header(), deleted=1 if old else 0)
                if old is not None and d.prev_kv:
                    resp.prev_kvs.append(copy.deepcopy(old))
                responses.append(rpc.ResponseOp(response_delete_range=resp))
        if ok and writes:
            self.history[self.revision] = dict(self.data)
        result = rpc.TxnResponse(header=self.header(), succeeded=ok, responses=responses)
        if self.fail_after and (exc := self.fail_after.popleft()) is not None:
            raise exc
        return result


class FakeMember:
    def __init__(self, kv: FakeEtcd, endpoint: str) -> None:
        self.kvstub = kv
        self.endpoint = endpoint
        self.down = False

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None


@pytest.fixture
async def fake() -> Any:
    etcd = FakeEtcd()
    storage = EtcdStorage(["127.0.0.1:1", "127.0.0.1:2"], request_timeout=2.0, max_batch_ops=16)
    storage._members = [FakeMember(etcd, "a"), FakeMember(etcd, "b")]  # type: ignore[list-item]
    yield storage, etcd
    await storage.close()


UNAVAILABLE_RESET = rpc_error(grpc.StatusCode.UNAVAILABLE, "Stream removed (recvmsg:Connection reset by peer)")
NO_LEADER = rpc_error(grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader")


# -- pure batching -------------------------------------------------------------------


def op(kind: str, key: str, *, claims: tuple[Claim, ...] = (), releases: tuple[str, ...] = (),
       value: bytes = b"v", expected: int = 0) -> WriteOp:
    """A queued op (call from a running loop: it owns a future)."""
    return WriteOp(kind=kind, key=key, value=value, future=asyncio.get_running_loop().create_future(),  # type: ignore[arg-type]
                   deadline=1e18, expected_revision=expected, claims=claims, releases=releases)


async def test_take_batch_respects_keys_limits_and_order() -> None:
    pending = deque([op("create", "/a"), op("update", "/a"), op("create", "/b"), op("delete", "/c"),
                     op("create", "/d", claims=(Claim("/b", b""),))])
    batch = take_batch(pending, BatchLimits(max_ops=128))
    assert [o.key for o in batch] == ["/a", "/b", "/c"]
    assert [o.key for o in pending] == ["/a", "/d"]  # same-key ops wait, in order

    pending = deque(op("create", f"/k{i}") for i in range(10))
    assert len(take_batch(pending, BatchLimits(max_ops=4))) == 4
    pending = deque(op("create", f"/k{i}", value=b"x" * 100) for i in range(10))
    assert len(take_batch(pending, BatchLimits(max_bytes=450))) == 2
    # An oversized op still goes (alone), so etcd's own error reaches its caller.
    pending = deque([op("create", "/huge", value=b"x" * 1000), op("create", "/small")])
    assert [o.key for o in take_batch(pending, BatchLimits(max_bytes=500))] == ["/huge"]
    # Keys busy in an in-flight Txn are skipped; solo ops travel alone.
    pending = deque([op("create", "/busy"), op("create", "/free")])
    assert [o.key for o in take_batch(pending, BatchLimits(), busy={"/busy"})] == ["/free"]
    solo = op("create", "/s")
    solo.solo = True
    pending = deque([op("create", "/x"), solo, op("create", "/y")])
    assert [o.key for o in take_batch(pending, BatchLimits())] == ["/x", "/y"]
    assert [o.key for o in take_batch(pending, BatchLimits())] == ["/s"]
    # Cancelled callers' ops are dropped.
    gone = op("create", "/gone")
    gone.future.cancel()
    assert take_batch(deque([gone]), BatchLimits()) == []


async def test_write_op_rejects_a_key_named_twice() -> None:
    with pytest.raises(ValueError):
        op("update", "/a", releases=("/a",))
    with pytest.raises(ValueError):
        op("create", "/a", claims=(Claim("/b", b""), Claim("/b", b"")))


async def test_build_txn_and_check_preconditions() -> None:
    batch = [op("create", "/a", claims=(Claim("/ip", b"a"),)), op("update", "/b", expected=5, releases=("/old",)),
             op("delete", "/c")]
    plan = build_txn(batch)
    assert len(plan.request.compare) == 4 and len(plan.request.success) == 5
    assert plan.read_keys == ["/a", "/ip", "/b", "/c"] and plan.delete_index == {2: 4}
    kv = KeyValue("/b", b"", 6, 1)
    assert isinstance(check_preconditions(batch[1], {"/b": kv}), ConflictError)
    assert isinstance(check_preconditions(batch[1], {}), KeyNotFoundError)
    assert check_preconditions(batch[1], {"/b": KeyValue("/b", b"", 5, 1)}) is None
    assert isinstance(check_preconditions(batch[0], {"/ip": kv}), ClaimTakenError)
    assert isinstance(check_preconditions(batch[0], {"/a": kv}), KeyExistsError)


def test_endpoints_and_prefix_end() -> None:
    assert parse_endpoints(["http://127.0.0.1:2379", "10.0.0.1:12379,10.0.0.2"]) == [
        ("127.0.0.1", 2379), ("10.0.0.1", 12379), ("10.0.0.2", 2379)]
    assert parse_endpoints("http://[::1]:2379") == [("[::1]", 2379)]
    with pytest.raises(ValueError):
        parse_endpoints(["https://x:1"])
    assert prefix_end(b"/a/") == b"/a0" and prefix_end(b"a\xff") == b"b" and prefix_end(b"") == b"\0"


# -- EtcdStorage on the fake -------------------------------------------------------


async def test_lone_write_is_sent_at_once(fake: Any) -> None:
    storage, etcd = fake
    task = asyncio.create_task(storage.create("/a", b"1"))
    await asyncio.sleep(0)  # the caller enqueues
    await asyncio.sleep(0)  # the Txn task starts
    assert etcd.txn_calls == 1
    assert await task == 2


async def test_batches_and_per_op_results(fake: Any) -> None:
    storage, _ = fake
    rev = await storage.create("/taken", b"x")
    results = await asyncio.gather(
        *(storage.create(f"/k{i}", b"v") for i in range(40)),
        storage.create("/taken", b"y"),
        storage.update("/taken", b"z", expected_revision=rev + 100),
        return_exceptions=True,
    )
    assert all(isinstance(r, int) for r in results[:40])
    assert isinstance(results[40], KeyExistsError) and isinstance(results[41], ConflictError)
    assert storage.stats.txns < 20


async def test_safe_failure_retries_on_another_member(fake: Any) -> None:
    storage, etcd = fake
    etcd.fail_before.append(NO_LEADER)
    assert await storage.create("/a", b"1") == 2
    assert storage._current == 1 and storage.stats.retries == 1 and storage.stats.ambiguous_txns == 0


@pytest.mark.parametrize("applied", [True, False])
async def test_ambiguous_write_is_resolved_by_reading_back(fake: Any, applied: bool) -> None:
    storage, etcd = fake
    rev = await storage.create("/u", b"old")
    del_rev = await storage.create("/d", b"gone")
    hook = etcd.fail_after if applied else etcd.fail_before

    hook.append(UNAVAILABLE_RESET)
    created = await storage.create("/c", b"new")
    assert created == etcd.data[b"/c"].mod_revision == etcd.data[b"/c"].create_revision

    hook.append(UNAVAILABLE_RESET)
    updated = await storage.update("/u", b"newer", expected_revision=rev)
    assert updated == etcd.data[b"/u"].mod_revision and etcd.data[b"/u"].value == b"newer"

    hook.append(UNAVAILABLE_RESET)
    deleted = await storage.delete("/d", expected_revision=del_rev)
    assert deleted == KeyValue("/d", b"gone", etcd.revision, del_rev)
    assert b"/d" not in etcd.data and b"/d" in etcd.history[etcd.revision - 1]

    assert storage.stats.ambiguous_txns == 3
    # Each lost Txn costs a read-back, plus a second attempt when it had not applied.
    assert etcd.txn_calls == 2 + 3 * 2 + (0 if applied else 3)


async def test_ambiguous_write_that_lost_reports_the_real_error(fake: Any) -> None:
    storage, etcd = fake
    rev = await storage.create("/u", b"old")

    def someone_else_writes() -> None:
        etcd.on_txn = None
        etcd.data[b"/u"] = rpc.KeyValue(key=b"/u", value=b"theirs", mod_revision=99, create_revision=rev)

    etcd.on_txn = someone_else_writes
    etcd.fail_before.append(UNAVAILABLE_RESET)
    with pytest.raises(ConflictError) as conflict:
        await storage.update("/u", b"mine", expected_revision=rev)
    assert conflict.value.current is not None and conflict.value.current.value == b"theirs"


async def test_request_too_large_fails_only_the_culprit(fake: Any) -> None:
    storage, etcd = fake
    storage._max_inflight = 1
    too_large = rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large")
    etcd.reject = lambda req: too_large if any(op.request_put.key == b"/b" for op in req.success) else None
    results = await asyncio.gather(
        storage.create("/first", b"goes alone"),
        storage.create("/a", b"1"),  # these two share a Txn, which etcd refuses
        storage.create("/b", b"x" * 10),
        return_exceptions=True,
    )
    assert isinstance(results[0], int) and isinstance(results[1], int)
    assert isinstance(results[2], TooLargeError) and "too large" in str(results[2])
    assert b"/a" in etcd.data and b"/b" not in etcd.data


async def test_unavailable_after_timeout(fake: Any) -> None:
    storage, etcd = fake
    etcd.fail_before.extend([NO_LEADER] * 1000)
    storage._request_timeout = 0.3
    with pytest.raises(UnavailableError):
        await storage.create("/a", b"1")

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise NO_LEADER

    etcd.Range = down
    with pytest.raises(UnavailableError):
        await storage.get("/a")
