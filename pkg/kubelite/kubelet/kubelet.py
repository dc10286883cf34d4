"""The kubelet: the node's agent, wiring informers, pod workers, the runtime and heartbeats.

Pods bound to this node arrive through an Informer filtered by
``spec.nodeName``; every change, every runtime event about one of its
containers, every probe verdict and a periodic resync only enqueue the pod's
``namespace/name``. Workers take keys from one RateLimitingQueue, which never
hands out a key that is being synced, so a pod is synced by one worker at a
time (Kubernetes' pod workers), and a failed sync is retried with back-off.

Many Kubelets can live in one process (hollow nodes share a Client and a
loop): nothing here is global except the Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.runtime.v1 import api_pb2 as rt
from kubelite.client.client import Client
from kubelite.client.informer import Informer, deleted_object, meta_namespace_key, split_key
from kubelite.client.workqueue import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    RateLimitingQueue,
    process_next_item,
)
from kubelite.kubelet import metrics
from kubelite.kubelet.config import KubeletConfig
from kubelite.kubelet.events import EventRecorder, pod_ref
from kubelite.kubelet.node import NodeManager, capacity, detect_node_ip
from kubelite.kubelet.pods import PodSyncer, ProbeResults, SyncContext
from kubelite.kubelet.probes import ProbeManager
from kubelite.kubelet.static import ANNOTATION_MIRROR, is_mirror, mirror_of, read_manifests
from kubelite.kubelet.status import TERMINAL_PHASES, rejected_status
from kubelite.machinery.errors import StatusError
from kubelite.machinery.quantity import QuantityError, parse_quantity
from kubelite.runtime.interface import LABEL_POD_NAME, LABEL_POD_NAMESPACE, Runtime, RuntimeError_

log = logging.getLogger(__name__)


def _requests(pod: core.Pod) -> dict[str, Fraction]:
    """Effective requests: max(init containers) vs sum(app containers), as the scheduler counts them."""
    def of(c: core.Container, res: str) -> Fraction:
        text = c.resources.requests.get(res) or c.resources.limits.get(res) or "0"
        try:
            return parse_quantity(text)
        except QuantityError:
            return Fraction(0)

    out = {}
    for res in ("cpu", "memory"):
        app = sum((of(c, res) for c in pod.spec.containers), Fraction(0))
        init = max((of(c, res) for c in pod.spec.init_containers), default=Fraction(0))
        out[res] = max(app, init)
    return out


def _host_ports(pod: core.Pod) -> set[tuple[str, int, str]]:
    return {(p.host_ip or "0.0.0.0", p.host_port, p.protocol or "TCP")
            for c in pod.spec.containers for p in c.ports if p.host_port}


class Kubelet:
    def __init__(self, cfg: KubeletConfig, client: Client, runtime: Runtime) -> None:
        self.cfg = cfg
        self.client = client
        self.runtime = runtime
        self.node_ip = cfg.node_ip or detect_node_ip()
        self.root_dir = Path(cfg.root_dir)
        self.recorder = EventRecorder(client, "kubelet", cfg.node_name)
        self.probe_results = ProbeResults()
        self._pod_cidr = cfg.pod_cidr
        self._runtime_name = "docker"
        self._runtime_version = ""
        self._images: list[core.ContainerImage] = []
        self._runtime_error = ""
        self.syncer = PodSyncer(
            SyncContext(node_name=cfg.node_name, root_dir=self.root_dir, host_ip=self.node_ip,
                        cluster_dns=cfg.cluster_dns, cluster_domain=cfg.cluster_domain, runtime_name="docker",
                        resolv_conf=cfg.resolv_conf,
                        pod_cidr=lambda: self._pod_cidr),
            runtime, client, self.recorder, self.probe_results, on_started=self._observe_started)
        self.queue: RateLimitingQueue[str] = RateLimitingQueue(
            MaxOfRateLimiter[str](ItemExponentialFailureRateLimiter[str](0.5, 60.0),
                                  BucketRateLimiter[str](qps=50.0, burst=200)),
            name=f"kubelet-{cfg.node_name}")
        self.probes = ProbeManager(runtime, self.probe_results, self.recorder, self.queue.add, self.node_ip)
        self.pods: Informer[core.Pod] = Informer(client, core.Pod, field_selector=f"spec.nodeName={cfg.node_name}")
        self.nodes: Informer[core.Node] = Informer(client, core.Node, field_selector=f"metadata.name={cfg.node_name}")
        self.pods.add_handler(on_add=self._enqueue, on_update=lambda _old, new: self._enqueue(new),
                              on_delete=self._enqueue)
        self.nodes.add_handler(on_add=self._node_changed, on_update=lambda _old, new: self._node_changed(new))
        self.node_manager = NodeManager(cfg, client, self.node_ip, lambda: self._runtime_version,
                                        lambda: self._images, self._not_ready_reason)
        self._node_uid = ""
        self._admitted: set[str] = set()
        self.static_pods: dict[str, core.Pod] = {}
        # namespace/name -> uid last synced, to stop the probers of a pod that went.
        self._uids: dict[str, str] = {}
        self.static_synced = asyncio.Event()
        self._rejected: set[str] = set()
        self.ready = asyncio.Event()

    # ---- handlers (quick: they only enqueue) ----

    def _enqueue(self, pod: Any) -> None:
        self.queue.add(meta_namespace_key(deleted_object(pod)))

    async def _node_changed(self, node: core.Node) -> None:
        cidr = node.spec.pod_cidr
        if cidr and cidr != self._pod_cidr:
            log.info("node %s: pod CIDR is %s", self.cfg.node_name, cidr)
            try:
                await self.runtime.update_runtime_config(cidr)
            except RuntimeError_ as exc:
                self._runtime_error = f"container runtime network not ready: {exc}"
                log.error("runtime refused pod CIDR %s: %s", cidr, exc)
                return
            self._pod_cidr = cidr
            self._runtime_error = ""
            for key in self.pods.store.keys():
                self.queue.add(key)

    def _not_ready_reason(self) -> str:
        if self._runtime_error:
            return self._runtime_error
        if not self._pod_cidr:
            return ("container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
                    "message:no pod CIDR assigned to this node yet (spec.podCIDR or --pod-cidr)")
        return ""

    def _observe_started(self, pod: core.Pod, at: float) -> None:
        created = pod.metadata.creation_timestamp.seconds + pod.metadata.creation_timestamp.nanos / 1e9
        if created:
            metrics.POD_START_LATENCY.observe(max(0.0, at - created))

    # ---- admission ----

    def _admit(self, pod: core.Pod) -> tuple[str, str] | None:
        """None to admit, or (reason, message) to reject, as Kubernetes' kubelet admission does."""
        active = [p for p in self.pods.store.list()
                  if p.metadata.uid in self._admitted and p.metadata.uid != pod.metadata.uid
                  and p.status.phase not in TERMINAL_PHASES]
        if len(active) + 1 > self.cfg.max_pods:
            return "OutOfpods", (f"Pod was rejected: Node didn't have enough resource: pods, requested: 1, used: "
                                 f"{len(active)}, capacity: {self.cfg.max_pods}")
        _, alloc = capacity(self.cfg)
        want = _requests(pod)
        for res in ("cpu", "memory"):
            if not want[res]:
                continue
            used = sum((_requests(p)[res] for p in active), Fraction(0))
            cap = parse_quantity(alloc[res])
            if used + want[res] > cap:
                scale = 1000 if res == "cpu" else 1  # Kubernetes reports CPU in millicores here
                return f"OutOf{res}", (f"Pod was rejected: Node didn't have enough resource: {res}, requested: "
                                       f"{int(want[res] * scale)}, used: {int(used * scale)}, "
                                       f"capacity: {int(cap * scale)}")
        mine = _host_ports(pod)
        if mine:
            for p in active:
                for ip, port, proto in _host_ports(p) & mine | {
                        x for x in _host_ports(p) for y in mine
                        if x[1:] == y[1:] and "0.0.0.0" in (x[0], y[0])}:
                    return "NodePorts", (f"Pod was rejected: node(s) didn't have free ports for the requested pod "
                                         f"ports: hostPort {port}/{proto} on {ip} is taken by pod "
                                         f"{p.metadata.namespace}/{p.metadata.name}")
        return None

    # ---- sync ----

    async def _desired(self, key: str) -> core.Pod | None:
        """The pod this key should run: a static pod (its mirror's status attached), else the API's."""
        api_pod = self.pods.store.get_by_key(key)
        static_pod = self.static_pods.get(key)
        if static_pod is None:
            if api_pod is not None and is_mirror(api_pod):
                # The mirror of a static pod whose manifest is gone: the mirror goes too.
                with contextlib.suppress(StatusError):
                    await self.client.delete(core.Pod, api_pod.metadata.name, api_pod.metadata.namespace,
                                             grace_period_seconds=0, uid=api_pod.metadata.uid)
                return None
            return api_pod
        pod = core.Pod()
        pod.CopyFrom(static_pod)
        mirror_ok = (api_pod is not None and is_mirror(api_pod)
                     and api_pod.metadata.annotations[ANNOTATION_MIRROR] == static_pod.metadata.uid
                     and not api_pod.metadata.HasField("deletion_timestamp"))
        if mirror_ok:
            assert api_pod is not None
            pod.status.CopyFrom(api_pod.status)
            self.syncer.set_status_target(static_pod.metadata.uid, api_pod.metadata.uid)
        elif self.ready.is_set():
            self.syncer.set_status_target(static_pod.metadata.uid, await self._make_mirror(key, static_pod, api_pod))
        else:
            self.syncer.set_status_target(static_pod.metadata.uid, "")
        self._admitted.add(pod.metadata.uid)
        return pod

    async def _make_mirror(self, key: str, static_pod: core.Pod, api_pod: core.Pod | None) -> str:
        """Creates the static pod's mirror (replacing a stale one); returns its uid, "" on failure.

        The informer may not show a mirror made a moment ago, so an AlreadyExists is
        checked against the API: if that object is our mirror, it is the one.
        """
        namespace, name = split_key(key)
        try:
            if api_pod is not None:
                await self.client.delete(core.Pod, name, namespace, grace_period_seconds=0, uid=api_pod.metadata.uid)
            created = await self.client.create(mirror_of(static_pod, self._node_uid))
            return str(created.metadata.uid)
        except StatusError as exc:
            if exc.reason == "AlreadyExists":
                with contextlib.suppress(StatusError):
                    current = await self.client.get(core.Pod, name, namespace)
                    if current.metadata.annotations.get(ANNOTATION_MIRROR) == static_pod.metadata.uid:
                        return str(current.metadata.uid)
            log.warning("mirror pod %s: %s", key, exc)
            return ""

    async def _static_source(self, directory: Path) -> None:
        """Rereads the manifest directory every 20 s (Kubernetes' file check period)."""
        while True:
            found = await asyncio.to_thread(read_manifests, directory, self.cfg.node_name)
            for key in set(found) | set(self.static_pods):
                old, new = self.static_pods.get(key), found.get(key)
                if old is None or new is None or old.metadata.uid != new.metadata.uid:
                    self.queue.add(key)
            self.static_pods = found
            self.static_synced.set()
            await asyncio.sleep(20.0)

    async def _sync(self, key: str) -> None:
        namespace, name = split_key(key)
        if key not in self.static_pods and not self.pods.has_synced:
            # Without the full list an absent pod may just be unknown yet: never treat it as gone.
            self.queue.add_after(key, 1.0)
            return
        pod = await self._desired(key)
        started = time.monotonic()
        try:
            if pod is not None and pod.metadata.uid not in self._admitted:
                if pod.metadata.uid in self._rejected:
                    return
                if (pod.status.phase == "Pending" and not pod.status.container_statuses
                        and not pod.metadata.HasField("deletion_timestamp")):
                    verdict = self._admit(pod)
                    if verdict is not None:
                        reason, message = verdict
                        self._rejected.add(pod.metadata.uid)
                        self.recorder.record(pod_ref(pod), "Warning", reason, message)
                        await self.syncer.write_rejection(pod, rejected_status(pod, reason, message))
                        return
                self._admitted.add(pod.metadata.uid)
            delay = await self.syncer.sync(namespace, name, pod)
        except (RuntimeError_, StatusError) as exc:
            metrics.SYNC_ERRORS.inc()
            log.warning("sync %s: %s", key, exc)
            raise
        finally:
            metrics.SYNC_LATENCY.observe(time.monotonic() - started)
        previous_uid = self._uids.pop(key, "")
        if pod is not None:
            self._uids[key] = pod.metadata.uid
        if previous_uid and (pod is None or pod.metadata.uid != previous_uid):
            await self.probes.remove(previous_uid)  # the pod went (or was replaced): its probers go too
        if pod is None:
            return
        alive = not pod.metadata.HasField("deletion_timestamp") and pod.status.phase not in TERMINAL_PHASES
        if alive:
            self.probes.ensure(pod)
            self.queue.add_after(key, min(delay, self.cfg.sync_frequency) if delay else self.cfg.sync_frequency)
        else:
            await self.probes.remove(pod.metadata.uid)
            if delay:
                self.queue.add_after(key, delay)

    async def _worker(self) -> None:
        while await process_next_item(self.queue, self._sync):
            pass

    # ---- loops ----

    async def _heartbeat(self) -> None:
        """Lease every node_status_update_frequency; node status when changed or due."""
        node: core.Node | None = None
        while True:
            try:
                if node is None:
                    node = await self.node_manager.register()
                    self._node_uid = node.metadata.uid
                    self.ready.set()
                await self.node_manager.renew_lease(self._node_uid)
                cached = self.nodes.store.get_by_key(self.cfg.node_name)
                node = await self.node_manager.update_status(cached or node)
            except StatusError as exc:
                log.warning("node heartbeat: %s", exc)
                if exc.reason == "NotFound":
                    node = None  # deleted behind our back: register again
            except Exception:  # a heartbeat must outlive any single failure
                log.exception("node heartbeat failed")
            await asyncio.sleep(self.cfg.node_status_update_frequency)

    async def _runtime_info(self) -> None:
        """Runtime version and images for the node status; refreshed slowly."""
        while True:
            await asyncio.sleep(60.0)
            await self._refresh_runtime_info()

    async def _refresh_runtime_info(self) -> None:
        try:
            v = await self.runtime.version()
            self._runtime_name = v.runtime_name
            self.syncer.ctx.runtime_name = v.runtime_name
            self._runtime_version = f"{v.runtime_name}://{v.runtime_version}"
            images = await self.runtime.list_images()
            self._images = [core.ContainerImage(names=list(i.repo_tags) + list(i.repo_digests),
                                                size_bytes=int(i.size)) for i in images if i.repo_tags][:50]
            if self._runtime_error.startswith("container runtime is down"):
                self._runtime_error = ""
        except RuntimeError_ as exc:
            self._runtime_error = f"container runtime is down: {exc}"

    async def _runtime_events(self) -> None:
        """Container events enqueue their pod; a broken stream reopens after a pause."""
        while True:
            try:
                async for ev in self.runtime.container_events():
                    md = ev.pod_sandbox_metadata
                    if md.name and md.namespace:
                        self.queue.add(f"{md.namespace}/{md.name}")
            except RuntimeError_ as exc:
                log.warning("runtime events: %s", exc)
            except Exception:
                log.exception("runtime events stream failed")
            await asyncio.sleep(1.0)

    async def _housekeeping(self) -> None:
        """Resyncs pods whose runtime objects belong to no pod we know (orphans, adoption)."""
        while True:
            try:
                known = set(self.pods.store.keys()) | set(self.static_pods)
                for sb in await self.runtime.list_pod_sandbox():
                    key = f"{sb.labels.get(LABEL_POD_NAMESPACE) or sb.metadata.namespace}/" \
                          f"{sb.labels.get(LABEL_POD_NAME) or sb.metadata.name}"
                    if key not in known or sb.state != rt.SANDBOX_READY:
                        self.queue.add(key)
                metrics.RUNNING_PODS.set(len([s for s in await self.runtime.list_pod_sandbox(
                    rt.PodSandboxFilter(state=rt.SANDBOX_READY))]))
                metrics.RUNNING_CONTAINERS.set(len(await self.runtime.list_containers(
                    rt.ContainerFilter(state=rt.CONTAINER_RUNNING))))
            except RuntimeError_ as exc:
                log.warning("housekeeping: %s", exc)
            except Exception:
                log.exception("housekeeping failed")
            await asyncio.sleep(self.cfg.sync_frequency)

    async def run(self) -> None:
        """Runs until cancelled; every task is named and owned by the TaskGroup."""
        if self._pod_cidr:
            await self.runtime.update_runtime_config(self._pod_cidr)
        await self._refresh_runtime_info()
        name = self.cfg.node_name
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.recorder.run(), name=f"kubelet-events-{name}")
                tg.create_task(self._runtime_info(), name=f"kubelet-runtime-info-{name}")
                tg.create_task(self._heartbeat(), name=f"kubelet-heartbeat-{name}")
                tg.create_task(self.nodes.run(), name=f"kubelet-node-informer-{name}")
                # Static pods run at once, with or without the API server.
                if self.cfg.pod_manifest_path:
                    tg.create_task(self._static_source(Path(self.cfg.pod_manifest_path)),
                                   name=f"kubelet-static-pods-{name}")
                for i in range(self.cfg.pod_workers):
                    tg.create_task(self._worker(), name=f"kubelet-pod-worker-{name}-{i}")
                tg.create_task(self._runtime_events(), name=f"kubelet-runtime-events-{name}")
                await self.ready.wait()
                tg.create_task(self.pods.run(), name=f"kubelet-pod-informer-{name}")
                await self.pods.wait_for_sync()
                # Pods already running on this node were admitted by a previous kubelet.
                for pod in self.pods.store.list():
                    if pod.status.phase in ("Running",) or pod.status.container_statuses:
                        self._admitted.add(pod.metadata.uid)
                for key in self.static_pods:
                    self.queue.add(key)  # now their mirrors can be made
                tg.create_task(self._housekeeping(), name=f"kubelet-housekeeping-{name}")
        finally:
            self.queue.shutdown()
            with contextlib.suppress(Exception):
                await self.probes.stop()


