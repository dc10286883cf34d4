"""pods/exec, pods/attach and pods/portforward over WebSocket, Kubernetes' channel protocols.

Each binary WebSocket message starts with a channel byte. For exec and
attach: 0 stdin, 1 stdout, 2 stderr, 3 the final Status (Success, or Failure
with the exit code as an ``ExitCode`` cause, which is how kubectl exits with
the command's code), 4 terminal resizes as ``{"Width":..,"Height":..}``;
``v5.channel.k8s.io`` adds 255, by which the client closes its stdin
(kubectl's default since 1.31), ``v4.channel.k8s.io`` is what the official
Python client speaks. For port-forward, each requested port has a data
channel (2i) and an error channel (2i+1), each opened by a frame carrying
the port number (little-endian), as the Python client expects.

kubectl's port-forward instead offers ``SPDY/3.1+portforward.k8s.io``: a
SPDY session inside the WebSocket (see rest/spdy.py), where each forwarded
connection is a pair of streams, ``error`` and ``data``, opened with the
headers ``streamtype``, ``port`` and ``requestid``. The error stream carries
at most one message and then ends; kubectl waits for both ends before it
lets the connection go.

The frames become the same StreamFrames the gRPC PodStreamService carries,
and go through the same code to the kubelet. kubectl's older SPDY upgrade
(without WebSocket) is not spoken: kubectl uses it only when the WebSocket
is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSMsgType, web

from kubelite.api.service.v1 import streaming_pb2 as st
from kubelite.apiserver.pipeline import RequestInfo
from kubelite.apiserver.rest import spdy
from kubelite.apiserver.rest.paths import Target
from kubelite.apiserver.streaming import PodStreamServicer
from kubelite.machinery import errors

log = logging.getLogger(__name__)

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
PROTOCOLS = (V5, V4)
SPDY_PORT_FORWARD = "SPDY/3.1+portforward.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
TRUE = ("true", "1")


def _offered(request: web.Request) -> list[str]:
    return [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]


def _websocket(request: web.Request, protocols: tuple[str, ...]) -> web.WebSocketResponse:
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise errors.bad_request(
            "pods/exec, attach and portforward are served over WebSocket (" + ", ".join(protocols) + "); "
            "a plain SPDY upgrade is not supported")
    offered = _offered(request)
    if not any(p in protocols for p in offered):
        raise errors.bad_request(f"none of the offered WebSocket subprotocols {offered} is supported: use one of "
                                 + ", ".join(protocols))
    return web.WebSocketResponse(protocols=protocols, max_msg_size=0, autoping=True)


def _payload(msg: Any) -> bytes:
    """A message's channel-prefixed bytes; the Python client sends text frames when it writes a str."""
    if msg.type == WSMsgType.BINARY:
        return bytes(msg.data)
    if msg.type == WSMsgType.TEXT:
        return str(msg.data).encode()
    return b""


