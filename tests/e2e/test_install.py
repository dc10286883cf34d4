"""End to end: deploy/install.sh on bare Debian hosts that boot systemd, standing in for VMs.

The hosts run kubelite/vm (Debian minbase + systemd; deploy/install.sh's
packages are downloaded into apt's cache but not installed, so the test
installs them for real without the network). Nothing of kubelite is in the
image: the test copies in deploy/ and wheels built from this tree, as an
operator would scp them, and runs the script as root. One control plane
(with its own etcd member) and one worker on a network of the test's own.
"""

from __future__ import annotations

import asyncio
import pathlib
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from kubelite.cluster import images, lifecycle, spec
from kubelite.cluster.docker import DockerCLI

# Two hosts installing Debian packages and a virtualenv share 2 cores with everything else: the
# setup takes 1-2 minutes on a quiet machine, several on a loaded one.
pytestmark = pytest.mark.timeout(1200)

REPO = pathlib.Path(__file__).resolve().parents[2]
KUBELITE = str(pathlib.Path(sys.executable).parent / "kubelite")
SRC = "/root/kubelite"


def run(*args: str, code: int | None = 0, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if code is not None:
        assert r.returncode == code, f"{' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


@dataclass(frozen=True)
class Hosts:
    name: str
    cp: spec.Member
    worker: spec.Member
    installed: dict[str, str] = field(default_factory=dict)  # role -> install.sh's stdout


def install(host: spec.Member, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(["docker", "exec", host.name, "bash", f"{SRC}/deploy/install.sh", *args,
                             "--wheels", f"{SRC}/wheels"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    docker = DockerCLI()
    asyncio.run(images.ensure_vm_image(docker, print))
    name = f"e2e-vm-{secrets.token_hex(3)}"
    cfg = spec.ClusterConfig(name=name, workers=1)
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        subnet = asyncio.run(lifecycle.create_network(docker, cfg))
        base = subnet.network_address
        cp = spec.Member(f"{name}-cp", spec.ROLE_CONTROL_PLANE, str(base + 10))
        worker = spec.Member(f"{name}-worker", spec.ROLE_WORKER, str(base + 21))
        with tempfile.TemporaryDirectory(prefix="kubelite-e2e-wheels-", dir="/var/tmp") as tmp:
            asyncio.run(images.build_wheels(REPO, pathlib.Path(tmp)))
            for m in (cp, worker):
                run("docker", "volume", "create", "--label", f"{spec.LABEL_CLUSTER}={name}", spec.docker_volume(m))
                run("docker", "run", *spec.run_args(cfg, m, name, images.VM_IMAGE))
                bare = run("docker", "exec", m.name, "sh", "-c", "command -v kubelite etcd dockerd", code=None)
                assert bare.stdout.strip() == "", f"{images.VM_IMAGE} must start without kubelite: {bare.stdout}"
                run("docker", "exec", m.name, "mkdir", "-p", SRC)
                run("docker", "cp", str(REPO / "deploy"), f"{m.name}:{SRC}/deploy")
                run("docker", "cp", tmp, f"{m.name}:{SRC}/wheels")
        for m in (cp, worker):
            asyncio.run(lifecycle.wait_booted(docker, m.name))
        hosts = Hosts(name, cp, worker)
        # Both hosts install at once, as two VMs would (the worker needs the API only once it runs).
        procs["control-plane"] = install(hosts.cp, "control-plane", "--node-ip", cp.ip)
        procs["worker"] = install(hosts.worker, "worker", "--node-ip", worker.ip, f"--server=http://{cp.ip}:6443")
        outputs = {}
        for role, proc in procs.items():
            out, err = proc.communicate(timeout=1000)
            assert proc.returncode == 0, f"install.sh {role}: exit {proc.returncode}\n{out}\n{err}"
            outputs[role] = out
        yield Hosts(name, cp, worker, outputs)
    finally:
        for proc in procs.values():  # our `docker exec` children, by PID
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        asyncio.run(lifecycle.down(name, docker))


def wait_ready(ip: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{ip}:8080/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.3)


def test_a_control_plane_vm_installs_and_serves_the_api(hosts: Hosts) -> None:
    assert f"{hosts.cp.name} configured as control-plane: enabled etcd, apiserver" in hosts.installed["control-plane"]
    for unit in ("docker", "kubelite-etcd", "kubelite-apiserver"):
        assert run("docker", "exec", hosts.cp.name, "systemctl", "is-active", unit).stdout.strip() == "active"
    env = run("docker", "exec", hosts.cp.name, "cat", "/etc/kubelite/apiserver.env").stdout
    assert "--etcd-servers=http://127.0.0.1:2379" in env
    # Debian's own etcd unit would fight ours for the ports: install.sh masks it.
    assert run("docker", "exec", hosts.cp.name, "systemctl", "is-enabled", "etcd", code=None).stdout.strip() == "masked"
    wait_ready(hosts.cp.ip)
    r = run(KUBELITE, "--server", f"http://{hosts.cp.ip}:6443", "get", "ns", code=None)
    restarts = run("docker", "exec", hosts.cp.name, "systemctl", "show", "-p", "NRestarts", "--value",
                   "kubelite-apiserver", "kubelite-etcd").stdout.split()
    if r.returncode != 0 or restarts != ["0", "0"]:
        logs = run("docker", "exec", hosts.cp.name, "journalctl", "--no-pager", "-n", "80", "-u", "kubelite-apiserver",
                   "-u", "kubelite-etcd", code=None).stdout
        pytest.fail(f"get ns: exit {r.returncode} {r.stderr}; restarts (apiserver, etcd): {restarts}\n{logs}")
    assert "kube-system" in r.stdout
    assert run("docker", "exec", hosts.cp.name, "systemctl", "is-system-running").stdout.strip() == "running"
    # The install's last step applied the cluster add-ons: the cluster DNS behind the kubelets' --cluster-dns.
    ip = run(KUBELITE, "--server", f"http://{hosts.cp.ip}:6443", "get", "svc", "kube-dns", "-n", "kube-system",
             "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
    assert ip == "10.96.0.10"
    run(KUBELITE, "--server", f"http://{hosts.cp.ip}:6443", "get", "deploy", "coredns", "-n", "kube-system")


def test_a_worker_vm_joins_the_control_planes_api(hosts: Hosts) -> None:
    server = f"http://{hosts.cp.ip}:6443"
    assert f"{hosts.worker.name} configured as worker" in hosts.installed["worker"]
    kubeconfig = run("docker", "exec", hosts.worker.name, "cat", "/etc/kubelite/kubeconfig").stdout
    assert f"server: {server}" in kubeconfig
    kubelet_env = run("docker", "exec", hosts.worker.name, "cat", "/etc/kubelite/kubelet.env").stdout
    assert f"--hostname-override={hosts.worker.name}" in kubelet_env and f"--node-ip={hosts.worker.ip}" in kubelet_env
    assert run("docker", "exec", hosts.worker.name, "systemctl", "is-active", "docker").stdout.strip() == "active"
    # The worker's own kubelite, with the kubeconfig its components use, reaches the API server.
    out = run("docker", "exec", hosts.worker.name, "kubelite", "--kubeconfig", "/etc/kubelite/kubeconfig",
              "get", "ns").stdout
    assert "default" in out
    assert run("docker", "exec", hosts.worker.name, "systemctl", "is-system-running").stdout.strip() == "running"
    # Idempotent: a second run changes nothing and succeeds.
    run("docker", "exec", hosts.worker.name, "bash", f"{SRC}/deploy/install.sh", "worker",
        "--wheels", f"{SRC}/wheels", "--node-ip", hosts.worker.ip, f"--server={server}")


def test_reset_leaves_no_kubelite_state(hosts: Hosts) -> None:
    run("docker", "exec", hosts.worker.name, "bash", f"{SRC}/deploy/install.sh", "--reset")
    left = run("docker", "exec", hosts.worker.name, "sh", "-c",
               "ls -d /etc/kubelite /opt/kubelite /var/lib/kubelite /usr/local/lib/systemd/system/kubelite* "
               "/usr/local/bin/kubelite* 2>/dev/null", code=None).stdout.split()
    assert left == []
    # (exit 1: no unit file matches)
    units = run("docker", "exec", hosts.worker.name, "systemctl", "list-unit-files", "--no-legend",
                "kubelite*", code=None).stdout
    assert units.strip() == ""
    # The distro's Docker engine stays, as kubeadm reset leaves the runtime.
    assert run("docker", "exec", hosts.worker.name, "systemctl", "is-active", "docker").stdout.strip() == "active"
