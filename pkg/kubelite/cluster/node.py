"""Configuring one host as a kubelite node: the step a VM and a node container share.

``kubelite cluster configure-node`` runs on the host itself (a VM after
``deploy/install.sh``, or inside a node container of ``kubelite cluster up``):
it writes one environment file per component under /etc/kubelite with the
component's flags under Kubernetes' names, the node's kubeconfig, and enables
the units of the components whose binary is installed. The local cluster calls
exactly this inside its containers, so the containers test what a VM runs.

Components whose binary is missing (``command -v``) keep their env file but
stay disabled: the units exist before every binary does, and nothing fails.
``reset`` undoes it all (units stopped and disabled, files, state, pod
containers), for ``install.sh --reset``.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Protocol


class ConfigError(ValueError):
    """A cluster or node option is invalid; the message names the option."""


ROLE_ETCD = "etcd"
ROLE_CONTROL_PLANE = "control-plane"
ROLE_WORKER = "worker"
ROLES = (ROLE_ETCD, ROLE_CONTROL_PLANE, ROLE_WORKER)

API_PORT = 6443
HTTP_PORT = 8080
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380

CONF_DIR = "/etc/kubelite"
NODE_KUBECONFIG = f"{CONF_DIR}/kubeconfig"
# The credential a joining node presented (kubeadm's bootstrap-kubelet.conf). Kept apart from the
# components' kubeconfig on purpose: a bootstrap token expires (24 h by default) and is deleted by the
# token cleaner, and a node must not drop out of the cluster when that happens. Once the security
# work lands, the kubelet trades this file for a node certificate (TLS bootstrap).
BOOTSTRAP_KUBECONFIG = f"{CONF_DIR}/bootstrap-kubeconfig"
# State a node's components keep; removed by reset.
STATE_DIRS = ("/var/lib/kubelite", "/var/lib/etcd/kubelite")

CONTROL_PLANE_COMPONENTS = ("apiserver", "scheduler", "controller-manager", "kubelet", "proxy")
WORKER_COMPONENTS = ("kubelet", "proxy")
ALL_COMPONENTS = ("etcd", *CONTROL_PLANE_COMPONENTS)
# The label the Docker runtime puts on the pod bridge network it creates (kubelite.runtime.docker).
POD_NETWORK_LABEL = "io.kubelite.network"


def unit(component: str) -> str:
    return f"kubelite-{component}.service"


def binary(component: str) -> str:
    return "etcd" if component == "etcd" else f"kubelite-{component}"


def env_path(component: str) -> str:
    return f"{CONF_DIR}/{component}.env"


def _check_ip(flag: str, value: str) -> None:
    try:
        ipaddress.IPv4Address(value)
    except ValueError as exc:
        raise ConfigError(f"invalid {flag} {value!r}: {exc}") from exc


def _check_url(flag: str, value: str) -> None:
    if not value.startswith(("http://", "https://")) or len(value.split("://", 1)[1]) == 0:
        raise ConfigError(f"invalid {flag} {value!r}: must be a URL such as http://10.0.0.10:{API_PORT}")


@dataclass(frozen=True)
class NodeConfig:
    """One host's role and flags. Field names are the flags' (``--node-ip`` is ``node_ip``)."""

    role: str
    node_name: str
    node_ip: str
    # The API server the node's components talk to; a control plane defaults to itself.
    server: str = ""
    # Control plane: the etcd members' client URLs; empty means a member on this host.
    etcd_servers: str = ""
    # etcd role (and a control plane with its own member): the members' peer URLs, name=URL,...
    initial_cluster: str = ""
    initial_cluster_token: str = "kubelite"
    service_cluster_ip_range: str = "10.96.0.0/16"
    service_node_port_range: str = "30000-32767"
    cluster_cidr: str = "10.244.0.0/16"
    cluster_dns: str = "10.96.0.10"
    cluster_domain: str = "cluster.local"
    # A joining worker's bootstrap token (``kubelite join``), written to BOOTSTRAP_KUBECONFIG.
    bootstrap_token: str = ""
    # More flags for one component, COMPONENT:--flag=value (k3s' --kube-controller-manager-arg): the
    # local cluster's e2e tier shortens node monitoring this way; production keeps Kubernetes' defaults.
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigError(f"invalid --role {self.role!r}: one of {', '.join(ROLES)}")
        if not self.node_name:
            raise ConfigError("--node-name is required")
        _check_ip("--node-ip", self.node_ip)
        if self.role == ROLE_WORKER and not self.server:
            raise ConfigError("--server is required for a worker (the API server's URL)")
        if self.server:
            _check_url("--server", self.server)
        for url in filter(None, self.etcd_servers.split(",")):
            _check_url("--etcd-servers", url)
        for entry in filter(None, self.initial_cluster.split(",")):
            name, _, url = entry.partition("=")
            if not name:
                raise ConfigError(f"invalid --initial-cluster entry {entry!r}: must be NAME=URL")
            _check_url("--initial-cluster", url)
        for flag, value in (("--service-cluster-ip-range", self.service_cluster_ip_range),
                            ("--cluster-cidr", self.cluster_cidr)):
            try:
                ipaddress.IPv4Network(value, strict=True)
            except ValueError as exc:
                raise ConfigError(f"invalid {flag} {value!r}: {exc}") from exc
        _check_ip("--cluster-dns", self.cluster_dns)
        for arg in self.extra_args:
            component, sep, flag = arg.partition(":")
            if not sep or component not in CONTROL_PLANE_COMPONENTS or not flag.startswith("--"):
                raise ConfigError(f"invalid --extra-arg {arg!r}: must be COMPONENT:--flag[=value] with COMPONENT "
                                  f"one of {', '.join(CONTROL_PLANE_COMPONENTS)}")

    @property
    def local_etcd(self) -> bool:
        """Whether this host runs an etcd member (an etcd node, or a control plane without --etcd-servers)."""
        return self.role == ROLE_ETCD or (self.role == ROLE_CONTROL_PLANE and not self.etcd_servers)

    @property
    def components(self) -> tuple[str, ...]:
        if self.role == ROLE_ETCD:
            return ("etcd",)
        if self.role == ROLE_CONTROL_PLANE:
            return (("etcd",) if self.local_etcd else ()) + CONTROL_PLANE_COMPONENTS
        return WORKER_COMPONENTS

    @property
    def api_server(self) -> str:
        return self.server or f"http://{self.node_ip}:{API_PORT}"

    def to_args(self) -> list[str]:
        """The ``configure-node`` flags that give back this config (the local cluster passes these)."""
        defaults = NodeConfig.__dataclass_fields__
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra_args":
                out += [f"--extra-arg={a}" for a in value]
            elif f.name in ("role", "node_name", "node_ip") or value != defaults[f.name].default:
                out.append(f"--{f.name.replace('_', '-')}={value}")
        return out


def _env_line(var: str, flags: Sequence[str]) -> str:
    # systemd's EnvironmentFile takes a double-quoted value; an unbraced $VAR in
    # ExecStart= splits it into one argument per flag.
    for f in flags:
        if '"' in f or "\\" in f or " " in f:
            raise ConfigError(f"flag {f!r} cannot go into {var}: no spaces, quotes or backslashes")
    return f'{var}="{" ".join(flags)}"\n'


def etcd_env(node: NodeConfig) -> str:
    """etcd reads ETCD_<FLAG> variables natively: the file is its own flags, upper-cased."""
    peer = f"http://{node.node_ip}:{ETCD_PEER_PORT}"
    values = {
        "ETCD_NAME": node.node_name,
        "ETCD_DATA_DIR": "/var/lib/etcd/kubelite",
        "ETCD_LISTEN_PEER_URLS": peer,
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": peer,
        "ETCD_LISTEN_CLIENT_URLS": f"http://{node.node_ip}:{ETCD_CLIENT_PORT},http://127.0.0.1:{ETCD_CLIENT_PORT}",
        "ETCD_ADVERTISE_CLIENT_URLS": f"http://{node.node_ip}:{ETCD_CLIENT_PORT}",
        "ETCD_INITIAL_CLUSTER": node.initial_cluster or f"{node.node_name}={peer}",
        # Read only when the data directory is empty: a restarted member rejoins with its data.
        "ETCD_INITIAL_CLUSTER_STATE": "new",
        "ETCD_INITIAL_CLUSTER_TOKEN": node.initial_cluster_token,
        "ETCD_LOG_LEVEL": "warn",
    }
    return f"# etcd member {node.node_name}, written by kubelite cluster configure-node.\n" + "".join(
        f"{k}={v}\n" for k, v in values.items())


def component_env(node: NodeConfig, component: str) -> str:
    """The environment file of one component: its flags under Kubernetes' names."""
    if component == "etcd":
        return etcd_env(node)
    kubeconfig = f"--kubeconfig={NODE_KUBECONFIG}"
    flags: list[str]
    if component == "apiserver":
        etcd = node.etcd_servers or f"http://127.0.0.1:{ETCD_CLIENT_PORT}"
        flags = [f"--etcd-servers={etcd}", "--bind-address=0.0.0.0",
                 f"--secure-port={API_PORT}", "--http-bind-address=0.0.0.0", f"--http-port={HTTP_PORT}",
                 f"--service-cluster-ip-range={node.service_cluster_ip_range}",
                 f"--service-node-port-range={node.service_node_port_range}"]
    elif component == "scheduler":
        # Bare: the components' boolean flags take --leader-elect / --no-leader-elect (not =true).
        flags = [kubeconfig, "--leader-elect"]
    elif component == "controller-manager":
        # kubeadm's choice: the token cleaner on, beside the defaults (Kubernetes leaves it out of "*").
        flags = [kubeconfig, "--controllers=*,tokencleaner", f"--cluster-cidr={node.cluster_cidr}",
                 "--node-cidr-mask-size=24", "--leader-elect"]
    elif component == "kubelet":
        flags = [kubeconfig, f"--hostname-override={node.node_name}", f"--node-ip={node.node_ip}",
                 "--runtime=docker", f"--cluster-dns={node.cluster_dns}", f"--cluster-domain={node.cluster_domain}"]
        if node.role == ROLE_CONTROL_PLANE:
            flags += ["--node-labels=node-role.kubernetes.io/control-plane=",
                      "--register-with-taints=node-role.kubernetes.io/control-plane=:NoSchedule"]
    elif component == "proxy":
        # --pod-network=host-gw: the proxy also routes other nodes' pod CIDRs via their addresses
        # (DESIGN.md's host-gw model), which is what pods on different nodes need to reach each other.
        flags = [kubeconfig, f"--hostname-override={node.node_name}", "--proxy-mode=iptables",
                 f"--cluster-cidr={node.cluster_cidr}", "--pod-network=host-gw"]
    else:
        raise ConfigError(f"unknown component {component!r}")
    # Later flags win in every component's parser (click keeps the last value): extras override the above.
    flags += [a.partition(":")[2] for a in node.extra_args if a.partition(":")[0] == component]
    var = "KUBELITE_" + component.upper().replace("-", "_") + "_ARGS"
    return f"# kubelite-{component} on {node.node_name}, written by kubelite cluster configure-node.\n" + _env_line(
        var, flags)


