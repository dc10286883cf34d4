"""ReplicaSet controller driven through process_next_item() over fakes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.controller import InstrumentedQueue
from kubelite.client.workqueue import ItemExponentialFailureRateLimiter, process_next_item
from kubelite.controllers.replicaset import ReplicaSetController, calculate_status
from kubelite.controllers.util import pods_to_delete, slow_start_batches
from kubelite.machinery import errors
from tests.unit.fakes_controllers import (
    FakeLister,
    FakePodControl,
    FakeWriter,
    pod,
    recorder,
    replicaset,
)

LABELS = {"app": "web"}


class Harness:
    def __init__(self, *rss: apps.ReplicaSet, pods: tuple[core.Pod, ...] = ()) -> None:
        self.rs = FakeLister(*rss)
        self.pods: FakeLister[core.Pod] = FakeLister(*pods)
        self.writer = FakeWriter()
        for rs in rss:
            self.writer.put(rs)
        self.control = FakePodControl(self.pods)
        queue: InstrumentedQueue[str] = InstrumentedQueue(
            "replicaset", ItemExponentialFailureRateLimiter(0.001, 0.01), registry=CollectorRegistry())
        self.ctl = ReplicaSetController(self.rs, self.pods, self.writer, self.control, recorder(), queue=queue)

    async def sync(self, key: str = "ns/web") -> None:
        self.ctl.queue.add(key)
        assert await process_next_item(self.ctl.queue, self.ctl.sync)

    def observe_created(self) -> None:
        """What the pod informer does once the created pods arrive."""
        for p in self.control.created:
            if self.pods.get(p.metadata.namespace, p.metadata.name) is None:
                self.pods.put(p)
                self.ctl.add_pod(p)

    def last_status(self) -> apps.ReplicaSetStatus:
        status: apps.ReplicaSetStatus = self.writer.status_writes[-1].status
        return status


def test_slow_start_batches() -> None:
    assert slow_start_batches(10) == [1, 2, 4, 3]
    assert slow_start_batches(1) == [1]
    assert slow_start_batches(0) == []


async def test_creates_missing_replicas_then_waits_for_the_cache() -> None:
    rs = replicaset("web", 3, LABELS)
    h = Harness(rs)
    await h.sync()
    assert len(h.control.created) == 3
    created = h.control.created[0]
    assert created.metadata.generate_name == "web-"
    assert dict(created.metadata.labels) == LABELS
    ref = created.metadata.owner_references[0]
    assert (ref.kind, ref.name, ref.uid, ref.controller, ref.block_owner_deletion) == \
        ("ReplicaSet", "web", rs.metadata.uid, True, True)
    # The cache has not seen the pods: a second sync must not create again.
    await h.sync()
    assert len(h.control.created) == 3
    h.observe_created()
    await h.sync()
    assert len(h.control.created) == 3
    assert h.last_status().replicas == 3
    assert h.last_status().observed_generation == 1


async def test_failed_creation_stops_the_slow_start_and_sets_replica_failure() -> None:
    rs = replicaset("web", 10, LABELS)
    h = Harness(rs)
    h.control.create_error = errors.forbidden("exceeded quota: pods")
    h.control.fail_after = 1  # the first create succeeds, the next batch of 2 fails
    h.ctl.queue.add("ns/web")
    assert await process_next_item(h.ctl.queue, h.ctl.sync)
    assert h.control.create_calls == 3
    assert h.ctl.queue.num_requeues("ns/web") == 1  # an error means retry with backoff
    (cond,) = h.last_status().conditions
    assert (cond.type, cond.status, cond.reason) == ("ReplicaFailure", "True", "FailedCreate")
    assert "exceeded quota" in cond.message
    # Expectations were lowered for the failures and the skipped creations: the next sync may act.
    assert h.ctl.expectations.get("ns/web").add == 1  # type: ignore[union-attr]
    h.observe_created()
    assert h.ctl.expectations.satisfied("ns/web")
    h.control.create_error = None
    h.writer.put(h.writer.status_writes[-1])
    h.rs.put(h.writer.status_writes[-1])
    await h.sync()
    assert h.control.create_calls == 3 + 9
    assert not [c for c in h.last_status().conditions if c.type == "ReplicaFailure"]


async def test_scale_down_deletes_the_least_valuable_pods_first() -> None:
    rs = replicaset("web", 2, LABELS)
    pods = (
        pod("running-old", LABELS, rs, node="n1", created=100, ready_since=100),
        pod("unscheduled", LABELS, rs, node="", phase="Pending", ready=False),
        pod("running-new", LABELS, rs, node="n2", created=500, ready_since=500),
        pod("not-ready", LABELS, rs, node="n3", ready=False),
        pod("pending", LABELS, rs, node="n3", phase="Pending", ready=False),
    )
    h = Harness(rs, pods=pods)
    await h.sync()
    assert h.control.deleted == ["unscheduled", "pending", "not-ready"]
    await h.sync()  # deletions not observed yet: no second round
    assert len(h.control.deleted) == 3
    for name in ["unscheduled", "pending", "not-ready"]:
        gone = h.pods.get("ns", name)
        assert gone is not None
        h.pods.remove(gone)
        h.ctl.delete_pod(gone)
    assert h.ctl.expectations.satisfied("ns/web")


def test_deletion_order_prefers_doubled_up_then_restarts_then_newer() -> None:
    a = pod("alone", LABELS, node="n1", restarts=0, created=100)
    b1 = pod("doubled-1", LABELS, node="n2", restarts=0, created=100)
    b2 = pod("doubled-2", LABELS, node="n2", restarts=0, created=100)
    c = pod("restarts", LABELS, node="n3", restarts=5, created=100)
    d = pod("newer", LABELS, node="n4", created=900)
    related = [a, b1, b2, c, d]
    order = [p.metadata.name for p in pods_to_delete(related, related, 5)]
    assert order[:2] == ["doubled-1", "doubled-2"]
    assert pods_to_delete([a, c, d], [a, c, d], 2)[0].metadata.name == "restarts"
    cost = pod("cheap", LABELS, node="n5")
    cost.metadata.annotations["controller.kubernetes.io/pod-deletion-cost"] = "-10"
    assert pods_to_delete([a, cost], [a, cost], 1)[0].metadata.name == "cheap"


async def test_adopts_orphans_releases_mismatches_and_leaves_others_alone() -> None:
    rs = replicaset("web", 2, LABELS)
    other = replicaset("other", 1, {"app": "other"})
    orphan = pod("orphan", LABELS)
    owned = pod("owned", LABELS, rs)
    relabelled = pod("relabelled", {"app": "moved"}, rs)
    foreign = pod("foreign", LABELS, other)
    h = Harness(rs, other, pods=(orphan, owned, relabelled, foreign))
    await h.sync()
    patched = dict(h.control.patches)
    assert set(patched) == {"orphan", "relabelled"}
    refs = patched["orphan"]["metadata"]["ownerReferences"]
    assert refs == [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": rs.metadata.uid,
                     "controller": True, "blockOwnerDeletion": True}]
    assert patched["orphan"]["metadata"]["resourceVersion"] == "5"
    assert patched["relabelled"]["metadata"]["ownerReferences"] == []
    # orphan + owned = 2 replicas: nothing to create or delete
    assert h.control.created == [] and h.control.deleted == []
    assert h.last_status().replicas == 2


async def test_no_adoption_when_the_fresh_owner_is_another_object() -> None:
    rs = replicaset("web", 1, LABELS)
    h = Harness(rs, pods=(pod("orphan", LABELS),))
    replacement = replicaset("web", 1, LABELS)  # same name, new uid: the cached one is gone
    h.writer.put(replacement)
    await h.sync()
    assert h.control.patches == []


def test_status_counts_ready_available_and_fully_labeled() -> None:
    rs = replicaset("web", 3, LABELS, generation=4)
    rs.spec.template.metadata.labels["tier"] = "front"
    rs.spec.min_ready_seconds = 10
    pods = [
        pod("a", {"app": "web", "tier": "front"}, rs, ready=True, ready_since=100),
        pod("b", LABELS, rs, ready=True, ready_since=195),
        pod("c", LABELS, rs, ready=False),
    ]
    status = calculate_status(rs, pods, None, now=200)
    assert (status.replicas, status.fully_labeled_replicas, status.ready_replicas, status.available_replicas,
            status.observed_generation) == (3, 1, 2, 1, 4)


async def test_deleted_replicaset_forgets_expectations() -> None:
    rs = replicaset("web", 2, LABELS)
    h = Harness(rs)
    await h.sync()
    assert h.ctl.expectations.get("ns/web") is not None
    h.rs.remove(rs)
    h.ctl.delete_rs(rs)
    await h.sync()
    assert h.ctl.expectations.get("ns/web") is None


async def test_pod_events_enqueue_the_owner_and_count_expectations() -> None:
    rs = replicaset("web", 1, LABELS)
    h = Harness(rs)
    h.ctl.expectations.expect_creations("ns/web", 1)
    p = pod("web-1", LABELS, rs)
    h.ctl.add_pod(p)
    assert h.ctl.expectations.satisfied("ns/web")
    assert len(h.ctl.queue) == 1
    # An orphan enqueues every ReplicaSet whose selector matches it.
    h2 = Harness(rs, replicaset("nomatch", 1, {"app": "x"}))
    h2.ctl.add_pod(pod("orphan", LABELS))
    assert len(h2.ctl.queue) == 1
