"""The runtime over gRPC on a unix socket, as Kubernetes' kubelet talks CRI.

``serve_runtime`` exposes any in-process runtime (Docker, fake) as the
``RuntimeService``/``ImageService`` of ``kubelite.api.runtime.v1``;
``RemoteRuntime`` is the client side and implements the same Protocol, so the
kubelet cannot tell the two apart (``--container-runtime-endpoint
unix:///run/kubelite/runtime.sock``). Both ends are plain pipes: runtime
errors travel as gRPC codes and come back as the same exception classes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from kubelite.api.runtime.v1 import api_pb2 as rt
from kubelite.api.runtime.v1 import api_pb2_grpc as rt_grpc
from kubelite.runtime.interface import (
    ImagePullError,
    InvalidArgumentError,
    NotFoundError,
    Runtime,
    RuntimeError_,
    UnavailableError,
)

T = TypeVar("T")

_TO_CODE: tuple[tuple[type[RuntimeError_], grpc.StatusCode], ...] = (
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (ImagePullError, grpc.StatusCode.FAILED_PRECONDITION),
    (InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
)
_FROM_CODE: dict[grpc.StatusCode, type[RuntimeError_]] = {code: cls for cls, code in _TO_CODE}


def _code_of(exc: RuntimeError_) -> grpc.StatusCode:
    for cls, code in _TO_CODE:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.UNKNOWN


def socket_path(endpoint: str) -> str:
    """``unix:///path`` (or a bare path) -> the path."""
    if endpoint.startswith("unix://"):
        return endpoint[len("unix://"):]
    if "://" in endpoint:
        raise ValueError(f"container-runtime-endpoint: only unix:// endpoints are supported, got {endpoint!r}")
    return endpoint


async def _unary(context: grpc.aio.ServicerContext[Any, Any], call: Awaitable[T]) -> T:
    try:
        return await call
    except RuntimeError_ as exc:
        await context.abort(_code_of(exc), str(exc))
        raise AssertionError("abort returns never") from exc


