"""Hermetic tests of the API server's smaller pieces: lease sharing, default tolerations,
credentials, the kubelet address of a node, container choice, durations and the config."""

from __future__ import annotations

import pytest

from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.apiserver.config import APIServerConfig
from kubelite.apiserver.endpoints import Endpoint, advertise_address, first_service_ip
from kubelite.apiserver.pipeline import ANONYMOUS, Attributes, DefaultTolerationSeconds, RequestInfo
from kubelite.apiserver.streaming import choose_container, kubelet_target
from kubelite.client.client import Client
from kubelite.machinery import codec
from kubelite.machinery.duration import parse_duration
from kubelite.machinery.errors import StatusError
from kubelite.machinery.kinds import PODS
from kubelite.storage.etcd import LeaseManager


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_lease_manager_shares_a_lease_within_the_reuse_window() -> None:
    granted: list[int] = []

    async def grant(ttl: int) -> int:
        granted.append(ttl)
        return len(granted)

    clock = Clock()
    leases = LeaseManager(grant, clock=clock, max_keys=3)
    assert await leases.lease_for(0) == 0 and granted == []
    first = await leases.lease_for(3600)
    assert granted == [3600 + 180]  # ttl plus a 5% window: every key lives at least ttl
    assert await leases.lease_for(3600) == first
    clock.now += 179
    assert await leases.lease_for(3600) == first  # third key: the cap
    assert await leases.lease_for(3600) != first  # fourth key: a new lease
    clock.now += 1000
    assert await leases.lease_for(3600) == 3  # window over: another new lease
    assert await leases.lease_for(2) != 3  # another ttl never shares
    assert granted[-1] == 3


def pod_with(tolerations: list[dict[str, object]]) -> core_v1.Pod:
    pod = codec.decode_into({"metadata": {"name": "p"}, "spec": {
        "containers": [{"name": "c", "image": "x"}], "tolerations": tolerations}}, core_v1.Pod)
    assert isinstance(pod, core_v1.Pod)
    return pod


@pytest.mark.parametrize(("given", "added"), [
    ([], ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]),
    ([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}],
     ["node.kubernetes.io/unreachable"]),
    ([{"operator": "Exists"}], []),  # tolerates everything already
    ([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoSchedule"}],
     ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]),
])
async def test_default_toleration_seconds(given: list[dict[str, object]], added: list[str]) -> None:
    plugin = DefaultTolerationSeconds(not_ready_seconds=300, unreachable_seconds=120)
    pod = pod_with(given)
    await plugin.admit(Attributes(ANONYMOUS, "create", PODS, "default", "p"), pod, None)
    new = list(pod.spec.tolerations)[len(given):]
    assert [t.key for t in new] == added
    for t in new:
        assert (t.operator, t.effect) == ("Exists", "NoExecute")
        assert t.toleration_seconds == (300 if t.key.endswith("not-ready") else 120)
    # Updates are left alone.
    again = pod_with(given)
    await plugin.admit(Attributes(ANONYMOUS, "update", PODS, "default", "p"), again, pod)
    assert len(again.spec.tolerations) == len(given)


def test_request_info_reads_a_bearer_token() -> None:
    assert RequestInfo((("authorization", "Bearer abc.def"),)).bearer_token == "abc.def"
    assert RequestInfo((("authorization", b"bearer  xyz "),)).bearer_token == "xyz"
    assert RequestInfo((("authorization", "Basic Zm9v"),)).bearer_token == ""
    assert RequestInfo(()).bearer_token == ""


def test_client_sends_the_kubeconfig_token() -> None:
    assert Client("127.0.0.1:1", token="s3cret")._metadata == (("authorization", "Bearer s3cret"),)
    assert Client("127.0.0.1:1")._metadata == ()


def node(addresses: list[tuple[str, str]], port: int = 0) -> core_v1.Node:
    n = core_v1.Node()
    n.metadata.name = "n1"
    for kind, address in addresses:
        n.status.addresses.add(type=kind, address=address)
    if port:
        n.status.daemon_endpoints.kubelet_endpoint.port = port
    return n


def test_kubelet_target() -> None:
    assert kubelet_target(node([("Hostname", "n1"), ("InternalIP", "10.0.0.5")], 10251)) == "10.0.0.5:10251"
    assert kubelet_target(node([("Hostname", "n1")])) == "n1:10250"
    assert kubelet_target(node([("InternalIP", "fd00::5")])) == "[fd00::5]:10250"
    with pytest.raises(StatusError, match="reports no address"):
        kubelet_target(node([]))


def test_choose_container() -> None:
    pod = codec.decode_into({"metadata": {"name": "p"}, "spec": {
        "initContainers": [{"name": "init", "image": "x"}],
        "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]}}, core_v1.Pod)
    assert isinstance(pod, core_v1.Pod)
    assert choose_container(pod, "b") == "b" and choose_container(pod, "init") == "init"
    with pytest.raises(StatusError) as info:
        choose_container(pod, "")
    assert info.value.message == ("a container name must be specified for pod p, choose one of: [a b] or one of "
                                  "the init containers: [init]")
    del pod.spec.containers[1]
    del pod.spec.init_containers[:]
    assert choose_container(pod, "") == "a"


@pytest.mark.parametrize(("text", "seconds"), [("1h0m0s", 3600), ("90", 90), ("1m30s", 90), ("500ms", 0.5),
                                               ("2h", 7200), ("", 0)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["1x", "h", "1h-2m", "abc"])
def test_bad_durations_name_the_text(text: str) -> None:
    with pytest.raises(ValueError, match=text if text != "h" else '"h"'):
        parse_duration(text)


@pytest.mark.parametrize(("field", "value", "flag"), [
    ("event_ttl_seconds", 0, "--event-ttl"),
    ("default_not_ready_toleration_seconds", -1, "--default-not-ready-toleration-seconds"),
    ("advertise_address", "not-an-ip", "--advertise-address"),
    ("service_cluster_ip_range", "10.96.0.0/33", "--service-cluster-ip-range"),
    ("endpoint_lease_seconds", 0, "--endpoint-lease-seconds"),
])
def test_config_errors_name_the_flag(field: str, value: object, flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        APIServerConfig(etcd_servers=("http://127.0.0.1:2379",), **{field: value})  # type: ignore[arg-type]


def test_kubernetes_service_addressing() -> None:
    assert first_service_ip("10.96.0.0/16") == "10.96.0.1"
    assert first_service_ip("fd00:10:96::/112") == "fd00:10:96::1"
    assert advertise_address("192.0.2.1", "0.0.0.0") == "192.0.2.1"
    assert advertise_address("", "10.1.2.3") == "10.1.2.3"
    assert Endpoint("10.0.0.1", 6443).lease_name == "kube-apiserver-endpoint-10.0.0.1-6443"


async def test_service_account_admission_defaults_the_name() -> None:
    from kubelite.apiserver.pipeline import ServiceAccountAdmission

    plugin = ServiceAccountAdmission()
    pod = pod_with([])
    await plugin.admit(Attributes(ANONYMOUS, "create", PODS, "default", "p"), pod, None)
    assert pod.spec.service_account_name == "default"
    named = pod_with([])
    named.spec.service_account_name = "builder"
    await plugin.admit(Attributes(ANONYMOUS, "create", PODS, "default", "p"), named, None)
    assert named.spec.service_account_name == "builder"
    legacy = pod_with([])
    legacy.spec.service_account = "old"
    await plugin.admit(Attributes(ANONYMOUS, "create", PODS, "default", "p"), legacy, None)
    assert legacy.spec.service_account_name == "old"
