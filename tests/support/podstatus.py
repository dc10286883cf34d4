"""A stand-in for kubelets in controller tests: binds pods and writes their status.

Until hollow kubelets exist this is how a controller test gets pods that run:
it watches a namespace, binds each new pod to a node (round robin over
``nodes``, which a test may change, as a scheduler would avoid a bad node), reports it
Running and Ready (with a pod IP from the node's range), and confirms
graceful deletions with a zero grace period, as a kubelet does once the
containers are gone. Pods labelled ``test.kubelite.io/not-ready`` stay not-ready.

Nodes it is given that do not exist yet it registers (Ready) and keeps alive
by renewing their Leases, as kubelets would, so that the node lifecycle
controller and pod GC treat them as healthy; it deletes them on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from kubelite.api.coordination.v1 import generated_pb2 as coordination
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.machinery.errors import StatusError

log = logging.getLogger(__name__)

NOT_READY_LABEL = "test.kubelite.io/not-ready"


class PodStatusWriter:
    def __init__(self, client: Client, namespace: str, nodes: list[str], *, ready_delay: float = 0.0,
                 renew_interval: float = 10.0) -> None:
        self.client = client
        self.namespace = namespace
        self.nodes = nodes
        self.ready_delay = ready_delay
        self._placed = itertools.count()
        self._ips = itertools.count(2)
        self._task: asyncio.Task[None] | None = None
        self._handled: set[str] = set()
        self._pending: set[asyncio.Task[None]] = set()
        self._registered: list[str] = []
        self._silent: set[str] = set()
        # The kubelet's interval: a quarter of the 40 s lease.
        self.renew_interval = renew_interval
        self._renewer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PodStatusWriter:
        for name in self.nodes:
            await self._register(name)
        loop = asyncio.get_running_loop()
        self._renewer = loop.create_task(self._renew_leases(), name=f"node-leases-{self.namespace}")
        self._task = loop.create_task(self._run(), name=f"pod-status-{self.namespace}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None and self._renewer is not None
        tasks = [self._task, self._renewer, *self._pending]
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        for name in self._registered:
            for kind, namespace in ((core.Node, ""), (coordination.Lease, "kube-node-lease")):
                try:
                    await self.client.delete(kind, name, namespace)
                except StatusError as exc:
                    log.info("pod status writer: removing %s %s: %s", kind.DESCRIPTOR.name, name, exc)

    async def _register(self, name: str) -> None:
        node = core.Node(api_version="v1", kind="Node")
        node.metadata.name = name
        cond = node.status.conditions.add(type="Ready", status="True", reason="KubeletReady")
        cond.last_heartbeat_time.GetCurrentTime()
        try:
            await self.client.create(node)
        except StatusError as exc:
            if exc.reason == "AlreadyExists":
                return  # the test's own node: its test keeps it alive (or not)
            raise
        lease = coordination.Lease(api_version="coordination.k8s.io/v1", kind="Lease")
        lease.metadata.name = name
        lease.metadata.namespace = "kube-node-lease"
        lease.spec.holder_identity = name
        lease.spec.lease_duration_seconds = 40
        lease.spec.renew_time.GetCurrentTime()
        await self.client.create(lease)
        self._registered.append(name)

    def stop_renewing(self, name: str) -> None:
        """The node's kubelet dies: its lease is no longer renewed (the node is still removed on exit)."""
        self._silent.add(name)

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self.renew_interval)
            for name in [n for n in self._registered if n not in self._silent]:
                try:
                    lease = await self.client.get(coordination.Lease, name, "kube-node-lease")
                    lease.spec.renew_time.GetCurrentTime()
                    await self.client.update(lease)
                except StatusError as exc:
                    log.info("pod status writer: renewing the lease of %s: %s", name, exc)

    async def _run(self) -> None:
        rv = ""
        while True:
            try:
                if not rv:
                    listed = await self.client.list(core.Pod, self.namespace)
                    for pod in listed.items:
                        self._handle(pod)
                    rv = listed.resource_version
                async with contextlib.aclosing(self._watch(rv)) as events:
                    async for etype, pod in events:
                        rv = pod.metadata.resource_version or rv
                        if etype != "DELETED":
                            self._handle(pod)
            except StatusError as exc:
                log.info("pod status writer: watch ended (%s); resuming", exc)
                if exc.reason == "Expired":
                    rv = ""  # relist: the pods handled already are skipped by uid
                await asyncio.sleep(0.2)

    async def _watch(self, rv: str) -> AsyncIterator[tuple[str, core.Pod]]:
        async for event in self.client.watch(core.Pod, self.namespace, resource_version=rv):
            yield event.type, event.object

    def _handle(self, pod: core.Pod) -> None:
        key = pod.metadata.uid
        if pod.metadata.HasField("deletion_timestamp"):
            self._spawn(self._confirm_delete(pod))
        elif key not in self._handled:
            self._handled.add(key)
            self._spawn(self._start(pod))

    def _spawn(self, coro: object) -> None:
        task = asyncio.get_running_loop().create_task(coro, name="pod-status-step")  # type: ignore[arg-type]
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _start(self, pod: core.Pod) -> None:
        """Binds the pod and reports it running, each step retried until it lands or the pod is
        gone: a kubelet keeps reconciling too, and one conflict or refused connection on a loaded
        machine must not leave a pod pending for the rest of the test."""
        if not await self._retry(pod, self._bind):
            return
        if self.ready_delay:
            await asyncio.sleep(self.ready_delay)
        await self._retry(pod, self._report_running)

    async def _retry(self, pod: core.Pod, step: Callable[[core.Pod], Awaitable[None]]) -> bool:
        delay = 0.1
        while True:
            try:
                current = await self.client.get(core.Pod, pod.metadata.name, self.namespace)
                if current.metadata.uid != pod.metadata.uid or current.metadata.HasField("deletion_timestamp"):
                    return False
                await step(current)
                return True
            except StatusError as exc:
                if exc.reason == "NotFound":
                    return False
                log.info("pod status writer: %s of %s failed (retrying): %s", step.__name__, pod.metadata.name, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _bind(self, current: core.Pod) -> None:
        if not current.spec.node_name:
            node = self.nodes[next(self._placed) % len(self.nodes)]
            await self.client.bind(self.namespace, current.metadata.name, node, uid=current.metadata.uid)

    async def _report_running(self, current: core.Pod) -> None:
        current.status.phase = "Running"
        n = next(self._ips)
        current.status.pod_ip = f"10.250.{n // 250}.{n % 250 + 1}"
        current.status.host_ip = "127.0.0.1"
        ready = "False" if current.metadata.labels.get(NOT_READY_LABEL) else "True"
        for ctype in ("Initialized", "ContainersReady", "Ready"):
            cond = current.status.conditions.add(type=ctype, status="True" if ctype == "Initialized" else ready)
            cond.last_transition_time.GetCurrentTime()
        current.status.start_time.GetCurrentTime()
        await self.client.update_status(current)

    async def _confirm_delete(self, pod: core.Pod) -> None:
        try:
            await self.client.delete(core.Pod, pod.metadata.name, self.namespace, grace_period_seconds=0,
                                     uid=pod.metadata.uid)
        except StatusError as exc:
            if exc.reason != "NotFound":
                log.info("pod status writer: deleting %s failed: %s", pod.metadata.name, exc)
