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
from kubelite.api.coordination.v1 import generated_pb2 as coordination
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.machinery.errors import StatusError
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
    # Shown by pytest only when the test failed: what the controllers did, for a failure seen once in CI.
    lines = (tmp_path / "controller-manager.log").read_text(errors="replace").splitlines()
    print("--- controller-manager log (last 60 lines) ---", *lines[-60:], sep="\n")


@pytest.fixture
async def kubelets(client: Client, ns: str) -> AsyncIterator[PodStatusWriter]:
    async with PodStatusWriter(client, ns, [f"{ns}-n1", f"{ns}-n2", f"{ns}-n3"]) as writer:
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


def deployment(ns: str, name: str, replicas: int, image: str = "nginx:1") -> apps.Deployment:
    d = apps.Deployment(api_version="apps/v1", kind="Deployment")
    d.metadata.name = name
    d.metadata.namespace = ns
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = name
    d.spec.template.metadata.labels["app"] = name
    d.spec.template.spec.containers.add(name="web", image=image)
    d.spec.strategy.type = "RollingUpdate"
    d.spec.strategy.rolling_update.max_surge = "25%"
    d.spec.strategy.rolling_update.max_unavailable = "25%"
    return d


def _ready(pod: core.Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


async def _rolled_out(client: Client, ns: str, name: str, replicas: int) -> bool:
    d = await client.get(apps.Deployment, name, ns)
    s = d.status
    return bool(s.observed_generation == d.metadata.generation and s.updated_replicas == replicas
                and s.replicas == replicas and s.available_replicas == replicas)


async def test_rolling_update_stays_within_max_surge_and_max_unavailable(
        controller_manager: ControllerManagerProcess, client: Client, ns: str) -> None:
    # 6 replicas at 25%: maxSurge rounds up to 2, maxUnavailable down to 1.
    async with PodStatusWriter(client, ns, [f"{ns}-n1", f"{ns}-n2"], ready_delay=0.3):
        await client.create(deployment(ns, "roll", 6))
        await eventually(lambda: _rolled_out(client, ns, "roll", 6))
        await eventually(lambda: _count(client, ns, "app=roll", 6))
        listed = await client.list(core.Pod, ns, label_selector="app=roll")
        pods: dict[str, core.Pod] = {p.metadata.uid: p for p in listed.items}
        violations: list[str] = []
        extremes = {"max_active": 0, "min_available": 6, "events": 0}
        done = asyncio.Event()

        def check(event_type: str, pod: core.Pod) -> None:
            if event_type == "DELETED":
                pods.pop(pod.metadata.uid, None)
            else:
                pods[pod.metadata.uid] = pod
            active = [p for p in pods.values() if not p.metadata.HasField("deletion_timestamp")
                      and p.status.phase not in ("Succeeded", "Failed")]
            available = [p for p in active if _ready(p)]
            extremes["events"] += 1
            extremes["max_active"] = max(extremes["max_active"], len(active))
            extremes["min_available"] = min(extremes["min_available"], len(available))
            if len(active) > 6 + 2:
                violations.append(f"{len(active)} pods at resourceVersion {pod.metadata.resource_version}")
            if len(available) < 6 - 1:
                violations.append(f"{len(available)} available at resourceVersion {pod.metadata.resource_version}")

        async def follow() -> None:
            async for event in client.watch(core.Pod, ns, label_selector="app=roll",
                                            resource_version=listed.resource_version):
                check(event.type, event.object)
                images = {p.spec.containers[0].image for p in pods.values()}
                if images == {"nginx:2"} and len(pods) == 6 and all(_ready(p) for p in pods.values()):
                    done.set()
                    return

        watcher = asyncio.get_running_loop().create_task(follow(), name="follow-rollout")
        try:
            d = await client.get(apps.Deployment, "roll", ns)
            d.spec.template.spec.containers[0].image = "nginx:2"
            await client.update(d)
            await asyncio.wait_for(done.wait(), 90)
        finally:
            watcher.cancel()
            await asyncio.wait([watcher])
        assert violations == []
        # The rollout used its room: it did surge and did take a pod down.
        assert extremes["max_active"] > 6 and extremes["min_available"] < 6
        await eventually(lambda: _rolled_out(client, ns, "roll", 6))
        d = await client.get(apps.Deployment, "roll", ns)
        assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
        conditions = {c.type: (c.status, c.reason) for c in d.status.conditions}
        assert conditions["Available"] == ("True", "MinimumReplicasAvailable")
        assert conditions["Progressing"] == ("True", "NewReplicaSetAvailable")
        replicasets = (await client.list(apps.ReplicaSet, ns)).items
        sizes = sorted((rs.metadata.annotations["deployment.kubernetes.io/revision"], rs.spec.replicas)
                       for rs in replicasets)
        assert sizes == [("1", 0), ("2", 6)]


async def test_endpoints_follow_ready_pods(controller_manager: ControllerManagerProcess, client: Client, ns: str,
                                           kubelets: PodStatusWriter) -> None:
    svc = core.Service(api_version="v1", kind="Service")
    svc.metadata.name = "web"
    svc.metadata.namespace = ns
    svc.spec.selector["app"] = "ep"
    svc.spec.ports.add(name="http", port=80, target_port="http", protocol="TCP")
    await client.create(svc)
    for i, port in enumerate([8080, 9090]):
        p = core.Pod(api_version="v1", kind="Pod")
        p.metadata.name = f"ep-{i}"
        p.metadata.namespace = ns
        p.metadata.labels["app"] = "ep"
        c = p.spec.containers.add(name="web", image="nginx:local")
        c.ports.add(name="http", container_port=port, protocol="TCP")
        await client.create(p)

    async def endpoints() -> list[tuple[str, str, int, str]]:
        try:
            ep = await client.get(core.Endpoints, "web", ns)
        except StatusError as exc:
            assert exc.reason == "NotFound"
            return []
        out = []
        for s in ep.subsets:
            for a in s.addresses:
                out.append(("ready", a.target_ref.name, s.ports[0].port, a.node_name))
            for a in s.not_ready_addresses:
                out.append(("not-ready", a.target_ref.name, s.ports[0].port, a.node_name))
        return sorted(out)

    async def ready_both() -> bool:
        got = await endpoints()
        return [(state, name, port) for state, name, port, _ in got] == \
            [("ready", "ep-0", 8080), ("ready", "ep-1", 9090)] and all(node for *_, node in got)

    await eventually(ready_both)
    pod = await client.get(core.Pod, "ep-1", ns)
    for cond in pod.status.conditions:
        if cond.type == "Ready":
            cond.status = "False"
    await client.update_status(pod)

    async def one_not_ready() -> bool:
        return [(s, n) for s, n, _, _ in await endpoints()] == [("not-ready", "ep-1"), ("ready", "ep-0")]

    await eventually(one_not_ready)
    await client.delete(core.Pod, "ep-0", ns)

    async def only_not_ready() -> bool:
        return [(s, n) for s, n, _, _ in await endpoints()] == [("not-ready", "ep-1")]

    await eventually(only_not_ready)
    await client.delete(core.Service, "web", ns)

    async def gone() -> bool:
        try:
            await client.get(core.Endpoints, "web", ns)
        except StatusError as exc:
            return exc.reason == "NotFound"
        return False

    await eventually(gone)


async def test_pod_cidrs_are_unique_across_250_nodes_and_a_restart(
        controller_manager: ControllerManagerProcess, client: Client, ns: str) -> None:
    prefix = f"ipam-{ns[-6:]}"
    # 200 nodes, a restart, 50 more: 250 of the 256 /24 blocks of the default 10.244.0.0/16.
    names = [f"{prefix}-{i}" for i in range(250)]

    async def create(name: str) -> None:
        node = core.Node(api_version="v1", kind="Node")
        node.metadata.name = name
        await client.create(node)

    async def cidrs_of(wanted: list[str]) -> dict[str, str] | None:
        nodes = (await client.list(core.Node)).items
        mine = {n.metadata.name: n.spec.pod_cidr for n in nodes if n.metadata.name in set(wanted)}
        return mine if len(mine) == len(wanted) and all(mine.values()) else None

    try:
        for start in range(0, 200, 50):
            await asyncio.gather(*(create(n) for n in names[start:start + 50]))
        await eventually(lambda: cidrs_of(names[:200]), timeout=120)
        before = await cidrs_of(names[:200])
        assert before is not None
        assert len(set(before.values())) == 200
        assert all(c.endswith("/24") and c.startswith("10.244.") for c in before.values())

        controller_manager.restart()  # the new process knows only what it reads back from the nodes
        await asyncio.gather(*(create(n) for n in names[200:]))
        await eventually(lambda: cidrs_of(names), timeout=120)
        after = await cidrs_of(names)
        assert after is not None
        assert {n: after[n] for n in names[:200]} == before  # nobody's block changed
        assert len(set(after.values())) == 250
        every = [n.spec.pod_cidr for n in (await client.list(core.Node)).items if n.spec.pod_cidr]
        assert len(every) == len(set(every))
        node = await client.get(core.Node, names[0])
        assert list(node.spec.pod_cidrs) == [node.spec.pod_cidr]
    finally:
        for start in range(0, len(names), 50):
            await asyncio.gather(*(client.delete(core.Node, n) for n in names[start:start + 50]),
                                 return_exceptions=True)


@pytest.fixture
def fast_node_monitor(apiserver: APIServerProcess, tmp_path: Path) -> Iterator[ControllerManagerProcess]:
    with ControllerManagerProcess(apiserver.server, tmp_path / "controller-manager.log",
                                  extra_args=[*FAST_ELECTION, "--node-monitor-grace-period=2s",
                                              "--node-monitor-period=0.5s"]) as cm:
        yield cm


async def test_pods_leave_a_node_whose_lease_stops(fast_node_monitor: ControllerManagerProcess, client: Client,
                                                   ns: str) -> None:
    dead, alive = f"{ns[-6:]}-dead", f"{ns[-6:]}-alive"
    for name in (dead, alive):
        node = core.Node(api_version="v1", kind="Node")
        node.metadata.name = name
        cond = node.status.conditions.add(type="Ready", status="True", reason="KubeletReady")
        cond.last_heartbeat_time.GetCurrentTime()
        await client.create(node)
        lease = coordination.Lease(api_version="coordination.k8s.io/v1", kind="Lease")
        lease.metadata.name = name
        lease.metadata.namespace = "kube-node-lease"
        lease.spec.holder_identity = name
        lease.spec.lease_duration_seconds = 40
        lease.spec.renew_time.GetCurrentTime()
        await client.create(lease)

    async def renew_alive() -> None:
        while True:
            lease = await client.get(coordination.Lease, alive, "kube-node-lease")
            lease.spec.renew_time.GetCurrentTime()
            await client.update(lease)
            await asyncio.sleep(0.3)

    rs = replicaset(ns, "evict", 2)
    rs.spec.template.spec.tolerations.add(key="node.kubernetes.io/unreachable", operator="Exists",
                                          effect="NoExecute", toleration_seconds=2)
    renewer = asyncio.get_running_loop().create_task(renew_alive(), name="renew-alive-lease")
    try:
        async with PodStatusWriter(client, ns, [dead]) as writer:
            await client.create(rs)

            async def on(node_name: str) -> bool:
                pods = await pods_of(client, ns, "app=evict")
                return len(pods) == 2 and all(p.spec.node_name == node_name and _ready(p) and
                                              not p.metadata.HasField("deletion_timestamp") for p in pods)

            await eventually(lambda: on(dead))
            writer.nodes[:] = [alive]  # the scheduler would now avoid the tainted node
            await eventually(lambda: on(alive), timeout=60)

        node = await client.get(core.Node, dead)
        assert {(t.key, t.effect) for t in node.spec.taints} >= {("node.kubernetes.io/unreachable", "NoExecute")}
        ready = next(c for c in node.status.conditions if c.type == "Ready")
        assert (ready.status, ready.reason) == ("Unknown", "NodeStatusUnknown")
        assert not (await client.get(core.Node, alive)).spec.taints
        events = (await client.list(core.Event, ns)).items
        assert "TaintManagerEviction" in {e.reason for e in events}
    finally:
        renewer.cancel()
        await asyncio.wait([renewer])
        for name in (dead, alive):
            await client.delete(core.Node, name)
            await client.delete(coordination.Lease, name, "kube-node-lease")


async def _exists(client: Client, kind: type[Any], name: str, ns: str) -> bool:
    try:
        await client.get(kind, name, ns)
    except StatusError as exc:
        assert exc.reason == "NotFound"
        return False
    return True


@pytest.mark.parametrize("policy", ["Background", "Foreground", "Orphan"])
async def test_deleting_a_deployment_with_each_propagation_policy(
        policy: str, controller_manager: ControllerManagerProcess, client: Client, ns: str,
        kubelets: PodStatusWriter) -> None:
    await client.create(deployment(ns, "gc", 2))
    await eventually(lambda: _rolled_out(client, ns, "gc", 2))
    (rs,) = (await client.list(apps.ReplicaSet, ns)).items
    seen_foreground_wait = False
    await client.delete(apps.Deployment, "gc", ns, propagation_policy=policy)

    async def settled() -> bool:
        nonlocal seen_foreground_wait
        deployment_left = await _exists(client, apps.Deployment, "gc", ns)
        rs_left = await _exists(client, apps.ReplicaSet, rs.metadata.name, ns)
        pods = await pods_of(client, ns, "app=gc")
        if policy == "Foreground" and deployment_left and (rs_left or pods):
            d = await client.get(apps.Deployment, "gc", ns)
            seen_foreground_wait = seen_foreground_wait or "foregroundDeletion" in d.metadata.finalizers
        if policy == "Orphan":
            return not deployment_left and rs_left and len(pods) == 2
        return not deployment_left and not rs_left and not pods

    await eventually(settled, timeout=60)
    if policy == "Orphan":
        orphan = await client.get(apps.ReplicaSet, rs.metadata.name, ns)
        assert not orphan.metadata.owner_references
        for pod in await pods_of(client, ns, "app=gc"):
            assert [r.uid for r in pod.metadata.owner_references] == [rs.metadata.uid]
    if policy == "Foreground":
        assert seen_foreground_wait  # the Deployment waited, with its finalizer, for its dependents


async def test_every_namespace_gets_a_default_service_account(controller_manager: ControllerManagerProcess,
                                                              client: Client, ns: str) -> None:
    await eventually(lambda: _exists(client, core.ServiceAccount, "default", ns))
    await client.delete(core.ServiceAccount, "default", ns)
    await eventually(lambda: _exists(client, core.ServiceAccount, "default", ns))


async def test_a_standby_takes_over_when_the_leader_dies(apiserver: APIServerProcess, client: Client, ns: str,
                                                         tmp_path: Path) -> None:
    lease_name = f"cm-{ns[-6:]}"  # a lease of this test's own, so other tests' managers do not interfere
    args = [*FAST_ELECTION, f"--leader-elect-resource-name={lease_name}", "--controllers=replicaset"]
    first = ControllerManagerProcess(apiserver.server, tmp_path / "first.log", extra_args=args)
    second = ControllerManagerProcess(apiserver.server, tmp_path / "second.log", extra_args=args)
    first.start()
    try:
        async def holder() -> str:
            try:
                lease = await client.get(coordination.Lease, lease_name, "kube-system")
            except StatusError:
                return ""
            return str(lease.spec.holder_identity)

        await eventually(holder)
        leader = await holder()
        second.start()
        await asyncio.sleep(4)  # more than a lease duration: the standby must still wait
        assert await holder() == leader
        lease = await client.get(coordination.Lease, lease_name, "kube-system")
        transitions = lease.spec.lease_transitions
        first.kill()  # no release: the standby must wait out the lease

        async def taken_over() -> bool:
            current = await holder()
            return bool(current) and current != leader

        await eventually(taken_over, timeout=30)
        lease = await client.get(coordination.Lease, lease_name, "kube-system")
        assert lease.spec.lease_transitions == transitions + 1
        async with PodStatusWriter(client, ns, [f"{ns}-n1"]):
            await client.create(replicaset(ns, "after", 2))
            await eventually(lambda: _count(client, ns, "app=after", 2))
    finally:
        first.stop()
        second.stop()


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda d: d.spec.template.metadata.labels.__setitem__("app", "other"), "spec.template.metadata.labels"),
    (lambda d: (d.spec.strategy.rolling_update.__setattr__("max_surge", "0"),
                d.spec.strategy.rolling_update.__setattr__("max_unavailable", "0")),
     "spec.strategy.rollingUpdate.maxUnavailable"),
    (lambda d: d.spec.__setattr__("replicas", -1), "spec.replicas"),
])
async def test_bad_deployments_are_refused_naming_the_field_and_change_nothing(
        controller_manager: ControllerManagerProcess, client: Client, ns: str, mutate: Callable[[Any], Any],
        field: str) -> None:
    bad = deployment(ns, "bad", 2)
    mutate(bad)
    with pytest.raises(StatusError) as err:
        await client.create(bad)
    assert err.value.reason == "Invalid" and field in [c.field for c in err.value.causes], err.value
    assert (await client.list(apps.Deployment, ns)).items == []
    good = await client.create(deployment(ns, "good", 0))
    changed = apps.Deployment()
    changed.CopyFrom(good)
    mutate(changed)
    with pytest.raises(StatusError) as err:
        await client.update(changed)
    assert field in [c.field for c in err.value.causes]
    current = await client.get(apps.Deployment, "good", ns)
    assert current.metadata.generation == good.metadata.generation
    assert current.spec.SerializeToString(deterministic=True) == good.spec.SerializeToString(deterministic=True)


