"""Endpoints controller driven through process_next_item() over fakes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.controller import InstrumentedQueue
from kubelite.client.workqueue import ItemExponentialFailureRateLimiter, process_next_item
from kubelite.controllers.endpoints import EndpointsController, compute_subsets
from tests.unit.fakes_controllers import FakeLister, FakeWriter, pod

LABELS = {"app": "web"}


def service(*ports: tuple[str, int, str], selector: dict[str, str] | None = None,
            publish_not_ready: bool = False) -> core.Service:
    s = core.Service(api_version="v1", kind="Service")
    s.metadata.name = "web"
    s.metadata.namespace = "ns"
    s.metadata.labels["team"] = "a"
    s.spec.selector.update(LABELS if selector is None else selector)
    s.spec.cluster_ip = "10.96.0.20"
    s.spec.publish_not_ready_addresses = publish_not_ready
    for name, port, target in ports:
        s.spec.ports.add(name=name, port=port, target_port=target, protocol="TCP")
    return s


def web_pod(name: str, ip: str, *, ready: bool = True, http_port: int = 8080, node: str = "n1") -> core.Pod:
    p = pod(name, LABELS, node=node, ready=ready)
    p.status.pod_ip = ip
    p.spec.containers[0].ports.add(name="http", container_port=http_port, protocol="TCP")
    return p


class Harness:
    def __init__(self, svc: core.Service, *pods: core.Pod) -> None:
        self.services = FakeLister(svc)
        self.pods = FakeLister(*pods)
        self.endpoints: FakeLister[core.Endpoints] = FakeLister()
        self.writer = FakeWriter()
        queue: InstrumentedQueue[str] = InstrumentedQueue(
            "endpoint", ItemExponentialFailureRateLimiter(0.001, 0.01), registry=CollectorRegistry())
        self.ctl = EndpointsController(self.services, self.pods, self.endpoints, self.writer, queue=queue)

    async def sync(self) -> core.Endpoints | None:
        self.ctl.queue.add("ns/web")
        assert await process_next_item(self.ctl.queue, self.ctl.sync)
        ep = self.writer.objects.get((core.Endpoints, "ns", "web"))
        if ep is not None:
            self.endpoints.put(ep)
        return ep


async def test_ready_and_not_ready_addresses_with_node_and_target_ref() -> None:
    a, b = web_pod("a", "10.244.1.5"), web_pod("b", "10.244.2.7", ready=False, node="n2")
    no_ip = web_pod("c", "")
    h = Harness(service(("http", 80, "http")), a, b, no_ip)
    ep = await h.sync()
    assert ep is not None
    (subset,) = ep.subsets
    assert [(x.ip, x.node_name, x.target_ref.kind, x.target_ref.name, x.target_ref.uid) for x in subset.addresses] \
        == [("10.244.1.5", "n1", "Pod", "a", a.metadata.uid)]
    assert [x.ip for x in subset.not_ready_addresses] == ["10.244.2.7"]
    assert [(p.name, p.port, p.protocol) for p in subset.ports] == [("http", 8080, "TCP")]
    assert dict(ep.metadata.labels) == {"team": "a"}
    # Nothing changed: no second write.
    await h.sync()
    assert len(h.writer.created) == 1 and h.writer.updates == []


async def test_named_target_port_resolves_per_pod_and_groups_subsets() -> None:
    a, b = web_pod("a", "10.0.0.1", http_port=8080), web_pod("b", "10.0.0.2", http_port=9090)
    no_port = pod("c", LABELS, node="n1")
    no_port.status.pod_ip = "10.0.0.3"
    subsets = compute_subsets(service(("http", 80, "http")), [a, b, no_port])
    assert sorted((s.ports[0].port, [x.ip for x in s.addresses]) for s in subsets) == \
        [(8080, ["10.0.0.1"]), (9090, ["10.0.0.2"])]
    numeric = compute_subsets(service(("", 80, "8443")), [a])
    assert numeric[0].ports[0].port == 8443
    defaulted = compute_subsets(service(("", 80, "")), [a])
    assert defaulted[0].ports[0].port == 80


async def test_terminating_pods_leave_at_once_unless_publish_not_ready() -> None:
    a = web_pod("a", "10.0.0.1")
    a.metadata.deletion_timestamp.seconds = 5
    b = web_pod("b", "10.0.0.2", ready=False)
    assert compute_subsets(service(("http", 80, "http")), [a]) == []
    published = compute_subsets(service(("http", 80, "http"), publish_not_ready=True), [a, b])
    assert [x.ip for x in published[0].addresses] == ["10.0.0.1", "10.0.0.2"]
    finished = web_pod("d", "10.0.0.4")
    finished.status.phase = "Succeeded"
    finished.spec.restart_policy = "Never"
    assert compute_subsets(service(("http", 80, "http")), [finished]) == []


async def test_pod_becoming_ready_moves_and_service_deletion_removes() -> None:
    b = web_pod("b", "10.0.0.2", ready=False)
    h = Harness(service(("http", 80, "http")), b)
    await h.sync()
    ready = web_pod("b", "10.0.0.2")
    ready.metadata.uid = b.metadata.uid
    ready.metadata.resource_version = "6"
    h.pods.put(ready)
    h.ctl.update_pod(b, ready)
    assert len(h.ctl.queue) == 1
    ep = await h.sync()
    assert ep is not None and [x.ip for x in ep.subsets[0].addresses] == ["10.0.0.2"]
    h.services.items.clear()
    await h.sync()
    assert h.writer.deleted == [("Endpoints", "ns", "web", "")]


async def test_service_without_selector_is_left_alone() -> None:
    h = Harness(service(("http", 80, "http"), selector={}), web_pod("a", "10.0.0.1"))
    assert await h.sync() is None
    assert h.writer.created == [] and h.writer.updates == []


async def test_headless_service_lists_addresses_without_ports() -> None:
    svc = service()
    svc.spec.cluster_ip = "None"
    h = Harness(svc, web_pod("a", "10.0.0.1"))
    ep = await h.sync()
    assert ep is not None
    assert [x.ip for x in ep.subsets[0].addresses] == ["10.0.0.1"] and not ep.subsets[0].ports
    assert ep.metadata.labels["service.kubernetes.io/headless"] == ""
