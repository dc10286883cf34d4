"""The scheduler's cache: nodes with their pods, bound and assumed, and the snapshot taken from it.

Informer events and the scheduler's own assumptions write here. A decision
reads a ``Snapshot`` instead, refreshed before each cycle by re-cloning only
the nodes that changed since the last refresh (a generation per node, a set
of dirty names), so that a cycle costs what changed, not the cluster's size.

An assumed pod is one the scheduler has decided on but whose binding has not
been confirmed by the watch: it is counted on its node at once, so that the
next decision sees it; ``forget_pod`` takes it back when the binding fails,
and the watch's ADDED of the bound pod confirms it.
"""

from __future__ import annotations

import logging

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.policy.v1 import generated_pb2 as policy
from kubelite.scheduler.nodeinfo import DisruptionBudget, NodeInfo, PodInfo, Snapshot

log = logging.getLogger(__name__)


class Cache:
    def __init__(self) -> None:
        self._nodes: dict[str, NodeInfo] = {}
        # pod key -> the PodInfo counted on a node (bound or assumed)
        self._pods: dict[str, PodInfo] = {}
        self._assumed: set[str] = set()
        self._generation = 0
        self._dirty: set[str] = set()
        self._order_changed = True
        # PodDisruptionBudgets by namespace/name, digested; preemption reads them from the snapshot.
        self._pdbs: dict[str, DisruptionBudget] = {}
        self._pdbs_changed = False

    # -- PodDisruptionBudgets ------------------------------------------------------------------------------

    def set_pdb(self, pdb: policy.PodDisruptionBudget) -> None:
        self._pdbs[f"{pdb.metadata.namespace}/{pdb.metadata.name}"] = DisruptionBudget.from_object(pdb)
        self._pdbs_changed = True

    def remove_pdb(self, pdb: policy.PodDisruptionBudget) -> None:
        if self._pdbs.pop(f"{pdb.metadata.namespace}/{pdb.metadata.name}", None) is not None:
            self._pdbs_changed = True

    @property
    def pdb_count(self) -> int:
        return len(self._pdbs)

    # -- nodes -------------------------------------------------------------------------------------------------

    def _touch(self, info: NodeInfo) -> None:
        self._generation += 1
        info.generation = self._generation
        self._dirty.add(info.name)

    def _node(self, name: str) -> NodeInfo:
        info = self._nodes.get(name)
        if info is None:
            # Pods may arrive before their node: keep them on a placeholder without a node object.
            info = self._nodes[name] = NodeInfo(name)
        return info

    def add_node(self, node: core.Node) -> None:
        info = self._node(node.metadata.name)
        if info.node is None:
            self._order_changed = True
        info.set_node(node)
        self._touch(info)

    update_node = add_node

    def remove_node(self, name: str) -> None:
        info = self._nodes.get(name)
        if info is None:
            return
        self._order_changed = True
        if info.pods:
            # Its pods are still known (they will be deleted by the node lifecycle): keep them counted.
            info.node = None
            self._touch(info)
        else:
            del self._nodes[name]
            self._dirty.add(name)

    @property
    def node_count(self) -> int:
        return sum(1 for n in self._nodes.values() if n.node is not None)

    # -- pods --------------------------------------------------------------------------------------------------

    def is_assumed(self, key: str) -> bool:
        return key in self._assumed

    def assume_pod(self, pod: PodInfo) -> None:
        """Counts ``pod`` (with node_name set) on its node before the binding is confirmed."""
        if pod.key in self._pods:
            raise ValueError(f"pod {pod.key} is already in the cache")
        self._add(pod)
        self._assumed.add(pod.key)

    def forget_pod(self, pod: PodInfo) -> None:
        """Takes back an assumption (the binding failed)."""
        if pod.key in self._assumed:
            self._assumed.discard(pod.key)
            self._remove(pod.key)

    def add_pod(self, pod: core.Pod) -> None:
        """A bound pod seen by the watch; confirms an assumption of the same pod."""
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        current = self._pods.get(key)
        info = current.refreshed(pod) if current is not None else None
        if info is None:
            info = PodInfo(pod)
        if current is not None:
            self._assumed.discard(info.key)
            self._remove(info.key)
        self._add(info)

    update_pod = add_pod

    def remove_pod(self, pod: core.Pod) -> None:
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        current = self._pods.get(key)
        if current is not None and (not pod.metadata.uid or current.uid == pod.metadata.uid):
            self._assumed.discard(key)
            self._remove(key)

    def _add(self, pod: PodInfo) -> None:
        info = self._node(pod.node_name)
        info.add_pod(pod)
        self._pods[pod.key] = pod
        self._touch(info)

    def _remove(self, key: str) -> None:
        pod = self._pods.pop(key)
        info = self._nodes.get(pod.node_name)
        if info is None:
            return
        info.remove_pod(pod)
        if info.node is None and not info.pods:
            del self._nodes[info.name]
            self._order_changed = True
            self._dirty.add(info.name)
        else:
            self._touch(info)

    def pod(self, key: str) -> PodInfo | None:
        return self._pods.get(key)

    @property
    def pod_count(self) -> int:
        return len(self._pods)

    # -- snapshot ----------------------------------------------------------------------------------------------

    def update_snapshot(self, snapshot: Snapshot) -> int:
        """Brings ``snapshot`` up to date; returns how many nodes were re-cloned.

        A node joining or leaving rebuilds the node list (O(nodes)); otherwise
        each changed node's clone is swapped in at its position, its row of
        columns rewritten, and only the lists it belongs to are touched.
        """
        dirty, self._dirty = self._dirty, set()
        if self._order_changed:
            for name in dirty:
                info = self._nodes.get(name)
                if info is None:
                    snapshot.node_infos.pop(name, None)
                else:
                    snapshot.node_infos[name] = info.clone()
            # The cache's order (nodes as they registered) is the round-robin order.
            snapshot.rebuild_lists(order_changed=True, order=self._nodes)
            self._order_changed = False
        elif dirty:
            positions = snapshot.positions()
            images_changed = False
            for name in dirty:
                info = self._nodes.get(name)
                i = positions.get(name)
                if info is None:
                    continue
                old = snapshot.node_infos.get(name)
                if old is not None and old.generation == info.generation:
                    continue
                clone = info.clone()
                if i is None:
                    snapshot.node_infos[name] = clone  # a placeholder without a node object: not listed
                    continue
                _, images = snapshot.replace_node(i, clone)
                images_changed = images_changed or images
            if images_changed:
                snapshot.recount_images()
        if self._pdbs_changed:
            snapshot.pdbs = tuple(self._pdbs.values())
            self._pdbs_changed = False
        snapshot.generation = self._generation
        return len(dirty)
