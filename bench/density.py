"""The density benchmark, in the shape of Kubernetes' load test, with hollow nodes.

Hollow nodes are simulated here, many per process, over a few processes (one
gRPC channel each): every node registers a Node and a Lease in
kube-node-lease, renews the Lease every 10 s, and watches the pods of its own
``spec.nodeName``, as a kubelet does. When a pod appears on its watch (the
binding), the node reports it Running through the status subresource. The
driver plays the scheduler: it creates ``pods_per_node`` pods per node and
binds each to its node.

What it reports: the client-side latency of each verb (p50/p99), the lease
renewals that came late (a gap above 12.5 s between two acknowledged
renewals; 40 s would make a real node NotReady), the delay from a binding's
acknowledgement to its delivery to the node's watch, and the API server's
and etcd's resident memory at their peak.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing as mp
import os
import queue
import random
import time
import urllib.request
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from google.protobuf import timestamp_pb2

from kubelite.api.coordination.v1 import generated_pb2 as coordination
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.client.watch import retry_watch
from kubelite.machinery.errors import StatusError

M = TypeVar("M")

LEASE_RENEW_INTERVAL = 10.0  # the kubelet's
RETRIES = 5  # attempts of one write before the benchmark counts it failed
LATE_RENEWAL = 12.5  # a gap this long between two acknowledged renewals counts as late
NODE_LEASE_NAMESPACE = "kube-node-lease"
# Several channels per process would each be a TCP connection of their own;
# a kubelet has one, so a process of many hollow nodes keeps one too.
DISTINCT_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)


@dataclass
class NodeReport:
    """What one hollow-node process measured."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # verb -> seconds
    renew_gaps: list[float] = field(default_factory=list)  # seconds between acknowledged renewals
    received: dict[str, float] = field(default_factory=dict)  # pod name -> time.time() its ADDED arrived
    running: int = 0
    errors: list[str] = field(default_factory=list)


def now_ts() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    return ts


def node_object(name: str) -> core.Node:
    node = core.Node(api_version="v1", kind="Node")
    node.metadata.name = name
    node.metadata.labels["kubernetes.io/hostname"] = name
    node.metadata.labels["kubelite.io/hollow"] = "true"
    node.status.capacity["cpu"] = "8"
    node.status.capacity["memory"] = "32Gi"
    node.status.capacity["pods"] = "110"
    node.status.allocatable.update(node.status.capacity)
    return node


def lease_object(name: str) -> coordination.Lease:
    lease = coordination.Lease(api_version="coordination.k8s.io/v1", kind="Lease")
    lease.metadata.name = name
    lease.metadata.namespace = NODE_LEASE_NAMESPACE
    lease.spec.holder_identity = name
    lease.spec.lease_duration_seconds = 40
    lease.spec.renew_time.CopyFrom(now_ts())
    return lease


def bench_pod(name: str, ns: str) -> core.Pod:
    p = core.Pod(api_version="v1", kind="Pod")
    p.metadata.name = name
    p.metadata.namespace = ns
    p.metadata.labels["app"] = "density"
    c = p.spec.containers.add(name="app", image="kubelite/pause:local")
    c.resources.requests["cpu"] = "10m"
    c.resources.requests["memory"] = "16Mi"
    return p


async def timed(report: NodeReport, verb: str, call: Any) -> Any:
    t0 = time.perf_counter()
    result = await call
    report.latencies[verb].append(time.perf_counter() - t0)
    return result


async def retried(report: NodeReport, verb: str, call: Callable[[], Awaitable[M]]) -> M | None:
    """A create retried while the server cannot answer; None when an earlier attempt had landed."""
    for attempt in range(RETRIES):
        try:
            return cast(M, await timed(report, verb, call()))
        except StatusError as exc:
            if exc.reason == "AlreadyExists":
                return None
            report.errors.append(f"{verb}: {exc.reason}")
            if attempt == RETRIES - 1:
                raise
            await asyncio.sleep(0.5)
    return None


