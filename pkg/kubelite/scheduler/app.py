"""kubelite-scheduler's run(): informers, the scheduling loop, bindings through the API, HTTP.

The entry point (cmd/kubelite-scheduler) parses flags into ``SchedulerOptions``;
everything from there on is here, so that tests and benchmarks can run a
scheduler in-process with the same wiring.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from google.protobuf import timestamp_pb2

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.policy.v1 import generated_pb2 as policy
from kubelite.client.client import Client
from kubelite.client.events import EventRecorder
from kubelite.client.informer import Informer
from kubelite.client.kubeconfig import load_kubeconfig
from kubelite.client.leaderelection import ClientLeaseStore, LeaderElectionConfig, LeaderElector
from kubelite.machinery import schedulingreasons
from kubelite.machinery.errors import StatusError
from kubelite.machinery.health import health_app
from kubelite.machinery.process import freeze_heap_when, pause_gc
from kubelite.scheduler.config import SchedulerConfiguration, default_config, load_config
from kubelite.scheduler.scheduler import DEFAULT_MAX_IN_FLIGHT_BINDINGS, Scheduler

log = logging.getLogger("kubelite-scheduler")

DEFAULT_PORT = 10259
# kube-scheduler's Lease in kube-system.
LEASE_NAME = "kube-scheduler"
# Bindings per BindMany call at most.
DEFAULT_MAX_BATCH = 256
# Events waiting to be written; beyond this they are dropped (best effort, as in Kubernetes).
EVENT_QUEUE = 10_000


@dataclass(frozen=True)
class SchedulerOptions:
    kubeconfig: str = ""
    master: str = ""
    config_file: str = ""
    leader_elect: bool = True
    # The --leader-elect-* flags; `leader_elect` above (or the config file's leaderElection) decides whether.
    leader_election: LeaderElectionConfig = field(default_factory=LeaderElectionConfig)
    bind_address: str = "0.0.0.0"
    secure_port: int = DEFAULT_PORT
    max_in_flight_bindings: int = DEFAULT_MAX_IN_FLIGHT_BINDINGS

    def __post_init__(self) -> None:
        if not 0 <= self.secure_port <= 65535:
            raise ValueError(f"--secure-port: Invalid value: {self.secure_port}: must be between 0 and 65535")
        if self.max_in_flight_bindings < 1:
            raise ValueError("--max-in-flight-bindings: must be at least 1")

    def load(self) -> SchedulerConfiguration:
        """The configuration file, validated (ConfigError names the field), or the defaults."""
        return load_config(self.config_file) if self.config_file else default_config()


# -- API adapters -------------------------------------------------------------------------------------------------


class APIBinder:
    """Bindings in batches: those requested in the same turn of the event loop travel in one BindMany call.

    The scheduler starts each binding in its own task as soon as it decides;
    the first binding of a turn waits one turn for the others, then sends them
    all, and each caller gets its own answer. Measured with the scheduler
    benchmark, one gRPC call per binding cost the scheduler and the API server
    more CPU than the bindings themselves; a batch costs about one call.
    """

    def __init__(self, client: Client, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self._client = client
        self._max_batch = max_batch
        self._open: list[tuple[core.Pod, str, asyncio.Future[None]]] | None = None

    async def bind(self, pod: core.Pod, node_name: str) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch = self._open
        leader = batch is None
        if batch is None:
            batch = self._open = []
        batch.append((pod, node_name, fut))
        if len(batch) >= self._max_batch:
            self._open = None  # full: the next binding starts another batch
        if leader:
            await self._send(batch)
        await fut

    async def _send(self, batch: list[tuple[core.Pod, str, asyncio.Future[None]]]) -> None:
        try:
            await asyncio.sleep(0)  # the bindings started in this turn join the batch
            if self._open is batch:
                self._open = None
            results = await self._client.bind_many(
                [(p.metadata.namespace, p.metadata.name, node, p.metadata.uid) for p, node, _ in batch])
        except StatusError as exc:
            results = [exc] * len(batch)
        except BaseException:
            for _, _, fut in batch:
                if not fut.done():
                    fut.cancel()
            raise
        for (_, _, fut), error in zip(batch, results, strict=True):
            if fut.done():
                continue
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)


class APIVictimDeleter:
    """Kubernetes' way: say why on the victim (DisruptionTarget), then delete it with its own grace period.

    Not an eviction: the eviction API would refuse victims their budget protects, while preemption has
    already weighed the budgets and decided that this pod must go.
    """

    def __init__(self, client: Client) -> None:
        self._client = client

    async def delete_victim(self, victim: core.Pod, message: str) -> None:
        try:
            await self._mark(victim, message)
        except StatusError as exc:
            if exc.reason == "NotFound":
                return
            # The condition is information; the deletion is what frees the room.
            log.warning("marking preemption victim %s/%s: %s: %s", victim.metadata.namespace, victim.metadata.name,
                        exc.reason, exc.message)
        # The uid precondition: never delete a namesake created after the decision.
        await self._client.delete(core.Pod, victim.metadata.name, victim.metadata.namespace, uid=victim.metadata.uid)

    async def _mark(self, victim: core.Pod, message: str) -> None:
        current = victim
        for _ in range(3):
            if current.metadata.uid != victim.metadata.uid:
                return
            updated = core.Pod()
            updated.CopyFrom(current)
            _set_disruption_target(updated.status, message)
            try:
                await self._client.update_status(updated)
                return
            except StatusError as exc:
                if exc.reason != "Conflict":
                    raise
            current = await self._client.get(core.Pod, victim.metadata.name, victim.metadata.namespace)


def _set_disruption_target(status: core.PodStatus, message: str) -> None:
    for cond in status.conditions:
        if cond.type == "DisruptionTarget":
            break
    else:
        cond = status.conditions.add(type="DisruptionTarget")
    if cond.status != "True":
        cond.last_transition_time.CopyFrom(timestamp_pb2.Timestamp(seconds=int(time.time())))
    cond.status = "True"
    cond.reason = "PreemptionByScheduler"
    cond.message = message


class APIConditionWriter:
    """Writes PodScheduled=False/Unschedulable with the scheduler's message, once per distinct message."""

    def __init__(self, client: Client, latest: Callable[[str], core.Pod | None]) -> None:
        self._client = client
        self._latest = latest

    async def set_unschedulable(self, pod: core.Pod, message: str, nominated_node: str = "",
                                node_reasons: Sequence[tuple[str, str, str]] = ()) -> None:
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        current = self._latest(key) or pod
        for _ in range(3):
            if current.spec.node_name or current.metadata.uid != pod.metadata.uid:
                return  # bound or replaced meanwhile
            if any(cond.type == "PodScheduled" and cond.status == "False" and cond.reason == "Unschedulable"
                   and cond.message == message and current.status.nominated_node_name == nominated_node
                   for cond in current.status.conditions):
                break
            updated = core.Pod()
            updated.CopyFrom(current)
            _set_pod_scheduled_false(updated.status, message)
            updated.status.nominated_node_name = nominated_node
            try:
                current = await self._client.update_status(updated)
                break
            except StatusError as exc:
                if exc.reason == "NotFound":
                    return
                if exc.reason != "Conflict":
                    raise
            current = await self._client.get(core.Pod, pod.metadata.name, pod.metadata.namespace)
        else:
            return
        # The node-by-node list, beyond Kubernetes, for `kubelite describe pod` (the status write
        # cannot carry metadata, so it is a patch of its own).
        recorded = schedulingreasons.encode(node_reasons) if node_reasons else None
        if current.metadata.annotations.get(schedulingreasons.ANNOTATION) != recorded:
            try:
                await self._client.patch(core.Pod, pod.metadata.name, pod.metadata.namespace,
                                         {"metadata": {"annotations": {schedulingreasons.ANNOTATION: recorded}}})
            except StatusError as exc:
                if exc.reason != "NotFound":
                    raise


