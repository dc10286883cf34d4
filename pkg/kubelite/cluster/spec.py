"""What a local cluster consists of: pure functions from a validated config to names, addresses and files.

Nothing here touches Docker, so the plan (which container gets which address,
what each component's environment file says) is unit-tested on its own and
the lifecycle code only carries it out.

What each container then runs is ``node.NodeConfig``: the same configuration
step a VM gets from ``deploy/install.sh``.

Addresses are fixed offsets in the cluster's /24 (etcd members .11-.13, the
control plane .10 and further ones .6-.9, the load balancer in front of
several .4, the registry .5, workers from .21), so every file can be written
before any container exists and ``docker ps`` plus the offsets tell an
operator where everything is.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubelite.cluster.node import (
    API_PORT,
    ETCD_CLIENT_PORT,
    ETCD_PEER_PORT,
    HTTP_PORT,
    ROLE_CONTROL_PLANE,
    ROLE_ETCD,
    ROLE_WORKER,
    ConfigError,
    NodeConfig,
)

# Re-exported: callers plan a cluster with this module alone.
__all__ = [
    "API_PORT",
    "ETCD_CLIENT_PORT",
    "ETCD_INIT_ARGS",
    "ETCD_PEER_PORT",
    "HTTP_PORT",
    "LABEL_CLUSTER",
    "LABEL_ROLE",
    "NODE_RUN_FLAGS",
    "REGISTRY_ADDRESS",
    "REGISTRY_HOST",
    "REGISTRY_PORT",
    "ROLE_CONTROL_PLANE",
    "ROLE_ETCD",
    "ROLE_LOAD_BALANCER",
    "ROLE_REGISTRY",
    "ROLE_WORKER",
    "ClusterConfig",
    "ConfigError",
    "Member",
    "NodeConfig",
    "api_endpoint",
    "control_plane",
    "control_planes",
    "docker_volume",
    "etcd_members",
    "etcd_servers",
    "load_balancer",
    "load_balancer_config",
    "load_balancer_run_args",
    "node_config",
    "node_name",
    "parse_subnet",
    "plan",
    "registry_member",
    "registry_run_args",
    "run_args",
    "validate_name",
]

LABEL_CLUSTER = "io.kubelite.cluster"
LABEL_ROLE = "io.kubelite.role"
# The cluster's image registry: a container beside the nodes, not a node.
ROLE_REGISTRY = "registry"
# The name it answers to on the cluster network (a network alias of <cluster>-registry, the same in
# every cluster since each has a network of its own, so the node image can name it), and its port.
REGISTRY_HOST = "kubelite-registry"
REGISTRY_PORT = 5000
REGISTRY_ADDRESS = f"{REGISTRY_HOST}:{REGISTRY_PORT}"
# With more than one control plane: a TCP load balancer (Debian's haproxy) in front of their API
# servers, the one address workers and the host's kubeconfig use (kind's external load balancer).
ROLE_LOAD_BALANCER = "load-balancer"
ETCD_MEMBERS = 3
MAX_CONTROL_PLANES = 5

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME = 40  # leaves room for "-control-plane" within a 63-character hostname
MAX_WORKERS = 50

# Host offsets inside the cluster subnet: the first control plane .10, the others .6-.9.
_LOAD_BALANCER_HOST = 4
_REGISTRY_HOST = 5
_CONTROL_PLANE_HOST = 10
_CONTROL_PLANE_MORE_HOST = 5  # + index: control planes 2..5 at .6-.9
_ETCD_FIRST_HOST = 11
_WORKER_FIRST_HOST = 21


def validate_name(name: str) -> str:
    if not name or len(name) > MAX_NAME or not _NAME.match(name):
        raise ConfigError(f"invalid --name {name!r}: lower-case letters, digits and '-', "
                          f"starting and ending with a letter or digit, at most {MAX_NAME} characters")
    return name


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise ConfigError(f"invalid --subnet {text!r}: {exc}") from exc
    if net.prefixlen != 24:
        raise ConfigError(f"invalid --subnet {text!r}: must be a /24 (the node addresses are offsets in it)")
    if not net.is_private:
        raise ConfigError(f"invalid --subnet {text!r}: must be a private range (RFC 1918)")
    return net


@dataclass(frozen=True)
class ClusterConfig:
    """A validated ``kubelite cluster up``."""

    name: str = "kubelite"
    workers: int = 3
    control_planes: int = 1
    image: str = ""          # the node image; "" means kubelite/node:<version>, built when needed
    pause_image: str = ""    # "" means kubelite/pause:<version>
    subnet: str = ""         # "" means the first free 172.30.x.0/24
    kubeconfig: str = ""     # "" means merged into $KUBECONFIG's first file or ~/.kube/config
    retain: bool = False
    service_cluster_ip_range: str = "10.96.0.0/16"
    cluster_cidr: str = "10.244.0.0/16"
    cluster_dns: str = "10.96.0.10"
    cluster_domain: str = "cluster.local"
    service_node_port_range: str = "30000-32767"
    ready_timeout: float = 180.0
    # COMPONENT:--flag=value, given to that component on every node (see NodeConfig.extra_args).
    extra_args: tuple[str, ...] = ()
    # A folder of image tarballs keyed by content (kubelite.cluster.imagecache); "" means none.
    image_cache: str = ""

    def __post_init__(self) -> None:
        validate_name(self.name)
        if self.image_cache and os.path.exists(self.image_cache) and not os.path.isdir(self.image_cache):
            raise ConfigError(f"invalid --image-cache {self.image_cache!r}: exists and is not a directory")
        if not 0 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"invalid --workers {self.workers}: must be between 0 and {MAX_WORKERS}")
        if not 1 <= self.control_planes <= MAX_CONTROL_PLANES:
            raise ConfigError(f"invalid --control-planes {self.control_planes}: must be between 1 and "
                              f"{MAX_CONTROL_PLANES}")
        if self.subnet:
            parse_subnet(self.subnet)
        for flag, value in (("--service-cluster-ip-range", self.service_cluster_ip_range),
                            ("--cluster-cidr", self.cluster_cidr)):
            try:
                ipaddress.IPv4Network(value, strict=True)
            except ValueError as exc:
                raise ConfigError(f"invalid {flag} {value!r}: {exc}") from exc
        if self.ready_timeout <= 0:
            raise ConfigError(f"invalid --timeout {self.ready_timeout}: must be positive")
        # Checked here, before any container starts, by the same rule configure-node applies.
        NodeConfig(role=ROLE_CONTROL_PLANE, node_name="check", node_ip="10.0.0.1", extra_args=self.extra_args)


@dataclass(frozen=True)
class Member:
    """One container of the cluster; its name is its node (or etcd member) name."""

    name: str
    role: str
    ip: str

    @property
    def is_node(self) -> bool:
        return self.role in (ROLE_CONTROL_PLANE, ROLE_WORKER)


def node_name(cluster: str, role: str, index: int) -> str:
    """kind's scheme: N-control-plane, N-worker, N-worker2, ...; etcd members N-etcd1..3."""
    if role == ROLE_ETCD:
        return f"{cluster}-etcd{index + 1}"
    if role == ROLE_CONTROL_PLANE:
        return f"{cluster}-control-plane" + (str(index + 1) if index else "")
    return f"{cluster}-worker" + (str(index + 1) if index else "")


