"""`python -m bench.dns`: the cluster DNS server's query rate and memory, beside dnslib answering alone.

Real parts only: a 3-member etcd cluster, kubelite-apiserver, and
``kubelite-dns`` (the entry point the DNS image runs) as its own process on
a loopback port, pointed at that API server. Two more processes run a tiny
static DNS server built on the same library and the same asyncio datagram
loop the DNS server uses (dnslib): one is the upstream that forwarded names
go to, the other is the baseline, answering a static A record to whatever
it is asked. The difference between the baseline and a cluster name is
therefore kubelite's own per-query work, not the library's or the kernel's.

One client (dnspython, this process) sends queries over UDP strictly one
after another: the next query leaves when the answer to the previous one
came back, so a figure is 1 / (round-trip time), with client, server and
kernel all on the path (2 cores: the client and the server get one each).
The rates are taken in rounds that alternate between the baseline and the
name measured, and the median round of each is reported, because the
machine is shared and its load comes and goes within seconds; beside each
rate, the server process's CPU time per query (utime + stime from
/proc/PID/stat over the round), which such load disturbs much less:

- a cluster name: A of ``svc<N>.<ns>.svc.cluster.local``, first each query
  new to the server (N spread over the 10,000 Services, and each round in
  another letter case, which DNS ignores and the server's cache of packed
  answers does not), then 100 names asked again and again;
- a forwarded name, first uncached (a new name every query, so each one
  goes to the upstream) and then cached (one name, answered from the cache).

Resident memory (VmRSS from /proc/PID/status) of the DNS server process
with no Services of the benchmark, after 10,000 Services (each with an
Endpoints object of 3 ready addresses, as the Endpoints controller would
write) arrived through its watch, and of a fresh process that listed them.

    python -m bench.dns [--services 10000] [--seconds 1.2]

Nothing is asserted; a table is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
from rich.console import Console
from rich.table import Table

from bench.run import rate
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from tests.support.apiserver import APIServerProcess, free_port
from tests.support.etcd import EtcdCluster

NAMESPACE = "bench-dns"
DOMAIN = "cluster.local"
STATIC_IP = "192.0.2.53"
console = Console(width=160)


# --- the static server: dnslib on an asyncio datagram endpoint, as kubelite-dns serves ---

def _static_server(port_out: Any) -> None:
    """Answers every query with one A record (TTL 60): the upstream, and the baseline."""
    from dnslib import QTYPE, RR, A, DNSRecord

    class Static(asyncio.DatagramProtocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: Any) -> None:
            request = DNSRecord.parse(data)
            reply = request.reply()
            if request.q.qtype == QTYPE.A:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(STATIC_IP), ttl=60))
            self.transport.sendto(reply.pack(), addr)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Static, local_addr=("127.0.0.1", 0))
        port_out.put(transport.get_extra_info("sockname")[1])
        await asyncio.Event().wait()

    asyncio.run(main())


class StaticServer:
    """The static server in a process of its own (spawned: this process holds gRPC state), stopped by PID."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        q: mp.Queue[int] = ctx.Queue()
        self.proc = ctx.Process(target=_static_server, args=(q,), daemon=True)
        self.proc.start()
        self.port: int = q.get(timeout=30)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(10)


# --- kubelite-dns as a process ---------------------------------------------------------

class DNSProcess:
    """``kubelite-dns`` from the virtualenv, on loopback ports, stopped by its PID."""

    def __init__(self, api: APIServerProcess, upstream: int, log_path: Path) -> None:
        self.port, self.health = free_port(), free_port()
        exe = Path(sys.executable).parent / "kubelite-dns"
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(exe), "--master", api.server, "--bind-address", "127.0.0.1", "--port", str(self.port),
                 "--health-port", str(self.health), "--upstream", f"127.0.0.1:{upstream}"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.log_path = log_path

    def wait_ready(self, timeout: float = 300.0) -> float:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kubelite-dns exited with {self.proc.returncode}; see {self.log_path}:\n"
                                   + self.log_path.read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health}/readyz", timeout=1):
                    return time.perf_counter() - t0
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"kubelite-dns not ready after {timeout:.0f} s; see {self.log_path}")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for PID {self.proc.pid}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


# --- the client ------------------------------------------------------------------------

def query(port: int, name: str, timeout: float = 5.0) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, dns.rdatatype.A), "127.0.0.1", port=port,
                         timeout=timeout)


