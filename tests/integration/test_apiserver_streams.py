"""The API server's hop of logs, exec and port-forward, through a real server process.

The far end is a stand-in kubelet serving PodStreamService on loopback: it
answers with what it was asked (the container and the pod uid the API server
filled in), so the test sees exactly what the API server forwarded. The real
kubelet's side is tested with the kubelet on Docker.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.service.v1 import streaming_pb2 as st
from kubelite.api.service.v1 import streaming_pb2_grpc as st_grpc
from kubelite.client.client import Client
from kubelite.machinery import codec, errors
from kubelite.machinery.errors import StatusError

# The stand-in kubelet's pods listen on every port but this one.
CLOSED_PORT = 9


class StandInKubelet(st_grpc.PodStreamServiceServicer):
    """Echoes what it receives, so the test can check what the API server sent on."""

    async def Log(self, request: st.PodLogRequest, context: Any) -> AsyncIterator[st.PodLogChunk]:
        if request.container == "missing":
            exc = errors.not_found("", "containers", "missing")
            await context.abort(exc.grpc_code, exc.message, trailing_metadata=exc.to_grpc_metadata())
        yield st.PodLogChunk(data=f"{request.container} {request.pod_uid}\n".encode())
        yield st.PodLogChunk(data=f"tail={request.tail_lines}\n".encode())

    async def Exec(self, request_iterator: AsyncIterator[st.StreamFrame], context: Any,
                   ) -> AsyncIterator[st.StreamFrame]:
        start = (await anext(request_iterator)).start
        yield st.StreamFrame(stderr=f"{start.container} {start.pod_uid} {' '.join(start.command)}\n".encode())
        async for frame in request_iterator:
            if frame.WhichOneof("frame") == "stdin":
                yield st.StreamFrame(stdout=frame.stdin.upper())
            elif frame.WhichOneof("frame") == "close_stdin":
                break
        yield st.StreamFrame(exit=st.ExitStatus(exit_code=3, reason="NonZeroExitCode"))

    async def PortForward(self, request_iterator: AsyncIterator[st.PortForwardFrame], context: Any,
                          ) -> AsyncIterator[st.PortForwardFrame]:
        start = (await anext(request_iterator)).start
        if start.port == CLOSED_PORT:  # nothing listens there: as the Docker runtime reports it
            yield st.PortForwardFrame(error=f"connection to port {start.port} failed")
            yield st.PortForwardFrame(close=True)
            return
        yield st.PortForwardFrame(data=f"port {start.port} uid {start.pod_uid}|".encode())
        async for frame in request_iterator:
            if frame.WhichOneof("frame") == "data":
                yield st.PortForwardFrame(data=frame.data[::-1])
            elif frame.WhichOneof("frame") == "close":
                break
        yield st.PortForwardFrame(close=True)


@pytest.fixture
async def kubelet_port() -> AsyncIterator[int]:
    server = grpc.aio.server()
    st_grpc.add_PodStreamServiceServicer_to_server(StandInKubelet(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(0)


async def make_node(client: Client, name: str, port: int) -> None:
    node = core.Node(api_version="v1", kind="Node")
    node.metadata.name = name
    with_status = await client.create(node)
    with_status.status.addresses.add(type="InternalIP", address="127.0.0.1")
    with_status.status.daemon_endpoints.kubelet_endpoint.port = port
    await client.update_status(with_status)


async def bound_pod(client: Client, ns: str, name: str, node: str, containers: list[str]) -> core.Pod:
    pod = codec.decode_into({"metadata": {"name": name, "namespace": ns},
                             "spec": {"containers": [{"name": c, "image": "busybox"} for c in containers]}}, core.Pod)
    assert isinstance(pod, core.Pod)
    created = await client.create(pod)
    await client.bind(ns, name, node)
    return created


async def test_logs_exec_and_port_forward_reach_the_kubelet(client: Client, ns: str, kubelet_port: int) -> None:
    node = f"stream-node-{ns[-6:]}"
    await make_node(client, node, kubelet_port)
    pod = await bound_pod(client, ns, "web", node, ["app"])
    uid = pod.metadata.uid

    chunks = [c async for c in client.logs(ns, "web", tail_lines=5)]
    assert b"".join(chunks) == f"app {uid}\ntail=5\n".encode()

    session = await client.exec(ns, "web", ["sh", "-c", "cat"], stdin=True)
    await session.send(b"hello")
    out: list[tuple[str, bytes]] = []
    async for piece in session.output():
        out.append((piece.stream, piece.data))
        if piece.stream == "stdout":
            await session.close_stdin()
    assert out == [("stderr", f"app {uid} sh -c cat\n".encode()), ("stdout", b"HELLO")]
    assert session.exit_code == 3

    # Port-forward of one connection: a local socket pair stands for the user's client.
    received = bytearray()
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await client.forward_connection(ns, "web", 8080, reader, writer)
        done.set()

    local = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = local.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"abc")
    await writer.drain()
    while b"cba" not in received:
        received += await asyncio.wait_for(reader.read(100), 10)
    writer.close()
    await asyncio.wait_for(done.wait(), 10)
    local.close()
    assert bytes(received) == f"port 8080 uid {uid}|cba".encode()


async def test_stream_requests_are_checked_before_forwarding(client: Client, ns: str, kubelet_port: int) -> None:
    node = f"stream-node-{ns[-6:]}"
    await make_node(client, node, kubelet_port)
    await bound_pod(client, ns, "two", node, ["a", "b"])
    with pytest.raises(StatusError) as info:
        _ = [c async for c in client.logs(ns, "two")]
    assert info.value.reason == "BadRequest"
    assert info.value.message == "a container name must be specified for pod two, choose one of: [a b]"
    with pytest.raises(StatusError) as info:
        _ = [c async for c in client.logs(ns, "two", container="zzz")]
    assert info.value.message == "container zzz is not valid for pod two"
    unbound = codec.decode_into({"metadata": {"name": "pending", "namespace": ns},
                                 "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, core.Pod)
    await client.create(unbound)
    with pytest.raises(StatusError) as info:
        _ = [c async for c in client.logs(ns, "pending")]
    assert info.value.message == "pod pending does not have a host assigned"
    with pytest.raises(StatusError) as info:
        session = await client.exec(ns, "pending", [])
        _ = [p async for p in session.output()]
    assert info.value.message == "you must specify at least one command for the container"
    with pytest.raises(StatusError) as info:
        _ = [c async for c in client.logs(ns, "absent")]
    assert info.value.reason == "NotFound"


async def test_kubelet_errors_come_back_as_they_were(client: Client, ns: str, kubelet_port: int) -> None:
    node = f"stream-node-{ns[-6:]}"
    await make_node(client, node, kubelet_port)
    await bound_pod(client, ns, "p", node, ["missing", "other"])
    with pytest.raises(StatusError) as info:
        _ = [c async for c in client.logs(ns, "p", container="missing")]
    assert info.value.reason == "NotFound"


# --- the same through the kubelite binary ---------------------------------------------------------

KUBELITE = Path(sys.executable).parent / "kubelite"


async def kubelite(server: str, ns: str, *args: str, stdin: bytes = b"") -> tuple[int, bytes, bytes]:
    """Runs the installed CLI without blocking the loop that serves the stand-in kubelet."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    proc = await asyncio.create_subprocess_exec(str(KUBELITE), "--server", server, "-n", ns, *args, env=env,
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out, err


