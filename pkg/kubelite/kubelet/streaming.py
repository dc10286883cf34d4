"""The kubelet API on ``--port``: pod logs, exec, attach and port-forward (PodStreamService).

The API server forwards the pod subresources here with ``pod_uid`` filled in;
this side resolves namespace/name (and uid, so a recreated pod of the same
name is never served by mistake) to the runtime's container or sandbox, and
copies frames between the caller and the runtime's streams. Failures are
Kubernetes-style Status errors in the trailing metadata, as on the API server.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import grpc

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.runtime.v1 import api_pb2 as rt
from kubelite.api.service.v1 import streaming_pb2 as st
from kubelite.api.service.v1 import streaming_pb2_grpc as st_grpc
from kubelite.machinery import errors
from kubelite.machinery.errors import StatusError
from kubelite.runtime.interface import LABEL_CONTAINER_NAME, LABEL_POD_UID, NotFoundError, RuntimeError_

if TYPE_CHECKING:
    from kubelite.kubelet.kubelet import Kubelet


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: StatusError) -> None:
    await context.abort(exc.grpc_code, exc.message, trailing_metadata=exc.to_grpc_metadata())


def _bad(message: str) -> StatusError:
    return errors.bad_request(message)


class PodStreamServicer(st_grpc.PodStreamServiceServicer):
    def __init__(self, kubelet: Kubelet) -> None:
        self.kubelet = kubelet

    @property
    def runtime(self) -> Any:
        return self.kubelet.runtime

    def _pod(self, namespace: str, name: str, uid: str) -> core.Pod:
        pod = self.kubelet.pods.store.get_by_key(f"{namespace}/{name}")
        if pod is None or (uid and pod.metadata.uid != uid):
            raise errors.not_found("", "pods", name)
        return pod

    @staticmethod
    def _container_name(pod: core.Pod, container: str) -> str:
        names = [c.name for c in pod.spec.containers]
        init = [c.name for c in pod.spec.init_containers]
        if not container:
            if len(names) == 1:
                return names[0]
            raise _bad(f"a container name must be specified for pod {pod.metadata.name}, choose one of: "
                       f"[{' '.join(names)}]" + (f" or one of the init containers: [{' '.join(init)}]" if init else ""))
        if container not in names + init:
            raise _bad(f"container {container} is not valid for pod {pod.metadata.name}")
        return container

    async def _instances(self, pod: core.Pod, container: str) -> list[rt.ContainerStatus]:
        found = await self.runtime.list_containers(rt.ContainerFilter(
            label_selector={LABEL_POD_UID: pod.metadata.uid, LABEL_CONTAINER_NAME: container}))
        statuses = []
        for c in found:
            try:
                statuses.append(await self.runtime.container_status(c.id))
            except NotFoundError:
                continue
        statuses.sort(key=lambda s: (s.metadata.attempt, s.created_at), reverse=True)
        return statuses

    async def _running_container(self, namespace: str, name: str, uid: str, container: str) -> str:
        pod = self._pod(namespace, name, uid)
        cname = self._container_name(pod, container)
        instances = await self._instances(pod, cname)
        if not instances or instances[0].state != rt.CONTAINER_RUNNING:
            raise _bad(f"container {cname} is not running in pod {name}")
        return str(instances[0].id)

    async def Log(self, request: st.PodLogRequest, context: Any) -> AsyncIterator[st.PodLogChunk]:
        try:
            pod = self._pod(request.namespace, request.name, request.pod_uid)
            cname = self._container_name(pod, request.container)
            instances = await self._instances(pod, cname)
            index = 1 if request.previous else 0
            if len(instances) <= index:
                if request.previous:
                    raise _bad(f'previous terminated container "{cname}" in pod "{request.name}" not found')
                raise _bad(f'container "{cname}" in pod "{request.name}" is waiting to start')
            since = 0
            if request.HasField("since_seconds"):
                since = time.time_ns() - request.since_seconds * 1_000_000_000
            elif request.since_time:
                try:
                    since = int(datetime.fromisoformat(request.since_time.replace("Z", "+00:00")).timestamp() * 1e9)
                except ValueError as exc:
                    raise _bad(f"sinceTime: {request.since_time!r} is not an RFC 3339 time") from exc
            req = rt.ContainerLogsRequest(container_id=instances[index].id, follow=request.follow and index == 0,
                                          timestamps=request.timestamps, since=since)
            if request.HasField("tail_lines"):
                req.tail_lines = request.tail_lines
            if request.HasField("limit_bytes"):
                req.limit_bytes = request.limit_bytes
            async for chunk in self.runtime.container_logs(req):
                yield st.PodLogChunk(data=chunk.data)
        except StatusError as exc:
            await _abort(context, exc)
        except RuntimeError_ as exc:
            await _abort(context, errors.internal(str(exc)))

    async def _stream(self, request_iterator: AsyncIterator[st.StreamFrame], context: Any,
                      attach: bool) -> AsyncIterator[st.StreamFrame]:
        try:
            first = await anext(aiter(request_iterator), None)
            if first is None or first.WhichOneof("frame") != "start":
                raise _bad("the first frame must be start")
            start = first.start
            if not attach and not start.command:
                raise _bad("you must specify at least one command for the container")
            cid = await self._running_container(start.namespace, start.name, start.pod_uid, start.container)

            async def frames() -> AsyncIterator[rt.StreamFrame]:
                yield rt.StreamFrame(start=rt.StreamStart(
                    container_id=cid, cmd=list(start.command), stdin=start.stdin, stdout=True, stderr=True,
                    tty=start.tty, size=rt.TerminalSize(width=start.size.width, height=start.size.height)))
                async for f in request_iterator:
                    kind = f.WhichOneof("frame")
                    if kind == "stdin":
                        yield rt.StreamFrame(stdin=f.stdin)
                    elif kind == "close_stdin":
                        yield rt.StreamFrame(close_stdin=True)
                    elif kind == "resize":
                        yield rt.StreamFrame(resize=rt.TerminalSize(width=f.resize.width, height=f.resize.height))

            stream = self.runtime.attach(frames()) if attach else self.runtime.exec(frames())
            async for out in stream:
                kind = out.WhichOneof("frame")
                if kind == "stdout":
                    yield st.StreamFrame(stdout=out.stdout)
                elif kind == "stderr":
                    yield st.StreamFrame(stderr=out.stderr)
                elif kind == "exit":
                    yield st.StreamFrame(exit=st.ExitStatus(exit_code=out.exit.exit_code, reason=out.exit.reason,
                                                            message=out.exit.message))
        except StatusError as exc:
            await _abort(context, exc)
        except RuntimeError_ as exc:
            await _abort(context, errors.internal(str(exc)))

    async def Exec(self, request_iterator: Any, context: Any) -> AsyncIterator[st.StreamFrame]:
        async for frame in self._stream(request_iterator, context, attach=False):
            yield frame

    async def Attach(self, request_iterator: Any, context: Any) -> AsyncIterator[st.StreamFrame]:
        async for frame in self._stream(request_iterator, context, attach=True):
            yield frame

    async def PortForward(self, request_iterator: Any, context: Any) -> AsyncIterator[st.PortForwardFrame]:
        try:
            first = await anext(aiter(request_iterator), None)
            if first is None or first.WhichOneof("frame") != "start":
                raise _bad("the first frame must be start")
            start = first.start
            if not 0 < start.port < 65536:
                raise _bad(f"port: {start.port} is not a valid port number")
            pod = self._pod(start.namespace, start.name, start.pod_uid)
            sandboxes = await self.runtime.list_pod_sandbox(rt.PodSandboxFilter(
                state=rt.SANDBOX_READY, label_selector={LABEL_POD_UID: pod.metadata.uid}))
            if not sandboxes:
                raise _bad(f"pod {start.name} is not running")

            async def frames() -> AsyncIterator[rt.PortForwardFrame]:
                yield rt.PortForwardFrame(start=rt.PortForwardStart(pod_sandbox_id=sandboxes[0].id, port=start.port))
                async for f in request_iterator:
                    kind = f.WhichOneof("frame")
                    if kind == "data":
                        yield rt.PortForwardFrame(data=f.data)
                    elif kind == "close":
                        yield rt.PortForwardFrame(close=True)

            async for out in self.runtime.port_forward(frames()):
                kind = out.WhichOneof("frame")
                if kind == "data":
                    yield st.PortForwardFrame(data=out.data)
                elif kind == "error":
                    yield st.PortForwardFrame(error=out.error)
                elif kind == "close":
                    yield st.PortForwardFrame(close=True)
        except StatusError as exc:
            await _abort(context, exc)
        except RuntimeError_ as exc:
            await _abort(context, errors.internal(str(exc)))


async def serve_streaming(kubelet: Kubelet, address: str, port: int) -> grpc.aio.Server:
    server = grpc.aio.server()
    st_grpc.add_PodStreamServiceServicer_to_server(PodStreamServicer(kubelet), server)
    bound = server.add_insecure_port(f"{address}:{port}")
    if not bound:
        raise OSError(f"--port: cannot listen on {address}:{port}")
    await server.start()
    return server
