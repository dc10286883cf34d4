"""`python -m bench.proxy`: kube-proxy's cost, each figure beside the raw kernel tool in the same run.

In throwaway network namespaces (nothing on the host is touched):

1. rule programming for S Services x E endpoints, per mode: the proxier's
   full sync, the Python share of it (generation and diffing: the sync's
   time minus the time spent inside iptables-save/iptables-restore/nft), and
   a raw ``iptables-restore`` / ``nft -f`` of the same text into a fresh
   namespace; then a partial sync after one endpoint changed;
2. network programming latency: a real 3-member etcd cluster and
   kubelite-apiserver holding S Services, the proxy running in this process
   (its kernel tools run inside the namespace), one Endpoints update at a
   time, each stamped with ``endpoints.kubernetes.io/last-change-trigger-time``;
   latency is from that stamp to the end of the sync that programmed it,
   exactly what the proxy's metric observes. Updates are spaced past the
   default --iptables-min-sync-period (1 s), so each is its own sync. A
   second row says where the time went: the API write and watch delivery,
   the wait for a sync to start, and the sync's Python and kernel-tool shares.

Nothing is asserted; a table is printed.

    python -m bench.proxy [--quick] [--services 1000,10000] [--latency-services 1000,10000] [--modes nftables]

Without --quick, both figures are taken at 1,000 and at 10,000 Services (several minutes:
`make bench`); --quick measures 1,000 only.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import secrets
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.client.informer import Informer
from kubelite.proxy import iptables, nftables
from kubelite.proxy.config import ProxyConfig
from kubelite.proxy.model import Endpoint, NodeConfig, ServicePort, Snapshot
from kubelite.proxy.proxier import IptablesProxier, Proxier, SyncResult
from kubelite.proxy.runner import ExecIptablesRunner, ExecNftRunner, FakeConntrack
from kubelite.proxy.server import TRIGGER_ANNOTATION, ProxyServer, parse_trigger_time
from tests.support.apiserver import APIServerProcess, free_port
from tests.support.etcd import EtcdCluster
from tests.support.netns import ensure_tools, sh

NODE = NodeConfig("bench-node", cluster_cidr="10.244.0.0/16")
console = Console()


class Netns:
    """One empty network namespace, deleted by name on exit."""

    def __init__(self) -> None:
        self.name = "klbench-" + secrets.token_hex(3)

    def __enter__(self) -> Netns:
        sh("ip", "netns", "add", self.name)
        return self

    def __exit__(self, *exc: object) -> None:
        sh("ip", "netns", "del", self.name, check=False)

    @property
    def prefix(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.name)


@dataclass
class TimedIptables:
    """The real runner, timing every call: the kernel tools' share of a sync."""

    inner: ExecIptablesRunner
    spent: list[float] = field(default_factory=list)

    async def save(self, tables: Sequence[str]) -> str:
        t0 = time.perf_counter()
        try:
            return await self.inner.save(tables)
        finally:
            self.spent.append(time.perf_counter() - t0)

    async def restore(self, text: str) -> None:
        t0 = time.perf_counter()
        try:
            await self.inner.restore(text)
        finally:
            self.spent.append(time.perf_counter() - t0)

    async def has_chain(self, table: str, chain: str) -> bool:
        return await self.inner.has_chain(table, chain)


@dataclass
class TimedNft:
    inner: ExecNftRunner
    spent: list[float] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    async def apply(self, text: str) -> None:
        self.texts.append(text)
        t0 = time.perf_counter()
        try:
            await self.inner.apply(text)
        finally:
            self.spent.append(time.perf_counter() - t0)

    async def list_ruleset(self) -> str:
        return await self.inner.list_ruleset()

    async def has_set(self, table: str, name: str) -> bool:
        return await self.inner.has_set(table, name)


def pod_ip(i: int) -> str:
    return f"10.{244 + (i >> 16) % 4}.{(i >> 8) & 255}.{i & 255}"


