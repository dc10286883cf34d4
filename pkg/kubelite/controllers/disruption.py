"""The disruption controller: PodDisruptionBudget status, which evictions trust.

The API server's eviction check (pods/eviction) only reads
``status.disruptionsAllowed`` and takes one from it in the same write; this
controller is what keeps that number true: from the pods the budget selects
it computes how many are expected, how many must stay healthy, how many are
healthy now, and so how many may go. Pods the API server has just evicted sit
in ``status.disruptedPods`` until they are seen gone (or two minutes pass), so
a burst of evictions cannot all be counted as still healthy.

How many pods are expected follows Kubernetes: an integer ``minAvailable``
needs only the pods that exist; a percentage or ``maxUnavailable`` is judged
against the replicas the pods' controllers ask for (a ReplicaSet's own, or its
Deployment's when a Deployment owns it).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from google.protobuf import timestamp_pb2

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.policy.v1 import generated_pb2 as policy
from kubelite.client.controller import InstrumentedQueue
from kubelite.client.informer import Informer, deleted_object, meta_namespace_key, split_key
from kubelite.controllers.util import Lister, Writer, controller_ref, is_pod_ready, now_seconds, ts_seconds
from kubelite.machinery import selectors

log = logging.getLogger(__name__)

# An evicted pod not yet seen gone stops counting as disrupted after this long (Kubernetes' DeletionTimeout).
DELETION_TIMEOUT = 120.0


class DisruptionController:
    name = "disruption"

    def __init__(self, pdbs: Lister[policy.PodDisruptionBudget], pods: Lister[core.Pod],
                 replicasets: Lister[apps.ReplicaSet], deployments: Lister[apps.Deployment], client: Writer, *,
                 queue: InstrumentedQueue[str] | None = None) -> None:
        self.pdbs = pdbs
        self.pods = pods
        self.replicasets = replicasets
        self.deployments = deployments
        self.client = client
        self.queue: InstrumentedQueue[str] = queue or InstrumentedQueue(self.name)

    def attach(self, pdb_informer: Informer[policy.PodDisruptionBudget], pod_informer: Informer[core.Pod]) -> None:
        pdb_informer.add_handler(self._pdb, lambda old, new: self._pdb(new), lambda obj: self._pdb(deleted_object(obj)))
        pod_informer.add_handler(self._pod, lambda old, new: self._pod(new, old),
                                 lambda obj: self._pod(deleted_object(obj)))

    def _pdb(self, pdb: policy.PodDisruptionBudget) -> None:
        self.queue.add(meta_namespace_key(pdb))

    def _pod(self, pod: core.Pod, old: core.Pod | None = None) -> None:
        # Level-triggered: a pod change requeues every budget of its namespace that selects it (now or before).
        for candidate in (pod, old):
            if candidate is None:
                continue
            for pdb in self.pdbs.list(candidate.metadata.namespace):
                if _selects(pdb, candidate):
                    self.queue.add(meta_namespace_key(pdb))

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        pdb = self.pdbs.get(namespace, name)
        if pdb is None:
            return
        pods = [p for p in self.pods.list(namespace) if _selects(pdb, p)]
        now = now_seconds()
        want = self.compute_status(pdb, pods, now)
        if want.SerializeToString(deterministic=True) == pdb.status.SerializeToString(deterministic=True):
            return
        new = policy.PodDisruptionBudget()
        new.CopyFrom(pdb)
        new.status.CopyFrom(want)
        await self.client.update_status(new)

    def compute_status(self, pdb: policy.PodDisruptionBudget, pods: list[core.Pod],
                       now: float) -> policy.PodDisruptionBudgetStatus:
        expected, desired = self._expected_and_desired(pdb, pods)
        alive = {p.metadata.name for p in pods if not p.metadata.HasField("deletion_timestamp")}
        status = policy.PodDisruptionBudgetStatus()
        # Evicted pods stay "disrupted" until they are gone or the timeout passes.
        for pod_name, at in pdb.status.disrupted_pods.items():
            if pod_name in alive and now - ts_seconds(at) < DELETION_TIMEOUT:
                status.disrupted_pods[pod_name].CopyFrom(at)
        healthy = sum(1 for p in pods if p.metadata.name in alive and p.metadata.name not in status.disrupted_pods
                      and is_pod_ready(p))
        status.observed_generation = pdb.metadata.generation
        status.expected_pods = expected
        status.desired_healthy = desired
        status.current_healthy = healthy
        status.disruptions_allowed = max(0, healthy - desired)
        allowed = status.disruptions_allowed > 0
        cond = status.conditions.add(type="DisruptionAllowed", status="True" if allowed else "False",
                                     reason="SufficientPods" if allowed else "InsufficientPods",
                                     observed_generation=pdb.metadata.generation)
        previous = next((c for c in pdb.status.conditions if c.type == "DisruptionAllowed"), None)
        if previous is not None and previous.status == cond.status:
            cond.last_transition_time.CopyFrom(previous.last_transition_time)
        else:
            cond.last_transition_time.CopyFrom(timestamp_pb2.Timestamp(seconds=int(now)))
        return status

    def _expected_and_desired(self, pdb: policy.PodDisruptionBudget, pods: list[core.Pod]) -> tuple[int, int]:
        spec = pdb.spec
        if spec.HasField("min_available") and not spec.min_available.endswith("%"):
            return len(pods), int(spec.min_available)
        expected = self._controller_scale(pods)
        if spec.HasField("max_unavailable"):
            return expected, max(0, expected - _scaled(spec.max_unavailable, expected, round_up=True))
        if spec.HasField("min_available"):
            return expected, _scaled(spec.min_available, expected, round_up=True)
        return expected, expected  # no field: nothing may be disrupted

    def _controller_scale(self, pods: list[core.Pod]) -> int:
        """Replicas the pods' controllers want, each controller counted once; bare pods count one each."""
        seen: dict[tuple[str, str], int] = {}
        bare = 0
        for pod in pods:
            ref = controller_ref(pod)
            if ref is None or ref.kind != "ReplicaSet":
                bare += 1
                continue
            rs = self.replicasets.get(pod.metadata.namespace, ref.name)
            if rs is None:
                bare += 1
                continue
            owner = controller_ref(rs)
            if owner is not None and owner.kind == "Deployment":
                dep = self.deployments.get(pod.metadata.namespace, owner.name)
                if dep is not None:
                    seen[("Deployment", owner.name)] = _replicas(dep)
                    continue
            seen[("ReplicaSet", ref.name)] = _replicas(rs)
        return sum(seen.values()) + bare


def _replicas(obj: Any) -> int:
    return int(obj.spec.replicas) if obj.spec.HasField("replicas") else 1


def _scaled(value: str, total: int, *, round_up: bool) -> int:
    if value.endswith("%"):
        fraction = int(value[:-1]) * total / 100
        return math.ceil(fraction) if round_up else math.floor(fraction)
    return int(value)


def _selects(pdb: policy.PodDisruptionBudget, pod: core.Pod) -> bool:
    if not pdb.spec.HasField("selector") or pdb.metadata.namespace != pod.metadata.namespace:
        return False
    return selectors.from_label_selector_proto(pdb.spec.selector).matches(pod.metadata.labels)
