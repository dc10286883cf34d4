"""End to end: a real local cluster of node containers, driven through the installed ``kubelite`` binary.

The tier's one cluster (conftest.py: 3 etcd members, the control plane, 3 workers, each
a container booting systemd, the nodes with their own dockerd), started by
``kubelite cluster up`` exactly as a user types it, and removed by ``cluster
down``; the last test checks that nothing labelled with its name is left.
Images are cached by content across runs (kubelite.cluster.images), so only
the first run on a machine pays for debootstrap.
"""

from __future__ import annotations

import ipaddress
import json
import pathlib
import subprocess
import tempfile
import time
import urllib.request

import pytest
import yaml

from kubelite.cluster.images import pause_image
from tests.support.e2e import KUBELITE, Cluster, k, kl, labelled, run, unique_name, web_pods

# The first test may rebuild the node image (a code change): minutes on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(900)

def test_a_failed_up_names_its_step_shows_the_journal_and_removes_everything() -> None:
    name = unique_name("e2e-fail")
    with tempfile.TemporaryDirectory(prefix="kubelite-e2e-fail-") as tmp:
        try:
            r = kl("cluster", "up", "--name", name, "--workers", "0", "--kubeconfig", f"{tmp}/kc",
                   "--timeout", "0.01", code=1)
            assert "step 'control plane: kubelite-apiserver" in r.stderr and "failed:" in r.stderr
            assert "was not ready within" in r.stderr
            assert "last lines of the journal" in r.stderr
            assert labelled(name) == {"containers": [], "volumes": [], "networks": []}
            assert not pathlib.Path(f"{tmp}/kc").exists()
        finally:
            kl("cluster", "down", "--name", name, "--kubeconfig", f"{tmp}/kc", code=None)


def test_get_namespaces_through_the_clusters_kubeconfig(cluster: Cluster) -> None:
    out = kl("--kubeconfig", cluster.kubeconfig, "get", "ns").stdout
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= set(names)
    doc = yaml.safe_load(pathlib.Path(cluster.kubeconfig).read_text())
    assert doc["current-context"] == f"kubelite-{cluster.name}"
    assert doc["clusters"][0]["cluster"]["server"].startswith("http://127.0.0.1:")


def test_every_container_booted_systemd_and_runs_its_units(cluster: Cluster) -> None:
    for node in [*cluster.etcd, cluster.control_plane, *cluster.workers]:
        assert run("docker", "exec", node, "systemctl", "is-system-running").stdout.strip() == "running", node
    for member in cluster.etcd:
        assert run("docker", "exec", member, "systemctl", "is-active", "kubelite-etcd").stdout.strip() == "active"
        # etcd members run no containers: their dockerd is masked.
        assert run("docker", "exec", member, "systemctl", "is-active", "docker", code=None).stdout.strip() != "active"
    assert run("docker", "exec", cluster.control_plane, "systemctl", "is-active",
               "kubelite-apiserver").stdout.strip() == "active"
    for node in [cluster.control_plane, *cluster.workers]:
        assert run("docker", "exec", node, "systemctl", "is-active", "docker").stdout.strip() == "active"
        env = run("docker", "exec", node, "cat", "/etc/kubelite/kubeconfig").stdout
        assert ":6443" in env


def test_each_workers_dockerd_runs_a_nested_container(cluster: Cluster) -> None:
    for node in cluster.workers:
        r = run("docker", "exec", node, "docker", "run", "--rm", pause_image(), "/bin/sh", "-c", "echo hi from $0",
                node)
        assert r.stdout.strip() == f"hi from {node}"


def test_the_api_keeps_answering_with_one_etcd_member_stopped(cluster: Cluster) -> None:
    stopped = cluster.etcd[1]
    run("docker", "stop", "-t", "5", stopped)
    try:
        ns = unique_name("during-etcd-outage")
        kl("--kubeconfig", cluster.kubeconfig, "create", "namespace", ns)
        out = kl("--kubeconfig", cluster.kubeconfig, "get", "ns", ns, "-o", "json").stdout
        assert json.loads(out)["metadata"]["name"] == ns
    finally:
        run("docker", "start", stopped)
    # The member rejoins from its data directory under systemd.
    endpoints = ",".join(f"http://{c}:2379" for c in cluster.etcd)
    deadline = time.monotonic() + 60
    while True:
        r = run("docker", "exec", cluster.etcd[0], "etcdctl", f"--endpoints={endpoints}", "endpoint", "health",
                code=None)
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert r.returncode == 0, r.stderr


