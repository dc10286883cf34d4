"""Deployment controller driven through process_next_item() over fakes.

``settle()`` plays the other actors: the informers catching up with the
writes, and the ReplicaSet controller plus kubelets giving every ReplicaSet
exactly its replicas as ready pods.
"""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.controller import InstrumentedQueue
from kubelite.client.workqueue import ItemExponentialFailureRateLimiter, process_next_item
from kubelite.controllers import deploymentutil as du
from kubelite.controllers.deployment import DeploymentController
from tests.unit.fakes_controllers import FakeLister, FakeWriter, pod, recorded, recorder, template, uid

LABELS = {"app": "web"}


def deployment(replicas: int = 3, *, surge: str = "25%", unavailable: str = "25%", strategy: str = "RollingUpdate",
               image: str = "nginx:1") -> apps.Deployment:
    d = apps.Deployment(api_version="apps/v1", kind="Deployment")
    d.metadata.name = "web"
    d.metadata.namespace = "ns"
    d.metadata.uid = uid()
    d.metadata.generation = 1
    d.metadata.resource_version = "1"
    d.metadata.creation_timestamp.seconds = 1
    d.spec.replicas = replicas
    d.spec.selector.match_labels.update(LABELS)
    d.spec.template.CopyFrom(template(LABELS, image))
    d.spec.strategy.type = strategy
    if strategy == "RollingUpdate":
        d.spec.strategy.rolling_update.max_surge = surge
        d.spec.strategy.rolling_update.max_unavailable = unavailable
    d.spec.revision_history_limit = 10
    d.spec.progress_deadline_seconds = 600
    return d


class Harness:
    def __init__(self, d: apps.Deployment) -> None:
        self.writer = FakeWriter()
        self.writer.put(d)
        self.d = FakeLister(d)
        self.rs: FakeLister[apps.ReplicaSet] = FakeLister()
        self.pods: FakeLister[core.Pod] = FakeLister()
        self.recorder = recorder()
        queue: InstrumentedQueue[str] = InstrumentedQueue(
            "deployment", ItemExponentialFailureRateLimiter(0.001, 0.01), registry=CollectorRegistry())
        self.ctl = DeploymentController(self.d, self.rs, self.pods, self.writer, self.recorder, queue=queue)
        self.clock = 1000

    async def sync(self) -> None:
        self.ctl.queue.add("ns/web")
        assert await process_next_item(self.ctl.queue, self.ctl.sync)
        self.catch_up()

    def catch_up(self) -> None:
        """The informers see every write (creation timestamps in write order)."""
        for (kind, _ns, _name), obj in list(self.writer.objects.items()):
            if kind is apps.ReplicaSet:
                if not obj.metadata.creation_timestamp.seconds:
                    self.clock += 1
                    obj.metadata.creation_timestamp.seconds = self.clock
                    obj.metadata.generation = 1
                self.rs.put(obj)
            elif kind is apps.Deployment:
                self.d.put(obj)
        for key in list(self.rs.items):
            if (apps.ReplicaSet, *key) not in self.writer.objects:
                del self.rs.items[key]

    def settle(self, ready: bool = True) -> None:
        """Every ReplicaSet gets exactly spec.replicas pods (ready or not) and a status saying so."""
        for rs in self.rs.list("ns"):
            mine = [p for p in self.pods.list("ns") if p.metadata.owner_references[0].uid == rs.metadata.uid]
            want = du.replicas_of(rs)
            for p in mine[want:]:
                self.pods.remove(p)
            for i in range(len(mine), want):
                self.pods.put(pod(f"{rs.metadata.name}-{i}-{uid()}", dict(rs.spec.template.metadata.labels), rs,
                                  node="n1", ready=ready, ready_since=int(time.time()) - 100))
            status_rs = apps.ReplicaSet()
            status_rs.CopyFrom(rs)
            status_rs.status.replicas = want
            status_rs.status.ready_replicas = want if ready else 0
            status_rs.status.available_replicas = want if ready else 0
            status_rs.status.observed_generation = rs.metadata.generation
            self.writer.put(status_rs)
            self.rs.put(status_rs)

    def sizes(self) -> dict[str, int]:
        return {rs.metadata.annotations[du.REVISION]: du.replicas_of(rs) for rs in self.rs.list("ns")}

    def deployment(self) -> apps.Deployment:
        d = self.d.get("ns", "web")
        assert d is not None
        return d

    def change(self, mutate: object) -> None:
        d = apps.Deployment()
        d.CopyFrom(self.deployment())
        mutate(d)  # type: ignore[operator]
        d.metadata.generation += 1
        self.writer.put(d)
        self.d.put(d)


