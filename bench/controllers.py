"""Controller manager figures: a Deployment to availability and through a rolling update.

Beside each controller-driven figure stands a baseline from the same run on
the same cluster: the same number of pods created, bound and reported ready
by a client directly, with no controller in the loop. The ratio is the
controllers' own overhead. Pods are run by tests/support/podstatus.py
(stand-in kubelets: bind round robin over N nodes, report Running/Ready),
in the benchmark process for both the baseline and the controller runs.
Also printed: the controller manager's resident memory with all the pods in
its caches, its CPU over a quiet interval, and the time from a node's last
lease renewal to its pods running on another node, beside the grace period
and toleration that account for most of it. Nothing here asserts a time.

    python -m bench.controllers [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
import time
from datetime import UTC
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.api.coordination.v1 import generated_pb2 as coordination
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from tests.support.apiserver import APIServerProcess
from tests.support.controller_manager import ControllerManagerProcess
from tests.support.etcd import EtcdCluster
from tests.support.podstatus import PodStatusWriter


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _namespace(client: Client, prefix: str) -> str:
    name = f"{prefix}-{secrets.token_hex(3)}"
    ns = core.Namespace(api_version="v1", kind="Namespace")
    ns.metadata.name = name
    await client.create(ns)
    return name


async def _wait(check: object, timeout: float = 900.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step did not finish")
        await asyncio.sleep(0.2)


def _pod(ns: str, i: int) -> core.Pod:
    pod = core.Pod(api_version="v1", kind="Pod")
    pod.metadata.name = f"direct-{i}"
    pod.metadata.namespace = ns
    pod.metadata.labels["app"] = "direct"
    pod.spec.containers.add(name="web", image="nginx:local")
    return pod


def _deployment(ns: str, replicas: int) -> apps.Deployment:
    d = apps.Deployment(api_version="apps/v1", kind="Deployment")
    d.metadata.name = "bench"
    d.metadata.namespace = ns
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = "bench"
    d.spec.template.metadata.labels["app"] = "bench"
    d.spec.template.spec.containers.add(name="web", image="nginx:1")
    d.spec.strategy.rolling_update.max_surge = "25%"
    d.spec.strategy.rolling_update.max_unavailable = "0"
    return d


async def _ready_count(client: Client, ns: str, selector: str) -> int:
    pods = (await client.list(core.Pod, ns, label_selector=selector)).items
    return sum(1 for p in pods if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)
               and not p.metadata.HasField("deletion_timestamp"))


async def bench(quick: bool) -> None:
    replicas, nodes = (200, 20) if quick else (1000, 100)
    memory_pods = 0 if quick else 10_000
    rss_many = 0.0
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="kubelite-bench-cm-") as tmp, EtcdCluster(Path(tmp)) as cluster:
        api = APIServerProcess(cluster.endpoints, Path(tmp) / "apiserver.log")
        api.start()
        cm = ControllerManagerProcess(api.server, Path(tmp) / "controller-manager.log")
        try:
            async with Client(api.address) as client:
                # Baseline: the same pods, no controller in the loop.
                ns = await _namespace(client, "baseline")
                names = [f"{ns}-n{i}" for i in range(nodes)]
                async with PodStatusWriter(client, ns, names):
                    t0 = time.perf_counter()
                    for start in range(0, replicas, 50):
                        await asyncio.gather(*(client.create(_pod(ns, i))
                                               for i in range(start, min(replicas, start + 50))))
                    await _wait(lambda: _counted(client, ns, "app=direct", replicas))
                    baseline = time.perf_counter() - t0
                    # Their nodes go with the writer: remove the pods too, or the pod GC would
                    # (rightly) delete them in the middle of the figures below.
                    for start in range(0, replicas, 100):
                        await asyncio.gather(*(client.delete(core.Pod, f"direct-{i}", ns, grace_period_seconds=0)
                                               for i in range(start, min(replicas, start + 100))))

                cm.start()
                assert cm.proc is not None
                ns = await _namespace(client, "deploy")
                names = [f"{ns}-n{i}" for i in range(nodes)]
                async with PodStatusWriter(client, ns, names):
                    t0 = time.perf_counter()
                    await client.create(_deployment(ns, replicas))
                    await _wait(lambda: _available(client, ns, replicas))
                    to_available = time.perf_counter() - t0

                    d = await client.get(apps.Deployment, "bench", ns)
                    d.spec.template.spec.containers[0].image = "nginx:2"
                    t0 = time.perf_counter()
                    await client.update(d)
                    await _wait(lambda: _rolled(client, ns, replicas))
                    rollout = time.perf_counter() - t0

                    await asyncio.sleep(20)  # let the last old pods' deletions and their echoes settle
                    rss = _rss_mb(cm.proc.pid)
                    cpu0, wall0 = _cpu_seconds(cm.proc.pid), time.monotonic()
                    await asyncio.sleep(10)
                    idle_cpu = (_cpu_seconds(cm.proc.pid) - cpu0) / (time.monotonic() - wall0) * 100

                # Memory with many pods: plain pods in a namespace of their own, all cached.
                if memory_pods > replicas:
                    ns_many = await _namespace(client, "many")
                    for start in range(0, memory_pods - replicas, 100):
                        await asyncio.gather(*(client.create(_pod(ns_many, i)) for i in
                                               range(start, min(memory_pods - replicas, start + 100))))
                    await asyncio.sleep(10)  # the informers catch up
                    rss_many = _rss_mb(cm.proc.pid)
                # Node failure: grace period and toleration shortened so the run stays short;
                # what matters is the time beyond them.
                grace, toleration = 5, 5
                cm.stop()
                cm.extra_args = [f"--node-monitor-grace-period={grace}s", "--node-monitor-period=1s"]
                cm.start()
                ns = await _namespace(client, "failure")
                dead, alive = f"{ns}-dead", f"{ns}-alive"
                async with PodStatusWriter(client, ns, [dead, alive], renew_interval=1.0) as writer:
                    writer.nodes[:] = [dead]
                    await client.create(_tolerating_rs(ns, 20, toleration))
                    await _wait(lambda: _ready_on(client, ns, dead, 20))
                    writer.nodes[:] = [alive]
                    writer.stop_renewing(dead)
                    lease = await client.get(coordination.Lease, dead, "kube-node-lease")
                    last_renewal = lease.spec.renew_time.ToDatetime().replace(tzinfo=UTC).timestamp()
                    await _wait(lambda: _ready_on(client, ns, alive, 20))
                    failover = time.time() - last_renewal
                    await client.delete(apps.ReplicaSet, "failover", ns)
        finally:
            cm.stop()
            api.stop()
    rows.append((f"{replicas} pods create+bind+ready, no controller", f"{baseline:.1f} s", "1.00"))
    rows.append((f"Deployment of {replicas} over {nodes} nodes to all available", f"{to_available:.1f} s",
                 f"{to_available / baseline:.2f}"))
    rows.append(("rolling update of it (maxSurge 25%, maxUnavailable 0)", f"{rollout:.1f} s",
                 f"{rollout / baseline:.2f}"))
    rows.append((f"last lease renewal -> 20 pods running elsewhere (grace {grace}s + toleration {toleration}s)",
                 f"{failover:.1f} s", f"+{failover - grace - toleration:.1f} s"))
    rows.append((f"controller manager RSS with {replicas} pods cached", f"{rss:.0f} MB", ""))
    if memory_pods > replicas:
        rows.append((f"controller manager RSS with {memory_pods} pods cached", f"{rss_many:.0f} MB", ""))
    rows.append(("controller manager CPU at rest (10 s)", f"{idle_cpu:.2f} % of a core", ""))
    table = Table(title="kubelite-controller-manager")
    for col in ("measure", "value", "x baseline"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def _tolerating_rs(ns: str, replicas: int, toleration: int) -> apps.ReplicaSet:
    rs = apps.ReplicaSet(api_version="apps/v1", kind="ReplicaSet")
    rs.metadata.name = "failover"
    rs.metadata.namespace = ns
    rs.spec.replicas = replicas
    rs.spec.selector.match_labels["app"] = "failover"
    rs.spec.template.metadata.labels["app"] = "failover"
    rs.spec.template.spec.containers.add(name="web", image="nginx:local")
    rs.spec.template.spec.tolerations.add(key="node.kubernetes.io/unreachable", operator="Exists",
                                          effect="NoExecute", toleration_seconds=toleration)
    return rs


async def _ready_on(client: Client, ns: str, node: str, n: int) -> bool:
    pods = (await client.list(core.Pod, ns, label_selector="app=failover")).items
    ready = [p for p in pods if p.spec.node_name == node and not p.metadata.HasField("deletion_timestamp")
             and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)]
    return len(ready) >= n


async def _counted(client: Client, ns: str, selector: str, n: int) -> bool:
    return await _ready_count(client, ns, selector) >= n


async def _available(client: Client, ns: str, replicas: int) -> bool:
    d = await client.get(apps.Deployment, "bench", ns)
    return d.status.available_replicas == replicas and d.status.updated_replicas == replicas


async def _rolled(client: Client, ns: str, replicas: int) -> bool:
    d = await client.get(apps.Deployment, "bench", ns)
    s = d.status
    return bool(s.observed_generation == d.metadata.generation and s.updated_replicas == replicas
                and s.available_replicas == replicas and s.replicas == replicas)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200 replicas over 20 nodes instead of 1000 over 100")
    args = parser.parse_args()
    asyncio.run(bench(args.quick))


if __name__ == "__main__":
    main()
