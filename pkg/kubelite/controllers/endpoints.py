"""The Endpoints controller: for each Service with a selector, the pods that back it.

kube-proxy and cluster DNS read Endpoints, not pods, so this controller is
what makes a Service reach its pods. For each Service with a selector it
writes an Endpoints object of the same name whose subsets list, per set of
ports, the ready pods' IPs in ``addresses`` and the not-ready ones in
``notReadyAddresses``, each with ``nodeName`` and a ``targetRef`` to the pod.

Rules as in Kubernetes: a named ``targetPort`` is resolved per pod against
its container ports (pods of one Service may number a port differently, and
a pod without that port is left out); a pod without an IP is not listed yet;
a terminating pod leaves at once (unless ``publishNotReadyAddresses``, which
also lists not-ready pods as ready, for StatefulSet peers discovering each
other); finished pods are never listed. A Service without a selector has
user-managed Endpoints, which this controller leaves alone; deleting a
Service deletes its Endpoints. Writes happen only when the subsets or labels
changed, so steady state costs no API calls.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.controller import InstrumentedQueue
from kubelite.client.informer import Informer, deleted_object, meta_namespace_key, split_key
from kubelite.controllers.util import Lister, Writer, is_being_deleted, is_pod_ready
from kubelite.machinery.errors import StatusError
from kubelite.machinery.selectors import from_set

log = logging.getLogger(__name__)

HEADLESS_LABEL = "service.kubernetes.io/headless"


class PortNotFound(Exception):
    pass


def find_port(pod: core.Pod, port: core.ServicePort) -> int:
    """The pod's port for a service port: a number as is, a name looked up in the pod's containers."""
    target = port.target_port.strip()
    if not target:
        return int(port.port)
    if target.isdigit():
        return int(target)
    protocol = port.protocol or "TCP"
    for container in pod.spec.containers:
        for cport in container.ports:
            if cport.name == target and (cport.protocol or "TCP") == protocol:
                return int(cport.container_port)
    raise PortNotFound(f"no container port named {target!r} ({protocol}) in pod {pod.metadata.name}")


def should_be_listed(pod: core.Pod) -> bool:
    """Finished pods never come back (restartPolicy Never/OnFailure): leave them out."""
    if pod.status.phase == "Failed" or pod.status.phase == "Succeeded":
        return pod.spec.restart_policy == "Always" or not pod.spec.restart_policy
    return True


def _address(pod: core.Pod, service: core.Service) -> core.EndpointAddress:
    addr = core.EndpointAddress(ip=pod.status.pod_ip)
    if pod.spec.node_name:
        addr.node_name = pod.spec.node_name
    addr.target_ref.CopyFrom(core.ObjectReference(kind="Pod", namespace=pod.metadata.namespace,
                                                  name=pod.metadata.name, uid=pod.metadata.uid))
    if pod.spec.hostname and pod.spec.subdomain == service.metadata.name:
        addr.hostname = pod.spec.hostname
    return addr


def _port_key(ports: Iterable[core.EndpointPort]) -> tuple[tuple[str, int, str, str], ...]:
    return tuple(sorted((p.name, p.port, p.protocol, p.app_protocol) for p in ports))


def compute_subsets(service: core.Service, pods: list[core.Pod]) -> list[core.EndpointSubset]:
    """The subsets for ``service`` from ``pods``, grouped by port set and sorted (stable output)."""
    tolerate_unready = service.spec.publish_not_ready_addresses
    groups: dict[tuple[Any, ...], tuple[list[core.EndpointPort], list[core.EndpointAddress],
                                        list[core.EndpointAddress]]] = {}
    for pod in pods:
        if not pod.status.pod_ip:
            continue
        if is_being_deleted(pod) and not tolerate_unready:
            continue
        if not should_be_listed(pod):
            continue
        ports: list[core.EndpointPort] = []
        if service.spec.ports:
            for sport in service.spec.ports:
                try:
                    number = find_port(pod, sport)
                except PortNotFound as exc:
                    log.debug("service %s/%s: %s", service.metadata.namespace, service.metadata.name, exc)
                    continue
                ep = core.EndpointPort(name=sport.name, port=number, protocol=sport.protocol or "TCP")
                if sport.HasField("app_protocol"):
                    ep.app_protocol = sport.app_protocol
                ports.append(ep)
            if not ports:
                continue
        key = _port_key(ports)
        group = groups.setdefault(key, (ports, [], []))
        if tolerate_unready or is_pod_ready(pod):
            group[1].append(_address(pod, service))
        else:
            group[2].append(_address(pod, service))
    subsets = []
    for key in sorted(groups):
        ports, ready, not_ready = groups[key]
        subset = core.EndpointSubset()
        subset.addresses.extend(sorted(ready, key=lambda a: (a.ip, a.target_ref.name)))
        subset.not_ready_addresses.extend(sorted(not_ready, key=lambda a: (a.ip, a.target_ref.name)))
        subset.ports.extend(sorted(ports, key=lambda p: (p.name, p.port, p.protocol)))
        subsets.append(subset)
    return subsets


def _labels_for(service: core.Service) -> dict[str, str]:
    labels = dict(service.metadata.labels)
    if service.spec.cluster_ip == "None":
        labels[HEADLESS_LABEL] = ""
    else:
        labels.pop(HEADLESS_LABEL, None)
    return labels


class EndpointsController:
    name = "endpoint"

    def __init__(self, service_lister: Lister[core.Service], pod_lister: Lister[core.Pod],
                 endpoints_lister: Lister[core.Endpoints], client: Writer, *,
                 queue: InstrumentedQueue[str] | None = None) -> None:
        self.services = service_lister
        self.pods = pod_lister
        self.endpoints = endpoints_lister
        self.client = client
        self.queue: InstrumentedQueue[str] = queue or InstrumentedQueue(self.name)

    def attach(self, service_informer: Informer[core.Service], pod_informer: Informer[core.Pod],
               endpoints_informer: Informer[core.Endpoints]) -> None:
        service_informer.add_handler(self.enqueue, lambda old, new: self.enqueue(new),
                                     lambda obj: self.enqueue(deleted_object(obj)))
        pod_informer.add_handler(self.add_pod, self.update_pod, self.delete_pod)
        # Someone else changing our Endpoints (or deleting them): put them back.
        endpoints_informer.add_handler(on_update=lambda old, new: self._endpoints_changed(new),
                                       on_delete=lambda obj: self._endpoints_changed(deleted_object(obj)))

    def enqueue(self, service: Any) -> None:
        self.queue.add(meta_namespace_key(service))

    def _endpoints_changed(self, ep: core.Endpoints) -> None:
        if self.services.get(ep.metadata.namespace, ep.metadata.name) is not None:
            self.queue.add(meta_namespace_key(ep))

    def _services_for(self, pod: core.Pod) -> list[core.Service]:
        labels = dict(pod.metadata.labels)
        return [s for s in self.services.list(pod.metadata.namespace)
                if s.spec.selector and from_set(dict(s.spec.selector)).matches(labels)]

    def add_pod(self, pod: core.Pod) -> None:
        for service in self._services_for(pod):
            self.enqueue(service)

    def update_pod(self, old: core.Pod, new: core.Pod) -> None:
        if old.metadata.resource_version == new.metadata.resource_version:
            return
        keys = {meta_namespace_key(s) for s in self._services_for(new)}
        if dict(old.metadata.labels) != dict(new.metadata.labels):
            keys |= {meta_namespace_key(s) for s in self._services_for(old)}
        elif not _endpoint_relevant_change(old, new):
            return
        for key in keys:
            self.queue.add(key)

    def delete_pod(self, obj: Any) -> None:
        self.add_pod(deleted_object(obj))

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        service = self.services.get(namespace, name)
        if service is None:
            try:
                await self.client.delete(core.Endpoints, name, namespace)
            except StatusError as exc:
                if exc.reason != "NotFound":
                    raise
            return
        if not service.spec.selector:
            return  # user-managed Endpoints
        pods = self.pods.list(namespace, from_set(dict(service.spec.selector)))
        subsets = compute_subsets(service, pods)
        labels = _labels_for(service)
        current = self.endpoints.get(namespace, name)
        if current is not None and _same(current, subsets, labels):
            return
        ep = core.Endpoints(api_version="v1", kind="Endpoints")
        if current is not None:
            ep.metadata.CopyFrom(current.metadata)
        else:
            ep.metadata.name = name
            ep.metadata.namespace = namespace
        ep.metadata.labels.clear()
        ep.metadata.labels.update(labels)
        ep.subsets.extend(subsets)
        if current is None:
            try:
                await self.client.create(ep)
            except StatusError as exc:
                if exc.reason != "AlreadyExists":
                    raise
                raise StatusError("Conflict", f"endpoints {namespace}/{name} appeared meanwhile; "
                                              "retrying with the current object") from exc
        else:
            await self.client.update(ep)


def _same(ep: core.Endpoints, subsets: list[core.EndpointSubset], labels: dict[str, str]) -> bool:
    if dict(ep.metadata.labels) != labels or len(ep.subsets) != len(subsets):
        return False
    return all(a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)
               for a, b in zip(ep.subsets, subsets, strict=True))


def _endpoint_relevant_change(old: core.Pod, new: core.Pod) -> bool:
    return (old.status.pod_ip != new.status.pod_ip or is_pod_ready(old) != is_pod_ready(new)
            or is_being_deleted(old) != is_being_deleted(new) or old.spec.node_name != new.spec.node_name
            or old.status.phase != new.status.phase or old.spec.hostname != new.spec.hostname)
