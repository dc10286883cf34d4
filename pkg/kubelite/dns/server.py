"""The cluster DNS server: cluster names from memory, everything else forwarded with a cache.

It plays CoreDNS' part (the `kubernetes` and `forward` + `cache` plugins) in
one asyncio process: UDP and TCP on one port, answers for the cluster domain
built by ``ClusterRecords`` from informers, other names sent to the node's
upstream resolvers and cached for their TTL. dnslib packs and parses the wire
format. UDP answers that do not fit the client's buffer (512 bytes, or what
its EDNS0 record offers) come back truncated, so the client retries on TCP.

Packed answers are kept by the exact bytes of the query after its ID (flags,
question, EDNS record): a query seen before is answered by a dictionary
lookup and a new ID, without parsing or building anything, and a UDP one
without even a task. Parsing, building and packing with dnslib were ~3/4
of a cluster name's cost (one client's queries per second went up ~2x
with 10,000 Services). A cluster answer is kept until ``ClusterRecords``
moves its generation (a Service's answers changed), a forwarded one
until its cache entry expires; the table is bounded like the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, cast

from dnslib import AAAA as AAAA_RD
from dnslib import CNAME as CNAME_RD
from dnslib import PTR as PTR_RD
from dnslib import QTYPE, RCODE, RR, SOA, DNSRecord
from dnslib import SRV as SRV_RD
from dnslib import A as A_RD
from dnslib.dns import DNSError

from kubelite.dns import metrics
from kubelite.dns.records import ClusterRecords, Record, SrvValue

log = logging.getLogger(__name__)

# CoreDNS' kubernetes plugin answers cluster names with a 5 s TTL; so do we.
CLUSTER_TTL = 5
MAX_CACHE_TTL = 30
NEGATIVE_TTL = 5
UDP_DEFAULT_SIZE = 512
UPSTREAM_TIMEOUT = 2.0
CACHE_ENTRIES = 10_000


@dataclass
class _Cached:
    answer: bytes
    expires: float


class _Packed(NamedTuple):
    """An answer without its 2-byte ID, who answered it (for the metrics), and until when it holds."""

    tail: bytes
    zone: str
    expires: float


class Resolver:
    """Turns one query into one answer; the transport (UDP/TCP) is the server's business."""

    def __init__(self, records: ClusterRecords, upstreams: Sequence[tuple[str, int]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.records = records
        self.upstreams = list(upstreams)
        self._clock = clock
        self._cache: dict[tuple[str, int, int], _Cached] = {}
        self._packed: dict[bytes, _Packed] = {}
        self._packed_generation = records.generation

    def packed(self, data: bytes, transport: str) -> bytes | None:
        """The answer to a query answered before and still valid, or None: no parsing, no awaiting."""
        if self._packed_generation != self.records.generation:
            self._packed.clear()
            self._packed_generation = self.records.generation
            return None
        hit = self._packed.get(data[2:])
        if hit is None:
            return None
        if hit.expires <= self._clock():
            del self._packed[data[2:]]
            return None
        metrics.QUERIES.labels(transport, hit.zone).inc()
        if hit.zone == "forwarded":
            metrics.CACHE.labels("hit").inc()
        return data[:2] + hit.tail

    def _keep(self, data: bytes, answer: bytes, zone: str, expires: float) -> None:
        if self._packed_generation != self.records.generation:
            self._packed.clear()
            self._packed_generation = self.records.generation
        if len(self._packed) >= CACHE_ENTRIES:
            self._packed.clear()  # bounded; whatever is asked again is packed again on its next miss
        self._packed[data[2:]] = _Packed(answer[2:], zone, expires)

    async def answer(self, data: bytes, transport: str) -> bytes | None:
        fast = self.packed(data, transport)
        if fast is not None:
            return fast
        try:
            request = DNSRecord.parse(data)
        except (DNSError, struct.error, IndexError, ValueError):
            metrics.QUERIES.labels(transport, "malformed").inc()
            return None
        if not request.questions:
            reply = request.reply()
            reply.header.rcode = RCODE.FORMERR
            return bytes(reply.pack())
        q = request.q
        qname, qtype = str(q.qname), QTYPE.get(q.qtype)
        if self.records.in_domain(qname):
            metrics.QUERIES.labels(transport, "cluster").inc()
            packed = bytes(self._cluster_answer(request, qname, str(qtype)).pack())
            self._keep(data, packed, "cluster", float("inf"))
            return packed
        if q.qtype == QTYPE.PTR:
            found, _ = self.records.lookup(qname, "PTR")
            if found:
                metrics.QUERIES.labels(transport, "cluster").inc()
                packed = bytes(self._cluster_answer(request, qname, "PTR").pack())
                self._keep(data, packed, "cluster", float("inf"))
                return packed
        metrics.QUERIES.labels(transport, "forwarded").inc()
        return await self._forward(request, data)

    def _cluster_answer(self, request: DNSRecord, qname: str, qtype: str) -> DNSRecord:
        reply = request.reply()
        reply.header.aa = 1
        answers, exists = self.records.lookup(qname, qtype)
        for rec in answers:
            reply.add_answer(_rr(rec))
        for rec in self.records.additional(answers):
            reply.add_ar(_rr(rec))
        if not answers:
            # NXDOMAIN for names that do not exist; NOERROR without data for those that do.
            if not exists:
                reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(RR(self.records.domain, QTYPE.SOA, ttl=CLUSTER_TTL, rdata=SOA(
                "ns.dns." + self.records.domain, "hostmaster." + self.records.domain,
                (1, 7200, 1800, 86400, CLUSTER_TTL))))
        return reply

    async def _forward(self, request: DNSRecord, data: bytes) -> bytes:
        q = request.q
        key = (str(q.qname).lower(), int(q.qtype), int(q.qclass))
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached.expires > now:
            metrics.CACHE.labels("hit").inc()
            self._keep(data, cached.answer, "forwarded", cached.expires)
            return _with_id(cached.answer, request.header.id)
        metrics.CACHE.labels("miss").inc()
        for host, port in self.upstreams:
            try:
                raw = await _udp_exchange(host, port, data, UPSTREAM_TIMEOUT)
                answer = DNSRecord.parse(raw)
            except (OSError, TimeoutError, DNSError, struct.error, IndexError, ValueError) as exc:
                log.debug("upstream %s:%d failed: %s", host, port, exc)
                continue
            if answer.header.tc:
                with contextlib.suppress(OSError, TimeoutError, DNSError, struct.error, IndexError, ValueError):
                    raw = await _tcp_exchange(host, port, data, UPSTREAM_TIMEOUT)
                    answer = DNSRecord.parse(raw)
            self._remember(key, raw, answer, now)
            remembered = self._cache.get(key)
            if remembered is not None and remembered.answer is raw:
                self._keep(data, raw, "forwarded", remembered.expires)
            return raw
        reply = request.reply()
        reply.header.rcode = RCODE.SERVFAIL
        return bytes(reply.pack())

    def _remember(self, key: tuple[str, int, int], raw: bytes, answer: DNSRecord, now: float) -> None:
        if answer.header.rcode not in (RCODE.NOERROR, RCODE.NXDOMAIN) or answer.header.tc:
            return
        ttls = [rr.ttl for rr in answer.rr] or [NEGATIVE_TTL]
        ttl = min(min(ttls), MAX_CACHE_TTL)
        if ttl <= 0:
            return
        if len(self._cache) >= CACHE_ENTRIES:
            # Drop the entries that expire first; a full sweep is rare and cheap next to a miss.
            for stale in sorted(self._cache, key=lambda k: self._cache[k].expires)[: CACHE_ENTRIES // 10]:
                del self._cache[stale]
        self._cache[key] = _Cached(raw, now + ttl)


def _rr(rec: Record) -> RR:
    kind = rec.type
    if kind == "A":
        rdata: object = A_RD(str(rec.value))
    elif kind == "AAAA":
        rdata = AAAA_RD(str(rec.value))
    elif kind == "CNAME":
        rdata = CNAME_RD(str(rec.value))
    elif kind == "PTR":
        rdata = PTR_RD(str(rec.value))
    else:
        assert isinstance(rec.value, SrvValue)
        v = rec.value
        rdata = SRV_RD(v.priority, v.weight, v.port, v.target)
    return RR(rec.name, getattr(QTYPE, kind), rdata=rdata, ttl=CLUSTER_TTL)


def _with_id(answer: bytes, ident: int) -> bytes:
    return struct.pack("!H", ident) + answer[2:]


def udp_limit(request: bytes) -> int:
    """The client's UDP buffer: its EDNS0 OPT record's size, or 512."""
    try:
        parsed = DNSRecord.parse(request)
    except (DNSError, struct.error, IndexError, ValueError):
        return UDP_DEFAULT_SIZE
    for rr in parsed.ar:
        if rr.rtype == QTYPE.OPT:
            return max(UDP_DEFAULT_SIZE, int(rr.rclass))
    return UDP_DEFAULT_SIZE


def truncate_for_udp(request: bytes, answer: bytes) -> bytes:
    if len(answer) <= UDP_DEFAULT_SIZE:
        return answer  # fits any client's buffer: no need to parse the query for its EDNS0 size
    limit = udp_limit(request)
    if len(answer) <= limit:
        return answer
    full = DNSRecord.parse(answer)
    # The question stays (clients match answers to questions); the records go, and TC says why.
    short = DNSRecord(header=full.header, questions=full.questions)
    short.header.tc = 1
    return bytes(short.pack())


class _UpstreamProtocol(asyncio.DatagramProtocol):
    def __init__(self, future: asyncio.Future[bytes]) -> None:
        self.future = future

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.future.done():
            self.future.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


async def _udp_exchange(host: str, port: int, data: bytes, timeout: float) -> bytes:
    """One query to an upstream from a socket of its own (a fresh source port each time, which is
    what makes forged answers hard to land), connected so the kernel drops anyone else's datagrams.

    A bare non-blocking socket: an asyncio datagram transport per query cost ~3x the CPU of the
    whole rest of a forwarded query here. A host that is not an address takes the transport's way,
    which resolves it.
    """
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return await _udp_exchange_by_name(host, port, data, timeout)
    loop = asyncio.get_running_loop()
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((host, port))
        await loop.sock_sendall(sock, data)
        return await asyncio.wait_for(loop.sock_recv(sock, 65535), timeout)


async def _udp_exchange_by_name(host: str, port: int, data: bytes, timeout: float) -> bytes:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[bytes] = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(lambda: _UpstreamProtocol(future),
                                                       remote_addr=(host, port))
    try:
        transport.sendto(data)
        return await asyncio.wait_for(future, timeout)
    finally:
        transport.close()


async def _tcp_exchange(host: str, port: int, data: bytes, timeout: float) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(struct.pack("!H", len(data)) + data)
        await writer.drain()
        size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), timeout))[0]
        return await asyncio.wait_for(reader.readexactly(size), timeout)
    finally:
        writer.close()


