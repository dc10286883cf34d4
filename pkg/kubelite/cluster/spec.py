"""What a local cluster consists of: pure functions from a validated config to names, addresses and files.

Nothing here touches Docker, so the plan (which container gets which address,
what each component's environment file says) is unit-tested on its own and
the lifecycle code only carries it out.

Addresses are fixed offsets in the cluster's /24 (etcd members .11-.13, the
control plane .10, workers from .21), so every file can be written before any
container exists and ``docker ps`` plus the offsets tell an operator where
everything is.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

LABEL_CLUSTER = "io.kubelite.cluster"
LABEL_ROLE = "io.kubelite.role"

ROLE_ETCD = "etcd"
ROLE_CONTROL_PLANE = "control-plane"
ROLE_WORKER = "worker"

API_PORT = 6443
HTTP_PORT = 8080
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
ETCD_MEMBERS = 3

# Where a node's components find the API server (written into every node).
NODE_KUBECONFIG = "/etc/kubelite/kubeconfig"
ENV_DIR = "/etc/kubelite"

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME = 40  # leaves room for "-control-plane" within a 63-character hostname
MAX_WORKERS = 50

# Host offsets inside the cluster subnet.
_CONTROL_PLANE_HOST = 10
_ETCD_FIRST_HOST = 11
_WORKER_FIRST_HOST = 21


class ConfigError(ValueError):
    """A cluster option is invalid; the message names the option."""


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

    def __post_init__(self) -> None:
        validate_name(self.name)
        if not 0 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"invalid --workers {self.workers}: must be between 0 and {MAX_WORKERS}")
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


@dataclass(frozen=True)
class Member:
    """One container of the cluster; its name is its node (or etcd member) name."""

    name: str
    role: str
    ip: str
    # Components whose units run here (those whose binaries exist are enabled).
    components: tuple[str, ...] = field(default=())

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


CONTROL_PLANE_COMPONENTS = ("apiserver", "scheduler", "controller-manager", "kubelet", "proxy")
WORKER_COMPONENTS = ("kubelet", "proxy")


def plan(cfg: ClusterConfig, subnet: ipaddress.IPv4Network) -> list[Member]:
    """Every container of the cluster, etcd members first, in start order."""
    base = subnet.network_address

    def host(offset: int) -> str:
        return str(base + offset)

    members = [Member(node_name(cfg.name, ROLE_ETCD, i), ROLE_ETCD, host(_ETCD_FIRST_HOST + i), ("etcd",))
               for i in range(ETCD_MEMBERS)]
    members.append(Member(node_name(cfg.name, ROLE_CONTROL_PLANE, 0), ROLE_CONTROL_PLANE,
                          host(_CONTROL_PLANE_HOST), CONTROL_PLANE_COMPONENTS))
    members += [Member(node_name(cfg.name, ROLE_WORKER, i), ROLE_WORKER, host(_WORKER_FIRST_HOST + i),
                       WORKER_COMPONENTS) for i in range(cfg.workers)]
    return members


def etcd_members(members: Sequence[Member]) -> list[Member]:
    return [m for m in members if m.role == ROLE_ETCD]


def control_plane(members: Sequence[Member]) -> Member:
    return next(m for m in members if m.role == ROLE_CONTROL_PLANE)


def etcd_servers(members: Sequence[Member]) -> str:
    return ",".join(f"http://{m.ip}:{ETCD_CLIENT_PORT}" for m in etcd_members(members))


def _env_line(var: str, flags: Sequence[str]) -> str:
    # systemd's EnvironmentFile takes a double-quoted value; an unbraced $VAR in
    # ExecStart= splits it into one argument per flag.
    for f in flags:
        if '"' in f or "\\" in f or " " in f:
            raise ConfigError(f"flag {f!r} cannot go into {var}: no spaces, quotes or backslashes")
    return f'{var}="{" ".join(flags)}"\n'


def etcd_env(cfg: ClusterConfig, member: Member, members: Sequence[Member]) -> str:
    """etcd reads ETCD_<FLAG> variables natively: the file is its own flags, upper-cased."""
    initial = ",".join(f"{m.name}=http://{m.ip}:{ETCD_PEER_PORT}" for m in etcd_members(members))
    values = {
        "ETCD_NAME": member.name,
        "ETCD_DATA_DIR": "/var/lib/etcd/kubelite",
        "ETCD_LISTEN_PEER_URLS": f"http://{member.ip}:{ETCD_PEER_PORT}",
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": f"http://{member.ip}:{ETCD_PEER_PORT}",
        "ETCD_LISTEN_CLIENT_URLS": f"http://{member.ip}:{ETCD_CLIENT_PORT},http://127.0.0.1:{ETCD_CLIENT_PORT}",
        "ETCD_ADVERTISE_CLIENT_URLS": f"http://{member.ip}:{ETCD_CLIENT_PORT}",
        "ETCD_INITIAL_CLUSTER": initial,
        # Read only when the data directory is empty: a restarted member rejoins with its data.
        "ETCD_INITIAL_CLUSTER_STATE": "new",
        "ETCD_INITIAL_CLUSTER_TOKEN": f"kubelite-{cfg.name}",
        "ETCD_LOG_LEVEL": "warn",
    }
    return "".join(f"{k}={v}\n" for k, v in values.items())


def component_env(cfg: ClusterConfig, component: str, member: Member, members: Sequence[Member]) -> str:
    """The environment file of one component on one node: its flags under Kubernetes' names."""
    kubeconfig = f"--kubeconfig={NODE_KUBECONFIG}"
    flags: list[str]
    if component == "apiserver":
        flags = [f"--etcd-servers={etcd_servers(members)}", "--bind-address=0.0.0.0",
                 f"--secure-port={API_PORT}", "--http-bind-address=0.0.0.0", f"--http-port={HTTP_PORT}",
                 f"--service-cluster-ip-range={cfg.service_cluster_ip_range}",
                 f"--service-node-port-range={cfg.service_node_port_range}"]
    elif component == "scheduler":
        flags = [kubeconfig, "--leader-elect=true"]
    elif component == "controller-manager":
        flags = [kubeconfig, f"--cluster-cidr={cfg.cluster_cidr}", "--node-cidr-mask-size=24",
                 "--leader-elect=true"]
    elif component == "kubelet":
        flags = [kubeconfig, f"--hostname-override={member.name}", f"--node-ip={member.ip}", "--runtime=docker",
                 f"--cluster-dns={cfg.cluster_dns}", f"--cluster-domain={cfg.cluster_domain}"]
        if member.role == ROLE_CONTROL_PLANE:
            flags += ["--node-labels=node-role.kubernetes.io/control-plane=",
                      "--register-with-taints=node-role.kubernetes.io/control-plane=:NoSchedule"]
    elif component == "proxy":
        flags = [kubeconfig, f"--hostname-override={member.name}", "--proxy-mode=iptables",
                 f"--cluster-cidr={cfg.cluster_cidr}"]
    else:
        raise ConfigError(f"unknown component {component!r}")
    var = "KUBELITE_" + component.upper().replace("-", "_") + "_ARGS"
    return f"# kubelite-{component} on {member.name}, written by `kubelite cluster up`.\n" + _env_line(var, flags)


def unit(component: str) -> str:
    return f"kubelite-{component}.service"


def binary(component: str) -> str:
    return "etcd" if component == "etcd" else f"kubelite-{component}"


def env_path(component: str) -> str:
    return f"{ENV_DIR}/{component}.env"


def node_kubeconfig(members: Sequence[Member]) -> str:
    """The kubeconfig every component on a node uses: the control plane's address on the cluster network."""
    cp = control_plane(members)
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: kubelite\n  cluster:\n    server: http://{cp.ip}:{API_PORT}\n"
        "users:\n- name: kubelite\n  user: {}\n"
        "contexts:\n- name: kubelite\n  context:\n    cluster: kubelite\n    user: kubelite\n"
        "current-context: kubelite\n"
    )


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
    return f"{member.name}-docker"


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