async def test_rollback_and_a_stalled_rollout(controller_manager: ControllerManagerProcess, client: Client,
                                              ns: str, kubelets: PodStatusWriter) -> None:
    d = deployment(ns, "undo", 2)
    d.spec.progress_deadline_seconds = 3
    await client.create(d)
    await eventually(lambda: _rolled_out(client, ns, "undo", 2))
    original = (await client.get(apps.Deployment, "undo", ns)).spec.template

    # A template whose pods never become ready (a bad image, say): the rollout stalls.
    d = await client.get(apps.Deployment, "undo", ns)
    d.spec.template.spec.containers[0].image = "nginx:broken"
    d.spec.template.metadata.labels["test.kubelite.io/not-ready"] = "true"
    await client.update(d)

    async def stalled() -> bool:
        current = await client.get(apps.Deployment, "undo", ns)
        cond = next((c for c in current.status.conditions if c.type == "Progressing"), None)
        return cond is not None and (cond.status, cond.reason) == ("False", "ProgressDeadlineExceeded")

    await eventually(stalled)
    current = await client.get(apps.Deployment, "undo", ns)
    assert current.status.available_replicas == 2  # maxUnavailable 25% of 2 rounds down to 0: old pods stay

    # Rolling back is writing the old template back (what `rollout undo` does): revision 3, old ReplicaSet.
    current.spec.template.CopyFrom(original)
    await client.update(current)
    await eventually(lambda: _rolled_out(client, ns, "undo", 2))
    rss = {rs.spec.template.spec.containers[0].image: rs for rs in (await client.list(apps.ReplicaSet, ns)).items}
    assert rss["nginx:1"].metadata.annotations["deployment.kubernetes.io/revision"] == "3"
    assert rss["nginx:1"].metadata.annotations["deployment.kubernetes.io/revision-history"] == "1"
    assert rss["nginx:1"].spec.replicas == 2 and rss["nginx:broken"].spec.replicas == 0
    done = await client.get(apps.Deployment, "undo", ns)
    assert done.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
    cond = next(c for c in done.status.conditions if c.type == "Progressing")
    assert (cond.status, cond.reason) == ("True", "NewReplicaSetAvailable")
