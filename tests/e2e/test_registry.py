"""End to end: the cluster's image registry, which every node's dockerd mirrors docker.io names from.

An image made on this machine a moment ago is handed to the cluster with ``kubelite cluster
load-image`` (a push into ``<cluster>-registry``), then a pod on every worker runs it with
imagePullPolicy IfNotPresent. No node had it before; the registry's catalog lists it and its access log
shows each worker's dockerd fetching it; the pods run. The cluster's own images came the same way:
the pause and DNS images are in the catalog too. A node container started after `up` finds the
registry as well (the mirror is part of the node image).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
import sys
import time
import urllib.request
from typing import Any

import pytest

from kubelite.cluster import images, lifecycle, spec
from kubelite.cluster.docker import DockerCLI
from tests.support.e2e import Cluster, k, kl, run

pytestmark = pytest.mark.timeout(900)

POD = """apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels:
    app: registry-e2e
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo pulled-and-running; exec sleep 3600"]
"""


def _registry_get(cluster: Cluster, path: str) -> Any:
    port = run("docker", "port", cluster.registry, "5000/tcp").stdout.split()[0].rpartition(":")[2]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return json.loads(resp.read())


def _node_ip(cluster: Cluster, node: str) -> str:
    fmt = f'{{{{(index .NetworkSettings.Networks "{cluster.name}").IPAddress}}}}'
    return run("docker", "inspect", "-f", fmt, node).stdout.strip()


def test_cluster_images_came_through_the_registry(cluster: Cluster) -> None:
    repos = _registry_get(cluster, "/v2/_catalog")["repositories"]
    assert {"kubelite/pause", "kubelite/dns"} <= set(repos), repos
    tags = _registry_get(cluster, "/v2/kubelite/dns/tags/list")["tags"]
    assert images.version() in tags  # the name the add-on asks for, whatever the tag on this machine


def test_a_loaded_image_runs_on_every_worker_pulled_from_the_registry(cluster: Cluster) -> None:
    repo = f"kubelite/e2e-registry-{secrets.token_hex(3)}"
    image = f"{repo}:v1"
    busybox = run(sys.executable, "-c", "import docker\nfrom kubelite.runtime.images import ensure_busybox_image\n"
                                        "print(ensure_busybox_image(docker.APIClient()))").stdout.strip()
    run("docker", "tag", busybox, image)
    names = [f"reg-{i}" for i in range(len(cluster.workers))]
    try:
        for node in cluster.workers:
            r = run("docker", "exec", node, "docker", "image", "inspect", image, code=None)
            assert r.returncode != 0, f"{node} had {image} before it was loaded"
        started = time.monotonic()
        r = kl("cluster", "load-image", image, "--name", cluster.name)
        print(f"\nload-image {image} (busybox, 2 MB): {time.monotonic() - started:.1f}s")  # reported, not asserted
        assert f"is in the registry as kubelite-registry:5000/{image}" in r.stderr
        assert repo in _registry_get(cluster, "/v2/_catalog")["repositories"]
        assert _registry_get(cluster, f"/v2/{repo}/tags/list")["tags"] == ["v1"]

        for name, node in zip(names, cluster.workers, strict=True):
            k(cluster, "apply", "-f", "-", input=POD.format(name=name, node=node, image=image))
        deadline = time.monotonic() + 180
        while True:
            pods = {p["metadata"]["name"]: p for p in json.loads(
                k(cluster, "get", "pods", "-l", "app=registry-e2e", "-o", "json").stdout)["items"]}
            running = {n for n, p in pods.items() if p.get("status", {}).get("phase") == "Running"}
            if running == set(names):
                break
            assert time.monotonic() < deadline, {n: p.get("status") for n, p in pods.items()}
            time.sleep(1)
        for name, node in zip(names, cluster.workers, strict=True):
            assert pods[name]["spec"]["nodeName"] == node
            assert "pulled-and-running" in k(cluster, "logs", name).stdout
            events = k(cluster, "get", "events", "--field-selector", f"involvedObject.name={name}",
                       "-o", "json").stdout
            assert "Successfully pulled image" in events, events
            run("docker", "exec", node, "docker", "image", "inspect", image)
        # Each worker asked the registry for it (its access log, one line a request: the kubelet's HEAD of
        # the manifest, then dockerd's GETs). Read once: stdout and stderr of one `docker logs`.
        logs = run("docker", "logs", cluster.registry)
        about = [line for line in (logs.stdout + logs.stderr).splitlines() if f"/v2/{repo}/" in line]
        for node in cluster.workers:
            ip = _node_ip(cluster, node)
            assert any(line.startswith(f"{ip} ") for line in about), \
                f"no request for {repo} from {node} ({ip}) in the registry's log:\n" + "\n".join(about[-20:])
    finally:
        k(cluster, "delete", "pod", *names, "--grace-period=1", "--ignore-not-found", code=None)
        run("docker", "image", "rm", image, code=None)


def test_a_node_container_started_later_pulls_from_the_registry_too(cluster: Cluster) -> None:
    """The mirror is in the node image, not in per-node configuration: a node container started on the
    cluster network after `up` (the first step of adding a worker) pulls a loaded image at once."""
    image = f"kubelite/e2e-late-{secrets.token_hex(3)}:v1"
    run("docker", "tag", images.pause_image(), image)
    subnet = ipaddress.IPv4Network(run("docker", "network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}",
                                       cluster.name).stdout.strip())
    late = spec.Member(f"{cluster.name}-late", spec.ROLE_WORKER, str(subnet.network_address + 40))
    cfg = spec.ClusterConfig(name=cluster.name, workers=0)
    try:
        kl("cluster", "load-image", image, "--name", cluster.name)
        # Labelled with the cluster, so that `cluster down` removes it whatever happens here.
        run("docker", "volume", "create", "--label", f"{spec.LABEL_CLUSTER}={cluster.name}", spec.docker_volume(late))
        run("docker", "run", *spec.run_args(cfg, late, cluster.name, images.node_image()))
        asyncio.run(lifecycle.wait_booted(DockerCLI(), late.name))
        r = run("docker", "exec", late.name, "docker", "image", "inspect", image, code=None)
        assert r.returncode != 0
        run("docker", "exec", late.name, "docker", "pull", "-q", image)
        run("docker", "exec", late.name, "docker", "run", "--rm", image, "/bin/sh", "-c", "echo late-node-ok")
    finally:
        run("docker", "rm", "-f", "-v", late.name, code=None)
        run("docker", "volume", "rm", spec.docker_volume(late), code=None)
        run("docker", "image", "rm", image, code=None)


def test_an_image_the_registry_lacks_fails_to_pull_with_a_clear_reason(cluster: Cluster) -> None:
    name = "reg-missing"
    image = f"kubelite/e2e-never-loaded-{secrets.token_hex(3)}:v1"
    k(cluster, "apply", "-f", "-", input=POD.format(name=name, node=cluster.workers[0], image=image))
    try:
        deadline = time.monotonic() + 60
        while True:
            events = k(cluster, "get", "events", "--field-selector", f"involvedObject.name={name}",
                       "-o", "json").stdout
            if "Failed to pull image" in events:
                break
            assert time.monotonic() < deadline, events
            time.sleep(1)
        assert "nor in the cluster's registry" in events
    finally:
        k(cluster, "delete", "pod", name, "--grace-period=1", "--ignore-not-found", code=None)
