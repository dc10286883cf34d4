"""pause_gc / freeze_heap_when: collections resume in every outcome, and what was loaded is frozen."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from kubelite.machinery.process import freeze_heap_when, pause_gc


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    yield
    gc.enable()
    gc.unfreeze()


async def test_the_heap_is_frozen_and_collections_resume_once_loaded() -> None:
    loaded = asyncio.Event()
    pause_gc()
    assert not gc.isenabled()
    task = asyncio.create_task(freeze_heap_when(loaded.wait))
    await asyncio.sleep(0)
    assert not gc.isenabled()
    keep = [[i] for i in range(1000)]  # what a cache would hold
    loaded.set()
    await task
    assert gc.isenabled() and gc.get_freeze_count() >= len(keep)


async def test_collections_resume_when_loading_takes_too_long_or_is_cancelled() -> None:
    never = asyncio.Event()
    pause_gc()
    await freeze_heap_when(never.wait, timeout=0.01)
    assert gc.isenabled()
    gc.unfreeze()
    pause_gc()
    task = asyncio.create_task(freeze_heap_when(never.wait))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gc.isenabled()
