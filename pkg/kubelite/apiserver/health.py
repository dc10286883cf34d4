"""Readiness that follows etcd: a periodic, cheap check, not one per request.

A load balancer (or a client choosing among API servers) must stop sending
traffic to a server that cannot reach etcd, or whose watch cache has stopped
following etcd (it would serve stale lists and hang consistent reads). Every
few seconds the monitor reads etcd's current revision with a short timeout;
/readyz reports etcd unreachable while that fails, and a watch cache behind
when it has not reached, within ``max_cache_lag`` seconds, a revision etcd
reported. Both turn true again by themselves once etcd answers and the cache
catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from kubelite.apiserver.watchcache import WatchCache
from kubelite.storage.interface import Storage, StorageError

log = logging.getLogger(__name__)

CHECK_INTERVAL = 2.0  # seconds between etcd checks
CHECK_TIMEOUT = 2.0  # a check slower than this counts as unreachable
MAX_CACHE_LAG = 10.0  # seconds a cache may take to reach a revision etcd reported


class StorageHealth:
    """Owns the periodic check; ``etcd_ok`` and ``cache_ok`` are the readiness checks."""

    def __init__(self, storage: Storage, caches: Iterable[WatchCache], *, interval: float = CHECK_INTERVAL,
                 timeout: float = CHECK_TIMEOUT, max_cache_lag: float = MAX_CACHE_LAG,
                 clock: Callable[[], float] | None = None) -> None:
        self._storage = storage
        self._caches = list(caches)
        self._interval = interval
        self._timeout = timeout
        self._max_lag = max_cache_lag
        self._clock = clock
        self.reachable = True  # optimistic until the first check: the server just read etcd to start
        self._task: asyncio.Task[None] | None = None

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="storage-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check_once(self) -> None:
        """One etcd round trip; tells every cache where etcd is."""
        try:
            revision = await asyncio.wait_for(self._storage.current_revision(), self._timeout)
        except (StorageError, TimeoutError) as exc:
            if self.reachable:
                log.warning("etcd is unreachable (%s): not ready", exc or "timed out")
            self.reachable = False
            return
        if not self.reachable:
            log.info("etcd is reachable again at revision %d", revision)
        self.reachable = True
        now = self._now()
        for cache in self._caches:
            await cache.observe_store_revision(revision, now)

    async def _run(self) -> None:
        while True:
            try:
                await self.check_once()
            except Exception:  # never let the monitor die: readiness would freeze
                log.exception("storage health check failed")
            await asyncio.sleep(self._interval)

    def etcd_ok(self) -> bool:
        return self.reachable

    def cache_ok(self, cache: WatchCache) -> bool:
        return cache.ready and not cache.behind(self._now(), self._max_lag)
