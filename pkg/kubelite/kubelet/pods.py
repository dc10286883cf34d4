"""One pod's sync: compare the pod the API wants with what the runtime runs, converge.

Level-triggered, like Kubernetes' kuberuntime manager: ``sync`` reads the
desired pod and the runtime's sandboxes and containers for its uid (from
labels, so a restarted kubelet adopts instead of restarting), takes the next
steps (sandbox, then init containers one by one, then app containers,
restarts with back-off, graceful termination), writes the status when it
changed, and returns when it wants to look again. It never keeps state that
Docker does not also hold, except back-off timers and waiting reasons, which
a restart may forget without harm.

The caller guarantees that one pod key is never synced twice at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.runtime.v1 import api_pb2 as rt
from kubelite.client.client import Client
from kubelite.kubelet import convert, volumes
from kubelite.kubelet.events import EventRecorder, pod_ref
from kubelite.kubelet.status import TERMINAL_PHASES, PodRuntimeState, Waiting, pod_status, same_status
from kubelite.machinery.errors import StatusError
from kubelite.runtime.interface import (
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    ImagePullError,
    NotFoundError,
    Runtime,
    RuntimeError_,
)

log = logging.getLogger(__name__)

BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
# A container that ran this long resets its restart back-off.
BACKOFF_RESET_AFTER = 600.0
DEFAULT_GRACE = 30
CONFIG_RETRY = 2.0
TERMINATION_MESSAGE_LIMIT = 4096
# Exited instances kept per container: the current one and the previous one (logs --previous).
KEEP_INSTANCES = 2


@dataclass
class Backoff:
    delay: float
    # Wall-clock seconds the window counts from (the container's finish time).
    since: float


@dataclass
class PodNotes:
    """What the kubelet knows about a pod beyond the runtime: reasons, back-offs, probes."""

    waiting: dict[str, Waiting] = field(default_factory=dict)
    backoff: dict[str, Backoff] = field(default_factory=dict)
    pull_backoff: dict[str, Backoff] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    admitted: bool = False
    last_status: bytes = b""
    seen_running: bool = False


class ProbeResults:
    """Readiness and liveness results the prober writes and the sync reads (see probes.py)."""

    def __init__(self) -> None:
        self.ready: dict[tuple[str, str], bool] = {}
        self.live_failed: dict[tuple[str, str], str] = {}
        self.started: dict[tuple[str, str], bool] = {}


@dataclass
class SyncContext:
    node_name: str
    root_dir: Path
    host_ip: str
    cluster_dns: tuple[str, ...]
    cluster_domain: str
    runtime_name: str
    pod_cidr: Callable[[], str]
    resolv_conf: str = ""


def _now_ts() -> Timestamp:
    t = Timestamp()
    t.seconds = int(time.time())
    return t


def _grace(pod: core.Pod) -> int:
    if pod.metadata.HasField("deletion_grace_period_seconds"):
        return max(0, pod.metadata.deletion_grace_period_seconds)
    if pod.spec.HasField("termination_grace_period_seconds"):
        return max(0, pod.spec.termination_grace_period_seconds)
    return DEFAULT_GRACE


def _pull_policy(c: core.Container) -> str:
    if c.image_pull_policy:
        return c.image_pull_policy
    tag = c.image.rpartition(":")[2] if ":" in c.image.rpartition("/")[2] else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _should_restart(policy: str, exit_code: int) -> bool:
    if policy == "Never":
        return False
    if policy == "OnFailure":
        return exit_code != 0
    return True


class PodSyncer:
    def __init__(self, ctx: SyncContext, runtime: Runtime, client: Client, recorder: EventRecorder,
                 probes: ProbeResults, on_started: Callable[[core.Pod, float], None] | None = None) -> None:
        self.ctx = ctx
        self.runtime = runtime
        self.client = client
        self.recorder = recorder
        self.probes = probes
        self.notes: dict[str, PodNotes] = {}
        self._on_started = on_started
        # Static pod uid -> the uid of its mirror pod in the API ("" while it has none):
        # a static pod's status is written to its mirror.
        self.status_uid: dict[str, str] = {}

    def set_status_target(self, uid: str, api_uid: str) -> None:
        """Where a static pod's status goes: its mirror's uid ("" while it has none).
        A new mirror starts with an empty status, so the last write is forgotten."""
        if self.status_uid.get(uid) != api_uid:
            self.status_uid[uid] = api_uid
            notes = self.notes.get(uid)
            if notes is not None:
                notes.last_status = b""

    # ---- runtime state ----

    async def runtime_state(self, namespace: str, name: str) -> dict[str, PodRuntimeState]:
        """Everything the runtime holds under this pod name, by uid (an old uid is an orphan)."""
        selector = {LABEL_POD_NAMESPACE: namespace, LABEL_POD_NAME: name}
        sandboxes = await self.runtime.list_pod_sandbox(rt.PodSandboxFilter(label_selector=selector))
        containers = await self.runtime.list_containers(rt.ContainerFilter(label_selector=selector))
        out: dict[str, PodRuntimeState] = {}
        for sb in sandboxes:
            uid = sb.labels.get(LABEL_POD_UID) or sb.metadata.uid
            with contextlib.suppress(NotFoundError):
                out.setdefault(uid, PodRuntimeState()).sandboxes.append(await self.runtime.pod_sandbox_status(sb.id))
        for c in containers:
            uid = c.labels.get(LABEL_POD_UID, "")
            try:
                status = await self.runtime.container_status(c.id)
            except NotFoundError:
                continue
            out.setdefault(uid, PodRuntimeState()).containers.setdefault(c.metadata.name, []).append(status)
        for state in out.values():
            state.sandboxes.sort(key=lambda s: (s.metadata.attempt, s.created_at), reverse=True)
            for items in state.containers.values():
                items.sort(key=lambda c: (c.metadata.attempt, c.created_at), reverse=True)
        return out

    # ---- entry point ----

    async def sync(self, namespace: str, name: str, pod: core.Pod | None) -> float | None:
        """Converges one pod key; returns seconds until it wants another look, or None."""
        states = await self.runtime_state(namespace, name)
        uid = pod.metadata.uid if pod is not None else ""
        for other_uid, state in states.items():
            if other_uid != uid:
                await self._remove_orphan(namespace, name, other_uid, state)
        if pod is None:
            return None
        state = states.get(uid, PodRuntimeState())
        notes = self.notes.setdefault(uid, PodNotes())
        if pod.metadata.HasField("deletion_timestamp"):
            await self._terminate(pod, state, notes)
            return None
        if pod.status.phase in TERMINAL_PHASES and not state.running():
            return None
        if pod.status.phase in TERMINAL_PHASES:
            await self._kill_containers(pod, state, _grace(pod), "the pod is finished")
            return None
        return await self._sync_running(pod, state, notes)

    async def _remove_orphan(self, namespace: str, name: str, uid: str, state: PodRuntimeState) -> None:
        log.info("removing pod %s/%s uid %s: it is not in the API any more", namespace, name, uid)
        for items in state.containers.values():
            for c in items:
                if c.state == rt.CONTAINER_RUNNING:
                    with contextlib.suppress(RuntimeError_):
                        await self.runtime.stop_container(c.id, 2)
        for sb in state.sandboxes:
            await self.runtime.remove_pod_sandbox(sb.id)
        for items in state.containers.values():
            for c in items:
                await self.runtime.remove_container(c.id)
        await asyncio.to_thread(volumes.remove_pod_dir, self.ctx.root_dir, uid)
        self.notes.pop(uid, None)
        for table in (self.probes.ready, self.probes.live_failed, self.probes.started):
            for key in [k for k in table if k[0] == uid]:
                del table[key]

    # ---- running pods ----

    async def _sync_running(self, pod: core.Pod, state: PodRuntimeState, notes: PodNotes) -> float | None:
        uid = pod.metadata.uid
        retry: list[float] = []
        if not pod.spec.host_network and not self.ctx.pod_cidr():
            for c in list(pod.spec.init_containers) + list(pod.spec.containers):
                notes.waiting[c.name] = Waiting("ContainerCreating", "waiting for the node's pod CIDR")
            await self._write_status(pod, state, notes)
            return None
        # Sandbox: (re)create when there is no ready one.
        if state.sandbox is None:
            if state.sandboxes:
                self.recorder.record(pod_ref(pod), "Normal", "SandboxChanged",
                                     "Pod sandbox changed, it will be killed and re-created.")
                await self._kill_containers(pod, state, 0, "the sandbox is gone")
                for sb in state.sandboxes:
                    await self.runtime.stop_pod_sandbox(sb.id)
            attempt = state.sandboxes[0].metadata.attempt + 1 if state.sandboxes else 0
            cfg = convert.sandbox_config(pod, attempt, cluster_dns=self.ctx.cluster_dns,
                                         cluster_domain=self.ctx.cluster_domain,
                                         host_dns=convert.read_resolv_conf(self.ctx.resolv_conf))
            try:
                sid = await self.runtime.run_pod_sandbox(cfg)
            except RuntimeError_ as exc:
                self.recorder.record(pod_ref(pod), "Warning", "FailedCreatePodSandBox",
                                     f"Failed to create pod sandbox: {exc}")
                raise
            state.sandboxes.insert(0, await self.runtime.pod_sandbox_status(sid))
        sandbox = state.sandbox
        assert sandbox is not None
        sandbox_cfg = convert.sandbox_config(pod, sandbox.metadata.attempt, cluster_dns=self.ctx.cluster_dns,
                                             cluster_domain=self.ctx.cluster_domain)
        # Volumes are refreshed on every sync: configMap and secret contents follow their objects.
        try:
            paths, loader = await self._volumes(pod, sandbox.network.ip)
        except (volumes.VolumeError, convert.ConfigError) as exc:
            self.recorder.record(pod_ref(pod), "Warning", "FailedMount", str(exc))
            for c in list(pod.spec.init_containers) + list(pod.spec.containers):
                if state.current(c.name) is None:
                    notes.waiting[c.name] = Waiting("ContainerCreating", str(exc))
            await self._write_status(pod, state, notes)
            return CONFIG_RETRY
        policy = pod.spec.restart_policy or "Always"

        # Init containers, in order, each to success.
        initialized = True
        for c in pod.spec.init_containers:
            cur = state.current(c.name)
            if cur is not None and cur.state == rt.CONTAINER_EXITED and cur.exit_code == 0:
                notes.waiting.pop(c.name, None)
                continue
            initialized = False
            if cur is not None and cur.state == rt.CONTAINER_RUNNING:
                break
            if cur is not None and cur.state == rt.CONTAINER_EXITED:
                if policy == "Never":
                    notes.waiting.pop(c.name, None)
                    break
                delay = self._backoff_left(notes, c.name, cur)
                if delay > 0:
                    notes.waiting[c.name] = Waiting("CrashLoopBackOff", self._backoff_message(pod, c.name, notes))
                    retry.append(delay)
                    break
            d = await self._start_container(pod, c, state, sandbox.id, sandbox_cfg, paths, loader, notes)
            if d is not None:
                retry.append(d)
            break

        if initialized:
            for c in pod.spec.containers:
                cur = state.current(c.name)
                key = (pod.metadata.uid, c.name)
                if cur is not None and cur.state == rt.CONTAINER_RUNNING:
                    notes.waiting.pop(c.name, None)
                    reason = self.probes.live_failed.pop(key, "")
                    if reason:
                        self.recorder.record(pod_ref(pod, f"spec.containers{{{c.name}}}"), "Normal", "Killing",
                                             f"Container {c.name} failed liveness probe, will be restarted")
                        await self._stop_one(pod, c, cur, _grace(pod))
                        cur = await self.runtime.container_status(cur.id)
                        state.containers[c.name][0] = cur
                    else:
                        continue
                if cur is not None and cur.state == rt.CONTAINER_CREATED:
                    # Created but never started (a kubelet that stopped in between): start it now.
                    with contextlib.suppress(RuntimeError_):
                        await self.runtime.start_container(cur.id)
                        state.containers[c.name][0] = await self.runtime.container_status(cur.id)
                        continue
                if cur is not None and cur.state == rt.CONTAINER_EXITED:
                    self._read_termination_message(pod, c, cur, notes)
                    if not _should_restart(policy, cur.exit_code):
                        notes.waiting.pop(c.name, None)
                        continue
                    delay = self._backoff_left(notes, c.name, cur)
                    if delay > 0:
                        if c.name not in notes.waiting or notes.waiting[c.name].reason != "CrashLoopBackOff":
                            self.recorder.record(pod_ref(pod, f"spec.containers{{{c.name}}}"), "Warning",
                                                 "BackOff", "Back-off restarting failed container "
                                                 f"{c.name} in pod {pod.metadata.name}_{pod.metadata.namespace}"
                                                 f"({uid})")
                        notes.waiting[c.name] = Waiting("CrashLoopBackOff",
                                                        self._backoff_message(pod, c.name, notes))
                        retry.append(delay)
                        continue
                d = await self._start_container(pod, c, state, sandbox.id, sandbox_cfg, paths, loader, notes)
                if d is not None:
                    retry.append(d)
        await self._prune(state)
        await self._write_status(pod, state, notes)
        return min(retry) if retry else None

    def _backoff_message(self, pod: core.Pod, name: str, notes: PodNotes) -> str:
        b = notes.backoff.get(name)
        delay = int(b.delay) if b else int(BACKOFF_INITIAL)
        return (f"back-off {_human(delay)} restarting failed container={name} "
                f"pod={pod.metadata.name}_{pod.metadata.namespace}({pod.metadata.uid})")

    def _backoff_left(self, notes: PodNotes, name: str, last: rt.ContainerStatus) -> float:
        """Seconds the restart of ``name`` must still wait after the crash ``last``.

        As Kubernetes: the first crash restarts at once, the next waits 10 s, then
        20 s, 40 s, ... up to 5 min, counted from the crash; a container that ran
        10 minutes starts the sequence over.
        """
        finished = last.finished_at / 1e9 if last.finished_at else time.time()
        ran = (last.finished_at - last.started_at) / 1e9 if last.started_at and last.finished_at else 0.0
        b = notes.backoff.get(name)
        if b is None or (b.since != finished and ran >= BACKOFF_RESET_AFTER):
            b = notes.backoff[name] = Backoff(0.0, finished)
        elif b.since != finished:
            b = notes.backoff[name] = Backoff(BACKOFF_INITIAL if b.delay == 0 else min(b.delay * 2, BACKOFF_MAX),
                                              finished)
        return max(0.0, b.since + b.delay - time.time())

    def _read_termination_message(self, pod: core.Pod, c: core.Container, cur: rt.ContainerStatus,
                                  notes: PodNotes) -> None:
        if cur.id in notes.messages:
            return
        path = volumes.pod_dir(self.ctx.root_dir, pod.metadata.uid) / "containers" / c.name / (
            f"{cur.metadata.attempt}-termination-log")
        with contextlib.suppress(OSError):
            notes.messages[cur.id] = path.read_bytes()[:TERMINATION_MESSAGE_LIMIT].decode(errors="replace")

    async def _fetch(self, ns: str, cm_names: set[str], secret_names: set[str]) -> tuple[
            dict[str, core.ConfigMap], dict[str, core.Secret]]:
        """The named ConfigMaps and Secrets that exist (a missing one is simply absent)."""
        cms: dict[str, core.ConfigMap] = {}
        secrets: dict[str, core.Secret] = {}
        for n in cm_names:
            with contextlib.suppress(StatusError):
                cms[n] = await self.client.get(core.ConfigMap, n, ns)
        for n in secret_names:
            with contextlib.suppress(StatusError):
                secrets[n] = await self.client.get(core.Secret, n, ns)
        return cms, secrets

    async def _volumes(self, pod: core.Pod, pod_ip: str) -> tuple[dict[str, Path], _EnvLoader]:
        """Sets up the pod's volumes (API reads only for configMap/secret volumes) and
        returns a loader for the containers' environment, read only when a container starts."""
        cm_names = {v.config_map.name for v in pod.spec.volumes if v.HasField("config_map")}
        secret_names = {v.secret.secret_name for v in pod.spec.volumes if v.HasField("secret")}
        cms, secrets = await self._fetch(pod.metadata.namespace, cm_names, secret_names)
        base = convert.EnvSources(config_maps=cms, secrets=secrets, service_env={}, pod_ip=pod_ip,
                                  host_ip=self.ctx.host_ip, node_name=self.ctx.node_name)
        vsrc = volumes.VolumeSources(config_maps=cms, secrets=secrets, env=base)
        paths = await asyncio.to_thread(volumes.setup_volumes, self.ctx.root_dir, pod, vsrc)
        return paths, _EnvLoader(self, pod, base)

    async def _ensure_image(self, pod: core.Pod, c: core.Container, notes: PodNotes) -> float | None:
        """Makes the image present per imagePullPolicy; returns a retry delay when it is not."""
        policy = _pull_policy(c)
        ref = pod_ref(pod, f"spec.containers{{{c.name}}}")
        present = await self.runtime.image_status(c.image)
        if present is not None and policy != "Always":
            return None
        if present is None and policy == "Never":
            msg = f'Container image "{c.image}" is not present with pull policy of Never'
            notes.waiting[c.name] = Waiting("ErrImageNeverPull", msg)
            self.recorder.record(ref, "Warning", "ErrImageNeverPull", msg)
            return CONFIG_RETRY * 5
        b = notes.pull_backoff.get(c.name)
        if b is not None and time.time() < b.since + b.delay:
            notes.waiting[c.name] = Waiting("ImagePullBackOff", f'Back-off pulling image "{c.image}"')
            return b.since + b.delay - time.time()
        self.recorder.record(ref, "Normal", "Pulling", f'Pulling image "{c.image}"')
        started = time.monotonic()
        try:
            await self.runtime.pull_image(c.image)
        except ImagePullError as exc:
            delay = min(b.delay * 2, BACKOFF_MAX) if b is not None else BACKOFF_INITIAL
            notes.pull_backoff[c.name] = Backoff(delay, time.time())
            msg = f'Failed to pull image "{c.image}": {exc}'
            notes.waiting[c.name] = Waiting("ErrImagePull", msg)
            self.recorder.record(ref, "Warning", "Failed", msg)
            return delay
        notes.pull_backoff.pop(c.name, None)
        self.recorder.record(ref, "Normal", "Pulled",
                             f'Successfully pulled image "{c.image}" in {time.monotonic() - started:.3f}s')
        return None

    async def _start_container(self, pod: core.Pod, c: core.Container, state: PodRuntimeState, sandbox_id: str,
                               sandbox_cfg: rt.PodSandboxConfig, paths: dict[str, Path],
                               loader: _EnvLoader, notes: PodNotes) -> float | None:
        ref = pod_ref(pod, f"spec.containers{{{c.name}}}")
        delay = await self._ensure_image(pod, c, notes)
        if delay is not None:
            return delay
        attempt = state.next_attempt(c.name)
        # A container removed behind our back leaves no instance to count from; the
        # reported status still knows how often it ran (as Kubernetes' kubelet does).
        for reported in list(pod.status.container_statuses) + list(pod.status.init_container_statuses):
            if reported.name == c.name and reported.container_id:
                attempt = max(attempt, reported.restart_count + 1)
        try:
            env = convert.container_env(pod, c, await loader.get())
            mounts = volumes.container_mounts(pod, c, paths)
        except (convert.ConfigError, volumes.VolumeError) as exc:
            notes.waiting[c.name] = Waiting("CreateContainerConfigError", str(exc))
            self.recorder.record(ref, "Warning", "Failed", f"Error: {exc}")
            return CONFIG_RETRY
        tpath = c.termination_message_path or "/dev/termination-log"
        host_log = await asyncio.to_thread(volumes.termination_log, self.ctx.root_dir, pod.metadata.uid, c.name,
                                           attempt)
        mounts.append(rt.Mount(container_path=tpath, host_path=str(host_log)))
        cfg = convert.container_config(pod, c, attempt, env, mounts)
        try:
            cid = await self.runtime.create_container(sandbox_id, cfg, sandbox_cfg)
        except ImagePullError as exc:
            notes.waiting[c.name] = Waiting("ErrImagePull", str(exc))
            return BACKOFF_INITIAL
        except RuntimeError_ as exc:
            notes.waiting[c.name] = Waiting("CreateContainerError", str(exc))
            self.recorder.record(ref, "Warning", "Failed", f"Error: {exc}")
            return CONFIG_RETRY
        self.recorder.record(ref, "Normal", "Created", f"Created container {c.name}")
        try:
            await self.runtime.start_container(cid)
        except RuntimeError_ as exc:
            notes.waiting[c.name] = Waiting("RunContainerError", str(exc))
            self.recorder.record(ref, "Warning", "Failed", f"Error: {exc}")
            await self.runtime.remove_container(cid)
            return CONFIG_RETRY
        self.recorder.record(ref, "Normal", "Started", f"Started container {c.name}")
        notes.waiting.pop(c.name, None)
        status = await self.runtime.container_status(cid)
        state.containers.setdefault(c.name, []).insert(0, status)
        if c.lifecycle.HasField("post_start"):
            err = await self._run_hook(pod, c, cid, c.lifecycle.post_start, _grace(pod))
            if err:
                self.recorder.record(ref, "Warning", "FailedPostStartHook", err)
                await self.runtime.stop_container(cid, _grace(pod))
                state.containers[c.name][0] = await self.runtime.container_status(cid)
        return None

    async def _run_hook(self, pod: core.Pod, c: core.Container, cid: str, handler: core.LifecycleHandler,
                        timeout: float) -> str:
        """Runs a postStart/preStop handler; returns an error message or ""."""
        from kubelite.kubelet.probes import http_get, resolve_port, tcp_check

        try:
            if handler.HasField("exec"):
                res = await self.runtime.exec_sync(cid, list(handler.exec.command), timeout)
                if res.exit_code != 0:
                    return f"exec {list(handler.exec.command)} exited with {res.exit_code}: {res.stdout!r}"
            elif handler.HasField("http_get"):
                h = handler.http_get
                host = h.host or self._pod_ip(pod)
                code = await http_get(host, resolve_port(h.port, c), h.path or "/", timeout,
                                      h.scheme or "HTTP", [(x.name, x.value) for x in h.http_headers])
                if not 200 <= code < 400:
                    return f"HTTP lifecycle hook ({h.path}) for Container {c.name} returned {code}"
            elif handler.HasField("tcp_socket"):
                t = handler.tcp_socket
                ok, msg = await tcp_check(t.host or self._pod_ip(pod), resolve_port(t.port, c), timeout)
                if not ok:
                    return msg
            elif handler.HasField("sleep"):
                await asyncio.sleep(min(float(handler.sleep.seconds), timeout))
        except (RuntimeError_, OSError, ValueError, TimeoutError) as exc:
            return f"hook failed: {exc}"
        return ""

    def _pod_ip(self, pod: core.Pod) -> str:
        return pod.status.pod_ip or "127.0.0.1"

    async def _stop_one(self, pod: core.Pod, c: core.Container | None, cur: rt.ContainerStatus, grace: int) -> None:
        started = time.monotonic()
        if c is not None and c.lifecycle.HasField("pre_stop") and grace > 0:
            err = await self._run_hook(pod, c, cur.id, c.lifecycle.pre_stop, grace)
            if err:
                self.recorder.record(pod_ref(pod, f"spec.containers{{{c.name}}}"), "Warning", "FailedPreStopHook",
                                     err)
        left = max(0, round(grace - (time.monotonic() - started)))
        with contextlib.suppress(NotFoundError):
            await self.runtime.stop_container(cur.id, left if grace > 0 else 0)

    async def _kill_containers(self, pod: core.Pod, state: PodRuntimeState, grace: int, why: str) -> None:
        specs = {c.name: c for c in list(pod.spec.init_containers) + list(pod.spec.containers)}
        running = [(specs.get(c.metadata.name), c) for c in state.running()]
        for _, c in running:
            self.recorder.record(pod_ref(pod, f"spec.containers{{{c.metadata.name}}}"), "Normal", "Killing",
                                 f"Stopping container {c.metadata.name}")
        if running:
            log.info("stopping %d containers of %s/%s (%s, grace %ds)", len(running), pod.metadata.namespace,
                     pod.metadata.name, why, grace)
        await asyncio.gather(*(self._stop_one(pod, spec, c, grace) for spec, c in running))
        for name, items in state.containers.items():
            for i, c in enumerate(items):
                if c.state == rt.CONTAINER_RUNNING:
                    with contextlib.suppress(NotFoundError):
                        items[i] = await self.runtime.container_status(c.id)
            del name

    async def _terminate(self, pod: core.Pod, state: PodRuntimeState, notes: PodNotes) -> None:
        grace = _grace(pod)
        await self._kill_containers(pod, state, grace, "the pod is being deleted")
        for sb in state.sandboxes:
            if sb.state == rt.SANDBOX_READY:
                await self.runtime.stop_pod_sandbox(sb.id)
        notes.waiting.clear()
        with contextlib.suppress(StatusError):
            await self._write_status(pod, state, notes)
        try:
            await self.client.delete(core.Pod, pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0,
                                     uid=pod.metadata.uid)
        except StatusError as exc:
            if exc.reason not in ("NotFound", "Conflict"):
                raise

    async def _prune(self, state: PodRuntimeState) -> None:
        """Keeps the newest KEEP_INSTANCES exited instances of each container; removes the rest."""
        for items in state.containers.values():
            for c in items[KEEP_INSTANCES:]:
                if c.state != rt.CONTAINER_RUNNING:
                    await self.runtime.remove_container(c.id)
            del items[KEEP_INSTANCES:]

    # ---- status ----

    def build_status(self, pod: core.Pod, state: PodRuntimeState, notes: PodNotes) -> core.PodStatus:
        uid = pod.metadata.uid
        readiness = {}
        for c in pod.spec.containers:
            key = (uid, c.name)
            if c.HasField("readiness_probe"):
                readiness[c.name] = self.probes.ready.get(key, False)
            if c.HasField("startup_probe") and not self.probes.started.get(key, False):
                readiness[c.name] = False
        return pod_status(pod, state, waiting=notes.waiting, readiness=readiness, messages=notes.messages,
                          runtime_name=self.ctx.runtime_name, host_ip=self.ctx.host_ip, now=_now_ts())

    async def _write_status(self, pod: core.Pod, state: PodRuntimeState, notes: PodNotes) -> None:
        status = self.build_status(pod, state, notes)
        blob = status.SerializeToString(deterministic=True)
        if same_status(status, pod.status) or blob == notes.last_status:
            return
        if status.phase == "Running" and not notes.seen_running and self._on_started is not None:
            notes.seen_running = True
            self._on_started(pod, time.time())
        updated = core.Pod()
        updated.CopyFrom(pod)
        updated.status.CopyFrom(status)
        api_uid = pod.metadata.uid
        if api_uid in self.status_uid:
            api_uid = self.status_uid[api_uid]
            if not api_uid:
                return  # a static pod without its mirror yet
            updated.metadata.uid = api_uid
            updated.metadata.resource_version = ""
        try:
            await self.client.update_status(updated)
        except StatusError as exc:
            if exc.reason != "Conflict":
                raise
            fresh = await self.client.get(core.Pod, pod.metadata.name, pod.metadata.namespace)
            if fresh.metadata.uid != api_uid:
                return
            fresh.status.CopyFrom(status)
            await self.client.update_status(fresh)
        notes.last_status = blob

    async def write_rejection(self, pod: core.Pod, status: core.PodStatus) -> None:
        updated = core.Pod()
        updated.CopyFrom(pod)
        updated.status.CopyFrom(status)
        updated.metadata.resource_version = ""
        await self.client.update_status(updated)


