"""The API server's configuration, validated before anything starts."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field


@dataclass(frozen=True)
class APIServerConfig:
    etcd_servers: tuple[str, ...]
    bind_address: str = "0.0.0.0"
    secure_port: int = 6443
    # aiohttp: /healthz, /readyz, /livez, /metrics
    http_bind_address: str = "127.0.0.1"
    http_port: int = 8080
    service_cluster_ip_range: str = "10.96.0.0/16"
    service_node_port_range: str = "30000-32767"
    watch_cache_size: int = 10_000
    bookmark_interval: float = 30.0
    # A watch ends after this long, jittered up to twice it, so that clients
    # spread over API servers again (kube-apiserver's --min-request-timeout).
    watch_timeout_seconds: float = 1800.0
    # gRPC request size limit (kube-apiserver accepts 3 MB request bodies).
    max_request_bytes: int = 3 * 1024 * 1024
    etcd_prefix: str = "/registry"
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.etcd_servers:
            raise ValueError("--etcd-servers is required")
        for port in (self.secure_port, self.http_port):
            if not 0 <= port <= 65535:
                raise ValueError(f"port {port} is out of range")
        if self.watch_cache_size < 1:
            raise ValueError("--watch-cache-size must be at least 1")
        if self.bookmark_interval <= 0:
            raise ValueError("--watch-bookmark-interval must be positive")
        if self.watch_timeout_seconds <= 0:
            raise ValueError("--min-request-timeout must be positive")
        ipaddress.ip_network(self.service_cluster_ip_range)
        lo, _, hi = self.service_node_port_range.partition("-")
        if not (lo.isdigit() and hi.isdigit() and int(lo) < int(hi)):
            raise ValueError(
                f"--service-node-port-range {self.service_node_port_range!r} is not a range like 30000-32767")