def test_a_second_up_with_the_same_name_is_a_clear_error(cluster: Cluster) -> None:
    before = labelled(cluster.name)
    r = kl("cluster", "up", "--name", cluster.name, "--workers", "3", "--kubeconfig", cluster.kubeconfig, code=1)
    assert f'cluster "{cluster.name}" already exists' in r.stderr
    assert f"kubelite cluster down --name {cluster.name}" in r.stderr
    assert labelled(cluster.name) == before


def test_list_kubeconfig_and_load_image(cluster: Cluster) -> None:
    rows = [line.split() for line in kl("cluster", "list").stdout.splitlines()]
    assert [cluster.name, "3", "1", "3", "8/8"] in rows  # 8: the registry beside the 7 nodes and members
    doc = yaml.safe_load(kl("cluster", "kubeconfig", "--name", cluster.name).stdout)
    mine = yaml.safe_load(pathlib.Path(cluster.kubeconfig).read_text())
    assert doc["clusters"][0]["cluster"]["server"] == mine["clusters"][0]["cluster"]["server"]
    internal = yaml.safe_load(kl("cluster", "kubeconfig", "--name", cluster.name, "--internal").stdout)
    assert internal["clusters"][0]["cluster"]["server"].endswith(".10:8080")  # REST, for kubectl
    assert internal["clusters"][0]["cluster"]["extensions"][0]["extension"]["server"].endswith(".10:6443")

    tag = f"kubelite/e2e-load:{cluster.name}"
    run("docker", "tag", pause_image(), tag)
    try:
        r = kl("cluster", "load-image", tag, "--name", cluster.name)
        assert f"is in the registry as kubelite-registry:5000/{tag}" in r.stderr
        # Into the registry only; every node's dockerd finds it there by its docker.io name.
        for node in [cluster.control_plane, *cluster.workers]:
            run("docker", "exec", node, "docker", "pull", "-q", tag)
            run("docker", "exec", node, "docker", "image", "inspect", tag)
    finally:
        run("docker", "image", "rm", tag)
    r = kl("cluster", "load-image", "kubelite/does-not-exist:1", "--name", cluster.name, code=1)
    assert "not present locally" in r.stderr


def test_logs_collects_every_containers_journal_and_docker_state(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    kl("cluster", "logs", str(tmp_path), "--name", cluster.name)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*cluster.etcd, cluster.control_plane,
                                                                 *cluster.workers, cluster.registry])
    assert "GET /v2/" in (tmp_path / cluster.registry / "registry.log").read_text()
    assert "kubelite API server" in (tmp_path / cluster.control_plane / "journal.log").read_text()
    assert "KUBELITE_APISERVER_ARGS" in (tmp_path / cluster.control_plane / "kubelite-config.txt").read_text()
    assert "CONTAINER ID" in (tmp_path / cluster.workers[0] / "docker-ps.txt").read_text()
    assert "ETCD_INITIAL_CLUSTER" in (tmp_path / cluster.etcd[0] / "kubelite-config.txt").read_text()


# --- a workload on the cluster: the scheduler, controllers and kubelets together ------------------------


