"""Group commit: many callers' writes in one etcd transaction.

etcd commits one Raft entry per request, and on this project's machines a
3-member cluster does a few hundred single puts a second but the same number
of transactions holding a hundred puts each. So concurrent create/update/delete
calls are queued and committed together: one Txn whose compares are every
op's preconditions and whose success branch holds every op's puts and deletes.
When any compare fails the whole Txn fails; its failure branch range-reads
every compared key, so each op's precondition can be re-checked against one
consistent snapshot: the ops that really failed get their own error, the rest
go back to the queue and are committed in the next batch.

This module is the pure part (what an op is, how a batch is cut, how a Txn is
built and how its failure branch is read); ``kubelite.storage.etcd`` runs it.

etcd's limits shape the cut: at most ``--max-txn-ops`` (default 128) entries
in each of compare/success/failure, no key twice in one Txn ("duplicate key
given in txn request"), and a request under ``--max-request-bytes`` (1.5 MiB).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Literal

from aetcd import rpc

from kubelite.storage.interface import (
    Claim,
    ClaimTakenError,
    ConflictError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    StorageError,
)

OpKind = Literal["create", "update", "delete"]

# Protobuf framing per op on top of key and value bytes (tags, lengths, compare).
_OP_OVERHEAD = 48
# etcd's default --max-request-bytes is 1.5 MiB; keep a margin for the framing
# we do not count exactly.
DEFAULT_MAX_TXN_BYTES = 1536 * 1024 - 64 * 1024

_CREATE = rpc.Compare.CompareTarget.Value("CREATE")
_MOD = rpc.Compare.CompareTarget.Value("MOD")
_EQUAL = rpc.Compare.CompareResult.Value("EQUAL")
_GREATER = rpc.Compare.CompareResult.Value("GREATER")


@dataclass(frozen=True)
class BatchLimits:
    max_ops: int = 128
    max_bytes: int = DEFAULT_MAX_TXN_BYTES


@dataclass(eq=False)
class WriteOp:
    """One caller's write waiting for (or inside) a transaction.

    ``future`` resolves to the revision (create/update) or the deleted
    KeyValue (delete). ``maybe_applied`` marks an op whose earlier Txn had an
    ambiguous outcome and was judged not applied: should a later precondition
    failure show our own bytes in place, the earlier Txn did apply after all.
    """

    kind: OpKind
    key: str
    value: bytes
    future: asyncio.Future[Any]
    deadline: float
    expected_revision: int = 0
    claims: tuple[Claim, ...] = ()
    releases: tuple[str, ...] = ()
    maybe_applied: bool = False
    # _seen_revision before the first unanswered Txn: lower bound of when it could have applied
    floor: int = 0
    # etcd refused a whole batch holding this op: send it alone
    solo: bool = False
    # etcd lease the key is attached to (0: none): the key expires with it
    lease: int = 0
    keys: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        keys = [self.key, *(c.key for c in self.claims), *self.releases]
        if len(set(keys)) != len(keys):
            raise ValueError(f"write to {self.key!r} names one key twice (key, claims, releases)")
        self.keys = frozenset(keys)

    @property
    def compares(self) -> int:
        return 1 + len(self.claims)

    @property
    def successes(self) -> int:
        return 1 + len(self.claims) + len(self.releases)

    @property
    def size(self) -> int:
        n = _OP_OVERHEAD * (1 + len(self.claims) + len(self.releases))
        n += 2 * len(self.key.encode()) + len(self.value)  # key in compare + put, and in the failure read
        n += sum(2 * len(c.key.encode()) + len(c.value) for c in self.claims)
        n += sum(len(r.encode()) for r in self.releases)
        return n

    @property
    def read_keys(self) -> tuple[str, ...]:
        """Keys whose state decides the preconditions (read by the failure branch)."""
        return (self.key, *(c.key for c in self.claims))

    @property
    def done(self) -> bool:
        return self.future.done()


def take_batch(
    pending: deque[WriteOp], limits: BatchLimits, *, busy: AbstractSet[str] = frozenset(), scan: int = 0
) -> list[WriteOp]:
    """Removes and returns the next batch from ``pending``, oldest first.

    An op that shares a key with an op already in the batch, with a Txn in
    flight (``busy``) or with an op skipped before it, or that would overflow
    a limit, stays queued in its place for a later batch: writes to one key
    thus reach etcd in the order they were called. The first eligible op is
    always taken, even alone over a limit, so that etcd's own error reaches its
    caller instead of the op waiting forever. ``scan`` bounds how many ops we
    skip over (0 = 4x max_ops).
    """
    batch: list[WriteOp] = []
    keys: set[str] = set(busy)  # taken by the batch, in flight, or held by a skipped op
    compares = successes = size = 0
    skipped: list[WriteOp] = []
    budget = scan or 4 * limits.max_ops
    while pending and budget > 0:
        op = pending.popleft()
        if op.done:  # the caller gave up (cancelled) before we sent it
            continue
        fits = (
            not op.solo
            and not (op.keys & keys)
            and compares + op.compares <= limits.max_ops
            and successes + op.successes <= limits.max_ops
            and size + op.size <= limits.max_bytes
        )
        if fits or (not batch and not (op.keys & keys)):
            batch.append(op)
            keys |= op.keys
            compares += op.compares
            successes += op.successes
            size += op.size
            if op.solo or compares >= limits.max_ops or successes >= limits.max_ops:
                break
        else:
            skipped.append(op)
            keys |= op.keys  # a later op on these keys must not overtake this one
            budget -= 1
    pending.extendleft(reversed(skipped))
    return batch


@dataclass
class TxnPlan:
    """A built Txn plus what is needed to read its reply."""

    request: Any  # rpc.TxnRequest
    # index into TxnResponse.responses of each delete op's DeleteRange (prev_kv)
    delete_index: dict[int, int]
    # keys range-read by the failure branch, in response order
    read_keys: list[str]


def build_txn(batch: list[WriteOp]) -> TxnPlan:
    compare: list[Any] = []
    success: list[Any] = []
    read_keys: list[str] = []
    delete_index: dict[int, int] = {}
    for i, op in enumerate(batch):
        key = op.key.encode()
        if op.kind == "create":
            compare.append(rpc.Compare(key=key, target=_CREATE, result=_EQUAL, create_revision=0))
        elif op.expected_revision > 0:
            compare.append(rpc.Compare(key=key, target=_MOD, result=_EQUAL, mod_revision=op.expected_revision))
        else:  # unconditional update/delete: the key must still exist
            compare.append(rpc.Compare(key=key, target=_CREATE, result=_GREATER, create_revision=0))
        for claim in op.claims:
            compare.append(rpc.Compare(key=claim.key.encode(), target=_CREATE, result=_EQUAL, create_revision=0))

        if op.kind == "delete":
            delete_index[i] = len(success)
            success.append(rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key, prev_kv=True)))
        else:
            success.append(rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=op.value, lease=op.lease)))
        for claim in op.claims:
            success.append(rpc.RequestOp(request_put=rpc.PutRequest(key=claim.key.encode(), value=claim.value)))
        for release in op.releases:
            success.append(rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=release.encode())))
        read_keys.extend(op.read_keys)
    failure = [rpc.RequestOp(request_range=rpc.RangeRequest(key=k.encode())) for k in read_keys]
    request = rpc.TxnRequest(compare=compare, success=success, failure=failure)
    return TxnPlan(request=request, delete_index=delete_index, read_keys=read_keys)


def check_preconditions(op: WriteOp, state: Mapping[str, KeyValue | None]) -> StorageError | None:
    """The error ``op`` gets against ``state``, or None when its preconditions hold."""
    current = state.get(op.key)
    if op.kind == "create":
        if current is not None:
            return KeyExistsError(op.key, current)
    else:
        if current is None:
            return KeyNotFoundError(op.key)
        if op.expected_revision > 0 and current.mod_revision != op.expected_revision:
            return ConflictError(op.key, current, op.expected_revision)
    for claim in op.claims:
        if state.get(claim.key) is not None:
            return ClaimTakenError(claim.key)
    return None


def applied_revision(op: WriteOp, state: Mapping[str, KeyValue | None]) -> int:
    """For a put op: the revision at which our own bytes sit in ``state``, else 0.

    Used only for ops whose earlier attempt had an unknown outcome: if the
    stored value is exactly what we wrote and the precondition no longer
    holds, it was our write that moved the key.
    """
    if op.kind == "delete":
        return 0
    current = state.get(op.key)
    if current is None or current.value != op.value:
        return 0
    if op.kind == "update" and op.expected_revision > 0 and current.mod_revision == op.expected_revision:
        return 0  # identical bytes but never written by us: the key is untouched
    if any(state.get(c.key) is None for c in op.claims):
        return 0
    return current.mod_revision


def to_key_value(kv: Any) -> KeyValue:
    return KeyValue(
        key=kv.key.decode(),
        value=bytes(kv.value),
        mod_revision=int(kv.mod_revision),
        create_revision=int(kv.create_revision),
    )


def read_state(read_keys: Iterable[str], responses: Iterable[Any]) -> dict[str, KeyValue | None]:
    """Maps each failure-branch (or resolution) Range reply back to its key."""
    state: dict[str, KeyValue | None] = {}
    for key, response in zip(read_keys, responses, strict=True):
        kvs = response.response_range.kvs
        state[key] = to_key_value(kvs[0]) if kvs else None
    return state
