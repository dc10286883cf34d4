"""The pod streaming subresources (log, exec, attach, portforward): the API server's hop.

Users never talk to kubelets: `kubelite logs` and `kubelite exec` go to the
API server, which authenticates and authorizes them like any request, checks
the pod (it exists, is bound, the container is one of its own), and then
forwards the call to the kubelet of the pod's node over the same gRPC service
(proto/kubelite/api/service/v1/streaming.proto), copying frames both ways.
The kubelet's address is the one its Node reports (InternalIP, then Hostname;
status.daemonEndpoints.kubeletEndpoint.Port, 10250 by default). The pod's uid
travels with the call, so a kubelet never answers for a newer pod that reuses
the name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.api.service.v1 import streaming_pb2 as st
from kubelite.api.service.v1 import streaming_pb2_grpc as st_grpc
from kubelite.apiserver.pipeline import Attributes, Pipeline, RequestInfo, UserInfo
from kubelite.apiserver.service import Registry, request_info
from kubelite.client.client import translate_grpc_error
from kubelite.machinery import errors

log = logging.getLogger(__name__)

DEFAULT_KUBELET_PORT = 10250
Frame = TypeVar("Frame", st.StreamFrame, st.PortForwardFrame)


class KubeletDialer:
    """One gRPC channel per kubelet address, opened on first use and kept."""

    def __init__(self, options: tuple[tuple[str, Any], ...] = ()) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._options = options

    def stub(self, target: str) -> st_grpc.PodStreamServiceAsyncStub:
        channel = self._channels.get(target)
        if channel is None:
            channel = grpc.aio.insecure_channel(target, options=list(self._options))
            self._channels[target] = channel
        return st_grpc.PodStreamServiceStub(channel)

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()


def kubelet_target(node: core_v1.Node) -> str:
    """``host:port`` of a node's kubelet, from what the kubelet reported."""
    addresses = {a.type: a.address for a in node.status.addresses}
    host = addresses.get("InternalIP") or addresses.get("Hostname") or addresses.get("ExternalIP")
    if not host:
        raise errors.bad_request(f'node "{node.metadata.name}" reports no address for its kubelet')
    port = node.status.daemon_endpoints.kubelet_endpoint.port or DEFAULT_KUBELET_PORT
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def choose_container(pod: core_v1.Pod, container: str) -> str:
    """The named container, or the only one; errors read like kube-apiserver's."""
    names = [c.name for c in pod.spec.containers]
    init = [c.name for c in pod.spec.init_containers]
    name = pod.metadata.name
    if not container:
        if len(names) == 1:
            return names[0]
        raise errors.bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                 f"[{' '.join(names)}]" + (f" or one of the init containers: [{' '.join(init)}]"
                                                           if init else ""))
    if container not in names and container not in init:
        raise errors.bad_request(f"container {container} is not valid for pod {name}")
    return container


