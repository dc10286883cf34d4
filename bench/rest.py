"""`make bench`: the REST API beside the gRPC API, same server, same objects, same run.

    python -m bench.rest [--quick]

Lists of 10,000 pods from the watch cache (resourceVersion=0) through gRPC
(the kubelite client, objects decoded), and through REST as JSON and as a
Table (aiohttp client; the time until the body is received, which is the
server's and the transport's share, and until it is parsed with the
standard library's json, which is the client's); then watch fan-out: W
watchers over each API, the same writes, and the delay from the write's
acknowledgement to each watcher's receipt (p50/p99). Nothing is asserted;
the goal the issue sets is REST within 1.5x of gRPC for lists and the same
p99 for watches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import aiohttp
from rich.console import Console
from rich.table import Table

from bench.run import configmap, pct, pod, rate, watcher_proc
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from tests.support.apiserver import APIServerProcess
from tests.support.etcd import EtcdCluster

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def _rest_watchers(http: str, ns: str, count: int, expect: int, rv: str, out: mp.Queue) -> None:  # type: ignore[type-arg]
    async def main() -> None:
        received: list[tuple[str, float]] = []
        opened = asyncio.Semaphore(0)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None),
                                         connector=aiohttp.TCPConnector(limit=0)) as session:
            async def one() -> None:
                url = f"{http}/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion={rv}"
                async with session.get(url) as resp:
                    opened.release()
                    got = 0
                    async for line in resp.content:
                        ev = json.loads(line)
                        received.append((ev["object"]["metadata"]["name"], time.time()))
                        got += 1
                        if got == expect:
                            return

            tasks = [asyncio.create_task(one()) for _ in range(count)]
            for _ in range(count):
                await opened.acquire()
            out.put(("ready", count))
            await asyncio.wait_for(asyncio.gather(*tasks), 300)
        out.put(("done", received))

    asyncio.run(main())


async def fan_out(client: Client, api: APIServerProcess, rest: bool, watchers: int, writes: int) -> list[float]:
    """Delivery delays (ms after the write's acknowledgement) of every event at every watcher."""
    name = f"bench-watch-{'rest' if rest else 'grpc'}"
    ns = core.Namespace(api_version="v1", kind="Namespace")
    ns.metadata.name = name
    await client.create(ns)
    rv = (await client.list(core.ConfigMap, name)).resource_version
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs_n = 4
    target, where = ((_rest_watchers, f"http://127.0.0.1:{api.http_port}") if rest
                     else (watcher_proc, api.address))
    procs = [ctx.Process(target=target, args=(where, name, watchers // procs_n, writes, rv, q))
             for _ in range(procs_n)]
    for p in procs:
        p.start()
    for _ in procs:
        q.get(timeout=120)
    await asyncio.sleep(1.0)
    acked: dict[str, float] = {}
    for i in range(writes):
        await client.create(configmap(f"w{i}", name))
        acked[f"w{i}"] = time.time()
        await asyncio.sleep(0.05)
    delays: list[float] = []
    for _ in procs:
        _kind, received = q.get(timeout=300)
        delays += [(t - acked[n]) * 1000 for n, t in received]
    for p in procs:
        p.join(10)
    return delays


async def bench(quick: bool) -> None:
    pods_n = 2000 if quick else 10_000
    watchers, writes = (100, 20) if quick else (500, 50)
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="kubelite-bench-rest-") as tmp, EtcdCluster(Path(tmp) / "etcd") as cluster:
        api = APIServerProcess(cluster.endpoints, Path(tmp) / "api.log")
        api.start()
        try:
            client = Client(api.address)
            ns = core.Namespace(api_version="v1", kind="Namespace")
            ns.metadata.name = "bench-list"
            await client.create(ns)
            await rate(pods_n, 64, lambda i: client.create(pod(f"pod-{i:05d}", "bench-list")))
            url = f"http://127.0.0.1:{api.http_port}/api/v1/namespaces/bench-list/pods?resourceVersion=0"
            timings: dict[str, list[float]] = {"grpc": [], "json": [], "table": [], "json-received": [],
                                               "table-received": []}
            async with aiohttp.ClientSession() as session:
                for _ in range(3):
                    t0 = time.perf_counter()
                    got = await client.list(core.Pod, "bench-list", resource_version="0")
                    timings["grpc"].append(time.perf_counter() - t0)
                    assert len(got.items) == pods_n
                    for key, accept in (("json", "application/json"), ("table", TABLE)):
                        t0 = time.perf_counter()
                        async with session.get(url, headers={"Accept": accept}) as resp:
                            body = await resp.read()
                        timings[f"{key}-received"].append(time.perf_counter() - t0)
                        doc = json.loads(body)
                        timings[key].append(time.perf_counter() - t0)
                        assert len(doc["items" if key == "json" else "rows"]) == pods_n
            grpc_ms = min(timings["grpc"]) * 1000
            for key, label in (("json-received", "as JSON, body received"), ("json", "as JSON, body parsed"),
                               ("table-received", "as a Table, body received"), ("table", "as a Table, body parsed")):
                ms = min(timings[key]) * 1000
                rows.append((f"list {pods_n:,} pods through REST {label} (rv=0)", f"{ms:,.0f} ms",
                             f"{grpc_ms:,.0f} ms (gRPC list, decoded)", f"{ms / grpc_ms:.2f}"))
            # The first of each: the server's JSON and Table rows of each object state built, not cached yet.
            for key, label in (("json-received", "JSON"), ("table-received", "a Table")):
                ms = timings[key][0] * 1000
                rows.append((f"  the first such list as {label} (each object's JSON or row built)", f"{ms:,.0f} ms",
                             f"{timings['grpc'][0] * 1000:,.0f} ms (the first gRPC list)",
                             f"{ms / (timings['grpc'][0] * 1000):.2f}"))
            grpc_delays = await fan_out(client, api, False, watchers, writes)
            rest_delays = await fan_out(client, api, True, watchers, writes)
            rows.append((f"watch delivery after the ack, {watchers} REST watchers x {writes} writes",
                         f"p50 {pct(rest_delays, 50):.1f} ms, p99 {pct(rest_delays, 99):.1f} ms",
                         f"p50 {pct(grpc_delays, 50):.1f} ms, p99 {pct(grpc_delays, 99):.1f} ms (gRPC)",
                         f"{pct(rest_delays, 99) / max(pct(grpc_delays, 99), 0.001):.2f} (p99)"))
            await client.close()
        finally:
            api.stop()
    table = Table(title="kubelite REST API beside its gRPC API (same server, same objects, same run)")
    for col in ("what", "REST", "gRPC baseline", "ratio REST/gRPC"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    asyncio.run(bench(args.quick))


if __name__ == "__main__":
    main()
