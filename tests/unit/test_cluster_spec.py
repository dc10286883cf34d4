"""The local cluster's plan (names, addresses, env files, docker run flags) and host kubeconfig merging."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kubelite.cli.app import cli
from kubelite.cluster import lifecycle, spec
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
    assert spec.control_plane(members).components[0] == "apiserver"
    assert spec.etcd_servers(members) == "http://172.30.7.11:2379,http://172.30.7.12:2379,http://172.30.7.13:2379"


def test_etcd_env_lists_every_member_and_its_own_urls() -> None:
    members = spec.plan(ClusterConfig(name="demo", workers=0), NET)
    env = dict(line.split("=", 1) for line in spec.etcd_env(ClusterConfig(name="demo"), members[1], members)
               .splitlines())
    assert env["ETCD_NAME"] == "demo-etcd2"
    assert env["ETCD_INITIAL_CLUSTER"] == ("demo-etcd1=http://172.30.7.11:2380,demo-etcd2=http://172.30.7.12:2380,"
                                           "demo-etcd3=http://172.30.7.13:2380")
    assert env["ETCD_ADVERTISE_CLIENT_URLS"] == "http://172.30.7.12:2379"
    assert env["ETCD_INITIAL_CLUSTER_TOKEN"] == "kubelite-demo"


def test_component_env_files_use_kubernetes_flag_names() -> None:
    cfg = ClusterConfig(name="demo", workers=1)
    members = spec.plan(cfg, NET)
    cp, worker = spec.control_plane(members), members[-1]
    api = spec.component_env(cfg, "apiserver", cp, members)
    assert 'KUBELITE_APISERVER_ARGS="--etcd-servers=http://172.30.7.11:2379,' in api
    assert "--http-bind-address=0.0.0.0" in api and "--service-cluster-ip-range=10.96.0.0/16" in api
    kubelet = spec.component_env(cfg, "kubelet", worker, members)
    assert "KUBELITE_KUBELET_ARGS=" in kubelet
    for flag in ("--kubeconfig=/etc/kubelite/kubeconfig", "--hostname-override=demo-worker",
                 "--node-ip=172.30.7.21", "--runtime=docker", "--cluster-dns=10.96.0.10"):
        assert flag in kubelet
    assert "--register-with-taints" not in kubelet
    assert "--register-with-taints=node-role.kubernetes.io/control-plane=:NoSchedule" in spec.component_env(
        cfg, "kubelet", cp, members)
    cm = spec.component_env(cfg, "controller-manager", cp, members)
    assert "KUBELITE_CONTROLLER_MANAGER_ARGS=" in cm and "--cluster-cidr=10.244.0.0/16" in cm
    assert "server: http://172.30.7.10:6443" in spec.node_kubeconfig(members)
    with pytest.raises(ConfigError, match="unknown component"):
        spec.component_env(cfg, "nope", cp, members)


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
    lifecycle.write_host_kubeconfig("demo", "http://127.0.0.1:1111", str(path))
    lifecycle.write_host_kubeconfig("demo", "http://127.0.0.1:2222", str(path))
    doc = yaml.safe_load(path.read_text())
    assert doc["current-context"] == "kubelite-demo"
    assert [c["name"] for c in doc["clusters"]] == ["other", "kubelite-demo"]
    assert doc["clusters"][1]["cluster"]["server"] == "http://127.0.0.1:2222"
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
