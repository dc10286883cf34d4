"""The cluster DNS add-on (deploy/addons/kube-dns.yaml) and the DNS server's CoreDNS-style probe paths."""

from __future__ import annotations

import pathlib

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from kubelite.cluster import images
from kubelite.cluster.node import NodeConfig
from kubelite.dns.run import DNSConfig, dns_health_app

MANIFEST = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "addons" / "kube-dns.yaml"


def _docs() -> dict[str, dict[str, object]]:
    return {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text())}


def test_the_addon_runs_this_versions_image_behind_the_kubelets_cluster_dns_address() -> None:
    docs = _docs()
    assert set(docs) == {"ServiceAccount", "Deployment", "Service"}
    dep = docs["Deployment"]
    pod = dep["spec"]["template"]["spec"]  # type: ignore[index]
    (container,) = pod["containers"]
    # A version bump must bump the manifest too: the nodes only have the image of this version.
    assert container["image"] == images.dns_image_name()
    # Pulled from a local cluster's registry by the nodes that lack it; a VM has it loaded.
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert pod["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]  # type: ignore[index]
    assert dep["spec"]["replicas"] == 2  # type: ignore[index]
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": 8080}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 8181}
    svc = docs["Service"]
    assert svc["metadata"]["name"] == "kube-dns"  # type: ignore[index]
    assert svc["spec"]["clusterIP"] == NodeConfig.__dataclass_fields__["cluster_dns"].default  # type: ignore[index]
    ports = {(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]}  # type: ignore[index]
    assert ports == {("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")}


async def test_ready_fails_until_the_caches_are_synced_and_health_answers_throughout() -> None:
    synced = False
    async with TestClient(TestServer(dns_health_app(lambda: synced))) as client:
        assert (await client.get("/health")).status == 200
        assert (await client.get("/ready")).status == 503
        synced = True
        r = await client.get("/ready")
        assert r.status == 200 and await r.text() == "OK"
        assert (await client.get("/readyz")).status == 200
        assert (await client.get("/metrics")).status == 200


def test_a_bad_port_is_named() -> None:
    with pytest.raises(ValueError, match="--ready-port 70000"):
        DNSConfig(server="http://127.0.0.1:6443", ready_port=70000)
