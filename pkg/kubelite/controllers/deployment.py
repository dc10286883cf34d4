"""The Deployment controller: rollouts as a sequence of ReplicaSet scalings.

A Deployment owns ReplicaSets, one per pod template it has had (named
``<deployment>-<pod-template-hash>``); the one matching the current template
is the *new* ReplicaSet, the others are *old*. Each sync moves one step:

* **RollingUpdate**: grow the new ReplicaSet while the total stays within
  replicas + maxSurge, shrink old ones (unhealthy pods first) while at least
  replicas - maxUnavailable pods stay available. Counting is conservative:
  the total is the larger of the ReplicaSets' specs and the active pods in the
  cache, and a ReplicaSet's available pods the smaller of its status and the
  cache, so a lagging status can never make the controller overshoot.
* **Recreate**: scale every old ReplicaSet to 0, wait until their pods are
  gone, then scale the new one up.
* **Scaling** (replicas changed, or paused): spread the change over the
  active ReplicaSets in proportion to their size (proportional scaling), so a
  rollout in flight keeps its shape.

Revisions (``deployment.kubernetes.io/revision``) number templates; rolling
back (``kubelite rollout undo``) writes an old template back into the
Deployment, whose ReplicaSet then becomes new again with the next revision
(its old numbers kept in ``revision-history``). ``revisionHistoryLimit``
old, empty ReplicaSets are kept. Status carries the Kubernetes conditions:
Available (minimum availability), Progressing (NewReplicaSetCreated,
ReplicaSetUpdated, NewReplicaSetAvailable, ProgressDeadlineExceeded,
DeploymentPaused/Resumed) and ReplicaFailure copied from the ReplicaSets.
"""

from __future__ import annotations

import logging
from typing import Any

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.controller import InstrumentedQueue
from kubelite.client.events import NORMAL, WARNING, EventRecorder
from kubelite.client.informer import Informer, deleted_object, meta_namespace_key, split_key
from kubelite.controllers import deploymentutil as du
from kubelite.controllers.refmanager import ControllerRefManager, recheck_owner
from kubelite.controllers.replicaset import selector_of
from kubelite.controllers.util import (
    Lister,
    Writer,
    controller_ref,
    is_being_deleted,
    is_pod_active,
    is_pod_available,
    new_controller_ref,
    now_seconds,
    ts_seconds,
)
from kubelite.machinery.errors import StatusError

log = logging.getLogger(__name__)

API_VERSION = "apps/v1"
KIND = "Deployment"


