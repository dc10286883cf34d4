"""Cluster DNS: the kubelite-dns binary against a real API server, checked with dnspython.

The upstream for names outside the cluster is a small resolver the test runs
on loopback (dnslib), so forwarding is tested without any traffic leaving
the machine.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.asyncresolver
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename
import pytest
from dnslib import QTYPE, RR, A, DNSRecord

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.machinery import codec
from tests.support.apiserver import APIServerProcess, free_port

DOMAIN = "cluster.local"


class Upstream(asyncio.DatagramProtocol):
    """Answers every A query for *.example.test with 192.0.2.55 and counts the queries."""

    def __init__(self) -> None:
        self.queries = 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queries += 1
        request = DNSRecord.parse(data)
        reply = request.reply()
        if str(request.q.qname).endswith("example.test.") and request.q.qtype == QTYPE.A:
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("192.0.2.55"), ttl=60))
        else:
            reply.header.rcode = 3
        self.transport.sendto(reply.pack(), addr)


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Upstream, int]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Upstream, local_addr=("127.0.0.1", 0))
    try:
        yield proto, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


@pytest.fixture
def dns_server(apiserver: APIServerProcess, tmp_path: Path) -> Iterator[Any]:
    """Starts kubelite-dns lazily (after the test created its upstream) and stops it by PID."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(upstream_port: int) -> tuple[int, int]:
        port, health = free_port(), free_port()
        exe = Path(sys.executable).parent / "kubelite-dns"
        log = open(tmp_path / "dns.log", "ab")
        proc = subprocess.Popen([str(exe), "--master", apiserver.server, "--bind-address", "127.0.0.1",
                                 "--port", str(port), "--health-port", str(health),
                                 "--upstream", f"127.0.0.1:{upstream_port}"], stdout=log, stderr=log,
                                start_new_session=True)
        log.close()
        procs.append(proc)
        return port, health

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(10)


async def wait_ready(health: int) -> None:
    for _ in range(150):
        try:
            await asyncio.to_thread(urllib.request.urlopen, f"http://127.0.0.1:{health}/readyz", None, 1)
            return
        except OSError:
            await asyncio.sleep(0.1)
    pytest.fail("kubelite-dns did not become ready")


async def query(port: int, name: str, rdtype: str, tcp: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    if tcp:
        return await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=15)
    return await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=15)


def answers(msg: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in msg.answer for rd in rrset)


def service(name: str, ns: str, spec: dict[str, Any]) -> core.Service:
    svc = codec.decode_into({"metadata": {"name": name, "namespace": ns}, "spec": spec}, core.Service)
    assert isinstance(svc, core.Service)
    return svc