def exit_status(frame: st.ExitStatus, command: list[str]) -> dict[str, Any]:
    """The Status kubectl and the Python client read on the error channel."""
    if frame.exit_code == 0 and not frame.reason:
        return {"metadata": {}, "status": "Success"}
    if frame.reason in ("", "NonZeroExitCode"):
        return {"metadata": {}, "status": "Failure",
                "message": f"command terminated with non-zero exit code: error executing command "
                           f"[{' '.join(command)}], exit code {frame.exit_code}",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": str(frame.exit_code)}]}}
    return {"metadata": {}, "status": "Failure", "message": frame.message or frame.reason,
            "reason": "InternalError"}


async def exec_or_attach(request: web.Request, info: RequestInfo, streams: PodStreamServicer, target: Target,
                         subresource: str) -> web.WebSocketResponse:
    q = request.query
    command = list(q.getall("command", []))
    start = st.ExecStart(namespace=target.namespace, name=target.name, container=q.get("container", ""),
                         command=command, stdin=q.get("stdin", "").lower() in TRUE,
                         stdout=q.get("stdout", "true").lower() in TRUE,
                         stderr=q.get("stderr", "true").lower() in TRUE, tty=q.get("tty", "").lower() in TRUE)
    if subresource == "exec" and not command:
        raise errors.bad_request("you must specify at least one command for the container")
    # Refusals (no such pod or container, no node yet) are HTTP errors before the upgrade, as in Kubernetes.
    await streams.check(info, subresource, target.namespace, target.name, start.container)
    ws = _websocket(request, PROTOCOLS)
    await ws.prepare(request)
    v5 = ws.ws_protocol == V5

    async def inbound() -> AsyncIterator[st.StreamFrame]:
        yield st.StreamFrame(start=start)
        stdin_open = start.stdin
        if not stdin_open:  # no input will come: say so at once, as a closed stdin
            yield st.StreamFrame(close_stdin=True)
        async for msg in ws:
            data = _payload(msg)
            if not data:
                continue
            channel, payload = data[0], data[1:]
            if channel == STDIN and stdin_open:
                yield st.StreamFrame(stdin=payload)
            elif channel == RESIZE:
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    size = json.loads(payload)
                    yield st.StreamFrame(resize=st.TerminalSize(width=int(size.get("Width", 0)),
                                                                height=int(size.get("Height", 0))))
            elif channel == CLOSE and v5 and payload[:1] == bytes([STDIN]) and stdin_open:
                stdin_open = False
                yield st.StreamFrame(close_stdin=True)
        if stdin_open:  # the client went away: its input ended
            yield st.StreamFrame(close_stdin=True)

    status: dict[str, Any] | None = None
    try:
        async for frame in streams.exec(info, subresource, inbound()):
            kind = frame.WhichOneof("frame")
            if kind == "stdout":
                await ws.send_bytes(bytes([STDOUT]) + frame.stdout)
            elif kind == "stderr":
                await ws.send_bytes(bytes([STDERR]) + frame.stderr)
            elif kind == "exit":
                status = exit_status(frame.exit, command)
                break
    except errors.StatusError as exc:
        status = {"metadata": {}, "status": "Failure", "message": exc.message, "reason": exc.reason,
                  "code": exc.code}
    except ConnectionResetError:
        return ws
    with contextlib.suppress(ConnectionResetError):
        await ws.send_bytes(bytes([ERROR]) + json.dumps(status or {"metadata": {}, "status": "Success"}).encode())
        await ws.close()
    return ws


async def port_forward(request: web.Request, info: RequestInfo, streams: PodStreamServicer,
                       target: Target) -> web.WebSocketResponse:
    if SPDY_PORT_FORWARD in _offered(request):
        await streams.check(info, "portforward", target.namespace, target.name, None)
        ws = _websocket(request, (SPDY_PORT_FORWARD,))
        await ws.prepare(request)
        await _SpdyPortForward(ws, info, streams, target).run()
        return ws
    raw = ",".join(request.query.getall("ports", []))
    try:
        ports = [int(p) for p in raw.split(",") if p.strip()]
    except ValueError:
        raise errors.bad_request(f'invalid port "{raw}"') from None
    if not ports:
        raise errors.bad_request("query parameter \"port\" is required")
    for port in ports:
        if not 0 < port < 65536:
            raise errors.bad_request(f"invalid port {port}: must be between 1 and 65535")
    await streams.check(info, "portforward", target.namespace, target.name, None)
    ws = _websocket(request, (V4,))
    await ws.prepare(request)
    queues: list[asyncio.Queue[bytes | None]] = [asyncio.Queue() for _ in ports]

    async def forward(index: int, port: int) -> None:
        data_ch, err_ch = 2 * index, 2 * index + 1
        prefix = port.to_bytes(2, "little")
        await ws.send_bytes(bytes([data_ch]) + prefix)
        await ws.send_bytes(bytes([err_ch]) + prefix)

        async def frames() -> AsyncIterator[st.PortForwardFrame]:
            yield st.PortForwardFrame(start=st.PortForwardStart(namespace=target.namespace, name=target.name,
                                                                port=port))
            while (chunk := await queues[index].get()) is not None:
                yield st.PortForwardFrame(data=chunk)
            yield st.PortForwardFrame(close=True)

        try:
            async for frame in streams.port_forward(info, frames()):
                kind = frame.WhichOneof("frame")
                if kind == "data":
                    await ws.send_bytes(bytes([data_ch]) + frame.data)
                elif kind == "error":
                    await ws.send_bytes(bytes([err_ch]) + frame.error.encode())
                elif kind == "close":
                    break
        except errors.StatusError as exc:
            await ws.send_bytes(bytes([err_ch]) + exc.message.encode())

    tasks = [asyncio.create_task(forward(i, p), name=f"portforward:{target.name}:{p}") for i, p in enumerate(ports)]
    try:
        async for msg in ws:
            data = _payload(msg)
            if data and data[0] % 2 == 0 and data[0] // 2 < len(ports):
                queues[data[0] // 2].put_nowait(data[1:])
    finally:
        for q in queues:
            q.put_nowait(None)
        _, pending = await asyncio.wait(tasks, timeout=5)
        for task in pending:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionResetError, Exception):
                await task
    return ws


class _SpdyPortForward:
    """One kubectl port-forward session: a forward to the pod per (error, data) stream pair."""

    def __init__(self, ws: web.WebSocketResponse, info: RequestInfo, streams: PodStreamServicer,
                 target: Target) -> None:
        self.ws = ws
        self.info = info
        self.streams = streams
        self.target = target
        self.codec = spdy.Codec()
        self._send_lock = asyncio.Lock()
        self._pairs: dict[str, dict[str, tuple[int, str]]] = {}  # requestid -> streamtype -> (stream, port)
        self._inbound: dict[int, asyncio.Queue[bytes | None]] = {}  # data stream -> what the client sent
        self._tasks: set[asyncio.Task[None]] = set()

    async def _send(self, *frames: bytes) -> None:
        async with self._send_lock:
            for frame in frames:
                await self.ws.send_bytes(frame)

    async def run(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != WSMsgType.BINARY:
                    continue
                for frame in self.codec.feed(bytes(msg.data)):
                    if not await self._on(frame):
                        return
        except spdy.ProtocolError as exc:
            log.info("port-forward to %s/%s: %s", self.target.namespace, self.target.name, exc)
            with contextlib.suppress(ConnectionResetError):
                await self._send(self.codec.goaway(0, spdy.PROTOCOL_ERROR))
        finally:
            for q in self._inbound.values():
                q.put_nowait(None)
            if self._tasks:
                _, pending = await asyncio.wait(self._tasks, timeout=5)
                for task in pending:
                    task.cancel()
            await self.ws.close()

    async def _on(self, frame: spdy.Frame) -> bool:
        """Handles one frame; False ends the session (the client said GOAWAY)."""
        if frame.type == spdy.SYN_STREAM:
            async with self._send_lock:  # header blocks share one zlib stream: compress in sending order
                await self.ws.send_bytes(self.codec.syn_reply(frame.stream_id))
            self._open(frame)
        elif frame.type == spdy.DATA:
            q = self._inbound.get(frame.stream_id)
            if q is not None:
                if frame.data:
                    q.put_nowait(frame.data)
                if frame.fin:
                    q.put_nowait(None)
        elif frame.type == spdy.PING and frame.value % 2 == 1:  # the client's pings are odd: echo them
            await self._send(self.codec.ping(frame.value))
        elif frame.type == spdy.RST_STREAM:
            q = self._inbound.pop(frame.stream_id, None)
            if q is not None:
                q.put_nowait(None)
        elif frame.type == spdy.GOAWAY:
            return False
        return True

    def _open(self, frame: spdy.Frame) -> None:
        kind = frame.headers.get("streamtype", "")
        pair = self._pairs.setdefault(frame.headers.get("requestid", ""), {})
        if kind not in ("error", "data") or kind in pair:
            self._spawn(self._send(self.codec.rst_stream(frame.stream_id, spdy.PROTOCOL_ERROR)))
            return
        pair[kind] = (frame.stream_id, frame.headers.get("port", ""))
        if kind == "data":
            self._inbound[frame.stream_id] = asyncio.Queue()
        if len(pair) == 2:
            del self._pairs[frame.headers.get("requestid", "")]
            self._spawn(self._forward(pair["data"][0], pair["error"][0], pair["data"][1]))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro, name=f"portforward:{self.target.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(self, data_id: int, error_id: int, raw_port: str) -> None:
        inbound = self._inbound[data_id]
        error = ""
        try:
            port = int(raw_port)
            if not 0 < port < 65536:
                raise ValueError(raw_port)
        except ValueError:
            error = f'invalid port "{raw_port}": must be between 1 and 65535'
        if not error:
            async def frames() -> AsyncIterator[st.PortForwardFrame]:
                yield st.PortForwardFrame(start=st.PortForwardStart(namespace=self.target.namespace,
                                                                    name=self.target.name, port=port))
                while (chunk := await inbound.get()) is not None:
                    yield st.PortForwardFrame(data=chunk)
                yield st.PortForwardFrame(close=True)

            try:
                async for frame in self.streams.port_forward(self.info, frames()):
                    kind = frame.WhichOneof("frame")
                    if kind == "data":
                        await self._send(*self.codec.data(data_id, frame.data))
                    elif kind == "error":
                        error += frame.error
                    elif kind == "close":
                        break
            except errors.StatusError as exc:
                error = exc.message
        self._inbound.pop(data_id, None)
        with contextlib.suppress(ConnectionResetError):
            # Both ends, the error stream's after its message: kubectl waits for each before it moves on.
            await self._send(*self.codec.data(data_id, b"", fin=True),
                             *self.codec.data(error_id, error.encode(), fin=True))