async def test_cli_logs_and_exec_pass_output_and_exit_codes(client: Client, apiserver: Any, ns: str,
                                                             kubelet_port: int) -> None:
    node = f"stream-node-{ns[-6:]}"
    await make_node(client, node, kubelet_port)
    pod = await bound_pod(client, ns, "web", node, ["app"])
    code, out, err = await kubelite(apiserver.address, ns, "logs", "web", "--tail", "3")
    assert (code, out) == (0, f"app {pod.metadata.uid}\ntail=3\n".encode()), err
    code, out, err = await kubelite(apiserver.address, ns, "logs", "pod/web", "-c", "nope")
    assert code == 1 and b"container nope is not valid for pod web" in err
    code, out, err = await kubelite(apiserver.address, ns, "exec", "-i", "web", "--", "cat", "-n", stdin=b"abc")
    assert code == 3, err  # the remote exit code is kubelite's own
    assert out == b"ABC"
    assert err.decode().splitlines() == [f"app {pod.metadata.uid} cat -n", "command terminated with exit code 3"]
    code, out, err = await kubelite(apiserver.address, ns, "exec", "web")
    assert code == 1 and b"you must specify at least one command for the container" in err


async def test_cli_run_creates_the_pod_kubectl_would(client: Client, apiserver: Any, ns: str) -> None:
    code, out, err = await kubelite(apiserver.address, ns, "run", "sleeper", "--image=busybox", "--restart=Never",
                                    "--env", "A=1", "--", "sleep", "3600")
    assert (code, out) == (0, b"pod/sleeper created\n"), err
    pod = await client.get(core.Pod, "sleeper", ns)
    c = pod.spec.containers[0]
    assert (c.name, c.image, list(c.args), pod.spec.restart_policy) == ("sleeper", "busybox", ["sleep", "3600"],
                                                                        "Never")
    assert dict(pod.metadata.labels) == {"run": "sleeper"} and [(e.name, e.value) for e in c.env] == [("A", "1")]
    code, out, err = await kubelite(apiserver.address, ns, "run", "dry", "--image=busybox", "--dry-run=client",
                                    "-o", "json")
    assert code == 0 and b'"image": "busybox"' in out
    with pytest.raises(StatusError):
        await client.get(core.Pod, "dry", ns)
    code, out, err = await kubelite(apiserver.address, ns, "run", "bad", "--image=busybox", "--restart=Sometimes")
    assert code == 1 and b"invalid restart policy: Sometimes" in err


async def test_cli_port_forward(client: Client, apiserver: Any, ns: str, kubelet_port: int) -> None:
    node = f"stream-node-{ns[-6:]}"
    await make_node(client, node, kubelet_port)
    pod = await bound_pod(client, ns, "web", node, ["app"])
    code, _, err = await kubelite(apiserver.address, ns, "port-forward", "web", ":8080")
    assert code == 1 and b"pod is not running. Current status=Pending" in err
    running = await client.get(core.Pod, "web", ns)
    running.status.phase = "Running"
    await client.update_status(running)
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    proc = await asyncio.create_subprocess_exec(str(KUBELITE), "--server", apiserver.address, "-n", ns,
                                                "port-forward", "pod/web", ":8080", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith("Forwarding from 127.0.0.1:") and line.endswith(" -> 8080\n"), line
        local = int(line.split(":")[1].split()[0])
        reader, writer = await asyncio.open_connection("127.0.0.1", local)
        writer.write(b"xyz")
        await writer.drain()
        got = b""
        while b"zyx" not in got:
            got += await asyncio.wait_for(reader.read(100), 10)
        assert got == f"port 8080 uid {pod.metadata.uid}|zyx".encode()
        writer.close()
    finally:
        proc.terminate()  # by our own PID
        await proc.wait()
