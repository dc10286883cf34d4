"""Strategies of the smaller kinds: Node, Namespace, ConfigMap, Secret, Event, Endpoints, Lease; the table."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from google.protobuf.message import Message

from kubelite.api.coordination.v1 import generated_pb2 as coordination_v1
from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.apiserver.pipeline import Attributes, UserInfo
from kubelite.apiserver.registry.all import build_strategies
from kubelite.apiserver.registry.core import FinalizeSubresource, NamespaceStrategy
from kubelite.apiserver.registry.strategy import Strategy
from kubelite.machinery.kinds import (
    CONFIGMAPS,
    ENDPOINTS,
    EVENTS,
    LEASES,
    NAMESPACES,
    NODES,
    SCHEME,
    SECRETS,
    SERVICEACCOUNTS,
)
from tests.unit.test_registry_helpers import create, find, load, paths, strategy


def test_every_kind_has_a_strategy() -> None:
    table = build_strategies(SCHEME)
    assert set(table) == {(rt.group, rt.resource) for rt in SCHEME}
    for (group, resource), s in table.items():
        assert isinstance(s, Strategy)
        assert (s.rt.group, s.rt.resource) == (group, resource)
    assert type(table[("", SERVICEACCOUNTS.resource)]) is Strategy


# --- nodes ------------------------------------------------------------------------------------


def node(**spec: Any) -> core_v1.Node:
    return load({"metadata": {"name": "node-1"}, "spec": spec,
                 "status": {"capacity": {"cpu": "2", "memory": "4Gi"}}}, core_v1.Node)


def test_node_create_keeps_status_and_defaults_allocatable() -> None:
    n = node(podCIDR="10.244.1.0/24")
    assert create(NODES, n) == []
    assert dict(n.status.allocatable) == {"cpu": "2", "memory": "4Gi"}
    assert strategy(NODES).field_set(n)["spec.unschedulable"] == "false"


@pytest.mark.parametrize(("spec", "path", "etype"), [
    ({"podCIDR": "10.244.1.0"}, "spec.podCIDR", "FieldValueInvalid"),
    ({"taints": [{"key": "k", "effect": "Sometimes"}]}, "spec.taints[0].effect", "FieldValueNotSupported"),
    ({"taints": [{"key": "k"}]}, "spec.taints[0].effect", "FieldValueRequired"),
    ({"taints": [{"key": "bad key", "effect": "NoSchedule"}]}, "spec.taints[0].key", "FieldValueInvalid"),
    ({"taints": [{"key": "k", "effect": "NoSchedule"}, {"key": "k", "effect": "NoSchedule"}]}, "spec.taints[1]",
     "FieldValueDuplicate"),
])
def test_node_validation(spec: dict[str, Any], path: str, etype: str) -> None:
    assert find(create(NODES, node(**spec)), path).type == etype


def test_node_name_and_update_rules() -> None:
    n = node()
    n.metadata.name = "Node_1"
    assert "metadata.name" in paths(create(NODES, n))
    s = strategy(NODES)
    old = node(podCIDR="10.244.1.0/24")
    create(NODES, old)
    new = node(podCIDR="10.244.2.0/24")
    new.status.Clear()
    s.prepare_for_update(new, old)
    assert dict(new.status.capacity) == {"cpu": "2", "memory": "4Gi"}  # spec update keeps status
    assert find(s.validate_update(new, old), "spec.podCIDR").type == "FieldValueForbidden"


# --- namespaces -------------------------------------------------------------------------------


def namespace(name: str = "team-a") -> core_v1.Namespace:
    return load({"metadata": {"name": name}}, core_v1.Namespace)


def ns_strategy() -> NamespaceStrategy:
    s = strategy(NAMESPACES)
    assert isinstance(s, NamespaceStrategy)
    return s


def test_namespace_lifecycle_hooks() -> None:
    s = ns_strategy()
    ns = namespace()
    assert create(NAMESPACES, ns) == []
    assert list(ns.spec.finalizers) == ["kubernetes"]
    assert ns.status.phase == "Active"
    assert s.field_set(ns)["status.phase"] == "Active"
    assert s.grace_period(ns, None) == 0
    assert s.delete_blocked(ns) is True
    s.on_graceful_delete(ns)
    assert ns.status.phase == "Terminating"
    ns.spec.ClearField("finalizers")
    assert s.delete_blocked(ns) is False


def test_namespace_name_is_a_label() -> None:
    assert find(create(NAMESPACES, namespace("a.b")), "metadata.name").type == "FieldValueInvalid"


def test_namespace_update_cannot_drop_finalizers() -> None:
    s = ns_strategy()
    old = namespace()
    create(NAMESPACES, old)
    new = namespace()
    s.prepare_for_update(new, old)
    assert list(new.spec.finalizers) == ["kubernetes"]


@dataclass
class _Stored:
    obj: Message


class FakeStore:
    def __init__(self, s: Strategy, obj: Message) -> None:
        self.s, self.obj = s, obj

    async def guaranteed_update(self, attrs: Attributes, name: str, mutate: Callable[[Any], Awaitable[Message]],
                                *, precondition: int = 0, status: bool = False, from_cache: bool = False) -> Message:
        new = await mutate(_Stored(self.obj))
        self.s.prepare_for_update(new, self.obj, attrs.subresource)
        self.s.default(new)
        assert self.s.validate_update(new, self.obj, attrs.subresource) == []
        self.obj = new
        return new


async def test_namespace_finalize() -> None:
    s = ns_strategy()
    ns = namespace()
    create(NAMESPACES, ns)
    store = FakeStore(s, ns)
    attrs = Attributes(UserInfo("controller"), "update", NAMESPACES, "", "team-a", subresource="finalize")
    body = core_v1.Namespace()
    body.CopyFrom(ns)
    del body.spec.finalizers[:]
    out = await FinalizeSubresource(lambda group, resource: None).update(  # type: ignore[arg-type,return-value]
        store, attrs, body)  # type: ignore[arg-type]
    assert isinstance(out, core_v1.Namespace)
    assert list(out.spec.finalizers) == []
    assert out.status.phase == "Active"


# --- config maps and secrets ------------------------------------------------------------------


@pytest.mark.parametrize("key", ["a b", "..x", ".", "x/y", "k" * 254])
def test_configmap_bad_keys(key: str) -> None:
    cm = load({"metadata": {"name": "cfg", "namespace": "default"}, "data": {key: "v"}}, core_v1.ConfigMap)
    assert find(create(CONFIGMAPS, cm), f"data[{key}]").type == "FieldValueInvalid"


def test_configmap_good_keys_and_size() -> None:
    cm = load({"metadata": {"name": "cfg", "namespace": "default"},
               "data": {"game.properties": "x", "UI_THEME": "dark", "-._a9": ""}}, core_v1.ConfigMap)
    assert create(CONFIGMAPS, cm) == []
    cm.data["big"] = "x" * (1024 * 1024)
    assert find(create(CONFIGMAPS, cm), "data").type == "FieldValueTooLong"


def test_configmap_duplicate_key_in_binary_data() -> None:
    cm = load({"metadata": {"name": "cfg", "namespace": "default"}, "data": {"k": "v"},
               "binaryData": {"k": "AAE="}}, core_v1.ConfigMap)
    assert find(create(CONFIGMAPS, cm), "data[k]").type == "FieldValueInvalid"


def test_immutable_configmap() -> None:
    s = strategy(CONFIGMAPS)
    old = load({"metadata": {"name": "cfg", "namespace": "default"}, "data": {"k": "v"}, "immutable": True},
               core_v1.ConfigMap)
    new = core_v1.ConfigMap()
    new.CopyFrom(old)
    new.data["k"] = "changed"
    new.immutable = False
    errs = [str(e) for e in s.validate_update(new, old)]
    assert "data: Forbidden: field is immutable when `immutable` is set" in errs
    assert "immutable: Forbidden: field is immutable when `immutable` is set" in errs
    unchanged = core_v1.ConfigMap()
    unchanged.CopyFrom(old)
    unchanged.metadata.labels["x"] = "y"
    assert s.validate_update(unchanged, old) == []


def secret(**fields: Any) -> core_v1.Secret:
    return load({"metadata": {"name": "s", "namespace": "default"}, **fields}, core_v1.Secret)


def test_secret_defaults_and_string_data() -> None:
    sec = secret(data={"a": "b2xk"}, stringData={"a": "new", "b": "plain"})
    assert create(SECRETS, sec) == []
    assert sec.type == "Opaque"
    assert dict(sec.data) == {"a": b"new", "b": b"plain"}
    assert not sec.string_data
    assert strategy(SECRETS).field_set(sec)["type"] == "Opaque"


def test_secret_types() -> None:
    tls = secret(type="kubernetes.io/tls", data={"tls.crt": "eA=="})
    assert find(create(SECRETS, tls), "data[tls.key]").type == "FieldValueRequired"
    sa = secret(type="kubernetes.io/service-account-token")
    assert find(create(SECRETS, sa), "metadata.annotations[kubernetes.io/service-account.name]").type == \
        "FieldValueRequired"
    sa.metadata.annotations["kubernetes.io/service-account.name"] = "default"
    assert create(SECRETS, sa) == []


def test_secret_update_rules() -> None:
    s = strategy(SECRETS)
    old = secret(data={"k": "dg=="}, immutable=True)
    create(SECRETS, old)
    new = secret(stringData={"k": "other"}, type="kubernetes.io/basic-auth")
    s.prepare_for_update(new, old)
    s.default(new)
    errs = s.validate_update(new, old)
    assert find(errs, "type").detail == "field is immutable"
    assert find(errs, "data").type == "FieldValueForbidden"


# --- events, endpoints, leases ----------------------------------------------------------------


def test_event_validation_and_fields() -> None:
    ev = load({"metadata": {"name": "web.17a3b2c4d5e6f789", "namespace": "default"},
               "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default", "uid": "u1"},
               "reason": "Scheduled", "type": "Normal", "source": {"component": "default-scheduler"},
               "reportingComponent": "default-scheduler"}, core_v1.Event)
    assert create(EVENTS, ev) == []
    fields = strategy(EVENTS).field_set(ev)
    assert fields["involvedObject.kind"] == "Pod"
    assert fields["involvedObject.uid"] == "u1"
    assert fields["source"] == "default-scheduler"
    assert fields["reportingComponent"] == "default-scheduler"
    assert fields["type"] == "Normal"
    assert "involvedObject.fieldPath" in strategy(EVENTS).selectable_fields()
    ev.involved_object.namespace = "other"
    ev.involved_object.ClearField("kind")
    errs = create(EVENTS, ev)
    assert find(errs, "involvedObject.namespace").type == "FieldValueInvalid"
    assert find(errs, "involvedObject.kind").type == "FieldValueRequired"


def test_endpoints() -> None:
    ep = load({"metadata": {"name": "my-service", "namespace": "default"},
               "subsets": [{"addresses": [{"ip": "10.244.1.5"}], "ports": [{"port": 9376}]}]}, core_v1.Endpoints)
    assert create(ENDPOINTS, ep) == []
    assert ep.subsets[0].ports[0].protocol == "TCP"
    ep.subsets[0].addresses[0].ip = "10.244.1.500"
    ep.subsets[0].addresses.add(ip="127.0.0.1")
    ep.subsets[0].ports.add(port=70000, name="b")
    errs = create(ENDPOINTS, ep)
    assert find(errs, "subsets[0].addresses[0].ip").type == "FieldValueInvalid"
    assert find(errs, "subsets[0].addresses[1].ip").type == "FieldValueInvalid"
    assert find(errs, "subsets[0].ports[0].name").type == "FieldValueRequired"
    assert find(errs, "subsets[0].ports[1].port").type == "FieldValueInvalid"


def test_lease() -> None:
    lease = load({"metadata": {"name": "kube-scheduler", "namespace": "kube-system"},
                  "spec": {"holderIdentity": "host-1_abc", "leaseDurationSeconds": 15}}, coordination_v1.Lease)
    assert create(LEASES, lease) == []
    lease.spec.lease_duration_seconds = 0
    assert find(create(LEASES, lease), "spec.leaseDurationSeconds").type == "FieldValueInvalid"


def test_service_account_names() -> None:
    sa = load({"metadata": {"name": "system.builder", "namespace": "default"}}, core_v1.ServiceAccount)
    assert create(SERVICEACCOUNTS, sa) == []
    sa.metadata.name = "Bad_Name"
    assert "metadata.name" in paths(create(SERVICEACCOUNTS, sa))
