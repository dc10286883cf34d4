"""Liveness, readiness and startup probes: one small worker per probe.

Each worker sleeps ``initialDelaySeconds``, then probes every
``periodSeconds`` (exec through the runtime, httpGet and tcpSocket against the
pod IP), counts consecutive results against ``successThreshold`` and
``failureThreshold``, and writes the verdict into ``ProbeResults``; when a
verdict changes it asks for a pod sync, and the sync acts (restart on
liveness, Ready on readiness), so probes never touch containers themselves.
Workers are named tasks owned by the manager, stopped when the pod goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Callable

import aiohttp

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.runtime.v1 import api_pb2 as rt
from kubelite.kubelet.events import EventRecorder, pod_ref
from kubelite.kubelet.pods import ProbeResults
from kubelite.runtime.interface import LABEL_CONTAINER_NAME, LABEL_POD_UID, Runtime, RuntimeError_

log = logging.getLogger(__name__)


def resolve_port(port: str, c: core.Container) -> int:
    """An int-or-string probe port: a number, or the name of one of the container's ports."""
    if port.isdigit():
        return int(port)
    for p in c.ports:
        if p.name == port:
            return p.container_port
    raise ValueError(f"port {port!r} is not a number nor a named port of container {c.name}")


def probe_url(host: str, port: int, path: str, scheme: str = "HTTP") -> str:
    return f"{scheme.lower()}://{host}:{port}{path if path.startswith('/') else '/' + path}"


def dial_error(host: str, port: int, exc: BaseException) -> str:
    """A failed connection in the words of Go's net package, which kubelet probe events carry.

    People search for "connect: connection refused" and "i/o timeout"; the
    Python exceptions' own texts say the same thing differently.
    """
    if isinstance(exc, aiohttp.ClientConnectorError):
        exc = exc.os_error
    if isinstance(exc, TimeoutError):
        return f"dial tcp {host}:{port}: i/o timeout"
    reason = {errno.ECONNREFUSED: "connection refused", errno.EHOSTUNREACH: "no route to host",
              errno.ENETUNREACH: "network is unreachable", errno.ECONNRESET: "connection reset by peer"}
    if isinstance(exc, OSError) and exc.errno in reason:
        return f"dial tcp {host}:{port}: connect: {reason[exc.errno]}"
    return f"dial tcp {host}:{port}: {exc}"


async def http_get(host: str, port: int, path: str, timeout: float, scheme: str = "HTTP",
                   headers: list[tuple[str, str]] | None = None) -> int:
    url = probe_url(host, port, path, scheme)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session, \
            session.get(url, headers=dict(headers or []), ssl=False, allow_redirects=False) as resp:
        return resp.status


async def tcp_check(host: str, port: int, timeout: float) -> tuple[bool, str]:
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True, ""
    except (OSError, TimeoutError) as exc:
        return False, dial_error(host, port, exc)


