"""Pure rules of Deployments: hashes, revisions, surge/unavailable arithmetic, conditions.

Kept apart from the controller so that each rule is a function of its inputs
and is unit-tested on its own; the numbers are Kubernetes' (maxSurge rounds
up, maxUnavailable rounds down, both zero means one unavailable; a new
ReplicaSet grows only while the total stays within replicas + maxSurge).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.controllers.util import set_now, ts_seconds

POD_TEMPLATE_HASH = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# Annotations of the Deployment that are not copied onto its ReplicaSets.
_NOT_COPIED = frozenset({LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS})

# Condition reasons, as kubectl and dashboards know them.
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"
FAILED_RS_CREATE = "ReplicaSetCreateError"

# The alphabet Kubernetes encodes hashes in: no vowels (no words), no look-alikes.
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def replicas_of(obj: Any) -> int:
    return int(obj.spec.replicas) if obj.spec.HasField("replicas") else 1


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def template_without_hash(template: core.PodTemplateSpec) -> core.PodTemplateSpec:
    copy = core.PodTemplateSpec()
    copy.CopyFrom(template)
    copy.metadata.labels.pop(POD_TEMPLATE_HASH, None)
    return copy


def compute_hash(template: core.PodTemplateSpec, collision_count: int | None) -> str:
    """The pod-template-hash: FNV-32a of the template (deterministic encoding), plus the collision count."""
    data = template_without_hash(template).SerializeToString(deterministic=True)
    if collision_count:
        data += collision_count.to_bytes(4, "little")
    # Spread the 32-bit hash over the safe alphabet the way a base-27 number would.
    h = fnv32a(data)
    out = []
    while h:
        h, rest = divmod(h, len(_SAFE))
        out.append(_SAFE[rest])
    return "".join(out) or _SAFE[0]


def equal_ignore_hash(a: core.PodTemplateSpec, b: core.PodTemplateSpec) -> bool:
    return template_without_hash(a).SerializeToString(deterministic=True) == \
        template_without_hash(b).SerializeToString(deterministic=True)


def revision_of(obj: Any) -> int:
    try:
        return int(obj.metadata.annotations.get(REVISION, "0"))
    except ValueError:
        return 0


def max_revision(rss: Iterable[apps.ReplicaSet]) -> int:
    return max((revision_of(rs) for rs in rss), default=0)


def by_creation(rss: Iterable[apps.ReplicaSet]) -> list[apps.ReplicaSet]:
    return sorted(rss, key=lambda rs: (ts_seconds(rs.metadata.creation_timestamp), rs.metadata.name))


def find_new_replicaset(d: apps.Deployment, rss: list[apps.ReplicaSet]) -> apps.ReplicaSet | None:
    """The oldest ReplicaSet whose template is the Deployment's (ignoring the hash label)."""
    for rs in by_creation(rss):
        if equal_ignore_hash(rs.spec.template, d.spec.template):
            return rs
    return None


def is_rolling(d: apps.Deployment) -> bool:
    return d.spec.strategy.type != "Recreate"


