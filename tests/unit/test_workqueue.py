"""Work queue guarantees controllers rely on: dedup, exclusivity, delayed and rate-limited retries."""

from __future__ import annotations

import asyncio

import pytest

from kubelite.client.workqueue import (
    BucketRateLimiter,
    DelayingQueue,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    RateLimitingQueue,
    ShutDown,
    WorkQueue,
    default_controller_rate_limiter,
    process_next_item,
)


async def test_dedups_waiting_items_and_keeps_fifo_order() -> None:
    q: WorkQueue[str] = WorkQueue()
    for key in ["a", "b", "a", "c", "b"]:
        q.add(key)
    assert len(q) == 3
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]


async def test_item_added_while_processing_is_requeued_only_after_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    item = await q.get()
    q.add("a")
    q.add("a")
    assert len(q) == 0  # not handed to a second worker while the first holds it
    getter = asyncio.ensure_future(q.get())
    await asyncio.sleep(0.01)
    assert not getter.done()
    q.done(item)
    assert await asyncio.wait_for(getter, 1) == "a"
    q.done("a")
    assert len(q) == 0


async def test_never_hands_a_key_to_two_workers() -> None:
    q: WorkQueue[int] = WorkQueue()
    active: set[int] = set()
    overlaps: list[int] = []
    processed = 0
    enough = asyncio.Event()

    async def worker() -> None:
        nonlocal processed
        while True:
            try:
                key = await q.get()
            except ShutDown:
                return
            if key in active:
                overlaps.append(key)
            active.add(key)
            await asyncio.sleep(0)
            if processed < 200:
                q.add(key)  # re-added while being processed: must wait for done()
                q.add((key + 1) % 3)
            await asyncio.sleep(0)
            active.discard(key)
            processed += 1
            if processed >= 200:
                enough.set()
            q.done(key)

    for i in range(3):
        q.add(i)
    workers = [asyncio.ensure_future(worker()) for _ in range(5)]
    await asyncio.wait_for(enough.wait(), 5)
    await q.shutdown_with_drain()
    await asyncio.wait_for(asyncio.gather(*workers), 5)
    assert overlaps == []


async def test_get_blocks_until_add() -> None:
    q: WorkQueue[str] = WorkQueue()
    getter = asyncio.ensure_future(q.get())
    await asyncio.sleep(0.01)
    assert not getter.done()
    q.add("x")
    assert await asyncio.wait_for(getter, 1) == "x"


async def test_cancelled_getter_does_not_swallow_a_wakeup() -> None:
    q: WorkQueue[str] = WorkQueue()
    first = asyncio.ensure_future(q.get())
    second = asyncio.ensure_future(q.get())
    await asyncio.sleep(0)
    q.add("x")  # wakes `first`...
    first.cancel()  # ...which goes away before it runs
    assert await asyncio.wait_for(second, 1) == "x"


async def test_shutdown_drains_then_raises() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    waiter_q: WorkQueue[str] = WorkQueue()
    blocked = asyncio.ensure_future(waiter_q.get())
    await asyncio.sleep(0)
    waiter_q.shutdown()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(blocked, 1)

    q.shutdown()
    assert q.shutting_down
    q.add("b")  # ignored after shutdown
    assert await q.get() == "a"
    with pytest.raises(ShutDown):
        await q.get()


async def test_add_after_orders_by_deadline() -> None:
    q: DelayingQueue[str] = DelayingQueue()
    q.add_after("late", 0.08)
    q.add_after("early", 0.02)
    q.add_after("now", 0)
    assert await q.get() == "now"
    assert q.waiting() == 2
    assert await asyncio.wait_for(q.get(), 2) == "early"
    assert await asyncio.wait_for(q.get(), 2) == "late"


async def test_add_after_keeps_the_earlier_deadline() -> None:
    q: DelayingQueue[str] = DelayingQueue()
    q.add_after("a", 30)
    q.add_after("a", 0.01)
    q.add_after("a", 60)
    assert q.waiting() == 1
    assert await asyncio.wait_for(q.get(), 2) == "a"


async def test_shutdown_cancels_timers() -> None:
    q: DelayingQueue[str] = DelayingQueue()
    q.add_after("a", 0.01)
    q.shutdown()
    assert q.waiting() == 0
    await asyncio.sleep(0.03)
    assert len(q) == 0


def test_exponential_backoff_grows_and_caps_per_item() -> None:
    limiter: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    delays = [limiter.when("a") for _ in range(20)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert delays == sorted(delays)
    assert delays[-1] == 1000.0
    assert limiter.when("b") == 0.005  # other items are not slowed down
    assert limiter.num_requeues("a") == 20
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == 0.005
    for _ in range(200):
        limiter.when("x")
    assert limiter.when("x") == 1000.0


def test_token_bucket_allows_burst_then_qps() -> None:
    now = [0.0]
    bucket: BucketRateLimiter[str] = BucketRateLimiter(qps=10, burst=3, clock=lambda: now[0])
    assert [bucket.when("x") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.when("x") == pytest.approx(0.1)
    assert bucket.when("y") == pytest.approx(0.2)
    now[0] = 10.0  # refilled, but only up to the burst
    assert [bucket.when("x") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.when("x") == pytest.approx(0.1)


def test_max_of_combines_item_backoff_and_bucket() -> None:
    now = [0.0]
    limiter: MaxOfRateLimiter[str] = MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(0.005, 1000.0),
        BucketRateLimiter(qps=10, burst=1, clock=lambda: now[0]),
    )
    assert limiter.when("a") == 0.005
    assert limiter.when("b") == pytest.approx(0.1)  # the bucket is the longer wait
    assert limiter.num_requeues("a") == 1
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0


def test_default_controller_rate_limiter_starts_at_5ms() -> None:
    limiter = default_controller_rate_limiter()
    assert limiter.when("k") == 0.005
    assert limiter.when("k") == 0.01


async def test_rate_limited_requeue_grows_and_forget_resets() -> None:
    q: RateLimitingQueue[str] = RateLimitingQueue(ItemExponentialFailureRateLimiter(0.001, 1.0))
    for expected in (1, 2, 3):
        q.add_rate_limited("a")
        assert await asyncio.wait_for(q.get(), 2) == "a"
        q.done("a")
        assert q.num_requeues("a") == expected
    q.forget("a")
    assert q.num_requeues("a") == 0


async def test_process_next_item_requeues_failures_and_forgets_successes() -> None:
    q: RateLimitingQueue[str] = RateLimitingQueue(ItemExponentialFailureRateLimiter(0.001, 1.0))
    attempts: list[str] = []

    async def sync(key: str) -> None:
        attempts.append(key)
        if len(attempts) < 3:
            raise RuntimeError("not yet")

    q.add("k")
    for _ in range(3):
        assert await asyncio.wait_for(process_next_item(q, sync), 2)
    assert attempts == ["k", "k", "k"]
    assert q.num_requeues("k") == 0
    assert len(q) == 0 and q.waiting() == 0
    q.shutdown()
    assert not await process_next_item(q, sync)
