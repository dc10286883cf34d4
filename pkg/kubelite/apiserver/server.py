"""Wires the API server together and runs it until cancelled.

``run(config)`` is what the thin entry point calls: open storage, build one
store and watch cache per registered kind, create the namespaces the system
needs, then serve gRPC (the API) and HTTP (health, metrics). Shutdown stops
accepting requests, ends watches and closes storage, in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from aiohttp import web
from google.protobuf.message import Message

from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.api.service.v1 import service_pb2_grpc as pb_grpc
from kubelite.api.service.v1 import streaming_pb2_grpc as streaming_grpc
from kubelite.apiserver import endpoints
from kubelite.apiserver.authn import BearerTokenAuthentication, BootstrapTokenAuthenticator
from kubelite.apiserver.config import APIServerConfig
from kubelite.apiserver.health import StorageHealth
from kubelite.apiserver.pipeline import (
    SYSTEM,
    SYSTEM_MANAGER,
    Admission,
    Attributes,
    DefaultTolerationSeconds,
    NamespaceLifecycle,
    Pipeline,
    ServiceAccountAdmission,
)
from kubelite.apiserver.priority import PriorityAdmission, bootstrap_priority_classes
from kubelite.apiserver.registry.all import build_strategies, build_subresources
from kubelite.apiserver.rest.handlers import RestAPI
from kubelite.apiserver.service import VERSION, DiscoveryServicer, Registry, ResourceServicer
from kubelite.apiserver.store import ResourceStore
from kubelite.apiserver.streaming import KubeletDialer, PodStreamServicer
from kubelite.apiserver.watchcache import WatchCache
from kubelite.client.client import SERVER_KEEPALIVE_OPTIONS
from kubelite.machinery import errors
from kubelite.machinery.health import health_app
from kubelite.machinery.kinds import SCHEME
from kubelite.storage.etcd import EtcdStorage
from kubelite.storage.interface import Storage

log = logging.getLogger(__name__)

BOOTSTRAP_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass
class APIServer:
    """A running API server; ``stop()`` shuts it down."""

    config: APIServerConfig
    storage: Storage
    registry: Registry
    grpc_server: grpc.aio.Server
    http_runner: web.AppRunner
    grpc_port: int
    http_port: int
    kubernetes_service: endpoints.KubernetesService
    kubelets: KubeletDialer
    health: StorageHealth
    rest: RestAPI

    async def stop(self, grace: float = 1.0) -> None:
        await self.kubernetes_service.stop()
        await self.grpc_server.stop(grace)
        await self.rest.close()  # open watches first: the HTTP runner would wait for them
        await self.kubelets.close()
        await self.http_runner.cleanup()
        await self.health.stop()
        for store in self.registry.stores.values():
            await store.cache.stop()
        await self.storage.close()


def build_registry(config: APIServerConfig, storage: Storage) -> Registry:
    lo, _, hi = config.service_node_port_range.partition("-")
    strategies = build_strategies(SCHEME, service_cidr=config.service_cluster_ip_range,
                                  node_port_range=(int(lo), int(hi)), event_ttl_seconds=config.event_ttl_seconds)
    stores: dict[tuple[str, str], ResourceStore] = {}

    async def namespace_lookup(name: str) -> Message | None:
        ns_store = stores[("", "namespaces")]
        cached = ns_store.cache.get(ns_store.key("", name))
        if cached is not None:
            return cached.obj
        # The cache may lag a namespace created a moment ago: ask etcd.
        try:
            return await ns_store.get("", name)
        except errors.StatusError as exc:
            if exc.reason == "NotFound":
                return None
            raise

    admission = Admission([
        NamespaceLifecycle(namespace_lookup),
        PriorityAdmission(lambda: stores[("scheduling.k8s.io", "priorityclasses")]),
        DefaultTolerationSeconds(config.default_not_ready_toleration_seconds,
                                 config.default_unreachable_toleration_seconds),
        ServiceAccountAdmission(),
    ])

    def cache_factory(store: ResourceStore) -> WatchCache:
        return WatchCache(store.strategy, storage, store.prefix, store.decode,
                          history_size=config.watch_cache_size, bookmark_interval=config.bookmark_interval,
                          watch_timeout=config.watch_timeout_seconds)

    for rt in SCHEME:
        stores[(rt.group, rt.resource)] = ResourceStore(strategies[(rt.group, rt.resource)], storage, admission,
                                                        cache_factory)
    for key, routes in build_subresources(SCHEME, lambda group, resource: stores[(group, resource)]).items():
        stores[key].subresources.update(routes)
    return Registry(stores, admission)


async def bootstrap(registry: Registry) -> None:
    """Creates the namespaces and priority classes every cluster has; existing ones are left alone."""
    ns_store = registry.stores[("", "namespaces")]
    for name in BOOTSTRAP_NAMESPACES:
        ns = ns_store.rt.new()
        ns.metadata.name = name  # type: ignore[attr-defined]
        try:
            await ns_store.create(Attributes(SYSTEM, "create", ns_store.rt, "", name, field_manager=SYSTEM_MANAGER), ns)
            log.info("created namespace %s", name)
        except errors.StatusError as exc:
            if exc.reason != "AlreadyExists":
                raise
    await bootstrap_priority_classes(registry.stores[("scheduling.k8s.io", "priorityclasses")])


def authenticator(registry: Registry) -> BearerTokenAuthentication:
    """Bearer tokens: bootstrap tokens, read from the Secrets' watch cache (etcd when the cache has no
    such Secret, so that a token works the moment `token create` returns)."""
    secrets = registry.stores[("", "secrets")]

    async def lookup(namespace: str, name: str) -> core_v1.Secret | None:
        cached = secrets.cache.get(secrets.key(namespace, name))
        obj: Message
        if cached is not None:
            obj = cached.obj
        else:
            try:
                obj = await secrets.get(namespace, name)
            except errors.StatusError as exc:
                if exc.reason == "NotFound":
                    return None
                raise
        assert isinstance(obj, core_v1.Secret)
        return obj

    return BearerTokenAuthentication([BootstrapTokenAuthenticator(lookup)])


async def start(config: APIServerConfig, storage_factory: Callable[[APIServerConfig], Storage] | None = None,
                ) -> APIServer:
    """Starts everything and returns once the server answers requests."""
    storage = storage_factory(config) if storage_factory else EtcdStorage(config.etcd_servers)
    await _maybe_start(storage)
    registry = build_registry(config, storage)
    for store in registry.stores.values():
        await store.cache.start()
    await bootstrap(registry)

    # The clients' keepalive policy, with the request size limit of this server.
    options = dict(SERVER_KEEPALIVE_OPTIONS)
    options["grpc.max_receive_message_length"] = config.max_request_bytes
    server = grpc.aio.server(options=list(options.items()))
    pipeline = Pipeline(authenticator=authenticator(registry), admission=registry.admission)
    pb_grpc.add_ResourceServiceServicer_to_server(ResourceServicer(registry, pipeline), server)
    pb_grpc.add_DiscoveryServiceServicer_to_server(DiscoveryServicer(registry, pipeline), server)
    kubelets = KubeletDialer()
    streams = PodStreamServicer(registry, pipeline, kubelets)
    streaming_grpc.add_PodStreamServiceServicer_to_server(streams, server)
    grpc_port = server.add_insecure_port(f"{_host(config.bind_address)}:{config.secure_port}")
    if grpc_port == 0:
        raise OSError(f"cannot listen on {config.bind_address}:{config.secure_port}")
    await server.start()
    me = endpoints.Endpoint(endpoints.advertise_address(config.advertise_address, config.bind_address), grpc_port)
    kubernetes_service = endpoints.KubernetesService(
        registry.stores[("", "services")], registry.stores[("", "endpoints")],
        registry.stores[("coordination.k8s.io", "leases")], me=me,
        service_ip=endpoints.first_service_ip(config.service_cluster_ip_range),
        lease_seconds=config.endpoint_lease_seconds)
    await kubernetes_service.start()

    # Ready while etcd answers the periodic check and every cache is started and keeping up.
    health = StorageHealth(storage, [s.cache for s in registry.stores.values()])
    checks: dict[str, Callable[[], bool]] = {"etcd": health.etcd_ok}
    for s in registry.stores.values():
        checks[f"watch-cache:{s.rt.group_resource}"] = functools.partial(health.cache_ok, s.cache)
    # One HTTP port for health, metrics and Kubernetes' REST API, as kube-apiserver serves them.
    app = health_app(checks, client_max_size=config.max_request_bytes)
    rest = RestAPI(registry, pipeline, streams, VERSION)
    rest.add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.http_bind_address, config.http_port)
    await site.start()
    http_port = runner.addresses[0][1] if runner.addresses else config.http_port
    log.info("serving the API on %s:%d (gRPC), the REST API, health and metrics on %s:%d", config.bind_address,
             grpc_port, config.http_bind_address, http_port)
    health.start()  # last: nothing after it can fail and leave the task unowned
    return APIServer(config, storage, registry, server, runner, grpc_port, http_port, kubernetes_service, kubelets,
                     health, rest)


async def _maybe_start(storage: Storage) -> None:
    """Connects early, so that a wrong --etcd-servers fails at start rather than at the first request."""
    start = getattr(storage, "start", None)
    if start is not None:
        await start()


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


async def run(config: APIServerConfig) -> None:
    """Runs until cancelled (SIGINT/SIGTERM from the entry point)."""
    server = await start(config)
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await server.stop()
