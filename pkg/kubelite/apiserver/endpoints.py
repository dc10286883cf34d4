"""The `kubernetes` Service: how pods find the API servers.

Every cluster has a Service `default/kubernetes` whose ClusterIP is the first
address of the service range (10.96.0.1) and whose Endpoints list every live
API server, so that a pod reaches the API at that ClusterIP (and later at
https://kubernetes.default.svc) whichever servers are up. API servers are
stateless peers with no leader, so each keeps only its own entry alive: it
renews a coordination Lease of its own in kube-system, and every server
rewrites the Endpoints from the set of unexpired Leases. A server that stops
cleanly removes its Lease at once; one that dies drops out when its Lease
runs out (kube-apiserver's "lease" endpoint reconciler, with Lease objects
where kube-apiserver uses bare etcd keys with a TTL).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from dataclasses import dataclass

from kubelite.api.coordination.v1 import generated_pb2 as coordination_v1
from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.apiserver.pipeline import SYSTEM, SYSTEM_MANAGER, Attributes
from kubelite.apiserver.store import ResourceStore
from kubelite.machinery import errors

log = logging.getLogger(__name__)

SERVICE_NAME = "kubernetes"
SERVICE_NAMESPACE = "default"
LEASE_NAMESPACE = "kube-system"
# Marks the Leases that stand for API server endpoints.
LEASE_LABEL = "kubelite.io/apiserver-endpoint"
PORT_NAME = "https"


def first_service_ip(service_cidr: str) -> str:
    """The `kubernetes` Service's ClusterIP: the first usable address of the range."""
    return str(next(ipaddress.ip_network(service_cidr).hosts()))


def advertise_address(configured: str, bind_address: str) -> str:
    """Where other hosts reach this server: the flag, else a specific bind address, else the host's address."""
    if configured:
        return configured
    if bind_address not in ("0.0.0.0", "::", ""):
        return bind_address
    try:
        address = socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
    return address


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int

    @property
    def lease_name(self) -> str:
        return f"kube-apiserver-endpoint-{self.ip.replace(':', '-')}-{self.port}"