class HollowNode:
    """A kubelet without containers: a Node, a Lease renewed every 10 s, a pod watch that reports Running."""

    def __init__(self, client: Client, name: str, ns: str, report: NodeReport, expect: int) -> None:
        self.client = client
        self.name = name
        self.ns = ns
        self.report = report
        self.expect = expect
        self.running = 0
        self.lease: coordination.Lease | None = None

    async def register(self) -> str:
        await retried(self.report, "create node", lambda: self.client.create(node_object(self.name)))
        self.lease = await retried(self.report, "create lease", lambda: self.client.create(lease_object(self.name)))
        if self.lease is None:  # an earlier attempt landed: read it back
            self.lease = await self.client.get(coordination.Lease, self.name, NODE_LEASE_NAMESPACE)
        # As a kubelet's reflector does: the first list from the watch cache (resourceVersion "0").
        pods = await self.client.list(core.Pod, self.ns, field_selector=f"spec.nodeName={self.name}",
                                      resource_version="0")
        return pods.resource_version

    async def renew_leases(self, stop: asyncio.Event) -> None:
        """Renews every LEASE_RENEW_INTERVAL from the last success, as the kubelet does.

        Nodes registered together would renew together forever: a random first
        wait spreads them over the interval, as kubelets started at different
        times are.
        """
        last_ack = time.monotonic()
        wait = random.uniform(0, LEASE_RENEW_INTERVAL)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            wait = LEASE_RENEW_INTERVAL
            if stop.is_set():
                return
            assert self.lease is not None
            self.lease.spec.renew_time.CopyFrom(now_ts())
            try:
                self.lease = await timed(self.report, "update lease", self.client.update(self.lease))
            except Exception as exc:  # a conflict or a timeout is a late renewal, not the end of the node
                self.report.errors.append(f"lease {self.name}: {exc}")
                continue
            ack = time.monotonic()
            self.report.renew_gaps.append(ack - last_ack)
            last_ack = ack

    async def run_pods(self, rv: str, all_running: asyncio.Event) -> None:
        async for ev in retry_watch(self.client, core.Pod, self.ns, resource_version=rv,
                                    field_selector=f"spec.nodeName={self.name}"):
            if ev.type != "ADDED":
                continue
            self.report.received[ev.object.metadata.name] = time.time()
            pod = ev.object
            pod.status.phase = "Running"
            pod.status.host_ip = "10.0.0.1"
            pod.status.conditions.add(type="Ready", status="True")
            for attempt in range(RETRIES):
                try:
                    await timed(self.report, "update pod status", self.client.update_status(pod))
                    break
                except StatusError as exc:  # an overloaded machine: note it and try again, as a kubelet would
                    self.report.errors.append(f"status {pod.metadata.name}: {exc.reason}")
                    if exc.reason == "Conflict" or attempt == RETRIES - 1:
                        break
            self.running += 1
            self.report.running += 1
            if self.running == self.expect:
                all_running.set()
                return


def hollow_node_process(address: str, names: list[str], ns: str, expect: int, out: Any, stop: Any) -> None:
    """Entry point of one process of hollow nodes; talks to the driver through ``out`` (a queue)."""

    async def main() -> None:
        client = Client(address, options=DISTINCT_CONNECTION)
        report = NodeReport()
        nodes = [HollowNode(client, n, ns, report, expect) for n in names]
        sem = asyncio.Semaphore(32)

        async def register(node: HollowNode) -> str:
            async with sem:
                return await node.register()

        rvs = await asyncio.gather(*(register(n) for n in nodes))
        stop_leases = asyncio.Event()
        done = [asyncio.Event() for _ in nodes]
        tasks = [asyncio.create_task(n.renew_leases(stop_leases), name=f"lease:{n.name}") for n in nodes]
        tasks += [asyncio.create_task(n.run_pods(rv, d), name=f"pods:{n.name}")
                  for n, rv, d in zip(nodes, rvs, done, strict=True)]
        out.put(("ready", os.getpid()))
        loop = asyncio.get_running_loop()
        # Tell the driver once every pod of these nodes is Running; it says when to stop.
        all_running = asyncio.ensure_future(asyncio.gather(*(d.wait() for d in done)))
        stopped = loop.run_in_executor(None, stop.wait)
        await asyncio.wait([all_running, stopped], return_when=asyncio.FIRST_COMPLETED)
        if all_running.done():
            out.put(("running", report.running))
        else:
            all_running.cancel()
        await stopped
        stop_leases.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
        out.put(("report", dict(report.latencies), report.renew_gaps, report.received, report.running,
                 report.errors[:20]))

    asyncio.run(main())


