"""The scheduling queue and the loop around it, with a fake clock, a fake binder and a fake status writer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.machinery import schedulingreasons
from kubelite.machinery.errors import StatusError
from kubelite.scheduler.framework import ClusterEvent
from kubelite.scheduler.profile import default_profile
from kubelite.scheduler.queue import SchedulingQueue
from kubelite.scheduler.scheduler import Scheduler
from tests.support.objects import make_node, make_pod


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _queue(clock: Clock, **events: frozenset[ClusterEvent]) -> SchedulingQueue:
    return SchedulingQueue(events, clock=clock)


async def test_active_queue_orders_by_priority_then_age() -> None:
    clock = Clock()
    q = _queue(clock)
    for name, priority in [("low-old", 0), ("high", 100), ("low-new", 0)]:
        pod = make_pod(name)
        pod.spec.priority = priority
        q.add(pod)
        clock.now += 1
    assert [(await q.pop()).key for _ in range(3)] == ["default/high", "default/low-old", "default/low-new"]


async def test_backoff_doubles_from_one_second_to_ten() -> None:
    clock = Clock()
    q = _queue(clock)
    q.add(make_pod("p"))
    durations = []
    for _ in range(6):
        qpi = await q.pop()
        durations.append(q.backoff_duration(qpi))
        q.add_backoff(qpi)
        assert q.pending()["backoff"] == 1
        clock.now += q.backoff_duration(qpi)
        q.flush()
    assert durations == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


async def test_unschedulable_pods_move_only_on_events_their_plugins_registered() -> None:
    clock = Clock()
    q = _queue(clock, TaintToleration=frozenset({ClusterEvent.NODE_ADD, ClusterEvent.NODE_UPDATE}),
               NodeResourcesFit=frozenset({ClusterEvent.NODE_ADD, ClusterEvent.POD_DELETE}))
    q.add(make_pod("tainted"))
    q.add(make_pod("big"))
    first, second = await q.pop(), await q.pop()
    q.add_unschedulable(first, {"TaintToleration"})
    q.add_unschedulable(second, {"NodeResourcesFit"})
    assert q.pending() == {"active": 0, "backoff": 0, "unschedulable": 2}
    clock.now += 20  # both back-offs are over
    assert q.move_all(ClusterEvent.POD_DELETE) == 1
    assert q.pending() == {"active": 1, "backoff": 0, "unschedulable": 1}
    assert (await q.pop()).key == second.key
    assert q.move_all(ClusterEvent.NODE_ADD) == 1
    assert (await q.pop()).key == first.key


async def test_an_event_during_the_attempt_sends_the_pod_to_backoff_not_unschedulable() -> None:
    clock = Clock()
    q = _queue(clock)
    q.add(make_pod("p"))
    qpi = await q.pop()
    q.move_all(ClusterEvent.NODE_ADD)  # arrives while the pod is being scheduled
    q.add_unschedulable(qpi, {"NodeResourcesFit"})
    assert q.pending() == {"active": 0, "backoff": 1, "unschedulable": 0}


async def test_unschedulable_pods_are_flushed_after_sixty_seconds() -> None:
    clock = Clock()
    q = _queue(clock)
    q.add(make_pod("p"))
    q.add_unschedulable(await q.pop(), {"X"})
    assert q.flush() == 60.0
    clock.now += 60
    q.flush()
    assert q.pending()["active"] == 1


async def test_updates_that_only_touch_status_do_not_requeue() -> None:
    clock = Clock()
    q = _queue(clock)
    pod = make_pod("p")
    q.add(pod)
    q.add_unschedulable(await q.pop(), {"X"})
    clock.now += 5
    status_only = core.Pod()
    status_only.CopyFrom(pod)
    status_only.status.conditions.add(type="PodScheduled", status="False")
    q.update(pod, status_only)
    assert q.pending()["unschedulable"] == 1
    # Nor does the scheduler's own record of which nodes refused the pod.
    recorded = core.Pod()
    recorded.CopyFrom(status_only)
    recorded.metadata.annotations[schedulingreasons.ANNOTATION] = schedulingreasons.encode([("a", "X", "no")])
    q.update(status_only, recorded)
    assert q.pending()["unschedulable"] == 1
    relabelled = core.Pod()
    relabelled.CopyFrom(recorded)
    relabelled.metadata.labels["new"] = "label"
    q.update(recorded, relabelled)
    assert q.pending()["active"] == 1


async def test_deleted_pods_leave_the_queue() -> None:
    q = _queue(Clock())
    pod = make_pod("p")
    q.add(pod)
    q.delete(pod)
    assert len(q) == 0 and q.pending()["active"] == 0


# -- the loop ---------------------------------------------------------------------------------------------------


class FakeBinder:
    def __init__(self) -> None:
        self.bound: dict[str, str] = {}
        self.fail_next = 0

    async def bind(self, pod: core.Pod, node_name: str) -> None:
        await asyncio.sleep(0)
        if self.fail_next:
            self.fail_next -= 1
            raise StatusError("ServiceUnavailable", "the server is restarting")
        self.bound[pod.metadata.name] = node_name


class FakeConditions:
    def __init__(self) -> None:
        self.messages: dict[str, str] = {}
        self.nominated: dict[str, str] = {}
        self.node_reasons: dict[str, list[tuple[str, str, str]]] = {}

    async def set_unschedulable(self, pod: core.Pod, message: str, nominated_node: str = "",
                                node_reasons: Sequence[tuple[str, str, str]] = ()) -> None:
        self.messages[pod.metadata.name] = message
        self.nominated[pod.metadata.name] = nominated_node
        self.node_reasons[pod.metadata.name] = list(node_reasons)


def _scheduler(binder: FakeBinder, conditions: FakeConditions) -> Scheduler:
    return Scheduler({"default-scheduler": default_profile()}, binder=binder, conditions=conditions)


async def test_assumed_pods_count_for_the_next_decision() -> None:
    binder, conditions = FakeBinder(), FakeConditions()
    sched = _scheduler(binder, conditions)
    sched.on_node_add(make_node("a", cpu="1"))
    sched.on_node_add(make_node("b", cpu="1"))
    for name in ("p1", "p2", "p3"):
        sched.on_pod_add(make_pod(name, cpu="1"))
    for _ in range(3):
        await sched.schedule_next()
    await sched.wait_idle()
    assert sorted(binder.bound.values()) == ["a", "b"]  # never both on one node: the first was assumed
    assert conditions.messages == {"p3": "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are "
                                         "available: 2 No preemption victims found for incoming pod."}
    # Node by node, for describe: each node refused it in NodeResourcesFit.
    assert conditions.node_reasons["p3"] == [("a", "NodeResourcesFit", "Insufficient cpu"),
                                             ("b", "NodeResourcesFit", "Insufficient cpu")]
    assert sched.queue.pending()["unschedulable"] == 1
    await sched.close()


async def test_a_failed_binding_forgets_the_assumption_and_retries() -> None:
    binder, conditions = FakeBinder(), FakeConditions()
    binder.fail_next = 1
    sched = _scheduler(binder, conditions)
    sched.queue.initial_backoff = 0.01
    sched.on_node_add(make_node("a", cpu="1"))
    sched.on_pod_add(make_pod("p", cpu="1"))
    await sched.schedule_next()
    await sched.wait_idle()
    assert binder.bound == {} and not sched.cache.is_assumed("default/p")
    assert sched.queue.pending()["backoff"] + sched.queue.pending()["active"] == 1
    await asyncio.sleep(0.02)
    sched.queue.flush()
    await sched.schedule_next()
    await sched.wait_idle()
    assert binder.bound == {"p": "a"}
    await sched.close()


async def test_a_new_node_schedules_a_pod_that_fit_nowhere() -> None:
    binder, conditions = FakeBinder(), FakeConditions()
    sched = _scheduler(binder, conditions)
    sched.on_node_add(make_node("small", cpu="1"))
    sched.on_pod_add(make_pod("big", cpu="8"))
    await sched.schedule_next()
    assert sched.queue.pending()["unschedulable"] == 1
    sched.queue.initial_backoff = 0  # no need to wait out the back-off in this test
    sched.on_node_add(make_node("large", cpu="16"))
    assert sched.queue.pending()["active"] == 1
    await sched.schedule_next()
    await sched.wait_idle()
    assert binder.bound == {"big": "large"}
    await sched.close()


async def test_pods_for_other_schedulers_are_ignored() -> None:
    sched = _scheduler(FakeBinder(), FakeConditions())
    pod = make_pod("p")
    pod.spec.scheduler_name = "someone-else"
    sched.on_pod_add(pod)
    assert len(sched.queue) == 0
    await sched.close()


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []

    def event(self, obj: core.Pod, type_: str, reason: str, message: str) -> None:
        self.events.append((obj.metadata.name, type_, reason, message))


async def test_failed_scheduling_is_reported_once_per_distinct_message_and_scheduled_after() -> None:
    recorder = FakeRecorder()
    sched = Scheduler({"default-scheduler": default_profile()}, binder=FakeBinder(), conditions=FakeConditions(),
                      events=recorder)
    sched.queue.initial_backoff = 0
    sched.on_node_add(make_node("small", cpu="1"))
    sched.on_pod_add(make_pod("big", cpu="4"))
    await sched.schedule_next()
    sched.on_node_add(make_node("small-2", cpu="1"))  # a retry, with a different message
    await sched.schedule_next()
    sched.queue.move_all(ClusterEvent.FORCE_ACTIVATE)  # the same refusal again: not reported twice
    await sched.schedule_next()
    sched.on_node_add(make_node("large", cpu="8"))
    await sched.schedule_next()
    await sched.wait_idle()
    assert recorder.events == [
        ("big", "Warning", "FailedScheduling", "0/1 nodes are available: 1 Insufficient cpu. "
                                               "preemption: 0/1 nodes are available: 1 No preemption victims "
                                               "found for incoming pod."),
        ("big", "Warning", "FailedScheduling", "0/2 nodes are available: 2 Insufficient cpu. "
                                               "preemption: 0/2 nodes are available: 2 No preemption victims "
                                               "found for incoming pod."),
        ("big", "Normal", "Scheduled", "Successfully assigned default/big to large"),
    ]
    await sched.close()


class FakeVictims:
    def __init__(self) -> None:
        self.evicted: list[str] = []
        self.messages: list[str] = []

    async def delete_victim(self, victim: core.Pod, message: str) -> None:
        self.evicted.append(victim.metadata.name)
        self.messages.append(message)


async def test_preemption_evicts_nominates_and_binds_once_the_victim_is_gone() -> None:
    binder, conditions, evictor = FakeBinder(), FakeConditions(), FakeVictims()
    sched = Scheduler({"default-scheduler": default_profile()}, binder=binder, conditions=conditions,
                      victims=evictor)
    sched.queue.initial_backoff = 0
    sched.on_node_add(make_node("a", cpu="1"))
    low = make_pod("low", cpu="1", node_name="a")
    low.spec.priority = 0
    sched.on_pod_add(low)
    high = make_pod("high", cpu="1")
    high.spec.priority = 1000
    sched.on_pod_add(high)
    await sched.schedule_next()
    await sched.wait_idle()
    assert evictor.evicted == ["low"]
    assert conditions.nominated == {"high": "a"}
    sched.on_pod_delete(low)  # the eviction arrives through the watch
    await sched.schedule_next()
    await sched.wait_idle()
    assert binder.bound == {"high": "a"}
    await sched.close()


async def test_the_room_preemption_frees_is_held_for_the_preemptor() -> None:
    binder, conditions, evictor, clock = FakeBinder(), FakeConditions(), FakeVictims(), Clock()
    profile = default_profile()
    queue = SchedulingQueue(profile.events_by_plugin(), clock=clock)
    sched = Scheduler({"default-scheduler": profile}, binder=binder, conditions=conditions, victims=evictor,
                      queue=queue, clock=clock)
    # The preemptor's retry waits out its back-off (1 s); a newcomer is tried first.
    sched.on_node_add(make_node("a", cpu="2"))
    low = make_pod("low", cpu="2", node_name="a")
    sched.on_pod_add(low)
    high = make_pod("high", cpu="2")
    high.spec.priority = 1000
    sched.on_pod_add(high)
    await sched.schedule_next()
    await sched.wait_idle()
    assert evictor.evicted == ["low"]
    sched.on_pod_delete(low)
    sched.on_pod_add(make_pod("newcomer", cpu="1"))
    await sched.schedule_next()
    await sched.wait_idle()
    assert binder.bound == {}
    assert conditions.messages["newcomer"].startswith("0/1 nodes are available: 1 Insufficient cpu.")
    clock.now += 10
    queue.flush()
    await sched.schedule_next()
    await sched.wait_idle()
    assert binder.bound == {"high": "a"}
    await sched.close()


async def test_status_updates_of_a_nominated_pod_keep_it_queued() -> None:
    binder, conditions, evictor = FakeBinder(), FakeConditions(), FakeVictims()
    sched = Scheduler({"default-scheduler": default_profile()}, binder=binder, conditions=conditions,
                      victims=evictor)
    sched.queue.initial_backoff = 0
    sched.on_node_add(make_node("a", cpu="1"))
    low = make_pod("low", cpu="1", node_name="a")
    sched.on_pod_add(low)
    high = make_pod("high", cpu="1")
    high.spec.priority = 1000
    sched.on_pod_add(high)
    await sched.schedule_next()
    await sched.wait_idle()
    nominated = core.Pod()
    nominated.CopyFrom(high)
    nominated.status.nominated_node_name = "a"  # our own status write, seen through the watch
    sched.on_pod_update(high, nominated)
    assert "default/high" in sched.queue
    sched.on_pod_delete(low)
    await sched.schedule_next()
    await sched.wait_idle()
    assert binder.bound == {"high": "a"}
    await sched.close()


async def test_a_preemptor_waits_for_its_terminating_victim_and_keeps_the_room() -> None:
    binder, conditions, victims = FakeBinder(), FakeConditions(), FakeVictims()
    sched = Scheduler({"default-scheduler": default_profile()}, binder=binder, conditions=conditions,
                      victims=victims)
    sched.queue.initial_backoff = 0
    sched.on_node_add(make_node("a", cpu="1"))
    sched.on_node_add(make_node("b", cpu="1"))
    low = make_pod("low", cpu="1", node_name="a")
    other = make_pod("other", cpu="1", node_name="b")
    other.spec.priority = 5
    for p in (low, other):
        sched.on_pod_add(p)
    high = make_pod("high", cpu="1")
    high.spec.priority = 1000
    sched.on_pod_add(high)
    await sched.schedule_next()
    await sched.wait_idle()
    assert victims.evicted == ["low"]
    assert victims.messages == ["default-scheduler: preempting to accommodate a higher priority pod"]
    # The graceful deletion shows up as an update: the victim is terminating, marked by the scheduler.
    going = core.Pod()
    going.CopyFrom(low)
    going.metadata.deletion_timestamp.seconds = 1
    going.status.conditions.add(type="DisruptionTarget", status="True", reason="PreemptionByScheduler")
    sched.on_pod_update(low, going)
    # A cluster change brings the preemptor back early: it waits rather than preempting "other" too.
    sched.on_node_update(make_node("b", cpu="1"), make_node("b", cpu="1", labels={"x": "y"}))
    await sched.schedule_next()
    await sched.wait_idle()
    assert victims.evicted == ["low"]
    assert conditions.nominated == {"high": "a"}
    assert conditions.messages["high"].endswith(
        "preemption: not eligible due to a terminating pod on the nominated node.")
    # Once the victim is gone, the preemptor is tried before a newcomer (priority) and lands on a.
    sched.on_pod_delete(going)
    sched.on_pod_add(make_pod("newcomer", cpu="1"))
    await sched.schedule_next()
    await sched.wait_idle()
    assert binder.bound == {"high": "a"}
    await sched.close()


async def test_a_binding_seen_as_one_update_leaves_the_queue_and_confirms_the_assumption() -> None:
    binder = FakeBinder()
    sched = Scheduler({"default-scheduler": default_profile()}, binder=binder, conditions=FakeConditions())
    sched.on_node_add(make_node("a", cpu="1"))
    pending = make_pod("p", cpu="1")
    sched.on_pod_add(pending)
    await sched.schedule_next()
    await sched.wait_idle()
    assert binder.bound == {"p": "a"} and sched.cache.is_assumed("default/p")
    bound = core.Pod()
    bound.CopyFrom(pending)
    bound.spec.node_name = "a"
    sched.on_pod_update(pending, bound)  # one pod informer: pending -> assigned is an update
    assert not sched.cache.is_assumed("default/p") and sched.cache.pod_count == 1
    assert len(sched.queue) == 0
    # Another scheduler's binding of a pod we had refused: it leaves our queue and its explanation goes.
    other = make_pod("q", cpu="1")
    sched.on_pod_add(other)
    await sched.schedule_next()
    await sched.wait_idle()
    assert "default/q" in sched.last_error
    elsewhere = core.Pod()
    elsewhere.CopyFrom(other)
    elsewhere.spec.node_name = "a"
    sched.on_pod_update(other, elsewhere)
    assert "default/q" not in sched.last_error and len(sched.queue) == 0 and sched.cache.pod_count == 2
    await sched.close()