class DeploymentController:
    name = "deployment"

    def __init__(self, d_lister: Lister[apps.Deployment], rs_lister: Lister[apps.ReplicaSet],
                 pod_lister: Lister[core.Pod], client: Writer, recorder: EventRecorder, *,
                 queue: InstrumentedQueue[str] | None = None) -> None:
        self.d_lister = d_lister
        self.rs_lister = rs_lister
        self.pod_lister = pod_lister
        self.client = client
        self.recorder = recorder
        self.queue: InstrumentedQueue[str] = queue or InstrumentedQueue(self.name)

    def attach(self, d_informer: Informer[apps.Deployment], rs_informer: Informer[apps.ReplicaSet],
               pod_informer: Informer[core.Pod]) -> None:
        d_informer.add_handler(self.enqueue, lambda old, new: self.enqueue(new),
                               lambda obj: self.enqueue(deleted_object(obj)))
        rs_informer.add_handler(self.add_rs, self.update_rs, self.delete_rs)
        pod_informer.add_handler(on_delete=self.delete_pod)

    # -- handlers ------------------------------------------------------------------------

    def enqueue(self, d: Any) -> None:
        self.queue.add(meta_namespace_key(d))

    def _owner_of(self, rs: apps.ReplicaSet) -> apps.Deployment | None:
        ref = controller_ref(rs)
        if ref is None or ref.kind != KIND:
            return None
        d = self.d_lister.get(rs.metadata.namespace, ref.name)
        return d if d is not None and d.metadata.uid == ref.uid else None

    def _matching(self, rs: apps.ReplicaSet) -> list[apps.Deployment]:
        labels = dict(rs.metadata.labels)
        return [d for d in self.d_lister.list(rs.metadata.namespace) if selector_of(d).matches(labels)]

    def add_rs(self, rs: apps.ReplicaSet) -> None:
        if is_being_deleted(rs):
            self.delete_rs(rs)
            return
        owner = self._owner_of(rs)
        if owner is not None:
            self.enqueue(owner)
        elif controller_ref(rs) is None:
            for d in self._matching(rs):
                self.enqueue(d)

    def update_rs(self, old: apps.ReplicaSet, new: apps.ReplicaSet) -> None:
        if old.metadata.resource_version == new.metadata.resource_version:
            return
        old_owner, new_owner = self._owner_of(old), self._owner_of(new)
        if old_owner is not None and (new_owner is None or old_owner.metadata.uid != new_owner.metadata.uid):
            self.enqueue(old_owner)
        if new_owner is not None:
            self.enqueue(new_owner)
        elif controller_ref(new) is None and (dict(old.metadata.labels) != dict(new.metadata.labels)
                                             or controller_ref(old) is not None):
            for d in self._matching(new):
                self.enqueue(d)

    def delete_rs(self, obj: Any) -> None:
        owner = self._owner_of(deleted_object(obj))
        if owner is not None:
            self.enqueue(owner)

    def delete_pod(self, obj: Any) -> None:
        """Recreate waits for old pods to be gone: their deletion is its signal to go on."""
        pod: core.Pod = deleted_object(obj)
        ref = controller_ref(pod)
        if ref is None or ref.kind != "ReplicaSet":
            return
        rs = self.rs_lister.get(pod.metadata.namespace, ref.name)
        if rs is None or rs.metadata.uid != ref.uid:
            return
        owner = self._owner_of(rs)
        if owner is not None and not du.is_rolling(owner):
            self.enqueue(owner)

    # -- sync ------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        cached = self.d_lister.get(namespace, name)
        if cached is None:
            return
        d = apps.Deployment()
        d.CopyFrom(cached)  # cached objects are read-only: work on a copy
        rss = await self._claim_replicasets(d)
        pods = self._pods_by_rs(d, rss)
        if is_being_deleted(d):
            await self._sync_status_only(d, rss, pods)
            return
        await self._check_paused_conditions(d)
        if d.spec.paused:
            await self._sync_scale(d, rss, pods)
            return
        if self._is_scaling_event(d, rss):
            await self._sync_scale(d, rss, pods)
            return
        if du.is_rolling(d):
            await self._rollout_rolling(d, rss, pods)
        else:
            await self._rollout_recreate(d, rss, pods)

    async def _claim_replicasets(self, d: apps.Deployment) -> list[apps.ReplicaSet]:
        async def fresh() -> apps.Deployment:
            got: apps.Deployment = await self.client.get(apps.Deployment, d.metadata.name, d.metadata.namespace)
            return got

        async def patch(namespace: str, name: str, body: dict[str, Any]) -> None:
            await self.client.patch(apps.ReplicaSet, name, namespace, body)

        manager = ControllerRefManager(d, API_VERSION, KIND, selector_of(d), recheck_owner(fresh, d), patch)
        claimed: list[apps.ReplicaSet] = await manager.claim(self.rs_lister.list(d.metadata.namespace))
        return claimed

    def _pods_by_rs(self, d: apps.Deployment, rss: list[apps.ReplicaSet]) -> dict[str, list[core.Pod]]:
        uids = {rs.metadata.uid: [] for rs in rss}  # type: dict[str, list[core.Pod]]
        for pod in self.pod_lister.list(d.metadata.namespace):
            ref = controller_ref(pod)
            if ref is not None and ref.uid in uids:
                uids[ref.uid].append(pod)
        return uids

    # -- new and old ReplicaSets -----------------------------------------------------------

    async def _get_all(self, d: apps.Deployment, rss: list[apps.ReplicaSet], create: bool
                       ) -> tuple[apps.ReplicaSet | None, list[apps.ReplicaSet]]:
        """(new, old ReplicaSets); syncs the new one's revision and, if ``create``, creates it."""
        existing_new = du.find_new_replicaset(d, rss)
        old = [rs for rs in rss if existing_new is None or rs.metadata.uid != existing_new.metadata.uid]
        new = await self._get_new_replicaset(d, rss, old, existing_new, create)
        return new, old

    async def _get_new_replicaset(self, d: apps.Deployment, rss: list[apps.ReplicaSet],
                                  old: list[apps.ReplicaSet], existing: apps.ReplicaSet | None,
                                  create: bool) -> apps.ReplicaSet | None:
        new_revision = du.max_revision(old) + 1
        if existing is not None:
            rs = apps.ReplicaSet()
            rs.CopyFrom(existing)
            changed = du.copy_annotations(d, rs)
            # A ReplicaSet that is already the newest keeps its number; one brought back
            # by a rollback gets the next one.
            if du.revision_of(rs) <= du.max_revision(old):
                changed = du.set_new_rs_revision(rs, new_revision) or changed
            if rs.spec.min_ready_seconds != d.spec.min_ready_seconds:
                rs.spec.min_ready_seconds = d.spec.min_ready_seconds
                changed = True
            if changed:
                rs = await self.client.update(rs)
            if self._set_deployment_revision(d, du.revision_of(rs)):
                await self._update_deployment_meta(d)
            if du.get_condition(d.status, "Progressing") is None and d.spec.HasField("progress_deadline_seconds"):
                du.set_condition(d.status, du.new_condition(
                    "Progressing", "True", du.FOUND_NEW_RS, f'Found new replica set "{rs.metadata.name}"',
                    now_seconds()))
            return rs
        if not create:
            return None
        collision = d.status.collision_count if d.status.HasField("collision_count") else None
        template_hash = du.compute_hash(d.spec.template, collision)
        rs = apps.ReplicaSet(api_version=API_VERSION, kind="ReplicaSet")
        rs.metadata.name = f"{d.metadata.name}-{template_hash}"
        rs.metadata.namespace = d.metadata.namespace
        rs.metadata.owner_references.append(new_controller_ref(d, API_VERSION, KIND))
        rs.metadata.labels.update(d.spec.template.metadata.labels)
        rs.metadata.labels[du.POD_TEMPLATE_HASH] = template_hash
        du.copy_annotations(d, rs)
        rs.metadata.annotations[du.REVISION] = str(new_revision)
        rs.spec.min_ready_seconds = d.spec.min_ready_seconds
        rs.spec.selector.CopyFrom(d.spec.selector)
        rs.spec.selector.match_labels[du.POD_TEMPLATE_HASH] = template_hash
        rs.spec.template.CopyFrom(d.spec.template)
        rs.spec.template.metadata.labels[du.POD_TEMPLATE_HASH] = template_hash
        current = self._current_pod_count(old, {})
        replicas = du.new_rs_new_replicas(d, current, 0)
        rs.spec.replicas = replicas
        du.set_replicas_annotations(rs, du.replicas_of(d), du.replicas_of(d) + du.max_surge(d))
        try:
            created: apps.ReplicaSet = await self.client.create(rs)
        except StatusError as exc:
            if exc.reason == "AlreadyExists":
                return await self._on_hash_collision(d, rs, exc)
            message = f"Failed to create new replica set {rs.metadata.name!r}: {exc.message}"
            self.recorder.event(d, WARNING, du.FAILED_RS_CREATE, message)
            if d.spec.HasField("progress_deadline_seconds"):
                du.set_condition(d.status, du.new_condition("Progressing", "False", du.FAILED_RS_CREATE, message,
                                                            now_seconds()))
                await self._write_status(d, d.status)
            raise
        if replicas > 0:
            self.recorder.event(d, NORMAL, "ScalingReplicaSet",
                                f"Scaled up replica set {created.metadata.name} from 0 to {replicas}")
        if self._set_deployment_revision(d, new_revision):
            await self._update_deployment_meta(d)
        if d.spec.HasField("progress_deadline_seconds"):
            du.set_condition(d.status, du.new_condition(
                "Progressing", "True", du.NEW_RS_CREATED, f'Created new replica set "{created.metadata.name}"',
                now_seconds()))
            await self._write_status(d, d.status)
        return created

    async def _on_hash_collision(self, d: apps.Deployment, wanted: apps.ReplicaSet,
                                 exc: StatusError) -> apps.ReplicaSet:
        """A ReplicaSet of that name exists: ours with the same template is fine, anything else
        bumps collisionCount so the next sync picks another name."""
        try:
            found: apps.ReplicaSet = await self.client.get(apps.ReplicaSet, wanted.metadata.name,
                                                           wanted.metadata.namespace)
        except StatusError:
            raise exc from None
        ref = controller_ref(found)
        if ref is not None and ref.uid == d.metadata.uid and du.equal_ignore_hash(found.spec.template,
                                                                                 d.spec.template):
            return found
        count = (d.status.collision_count if d.status.HasField("collision_count") else 0) + 1
        d.status.collision_count = count
        await self._write_status(d, d.status)
        raise StatusError("AlreadyExists", f"hash collision for {wanted.metadata.name}; collisionCount is now "
                                           f"{count}") from exc

    def _set_deployment_revision(self, d: apps.Deployment, revision: int) -> bool:
        if d.metadata.annotations.get(du.REVISION) == str(revision):
            return False
        d.metadata.annotations[du.REVISION] = str(revision)
        return True

    async def _update_deployment_meta(self, d: apps.Deployment) -> None:
        written: apps.Deployment = await self.client.update(d)
        d.metadata.resource_version = written.metadata.resource_version

    # -- counting ------------------------------------------------------------------------------

    def _active_pods(self, rs: apps.ReplicaSet, pods: dict[str, list[core.Pod]]) -> list[core.Pod]:
        return [p for p in pods.get(rs.metadata.uid, []) if is_pod_active(p)]

    def _current_pod_count(self, rss: list[apps.ReplicaSet], pods: dict[str, list[core.Pod]]) -> int:
        """Pods the ReplicaSets have or will have: the larger of spec and the cache, per ReplicaSet."""
        return sum(max(du.replicas_of(rs), len(self._active_pods(rs, pods))) for rs in rss)

    def _available(self, rs: apps.ReplicaSet, pods: dict[str, list[core.Pod]], d: apps.Deployment,
                   now: float) -> int:
        """Available pods of ``rs``: the smaller of its status and what the cache shows."""
        cached = sum(1 for p in self._active_pods(rs, pods) if is_pod_available(p, d.spec.min_ready_seconds, now))
        return min(rs.status.available_replicas, cached)

    # -- scaling -------------------------------------------------------------------------------

    async def _scale_rs(self, d: apps.Deployment, rs: apps.ReplicaSet, new_size: int) -> tuple[bool, apps.ReplicaSet]:
        old_size = du.replicas_of(rs)
        copy = apps.ReplicaSet()
        copy.CopyFrom(rs)
        annotations_changed = du.set_replicas_annotations(copy, du.replicas_of(d), du.replicas_of(d) + du.max_surge(d))
        if old_size == new_size and not annotations_changed:
            return False, rs
        copy.spec.replicas = new_size
        written: apps.ReplicaSet = await self.client.update(copy)
        if old_size != new_size:
            direction = "up" if new_size > old_size else "down"
            self.recorder.event(d, NORMAL, "ScalingReplicaSet",
                                f"Scaled {direction} replica set {rs.metadata.name} from {old_size} to {new_size}")
            log.info("%s/%s: scaled %s %s from %d to %d", d.metadata.namespace, d.metadata.name, direction,
                     rs.metadata.name, old_size, new_size)
        return old_size != new_size, written

    def _is_scaling_event(self, d: apps.Deployment, rss: list[apps.ReplicaSet]) -> bool:
        for rs in rss:
            if du.replicas_of(rs) <= 0:
                continue
            desired = rs.metadata.annotations.get(du.DESIRED_REPLICAS)
            if desired is not None and desired != str(du.replicas_of(d)):
                return True
        return False

    async def _sync_scale(self, d: apps.Deployment, rss: list[apps.ReplicaSet],
                          pods: dict[str, list[core.Pod]]) -> None:
        new, old = await self._get_all(d, rss, create=False)
        await self._scale(d, new, old)
        if d.spec.paused:
            await self._cleanup(d, old)
        all_rss = [*old, *([new] if new is not None else [])]
        await self._sync_status(d, self._refresh(all_rss), new, pods)

    def _refresh(self, rss: list[apps.ReplicaSet]) -> list[apps.ReplicaSet]:
        out = []
        for rs in rss:
            current = self.rs_lister.get(rs.metadata.namespace, rs.metadata.name)
            out.append(current if current is not None and current.metadata.uid == rs.metadata.uid else rs)
        return out

    async def _scale(self, d: apps.Deployment, new: apps.ReplicaSet | None, old: list[apps.ReplicaSet]) -> None:
        """Scaling a Deployment: one active ReplicaSet takes it all, otherwise proportionally."""
        replicas = du.replicas_of(d)
        active_or_latest = _find_active_or_latest(new, old)
        if active_or_latest is not None:
            if du.replicas_of(active_or_latest) != replicas or \
                    active_or_latest.metadata.annotations.get(du.DESIRED_REPLICAS) != str(replicas):
                await self._scale_rs(d, active_or_latest, replicas)
            return
        if new is not None and _is_saturated(d, new):
            for rs in old:
                if du.replicas_of(rs) > 0:
                    await self._scale_rs(d, rs, 0)
            return
        if not du.is_rolling(d):
            return
        all_rss = [rs for rs in [*old, *([new] if new is not None else [])] if du.replicas_of(rs) > 0]
        total = sum(du.replicas_of(rs) for rs in all_rss)
        allowed = replicas + du.max_surge(d) if replicas > 0 else 0
        to_add = allowed - total
        if to_add > 0:  # newest and largest first gain
            all_rss.sort(key=lambda rs: (-du.replicas_of(rs), -ts_seconds(rs.metadata.creation_timestamp)))
        else:  # largest and oldest first lose
            all_rss.sort(key=lambda rs: (-du.replicas_of(rs), ts_seconds(rs.metadata.creation_timestamp)))
        sizes: dict[str, int] = {}
        added = 0
        for rs in all_rss:
            if to_add != 0:
                proportion = _proportion(rs, d, to_add, added)
                sizes[rs.metadata.name] = du.replicas_of(rs) + proportion
                added += proportion
            else:
                sizes[rs.metadata.name] = du.replicas_of(rs)
        if to_add != 0 and to_add != added and all_rss:
            first = all_rss[0].metadata.name
            sizes[first] = max(0, sizes[first] + to_add - added)
        for rs in all_rss:
            await self._scale_rs(d, rs, sizes[rs.metadata.name])

    # -- rollouts ------------------------------------------------------------------------------

    async def _rollout_rolling(self, d: apps.Deployment, rss: list[apps.ReplicaSet],
                               pods: dict[str, list[core.Pod]]) -> None:
        new, old = await self._get_all(d, rss, create=True)
        assert new is not None
        all_rss = [*old, new]
        now = now_seconds()
        if await self._reconcile_new(d, all_rss, new, pods):
            await self._sync_rollout_status(d, self._refresh(all_rss), new, pods)
            return
        if await self._reconcile_old(d, all_rss, [rs for rs in old if du.replicas_of(rs) > 0], new, pods, now):
            await self._sync_rollout_status(d, self._refresh(all_rss), new, pods)
            return
        status = self._calculate_status(d, all_rss, new, pods)
        if du.deployment_complete(d, status):
            await self._cleanup(d, old)
        await self._sync_rollout_status(d, all_rss, new, pods)

    async def _reconcile_new(self, d: apps.Deployment, all_rss: list[apps.ReplicaSet], new: apps.ReplicaSet,
                             pods: dict[str, list[core.Pod]]) -> bool:
        replicas = du.replicas_of(d)
        if du.replicas_of(new) == replicas:
            return False
        if du.replicas_of(new) > replicas:
            scaled, _ = await self._scale_rs(d, new, replicas)
            return scaled
        wanted = du.new_rs_new_replicas(d, self._current_pod_count(all_rss, pods), du.replicas_of(new))
        scaled, _ = await self._scale_rs(d, new, wanted)
        return scaled

    async def _reconcile_old(self, d: apps.Deployment, all_rss: list[apps.ReplicaSet],
                             old: list[apps.ReplicaSet], new: apps.ReplicaSet, pods: dict[str, list[core.Pod]],
                             now: float) -> bool:
        if sum(du.replicas_of(rs) for rs in old) == 0:
            return False
        all_pods = sum(du.replicas_of(rs) for rs in all_rss)
        min_available = du.replicas_of(d) - du.max_unavailable(d)
        new_unavailable = du.replicas_of(new) - self._available(new, pods, d, now)
        max_scaled_down = all_pods - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        # First the old ReplicaSets' unhealthy pods: removing them costs no availability.
        cleaned = 0
        remaining: list[apps.ReplicaSet] = []
        for rs in du.by_creation(old):
            size = du.replicas_of(rs)
            unhealthy = size - self._available(rs, pods, d, now)
            if cleaned >= max_scaled_down or size == 0 or unhealthy <= 0:
                remaining.append(rs)
                continue
            count = min(max_scaled_down - cleaned, unhealthy)
            _, written = await self._scale_rs(d, rs, size - count)
            cleaned += count
            remaining.append(written)
        if cleaned:
            return True
        # Then healthy old pods, as long as minimum availability holds.
        available = sum(self._available(rs, pods, d, now) for rs in [*remaining, new])
        if available <= min_available:
            return False
        budget = min(available - min_available, max_scaled_down)
        scaled = 0
        for rs in du.by_creation(remaining):
            if scaled >= budget:
                break
            size = du.replicas_of(rs)
            if size == 0:
                continue
            count = min(size, budget - scaled)
            await self._scale_rs(d, rs, size - count)
            scaled += count
        return scaled > 0

    async def _rollout_recreate(self, d: apps.Deployment, rss: list[apps.ReplicaSet],
                                pods: dict[str, list[core.Pod]]) -> None:
        new, old = await self._get_all(d, rss, create=False)
        all_rss = [*old, *([new] if new is not None else [])]
        scaled_down = False
        for rs in old:
            if du.replicas_of(rs) > 0:
                changed, _ = await self._scale_rs(d, rs, 0)
                scaled_down = scaled_down or changed
        if scaled_down:
            await self._sync_rollout_status(d, self._refresh(all_rss), new, pods)
            return
        # Old pods must be gone (not merely terminating) before the new ones start.
        if any(pod.status.phase not in ("Succeeded", "Failed") for rs in old for pod in pods.get(rs.metadata.uid, [])):
            await self._sync_rollout_status(d, all_rss, new, pods)
            return
        if new is None:
            new, old = await self._get_all(d, rss, create=True)
            assert new is not None
            all_rss = [*old, new]
        await self._scale_rs(d, new, du.replicas_of(d))
        status = self._calculate_status(d, all_rss, new, pods)
        if du.deployment_complete(d, status):
            await self._cleanup(d, old)
        await self._sync_rollout_status(d, self._refresh(all_rss), new, pods)

    async def _cleanup(self, d: apps.Deployment, old: list[apps.ReplicaSet]) -> None:
        """Deletes the oldest empty ReplicaSets beyond revisionHistoryLimit."""
        if not d.spec.HasField("revision_history_limit"):
            return
        cleanable = [rs for rs in old if not is_being_deleted(rs)]
        excess = len(cleanable) - d.spec.revision_history_limit
        if excess <= 0:
            return
        oldest_first = sorted(cleanable, key=lambda r: (du.revision_of(r), ts_seconds(r.metadata.creation_timestamp)))
        for rs in oldest_first[:excess]:
            if rs.status.replicas != 0 or du.replicas_of(rs) != 0 or \
                    rs.metadata.generation > rs.status.observed_generation:
                continue
            log.info("%s/%s: deleting old replica set %s (revision %d)", d.metadata.namespace, d.metadata.name,
                     rs.metadata.name, du.revision_of(rs))
            try:
                await self.client.delete(apps.ReplicaSet, rs.metadata.name, rs.metadata.namespace,
                                         uid=rs.metadata.uid)
            except StatusError as exc:
                if exc.reason != "NotFound":
                    raise

    # -- status --------------------------------------------------------------------------------

    def _calculate_status(self, d: apps.Deployment, all_rss: list[apps.ReplicaSet], new: apps.ReplicaSet | None,
                          pods: dict[str, list[core.Pod]]) -> apps.DeploymentStatus:
        now = now_seconds()
        status = apps.DeploymentStatus()
        status.CopyFrom(d.status)
        status.observed_generation = d.metadata.generation
        status.replicas = sum(rs.status.replicas for rs in all_rss)
        status.updated_replicas = new.status.replicas if new is not None else 0
        status.ready_replicas = sum(rs.status.ready_replicas for rs in all_rss)
        status.available_replicas = sum(rs.status.available_replicas for rs in all_rss)
        status.unavailable_replicas = max(0, du.replicas_of(d) - status.available_replicas)
        terminating = sum(1 for rs in all_rss for p in pods.get(rs.metadata.uid, []) if is_being_deleted(p))
        status.terminating_replicas = terminating
        if status.available_replicas >= du.replicas_of(d) - du.max_unavailable(d):
            du.set_condition(status, du.new_condition("Available", "True", du.MIN_AVAILABLE,
                                                      "Deployment has minimum availability.", now))
        else:
            du.set_condition(status, du.new_condition("Available", "False", du.MIN_UNAVAILABLE,
                                                      "Deployment does not have minimum availability.", now))
        # ReplicaFailure mirrors the ReplicaSets' (quota, admission refusals).
        failures = [c for rs in all_rss for c in rs.status.conditions
                    if c.type == "ReplicaFailure" and c.status == "True"]
        if failures:
            f = failures[0]
            du.set_condition(status, du.new_condition("ReplicaFailure", "True", f.reason, f.message, now))
        else:
            du.remove_condition(status, "ReplicaFailure")
        return status

    async def _sync_status_only(self, d: apps.Deployment, rss: list[apps.ReplicaSet],
                                pods: dict[str, list[core.Pod]]) -> None:
        new, old = await self._get_all(d, rss, create=False)
        await self._sync_status(d, [*old, *([new] if new is not None else [])], new, pods)

    async def _sync_status(self, d: apps.Deployment, all_rss: list[apps.ReplicaSet], new: apps.ReplicaSet | None,
                           pods: dict[str, list[core.Pod]]) -> None:
        await self._write_status(d, self._calculate_status(d, all_rss, new, pods))

    async def _sync_rollout_status(self, d: apps.Deployment, all_rss: list[apps.ReplicaSet],
                                   new: apps.ReplicaSet | None, pods: dict[str, list[core.Pod]]) -> None:
        status = self._calculate_status(d, all_rss, new, pods)
        now = now_seconds()
        if d.spec.HasField("progress_deadline_seconds") and not d.spec.paused:
            current = du.get_condition(status, "Progressing")
            new_name = new.metadata.name if new is not None else ""
            if du.deployment_complete(d, status):
                if current is None or current.reason != du.NEW_RS_AVAILABLE:
                    du.set_condition(status, du.new_condition(
                        "Progressing", "True", du.NEW_RS_AVAILABLE,
                        f'ReplicaSet "{new_name}" has successfully progressed.', now))
            elif du.deployment_progressing(d, status):
                cond = du.new_condition("Progressing", "True", du.RS_UPDATED,
                                        f'ReplicaSet "{new_name}" is progressing.', now)
                if current is not None and current.status == "True":
                    cond.last_transition_time.CopyFrom(current.last_transition_time)
                du.remove_condition(status, "Progressing")
                status.conditions.append(cond)
            elif du.deployment_timed_out(d, status, now):
                if current is None or current.reason != du.TIMED_OUT:
                    message = f'ReplicaSet "{new_name}" has timed out progressing.'
                    du.set_condition(status, du.new_condition("Progressing", "False", du.TIMED_OUT, message, now))
                    self.recorder.event(d, WARNING, du.TIMED_OUT, f"Deployment {d.metadata.name!r} {message[0].lower()}"
                                        f"{message[1:]}")
        await self._write_status(d, status)
        # Look again when the deadline would pass, so a stalled rollout is reported in time.
        if d.spec.HasField("progress_deadline_seconds") and not d.spec.paused and \
                not du.deployment_complete(d, status) and not du.deployment_timed_out(d, status, now):
            progressing = du.get_condition(status, "Progressing")
            if progressing is not None:
                after = ts_seconds(progressing.last_update_time) + d.spec.progress_deadline_seconds - now + 1
                self.queue.add_after(meta_namespace_key(d), max(after, 1))

    async def _check_paused_conditions(self, d: apps.Deployment) -> None:
        if not d.spec.HasField("progress_deadline_seconds"):
            return
        cond = du.get_condition(d.status, "Progressing")
        if cond is not None and cond.reason == du.TIMED_OUT:
            return
        paused_cond = cond is not None and cond.reason == du.PAUSED
        status = apps.DeploymentStatus()
        status.CopyFrom(d.status)
        if d.spec.paused and not paused_cond:
            du.set_condition(status, du.new_condition("Progressing", "Unknown", du.PAUSED, "Deployment is paused",
                                                      now_seconds()))
        elif not d.spec.paused and paused_cond:
            du.set_condition(status, du.new_condition("Progressing", "Unknown", du.RESUMED, "Deployment is resumed",
                                                      now_seconds()))
        else:
            return
        await self._write_status(d, status)

    async def _write_status(self, d: apps.Deployment, status: apps.DeploymentStatus) -> None:
        if d.status.SerializeToString(deterministic=True) == status.SerializeToString(deterministic=True):
            return
        copy = apps.Deployment()
        copy.CopyFrom(d)
        copy.status.CopyFrom(status)
        written: apps.Deployment = await self.client.update_status(copy)
        d.status.CopyFrom(written.status)
        d.metadata.resource_version = written.metadata.resource_version


