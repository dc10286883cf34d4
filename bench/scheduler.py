"""Scheduler benchmarks, in the shape of Kubernetes' scheduler_perf "SchedulingBasic".

* decisions with no API at all: 5,000 hollow nodes, 10,000 pods, the scheduling
  loop's synchronous part (snapshot, decision, assumption) in-process; also the
  per-node (non-vectorised) path on a sample, and the mixed cases where plugins
  cost (required anti-affinity, topology spread over 3 zones);
* end to end through a real API server and a 3-member etcd cluster, with the
  kubelite-scheduler binary: pods already pending when the scheduler starts
  (the scheduling phase alone), and pods created while it runs (created ->
  bound), with raw etcd puts at concurrency 32 beside them.

Nothing is asserted; a table is printed. ``python -m bench.scheduler [--quick] [--no-e2e]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.scheduler.algorithm import schedule
from kubelite.scheduler.cache import Cache
from kubelite.scheduler.nodeinfo import PodInfo, Snapshot
from kubelite.scheduler.profile import default_profile
from tests.support.apiserver import APIServerProcess
from tests.support.etcd import EtcdCluster
from tests.support.hollow import hollow_node, register
from tests.support.objects import make_node, make_pod
from tests.support.scheduler import SchedulerProcess

ZONE = "topology.kubernetes.io/zone"


def _nodes(n: int) -> list[core.Node]:
    return [make_node(f"node-{i:05d}", cpu="4", memory="32Gi", labels={ZONE: f"zone-{i % 3}"}) for i in range(n)]


def _basic_pod(i: int) -> core.Pod:
    # SchedulingBasic's pod: small requests, no constraints.
    return make_pod(f"pod-{i:05d}", cpu="100m", memory="500Mi", labels={"app": "bench"})


def _anti_affinity_pod(i: int) -> core.Pod:
    spec = {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"color": "green"}}, "topologyKey": "kubernetes.io/hostname"}]}},
        "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m"}}}]}
    return make_pod(f"anti-{i:05d}", labels={"color": "green"}, spec=spec)


def _spread_pod(i: int) -> core.Pod:
    spec = {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
                                           "labelSelector": {"matchLabels": {"app": "spread"}}}],
            "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m"}}}]}
    return make_pod(f"spread-{i:05d}", labels={"app": "spread"}, spec=spec)


def decision_rate(nodes: int, pods: list[core.Pod], *, vectorized: bool = True) -> tuple[float, int, float]:
    """Pods per second through snapshot update + decision + assumption, how many fitted, and pods per
    CPU-second of this process (steadier than wall time on a machine shared with other work)."""
    cache = Cache()
    for node in _nodes(nodes):
        cache.add_node(node)
    snapshot = Snapshot()
    cache.update_snapshot(snapshot)
    profile = default_profile()
    rng = random.Random(0)
    start = 0
    placed = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    for pod in pods:
        info = PodInfo(pod)
        cache.update_snapshot(snapshot)
        try:
            d = schedule(profile, snapshot, info, start_index=start, rng=rng, vectorized=vectorized, explain=False)
        except Exception:
            continue
        start = d.next_start_index
        cache.assume_pod(info.with_node(d.result.suggested_host))
        placed += 1
    return len(pods) / (time.perf_counter() - t0), placed, len(pods) / (time.process_time() - c0)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _wait_bound(sched: SchedulerProcess, want: int, timeout: float) -> float:
    """Seconds until the scheduler reports ``want`` successful bindings."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        done = sched.metric("scheduler_schedule_attempts_total", result="scheduled")
        if done >= want:
            return time.perf_counter() - t0
        await asyncio.sleep(0.2)
    raise TimeoutError(f"only {sched.metric('scheduler_schedule_attempts_total', result='scheduled'):.0f} of {want} "
                       f"pods bound after {timeout}s; see {sched.log_path}")


def _api_pod(i: int, ns: str, prefix: str) -> core.Pod:
    pod = _basic_pod(i)
    pod.metadata.name = f"{prefix}-{i:05d}"
    pod.metadata.namespace = ns
    pod.metadata.uid = ""
    pod.api_version, pod.kind = "v1", "Pod"
    return pod


