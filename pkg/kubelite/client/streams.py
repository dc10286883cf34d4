"""Client side of the pod streaming subresources: logs, exec/attach sessions, port-forward.

These calls are long-lived and two-way, unlike the rest of the API, so they
get small objects of their own instead of request/response methods: an
``ExecSession`` sends stdin, resizes and closes input while its output is
read; ``forward_connection`` copies one local TCP connection to a pod's port
and back. Failures leave as StatusError, translated where they enter.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from kubelite.api.service.v1 import streaming_pb2 as st
from kubelite.machinery.errors import StatusError

# One frame's worth of a forwarded connection (gRPC messages stay well under its limits).
CHUNK = 32 * 1024


@dataclass(frozen=True)
class Output:
    """One piece of a command's output: ``stream`` is "stdout" or "stderr"."""

    stream: str
    data: bytes


class ExecSession:
    """A running exec or attach: write input, read output, then learn the exit code."""

    def __init__(self, call: Any, translate: Any) -> None:
        self._call = call
        self._translate = translate
        self.exit: st.ExitStatus | None = None

    async def send(self, data: bytes) -> None:
        await self._write(st.StreamFrame(stdin=data))

    async def close_stdin(self) -> None:
        await self._write(st.StreamFrame(close_stdin=True))

    async def resize(self, width: int, height: int) -> None:
        await self._write(st.StreamFrame(resize=st.TerminalSize(width=width, height=height)))

    async def _write(self, frame: st.StreamFrame) -> None:
        try:
            await self._call.write(frame)
        except grpc.aio.AioRpcError as exc:
            raise self._translate(exc) from exc
        except asyncio.InvalidStateError:
            return  # the stream has ended: output() reports how

    async def output(self) -> AsyncIterator[Output]:
        """stdout and stderr in the order they came; ends when the command exits (then ``exit`` is set)."""
        try:
            async for frame in self._call:
                kind = frame.WhichOneof("frame")
                if kind == "stdout":
                    yield Output("stdout", frame.stdout)
                elif kind == "stderr":
                    yield Output("stderr", frame.stderr)
                elif kind == "exit":
                    self.exit = frame.exit
                    return
        except grpc.aio.AioRpcError as exc:
            raise self._translate(exc) from exc

    @property
    def exit_code(self) -> int:
        if self.exit is None:
            raise StatusError("InternalError", "the stream ended without an exit status")
        return int(self.exit.exit_code)

    def cancel(self) -> None:
        self._call.cancel()


def exec_start(namespace: str, name: str, command: Sequence[str], *, container: str = "", stdin: bool = False,
               tty: bool = False, width: int = 0, height: int = 0) -> st.StreamFrame:
    start = st.ExecStart(namespace=namespace, name=name, container=container, command=list(command), stdin=stdin,
                         stdout=True, stderr=not tty, tty=tty)
    if tty and width and height:
        start.size.width, start.size.height = width, height
    return st.StreamFrame(start=start)


async def forward_connection(call: Any, start: st.PortForwardStart, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter, translate: Any) -> None:
    """Copies one local connection to the pod's port and back, until either side closes."""
    await call.write(st.PortForwardFrame(start=start))

    async def upstream() -> None:
        while data := await reader.read(CHUNK):
            await call.write(st.PortForwardFrame(data=data))
        await call.write(st.PortForwardFrame(close=True))
        await call.done_writing()

    pump = asyncio.create_task(upstream(), name=f"port-forward-upstream:{start.name}:{start.port}")
    try:
        async for frame in call:
            kind = frame.WhichOneof("frame")
            if kind == "data":
                writer.write(frame.data)
                await writer.drain()
            elif kind == "error":
                raise StatusError("InternalError", f"error forwarding port {start.port} to pod {start.name}: "
                                                   f"{frame.error}")
            elif kind == "close":
                break
    except grpc.aio.AioRpcError as exc:
        raise translate(exc) from exc
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError, grpc.aio.UsageError, OSError):
            await pump
        call.cancel()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
