"""Node IPAM: unique blocks, read back at start, freed on delete, never two for one node."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.controller import InstrumentedQueue
from kubelite.client.workqueue import ItemExponentialFailureRateLimiter, process_next_item
from kubelite.controllers.nodeipam import CIDRRangeFull, CIDRSet, NodeIPAMController
from kubelite.machinery import errors
from tests.unit.fakes_controllers import FakeLister, FakeWriter, recorder, uid


def node(name: str, cidr: str = "") -> core.Node:
    n = core.Node(api_version="v1", kind="Node")
    n.metadata.name = name
    n.metadata.uid = uid()
    n.metadata.resource_version = "3"
    if cidr:
        n.spec.pod_cidr = cidr
        n.spec.pod_cidrs.append(cidr)
    return n


class ConflictingWriter(FakeWriter):
    async def patch(self, kind: object, name: str, namespace: str, patch: object, *,
                    patch_type: str = "application/merge-patch+json") -> object:
        raise errors.conflict("", "nodes", name, "the object has been modified")


def controller(nodes: FakeLister[core.Node], writer: FakeWriter, cidr: str = "10.244.0.0/16",
               mask: int = 24) -> NodeIPAMController:
    queue: InstrumentedQueue[str] = InstrumentedQueue("nodeipam", ItemExponentialFailureRateLimiter(0.001, 0.01),
                                                      registry=CollectorRegistry())
    return NodeIPAMController(nodes, writer, recorder(), cidr, mask, queue=queue)


async def sync(ctl: NodeIPAMController, name: str) -> None:
    ctl.queue.add(name)
    assert await process_next_item(ctl.queue, ctl.sync)


def test_cidr_set_allocates_in_order_and_wraps() -> None:
    cidrs = CIDRSet("10.0.0.0/30", 31)
    assert cidrs.allocate() == "10.0.0.0/31"
    assert cidrs.allocate() == "10.0.0.2/31"
    with pytest.raises(CIDRRangeFull):
        cidrs.allocate()
    cidrs.release("10.0.0.0/31")
    assert cidrs.allocate() == "10.0.0.0/31"
    with pytest.raises(ValueError, match="is not a /31 block"):
        cidrs.occupy("192.168.0.0/31")


async def test_blocks_read_back_at_start_are_never_given_again() -> None:
    nodes = FakeLister(node("a", "10.244.0.0/24"), node("b", "10.244.2.0/24"), node("c"))
    writer = FakeWriter()
    ctl = controller(nodes, writer)
    ctl.occupy_existing()
    await sync(ctl, "c")
    ((_, name, patch),) = writer.patches
    assert name == "c"
    assert patch == {"spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}}
    await sync(ctl, "c")  # the cache still shows no podCIDR: no second block
    assert len(writer.patches) == 1


async def test_failed_patch_frees_the_block_and_retries() -> None:
    nodes = FakeLister(node("a"))
    ctl = controller(nodes, ConflictingWriter())
    await sync(ctl, "a")
    assert ctl.cidrs.used == 0
    assert ctl.queue.num_requeues("a") == 1


async def test_deleted_node_frees_its_block() -> None:
    a = node("a", "10.244.0.0/24")
    nodes = FakeLister(a)
    writer = FakeWriter()
    ctl = controller(nodes, writer)
    ctl.occupy_existing()
    nodes.remove(a)
    ctl.delete_node(a)
    nodes.put(node("b"))
    await sync(ctl, "b")
    assert writer.patches[0][2]["spec"]["podCIDR"] == "10.244.0.0/24"  # free again
    assert ctl.cidrs.used == 1


async def test_full_range_is_an_event_and_a_retry() -> None:
    nodes = FakeLister(node("a", "10.0.0.0/24"), node("b"))
    ctl = controller(nodes, FakeWriter(), cidr="10.0.0.0/24", mask=24)
    ctl.occupy_existing()
    await sync(ctl, "b")
    assert ctl.queue.num_requeues("b") == 1
    event = ctl.recorder._queue.get_nowait()
    assert event.reason == "CIDRNotAvailable"
