"""``kubelite cluster up`` waits for Ready nodes through the real API server (before any kubelet exists,
a test writes the Node objects and their status the way a kubelet will)."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.cluster import lifecycle
from tests.support.apiserver import APIServerProcess


async def test_wait_nodes_ready_returns_once_every_node_is_ready(client: Client, apiserver: APIServerProcess) -> None:
    suffix = secrets.token_hex(3)
    names = [f"ready-{suffix}-{i}" for i in range(2)]
    nodes = [await client.create(core.Node(metadata={"name": n})) for n in names]
    try:
        with pytest.raises(lifecycle.ClusterError, match=f"not Ready: {names[0]}, {names[1]}"):
            await lifecycle.wait_nodes_ready(apiserver.server, names, timeout=0.5)

        waiter = asyncio.create_task(lifecycle.wait_nodes_ready(apiserver.server, names, timeout=30),
                                     name="wait-nodes-ready")
        try:
            for node in nodes:
                node.status.conditions.add(type="Ready", status="True", reason="KubeletReady")
                await client.update_status(node)
            await asyncio.wait_for(asyncio.shield(waiter), 30)
        finally:
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
        assert waiter.done() and waiter.exception() is None
    finally:
        for n in names:
            await client.delete(core.Node, n)
