"""PodTopologySpread: keep matching pods evenly spread over topology domains.

For a DoNotSchedule constraint a node is feasible when placing the pod there
leaves the skew (pods in the node's domain, plus this one, minus the fewest
in any eligible domain) within maxSkew. Eligible domains are those of nodes
that satisfy the pod's nodeSelector/affinity (nodeAffinityPolicy Honor, the
default) and, with nodeTaintsPolicy Honor, whose taints it tolerates. With
minDomains, fewer eligible domains than asked count the minimum as zero.

ScheduleAnyway constraints score instead: fewer matching pods in the node's
domain is better, each constraint weighted by log(number of domains + 2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
from kubelite.scheduler.nodeinfo import LABEL_HOSTNAME, NodeInfo, PodInfo, Snapshot, SpreadConstraint, tolerates_all
from kubelite.scheduler.plugins.nodeaffinity import node_matches_pod

MISSING_LABEL_REASON = "node(s) didn't match pod topology spread constraints (missing required label)"
SKEW_REASON = "node(s) didn't match pod topology spread constraints"


def count_matching(node: NodeInfo, c: SpreadConstraint, namespace: str) -> int:
    n = 0
    for p in node.pods.values():
        if p.namespace == namespace and not p.terminating and c.selector.matches(p.labels):
            n += 1
    return n


def _eligible(pod: PodInfo, node: NodeInfo, c: SpreadConstraint) -> bool:
    if c.honor_node_affinity and pod.has_node_constraints and not node_matches_pod(pod, node):
        return False
    if c.honor_node_taints:
        for taint in node.taints:
            if taint.effect in ("NoSchedule", "NoExecute") and not tolerates_all(pod.tolerations, taint):
                return False
    return True


@dataclass
class _FilterState:
    constraints: tuple[SpreadConstraint, ...]
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    minimum: list[int] = field(default_factory=list)
    domains: list[int] = field(default_factory=list)
    self_match: list[int] = field(default_factory=list)


class PodTopologySpread:
    name = "PodTopologySpread"

    def __init__(self) -> None:
        self._missing = unresolvable(MISSING_LABEL_REASON, plugin=self.name)
        self._skew = unschedulable(SKEW_REASON, plugin=self.name)

    def pre_filter(self, state: CycleState, pod: PodInfo,
                   snapshot: Snapshot) -> tuple[PreFilterResult | None, Status | None]:
        hard = tuple(c for c in pod.spread_constraints if c.when_unsatisfiable == "DoNotSchedule")
        if not hard:
            return None, SKIP
        s = _FilterState(hard)
        keys = [c.topology_key for c in hard]
        nodes = snapshot.node_list
        if pod.has_node_constraints or any(c.honor_node_taints for c in hard):
            candidates: Sequence[NodeInfo] = nodes
        else:
            # Every node with all the keys is eligible: its domains come from the label columns,
            # and only nodes with pods need counting.
            codes = [snapshot.label_codes(k) for k in keys]
            has_keys = np.logical_and.reduce([c >= 0 for c, _ in codes])
            for c, (k_codes, index) in zip(hard, codes, strict=True):
                values = list(index)
                for code in np.unique(k_codes[has_keys]).tolist():
                    s.counts[(c.topology_key, values[code])] = 0
            candidates = [nodes[i] for i in np.flatnonzero(has_keys & (snapshot.columns.num_pods > 0)).tolist()]
        for node in candidates:
            labels = node.labels
            if any(k not in labels for k in keys):
                continue
            for c in hard:
                if not _eligible(pod, node, c):
                    continue
                pair = (c.topology_key, labels[c.topology_key])
                s.counts[pair] = s.counts.get(pair, 0) + count_matching(node, c, pod.namespace)
        for c in hard:
            per_domain = [n for (k, _), n in s.counts.items() if k == c.topology_key]
            s.domains.append(len(per_domain))
            s.minimum.append(min(per_domain) if per_domain else 0)
            s.self_match.append(1 if c.selector.matches(pod.labels) else 0)
        state.write(self.name, s)
        return None, None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        s: _FilterState = state.read(self.name)
        labels = node.labels
        for i, c in enumerate(s.constraints):
            value = labels.get(c.topology_key)
            if value is None:
                return self._missing
            minimum = s.minimum[i]
            if c.min_domains is not None and s.domains[i] < c.min_domains:
                minimum = 0
            skew = s.counts.get((c.topology_key, value), 0) + s.self_match[i] - minimum
            if skew > c.max_skew:
                return self._skew
        return None

    def filter_mask(self, state: CycleState, pod: PodInfo, snapshot: Snapshot) -> BoolArray | None:
        s: _FilterState = state.read(self.name)
        mask: BoolArray = np.ones(len(snapshot.node_list), np.bool_)
        for i, c in enumerate(s.constraints):
            codes, _ = snapshot.label_codes(c.topology_key)
            counts = snapshot.per_node(c.topology_key, s.counts)
            minimum = s.minimum[i]
            if c.min_domains is not None and s.domains[i] < c.min_domains:
                minimum = 0
            mask &= (codes >= 0) & (counts + s.self_match[i] - minimum <= c.max_skew)
        return mask

    # -- score -------------------------------------------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo],
                  snapshot: Snapshot) -> Status | None:
        soft = tuple(c for c in pod.spread_constraints if c.when_unsatisfiable == "ScheduleAnyway")
        if not soft:
            return SKIP
        keys = [c.topology_key for c in soft]
        ignored = {n.name for n in nodes if any(k not in n.labels for k in keys)}
        counts: dict[tuple[str, str], int] = {}
        sizes = []
        for c in soft:
            values = {n.labels[c.topology_key] for n in nodes if n.name not in ignored}
            sizes.append(len(values))
            if c.topology_key != LABEL_HOSTNAME:
                for v in values:
                    counts[(c.topology_key, v)] = 0
        for node in snapshot.node_list:
            labels = node.labels
            if any(k not in labels for k in keys):
                continue
            for c in soft:
                pair = (c.topology_key, labels[c.topology_key])
                if pair in counts and _eligible(pod, node, c):
                    counts[pair] += count_matching(node, c, pod.namespace)
        weights = [math.log(size + 2) for size in sizes]
        state.write(self.name + "/score", (soft, ignored, counts, weights))
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        soft, ignored, counts, weights = state.read(self.name + "/score")
        if node.name in ignored:
            return 0
        total = 0.0
        for c, weight in zip(soft, weights, strict=True):
            value = node.labels[c.topology_key]
            if c.topology_key == LABEL_HOSTNAME:
                cnt = count_matching(node, c, pod.namespace)
            else:
                cnt = counts.get((c.topology_key, value), 0)
            total += cnt * weight + (c.max_skew - 1)
        return round(total)

    def normalize_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo],
                        scores: list[int]) -> None:
        _, ignored, _, _ = state.read(self.name + "/score")
        valid = [s for n, s in zip(nodes, scores, strict=True) if n.name not in ignored]
        if not valid:
            return
        lo, hi = min(valid), max(valid)
        for i, node in enumerate(nodes):
            if node.name in ignored:
                scores[i] = 0
            elif hi == 0:
                scores[i] = MAX_NODE_SCORE
            else:
                scores[i] = MAX_NODE_SCORE * (hi + lo - scores[i]) // hi

    def events_to_register(self) -> frozenset[ClusterEvent]:
        return frozenset({ClusterEvent.POD_ADD, ClusterEvent.POD_DELETE, ClusterEvent.POD_UPDATE,
                          ClusterEvent.NODE_ADD, ClusterEvent.NODE_UPDATE})
