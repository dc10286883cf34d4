"""The Docker implementation of the runtime contract, over the Docker SDK.

A pod is a sandbox container from the project's pause image, attached to a
Docker bridge network created for the node's pod CIDR (Docker's IPAM hands out
addresses inside it), and app containers that join the sandbox's network and
IPC namespaces (``network_mode=container:<sandbox>``; Docker gives them the
sandbox's hostname too). Every container carries dockershim's labels and
name, so ``docker ps`` reads as it did on a dockershim node, and everything
this runtime knows it reads back from Docker: a new instance adopts what an
old one started.

The SDK is blocking: every call runs in a bounded thread pool so that the
kubelet's event loop never waits on the engine, and so that a burst of pod
starts cannot open more than ``max_workers`` engine requests at once. Long
streams (followed logs, exec, attach) get threads of their own, outside the
pool, so that they cannot starve short calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import logging
import os
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors

from kubelite.api.runtime.v1 import api_pb2 as rt
from kubelite.runtime import images as imagebuild
from kubelite.runtime import metrics
from kubelite.runtime.interface import (
    LABEL_ATTEMPT,
    LABEL_CONTAINER_NAME,
    LABEL_NODE,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    LABEL_SANDBOX_ID,
    LABEL_TYPE,
    RUNTIME_API_VERSION,
    SANDBOX_CONTAINER_NAME,
    TYPE_CONTAINER,
    TYPE_SANDBOX,
    ImagePullError,
    InvalidArgumentError,
    NotFoundError,
    RuntimeError_,
    UnavailableError,
    container_name,
)
from kubelite.runtime.reference import Reference, parse_reference

log = logging.getLogger(__name__)
T = TypeVar("T")

LABEL_NETWORK = "io.kubelite.network"
_PROTO = {rt.TCP: "tcp", rt.UDP: "udp", rt.SCTP: "sctp"}
_DEFAULT_CPU_PERIOD = 100_000
OOM_SETTLE_NS = 1_000_000_000


def parse_docker_time(text: str) -> int:
    """Docker's RFC 3339 time with nanoseconds -> ns since the epoch (0 for Docker's zero time)."""
    if not text or text.startswith("0001-01-01"):
        return 0
    main, _, frac = text.rstrip("Z").partition(".")
    tz = "+00:00"
    for sign in ("+", "-"):
        if sign in frac:
            frac, _, rest = frac.partition(sign)
            tz = sign + rest
    if "+" in main[10:] or main.count("-") > 2:  # offset without fraction
        base = datetime.fromisoformat(main)
    else:
        base = datetime.fromisoformat(main + tz)
    digits = (frac + "000000000")[:9] if frac else "0"
    return int(base.timestamp()) * 1_000_000_000 + int(digits)


# What a registry is asked for when a pull may get any of these (a multi-platform list or one manifest).
_MANIFEST_TYPES = ", ".join((
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
))
MIRROR_TIMEOUT = 5.0


def mirror_has(mirror: str, ref: Reference, timeout: float = MIRROR_TIMEOUT) -> bool:
    """Whether the registry at ``mirror`` (``http://host:5000``) holds ``ref``: a HEAD of its manifest,
    as dockerd itself asks first. Blocking. Anything but 200 (404, an error, no answer) is no."""
    url = f"{mirror.rstrip('/')}/v2/{ref.path}/manifests/{ref.locator}"
    req = urllib.request.Request(url, method="HEAD", headers={"Accept": _MANIFEST_TYPES})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            log.warning("registry mirror %s: HEAD %s: HTTP %s", mirror, url, exc.code)
        return False
    except (OSError, ValueError) as exc:
        log.warning("registry mirror %s unreachable: %s", mirror, exc)
        return False


class DockerRuntime:
    """RuntimeService and ImageService on one Docker engine.

    ``node_name`` scopes what this instance lists and adopts (label
    ``io.kubelite.node``): several kubelets may share one engine in tests.
    ``network_name`` is the bridge network for the pod CIDR.
    """

    def __init__(self, *, node_name: str, base_url: str | None = None, network_name: str = "",
                 pause_image: str = "", max_workers: int = 8, build_pause_image: bool = True) -> None:
        self.node_name = node_name
        self.network_name = network_name or f"kubelite-{node_name}"[:60]
        self.pause_image = pause_image or imagebuild.pause_image()
        self._build_pause = build_pause_image
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="docker")
        try:
            self._api = docker.APIClient(base_url=base_url or "unix:///var/run/docker.sock", version="auto",
                                         timeout=120, max_pool_size=max_workers + 8)
        except docker.errors.DockerException as exc:
            raise UnavailableError(f"cannot reach the Docker engine: {exc}") from exc
        self._pod_cidr = ""
        self._pause_ready = False
        self._mirrors: list[str] | None = None
        self._engine_version = ""
        self._oom_seen: dict[str, bool] = {}

    # ---- plumbing ----

    async def _engine(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One engine call in the pool, timed per operation for the metrics."""
        loop = asyncio.get_running_loop()
        op = getattr(fn, "__name__", "call").lstrip("_")
        started = time.monotonic()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        except Exception:
            metrics.ERRORS.labels(op).inc()
            raise
        finally:
            metrics.OPERATIONS.labels(op).observe(time.monotonic() - started)

    async def _detached(self, fn: Callable[[], T]) -> T:
        """Runs a blocking call that may outlive its caller (exec) on a daemon thread of its own."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()

        def deliver(ok: bool, value: Any) -> None:
            if fut.done():
                return
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

        def run() -> None:
            try:
                result = fn()
            except BaseException as exc:  # handed to the awaiting coroutine
                with contextlib.suppress(RuntimeError):  # the loop is gone
                    loop.call_soon_threadsafe(deliver, False, exc)
            else:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(deliver, True, result)

        threading.Thread(target=run, name="docker-exec", daemon=True).start()
        return await self._translate_errors(fut)

    async def _translate_errors(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except docker.errors.NotFound as exc:
            raise NotFoundError(str(exc.explanation or exc)) from exc
        except docker.errors.APIError as exc:
            if exc.status_code == 400:
                raise InvalidArgumentError(str(exc.explanation or exc)) from exc
            raise RuntimeError_(str(exc.explanation or exc)) from exc
        except docker.errors.DockerException as exc:
            raise UnavailableError(str(exc)) from exc
        except OSError as exc:  # requests' ConnectionError is an OSError
            raise UnavailableError(f"Docker engine: {exc}") from exc

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One engine call in the pool, its failure translated where it enters."""
        return await self._translate_errors(self._engine(fn, *args, **kwargs))

    def _scope(self, selector: dict[str, str] | None = None, **labels: str) -> dict[str, list[str]]:
        wanted = {LABEL_NODE: self.node_name, **(selector or {}), **labels}
        return {"label": [f"{k}={v}" for k, v in wanted.items()]}

    async def close(self) -> None:
        # Queued calls are dropped, running ones finish: nothing reaches the engine after close.
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
        await asyncio.to_thread(self._api.close)

    # ---- runtime config ----

    async def version(self) -> rt.VersionResponse:
        if not self._engine_version:
            info = await self._call(self._api.version)
            self._engine_version = str(info.get("Version", ""))
        return rt.VersionResponse(runtime_name="docker", runtime_version=self._engine_version,
                                  runtime_api_version=RUNTIME_API_VERSION)

    async def update_runtime_config(self, pod_cidr: str) -> None:
        if not pod_cidr:
            return
        try:
            net = ipaddress.ip_network(pod_cidr, strict=False)
        except ValueError as exc:
            raise InvalidArgumentError(f"pod_cidr: invalid CIDR {pod_cidr!r}") from exc
        await self._call(self._ensure_network, str(net))
        self._pod_cidr = str(net)

    def _ensure_network(self, cidr: str) -> None:
        nets = self._api.networks(names=[self.network_name])
        for existing in nets:
            if existing.get("Name") != self.network_name:
                continue
            configs = (existing.get("IPAM") or {}).get("Config") or []
            if any(c.get("Subnet") == cidr for c in configs):
                return
            detail = self._api.inspect_network(existing["Id"])
            if detail.get("Containers"):
                raise InvalidArgumentError(
                    f"pod_cidr: network {self.network_name} has subnet {configs} and running containers; "
                    f"cannot move it to {cidr}")
            self._api.remove_network(existing["Id"])
        gateway = str(next(ipaddress.ip_network(cidr).hosts()))
        pool = docker.types.IPAMPool(subnet=cidr, gateway=gateway)
        self._api.create_network(self.network_name, driver="bridge",
                                 ipam=docker.types.IPAMConfig(pool_configs=[pool]),
                                 labels={LABEL_NODE: self.node_name, LABEL_NETWORK: cidr})
        log.info("created network %s for pod CIDR %s", self.network_name, cidr)

    async def remove_network(self) -> None:
        """Removes the pod network (tests and node teardown)."""
        def remove() -> None:
            for n in self._api.networks(names=[self.network_name]):
                if n.get("Name") == self.network_name:
                    self._api.remove_network(n["Id"])
        with contextlib.suppress(NotFoundError):
            await self._call(remove)

    # ---- sandboxes ----

    async def run_pod_sandbox(self, config: rt.PodSandboxConfig) -> str:
        md = config.metadata
        if not md.name or not md.uid or not md.namespace:
            raise InvalidArgumentError("config.metadata: name, uid and namespace are required")
        host_network = config.security_context.host_network
        if not host_network and not self._pod_cidr:
            raise UnavailableError("no pod CIDR assigned to this node yet")
        if not self._pause_ready and self._build_pause:
            # From the cluster's registry when it has it, else built here (pull_image decides).
            if await self.image_status(self.pause_image) is None:
                await self.pull_image(self.pause_image)
            self._pause_ready = True
        return await self._call(self._run_sandbox, config)

    def _run_sandbox(self, config: rt.PodSandboxConfig) -> str:
        md = config.metadata
        labels = {**dict(config.labels), LABEL_POD_UID: md.uid, LABEL_POD_NAME: md.name,
                  LABEL_POD_NAMESPACE: md.namespace, LABEL_CONTAINER_NAME: SANDBOX_CONTAINER_NAME,
                  LABEL_TYPE: TYPE_SANDBOX, LABEL_ATTEMPT: str(md.attempt), LABEL_NODE: self.node_name}
        labels.update({f"annotation.{k}": v for k, v in config.annotations.items()})
        host_network = config.security_context.host_network
        ports: list[Any] = []
        bindings: dict[str, Any] = {}
        for pm in config.port_mappings:
            proto = _PROTO.get(pm.protocol, "tcp")
            ports.append((pm.container_port, proto))
            if pm.host_port and not host_network:
                bindings[f"{pm.container_port}/{proto}"] = (pm.host_ip or "0.0.0.0", pm.host_port)
        # Docker refuses DNS options on the host's network: such a pod keeps the host's resolv.conf.
        dns = config.dns_config if not host_network else rt.DNSConfig()
        host_config = self._api.create_host_config(
            network_mode="host" if host_network else self.network_name,
            ipc_mode="host" if config.security_context.host_ipc else "shareable",
            pid_mode="host" if config.security_context.host_pid else None,
            port_bindings=bindings or None,
            dns=list(dns.servers) or None, dns_search=list(dns.searches) or None, dns_opt=list(dns.options) or None,
            init=False,
        )
        name = container_name(SANDBOX_CONTAINER_NAME, md.name, md.namespace, md.uid, md.attempt)
        kwargs: dict[str, Any] = {
            "image": self.pause_image, "name": name, "labels": labels, "host_config": host_config,
            "ports": ports or None, "detach": True,
        }
        if not host_network:
            kwargs["hostname"] = (config.hostname or md.name)[:63]
            kwargs["networking_config"] = self._api.create_networking_config(
                {self.network_name: self._api.create_endpoint_config()})
        cid = self._create_replacing_stale(name, kwargs)
        try:
            self._api.start(cid)
            if not host_network and (dns.servers or dns.searches or dns.options):
                self._write_resolv_conf(cid, dns)
        except (docker.errors.APIError, OSError):
            with contextlib.suppress(docker.errors.APIError):
                self._api.remove_container(cid, force=True)
            raise
        if not host_network:
            self._enable_hairpin()
        return cid

    def _write_resolv_conf(self, cid: str, dns: rt.DNSConfig) -> None:
        """Writes the pod's resolv.conf as the kubelet asked, over the one Docker generated (as dockershim did).

        On a user-defined network Docker points every container at its embedded resolver
        (127.0.0.11) and only forwards to the servers it was given; a pod must see the cluster
        DNS itself (`nameserver 10.96.0.10`, what Kubernetes users read and tools such as
        nslookup report), with no extra hop that answers container names first. The app
        containers joined to the sandbox's network share this file.
        """
        path = self._api.inspect_container(cid).get("ResolvConfPath") or ""
        if not path:
            return
        lines = []
        if dns.searches:
            lines.append("search " + " ".join(dns.searches))
        lines += [f"nameserver {server}" for server in dns.servers]
        if dns.options:
            lines.append("options " + " ".join(dns.options))
        Path(path).write_text("\n".join(lines) + "\n")

    def _enable_hairpin(self) -> None:
        """Lets a pod reach itself through its Service (kubenet's hairpin-veth).

        kube-proxy may DNAT a pod's connection to a Service back to that same
        pod; the reply then has to leave the bridge through the port it came
        in by, which a Linux bridge refuses unless the port is in hairpin
        mode. Every port of the pod bridge gets it: it is idempotent and the
        bridge carries nothing but pods.
        """
        try:
            net = self._api.inspect_network(self.network_name)
        except docker.errors.APIError:
            return
        bridge = (net.get("Options") or {}).get("com.docker.network.bridge.name") or f"br-{net['Id'][:12]}"
        # Through netlink (iproute2's `bridge`): sysfs is read-only inside node containers.
        for flag in Path(f"/sys/class/net/{bridge}/brif").glob("*/hairpin_mode"):
            try:
                if flag.read_text().strip() == "1":
                    continue
                subprocess.run(["bridge", "link", "set", "dev", flag.parent.name, "hairpin", "on"],
                               check=True, capture_output=True, timeout=5)
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("hairpin mode on %s: %s", flag.parent.name, exc)

    def _create_replacing_stale(self, name: str, kwargs: dict[str, Any]) -> str:
        """Creates a container; a leftover of the same name that is not running (a create
        that failed half-way, a kubelet that died between create and start) is removed first."""
        for attempt in range(2):
            try:
                return str(self._api.create_container(**kwargs)["Id"])
            except docker.errors.ImageNotFound as exc:
                raise ImagePullError(f"image {kwargs['image']} is not present: {exc.explanation}") from exc
            except docker.errors.APIError as exc:
                if exc.status_code != 409 or attempt:
                    raise
                old = self._api.inspect_container(name)
                if old["State"].get("Running"):
                    raise
                log.info("removing stale container %s (%s) to reuse its name", name, old["Id"][:12])
                self._api.remove_container(old["Id"], force=True)
        raise AssertionError("unreachable")

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        containers = await self.list_containers(rt.ContainerFilter(pod_sandbox_id=sandbox_id))
        await asyncio.gather(*(self.stop_container(c.id, 0) for c in containers
                               if c.state == rt.CONTAINER_RUNNING), return_exceptions=True)
        with contextlib.suppress(NotFoundError):
            await self._call(self._api.stop, sandbox_id, timeout=1)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        containers = await self.list_containers(rt.ContainerFilter(pod_sandbox_id=sandbox_id))
        for c in containers:
            with contextlib.suppress(NotFoundError):
                await self._call(self._api.remove_container, c.id, force=True)
        with contextlib.suppress(NotFoundError):
            await self._call(self._api.remove_container, sandbox_id, force=True)

    async def pod_sandbox_status(self, sandbox_id: str) -> rt.PodSandboxStatus:
        info = await self._call(self._api.inspect_container, sandbox_id)
        labels: dict[str, str] = info["Config"].get("Labels") or {}
        if labels.get(LABEL_TYPE) != TYPE_SANDBOX:
            raise NotFoundError(f"{sandbox_id} is not a pod sandbox")
        nets = (info.get("NetworkSettings") or {}).get("Networks") or {}
        ip = str((nets.get(self.network_name) or {}).get("IPAddress") or "")
        host_network = info["HostConfig"].get("NetworkMode") == "host"
        return rt.PodSandboxStatus(
            id=info["Id"], metadata=_sandbox_metadata(labels),
            state=rt.SANDBOX_READY if info["State"].get("Running") else rt.SANDBOX_NOTREADY,
            created_at=parse_docker_time(info.get("Created", "")),
            network=rt.PodSandboxNetworkStatus(ip=ip), labels=_user_labels(labels),
            annotations=_annotations(labels), host_network=host_network)

    async def list_pod_sandbox(self, flt: rt.PodSandboxFilter | None = None) -> list[rt.PodSandbox]:
        flt = flt or rt.PodSandboxFilter()
        filters = self._scope(dict(flt.label_selector), **{LABEL_TYPE: TYPE_SANDBOX})
        if flt.id:
            filters["id"] = [flt.id]
        rows = await self._call(self._api.containers, all=True, filters=filters)
        out = []
        for row in rows:
            labels = row.get("Labels") or {}
            state = rt.SANDBOX_READY if row.get("State") == "running" else rt.SANDBOX_NOTREADY
            if flt.HasField("state") and flt.state != state:
                continue
            out.append(rt.PodSandbox(id=row["Id"], metadata=_sandbox_metadata(labels), state=state,
                                     created_at=int(row.get("Created", 0)) * 1_000_000_000,
                                     labels=_user_labels(labels), annotations=_annotations(labels)))
        return out

    # ---- containers ----

    async def create_container(self, sandbox_id: str, config: rt.ContainerConfig,
                               sandbox_config: rt.PodSandboxConfig) -> str:
        if not config.metadata.name:
            raise InvalidArgumentError("config.metadata.name: required")
        if not config.image.image:
            raise InvalidArgumentError("config.image.image: required")
        return await self._call(self._create_container, sandbox_id, config, sandbox_config)

    def _create_container(self, sandbox_id: str, config: rt.ContainerConfig,
                          sandbox_config: rt.PodSandboxConfig) -> str:
        sandbox = self._api.inspect_container(sandbox_id)
        slabels = sandbox["Config"].get("Labels") or {}
        if slabels.get(LABEL_TYPE) != TYPE_SANDBOX:
            raise NotFoundError(f"sandbox {sandbox_id} not found")
        md = config.metadata
        labels = {**dict(config.labels), LABEL_POD_UID: slabels[LABEL_POD_UID],
                  LABEL_POD_NAME: slabels[LABEL_POD_NAME], LABEL_POD_NAMESPACE: slabels[LABEL_POD_NAMESPACE],
                  LABEL_CONTAINER_NAME: md.name, LABEL_TYPE: TYPE_CONTAINER, LABEL_SANDBOX_ID: sandbox["Id"],
                  LABEL_ATTEMPT: str(md.attempt), LABEL_NODE: self.node_name}
        labels.update({f"annotation.{k}": v for k, v in config.annotations.items()})
        res = config.resources
        sc = config.security_context
        host_network = sandbox["HostConfig"].get("NetworkMode") == "host"
        host_kwargs: dict[str, Any] = {
            "network_mode": "host" if host_network else f"container:{sandbox['Id']}",
            "ipc_mode": f"container:{sandbox['Id']}",
            "binds": [f"{m.host_path}:{m.container_path}:{'ro' if m.readonly else 'rw'}" for m in config.mounts]
            or None,
            "privileged": sc.privileged,
            "read_only": sc.readonly_rootfs,
            "cap_add": list(sc.capabilities.add_capabilities) or None,
            "cap_drop": list(sc.capabilities.drop_capabilities) or None,
            "group_add": [str(g) for g in sc.supplemental_groups] or None,
        }
        if res.cpu_shares:
            host_kwargs["cpu_shares"] = int(res.cpu_shares)
        if res.cpu_quota:
            host_kwargs["cpu_period"] = int(res.cpu_period or _DEFAULT_CPU_PERIOD)
            host_kwargs["cpu_quota"] = int(res.cpu_quota)
        if res.memory_limit_in_bytes:
            # No swap on top of the limit: a container over its limit is OOM-killed,
            # as on a Kubernetes node (where swap is off).
            host_kwargs["mem_limit"] = int(res.memory_limit_in_bytes)
            host_kwargs["memswap_limit"] = int(res.memory_limit_in_bytes)
        user = ""
        if sc.HasField("run_as_user"):
            user = str(sc.run_as_user) + (f":{sc.run_as_group}" if sc.HasField("run_as_group") else "")
        elif sc.run_as_username:
            user = sc.run_as_username
        name = container_name(md.name, slabels[LABEL_POD_NAME], slabels[LABEL_POD_NAMESPACE],
                              slabels[LABEL_POD_UID], md.attempt)
        kwargs: dict[str, Any] = {
            "image": config.image.image, "name": name, "labels": labels,
            "host_config": self._api.create_host_config(**host_kwargs),
            "environment": [f"{kv.key}={kv.value}" for kv in config.envs],
            "working_dir": config.working_dir or None, "user": user or None,
            "tty": config.tty, "stdin_open": config.stdin, "detach": True,
        }
        # Kubernetes' command replaces the image's ENTRYPOINT (and drops its CMD);
        # args alone replace only CMD.
        if config.command:
            kwargs["entrypoint"] = list(config.command)
            kwargs["command"] = list(config.args) or None
        elif config.args:
            kwargs["command"] = list(config.args)
        return self._create_replacing_stale(name, kwargs)

    async def start_container(self, container_id: str) -> None:
        await self._call(self._api.start, container_id)

    async def stop_container(self, container_id: str, timeout: int) -> None:
        try:
            await self._call(self._api.stop, container_id, timeout=max(0, int(timeout)))
        except RuntimeError_ as exc:
            # Stopping a stopped container is a success (304 in the engine API).
            if "is not running" not in str(exc):
                raise

    async def remove_container(self, container_id: str) -> None:
        with contextlib.suppress(NotFoundError):
            await self._call(self._api.remove_container, container_id, force=True)

    async def container_status(self, container_id: str) -> rt.ContainerStatus:
        info = await self._call(self._api.inspect_container, container_id)
        labels: dict[str, str] = info["Config"].get("Labels") or {}
        if labels.get(LABEL_TYPE) != TYPE_CONTAINER:
            raise NotFoundError(f"{container_id} is not a pod container")
        state = info["State"]
        # The engine records OOMKilled from containerd's OOM event, which can land just
        # after the exit itself: a fresh SIGKILL exit gets a second look before it is
        # reported as a plain Error.
        finished = parse_docker_time(state.get("FinishedAt", ""))
        if (state.get("Status") == "exited" and state.get("ExitCode") == 137 and not state.get("OOMKilled")
                and 0 < time.time_ns() - finished < OOM_SETTLE_NS):
            await asyncio.sleep(OOM_SETTLE_NS / 1e9)
            info = await self._call(self._api.inspect_container, container_id)
            state = info["State"]
        oom = bool(state.get("OOMKilled"))
        if (not oom and state.get("Status") == "exited" and state.get("ExitCode") == 137
                and info["HostConfig"].get("Memory")):
            oom = await self._kernel_saw_oom(info["Id"])
        st = _container_state(str(state.get("Status", "")))
        reason = ""
        exit_code = int(state.get("ExitCode") or 0)
        if st == rt.CONTAINER_EXITED:
            if oom:
                reason = "OOMKilled"
            else:
                reason = "Completed" if exit_code == 0 else "Error"
        mounts = [rt.Mount(container_path=m.get("Destination", ""), host_path=m.get("Source", ""),
                           readonly=not m.get("RW", True)) for m in info.get("Mounts") or []]
        return rt.ContainerStatus(
            id=info["Id"], metadata=_container_metadata(labels), state=st,
            created_at=parse_docker_time(info.get("Created", "")),
            started_at=parse_docker_time(state.get("StartedAt", "")),
            finished_at=parse_docker_time(state.get("FinishedAt", "")) if st == rt.CONTAINER_EXITED else 0,
            exit_code=exit_code, image=rt.ImageSpec(image=info["Config"].get("Image", "")),
            image_ref=info.get("Image", ""), reason=reason, message=str(state.get("Error") or ""),
            labels=_user_labels(labels), annotations=_annotations(labels), mounts=mounts,
            log_path=info.get("LogPath") or "", pod_sandbox_id=labels.get(LABEL_SANDBOX_ID, ""))

    async def _kernel_saw_oom(self, container_id: str) -> bool:
        """Whether the kernel's log shows a memory-cgroup OOM kill in this container.

        Seen on these machines (Docker 20.10, cgroup v1, a loaded host): the kernel
        OOM-kills inside the container's memory cgroup, yet the engine's OOMKilled
        stays false because containerd's OOM notification lost the race with the
        exit. The kernel's own record (``oom_memcg=/docker/<id>``) is the truth; it
        is read only for SIGKILL exits of memory-limited containers, and cached.
        """
        if container_id in self._oom_seen:
            return self._oom_seen[container_id]
        found = await asyncio.get_running_loop().run_in_executor(self._pool, _kmsg_mentions,
                                                                  f"oom_memcg=/docker/{container_id}")
        self._oom_seen[container_id] = found
        if len(self._oom_seen) > 4096:
            self._oom_seen.clear()
        return found

    async def list_containers(self, flt: rt.ContainerFilter | None = None) -> list[rt.Container]:
        flt = flt or rt.ContainerFilter()
        extra = {LABEL_TYPE: TYPE_CONTAINER}
        if flt.pod_sandbox_id:
            extra[LABEL_SANDBOX_ID] = flt.pod_sandbox_id
        filters = self._scope(dict(flt.label_selector), **extra)
        if flt.id:
            filters["id"] = [flt.id]
        rows = await self._call(self._api.containers, all=True, filters=filters)
        out = []
        for row in rows:
            labels = row.get("Labels") or {}
            st = _container_state(str(row.get("State", "")))
            if flt.HasField("state") and flt.state != st:
                continue
            out.append(rt.Container(id=row["Id"], pod_sandbox_id=labels.get(LABEL_SANDBOX_ID, ""),
                                    metadata=_container_metadata(labels),
                                    image=rt.ImageSpec(image=row.get("Image", "")),
                                    image_ref=row.get("ImageID", ""), state=st,
                                    created_at=int(row.get("Created", 0)) * 1_000_000_000,
                                    labels=_user_labels(labels), annotations=_annotations(labels)))
        return out

    async def container_stats(self, container_id: str) -> rt.ContainerStats:
        raw = await self._call(self._api.stats, container_id, stream=False, one_shot=True)
        cpu = (raw.get("cpu_stats") or {}).get("cpu_usage") or {}
        mem = raw.get("memory_stats") or {}
        usage = int(mem.get("usage") or 0)
        cache = int((mem.get("stats") or {}).get("total_inactive_file") or 0)
        return rt.ContainerStats(id=container_id, timestamp=parse_docker_time(raw.get("read", "")),
                                 cpu_usage_core_nano_seconds=int(cpu.get("total_usage") or 0),
                                 memory_usage_bytes=usage, memory_working_set_bytes=max(0, usage - cache),
                                 memory_limit_bytes=int(mem.get("limit") or 0))

    # ---- exec ----

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float = 0) -> rt.ExecSyncResponse:
        if not cmd:
            raise InvalidArgumentError("cmd: required")

        def run() -> tuple[bytes, bytes, int]:
            ex = self._api.exec_create(container_id, cmd, stdout=True, stderr=True)
            out, err = self._api.exec_start(ex["Id"], demux=True)
            code = self._api.exec_inspect(ex["Id"]).get("ExitCode")
            return out or b"", err or b"", int(code if code is not None else -1)

        # A timed-out command keeps running in the container (Docker cannot kill
        # an exec); the caller sees timed_out, as CRI's ExecSync reports it. The
        # blocking call runs on a daemon thread of its own, so that a hung probe
        # command holds neither a pool worker nor the runtime's shutdown.
        fut = self._detached(run)
        try:
            if timeout > 0:
                out, err, code = await asyncio.wait_for(fut, timeout)
            else:
                out, err, code = await fut
        except TimeoutError:
            return rt.ExecSyncResponse(exit_code=-1, timed_out=True)
        return rt.ExecSyncResponse(stdout=out, stderr=err, exit_code=code)

    async def exec(self, frames: AsyncIterator[rt.StreamFrame]) -> AsyncIterator[rt.StreamFrame]:
        first = await anext(frames, None)
        if first is None or first.WhichOneof("frame") != "start" or not first.start.cmd:
            raise InvalidArgumentError("exec: the first frame must be start with a command")
        start = first.start
        ex = await self._call(self._api.exec_create, start.container_id, list(start.cmd), stdin=start.stdin,
                              stdout=True, stderr=True, tty=start.tty)
        sock = await self._call(self._api.exec_start, ex["Id"], tty=start.tty, socket=True)
        if start.tty and start.size.width:
            with contextlib.suppress(RuntimeError_):
                await self._call(self._api.exec_resize, ex["Id"], height=start.size.height, width=start.size.width)

        def resize(size: rt.TerminalSize) -> None:
            self._api.exec_resize(ex["Id"], height=size.height, width=size.width)

        async for frame in self._pump(sock, frames, start.tty, resize):
            yield frame
        info = await self._call(self._api.exec_inspect, ex["Id"])
        code = int(info.get("ExitCode") or 0)
        yield rt.StreamFrame(exit=rt.ExitStatus(exit_code=code, reason="" if code == 0 else "NonZeroExitCode"))

    async def attach(self, frames: AsyncIterator[rt.StreamFrame]) -> AsyncIterator[rt.StreamFrame]:
        first = await anext(frames, None)
        if first is None or first.WhichOneof("frame") != "start":
            raise InvalidArgumentError("attach: the first frame must be start")
        start = first.start
        info = await self._call(self._api.inspect_container, start.container_id)
        tty = bool(info["Config"].get("Tty"))
        sock = await self._call(self._api.attach_socket, start.container_id,
                                params={"stdin": 1 if start.stdin else 0, "stdout": 1, "stderr": 1, "stream": 1})

        def resize(size: rt.TerminalSize) -> None:
            self._api.resize(start.container_id, height=size.height, width=size.width)

        async for frame in self._pump(sock, frames, tty, resize):
            yield frame
        final = await self._call(self._api.inspect_container, start.container_id)
        code = int(final["State"].get("ExitCode") or 0)
        yield rt.StreamFrame(exit=rt.ExitStatus(exit_code=code))

    async def _pump(self, sock: Any, frames: AsyncIterator[rt.StreamFrame], tty: bool,
                    resize: Callable[[rt.TerminalSize], None]) -> AsyncIterator[rt.StreamFrame]:
        """Copies a hijacked engine socket both ways: demuxed output as frames, stdin frames in."""
        raw: socket.socket = getattr(sock, "_sock", sock)
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[rt.StreamFrame | None] = asyncio.Queue()

        def reader() -> None:
            try:
                for kind, data in _demux(raw, tty):
                    frame = rt.StreamFrame(stderr=data) if kind == 2 else rt.StreamFrame(stdout=data)
                    loop.call_soon_threadsafe(out.put_nowait, frame)
            except OSError:
                pass
            finally:
                loop.call_soon_threadsafe(out.put_nowait, None)

        async def writer() -> None:
            async for frame in frames:
                kind = frame.WhichOneof("frame")
                if kind == "stdin":
                    await loop.run_in_executor(None, raw.sendall, frame.stdin)
                elif kind == "close_stdin":
                    with contextlib.suppress(OSError):
                        raw.shutdown(socket.SHUT_WR)
                elif kind == "resize":
                    with contextlib.suppress(Exception):
                        await self._call(resize, frame.resize)
            # The caller's stream ended: that is EOF on stdin too.
            with contextlib.suppress(OSError):
                raw.shutdown(socket.SHUT_WR)

        thread = threading.Thread(target=reader, name="docker-stream", daemon=True)
        thread.start()
        write_task = asyncio.create_task(writer(), name="docker-stream-stdin")
        try:
            while (frame := await out.get()) is not None:
                yield frame
        finally:
            write_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await write_task
            with contextlib.suppress(OSError):
                raw.close()

    async def port_forward(self, frames: AsyncIterator[rt.PortForwardFrame]) -> AsyncIterator[rt.PortForwardFrame]:
        """Forwards one TCP connection by running busybox ``nc`` in the sandbox, which
        shares the pod's network namespace (dockershim used nsenter + socat likewise)."""
        first = await anext(frames, None)
        if first is None or first.WhichOneof("frame") != "start":
            raise InvalidArgumentError("port_forward: the first frame must be start")
        port = first.start.port
        if not 0 < port < 65536:
            raise InvalidArgumentError(f"port: {port} is not a valid port")

        async def stdin() -> AsyncIterator[rt.StreamFrame]:
            yield rt.StreamFrame(start=rt.StreamStart(container_id=first.start.pod_sandbox_id,
                                                      cmd=["nc", "127.0.0.1", str(port)], stdin=True))
            async for f in frames:
                kind = f.WhichOneof("frame")
                if kind == "data":
                    yield rt.StreamFrame(stdin=f.data)
                elif kind == "close":
                    yield rt.StreamFrame(close_stdin=True)

        async for frame in self.exec(stdin()):
            kind = frame.WhichOneof("frame")
            if kind == "stdout":
                yield rt.PortForwardFrame(data=frame.stdout)
            elif kind == "exit" and frame.exit.exit_code != 0:
                yield rt.PortForwardFrame(error=f"connection to port {port} failed")
        yield rt.PortForwardFrame(close=True)

    # ---- logs ----

    async def container_logs(self, request: rt.ContainerLogsRequest) -> AsyncIterator[rt.LogChunk]:
        tail: Any = "all"
        if request.HasField("tail_lines") and request.tail_lines >= 0:
            tail = int(request.tail_lines)
        since = int(request.since // 1_000_000_000) if request.since else None
        stream = await self._call(self._api.logs, request.container_id, stream=True, follow=request.follow,
                                  timestamps=request.timestamps, tail=tail, since=since)
        limit = request.limit_bytes if request.HasField("limit_bytes") else -1
        sent = 0
        async for data in _iterate_in_thread(stream):
            if limit >= 0:
                data = data[: max(0, limit - sent)]
            if data:
                sent += len(data)
                yield rt.LogChunk(data=data)
            if 0 <= limit <= sent:
                break

    # ---- events ----

    _EVENT_TYPES = {"create": rt.CONTAINER_CREATED_EVENT, "start": rt.CONTAINER_STARTED_EVENT,
                    "die": rt.CONTAINER_STOPPED_EVENT, "destroy": rt.CONTAINER_DELETED_EVENT}

    async def container_events(self) -> AsyncIterator[rt.ContainerEventResponse]:
        stream = await self._call(self._api.events, decode=True, filters={
            "type": "container", "event": list(self._EVENT_TYPES), "label": [f"{LABEL_NODE}={self.node_name}"]})
        async for raw in _iterate_in_thread(stream):
            event: dict[str, Any] = raw  # decode=True yields dicts
            kind = self._EVENT_TYPES.get(str(event.get("Action") or event.get("status") or ""))
            if kind is None:
                continue
            attrs: dict[str, str] = (event.get("Actor") or {}).get("Attributes") or {}
            yield rt.ContainerEventResponse(
                container_id=str(event.get("id", "")), container_event_type=kind,
                created_at=int(event.get("timeNano") or 0), pod_sandbox_metadata=_sandbox_metadata(attrs),
                container_name=attrs.get(LABEL_CONTAINER_NAME, ""))

    # ---- images ----

    async def list_images(self) -> list[rt.Image]:
        rows = await self._call(self._api.images)
        return [rt.Image(id=r["Id"], repo_tags=r.get("RepoTags") or [], repo_digests=r.get("RepoDigests") or [],
                         size=int(r.get("Size") or 0)) for r in rows]

    async def image_status(self, image: str) -> rt.Image | None:
        try:
            info = await self._call(self._api.inspect_image, image)
        except NotFoundError:
            return None
        return rt.Image(id=info["Id"], repo_tags=info.get("RepoTags") or [],
                        repo_digests=info.get("RepoDigests") or [], size=int(info.get("Size") or 0))

    async def registry_mirrors(self) -> list[str]:
        """dockerd's registry mirrors (its daemon.json), read once: they change only when dockerd restarts."""
        if self._mirrors is None:
            info = await self._call(self._api.info)
            self._mirrors = [str(m).rstrip("/") for m in ((info.get("RegistryConfig") or {}).get("Mirrors") or [])]
        return self._mirrors

    async def _mirror_holding(self, ref: Reference) -> str | None:
        for mirror in await self.registry_mirrors():
            if await asyncio.to_thread(mirror_has, mirror, ref):
                return mirror
        return None

    async def _pull(self, image: str) -> None:
        repo, tag = _split_ref(image)
        try:
            await self._call(self._api.pull, repo, tag=tag or None)
        except RuntimeError_ as exc:
            raise ImagePullError(f"pulling {image}: {exc}") from exc

    async def pull_image(self, image: str) -> str:
        """Pulls ``image`` from a registry on the cluster's side of the network, never from a public one.

        A reference naming its registry (``kubelite-registry:5000/x:1``, ``localhost:5000/x``) is pulled
        from it. A docker.io name (``kubelite/busybox:v1``) is pulled only when one of dockerd's mirrors
        (a local cluster's registry) holds it, which is asked first: for anything its mirrors lack,
        dockerd would go on to Docker Hub, which nothing here may reach (PLATFORM.md). Otherwise the
        project's own pause and busybox images are built here, and any other image must be present."""
        try:
            ref = parse_reference(image)
        except ValueError as exc:
            raise ImagePullError(str(exc)) from exc
        if not ref.on_docker_hub or await self._mirror_holding(ref) is not None:
            await self._pull(image)
        elif image == self.pause_image or image == imagebuild.busybox_image():
            builder = imagebuild.ensure_pause_image if image == self.pause_image else imagebuild.ensure_busybox_image
            await self._call(builder, self._api, image)
        else:
            present = await self.image_status(image)
            if present is not None:
                return present.id
            where = " nor in the cluster's registry (kubelite cluster load-image puts it there)" if (
                await self.registry_mirrors()) else ""
            raise ImagePullError(f"image {image!r} is not present on the node{where}, and kubelite never pulls "
                                 "from a public registry (load it with docker load, or name a local registry host)")
        status = await self.image_status(image)
        if status is None:
            raise ImagePullError(f"image {image!r} is not present after the pull")
        return status.id

    async def remove_image(self, image: str) -> None:
        with contextlib.suppress(NotFoundError):
            await self._call(self._api.remove_image, image)


def _kmsg_mentions(needle: str) -> bool:
    """Scans the kernel ring buffer (/dev/kmsg, non-blocking) for ``needle``; False when unreadable."""
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        while True:
            try:
                record = os.read(fd, 8192)
            except BlockingIOError:
                return False
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # a record was overwritten while reading: go on
                    continue
                return False
            if not record:
                return False
            if needle.encode() in record:
                return True
    finally:
        os.close(fd)


def _split_ref(image: str) -> tuple[str, str]:
    if "@" in image:
        return image, ""
    name, sep, tag = image.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return image, "latest"


def _container_state(status: str) -> rt.ContainerState:
    return {"created": rt.CONTAINER_CREATED, "running": rt.CONTAINER_RUNNING, "paused": rt.CONTAINER_RUNNING,
            "restarting": rt.CONTAINER_RUNNING, "exited": rt.CONTAINER_EXITED, "dead": rt.CONTAINER_EXITED,
            "removing": rt.CONTAINER_EXITED}.get(status, rt.CONTAINER_UNKNOWN)


# Labels that are the runtime's own bookkeeping. The pod's identity labels
# (uid, name, namespace, container name) are the kubelet's and go back to it,
# so that it can filter on them as it does with any runtime.
_OWN_LABELS = frozenset({LABEL_SANDBOX_ID, LABEL_TYPE, LABEL_ATTEMPT, LABEL_NODE})


def _user_labels(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k not in _OWN_LABELS and not k.startswith("annotation.")}


def _annotations(labels: dict[str, str]) -> dict[str, str]:
    return {k.removeprefix("annotation."): v for k, v in labels.items() if k.startswith("annotation.")}


def _attempt(labels: dict[str, str]) -> int:
    try:
        return int(labels.get(LABEL_ATTEMPT, "0"))
    except ValueError:
        return 0


def _sandbox_metadata(labels: dict[str, str]) -> rt.PodSandboxMetadata:
    return rt.PodSandboxMetadata(name=labels.get(LABEL_POD_NAME, ""), uid=labels.get(LABEL_POD_UID, ""),
                                 namespace=labels.get(LABEL_POD_NAMESPACE, ""), attempt=_attempt(labels))


def _container_metadata(labels: dict[str, str]) -> rt.ContainerMetadata:
    return rt.ContainerMetadata(name=labels.get(LABEL_CONTAINER_NAME, ""), attempt=_attempt(labels))


def _demux(sock: socket.socket, tty: bool) -> Iterator[tuple[int, bytes]]:
    """The engine's stream format: raw bytes with a TTY, else 8-byte headers (stream, size)."""
    if tty:
        while data := sock.recv(65536):
            yield 1, data
        return
    buf = b""
    while True:
        while len(buf) < 8:
            chunk = sock.recv(65536)
            if not chunk:
                return
            buf += chunk
        kind, size = struct.unpack(">BxxxL", buf[:8])
        buf = buf[8:]
        while len(buf) < size:
            chunk = sock.recv(65536)
            if not chunk:
                return
            buf += chunk
        yield kind, buf[:size]
        buf = buf[size:]


async def _iterate_in_thread(stream: Any) -> AsyncIterator[Any]:
    """Iterates a blocking SDK stream from a thread of its own; closing the
    stream on exit unblocks the thread when the consumer goes away."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def put(item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def run() -> None:
        try:
            for item in stream:
                put(item)
        except Exception:
            pass
        finally:
            put(None)

    thread = threading.Thread(target=run, name="docker-logs", daemon=True)
    thread.start()
    try:
        while (item := await queue.get()) is not None:
            yield item
    finally:
        with contextlib.suppress(Exception):
            stream.close()