def plan(cfg: ClusterConfig, subnet: ipaddress.IPv4Network) -> list[Member]:
    """Every container of the cluster but the registry, etcd members first, in start order (the load
    balancer, when there is one, last)."""
    base = subnet.network_address

    def host(offset: int) -> str:
        return str(base + offset)

    members = [Member(node_name(cfg.name, ROLE_ETCD, i), ROLE_ETCD, host(_ETCD_FIRST_HOST + i))
               for i in range(ETCD_MEMBERS)]
    members += [Member(node_name(cfg.name, ROLE_CONTROL_PLANE, i), ROLE_CONTROL_PLANE,
                       host(_CONTROL_PLANE_MORE_HOST + i if i else _CONTROL_PLANE_HOST))
                for i in range(cfg.control_planes)]
    members += [Member(node_name(cfg.name, ROLE_WORKER, i), ROLE_WORKER, host(_WORKER_FIRST_HOST + i))
                for i in range(cfg.workers)]
    if cfg.control_planes > 1:
        members.append(Member(f"{cfg.name}-external-load-balancer", ROLE_LOAD_BALANCER, host(_LOAD_BALANCER_HOST)))
    return members


def registry_member(cfg: ClusterConfig, subnet: ipaddress.IPv4Network) -> Member:
    """The cluster's image registry, ``<name>-registry`` at a fixed offset like every other container."""
    return Member(f"{cfg.name}-registry", ROLE_REGISTRY, str(subnet.network_address + _REGISTRY_HOST))


