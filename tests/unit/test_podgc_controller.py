"""Pod GC: terminated pods above the threshold, pods of deleted nodes, unscheduled terminating pods."""

from __future__ import annotations

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.controllers.podgc import PodGCController
from tests.unit.fakes_controllers import FakeLister, FakeWriter, pod


def node(name: str) -> core.Node:
    n = core.Node()
    n.metadata.name = name
    return n


async def test_oldest_terminated_pods_above_the_threshold_go() -> None:
    pods = [pod(f"done-{i}", {}, node="n1", phase="Succeeded", created=100 + i) for i in range(5)]
    pods.append(pod("running", {}, node="n1"))
    writer = FakeWriter()
    gc = PodGCController(FakeLister(*pods), FakeLister(node("n1")), writer, threshold=3)
    assert await gc.gc_once() == ["ns/done-0", "ns/done-1"]
    assert writer.grace_periods == [0, 0]


async def test_pods_of_a_deleted_node_go_once_its_absence_is_confirmed() -> None:
    writer = FakeWriter()
    writer.put(node("lagging"))  # on the server, not yet in the cache
    pods = [pod("on-gone", {}, node="gone"), pod("on-lagging", {}, node="lagging"), pod("on-n1", {}, node="n1")]
    now = [1000.0]
    gc = PodGCController(FakeLister(*pods), FakeLister(node("n1")), writer, threshold=0, clock=lambda: now[0])
    assert await gc.gc_once() == []  # quarantine: the node may be registering right now
    now[0] += 41
    assert await gc.gc_once() == ["ns/on-gone"]


async def test_unscheduled_terminating_pods_go() -> None:
    stuck = pod("stuck", {}, node="", phase="Pending")
    stuck.metadata.deletion_timestamp.seconds = 5
    gc = PodGCController(FakeLister(stuck, pod("pending", {}, node="", phase="Pending")), FakeLister(), FakeWriter())
    assert await gc.gc_once() == ["ns/stuck"]