class KubernetesService:
    """Ensures the Service exists and keeps this server's entry in its Endpoints fresh."""

    def __init__(self, services: ResourceStore, endpoints: ResourceStore, leases: ResourceStore, *, me: Endpoint,
                 service_ip: str, lease_seconds: int) -> None:
        self._services = services
        self._endpoints = endpoints
        self._leases = leases
        self.me = me
        self._service_ip = service_ip
        self._lease_seconds = lease_seconds
        self._task: asyncio.Task[None] | None = None
        self._service_ensured = False
        # Endpoints may not hold loopback addresses (pods could not reach them): a server
        # that can only advertise one keeps the Service but publishes no entry.
        self._publish = not ipaddress.ip_address(me.ip).is_loopback
        if not self._publish:
            log.warning("not publishing %s in the kubernetes Endpoints: it is a loopback address; set "
                        "--advertise-address to an address pods can reach", me.ip)

    def _attrs(self, store: ResourceStore, verb: str, namespace: str, name: str) -> Attributes:
        return Attributes(SYSTEM, verb, store.rt, namespace, name, field_manager=SYSTEM_MANAGER)

    # --- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        """One pass before the server answers (so the Service is there), then a loop."""
        try:
            await self.sync_once()
        except errors.StatusError as exc:
            log.warning("kubernetes service: %s (retrying)", exc)
        self._task = asyncio.create_task(self._loop(), name="kubernetes-service-endpoints")

    async def stop(self) -> None:
        """Leaves the Endpoints at once rather than after the Lease runs out."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not self._publish:
            return
        try:
            await self._leases.delete(self._attrs(self._leases, "delete", LEASE_NAMESPACE, self.me.lease_name))
            await self.reconcile()
        except errors.StatusError as exc:
            log.info("kubernetes endpoints: leaving on shutdown: %s", exc)

    async def _loop(self) -> None:
        # Renew at a third of the Lease, so that two missed renewals still keep the entry.
        interval = max(1.0, self._lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sync_once()
            except errors.StatusError as exc:
                log.warning("kubernetes endpoints: %s", exc)
            except Exception:
                log.exception("kubernetes endpoints: unexpected failure")

    async def sync_once(self) -> None:
        if not self._service_ensured:
            await self.ensure_service()
            self._service_ensured = True
        if self._publish:
            await self.renew()
            await self.reconcile()

    # --- the pieces ------------------------------------------------------

    async def ensure_service(self) -> None:
        svc = core_v1.Service(api_version="v1", kind="Service")
        svc.metadata.name, svc.metadata.namespace = SERVICE_NAME, SERVICE_NAMESPACE
        svc.metadata.labels.update({"component": "apiserver", "provider": "kubernetes"})
        svc.spec.type = "ClusterIP"
        svc.spec.cluster_ip = self._service_ip
        svc.spec.session_affinity = "None"
        svc.spec.ports.add(name=PORT_NAME, protocol="TCP", port=443, target_port=str(self.me.port))
        try:
            await self._services.create(self._attrs(self._services, "create", SERVICE_NAMESPACE, SERVICE_NAME), svc)
            log.info("created service default/kubernetes with ClusterIP %s", self._service_ip)
        except errors.StatusError as exc:
            if exc.reason != "AlreadyExists":
                raise

    async def renew(self) -> None:
        lease = coordination_v1.Lease(api_version="coordination.k8s.io/v1", kind="Lease")
        lease.metadata.name, lease.metadata.namespace = self.me.lease_name, LEASE_NAMESPACE
        lease.metadata.labels[LEASE_LABEL] = "true"
        lease.spec.holder_identity = f"{self.me.ip}:{self.me.port}"
        lease.spec.lease_duration_seconds = self._lease_seconds
        lease.spec.renew_time.GetCurrentTime()
        # An update creates the Lease the first time (Leases allow create-on-update).
        await self._leases.update(self._attrs(self._leases, "update", LEASE_NAMESPACE, self.me.lease_name), lease)

    async def live_endpoints(self) -> list[Endpoint]:
        """Servers whose Lease is unexpired; expired Leases are deleted on the way."""
        now = time.time()
        live: list[Endpoint] = []
        for obj in await self._leases.list_objects(LEASE_NAMESPACE, f"{LEASE_LABEL}=true"):
            assert isinstance(obj, coordination_v1.Lease)
            spec = obj.spec
            expires = spec.renew_time.seconds + spec.renew_time.nanos / 1e9 + spec.lease_duration_seconds
            ip, _, port = spec.holder_identity.rpartition(":")
            if expires < now:
                with contextlib.suppress(errors.StatusError):
                    await self._leases.delete(self._attrs(self._leases, "delete", LEASE_NAMESPACE,
                                                          obj.metadata.name),
                                              resource_version=obj.metadata.resource_version)
                continue
            if ip and port.isdigit():
                live.append(Endpoint(ip, int(port)))
        return sorted(set(live), key=lambda e: (e.port, e.ip))

    async def reconcile(self) -> None:
        """Writes the Endpoints from the live Leases, only when they changed."""
        live = await self.live_endpoints()
        want = core_v1.Endpoints(api_version="v1", kind="Endpoints")
        want.metadata.name, want.metadata.namespace = SERVICE_NAME, SERVICE_NAMESPACE
        by_port: dict[int, list[str]] = {}
        for ep in live:
            by_port.setdefault(ep.port, []).append(ep.ip)
        for port, ips in sorted(by_port.items()):
            subset = want.subsets.add()
            for ip in sorted(ips):
                subset.addresses.add(ip=ip)
            subset.ports.add(name=PORT_NAME, port=port, protocol="TCP")
        try:
            current = await self._endpoints.get(SERVICE_NAMESPACE, SERVICE_NAME, "0")
            assert isinstance(current, core_v1.Endpoints)
            if list(current.subsets) == list(want.subsets):
                return
        except errors.StatusError as exc:
            if exc.reason != "NotFound":
                raise
        await self._endpoints.update(self._attrs(self._endpoints, "update", SERVICE_NAMESPACE, SERVICE_NAME), want)
