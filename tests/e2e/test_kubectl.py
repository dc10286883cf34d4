"""The real kubectl against the e2e cluster, through the kubeconfig ``kubelite cluster up`` wrote.

The same file serves both clients (its ``server`` is the REST address, the
gRPC one rides in an extension), so these tests prove that a Kubernetes user
can drive a kubelite cluster with the kubectl they have: nodes and pods as
tables, a Deployment applied, rolled out, scaled, exec'd into and read from
on real kubelets and Docker, and deleted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.e2e import Cluster

pytestmark = pytest.mark.timeout(900)

KUBECTL = str(Path(sys.executable).parent / "kubectl")


def kubectl(cluster: Cluster, *args: str, code: int | None = 0, input: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="kubectl-home-") as home:
        r = subprocess.run([KUBECTL, "--kubeconfig", cluster.kubeconfig, *args], capture_output=True, text=True,
                           input=input, timeout=timeout, env={**os.environ, "HOME": home})
    if code is not None:
        assert r.returncode == code, f"kubectl {' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def test_kubectl_sees_the_nodes_and_the_demo(demo: Cluster) -> None:
    rows = [line.split() for line in kubectl(demo, "get", "nodes", "-o", "wide").stdout.splitlines()]
    assert rows[0][:6] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP"]
    by_name = {r[0]: r for r in rows[1:]}
    assert {demo.control_plane, *demo.workers} <= set(by_name)
    assert all(by_name[n][1] == "Ready" for n in demo.workers)
    pods = [line.split() for line in kubectl(demo, "get", "pods", "-l", "app=web", "-o", "wide").stdout.splitlines()]
    assert pods[0][:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert len(pods) == 4 and all(p[1] == "1/1" and p[2] == "Running" for p in pods[1:])
    everything = kubectl(demo, "get", "all", "-A").stdout
    assert "deployment.apps/web" in everything and "service/kubernetes" in everything


def test_kubectl_drives_a_deployment_on_real_kubelets(demo: Cluster) -> None:
    image = kubectl(demo, "get", "deploy", "web", "-o",
                    "jsonpath={.spec.template.spec.containers[0].image}").stdout.strip()
    manifest = json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "kc", "labels": {"app": "kc"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "kc"}},
                 "template": {"metadata": {"labels": {"app": "kc"}}, "spec": {"containers": [{
                     "name": "main", "image": image, "imagePullPolicy": "IfNotPresent",
                     "command": ["sh", "-c", "echo started; while true; do sleep 1; done"]}]}}}})
    try:
        assert kubectl(demo, "apply", "-f", "-", input=manifest).stdout.strip() == "deployment.apps/kc created"
        out = kubectl(demo, "rollout", "status", "deployment/kc", "--timeout=180s", timeout=240).stdout
        assert 'deployment "kc" successfully rolled out' in out
        kubectl(demo, "scale", "deployment/kc", "--replicas=3")
        kubectl(demo, "rollout", "status", "deployment/kc", "--timeout=180s", timeout=240)
        kubectl(demo, "wait", "--for=condition=Ready", "pod", "-l", "app=kc", "--timeout=120s", timeout=180)
        pod = kubectl(demo, "get", "pods", "-l", "app=kc", "-o", "jsonpath={.items[0].metadata.name}").stdout
        # exec through the API server's WebSocket to the real kubelet, with the command's exit code.
        r = kubectl(demo, "exec", pod, "--", "sh", "-c", "echo out; echo err >&2; exit 7", code=7)
        assert r.stdout == "out\n" and "err" in r.stderr
        r = kubectl(demo, "exec", "-i", pod, "--", "sh", "-c", "tr a-z A-Z", input="shout\n")
        assert r.stdout == "SHOUT\n"
        deadline = time.monotonic() + 30
        while "started" not in kubectl(demo, "logs", pod).stdout:
            assert time.monotonic() < deadline, "no log line from the container"
            time.sleep(1)
        assert kubectl(demo, "logs", "deployment/kc", "--tail=1").stdout.strip() == "started"
        # logs -f streams (chunked) until stopped: a line written after it started comes through.
        with tempfile.TemporaryDirectory(prefix="kubectl-home-") as home:
            follower = subprocess.Popen([KUBECTL, "--kubeconfig", demo.kubeconfig, "logs", "-f", pod],
                                        stdout=subprocess.PIPE, text=True, env={**os.environ, "HOME": home})
            try:
                assert follower.stdout is not None
                assert follower.stdout.readline().strip() == "started"
                kubectl(demo, "exec", pod, "--", "sh", "-c", "echo later > /proc/1/fd/1")
                assert follower.stdout.readline().strip() == "later"
            finally:
                follower.kill()
                follower.wait()
    finally:
        r = kubectl(demo, "delete", "deployment", "kc", "--wait", "--timeout=120s", code=None, timeout=180)
    assert r.returncode == 0, r.stderr
    assert kubectl(demo, "get", "deploy", "kc", code=1).stderr.strip().endswith('"kc" not found')


def test_kubectl_port_forward_reaches_a_pod_on_a_real_kubelet(demo: Cluster) -> None:
    # kubectl picks a pod of the Service and its targetPort (8080); the connection goes kubectl ->
    # API server (SPDY in a WebSocket) -> kubelet -> the pod's network namespace.
    pods = set(kubectl(demo, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}").stdout.split())
    with tempfile.TemporaryDirectory(prefix="kubectl-home-") as home:
        proc = subprocess.Popen([KUBECTL, "--kubeconfig", demo.kubeconfig, "port-forward", "svc/web", ":80"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "HOME": home})
        try:
            assert proc.stdout is not None and proc.stderr is not None
            line = proc.stdout.readline()
            assert line.startswith("Forwarding from 127.0.0.1:") and line.rstrip().endswith(" -> 8080"), \
                line or proc.stderr.read()
            local = int(line.removeprefix("Forwarding from 127.0.0.1:").split()[0])
            for _ in range(3):  # one SPDY session, a stream pair per request
                with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=30) as resp:
                    assert resp.status == 200
                    assert resp.read().decode().strip() in pods  # the demo serves its hostname
        finally:
            proc.terminate()
            proc.wait(10)


def test_services_proxy_reaches_every_pod_from_the_api_server(demo: Cluster) -> None:
    # The API server (on the control plane) relays to a ready endpoint on any worker, over the pod network.
    pods = set(kubectl(demo, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}").stdout.split())
    answered = {kubectl(demo, "get", "--raw", "/api/v1/namespaces/default/services/web:http/proxy/").stdout.strip()
                for _ in range(30)}
    assert answered == pods  # picked at random: 30 tries reach all 3
    pod = sorted(pods)[0]
    assert kubectl(demo, "get", "--raw", f"/api/v1/namespaces/default/pods/{pod}:8080/proxy/").stdout.strip() == pod