def test_the_demo_runs_on_the_nodes_with_pod_ips_from_their_cidrs(demo: Cluster) -> None:
    nodes = {n["metadata"]["name"]: n for n in json.loads(k(demo, "get", "nodes", "-o", "json").stdout)["items"]}
    assert {demo.control_plane, *demo.workers} <= set(nodes)
    for node in nodes.values():
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", node["metadata"]["name"]
    pods = web_pods(demo)
    assert len(pods) == 3
    for pod in pods:
        status, spec = pod["status"], pod["spec"]
        assert status["phase"] == "Running" and spec["nodeName"] in nodes  # type: ignore[index,operator]
        cidr = ipaddress.ip_network(nodes[spec["nodeName"]]["spec"]["podCIDR"])  # type: ignore[index]
        assert ipaddress.ip_address(status["podIP"]) in cidr  # type: ignore[index]
        # The node's own dockerd runs it, named and labelled as dockershim named them.
        ps = run("docker", "exec", spec["nodeName"], "docker", "ps", "--format", "{{.Names}}",  # type: ignore[index]
                 "--filter", f"label=io.kubernetes.pod.uid={pod['metadata']['uid']}").stdout.split()  # type: ignore[index]
        assert any(n.startswith(f"k8s_httpd_{pod['metadata']['name']}_default_") for n in ps), ps  # type: ignore[index]
        assert any(n.startswith(f"k8s_POD_{pod['metadata']['name']}_default_") for n in ps), ps  # type: ignore[index]


def test_logs_and_exec_reach_the_real_kubelet(demo: Cluster) -> None:
    name = web_pods(demo)[0]["metadata"]["name"]  # type: ignore[index]
    r = k(demo, "exec", name, "--", "cat", "/www/index.html")
    assert r.stdout.strip() == name  # the pod's hostname is its name
    # In-cluster clients find the API through the variables every container gets.
    r = k(demo, "exec", name, "--", "sh", "-c", "echo $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT")
    assert r.stdout.strip() == "10.96.0.1:443"
    r = k(demo, "exec", name, "--", "sh", "-c", "echo to-stderr >&2; exit 3", code=3)
    assert "to-stderr" in r.stderr and "command terminated with exit code 3" in r.stderr
    k(demo, "exec", name, "--", "sh", "-c", "echo hello-log > /proc/1/fd/1")
    deadline = time.monotonic() + 30
    while "hello-log" not in k(demo, "logs", name).stdout:
        assert time.monotonic() < deadline, "the container's output never reached kubelite logs"
        time.sleep(0.5)


def test_the_service_balances_over_every_replica_across_nodes(demo: Cluster) -> None:
    """kube-proxy's ClusterIP on real iptables, pod routes between node containers (host-gw), and hairpin."""
    svc = json.loads(k(demo, "get", "svc", "web", "-o", "json").stdout)
    ip = svc["spec"]["clusterIP"]
    pods = web_pods(demo)
    names = {p["metadata"]["name"] for p in pods}  # type: ignore[index]
    assert len({p["spec"]["nodeName"] for p in pods}) >= 2, "the replicas should spread over nodes"  # type: ignore[index]
    client = sorted(names)[0]
    # Every replica answers through the Service, the client pod itself included (hairpin), and none gets
    # more than twice its share.
    out = k(demo, "exec", client, "--", "sh", "-c",
            f"for i in $(seq 1 60); do timeout 5 wget -qO- http://{ip}/; done", timeout=300).stdout.split()
    counts = {n: out.count(n) for n in names}
    assert set(out) == names and all(c <= 2 * 60 / len(names) for c in counts.values()), counts
    # The NodePort answers on every node's address, from this machine (the cluster network's gateway).
    node_port = svc["spec"]["ports"][0]["nodePort"]
    nodes = json.loads(k(demo, "get", "nodes", "-o", "json").stdout)["items"]
    for node in nodes:
        address = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
        seen = {urllib.request.urlopen(f"http://{address}:{node_port}/", timeout=5).read().decode().strip()
                for _ in range(12)}
        assert seen <= names and seen, (node["metadata"]["name"], seen)
    # Pod to pod by IP, across nodes (the routes of the host-gw agent).
    for pod in pods:
        target = pod["status"]["podIP"]  # type: ignore[index]
        body = k(demo, "exec", client, "--", "timeout", "5", "wget", "-qO-", f"http://{target}:8080/").stdout
        assert body.strip() == pod["metadata"]["name"]  # type: ignore[index]


