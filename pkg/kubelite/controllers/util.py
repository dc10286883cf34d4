"""Facts every workload controller needs about pods and owners.

What counts as an active, ready or available pod, how a controller reference
looks, and in which order a controller gives up pods: the ReplicaSet,
Deployment, Endpoints and disruption controllers must agree on these, so they
live here once. The definitions are Kubernetes' (pkg/controller and
pkg/api/v1/pod), restated.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from google.protobuf.message import Message

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.meta.v1 import generated_pb2 as metav1
from kubelite.machinery.selectors import LabelSelector

M = TypeVar("M", bound=Message)

# The annotation users set to say which pods of a ReplicaSet go first on scale-down.
POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


class Lister(Protocol[M]):
    """The read side of an informer (``kubelite.client.Lister``), or a fake in unit tests."""

    def get(self, namespace: str, name: str) -> M | None: ...

    def list(self, namespace: str = "", selector: LabelSelector | None = None) -> list[M]: ...


def now_seconds() -> float:
    return time.time()


def ts_seconds(ts: Any) -> float:
    """A protobuf Timestamp as seconds since the epoch (0 when unset)."""
    return float(ts.seconds) + float(ts.nanos) / 1e9


def set_now(ts: Any, now: float | None = None) -> None:
    value = now_seconds() if now is None else now
    ts.seconds = int(value)
    ts.nanos = int((value - int(value)) * 1e9)


def utcnow() -> datetime:
    return datetime.now(UTC)


def controller_ref(obj: Any) -> metav1.OwnerReference | None:
    """The ownerReference with ``controller: true``, if any (at most one may have it)."""
    for ref in obj.metadata.owner_references:
        if ref.HasField("controller") and ref.controller:
            return ref  # type: ignore[no-any-return]
    return None


def new_controller_ref(owner: Any, api_version: str, kind: str) -> metav1.OwnerReference:
    return metav1.OwnerReference(api_version=api_version, kind=kind, name=owner.metadata.name,
                                 uid=owner.metadata.uid, controller=True, block_owner_deletion=True)


def is_being_deleted(obj: Any) -> bool:
    return bool(obj.metadata.HasField("deletion_timestamp"))


def is_pod_active(pod: core.Pod) -> bool:
    """Not finished and not being deleted: a pod that counts towards a controller's replicas."""
    return pod.status.phase not in ("Succeeded", "Failed") and not is_being_deleted(pod)


def pod_ready_condition(pod: core.Pod) -> core.PodCondition | None:
    for cond in pod.status.conditions:
        if cond.type == "Ready":
            return cond
    return None


def is_pod_ready(pod: core.Pod) -> bool:
    cond = pod_ready_condition(pod)
    return cond is not None and cond.status == "True"


def is_pod_available(pod: core.Pod, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least ``min_ready_seconds`` (by the Ready condition's lastTransitionTime)."""
    cond = pod_ready_condition(pod)
    if cond is None or cond.status != "True":
        return False
    if min_ready_seconds <= 0:
        return True
    since = ts_seconds(cond.last_transition_time)
    return since > 0 and since + min_ready_seconds <= now


def filter_active_pods(pods: Iterable[core.Pod]) -> list[core.Pod]:
    return [p for p in pods if is_pod_active(p)]


def _phase_rank(phase: str) -> int:
    return {"Pending": 0, "Unknown": 1, "Running": 2}.get(phase, 0)


def _deletion_cost(pod: core.Pod) -> int:
    try:
        return int(pod.metadata.annotations.get(POD_DELETION_COST, "0"))
    except ValueError:
        return 0  # the API server validates it; a bad value must not break scale-down


def _restarts(pod: core.Pod) -> int:
    return max((c.restart_count for c in pod.status.container_statuses), default=0)


def deletion_order_key(pod: core.Pod, rank: int) -> tuple[Any, ...]:
    """Sorts the pods a controller should give up first to the front.

    In Kubernetes' order: unscheduled before scheduled; Pending before Unknown
    before Running; not ready before ready; lower pod-deletion-cost first;
    pods doubled up on a node (higher ``rank``) first; ready for a shorter time
    first; more container restarts first; newer first.
    """
    ready = is_pod_ready(pod)
    cond = pod_ready_condition(pod)
    ready_since = ts_seconds(cond.last_transition_time) if ready and cond is not None else 0.0
    return (
        1 if pod.spec.node_name else 0,
        _phase_rank(pod.status.phase),
        1 if ready else 0,
        _deletion_cost(pod),
        -rank,
        -ready_since,
        -_restarts(pod),
        -ts_seconds(pod.metadata.creation_timestamp),
        pod.metadata.name,
    )


def pods_to_delete(candidates: list[core.Pod], related: list[core.Pod], count: int) -> list[core.Pod]:
    """The ``count`` least valuable of ``candidates``; ``related`` (e.g. every pod of a Deployment)
    decides which pods share a node with others of their kind."""
    per_node: dict[str, int] = {}
    for pod in related:
        if is_pod_active(pod) and pod.spec.node_name:
            per_node[pod.spec.node_name] = per_node.get(pod.spec.node_name, 0) + 1
    ranked = sorted(candidates, key=lambda p: deletion_order_key(p, per_node.get(p.spec.node_name, 0)
                                                                   if p.spec.node_name else 0))
    return ranked[:count]


def labels_match_template(pod: core.Pod, template_labels: Any) -> bool:
    """True when the pod carries every label of the template (fullyLabeledReplicas)."""
    labels = pod.metadata.labels
    return all(labels.get(k) == v for k, v in template_labels.items())


def slow_start_batches(total: int, initial: int = 1) -> list[int]:
    """1, 2, 4, ... summing to ``total``: a controller stops at the first batch that fails,
    so a broken template costs a handful of failed calls, not ``total`` of them."""
    sizes: list[int] = []
    remaining, size = total, max(1, initial)
    while remaining > 0:
        batch = min(size, remaining)
        sizes.append(batch)
        remaining -= batch
        size *= 2
    return sizes


class Writer(Protocol):
    """The writes controllers make, as ``kubelite.client.Client`` spells them (a fake in unit tests)."""

    async def create(self, obj: Any) -> Any: ...

    async def get(self, kind: Any, name: str, namespace: str = "") -> Any: ...

    async def update(self, obj: Any) -> Any: ...

    async def update_status(self, obj: Any) -> Any: ...

    async def patch(self, kind: Any, name: str, namespace: str, patch: Any, *,
                    patch_type: str = "application/merge-patch+json") -> Any: ...

    async def delete(self, kind: Any, name: str, namespace: str = "", *, propagation_policy: str = "",
                     uid: str = "", grace_period_seconds: int | None = None) -> Any: ...
