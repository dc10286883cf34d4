"""The kubelet's validated configuration: flags become this, ``run()`` sees only this.

Validation names the flag, so that a bad command line fails at start with a
sentence an operator can act on, never with a traceback minutes later.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.machinery.quantity import QuantityError, parse_quantity

_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class KubeletConfig:
    node_name: str
    server: str = ""
    kubeconfig: str = ""
    node_ip: str = ""
    pod_cidr: str = ""
    runtime: str = "docker"
    container_runtime_endpoint: str = ""
    root_dir: str = "/var/lib/kubelite/kubelet"
    pod_manifest_path: str = ""
    cluster_dns: tuple[str, ...] = ()
    cluster_domain: str = "cluster.local"
    # The node's resolv.conf, what pods with dnsPolicy Default get (Kubernetes' --resolv-conf).
    resolv_conf: str = "/etc/resolv.conf"
    max_pods: int = 110
    node_labels: dict[str, str] = field(default_factory=dict)
    register_with_taints: tuple[core.Taint, ...] = ()
    system_reserved: dict[str, str] = field(default_factory=dict)
    port: int = 10250
    address: str = "0.0.0.0"
    healthz_port: int = 10248
    healthz_bind_address: str = "127.0.0.1"
    # Docker bridge network of the pod CIDR; default kubelite-<node>.
    pod_network_name: str = ""
    node_status_update_frequency: float = 10.0
    node_status_report_frequency: float = 60.0
    lease_duration_seconds: int = 40
    sync_frequency: float = 60.0
    pod_workers: int = 16

    def __post_init__(self) -> None:
        if not self.node_name:
            raise ConfigError("--hostname-override: the node name is empty")
        if self.node_name != self.node_name.lower() or not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
                                                                    self.node_name):
            raise ConfigError(f"--hostname-override: {self.node_name!r} is not a valid node name "
                              "(lowercase letters, digits, '-' and '.')")
        if self.runtime not in ("docker", "fake", "remote"):
            raise ConfigError(f"--runtime: must be docker or fake, got {self.runtime!r}")
        if self.node_ip:
            try:
                ipaddress.ip_address(self.node_ip)
            except ValueError as exc:
                raise ConfigError(f"--node-ip: {self.node_ip!r} is not an IP address") from exc
        if self.pod_cidr:
            try:
                ipaddress.ip_network(self.pod_cidr, strict=False)
            except ValueError as exc:
                raise ConfigError(f"--pod-cidr: {self.pod_cidr!r} is not a CIDR") from exc
        for ip in self.cluster_dns:
            try:
                ipaddress.ip_address(ip)
            except ValueError as exc:
                raise ConfigError(f"--cluster-dns: {ip!r} is not an IP address") from exc
        if self.max_pods < 1:
            raise ConfigError(f"--max-pods: must be positive, got {self.max_pods}")
        for name, port in (("--port", self.port), ("--healthz-port", self.healthz_port)):
            if not 0 <= port < 65536:
                raise ConfigError(f"{name}: {port} is not a port")
        for key in self.node_labels:
            if not _LABEL_KEY.match(key):
                raise ConfigError(f"--node-labels: {key!r} is not a valid label key")
        for res, qty in self.system_reserved.items():
            try:
                parse_quantity(qty)
            except QuantityError as exc:
                raise ConfigError(f"--system-reserved: {res}={qty!r}: {exc}") from exc


def parse_key_values(flag: str, text: str) -> dict[str, str]:
    """``a=1,b=2`` -> {"a": "1", "b": "2"}; the error names the flag."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag}: {part!r} is not key=value")
        out[key] = value
    return out


def parse_taints(text: str) -> tuple[core.Taint, ...]:
    """``key=value:Effect,key2:Effect`` as kubelet's --register-with-taints."""
    taints = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        kv, sep, effect = part.rpartition(":")
        if not sep or effect not in _TAINT_EFFECTS:
            raise ConfigError(f"--register-with-taints: {part!r} must be key[=value]:effect with effect one of "
                              + ", ".join(_TAINT_EFFECTS))
        key, _, value = kv.partition("=")
        if not key or not _LABEL_KEY.match(key):
            raise ConfigError(f"--register-with-taints: {key!r} is not a valid taint key")
        taints.append(core.Taint(key=key, value=value, effect=effect))
    return tuple(taints)


def default_node_name() -> str:
    return socket.gethostname().lower()
