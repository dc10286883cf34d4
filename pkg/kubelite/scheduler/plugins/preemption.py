"""DefaultPreemption (PostFilter): when no node fits, find the node where deleting lower-priority
pods lets this pod in, with the fewest and least important victims, breaking as few
PodDisruptionBudgets as it can.

On each node that refused the pod for a reason preemption can cure (status
Unschedulable, not UnschedulableAndUnresolvable), every lower-priority pod
is taken away on a copy of the node; if the pod then fits, the victims are
given back one by one, most important first (higher priority, then earlier
start), keeping each one whose return still lets the pod fit. Pods whose
removal would take a budget below zero (``disruptionsAllowed``, minus the
other covered pods already chosen on that node) are given back before the
others, so that they are victims only when the others do not suffice.

Among the nodes that work the choice is Kubernetes': the fewest budget
violations, then the lowest highest-victim priority, then the lowest sum of
victim priorities, then the fewest victims, then the node whose most
important victims started latest, then the first node.

A pod already nominated to a node where a lower-priority pod is terminating
because of an earlier preemption does not preempt again: it waits for those
victims to go (``WAIT_KEY`` tells the loop to keep its nomination).

The decision is pure: the plugin names the node and the victims; the
scheduling loop deletes them and writes ``status.nominatedNodeName``, and the
pod is tried again when the deletions arrive as cluster events.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from kubelite.scheduler.framework import (
    Code,
    CycleState,
    Status,
    unresolvable,
    unschedulable,
)
from kubelite.scheduler.nodeinfo import DisruptionBudget, NodeInfo, PodInfo, Snapshot

VICTIMS_KEY = "DefaultPreemption/victims"
# Set (to the nominated node) when the pod waits for its earlier victims instead of preempting again.
WAIT_KEY = "DefaultPreemption/wait"
NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NOT_ELIGIBLE_NEVER = "preemption: not eligible due to preemptionPolicy=Never"
NOT_ELIGIBLE_TERMINATING = "preemption: not eligible due to a terminating pod on the nominated node"
# Dry runs cost a whole filter pass each: look at this many candidate nodes at most.
MAX_CANDIDATES = 100
# Priorities are int32; shifting each by 2^31 + 1 makes every victim add to the sum, as Kubernetes does.
_PRIORITY_SHIFT = 2**31 + 1


@dataclass(frozen=True)
class Candidate:
    node: str
    # Most important first.
    victims: tuple[PodInfo, ...]
    pdb_violations: int = 0

    def rank(self) -> tuple[float, ...]:
        """Smaller is better."""
        if not self.victims:
            return (self.pdb_violations, -math.inf, 0, 0, 0)
        highest = max(v.priority for v in self.victims)
        earliest_of_highest = min(v.start_time for v in self.victims if v.priority == highest)
        return (self.pdb_violations, highest, sum(v.priority + _PRIORITY_SHIFT for v in self.victims),
                len(self.victims), -earliest_of_highest)


def split_by_pdb_violation(pods: Sequence[PodInfo],
                           pdbs: Sequence[DisruptionBudget]) -> tuple[list[PodInfo], list[PodInfo]]:
    """(violating, non-violating), each in the given order: a pod violates when taking it, after the pods
    before it, leaves a budget that covers it below zero."""
    allowed = [p.disruptions_allowed for p in pdbs]
    violating: list[PodInfo] = []
    others: list[PodInfo] = []
    for pod in pods:
        violated = False
        if pod.labels:  # a pod without labels matches no selector
            for i, pdb in enumerate(pdbs):
                if pdb.covers(pod):
                    allowed[i] -= 1
                    if allowed[i] < 0:
                        violated = True
        (violating if violated else others).append(pod)
    return violating, others


def more_important_first(pods: Sequence[PodInfo]) -> list[PodInfo]:
    """Higher priority first; equal priorities: the one that started earlier."""
    return sorted(pods, key=lambda p: (-p.priority, p.start_time))


class DefaultPreemption:
    name = "DefaultPreemption"

    def __init__(self) -> None:
        self._profile: object | None = None

    def set_profile(self, profile: object) -> None:
        """The profile whose PreFilter and Filter plugins the dry runs use."""
        self._profile = profile

    def post_filter(self, state: CycleState, pod: PodInfo, snapshot: Snapshot,
                    statuses: dict[str, Status]) -> tuple[str | None, Status | None]:
        total = len(snapshot.node_list)
        if pod.preemption_never:
            return None, unresolvable(NOT_ELIGIBLE_NEVER, plugin=self.name)
        waiting = self._waiting_on(pod, snapshot, statuses)
        if waiting:
            state.write(WAIT_KEY, waiting)
            return None, unschedulable(NOT_ELIGIBLE_TERMINATING, plugin=self.name)
        reasons: dict[str, str] = {}
        candidates: list[Candidate] = []
        tried = 0
        for node in snapshot.node_list:
            status = statuses.get(node.name)
            if status is not None and status.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
                reasons[node.name] = NOT_HELPFUL
                continue
            if tried >= MAX_CANDIDATES:
                reasons[node.name] = NO_VICTIMS
                continue
            tried += 1
            candidate = self.select_victims_on_node(pod, node, snapshot)
            if candidate is None:
                reasons[node.name] = NO_VICTIMS
            else:
                candidates.append(candidate)
        if not candidates:
            histogram: dict[str, int] = {}
            for reason in reasons.values():
                histogram[reason] = histogram.get(reason, 0) + 1
            detail = ", ".join(sorted(f"{n} {r}" for r, n in histogram.items()))
            return None, unschedulable(f"preemption: 0/{total} nodes are available: {detail}", plugin=self.name)
        best = min(candidates, key=Candidate.rank)  # min() keeps the first of equals: the first node
        state.write(VICTIMS_KEY, best.victims)
        return best.node, None

    @staticmethod
    def _waiting_on(pod: PodInfo, snapshot: Snapshot, statuses: dict[str, Status]) -> str:
        """The nominated node, when a lower-priority pod preempted earlier is still terminating there."""
        node = snapshot.get(pod.nominated_node) if pod.nominated_node else None
        if node is None:
            return ""
        status = statuses.get(node.name)
        if status is not None and status.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
            return ""  # the node itself no longer suits the pod: preempting elsewhere is the way
        for p in node.pods.values():
            if p.priority < pod.priority and p.preempted:
                return node.name
        return ""

    def select_victims_on_node(self, pod: PodInfo, node: NodeInfo, snapshot: Snapshot) -> Candidate | None:
        """The fewest, least important pods on ``node`` whose removal lets ``pod`` fit; None if none do."""
        lower = [p for p in node.pods.values() if p.priority < pod.priority]
        if not lower:
            return None
        trial = node.clone()
        for p in lower:
            trial.remove_pod(p)
        if not self._fits(pod, trial, snapshot):
            return None
        violating, others = split_by_pdb_violation(more_important_first(lower), snapshot.pdbs)
        victims: list[PodInfo] = []
        violations = 0

        def reprieve(p: PodInfo) -> bool:
            trial.add_pod(p)
            if self._fits(pod, trial, snapshot):
                return True
            trial.remove_pod(p)
            victims.append(p)
            return False

        # Budget-breaking victims get their reprieve first: they stay whenever the others suffice.
        for p in violating:
            if not reprieve(p):
                violations += 1
        for p in others:
            reprieve(p)
        return Candidate(node.name, tuple(more_important_first(victims)), violations)

    def _fits(self, pod: PodInfo, trial: NodeInfo, snapshot: Snapshot) -> bool:
        from kubelite.scheduler.profile import Profile

        profile = self._profile
        assert isinstance(profile, Profile), "DefaultPreemption needs set_profile()"
        variant = snapshot.with_node(trial)
        state = CycleState()
        for pre in profile.pre_filter:
            _, status = pre.pre_filter(state, pod, variant)
            if status is not None:
                if status.code == Code.SKIP:
                    state.skip_filter.add(pre.name)
                elif not status.is_success:
                    return False
        for plugin in profile.filter:
            if plugin.name in state.skip_filter:
                continue
            status = plugin.filter(state, pod, trial)
            if status is not None and status.code != Code.SUCCESS:
                return False
        return True
