"""Hollow nodes: kubelets with the fake runtime, against a real API server.

One as its own process (``--runtime=fake``), and many in one process sharing a
client, as the scheduler and controller benchmarks will run them.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from pathlib import Path

import pytest

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.kubelet.config import KubeletConfig
from kubelite.kubelet.kubelet import Kubelet
from kubelite.runtime.fake import FakeRuntime
from tests.integration.test_kubelet import box, make_pod, running, wait_gone, wait_pod
from tests.support.apiserver import APIServerProcess
from tests.support.kubelet import KubeletProcess


async def test_a_hollow_kubelet_process_runs_pods_without_docker(
        apiserver: APIServerProcess, client: Client, ns: str, tmp_path: Path) -> None:
    node = f"hollow-{secrets.token_hex(3)}"
    with KubeletProcess(apiserver.server, node, tmp_path / "kubelet.log", tmp_path / "root", runtime="fake",
                        pod_cidr="10.232.1.0/24"):
        n = await client.get(core.Node, node)
        assert n.status.node_info.container_runtime_version.startswith("fake://")
        assert {c.type: c.status for c in n.status.conditions}["Ready"] == "True"
        await client.create(make_pod("ghost", ns, node, box("app", "sleep 1")))
        p = await wait_pod(client, ns, "ghost", running)
        assert p.status.pod_ip.startswith("10.232.1.")
        await client.delete(core.Pod, "ghost", ns)
        await wait_gone(client, ns, "ghost")
    await client.delete(core.Node, node)


async def test_without_a_pod_cidr_the_node_is_not_ready_and_pods_wait(
        apiserver: APIServerProcess, client: Client, ns: str, tmp_path: Path) -> None:
    node = f"nocidr-{secrets.token_hex(3)}"
    with KubeletProcess(apiserver.server, node, tmp_path / "kubelet.log", tmp_path / "root", runtime="fake"):
        n = await client.get(core.Node, node)
        ready = {c.type: c for c in n.status.conditions}["Ready"]
        assert (ready.status, ready.reason) == ("False", "KubeletNotReady")
        assert "no pod CIDR" in ready.message
        await client.create(make_pod("patient", ns, node, box("app", "sleep 1")))
        p = await wait_pod(client, ns, "patient", lambda p: bool(p.status.container_statuses))
        assert p.status.phase == "Pending"
        assert p.status.container_statuses[0].state.waiting.reason == "ContainerCreating"
        # The controller manager's node IPAM would do this: the kubelet picks it up from the Node.
        n = await client.get(core.Node, node)
        n.spec.pod_cidr = "10.232.2.0/24"
        n.spec.pod_cidrs.append("10.232.2.0/24")
        await client.update(n)
        p = await wait_pod(client, ns, "patient", running)
        assert p.status.pod_ip.startswith("10.232.2.")
        await client.delete(core.Pod, "patient", ns)
        await wait_gone(client, ns, "patient")
    await client.delete(core.Node, node)


@pytest.mark.timeout(120)
async def test_many_hollow_kubelets_share_one_process(client: Client, ns: str, tmp_path: Path) -> None:
    count = 20
    prefix = f"many-{secrets.token_hex(2)}"
    kubelets = [
        Kubelet(KubeletConfig(node_name=f"{prefix}-{i}", node_ip="127.0.0.1", pod_cidr=f"10.233.{i}.0/24",
                              runtime="fake", root_dir=str(tmp_path / str(i)), node_status_update_frequency=5.0),
                client, FakeRuntime(node_name=f"{prefix}-{i}"))
        for i in range(count)]
    tasks = [asyncio.create_task(k.run(), name=f"hollow-{i}") for i, k in enumerate(kubelets)]
    try:
        await asyncio.wait_for(asyncio.gather(*(k.ready.wait() for k in kubelets)), 60)
        for i in range(count):
            await client.create(make_pod(f"p{i}", ns, f"{prefix}-{i}", box("app", "sleep 1")))
        for i in range(count):
            p = await wait_pod(client, ns, f"p{i}", running)
            assert p.status.pod_ip == f"10.233.{i}.2"
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
    for i in range(count):
        await client.delete(core.Node, f"{prefix}-{i}")
