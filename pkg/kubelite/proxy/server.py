"""kubelite-proxy's process: informers -> snapshot -> proxier, with /healthz and /metrics on 10256.

Event handlers only ask the SyncLoop for a sync (and note which Service
changed and when, for the network programming latency). A sync reads the
current informer state of the Services whose events arrived since the
last one, and the periodic resync reads all of it, so the proxy stays
level-triggered: whatever events were coalesced, the next sync converges
on what the API says now, and even a lost event lasts one resync period.

The informers come from ``informer_source`` when one is given: that is the
seam for the shared informer factory (one Services informer per process,
shared with whatever else runs there). Without it the proxy builds its own
two informers on its client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from google.protobuf.message import Message
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.client.informer import Informer, deleted_object, meta_namespace_key, wait_for_cache_sync
from kubelite.client.kubeconfig import load_kubeconfig
from kubelite.proxy import metrics
from kubelite.proxy.config import ProxyConfig
from kubelite.proxy.model import NodeConfig, SnapshotBuilder
from kubelite.proxy.nftables import NftablesProxier
from kubelite.proxy.podnetwork import ExecRouteRunner, HostGw, PodNetwork, node_routes
from kubelite.proxy.proxier import IptablesProxier, Proxier
from kubelite.proxy.runner import ExecConntrack, ExecIptablesRunner, ExecNftRunner
from kubelite.proxy.syncloop import SyncLoop

log = logging.getLogger("kubelite.proxy")

TRIGGER_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"

M = TypeVar("M", bound=Message)
InformerSource = Callable[[type[M]], Informer[M]]


def parse_trigger_time(text: str) -> float | None:
    """Epoch seconds of an RFC 3339 time (nanoseconds allowed, as Go writes them); None if unreadable."""
    text = text.strip()
    if not text:
        return None
    head, dot, rest = text.partition(".")
    if dot:  # Python reads at most microseconds: cut the fraction to 6 digits, keep the zone
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


class ProgrammingTracker:
    """When each not-yet-programmed Endpoints change happened (wall-clock seconds), per Endpoints key.

    Changes stamped before the proxy started are ignored, as kube-proxy does:
    they measure the proxy's start-up, not network programming.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.started = clock()
        self._pending: dict[str, set[float]] = {}

    def record(self, ep: core.Endpoints) -> None:
        stamp = parse_trigger_time(ep.metadata.annotations.get(TRIGGER_ANNOTATION, ""))
        if stamp is None:
            stamp = self._clock()
        if stamp < self.started:
            return
        self._pending.setdefault(meta_namespace_key(ep), set()).add(stamp)

    def take(self) -> list[float]:
        stamps = [t for ts in self._pending.values() for t in ts]
        self._pending = {}
        return stamps

    def give_back(self, stamps: list[float]) -> None:
        """After a failed sync the changes are still not programmed."""
        self._pending.setdefault("", set()).update(stamps)


class PodNetworkAgent:
    """Keeps the PodNetwork converged on the Node objects: level-triggered, rate-limited like the proxy."""

    def __init__(self, network: PodNetwork, nodes: Informer[core.Node], config: ProxyConfig) -> None:
        self.network = network
        self.nodes = nodes
        self.loop = SyncLoop(self._sync, min_interval=config.min_sync_period, full_interval=config.sync_period)
        nodes.add_handler(on_add=lambda _: self.loop.request(), on_update=self._updated,
                          on_delete=lambda _: self.loop.request())

    def _updated(self, old: core.Node, new: core.Node) -> None:
        # Node status changes every heartbeat; only the CIDR and the addresses matter here.
        if old is new or node_routes([old]) != node_routes([new]):
            self.loop.request()

    async def _sync(self, full: bool) -> None:
        await self.network.sync(node_routes(self.nodes.store.list()))

    async def run(self) -> None:
        await self.nodes.wait_for_sync()
        self.loop.request()
        await self.loop.run()


