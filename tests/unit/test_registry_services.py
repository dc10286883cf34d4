"""Service strategy: defaulting, validation, and ClusterIP / NodePort allocation through claims."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest

from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.apiserver.registry.all import build_strategies
from kubelite.apiserver.registry.core import NODE_PORT_PREFIX, SERVICE_IP_PREFIX, ServiceStrategy
from kubelite.machinery.kinds import SCHEME, SERVICES
from kubelite.storage.interface import Claim
from tests.unit.test_registry_helpers import create, find, load, strategy

# The Service from the Kubernetes "Service" concept page.
MY_SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "my-service", "namespace": "default"},
    "spec": {"selector": {"app.kubernetes.io/name": "MyApp"},
             "ports": [{"protocol": "TCP", "port": 80, "targetPort": 9376}]},
}


def svc(**spec: Any) -> core_v1.Service:
    data = copy.deepcopy(MY_SERVICE)
    data["spec"].update(spec)
    return load(data, core_v1.Service)


def service_strategy(cidr: str = "10.96.0.0/16") -> ServiceStrategy:
    s = build_strategies(SCHEME, service_cidr=cidr)[("", "services")]
    assert isinstance(s, ServiceStrategy)
    return s


def created(s: ServiceStrategy, obj: core_v1.Service) -> core_v1.Service:
    s.prepare_for_create(obj)
    s.default(obj)
    errs = s.validate(obj)
    assert errs == [], [str(e) for e in errs]
    return obj


# --- defaulting -------------------------------------------------------------------------------


def test_defaults() -> None:
    out = created(service_strategy(), svc(ports=[{"port": 80}]))
    spec = out.spec
    assert spec.type == "ClusterIP"
    assert spec.session_affinity == "None"
    assert spec.ports[0].protocol == "TCP"
    assert spec.ports[0].target_port == "80"
    assert spec.internal_traffic_policy == "Cluster"
    assert spec.external_traffic_policy == ""
    assert list(spec.ip_families) == ["IPv4"]
    assert spec.ip_family_policy == "SingleStack"
    assert spec.cluster_ip and list(spec.cluster_ips) == [spec.cluster_ip]


def test_nodeport_defaults() -> None:
    out = created(service_strategy(), svc(type="NodePort"))
    assert out.spec.external_traffic_policy == "Cluster"
    assert 30000 <= out.spec.ports[0].node_port <= 32767


def test_client_ip_affinity_timeout() -> None:
    out = created(service_strategy(), svc(sessionAffinity="ClientIP"))
    assert out.spec.session_affinity_config.client_ip.timeout_seconds == 10800


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "path", "etype"), [
    ({"ports": []}, "spec.ports", "FieldValueRequired"),
    ({"ports": [{"port": 0}]}, "spec.ports[0].port", "FieldValueInvalid"),
    ({"ports": [{"port": 80, "name": "a"}, {"port": 81}]}, "spec.ports[1].name", "FieldValueRequired"),
    ({"ports": [{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]}, "spec.ports[1].name",
     "FieldValueDuplicate"),
    ({"ports": [{"port": 80, "targetPort": 70000}]}, "spec.ports[0].targetPort", "FieldValueInvalid"),
    ({"ports": [{"port": 80, "targetPort": "Bad_Name"}]}, "spec.ports[0].targetPort", "FieldValueInvalid"),
    ({"ports": [{"port": 80, "protocol": "ICMP"}]}, "spec.ports[0].protocol", "FieldValueNotSupported"),
    ({"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}, "spec.ports[0].nodePort", "FieldValueInvalid"),
    ({"ports": [{"port": 80, "nodePort": 30080}]}, "spec.ports[0].nodePort", "FieldValueForbidden"),
    ({"type": "Magic"}, "spec.type", "FieldValueNotSupported"),
    ({"clusterIP": "10.0.0.5"}, "spec.clusterIP", "FieldValueInvalid"),
    ({"clusterIP": "10.96.0.0"}, "spec.clusterIP", "FieldValueInvalid"),
    ({"clusterIP": "not-an-ip"}, "spec.clusterIP", "FieldValueInvalid"),
    ({"type": "NodePort", "clusterIP": "None"}, "spec.clusterIP", "FieldValueInvalid"),
    ({"type": "ExternalName"}, "spec.externalName", "FieldValueRequired"),
    ({"externalTrafficPolicy": "Local"}, "spec.externalTrafficPolicy", "FieldValueInvalid"),
])
def test_validation(spec: dict[str, Any], path: str, etype: str) -> None:
    errs = create(SERVICES, svc(**spec))
    assert find(errs, path).type == etype


def test_name_must_be_dns1035() -> None:
    s = svc()
    s.metadata.name = "1-service"
    assert find(create(SERVICES, s), "metadata.name").type == "FieldValueInvalid"


def test_out_of_range_message() -> None:
    errs = create(SERVICES, svc(clusterIP="10.0.0.5"))
    assert str(find(errs, "spec.clusterIP")) == (
        'spec.clusterIP: Invalid value: "10.0.0.5": provided IP is not in the valid range. '
        "The range of valid IPs is 10.96.0.0/16")


def test_headless_and_external_name_are_valid_without_ip() -> None:
    s = service_strategy()
    headless = created(s, svc(clusterIP="None", ports=[]))
    assert s.claims_for_create(headless) == []
    ext = created(s, svc(type="ExternalName", externalName="db.example.com.", ports=[]))
    assert ext.spec.cluster_ip == "" and s.claims_for_create(ext) == []


def test_same_node_port_for_tcp_and_udp() -> None:
    s = service_strategy()
    out = created(s, svc(type="NodePort", ports=[
        {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "nodePort": 30053}]))
    keys = [c.key for c in s.claims_for_create(out)]
    assert keys.count(f"{NODE_PORT_PREFIX}30053") == 1


# --- allocation -------------------------------------------------------------------------------


def test_allocated_ips_are_inside_the_cidr_and_never_reserved() -> None:
    s = service_strategy("10.96.0.0/28")  # 14 hosts: forces use of the whole range
    net = ipaddress.ip_network("10.96.0.0/28")
    seen = set()
    for _ in range(300):
        ip = created(s, svc()).spec.cluster_ip
        assert ipaddress.ip_address(ip) in net
        assert ip not in ("10.96.0.0", "10.96.0.15", "10.96.0.1", "10.96.0.10")
        seen.add(ip)
    assert len(seen) == 12


def test_large_range_allocates_above_the_static_band() -> None:
    s = service_strategy()
    for _ in range(100):
        ip = ipaddress.IPv4Address(created(s, svc()).spec.cluster_ip)
        assert ipaddress.IPv4Address("10.96.1.0") <= ip < ipaddress.IPv4Address("10.96.255.255")


def test_claims_content_and_releases() -> None:
    s = service_strategy()
    out = created(s, svc(type="NodePort", clusterIP="10.96.0.10",
                         ports=[{"name": "a", "port": 80, "nodePort": 30080}, {"name": "b", "port": 81}]))
    claims = list(s.claims_for_create(out))
    auto_port = out.spec.ports[1].node_port
    assert claims == [Claim(f"{SERVICE_IP_PREFIX}10.96.0.10", b"default/my-service"),
                      Claim(f"{NODE_PORT_PREFIX}30080", b"default/my-service"),
                      Claim(f"{NODE_PORT_PREFIX}{auto_port}", b"default/my-service")]
    assert list(s.releases_for_delete(out)) == [c.key for c in claims]


def test_claim_taken_reallocates_auto_values() -> None:
    s = service_strategy()
    out = created(s, svc(type="NodePort"))
    ip, port = out.spec.cluster_ip, out.spec.ports[0].node_port
    assert s.on_claim_taken(out, f"{SERVICE_IP_PREFIX}{ip}") is True
    assert out.spec.cluster_ip != ip and list(out.spec.cluster_ips) == [out.spec.cluster_ip]
    assert s.on_claim_taken(out, f"{NODE_PORT_PREFIX}{port}") is True
    assert out.spec.ports[0].node_port != port
    new_keys = [c.key for c in s.claims_for_create(out)]
    assert new_keys == [f"{SERVICE_IP_PREFIX}{out.spec.cluster_ip}", f"{NODE_PORT_PREFIX}{out.spec.ports[0].node_port}"]
    # The re-chosen values are themselves re-choosable.
    assert s.on_claim_taken(out, new_keys[0]) is True


def test_claim_taken_refuses_user_values() -> None:
    s = service_strategy()
    out = created(s, svc(type="NodePort", clusterIP="10.96.0.10", ports=[{"port": 53, "nodePort": 30053}]))
    assert s.on_claim_taken(out, f"{SERVICE_IP_PREFIX}10.96.0.10") is False
    assert s.on_claim_taken(out, f"{NODE_PORT_PREFIX}30053") is False
    assert out.spec.cluster_ip == "10.96.0.10"
    ip_err = s.claim_taken_causes(out, f"{SERVICE_IP_PREFIX}10.96.0.10")
    assert "provided IP is already allocated" in str(ip_err[0])
    port_err = s.claim_taken_causes(out, f"{NODE_PORT_PREFIX}30053")
    assert str(port_err[0]) == "spec.ports[0].nodePort: Invalid value: 30053: provided port is already allocated"


def test_claim_taken_for_another_object_is_not_reallocated() -> None:
    s = service_strategy()
    first = created(s, svc())
    created(s, svc())  # a later create in the same task replaces the record
    assert s.on_claim_taken(first, f"{SERVICE_IP_PREFIX}{first.spec.cluster_ip}") is False


# --- update -----------------------------------------------------------------------------------


def _update(s: ServiceStrategy, new: core_v1.Service, old: core_v1.Service) -> list[str]:
    s.prepare_for_update(new, old)
    s.default(new)
    return [str(e) for e in s.validate_update(new, old)]


def test_cluster_ip_is_immutable() -> None:
    s = service_strategy()
    old = created(s, svc(clusterIP="10.96.5.5"))
    new = svc(clusterIP="10.96.5.6")
    assert 'spec.clusterIP: Invalid value: "10.96.5.6": field is immutable' in _update(s, new, old)


def test_update_without_allocated_values_keeps_them() -> None:
    s = service_strategy()
    old = created(s, svc(type="NodePort"))
    new = svc(type="NodePort")  # re-applied manifest: no clusterIP, no nodePort
    assert _update(s, new, old) == []
    assert new.spec.cluster_ip == old.spec.cluster_ip
    assert new.spec.ports[0].node_port == old.spec.ports[0].node_port
    assert s.claims_for_update(new, old) == [] and s.releases_for_update(new, old) == []


def test_type_change_allocates_and_releases_node_ports() -> None:
    s = service_strategy()
    old = created(s, svc())
    new = svc(type="NodePort")
    assert _update(s, new, old) == []
    assert [c.key for c in s.claims_for_update(new, old)] == [f"{NODE_PORT_PREFIX}{new.spec.ports[0].node_port}"]
    back = svc(type="ClusterIP", ports=[{"port": 80, "targetPort": 9376,
                                         "nodePort": new.spec.ports[0].node_port}])
    assert _update(s, back, new) == []
    assert back.spec.ports[0].node_port == 0
    assert s.releases_for_update(back, new) == [f"{NODE_PORT_PREFIX}{new.spec.ports[0].node_port}"]


def test_strategy_table_has_services() -> None:
    assert isinstance(strategy(SERVICES), ServiceStrategy)