def node_kubeconfig(server: str, token: str = "") -> str:
    """The kubeconfig every component on the node uses (credentials join it once security lands)."""
    user = f"\n    token: {token}\n" if token else " {}\n"
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: kubelite\n  cluster:\n    server: {server}\n"
        f"users:\n- name: kubelite\n  user:{user}"
        "contexts:\n- name: kubelite\n  context:\n    cluster: kubelite\n    user: kubelite\n"
        "current-context: kubelite\n"
    )


def files(node: NodeConfig) -> dict[str, tuple[str, int]]:
    """Every file configure writes: path -> (content, mode)."""
    out = {env_path(c): (component_env(node, c), 0o644) for c in node.components}
    if node.role != ROLE_ETCD:
        out[NODE_KUBECONFIG] = (node_kubeconfig(node.api_server), 0o600)
    if node.bootstrap_token:
        out[BOOTSTRAP_KUBECONFIG] = (node_kubeconfig(node.api_server, node.bootstrap_token), 0o600)
    return out


class Host(Protocol):
    """The machine being configured (this one; a fake in unit tests)."""

    def write(self, path: str, content: str, mode: int) -> None: ...

    def has_binary(self, name: str) -> bool: ...

    def systemctl(self, *args: str) -> None: ...

    def remove(self, path: str) -> None: ...

    def remove_pod_containers(self) -> int: ...

    def remove_pod_networks(self) -> int: ...

    def cleanup_proxy_rules(self) -> None: ...