def snapshot(services: int, endpoints: int, changed: int = -1) -> Snapshot:
    ports = []
    for s in range(services):
        count = endpoints - 1 if s == changed else endpoints
        eps = tuple(Endpoint(pod_ip(s * endpoints + e), 8080, f"node{e}") for e in range(count))
        ports.append(ServicePort("bench", f"svc{s}", "http", "tcp", f"10.96.{s >> 8}.{s & 255}", 80,
                                 node_port=30000 + s if s < 2000 else 0, endpoints=eps))
    return Snapshot(tuple(ports))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: Sequence[str], text: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(list(argv), input=text, text=True, check=True, capture_output=True)
    return time.perf_counter() - t0


class Rows(list[tuple[str, ...]]):
    """Rows of the final table, each also printed as soon as it is measured (long runs show progress)."""

    def append(self, row: tuple[str, ...]) -> None:
        console.print("  " + " | ".join(row))
        super().append(row)


async def rules_bench(services: int, endpoints: int, rows: list[tuple[str, ...]], modes: Sequence[str]) -> None:
    full, changed = snapshot(services, endpoints), snapshot(services, endpoints, changed=services // 2)
    # As the proxy's SnapshotBuilder hands it over: the other ports unchanged (the same objects), and
    # a hint naming the one that changed.
    ports = list(full.ports)
    ports[services // 2] = changed.ports[services // 2]
    changed = Snapshot(tuple(ports), changed=frozenset({ports[services // 2].key}))
    label = f"{services:,} Services x {endpoints}"
    if "iptables" in modes:
        await _rules_iptables(full, changed, label, rows)
    if "nftables" in modes:
        await _rules_nftables(full, changed, label, rows)


async def _rules_iptables(full: Snapshot, changed: Snapshot, label: str, rows: list[tuple[str, ...]]) -> None:
    with Netns() as ns:
        runner = TimedIptables(ExecIptablesRunner(ns.prefix))
        proxier = IptablesProxier(NODE, runner, FakeConntrack())
        t0 = time.perf_counter()
        result = await proxier.sync(full, full=True)
        total = time.perf_counter() - t0
        tool = sum(runner.spent)
        runner.spent.clear()
        t0 = time.perf_counter()
        partial = await proxier.sync(changed, full=False)
        p_total = time.perf_counter() - t0
        p_tool = sum(runner.spent)
    # The raw baseline: the same rules in one flushing restore into an empty namespace, the
    # kernel tool's best case (a proxy cannot flush: Docker's rules share the tables).
    text = iptables.restore_text(iptables.generate(full, NODE), None, iptables.SavedTables())
    plain = "".join(line for line in text.splitlines(keepends=True) if line != "-Z\n")
    with Netns() as ns:
        raw = timed([*ns.prefix, "iptables-restore"], plain)
    rows.append((f"iptables full sync, {label} ({result.lines:,} lines)", f"{total:.2f} s",
                 f"{raw:.2f} s raw iptables-restore", f"Python {total - tool:.2f} s = "
                 f"{(total - tool) / raw:.0%} of the raw restore"))
    if len(full.ports) <= 2000:
        # What the -Z at the top of a large transaction saves (restore_text); it grows with
        # lines x chains, so it is only measured where it ends in seconds.
        with Netns() as ns:
            slow = timed([*ns.prefix, "iptables-restore", "--noflush"], plain)
        rows.append(("  the same --noflush restore without -Z", f"{slow:.2f} s", f"{slow / raw:.1f}x the raw restore",
                     ""))
    rows.append((f"iptables partial sync, one endpoint gone ({partial.lines} lines)", f"{p_total:.3f} s",
                 f"{p_tool:.3f} s in iptables-restore", f"Python {p_total - p_tool:.3f} s"))



async def _rules_nftables(full: Snapshot, changed: Snapshot, label: str, rows: list[tuple[str, ...]]) -> None:
    with Netns() as ns:
        nrunner = TimedNft(ExecNftRunner(ns.prefix))
        nproxier = nftables.NftablesProxier(NODE, nrunner, FakeConntrack())
        t0, cpu0 = time.perf_counter(), time.process_time()
        nres = await nproxier.sync(full, full=True)
        n_total = time.perf_counter() - t0
        # This process's CPU time is the Python share without the waits a loaded machine adds to
        # wall time (nft runs in a child; piping the text to it is the little that is not Python).
        n_cpu = time.process_time() - cpu0
        n_tool = sum(nrunner.spent)
        ntext = nrunner.texts[0]  # the raw load below gets exactly what the proxier wrote
        nrunner.spent.clear()
        t0 = time.perf_counter()
        npartial = await nproxier.sync(changed, full=False)
        np_total = time.perf_counter() - t0
        np_tool = sum(nrunner.spent)
    with Netns() as ns:
        before = _children_cpu()
        nraw = timed([*ns.prefix, "nft", "-f", "-"], ntext)
        raw_cpu = _children_cpu() - before
    rows.append((f"nftables full sync, {label} ({nres.rules:,} elements)", f"{n_total:.2f} s",
                 f"{nraw:.2f} s raw nft -f ({raw_cpu:.2f} s CPU)", f"Python {n_total - n_tool:.2f} s = "
                 f"{(n_total - n_tool) / nraw:.0%} of the raw load; CPU {n_cpu:.2f} s = {n_cpu / raw_cpu:.0%}"))
    rows.append((f"nftables partial sync, one endpoint gone ({npartial.lines} lines)", f"{np_total:.3f} s",
                 f"{np_tool:.3f} s in nft -f", f"Python {np_total - np_tool:.3f} s"))


def _endpoints(ns: str, name: str, base: int, count: int, shift: int = 0) -> core.Endpoints:
    ep = core.Endpoints(api_version="v1", kind="Endpoints")
    ep.metadata.name = name
    ep.metadata.namespace = ns
    ep.metadata.annotations["endpoints.kubernetes.io/last-change-trigger-time"] = (
        datetime.now(UTC).isoformat().replace("+00:00", "Z"))
    subset = ep.subsets.add()
    for e in range(count):
        subset.addresses.add(ip=pod_ip(base + e + shift), node_name=f"node{e}")
    subset.ports.add(name="http", port=8080, protocol="TCP")
    return ep


async def _gather_limited(coros: list, limit: int = 32) -> None:  # type: ignore[type-arg]
    sem = asyncio.Semaphore(limit)

    async def one(c) -> None:  # type: ignore[no-untyped-def]
        async with sem:
            await c

    await asyncio.gather(*(one(c) for c in coros))


async def latency_bench(services: int, endpoints: int, updates: int, rows: list[tuple[str, ...]],
                        modes: Sequence[str] = ("iptables", "nftables")) -> None:
    root = "/dev/shm" if Path("/dev/shm").is_dir() else None  # noqa: ASYNC240 (once, before anything runs)
    with tempfile.TemporaryDirectory(prefix="kubelite-bench-proxy-", dir=root) as tmp, \
            EtcdCluster(Path(tmp)) as cluster:
        api = APIServerProcess(cluster.endpoints, Path(tmp) / "apiserver.log")
        api.start()
        client = Client(api.address)
        try:
            namespace = core.Namespace(api_version="v1", kind="Namespace")
            namespace.metadata.name = "bench-proxy"
            await client.create(namespace)
            t0 = time.perf_counter()
            svcs = []
            for s in range(services):
                svc = core.Service(api_version="v1", kind="Service")
                svc.metadata.name = f"svc{s}"
                svc.metadata.namespace = "bench-proxy"
                svc.spec.selector["app"] = f"svc{s}"
                svc.spec.ports.add(name="http", port=80, protocol="TCP", target_port="8080")
                svcs.append(svc)
            await _gather_limited([client.create(svc) for svc in svcs])
            await _gather_limited([client.update(_endpoints("bench-proxy", f"svc{s}", s * endpoints, endpoints))
                                   for s in range(services)])
            console.print(f"  created {services:,} Services and Endpoints in {time.perf_counter() - t0:.1f} s")
            for i, mode in enumerate(modes):
                with Netns() as ns:
                    # Each mode's changes move the endpoints somewhere the previous mode's did not:
                    # the same Endpoints again would change no rule, and measure nothing.
                    await _latency_one(client, ns, mode, services, endpoints, updates, rows, salt=2 * i)
        finally:
            await client.close()
            api.stop()


async def _latency_one(client: Client, ns: Netns, mode: str, services: int, endpoints: int, updates: int,
                       rows: list[tuple[str, ...]], salt: int = 0) -> None:
    config = ProxyConfig(hostname_override="bench-node", proxy_mode=mode, cluster_cidr="10.244.0.0/16",
                         healthz_bind_address=f"127.0.0.1:{free_port()}", exec_prefix=ns.prefix)
    tool: list[float] = []
    proxier: Proxier
    if mode == "iptables":
        it = TimedIptables(ExecIptablesRunner(ns.prefix))
        tool = it.spent
        proxier = IptablesProxier(NODE, it, FakeConntrack())
    else:
        nt = TimedNft(ExecNftRunner(ns.prefix))
        tool = nt.spent
        proxier = nftables.NftablesProxier(NODE, nt, FakeConntrack())
    latencies: list[float] = []
    all_seen = asyncio.Event()
    # Where the time goes, per change: the API write and watch delivery (trigger stamp -> the proxy's
    # informer has the event), the wait for a sync to start (coalescing, rate limit, a sync already
    # running), and the sync that programmed it, split into Python and the kernel tool.
    arrivals: list[tuple[float, float]] = []  # (trigger stamp, arrival), wall clock
    syncs: list[tuple[float, float, float]] = []  # (start, end, seconds in the kernel tool)
    inner_sync = proxier.sync

    snapshot_started: list[float] = []

    async def timed_sync(snap: Snapshot, *, full: bool) -> SyncResult:
        before = sum(tool)
        # A sync starts with its snapshot (built from the informers before the proxier is called).
        start = snapshot_started[-1] if snapshot_started else time.time()
        try:
            return await inner_sync(snap, full=full)
        finally:
            syncs.append((start, time.time(), sum(tool) - before))

    proxier.sync = timed_sync  # type: ignore[method-assign]
    endpoints_informer: Informer[core.Endpoints] = Informer(client, core.Endpoints)

    def arrived(_old: core.Endpoints, new: core.Endpoints) -> None:
        stamp = parse_trigger_time(new.metadata.annotations.get(TRIGGER_ANNOTATION, ""))
        if stamp is not None:
            arrivals.append((stamp, time.time()))

    def observed(seconds: float) -> None:
        latencies.append(seconds)
        if len(latencies) >= updates:
            all_seen.set()

    server = ProxyServer(config, proxier, Informer(client, core.Service), endpoints_informer,
                         on_programmed=observed)
    endpoints_informer.add_handler(on_update=arrived)
    builder = server._snapshots
    for method in ("build", "update"):
        if hasattr(builder, method):
            setattr(builder, method, _stamped(getattr(builder, method), snapshot_started))
    task = asyncio.create_task(server.serve(), name=f"bench-proxy-{mode}")
    try:
        t0 = time.perf_counter()
        while server.syncs < 1:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        first = time.perf_counter() - t0
        tool.clear()
        for u in range(updates):
            s = (u * 7919) % services
            await client.update(_endpoints("bench-proxy", f"svc{s}", s * endpoints, endpoints, shift=u % 2 + 1 + salt))
            await asyncio.sleep(1.2)
        try:
            await asyncio.wait_for(all_seen.wait(), 120)
        except TimeoutError:
            pass  # report what arrived
    finally:
        task.cancel()
        await asyncio.wait([task])
    lat = sorted(latencies)
    if not lat:
        rows.append((f"{mode}: network programming latency, {services:,} Services", "no samples", "", ""))
        return
    p50 = lat[len(lat) // 2]
    p90 = lat[min(len(lat) - 1, int(len(lat) * 0.9))]
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    # The slowest few beside the percentiles: with 40 samples p99 is the slowest one, and one stall
    # of the shared machine (or of the API server's watch) shows there and nowhere else.
    slowest = ", ".join(f"{x * 1000:.0f}" for x in lat[-3:])
    rows.append((f"{mode}: network programming latency, {services:,} Services ({len(lat)} changes)",
                 f"p50 {p50 * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms "
                 f"(slowest: {slowest} ms)",
                 f"kernel tool per sync: median {statistics.median(tool) * 1000:.0f} ms" if tool else "",
                 f"first sync (list + full) {first:.1f} s"))
    parts = _breakdown(arrivals, syncs)
    if parts:
        cells = {k: (statistics.median(v) * 1000, max(v) * 1000) for k, v in parts.items()}
        rows.append((f"{mode}: where the latency goes (median / slowest, ms)",
                     f"API write + watch delivery {cells['delivery'][0]:.0f} / {cells['delivery'][1]:.0f}; "
                     f"wait for a sync {cells['wait'][0]:.0f} / {cells['wait'][1]:.0f}",
                     f"sync: Python (snapshot, rules, diff) {cells['python'][0]:.0f} / {cells['python'][1]:.0f}, "
                     f"{'nft' if mode == 'nftables' else 'iptables-restore'} "
                     f"{cells['tool'][0]:.0f} / {cells['tool'][1]:.0f}", f"{len(parts['wait'])} changes"))


def _stamped(fn: Any, starts: list[float]) -> Any:
    def call(*args: Any, **kw: Any) -> Any:
        starts.append(time.time())
        return fn(*args, **kw)
    return call


def _breakdown(arrivals: list[tuple[float, float]], syncs: list[tuple[float, float, float]]) -> dict[str, list[float]]:
    """Each change's latency cut at its arrival and at the start of the first sync after it."""
    out: dict[str, list[float]] = {"delivery": [], "wait": [], "python": [], "tool": []}
    for stamp, arrival in arrivals:
        sync = next((s for s in syncs if s[0] >= arrival), None)
        if sync is None:
            continue
        start, end, tool = sync
        out["delivery"].append(arrival - stamp)
        out["wait"].append(start - arrival)
        out["python"].append(end - start - tool)
        out["tool"].append(tool)
    return out if out["wait"] else {}


async def bench(services: list[int], endpoints: int, latency_services: list[int], updates: int,
                modes: Sequence[str]) -> None:
    ensure_tools()
    rows = Rows()
    for n in services:
        console.print(f"rules: {n:,} Services x {endpoints} endpoints")
        await rules_bench(n, endpoints, rows, modes)
    for n in latency_services:
        console.print(f"latency: {n:,} Services through a real API server")
        await latency_bench(n, endpoints, updates, rows, modes)
    table = Table(title="kubelite-proxy")
    for col in ("what", "kubelite-proxy", "baseline (same run)", "note"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 Services only, fewer latency samples")
    parser.add_argument("--services", default="", help="comma-separated Service counts (default 1000,10000)")
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--latency-services", default="",
                        help="comma-separated Service counts for the latency figure (default 1000,10000; quick: 1000; "
                             "0: none)")
    parser.add_argument("--latency-updates", type=int, default=0)
    parser.add_argument("--modes", default="iptables,nftables", help="proxy modes to measure")
    args = parser.parse_args()
    services = [int(s) for s in args.services.split(",") if s] or ([1000] if args.quick else [1000, 10_000])
    latency = [int(s) for s in args.latency_services.split(",") if s] or ([1000] if args.quick else [1000, 10_000])
    latency = [n for n in latency if n > 0]  # --latency-services 0: rule programming only
    updates = args.latency_updates or (10 if args.quick else 40)
    asyncio.run(bench(services, args.endpoints, latency, updates,
                      [m for m in args.modes.split(",") if m]))


if __name__ == "__main__":
    main()
