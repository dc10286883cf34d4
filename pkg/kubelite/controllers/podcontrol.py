"""PodControl: how workload controllers create and delete the pods they own.

A Protocol so that unit tests count calls instead of talking to an API
server; the real one writes through the client and records the events users
look for in ``kubelite describe`` (SuccessfulCreate, FailedCreate,
SuccessfulDelete, FailedDelete), as Kubernetes' pod control does.
"""

from __future__ import annotations

from typing import Any, Protocol

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.meta.v1 import generated_pb2 as metav1
from kubelite.client.events import NORMAL, WARNING, EventRecorder
from kubelite.controllers.util import Writer
from kubelite.machinery.errors import StatusError


class PodControl(Protocol):
    async def create_pod(self, namespace: str, template: core.PodTemplateSpec, owner: Any,
                         controller_ref: metav1.OwnerReference) -> core.Pod: ...

    async def delete_pod(self, namespace: str, name: str, uid: str, owner: Any) -> None: ...

    async def patch_pod(self, namespace: str, name: str, patch: dict[str, Any]) -> None: ...


def pod_from_template(namespace: str, template: core.PodTemplateSpec, owner: Any,
                      controller_ref: metav1.OwnerReference) -> core.Pod:
    """The pod a controller creates: the template, named after its owner, owned by it."""
    pod = core.Pod(api_version="v1", kind="Pod")
    pod.metadata.namespace = namespace
    pod.metadata.generate_name = f"{owner.metadata.name}-"
    pod.metadata.labels.update(template.metadata.labels)
    pod.metadata.annotations.update(template.metadata.annotations)
    pod.metadata.finalizers.extend(template.metadata.finalizers)
    pod.metadata.owner_references.append(controller_ref)
    pod.spec.CopyFrom(template.spec)
    return pod


class ClientPodControl:
    def __init__(self, client: Writer, recorder: EventRecorder) -> None:
        self._client = client
        self._recorder = recorder

    async def create_pod(self, namespace: str, template: core.PodTemplateSpec, owner: Any,
                         controller_ref: metav1.OwnerReference) -> core.Pod:
        pod = pod_from_template(namespace, template, owner, controller_ref)
        try:
            created: core.Pod = await self._client.create(pod)
        except StatusError as exc:
            self._recorder.event(owner, WARNING, "FailedCreate", f"Error creating: {exc.message}")
            raise
        self._recorder.event(owner, NORMAL, "SuccessfulCreate", f"Created pod: {created.metadata.name}")
        return created

    async def delete_pod(self, namespace: str, name: str, uid: str, owner: Any) -> None:
        try:
            await self._client.delete(core.Pod, name, namespace, uid=uid)
        except StatusError as exc:
            if exc.reason == "NotFound":
                return  # already gone: what we wanted
            self._recorder.event(owner, WARNING, "FailedDelete", f"Error deleting: {exc.message}")
            raise
        self._recorder.event(owner, NORMAL, "SuccessfulDelete", f"Deleted pod: {name}")

    async def patch_pod(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        await self._client.patch(core.Pod, name, namespace, patch)
