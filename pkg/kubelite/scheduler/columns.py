"""The snapshot's numbers as columns, so that the hot checks run over all nodes at once.

At 5,000 nodes a decision filters about 500 nodes and scores them with
several plugins: one Python call per plugin and node is most of a
millisecond per pod. The checks that every pod needs (resources, cordons,
taints) are comparisons of numbers, so the snapshot also keeps those numbers
as numpy arrays in node-list order, updated row by row for the nodes that
changed. Plugins that can answer over the arrays implement ``filter_mask`` /
``score_batch`` beside their per-node methods; the two must agree exactly,
and a unit test compares them on random clusters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from kubelite.scheduler.nodeinfo import NodeInfo

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def default_normalize_batch(max_priority: int, reverse: bool, scores: IntArray) -> IntArray:
    """``framework.default_normalize_score`` over an array (scores are non-negative: the same integers)."""
    highest = int(scores.max()) if len(scores) else 0
    if highest == 0:
        return np.full(len(scores), max_priority, np.int64) if reverse else scores
    scaled: IntArray = max_priority * scores // highest
    return max_priority - scaled if reverse else scaled


class Columns:
    __slots__ = (
        "alloc_cpu",
        "alloc_eph",
        "alloc_mem",
        "allowed_pods",
        "hard_taints",
        "has_ports",
        "has_scalar",
        "num_pods",
        "nz_cpu",
        "nz_mem",
        "req_cpu",
        "req_eph",
        "req_mem",
        "soft_taints",
        "unschedulable",
    )

    def __init__(self, nodes: Sequence[NodeInfo]) -> None:
        n = len(nodes)
        self.alloc_cpu: IntArray = np.zeros(n, np.int64)
        self.alloc_mem: IntArray = np.zeros(n, np.int64)
        self.alloc_eph: IntArray = np.zeros(n, np.int64)
        self.allowed_pods: IntArray = np.zeros(n, np.int64)
        self.req_cpu: IntArray = np.zeros(n, np.int64)
        self.req_mem: IntArray = np.zeros(n, np.int64)
        self.req_eph: IntArray = np.zeros(n, np.int64)
        self.num_pods: IntArray = np.zeros(n, np.int64)
        self.nz_cpu: IntArray = np.zeros(n, np.int64)
        self.nz_mem: IntArray = np.zeros(n, np.int64)
        self.unschedulable: BoolArray = np.zeros(n, np.bool_)
        self.hard_taints: BoolArray = np.zeros(n, np.bool_)
        self.soft_taints: BoolArray = np.zeros(n, np.bool_)
        self.has_ports: BoolArray = np.zeros(n, np.bool_)
        self.has_scalar: BoolArray = np.zeros(n, np.bool_)
        for i, node in enumerate(nodes):
            self.set_row(i, node)

    def set_row(self, i: int, node: NodeInfo) -> None:
        alloc, req = node.allocatable, node.requested
        self.alloc_cpu[i] = alloc.milli_cpu
        self.alloc_mem[i] = alloc.memory
        self.alloc_eph[i] = alloc.ephemeral_storage
        self.allowed_pods[i] = node.allowed_pods
        self.req_cpu[i] = req.milli_cpu
        self.req_mem[i] = req.memory
        self.req_eph[i] = req.ephemeral_storage
        self.num_pods[i] = len(node.pods)
        self.nz_cpu[i] = node.non_zero_cpu
        self.nz_mem[i] = node.non_zero_memory
        self.unschedulable[i] = node.unschedulable
        self.hard_taints[i] = any(t.effect in ("NoSchedule", "NoExecute") for t in node.taints)
        self.soft_taints[i] = any(t.effect == "PreferNoSchedule" for t in node.taints)
        self.has_ports[i] = bool(node.used_ports)
        self.has_scalar[i] = bool(alloc.scalar or req.scalar)
