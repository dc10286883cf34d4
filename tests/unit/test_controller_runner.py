"""ControllerRunner: N workers, no key synced twice at once, retries, graceful stop, metrics."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from kubelite.client.controller import ControllerRunner, InstrumentedQueue
from kubelite.client.workqueue import ItemExponentialFailureRateLimiter
from tests.support.poll import until


class FakeController:
    def __init__(self, registry: CollectorRegistry, name: str = "test") -> None:
        self.name = name
        self.queue: InstrumentedQueue[str] = InstrumentedQueue(
            name, ItemExponentialFailureRateLimiter(0.001, 0.01), registry=registry)
        self.synced: list[str] = []
        self.running: set[str] = set()
        self.overlap = False
        self.fail_first: set[str] = set()
        self.concurrent = 0
        self.max_concurrent = 0
        self.release = asyncio.Event()
        self.release.set()

    async def sync(self, key: str) -> None:
        if key in self.running:
            self.overlap = True
        self.running.add(key)
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            await asyncio.sleep(0.005)
            await self.release.wait()
            if key in self.fail_first:
                self.fail_first.discard(key)
                raise RuntimeError(f"{key} failed once")
            self.synced.append(key)
        finally:
            self.concurrent -= 1
            self.running.discard(key)


def sample(registry: CollectorRegistry, metric: str, name: str = "test") -> float:
    value = registry.get_sample_value(metric, {"name": name})
    return 0.0 if value is None else value


async def test_workers_sync_every_key_retry_failures_and_report_metrics() -> None:
    registry = CollectorRegistry()
    ctl = FakeController(registry)
    ctl.fail_first = {"ns/b"}
    runner = ControllerRunner(ctl, workers=3, unfinished_work_period=0.01)
    task = asyncio.create_task(runner.run(), name="runner")
    try:
        for key in ["ns/a", "ns/b", "ns/c", "ns/a", "ns/a"]:
            ctl.queue.add(key)
        await until(lambda: sorted(set(ctl.synced)) == ["ns/a", "ns/b", "ns/c"])
        for _ in range(20):  # the same key re-added while syncing is synced again, never alongside
            ctl.queue.add("ns/a")
            await asyncio.sleep(0.001)
        await until(lambda: not ctl.running and len(ctl.queue) == 0)
        assert not ctl.overlap
        assert ctl.max_concurrent > 1
        assert sample(registry, "workqueue_retries_total") == 1
        assert sample(registry, "workqueue_adds_total") >= 4
        assert sample(registry, "workqueue_depth") == 0
        assert sample(registry, "workqueue_work_duration_seconds_count") >= 4
        assert sample(registry, "workqueue_queue_duration_seconds_count") >= 4
    finally:
        task.cancel()
        await asyncio.wait([task])


async def test_cancel_lets_syncs_in_progress_finish() -> None:
    registry = CollectorRegistry()
    ctl = FakeController(registry)
    ctl.release.clear()
    runner = ControllerRunner(ctl, workers=2, shutdown_timeout=5)
    task = asyncio.create_task(runner.run(), name="runner")
    ctl.queue.add("ns/a")
    await until(lambda: "ns/a" in ctl.running)
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()  # waiting for the sync in progress
    ctl.release.set()
    await asyncio.wait([task])
    assert ctl.synced == ["ns/a"]
    assert ctl.queue.shutting_down


async def test_shutdown_timeout_cancels_a_stuck_sync() -> None:
    registry = CollectorRegistry()
    ctl = FakeController(registry)
    ctl.release.clear()
    runner = ControllerRunner(ctl, workers=1, shutdown_timeout=0.05)
    task = asyncio.create_task(runner.run(), name="runner")
    ctl.queue.add("ns/a")
    await until(lambda: "ns/a" in ctl.running)
    task.cancel()
    await asyncio.wait_for(asyncio.wait([task]), 5)
    assert ctl.synced == [] and not ctl.running


async def test_runner_waits_for_ready_first() -> None:
    registry = CollectorRegistry()
    ctl = FakeController(registry)
    ready = asyncio.Event()
    ctl.queue.add("ns/a")
    task = asyncio.create_task(ControllerRunner(ctl).run(ready.wait), name="runner")
    await asyncio.sleep(0.05)
    assert ctl.synced == []
    ready.set()
    await until(lambda: ctl.synced == ["ns/a"])
    task.cancel()
    await asyncio.wait([task])


def test_workers_must_be_positive() -> None:
    import pytest
    with pytest.raises(ValueError, match="workers must be at least 1"):
        ControllerRunner(FakeController(CollectorRegistry()), workers=0)
