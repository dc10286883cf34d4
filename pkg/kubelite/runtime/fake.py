"""A runtime that starts nothing: hollow nodes (``--runtime=fake``) and unit tests.

Like Kubernetes' kubemark, a hollow kubelet is a real kubelet whose runtime
only keeps records: sandboxes get addresses from the node's pod CIDR and
containers report Running from the moment they start. Everything is in plain
dicts and costs no thread and no task, so hundreds of hollow kubelets fit in
one process. Tests steer it (``exit_container``, ``missing_images``,
``fail_next``) to play crashes, missing images and runtime errors.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from kubelite.api.runtime.v1 import api_pb2 as rt
from kubelite.runtime.interface import (
    RUNTIME_API_VERSION,
    ImagePullError,
    InvalidArgumentError,
    NotFoundError,
    RuntimeError_,
    UnavailableError,
)

_FAKE_IMAGE_PREFIX = "sha256:"


def _now() -> int:
    return time.time_ns()


@dataclass
class _Sandbox:
    id: str
    config: rt.PodSandboxConfig
    ip: str
    created_at: int
    ready: bool = True


@dataclass
class _Container:
    id: str
    sandbox_id: str
    config: rt.ContainerConfig
    image_ref: str
    created_at: int
    state: rt.ContainerState = rt.CONTAINER_CREATED
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    logs: list[bytes] = field(default_factory=list)


class FakeRuntime:
    """RuntimeService and ImageService in memory."""

    def __init__(self, *, pod_cidr: str = "", node_name: str = "fake") -> None:
        self.node_name = node_name
        self._ids = itertools.count(1)
        self.sandboxes: dict[str, _Sandbox] = {}
        self.containers: dict[str, _Container] = {}
        self.images: dict[str, rt.Image] = {}
        # Images that "do not exist": pulling them fails with ImagePullError.
        self.missing_images: set[str] = set()
        # Method name -> exception raised by its next call (one shot).
        self.fail_next: dict[str, RuntimeError_] = {}
        # Method name -> number of calls, for tests asserting what the kubelet did.
        self.calls: dict[str, int] = {}
        # Commands run through exec_sync, and the exit code a command gives
        # (keyed by its first word); default 0.
        self.exec_results: dict[str, int] = {}
        self._hosts: object = None
        self._free: list[str] = []
        self._pod_cidr = ""
        # One queue per events() consumer; plain lists cost nothing when no one listens.
        self._listeners: list[asyncio.Queue[rt.ContainerEventResponse]] = []
        if pod_cidr:
            self._set_cidr(pod_cidr)

    def _record(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        exc = self.fail_next.pop(name, None)
        if exc is not None:
            raise exc

    def _new_id(self) -> str:
        return f"{next(self._ids):064x}"

    def _set_cidr(self, cidr: str) -> None:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            raise InvalidArgumentError(f"pod_cidr: invalid CIDR {cidr!r}") from exc
        if str(net) == self._pod_cidr:
            return
        self._pod_cidr = str(net)
        # Addresses are handed out lazily (a /16 has 65k of them); .1 is the gateway.
        self._hosts = iter(itertools.islice(net.hosts(), 1, None))
        self._free = []

    def _allocate_ip(self) -> str:
        if self._free:
            return self._free.pop()
        if self._hosts is None:
            raise UnavailableError("no pod CIDR assigned to this node yet")
        try:
            return str(next(self._hosts))  # type: ignore[call-overload]
        except StopIteration:
            raise RuntimeError_(f"pod CIDR {self._pod_cidr} has no free address") from None

    def _emit(self, c: _Container, kind: rt.ContainerEventType) -> None:
        if not self._listeners:
            return
        sb = self.sandboxes.get(c.sandbox_id)
        event = rt.ContainerEventResponse(container_id=c.id, container_event_type=kind, created_at=_now(),
                                          pod_sandbox_metadata=sb.config.metadata if sb else None,
                                          container_name=c.config.metadata.name)
        for q in self._listeners:
            q.put_nowait(event)

    # ---- test controls ----

    def exit_container(self, container_id: str, exit_code: int, reason: str = "") -> None:
        c = self.containers[container_id]
        c.state = rt.CONTAINER_EXITED
        c.exit_code = exit_code
        c.finished_at = _now()
        c.reason = reason or ("Completed" if exit_code == 0 else "Error")
        self._emit(c, rt.CONTAINER_STOPPED_EVENT)

    def remove_behind_back(self, container_id: str) -> None:
        """As `docker rm -f` by an operator: the container is gone, with an event."""
        c = self.containers.pop(container_id)
        self._emit(c, rt.CONTAINER_DELETED_EVENT)

    # ---- runtime ----

    async def version(self) -> rt.VersionResponse:
        return rt.VersionResponse(runtime_name="fake", runtime_version="0.1.0",
                                  runtime_api_version=RUNTIME_API_VERSION)

    async def update_runtime_config(self, pod_cidr: str) -> None:
        self._record("update_runtime_config")
        if pod_cidr:
            self._set_cidr(pod_cidr)

    async def run_pod_sandbox(self, config: rt.PodSandboxConfig) -> str:
        self._record("run_pod_sandbox")
        md = config.metadata
        if not md.name or not md.uid or not md.namespace:
            raise InvalidArgumentError("config.metadata: name, uid and namespace are required")
        ip = "" if config.security_context.host_network else self._allocate_ip()
        sid = self._new_id()
        cfg = rt.PodSandboxConfig()
        cfg.CopyFrom(config)
        self.sandboxes[sid] = _Sandbox(id=sid, config=cfg, ip=ip, created_at=_now())
        return sid

    def _sandbox(self, sandbox_id: str) -> _Sandbox:
        try:
            return self.sandboxes[sandbox_id]
        except KeyError:
            raise NotFoundError(f"sandbox {sandbox_id} not found") from None

    def _container(self, container_id: str) -> _Container:
        try:
            return self.containers[container_id]
        except KeyError:
            raise NotFoundError(f"container {container_id} not found") from None

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        self._record("stop_pod_sandbox")
        sb = self.sandboxes.get(sandbox_id)
        if sb is None:
            return
        for c in self.containers.values():
            if c.sandbox_id == sandbox_id and c.state == rt.CONTAINER_RUNNING:
                self.exit_container(c.id, 137)
        if sb.ready:
            sb.ready = False
            if sb.ip:
                self._free.append(sb.ip)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        self._record("remove_pod_sandbox")
        await self.stop_pod_sandbox(sandbox_id)
        for cid in [c.id for c in self.containers.values() if c.sandbox_id == sandbox_id]:
            del self.containers[cid]
        self.sandboxes.pop(sandbox_id, None)

    async def pod_sandbox_status(self, sandbox_id: str) -> rt.PodSandboxStatus:
        sb = self._sandbox(sandbox_id)
        return rt.PodSandboxStatus(
            id=sb.id, metadata=sb.config.metadata, state=rt.SANDBOX_READY if sb.ready else rt.SANDBOX_NOTREADY,
            created_at=sb.created_at, network=rt.PodSandboxNetworkStatus(ip=sb.ip), labels=sb.config.labels,
            annotations=sb.config.annotations, host_network=sb.config.security_context.host_network)

    async def list_pod_sandbox(self, flt: rt.PodSandboxFilter | None = None) -> list[rt.PodSandbox]:
        flt = flt or rt.PodSandboxFilter()
        out = []
        for sb in self.sandboxes.values():
            state = rt.SANDBOX_READY if sb.ready else rt.SANDBOX_NOTREADY
            if flt.id and sb.id != flt.id:
                continue
            if flt.HasField("state") and flt.state != state:
                continue
            if any(sb.config.labels.get(k) != v for k, v in flt.label_selector.items()):
                continue
            out.append(rt.PodSandbox(id=sb.id, metadata=sb.config.metadata, state=state, created_at=sb.created_at,
                                     labels=sb.config.labels, annotations=sb.config.annotations))
        return out

    async def create_container(self, sandbox_id: str, config: rt.ContainerConfig,
                               sandbox_config: rt.PodSandboxConfig) -> str:
        self._record("create_container")
        sb = self._sandbox(sandbox_id)
        if not sb.ready:
            raise RuntimeError_(f"sandbox {sandbox_id} is not ready")
        if not config.metadata.name:
            raise InvalidArgumentError("config.metadata.name: required")
        image = config.image.image
        if image not in self.images:
            raise ImagePullError(f"image {image!r} is not present")
        cid = self._new_id()
        cfg = rt.ContainerConfig()
        cfg.CopyFrom(config)
        self.containers[cid] = _Container(id=cid, sandbox_id=sandbox_id, config=cfg,
                                          image_ref=self.images[image].id, created_at=_now())
        return cid

    async def start_container(self, container_id: str) -> None:
        self._record("start_container")
        c = self._container(container_id)
        if c.state != rt.CONTAINER_CREATED:
            raise RuntimeError_(f"container {container_id} was already started")
        c.state = rt.CONTAINER_RUNNING
        c.started_at = _now()
        self._emit(c, rt.CONTAINER_STARTED_EVENT)

    async def stop_container(self, container_id: str, timeout: int) -> None:
        self._record("stop_container")
        c = self._container(container_id)
        if c.state == rt.CONTAINER_RUNNING:
            # A hollow process honours SIGTERM at once.
            self.exit_container(container_id, 143 if timeout > 0 else 137)
        elif c.state == rt.CONTAINER_CREATED:
            self.exit_container(container_id, 0)

    async def remove_container(self, container_id: str) -> None:
        self._record("remove_container")
        self.containers.pop(container_id, None)

    async def container_status(self, container_id: str) -> rt.ContainerStatus:
        c = self._container(container_id)
        return rt.ContainerStatus(
            id=c.id, metadata=c.config.metadata, state=c.state, created_at=c.created_at, started_at=c.started_at,
            finished_at=c.finished_at, exit_code=c.exit_code, image=c.config.image, image_ref=c.image_ref,
            reason=c.reason, labels=c.config.labels, annotations=c.config.annotations, mounts=c.config.mounts,
            pod_sandbox_id=c.sandbox_id)

    async def list_containers(self, flt: rt.ContainerFilter | None = None) -> list[rt.Container]:
        flt = flt or rt.ContainerFilter()
        out = []
        for c in self.containers.values():
            if flt.id and c.id != flt.id:
                continue
            if flt.pod_sandbox_id and c.sandbox_id != flt.pod_sandbox_id:
                continue
            if flt.HasField("state") and flt.state != c.state:
                continue
            if any(c.config.labels.get(k) != v for k, v in flt.label_selector.items()):
                continue
            out.append(rt.Container(id=c.id, pod_sandbox_id=c.sandbox_id, metadata=c.config.metadata,
                                    image=c.config.image, image_ref=c.image_ref, state=c.state,
                                    created_at=c.created_at, labels=c.config.labels,
                                    annotations=c.config.annotations))
        return out

    async def container_stats(self, container_id: str) -> rt.ContainerStats:
        self._container(container_id)
        return rt.ContainerStats(id=container_id, timestamp=_now())

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float = 0) -> rt.ExecSyncResponse:
        self._record("exec_sync")
        c = self._container(container_id)
        if c.state != rt.CONTAINER_RUNNING:
            raise RuntimeError_(f"container {container_id} is not running")
        if not cmd:
            raise InvalidArgumentError("cmd: required")
        return rt.ExecSyncResponse(exit_code=self.exec_results.get(cmd[0], 0))

    async def exec(self, frames: AsyncIterator[rt.StreamFrame]) -> AsyncIterator[rt.StreamFrame]:
        first = await anext(frames, None)
        if first is None or first.WhichOneof("frame") != "start":
            raise InvalidArgumentError("exec: the first frame must be start")
        self._container(first.start.container_id)
        yield rt.StreamFrame(exit=rt.ExitStatus(exit_code=self.exec_results.get(first.start.cmd[0], 0)
                                                if first.start.cmd else 0))

    async def attach(self, frames: AsyncIterator[rt.StreamFrame]) -> AsyncIterator[rt.StreamFrame]:
        async for frame in self.exec(frames):
            yield frame

    async def port_forward(self, frames: AsyncIterator[rt.PortForwardFrame]) -> AsyncIterator[rt.PortForwardFrame]:
        first = await anext(frames, None)
        if first is None or first.WhichOneof("frame") != "start":
            raise InvalidArgumentError("port_forward: the first frame must be start")
        self._sandbox(first.start.pod_sandbox_id)
        yield rt.PortForwardFrame(error="the fake runtime forwards no ports")

    async def container_logs(self, request: rt.ContainerLogsRequest) -> AsyncIterator[rt.LogChunk]:
        c = self._container(request.container_id)
        lines = c.logs
        if request.HasField("tail_lines") and request.tail_lines >= 0:
            lines = lines[len(lines) - int(request.tail_lines):] if request.tail_lines else []
        for line in lines:
            yield rt.LogChunk(data=line)

    async def container_events(self) -> AsyncIterator[rt.ContainerEventResponse]:
        q: asyncio.Queue[rt.ContainerEventResponse] = asyncio.Queue()
        self._listeners.append(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._listeners.remove(q)

    async def close(self) -> None:
        return None

    # ---- images ----

    async def list_images(self) -> list[rt.Image]:
        return list(self.images.values())

    async def image_status(self, image: str) -> rt.Image | None:
        return self.images.get(image)

    async def pull_image(self, image: str) -> str:
        self._record("pull_image")
        if image in self.missing_images:
            raise ImagePullError(f"image {image!r} not found")
        if image not in self.images:
            digest = f"{_FAKE_IMAGE_PREFIX}{abs(hash(image)):064x}"[:71]
            self.images[image] = rt.Image(id=digest, repo_tags=[image], size=1 << 20)
        return self.images[image].id

    async def remove_image(self, image: str) -> None:
        self.images.pop(image, None)