class ProxyServer:
    def __init__(self, config: ProxyConfig, proxier: Proxier, services: Informer[core.Service],
                 endpoints: Informer[core.Endpoints], pod_network: PodNetworkAgent | None = None, *,
                 on_programmed: Callable[[float], None] | None = None) -> None:
        self.pod_network = pod_network
        # Sees every network programming latency the metric does (benchmarks want exact percentiles).
        self.on_programmed = on_programmed
        self.config = config
        self.proxier = proxier
        self.services = services
        self.endpoints = endpoints
        self.loop = SyncLoop(self._sync, min_interval=config.min_sync_period, full_interval=config.sync_period)
        self.tracker = ProgrammingTracker()
        self._snapshots = SnapshotBuilder()
        # namespace/name of the Services whose Service or Endpoints changed since the last sync;
        # None until a first sync read everything.
        self._dirty: set[str] | None = None
        self.last_sync: float | None = None  # wall-clock time of the last successful sync
        self.syncs = 0
        # kube-proxy's rule: unhealthy when wanted work waited longer than twice the resync period.
        self.health_timeout = 2 * config.sync_period
        services.add_handler(on_add=self._service_changed, on_update=self._service_updated,
                             on_delete=self._service_changed)
        endpoints.add_handler(on_add=self._endpoints_changed, on_update=self._endpoints_updated,
                              on_delete=self._endpoints_changed)

    # -- handlers: note and ask, never sync ------------------------------------------

    def _touch(self, obj: Any) -> None:
        if self._dirty is not None:
            self._dirty.add(meta_namespace_key(deleted_object(obj)))  # a relist's tombstone names it too
        self.loop.request()

    def _service_changed(self, svc: Any) -> None:
        self._touch(svc)

    def _service_updated(self, old: core.Service, new: core.Service) -> None:
        if old is not new:  # a resync re-delivers the same object: nothing changed
            self._touch(new)

    def _endpoints_changed(self, ep: Any) -> None:
        # The initial list is the proxy starting up, not a change to program: no latency for it.
        if self.endpoints.has_synced:
            self.tracker.record(deleted_object(ep))  # a relist's tombstone carries the last state
        self._touch(ep)

    def _endpoints_updated(self, old: core.Endpoints, new: core.Endpoints) -> None:
        if old is not new:
            self.tracker.record(new)
            self._touch(new)

    # -- sync ----------------------------------------------------------------------

    async def _sync(self, full: bool) -> None:
        dirty, self._dirty = self._dirty, set()
        if full or dirty is None:
            snapshot = self._snapshots.build(self.services.store.list(), self.endpoints.store.list())
        else:
            snapshot = self._snapshots.update(dirty, self.services.store.get, self.endpoints.store.get)
        stamps = self.tracker.take()
        t0 = time.perf_counter()
        try:
            result = await self.proxier.sync(snapshot, full=full)
        except Exception:
            metrics.SYNC_FAILURES.inc()
            self.tracker.give_back(stamps)
            # The next snapshot's "changed" hint would be relative to this one, which the kernel may
            # not hold: the next sync reads everything again and gives no hint.
            self._dirty = None
            raise
        elapsed = time.perf_counter() - t0
        now = time.time()
        metrics.SYNC_DURATION.observe(elapsed)
        (metrics.SYNC_FULL_DURATION if result.full else metrics.SYNC_PARTIAL_DURATION).observe(elapsed)
        metrics.LAST_SYNC.set(now)
        metrics.RULES.set(result.rules)
        metrics.LINES_WRITTEN.set(result.lines)
        for stamp in stamps:
            metrics.NETWORK_PROGRAMMING.observe(max(0.0, now - stamp))
            if self.on_programmed is not None:
                self.on_programmed(max(0.0, now - stamp))
        self.last_sync = now
        self.syncs += 1
        log.log(logging.INFO if result.full else logging.DEBUG,
                "%s sync of %d service ports: %d lines written, %d rules, %.3fs",
                "full" if result.full else "partial", len(snapshot.ports), result.lines, result.rules, elapsed)

    def healthy(self) -> bool:
        pending = self.loop.pending_since
        return pending is None or time.monotonic() - pending < self.health_timeout

    # -- HTTP --------------------------------------------------------------------

    def make_app(self) -> web.Application:
        async def healthz(_: web.Request) -> web.Response:
            body: dict[str, Any] = {
                "lastUpdated": _rfc3339(self.last_sync) if self.last_sync is not None else "",
                "currentTime": _rfc3339(time.time()),
                "syncs": self.syncs,
            }
            return web.Response(text=json.dumps(body), content_type="application/json",
                                status=200 if self.healthy() else 503)

        async def metrics_handler(_: web.Request) -> web.Response:
            resp = web.Response(body=generate_latest())
            resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
            return resp

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/livez", healthz)
        app.router.add_get("/metrics", metrics_handler)
        return app

    async def serve(self, ready: asyncio.Event | None = None) -> None:
        """Runs informers, the HTTP endpoint and the sync loop until cancelled."""
        runner = web.AppRunner(self.make_app(), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.config.healthz_host or None, self.config.healthz_port).start()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.services.run(), name="proxy-informer-services")
                tg.create_task(self.endpoints.run(), name="proxy-informer-endpoints")
                if self.pod_network is not None:
                    tg.create_task(self.pod_network.nodes.run(), name="proxy-informer-nodes")
                    tg.create_task(self.pod_network.run(), name="proxy-pod-network")
                await wait_for_cache_sync(self.services, self.endpoints)
                # The first sync is a full one of the complete initial state.
                self.loop.request()
                tg.create_task(self.loop.run(), name="proxy-sync-loop")
                if ready is not None:
                    ready.set()
        finally:
            await runner.cleanup()


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def node_config(config: ProxyConfig) -> NodeConfig:
    return NodeConfig(node_name=config.hostname_override or socket.gethostname(),
                      cluster_cidr=config.cluster_cidr, nodeport_addresses=config.nodeport_addresses)