async def from_children(q: Any, procs: list[Any], timeout: float) -> Any:
    """The next message from the hollow-node processes; fails as soon as one of them has died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await asyncio.to_thread(q.get, True, 1.0)
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"a hollow-node process exited with {dead[0].exitcode}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"no word from the hollow-node processes in {timeout:g} s") from None


@contextlib.contextmanager
def hollow_nodes(procs: list[Any], stop: Any) -> Iterator[None]:
    """Starts the hollow-node processes; however the run ends, stops them (by their own PIDs)."""
    for p in procs:
        p.start()
    try:
        yield
    finally:
        stop.set()
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.terminate()
                p.join(10)


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class PeakRSS:
    """Samples the resident memory of a set of processes once a second; keeps the peak of their sum."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, sum(rss_mb(p) for p in self.pids))
            await asyncio.sleep(1.0)

    def __enter__(self) -> PeakRSS:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="rss-sampler")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        self.peak = max(self.peak, sum(rss_mb(p) for p in self.pids))


Histogram = dict[tuple[str, str], dict[float, float]]  # (verb, resource) -> cumulative count by bucket bound


def scrape_latency(http_port: int) -> Histogram:
    """The API server's apiserver_request_duration_seconds buckets, by verb and resource."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: Histogram = defaultdict(dict)
    for line in text.splitlines():
        if not line.startswith("apiserver_request_duration_seconds_bucket{"):
            continue
        labels, value = line[len("apiserver_request_duration_seconds_bucket{"):].rsplit("} ", 1)
        fields = dict(part.split("=", 1) for part in labels.split(","))
        le = fields["le"].strip('"')
        out[(fields["verb"].strip('"'), fields["resource"].strip('"'))][float(le)] = float(value)
    return out


def server_percentiles(before: Histogram, after: Histogram, p: float) -> dict[tuple[str, str], tuple[float, int]]:
    """For each (verb, resource): the bucket bound holding the p-th percentile of the calls between two
    scrapes (an upper bound: the histogram has no finer grain), and the number of calls."""
    out: dict[tuple[str, str], tuple[float, int]] = {}
    for series, buckets in after.items():
        old = before.get(series, {})
        delta = {le: n - old.get(le, 0.0) for le, n in buckets.items()}
        total = delta.get(float("inf"), 0.0)
        if total <= 0:
            continue
        bound = next(le for le in sorted(delta) if delta[le] >= total * p / 100)
        out[series] = (bound, int(total))
    return out


@dataclass
class DensityResult:
    nodes: int
    pods: int
    seconds: float
    latencies: dict[str, list[float]]
    renew_gaps: list[float]
    delivery_ms: list[float]  # bind acknowledged -> pod on the node's watch
    running: int
    apiserver_rss_mb: float
    etcd_rss_mb: float
    errors: list[str]
    # Server side, from the API server's latency histogram: (verb, resource) -> (p50 bound, p99 bound, calls).
    server_latency: dict[tuple[str, str], tuple[float, float, int]] = field(default_factory=dict)


async def run_density(address: str, http_port: int, apiserver_pid: int, etcd_pids: list[int], *, nodes: int,
                      pods_per_node: int, processes: int, concurrency: int = 32) -> DensityResult:
    ns = "density"
    client = Client(address)
    namespace = core.Namespace(api_version="v1", kind="Namespace")
    namespace.metadata.name = ns
    await client.create(namespace)
    names = [f"hollow-{i:04d}" for i in range(nodes)]
    ctx = mp.get_context("spawn")  # gRPC's state does not survive a fork
    q: Any = ctx.Queue()
    stop: Any = ctx.Event()
    procs = [ctx.Process(target=hollow_node_process, args=(address, names[i::processes], ns, pods_per_node, q, stop))
             for i in range(processes)]
    latencies: dict[str, list[float]] = defaultdict(list)
    bound_at: dict[str, float] = {}
    errors: list[str] = []
    histogram_before = await asyncio.to_thread(scrape_latency, http_port)
    with PeakRSS([apiserver_pid]) as api_rss, PeakRSS(etcd_pids) as etcd_rss, hollow_nodes(procs, stop):
        for _ in procs:
            kind, *_ = await from_children(q, procs, 600)
            assert kind == "ready"
        started = time.perf_counter()
        todo = iter(range(nodes * pods_per_node))

        async def attempt(verb: str, call: Callable[[], Awaitable[object]], done_reason: str) -> None:
            """One write, retried when the server could not answer; ``done_reason`` means an earlier try landed."""
            for n in range(RETRIES):
                t0 = time.perf_counter()
                try:
                    await call()
                    latencies[verb].append(time.perf_counter() - t0)
                    return
                except StatusError as exc:
                    if exc.reason == done_reason:
                        return
                    errors.append(f"{verb}: {exc.reason}: {exc.message[:120]}")
                    if n == RETRIES - 1:
                        raise

        async def scheduler() -> None:
            for i in todo:
                name, node = f"pod-{i:06d}", names[i % nodes]
                await attempt("create pod", functools.partial(client.create, bench_pod(name, ns)), "AlreadyExists")
                await attempt("bind pod", functools.partial(client.bind, ns, name, node), "Conflict")
                bound_at[name] = time.time()

        await asyncio.gather(*(scheduler() for _ in range(concurrency)))
        # Every pod bound: wait until each process of nodes reports all its pods Running.
        try:
            for _ in procs:
                await from_children(q, procs, 300)
        except TimeoutError as exc:
            errors.append(f"not every pod got Running: {exc}")
        seconds = time.perf_counter() - started
        stop.set()
        renew_gaps: list[float] = []
        received: dict[str, float] = {}
        total_running = 0
        reports = 0
        while reports < len(procs):
            kind, *body = await from_children(q, procs, 120)
            if kind != "report":
                continue  # a late "running"
            reports += 1
            lat, gaps, got, running, errs = body
            for verb, values in lat.items():
                latencies[verb].extend(values)
            renew_gaps += gaps
            received.update(got)
            total_running += running
            errors += errs
    # A cluster-wide list at full size, from the watch cache and consistent (SLO p99 <= 30 s).
    for rv, verb in (("0", "list all pods (rv=0)"), ("", "list all pods (consistent)")):
        t0 = time.perf_counter()
        await client.list(core.Pod, ns, resource_version=rv)
        latencies[verb] = [time.perf_counter() - t0]
    await client.close()
    histogram_after = await asyncio.to_thread(scrape_latency, http_port)
    p50 = server_percentiles(histogram_before, histogram_after, 50)
    p99 = server_percentiles(histogram_before, histogram_after, 99)
    server = {k: (p50[k][0], p99[k][0], p99[k][1]) for k in p99}
    delivery = [(received[n] - bound_at[n]) * 1000 for n in received if n in bound_at]
    return DensityResult(nodes, nodes * pods_per_node, seconds, dict(latencies), renew_gaps, delivery,
                         total_running, api_rss.peak, etcd_rss.peak, errors, server)