def _set_pod_scheduled_false(status: core.PodStatus, message: str) -> None:
    for cond in status.conditions:
        if cond.type == "PodScheduled":
            break
    else:
        cond = status.conditions.add(type="PodScheduled")
    if cond.status != "False":
        cond.last_transition_time.CopyFrom(timestamp_pb2.Timestamp(seconds=int(time.time())))
    cond.status = "False"
    cond.reason = "Unschedulable"
    cond.message = message
    cond.last_probe_time.Clear()


# -- leader election seam -----------------------------------------------------------------------------------------


class Elector(Protocol):
    """Runs ``lead`` while this process holds the lease; raises when leadership is lost."""

    async def run(self, lead: Callable[[], Coroutine[Any, Any, None]]) -> None: ...


class AlwaysLeader:
    async def run(self, lead: Callable[[], Coroutine[Any, Any, None]]) -> None:
        await lead()


class LeaderElectionLost(Exception):
    """The lease went to another scheduler: this one must stop binding at once."""


class LeaseElector:
    """The shared Lease-based election (kubelite.client.leaderelection) on the `kube-scheduler` Lease."""

    def __init__(self, client: Client, config: LeaderElectionConfig) -> None:
        self._elector = LeaderElector(ClientLeaseStore(client), config,
                                      name=config.resource_name or LEASE_NAME)

    async def run(self, lead: Callable[[], Coroutine[Any, Any, None]]) -> None:
        log.info("leader election: I am %s", self._elector.identity)
        if not await self._elector.run(lead):
            raise LeaderElectionLost("leaderelection lost")


