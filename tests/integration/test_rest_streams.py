"""pods/log, exec, attach and port-forward through the REST API, with kubectl and the Python client.

The far end is the stand-in kubelet of test_apiserver_streams (it answers with
what it was asked), so the test sees exactly what the API server forwarded
and how it framed the answer: chunked text for logs, Kubernetes' WebSocket
channel protocols for exec and port-forward. The real kubelet behind the
same path is exercised on Docker in the e2e tier.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes.stream import portforward, stream

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from tests.integration.test_apiserver_streams import (  # noqa: F401 - kubelet_port is a fixture
    CLOSED_PORT,
    bound_pod,
    kubelet_port,
    make_node,
)
from tests.integration.test_rest_kubectl import Kubectl, write_kubeconfig
from tests.integration.test_rest_python_client import api_client
from tests.support.apiserver import APIServerProcess


@pytest.fixture
async def pod(client: Client, ns: str, kubelet_port: int) -> str:  # noqa: F811 - the fixture imported above
    node = f"stand-in-{secrets.token_hex(3)}"
    await make_node(client, node, kubelet_port)
    await bound_pod(client, ns, "p", node, ["main"])
    return "p"


async def test_kubectl_logs_and_exec_with_exit_codes(apiserver: APIServerProcess, ns: str, pod: str,
                                                     tmp_path: Path) -> None:
    kubectl = Kubectl(write_kubeconfig(tmp_path / "kc", apiserver.http_port), tmp_path)
    r = await asyncio.to_thread(kubectl, "logs", pod, "-n", ns, "--tail=7")
    uid_line, tail_line = r.stdout.splitlines()
    assert uid_line.startswith("main ") and tail_line == "tail=7"
    # The stand-in echoes stdin upper-cased, reports the command on stderr and exits 3.
    r = await asyncio.to_thread(kubectl, "exec", "-i", pod, "-n", ns, "--", "sh", "-c", "x", input="hello\n",
                                code=3)
    assert r.stdout == "HELLO\n"
    assert "main " in r.stderr and "sh -c x" in r.stderr
    r = await asyncio.to_thread(kubectl, "exec", pod, "-n", ns, "-c", "nope", "--", "true", code=1)
    assert "container nope is not valid for pod p" in r.stderr
    r = await asyncio.to_thread(kubectl, "logs", "ghost", "-n", ns, code=1)
    assert 'pods "ghost" not found' in r.stderr


async def test_python_client_exec_and_port_forward(apiserver: APIServerProcess, ns: str, pod: str,
                                                   tmp_path: Path) -> None:
    api = api_client(apiserver.http_port, tmp_path)
    v1 = k8s.CoreV1Api(api)

    def run_exec() -> tuple[str, str, int | None]:
        resp = stream(v1.connect_get_namespaced_pod_exec, pod, ns, command=["cat"], stdin=True, stdout=True,
                      stderr=True, tty=False, _preload_content=False)
        resp.write_stdin("abc")
        out, err = "", ""
        for _ in range(50):
            resp.update(timeout=0.2)
            if resp.peek_stdout():
                out += resp.read_stdout()
            if resp.peek_stderr():
                err += resp.read_stderr()
            if "ABC" in out and "cat" in err:
                break
        resp.close()
        return out, err

    out, err = await asyncio.to_thread(run_exec)
    assert out == "ABC" and "cat" in err, (out, err)

    def exit_code() -> int | None:
        resp = stream(v1.connect_get_namespaced_pod_exec, pod, ns, command=["false"], stdin=False, stdout=True,
                      stderr=True, tty=False, _preload_content=False)
        resp.run_forever(timeout=10)
        return resp.returncode

    assert await asyncio.to_thread(exit_code) == 3
    # Without _preload_content=False the helper returns what the command wrote.
    output = await asyncio.to_thread(stream, v1.connect_get_namespaced_pod_exec, pod, ns, command=["echo", "hi"],
                                     stdin=False, stdout=True, stderr=True, tty=False)
    assert "echo hi" in output

    def run_forward() -> bytes:
        pf = portforward(v1.connect_get_namespaced_pod_portforward, pod, ns, ports="8080")
        sock: socket.socket = pf.socket(8080)
        sock.settimeout(10)
        received = b""
        while b"|" not in received:
            received += sock.recv(1024)
        sock.sendall(b"ping")
        while not received.endswith(b"gnip"):
            received += sock.recv(1024)
        sock.close()
        return received

    received = await asyncio.to_thread(run_forward)
    assert received.startswith(b"port 8080 uid ") and received.endswith(b"|gnip")
    api.close()


async def test_kubectl_port_forward_over_spdy_in_a_websocket(apiserver: APIServerProcess, client: Client, ns: str,
                                                             pod: str, tmp_path: Path) -> None:
    # kubectl checks the pod is Running before it forwards.
    running = await client.get(core.Pod, pod, ns)
    running.status.phase = "Running"
    await client.update_status(running)
    kubectl = Kubectl(write_kubeconfig(tmp_path / "kc", apiserver.http_port), tmp_path)
    proc = kubectl.popen("port-forward", f"pod/{pod}", "-n", ns, ":8080", f":{CLOSED_PORT}")
    try:
        assert proc.stdout is not None and proc.stderr is not None
        local: dict[int, int] = {}
        while len(local) < 2:  # "Forwarding from 127.0.0.1:41234 -> 8080", one line per port
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            assert line, proc.stderr.read()
            if line.startswith("Forwarding from 127.0.0.1:"):
                address, _, remote = line.removeprefix("Forwarding from ").partition(" -> ")
                local[int(remote)] = int(address.rsplit(":", 1)[1])

        async def converse(payload: bytes) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", local[8080])
            greeting = await asyncio.wait_for(reader.readuntil(b"|"), 30)
            writer.write(payload)
            await writer.drain()
            received = b""
            while len(received) < len(payload):
                chunk = await asyncio.wait_for(reader.read(65536), 30)
                assert chunk, "the forward closed early"
                received += chunk
            writer.close()
            return greeting + received

        # Two connections at once, each its own pair of streams in the one SPDY session, and a
        # transfer far beyond SPDY's 64 KiB initial window (no flow control stalls it).
        small, big = await asyncio.gather(converse(b"ping"), converse(bytes(range(256)) * 2048))
        assert small.startswith(b"port 8080 uid ") and small.endswith(b"|gnip")
        assert len(big.partition(b"|")[2]) == 512 * 1024
        assert (await converse(b"again")).endswith(b"|niaga")  # a later connection on the same session

        # Nothing listens on the other port: kubectl reports the kubelet's error for that connection.
        reader, writer = await asyncio.open_connection("127.0.0.1", local[CLOSED_PORT])
        assert await asyncio.wait_for(reader.read(), 30) == b""
        writer.close()
        stderr = ""
        while f"connection to port {CLOSED_PORT} failed" not in stderr:
            line = await asyncio.wait_for(asyncio.to_thread(proc.stderr.readline), 30)
            assert line, f"kubectl said: {stderr}"
            stderr += line
        assert "An error occurred forwarding" in stderr  # kubectl 1.37's structured log line
        assert f"localPort={local[CLOSED_PORT]} remotePort={CLOSED_PORT}" in stderr
    finally:
        proc.terminate()
        proc.wait(10)
