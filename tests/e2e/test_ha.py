"""Two control planes behind the load balancer: the cluster outlives one of them.

A cluster of its own (``--control-planes 2``, one worker): both API servers
are in the ``kubernetes`` Endpoints; with the first control-plane container
stopped, the host's kubeconfig (the load balancer) still answers, the
scheduler and controller manager leases move to the second one, and a new
Deployment is scheduled and becomes available; started again, the first API
server is back in the Endpoints.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.e2e import Cluster, k, kl, run, unique_name

pytestmark = pytest.mark.timeout(900)

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: c, image: {image}, imagePullPolicy: IfNotPresent}}]
"""


@pytest.fixture(scope="module")
def ha() -> Iterator[Cluster]:
    name = unique_name("e2e-ha")
    with tempfile.TemporaryDirectory(prefix="kubelite-e2e-ha-") as tmp:
        kubeconfig = str(Path(tmp) / "kubeconfig")
        start = time.monotonic()
        try:
            kl("cluster", "up", "--name", name, "--control-planes", "2", "--workers", "1",
               "--kubeconfig", kubeconfig, timeout=900)
            print(f"\ncluster up --control-planes 2 --workers 1: {time.monotonic() - start:.1f}s")
            yield Cluster(name, kubeconfig, workers_count=1)
        finally:
            kl("cluster", "down", "--name", name, "--kubeconfig", kubeconfig, code=None)


def _until(what: str, check: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, what
        time.sleep(1)
    return result


def _api_servers(cluster: Cluster) -> set[str]:
    r = k(cluster, "get", "endpoints", "kubernetes", "-n", "default", "-o", "json", code=None)
    if r.returncode:
        return set()
    return {a["ip"] for s in json.loads(r.stdout).get("subsets") or [] for a in s.get("addresses") or []}


def _holder(cluster: Cluster, lease: str) -> str:
    r = k(cluster, "get", "lease", lease, "-n", "kube-system", "-o", "json", code=None)
    return str(json.loads(r.stdout)["spec"].get("holderIdentity", "")) if r.returncode == 0 else ""


def test_the_cluster_outlives_a_control_plane(ha: Cluster) -> None:
    first, second = ha.control_plane, f"{ha.name}-control-plane2"
    both = _until("both API servers in the kubernetes Endpoints", lambda: len(_api_servers(ha)) == 2 and
                  _api_servers(ha))
    nodes = json.loads(k(ha, "get", "nodes", "-o", "json").stdout)["items"]
    assert {n["metadata"]["name"] for n in nodes} == {first, second, *ha.workers}
    # Join commands name the load balancer (kube-public/cluster-info), not one of the API servers.
    join = k(ha, "token", "create", "--print-join-command", "--ttl", "10m").stdout
    lb_ip = json.loads(run("docker", "inspect", f"{ha.name}-external-load-balancer").stdout)[0][
        "NetworkSettings"]["Networks"][ha.name]["IPAddress"]
    assert join.startswith(f"bash install.sh join {lb_ip}:6443 --token "), join
    # The pause image, which every node has (it pulled it from the cluster's registry): it runs for ever.
    image_ref = run("docker", "exec", ha.workers[0], "docker", "images", "kubelite/pause",
                    "--format", "{{.Repository}}:{{.Tag}}").stdout.split()[0]

    run("docker", "stop", first)
    try:
        # Through the load balancer, which stops sending to the stopped API server after its checks fail.
        _until("the API is not answering through the load balancer",
               lambda: k(ha, "get", "nodes", code=None).returncode == 0, timeout=30)
        for lease in ("kube-scheduler", "kube-controller-manager"):
            def moved(lease: str = lease) -> bool:
                return _holder(ha, lease).startswith(second + "_")

            _until(f"{lease} did not move to {second}", moved)
        _until("the stopped API server stayed in the Endpoints", lambda: len(_api_servers(ha)) == 1)
        k(ha, "apply", "-f", "-", input=DEPLOYMENT.format(name="after", image=image_ref))

        def available() -> bool:
            d = json.loads(k(ha, "get", "deployment", "after", "-o", "json").stdout)
            return bool(d["status"].get("availableReplicas") == 2)

        _until("a Deployment created with one control plane down did not become available", available)
    finally:
        run("docker", "start", first)
    _until("the restarted API server is not back in the Endpoints", lambda: _api_servers(ha) == both, timeout=120)
