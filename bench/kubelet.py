"""Pod startup latency on one node, beside raw Docker in the same run.

A real 3-member etcd cluster, a kubelite-apiserver and a kubelite-kubelet
(Docker runtime) on this host. Figures:

- raw: a sandbox (pause image, on a bridge network of its own subnet) plus an
  app container joined to its network namespace, created and started straight
  through the Docker API, one pod at a time;
- kubelet, one at a time: create the Pod through the API, wait for Running
  through a watch, then the next;
- kubelet, burst: all pods created at once, each one's create -> Running;
- the kubelet's resident memory with the pods running, and its CPU at rest.

Nothing is asserted; it prints a table. ``python -m bench.kubelet [--pods N]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import docker
from rich.console import Console
from rich.table import Table

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.runtime.images import busybox_image, ensure_busybox_image, ensure_pause_image, pause_image
from tests.support.apiserver import APIServerProcess
from tests.support.etcd import EtcdCluster
from tests.support.kubelet import KubeletProcess

SUBNET_RAW = "10.231.81.0/24"
SUBNET_PODS = "10.231.80.0/24"
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


class RawDocker:
    """The baseline: a pod's worth of containers straight through the Docker API."""

    def __init__(self, tag: str) -> None:
        self.api = docker.APIClient(version="auto")
        self.tag = tag
        self.net = f"kubelite-bench-raw-{tag}"
        self.made: list[str] = []
        self.api.create_network(self.net, driver="bridge", ipam=docker.types.IPAMConfig(
            pool_configs=[docker.types.IPAMPool(subnet=SUBNET_RAW, gateway=SUBNET_RAW.replace("0/24", "1"))]))

    def pod(self, i: int) -> float:
        api, net = self.api, self.net
        t0 = time.perf_counter()
        sb = api.create_container(pause_image(), name=f"bench-raw-{self.tag}-sb-{i}",
                                  labels={"kubelite-bench": self.tag},
                                  host_config=api.create_host_config(network_mode=net, ipc_mode="shareable"),
                                  networking_config=api.create_networking_config({net: api.create_endpoint_config()}))
        self.made.append(sb["Id"])
        api.start(sb["Id"])
        app = api.create_container(busybox_image(), ["sleep", "3600"], name=f"bench-raw-{self.tag}-app-{i}",
                                   labels={"kubelite-bench": self.tag},
                                   host_config=api.create_host_config(network_mode=f"container:{sb['Id']}",
                                                                      ipc_mode=f"container:{sb['Id']}"))
        self.made.append(app["Id"])
        api.start(app["Id"])
        return time.perf_counter() - t0

    def burst(self, n: int, workers: int = 8) -> list[float]:
        """n pods at once from ``workers`` threads (the kubelet's Docker pool size): each
        pod's time from the start of the burst to its app container running."""
        from concurrent.futures import ThreadPoolExecutor

        t0 = time.perf_counter()

        def one(i: int) -> float:
            self.pod(1000 + i)
            return time.perf_counter() - t0

        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(one, range(n)))

    def close(self) -> None:
        for cid in reversed(self.made):
            self.api.remove_container(cid, force=True)
        self.api.remove_network(self.net)
        self.api.close()


def pod(name: str, ns: str, node: str) -> core.Pod:
    p = core.Pod(api_version="v1", kind="Pod")
    p.metadata.name, p.metadata.namespace = name, ns
    p.spec.node_name = node
    p.spec.termination_grace_period_seconds = 0
    p.spec.containers.add(name="app", image=busybox_image(), command=["sleep", "3600"])
    return p


async def watch_running(client: Client, ns: str, rv: str, names: set[str], done: dict[str, float],
                        arrived: asyncio.Event) -> None:
    async with contextlib.aclosing(client.watch(core.Pod, ns, resource_version=rv)) as events:
        async for ev in events:
            name = ev.object.metadata.name
            if ev.type in ("ADDED", "MODIFIED") and ev.object.status.phase == "Running" and name not in done:
                done[name] = time.perf_counter()
                arrived.set()
                if set(done) >= names:
                    return


