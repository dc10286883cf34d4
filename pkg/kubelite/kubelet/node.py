"""The kubelet's Node: registration, status (capacity, conditions, info) and the heartbeat Lease.

Two heartbeats, as in Kubernetes: the Lease in kube-node-lease is renewed
every 10 s (cheap, a small object), while the Node's status is written only
when something in it changed or once per report period, so a thousand
hollow nodes do not rewrite a thousand large objects every ten seconds.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from kubelite.api.coordination.v1 import generated_pb2 as coord
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.meta.v1 import generated_pb2 as meta
from kubelite.client.client import Client
from kubelite.kubelet.config import KubeletConfig
from kubelite.machinery.errors import StatusError
from kubelite.machinery.quantity import parse_quantity

LEASE_NAMESPACE = "kube-node-lease"
KUBELET_VERSION = "v0.1.0"
# Pressure thresholds (Kubernetes' default hard eviction signals).
MEMORY_AVAILABLE_MIN = 100 * 1024 * 1024
DISK_AVAILABLE_MIN_FRACTION = 0.10
PID_AVAILABLE_MIN_FRACTION = 0.05


def _ts(at: float | None = None) -> Timestamp:
    t = Timestamp()
    t.seconds = int(at if at is not None else time.time())
    return t


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            out[key] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out


def os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.partition("=")[2].strip('"')
    return platform.system()


def arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def detect_node_ip() -> str:
    """The address of the interface that routes outward; no packet is sent (UDP connect)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


@dataclass(frozen=True)
class Pressure:
    memory: bool
    disk: bool
    pid: bool


def host_pressure(root_dir: str) -> Pressure:
    mem = meminfo()
    available = mem.get("MemAvailable", MEMORY_AVAILABLE_MIN * 2)
    disk = False
    with_path = root_dir if os.path.exists(root_dir) else "/"
    usage = shutil.disk_usage(with_path)
    if usage.total:
        disk = usage.free / usage.total < DISK_AVAILABLE_MIN_FRACTION
    pid_max = int(_read("/proc/sys/kernel/pid_max", "32768") or 32768)
    try:
        pids = sum(1 for d in os.listdir("/proc") if d.isdigit())
    except OSError:
        pids = 0
    return Pressure(memory=available < MEMORY_AVAILABLE_MIN, disk=disk,
                    pid=(pid_max - pids) / pid_max < PID_AVAILABLE_MIN_FRACTION)


def _subtract(capacity: str, reserved: str, unit: Fraction = Fraction(1)) -> Fraction:
    return max(Fraction(0), parse_quantity(capacity) - parse_quantity(reserved or "0"))


def capacity(cfg: KubeletConfig) -> tuple[dict[str, str], dict[str, str]]:
    cpus = os.cpu_count() or 1
    mem = meminfo().get("MemTotal", 0)
    disk = shutil.disk_usage("/").total
    cap = {"cpu": str(cpus), "memory": f"{mem // 1024}Ki", "pods": str(cfg.max_pods),
           "ephemeral-storage": f"{disk // 1024}Ki"}
    alloc = dict(cap)
    for res, qty in cfg.system_reserved.items():
        if res in cap and res != "pods":
            left = _subtract(cap[res], qty)
            if res == "cpu":
                alloc[res] = f"{int(left * 1000)}m"
            else:
                alloc[res] = f"{int(left) // 1024}Ki"
    return cap, alloc


