"""The strategies driven through the real ResourceStore over a dict-backed storage."""

from __future__ import annotations

from typing import Any, cast

import pytest

from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.apiserver.pipeline import Admission, Attributes, UserInfo
from kubelite.apiserver.registry.all import build_strategies
from kubelite.apiserver.registry.core import NODE_PORT_PREFIX, SERVICE_IP_PREFIX, BindingSubresource
from kubelite.apiserver.store import ResourceStore
from kubelite.apiserver.watchcache import WatchCache
from kubelite.machinery import errors
from kubelite.machinery.kinds import PODS, SCHEME, SERVICES
from kubelite.machinery.scheme import ResourceType
from kubelite.storage.interface import Storage
from tests.unit.fakes_storage import FakeStorage
from tests.unit.test_registry_helpers import load

USER = UserInfo("admin")


def make_store(rt: ResourceType, storage: FakeStorage, **options: Any) -> ResourceStore:
    strategy = build_strategies(SCHEME, **options)[(rt.group, rt.resource)]
    # The cache is never started: reads fall through to the (fake) storage.
    return ResourceStore(strategy, cast(Storage, storage), Admission(),
                         lambda s: WatchCache(s.strategy, cast(Storage, storage), s.prefix, s.decode))


def attrs(rt: ResourceType, name: str = "", subresource: str = "") -> Attributes:
    return Attributes(USER, "create", rt, "default", name, subresource=subresource)


def service(name: str, **spec: Any) -> core_v1.Service:
    return load({"metadata": {"name": name}, "spec": {"ports": [{"port": 80}], **spec}}, core_v1.Service)


async def test_service_create_claims_and_delete_releases() -> None:
    storage = FakeStorage()
    store = make_store(SERVICES, storage)
    out = await store.create(attrs(SERVICES), service("web", type="NodePort"))
    assert isinstance(out, core_v1.Service)
    ip_key = f"{SERVICE_IP_PREFIX}{out.spec.cluster_ip}"
    port_key = f"{NODE_PORT_PREFIX}{out.spec.ports[0].node_port}"
    assert storage.data[ip_key].value == b"default/web"
    assert port_key in storage.data
    stored = await store.get("default", "web")
    assert isinstance(stored, core_v1.Service) and stored.spec.cluster_ip == out.spec.cluster_ip
    await store.delete(attrs(SERVICES, "web"))
    assert ip_key not in storage.data and port_key not in storage.data


async def test_service_auto_allocation_retries_past_taken_values() -> None:
    storage = FakeStorage()
    store = make_store(SERVICES, storage, service_cidr="10.96.0.0/29")  # hosts .2-.6 besides reserved .1
    ips = set()
    for i in range(5):
        svc = await store.create(attrs(SERVICES), service(f"s{i}"))
        assert isinstance(svc, core_v1.Service)
        ips.add(svc.spec.cluster_ip)
    assert ips == {"10.96.0.2", "10.96.0.3", "10.96.0.4", "10.96.0.5", "10.96.0.6"}


async def test_user_chosen_ip_already_allocated_is_a_conflict() -> None:
    storage = FakeStorage()
    store = make_store(SERVICES, storage)
    await store.create(attrs(SERVICES), service("dns", clusterIP="10.96.0.10"))
    with pytest.raises(errors.StatusError) as info:
        await store.create(attrs(SERVICES), service("dns2", clusterIP="10.96.0.10"))
    assert info.value.reason in ("Conflict", "Invalid")


async def test_pod_create_and_bind_through_the_store() -> None:
    storage = FakeStorage()
    store = make_store(PODS, storage)
    pod = load({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
               core_v1.Pod)
    created = await store.create(attrs(PODS), pod)
    assert isinstance(created, core_v1.Pod) and created.status.phase == "Pending"
    binding = BindingSubresource(lambda group, resource: store)
    bound = await binding.bind(store, attrs(PODS, "web", "binding"), "node-1", created.metadata.uid)
    assert isinstance(bound, core_v1.Pod)
    stored = await store.get("default", "web")
    assert isinstance(stored, core_v1.Pod)
    assert stored.spec.node_name == "node-1"
    assert [c.type for c in stored.status.conditions] == ["PodScheduled"]
    with pytest.raises(errors.StatusError) as info:
        await binding.bind(store, attrs(PODS, "web", "binding"), "node-2", "")
    assert info.value.reason == "Conflict"
    # A plain update still may not move the pod.
    stored.spec.node_name = "node-2"
    with pytest.raises(errors.StatusError) as info:
        await store.update(Attributes(USER, "update", PODS, "default", "web"), stored)
    assert info.value.reason == "Invalid"