class Round(NamedTuple):
    rate: float  # queries per second
    cpu_us: float  # the server process's CPU time per query, microseconds


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (the machine is shared: its CPU per query is steadier than a rate)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def qps(port: int, pid: int, names: Callable[[int], str], seconds: float, expect: str) -> Round:
    """Sequential A queries over one UDP socket for `seconds`; every answer's rcode is checked, and
    a sampled one's address."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        n = 0
        cpu0 = cpu_seconds(pid)
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while True:
            q = dns.message.make_query(names(n), dns.rdatatype.A)
            answer = dns.query.udp(q, "127.0.0.1", port=port, timeout=5, sock=sock)
            n += 1
            if n == 1 or n % 997 == 0:
                _check(answer, expect, names(n - 1))
            elif answer.rcode() != dns.rcode.NOERROR:
                _check(answer, "", names(n - 1))
            now = time.perf_counter()
            if now >= deadline:
                return Round(n / (now - t0), (cpu_seconds(pid) - cpu0) / n * 1e6)


def _check(answer: dns.message.Message, expect: str, name: str) -> None:
    got = [rd.to_text() for rrset in answer.answer for rd in rrset]
    if answer.rcode() != dns.rcode.NOERROR or (expect and expect not in got):
        raise RuntimeError(f"{name}: {dns.rcode.to_text(answer.rcode())} {got}, expected {expect}")


ROUNDS = 5


def paired_qps(measured: Callable[[], Round], baseline: Callable[[], Round]) -> tuple[list[Round], list[Round]]:
    """Every round of each side, rounds alternating."""
    m: list[Round] = []
    b: list[Round] = []
    for _ in range(ROUNDS):
        b.append(baseline())
        m.append(measured())
    return m, b


def _cased(text: str, variant: int) -> str:
    """One of the letter cases of text (bit i of variant uppercases its i-th letter): the same name
    to DNS, other bytes to a cache keyed by the query's bytes."""
    out, bit = [], 0
    for ch in text:
        if ch.isalpha():
            out.append(ch.upper() if variant >> bit & 1 else ch)
            bit += 1
        else:
            out.append(ch)
    return "".join(out)


# --- the Services ----------------------------------------------------------------------

def service(i: int) -> core.Service:
    svc = core.Service(api_version="v1", kind="Service")
    svc.metadata.name = f"svc{i}"
    svc.metadata.namespace = NAMESPACE
    svc.spec.selector["app"] = f"svc{i}"
    svc.spec.ports.add(name="http", port=80, protocol="TCP", target_port="8080")
    return svc


def endpoints(i: int) -> core.Endpoints:
    ep = core.Endpoints(api_version="v1", kind="Endpoints")
    ep.metadata.name = f"svc{i}"
    ep.metadata.namespace = NAMESPACE
    subset = ep.subsets.add()
    for e in range(3):
        n = i * 3 + e
        subset.addresses.add(ip=f"10.244.{(n >> 8) & 255}.{n & 255}", node_name=f"node{e}")
    subset.ports.add(name="http", port=8080, protocol="TCP")
    return ep


async def wait_resolves(port: int, name: str, timeout: float = 300.0) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            answer = await asyncio.to_thread(query, port, name, 2.0)
            if answer.answer:
                return time.perf_counter() - t0
        except dns.exception.Timeout:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{name} did not resolve within {timeout:.0f} s")


