"""The watch path at node scale, on the real API server and etcd cluster.

A kubelet watches the pods of its own node (``spec.nodeName=<node>``); a
cluster has thousands of them. With 1,000 other node watchers open over two
client channels, the watch of one node must see exactly the events of that
node's pods (binding as ADDED, moving away as DELETED), across an API server
restart, and the resuming watchers must be served by the restarted server's
watch cache, not by one etcd watch each.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.client.watch import retry_watch
from kubelite.machinery.errors import StatusError
from tests.support.apiserver import APIServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

T = TypeVar("T")
OTHER_NODES = 1000
Seen = tuple[str, str, str]  # (type, pod name, resourceVersion)


def pod(name: str, ns: str, node: str = "") -> core.Pod:
    p = core.Pod(api_version="v1", kind="Pod")
    p.metadata.name = name
    p.metadata.namespace = ns
    p.spec.node_name = node
    p.spec.containers.add(name="c", image="busybox:local")
    return p


def etcd_watches_opened(api: APIServerProcess) -> float:
    """How many etcd watch streams the API server process has opened (the storage layer's watch latency count)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{api.http_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    match = re.search(r'^etcd_request_duration_seconds_count\{operation="watch"\} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def until_available(call: Callable[[], Awaitable[T]]) -> T:
    """Repeats a call while the restarted API server is not serving yet."""
    for _ in range(100):
        try:
            return await call()
        except StatusError as exc:
            if exc.reason not in ("ServiceUnavailable", "Timeout"):
                raise
            await asyncio.sleep(0.1)
    return await call()


@contextlib.asynccontextmanager
async def node_watches(clients: list[Client], ns: str, nodes: list[str],
                       resource_version: str) -> AsyncIterator[tuple[dict[str, list[Seen]], asyncio.Condition]]:
    """One retrying pod watch per node, spread over ``clients``: what each saw, by node, and a
    condition notified at every event."""
    seen: dict[str, list[Seen]] = {n: [] for n in nodes}
    changed = asyncio.Condition()

    async def follow(client: Client, node: str) -> None:
        async for ev in retry_watch(client, core.Pod, ns, resource_version=resource_version,
                                    field_selector=f"spec.nodeName={node}"):
            seen[node].append((ev.type, ev.object.metadata.name, ev.object.metadata.resource_version))
            async with changed:
                changed.notify_all()

    tasks = [asyncio.create_task(follow(clients[i % len(clients)], n), name=f"watch:{n}")
             for i, n in enumerate(nodes)]
    try:
        yield seen, changed
    finally:
        for t in tasks:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]
        assert not failures, failures[:3]


async def test_node_watch_sees_exactly_its_pods_across_a_restart_among_1000_node_watchers(
        apiserver: APIServerProcess, client: Client, ns: str) -> None:
    start = (await client.list(core.Pod, ns)).resource_version
    others = [f"node-{i}" for i in range(OTHER_NODES)]
    extra = Client(apiserver.address)  # a second channel: the watches share two HTTP/2 connections
    try:
        async with node_watches([client, extra], ns, ["node-n", *others], start) as (seen, changed):
            want: dict[str, list[Seen]] = {"node-n": [], "node-1": [], "node-2": []}

            def rv(obj: core.Pod) -> str:
                return str(obj.metadata.resource_version)

            # Before the restart: created on the node, bound to it, another node's pod, a status update.
            a = await client.create(pod("a", ns, "node-n"))
            want["node-n"].append(("ADDED", "a", rv(a)))
            b = await client.create(pod("b", ns))
            b_bound = await client.bind(ns, "b", "node-n")
            assert isinstance(b_bound, core.Pod)
            want["node-n"].append(("ADDED", "b", rv(b_bound)))
            c = await client.create(pod("c", ns, "node-1"))
            want["node-1"].append(("ADDED", "c", rv(c)))
            a.status.phase = "Running"
            a = await client.update_status(a)
            want["node-n"].append(("MODIFIED", "a", rv(a)))

            await asyncio.to_thread(apiserver.restart)

            # After it: more of each, and deletions.
            d = await until_available(lambda: client.create(pod("d", ns, "node-n")))
            want["node-n"].append(("ADDED", "d", rv(d)))
            b.status.phase = "Running"
            b.metadata.resource_version = ""
            b = await client.update_status(b)
            want["node-n"].append(("MODIFIED", "b", rv(b)))
            e = await client.create(pod("e", ns))
            e = await client.bind(ns, "e", "node-2")  # type: ignore[assignment]
            want["node-2"].append(("ADDED", "e", rv(e)))
            gone = await client.delete(core.Pod, "a", ns, grace_period_seconds=0)
            assert gone.deleted
            want["node-n"].append(("DELETED", "a", rv(gone.object)))
            gone = await client.delete(core.Pod, "c", ns, grace_period_seconds=0)
            want["node-1"].append(("DELETED", "c", rv(gone.object)))
            # Every node watch catches up with the last write (watchers of other nodes get nothing from
            # it, so wait on those that do, then give the rest the same chance through one more write).
            fence = await client.create(pod("fence", ns, "node-999"))
            want["node-999"] = [("ADDED", "fence", rv(fence))]

            async def settled() -> None:
                async with changed:
                    await changed.wait_for(lambda: all(len(seen[n]) >= len(ev) for n, ev in want.items()))

            await asyncio.wait_for(settled(), 60)
            opened_after = await asyncio.to_thread(etcd_watches_opened, apiserver)
            assert {n: seen[n] for n in want} == want
            assert all(not events for n, events in seen.items() if n not in want), \
                {n: e for n, e in seen.items() if e and n not in want}
            # 1,001 watchers resumed from revisions before the restart, from the new server's caches:
            # the etcd watches the new process opened are its caches' own (one per resource), not one each.
            caches = len(await client.server_resources())
            assert opened_after <= caches + 5, (opened_after, caches)
    finally:
        await extra.close()
