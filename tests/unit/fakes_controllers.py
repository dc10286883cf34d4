"""Fakes behind the controllers' Protocols: listers, pod control, the API writer."""

from __future__ import annotations

import itertools
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.meta.v1 import generated_pb2 as metav1
from kubelite.client.events import EventRecorder
from kubelite.controllers.podcontrol import pod_from_template
from kubelite.machinery import errors
from kubelite.machinery.selectors import LabelSelector

M = TypeVar("M", bound=Message)

_uids = itertools.count(1)


def uid() -> str:
    return f"uid-{next(_uids)}"


class FakeLister(Generic[M]):
    def __init__(self, *objs: M) -> None:
        self.items: dict[tuple[str, str], M] = {}
        for obj in objs:
            self.put(obj)

    def put(self, obj: M) -> M:
        meta = obj.metadata  # type: ignore[attr-defined]
        self.items[(meta.namespace, meta.name)] = obj
        return obj

    def remove(self, obj: M) -> None:
        meta = obj.metadata  # type: ignore[attr-defined]
        self.items.pop((meta.namespace, meta.name), None)

    def get(self, namespace: str, name: str) -> M | None:
        return self.items.get((namespace, name))

    def list(self, namespace: str = "", selector: LabelSelector | None = None) -> list[M]:
        out = [o for (ns, _), o in sorted(self.items.items()) if not namespace or ns == namespace]
        if selector is not None:
            out = [o for o in out if selector.matches(dict(o.metadata.labels))]  # type: ignore[attr-defined]
        return out