async def bench(services: int, seconds: float) -> None:
    rows: list[tuple[str, ...]] = []

    def add(*row: str) -> None:
        rows.append(row)
        console.print("  " + " | ".join(row))

    root = "/dev/shm" if Path("/dev/shm").is_dir() else None  # noqa: ASYNC240 (once, before anything runs)
    with tempfile.TemporaryDirectory(prefix="kubelite-bench-dns-", dir=root) as tmp, \
            EtcdCluster(Path(tmp) / "etcd") as cluster:
        api = APIServerProcess(cluster.endpoints, Path(tmp) / "apiserver.log")
        api.start()
        upstream, baseline = StaticServer(), StaticServer()
        client = Client(api.address)
        dns_procs: list[DNSProcess] = []
        try:
            ns = core.Namespace(api_version="v1", kind="Namespace")
            ns.metadata.name = NAMESPACE
            await client.create(ns)
            empty = DNSProcess(api, upstream.port, Path(tmp) / "dns-0.log")
            dns_procs.append(empty)
            await asyncio.to_thread(empty.wait_ready)
            await wait_resolves(empty.port, f"kubernetes.default.svc.{DOMAIN}")
            rss_empty = empty.rss_mb()

            t0 = time.perf_counter()
            await rate(services, 64, lambda i: client.create(service(i)))
            await rate(services, 64, lambda i: client.update(endpoints(i)))  # Endpoints are created by update
            created = time.perf_counter() - t0
            console.print(f"  created {services:,} Services and their Endpoints in {created:.1f} s")
            last = f"svc{services - 1}.{NAMESPACE}.svc.{DOMAIN}"
            await wait_resolves(empty.port, last)
            rss_watched = empty.rss_mb()
            empty.stop()

            fresh = DNSProcess(api, upstream.port, Path(tmp) / "dns-1.log")
            dns_procs.append(fresh)
            ready_s = await asyncio.to_thread(fresh.wait_ready)
            await wait_resolves(fresh.port, last)
            rss_fresh = fresh.rss_mb()
            port, pid = fresh.port, fresh.proc.pid
            assert baseline.proc.pid is not None
            baseline_pid = baseline.proc.pid

            def base() -> Round:
                return qps(baseline.port, baseline_pid, lambda n: f"static{n}.example.test", seconds, STATIC_IP)

            def cluster_name(n: int, variant: int = 0) -> str:
                return f"svc{(n * 7919) % services}.{_cased(NAMESPACE, variant)}.svc.{DOMAIN}"

            # Each query's rcode is checked, and the first answer's address (svc0's ClusterIP).
            svc0 = await client.get(core.Service, "svc0", NAMESPACE)
            _check(await asyncio.to_thread(query, port, cluster_name(0)), svc0.spec.cluster_ip, cluster_name(0))
            cold_round = iter(range(1, 1_000_000))

            def cluster_cold() -> Round:
                # A name, or a letter case of it, the server was never asked: no packed answer to reuse.
                r = next(cold_round)
                return qps(port, pid, lambda n: cluster_name(n, r * 16 + n // services), seconds, "")

            def cluster_hot() -> Round:
                return qps(port, pid, lambda n: f"svc{n % 100}.{NAMESPACE}.svc.{DOMAIN}", seconds, "")

            uncached_round = iter(range(1_000_000))

            def forwarded_uncached() -> Round:
                r = next(uncached_round)
                return qps(port, pid, lambda n: f"r{r}-q{n}.example.test", seconds, STATIC_IP)

            def forwarded_cached() -> Round:
                return qps(port, pid, lambda n: "cached.example.test", seconds, STATIC_IP)

            for label, measured in ((f"A of a cluster name (svc<N>.{NAMESPACE}.svc.{DOMAIN}), each new to the server",
                                     cluster_cold),
                                    ("A of a cluster name, 100 names asked again and again", cluster_hot),
                                    ("A of a forwarded name, uncached (a new name each query)", forwarded_uncached),
                                    ("A of a forwarded name, cached (one name)", forwarded_cached)):
                mine, theirs = await asyncio.to_thread(paired_qps, measured, base)
                got, raw = statistics.median(r.rate for r in mine), statistics.median(r.rate for r in theirs)
                cpu, raw_cpu = statistics.median(r.cpu_us for r in mine), statistics.median(r.cpu_us for r in theirs)
                add(f"{label}, {services:,} Services", f"{got:,.0f} q/s, {cpu:.0f} us CPU/query",
                    f"{raw:,.0f} q/s, {raw_cpu:.0f} us CPU/query (static dnslib)",
                    f"{got / raw:.2f} (rate), {cpu / raw_cpu:.2f} (CPU)",
                    "rounds " + " ".join(f"{x.rate:,.0f}" for x in mine)
                    + " / " + " ".join(f"{x.rate:,.0f}" for x in theirs))
            add("kubelite-dns resident memory (VmRSS), no benchmark Services", f"{rss_empty:,.0f} MB", "-", "-", "")
            add(f"kubelite-dns resident memory, {services:,} Services + Endpoints arrived by watch",
                f"{rss_watched:,.0f} MB", "-", f"{rss_watched / rss_empty:.2f} x empty", "")
            add(f"kubelite-dns resident memory, fresh process listing {services:,} Services + Endpoints",
                f"{rss_fresh:,.0f} MB", "-", f"{rss_fresh / rss_empty:.2f} x empty", f"ready in {ready_s:.1f} s")
        finally:
            for p in dns_procs:
                p.stop()
            upstream.stop()
            baseline.stop()
            await client.close()
            api.stop()
    table = Table(title="kubelite-dns (one client, sequential UDP queries) beside a static dnslib server, same run")
    for col in ("what", "kubelite-dns", "baseline", "ratio", "note"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=10_000, help="Services (each with an Endpoints object)")
    parser.add_argument("--seconds", type=float, default=1.2, help="length of one measuring round")
    args = parser.parse_args()
    if args.services < 1 or args.seconds <= 0:
        parser.error("--services and --seconds must be positive")
    asyncio.run(bench(args.services, args.seconds))


if __name__ == "__main__":
    main()