def scaled_value(value: str, total: int, round_up: bool, default: str = "25%") -> int:
    """An int-or-percent (``"1"``, ``"25%"``) against ``total``."""
    text = (value or default).strip()
    if text.endswith("%"):
        scaled = int(text[:-1]) * total
        return -(-scaled // 100) if round_up else scaled // 100
    return int(text)


def resolve_fenceposts(d: apps.Deployment) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as numbers of pods; both zero would deadlock, so unavailable becomes 1."""
    replicas = replicas_of(d)
    ru = d.spec.strategy.rolling_update
    surge = scaled_value(ru.max_surge, replicas, True)
    unavailable = scaled_value(ru.max_unavailable, replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: apps.Deployment) -> int:
    return resolve_fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: apps.Deployment) -> int:
    if not is_rolling(d) or replicas_of(d) == 0:
        return 0
    return min(resolve_fenceposts(d)[1], replicas_of(d))


def new_rs_new_replicas(d: apps.Deployment, current_pod_count: int, new_rs_replicas: int) -> int:
    """How big the new ReplicaSet may be now: up to replicas + maxSurge pods in total."""
    replicas = replicas_of(d)
    if not is_rolling(d):
        return replicas
    total = replicas + max_surge(d)
    if current_pod_count >= total:
        return new_rs_replicas
    scale_up = min(total - current_pod_count, replicas - new_rs_replicas)
    return new_rs_replicas + max(scale_up, 0)


def set_replicas_annotations(rs: apps.ReplicaSet, desired: int, max_replicas: int) -> bool:
    changed = False
    for key, value in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(max_replicas))):
        if rs.metadata.annotations.get(key) != value:
            rs.metadata.annotations[key] = value
            changed = True
    return changed


def copy_annotations(d: apps.Deployment, rs: apps.ReplicaSet) -> bool:
    changed = False
    for key, value in d.metadata.annotations.items():
        if key in _NOT_COPIED:
            continue
        if rs.metadata.annotations.get(key) != value:
            rs.metadata.annotations[key] = value
            changed = True
    return changed


def set_new_rs_revision(rs: apps.ReplicaSet, new_revision: int) -> bool:
    """Gives ``rs`` the new revision; a reused ReplicaSet (a rollback) records its old ones."""
    old = revision_of(rs)
    if old >= new_revision:
        return False
    if old:
        history = [h for h in rs.metadata.annotations.get(REVISION_HISTORY, "").split(",") if h]
        history.append(str(old))
        rs.metadata.annotations[REVISION_HISTORY] = ",".join(history)
    rs.metadata.annotations[REVISION] = str(new_revision)
    return True


# -- conditions ----------------------------------------------------------------------------


def get_condition(status: apps.DeploymentStatus, ctype: str) -> apps.DeploymentCondition | None:
    for cond in status.conditions:
        if cond.type == ctype:
            return cond
    return None


def new_condition(ctype: str, status: str, reason: str, message: str, now: float) -> apps.DeploymentCondition:
    cond = apps.DeploymentCondition(type=ctype, status=status, reason=reason, message=message)
    set_now(cond.last_update_time, now)
    set_now(cond.last_transition_time, now)
    return cond


def set_condition(status: apps.DeploymentStatus, cond: apps.DeploymentCondition) -> None:
    """Sets ``cond``; an unchanged status and reason keep the old lastTransitionTime, as Kubernetes does."""
    existing = get_condition(status, cond.type)
    if existing is not None and existing.status == cond.status and existing.reason == cond.reason:
        return
    if existing is not None and existing.status == cond.status:
        cond.last_transition_time.CopyFrom(existing.last_transition_time)
    kept = [c for c in status.conditions if c.type != cond.type]
    del status.conditions[:]
    status.conditions.extend(kept)
    status.conditions.append(cond)


def remove_condition(status: apps.DeploymentStatus, ctype: str) -> None:
    kept = [c for c in status.conditions if c.type != ctype]
    del status.conditions[:]
    status.conditions.extend(kept)


def deployment_complete(d: apps.Deployment, status: apps.DeploymentStatus) -> bool:
    replicas = replicas_of(d)
    return (status.updated_replicas == replicas and status.replicas == replicas
            and status.available_replicas == replicas and status.observed_generation >= d.metadata.generation)


def deployment_progressing(d: apps.Deployment, new: apps.DeploymentStatus) -> bool:
    """Did the rollout move since the last status: more updated/ready/available, or fewer old pods."""
    old = d.status
    old_old_pods = old.replicas - old.updated_replicas
    new_old_pods = new.replicas - new.updated_replicas
    return (new.updated_replicas > old.updated_replicas or new_old_pods < old_old_pods
            or new.ready_replicas > old.ready_replicas or new.available_replicas > old.available_replicas)


def deployment_timed_out(d: apps.Deployment, status: apps.DeploymentStatus, now: float) -> bool:
    if not d.spec.HasField("progress_deadline_seconds"):
        return False
    cond = get_condition(status, "Progressing")
    if cond is None:
        return False
    if cond.reason == NEW_RS_AVAILABLE:
        return False
    if cond.reason == TIMED_OUT:
        return True
    return ts_seconds(cond.last_update_time) + d.spec.progress_deadline_seconds < now