class _RuntimeServicer(rt_grpc.RuntimeServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.r = runtime

    async def Version(self, request: rt.VersionRequest, context: Any) -> rt.VersionResponse:
        return await _unary(context, self.r.version())

    async def UpdateRuntimeConfig(self, request: rt.UpdateRuntimeConfigRequest,
                                  context: Any) -> rt.UpdateRuntimeConfigResponse:
        await _unary(context, self.r.update_runtime_config(request.pod_cidr))
        return rt.UpdateRuntimeConfigResponse()

    async def RunPodSandbox(self, request: rt.RunPodSandboxRequest, context: Any) -> rt.RunPodSandboxResponse:
        return rt.RunPodSandboxResponse(pod_sandbox_id=await _unary(context, self.r.run_pod_sandbox(request.config)))

    async def StopPodSandbox(self, request: rt.StopPodSandboxRequest, context: Any) -> rt.StopPodSandboxResponse:
        await _unary(context, self.r.stop_pod_sandbox(request.pod_sandbox_id))
        return rt.StopPodSandboxResponse()

    async def RemovePodSandbox(self, request: rt.RemovePodSandboxRequest,
                               context: Any) -> rt.RemovePodSandboxResponse:
        await _unary(context, self.r.remove_pod_sandbox(request.pod_sandbox_id))
        return rt.RemovePodSandboxResponse()

    async def PodSandboxStatus(self, request: rt.PodSandboxStatusRequest,
                               context: Any) -> rt.PodSandboxStatusResponse:
        return rt.PodSandboxStatusResponse(status=await _unary(context, self.r.pod_sandbox_status(
            request.pod_sandbox_id)))

    async def ListPodSandbox(self, request: rt.ListPodSandboxRequest, context: Any) -> rt.ListPodSandboxResponse:
        flt = request.filter if request.HasField("filter") else None
        return rt.ListPodSandboxResponse(items=await _unary(context, self.r.list_pod_sandbox(flt)))

    async def CreateContainer(self, request: rt.CreateContainerRequest, context: Any) -> rt.CreateContainerResponse:
        cid = await _unary(context, self.r.create_container(request.pod_sandbox_id, request.config,
                                                            request.sandbox_config))
        return rt.CreateContainerResponse(container_id=cid)

    async def StartContainer(self, request: rt.StartContainerRequest, context: Any) -> rt.StartContainerResponse:
        await _unary(context, self.r.start_container(request.container_id))
        return rt.StartContainerResponse()

    async def StopContainer(self, request: rt.StopContainerRequest, context: Any) -> rt.StopContainerResponse:
        await _unary(context, self.r.stop_container(request.container_id, int(request.timeout)))
        return rt.StopContainerResponse()

    async def RemoveContainer(self, request: rt.RemoveContainerRequest, context: Any) -> rt.RemoveContainerResponse:
        await _unary(context, self.r.remove_container(request.container_id))
        return rt.RemoveContainerResponse()

    async def ContainerStatus(self, request: rt.ContainerStatusRequest, context: Any) -> rt.ContainerStatusResponse:
        return rt.ContainerStatusResponse(status=await _unary(context, self.r.container_status(request.container_id)))

    async def ListContainers(self, request: rt.ListContainersRequest, context: Any) -> rt.ListContainersResponse:
        flt = request.filter if request.HasField("filter") else None
        return rt.ListContainersResponse(containers=await _unary(context, self.r.list_containers(flt)))

    async def ContainerStats(self, request: rt.ContainerStatsRequest, context: Any) -> rt.ContainerStatsResponse:
        return rt.ContainerStatsResponse(stats=await _unary(context, self.r.container_stats(request.container_id)))

    async def ExecSync(self, request: rt.ExecSyncRequest, context: Any) -> rt.ExecSyncResponse:
        return await _unary(context, self.r.exec_sync(request.container_id, list(request.cmd),
                                                      float(request.timeout)))

    async def _stream(self, context: Any, gen: AsyncIterator[T]) -> AsyncIterator[T]:
        try:
            async for item in gen:
                yield item
        except RuntimeError_ as exc:
            await context.abort(_code_of(exc), str(exc))

    async def Exec(self, request_iterator: Any, context: Any) -> AsyncIterator[rt.StreamFrame]:
        # grpc.aio wants an async generator function here, not a returned iterator.
        async for item in self._stream(context, self.r.exec(request_iterator)):
            yield item

    async def Attach(self, request_iterator: Any, context: Any) -> AsyncIterator[rt.StreamFrame]:
        # grpc.aio wants an async generator function here, not a returned iterator.
        async for item in self._stream(context, self.r.attach(request_iterator)):
            yield item

    async def PortForward(self, request_iterator: Any, context: Any) -> AsyncIterator[rt.PortForwardFrame]:
        # grpc.aio wants an async generator function here, not a returned iterator.
        async for item in self._stream(context, self.r.port_forward(request_iterator)):
            yield item

    async def ContainerLogs(self, request: rt.ContainerLogsRequest, context: Any) -> AsyncIterator[rt.LogChunk]:
        # grpc.aio wants an async generator function here, not a returned iterator.
        async for item in self._stream(context, self.r.container_logs(request)):
            yield item


    async def GetContainerEvents(self, request: rt.GetEventsRequest,
                                 context: Any) -> AsyncIterator[rt.ContainerEventResponse]:
        async for item in self._stream(context, self.r.container_events()):
            yield item


class _ImageServicer(rt_grpc.ImageServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.r = runtime

    async def ListImages(self, request: rt.ListImagesRequest, context: Any) -> rt.ListImagesResponse:
        return rt.ListImagesResponse(images=await _unary(context, self.r.list_images()))

    async def ImageStatus(self, request: rt.ImageStatusRequest, context: Any) -> rt.ImageStatusResponse:
        image = await _unary(context, self.r.image_status(request.image.image))
        return rt.ImageStatusResponse(image=image) if image is not None else rt.ImageStatusResponse()

    async def PullImage(self, request: rt.PullImageRequest, context: Any) -> rt.PullImageResponse:
        return rt.PullImageResponse(image_ref=await _unary(context, self.r.pull_image(request.image.image)))

    async def RemoveImage(self, request: rt.RemoveImageRequest, context: Any) -> rt.RemoveImageResponse:
        await _unary(context, self.r.remove_image(request.image.image))
        return rt.RemoveImageResponse()


async def serve_runtime(runtime: Runtime, endpoint: str) -> grpc.aio.Server:
    """Starts a gRPC server for ``runtime`` on a unix socket; the caller stops it."""
    server = grpc.aio.server()
    rt_grpc.add_RuntimeServiceServicer_to_server(_RuntimeServicer(runtime), server)
    rt_grpc.add_ImageServiceServicer_to_server(_ImageServicer(runtime), server)
    server.add_insecure_port(f"unix://{socket_path(endpoint)}")
    await server.start()
    return server


def _translate(exc: grpc.aio.AioRpcError) -> RuntimeError_:
    cls = _FROM_CODE.get(exc.code(), RuntimeError_)
    return cls(exc.details() or str(exc.code()))


class RemoteRuntime:
    """The runtime Protocol over a gRPC channel to a runtime endpoint."""

    def __init__(self, endpoint: str, *, timeout: float = 120.0) -> None:
        self._channel = grpc.aio.insecure_channel(f"unix://{socket_path(endpoint)}")
        self._rs = rt_grpc.RuntimeServiceStub(self._channel)
        self._is = rt_grpc.ImageServiceStub(self._channel)
        self._timeout = timeout

    async def _call(self, method: Callable[..., Awaitable[T]], request: Any) -> T:
        try:
            return await method(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc) from exc

    async def _stream(self, call: Any) -> AsyncIterator[Any]:
        try:
            async for item in call:
                yield item
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc) from exc
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._channel.close()

    async def version(self) -> rt.VersionResponse:
        return await self._call(self._rs.Version, rt.VersionRequest())

    async def update_runtime_config(self, pod_cidr: str) -> None:
        await self._call(self._rs.UpdateRuntimeConfig, rt.UpdateRuntimeConfigRequest(pod_cidr=pod_cidr))

    async def run_pod_sandbox(self, config: rt.PodSandboxConfig) -> str:
        resp = await self._call(self._rs.RunPodSandbox, rt.RunPodSandboxRequest(config=config))
        return resp.pod_sandbox_id

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        await self._call(self._rs.StopPodSandbox, rt.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        await self._call(self._rs.RemovePodSandbox, rt.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))

    async def pod_sandbox_status(self, sandbox_id: str) -> rt.PodSandboxStatus:
        resp = await self._call(self._rs.PodSandboxStatus, rt.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id))
        return resp.status

    async def list_pod_sandbox(self, flt: rt.PodSandboxFilter | None = None) -> list[rt.PodSandbox]:
        resp = await self._call(self._rs.ListPodSandbox, rt.ListPodSandboxRequest(filter=flt))
        return list(resp.items)

    async def create_container(self, sandbox_id: str, config: rt.ContainerConfig,
                               sandbox_config: rt.PodSandboxConfig) -> str:
        resp = await self._call(self._rs.CreateContainer, rt.CreateContainerRequest(
            pod_sandbox_id=sandbox_id, config=config, sandbox_config=sandbox_config))
        return resp.container_id

    async def start_container(self, container_id: str) -> None:
        await self._call(self._rs.StartContainer, rt.StartContainerRequest(container_id=container_id))

    async def stop_container(self, container_id: str, timeout: int) -> None:
        await self._call(self._rs.StopContainer, rt.StopContainerRequest(container_id=container_id, timeout=timeout))

    async def remove_container(self, container_id: str) -> None:
        await self._call(self._rs.RemoveContainer, rt.RemoveContainerRequest(container_id=container_id))

    async def container_status(self, container_id: str) -> rt.ContainerStatus:
        resp = await self._call(self._rs.ContainerStatus, rt.ContainerStatusRequest(container_id=container_id))
        return resp.status

    async def list_containers(self, flt: rt.ContainerFilter | None = None) -> list[rt.Container]:
        resp = await self._call(self._rs.ListContainers, rt.ListContainersRequest(filter=flt))
        return list(resp.containers)

    async def container_stats(self, container_id: str) -> rt.ContainerStats:
        resp = await self._call(self._rs.ContainerStats, rt.ContainerStatsRequest(container_id=container_id))
        return resp.stats

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float = 0) -> rt.ExecSyncResponse:
        return await self._call(self._rs.ExecSync, rt.ExecSyncRequest(container_id=container_id, cmd=cmd,
                                                                       timeout=int(timeout)))

    def exec(self, frames: AsyncIterator[rt.StreamFrame]) -> AsyncIterator[rt.StreamFrame]:
        return self._stream(self._rs.Exec(frames))

    def attach(self, frames: AsyncIterator[rt.StreamFrame]) -> AsyncIterator[rt.StreamFrame]:
        return self._stream(self._rs.Attach(frames))

    def port_forward(self, frames: AsyncIterator[rt.PortForwardFrame]) -> AsyncIterator[rt.PortForwardFrame]:
        return self._stream(self._rs.PortForward(frames))

    def container_logs(self, request: rt.ContainerLogsRequest) -> AsyncIterator[rt.LogChunk]:
        return self._stream(self._rs.ContainerLogs(request))

    def container_events(self) -> AsyncIterator[rt.ContainerEventResponse]:
        return self._stream(self._rs.GetContainerEvents(rt.GetEventsRequest()))

    async def list_images(self) -> list[rt.Image]:
        resp = await self._call(self._is.ListImages, rt.ListImagesRequest())
        return list(resp.images)

    async def image_status(self, image: str) -> rt.Image | None:
        resp = await self._call(self._is.ImageStatus, rt.ImageStatusRequest(image=rt.ImageSpec(image=image)))
        return resp.image if resp.HasField("image") else None

    async def pull_image(self, image: str) -> str:
        resp = await self._call(self._is.PullImage, rt.PullImageRequest(image=rt.ImageSpec(image=image)))
        return resp.image_ref

    async def remove_image(self, image: str) -> None:
        await self._call(self._is.RemoveImage, rt.RemoveImageRequest(image=rt.ImageSpec(image=image)))