def make_runtime(cfg: KubeletConfig) -> Runtime:
    """The runtime the flags ask for: remote over a socket, the fake, or Docker in-process."""
    if cfg.container_runtime_endpoint:
        from kubelite.runtime.remote import RemoteRuntime

        return RemoteRuntime(cfg.container_runtime_endpoint)
    if cfg.runtime == "fake":
        from kubelite.runtime.fake import FakeRuntime

        return FakeRuntime(node_name=cfg.node_name)
    from kubelite.runtime.docker import DockerRuntime

    return DockerRuntime(node_name=cfg.node_name, network_name=cfg.pod_network_name)


async def run(cfg: KubeletConfig) -> None:
    """The kubelet process: client from the kubeconfig, runtime, health server, then the Kubelet."""
    from kubelite.client.kubeconfig import load_kubeconfig
    from kubelite.kubelet.server import make_health_app, start_health_server

    kc = load_kubeconfig(cfg.kubeconfig or None, server=cfg.server or None)
    client = Client.from_kubeconfig(kc)
    runtime = make_runtime(cfg)
    kubelet = Kubelet(cfg, client, runtime)
    runner = await start_health_server(make_health_app(lambda: kubelet.ready.is_set()), cfg.healthz_bind_address,
                                       cfg.healthz_port)
    from kubelite.kubelet.streaming import serve_streaming

    stream_server = await serve_streaming(kubelet, cfg.address, cfg.port)
    log.info("kubelet %s starting: runtime %s, node IP %s, pod CIDR %s", cfg.node_name,
             cfg.container_runtime_endpoint or cfg.runtime, kubelet.node_ip, cfg.pod_cidr or "(from the Node)")
    try:
        await kubelet.run()
    finally:
        await stream_server.stop(1.0)
        await runner.cleanup()
        await runtime.close()
        await client.close()
