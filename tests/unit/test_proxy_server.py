"""ProxyServer over fake informers and a fake proxier: syncs from events, /healthz, /metrics, latency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import ObjectList, WatchEvent
from kubelite.client.informer import Informer
from kubelite.proxy.config import ProxyConfig
from kubelite.proxy.model import Snapshot
from kubelite.proxy.proxier import SyncResult
from kubelite.proxy.server import ProxyServer


class FakeLW:
    """Lists the given objects, then serves whatever the test puts on the queue."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.events: asyncio.Queue[WatchEvent[Any]] = asyncio.Queue()

    async def list(self) -> ObjectList[Any]:
        return ObjectList(items=list(self.items), resource_version="1")

    async def watch(self, resource_version: str) -> AsyncIterator[WatchEvent[Any]]:
        while True:
            yield await self.events.get()


class RecordingProxier:
    def __init__(self) -> None:
        self.snapshots: list[Snapshot] = []
        self.synced = asyncio.Event()

    async def sync(self, snapshot: Snapshot, *, full: bool) -> SyncResult:
        self.snapshots.append(snapshot)
        self.synced.set()
        return SyncResult(full=full, lines=1, rules=1)

    async def cleanup(self) -> None:
        pass


def _service() -> core.Service:
    svc = core.Service(api_version="v1", kind="Service")
    svc.metadata.name = "web"
    svc.metadata.namespace = "default"
    svc.metadata.resource_version = "1"
    svc.spec.cluster_ip = "10.96.0.10"
    svc.spec.ports.add(name="http", port=80, protocol="TCP")
    return svc


def _endpoints(ip: str, rv: str) -> core.Endpoints:
    ep = core.Endpoints(api_version="v1", kind="Endpoints")
    ep.metadata.name = "web"
    ep.metadata.namespace = "default"
    ep.metadata.resource_version = rv
    subset = ep.subsets.add()
    subset.addresses.add(ip=ip)
    subset.ports.add(name="http", port=8080, protocol="TCP")
    return ep


async def test_endpoints_change_reaches_the_proxier_and_the_latency_metric() -> None:
    svc_lw, ep_lw = FakeLW([_service()]), FakeLW([_endpoints("10.244.1.2", "1")])
    proxier = RecordingProxier()
    latencies: list[float] = []
    config = ProxyConfig(min_sync_period=0.01, sync_period=3600, healthz_bind_address="127.0.0.1:0")
    server = ProxyServer(config, proxier, Informer(svc_lw, core.Service), Informer(ep_lw, core.Endpoints),
                         on_programmed=latencies.append)
    task = asyncio.create_task(server.serve(), name="test-proxy-server")
    try:
        await asyncio.wait_for(proxier.synced.wait(), 5)
        assert [ep.ip for ep in proxier.snapshots[0].ports[0].endpoints] == ["10.244.1.2"]
        assert latencies == []  # the initial list is start-up, not network programming
        proxier.synced.clear()
        await ep_lw.events.put(WatchEvent("MODIFIED", _endpoints("10.244.1.3", "2")))
        await asyncio.wait_for(proxier.synced.wait(), 5)
        assert [ep.ip for ep in proxier.snapshots[-1].ports[0].endpoints] == ["10.244.1.3"]
        assert len(latencies) == 1 and latencies[0] >= 0

        async with TestClient(TestServer(server.make_app())) as http:
            resp = await http.get("/healthz")
            assert resp.status == 200 and (await resp.json())["lastUpdated"].endswith("Z")
            # Work wanted for longer than the health timeout, and not done: unhealthy.
            server.loop.pending_since = time.monotonic() - server.health_timeout - 1
            assert (await http.get("/healthz")).status == 503
            metrics = await (await http.get("/metrics")).text()
            assert "kubeproxy_network_programming_duration_seconds_count" in metrics
            assert "kubeproxy_sync_proxy_rules_duration_seconds_bucket" in metrics
    finally:
        task.cancel()
        await asyncio.wait([task])


class FailingOnceProxier(RecordingProxier):
    def __init__(self) -> None:
        super().__init__()
        self.fail_next = False

    async def sync(self, snapshot: Snapshot, *, full: bool) -> SyncResult:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("nft -f failed")
        return await super().sync(snapshot, full=full)


async def test_syncs_after_the_first_read_the_changed_services_and_hint_them() -> None:
    other = _service()
    other.metadata.name = "db"
    other.spec.cluster_ip = "10.96.0.11"
    svc_lw, ep_lw = FakeLW([_service(), other]), FakeLW([_endpoints("10.244.1.2", "1")])
    proxier = FailingOnceProxier()
    config = ProxyConfig(min_sync_period=0.01, sync_period=3600, healthz_bind_address="127.0.0.1:0")
    server = ProxyServer(config, proxier, Informer(svc_lw, core.Service), Informer(ep_lw, core.Endpoints))
    task = asyncio.create_task(server.serve(), name="test-proxy-server")

    async def next_snapshot() -> Snapshot:
        await asyncio.wait_for(proxier.synced.wait(), 5)
        proxier.synced.clear()
        return proxier.snapshots[-1]

    try:
        first = await next_snapshot()
        assert [p.service for p in first.ports] == ["db", "web"] and first.changed is None
        await ep_lw.events.put(WatchEvent("MODIFIED", _endpoints("10.244.1.3", "2")))
        snap = await next_snapshot()
        assert snap.changed == {"default/web:httptcp"}
        assert [ep.ip for ep in snap.ports[1].endpoints] == ["10.244.1.3"]
        assert snap.ports[0] is first.ports[0]  # db was not read again
        deleted = other.__deepcopy__()
        await svc_lw.events.put(WatchEvent("DELETED", deleted))
        snap = await next_snapshot()
        assert [p.service for p in snap.ports] == ["web"] and snap.changed == {"default/db:httptcp"}
        # A failed sync: the next one reads everything and gives no hint (the kernel's state is unknown).
        proxier.fail_next = True
        await ep_lw.events.put(WatchEvent("MODIFIED", _endpoints("10.244.1.4", "3")))
        snap = await next_snapshot()
        assert snap.changed is None and [ep.ip for ep in snap.ports[0].endpoints] == ["10.244.1.4"]
    finally:
        task.cancel()
        await asyncio.wait([task])
