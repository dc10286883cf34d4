"""What the components need from the API server, on a real etcd cluster and real server processes.

Update-creates (Leases), DeleteCollection, the scale, eviction and finalize
subresources, the `kubernetes` Service with one Endpoints entry per live API
server, Events that expire, gets served from the watch cache, and the
generation rules of graceful deletion.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.api.autoscaling.v1 import generated_pb2 as autoscaling
from kubelite.api.coordination.v1 import generated_pb2 as coordination
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.meta.v1 import generated_pb2 as metav1
from kubelite.api.policy.v1 import generated_pb2 as policy
from kubelite.client.client import Client
from kubelite.machinery import codec
from kubelite.machinery.errors import StatusError
from tests.support.apiserver import APIServerProcess
from tests.support.etcd import EtcdCluster

# What the test servers publish in the kubernetes Endpoints (data only: nothing is sent there).
ADVERTISED = "192.0.2.10"


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = "") -> None:
    """Polls a condition that depends on time passing (lease expiry); fails after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            pytest.fail(f"not true after {timeout}s: {what}")
        await asyncio.sleep(0.2)


def lease(name: str, ns: str, holder: str) -> coordination.Lease:
    obj = codec.decode_into({"metadata": {"name": name, "namespace": ns},
                             "spec": {"holderIdentity": holder, "leaseDurationSeconds": 40}}, coordination.Lease)
    assert isinstance(obj, coordination.Lease)
    return obj


def configmap(name: str, ns: str, **labels: str) -> core.ConfigMap:
    cm = core.ConfigMap(api_version="v1", kind="ConfigMap")
    cm.metadata.name, cm.metadata.namespace = name, ns
    cm.metadata.labels.update(labels)
    return cm


