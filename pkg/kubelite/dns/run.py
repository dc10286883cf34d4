"""Wires the cluster DNS server: informers for Services and Endpoints feed the records.

Each Service or Endpoints event recomputes that one Service's records from the
two caches (level-triggered: whatever the event was, the answer is rebuilt
from current state), so a restart of the API server or a relist can never
leave stale names behind. Readiness waits for both caches, so a fresh replica
answers nothing until it knows the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.client.client import Client
from kubelite.client.informer import Informer, deleted_object, meta_namespace_key, split_key
from kubelite.dns.records import ClusterRecords
from kubelite.dns.server import DNSServer, Resolver
from kubelite.machinery.health import health_app

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DNSConfig:
    server: str
    token: str = ""
    cluster_domain: str = "cluster.local"
    bind_address: str = "0.0.0.0"
    port: int = 53
    upstreams: tuple[tuple[str, int], ...] = field(default_factory=tuple)
    health_address: str = "0.0.0.0"
    health_port: int = 8080
    # CoreDNS' layout when set: readiness (/ready) and metrics on ports of their own (8181, 9153);
    # every port serves every route, so a probe pointed at either works.
    ready_port: int | None = None
    metrics_port: int | None = None

    def __post_init__(self) -> None:
        for flag, value in (("--port", self.port), ("--health-port", self.health_port),
                            ("--ready-port", self.ready_port), ("--metrics-port", self.metrics_port)):
            if value is not None and not 0 <= value <= 65535:
                raise ValueError(f"{flag} {value}: must be between 0 and 65535")
        labels = self.cluster_domain.strip(".").split(".")
        if not all(labels) or any(len(label) > 63 for label in labels):
            raise ValueError(f"--cluster-domain {self.cluster_domain!r} is not a DNS domain")


class RecordsController:
    """Keeps ClusterRecords equal to what the Service and Endpoints caches say."""

    def __init__(self, client: Client, records: ClusterRecords) -> None:
        self.records = records
        self.services: Informer[core_v1.Service] = Informer(client, core_v1.Service)
        self.endpoints: Informer[core_v1.Endpoints] = Informer(client, core_v1.Endpoints)
        for informer in (self.services, self.endpoints):
            informer.add_handler(on_add=self._changed, on_update=lambda _old, new: self._changed(new),
                                 on_delete=self._changed)

    def _changed(self, obj: Any) -> None:
        namespace, name = split_key(meta_namespace_key(deleted_object(obj)))
        key = f"{namespace}/{name}"
        svc = self.services.store.get(key)
        ep = self.endpoints.store.get(key)
        self.records.update(namespace, name, svc, ep)

    @property
    def synced(self) -> bool:
        return self.services.has_synced and self.endpoints.has_synced


def dns_health_app(synced: Callable[[], bool]) -> web.Application:
    """The common health app plus CoreDNS' paths: /health (liveness: the process answers) and /ready
    (readiness: both caches synced), so manifests written for CoreDNS probe it unchanged."""
    app = health_app({"caches-synced": synced})

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="OK") if synced() else web.Response(text="caches not synced", status=503)

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="OK")

    app.router.add_get("/ready", ready)
    app.router.add_get("/health", health)
    return app


async def run(config: DNSConfig, on_ready: Callable[[int], None] | None = None) -> None:
    """Serves until cancelled; ``on_ready(port)`` once the caches are synced and the port is bound."""
    records = ClusterRecords(config.cluster_domain)
    async with Client(config.server, token=config.token) as client:
        controller = RecordsController(client, records)
        informers = [asyncio.create_task(controller.services.run(), name="dns-informer-services"),
                     asyncio.create_task(controller.endpoints.run(), name="dns-informer-endpoints")]
        server = DNSServer(Resolver(records, config.upstreams))
        runner = web.AppRunner(dns_health_app(lambda: controller.synced), access_log=None)
        try:
            await runner.setup()
            for port in sorted({p for p in (config.health_port, config.ready_port, config.metrics_port)
                                if p is not None}):
                await web.TCPSite(runner, config.health_address, port).start()
            await controller.services.wait_for_sync()
            await controller.endpoints.wait_for_sync()
            await server.start(config.bind_address, config.port)
            log.info("serving DNS for %s on %s:%d", config.cluster_domain, config.bind_address, server.port)
            if on_ready is not None:
                on_ready(server.port)
            await asyncio.gather(*informers)
        finally:
            await server.stop()
            await runner.cleanup()
            for task in informers:
                task.cancel()
            for task in informers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