def _elector(options: SchedulerOptions, client: Client) -> Elector:
    return LeaseElector(client, options.leader_election) if options.leader_elect else AlwaysLeader()


# -- run ----------------------------------------------------------------------------------------------------------


def make_http_app(ready: Callable[[], bool], sched: Scheduler | None = None) -> web.Application:
    """/healthz, /readyz, /metrics, and /debug/pending/{namespace}/{name}: why a pod is Pending, node by node
    (beyond kube-scheduler, whose message only counts reasons)."""
    async def pending(request: web.Request) -> web.Response:
        key = f"{request.match_info['namespace']}/{request.match_info['name']}"
        if sched is None or key not in sched.last_error:
            return web.Response(text=f"pod {key} is not waiting in this scheduler\n", status=404)
        lines = [sched.last_error[key], "", f"{'NODE':<30} {'PLUGIN':<32} REASON"]
        lines += [f"{node:<30} {plugin:<32} {reason}" for node, plugin, reason in sched.node_reasons.get(key, [])]
        return web.Response(text="\n".join(lines) + "\n")

    app = health_app({"informers-synced": ready})
    app.router.add_get("/debug/pending/{namespace}/{name}", pending)
    return app


async def run(options: SchedulerOptions, config: SchedulerConfiguration | None = None) -> None:
    config = config or options.load()
    kubeconfig_path = options.kubeconfig or config.kubeconfig or None
    kc = load_kubeconfig(kubeconfig_path, options.master or None)
    leader_elect = options.leader_elect if config.leader_elect is None else config.leader_elect
    profiles = config.build_profiles()
    async with Client.from_kubeconfig(kc) as client:
        # Every pod not finished (kube-scheduler's selector): pending ones are queued, assigned ones counted.
        pods: Informer[core.Pod] = Informer(client, core.Pod,
                                            field_selector="status.phase!=Succeeded,status.phase!=Failed")
        nodes: Informer[core.Node] = Informer(client, core.Node)
        pdbs: Informer[policy.PodDisruptionBudget] = Informer(client, policy.PodDisruptionBudget)
        # kube-scheduler reports as its profile's scheduler name (default-scheduler).
        recorder = EventRecorder(client, next(iter(profiles)), max_queued=EVENT_QUEUE)
        sched = Scheduler(profiles, binder=APIBinder(client),
                          conditions=APIConditionWriter(client, pods.store.get),
                          max_in_flight_bindings=options.max_in_flight_bindings, events=recorder,
                          victims=APIVictimDeleter(client))
        sched.queue.initial_backoff = config.pod_initial_backoff_seconds
        sched.queue.max_backoff = config.pod_max_backoff_seconds
        nodes.add_handler(sched.on_node_add, sched.on_node_update, sched.on_node_delete)
        pods.add_handler(sched.on_pod_add, sched.on_pod_update, sched.on_pod_delete)
        pdbs.add_handler(sched.on_pdb_add, sched.on_pdb_update, sched.on_pdb_delete)

        informers: tuple[Informer[Any], ...] = (nodes, pods, pdbs)
        http = web.AppRunner(make_http_app(lambda: all(i.has_synced for i in informers), sched), access_log=None)
        await http.setup()
        await web.TCPSite(http, options.bind_address, options.secure_port).start()
        log.info("serving /healthz and /metrics on %s:%d; profiles %s; API server %s", options.bind_address,
                 options.secure_port, ", ".join(profiles), client.target)
        loop = asyncio.get_running_loop()
        pause_gc()  # until the caches are loaded: they are what collections would walk again and again
        tasks = [loop.create_task(i.run(), name=f"informer-{name}")
                 for i, name in zip(informers, ("nodes", "pods", "pdbs"), strict=True)]

        async def synced() -> None:
            for informer in informers:
                await informer.wait_for_sync()

        tasks.append(loop.create_task(freeze_heap_when(synced), name="freeze-heap"))
        recorder.start()

        async def lead() -> None:
            # Decisions must count the pods already bound: start only on a synced cache.
            for informer in informers:
                await informer.wait_for_sync()
            log.info("caches synced: %d nodes, %d pods (%d assigned), %d PodDisruptionBudgets", len(nodes.store),
                     len(pods.store), sched.cache.pod_count, len(pdbs.store))
            await sched.run()

        elector = _elector(dataclasses.replace(options, leader_elect=leader_elect), client)
        try:
            await elector.run(lead)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await recorder.stop()
            await http.cleanup()
