"""How the group-commit batcher cuts its queue (pure: no etcd, no EtcdStorage)."""

from __future__ import annotations

import asyncio
from collections import deque

from kubelite.storage import Claim
from kubelite.storage.batcher import BatchLimits, WriteOp, take_batch


def op(kind: str, key: str, *, claims: tuple[Claim, ...] = (), value: bytes = b"v") -> WriteOp:
    """A queued op (call from a running loop: it owns a future)."""
    return WriteOp(kind=kind, key=key, value=value, future=asyncio.get_running_loop().create_future(),  # type: ignore[arg-type]
                   deadline=1e18, claims=claims)


async def test_a_skipped_op_holds_back_later_ops_on_its_keys() -> None:
    # The Service update waits for its key (in flight); the create that claims
    # the same address was called after it and must not reach etcd first.
    first = op("update", "/services/a", claims=(Claim("/ip/10.96.0.5", b"a"),))
    second = op("create", "/services/b", claims=(Claim("/ip/10.96.0.5", b"b"),))
    other = op("create", "/services/c")
    pending = deque([first, second, other])
    assert take_batch(pending, BatchLimits(), busy={"/services/a"}) == [other]
    assert list(pending) == [first, second]

    # Same when the earlier op was skipped for size rather than for a busy key.
    big = op("update", "/k", value=b"x" * 400)
    pending = deque([op("create", "/small", value=b"x" * 100), big, op("update", "/k", value=b"y"), other])
    batch = take_batch(pending, BatchLimits(max_bytes=500))
    assert [o.key for o in batch] == ["/small", "/services/c"]
    assert [o.key for o in pending] == ["/k", "/k"] and pending[0] is big
