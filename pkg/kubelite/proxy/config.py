"""ProxyConfig: kubelite-proxy's settings, validated once, with the offending flag named."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

MODES = ("iptables", "nftables")
POD_NETWORKS = ("none", "host-gw")


@dataclass(frozen=True)
class ProxyConfig:
    kubeconfig: str = ""
    master: str = ""
    hostname_override: str = ""
    proxy_mode: str = "iptables"
    cluster_cidr: str = ""
    nodeport_addresses: tuple[str, ...] = ()
    cleanup: bool = False
    min_sync_period: float = 1.0
    sync_period: float = 30.0
    healthz_bind_address: str = "0.0.0.0:10256"
    # How this node reaches other nodes' pods (kubelite.proxy.podnetwork); "none" leaves it to someone else.
    pod_network: str = "none"
    # Runs every kernel tool through this prefix (``ip netns exec NAME``): for tests and benchmarks.
    exec_prefix: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.proxy_mode not in MODES:
            raise ValueError(f"--proxy-mode: {self.proxy_mode!r} is not one of {', '.join(MODES)}")
        if self.pod_network not in POD_NETWORKS:
            raise ValueError(f"--pod-network: {self.pod_network!r} is not one of {', '.join(POD_NETWORKS)}")
        if self.pod_network != "none" and not self.cluster_cidr and not self.cleanup:
            raise ValueError(f"--cluster-cidr: required by --pod-network={self.pod_network}")
        if self.cluster_cidr:
            try:
                ipaddress.IPv4Network(self.cluster_cidr)
            except ValueError as exc:
                raise ValueError(f"--cluster-cidr: {exc}") from exc
        for cidr in self.nodeport_addresses:
            try:
                ipaddress.IPv4Network(cidr)
            except ValueError as exc:
                raise ValueError(f"--nodeport-addresses: {exc}") from exc
        if self.min_sync_period < 0:
            raise ValueError("--iptables-min-sync-period: must not be negative")
        if self.sync_period <= 0:
            raise ValueError("--iptables-sync-period: must be positive")
        _, sep, port = self.healthz_bind_address.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"--healthz-bind-address: {self.healthz_bind_address!r} is not host:port")

    @property
    def healthz_host(self) -> str:
        return self.healthz_bind_address.rpartition(":")[0]

    @property
    def healthz_port(self) -> int:
        return int(self.healthz_bind_address.rpartition(":")[2])
