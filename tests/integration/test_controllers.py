"""Controllers in a real kubelite-controller-manager process against a real API server and etcd.

Pods are bound and reported running by tests/support/podstatus.py (standing
in for kubelets); everything else is the real thing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from tests.support.apiserver import APIServerProcess
from tests.support.controller_manager import ControllerManagerProcess
from tests.support.podstatus import PodStatusWriter

pytestmark = pytest.mark.integration

FAST_ELECTION = ["--leader-elect-lease-duration=3s", "--leader-elect-renew-deadline=2s",
                 "--leader-elect-retry-period=0.5s"]


@pytest.fixture
def controller_manager(apiserver: APIServerProcess, tmp_path: Path) -> Iterator[ControllerManagerProcess]:
    with ControllerManagerProcess(apiserver.server, tmp_path / "controller-manager.log",
                                  extra_args=FAST_ELECTION) as cm:
        yield cm


@pytest.fixture
async def kubelets(client: Client, ns: str) -> AsyncIterator[PodStatusWriter]:
    async with PodStatusWriter(client, ns, ["node-1", "node-2", "node-3"]) as writer:
        yield writer


def replicaset(ns: str, name: str, replicas: int) -> apps.ReplicaSet:
    rs = apps.ReplicaSet(api_version="apps/v1", kind="ReplicaSet")
    rs.metadata.name = name
    rs.metadata.namespace = ns
    rs.spec.replicas = replicas
    rs.spec.selector.match_labels["app"] = name
    rs.spec.template.metadata.labels["app"] = name
    rs.spec.template.spec.containers.add(name="web", image="nginx:local")
    return rs


async def pods_of(client: Client, ns: str, selector: str) -> list[core.Pod]:
    return (await client.list(core.Pod, ns, label_selector=selector)).items


async def eventually(check: Callable[[], Any], timeout: float = 30.0) -> None:
    """Waits until the async ``check()`` returns truthy (the deadline only guards against hangs)."""
    result: list[Any] = [None]

    async def poll() -> None:
        while True:
            result[0] = await check()
            if result[0]:
                return
            await asyncio.sleep(0.1)

    await asyncio.wait_for(poll(), timeout)


async def test_replicaset_scales_up_and_down(controller_manager: ControllerManagerProcess, client: Client, ns: str,
                                             kubelets: PodStatusWriter) -> None:
    await client.create(replicaset(ns, "web", 3))

    async def status_is(replicas: int) -> bool:
        rs = await client.get(apps.ReplicaSet, "web", ns)
        s = rs.status
        return bool(s.replicas == replicas and s.ready_replicas == replicas and s.available_replicas == replicas
                    and s.observed_generation == rs.metadata.generation)

    await eventually(lambda: status_is(3))
    pods = await pods_of(client, ns, "app=web")
    assert len(pods) == 3
    rs = await client.get(apps.ReplicaSet, "web", ns)
    for p in pods:
        (ref,) = p.metadata.owner_references
        assert (ref.kind, ref.name, ref.uid, ref.controller) == ("ReplicaSet", "web", rs.metadata.uid, True)
        assert p.metadata.name.startswith("web-")

    rs.spec.replicas = 5
    await client.update(rs)
    await eventually(lambda: status_is(5))
    rs = await client.get(apps.ReplicaSet, "web", ns)
    rs.spec.replicas = 1
    await client.update(rs)
    await eventually(lambda: status_is(1))
    await eventually(lambda: _count(client, ns, "app=web", 1))

    # Events, deduplicated: SuccessfulCreate and SuccessfulDelete about the ReplicaSet.
    async def has_events() -> bool:
        events = (await client.list(core.Event, ns)).items
        reasons = {e.reason for e in events if e.involved_object.name == "web"}
        return {"SuccessfulCreate", "SuccessfulDelete"} <= reasons

    await eventually(has_events)
    assert "workqueue_adds_total{name=\"replicaset\"}" in controller_manager.metrics()


async def _count(client: Client, ns: str, selector: str, n: int) -> bool:
    return len(await pods_of(client, ns, selector)) == n


async def test_replicaset_adopts_an_orphan_and_releases_a_relabelled_pod(
        controller_manager: ControllerManagerProcess, client: Client, ns: str, kubelets: PodStatusWriter) -> None:
    orphan = core.Pod(api_version="v1", kind="Pod")
    orphan.metadata.name = "orphan"
    orphan.metadata.namespace = ns
    orphan.metadata.labels["app"] = "adopt"
    orphan.spec.containers.add(name="web", image="nginx:local")
    await client.create(orphan)
    await client.create(replicaset(ns, "adopt", 2))

    async def adopted() -> bool:
        pod = await client.get(core.Pod, "orphan", ns)
        return any(r.controller and r.name == "adopt" for r in pod.metadata.owner_references)

    await eventually(adopted)
    await eventually(lambda: _count(client, ns, "app=adopt", 2))  # the orphan counts: only one created
    await client.patch(core.Pod, "orphan", ns, {"metadata": {"labels": {"app": "elsewhere"}}})

    async def released() -> bool:
        pod = await client.get(core.Pod, "orphan", ns)
        return not pod.metadata.owner_references

    await eventually(released)
    await eventually(lambda: _count(client, ns, "app=adopt", 2))
