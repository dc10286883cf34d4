"""Static pods from --pod-manifest-path: mirrored into the API, and running without it."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import docker

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.machinery.errors import StatusError
from kubelite.runtime.images import busybox_image, ensure_busybox_image, ensure_pause_image
from tests.integration.test_kubelet import running, wait_pod
from tests.support.apiserver import APIServerProcess, free_port
from tests.support.kubelet import KubeletProcess

MANIFEST = """\
apiVersion: v1
kind: Pod
metadata:
  name: static-web
  labels: {tier: control-plane}
spec:
  containers:
  - name: app
    image: %s
    command: ["sleep", "600"]
"""


async def test_static_pods_are_mirrored_recreated_and_removed_with_their_manifest(
        apiserver: APIServerProcess, client: Client, tmp_path: Path) -> None:
    node = f"static-{secrets.token_hex(3)}"
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "web.yaml").write_text(MANIFEST % busybox_image())
    (manifests / "broken.yaml").write_text("kind: Pod\nmetadata: {}\n")
    name = f"static-web-{node}"
    with KubeletProcess(apiserver.server, node, tmp_path / "kubelet.log", tmp_path / "root", runtime="fake",
                        pod_cidr="10.232.9.0/24", extra_args=[f"--pod-manifest-path={manifests}"]):
        mirror = await wait_pod(client, "default", name, running)
        assert "kubernetes.io/config.mirror" in mirror.metadata.annotations
        assert mirror.metadata.annotations["kubernetes.io/config.source"] == "file"
        assert mirror.spec.node_name == node
        assert [r.kind for r in mirror.metadata.owner_references] == ["Node"]
        # Deleting the mirror does not stop the static pod: a new mirror appears.
        await client.delete(core.Pod, name, "default", grace_period_seconds=0)
        again = await wait_pod(client, "default", name, lambda p: p.metadata.uid != mirror.metadata.uid
                               and running(p))
        assert again.metadata.annotations["kubernetes.io/config.mirror"] == \
            mirror.metadata.annotations["kubernetes.io/config.mirror"]
        # Removing the manifest removes the pod and its mirror (the directory is reread every 20 s).
        (manifests / "web.yaml").unlink()
        async with asyncio.timeout(60):
            while True:
                try:
                    await client.get(core.Pod, name, "default")
                except StatusError as exc:
                    assert exc.reason == "NotFound"
                    break
                await asyncio.sleep(0.5)
    assert "metadata.name: required" in (tmp_path / "kubelet.log").read_text()
    await client.delete(core.Node, node)


async def test_a_static_pod_runs_with_no_api_server(tmp_path: Path) -> None:
    api = docker.APIClient(version="auto")
    ensure_pause_image(api)
    ensure_busybox_image(api)
    node = f"alone-{secrets.token_hex(3)}"
    network = f"kubelite-{node}"
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "web.yaml").write_text(MANIFEST % busybox_image())
    dead_server = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    kubelet = KubeletProcess(dead_server, node, tmp_path / "kubelet.log", tmp_path / "root", pod_cidr="10.231.73.0/24",
                             extra_args=[f"--pod-manifest-path={manifests}", f"--pod-network-name={network}"])
    try:
        kubelet.start(wait_healthy=False)
        async with asyncio.timeout(60):
            while True:
                found = api.containers(filters={"label": [f"io.kubelite.node={node}",
                                                          "io.kubernetes.container.name=app"]})
                if found:
                    break
                await asyncio.sleep(0.5)
        labels = found[0]["Labels"]
        assert labels["io.kubernetes.pod.name"] == f"static-web-{node}"
        assert labels["io.kubernetes.pod.namespace"] == "default"
    finally:
        kubelet.stop()
        for c in api.containers(all=True, filters={"label": [f"io.kubelite.node={node}"]}):
            api.remove_container(c["Id"], force=True)
        for n in api.networks(names=[network]):
            if n["Name"] == network:
                api.remove_network(n["Id"])
        api.close()