@dataclass(frozen=True)
class Configured:
    enabled: list[str]
    skipped: list[str]  # components whose binary is not installed


def configure(node: NodeConfig, host: Host, *, start: bool = True) -> Configured:
    """Writes the node's files and enables (and, with ``start``, starts) its installed components."""
    for path, (content, mode) in files(node).items():
        host.write(path, content, mode)
    enabled, skipped = [], []
    for c in node.components:
        if host.has_binary(binary(c)):
            enabled.append(c)
        else:
            skipped.append(c)
    if enabled:
        host.systemctl("daemon-reload")
        # --no-block: an etcd member is ready only once a quorum formed, i.e. after the others start;
        # callers wait for health themselves (etcdctl endpoint health, /readyz).
        host.systemctl("enable", *(["--now", "--no-block"] if start else []), *(unit(c) for c in enabled))
    return Configured(enabled, skipped)


def reset(host: Host) -> int:
    """Stops and disables every kubelite unit, removes the proxy's rules and routes, the pod containers
    and their bridge network, its files and state; returns the number of pod containers removed."""
    host.systemctl("disable", "--now", *(unit(c) for c in ALL_COMPONENTS))
    # After the units stopped: a running proxy would put its rules straight back.
    host.cleanup_proxy_rules()
    removed = host.remove_pod_containers()
    host.remove_pod_networks()
    host.remove(CONF_DIR)
    for d in STATE_DIRS:
        host.remove(d)
    return removed


