"""Resolver: packed answers reused by query bytes, and dropped when the records or the TTL say so."""

from __future__ import annotations

import pytest
from dnslib import QTYPE, RR, A, DNSRecord

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.dns import server
from kubelite.dns.records import ClusterRecords
from kubelite.dns.server import Resolver, truncate_for_udp
from kubelite.machinery import codec

NAME = "web.ns.svc.cluster.local"


def svc(ip: str) -> core.Service:
    obj = codec.decode_into({"metadata": {"name": "web", "namespace": "ns"},
                             "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80}]}}, core.Service)
    assert isinstance(obj, core.Service)
    return obj


def endpoints(ip: str) -> core.Endpoints:
    obj = codec.decode_into({"metadata": {"name": "web", "namespace": "ns"},
                             "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "http", "port": 8080}]}]},
                            core.Endpoints)
    assert isinstance(obj, core.Endpoints)
    return obj


def query(name: str, ident: int, qtype: str = "A") -> bytes:
    q = DNSRecord.question(name, qtype)
    q.header.id = ident
    return bytes(q.pack())


def addresses(answer: bytes) -> list[str]:
    return [str(rr.rdata) for rr in DNSRecord.parse(answer).rr]


async def test_a_repeated_query_is_answered_from_its_packed_answer_with_its_own_id() -> None:
    records = ClusterRecords()
    records.update("ns", "web", svc("10.96.0.5"), None)
    resolver = Resolver(records, [])
    first = await resolver.answer(query(NAME, 1), "udp")
    assert first is not None and addresses(first) == ["10.96.0.5"]
    again = resolver.packed(query(NAME, 2), "udp")
    assert again is not None
    assert DNSRecord.parse(again).header.id == 2
    assert again[2:] == first[2:]
    # Another letter case is another question (it is echoed back as asked): not the same bytes.
    assert resolver.packed(query(NAME.upper(), 3), "udp") is None
    assert resolver.packed(query(NAME, 4, "AAAA"), "udp") is None


async def test_a_changed_service_drops_packed_answers_an_unchanged_one_keeps_them() -> None:
    records = ClusterRecords()
    records.update("ns", "web", svc("10.96.0.5"), None)
    resolver = Resolver(records, [])
    await resolver.answer(query(NAME, 1), "udp")
    # An Endpoints event of a Service with a cluster IP leaves its answers as they were.
    generation = records.generation
    records.update("ns", "web", svc("10.96.0.5"), endpoints("10.244.1.7"))
    assert records.generation == generation
    assert resolver.packed(query(NAME, 2), "udp") is not None
    records.update("ns", "web", svc("10.96.0.6"), None)
    assert resolver.packed(query(NAME, 3), "udp") is None
    answer = await resolver.answer(query(NAME, 4), "udp")
    assert answer is not None and addresses(answer) == ["10.96.0.6"]
    records.update("ns", "web", None, None)
    gone = await resolver.answer(query(NAME, 5), "udp")
    assert gone is not None and DNSRecord.parse(gone).header.rcode == 3  # NXDOMAIN


async def test_a_forwarded_answer_is_reused_until_its_ttl_runs_out(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[bytes] = []

    async def upstream(host: str, port: int, data: bytes, timeout: float) -> bytes:
        asked.append(data)
        request = DNSRecord.parse(data)
        reply = request.reply()
        reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("192.0.2.1"), ttl=10))
        return bytes(reply.pack())

    monkeypatch.setattr(server, "_udp_exchange", upstream)
    now = [100.0]
    resolver = Resolver(ClusterRecords(), [("192.0.2.53", 53)], clock=lambda: now[0])
    first = await resolver.answer(query("example.test", 7), "udp")
    assert first is not None and addresses(first) == ["192.0.2.1"]
    hit = resolver.packed(query("example.test", 8), "udp")
    assert hit is not None and DNSRecord.parse(hit).header.id == 8
    assert len(asked) == 1
    now[0] += 11
    assert resolver.packed(query("example.test", 9), "udp") is None
    await resolver.answer(query("example.test", 9), "udp")
    assert len(asked) == 2


def test_udp_answers_that_fit_512_bytes_pass_unparsed_and_longer_ones_are_truncated() -> None:
    short = b"\x00\x01" + b"\x81\x80" + b"\x00" * 8
    assert truncate_for_udp(b"not even a query", short) is short
    request = DNSRecord.question(NAME)
    reply = request.reply()
    for i in range(40):
        reply.add_answer(RR(NAME, QTYPE.A, rdata=A(f"10.244.0.{i}"), ttl=5))
    cut = DNSRecord.parse(truncate_for_udp(bytes(request.pack()), bytes(reply.pack())))
    assert cut.header.tc == 1 and not cut.rr


async def test_an_upstream_exchange_gets_the_answer_and_a_closed_port_fails_fast() -> None:
    import asyncio

    class Upstream(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            reply = DNSRecord.parse(data).reply()
            reply.add_answer(RR("example.test", QTYPE.A, rdata=A("192.0.2.7"), ttl=30))
            self.transport.sendto(bytes(reply.pack()), addr)  # type: ignore[attr-defined]

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Upstream, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        raw = await server._udp_exchange("127.0.0.1", port, query("example.test", 9), 2.0)
        assert DNSRecord.parse(raw).header.id == 9 and addresses(raw) == ["192.0.2.7"]
    finally:
        transport.close()
        await asyncio.sleep(0)  # the transport closes its socket on the loop's next turn
    with pytest.raises(ConnectionRefusedError):  # nobody listens there: the ICMP refusal ends it, not a timeout
        await server._udp_exchange("127.0.0.1", port, query("example.test", 10), 2.0)
