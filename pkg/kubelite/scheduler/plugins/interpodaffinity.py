"""InterPodAffinity: pods that must (or prefer to) share or avoid a topology domain with others.

PreFilter counts, per (topologyKey, value), the existing pods that match the
incoming pod's required terms, and the existing pods whose own required
anti-affinity rejects the incoming pod; Filter then only looks the node's
labels up in those counts. A required affinity term that matches no pod
anywhere is satisfied when the incoming pod matches it itself, so that the
first replica of a group that wants to be together can start.

Scoring adds, per domain, the weights of preferred terms that match (and
subtracts those of preferred anti-affinity), in both directions: the incoming
pod's terms over existing pods, and existing pods' terms over the incoming
pod (their required affinity counting ``hardPodAffinityWeight``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from kubelite.scheduler.columns import BoolArray
from kubelite.scheduler.framework import (
    MAX_NODE_SCORE,
    SKIP,
    ClusterEvent,
    CycleState,
    PreFilterResult,
    Status,
    unresolvable,
    unschedulable,
)
from kubelite.scheduler.nodeinfo import AffinityTerm, NodeInfo, PodInfo, Snapshot

Pair = tuple[str, str]

AFFINITY_REASON = "node(s) didn't match pod affinity rules"
ANTI_AFFINITY_REASON = "node(s) didn't match pod anti-affinity rules"
EXISTING_ANTI_AFFINITY_REASON = "node(s) didn't satisfy existing pods anti-affinity rules"


@dataclass
class _FilterState:
    existing_anti: dict[Pair, int] = field(default_factory=dict)
    affinity: dict[Pair, int] = field(default_factory=dict)
    anti: dict[Pair, int] = field(default_factory=dict)


def _bump(counts: dict[Pair, int], node: NodeInfo, key: str, by: int) -> None:
    value = node.labels.get(key)
    if value is not None:
        pair = (key, value)
        counts[pair] = counts.get(pair, 0) + by


def _matches_all(terms: Iterable[AffinityTerm], pod: PodInfo) -> bool:
    return all(t.matches(pod) for t in terms)


@dataclass(frozen=True)
class InterPodAffinityArgs:
    hard_pod_affinity_weight: int = 1


class InterPodAffinity:
    name = "InterPodAffinity"

    def __init__(self, args: InterPodAffinityArgs | None = None) -> None:
        self.args = args or InterPodAffinityArgs()
        self._affinity = unresolvable(AFFINITY_REASON, plugin=self.name)
        self._anti = unschedulable(ANTI_AFFINITY_REASON, plugin=self.name)
        self._existing = unschedulable(EXISTING_ANTI_AFFINITY_REASON, plugin=self.name)

    # -- filter ------------------------------------------------------------------------------------------------

    def pre_filter(self, state: CycleState, pod: PodInfo,
                   snapshot: Snapshot) -> tuple[PreFilterResult | None, Status | None]:
        s = _FilterState()
        for term, counts in snapshot.anti_terms.items():
            if term.matches(pod):
                if not s.existing_anti:
                    s.existing_anti = dict(counts)
                else:
                    for pair, n in counts.items():
                        s.existing_anti[pair] = s.existing_anti.get(pair, 0) + n
        if not pod.affinity_terms and not pod.anti_affinity_terms:
            if not s.existing_anti:
                return None, SKIP
        else:
            # Existing pods that match: through the label index when a term pins a label, else all of them.
            if pod.affinity_terms:
                for existing, node in self._candidates(snapshot, pod.affinity_terms[0]):
                    if _matches_all(pod.affinity_terms, existing):
                        for term in pod.affinity_terms:
                            _bump(s.affinity, node, term.topology_key, 1)
            for term in pod.anti_affinity_terms:
                for existing, node in self._candidates(snapshot, term):
                    if term.matches(existing):
                        _bump(s.anti, node, term.topology_key, 1)
        state.write(self.name, s)
        return None, None

    @staticmethod
    def _candidates(snapshot: Snapshot, term: AffinityTerm) -> list[tuple[PodInfo, NodeInfo]]:
        found = snapshot.candidates(term.selector)
        if found is not None:
            return found
        nodes = snapshot.node_list
        return [(p, nodes[i]) for i in np.flatnonzero(snapshot.columns.num_pods > 0).tolist()
                for p in nodes[i].pods.values()]

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        # Kubernetes' order: the pod's affinity, its anti-affinity, then existing pods' anti-affinity.
        s: _FilterState = state.read(self.name)
        labels = node.labels
        if pod.affinity_terms:
            pods_exist = True
            for term in pod.affinity_terms:
                value = labels.get(term.topology_key)
                if value is None:
                    return self._affinity
                if s.affinity.get((term.topology_key, value), 0) <= 0:
                    pods_exist = False
            if not pods_exist and (s.affinity or not _matches_all(pod.affinity_terms, pod)):
                return self._affinity
        for term in pod.anti_affinity_terms:
            anti_value = labels.get(term.topology_key)
            if anti_value is not None and s.anti.get((term.topology_key, anti_value), 0) > 0:
                return self._anti
        if s.existing_anti:
            for key, label in labels.items():
                if s.existing_anti.get((key, label), 0) > 0:
                    return self._existing
        return None

    def filter_mask(self, state: CycleState, pod: PodInfo, snapshot: Snapshot) -> BoolArray | None:
        s: _FilterState = state.read(self.name)
        mask: BoolArray = np.ones(len(snapshot.node_list), np.bool_)

        def hit(key: str, counts: dict[Pair, int]) -> BoolArray:
            """Nodes whose value for ``key`` has a positive count."""
            result: BoolArray = snapshot.per_node(key, counts) > 0
            return result

        if pod.affinity_terms:
            labelled = np.ones(len(mask), np.bool_)
            exist = np.ones(len(mask), np.bool_)
            for term in pod.affinity_terms:
                labelled &= snapshot.label_codes(term.topology_key)[0] >= 0
                exist &= hit(term.topology_key, s.affinity)
            if s.affinity or not _matches_all(pod.affinity_terms, pod):
                mask &= labelled & exist
            else:
                mask &= labelled
        for term in pod.anti_affinity_terms:
            mask &= ~hit(term.topology_key, s.anti)
        for key in {k for (k, _), n in s.existing_anti.items() if n > 0}:
            mask &= ~hit(key, s.existing_anti)
        return mask

    # -- score -------------------------------------------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo],
                  snapshot: Snapshot) -> Status | None:
        has_preferred = bool(pod.preferred_affinity_terms or pod.preferred_anti_affinity_terms)
        if not has_preferred and not snapshot.have_pods_with_affinity:
            return SKIP
        scores: dict[str, dict[str, int]] = {}

        def add(node: NodeInfo, key: str, weight: int) -> None:
            value = node.labels.get(key)
            if value is not None and weight:
                per_key = scores.setdefault(key, {})
                per_key[value] = per_key.get(value, 0) + weight

        hard = self.args.hard_pod_affinity_weight
        candidates = snapshot.node_list if has_preferred else snapshot.have_pods_with_affinity
        for node in candidates:
            existing_pods = node.pods.values() if has_preferred else node.pods_with_affinity
            for existing in existing_pods:
                for t in pod.preferred_affinity_terms:
                    if t.matches(existing):
                        add(node, t.topology_key, t.weight)
                for t in pod.preferred_anti_affinity_terms:
                    if t.matches(existing):
                        add(node, t.topology_key, -t.weight)
                if not existing.has_affinity:
                    continue
                if hard > 0:
                    for t in existing.affinity_terms:
                        if t.matches(pod):
                            add(node, t.topology_key, hard)
                for t in existing.preferred_affinity_terms:
                    if t.matches(pod):
                        add(node, t.topology_key, t.weight)
                for t in existing.preferred_anti_affinity_terms:
                    if t.matches(pod):
                        add(node, t.topology_key, -t.weight)
        if not scores:
            return SKIP
        state.write(self.name + "/score", scores)
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        scores: dict[str, dict[str, int]] = state.read(self.name + "/score")
        total = 0
        labels = node.labels
        for key, per_value in scores.items():
            value = labels.get(key)
            if value is not None:
                total += per_value.get(value, 0)
        return total

    def normalize_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo],
                        scores: list[int]) -> None:
        if not scores:
            return
        lo, hi = min(scores), max(scores)
        diff = hi - lo
        for i, s in enumerate(scores):
            scores[i] = int(MAX_NODE_SCORE * ((s - lo) / diff)) if diff > 0 else 0

    def events_to_register(self) -> frozenset[ClusterEvent]:
        return frozenset({ClusterEvent.POD_ADD, ClusterEvent.POD_UPDATE, ClusterEvent.POD_DELETE,
                          ClusterEvent.NODE_ADD, ClusterEvent.NODE_UPDATE})