class FakePodControl:
    """Creates pods into a lister (as the informer would, later) and records every call."""

    def __init__(self, pods: FakeLister[core.Pod]) -> None:
        self.pods = pods
        self.created: list[core.Pod] = []
        self.deleted: list[str] = []
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.create_error: errors.StatusError | None = None
        self.fail_after = -1  # fail every create after this many successes (-1: never)
        self.create_calls = 0
        self.add_to_cache = False

    async def create_pod(self, namespace: str, template: core.PodTemplateSpec, owner: Any,
                         controller_ref: metav1.OwnerReference) -> core.Pod:
        self.create_calls += 1
        if self.create_error is not None and 0 <= self.fail_after < self.create_calls:
            raise self.create_error
        pod = pod_from_template(namespace, template, owner, controller_ref)
        pod.metadata.name = f"{pod.metadata.generate_name}{self.create_calls:05d}"
        pod.metadata.uid = uid()
        pod.metadata.resource_version = "1"
        self.created.append(pod)
        if self.add_to_cache:
            self.pods.put(pod)
        return pod

    async def delete_pod(self, namespace: str, name: str, uid: str, owner: Any) -> None:
        self.deleted.append(name)

    async def patch_pod(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.patches.append((name, patch))


class FakeWriter:
    """Objects by (type, namespace, name); update_status/update store copies and bump resourceVersion."""

    def __init__(self) -> None:
        self.objects: dict[tuple[type[Any], str, str], Any] = {}
        self.status_writes: list[Any] = []
        self.updates: list[Any] = []
        self.created: list[Any] = []
        self.deleted: list[tuple[str, str, str, str]] = []
        self.patches: list[tuple[str, str, Any]] = []
        self.grace_periods: list[int | None] = []
        self.rv = 100

    def put(self, obj: Any) -> Any:
        self.objects[(type(obj), obj.metadata.namespace, obj.metadata.name)] = obj
        return obj

    def _bump(self, obj: Any) -> Any:
        copy = type(obj)()
        copy.CopyFrom(obj)
        self.rv += 1
        copy.metadata.resource_version = str(self.rv)
        self.put(copy)
        return copy

    async def create(self, obj: Any) -> Any:
        key = (type(obj), obj.metadata.namespace, obj.metadata.name)
        if obj.metadata.name and key in self.objects:
            raise errors.already_exists("", "things", obj.metadata.name)
        copy = type(obj)()
        copy.CopyFrom(obj)
        if not copy.metadata.name:
            copy.metadata.name = copy.metadata.generate_name + f"{len(self.created):05d}"
        copy.metadata.uid = copy.metadata.uid or uid()
        self.created.append(copy)
        return self._bump(copy)

    async def get(self, kind: Any, name: str, namespace: str = "") -> Any:
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            raise errors.not_found("", kind.DESCRIPTOR.name.lower() + "s", name)
        return obj

    async def update(self, obj: Any) -> Any:
        self.updates.append(obj)
        return self._bump(obj)

    async def update_status(self, obj: Any) -> Any:
        self.status_writes.append(obj)
        return self._bump(obj)

    async def patch(self, kind: Any, name: str, namespace: str, patch: Any, *,
                    patch_type: str = "application/merge-patch+json") -> Any:
        self.patches.append((namespace, name, patch))
        return self.objects.get((kind, namespace, name))

    async def delete(self, kind: Any, name: str, namespace: str = "", *, propagation_policy: str = "",
                     uid: str = "", grace_period_seconds: int | None = None) -> Any:
        self.grace_periods.append(grace_period_seconds)
        self.deleted.append((kind.DESCRIPTOR.name, namespace, name, propagation_policy))
        self.objects.pop((kind, namespace, name), None)
        return None


class NullSink:
    def __init__(self) -> None:
        self.events: list[core.Event] = []

    async def create(self, event: core.Event) -> core.Event:
        self.events.append(event)
        return event

    async def update(self, event: core.Event) -> core.Event:
        self.events.append(event)
        return event


def recorder() -> EventRecorder:
    """A recorder that is never started: events queue up and are inspected from ``_queue``."""
    return EventRecorder(NullSink(), "test")


def recorded(rec: EventRecorder) -> list[tuple[str, str]]:
    out = []
    while not rec._queue.empty():
        event = rec._queue.get_nowait()
        out.append((event.reason, event.message))
    return out


def template(labels: dict[str, str], image: str = "nginx:1") -> core.PodTemplateSpec:
    t = core.PodTemplateSpec()
    t.metadata.labels.update(labels)
    t.spec.containers.add(name="web", image=image)
    return t


def replicaset(name: str, replicas: int, labels: dict[str, str], namespace: str = "ns",
               generation: int = 1) -> apps.ReplicaSet:
    rs = apps.ReplicaSet(api_version="apps/v1", kind="ReplicaSet")
    rs.metadata.name = name
    rs.metadata.namespace = namespace
    rs.metadata.uid = uid()
    rs.metadata.generation = generation
    rs.metadata.resource_version = "10"
    rs.spec.replicas = replicas
    rs.spec.selector.match_labels.update(labels)
    rs.spec.template.CopyFrom(template(labels))
    return rs


def pod(name: str, labels: dict[str, str], owner: Any = None, *, namespace: str = "ns", node: str = "",
        phase: str = "Running", ready: bool = True, created: int = 1000, restarts: int = 0,
        ready_since: int = 1000, owner_kind: str = "ReplicaSet") -> core.Pod:
    p = core.Pod(api_version="v1", kind="Pod")
    p.metadata.name = name
    p.metadata.namespace = namespace
    p.metadata.uid = uid()
    p.metadata.resource_version = "5"
    p.metadata.labels.update(labels)
    p.metadata.creation_timestamp.seconds = created
    if owner is not None:
        p.metadata.owner_references.add(api_version="apps/v1", kind=owner_kind, name=owner.metadata.name,
                                        uid=owner.metadata.uid, controller=True)
    p.spec.node_name = node
    p.spec.containers.add(name="web", image="nginx:1")
    p.status.phase = phase
    cond = p.status.conditions.add(type="Ready", status="True" if ready else "False")
    cond.last_transition_time.seconds = ready_since
    p.status.container_statuses.add(name="web", restart_count=restarts, ready=ready)
    return p