async def _create_all(client: Client, pods: list[core.Pod], concurrency: int = 64) -> None:
    it = iter(pods)

    async def worker() -> None:
        for pod in it:
            await client.create(pod)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def end_to_end(nodes: int, pods: int, add: object, in_flight: int = 1024) -> None:
    import aetcd

    from bench.run import VALUE, rate

    report = add  # type: ignore[assignment]
    with tempfile.TemporaryDirectory(prefix="kubelite-bench-sched-") as tmp, EtcdCluster(Path(tmp)) as cluster:
        api = APIServerProcess(cluster.endpoints, Path(tmp) / "apiserver.log")
        api.start()
        try:
            host, port = cluster.endpoints[0].removeprefix("http://").rsplit(":", 1)
            raw = aetcd.Client(host=host, port=int(port))
            raw_put = await rate(2000, 32, lambda i: raw.put(f"/bench/raw/{i}".encode(), VALUE))
            await raw.close()
            client = Client(api.address)
            t0 = time.perf_counter()
            await register(client, [hollow_node(f"node-{i:05d}", labels={ZONE: f"zone-{i % 3}"})
                                    for i in range(nodes)], concurrency=64)
            reg = time.perf_counter() - t0
            report(f"register {nodes:,} hollow nodes", f"{nodes / reg:,.0f} nodes/s", "", "")  # type: ignore[operator]
            for name in ("bench-pending", "bench-e2e"):
                ns = core.Namespace(api_version="v1", kind="Namespace")
                ns.metadata.name = name
                await client.create(ns)

            # Pods already pending when the scheduler starts: the scheduling phase alone.
            t0 = time.perf_counter()
            await _create_all(client, [_api_pod(i, "bench-pending", "pending") for i in range(pods)])
            create_rate = pods / (time.perf_counter() - t0)
            sched = SchedulerProcess(api.server, Path(tmp) / "scheduler.log",
                                     extra_args=[f"--max-in-flight-bindings={in_flight}"])
            sched.start(timeout=120)
            assert api.proc is not None and sched.proc is not None
            pids = (sched.proc.pid, api.proc.pid)
            try:
                cpu0 = [_cpu_seconds(p) for p in pids]
                took = await _wait_bound(sched, pods, timeout=600)
                cpu = [_cpu_seconds(p) - c for p, c in zip(pids, cpu0, strict=True)]
                report(f"{pods:,} pending pods on {nodes:,} nodes: bound", f"{pods / took:,.0f} pods/s",  # type: ignore[operator]
                       f"{raw_put:,.0f} puts/s", f"CPU s: scheduler {cpu[0]:.1f}, API {cpu[1]:.1f} in {took:.1f}")
                # Created while the scheduler runs: created -> bound.
                t0 = time.perf_counter()
                cpu0 = [_cpu_seconds(p) for p in pids]
                await _create_all(client, [_api_pod(i, "bench-e2e", "e2e") for i in range(pods)])
                await _wait_bound(sched, 2 * pods, timeout=600)
                total = time.perf_counter() - t0
                cpu = [_cpu_seconds(p) - c for p, c in zip(pids, cpu0, strict=True)]
                report(f"{pods:,} pods created -> bound, scheduler running", f"{pods / total:,.0f} pods/s",  # type: ignore[operator]
                       f"{raw_put:,.0f} puts/s", f"CPU s: scheduler {cpu[0]:.1f}, API {cpu[1]:.1f} in {total:.1f}")
                report(f"creating {pods:,} pods alone (concurrency 64)", f"{create_rate:,.0f} pods/s", "", "")  # type: ignore[operator]
                rss = _proc_rss_mib(sched)
                report(f"scheduler resident memory, {nodes:,} nodes + {2 * pods:,} pods", f"{rss:,.0f} MiB", "",  # type: ignore[operator]
                       "")
            finally:
                sched.stop()
            await client.close()
        finally:
            api.stop()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (to see which process a phase was bound by)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _proc_rss_mib(sched: SchedulerProcess) -> float:
    assert sched.proc is not None
    for line in Path(f"/proc/{sched.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def bench(quick: bool, e2e: bool, in_flight: int = 1024, decisions: bool = True) -> None:
    console = Console()
    rows: list[tuple[str, ...]] = []

    def add(*row: str) -> None:
        rows.append(row)
        console.print("  " + " | ".join(row))

    nodes = 5000
    basic_n = 2000 if quick else 10_000
    mixed_n = 300 if quick else 1000
    if not decisions:
        await end_to_end(nodes, 2000 if quick else 10_000, add, in_flight)
        return
    rss0 = _rss_mib()
    r, placed, per_cpu = decision_rate(nodes, [_basic_pod(i) for i in range(basic_n)])
    add(f"decisions, {nodes:,} nodes x {basic_n:,} pods (no API)", f"{r:,.0f} pods/s",
        f"{per_cpu:,.0f} per CPU-s", f"{placed:,} placed, RSS +{_rss_mib() - rss0:,.0f} MiB")
    r_slow, _, slow_cpu = decision_rate(nodes, [_basic_pod(i) for i in range(mixed_n)], vectorized=False)
    add(f"decisions, per-node path (no numpy), {mixed_n:,} pods", f"{r_slow:,.0f} pods/s",
        f"{slow_cpu:,.0f} per CPU-s", f"vectorised x{per_cpu / slow_cpu:.1f}")
    r, placed, per_cpu = decision_rate(nodes, [_anti_affinity_pod(i) for i in range(mixed_n)])
    add(f"decisions, required anti-affinity, {mixed_n:,} pods", f"{r:,.0f} pods/s", f"{per_cpu:,.0f} per CPU-s",
        f"{placed:,} placed")
    r, placed, per_cpu = decision_rate(nodes, [_spread_pod(i) for i in range(mixed_n)])
    add(f"decisions, topology spread over 3 zones, {mixed_n:,} pods", f"{r:,.0f} pods/s",
        f"{per_cpu:,.0f} per CPU-s", f"{placed:,} placed")
    if e2e:
        await end_to_end(nodes, 2000 if quick else 10_000, add, in_flight)

    table = Table(title="kubelite scheduler benchmark (SchedulingBasic shape; Kubernetes' threshold: 680 pods/s)")
    for col in ("what", "rate", "beside", "note"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller numbers, for a smoke run")
    parser.add_argument("--no-e2e", action="store_true", help="decisions only, no API server")
    parser.add_argument("--e2e-only", action="store_true", help="only the runs through the API server")
    parser.add_argument("--max-in-flight-bindings", type=int, default=1024, help="passed to the scheduler")
    args = parser.parse_args()
    asyncio.run(bench(args.quick, not args.no_e2e, args.max_in_flight_bindings, decisions=not args.e2e_only))


if __name__ == "__main__":
    main()
