"""NodeResourcesFit (filter and score) and NodeResourcesBalancedAllocation (score).

The filter compares the pod's effective request (see ``pod_requests``) with
what the node has left after the pods bound or assumed there. Scores follow
Kubernetes' formulas with integer arithmetic, so that the same cluster gives
the same numbers as kube-scheduler:

* LeastAllocated: per resource (allocatable - requested) * 100 / allocatable,
  averaged with the resources' weights: spreads pods;
* MostAllocated: requested * 100 / allocatable, weighted: packs pods;
* BalancedAllocation: (1 - standard deviation of requested/allocatable over
  the resources) * 100: prefers nodes whose cpu and memory fill evenly.

LeastAllocated and MostAllocated count the non-zero defaults for containers
that request nothing; BalancedAllocation counts the real requests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kubelite.scheduler.columns import BoolArray, IntArray
from kubelite.scheduler.framework import (
    ALL_NODE_EVENTS,
    MAX_NODE_SCORE,
    SKIP,
    ClusterEvent,
    CycleState,
    PreFilterResult,
    Status,
    unschedulable,
)
from kubelite.scheduler.nodeinfo import CPU, MEMORY, NodeInfo, PodInfo, Snapshot

LEAST_ALLOCATED = "LeastAllocated"
MOST_ALLOCATED = "MostAllocated"
SCORING_STRATEGIES = (LEAST_ALLOCATED, MOST_ALLOCATED)

DEFAULT_RESOURCES: tuple[tuple[str, int], ...] = ((CPU, 1), (MEMORY, 1))


@dataclass(frozen=True)
class FitArgs:
    strategy: str = LEAST_ALLOCATED
    resources: tuple[tuple[str, int], ...] = DEFAULT_RESOURCES
    ignored_resources: frozenset[str] = frozenset()
    # Resources whose name's domain (before the "/") is listed are ignored.
    ignored_resource_groups: frozenset[str] = frozenset()


def _node_amounts(node: NodeInfo, pod: PodInfo, resources: Sequence[tuple[str, int]],
                  non_zero: bool) -> tuple[list[int], list[int]]:
    requested: list[int] = []
    allocatable: list[int] = []
    for name, _ in resources:
        if name == CPU:
            req = (node.non_zero_cpu + pod.non_zero_cpu) if non_zero else (
                node.requested.milli_cpu + pod.requests.milli_cpu)
        elif name == MEMORY:
            req = (node.non_zero_memory + pod.non_zero_memory) if non_zero else (
                node.requested.memory + pod.requests.memory)
        else:
            req = node.requested.get(name) + pod.requests.get(name)
        requested.append(req)
        allocatable.append(node.allocatable.get(name))
    return requested, allocatable


class NodeResourcesFit:
    name = "NodeResourcesFit"

    def __init__(self, args: FitArgs | None = None) -> None:
        self.args = args or FitArgs()
        self._too_many_pods = unschedulable("Too many pods", plugin=self.name)
        self._weights = [w for _, w in self.args.resources]
        self._most = self.args.strategy == MOST_ALLOCATED
        self._cpu_mem_only = tuple(n for n, _ in self.args.resources) in ((CPU, MEMORY), (MEMORY, CPU))

    def _ignored(self, resource: str) -> bool:
        if resource in self.args.ignored_resources:
            return True
        domain, sep, _ = resource.partition("/")
        return bool(sep) and domain in self.args.ignored_resource_groups

    def pre_filter(self, state: CycleState, pod: PodInfo,
                   snapshot: Snapshot) -> tuple[PreFilterResult | None, Status | None]:
        return None, None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if len(node.pods) + 1 > node.allowed_pods:
            # Kubernetes reports every shortfall of the node, not just the first.
            reasons = ["Too many pods", *self._insufficient(pod, node)]
            return unschedulable(*reasons, plugin=self.name) if len(reasons) > 1 else self._too_many_pods
        req = pod.requests
        alloc, used = node.allocatable, node.requested
        if (req.milli_cpu and req.milli_cpu > alloc.milli_cpu - used.milli_cpu) or (
                req.memory and req.memory > alloc.memory - used.memory) or (
                req.ephemeral_storage and req.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage):
            return unschedulable(*self._insufficient(pod, node), plugin=self.name)
        if req.scalar:
            reasons = self._insufficient(pod, node)
            if reasons:
                return unschedulable(*reasons, plugin=self.name)
        return None

    def filter_mask(self, state: CycleState, pod: PodInfo, snapshot: Snapshot) -> BoolArray | None:
        req = pod.requests
        c = snapshot.columns
        mask: BoolArray = c.num_pods + 1 <= c.allowed_pods
        if req.milli_cpu:
            mask &= req.milli_cpu <= c.alloc_cpu - c.req_cpu
        if req.memory:
            mask &= req.memory <= c.alloc_mem - c.req_mem
        if req.ephemeral_storage:
            mask &= req.ephemeral_storage <= c.alloc_eph - c.req_eph
        if any(req.scalar.values()):
            nodes = snapshot.node_list
            for i in np.flatnonzero(mask):
                mask[i] = not self._insufficient(pod, nodes[i])
        return mask

    def _insufficient(self, pod: PodInfo, node: NodeInfo) -> list[str]:
        req, alloc, used = pod.requests, node.allocatable, node.requested
        reasons = []
        if req.milli_cpu and req.milli_cpu > alloc.milli_cpu - used.milli_cpu:
            reasons.append("Insufficient cpu")
        if req.memory and req.memory > alloc.memory - used.memory:
            reasons.append("Insufficient memory")
        if req.ephemeral_storage and req.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage:
            reasons.append("Insufficient ephemeral-storage")
        for name, amount in sorted(req.scalar.items()):
            if amount and not self._ignored(name) and amount > alloc.scalar.get(name, 0) - used.scalar.get(name, 0):
                reasons.append(f"Insufficient {name}")
        return reasons

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        if self._cpu_mem_only:
            # The common case, unrolled: it runs once per pod and feasible node.
            total = 0
            weight_sum = 0
            for name, weight in self.args.resources:
                if name == CPU:
                    cap, req = node.allocatable.milli_cpu, node.non_zero_cpu + pod.non_zero_cpu
                else:
                    cap, req = node.allocatable.memory, node.non_zero_memory + pod.non_zero_memory
                if cap == 0:
                    continue
                if self._most:
                    s = min(req, cap) * MAX_NODE_SCORE // cap
                else:
                    s = 0 if req > cap else (cap - req) * MAX_NODE_SCORE // cap
                total += s * weight
                weight_sum += weight
            return total // weight_sum if weight_sum else 0
        requested, allocatable = _node_amounts(node, pod, self.args.resources, non_zero=True)
        return resource_score(requested, allocatable, self._weights, most=self._most)

    def score_batch(self, state: CycleState, pod: PodInfo, snapshot: Snapshot, idx: IntArray) -> IntArray | None:
        if not self._cpu_mem_only:
            return None
        c = snapshot.columns
        total = np.zeros(len(idx), np.int64)
        weight_sum = np.zeros(len(idx), np.int64)
        for name, weight in self.args.resources:
            if name == CPU:
                cap, req = c.alloc_cpu[idx], c.nz_cpu[idx] + pod.non_zero_cpu
            else:
                cap, req = c.alloc_mem[idx], c.nz_mem[idx] + pod.non_zero_memory
            valid = cap > 0
            safe = np.where(valid, cap, 1)
            if self._most:
                s = np.minimum(req, cap) * MAX_NODE_SCORE // safe
            else:
                s = np.where(req > cap, 0, (cap - req) * MAX_NODE_SCORE // safe)
            total += np.where(valid, s * weight, 0)
            weight_sum += np.where(valid, weight, 0)
        result: IntArray = np.where(weight_sum > 0, total // np.where(weight_sum > 0, weight_sum, 1), 0)
        return result

    def events_to_register(self) -> frozenset[ClusterEvent]:
        return frozenset({ClusterEvent.POD_DELETE, *ALL_NODE_EVENTS})


def resource_score(requested: Sequence[int], allocatable: Sequence[int], weights: Sequence[int], *,
                   most: bool) -> int:
    """LeastAllocated (or MostAllocated) over parallel lists; resources a node lacks are left out."""
    total = 0
    weight_sum = 0
    for req, cap, weight in zip(requested, allocatable, weights, strict=True):
        if cap == 0:
            continue
        if most:
            s = min(req, cap) * MAX_NODE_SCORE // cap
        else:
            s = 0 if req > cap else (cap - req) * MAX_NODE_SCORE // cap
        total += s * weight
        weight_sum += weight
    return total // weight_sum if weight_sum else 0


def balanced_score(requested: Sequence[int], allocatable: Sequence[int]) -> int:
    fractions = [min(req / cap, 1.0) for req, cap in zip(requested, allocatable, strict=True) if cap]
    if len(fractions) == 2:
        std = abs(fractions[0] - fractions[1]) / 2
    elif len(fractions) > 2:
        mean = sum(fractions) / len(fractions)
        std = math.sqrt(sum((f - mean) ** 2 for f in fractions) / len(fractions))
    else:
        std = 0.0
    return int((1 - std) * MAX_NODE_SCORE)


class BalancedAllocation:
    name = "NodeResourcesBalancedAllocation"

    def __init__(self, resources: tuple[tuple[str, int], ...] = DEFAULT_RESOURCES) -> None:
        self.resources = resources

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo],
                  snapshot: Snapshot) -> Status | None:
        # A pod that requests none of the resources cannot unbalance a node.
        if all(pod.requests.get(name) == 0 for name, _ in self.resources):
            return SKIP
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        requested, allocatable = _node_amounts(node, pod, self.resources, non_zero=False)
        return balanced_score(requested, allocatable)

    def score_batch(self, state: CycleState, pod: PodInfo, snapshot: Snapshot, idx: IntArray) -> IntArray | None:
        if tuple(n for n, _ in self.resources) not in ((CPU, MEMORY), (MEMORY, CPU)):
            return None
        c = snapshot.columns
        cap_cpu, cap_mem = c.alloc_cpu[idx], c.alloc_mem[idx]
        f_cpu = np.minimum((c.req_cpu[idx] + pod.requests.milli_cpu) / np.where(cap_cpu > 0, cap_cpu, 1), 1.0)
        f_mem = np.minimum((c.req_mem[idx] + pod.requests.memory) / np.where(cap_mem > 0, cap_mem, 1), 1.0)
        # With one of the two missing on a node there is nothing to balance: std 0.
        std = np.where((cap_cpu > 0) & (cap_mem > 0), np.abs(f_cpu - f_mem) / 2, 0.0)
        result: IntArray = ((1 - std) * MAX_NODE_SCORE).astype(np.int64)
        return result

    def events_to_register(self) -> frozenset[ClusterEvent]:
        return frozenset()
