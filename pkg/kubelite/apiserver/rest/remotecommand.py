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

The frames become the same StreamFrames the gRPC PodStreamService carries,
and go through the same code to the kubelet. SPDY (kubectl's fallback, and
what its port-forward tunnels over WebSocket) is not spoken: the README says so.
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
from kubelite.apiserver.rest.paths import Target
from kubelite.apiserver.streaming import PodStreamServicer
from kubelite.machinery import errors

log = logging.getLogger(__name__)

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
PROTOCOLS = (V5, V4)
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
TRUE = ("true", "1")


def _websocket(request: web.Request, protocols: tuple[str, ...]) -> web.WebSocketResponse:
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise errors.bad_request(
            "pods/exec, attach and portforward are served over WebSocket (" + ", ".join(protocols) + "); "
            "SPDY is not supported")
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
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