def _find_active_or_latest(new: apps.ReplicaSet | None, old: list[apps.ReplicaSet]) -> apps.ReplicaSet | None:
    """The only ReplicaSet with pods, or the newest if none has any; None if several have pods."""
    if new is None and not old:
        return None
    newest_first = sorted(old, key=lambda rs: (ts_seconds(rs.metadata.creation_timestamp), rs.metadata.name),
                          reverse=True)
    candidates = [*newest_first, *([new] if new is not None else [])]
    active = [rs for rs in candidates if du.replicas_of(rs) > 0]
    if not active:
        return new if new is not None else newest_first[0]
    if len(active) == 1:
        return active[0]
    return None


def _is_saturated(d: apps.Deployment, rs: apps.ReplicaSet) -> bool:
    desired = rs.metadata.annotations.get(du.DESIRED_REPLICAS)
    return (du.replicas_of(rs) == du.replicas_of(d) and desired == str(du.replicas_of(d))
            and rs.status.available_replicas == du.replicas_of(d))


def _proportion(rs: apps.ReplicaSet, d: apps.Deployment, to_add: int, added: int) -> int:
    size = du.replicas_of(rs)
    if size == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = _fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def _fraction(rs: apps.ReplicaSet, d: apps.Deployment) -> int:
    """How much ``rs`` grows or shrinks when the Deployment is resized, relative to its share."""
    replicas = du.replicas_of(d)
    if replicas == 0:
        return -du.replicas_of(rs)
    deployment_replicas = replicas + du.max_surge(d)
    try:
        annotated = int(rs.metadata.annotations.get(du.MAX_REPLICAS, ""))
    except ValueError:
        annotated = d.status.replicas
    if annotated <= 0:
        annotated = max(d.status.replicas, 1)
    new_size = du.replicas_of(rs) * deployment_replicas / annotated
    return int(new_size + 0.5) - du.replicas_of(rs)

