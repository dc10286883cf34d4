"""End to end: what the cluster does when parts of it fail, on the shared e2e cluster and its demo.

A worker container stopped (a VM powered off), a worker rebooted, the API
server restarted, a pod's container killed, and port-forward through the API
server. The session cluster is tuned by conftest to notice a dead node in
seconds (FAST_FAILURE_DETECTION); the components' own defaults stay
Kubernetes' (40 s grace, 300 s tolerations).

Every test puts the cluster back before it returns (every node Ready, the
demo 3/3 available), so that the other modules see the cluster they expect.
Waits are bounded polls; no test asserts how long anything took (figures are
printed instead).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.e2e import KUBELITE, Cluster, k, pods, run

pytestmark = pytest.mark.timeout(900)


def until(what: str, check: Callable[[], bool], timeout: float = 180, every: float = 1.0) -> float:
    """Polls until ``check()``; returns the seconds it took (reported, never asserted)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - start


def node_ready(cluster: Cluster, node: str) -> str:
    r = k(cluster, "get", "node", node, "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}', code=None)
    return r.stdout.strip() if r.returncode == 0 else ""


def available(cluster: Cluster) -> int:
    r = k(cluster, "get", "deploy", "web", "-o", "jsonpath={.status.availableReplicas}", code=None)
    return int(r.stdout.strip() or 0) if r.returncode == 0 else 0


def restore(cluster: Cluster) -> None:
    """Every node Ready and the demo whole again: what each test leaves behind."""
    for node in (cluster.control_plane, *cluster.workers):
        until(f"node {node} Ready", lambda n=node: node_ready(cluster, n) == "True", timeout=240)  # type: ignore[misc]
    until("web 3/3 available", lambda: available(cluster) == 3 and len(running_web(cluster)) == 3, timeout=240)


def running_web(cluster: Cluster) -> list[dict[str, Any]]:
    """The demo's live replicas; [] while the API does not answer (polls ride that out)."""
    r = k(cluster, "get", "pods", "-l", "app=web", "-o", "json", code=None)
    if r.returncode != 0:
        return []
    return [p for p in json.loads(r.stdout)["items"] if p["status"].get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")]


def internal_ip(cluster: Cluster, node: str) -> str:
    doc = json.loads(k(cluster, "get", "node", node, "-o", "json").stdout)
    return str(next(a["address"] for a in doc["status"]["addresses"] if a["type"] == "InternalIP"))


def node_port(cluster: Cluster) -> int:
    return int(k(cluster, "get", "svc", "web", "-o", "jsonpath={.spec.ports[0].nodePort}").stdout.strip())


def ask(url: str) -> str:
    """One request through the Service; "" when it failed."""
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return str(resp.read().decode().strip())
    except OSError:
        return ""


def on_node(pod: dict[str, Any]) -> str:
    return str(pod["spec"]["nodeName"])


def apiserver_restarts(cluster: Cluster) -> int:
    r = run("docker", "exec", cluster.control_plane, "systemctl", "show", "-p", "NRestarts", "--value",
            "kubelite-apiserver", code=None)
    return int(r.stdout.strip() or 0)


@pytest.fixture(autouse=True)
def healthy(demo: Cluster) -> Iterator[Cluster]:
    """Every test starts from, and leaves, a whole cluster.

    systemd's count of the API server's automatic restarts (a `systemctl restart` does not count) is
    watched too: a crash is the first thing to look for when a request here was refused.
    """
    restore(demo)
    crashes = apiserver_restarts(demo)
    yield demo
    if apiserver_restarts(demo) != crashes:
        print("\nthe API server restarted on its own during this test; its journal:\n" + run(
            "docker", "exec", demo.control_plane, "journalctl", "--no-pager", "-n", "200", "-u",
            "kubelite-apiserver", code=None).stdout)
    restore(demo)


def test_a_stopped_worker_goes_not_ready_its_pods_move_and_it_comes_back(healthy: Cluster) -> None:
    cluster = healthy
    victim = next(on_node(p) for p in running_web(cluster) if on_node(p) in cluster.workers)
    survivor = next(w for w in cluster.workers if w != victim)
    moved = {p["metadata"]["name"] for p in running_web(cluster) if on_node(p) == victim}
    url = f"http://{internal_ip(cluster, survivor)}:{node_port(cluster)}/"
    # The API server's --default-unreachable-toleration-seconds (conftest: 5) reached the pods through admission.
    tolerations = running_web(cluster)[0]["spec"]["tolerations"]
    assert {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": 5} in tolerations, tolerations
    assert ask(url), "the Service does not answer before the test even starts"

    run("docker", "stop", "-t", "10", victim)
    try:
        took = until(f"{victim} NotReady", lambda: node_ready(cluster, victim) in ("False", "Unknown"), every=0.5)
        print(f"\n{victim} stopped: NotReady after {took:.1f}s")
        doc = json.loads(k(cluster, "get", "node", victim, "-o", "json").stdout)
        assert {"node.kubernetes.io/unreachable"} <= {t["key"] for t in doc["spec"].get("taints", [])}

        # Its pods are evicted (5 s toleration in this cluster) and recreated on the other nodes.
        def replaced() -> bool:
            now = running_web(cluster)
            return (len(now) == 3 and not moved & {p["metadata"]["name"] for p in now}
                    and all(on_node(p) != victim for p in now))

        took = until("web pods recreated on the other nodes", replaced, timeout=240)
        print(f"web replicas recreated elsewhere {took:.1f}s after NotReady")
        until("web 3/3 available", lambda: available(cluster) == 3)
        # The Service answers, through a surviving node, from the replicas that are left (only those).
        names = {p["metadata"]["name"] for p in running_web(cluster)}
        answers = [ask(url) for _ in range(30)]
        assert "" not in answers, f"{answers.count('')} of 30 requests failed with {victim} down"
        assert set(answers) <= names and len(set(answers)) >= 2, answers
    finally:
        run("docker", "start", victim)
    took = until(f"{victim} Ready again", lambda: node_ready(cluster, victim) == "True", timeout=240)
    print(f"{victim} started: Ready after {took:.1f}s")
    # The pods that had been moved away are not resurrected on it: its kubelet removes their old containers.
    until(f"{victim}'s stale web containers removed", lambda: not any(
        f"_{name}_" in line for name in moved
        for line in run("docker", "exec", victim, "docker", "ps", "--format", "{{.Names}}",
                        code=None).stdout.splitlines()), timeout=120)


POD_ON_NODE = """apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels:
    e2e: failures
spec:
  nodeName: {node}
  # Tolerates the node's absence for ever: across the reboot it stays bound to this node.
  tolerations:
  - key: node.kubernetes.io/unreachable
    operator: Exists
    effect: NoExecute
  - key: node.kubernetes.io/not-ready
    operator: Exists
    effect: NoExecute
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo started; exec sleep 3600"]
"""


def demo_image(cluster: Cluster) -> str:
    return k(cluster, "get", "deploy", "web", "-o",
             "jsonpath={.spec.template.spec.containers[0].image}").stdout.strip()


def pod_status(cluster: Cluster, name: str) -> dict[str, Any]:
    r = k(cluster, "get", "pod", name, "-o", "json", code=None)
    return dict(json.loads(r.stdout)["status"]) if r.returncode == 0 else {}


def restarts(status: dict[str, Any]) -> int:
    return int(sum(c.get("restartCount", 0) for c in status.get("containerStatuses", [])))


def running(status: dict[str, Any]) -> bool:
    return status.get("phase") == "Running" and all(
        "running" in c.get("state", {}) and c.get("ready") for c in status.get("containerStatuses", [{}]))


def test_a_rebooted_worker_brings_its_pods_back(healthy: Cluster, tmp_path: Path) -> None:
    cluster = healthy
    node = cluster.workers[-1]
    manifest = tmp_path / "pinned.yaml"
    manifest.write_text(POD_ON_NODE.format(name="pinned", node=node, image=demo_image(cluster)))
    k(cluster, "apply", "-f", str(manifest))
    try:
        until("pod pinned Running", lambda: running(pod_status(cluster, "pinned")))
        uid = json.loads(k(cluster, "get", "pod", "pinned", "-o", "json").stdout)["metadata"]["uid"]
        before = restarts(pod_status(cluster, "pinned"))

        run("docker", "stop", "-t", "10", node)
        run("docker", "start", node)
        took = until(f"{node} Ready after its reboot", lambda: node_ready(cluster, node) == "True", timeout=240)
        # The same pod (same UID, still bound to the node) runs again: its container started anew.
        took += until("pod pinned running again", lambda: running(pod_status(cluster, "pinned"))
                      and restarts(pod_status(cluster, "pinned")) > before, timeout=240)
        print(f"\n{node} rebooted: pod pinned running again {took:.1f}s after the container started")
        doc = json.loads(k(cluster, "get", "pod", "pinned", "-o", "json").stdout)
        assert doc["metadata"]["uid"] == uid and doc["spec"]["nodeName"] == node
        assert "started" in k(cluster, "logs", "pinned").stdout
    finally:
        k(cluster, "delete", "pod", "pinned", "--grace-period=1", code=None)


def test_components_and_watchers_carry_on_across_an_api_server_restart(healthy: Cluster, tmp_path: Path) -> None:
    cluster = healthy
    manifest = tmp_path / "watched.yaml"
    manifest.write_text(POD_ON_NODE.format(name="watched", node=cluster.workers[0], image=demo_image(cluster)))
    k(cluster, "apply", "-f", str(manifest))
    out = tmp_path / "watch.out"
    with open(out, "w") as sink:
        watcher = subprocess.Popen([KUBELITE, "--kubeconfig", cluster.kubeconfig, "get", "pods", "-l", "e2e=failures",
                                    "-w", "-o", 'jsonpath={.metadata.name} n={.metadata.labels.n}{"\\n"}'],
                                   stdout=sink, stderr=subprocess.STDOUT, text=True)
    try:
        until("the watcher's first line", lambda: "watched" in out.read_text())
        run("docker", "exec", cluster.control_plane, "systemctl", "restart", "kubelite-apiserver")
        # Ten changes, each as soon as the API answers again: some land while watches are still reconnecting.
        for i in range(1, 11):
            until(f"label n={i}", lambda i=i: k(cluster, "label", "pod", "watched", f"n={i}", "--overwrite",  # type: ignore[misc]
                                                code=None, timeout=30).returncode == 0, timeout=120, every=0.2)
        # The watcher saw every one of them, in order, and is still the same process.
        seen: list[int] = []

        def all_seen() -> bool:
            seen[:] = [int(m) for m in re.findall(r"^watched n=(\d+)$", out.read_text(), re.M)]
            return seen[-1:] == [10]

        until("the watcher to print n=10", all_seen, timeout=60)
        assert seen == list(range(1, 11)), seen
        assert watcher.poll() is None, out.read_text()

        # The scheduler, controller manager, kubelets and endpoints controller follow new changes too.
        k(cluster, "scale", "deploy/web", "--replicas=4")
        until("web 4/4 available", lambda: available(cluster) == 4 and len(running_web(cluster)) == 4)
        until("4 web endpoints", lambda: len(k(cluster, "get", "endpoints", "web", "-o",
                                               "jsonpath={.subsets[*].addresses[*].ip}",
                                               code=None).stdout.split()) == 4)
    except BaseException:
        print(run("docker", "exec", cluster.control_plane, "journalctl", "--no-pager", "-n", "150", "-u",
                  "kubelite-apiserver", code=None).stdout)
        raise
    finally:
        watcher.terminate()  # by its own PID
        watcher.wait(10)
        k(cluster, "scale", "deploy/web", "--replicas=3", code=None)
        k(cluster, "delete", "pod", "watched", "--grace-period=1", code=None)


def test_a_killed_container_is_restarted_by_the_kubelet(healthy: Cluster, tmp_path: Path) -> None:
    # A pod of the test's own: the demo's replicas keep restartCount 0 for the other modules.
    cluster, name, node = healthy, "killed", healthy.workers[0]
    manifest = tmp_path / "killed.yaml"
    manifest.write_text(POD_ON_NODE.format(name=name, node=node, image=demo_image(cluster)))
    k(cluster, "apply", "-f", str(manifest))
    try:
        until(f"pod {name} Running", lambda: running(pod_status(cluster, name)))
        uid = json.loads(k(cluster, "get", "pod", name, "-o", "json").stdout)["metadata"]["uid"]

        def container() -> list[str]:
            return run("docker", "exec", node, "docker", "ps", "-q", "--filter", f"label=io.kubernetes.pod.uid={uid}",
                       "--filter", "label=io.kubernetes.container.name=main").stdout.split()

        cid = container()
        assert len(cid) == 1, cid
        run("docker", "exec", node, "docker", "kill", cid[0])
        took = until(f"{name} restarted", lambda: restarts(pod_status(cluster, name)) > 0
                     and running(pod_status(cluster, name)))
        print(f"\n{name}: container killed, running again after {took:.1f}s")
        status = pod_status(cluster, name)["containerStatuses"][0]
        assert status["restartCount"] == 1
        assert status["lastState"]["terminated"]["exitCode"] == 137  # SIGKILL, as the kubelet reports it
        # The same pod, a new container.
        now = container()
        assert now and now != cid
    finally:
        k(cluster, "delete", "pod", name, "--grace-period=1", code=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_port_forward_reaches_a_pod_through_the_api_server(healthy: Cluster) -> None:
    cluster = healthy
    name = running_web(cluster)[0]["metadata"]["name"]
    port = free_port()
    proc = subprocess.Popen([KUBELITE, "--kubeconfig", cluster.kubeconfig, "port-forward", f"pod/{name}",
                             f"{port}:8080"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"Forwarding from 127.0.0.1:{port} -> 8080"), line + (proc.stderr.read()
                                                                                      if proc.poll() else "")
        # Several connections, one after another, each answered by that pod.
        for _ in range(3):
            assert ask(f"http://127.0.0.1:{port}/") == name
    finally:
        proc.terminate()  # by its own PID
        proc.wait(10)
    assert pods(cluster, "app=web")  # the cluster is untouched
