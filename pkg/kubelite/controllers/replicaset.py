"""The ReplicaSet controller: keeps ``spec.replicas`` pods matching the template.

Level-triggered: every pod or ReplicaSet event enqueues the owning
ReplicaSet's key, and ``sync(key)`` compares the pods the ReplicaSet owns (in
the shared pod cache) with the replicas it wants. The decisions are
Kubernetes':

* ownership by controller ownerReference, with adoption and release
  (refmanager.py);
* creations in slow-start batches (1, 2, 4, ...) stopping at the first
  failure, so a template the API server refuses costs a few calls, and the
  ReplicaFailure condition says why;
* deletions of the least valuable pods first (util.pods_to_delete);
* at most ``burst_replicas`` creations or deletions per sync (500), so one
  huge ReplicaSet does not starve the others;
* expectations: after creating n pods the controller does not act on that
  ReplicaSet again until the cache has seen them (or 5 minutes passed), so a
  lagging cache never causes double creation;
* status (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas,
  observedGeneration, conditions) written only when it changed; a pod that
  becomes ready is checked again after ``minReadySeconds`` to count it
  available.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.controller import InstrumentedQueue
from kubelite.client.events import EventRecorder
from kubelite.client.expectations import UIDTrackingExpectations
from kubelite.client.informer import Informer, deleted_object, meta_namespace_key, split_key
from kubelite.controllers.podcontrol import PodControl
from kubelite.controllers.refmanager import ControllerRefManager, recheck_owner
from kubelite.controllers.util import (
    Lister,
    Writer,
    controller_ref,
    filter_active_pods,
    is_being_deleted,
    is_pod_available,
    is_pod_ready,
    labels_match_template,
    new_controller_ref,
    now_seconds,
    pods_to_delete,
    set_now,
    slow_start_batches,
)
from kubelite.machinery.errors import StatusError
from kubelite.machinery.selectors import LabelSelector, from_label_selector_proto

log = logging.getLogger(__name__)

BURST_REPLICAS = 500
API_VERSION = "apps/v1"
KIND = "ReplicaSet"


def replicas_of(rs: apps.ReplicaSet) -> int:
    return rs.spec.replicas if rs.spec.HasField("replicas") else 1


def selector_of(rs: Any) -> LabelSelector:
    try:
        return from_label_selector_proto(rs.spec.selector if rs.spec.HasField("selector") else None)
    except StatusError:
        return LabelSelector.nothing()  # the API server validates selectors; never act on a broken one


class ReplicaSetController:
    name = "replicaset"

    def __init__(
        self,
        rs_lister: Lister[apps.ReplicaSet],
        pod_lister: Lister[core.Pod],
        client: Writer,
        pod_control: PodControl,
        recorder: EventRecorder,
        *,
        burst_replicas: int = BURST_REPLICAS,
        queue: InstrumentedQueue[str] | None = None,
    ) -> None:
        self.rs_lister = rs_lister
        self.pod_lister = pod_lister
        self.client = client
        self.pod_control = pod_control
        self.recorder = recorder
        self.burst_replicas = burst_replicas
        self.queue: InstrumentedQueue[str] = queue or InstrumentedQueue(self.name)
        self.expectations = UIDTrackingExpectations()

    def attach(self, rs_informer: Informer[apps.ReplicaSet], pod_informer: Informer[core.Pod]) -> None:
        rs_informer.add_handler(self.add_rs, self.update_rs, self.delete_rs)
        pod_informer.add_handler(self.add_pod, self.update_pod, self.delete_pod)

    # -- event handlers: they only enqueue keys (and count expectations) ----------------

    def enqueue(self, rs: Any) -> None:
        self.queue.add(meta_namespace_key(rs))

    def add_rs(self, rs: apps.ReplicaSet) -> None:
        self.enqueue(rs)

    def update_rs(self, old: apps.ReplicaSet, new: apps.ReplicaSet) -> None:
        if old.metadata.uid != new.metadata.uid:
            # Deleted and re-created under the same name while we were away.
            self.delete_rs(old)
        self.enqueue(new)

    def delete_rs(self, obj: Any) -> None:
        rs = deleted_object(obj)
        key = meta_namespace_key(rs)
        self.expectations.delete_expectations(key)
        self.queue.add(key)

    def _resolve_ref(self, namespace: str, ref: Any) -> apps.ReplicaSet | None:
        if ref.kind != KIND:
            return None
        rs = self.rs_lister.get(namespace, ref.name)
        if rs is None or rs.metadata.uid != ref.uid:
            return None
        return rs

    def _matching_replicasets(self, pod: core.Pod) -> list[apps.ReplicaSet]:
        labels = dict(pod.metadata.labels)
        return [rs for rs in self.rs_lister.list(pod.metadata.namespace) if selector_of(rs).matches(labels)]

    def add_pod(self, pod: core.Pod) -> None:
        if is_being_deleted(pod):
            # Seen for the first time already terminating (e.g. after a restart): a deletion.
            self.delete_pod(pod)
            return
        ref = controller_ref(pod)
        if ref is not None:
            rs = self._resolve_ref(pod.metadata.namespace, ref)
            if rs is not None:
                key = meta_namespace_key(rs)
                self.expectations.creation_observed(key)
                self.queue.add(key)
            return
        for rs in self._matching_replicasets(pod):  # an orphan: whoever matches may adopt it
            self.enqueue(rs)

    def update_pod(self, old: core.Pod, new: core.Pod) -> None:
        if old.metadata.resource_version == new.metadata.resource_version:
            return  # a resync: nothing changed
        if is_being_deleted(new):
            self.delete_pod(new)
            if dict(old.metadata.labels) != dict(new.metadata.labels):
                self.delete_pod(old)
            return
        old_ref, new_ref = controller_ref(old), controller_ref(new)
        if old_ref is not None and (new_ref is None or old_ref.uid != new_ref.uid):
            rs = self._resolve_ref(old.metadata.namespace, old_ref)
            if rs is not None:
                self.enqueue(rs)
        if new_ref is not None:
            rs = self._resolve_ref(new.metadata.namespace, new_ref)
            if rs is not None:
                self.enqueue(rs)
                if not is_pod_ready(old) and is_pod_ready(new) and rs.spec.min_ready_seconds > 0:
                    # Counted available only after minReadySeconds: look again then.
                    self.queue.add_after(meta_namespace_key(rs), rs.spec.min_ready_seconds + 1)
            return
        if dict(old.metadata.labels) != dict(new.metadata.labels) or old_ref is not None:
            for rs in self._matching_replicasets(new):
                self.enqueue(rs)

    def delete_pod(self, obj: Any) -> None:
        pod: core.Pod = deleted_object(obj)
        ref = controller_ref(pod)
        if ref is None:
            return
        rs = self._resolve_ref(pod.metadata.namespace, ref)
        if rs is None:
            return
        key = meta_namespace_key(rs)
        self.expectations.deletion_observed_of(key, pod.metadata.uid)
        self.queue.add(key)

    # -- the sync ------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        rs = self.rs_lister.get(namespace, name)
        if rs is None:
            self.expectations.delete_expectations(key)
            return
        needs_sync = self.expectations.satisfied(key)
        selector = selector_of(rs)
        all_pods = self.pod_lister.list(namespace)
        active = filter_active_pods(all_pods)

        async def get_fresh() -> apps.ReplicaSet:
            fresh: apps.ReplicaSet = await self.client.get(apps.ReplicaSet, name, namespace)
            return fresh

        manager = ControllerRefManager(rs, API_VERSION, KIND, selector, recheck_owner(get_fresh, rs),
                                       self.pod_control.patch_pod)
        pods = await manager.claim(active)

        manage_error: Exception | None = None
        if needs_sync and not is_being_deleted(rs):
            try:
                await self.manage_replicas(pods, all_pods, rs, key)
            except StatusError as exc:
                manage_error = exc
        status = calculate_status(rs, pods, manage_error)
        updated = await self.update_status(rs, status)
        if manage_error is not None:
            raise manage_error
        if updated is not None and rs.spec.min_ready_seconds > 0 and \
                updated.status.ready_replicas != updated.status.available_replicas:
            self.queue.add_after(key, rs.spec.min_ready_seconds)

    async def manage_replicas(self, pods: list[core.Pod], all_pods: list[core.Pod], rs: apps.ReplicaSet,
                              key: str) -> None:
        diff = len(pods) - replicas_of(rs)
        if diff < 0:
            count = min(-diff, self.burst_replicas)
            self.expectations.expect_creations(key, count)
            log.info("%s: too few replicas, need %d, creating %d", key, replicas_of(rs), count)
            await self._create_in_batches(rs, key, count)
        elif diff > 0:
            count = min(diff, self.burst_replicas)
            log.info("%s: too many replicas, need %d, deleting %d", key, replicas_of(rs), count)
            related = self._related_pods(rs, all_pods)
            victims = pods_to_delete(pods, related, count)
            self.expectations.expect_deletions_of(key, [p.metadata.uid for p in victims])
            results = await asyncio.gather(*(self._delete(rs, key, p) for p in victims), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result

    def _related_pods(self, rs: apps.ReplicaSet, all_pods: list[core.Pod]) -> list[core.Pod]:
        """Pods of this ReplicaSet and its siblings (same controlling owner): who shares a node with whom."""
        owner = controller_ref(rs)
        if owner is None:
            return [p for p in all_pods if (r := controller_ref(p)) is not None and r.uid == rs.metadata.uid]
        sibling_uids = {s.metadata.uid for s in self.rs_lister.list(rs.metadata.namespace)
                        if (o := controller_ref(s)) is not None and o.uid == owner.uid}
        return [p for p in all_pods if (r := controller_ref(p)) is not None and r.uid in sibling_uids]

    async def _create_in_batches(self, rs: apps.ReplicaSet, key: str, count: int) -> None:
        ref = new_controller_ref(rs, API_VERSION, KIND)
        created = 0
        for batch in slow_start_batches(count):
            results = await asyncio.gather(
                *(self.pod_control.create_pod(rs.metadata.namespace, rs.spec.template, rs, ref)
                  for _ in range(batch)),
                return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            for _ in failures:
                self.expectations.creation_observed(key)  # its event will never come
            created += batch - len(failures)
            if failures:
                skipped = count - created - len(failures)
                if skipped > 0:
                    log.info("%s: slow-start failure; skipping the remaining %d creations", key, skipped)
                    self.expectations.lower_expectations(key, skipped, 0)
                first = failures[0]
                if isinstance(first, StatusError):
                    raise first
                raise StatusError("InternalError", str(first)) from first

    async def _delete(self, rs: apps.ReplicaSet, key: str, pod: core.Pod) -> None:
        try:
            await self.pod_control.delete_pod(pod.metadata.namespace, pod.metadata.name, pod.metadata.uid, rs)
        except StatusError:
            self.expectations.deletion_failed_of(key, pod.metadata.uid)
            raise

    async def update_status(self, rs: apps.ReplicaSet, status: apps.ReplicaSetStatus) -> apps.ReplicaSet | None:
        """Writes ``status`` unless the cached object already has it; retries once on a stale read."""
        if _same_status(rs.status, status) and rs.status.observed_generation == status.observed_generation:
            return rs
        current = rs
        for attempt in range(2):
            copy = apps.ReplicaSet()
            copy.CopyFrom(current)
            copy.status.CopyFrom(status)
            try:
                written: apps.ReplicaSet = await self.client.update_status(copy)
                return written
            except StatusError as exc:
                if exc.reason == "NotFound":
                    return None
                if exc.reason != "Conflict" or attempt == 1:
                    raise
                current = await self.client.get(apps.ReplicaSet, rs.metadata.name, rs.metadata.namespace)
                status.observed_generation = current.metadata.generation
        return None


def _same_status(a: apps.ReplicaSetStatus, b: apps.ReplicaSetStatus) -> bool:
    return a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)


def calculate_status(rs: apps.ReplicaSet, pods: list[core.Pod], manage_error: Exception | None,
                     now: float | None = None) -> apps.ReplicaSetStatus:
    """The status the pods justify; ReplicaFailure set while creations or deletions fail."""
    current = now_seconds() if now is None else now
    status = apps.ReplicaSetStatus()
    status.replicas = len(pods)
    status.fully_labeled_replicas = sum(1 for p in pods if labels_match_template(p, rs.spec.template.metadata.labels))
    status.ready_replicas = sum(1 for p in pods if is_pod_ready(p))
    status.available_replicas = sum(1 for p in pods if is_pod_available(p, rs.spec.min_ready_seconds, current))
    status.observed_generation = rs.metadata.generation
    existing = {c.type: c for c in rs.status.conditions}
    for cond in rs.status.conditions:
        if cond.type != "ReplicaFailure":
            status.conditions.append(cond)
    if manage_error is not None:
        diff = len(pods) - replicas_of(rs)
        reason = "FailedCreate" if diff < 0 else "FailedDelete"
        message = manage_error.message if isinstance(manage_error, StatusError) else str(manage_error)
        old = existing.get("ReplicaFailure")
        if old is not None and old.status == "True" and old.reason == reason and old.message == message:
            status.conditions.append(old)
        else:
            cond = apps.ReplicaSetCondition(type="ReplicaFailure", status="True", reason=reason, message=message)
            set_now(cond.last_transition_time, current)
            status.conditions.append(cond)
    return status