class NodeManager:
    """Registers the node and keeps its status and lease current."""

    def __init__(self, cfg: KubeletConfig, client: Client, node_ip: str, runtime_version: Callable[[], str],
                 images: Callable[[], list[core.ContainerImage]], network_ready: Callable[[], str]) -> None:
        self.cfg = cfg
        self.client = client
        self.node_ip = node_ip
        self._runtime_version = runtime_version
        self._images = images
        # "" when ready, else why not (no pod CIDR yet, runtime down).
        self._network_ready = network_ready
        self._last_report = 0.0
        self._last_status = b""
        self._lease: coord.Lease | None = None

    def _labels(self) -> dict[str, str]:
        labels = {"kubernetes.io/hostname": self.cfg.node_name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": arch(), "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": arch()}
        labels.update(self.cfg.node_labels)
        return labels

    def initial_node(self) -> core.Node:
        node = core.Node(api_version="v1", kind="Node")
        node.metadata.name = self.cfg.node_name
        node.metadata.labels.update(self._labels())
        node.metadata.annotations["node.alpha.kubernetes.io/ttl"] = "0"
        node.spec.taints.extend(self.cfg.register_with_taints)
        if self.cfg.pod_cidr:
            node.spec.pod_cidr = self.cfg.pod_cidr
            node.spec.pod_cidrs.append(self.cfg.pod_cidr)
        return node

    async def register(self) -> core.Node:
        """Creates the Node, or adopts the existing one (labels merged, status rewritten)."""
        try:
            node = await self.client.create(self.initial_node())
        except StatusError as exc:
            if exc.reason != "AlreadyExists":
                raise
            node = await self.client.get(core.Node, self.cfg.node_name)
            wanted = self._labels()
            if any(node.metadata.labels.get(k) != v for k, v in wanted.items()) or (
                    self.cfg.pod_cidr and not node.spec.pod_cidr):
                node.metadata.labels.update(wanted)
                if self.cfg.pod_cidr and not node.spec.pod_cidr:
                    node.spec.pod_cidr = self.cfg.pod_cidr
                    node.spec.pod_cidrs.append(self.cfg.pod_cidr)
                node = await self.client.update(node)
        return await self.update_status(node, force=True)

    def build_status(self, node: core.Node) -> core.NodeStatus:
        old = node.status
        st = core.NodeStatus()
        cap, alloc = capacity(self.cfg)
        st.capacity.update(cap)
        st.allocatable.update(alloc)
        st.addresses.append(core.NodeAddress(type="InternalIP", address=self.node_ip))
        st.addresses.append(core.NodeAddress(type="Hostname", address=self.cfg.node_name))
        st.daemon_endpoints.kubelet_endpoint.port = self.cfg.port
        info = st.node_info
        info.machine_id = _read("/etc/machine-id")
        info.boot_id = _read("/proc/sys/kernel/random/boot_id")
        info.system_uuid = _read("/sys/class/dmi/id/product_uuid") or info.machine_id
        info.kernel_version = platform.release()
        info.os_image = os_image()
        info.container_runtime_version = self._runtime_version()
        info.kubelet_version = KUBELET_VERSION
        info.kube_proxy_version = KUBELET_VERSION
        info.operating_system = "linux"
        info.architecture = arch()
        st.images.extend(self._images())
        now = _ts()
        p = host_pressure(self.cfg.root_dir)
        not_ready = self._network_ready()
        conds = [
            ("MemoryPressure", p.memory, "KubeletHasInsufficientMemory" if p.memory else "KubeletHasSufficientMemory",
             "kubelet has insufficient memory available" if p.memory else "kubelet has sufficient memory available"),
            ("DiskPressure", p.disk, "KubeletHasDiskPressure" if p.disk else "KubeletHasNoDiskPressure",
             "kubelet has disk pressure" if p.disk else "kubelet has no disk pressure"),
            ("PIDPressure", p.pid, "KubeletHasInsufficientPID" if p.pid else "KubeletHasSufficientPID",
             "kubelet has insufficient PID available" if p.pid else "kubelet has sufficient PID available"),
            ("Ready", not not_ready, "KubeletReady" if not not_ready else "KubeletNotReady",
             "kubelet is posting ready status" if not not_ready else not_ready),
        ]
        for type_, value, reason, message in conds:
            status = "True" if value else "False"
            cond = core.NodeCondition(type=type_, status=status, reason=reason, message=message)
            cond.last_heartbeat_time.CopyFrom(now)
            prior = next((c for c in old.conditions if c.type == type_), None)
            if prior is not None and prior.status == status:
                cond.last_transition_time.CopyFrom(prior.last_transition_time)
            else:
                cond.last_transition_time.CopyFrom(now)
            st.conditions.append(cond)
        return st

    @staticmethod
    def _fingerprint(st: core.NodeStatus) -> bytes:
        """The status without heartbeat times: what decides whether it "changed"."""
        copy = core.NodeStatus()
        copy.CopyFrom(st)
        for c in copy.conditions:
            c.ClearField("last_heartbeat_time")
        return copy.SerializeToString(deterministic=True)

    async def update_status(self, node: core.Node, *, force: bool = False) -> core.Node:
        st = self.build_status(node)
        fp = self._fingerprint(st)
        due = time.monotonic() - self._last_report >= self.cfg.node_status_report_frequency
        if not force and not due and fp == self._last_status:
            return node
        updated = core.Node()
        updated.CopyFrom(node)
        updated.status.CopyFrom(st)
        updated.metadata.resource_version = ""
        result = await self.client.update_status(updated)
        self._last_status = fp
        self._last_report = time.monotonic()
        return result

    async def renew_lease(self, node_uid: str) -> None:
        """Get-then-update with the lease's resourceVersion; create when there is none."""
        now = Timestamp()
        now.GetCurrentTime()
        lease = self._lease
        if lease is None:
            try:
                lease = await self.client.get(coord.Lease, self.cfg.node_name, LEASE_NAMESPACE)
            except StatusError as exc:
                if exc.reason != "NotFound":
                    raise
                lease = None
        if lease is None:
            fresh = coord.Lease(api_version="coordination.k8s.io/v1", kind="Lease")
            fresh.metadata.name = self.cfg.node_name
            fresh.metadata.namespace = LEASE_NAMESPACE
            if node_uid:
                fresh.metadata.owner_references.append(meta.OwnerReference(
                    api_version="v1", kind="Node", name=self.cfg.node_name, uid=node_uid))
            fresh.spec.holder_identity = self.cfg.node_name
            fresh.spec.lease_duration_seconds = self.cfg.lease_duration_seconds
            fresh.spec.renew_time.CopyFrom(now)
            try:
                self._lease = await self.client.create(fresh)
            except StatusError as exc:
                self._lease = None
                if exc.reason != "AlreadyExists":
                    raise
            return
        lease.spec.holder_identity = self.cfg.node_name
        lease.spec.lease_duration_seconds = self.cfg.lease_duration_seconds
        lease.spec.renew_time.CopyFrom(now)
        try:
            self._lease = await self.client.update(lease)
        except StatusError as exc:
            self._lease = None  # re-read on the next renewal (Conflict, NotFound)
            if exc.reason not in ("Conflict", "NotFound"):
                raise
