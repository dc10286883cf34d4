"""The runtime contract the kubelet programs against, in-process.

The types are the generated messages of ``kubelite.api.runtime.v1`` (the CRI-
like proto), so that an in-process runtime (Docker, fake) and a remote one
over a unix socket (``remote.RemoteRuntime``) are interchangeable: the gRPC
server and client are plain pipes over the same methods.

Errors cross this boundary as ``RuntimeError_`` subclasses only; the Docker
SDK's and gRPC's exceptions are translated where they enter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from kubelite.api.runtime.v1 import api_pb2 as rt

# Docker labels, as dockershim wrote them (DESIGN.md), plus kubelite's own.
LABEL_POD_UID = "io.kubernetes.pod.uid"
LABEL_POD_NAME = "io.kubernetes.pod.name"
LABEL_POD_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_CONTAINER_NAME = "io.kubernetes.container.name"
LABEL_SANDBOX_ID = "io.kubernetes.sandbox.id"
LABEL_TYPE = "io.kubernetes.docker.type"
LABEL_ATTEMPT = "io.kubelite.attempt"
# Which runtime instance owns a container: several kubelets (tests, hollow
# nodes) may share one Docker engine, and each must adopt only its own.
LABEL_NODE = "io.kubelite.node"
TYPE_SANDBOX = "podsandbox"
TYPE_CONTAINER = "container"
SANDBOX_CONTAINER_NAME = "POD"

RUNTIME_API_VERSION = "v1"


class RuntimeError_(Exception):
    """A runtime operation failed."""


class NotFoundError(RuntimeError_):
    """The sandbox, container or image does not exist (any more)."""


class ImagePullError(RuntimeError_):
    """The image is not present and could not be pulled (ErrImagePull)."""


class InvalidArgumentError(RuntimeError_):
    """The request is malformed (bad config, missing field)."""


class UnavailableError(RuntimeError_):
    """The runtime cannot be reached or is not ready (no pod CIDR yet, engine down)."""


def container_name(container: str, pod: str, namespace: str, uid: str, attempt: int) -> str:
    """``k8s_<container>_<pod>_<namespace>_<uid>_<attempt>``, dockershim's scheme."""
    return f"k8s_{container}_{pod}_{namespace}_{uid}_{attempt}"


@runtime_checkable
class RuntimeService(Protocol):
    """Sandboxes and containers: what the kubelet's pod workers drive."""

    async def version(self) -> rt.VersionResponse: ...

    async def update_runtime_config(self, pod_cidr: str) -> None: ...

    async def run_pod_sandbox(self, config: rt.PodSandboxConfig) -> str: ...

    async def stop_pod_sandbox(self, sandbox_id: str) -> None: ...

    async def remove_pod_sandbox(self, sandbox_id: str) -> None: ...

    async def pod_sandbox_status(self, sandbox_id: str) -> rt.PodSandboxStatus: ...

    async def list_pod_sandbox(self, flt: rt.PodSandboxFilter | None = None) -> list[rt.PodSandbox]: ...

    async def create_container(self, sandbox_id: str, config: rt.ContainerConfig,
                               sandbox_config: rt.PodSandboxConfig) -> str: ...

    async def start_container(self, container_id: str) -> None: ...

    async def stop_container(self, container_id: str, timeout: int) -> None: ...

    async def remove_container(self, container_id: str) -> None: ...

    async def container_status(self, container_id: str) -> rt.ContainerStatus: ...

    async def list_containers(self, flt: rt.ContainerFilter | None = None) -> list[rt.Container]: ...

    async def container_stats(self, container_id: str) -> rt.ContainerStats: ...

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float = 0) -> rt.ExecSyncResponse: ...

    def exec(self, frames: AsyncIterator[rt.StreamFrame]) -> AsyncIterator[rt.StreamFrame]:
        """Interactive exec; the first frame of ``frames`` is ``start``."""
        ...

    def attach(self, frames: AsyncIterator[rt.StreamFrame]) -> AsyncIterator[rt.StreamFrame]: ...

    def port_forward(self, frames: AsyncIterator[rt.PortForwardFrame]) -> AsyncIterator[rt.PortForwardFrame]: ...

    def container_logs(self, request: rt.ContainerLogsRequest) -> AsyncIterator[rt.LogChunk]: ...

    def container_events(self) -> AsyncIterator[rt.ContainerEventResponse]:
        """Lifecycle events of this runtime's containers until the consumer stops reading."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class ImageService(Protocol):
    async def list_images(self) -> list[rt.Image]: ...

    async def image_status(self, image: str) -> rt.Image | None:
        """The image if present, None when not."""
        ...

    async def pull_image(self, image: str) -> str:
        """Makes the image present; returns its id. Raises ImagePullError."""
        ...

    async def remove_image(self, image: str) -> None: ...


class Runtime(RuntimeService, ImageService, Protocol):
    """Both services, as every implementation here provides them."""