def etcd_members(members: Sequence[Member]) -> list[Member]:
    return [m for m in members if m.role == ROLE_ETCD]


def control_plane(members: Sequence[Member]) -> Member:
    """The first control plane: the one that applies the add-ons."""
    return next(m for m in members if m.role == ROLE_CONTROL_PLANE)


def control_planes(members: Sequence[Member]) -> list[Member]:
    return [m for m in members if m.role == ROLE_CONTROL_PLANE]


def load_balancer(members: Sequence[Member]) -> Member | None:
    return next((m for m in members if m.role == ROLE_LOAD_BALANCER), None)


def api_endpoint(members: Sequence[Member]) -> str:
    """The address every client of the cluster network uses: the load balancer's, or the one control plane's."""
    return (load_balancer(members) or control_plane(members)).ip


def load_balancer_config(members: Sequence[Member]) -> str:
    """haproxy's configuration: TCP to every API server's gRPC and HTTP ports, each backend checked on its
    /readyz every second, so a stopped control plane leaves the rotation within about two seconds and
    returns when it is ready. Client and server timeouts are long: watches are connections that last."""
    lines = ["global", "  log stdout format raw local0 notice", "defaults", "  mode tcp", "  log global",
             "  timeout connect 3s", "  timeout client 1h", "  timeout server 1h"]
    for name, port in (("grpc", API_PORT), ("http", HTTP_PORT)):
        lines += [f"frontend {name}", f"  bind *:{port}", f"  default_backend {name}",
                  f"backend {name}", "  option httpchk", "  http-check send meth GET uri /readyz",
                  "  http-check expect status 200"]
        lines += [f"  server {m.name} {m.ip}:{port} check port {HTTP_PORT} inter 1s fall 2 rise 2"
                  for m in control_planes(members)]
    return "\n".join(lines) + "\n"


def etcd_servers(members: Sequence[Member]) -> str:
    return ",".join(f"http://{m.ip}:{ETCD_CLIENT_PORT}" for m in etcd_members(members))


def node_config(cfg: ClusterConfig, member: Member, members: Sequence[Member]) -> NodeConfig:
    """What ``kubelite cluster configure-node`` is told inside the member's container."""
    common: dict[str, Any] = {"service_cluster_ip_range": cfg.service_cluster_ip_range,
              "service_node_port_range": cfg.service_node_port_range, "cluster_cidr": cfg.cluster_cidr,
              "cluster_dns": cfg.cluster_dns, "cluster_domain": cfg.cluster_domain}
    if member.role == ROLE_ETCD:
        initial = ",".join(f"{m.name}=http://{m.ip}:{ETCD_PEER_PORT}" for m in etcd_members(members))
        return NodeConfig(role=ROLE_ETCD, node_name=member.name, node_ip=member.ip, initial_cluster=initial,
                          initial_cluster_token=f"kubelite-{cfg.name}", **common)
    if member.role == ROLE_CONTROL_PLANE:
        return NodeConfig(role=ROLE_CONTROL_PLANE, node_name=member.name, node_ip=member.ip,
                          etcd_servers=etcd_servers(members), extra_args=cfg.extra_args, **common)
    return NodeConfig(role=ROLE_WORKER, node_name=member.name, node_ip=member.ip,
                      server=f"http://{api_endpoint(members)}:{API_PORT}", extra_args=cfg.extra_args, **common)