def test_fenceposts_round_like_kubernetes() -> None:
    assert du.resolve_fenceposts(deployment(10)) == (3, 2)  # surge rounds up, unavailable down
    assert du.resolve_fenceposts(deployment(3, surge="0", unavailable="0")) == (0, 1)
    assert du.resolve_fenceposts(deployment(4, surge="1", unavailable="0%")) == (1, 0)
    assert du.max_unavailable(deployment(2, unavailable="5")) == 2
    assert du.max_surge(deployment(3, strategy="Recreate")) == 0


def test_hash_is_stable_and_ignores_the_hash_label() -> None:
    t = template(LABELS)
    h = du.compute_hash(t, None)
    t.metadata.labels[du.POD_TEMPLATE_HASH] = h
    assert du.compute_hash(t, None) == h
    assert du.compute_hash(t, 1) != h
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789")


async def test_a_new_deployment_gets_a_replicaset_with_the_hash_and_revision_1() -> None:
    h = Harness(deployment(3))
    await h.sync()
    (rs,) = h.rs.list("ns")
    template_hash = rs.metadata.labels[du.POD_TEMPLATE_HASH]
    assert rs.metadata.name == f"web-{template_hash}"
    assert rs.spec.selector.match_labels[du.POD_TEMPLATE_HASH] == template_hash
    assert rs.spec.template.metadata.labels[du.POD_TEMPLATE_HASH] == template_hash
    assert rs.metadata.annotations[du.REVISION] == "1"
    assert rs.metadata.annotations[du.DESIRED_REPLICAS] == "3"
    assert rs.metadata.annotations[du.MAX_REPLICAS] == "4"
    assert du.replicas_of(rs) == 3
    assert rs.metadata.owner_references[0].kind == "Deployment"
    assert h.deployment().metadata.annotations[du.REVISION] == "1"
    assert ("ScalingReplicaSet", f"Scaled up replica set {rs.metadata.name} from 0 to 3") in recorded(h.recorder)
    h.settle()
    await h.sync()
    status = h.deployment().status
    assert (status.replicas, status.updated_replicas, status.available_replicas) == (3, 3, 3)
    conds = {c.type: (c.status, c.reason) for c in status.conditions}
    assert conds["Available"] == ("True", "MinimumReplicasAvailable")
    assert conds["Progressing"] == ("True", "NewReplicaSetAvailable")


async def test_rolling_update_respects_max_surge_and_max_unavailable_at_every_step() -> None:
    h = Harness(deployment(4, surge="1", unavailable="1"))
    await h.sync()
    h.settle()
    await h.sync()
    h.change(lambda d: d.spec.template.spec.containers[0].__setattr__("image", "nginx:2"))
    for _ in range(40):
        await h.sync()
        total = sum(h.sizes().values())
        available_after = sum(min(du.replicas_of(rs), rs.status.available_replicas) for rs in h.rs.list("ns"))
        assert total <= 4 + 1, h.sizes()
        assert available_after >= 4 - 1, h.sizes()
        h.settle()
        if h.sizes() == {"1": 0, "2": 4}:
            break
    assert h.sizes() == {"1": 0, "2": 4}
    await h.sync()
    assert h.deployment().metadata.annotations[du.REVISION] == "2"
    conds = {c.type: c.reason for c in h.deployment().status.conditions}
    assert conds["Progressing"] == "NewReplicaSetAvailable"


async def test_not_ready_new_pods_stop_the_rollout() -> None:
    h = Harness(deployment(4, surge="1", unavailable="0"))
    await h.sync()
    h.settle()
    h.change(lambda d: d.spec.template.spec.containers[0].__setattr__("image", "broken"))
    for _ in range(5):
        await h.sync()
        for rs in h.rs.list("ns"):  # the new pods never become ready
            if rs.metadata.annotations[du.REVISION] == "2":
                h.settle(ready=False)
    assert h.sizes() == {"1": 4, "2": 1}


async def test_recreate_scales_old_to_zero_and_waits_for_their_pods() -> None:
    h = Harness(deployment(2, strategy="Recreate"))
    await h.sync()
    h.settle()
    h.change(lambda d: d.spec.template.spec.containers[0].__setattr__("image", "nginx:2"))
    await h.sync()
    assert h.sizes() == {"1": 0}  # no new ReplicaSet while old pods exist
    # The old pods still exist in the cache: still no new ReplicaSet.
    await h.sync()
    assert h.sizes() == {"1": 0}
    h.settle()  # old pods gone
    await h.sync()
    assert h.sizes() == {"1": 0, "2": 2}