class _ServerProtocol(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver, tasks: set[asyncio.Task[None]]) -> None:
        self.resolver = resolver
        self.tasks = tasks
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        fast = self.resolver.packed(data, "udp")
        if fast is not None:
            if self.transport is not None:
                self.transport.sendto(truncate_for_udp(data, fast), addr)
            return
        task = asyncio.get_running_loop().create_task(self._serve(data, addr), name="dns-udp-query")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _serve(self, data: bytes, addr: tuple[str, int]) -> None:
        answer = await self.resolver.answer(data, "udp")
        if answer is not None and self.transport is not None:
            self.transport.sendto(truncate_for_udp(data, answer), addr)


class DNSServer:
    """UDP and TCP listeners on one address; ``stop()`` ends them and every query in flight."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._tcp = await asyncio.start_server(self._serve_tcp, host, port)
        self.port = self._tcp.sockets[0].getsockname()[1]
        # UDP on the same port TCP got (port 0 means "any" for both, and they must match).
        transport, _ = await loop.create_datagram_endpoint(lambda: _ServerProtocol(self.resolver, self._tasks),
                                                           local_addr=(host, self.port))
        self._udp = transport

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    size = struct.unpack("!H", await reader.readexactly(2))[0]
                    data = await reader.readexactly(size)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                answer = await self.resolver.answer(data, "tcp")
                if answer is None:
                    return
                writer.write(struct.pack("!H", len(answer)) + answer)
                await writer.drain()
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def upstreams_from_resolv_conf(path: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    """The node's resolvers, as the `forward . /etc/resolv.conf` of CoreDNS' default Corefile."""
    out: list[tuple[str, int]] = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    out.append((parts[1], 53))
    except OSError:
        return []
    return out
