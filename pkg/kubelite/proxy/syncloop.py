"""The sync loop: rate-limited, coalescing, with a periodic full resync.

Every Service or Endpoints event asks for a sync; none runs one. Syncs
are rate-limited by a token bucket that refills one token per
``min_interval`` (``--iptables-min-sync-period``) and holds ``burst`` (2,
as kube-proxy's): a request after a quiet spell runs at once, even right
after another sync, and only a third sync within the interval waits.
Every request that arrives while a sync runs or while the loop waits for
a token is served by the next single sync: a burst of a thousand
Endpoints updates costs two or three restores, not a thousand. With no
requests at all, a full sync still runs every ``full_interval``
(``--iptables-sync-period``). A failed sync is retried after
``min_interval``.

Why a bucket and not "one sync per interval": the periodic resync also
takes a turn, and with a plain interval a change arriving just after it
waited up to a whole ``min_interval`` (1 s) for nothing; at 10,000
Services that wait alone was most of the network programming latency's
p99 (Kubernetes counts it: its latency runs from the Endpoints change to
the rules applied).

This is kube-proxy's BoundedFrequencyRunner reduced to what asyncio gives
for free; the clock is injectable for unit tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class SyncLoop:
    def __init__(self, sync: Callable[[bool], Awaitable[None]], *, min_interval: float, full_interval: float,
                 burst: int = 2, clock: Callable[[], float] = time.monotonic) -> None:
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self._sync = sync
        self._min_interval = min_interval
        self._full_interval = full_interval
        self._clock = clock
        self._wanted = asyncio.Event()
        self._burst = burst
        self._tokens = float(burst)
        self._refilled = clock()
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
            delay = self._wait_for_token()
            if delay > 0:
                await asyncio.sleep(delay)  # requests meanwhile are folded into this sync
                self._wait_for_token()
            self._tokens -= 1
            full = self._clock() - self._last_full >= self._full_interval
            self._wanted.clear()
            started = self._clock()
            if self.pending_since is None:
                self.pending_since = started  # a periodic resync is pending work too, for /healthz
            try:
                await self._sync(full)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sync failed; retrying in %.1fs", self._min_interval)
                self._tokens = min(self._tokens, 0.0)  # the retry waits a whole interval, burst or not
                self._wanted.set()
                continue
            if full:
                # Counted from the end: a full sync slower than the period must not start the next at once.
                self._last_full = self._clock()
            # Requests that came while syncing keep _wanted set and their own pending time.
            self.pending_since = self._clock() if self._wanted.is_set() else None

    def _wait_for_token(self) -> float:
        """Refills the bucket up to now; the seconds until it holds a whole token (0: it does)."""
        now = self._clock()
        if self._min_interval <= 0:
            self._tokens = float(self._burst)
        else:
            self._tokens = min(float(self._burst), self._tokens + (now - self._refilled) / self._min_interval)
        self._refilled = now
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) * self._min_interval
