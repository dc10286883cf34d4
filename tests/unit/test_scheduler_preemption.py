"""DefaultPreemption's choice with PodDisruptionBudgets: which node, which victims, and when to wait.

The cases follow Kubernetes' documented order: fewest budget violations first,
then the lowest highest-victim priority, the lowest sum of priorities, the
fewest victims, the latest start of the most important victims; on a node,
victims that would break a budget are given back before the others.
"""

from __future__ import annotations

from typing import Any

import pytest

from kubelite.api.policy.v1 import generated_pb2 as policy
from kubelite.scheduler.algorithm import schedule
from kubelite.scheduler.framework import Diagnosis, FitError
from kubelite.scheduler.nodeinfo import DisruptionBudget, PodInfo, Snapshot
from kubelite.scheduler.plugins.preemption import Candidate, split_by_pdb_violation
from kubelite.scheduler.profile import default_profile
from tests.support.objects import make_node, make_pod


def _pod(name: str, priority: int, *, node: str = "", cpu: str = "1", labels: dict[str, str] | None = None,
         started: int | None = None, namespace: str = "default") -> Any:
    pod = make_pod(name, cpu=cpu, node_name=node, labels=labels or {}, namespace=namespace)
    pod.spec.priority = priority
    if started is not None:
        pod.status.start_time.seconds = started
    return pod


def _pdb(name: str, app: str, allowed: int, *, disrupted: tuple[str, ...] = (), namespace: str = "default",
         selector: bool = True) -> policy.PodDisruptionBudget:
    pdb = policy.PodDisruptionBudget()
    pdb.metadata.name, pdb.metadata.namespace = name, namespace
    if selector:
        pdb.spec.selector.match_labels["app"] = app
    pdb.status.disruptions_allowed = allowed
    for p in disrupted:
        pdb.status.disrupted_pods[p].seconds = 1
    return pdb


def _preempt(nodes: list[Any], pods: list[Any], pdbs: list[policy.PodDisruptionBudget],
             preemptor: Any) -> Diagnosis:
    snapshot = Snapshot.from_objects(nodes, pods, pdbs)
    with pytest.raises(FitError) as err:
        schedule(default_profile(), snapshot, PodInfo(preemptor))
    return err.value.diagnosis


def test_a_node_whose_victims_break_no_budget_wins_over_lower_priority_victims() -> None:
    nodes = [make_node("a", cpu="1"), make_node("b", cpu="1")]
    pods = [_pod("guarded", 1, node="a", labels={"app": "db"}), _pod("free", 50, node="b", labels={"app": "web"})]
    d = _preempt(nodes, pods, [_pdb("db", "db", 0)], _pod("urgent", 100))
    assert d.nominated_node == "b"
    assert [v.name for v in d.victims] == ["free"]
    # Without the budget the lowest priority decides.
    d = _preempt(nodes, pods, [], _pod("urgent", 100))
    assert (d.nominated_node, [v.name for v in d.victims]) == ("a", ["guarded"])


def test_on_a_node_budget_protected_pods_are_reprieved_first() -> None:
    # Either pod's room suffices; without a budget the more important one is kept.
    nodes = [make_node("a", cpu="2")]
    pods = [_pod("low-guarded", 1, node="a", labels={"app": "db"}), _pod("mid", 10, node="a")]
    assert [v.name for v in _preempt(nodes, pods, [], _pod("urgent", 100)).victims] == ["low-guarded"]
    assert [v.name for v in _preempt(nodes, pods, [_pdb("db", "db", 0)], _pod("urgent", 100)).victims] == ["mid"]


def test_a_budget_is_broken_when_nothing_else_makes_room() -> None:
    nodes = [make_node("a", cpu="1")]
    pods = [_pod("guarded", 1, node="a", labels={"app": "db"})]
    d = _preempt(nodes, pods, [_pdb("db", "db", 0)], _pod("urgent", 100))
    assert (d.nominated_node, [v.name for v in d.victims]) == ("a", ["guarded"])


def test_allowed_disruptions_are_spent_most_important_first() -> None:
    lows = [PodInfo(_pod(f"p{i}", 10 - i, node="a", labels={"app": "db"})) for i in range(3)]
    budget = DisruptionBudget.from_object(_pdb("db", "db", 1))
    violating, others = split_by_pdb_violation(lows, [budget])
    assert [p.name for p in others] == ["p0"]
    assert [p.name for p in violating] == ["p1", "p2"]


def test_which_pods_a_budget_covers() -> None:
    pod = PodInfo(_pod("p", 1, labels={"app": "db"}))
    assert DisruptionBudget.from_object(_pdb("db", "db", 0)).covers(pod)
    # Already evicted under the budget: counted by the API server, not again here.
    assert not DisruptionBudget.from_object(_pdb("db", "db", 0, disrupted=("p",))).covers(pod)
    assert not DisruptionBudget.from_object(_pdb("db", "db", 0, namespace="other")).covers(pod)
    # An absent or empty selector covers nothing (unlike a label selector elsewhere).
    assert not DisruptionBudget.from_object(_pdb("db", "db", 0, selector=False)).covers(pod)
    empty = _pdb("db", "db", 0, selector=False)
    empty.spec.selector.SetInParent()
    assert not DisruptionBudget.from_object(empty).covers(pod)
    # A pod without labels is never covered.
    violating, _ = split_by_pdb_violation([PodInfo(_pod("bare", 1))], [DisruptionBudget.from_object(empty)])
    assert violating == []


@pytest.mark.parametrize(("a", "b", "winner"), [
    # Lower sum of priorities (the highest victims are equal).
    ([(50, 0), (10, 0)], [(50, 0), (20, 0)], "a"),
    # Shifted by 2^31 + 1, every victim adds to the sum: one victim beats two of the same priority,
    # though their raw sums tie.
    ([(0, 0)], [(0, 0), (0, 0)], "a"),
    # All else equal: the node whose most important victims started latest.
    ([(10, 100)], [(10, 200)], "b"),
])
def test_candidate_order_after_budgets(a: list[tuple[int, int]], b: list[tuple[int, int]], winner: str) -> None:
    def cand(node: str, victims: list[tuple[int, int]]) -> Candidate:
        return Candidate(node, tuple(PodInfo(_pod(f"{node}{i}", p, node=node, started=s))
                                     for i, (p, s) in enumerate(victims)))

    assert min([cand("a", a), cand("b", b)], key=Candidate.rank).node == winner
    assert min([Candidate("a", cand("a", a).victims, 1), Candidate("b", cand("b", b).victims, 0)],
               key=Candidate.rank).node == "b"


def test_a_nominated_pod_waits_for_its_terminating_victims_instead_of_preempting_again() -> None:
    nodes = [make_node("a", cpu="1"), make_node("b", cpu="1")]
    going = _pod("going", 1, node="a")
    going.metadata.deletion_timestamp.seconds = 1
    going.status.conditions.add(type="DisruptionTarget", status="True", reason="PreemptionByScheduler")
    other = _pod("other", 1, node="b")
    urgent = _pod("urgent", 100)
    urgent.status.nominated_node_name = "a"
    d = _preempt(nodes, [going, other], [], urgent)
    assert not d.nominated_node and d.waiting_on == "a"
    assert d.post_filter_msg == "preemption: not eligible due to a terminating pod on the nominated node"
    # A pod terminating for another reason does not hold the preemptor back.
    plain = _pod("going", 1, node="a")
    plain.metadata.deletion_timestamp.seconds = 1
    d = _preempt(nodes, [plain, other], [], urgent)
    assert d.nominated_node and not d.waiting_on