class ProbeManager:
    def __init__(self, runtime: Runtime, results: ProbeResults, recorder: EventRecorder,
                 enqueue: Callable[[str], None], host_ip: str) -> None:
        self.runtime = runtime
        self.results = results
        self.recorder = recorder
        self.enqueue = enqueue
        self.host_ip = host_ip
        self._workers: dict[tuple[str, str, str], asyncio.Task[None]] = {}

    def ensure(self, pod: core.Pod) -> None:
        """Starts the workers a running pod's spec asks for (idempotent)."""
        uid = pod.metadata.uid
        for c in pod.spec.containers:
            for kind in ("startup", "liveness", "readiness"):
                if not c.HasField(f"{kind}_probe"):
                    continue
                key = (uid, c.name, kind)
                if key in self._workers:
                    continue
                probe: core.Probe = getattr(c, f"{kind}_probe")
                self._workers[key] = asyncio.get_running_loop().create_task(
                    self._run(pod, c, kind, probe), name=f"probe-{kind}-{pod.metadata.namespace}/"
                                                         f"{pod.metadata.name}/{c.name}")

    async def remove(self, uid: str) -> None:
        tasks = [self._workers.pop(k) for k in [k for k in self._workers if k[0] == uid]]
        await _cancel(tasks)

    async def stop(self) -> None:
        tasks = list(self._workers.values())
        self._workers.clear()
        await _cancel(tasks)

    async def _container_id(self, uid: str, name: str) -> str:
        running = await self.runtime.list_containers(rt.ContainerFilter(
            state=rt.CONTAINER_RUNNING, label_selector={LABEL_POD_UID: uid, LABEL_CONTAINER_NAME: name}))
        return running[0].id if running else ""

    async def _probe_once(self, pod: core.Pod, c: core.Container, cid: str, probe: core.Probe) -> tuple[bool, str]:
        timeout = float(probe.timeout_seconds or 1)
        host = self.host_ip if pod.spec.host_network else ""
        if probe.HasField("exec"):
            res = await self.runtime.exec_sync(cid, list(probe.exec.command), timeout)
            if res.timed_out:
                return False, f"command {list(probe.exec.command)} timed out"
            out = (res.stdout + res.stderr).decode(errors="replace").strip()
            return res.exit_code == 0, out
        if not host:
            sandboxes = await self.runtime.list_pod_sandbox(rt.PodSandboxFilter(
                state=rt.SANDBOX_READY, label_selector={LABEL_POD_UID: pod.metadata.uid}))
            if not sandboxes:
                return False, "no pod sandbox"
            host = (await self.runtime.pod_sandbox_status(sandboxes[0].id)).network.ip
        if probe.HasField("http_get"):
            h = probe.http_get
            target, port = h.host or host, resolve_port(h.port, c)
            url = probe_url(target, port, h.path or "/", h.scheme or "HTTP")
            try:
                code = await http_get(target, port, h.path or "/", timeout, h.scheme or "HTTP",
                                      [(x.name, x.value) for x in h.http_headers])
            except TimeoutError:
                return False, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
            except (aiohttp.ClientConnectorError, OSError) as exc:
                return False, f'Get "{url}": {dial_error(target, port, exc)}'
            except aiohttp.ClientError as exc:
                return False, f'Get "{url}": {exc}'
            return 200 <= code < 400, f"HTTP probe failed with statuscode: {code}"
        if probe.HasField("tcp_socket"):
            t = probe.tcp_socket
            return await tcp_check(t.host or host, resolve_port(t.port, c), timeout)
        return True, ""

    async def _run(self, pod: core.Pod, c: core.Container, kind: str, probe: core.Probe) -> None:
        uid = pod.metadata.uid
        key = (uid, c.name)
        period = float(probe.period_seconds or 10)
        success_threshold = probe.success_threshold or 1
        failure_threshold = probe.failure_threshold or 3
        pod_key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        cid = ""
        successes = failures = 0
        ref = pod_ref(pod, f"spec.containers{{{c.name}}}")
        if kind == "readiness":
            self.results.ready.setdefault(key, False)
        try:
            while True:
                current = await self._container_id(uid, c.name)
                if current != cid:
                    # A new container instance starts from scratch, initial delay included.
                    cid = current
                    successes = failures = 0
                    if kind == "startup":
                        self.results.started[key] = False
                    if cid and probe.initial_delay_seconds:
                        await asyncio.sleep(probe.initial_delay_seconds)
                        continue
                if not cid:
                    await asyncio.sleep(min(period, 1.0))
                    continue
                if kind != "startup" and c.HasField("startup_probe") and not self.results.started.get(key, False):
                    await asyncio.sleep(min(period, 1.0))
                    continue
                if kind == "startup" and self.results.started.get(key, False):
                    await asyncio.sleep(period)
                    continue
                try:
                    ok, msg = await self._probe_once(pod, c, cid, probe)
                except (RuntimeError_, ValueError) as exc:
                    ok, msg = False, str(exc)
                if ok:
                    successes, failures = successes + 1, 0
                else:
                    successes, failures = 0, failures + 1
                    self.recorder.record(ref, "Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {msg}")
                if kind == "readiness":
                    verdict = self.results.ready.get(key, False)
                    if ok and successes >= success_threshold and not verdict:
                        self.results.ready[key] = True
                        self.enqueue(pod_key)
                    elif not ok and failures >= failure_threshold and verdict:
                        self.results.ready[key] = False
                        self.enqueue(pod_key)
                elif kind == "startup":
                    if ok:
                        self.results.started[key] = True
                        self.enqueue(pod_key)
                    elif failures >= failure_threshold:
                        self.results.live_failed[key] = f"startup probe failed: {msg}"
                        failures = 0
                        self.enqueue(pod_key)
                elif not ok and failures >= failure_threshold:
                    self.results.live_failed[key] = msg
                    failures = 0
                    self.enqueue(pod_key)
                await asyncio.sleep(period)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("probe worker %s/%s %s failed", pod_key, c.name, kind)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t
