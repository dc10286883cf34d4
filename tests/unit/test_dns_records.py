"""ClusterRecords: names from Services and Endpoints, replaced per Service."""

from __future__ import annotations

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.dns.records import ClusterRecords, SrvValue
from kubelite.machinery import codec


def svc(spec: dict[str, object]) -> core.Service:
    obj = codec.decode_into({"metadata": {"name": "web", "namespace": "ns"}, "spec": spec}, core.Service)
    assert isinstance(obj, core.Service)
    return obj


def test_updates_replace_and_deletes_remove() -> None:
    r = ClusterRecords("cluster.local")
    name = "web.ns.svc.cluster.local."
    r.update("ns", "web", svc({"clusterIP": "10.96.0.5", "ports": [{"name": "http", "port": 80}]}), None)
    assert [x.value for x in r.lookup(name, "A")[0]] == ["10.96.0.5"]
    assert [x.value for x in r.lookup("5.0.96.10.in-addr.arpa.", "PTR")[0]] == [name]
    [srv] = r.lookup("_http._tcp." + name, "SRV")[0]
    assert srv.value == SrvValue(0, 100, 80, name)
    r.update("ns", "web", svc({"clusterIP": "10.96.0.6"}), None)
    assert [x.value for x in r.lookup(name, "A")[0]] == ["10.96.0.6"]
    assert r.lookup("5.0.96.10.in-addr.arpa.", "PTR") == ([], False)
    assert r.lookup("_http._tcp." + name, "SRV") == ([], False)
    assert r.lookup(name, "AAAA") == ([], True)
    r.update("ns", "web", None, None)
    assert r.lookup(name, "A") == ([], False)
    assert r.lookup("WEB.NS.svc.cluster.local", "A") == ([], False)


def test_pod_names_and_domain() -> None:
    r = ClusterRecords("cluster.local")
    assert [x.value for x in r.lookup("10-244-1-5.default.pod.cluster.local.", "A")[0]] == ["10.244.1.5"]
    assert r.lookup("10-244-1-5.default.pod.cluster.local.", "AAAA") == ([], True)
    assert r.lookup("not-an-ip.default.pod.cluster.local.", "A") == ([], False)
    assert r.in_domain("x.svc.cluster.local") and r.in_domain("CLUSTER.LOCAL.")
    assert not r.in_domain("cluster.local.example.com") and not r.in_domain("notcluster.local")