async def headless_endpoints(client: Client, ns: str, name: str, count: int, hostnames: bool) -> None:
    addresses = [{"ip": f"10.244.7.{i + 1}", **({"hostname": f"web-{i}"} if hostnames else {})}
                 for i in range(count)]
    ep = codec.decode_into({"metadata": {"name": name, "namespace": ns},
                            "subsets": [{"addresses": addresses,
                                         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]},
                           core.Endpoints)
    await client.update(ep)  # Endpoints are created by update


async def test_cluster_names_and_forwarding(client: Client, ns: str, dns_server: Any,
                                            upstream: tuple[Upstream, int],
                                            apiserver: APIServerProcess) -> None:
    web = await client.create(service("web", ns, {"ports": [{"name": "http", "port": 80}],
                                                  "selector": {"app": "web"}}))
    await client.create(service("db", ns, {"clusterIP": "None", "ports": [{"name": "http", "port": 8080}]}))
    await headless_endpoints(client, ns, "db", 2, hostnames=True)
    await client.create(service("ext", ns, {"type": "ExternalName", "externalName": "api.example.test"}))
    port, health = dns_server(upstream[1])
    await wait_ready(health)

    ip = web.spec.cluster_ip
    fq = f"web.{ns}.svc.{DOMAIN}."
    msg = await query(port, fq, "A")
    assert answers(msg) == [ip] and msg.flags & dns.flags.AA
    assert answers(await query(port, fq, "A", tcp=True)) == [ip]
    srv = await query(port, f"_http._tcp.web.{ns}.svc.{DOMAIN}.", "SRV")
    assert answers(srv) == [f"0 100 80 {fq}"]
    assert [rd.to_text() for rrset in srv.additional for rd in rrset] == [ip]
    ptr = await query(port, dns.reversename.from_address(ip).to_text(), "PTR")
    assert answers(ptr) == [fq]
    # Headless: the endpoints, by Service name and by hostname; SRV per endpoint.
    assert answers(await query(port, f"db.{ns}.svc.{DOMAIN}.", "A")) == ["10.244.7.1", "10.244.7.2"]
    assert answers(await query(port, f"web-1.db.{ns}.svc.{DOMAIN}.", "A")) == ["10.244.7.2"]
    assert answers(await query(port, f"_http._tcp.db.{ns}.svc.{DOMAIN}.", "SRV")) == [
        f"0 100 8080 web-0.db.{ns}.svc.{DOMAIN}.", f"0 100 8080 web-1.db.{ns}.svc.{DOMAIN}."]
    # ExternalName is a CNAME; pods by dashed address.
    assert answers(await query(port, f"ext.{ns}.svc.{DOMAIN}.", "A")) == ["api.example.test."]
    assert answers(await query(port, f"10-244-1-5.{ns}.pod.{DOMAIN}.", "A")) == ["10.244.1.5"]
    # Missing names are NXDOMAIN; an existing name with no such record is NOERROR without data.
    missing = await query(port, f"nope.{ns}.svc.{DOMAIN}.", "A")
    assert missing.rcode() == dns.rcode.NXDOMAIN and missing.authority
    nodata = await query(port, fq, "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    # Everything else goes upstream, once: the second answer is cached.
    before = upstream[0].queries
    assert answers(await query(port, "www.example.test.", "A")) == ["192.0.2.55"]
    assert answers(await query(port, "www.example.test.", "A")) == ["192.0.2.55"]
    assert upstream[0].queries == before + 1
    assert (await query(port, "nowhere.invalid.", "A")).rcode() == dns.rcode.NXDOMAIN

    # New names appear without a restart, and survive one of the API server.
    late = await client.create(service("late", ns, {"ports": [{"port": 81}], "selector": {"app": "x"}}))
    for _ in range(50):
        if answers(await query(port, f"late.{ns}.svc.{DOMAIN}.", "A")) == [late.spec.cluster_ip]:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("a new Service never appeared in DNS")
    apiserver.restart()
    assert answers(await query(port, fq, "A")) == [ip]
    await client.delete(core.Service, "late", ns)
    for _ in range(100):
        if (await query(port, f"late.{ns}.svc.{DOMAIN}.", "A")).rcode() == dns.rcode.NXDOMAIN:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("a deleted Service stayed in DNS")


async def test_large_answers_truncate_over_udp_and_complete_over_tcp(client: Client, ns: str, dns_server: Any,
                                                                     upstream: tuple[Upstream, int]) -> None:
    await client.create(service("many", ns, {"clusterIP": "None", "ports": [{"name": "http", "port": 8080}]}))
    await headless_endpoints(client, ns, "many", 60, hostnames=False)
    port, health = dns_server(upstream[1])
    await wait_ready(health)
    name = f"many.{ns}.svc.{DOMAIN}."
    udp = await query(port, name, "A")
    assert udp.flags & dns.flags.TC and not udp.answer
    tcp = await query(port, name, "A", tcp=True)
    assert len(answers(tcp)) == 60
    # A real resolver follows the truncation to TCP on its own.
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port
    result = await resolver.resolve(name, "A")
    assert len(result) == 60


def test_bad_flags_name_the_flag(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "kubelite-dns"
    r = subprocess.run([str(exe), "--master", "127.0.0.1:1", "--cluster-domain", "bad..domain"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0 and "--cluster-domain" in r.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE")}
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode != 0 and "KUBERNETES_SERVICE_HOST" in r.stderr
