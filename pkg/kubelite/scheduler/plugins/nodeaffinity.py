"""NodeAffinity (nodeSelector and required terms as a filter, preferred terms as a score),
TaintToleration (NoSchedule/NoExecute filter, PreferNoSchedule score) and ImageLocality.

These are the plugins that read only the node's labels, taints and images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kubelite.scheduler.columns import BoolArray, IntArray, default_normalize_batch
from kubelite.scheduler.framework import (
    ALL_NODE_EVENTS,
    MAX_NODE_SCORE,
    SKIP,
    ClusterEvent,
    CycleState,
    PreFilterResult,
    Status,
    default_normalize_score,
    unresolvable,
)
from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo, Snapshot, tolerates_all


def node_matches_pod(pod: PodInfo, node: NodeInfo) -> bool:
    """nodeSelector AND (any of the required terms): what NodeAffinity's filter and spreading honour."""
    labels = node.labels
    for key, value in pod.node_selector.items():
        if labels.get(key) != value:
            return False
    terms = pod.required_node_terms
    if terms is not None:
        return any(t.matches(node) for t in terms)
    return True


class NodeAffinity:
    name = "NodeAffinity"
    REASON = "node(s) didn't match Pod's node affinity/selector"

    def __init__(self) -> None:
        self._status = unresolvable(self.REASON, plugin=self.name)

    def pre_filter(self, state: CycleState, pod: PodInfo,
                   snapshot: Snapshot) -> tuple[PreFilterResult | None, Status | None]:
        if not pod.has_node_constraints:
            return None, SKIP
        terms = pod.required_node_terms
        if terms:
            # When every term pins metadata.name with In, only those nodes are worth filtering.
            names: set[str] = set()
            for term in terms:
                pinned = [r for r in term.fields if r.key == "metadata.name" and r.operator == "In"]
                if not pinned:
                    return None, None
                allowed = set(pinned[0].values)
                for r in pinned[1:]:
                    allowed &= r.values
                names |= allowed
            return PreFilterResult(frozenset(names)), None
        return None, None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        return None if node_matches_pod(pod, node) else self._status

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo],
                  snapshot: Snapshot) -> Status | None:
        return None if pod.preferred_node_terms else SKIP

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        return sum(weight for weight, term in pod.preferred_node_terms if term.matches(node))

    def normalize_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo],
                        scores: list[int]) -> None:
        default_normalize_score(MAX_NODE_SCORE, False, scores)

    def events_to_register(self) -> frozenset[ClusterEvent]:
        return ALL_NODE_EVENTS


class TaintToleration:
    name = "TaintToleration"

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        for taint in node.taints:
            if taint.effect in ("NoSchedule", "NoExecute") and not tolerates_all(pod.tolerations, taint):
                return unresolvable(f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}",
                                    plugin=self.name)
        return None

    def filter_mask(self, state: CycleState, pod: PodInfo, snapshot: Snapshot) -> BoolArray | None:
        hard = snapshot.columns.hard_taints
        mask = ~hard
        nodes = snapshot.node_list
        for i in np.flatnonzero(hard):
            mask[i] = self.filter(state, pod, nodes[i]) is None
        return mask

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo],
                  snapshot: Snapshot) -> Status | None:
        # Only tolerations that could tolerate a PreferNoSchedule taint matter for the score.
        state.write(self.name, tuple(t for t in pod.tolerations if t.effect in ("", "PreferNoSchedule")))
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        if not node.taints:
            return 0
        tolerations = state.read(self.name)
        return sum(1 for t in node.taints if t.effect == "PreferNoSchedule" and not tolerates_all(tolerations, t))

    def score_batch(self, state: CycleState, pod: PodInfo, snapshot: Snapshot, idx: IntArray) -> IntArray | None:
        soft = snapshot.columns.soft_taints[idx]
        out = np.zeros(len(idx), np.int64)
        nodes = snapshot.node_list
        for j in np.flatnonzero(soft):
            out[j] = self.score(state, pod, nodes[idx[j]])
        return out

    def normalize_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo],
                        scores: list[int]) -> None:
        # Fewer intolerable taints is better.
        default_normalize_score(MAX_NODE_SCORE, True, scores)

    def normalize_batch(self, state: CycleState, pod: PodInfo, scores: IntArray) -> IntArray:
        return default_normalize_batch(MAX_NODE_SCORE, True, scores)

    def events_to_register(self) -> frozenset[ClusterEvent]:
        return ALL_NODE_EVENTS


MB = 1024 * 1024
# Below this sum of image sizes a node gets no credit (small images pull fast) ...
MIN_THRESHOLD = 23 * MB
# ... and above this, per container, no more credit.
MAX_CONTAINER_THRESHOLD = 1000 * MB


class ImageLocality:
    """Prefers nodes that already hold the pod's images, scaled by how widely each image is spread
    (an image on every node says little about any one of them)."""

    name = "ImageLocality"

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo],
                  snapshot: Snapshot) -> Status | None:
        images = [(image, snapshot.image_nodes[image]) for image in pod.images if image in snapshot.image_nodes]
        if not images:
            return SKIP
        state.write(self.name, (images, len(snapshot.node_list)))
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        images, total_nodes = state.read(self.name)
        sizes = node.image_sizes
        total = 0
        for image, num_nodes in images:
            size = sizes.get(image)
            if size is not None:
                total += int(size * (num_nodes / total_nodes))
        max_threshold = MAX_CONTAINER_THRESHOLD * pod.num_containers
        total = min(max(total, MIN_THRESHOLD), max_threshold)
        return MAX_NODE_SCORE * (total - MIN_THRESHOLD) // (max_threshold - MIN_THRESHOLD)

    def events_to_register(self) -> frozenset[ClusterEvent]:
        return frozenset()
