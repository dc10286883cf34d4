"""Work queues for level-triggered controllers.

Event handlers only enqueue a key ("namespace/name"); workers take keys off the
queue and converge that object. The queue carries the guarantees that make this
safe with several workers:

* a key waiting in the queue is stored once, however many events name it, so a
  burst of updates costs one sync;
* a key is never handed to two workers at once: adding a key that is being
  processed marks it dirty, and it is queued again only when ``done()`` is
  called, so the second sync sees the state after the first;
* failed keys come back later with per-key exponential backoff, bounded overall
  by a token bucket so a mass failure cannot become a retry storm.

The semantics are those of Kubernetes' client-go workqueue, on asyncio: the
queue is used from one event loop and needs no locks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T", bound=Hashable)
T_contra = TypeVar("T_contra", bound=Hashable, contravariant=True)


class ShutDown(Exception):
    """Raised by ``get()`` once the queue is shut down and empty: the worker should exit."""


class WorkQueue(Generic[T]):
    """A deduplicating FIFO queue that never hands one item to two workers."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._queue: deque[T] = deque()
        # Items that need processing: queued, or re-added while being processed.
        self._dirty: set[T] = set()
        self._processing: set[T] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False
        self._drained: asyncio.Event | None = None

    def add(self, item: T) -> None:
        """Marks ``item`` as needing processing; ignored after shutdown."""
        if self._shutting_down or item in self._dirty:
            return
        self._dirty.add(item)
        if item in self._processing:
            return  # queued again by done()
        self._queue.append(item)
        self._wake_one()

    async def get(self) -> T:
        """The next item; the caller must call ``done(item)`` when finished with it."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown(self.name)
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # A wake-up meant for us must not be lost with us.
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()
                elif waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
        item = self._queue.popleft()
        self._processing.add(item)
        self._dirty.discard(item)
        return item

    def done(self, item: T) -> None:
        """Ends processing of ``item``; if it was added meanwhile it is queued again."""
        self._processing.discard(item)
        if item in self._dirty:
            self._queue.append(item)
            self._wake_one()
        if not self._processing and self._drained is not None:
            self._drained.set()

    def __len__(self) -> int:
        """Items waiting to be handed out (not those being processed)."""
        return len(self._queue)

    def shutdown(self) -> None:
        """Stops accepting items; workers drain what is queued, then get ShutDown."""
        self._shutting_down = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def shutdown_with_drain(self) -> None:
        """Shuts down, then waits until every item handed out is done."""
        self.shutdown()
        while self._processing:
            self._drained = asyncio.Event()
            await self._drained.wait()

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class DelayingQueue(WorkQueue[T]):
    """A WorkQueue that can also add an item after a delay.

    Timers are loop ``call_later`` handles owned by the queue and cancelled on
    shutdown, so no task outlives it. An item already waiting keeps the earlier
    of its two deadlines.
    """

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self._timers: dict[T, tuple[float, asyncio.TimerHandle]] = {}

    def add_after(self, item: T, delay: float) -> None:
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        loop = asyncio.get_running_loop()
        ready_at = loop.time() + delay
        existing = self._timers.get(item)
        if existing is not None:
            if existing[0] <= ready_at:
                return
            existing[1].cancel()
        self._timers[item] = (ready_at, loop.call_at(ready_at, self._fire, item))

    def waiting(self) -> int:
        """Items whose delay has not yet passed."""
        return len(self._timers)

    def shutdown(self) -> None:
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        super().shutdown()

    def _fire(self, item: T) -> None:
        self._timers.pop(item, None)
        self.add(item)


class RateLimiter(Protocol[T_contra]):
    """Decides how long an item waits before it is retried."""

    def when(self, item: T_contra) -> float: ...

    def forget(self, item: T_contra) -> None: ...

    def num_requeues(self, item: T_contra) -> int: ...


class ItemExponentialFailureRateLimiter(Generic[T]):
    """base * 2^failures per item, capped: backs off one broken object, not the others."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        self._base = base_delay
        self._max = max_delay
        self._failures: dict[T, int] = {}

    def when(self, item: T) -> float:
        failures = self._failures.get(item, 0)
        self._failures[item] = failures + 1
        if failures >= 64:  # 2**64 * base overflows any cap; skip the float maths
            return self._max
        return float(min(self._base * (2 ** failures), self._max))

    def forget(self, item: T) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: T) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter(Generic[T]):
    """An overall token bucket: ``qps`` retries a second after a ``burst``, whatever the item.

    ``when`` reserves a token, so the n-th caller beyond the burst waits n/qps.
    """

    def __init__(self, qps: float = 10.0, burst: int = 100,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._qps = qps
        self._burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def when(self, item: T) -> float:
        now = self._clock()
        self._tokens = min(float(self._burst), self._tokens + (now - self._last) * self._qps)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self._qps

    def forget(self, item: T) -> None:
        pass

    def num_requeues(self, item: T) -> int:
        return 0


class MaxOfRateLimiter(Generic[T]):
    """The longest delay any of several limiters asks for."""

    def __init__(self, *limiters: RateLimiter[T]) -> None:
        self._limiters = limiters

    def when(self, item: T) -> float:
        return max(limiter.when(item) for limiter in self._limiters)

    def forget(self, item: T) -> None:
        for limiter in self._limiters:
            limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return max(limiter.num_requeues(item) for limiter in self._limiters)


def default_controller_rate_limiter() -> MaxOfRateLimiter[Hashable]:
    """5 ms doubling to 1000 s per item, and at most 10 retries/s (burst 100) overall."""
    return MaxOfRateLimiter[Hashable](
        ItemExponentialFailureRateLimiter[Hashable](0.005, 1000.0),
        BucketRateLimiter[Hashable](qps=10.0, burst=100),
    )


class RateLimitingQueue(DelayingQueue[T]):
    """A DelayingQueue whose retries are spaced by a RateLimiter."""

    def __init__(self, rate_limiter: RateLimiter[T] | None = None, name: str = "") -> None:
        super().__init__(name)
        self._limiter: RateLimiter[T] = rate_limiter if rate_limiter is not None \
            else default_controller_rate_limiter()

    def add_rate_limited(self, item: T) -> None:
        """Retries ``item`` after the limiter's delay (which grows with each call)."""
        self.add_after(item, self._limiter.when(item))

    def forget(self, item: T) -> None:
        """Resets ``item``'s backoff: call it when a sync succeeds."""
        self._limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self._limiter.num_requeues(item)


async def process_next_item(queue: RateLimitingQueue[T], sync: Callable[[T], Awaitable[None]]) -> bool:
    """One worker step: take an item, sync it, requeue it with backoff on failure.

    Returns False once the queue is shut down, so a worker is
    ``while await process_next_item(queue, sync): pass``. An exception from
    ``sync`` is logged and means "try again later"; success forgets the
    item's backoff.
    """
    try:
        item = await queue.get()
    except ShutDown:
        return False
    try:
        await sync(item)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s: syncing %r failed; requeued (%d retries so far)",
                      queue.name or "workqueue", item, queue.num_requeues(item))
        queue.add_rate_limited(item)
    else:
        queue.forget(item)
    finally:
        queue.done(item)
    return True
