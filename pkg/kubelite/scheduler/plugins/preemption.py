"""DefaultPreemption (PostFilter): when no node fits, find the node where evicting lower-priority
pods lets this pod in, with the fewest and least important victims.

On each node that refused the pod for a reason eviction can cure (status
Unschedulable, not UnschedulableAndUnresolvable), every lower-priority pod
is taken away on a copy of the node; if the pod then fits, the victims are
given back one by one, most important first, keeping each one whose return
still lets the pod fit. Among the nodes that work, the choice follows
Kubernetes: the lowest highest-victim priority, then the lowest sum of
victim priorities, then the fewest victims, then the first node.

The decision is pure: the plugin names the node and the victims; the
scheduling loop deletes them and writes ``status.nominatedNodeName``, and the
pod is tried again when the deletions arrive as cluster events.
PodDisruptionBudgets are not consulted yet (kubelite has no PDB kind).
"""

from __future__ import annotations

from dataclasses import dataclass

from kubelite.scheduler.framework import (
    Code,
    CycleState,
    Status,
    unresolvable,
    unschedulable,
)
from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo, Snapshot

VICTIMS_KEY = "DefaultPreemption/victims"
NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
# Dry runs cost a whole filter pass each: look at this many candidate nodes at most.
MAX_CANDIDATES = 100


@dataclass(frozen=True)
class Candidate:
    node: str
    victims: tuple[PodInfo, ...]

    def rank(self) -> tuple[int, int, int]:
        priorities = [v.priority for v in self.victims]
        return (max(priorities, default=-(2**31)), sum(priorities), len(priorities))


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
            return None, unresolvable("preemption: not eligible due to preemptionPolicy=Never", plugin=self.name)
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
            victims = self._victims_on(pod, node, snapshot)
            if victims is None:
                reasons[node.name] = NO_VICTIMS
            else:
                candidates.append(Candidate(node.name, tuple(victims)))
        if not candidates:
            histogram: dict[str, int] = {}
            for reason in reasons.values():
                histogram[reason] = histogram.get(reason, 0) + 1
            detail = ", ".join(sorted(f"{n} {r}" for r, n in histogram.items()))
            return None, unschedulable(f"preemption: 0/{total} nodes are available: {detail}", plugin=self.name)
        best = min(candidates, key=Candidate.rank)
        state.write(VICTIMS_KEY, best.victims)
        return best.node, None

    def _victims_on(self, pod: PodInfo, node: NodeInfo, snapshot: Snapshot) -> list[PodInfo] | None:
        lower = [p for p in node.pods.values() if p.priority < pod.priority]
        if not lower:
            return None
        trial = node.clone()
        for p in lower:
            trial.remove_pod(p)
        if not self._fits(pod, trial, snapshot):
            return None
        victims: list[PodInfo] = []
        # Most important first: they are the ones to keep if at all possible.
        for p in sorted(lower, key=lambda q: -q.priority):
            trial.add_pod(p)
            if not self._fits(pod, trial, snapshot):
                trial.remove_pod(p)
                victims.append(p)
        return victims

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
