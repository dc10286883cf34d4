"""Node lifecycle and taint-based eviction over fakes with a fake clock."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from kubelite.api.coordination.v1 import generated_pb2 as coordination
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.controller import InstrumentedQueue
from kubelite.client.workqueue import ItemExponentialFailureRateLimiter, process_next_item
from kubelite.controllers.nodelifecycle import (
    NOT_READY,
    UNREACHABLE,
    NodeLifecycleController,
    TaintManager,
    eviction_delay,
    tolerates,
)
from tests.unit.fakes_controllers import FakeLister, FakeWriter, pod, recorded, recorder, uid


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def node(name: str = "n1", ready: str = "True") -> core.Node:
    n = core.Node(api_version="v1", kind="Node")
    n.metadata.name = name
    n.metadata.uid = uid()
    n.metadata.resource_version = "2"
    cond = n.status.conditions.add(type="Ready", status=ready)
    cond.last_heartbeat_time.seconds = 100
    return n


def lease(name: str, renew: int) -> coordination.Lease:
    lease = coordination.Lease()
    lease.metadata.name = name
    lease.metadata.namespace = "kube-node-lease"
    lease.spec.renew_time.seconds = renew
    return lease


def queue(name: str) -> InstrumentedQueue[str]:
    return InstrumentedQueue(name, ItemExponentialFailureRateLimiter(0.001, 0.01), registry=CollectorRegistry())


class Harness:
    def __init__(self, n: core.Node, *pods: core.Pod) -> None:
        self.clock = Clock()
        self.nodes = FakeLister(n)
        self.leases = FakeLister(lease(n.metadata.name, 1))
        self.pods = FakeLister(*pods)
        self.writer = FakeWriter()
        self.recorder = recorder()
        self.ctl = NodeLifecycleController(self.nodes, self.leases, self.on_node, self.writer, self.recorder,
                                           grace_period=40, clock=self.clock, queue=queue("nodelifecycle"))

    def on_node(self, name: str) -> list[core.Pod]:
        return [p for p in self.pods.list() if p.spec.node_name == name]

    async def sync(self, name: str = "n1") -> core.Node:
        self.ctl.queue.add(name)
        assert await process_next_item(self.ctl.queue, self.ctl.sync)
        current = self.writer.objects.get((core.Node, "", name))
        if current is not None:
            self.nodes.put(current)
        got = self.nodes.get("", name)
        assert got is not None
        return got


def taints(n: core.Node) -> set[tuple[str, str]]:
    return {(t.key, t.effect) for t in n.spec.taints}


async def test_silent_node_becomes_unknown_tainted_and_its_pods_not_ready() -> None:
    running = pod("p", {"app": "a"}, node="n1")
    h = Harness(node(), running)
    n = await h.sync()
    assert taints(n) == set()
    h.clock.t += 30
    await h.sync()
    assert h.writer.status_writes == []  # within the grace period
    h.leases.put(lease("n1", 2))  # a renewal observed: the grace period starts again
    await h.sync()
    h.clock.t += 39
    await h.sync()
    assert h.writer.status_writes == []
    h.clock.t += 2
    n = await h.sync()
    ready = next(c for c in n.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason, ready.message) == ("Unknown", "NodeStatusUnknown",
                                                           "Kubelet stopped posting node status.")
    assert {c.type for c in n.status.conditions} >= {"MemoryPressure", "DiskPressure", "PIDPressure"}
    assert taints(n) == {(UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule")}
    assert all(t.time_added.seconds > 0 for t in n.spec.taints)
    pod_write = next(o for o in h.writer.status_writes if isinstance(o, core.Pod))
    assert next(c.status for c in pod_write.status.conditions if c.type == "Ready") == "False"
    assert ("NodeNotReady", "Node n1 status is now: NodeNotReady") in recorded(h.recorder)


async def test_recovered_node_loses_the_taints_and_not_ready_gets_its_own() -> None:
    h = Harness(node())
    await h.sync()
    h.clock.t += 41
    n = await h.sync()
    assert (UNREACHABLE, "NoExecute") in taints(n)
    back = core.Node()
    back.CopyFrom(n)
    ready = next(c for c in back.status.conditions if c.type == "Ready")
    ready.status = "True"
    ready.last_heartbeat_time.seconds = 500  # the kubelet is back
    h.nodes.put(back)
    h.writer.put(back)
    n = await h.sync()
    assert taints(n) == set()
    ready = next(c for c in n.status.conditions if c.type == "Ready")
    ready.status = "False"
    ready.last_heartbeat_time.seconds = 600
    h.nodes.put(n)
    h.writer.put(n)
    n = await h.sync()
    assert taints(n) == {(NOT_READY, "NoExecute"), (NOT_READY, "NoSchedule")}


async def test_other_taints_are_kept() -> None:
    n = node(ready="False")
    n.spec.taints.add(key="dedicated", value="gpu", effect="NoSchedule")
    h = Harness(n)
    n = await h.sync()
    assert ("dedicated", "NoSchedule") in taints(n) and (NOT_READY, "NoExecute") in taints(n)


def test_toleration_matching() -> None:
    taint = core.Taint(key=UNREACHABLE, effect="NoExecute")
    assert tolerates(core.Toleration(key=UNREACHABLE, operator="Exists", effect="NoExecute"), taint)
    assert tolerates(core.Toleration(operator="Exists"), taint)
    assert not tolerates(core.Toleration(key=UNREACHABLE, operator="Exists", effect="NoSchedule"), taint)
    assert not tolerates(core.Toleration(key="other", operator="Exists"), taint)
    assert tolerates(core.Toleration(key="k", value="v"), core.Taint(key="k", value="v", effect="NoExecute"))
    assert not tolerates(core.Toleration(key="k", value="w"), core.Taint(key="k", value="v", effect="NoExecute"))


def test_eviction_delay() -> None:
    taint = core.Taint(key=UNREACHABLE, effect="NoExecute")
    taint.time_added.seconds = 1000
    p = pod("p", {}, node="n1")
    assert eviction_delay(p, [taint], 1010) == 0.0  # no toleration: now
    p.spec.tolerations.add(key=UNREACHABLE, operator="Exists", effect="NoExecute", toleration_seconds=300)
    assert eviction_delay(p, [taint], 1010) == 290
    assert eviction_delay(p, [taint], 1400) == 0.0
    p.spec.tolerations.add(key=UNREACHABLE, operator="Exists", effect="NoExecute")
    assert eviction_delay(p, [taint], 1400) is None  # one unbounded toleration: for ever


async def test_taint_manager_evicts_after_the_toleration() -> None:
    n = node()
    t = n.spec.taints.add(key=UNREACHABLE, effect="NoExecute")
    t.time_added.seconds = 1000
    tolerant = pod("tolerant", {}, node="n1")
    tolerant.spec.tolerations.add(key=UNREACHABLE, operator="Exists", effect="NoExecute", toleration_seconds=300)
    intolerant = pod("intolerant", {}, node="n1")
    forever = pod("forever", {}, node="n1")
    forever.spec.tolerations.add(operator="Exists")
    pods = FakeLister(tolerant, intolerant, forever)
    writer = FakeWriter()
    clock = Clock()
    rec = recorder()
    manager = TaintManager(FakeLister(n), pods, lambda name: pods.list(), writer, rec, now=clock,
                           queue=queue("taint_eviction"))
    manager.node_changed(n)
    for _ in range(3):
        assert await process_next_item(manager.queue, manager.sync)
    assert [name for _, _, name, _ in writer.deleted] == ["intolerant"]
    assert manager.queue.waiting() == 1  # tolerant comes back when its 300 s end
    clock.t = 1301
    manager.queue.add("ns/tolerant")
    assert await process_next_item(manager.queue, manager.sync)
    assert [name for _, _, name, _ in writer.deleted] == ["intolerant", "tolerant"]
    assert ("TaintManagerEviction", "Marking for deletion Pod ns/intolerant") in recorded(rec)
