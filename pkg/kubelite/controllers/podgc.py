"""Pod GC: removes pods nobody else will.

Three kinds of pods would otherwise stay for ever:

* terminated pods (Succeeded/Failed) beyond ``--terminated-pod-gc-threshold``:
  the oldest go first, so a cluster running many Jobs does not fill etcd;
* pods bound to a node that no longer exists: no kubelet will ever confirm
  their termination, so they are deleted with a zero grace period. The node's
  absence is confirmed with a live read, not the cache alone, and must last
  a quarantine (40 s, as in Kubernetes): a pod may be bound to a node that is
  registering right now;
* unscheduled pods being deleted: nothing runs them, nothing would finish them.

It runs periodically over the shared pod cache (every 20 s, as Kubernetes'
does); there is no event that says "this pod has been forgotten".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.controllers.util import Lister, Writer, is_being_deleted, ts_seconds
from kubelite.machinery.errors import StatusError

log = logging.getLogger(__name__)

GC_PERIOD = 20.0
QUARANTINE = 40.0


class PodGCController:
    name = "podgc"

    def __init__(self, pod_lister: Lister[core.Pod], node_lister: Lister[core.Node], client: Writer, *,
                 threshold: int = 12500, period: float = GC_PERIOD, quarantine: float = QUARANTINE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pods = pod_lister
        self.nodes = node_lister
        self.client = client
        self.quarantine = quarantine
        self.clock = clock
        self._absent_since: dict[str, float] = {}
        self.threshold = threshold
        self.period = period

    async def run(self, ready: Callable[[], Awaitable[object]] | None = None) -> None:
        if ready is not None:
            await ready()
        while True:
            try:
                await self.gc_once()
            except StatusError as exc:
                log.warning("pod GC pass failed: %s", exc)
            await asyncio.sleep(self.period)

    async def gc_once(self) -> list[str]:
        """One pass; returns the ``namespace/name`` of every pod deleted."""
        deleted: list[str] = []
        pods = self.pods.list()
        deleted += await self._gc_terminated(pods)
        deleted += await self._gc_orphaned(pods)
        # Forget nodes no pod names any more.
        named = {p.spec.node_name for p in pods}
        for node in [n for n in self._absent_since if n not in named]:
            del self._absent_since[node]
        deleted += await self._gc_unscheduled_terminating(pods)
        return deleted

    async def _delete(self, pod: core.Pod, why: str) -> str | None:
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        try:
            # Grace period 0: nothing will confirm a graceful termination of these.
            await self.client.delete(core.Pod, pod.metadata.name, pod.metadata.namespace, uid=pod.metadata.uid,
                                     grace_period_seconds=0)
        except StatusError as exc:
            if exc.reason != "NotFound":
                log.warning("pod GC: deleting %s (%s) failed: %s", key, why, exc)
            return None
        log.info("pod GC: deleted %s (%s)", key, why)
        return key

    async def _gc_terminated(self, pods: list[core.Pod]) -> list[str]:
        if self.threshold <= 0:
            return []
        terminated = [p for p in pods if p.status.phase in ("Succeeded", "Failed") and not is_being_deleted(p)]
        excess = len(terminated) - self.threshold
        if excess <= 0:
            return []
        terminated.sort(key=lambda p: (ts_seconds(p.metadata.creation_timestamp), p.metadata.name))
        out = []
        for pod in terminated[:excess]:
            if (key := await self._delete(pod, "terminated pods above the threshold")) is not None:
                out.append(key)
        return out

    async def _node_exists(self, name: str) -> bool:
        if self.nodes.get("", name) is not None:
            return True
        try:
            await self.client.get(core.Node, name)
        except StatusError as exc:
            if exc.reason == "NotFound":
                return False
            raise
        return True

    async def _gc_orphaned(self, pods: list[core.Pod]) -> list[str]:
        out = []
        checked: dict[str, bool] = {}
        now = self.clock()
        for pod in pods:
            node = pod.spec.node_name
            if not node:
                continue
            if node not in checked:
                exists = await self._node_exists(node)
                if exists:
                    self._absent_since.pop(node, None)
                else:
                    self._absent_since.setdefault(node, now)
                checked[node] = exists or now - self._absent_since[node] < self.quarantine
            if checked[node]:
                continue
            if (key := await self._delete(pod, f"its node {node} no longer exists")) is not None:
                out.append(key)
        return out

    async def _gc_unscheduled_terminating(self, pods: list[core.Pod]) -> list[str]:
        out = []
        for pod in pods:
            if is_being_deleted(pod) and not pod.spec.node_name:
                if (key := await self._delete(pod, "unscheduled and terminating")) is not None:
                    out.append(key)
        return out
