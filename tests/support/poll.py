"""``until``: wait for a condition that no event announces (fakes, metrics, caches).

Polling in a test is the lesser evil when the code under test offers no hook
to wait on; the deadline is a hang guard, never an assertion about speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.005) -> None:
    """Returns once ``predicate()`` is truthy; TimeoutError after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError(f"condition {predicate!r} not met within {timeout}s")
        await asyncio.sleep(interval)
