"""`make bench`: API server throughput and latency beside raw etcd, on one machine.

Absolute times drift between runs on shared machines, so every API figure is
printed next to a baseline measured in the same run against the same
3-member etcd cluster: raw etcd puts/gets through aetcd (the client library
the API server itself uses) at the same concurrency. Nothing here asserts a
time; it prints a table.

    python -m bench.run [--quick]
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

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from tests.support.apiserver import APIServerProcess
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


def _watcher_proc(address: str, ns: str, count: int, expect: int, rv: str, out: mp.Queue) -> None:  # type: ignore[type-arg]
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


async def bench(quick: bool) -> None:
    console = Console()
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
                raw_put = await rate(n, conc, lambda i, c=conc: raw.put(f"/bench/raw{c}/{i}".encode(), VALUE))
                api_create = await rate(n, conc, lambda i, c=conc: client.create(configmap(f"c{c}-{i}")))
                add(f"create, concurrency {conc}", f"{api_create:,.0f}/s", f"{raw_put:,.0f}/s (put)",
                    f"{api_create / raw_put:.2f}")
                raw_get = await rate(n, conc, lambda i, c=conc: raw.get(f"/bench/raw{c}/{i}".encode()))
                api_get = await rate(n, conc, lambda i, c=conc: client.get(core.ConfigMap, f"c{c}-{i}", "default"))
                add(f"get, concurrency {conc}", f"{api_get:,.0f}/s", f"{raw_get:,.0f}/s (get)",
                    f"{api_get / raw_get:.2f}")

            # --- watch fan-out -------------------------------------------
            ns = core.Namespace(api_version="v1", kind="Namespace")
            ns.metadata.name = "bench-watch"
            await client.create(ns)
            rv = (await client.list(core.ConfigMap, "bench-watch")).resource_version
            procs_n = 4
            # spawn, not fork: gRPC's state in this process does not survive a fork.
            ctx = mp.get_context("spawn")
            q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
            procs = [ctx.Process(target=_watcher_proc,
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
        finally:
            api.stop()

    table = Table(title="kubelite benchmark (API through gRPC vs raw etcd via aetcd, same cluster, same run)")
    for col in ("what", "kubelite API", "raw etcd baseline", "ratio API/raw"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller numbers, for a smoke run")
    args = parser.parse_args()
    asyncio.run(bench(args.quick))


if __name__ == "__main__":
    main()
