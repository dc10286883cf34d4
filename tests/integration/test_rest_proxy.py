"""pods/proxy and services/proxy through a real API server, to a backend on an address of the test's own.

The backend listens on a veth interface the test creates (a non-loopback
address in this host's network namespace: the API server refuses loopback
destinations as Kubernetes does), and answers with what it was sent, so the
test sees exactly what the API server relayed: method, path, query, body and
headers, and that the caller's credentials stayed behind.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.machinery import codec
from tests.integration.test_rest_kubectl import Kubectl, write_kubeconfig
from tests.support.apiserver import APIServerProcess


@pytest.fixture
def backend_ip() -> Iterator[str]:
    # A veth pair with both ends here (the kernel has no dummy interfaces on every machine).
    name = f"klpx{secrets.token_hex(3)}"
    ip = f"10.254.{secrets.randbelow(250) + 1}.1"
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", f"{ip}/32", "dev", name], check=True)
        for dev in (name, f"{name}p"):
            subprocess.run(["ip", "link", "set", dev, "up"], check=True)
        yield ip
    finally:
        subprocess.run(["ip", "link", "del", name], check=True)


@pytest.fixture
async def backend(backend_ip: str) -> AsyncIterator[int]:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        seen = {"method": request.method, "path": request.path, "query": request.query_string,
                "body": body.decode(), "authorization": request.headers.get("Authorization"),
                "custom": request.headers.get("X-Custom")}
        return web.json_response(seen, status=201 if request.method == "POST" else 200,
                                 headers={"X-Backend": "echo"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, backend_ip, 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


async def _create(client: Client, ns: str, doc: dict[str, Any], kind: type[Any]) -> Any:
    obj = codec.decode_into({**doc, "metadata": {**doc["metadata"], "namespace": ns}}, kind)
    created = await client.create(obj)
    if "status" in doc:
        created.status.CopyFrom(obj.status)
        created = await client.update_status(created)
    return created


async def test_pods_and_services_proxy_relay_to_the_backend(apiserver: APIServerProcess, client: Client, ns: str,
                                                           backend_ip: str, backend: int, tmp_path: Path) -> None:
    await _create(client, ns, {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "c", "image": "busybox", "ports": [{"name": "web", "containerPort": backend}]}]},
        "status": {"podIP": backend_ip}}, core.Pod)
    # A Service without a selector and its Endpoints written by hand, as Kubernetes allows.
    await _create(client, ns, {"metadata": {"name": "web"}, "spec": {"ports": [
        {"name": "http", "port": 80, "targetPort": backend}]}}, core.Service)
    await _create(client, ns, {"metadata": {"name": "web"}, "subsets": [
        {"addresses": [{"ip": backend_ip}], "ports": [{"name": "http", "port": backend}]}]}, core.Endpoints)
    await _create(client, ns, {"metadata": {"name": "empty"}, "spec": {"ports": [{"port": 80}]}}, core.Service)

    base = f"http://127.0.0.1:{apiserver.http_port}/api/v1/namespaces/{ns}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/pods/p:web/proxy/some/path/?a=1&b=2", headers={"X-Custom": "kept"}) as r:
            assert r.status == 200 and r.headers["X-Backend"] == "echo"
            seen = await r.json()
        assert seen == {"method": "GET", "path": "/some/path/", "query": "a=1&b=2", "body": "",
                        "authorization": None, "custom": "kept"}
        async with http.post(f"{base}/services/web:http/proxy/submit", data=b"payload") as r:
            assert r.status == 201
            seen = await r.json()
        assert (seen["method"], seen["path"], seen["body"]) == ("POST", "/submit", "payload")

        # No endpoints, nothing listening, a loopback pod: refusals as Status objects.
        async with http.get(f"{base}/services/empty/proxy/") as r:
            status = await r.json()
        assert (r.status, status["reason"]) == (503, "ServiceUnavailable")
        assert status["message"] == 'no endpoints available for service "empty"'
        async with http.get(f"{base}/pods/p:1/proxy/") as r:
            status = await r.json()
        assert r.status == 503 and status["message"].startswith(f"error trying to reach service: {backend_ip}:1")
        local = await client.get(core.Pod, "p", ns)
        local.status.pod_ip = "127.0.0.1"
        await client.update_status(local)
        async with http.get(f"{base}/pods/p:web/proxy/") as r:
            status = await r.json()
        assert (r.status, status["message"]) == (400, "address not allowed: 127.0.0.1")

    # What a kubectl user types.
    kubectl = Kubectl(write_kubeconfig(tmp_path / "kc", apiserver.http_port), tmp_path)
    r = await asyncio.to_thread(kubectl, "get", "--raw", f"/api/v1/namespaces/{ns}/services/web:http/proxy/raw")
    assert json.loads(r.stdout)["path"] == "/raw"