class _EnvLoader:
    """Reads what the containers' env refers to once per sync, and only if a container starts."""

    def __init__(self, syncer: PodSyncer, pod: core.Pod, base: convert.EnvSources) -> None:
        self._syncer = syncer
        self._pod = pod
        self._base = base
        self._loaded: convert.EnvSources | None = None

    async def get(self) -> convert.EnvSources:
        if self._loaded is not None:
            return self._loaded
        pod = self._pod
        ns = pod.metadata.namespace
        cm_names: set[str] = set()
        secret_names: set[str] = set()
        for c in list(pod.spec.init_containers) + list(pod.spec.containers):
            for ef in c.env_from:
                if ef.HasField("config_map_ref"):
                    cm_names.add(ef.config_map_ref.name)
                if ef.HasField("secret_ref"):
                    secret_names.add(ef.secret_ref.name)
            for e in c.env:
                if e.value_from.HasField("config_map_key_ref"):
                    cm_names.add(e.value_from.config_map_key_ref.name)
                if e.value_from.HasField("secret_key_ref"):
                    secret_names.add(e.value_from.secret_key_ref.name)
        cms, secrets = await self._syncer._fetch(ns, cm_names - set(self._base.config_maps),
                                                 secret_names - set(self._base.secrets))
        svc_env: dict[str, str] = {}
        # The API server's own Service is always announced (KUBERNETES_SERVICE_HOST/PORT: what
        # in-cluster clients read), whatever enableServiceLinks says, as Kubernetes' kubelet does.
        with contextlib.suppress(StatusError):
            master = await self._syncer.client.get(core.Service, "kubernetes", "default", resource_version="0")
            svc_env.update(convert.service_env([master]))
        if not pod.spec.HasField("enable_service_links") or pod.spec.enable_service_links:
            with contextlib.suppress(StatusError):
                svc_env.update(convert.service_env((await self._syncer.client.list(core.Service, ns)).items))
        self._loaded = convert.EnvSources(
            config_maps={**self._base.config_maps, **cms}, secrets={**self._base.secrets, **secrets},
            service_env=svc_env, pod_ip=self._base.pod_ip, host_ip=self._base.host_ip,
            node_name=self._base.node_name)
        return self._loaded


def _human(seconds: int) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds // 60}m0s"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60}s"
    return f"{seconds}s"


Sleep = Callable[[float], Awaitable[None]]