async def test_scaling_mid_rollout_is_proportional() -> None:
    h = Harness(deployment(10, surge="3", unavailable="2"))
    await h.sync()
    h.settle()
    h.change(lambda d: d.spec.template.spec.containers[0].__setattr__("image", "broken"))
    await h.sync()
    h.settle(ready=False)
    await h.sync()
    before = h.sizes()
    assert sum(before.values()) == 13
    h.change(lambda d: d.spec.__setattr__("replicas", 20))
    await h.sync()
    after = h.sizes()
    assert sum(after.values()) == 20 + 3  # the new size plus maxSurge
    assert all(rs.metadata.annotations[du.DESIRED_REPLICAS] == "20" for rs in h.rs.list("ns"))
    assert after["1"] > before["1"] and after["2"] > before["2"]


async def test_rollback_reuses_the_old_replicaset_with_the_next_revision() -> None:
    h = Harness(deployment(2, surge="1", unavailable="0"))
    await h.sync()
    h.settle()
    original = h.deployment().spec.template
    h.change(lambda d: d.spec.template.spec.containers[0].__setattr__("image", "nginx:2"))
    for _ in range(10):
        await h.sync()
        h.settle()
    assert h.sizes() == {"1": 0, "2": 2}
    h.change(lambda d: d.spec.template.CopyFrom(original))  # what `rollout undo` writes
    await h.sync()
    revisions = {rs.spec.template.spec.containers[0].image: rs for rs in h.rs.list("ns")}
    old = revisions["nginx:1"]
    assert old.metadata.annotations[du.REVISION] == "3"
    assert old.metadata.annotations[du.REVISION_HISTORY] == "1"
    assert len(h.rs.list("ns")) == 2  # no new ReplicaSet for a known template


async def test_paused_deployment_does_not_roll_out() -> None:
    h = Harness(deployment(2))
    await h.sync()
    h.settle()
    h.change(lambda d: (d.spec.__setattr__("paused", True),
                        d.spec.template.spec.containers[0].__setattr__("image", "nginx:2")))
    await h.sync()
    assert h.sizes() == {"1": 2}
    progressing = du.get_condition(h.deployment().status, "Progressing")
    assert progressing is not None and (progressing.status, progressing.reason) == ("Unknown", "DeploymentPaused")
    h.change(lambda d: d.spec.__setattr__("paused", False))
    await h.sync()
    assert "2" in h.sizes()


async def test_old_replicasets_beyond_the_history_limit_are_deleted() -> None:
    d = deployment(1, surge="1", unavailable="0")
    d.spec.revision_history_limit = 1
    h = Harness(d)
    for image in ["nginx:2", "nginx:3", "nginx:4"]:
        for _ in range(6):
            await h.sync()
            h.settle()
        h.change(lambda d, image=image: d.spec.template.spec.containers[0].__setattr__("image", image))
    for _ in range(6):
        await h.sync()
        h.settle()
    deleted = [name for kind, _, name, _ in h.writer.deleted if kind == "ReplicaSet"]
    assert len(deleted) == 2
    assert sorted(h.sizes()) == ["3", "4"]


async def test_progress_deadline_exceeded() -> None:
    d = deployment(2)
    d.spec.progress_deadline_seconds = 1
    h = Harness(d)
    await h.sync()
    h.settle(ready=False)
    await h.sync()  # pods appeared: that is progress
    cond = du.get_condition(h.deployment().status, "Progressing")
    assert cond is not None and cond.reason == "ReplicaSetUpdated"
    stale = apps.Deployment()
    stale.CopyFrom(h.deployment())
    for c in stale.status.conditions:
        if c.type == "Progressing":
            c.last_update_time.seconds -= 60
    h.writer.put(stale)
    h.d.put(stale)
    await h.sync()
    cond = du.get_condition(h.deployment().status, "Progressing")
    assert cond is not None
    assert (cond.status, cond.reason) == ("False", "ProgressDeadlineExceeded")
    assert cond.message == f'ReplicaSet "{h.rs.list("ns")[0].metadata.name}" has timed out progressing.'
    assert any(reason == "ProgressDeadlineExceeded" for reason, _ in recorded(h.recorder))


@pytest.mark.parametrize(("value", "total", "up", "want"), [("25%", 10, True, 3), ("25%", 10, False, 2),
                                                            ("1", 10, True, 1), ("100%", 3, False, 3)])
def test_scaled_value(value: str, total: int, up: bool, want: int) -> None:
    assert du.scaled_value(value, total, up) == want