class PodStreamServicer(st_grpc.PodStreamServiceServicer):
    """Serves PodStreamService to clients by forwarding to kubelets."""

    def __init__(self, registry: Registry, pipeline: Pipeline, dialer: KubeletDialer) -> None:
        self._pods = registry.stores[("", "pods")]
        self._nodes = registry.stores[("", "nodes")]
        self._pipeline = pipeline
        self._dialer = dialer

    async def _target(self, info: RequestInfo, subresource: str, namespace: str,
                      name: str, container: str | None) -> tuple[core_v1.Pod, str, str]:
        """Authorizes the call; returns the pod, the chosen container and the kubelet's address."""
        store = self._pods

        def make(user: UserInfo) -> Attributes:
            verb = "get" if subresource == "log" else "create"
            return Attributes(user, verb, store.rt, namespace, name, subresource=subresource)

        await self._pipeline.check(info, make)
        pod = await store.get(namespace, name)
        assert isinstance(pod, core_v1.Pod)
        if not pod.spec.node_name:
            raise errors.bad_request(f"pod {name} does not have a host assigned")
        chosen = choose_container(pod, container) if container is not None else ""
        node = await self._nodes.get("", pod.spec.node_name, "0")
        assert isinstance(node, core_v1.Node)
        return pod, chosen, kubelet_target(node)

    async def check(self, info: RequestInfo, subresource: str, namespace: str, name: str,
                    container: str | None) -> None:
        """Refuses a stream before it starts (the REST API must answer with an HTTP error before upgrading)."""
        await self._target(info, subresource, namespace, name, container)

    async def Log(self, request: st.PodLogRequest,
                  context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[st.PodLogChunk]:
        try:
            async for chunk in self.log(request_info(context), request):
                yield chunk
        except errors.StatusError as exc:
            await _abort(context, exc)

    async def log(self, info: RequestInfo, request: st.PodLogRequest) -> AsyncIterator[st.PodLogChunk]:
        """A pod's log from its kubelet; gRPC's Log and the REST API's pods/log both serve this."""
        pod, container, target = await self._target(info, "log", request.namespace, request.name,
                                                    request.container)
        if request.since_time and request.HasField("since_seconds"):
            raise errors.bad_request("at most one of sinceTime or sinceSeconds may be specified")
        forwarded = st.PodLogRequest()
        forwarded.CopyFrom(request)
        forwarded.container, forwarded.pod_uid = container, pod.metadata.uid
        call = self._dialer.stub(target).Log(forwarded)
        try:
            async for chunk in call:
                yield chunk
        except grpc.aio.AioRpcError as exc:
            raise translate_grpc_error(exc, target) from exc
        finally:
            call.cancel()

    async def Exec(self, request_iterator: AsyncIterator[st.StreamFrame],
                   context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[st.StreamFrame]:
        async for frame in self._exec_like("exec", request_iterator, context):
            yield frame

    async def Attach(self, request_iterator: AsyncIterator[st.StreamFrame],
                     context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[st.StreamFrame]:
        async for frame in self._exec_like("attach", request_iterator, context):
            yield frame

    async def _exec_like(self, subresource: str, frames: AsyncIterator[st.StreamFrame],
                         context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[st.StreamFrame]:
        try:
            async for frame in self.exec(request_info(context), subresource, frames):
                yield frame
        except errors.StatusError as exc:
            await _abort(context, exc)

    async def exec(self, info: RequestInfo, subresource: str,
                   frames: AsyncIterator[st.StreamFrame]) -> AsyncIterator[st.StreamFrame]:
        """exec or attach: the client's frames (a start frame first) to the kubelet, the kubelet's back.

        gRPC's Exec/Attach and the REST API's WebSocket exec/attach both serve this.
        """
        first = await _first(frames, "start", "the first frame must be a start frame")
        start = first.start
        if subresource == "exec" and not start.command:
            raise errors.bad_request("you must specify at least one command for the container")
        pod, container, target = await self._target(info, subresource, start.namespace, start.name,
                                                    start.container)
        opening = st.StreamFrame()
        opening.CopyFrom(first)
        opening.start.container, opening.start.pod_uid = container, pod.metadata.uid
        stub = self._dialer.stub(target)
        call = stub.Exec() if subresource == "exec" else stub.Attach()
        async for frame in _pipe(call, opening, frames, target):
            yield frame

    async def PortForward(self, request_iterator: AsyncIterator[st.PortForwardFrame],
                          context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[st.PortForwardFrame]:
        try:
            async for frame in self.port_forward(request_info(context), request_iterator):
                yield frame
        except errors.StatusError as exc:
            await _abort(context, exc)

    async def port_forward(self, info: RequestInfo,
                           frames: AsyncIterator[st.PortForwardFrame]) -> AsyncIterator[st.PortForwardFrame]:
        """One forwarded connection to a pod's port (a start frame first, then data both ways)."""
        first = await _first(frames, "start", "the first frame must be a start frame")
        start = first.start
        if not 0 < start.port < 65536:
            raise errors.bad_request(f"invalid port {start.port}: must be between 1 and 65535")
        pod, _, target = await self._target(info, "portforward", start.namespace, start.name, None)
        opening = st.PortForwardFrame()
        opening.CopyFrom(first)
        opening.start.pod_uid = pod.metadata.uid
        async for frame in _pipe(self._dialer.stub(target).PortForward(), opening, frames, target):
            yield frame


async def _first(frames: AsyncIterator[Frame], field: str, message: str) -> Frame:
    try:
        frame = await anext(frames)
    except StopAsyncIteration:
        raise errors.bad_request(message) from None
    if frame.WhichOneof("frame") != field:
        raise errors.bad_request(message)
    return frame


async def _pipe(call: Any, opening: Message, frames: AsyncIterator[Frame], target: str) -> AsyncIterator[Frame]:
    """Copies frames both ways between a client's stream and the kubelet's, until either ends."""
    await call.write(opening)

    async def upstream() -> None:
        async for frame in frames:
            await call.write(frame)
        await call.done_writing()

    pump = asyncio.create_task(upstream(), name=f"stream-upstream:{target}")
    pump.add_done_callback(_log_failure)
    try:
        async for frame in call:
            yield frame
    except grpc.aio.AioRpcError as exc:
        raise translate_grpc_error(exc, target) from exc
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError, grpc.aio.UsageError):
            await pump
        call.cancel()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("stream upstream ended: %r", task.exception())


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: errors.StatusError) -> None:
    await context.abort(exc.grpc_code, exc.message, trailing_metadata=exc.to_grpc_metadata())

