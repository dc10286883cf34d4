"""Node IPAM: gives every node its own pod CIDR out of ``--cluster-cidr``.

Each node gets one ``/--node-cidr-mask-size`` block (default /24) in
``spec.podCIDR`` and ``spec.podCIDRs``; the kubelet hands pod IPs out of it
and other nodes route it to that node (host-gw). A block must never be given
twice, which is only hard across restarts: the allocator keeps its map in
memory, so before the first worker runs it reads every node back from the
synced cache and marks their blocks used (Kubernetes' range allocator does
the same). After that:

* a node without a podCIDR gets the next free block, written with a merge
  patch carrying the cached resourceVersion as a precondition, so a node the
  cache shows stale (already given a block we have not seen yet) makes the
  patch fail with Conflict rather than give it a second block; a failed
  write frees the block again;
* a node that has one keeps it (it is marked used if it was not);
* a deleted node's block is freed.

Allocation is synchronous on the event loop, so several workers cannot pick
the same block.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.controller import InstrumentedQueue
from kubelite.client.events import WARNING, EventRecorder
from kubelite.client.informer import Informer, deleted_object, meta_namespace_key
from kubelite.controllers.util import Lister, Writer

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CIDRRangeFull(Exception):
    pass


class CIDRSet:
    """Which /mask blocks of a cluster CIDR are taken; the next search starts after the last given."""

    def __init__(self, cluster_cidr: str, mask_size: int) -> None:
        self.cluster: Network = ipaddress.ip_network(cluster_cidr)
        if not self.cluster.prefixlen <= mask_size <= self.cluster.max_prefixlen:
            raise ValueError(f"--node-cidr-mask-size: {mask_size} does not fit --cluster-cidr {cluster_cidr}")
        self.mask = mask_size
        self.size = 1 << (mask_size - self.cluster.prefixlen)
        self._shift = self.cluster.max_prefixlen - mask_size
        self._used: set[int] = set()
        self._next = 0

    def _index(self, cidr: str) -> int:
        net = ipaddress.ip_network(cidr, strict=False)
        if net.version != self.cluster.version or net.prefixlen != self.mask or not net.subnet_of(self.cluster):  # type: ignore[arg-type]
            raise ValueError(f"{cidr} is not a /{self.mask} block of {self.cluster}")
        return (int(net.network_address) - int(self.cluster.network_address)) >> self._shift

    def _cidr(self, index: int) -> str:
        base = int(self.cluster.network_address) + (index << self._shift)
        return str(ipaddress.ip_network((base, self.mask)))

    def allocate(self) -> str:
        for offset in range(self.size):
            index = (self._next + offset) % self.size
            if index not in self._used:
                self._used.add(index)
                self._next = (index + 1) % self.size
                return self._cidr(index)
        raise CIDRRangeFull(f"no /{self.mask} block left in {self.cluster}")

    def occupy(self, cidr: str) -> None:
        self._used.add(self._index(cidr))

    def release(self, cidr: str) -> None:
        try:
            self._used.discard(self._index(cidr))
        except ValueError:
            pass

    @property
    def used(self) -> int:
        return len(self._used)


class NodeIPAMController:
    name = "nodeipam"

    def __init__(self, node_lister: Lister[core.Node], client: Writer, recorder: EventRecorder,
                 cluster_cidr: str, mask_size: int, *, queue: InstrumentedQueue[str] | None = None) -> None:
        self.nodes = node_lister
        self.client = client
        self.recorder = recorder
        self.cidrs = CIDRSet(cluster_cidr, mask_size)
        self.queue: InstrumentedQueue[str] = queue or InstrumentedQueue(self.name)
        # node name -> the block this process knows it holds, to free it on deletion.
        self._assigned: dict[str, str] = {}

    def attach(self, node_informer: Informer[core.Node]) -> None:
        node_informer.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self.delete_node)

    def enqueue(self, node: core.Node) -> None:
        self.queue.add(meta_namespace_key(node))

    def delete_node(self, obj: Any) -> None:
        node: core.Node = deleted_object(obj)
        name = node.metadata.name
        cidr = self._assigned.pop(name, "") or node.spec.pod_cidr
        if cidr:
            self.cidrs.release(cidr)
            log.info("released %s of deleted node %s", cidr, name)

    def occupy_existing(self) -> None:
        """Marks every block the cached nodes hold as used: call once the node cache synced, before workers."""
        for node in self.nodes.list():
            self._occupy(node)
        log.info("node IPAM: %d of %d /%d blocks of %s in use", self.cidrs.used, self.cidrs.size,
                 self.cidrs.mask, self.cidrs.cluster)

    def _occupy(self, node: core.Node) -> bool:
        cidrs = list(node.spec.pod_cidrs) or ([node.spec.pod_cidr] if node.spec.pod_cidr else [])
        if not cidrs:
            return False
        for cidr in cidrs:
            try:
                self.cidrs.occupy(cidr)
            except ValueError as exc:
                log.warning("node %s: its podCIDR %s", node.metadata.name, exc)
                continue
            self._assigned[node.metadata.name] = cidr
        return True

    async def sync(self, key: str) -> None:
        node = self.nodes.get("", key)
        if node is None:
            return
        if self._occupy(node):
            return
        known = self._assigned.get(key)
        if known is not None:
            return  # we gave it a block the cache has not shown yet; the next event will
        try:
            cidr = self.cidrs.allocate()
        except CIDRRangeFull as exc:
            self.recorder.event(node, WARNING, "CIDRNotAvailable",
                                f"Node {key} status is now: CIDRNotAvailable ({exc})")
            raise
        # No resourceVersion precondition, as Kubernetes' allocator patches: the kubelet's status
        # writes to a joining node made it conflict (and warn) on nearly every node, while the API
        # server's rule that a set podCIDR never changes already refuses a second block.
        patch = {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}
        try:
            await self.client.patch(core.Node, key, "", patch)
        except Exception as exc:
            self.cidrs.release(cidr)
            self.recorder.event(node, WARNING, "CIDRAssignmentFailed", f"Node {key} status is now: "
                                                                       f"CIDRAssignmentFailed ({exc})")
            raise
        self._assigned[key] = cidr
        log.info("node %s: podCIDR %s", key, cidr)
