"""Hollow nodes: Node objects with capacity, labels and taints, and no kubelet behind them.

The scheduler only reads Node objects, so a cluster of thousands of nodes is
a loop of creates. Tests and benchmarks share this helper; the nodes are
cluster-scoped, so ``delete_all_nodes`` gives each user a clean slate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from tests.support.objects import make_node

HOLLOW_LABEL = "kubelite.io/hollow"


def hollow_node(name: str, *, cpu: str = "4", memory: str = "32Gi", pods: str = "110",
                labels: Mapping[str, str] | None = None, taints: Iterable[Mapping[str, str]] = (),
                unschedulable: bool = False, extra: Mapping[str, str] | None = None) -> core.Node:
    node = make_node(name, cpu=cpu, memory=memory, pods=pods, labels={HOLLOW_LABEL: "true", **(labels or {})},
                     taints=taints, unschedulable=unschedulable, extra=extra)
    node.api_version, node.kind = "v1", "Node"
    node.status.conditions.add(type="Ready", status="True", reason="KubeletReady",
                               message="hollow node: no kubelet, always ready")
    node.status.addresses.add(type="InternalIP", address="127.0.0.1")
    node.status.addresses.add(type="Hostname", address=name)
    return node


async def register(client: Client, nodes: Iterable[core.Node], *, concurrency: int = 32) -> list[core.Node]:
    """Creates the nodes (status included: the API server keeps a registering node's status)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(node: core.Node) -> core.Node:
        async with gate:
            return await client.create(node)

    return list(await asyncio.gather(*(one(n) for n in nodes)))


async def delete_all_nodes(client: Client) -> None:
    listed = await client.list(core.Node)
    await asyncio.gather(*(client.delete(core.Node, n.metadata.name) for n in listed.items))
