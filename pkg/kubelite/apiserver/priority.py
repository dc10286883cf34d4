"""Priority admission: a pod's priorityClassName becomes its spec.priority and preemptionPolicy.

As Kubernetes' Priority admission plugin: a pod naming a PriorityClass gets
the class's value; a pod naming a class that does not exist is refused with
the name; a pod naming none gets the cluster's globalDefault class, if one
exists. (A pod that names no class and sets spec.priority itself keeps it
when there is no default class: kube-apiserver would refuse that, kubelite
allows it for tests and tools that work without classes.) PriorityClasses
themselves may have at most one globalDefault. The two system classes are
created at start, beside the system namespaces.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from google.protobuf.message import Message

from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.api.scheduling.v1 import generated_pb2 as scheduling_v1
from kubelite.apiserver.pipeline import SYSTEM, SYSTEM_MANAGER, Attributes
from kubelite.apiserver.registry.scheduling import SYSTEM_CLASSES
from kubelite.apiserver.store import ResourceStore
from kubelite.apiserver.watchcache import Filter
from kubelite.machinery import errors
from kubelite.machinery.errors import FieldError

log = logging.getLogger(__name__)

DEFAULT_PREEMPTION_POLICY = "PreemptLowerPriority"


class PriorityAdmission:
    name = "Priority"

    def __init__(self, store: Callable[[], ResourceStore]) -> None:
        # The PriorityClass store is built after the admission chain that it shares.
        self._store = store

    def _classes(self) -> list[scheduling_v1.PriorityClass]:
        store = self._store()
        items, _ = store.cache.list(Filter())
        out = []
        for co in items:
            obj = co.obj
            assert isinstance(obj, scheduling_v1.PriorityClass)
            out.append(obj)
        return out

    async def _lookup(self, name: str) -> scheduling_v1.PriorityClass | None:
        store = self._store()
        cached = store.cache.get(store.key("", name))
        if cached is not None:
            assert isinstance(cached.obj, scheduling_v1.PriorityClass)
            return cached.obj
        try:  # the cache may lag a class created a moment ago
            obj = await store.get("", name)
        except errors.StatusError as exc:
            if exc.reason == "NotFound":
                return None
            raise
        assert isinstance(obj, scheduling_v1.PriorityClass)
        return obj

    async def admit(self, attrs: Attributes, obj: Message | None, old: Message | None) -> None:
        if attrs.rt.kind != "Pod" or attrs.verb != "create" or attrs.subresource or obj is None:
            return
        assert isinstance(obj, core_v1.Pod)
        spec = obj.spec
        pc: scheduling_v1.PriorityClass | None
        if spec.priority_class_name:
            pc = await self._lookup(spec.priority_class_name)
            if pc is None:
                raise errors.forbidden(f'pods "{obj.metadata.name}" is forbidden: no PriorityClass with name '
                                       f"{spec.priority_class_name} was found")
        else:
            defaults = [c for c in self._classes() if c.global_default]
            pc = min(defaults, key=lambda c: c.value) if defaults else None
            if pc is not None:
                spec.priority_class_name = pc.metadata.name
        if pc is not None:
            spec.priority = pc.value
            spec.preemption_policy = pc.preemption_policy or DEFAULT_PREEMPTION_POLICY
        elif not spec.HasField("preemption_policy"):
            spec.preemption_policy = DEFAULT_PREEMPTION_POLICY

    async def validate(self, attrs: Attributes, obj: Message | None, old: Message | None) -> None:
        if attrs.rt.kind != "PriorityClass" or attrs.verb not in ("create", "update") or obj is None:
            return
        assert isinstance(obj, scheduling_v1.PriorityClass)
        if not obj.global_default:
            return
        for other in self._classes():
            if other.global_default and other.metadata.name != obj.metadata.name:
                raise errors.invalid("scheduling.k8s.io", "PriorityClass", obj.metadata.name, [FieldError(
                    "FieldValueInvalid", "globalDefault", f'PriorityClass "{other.metadata.name}" is already '
                    "marked as default. Only one default can exist", True)])


async def bootstrap_priority_classes(store: ResourceStore) -> None:
    for name, value in SYSTEM_CLASSES.items():
        pc = scheduling_v1.PriorityClass(api_version="scheduling.k8s.io/v1", kind="PriorityClass", value=value)
        pc.metadata.name = name
        pc.description = "Used for system critical pods that must not be moved from their current node."
        try:
            await store.create(Attributes(SYSTEM, "create", store.rt, "", name, field_manager=SYSTEM_MANAGER), pc)
            log.info("created priorityclass %s", name)
        except errors.StatusError as exc:
            if exc.reason != "AlreadyExists":
                raise
