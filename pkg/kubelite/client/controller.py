"""Runs a level-triggered controller: N workers over one rate-limited queue.

Every controller has the same skeleton (DESIGN.md habit 2): handlers enqueue
keys, workers take keys off the queue and call ``sync(key)``, a failure means
"retry later with backoff", the queue guarantees one key is never synced by
two workers at once. ``ControllerRunner`` is that skeleton, written once:

* workers are named tasks the runner owns; ``run()`` returns (or is
  cancelled) only after all of them ended;
* shutdown is graceful: the queue stops taking keys, syncs in progress
  finish (up to ``shutdown_timeout``), then workers are cancelled;
* the queue reports client-go's workqueue metrics (``workqueue_depth``,
  ``workqueue_adds_total``, ``workqueue_queue_duration_seconds``,
  ``workqueue_work_duration_seconds``, ``workqueue_retries_total``,
  ``workqueue_unfinished_work_seconds``,
  ``workqueue_longest_running_processor_seconds``), labelled by queue name,
  so dashboards written for Kubernetes components read ours.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Protocol, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from kubelite.client.workqueue import RateLimiter, RateLimitingQueue, process_next_item

log = logging.getLogger(__name__)

T = TypeVar("T", bound=Hashable)

# client-go's buckets: 1 µs to ~10 s, x10.
_BUCKETS = tuple(10.0 ** e for e in range(-8, 2))


class WorkqueueMetrics:
    """The workqueue metric families, registered once per registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.depth = Gauge("workqueue_depth", "Current depth of workqueue", ["name"], registry=registry)
        self.adds = Counter("workqueue_adds", "Total number of adds handled by workqueue", ["name"],
                            registry=registry)
        self.latency = Histogram("workqueue_queue_duration_seconds",
                                 "How long in seconds an item stays in workqueue before being requested.",
                                 ["name"], buckets=_BUCKETS, registry=registry)
        self.work = Histogram("workqueue_work_duration_seconds",
                              "How long in seconds processing an item from workqueue takes.", ["name"],
                              buckets=_BUCKETS, registry=registry)
        self.retries = Counter("workqueue_retries", "Total number of retries handled by workqueue", ["name"],
                               registry=registry)
        self.unfinished = Gauge("workqueue_unfinished_work_seconds",
                                "How many seconds of work has been done that is in progress and hasn't been "
                                "observed by work_duration.", ["name"], registry=registry)
        self.longest = Gauge("workqueue_longest_running_processor_seconds",
                             "How many seconds has the longest running processor for workqueue been running.",
                             ["name"], registry=registry)


_metrics_by_registry: dict[int, WorkqueueMetrics] = {}


def workqueue_metrics(registry: CollectorRegistry = REGISTRY) -> WorkqueueMetrics:
    key = id(registry)
    if key not in _metrics_by_registry:
        _metrics_by_registry[key] = WorkqueueMetrics(registry)
    return _metrics_by_registry[key]


class InstrumentedQueue(RateLimitingQueue[T]):
    """A RateLimitingQueue that reports the workqueue metrics under its name."""

    def __init__(self, name: str, rate_limiter: RateLimiter[T] | None = None, *,
                 registry: CollectorRegistry = REGISTRY, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(rate_limiter, name)
        self._clock = clock
        m = workqueue_metrics(registry)
        self._depth = m.depth.labels(name)
        self._adds = m.adds.labels(name)
        self._latency = m.latency.labels(name)
        self._work = m.work.labels(name)
        self._retries = m.retries.labels(name)
        self._unfinished = m.unfinished.labels(name)
        self._longest = m.longest.labels(name)
        self._added_at: dict[T, float] = {}
        self._started_at: dict[T, float] = {}

    def add(self, item: T) -> None:
        was_dirty = item in self._dirty or self._shutting_down
        super().add(item)
        if not was_dirty:
            self._adds.inc()
            self._added_at.setdefault(item, self._clock())
        self._depth.set(len(self))

    async def get(self) -> T:
        item = await super().get()
        now = self._clock()
        added = self._added_at.pop(item, None)
        if added is not None:
            self._latency.observe(now - added)
        self._started_at[item] = now
        self._depth.set(len(self))
        return item

    def done(self, item: T) -> None:
        started = self._started_at.pop(item, None)
        if started is not None:
            self._work.observe(self._clock() - started)
        if item in self._dirty:
            self._added_at.setdefault(item, self._clock())
        super().done(item)
        self._depth.set(len(self))

    def add_rate_limited(self, item: T) -> None:
        self._retries.inc()
        super().add_rate_limited(item)

    def update_unfinished_work(self) -> None:
        """Refreshes the two gauges about work in progress (called by the runner's ticker)."""
        now = self._clock()
        running = [now - t for t in self._started_at.values()]
        self._unfinished.set(sum(running))
        self._longest.set(max(running, default=0.0))


class Controller(Protocol):
    """What the runner needs of a controller: a name, its queue and one sync per key."""

    @property
    def name(self) -> str: ...

    @property
    def queue(self) -> RateLimitingQueue[str]: ...

    async def sync(self, key: str) -> None: ...


class ControllerRunner:
    """Runs ``workers`` workers for one controller until cancelled or shut down."""

    def __init__(self, controller: Controller, workers: int = 1, *, shutdown_timeout: float = 10.0,
                 unfinished_work_period: float = 1.0) -> None:
        if workers < 1:
            raise ValueError(f"{controller.name}: workers must be at least 1, got {workers}")
        self.controller = controller
        self.workers = workers
        self._shutdown_timeout = shutdown_timeout
        self._period = unfinished_work_period

    async def run(self, ready: Callable[[], Awaitable[object]] | None = None) -> None:
        """Waits for ``ready`` (the informers' sync), then runs the workers until cancelled."""
        name = self.controller.name
        queue = self.controller.queue
        if ready is not None:
            await ready()
        log.info("starting %s controller with %d workers", name, self.workers)
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._worker(), name=f"{name}-worker-{i}") for i in range(self.workers)]
        ticker = loop.create_task(self._tick(), name=f"{name}-metrics") \
            if isinstance(queue, InstrumentedQueue) else None
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            # Graceful: no new keys; syncs in progress may finish; then the rest is cancelled.
            queue.shutdown()
            if ticker is not None:
                ticker.cancel()
            pending = [t for t in tasks if not t.done()]
            if pending:
                _, still = await asyncio.wait(pending, timeout=self._shutdown_timeout)
                for task in still:
                    task.cancel()
                if still:
                    await asyncio.wait(still)
            if ticker is not None:
                await asyncio.wait([ticker])
            log.info("stopped %s controller", name)

    async def _worker(self) -> None:
        controller = self.controller
        while await process_next_item(controller.queue, controller.sync):
            pass

    async def _tick(self) -> None:
        queue = self.controller.queue
        assert isinstance(queue, InstrumentedQueue)
        while True:
            queue.update_unfinished_work()
            await asyncio.sleep(self._period)
