"""The local cluster's plan (names, addresses, env files, docker run flags) and host kubeconfig merging."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from kubelite.cli.app import cli
from kubelite.client.kubeconfig import load_kubeconfig
from kubelite.cluster import lifecycle, node, spec
from kubelite.cluster.spec import ClusterConfig, ConfigError

NET = ipaddress.IPv4Network("172.30.7.0/24")


def test_plan_names_and_addresses_follow_kinds_scheme() -> None:
    members = spec.plan(ClusterConfig(name="demo", workers=3), NET)
    assert [(m.name, m.role, m.ip) for m in members] == [
        ("demo-etcd1", "etcd", "172.30.7.11"),
        ("demo-etcd2", "etcd", "172.30.7.12"),
        ("demo-etcd3", "etcd", "172.30.7.13"),
        ("demo-control-plane", "control-plane", "172.30.7.10"),
        ("demo-worker", "worker", "172.30.7.21"),
        ("demo-worker2", "worker", "172.30.7.22"),
        ("demo-worker3", "worker", "172.30.7.23"),
    ]
    assert spec.etcd_servers(members) == "http://172.30.7.11:2379,http://172.30.7.12:2379,http://172.30.7.13:2379"


def test_several_control_planes_sit_behind_a_load_balancer_that_workers_use() -> None:
    cfg = ClusterConfig(name="demo", workers=1, control_planes=3)
    members = spec.plan(cfg, NET)
    assert [(m.name, m.ip) for m in spec.control_planes(members)] == [
        ("demo-control-plane", "172.30.7.10"), ("demo-control-plane2", "172.30.7.6"),
        ("demo-control-plane3", "172.30.7.7")]
    lb = spec.load_balancer(members)
    assert lb is not None and (lb.name, lb.role, lb.ip, lb.is_node) == (
        "demo-external-load-balancer", "load-balancer", "172.30.7.4", False)
    worker = next(m for m in members if m.role == spec.ROLE_WORKER)
    assert spec.node_config(cfg, worker, members).server == "http://172.30.7.4:6443"
    # Every control plane talks to the same etcd members and runs its own API server.
    assert {spec.node_config(cfg, m, members).etcd_servers for m in spec.control_planes(members)} == {
        spec.etcd_servers(members)}
    config = spec.load_balancer_config(members)
    for port in (spec.API_PORT, spec.HTTP_PORT):
        assert f"bind *:{port}" in config
        for ip in ("172.30.7.10", "172.30.7.6", "172.30.7.7"):
            assert f"{ip}:{port} check port {spec.HTTP_PORT} inter 1s fall 2 rise 2" in config
    assert "http-check send meth GET uri /readyz" in config
    args = spec.load_balancer_run_args(cfg, lb, "demo", "kubelite/load-balancer:x", members)
    assert f"KUBELITE_LB_CONFIG={config}" in args and args[-1] == "kubelite/load-balancer:x"
    # One control plane needs no load balancer: workers go to it directly.
    single = spec.plan(ClusterConfig(name="demo", workers=1), NET)
    assert spec.load_balancer(single) is None
    assert spec.node_config(cfg, single[-1], single).server == "http://172.30.7.10:6443"


def _nodes(workers: int = 1) -> tuple[ClusterConfig, list[spec.Member]]:
    cfg = ClusterConfig(name="demo", workers=workers)
    return cfg, spec.plan(cfg, NET)


def test_etcd_env_lists_every_member_and_its_own_urls() -> None:
    cfg, members = _nodes(0)
    nc = spec.node_config(cfg, members[1], members)
    assert nc.components == ("etcd",)
    lines = [line for line in node.etcd_env(nc).splitlines() if not line.startswith("#")]
    env = dict(line.split("=", 1) for line in lines)
    assert env["ETCD_NAME"] == "demo-etcd2"
    assert env["ETCD_INITIAL_CLUSTER"] == ("demo-etcd1=http://172.30.7.11:2380,demo-etcd2=http://172.30.7.12:2380,"
                                           "demo-etcd3=http://172.30.7.13:2380")
    assert env["ETCD_ADVERTISE_CLIENT_URLS"] == "http://172.30.7.12:2379"
    assert env["ETCD_INITIAL_CLUSTER_TOKEN"] == "kubelite-demo"


def test_component_env_files_use_kubernetes_flag_names() -> None:
    cfg, members = _nodes()
    cp = spec.node_config(cfg, spec.control_plane(members), members)
    worker = spec.node_config(cfg, members[-1], members)
    assert cp.components == ("apiserver", "scheduler", "controller-manager", "kubelet", "proxy")
    assert worker.components == ("kubelet", "proxy")
    api = node.component_env(cp, "apiserver")
    assert 'KUBELITE_APISERVER_ARGS="--etcd-servers=http://172.30.7.11:2379,' in api
    assert "--http-bind-address=0.0.0.0" in api and "--service-cluster-ip-range=10.96.0.0/16" in api
    kubelet = node.component_env(worker, "kubelet")
    assert "KUBELITE_KUBELET_ARGS=" in kubelet
    for flag in ("--kubeconfig=/etc/kubelite/kubeconfig", "--hostname-override=demo-worker",
                 "--node-ip=172.30.7.21", "--runtime=docker", "--cluster-dns=10.96.0.10"):
        assert flag in kubelet
    assert "--register-with-taints" not in kubelet
    assert "--register-with-taints=node-role.kubernetes.io/control-plane=:NoSchedule" in node.component_env(
        cp, "kubelet")
    cm = node.component_env(cp, "controller-manager")
    assert "KUBELITE_CONTROLLER_MANAGER_ARGS=" in cm and "--cluster-cidr=10.244.0.0/16" in cm
    assert "server: http://172.30.7.10:6443" in node.files(worker)["/etc/kubelite/kubeconfig"][0]
    assert "server: http://172.30.7.10:6443" in node.files(cp)["/etc/kubelite/kubeconfig"][0]
    with pytest.raises(ConfigError, match="unknown component"):
        node.component_env(cp, "nope")


def test_node_config_round_trips_through_configure_node_flags() -> None:
    cfg, members = _nodes()
    for m in members:
        nc = spec.node_config(cfg, m, members)
        flags: dict[str, Any] = {"extra_args": ()}
        for arg in nc.to_args():
            key, _, value = arg.removeprefix("--").partition("=")
            if key == "extra-arg":
                flags["extra_args"] += (value,)
            else:
                flags[key.replace("-", "_")] = value
        assert node.NodeConfig(**flags) == nc


def test_a_vm_control_plane_without_etcd_servers_runs_its_own_member() -> None:
    nc = node.NodeConfig(role="control-plane", node_name="cp1", node_ip="10.0.0.5")
    assert nc.components[0] == "etcd"
    assert "ETCD_INITIAL_CLUSTER=cp1=http://10.0.0.5:2380" in node.etcd_env(nc)
    assert "--etcd-servers=http://127.0.0.1:2379" in node.component_env(nc, "apiserver")


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"role": "boss"}, "--role"),
    ({"node_ip": "10.0.0"}, "--node-ip"),
    ({"role": "worker"}, "--server"),
    ({"role": "worker", "server": "10.0.0.1:6443"}, "--server"),
    ({"etcd_servers": "http://a:2379,b:2379"}, "--etcd-servers"),
    ({"initial_cluster": "=http://x:2380"}, "--initial-cluster"),
    ({"cluster_dns": "ten"}, "--cluster-dns"),
    ({"extra_args": ("scheduler--v=4",)}, "--extra-arg"),
    ({"extra_args": ("etcd:--x=1",)}, "--extra-arg"),
    ({"extra_args": ("kubelet:v=4",)}, "--extra-arg"),
])
def test_bad_node_config_names_the_flag(kwargs: dict[str, str], field: str) -> None:
    args = {"role": "control-plane", "node_name": "n", "node_ip": "10.0.0.5", **kwargs}
    with pytest.raises(ConfigError, match=field):
        node.NodeConfig(**args)


def test_extra_args_reach_their_component_only_and_come_last() -> None:
    cfg = spec.ClusterConfig(name="c", workers=1, extra_args=(
        "controller-manager:--node-monitor-grace-period=10s", "apiserver:--default-unreachable-toleration-seconds=20"))
    members = spec.plan(cfg, spec.parse_subnet("172.30.7.0/24"))
    cp = spec.node_config(cfg, spec.control_plane(members), members)
    cm = node.component_env(cp, "controller-manager")
    assert cm.rstrip().endswith('--node-monitor-grace-period=10s"')
    assert "--default-unreachable-toleration-seconds=20" in node.component_env(cp, "apiserver")
    assert "toleration" not in cm and "monitor" not in node.component_env(cp, "scheduler")
    # A cluster without extras keeps Kubernetes' defaults: the flags are not even mentioned.
    plain = spec.node_config(spec.ClusterConfig(name="c"), spec.control_plane(members), members)
    assert "monitor" not in node.component_env(plain, "controller-manager")
    with pytest.raises(ConfigError, match="--extra-arg"):
        spec.ClusterConfig(extra_args=("dns:--x",))


def test_a_joining_worker_keeps_its_token_in_the_bootstrap_kubeconfig_only() -> None:
    nc = node.NodeConfig(role="worker", node_name="w", node_ip="10.0.0.7", server="http://10.0.0.5:6443",
                         bootstrap_token="abcdef.0123456789abcdef")
    out = node.files(nc)
    assert "token: abcdef.0123456789abcdef" in out[node.BOOTSTRAP_KUBECONFIG][0]
    assert out[node.BOOTSTRAP_KUBECONFIG][1] == 0o600
    assert "token" not in out[node.NODE_KUBECONFIG][0]
    assert "bootstrap-kubeconfig" not in node.files(node.NodeConfig(role="worker", node_name="w", node_ip="10.0.0.7",
                                                                      server="http://10.0.0.5:6443"))


class FakeHost:
    def __init__(self, binaries: set[str]) -> None:
        self.binaries = binaries
        self.files: dict[str, tuple[str, int]] = {}
        self.calls: list[tuple[str, ...]] = []
        self.removed: list[str] = []

    def write(self, path: str, content: str, mode: int) -> None:
        self.files[path] = (content, mode)

    def has_binary(self, name: str) -> bool:
        return name in self.binaries

    def systemctl(self, *args: str) -> None:
        self.calls.append(args)

    def remove(self, path: str) -> None:
        self.removed.append(path)

    def remove_pod_containers(self) -> int:
        self.calls.append(("remove-pod-containers",))
        return 2

    def remove_pod_networks(self) -> int:
        self.calls.append(("remove-pod-networks",))
        return 1

    def cleanup_proxy_rules(self) -> None:
        self.calls.append(("proxy-cleanup",))


def test_configure_enables_only_installed_components_and_reset_undoes_it() -> None:
    cfg, members = _nodes()
    nc = spec.node_config(cfg, spec.control_plane(members), members)
    host = FakeHost({"kubelite-apiserver"})
    done = node.configure(nc, host)
    assert done.enabled == ["apiserver"]
    assert done.skipped == ["scheduler", "controller-manager", "kubelet", "proxy"]
    # Every component's env file is written, enabled or not: the binary can arrive later.
    assert set(host.files) == {"/etc/kubelite/kubeconfig", *(f"/etc/kubelite/{c}.env" for c in nc.components)}
    assert host.files["/etc/kubelite/kubeconfig"][1] == 0o600
    assert host.calls == [("daemon-reload",), ("enable", "--now", "--no-block", "kubelite-apiserver.service")]
    assert node.configure(nc, FakeHost(set())).enabled == []

    host = FakeHost(set())
    assert node.reset(host) == 2
    assert host.calls[0][:2] == ("disable", "--now") and "kubelite-kubelet.service" in host.calls[0]
    # Rules go after the proxy stopped (it would restore them), then pod containers, then their bridge.
    assert host.calls[1:] == [("proxy-cleanup",), ("remove-pod-containers",), ("remove-pod-networks",)]
    assert host.removed == ["/etc/kubelite", "/var/lib/kubelite", "/var/lib/etcd/kubelite"]


def test_local_host_writes_files_under_its_root(tmp_path: Path) -> None:
    host = node.LocalHost(str(tmp_path))
    host.write("/etc/kubelite/x.env", "A=1\n", 0o600)
    assert (tmp_path / "etc/kubelite/x.env").read_text() == "A=1\n"
    assert oct((tmp_path / "etc/kubelite/x.env").stat().st_mode & 0o777) == "0o600"
    host.remove("/etc/kubelite")
    assert not (tmp_path / "etc/kubelite").exists()


def test_run_args_are_platforms_working_flags() -> None:
    cfg = ClusterConfig(name="demo", workers=1)
    members = spec.plan(cfg, NET)
    worker = spec.run_args(cfg, members[-1], "demo", "kubelite/node:x")
    assert "--privileged" not in worker
    joined = " ".join(worker)
    for part in ("--cap-add ALL --cap-drop SYS_RESOURCE", "--security-opt systempaths=unconfined",
                 "-v /sys/fs/cgroup:/sys/fs/cgroup:rw --cgroupns host", "--tmpfs /run --tmpfs /run/lock",
                 "-v demo-worker-docker:/var/lib/docker", "--label io.kubelite.cluster=demo",
                 "--label io.kubelite.role=worker", "--ip 172.30.7.21"):
        assert part in joined
    assert worker[-1] == "kubelite/node:x"
    cp = " ".join(spec.run_args(cfg, spec.control_plane(members), "demo", "img"))
    assert "-p 127.0.0.1::6443" in cp and "-p 127.0.0.1::8080" in cp
    etcd = spec.run_args(cfg, members[0], "demo", "img")
    assert "/var/lib/docker" not in " ".join(etcd)
    assert etcd[-4:] == ["/sbin/init", "systemd.mask=docker.service", "systemd.mask=docker.socket",
                         "systemd.mask=containerd.service"]


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"name": "Bad_Name"}, "--name"),
    ({"name": "x" * 41}, "--name"),
    ({"workers": -1}, "--workers"),
    ({"control_planes": 0}, "--control-planes"),
    ({"control_planes": 6}, "--control-planes"),
    ({"subnet": "172.30.1.0/16"}, "--subnet"),
    ({"subnet": "8.8.8.0/24"}, "--subnet"),
    ({"subnet": "nonsense"}, "--subnet"),
    ({"cluster_cidr": "10.244.0.1/16"}, "--cluster-cidr"),
])
def test_bad_config_names_the_flag(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        ClusterConfig(**kwargs)  # type: ignore[arg-type]


def test_candidate_subnets_cover_the_range_from_a_name_derived_start() -> None:
    nets = lifecycle.candidate_subnets("demo")
    assert len(set(nets)) == 256
    assert all(n.subnet_of(ipaddress.IPv4Network("172.30.0.0/16")) for n in nets)
    assert nets == lifecycle.candidate_subnets("demo")


def test_host_kubeconfig_is_merged_and_removed(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "other",
        "clusters": [{"name": "other", "cluster": {"server": "http://10.0.0.1:6443"}}],
        "users": [{"name": "other", "user": {"token": "t"}}],
        "contexts": [{"name": "other", "context": {"cluster": "other", "user": "other"}}],
    }))
    lifecycle.write_host_kubeconfig("demo", "http://127.0.0.1:1111", "http://127.0.0.1:1112", str(path))
    lifecycle.write_host_kubeconfig("demo", "http://127.0.0.1:2222", "http://127.0.0.1:2223", str(path))
    doc = yaml.safe_load(path.read_text())
    assert doc["current-context"] == "kubelite-demo"
    assert [c["name"] for c in doc["clusters"]] == ["other", "kubelite-demo"]
    # kubectl reads the REST address; kubelite its gRPC one from the extension.
    assert doc["clusters"][1]["cluster"]["server"] == "http://127.0.0.1:2223"
    assert doc["clusters"][1]["cluster"]["extensions"] == [
        {"name": "kubelite.io/grpc", "extension": {"server": "http://127.0.0.1:2222"}}]
    assert load_kubeconfig(str(path)).server == "http://127.0.0.1:2222"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert lifecycle.remove_from_kubeconfig("demo", str(path))
    doc = yaml.safe_load(path.read_text())
    assert [c["name"] for c in doc["contexts"]] == ["other"] and doc["users"][0]["user"] == {"token": "t"}
    assert not lifecycle.remove_from_kubeconfig("demo", str(path))


def test_cli_rejects_a_bad_name_before_touching_docker() -> None:
    r = CliRunner().invoke(cli, ["cluster", "up", "--name", "Not_Valid"])
    assert r.exit_code == 1
    assert "--name" in r.output
    r = CliRunner().invoke(cli, ["cluster", "down", "--name", ""])
    assert r.exit_code == 1 and "--name" in r.output