def make_proxier(config: ProxyConfig, mode: str | None = None) -> Proxier:
    node = node_config(config)
    conntrack = ExecConntrack(config.exec_prefix)
    if (mode or config.proxy_mode) == "nftables":
        return NftablesProxier(node, ExecNftRunner(config.exec_prefix), conntrack)
    return IptablesProxier(node, ExecIptablesRunner(config.exec_prefix), conntrack)


def make_pod_network(config: ProxyConfig) -> PodNetwork:
    return HostGw(node_config(config).node_name, config.cluster_cidr, ExecRouteRunner(config.exec_prefix),
                  ExecIptablesRunner(config.exec_prefix))


async def cleanup(config: ProxyConfig) -> None:
    """--cleanup: removes what either mode installed (a node may be switching modes), and the pod network's."""
    for mode in ("iptables", "nftables"):
        if mode == "nftables" and not config.exec_prefix and shutil.which("nft") is None:
            # Without nft on the host, nftables mode never ran here: there is nothing of it to remove.
            log.info("nft is not installed: no nftables rules to remove")
            continue
        await make_proxier(config, mode).cleanup()
        log.info("removed the %s rules", mode)
    await make_pod_network(config).cleanup()


def make_client(config: ProxyConfig) -> Client:
    kc = load_kubeconfig(config.kubeconfig or None, server=config.master or None)
    return Client.from_kubeconfig(kc)


async def run(config: ProxyConfig, *, client: Client | None = None, proxier: Proxier | None = None,
              informer_source: InformerSource[Any] | None = None, ready: asyncio.Event | None = None) -> None:
    if config.cleanup:
        await cleanup(config)
        return
    own_client = client is None
    api = client if client is not None else make_client(config)
    try:
        if informer_source is not None:
            services: Informer[core.Service] = informer_source(core.Service)
            endpoints: Informer[core.Endpoints] = informer_source(core.Endpoints)
        else:
            services = Informer(api, core.Service)
            endpoints = Informer(api, core.Endpoints)
        agent = None
        if config.pod_network == "host-gw":
            nodes: Informer[core.Node] = (informer_source(core.Node) if informer_source is not None
                                          else Informer(api, core.Node))
            agent = PodNetworkAgent(make_pod_network(config), nodes, config)
        server = ProxyServer(config, proxier or make_proxier(config), services, endpoints, agent)
        log.info("kubelite-proxy on node %s, mode %s, API %s", node_config(config).node_name, config.proxy_mode,
                 api.target)
        await server.serve(ready)
    finally:
        if own_client:
            await api.close()
