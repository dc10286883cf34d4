"""`make bench`: API server throughput and latency beside raw etcd, on one machine.

Absolute times drift between runs on shared machines, so every API figure is
printed next to a baseline measured in the same run against the same
3-member etcd cluster: raw etcd puts/gets through aetcd (the client library
the API server itself uses) at the same concurrency. Nothing here asserts a
time; it prints a table.

    python -m bench.run [--quick] [--nodes N] [--pods-per-node N]

Sections: create/get throughput; bindings at concurrency 32 (the scheduler's
write path); the create rate through several API server processes sharing
the gRPC port (SO_REUSEPORT) and several client channels; watch fan-out;
listing 10,000 pods; and the density benchmark (bench.density): hollow nodes
with leases and node-scoped pod watches, pods created, bound and Running.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aetcd
from rich.console import Console
from rich.table import Table

from bench.density import DISTINCT_CONNECTION, LATE_RENEWAL, DensityResult, run_density
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.storage.etcd import EtcdStorage
from tests.support.apiserver import APIServerProcess, free_port
from tests.support.etcd import EtcdCluster

VALUE = b"x" * 1024


async def rate(n: int, concurrency: int, op: Callable[[int], Awaitable[object]]) -> float:
    """Operations per second for n calls of op(i) with `concurrency` in flight."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await op(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - t0)


ROUNDS = 3


