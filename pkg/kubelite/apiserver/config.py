"""The API server's configuration, validated before anything starts."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


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
    # --event-ttl: Events expire from etcd after this long.
    event_ttl_seconds: int = 3600
    # Tolerations that admission gives pods for the not-ready and unreachable NoExecute taints.
    default_not_ready_toleration_seconds: int = 300
    default_unreachable_toleration_seconds: int = 300
    # The address and port other components and pods reach this server at, published in the
    # `kubernetes` Service's Endpoints; "" = the bind address, or the host's address when that is 0.0.0.0.
    advertise_address: str = ""
    # Each server renews a Lease of this many seconds for its Endpoints entry; a server whose
    # Lease has run out is dropped from the `kubernetes` Endpoints by the others.
    endpoint_lease_seconds: int = 15

    def __post_init__(self) -> None:
        if not self.etcd_servers:
            raise ValueError("--etcd-servers is required")
        for port in (self.secure_port, self.http_port):
            if not 0 <= port <= 65535:
                raise ValueError(f"port {port} is out of range")
        if self.watch_cache_size < 1:
            raise ValueError("--watch-cache-size must be at least 1")
        if self.event_ttl_seconds < 1:
            raise ValueError("--event-ttl must be at least 1s")
        for flag, value in (("--default-not-ready-toleration-seconds", self.default_not_ready_toleration_seconds),
                            ("--default-unreachable-toleration-seconds",
                             self.default_unreachable_toleration_seconds)):
            if value < 0:
                raise ValueError(f"{flag} must not be negative")
        if self.endpoint_lease_seconds < 1:
            raise ValueError("--endpoint-lease-seconds must be at least 1")
        if self.advertise_address:
            try:
                ipaddress.ip_address(self.advertise_address)
            except ValueError:
                raise ValueError(f"--advertise-address {self.advertise_address!r} is not an IP address") from None
        if self.bookmark_interval <= 0:
            raise ValueError("--watch-bookmark-interval must be positive")
        if self.watch_timeout_seconds <= 0:
            raise ValueError("--min-request-timeout must be positive")
        try:
            ipaddress.ip_network(self.service_cluster_ip_range)
        except ValueError as exc:
            raise ValueError(f"--service-cluster-ip-range {self.service_cluster_ip_range!r}: {exc}") from None
        lo, _, hi = self.service_node_port_range.partition("-")
        if not (lo.isdigit() and hi.isdigit() and int(lo) < int(hi)):
            raise ValueError(
                f"--service-node-port-range {self.service_node_port_range!r} is not a range like 30000-32767")
