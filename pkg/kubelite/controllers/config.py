"""The controller manager's configuration, validated before anything starts.

Flag names and defaults are kube-controller-manager's, so an operator's
habits (and systemd units) carry over; a bad value is a ValueError naming
the flag.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from kubelite.client.leaderelection import LeaderElectionConfig

# Every controller this manager knows, in start order, with the names
# kube-controller-manager accepts for it in --controllers (its current
# "-controller" names and the older short ones).
KNOWN_CONTROLLERS: dict[str, tuple[str, ...]] = {
    "replicaset": ("replicaset", "replicaset-controller"),
    "deployment": ("deployment", "deployment-controller"),
    "endpoint": ("endpoint", "endpoints", "endpoints-controller"),
    "nodeipam": ("nodeipam", "node-ipam-controller"),
    "nodelifecycle": ("nodelifecycle", "node-lifecycle-controller"),
    "namespace": ("namespace", "namespace-controller"),
    "garbagecollector": ("garbagecollector", "garbage-collector-controller"),
    "serviceaccount": ("serviceaccount", "serviceaccount-controller"),
    "podgc": ("podgc", "pod-garbage-collector-controller"),
    "disruption": ("disruption", "disruption-controller"),
    "tokencleaner": ("tokencleaner", "token-cleaner-controller"),
}

# Kubernetes leaves a few controllers out of "*" (kubeadm names them: --controllers=*,tokencleaner).
DISABLED_BY_DEFAULT: frozenset[str] = frozenset({"tokencleaner"})


def _canonical(name: str) -> str | None:
    for canonical, aliases in KNOWN_CONTROLLERS.items():
        if name in aliases:
            return canonical
    return None


def select_controllers(spec: tuple[str, ...]) -> tuple[str, ...]:
    """kube-controller-manager's --controllers: ``*`` = the defaults, ``foo`` on, ``-foo`` off."""
    enabled: set[str] = set()
    star = False
    disabled: set[str] = set()
    for raw in spec:
        item = raw.strip()
        if not item:
            continue
        if item == "*":
            star = True
            continue
        negate = item.startswith("-")
        canonical = _canonical(item[1:] if negate else item)
        if canonical is None:
            known = ", ".join(KNOWN_CONTROLLERS)
            raise ValueError(f"--controllers: {item!r} is not a known controller (known: {known})")
        (disabled if negate else enabled).add(canonical)
    if star:
        enabled |= set(KNOWN_CONTROLLERS) - DISABLED_BY_DEFAULT
    return tuple(name for name in KNOWN_CONTROLLERS if name in enabled and name not in disabled)


@dataclass(frozen=True)
class ControllerManagerConfig:
    server: str
    controllers: tuple[str, ...] = tuple(c for c in KNOWN_CONTROLLERS if c not in DISABLED_BY_DEFAULT)
    bind_address: str = "0.0.0.0"
    secure_port: int = 10257
    cluster_cidr: str = "10.244.0.0/16"
    allocate_node_cidrs: bool = True
    node_cidr_mask_size: int = 24
    node_monitor_grace_period: float = 40.0
    node_monitor_period: float = 5.0
    default_not_ready_toleration_seconds: int = 300
    default_unreachable_toleration_seconds: int = 300
    terminated_pod_gc_threshold: int = 12500
    concurrent_replicaset_syncs: int = 5
    concurrent_deployment_syncs: int = 5
    concurrent_endpoint_syncs: int = 5
    concurrent_namespace_syncs: int = 10
    concurrent_serviceaccount_syncs: int = 5
    concurrent_gc_syncs: int = 20
    leader_election: LeaderElectionConfig = field(default_factory=LeaderElectionConfig)

    def __post_init__(self) -> None:
        if not self.server:
            raise ValueError("--kubeconfig or --master: no API server given")
        if not 0 <= self.secure_port <= 65535:
            raise ValueError(f"--secure-port: {self.secure_port} is out of range")
        if "nodeipam" in self.controllers and self.allocate_node_cidrs:
            try:
                net = ipaddress.ip_network(self.cluster_cidr)
            except ValueError as exc:
                raise ValueError(f"--cluster-cidr: {exc}") from None
            if not net.prefixlen <= self.node_cidr_mask_size <= net.max_prefixlen:
                raise ValueError(f"--node-cidr-mask-size: {self.node_cidr_mask_size} must be between the "
                                 f"--cluster-cidr prefix ({net.prefixlen}) and {net.max_prefixlen}")
            if self.node_cidr_mask_size - net.prefixlen > 16:
                raise ValueError(f"--node-cidr-mask-size: {self.node_cidr_mask_size} splits --cluster-cidr "
                                 f"{self.cluster_cidr} into more than 65536 node blocks")
        if self.node_monitor_grace_period <= 0:
            raise ValueError("--node-monitor-grace-period: must be greater than zero")
        if self.node_monitor_period <= 0:
            raise ValueError("--node-monitor-period: must be greater than zero")
        for flag, value in (("--concurrent-replicaset-syncs", self.concurrent_replicaset_syncs),
                            ("--concurrent-deployment-syncs", self.concurrent_deployment_syncs),
                            ("--concurrent-endpoint-syncs", self.concurrent_endpoint_syncs),
                            ("--concurrent-namespace-syncs", self.concurrent_namespace_syncs),
                            ("--concurrent-serviceaccount-syncs", self.concurrent_serviceaccount_syncs),
                            ("--concurrent-gc-syncs", self.concurrent_gc_syncs)):
            if value < 1:
                raise ValueError(f"{flag}: must be at least 1, got {value}")
        if self.terminated_pod_gc_threshold < 0:
            raise ValueError("--terminated-pod-gc-threshold: must not be negative")