async def paired(n: int, concurrency: int, api_op: Callable[[int], Awaitable[object]],
                 raw_op: Callable[[int], Awaitable[object]]) -> tuple[float, float]:
    """(API rate, raw rate): ROUNDS alternating rounds of n/ROUNDS calls each, the median of each side.

    The machine is shared: load from elsewhere comes and goes within seconds,
    so the two sides are measured side by side in time, not one after the other.
    """
    per = max(n // ROUNDS, 1)
    api_rates: list[float] = []
    raw_rates: list[float] = []
    for r in range(ROUNDS):
        raw_rates.append(await rate(per, concurrency, lambda i, r=r: raw_op(r * per + i)))
        api_rates.append(await rate(per, concurrency, lambda i, r=r: api_op(r * per + i)))
    return statistics.median(api_rates), statistics.median(raw_rates)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def configmap(name: str, ns: str = "default") -> core.ConfigMap:
    cm = core.ConfigMap(api_version="v1", kind="ConfigMap")
    cm.metadata.name = name
    cm.metadata.namespace = ns
    cm.data["payload"] = VALUE.decode()
    return cm


def pod(name: str, ns: str) -> core.Pod:
    p = core.Pod(api_version="v1", kind="Pod")
    p.metadata.name = name
    p.metadata.namespace = ns
    p.metadata.labels["app"] = "bench"
    c = p.spec.containers.add(name="app", image="busybox:local", command=["sleep", "3600"])
    c.ports.add(container_port=8080)
    c.resources.requests["cpu"] = "100m"
    return p


def etcd_client(endpoint: str) -> aetcd.Client:
    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    return aetcd.Client(host=host, port=int(port), options={"grpc.max_receive_message_length": 256 * 1024 * 1024})


def watcher_proc(address: str, ns: str, count: int, expect: int, rv: str, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """A process of `count` watchers; reports (name, receive time) per event and watcher."""

    async def main() -> None:
        client = Client(address)
        received: list[tuple[str, float]] = []
        # Each watcher calls in once its stream is open; the writer starts after all have.
        opened = asyncio.Semaphore(0)

        async def one() -> None:
            got = 0
            stream = client.watch(core.ConfigMap, ns, resource_version=rv)
            opened.release()
            async for ev in stream:
                received.append((ev.object.metadata.name, time.time()))
                got += 1
                if got == expect:
                    return

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        for _ in range(count):
            await opened.acquire()
        out.put(("ready", count))
        await asyncio.wait_for(asyncio.gather(*tasks), 300)
        out.put(("done", received))
        await client.close()

    asyncio.run(main())


async def bench(quick: bool, nodes: int, pods_per_node: int) -> None:
    console = Console(width=160)
    n1, n32 = (150, 600) if quick else (400, 2000)
    pods_n = 2000 if quick else 10_000
    watchers, writes = (100, 30) if quick else (500, 100)
    rows: list[tuple[str, str, str, str]] = []

    def add(*row: str) -> None:
        rows.append(row)  # type: ignore[arg-type]
        console.print("  " + " | ".join(row))

    with tempfile.TemporaryDirectory(prefix="kubelite-bench-") as tmp, EtcdCluster(Path(tmp)) as cluster:
        api = APIServerProcess(cluster.endpoints, Path(tmp) / "apiserver.log")
        api.start()
        try:
            raw = etcd_client(cluster.endpoints[0])
            client = Client(api.address)

            # --- create / get throughput ---------------------------------
            for conc, n in ((1, n1), (32, n32)):
                api_create, raw_put = await paired(
                    n, conc, lambda i, c=conc: client.create(configmap(f"c{c}-{i}")),
                    lambda i, c=conc: raw.put(f"/bench/raw{c}/{i}".encode(), VALUE))
                add(f"create, concurrency {conc}", f"{api_create:,.0f}/s", f"{raw_put:,.0f}/s (put)",
                    f"{api_create / raw_put:.2f}")
                api_get, raw_get = await paired(
                    n, conc, lambda i, c=conc: client.get(core.ConfigMap, f"c{c}-{i}", "default"),
                    lambda i, c=conc: raw.get(f"/bench/raw{c}/{i}".encode()))
                add(f"get, concurrency {conc}", f"{api_get:,.0f}/s", f"{raw_get:,.0f}/s (get)",
                    f"{api_get / raw_get:.2f}")

            # --- the storage layer alone: where the API's create time goes ---
            # EtcdStorage in this process, group commit included, without the gRPC front and the
            # request pipeline: the difference to "create, concurrency 32" is the API server's own cost.
            storage = await EtcdStorage.open(cluster.endpoints)
            try:
                stored, raw_put = await paired(n32, 32, lambda i: storage.create(f"/bench/storage/{i}", VALUE),
                                               lambda i: raw.put(f"/bench/rawstorage/{i}".encode(), VALUE))
            finally:
                await storage.close()
            add("storage create (EtcdStorage in-process, group commit), concurrency 32", f"{stored:,.0f}/s",
                f"{raw_put:,.0f}/s (put)", f"{stored / raw_put:.2f}")

            # --- bindings: the scheduler's write path ----------------------
            await create_namespace(client, "bench-bind")
            await rate(n32, 64, lambda i: client.create(pod(f"b-{i:05d}", "bench-bind")))
            binds, raw_put = await paired(n32, 32, lambda i: client.bind("bench-bind", f"b-{i:05d}", f"node-{i % 100}"),
                                          lambda i: raw.put(f"/bench/rawbind/{i}".encode(), VALUE))
            add("bind (pods/binding), concurrency 32", f"{binds:,.0f}/s", f"{raw_put:,.0f}/s (put)",
                f"{binds / raw_put:.2f}")

            # --- several API server processes on one port ------------------
            await reuseport_creates(cluster, api, Path(tmp), n32, raw, add)

            # --- watch fan-out -------------------------------------------
            ns = core.Namespace(api_version="v1", kind="Namespace")
            ns.metadata.name = "bench-watch"
            await client.create(ns)
            rv = (await client.list(core.ConfigMap, "bench-watch")).resource_version
            procs_n = 4
            # spawn, not fork: gRPC's state in this process does not survive a fork.
            ctx = mp.get_context("spawn")
            q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
            procs = [ctx.Process(target=watcher_proc,
                                args=(api.address, "bench-watch", watchers // procs_n, writes, rv, q))
                     for _ in range(procs_n)]
            for p in procs:
                p.start()
            for _ in procs:
                q.get(timeout=120)
            await asyncio.sleep(1.0)
            sent: dict[str, float] = {}
            acked: dict[str, float] = {}
            for i in range(writes):
                sent[f"w{i}"] = time.time()
                await client.create(configmap(f"w{i}", "bench-watch"))
                acked[f"w{i}"] = time.time()
                await asyncio.sleep(0.05)
            after_ack: list[float] = []
            after_send: list[float] = []
            for _ in procs:
                _kind, received = q.get(timeout=300)
                # Negative when a watcher had the event before the writer saw its acknowledgement.
                after_ack += [(t - acked[name]) * 1000 for name, t in received]
                after_send += [(t - sent[name]) * 1000 for name, t in received]
            for p in procs:
                p.join(10)
            write_ms = statistics.median((acked[k] - sent[k]) * 1000 for k in sent)
            add(f"watch delivery after the ack, {watchers} watchers x {writes} writes",
                f"p50 {pct(after_ack, 50):.1f} ms, p99 {pct(after_ack, 99):.1f} ms", "-",
                f"{len(after_ack)} events")
            add("watch delivery after the write was sent", f"p50 {pct(after_send, 50):.1f} ms, "
                f"p99 {pct(after_send, 99):.1f} ms", f"{write_ms:.1f} ms (create round trip, p50)", "-")

            # --- list 10,000 pods -----------------------------------------
            ns.metadata.name = "bench-list"
            await client.create(ns)
            await rate(pods_n, 64, lambda i: client.create(pod(f"pod-{i:05d}", "bench-list")))
            timings: dict[str, list[float]] = {"cache": [], "consistent": [], "etcd": [], "raw": []}
            for _ in range(3):
                t0 = time.perf_counter()
                got = await client.list(core.Pod, "bench-list", resource_version="0")
                timings["cache"].append(time.perf_counter() - t0)
                assert len(got.items) == pods_n
                t0 = time.perf_counter()
                await client.list(core.Pod, "bench-list")
                timings["consistent"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                got = await client.list(core.Pod, "bench-list", limit=pods_n + 1)
                timings["etcd"].append(time.perf_counter() - t0)
                assert len(got.items) == pods_n
                t0 = time.perf_counter()
                got_raw = await raw.get_prefix(b"/registry/pods/bench-list/")
                timings["raw"].append(time.perf_counter() - t0)
                assert got_raw.count == pods_n
            raw_ms = min(timings["raw"]) * 1000
            for label, key in (("from the watch cache (rv=0)", "cache"),
                               ("consistent, from the cache (rv=\"\")", "consistent"),
                               ("from etcd (limit)", "etcd")):
                ms = min(timings[key]) * 1000
                add(f"list {pods_n:,} pods {label}", f"{ms:,.0f} ms", f"{raw_ms:,.0f} ms (range)",
                    f"{ms / raw_ms:.2f}")
            await client.close()
            await raw.close()

            # --- density: hollow nodes, leases, node watches, pods Running ---
            assert api.proc is not None
            etcd_pids = [m.process.pid for m in cluster.members if m.process is not None]
            result = await run_density(api.address, api.http_port, api.proc.pid, etcd_pids, nodes=nodes,
                                       pods_per_node=pods_per_node, processes=4)
            density_rows(result, add)
        finally:
            api.stop()

    table = Table(title="kubelite benchmark (API through gRPC vs raw etcd via aetcd, same cluster, same run)")
    for col in ("what", "kubelite API", "raw etcd baseline", "ratio API/raw"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)


async def create_namespace(client: Client, name: str) -> None:
    ns = core.Namespace(api_version="v1", kind="Namespace")
    ns.metadata.name = name
    await client.create(ns)


# API server processes sharing the gRPC port, and client channels spread over them.
REUSEPORT_SERVERS = 3
REUSEPORT_CHANNELS = 8


async def reuseport_creates(cluster: EtcdCluster, api: APIServerProcess, tmp: Path, n: int, raw: aetcd.Client,
                            add: Callable[..., None]) -> None:
    """Create at concurrency 32 through REUSEPORT_SERVERS processes bound to one port (gRPC sets
    SO_REUSEPORT on its listening sockets by default), over REUSEPORT_CHANNELS distinct connections:
    the kernel spreads the connections over the processes."""
    extra = [APIServerProcess(cluster.endpoints, tmp / f"apiserver-{i}.log", port=api.port, http_port=free_port())
             for i in range(1, REUSEPORT_SERVERS)]
    for server in extra:
        server.start()
    clients = [Client(api.address, options=DISTINCT_CONNECTION) for _ in range(REUSEPORT_CHANNELS)]
    try:
        await create_namespace(clients[0], "bench-reuseport")
        created, raw_put = await paired(n, 32, lambda i: clients[i % len(clients)].create(
            configmap(f"r-{i}", "bench-reuseport")), lambda i: raw.put(f"/bench/rawreuse/{i}".encode(), VALUE))
        add(f"create, concurrency 32, {REUSEPORT_SERVERS} API servers on one port (SO_REUSEPORT), "
            f"{REUSEPORT_CHANNELS} channels", f"{created:,.0f}/s", f"{raw_put:,.0f}/s (put)",
            f"{created / raw_put:.2f}")
    finally:
        for c in clients:
            await c.close()
        for server in extra:
            server.stop()


def density_rows(r: DensityResult, add: Callable[..., None]) -> None:
    """The density benchmark's figures, one row each, beside Kubernetes' SLOs where it has one."""
    running = f"{r.running:,} Running" + (f", {len(r.errors)} errors" if r.errors else "")
    add(f"density: {r.nodes:,} hollow nodes, {r.pods:,} pods created, bound, Running",
        f"{r.seconds:,.0f} s, {r.pods / r.seconds:,.0f} pods/s", "-", running)
    slo = {"list all pods (rv=0)": "SLO p99 <= 30 s (list)", "list all pods (consistent)": "SLO p99 <= 30 s (list)"}
    for verb in sorted(r.latencies):
        values = r.latencies[verb]
        add(f"density: {verb} latency (client side), {len(values):,} calls",
            f"p50 {pct(values, 50) * 1000:,.1f} ms, p99 {pct(values, 99) * 1000:,.1f} ms",
            slo.get(verb, "SLO p99 <= 1 s (mutating)"), "-")
    for (verb, resource), (p50, p99, calls) in sorted(r.server_latency.items()):
        add(f"density: {verb} {resource} latency (server histogram), {calls:,} calls",
            f"p50 <= {p50 * 1000:,.1f} ms, p99 <= {p99 * 1000:,.1f} ms",
            "SLO p99 <= 30 s (list)" if verb == "list" else "SLO p99 <= 1 s", "-")
    late = sum(1 for g in r.renew_gaps if g > LATE_RENEWAL)
    worst = max(r.renew_gaps, default=0.0)
    add("density: lease renewals (every 10 s)", f"{late} late of {len(r.renew_gaps):,} (gap > {LATE_RENEWAL:g} s)",
        "goal: none late", f"longest gap {worst:.1f} s")
    if r.delivery_ms:
        add("density: binding -> node watch delivery", f"p50 {pct(r.delivery_ms, 50):,.1f} ms, "
            f"p99 {pct(r.delivery_ms, 99):,.1f} ms", "-", f"{len(r.delivery_ms):,} pods")
    add("density: resident memory at peak", f"API server {r.apiserver_rss_mb:,.0f} MB",
        f"etcd (3 members) {r.etcd_rss_mb:,.0f} MB", "goal: control plane <= 250 MB")
    for e in r.errors[:3]:
        print("  density error:", e)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller numbers, for a smoke run")
    parser.add_argument("--nodes", type=int, default=None, help="hollow nodes (default 1000; --quick 100)")
    # Kubernetes' load test runs 30 pods per node; on a shared 2-core machine 30,000 pods take
    # about 11 minutes, so `make bench` runs 5 per node and `--pods-per-node 30` the full shape.
    parser.add_argument("--pods-per-node", type=int, default=None, help="pods per node (default 5; full shape: 30)")
    args = parser.parse_args()
    nodes = args.nodes or (100 if args.quick else 1000)
    pods_per_node = args.pods_per_node or 5
    asyncio.run(bench(args.quick, nodes, pods_per_node))


if __name__ == "__main__":
    main()