async def kubelet_latency(client: Client, ns: str, node: str, prefix: str, n: int, burst: bool,
                          raw: RawDocker | None = None, raw_times: list[float] | None = None) -> list[float]:
    """create -> Running through a watch; one at a time (a raw Docker pod before each,
    when ``raw`` is given, so both see the same machine load) or all at once."""
    created: dict[str, float] = {}
    done: dict[str, float] = {}
    names = {f"{prefix}-{i}" for i in range(n)}
    rv = (await client.list(core.Pod, ns)).resource_version
    arrived = asyncio.Event()
    watcher = asyncio.create_task(watch_running(client, ns, rv, names, done, arrived), name="bench-watch")
    try:
        if burst:
            async def create(name: str) -> None:
                created[name] = time.perf_counter()
                await client.create(pod(name, ns, node))
            await asyncio.gather(*(create(name) for name in sorted(names)))
        else:
            for i in range(n):
                if raw is not None and raw_times is not None:
                    raw_times.append(await asyncio.to_thread(raw.pod, i))
                name = f"{prefix}-{i}"
                created[name] = time.perf_counter()
                await client.create(pod(name, ns, node))
                while name not in done:
                    arrived.clear()
                    await arrived.wait()
        await asyncio.wait_for(watcher, 300)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    return [done[k] - created[k] for k in sorted(names)]


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench(n: int, idle: float) -> None:
    console = Console()
    tag = secrets.token_hex(3)
    api = docker.APIClient(version="auto")
    ensure_pause_image(api)
    ensure_busybox_image(api)
    raw_docker = RawDocker(tag)
    raw: list[float] = []
    base = Path(tempfile.mkdtemp(prefix="kubelite-bench-", dir=SCRATCH))
    node = f"bench-{tag}"
    network = f"kubelite-{node}"
    try:
        with EtcdCluster(base / "etcd", size=3) as etcd, \
                APIServerProcess(etcd.endpoints, base / "apiserver.log") as apiserver, \
                KubeletProcess(apiserver.server, node, base / "kubelet.log", base / "root", pod_cidr=SUBNET_PODS,
                               extra_args=[f"--pod-network-name={network}"]) as kubelet:
            async with Client(apiserver.address) as client:
                ns = core.Namespace(api_version="v1", kind="Namespace")
                ns.metadata.name = "bench"
                await client.create(ns)
                # One warm-up pod: the pause image check and the network are first-use costs.
                await kubelet_latency(client, "bench", node, "warm", 1, burst=False)
                seq = await kubelet_latency(client, "bench", node, "seq", n, burst=False, raw=raw_docker,
                                            raw_times=raw)
                burst = await kubelet_latency(client, "bench", node, "burst", n, burst=True)
                raw_burst = await asyncio.to_thread(raw_docker.burst, n)
                assert kubelet.proc is not None
                pid = kubelet.proc.pid
                rss = proc_rss_mb(pid)
                await asyncio.sleep(5)  # let the last status writes settle
                c0, t0 = proc_cpu_seconds(pid), time.monotonic()
                await asyncio.sleep(idle)
                cpu = (proc_cpu_seconds(pid) - c0) / (time.monotonic() - t0) * 100
                running = 2 * n + 1  # warm-up, sequential and burst pods
    finally:
        raw_docker.close()
        for c in api.containers(all=True, filters={"label": [f"io.kubelite.node={node}"]}):
            api.remove_container(c["Id"], force=True)
        for net in api.networks(names=[network]):
            if net["Name"] == network:
                api.remove_network(net["Id"])
        api.close()
        if os.environ.get("KUBELITE_BENCH_KEEP"):
            console.print(f"logs kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    raw_p50 = pct(raw, 50)
    table = Table(title=f"Pod startup on one node ({n} pods; raw Docker interleaved with the kubelet's, same run)")
    for col in ("measure", "p50 s", "p99 s", "p50 / raw p50"):
        table.add_column(col, justify="right" if col != "measure" else "left")
    table.add_row("raw Docker: sandbox + app create/start", f"{raw_p50:.3f}", f"{pct(raw, 99):.3f}", "1.00")
    table.add_row("kubelet, one at a time: create -> Running (watch)", f"{pct(seq, 50):.3f}", f"{pct(seq, 99):.3f}",
                  f"{pct(seq, 50) / raw_p50:.2f}")
    table.add_row(f"kubelet, burst of {n}: create -> Running (watch)", f"{pct(burst, 50):.3f}",
                  f"{pct(burst, 99):.3f}", f"{pct(burst, 50) / raw_p50:.2f}")
    table.add_row(f"raw Docker, burst of {n} from 8 threads", f"{pct(raw_burst, 50):.3f}",
                  f"{pct(raw_burst, 99):.3f}", f"{pct(raw_burst, 50) / raw_p50:.2f}")
    console.print(table)
    console.print(f"kubelet RSS with {running} pods running: {rss:.1f} MB; CPU at rest over {idle:.0f} s: "
                  f"{cpu:.2f}% of a core")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=30)
    parser.add_argument("--idle", type=float, default=20.0)
    args = parser.parse_args()
    asyncio.run(bench(args.pods, args.idle))


if __name__ == "__main__":
    main()
