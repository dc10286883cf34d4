"""End to end: deploy/install.sh on bare Debian hosts that boot systemd, standing in for VMs.

The hosts run kubelite/vm (Debian minbase + systemd; deploy/install.sh's
packages are downloaded into apt's cache but not installed, so the test
installs them for real without the network). Nothing of kubelite is in the
image: the test copies in deploy/ and wheels built from this tree, as an
operator would scp them, and runs the script as root. One control plane
(with its own etcd member) and one worker on a network of the test's own.

The worker joins the way an operator's VM does: `kubelite token create
--print-join-command` against the control plane prints one command, which
runs as printed in the worker's copy of deploy/. It then becomes a Ready
node and runs a pod, and finally leaves (`install.sh --reset`, then
`kubelite delete node`, kubeadm's order) without a trace.
"""

from __future__ import annotations

import asyncio
import pathlib
import re
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
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
    join_command: str = ""

    @property
    def server(self) -> str:
        return f"http://{self.cp.ip}:6443"


def kl(hosts: Hosts, *args: str, code: int | None = 0) -> subprocess.CompletedProcess[str]:
    """The host's kubelite against the control plane VM."""
    return run(KUBELITE, "--server", hosts.server, "--request-timeout", "20s", *args, code=code)


def on(host: spec.Member, *args: str, code: int | None = 0, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return run("docker", "exec", host.name, *args, code=code, timeout=timeout)


def join(hosts: Hosts, command: str, code: int | None = 0) -> subprocess.CompletedProcess[str]:
    """Runs a printed join command as is, in the worker's copy of deploy/ (where an operator put it)."""
    return run("docker", "exec", "-w", f"{SRC}/deploy", hosts.worker.name, "sh", "-c", command, code=code,
               timeout=1000)


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
        procs["control-plane"] = install(hosts.cp, "control-plane", "--node-ip", cp.ip)
        out, err = procs["control-plane"].communicate(timeout=1000)
        assert procs["control-plane"].returncode == 0, f"install.sh control-plane: exit\n{out}\n{err}"
        wait_ready(cp.ip)
        # On the control plane, as an operator would after installing it.
        command = on(cp, "kubelite", "--kubeconfig", "/etc/kubelite/kubeconfig", "token", "create",
                     "--print-join-command", "--description", "e2e worker").stdout.strip()
        yield Hosts(name, cp, worker, {"control-plane": out}, command)
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


def until(what: str, check: Callable[[], bool], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(1)


def node_ready(hosts: Hosts, node: str) -> bool:
    r = kl(hosts, "get", "node", node, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}", code=None)
    return r.returncode == 0 and r.stdout.strip() == "True"


def test_a_join_command_with_a_bad_token_fails_fast_on_a_bare_vm(hosts: Hosts) -> None:
    endpoint = hosts.join_command.split()[3]
    # A token of the wrong form: refused before anything is installed.
    r = join(hosts, f"bash install.sh join {endpoint} --token abcdef.not-a-token", code=1)
    assert "is not a bootstrap token" in r.stderr and "not-a-token" not in r.stderr
    assert on(hosts.worker, "sh", "-c", "command -v kubelite dockerd", code=None).stdout.strip() == ""
    # An address where no API server answers: refused before anything is installed, too.
    r = join(hosts, f"bash install.sh join {hosts.worker.ip}:6443 --token abcdef.0123456789abcdef", code=1)
    assert f"cannot reach the API server at {hosts.worker.ip}:6443" in r.stderr


def test_a_worker_vm_joins_with_the_printed_join_command(hosts: Hosts) -> None:
    m = re.fullmatch(rf"bash install\.sh join {re.escape(hosts.cp.ip)}:6443 --token ([a-z0-9]{{6}})\.[a-z0-9]{{16}}",
                     hosts.join_command)
    assert m, hosts.join_command
    r = join(hosts, hosts.join_command)
    assert f"This node has joined the cluster as {hosts.worker.name}" in r.stdout, r.stdout + r.stderr
    assert f"accepted bootstrap token {m.group(1)}" in r.stderr
    # The token is the join credential only (kubeadm's bootstrap-kubelet.conf), not the components'.
    bootstrap = on(hosts.worker, "cat", "/etc/kubelite/bootstrap-kubeconfig").stdout
    assert f"token: {hosts.join_command.split()[-1]}" in bootstrap
    kubeconfig = on(hosts.worker, "cat", "/etc/kubelite/kubeconfig").stdout
    assert f"server: {hosts.server}" in kubeconfig and "token" not in kubeconfig
    kubelet_env = on(hosts.worker, "cat", "/etc/kubelite/kubelet.env").stdout
    assert f"--hostname-override={hosts.worker.name}" in kubelet_env and f"--node-ip={hosts.worker.ip}" in kubelet_env
    for unit in ("docker", "kubelite-kubelet", "kubelite-proxy"):
        assert on(hosts.worker, "systemctl", "is-active", unit).stdout.strip() == "active"
    until(f"node {hosts.worker.name} Ready", lambda: node_ready(hosts, hosts.worker.name))
    row = kl(hosts, "token", "list").stdout
    assert m.group(1) in row and "e2e worker" in row

    # A well-formed token the cluster does not know: the (installed) worker is refused, and keeps its config.
    r = join(hosts, f"bash install.sh join {hosts.cp.ip}:6443 --token zzzzzz.0123456789abcdef", code=1)
    assert 'refused the bootstrap token "zzzzzz.<redacted>"' in r.stderr, r.stderr
    assert on(hosts.worker, "cat", "/etc/kubelite/kubeconfig").stdout == kubeconfig
    assert on(hosts.worker, "systemctl", "is-active", "kubelite-kubelet").stdout.strip() == "active"


def test_the_joined_worker_runs_a_pod(hosts: Hosts) -> None:
    assert node_ready(hosts, hosts.worker.name)
    # Images without a registry: the host's pause and busybox images into the VM's own Docker engine.
    busybox = run(sys.executable, "-c", "import docker\nfrom kubelite.runtime.images import ensure_busybox_image\n"
                                        "print(ensure_busybox_image(docker.APIClient()))").stdout.strip()
    for image in (images.pause_image(), busybox):
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        load = subprocess.run(["docker", "exec", "-i", hosts.worker.name, "docker", "load", "-q"], stdin=save.stdout,
                              capture_output=True, timeout=300)
        save.wait()
        assert load.returncode == 0 and save.returncode == 0, load.stderr
    kl(hosts, "run", "joined", f"--image={busybox}", "--restart=Never", "--image-pull-policy=Never", "--",
       "sh", "-c", "echo hello from $(hostname); sleep 3600")
    try:
        until("pod joined Running", lambda: kl(hosts, "get", "pod", "joined", "-o", "jsonpath={.status.phase}",
                                               code=None).stdout.strip() == "Running")
        assert kl(hosts, "get", "pod", "joined", "-o", "jsonpath={.spec.nodeName}").stdout.strip() == hosts.worker.name
        until("the pod's log", lambda: "hello from joined" in kl(hosts, "logs", "joined", code=None).stdout, 60)
    finally:
        kl(hosts, "delete", "pod", "joined", "--grace-period=0", "--wait=false", code=None)


def test_reset_then_delete_node_leaves_no_kubelite_state(hosts: Hosts) -> None:
    # A pod of the worker's own, so that reset has a sandbox, an app container and the pod bridge to remove.
    # (the control plane's kubelet is tainted NoSchedule: the worker is the only place it can go).
    kl(hosts, "run", "doomed", f"--image=kubelite/busybox:{images.version()}", "--restart=Never",
       "--image-pull-policy=Never", "--", "sleep", "3600")
    until("pod doomed Running", lambda: kl(hosts, "get", "pod", "doomed", "-o", "jsonpath={.status.phase}",
                                           code=None).stdout.strip() == "Running")
    before = on(hosts.worker, "sh", "-c", "iptables-save | grep -c -E 'KUBE-|KUBELITE-'", code=None).stdout.strip()
    assert before not in ("", "0"), "the proxy had installed no rules to remove"
    on(hosts.worker, "bash", f"{SRC}/deploy/install.sh", "--reset")
    left = on(hosts.worker, "sh", "-c",
              "ls -d /etc/kubelite /opt/kubelite /var/lib/kubelite /usr/local/lib/systemd/system/kubelite* "
              "/usr/local/bin/kubelite* 2>/dev/null", code=None).stdout.split()
    assert left == []
    assert on(hosts.worker, "sh", "-c", "iptables-save | grep -E 'KUBE-|KUBELITE-'", code=None).stdout == ""
    assert on(hosts.worker, "ip", "route", "show", "proto", "211").stdout == ""
    assert on(hosts.worker, "docker", "ps", "-aq", "--filter", "label=io.kubernetes.pod.uid").stdout == ""
    assert on(hosts.worker, "docker", "network", "ls", "-q", "--filter", "label=io.kubelite.network").stdout == ""
    # Then the node object: gone for good, since no kubelet is left to register it again.
    assert kl(hosts, "delete", "node", hosts.worker.name).stdout.strip() == f'node "{hosts.worker.name}" deleted'
    kl(hosts, "delete", "pod", "doomed", "--grace-period=0", "--force", "--wait=false", code=None)
    r = kl(hosts, "get", "node", hosts.worker.name, code=1)
    assert "(NotFound)" in r.stderr
    # (exit 1: no unit file matches)
    units = run("docker", "exec", hosts.worker.name, "systemctl", "list-unit-files", "--no-legend",
                "kubelite*", code=None).stdout
    assert units.strip() == ""
    # The distro's Docker engine stays, as kubeadm reset leaves the runtime.
    assert run("docker", "exec", hosts.worker.name, "systemctl", "is-active", "docker").stdout.strip() == "active"
