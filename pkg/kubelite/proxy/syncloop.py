"""The sync loop: rate-limited, coalescing, with a periodic full resync.

Every Service or Endpoints event asks for a sync; none runs one. The loop
runs at most one sync per ``min_interval`` (``--iptables-min-sync-period``),
and every request that arrives while a sync runs or while the loop waits out
the interval is served by the next single sync: a burst of a thousand
Endpoints updates costs one or two restores, not a thousand. With no
requests at all, a full sync still runs every ``full_interval``
(``--iptables-sync-period``). A failed sync is retried after
``min_interval``.

This is kube-proxy's BoundedFrequencyRunner reduced to what asyncio gives
for free; the clock and sleep are injectable for unit tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class SyncLoop:
    def __init__(self, sync: Callable[[bool], Awaitable[None]], *, min_interval: float, full_interval: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sync = sync
        self._min_interval = min_interval
        self._full_interval = full_interval
        self._clock = clock
        self._wanted = asyncio.Event()
        self._last_run = float("-inf")
        self._last_full = float("-inf")
        self.pending_since: float | None = None  # monotonic time of the oldest unserved request

    def request(self) -> None:
        """Asks for a sync soon (within min_interval of the last one); cheap, call it from handlers."""
        if self.pending_since is None:
            self.pending_since = self._clock()
        self._wanted.set()

    async def run(self) -> None:
        while True:
            timeout = self._last_full + self._full_interval - self._clock()
            if timeout > 0 and not self._wanted.is_set():
                try:
                    await asyncio.wait_for(self._wanted.wait(), timeout)
                except TimeoutError:
                    pass
            delay = self._last_run + self._min_interval - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)  # requests meanwhile are folded into this sync
            full = self._clock() - self._last_full >= self._full_interval
            self._wanted.clear()
            started = self._clock()
            if self.pending_since is None:
                self.pending_since = started  # a periodic resync is pending work too, for /healthz
            self._last_run = started
            try:
                await self._sync(full)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sync failed; retrying in %.1fs", self._min_interval)
                self._wanted.set()
                continue
            if full:
                # Counted from the end: a full sync slower than the period must not start the next at once.
                self._last_full = self._clock()
            # Requests that came while syncing keep _wanted set and their own pending time.
            self.pending_since = self._clock() if self._wanted.is_set() else None
