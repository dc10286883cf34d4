"""Filters that look at one node's spec only: NodeUnschedulable, NodeName, NodePorts.

They are the cheapest checks and the most decisive, so they run first.
"""

from __future__ import annotations

import numpy as np

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.scheduler.columns import BoolArray
from kubelite.scheduler.framework import (
    ALL_NODE_EVENTS,
    SKIP,
    ClusterEvent,
    CycleState,
    PreFilterResult,
    Status,
    unresolvable,
    unschedulable,
)
from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo, Snapshot, tolerates_all

UNSCHEDULABLE_TAINT = core.Taint(key="node.kubernetes.io/unschedulable", effect="NoSchedule")


class NodeUnschedulable:
    """Cordoned nodes (spec.unschedulable) take only pods that tolerate the unschedulable taint."""

    name = "NodeUnschedulable"
    REASON = "node(s) were unschedulable"

    def __init__(self) -> None:
        self._status = unresolvable(self.REASON, plugin=self.name)

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if not node.unschedulable or tolerates_all(pod.tolerations, UNSCHEDULABLE_TAINT):
            return None
        return self._status

    def filter_mask(self, state: CycleState, pod: PodInfo, snapshot: Snapshot) -> BoolArray | None:
        cols = snapshot.columns
        if tolerates_all(pod.tolerations, UNSCHEDULABLE_TAINT):
            return np.ones(len(cols.unschedulable), np.bool_)
        return ~cols.unschedulable

    def events_to_register(self) -> frozenset[ClusterEvent]:
        return frozenset({ClusterEvent.NODE_ADD, ClusterEvent.NODE_UPDATE})


class NodeName:
    """A pod that names its node (spec.nodeName set before scheduling) fits only there."""

    name = "NodeName"
    REASON = "node(s) didn't match the requested node name"

    def __init__(self) -> None:
        self._status = unresolvable(self.REASON, plugin=self.name)

    def pre_filter(self, state: CycleState, pod: PodInfo,
                   snapshot: Snapshot) -> tuple[PreFilterResult | None, Status | None]:
        if not pod.node_name:
            return None, SKIP
        return PreFilterResult(frozenset({pod.node_name})), None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if node.name == pod.node_name:
            return None
        return self._status

    def events_to_register(self) -> frozenset[ClusterEvent]:
        return frozenset({ClusterEvent.NODE_ADD})


class NodePorts:
    """Two pods cannot take the same host port, protocol and address on one node."""

    name = "NodePorts"
    REASON = "node(s) didn't have free ports for the requested pod ports"

    def __init__(self) -> None:
        self._status = unschedulable(self.REASON, plugin=self.name)

    def pre_filter(self, state: CycleState, pod: PodInfo,
                   snapshot: Snapshot) -> tuple[PreFilterResult | None, Status | None]:
        return None, (None if pod.host_ports else SKIP)

    def filter_mask(self, state: CycleState, pod: PodInfo, snapshot: Snapshot) -> BoolArray | None:
        # Only nodes that already have host ports in use need a look.
        mask = ~snapshot.columns.has_ports
        nodes = snapshot.node_list
        for i in np.flatnonzero(snapshot.columns.has_ports):
            mask[i] = self.filter(state, pod, nodes[i]) is None
        return mask

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        used = node.used_ports
        if not used:
            return None
        for want in pod.host_ports:
            for have in used:
                if want.conflicts(have):
                    return self._status
        return None

    def events_to_register(self) -> frozenset[ClusterEvent]:
        return frozenset({ClusterEvent.POD_DELETE, *ALL_NODE_EVENTS})