class LocalHost:
    """This machine: files under ``root`` (``/`` except in tests), systemctl and docker as child processes."""

    def __init__(self, root: str = "/") -> None:
        self.root = Path(root)

    def _path(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def write(self, path: str, content: str, mode: int) -> None:
        target = self._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(content)
        os.chmod(tmp, mode)
        os.replace(tmp, target)

    def has_binary(self, name: str) -> bool:
        return shutil.which(name) is not None

    def systemctl(self, *args: str) -> None:
        r = subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)
        if r.returncode != 0 and args[0] != "disable":
            raise ConfigError(f"systemctl {' '.join(args)} failed: {(r.stderr or r.stdout).strip()}")

    def remove(self, path: str) -> None:
        target = self._path(path)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)

    def remove_pod_containers(self) -> int:
        if shutil.which("docker") is None:
            return 0
        r = subprocess.run(["docker", "ps", "-a", "-q", "--filter", "label=io.kubernetes.pod.uid"],
                           capture_output=True, text=True, check=False)
        cids = r.stdout.split()
        if cids:
            subprocess.run(["docker", "rm", "-f", *cids], capture_output=True, check=False)
        return len(cids)

    def remove_pod_networks(self) -> int:
        if shutil.which("docker") is None:
            return 0
        r = subprocess.run(["docker", "network", "ls", "-q", "--filter", f"label={POD_NETWORK_LABEL}"],
                           capture_output=True, text=True, check=False)
        ids = r.stdout.split()
        if ids:
            subprocess.run(["docker", "network", "rm", *ids], capture_output=True, check=False)
        return len(ids)

    def cleanup_proxy_rules(self) -> None:
        # The proxy knows its own chains, nft tables and routes (both modes): ask it, as kube-proxy --cleanup.
        proxy = shutil.which(binary("proxy"))
        if proxy is not None:
            r = subprocess.run([proxy, "--cleanup"], capture_output=True, text=True, check=False)
            if r.returncode != 0:
                raise ConfigError(f"kubelite-proxy --cleanup failed: {(r.stderr or r.stdout).strip()[-500:]}")