# PLATFORM.md: the flags that let a container run its own dockerd and systemd here
# (--privileged fails: the machine's bounding set lacks CAP_SYS_RESOURCE).
NODE_RUN_FLAGS = (
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--cgroupns", "host",
    "--tmpfs", "/run", "--tmpfs", "/run/lock",
)

# etcd members run no containers: their dockerd is masked on systemd's command line
# (in a container, PID 1's arguments are its kernel command line).
ETCD_INIT_ARGS = ("/sbin/init", "systemd.mask=docker.service", "systemd.mask=docker.socket",
                  "systemd.mask=containerd.service")


def docker_volume(member: Member) -> str:
    """A node's /var/lib/docker, or the registry's storage."""
    return f"{member.name}-data" if member.role == ROLE_REGISTRY else f"{member.name}-docker"


def run_args(cfg: ClusterConfig, member: Member, network: str, image: str) -> list[str]:
    """``docker run`` arguments for one member (after ``docker run``)."""
    args = ["-d", "--name", member.name, "--hostname", member.name,
            "--network", network, "--ip", member.ip,
            "--label", f"{LABEL_CLUSTER}={cfg.name}", "--label", f"{LABEL_ROLE}={member.role}",
            *NODE_RUN_FLAGS]
    if member.is_node:
        # dockerd's overlay2 cannot sit on the container's own overlay: a volume per node.
        args += ["-v", f"{docker_volume(member)}:/var/lib/docker"]
    if member.role == ROLE_CONTROL_PLANE:
        # Published on loopback only: the host's kubeconfig, never another machine.
        args += ["-p", f"127.0.0.1::{API_PORT}", "-p", f"127.0.0.1::{HTTP_PORT}"]
    args.append(image)
    if member.role == ROLE_ETCD:
        args += list(ETCD_INIT_ARGS)
    return args


def registry_run_args(cfg: ClusterConfig, member: Member, network: str, image: str) -> list[str]:
    """``docker run`` arguments for the registry: on the cluster network under its alias (what the nodes'
    dockerd asks), its port published on loopback only (what this machine's ``docker push`` talks to: a
    127.0.0.1 registry is one Docker allows over plain HTTP), its blobs on a labelled volume."""
    return ["-d", "--name", member.name, "--hostname", member.name,
            "--network", network, "--ip", member.ip, "--network-alias", REGISTRY_HOST,
            "--label", f"{LABEL_CLUSTER}={cfg.name}", "--label", f"{LABEL_ROLE}={member.role}",
            "-v", f"{docker_volume(member)}:/var/lib/registry", "-p", f"127.0.0.1::{REGISTRY_PORT}", image]


def load_balancer_run_args(cfg: ClusterConfig, member: Member, network: str, image: str,
                           members: Sequence[Member]) -> list[str]:
    """``docker run`` arguments for the load balancer: its configuration in the environment (it is
    written out at start), both API ports published on loopback for the host's kubeconfig."""
    return ["-d", "--name", member.name, "--hostname", member.name, "--network", network, "--ip", member.ip,
            "--label", f"{LABEL_CLUSTER}={cfg.name}", "--label", f"{LABEL_ROLE}={member.role}",
            "-e", f"KUBELITE_LB_CONFIG={load_balancer_config(members)}",
            "-p", f"127.0.0.1::{API_PORT}", "-p", f"127.0.0.1::{HTTP_PORT}", image]