def pod(name: str, ns: str, **labels: str) -> core.Pod:
    obj = codec.decode_into({"metadata": {"name": name, "namespace": ns, "labels": labels},
                             "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, core.Pod)
    assert isinstance(obj, core.Pod)
    return obj


async def running_ready_pod(client: Client, name: str, ns: str, **labels: str) -> core.Pod:
    """A pod bound to a node with a Ready status, as a kubelet would report it."""
    await client.create(pod(name, ns, **labels))
    await client.bind(ns, name, "node-1")
    current = await client.get(core.Pod, name, ns)
    current.status.phase = "Running"
    current.status.conditions.add(type="Ready", status="True")
    return await client.update_status(current)


async def test_lease_is_created_by_update_and_renewed_by_update(client: Client, ns: str) -> None:
    first = await client.update(lease("node-a", ns, "node-a"))
    assert first.metadata.uid and first.metadata.resource_version and first.metadata.creation_timestamp.seconds
    renewal = lease("node-a", ns, "node-a")
    renewal.spec.renew_time.GetCurrentTime()
    second = await client.update(renewal)
    assert second.metadata.uid == first.metadata.uid
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    # A pinned resourceVersion on a missing object stays NotFound: nothing is created.
    pinned = lease("node-b", ns, "node-b")
    pinned.metadata.resource_version = "5"
    with pytest.raises(StatusError) as info:
        await client.update(pinned)
    assert info.value.reason == "NotFound"
    with pytest.raises(StatusError):
        await client.get(coordination.Lease, "node-b", ns)
    # Kinds without AllowCreateOnUpdate keep refusing.
    with pytest.raises(StatusError) as info:
        await client.update(configmap("absent", ns))
    assert info.value.reason == "NotFound"


async def test_delete_collection_by_label_and_field_selector(client: Client, ns: str) -> None:
    for i in range(6):
        await client.create(configmap(f"cm-{i}", ns, app="a" if i < 4 else "b"))
    gone = await client.delete_collection(core.ConfigMap, ns, label_selector="app=a",
                                          field_selector="metadata.name!=cm-0")
    assert sorted(cm.metadata.name for cm in gone) == ["cm-1", "cm-2", "cm-3"]
    left = await client.list(core.ConfigMap, ns)
    assert sorted(cm.metadata.name for cm in left.items) == ["cm-0", "cm-4", "cm-5"]
    # Propagation policy applies to each object: Orphan keeps them with the orphan finalizer.
    kept = await client.delete_collection(core.ConfigMap, ns, label_selector="app=b", propagation_policy="Orphan")
    assert all("orphan" in cm.metadata.finalizers and cm.metadata.HasField("deletion_timestamp") for cm in kept)
    with pytest.raises(StatusError) as info:
        await client.delete_collection(core.ConfigMap, ns, label_selector="app in (")
    assert info.value.reason == "BadRequest"


async def test_scale_subresource_of_a_deployment(client: Client, ns: str) -> None:
    dep = codec.decode_into({
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}, apps.Deployment)
    created = await client.create(dep)
    scale = await client.get_subresource(apps.Deployment, "web", ns, "scale", autoscaling.Scale)
    assert (scale.spec.replicas, scale.status.selector, scale.metadata.uid) == (3, "app=web", created.metadata.uid)
    scale.spec.replicas = 5
    updated = await client.update_subresource(apps.Deployment, "web", ns, "scale", scale)
    assert updated.spec.replicas == 5
    stored = await client.get(apps.Deployment, "web", ns)
    assert stored.spec.replicas == 5 and stored.metadata.generation == 2
    # The Scale read before carries a stale resourceVersion now.
    with pytest.raises(StatusError) as info:
        await client.update_subresource(apps.Deployment, "web", ns, "scale", scale)
    assert info.value.reason == "Conflict"
    bad = autoscaling.Scale()
    bad.metadata.name = "web"
    bad.spec.replicas = -1
    with pytest.raises(StatusError) as info:
        await client.update_subresource(apps.Deployment, "web", ns, "scale", bad)
    assert info.value.reason == "Invalid" and [c.field for c in info.value.causes] == ["spec.replicas"]
    patched = await client.patch_subresource(apps.Deployment, "web", ns, "scale", {"spec": {"replicas": 2}},
                                             autoscaling.Scale)
    assert (await client.get(apps.Deployment, "web", ns)).spec.replicas == 2
    assert patched.metadata.name == "web"
    with pytest.raises(StatusError) as info:
        await client.get_subresource(apps.Deployment, "web", ns, "nope", autoscaling.Scale)
    assert info.value.reason == "NotFound"


async def test_eviction_refused_while_the_budget_forbids_it(client: Client, ns: str) -> None:
    for name in ("web-1", "web-2"):
        await running_ready_pod(client, name, ns, app="web")
    pdb = codec.decode_into({"metadata": {"name": "web", "namespace": ns},
                             "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}},
                            policy.PodDisruptionBudget)
    pdb = await client.create(pdb)
    eviction = policy.Eviction(api_version="policy/v1", kind="Eviction")
    eviction.metadata.name, eviction.metadata.namespace = "web-1", ns
    # Not yet processed by the disruption controller: refused.
    with pytest.raises(StatusError) as info:
        await client.create_subresource(core.Pod, "web-1", ns, "eviction", eviction)
    assert info.value.reason == "TooManyRequests" and "still being processed" in info.value.message

    async def set_budget(allowed: int) -> None:
        current = await client.get(policy.PodDisruptionBudget, "web", ns)
        current.status.observed_generation = current.metadata.generation
        current.status.current_healthy, current.status.desired_healthy = 2, 2 - allowed
        current.status.expected_pods, current.status.disruptions_allowed = 2, allowed
        await client.update_status(current)

    await set_budget(0)
    with pytest.raises(StatusError) as info:
        await client.create_subresource(core.Pod, "web-1", ns, "eviction", eviction)
    assert info.value.reason == "TooManyRequests"
    assert "needs 2 healthy pods and has 2 currently" in info.value.message
    assert not (await client.get(core.Pod, "web-1", ns)).metadata.HasField("deletion_timestamp")

    await set_budget(1)
    status = await client.create_subresource(core.Pod, "web-1", ns, "eviction", eviction)
    assert isinstance(status, metav1.Status) and status.status == "Success"
    evicted = await client.get(core.Pod, "web-1", ns)
    assert evicted.metadata.HasField("deletion_timestamp")  # graceful: the kubelet confirms
    budget = await client.get(policy.PodDisruptionBudget, "web", ns)
    assert budget.status.disruptions_allowed == 0 and "web-1" in budget.status.disrupted_pods
    # The budget is spent: the second pod stays.
    eviction.metadata.name = "web-2"
    with pytest.raises(StatusError) as info:
        await client.create_subresource(core.Pod, "web-2", ns, "eviction", eviction)
    assert info.value.reason == "TooManyRequests"
    # A pod no budget selects is simply deleted.
    await client.create(pod("loner", ns, app="other"))
    eviction.metadata.name = "loner"
    await client.create_subresource(core.Pod, "loner", ns, "eviction", eviction)
    with pytest.raises(StatusError) as info:
        await client.get(core.Pod, "loner", ns)
    assert info.value.reason == "NotFound"


async def test_budget_validation_names_the_field(client: Client, ns: str) -> None:
    bad = codec.decode_into({"metadata": {"name": "both", "namespace": ns},
                             "spec": {"minAvailable": 1, "maxUnavailable": "10%",
                                      "selector": {"matchLabels": {"app": "x"}}}}, policy.PodDisruptionBudget)
    with pytest.raises(StatusError) as info:
        await client.create(bad)
    assert info.value.reason == "Invalid" and "minAvailable and maxUnavailable cannot be both set" in info.value.message
    with pytest.raises(StatusError):
        await client.get(policy.PodDisruptionBudget, "both", ns)


async def test_namespace_finalize_completes_deletion(client: Client) -> None:
    ns = core.Namespace(api_version="v1", kind="Namespace")
    ns.metadata.name = "finalize-me"
    await client.create(ns)
    await client.delete(core.Namespace, "finalize-me")
    terminating = await client.get(core.Namespace, "finalize-me")
    assert terminating.status.phase == "Terminating" and list(terminating.spec.finalizers) == ["kubernetes"]
    del terminating.spec.finalizers[:]
    await client.update_subresource(core.Namespace, "finalize-me", "", "finalize", terminating)
    with pytest.raises(StatusError) as info:
        await client.get(core.Namespace, "finalize-me")
    assert info.value.reason == "NotFound"


async def test_get_from_the_watch_cache(client: Client, ns: str) -> None:
    created = await client.create(configmap("cached", ns))
    # "0" may lag a write that was just acknowledged; "N" waits for revision N.
    got = await client.get(core.ConfigMap, "cached", ns, resource_version=created.metadata.resource_version)
    assert got.metadata.uid == created.metadata.uid
    got0 = await client.get(core.ConfigMap, "cached", ns, resource_version="0")
    assert got0.metadata.name == "cached"
    with pytest.raises(StatusError) as info:
        await client.get(core.ConfigMap, "absent", ns, resource_version="0")
    assert info.value.reason == "NotFound"


async def test_graceful_deletion_bumps_generation_only_with_a_grace_period(client: Client, ns: str) -> None:
    await running_ready_pod(client, "graceful", ns)
    before = await client.get(core.Pod, "graceful", ns)
    result = await client.delete(core.Pod, "graceful", ns)
    assert not result.deleted and result.object.metadata.generation == before.metadata.generation + 1
    dep = codec.decode_into({
        "metadata": {"name": "held", "namespace": ns, "finalizers": ["example.com/hold"]},
        "spec": {"selector": {"matchLabels": {"app": "h"}},
                 "template": {"metadata": {"labels": {"app": "h"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}, apps.Deployment)
    created = await client.create(dep)
    held = await client.delete(apps.Deployment, "held", ns)
    assert not held.deleted and held.object.metadata.HasField("deletion_timestamp")
    assert held.object.metadata.generation == created.metadata.generation


async def test_bind_from_the_cache_still_refuses_a_second_binding(client: Client, ns: str) -> None:
    await client.create(pod("once", ns))
    await client.bind(ns, "once", "node-1")
    with pytest.raises(StatusError) as info:
        await client.bind(ns, "once", "node-2")
    assert info.value.reason == "Conflict" and 'already assigned to node "node-1"' in info.value.message


# --- servers of their own -----------------------------------------------------------------------


@pytest.fixture
async def short_lived_server(etcd_cluster: EtcdCluster, tmp_path: Path) -> AsyncIterator[APIServerProcess]:
    etcd_cluster.ensure_running()
    api = APIServerProcess(etcd_cluster.endpoints, tmp_path / "second.log",
                           extra_args=["--endpoint-lease-seconds=2", "--event-ttl=2s",
                                       f"--advertise-address={ADVERTISED}"])
    api.start()
    try:
        yield api
    finally:
        api.stop()


async def _endpoint_ports(client: Client) -> set[int]:
    ep = await client.get(core.Endpoints, "kubernetes", "default")
    ports = set()
    for subset in ep.subsets:
        assert [a.ip for a in subset.addresses] == [ADVERTISED]
        ports.update(p.port for p in subset.ports if p.name == "https")
    return ports


async def test_kubernetes_service_lists_every_live_api_server(client: Client, apiserver: APIServerProcess,
                                                              short_lived_server: APIServerProcess) -> None:
    svc = await client.get(core.Service, "kubernetes", "default")
    assert svc.spec.cluster_ip == "10.96.0.1"
    assert [(p.name, p.port) for p in svc.spec.ports] == [("https", 443)]

    async def both() -> bool:
        return await _endpoint_ports(client) == {apiserver.port, short_lived_server.port}

    await eventually(both, what="both API servers in the kubernetes Endpoints")
    # A server that dies without a word drops out when its Lease runs out.
    assert short_lived_server.proc is not None
    os.kill(short_lived_server.proc.pid, signal.SIGKILL)
    short_lived_server.proc.wait()
    short_lived_server.proc = None

    async def only_first() -> bool:
        return await _endpoint_ports(client) == {apiserver.port}

    await eventually(only_first, what="the killed API server gone from the Endpoints")


async def test_events_expire_after_the_event_ttl(short_lived_server: APIServerProcess, ns: str) -> None:
    async with Client(short_lived_server.address) as client:
        ev = codec.decode_into({"metadata": {"name": "short", "namespace": ns},
                                "involvedObject": {"kind": "Pod", "name": "p", "namespace": ns},
                                "reason": "Tested", "message": "expires", "type": "Normal"}, core.Event)
        await client.create(ev)
        other = configmap("stays", ns)
        await client.create(other)

        async def gone() -> bool:
            try:
                await client.get(core.Event, "short", ns)
            except StatusError as exc:
                return exc.reason == "NotFound"
            return False

        await eventually(gone, what="the Event expired from etcd")
        # Only Events expire.
        assert (await client.get(core.ConfigMap, "stays", ns)).metadata.name == "stays"