def test_logs_follow_and_previous_through_the_api(demo: Cluster, tmp_path: pathlib.Path) -> None:
    """A container that prints, dies once and runs again: --previous shows the first run, -f streams."""
    image = k(demo, "get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}").stdout.strip()
    manifest = tmp_path / "talker.yaml"
    manifest.write_text(f"""apiVersion: v1
kind: Pod
metadata:
  name: talker
spec:
  restartPolicy: OnFailure
  volumes:
  - name: state
    emptyDir: {{}}
  containers:
  - name: talk
    image: {image}
    imagePullPolicy: IfNotPresent
    volumeMounts:
    - name: state
      mountPath: /state
    command: ["sh", "-c", "if [ ! -f /state/once ]; then touch /state/once; echo first-run; exit 1; fi; \\
i=0; while true; do i=$((i+1)); echo line-$i; sleep 0.5; done"]
""")
    k(demo, "apply", "-f", str(manifest))
    deadline = time.monotonic() + 120
    while True:
        pod = json.loads(k(demo, "get", "pod", "talker", "-o", "json").stdout)
        statuses = pod["status"].get("containerStatuses") or []
        if statuses and statuses[0].get("restartCount", 0) >= 1 and "running" in statuses[0].get("state", {}):
            break
        assert time.monotonic() < deadline, pod["status"]
        time.sleep(1)
    assert k(demo, "logs", "talker", "--previous").stdout.strip() == "first-run"
    proc = subprocess.Popen([KUBELITE, "--kubeconfig", demo.kubeconfig, "logs", "-f", "talker", "--tail", "1"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(4)]
    finally:
        proc.terminate()  # by its own PID
        proc.wait(10)
    numbers = [int(line.removeprefix("line-")) for line in lines]
    assert numbers == list(range(numbers[0], numbers[0] + 4)), lines  # new lines keep arriving, in order
    k(demo, "delete", "pod", "talker", "--grace-period=1")


def test_run_rm_i_attaches_passes_stdin_and_the_exit_code(demo: Cluster) -> None:
    image = k(demo, "get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}").stdout.strip()
    r = subprocess.run([KUBELITE, "--kubeconfig", demo.kubeconfig, "run", "once", "--rm", "-i", f"--image={image}",
                        "--image-pull-policy=IfNotPresent", "--restart=Never", "--", "sh", "-c",
                        'read x; [ "$x" = abc ] && exit 5; exit 6'], input="abc\n", capture_output=True, text=True,
                       timeout=120)
    # 5 only if the command read our stdin: the exit code is the command's, the input went through.
    assert r.returncode == 5, (r.stdout, r.stderr)
    assert 'pod "once" deleted' in r.stdout
    assert k(demo, "get", "pod", "once", code=1).returncode == 1


def test_a_kubelet_restart_keeps_its_pods_containers(demo: Cluster) -> None:
    pod = web_pods(demo)[0]
    node, uid = pod["spec"]["nodeName"], pod["metadata"]["uid"]  # type: ignore[index]

    def containers() -> list[str]:
        return sorted(run("docker", "exec", node, "docker", "ps", "-q", "--no-trunc",
                          "--filter", f"label=io.kubernetes.pod.uid={uid}").stdout.split())

    before = containers()
    assert len(before) == 2
    run("docker", "exec", node, "systemctl", "restart", "kubelite-kubelet")
    time.sleep(5)
    assert containers() == before
    after = [p for p in web_pods(demo) if p["metadata"]["uid"] == uid]  # type: ignore[index]
    # restartCount 0 is omitted from the JSON form, as in Kubernetes.
    assert after and after[0]["status"]["containerStatuses"][0].get("restartCount", 0) == 0  # type: ignore[index]


@pytest.mark.last
def test_down_leaves_nothing_labelled_behind(cluster: Cluster) -> None:
    assert all(labelled(cluster.name).values())
    kl("cluster", "down", "--name", cluster.name, "--kubeconfig", cluster.kubeconfig)
    assert labelled(cluster.name) == {"containers": [], "volumes": [], "networks": []}
    doc = yaml.safe_load(pathlib.Path(cluster.kubeconfig).read_text())
    assert doc["contexts"] == []
    # Idempotent: a second down finds nothing and succeeds.
    r = kl("cluster", "down", "--name", cluster.name, "--kubeconfig", cluster.kubeconfig)
    assert "not found" in r.stderr
