"""kubelite-proxy end to end: a real API server, the real proxy process in a node netns, real traffic.

The test builds a node network namespace with three "pod" namespaces on a
bridge and a "client" namespace routed through the node (tests/support/netns.py),
starts a kubelite-apiserver on the session's etcd cluster listening on the
root side of a veth into the node, and runs ``kubelite-proxy`` inside the
node namespace (``ip netns exec``). Services and Endpoints are written to
the API; the assertions are about traffic from the client namespace to the
ClusterIP and to the NodePort, counted per responding backend.

Every proxy mode runs the same tests.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.machinery.errors import StatusError
from tests.support.apiserver import APIServerProcess
from tests.support.etcd import EtcdCluster
from tests.support.netns import (
    CLIENT_GATEWAY,
    CLIENT_IP,
    NODE_UPLINK,
    POD_GATEWAY,
    POD_SUBNET,
    Topology,
    strip_counters,
)

NODE_NAME = "node1"
BACKEND_PORT = 8080
REQUESTS = 90  # three backends: 30 each on average, none may get more than 60

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    topo = Topology(pods=3).create()
    try:
        # Somebody else's rules, which --cleanup must leave alone, in every built-in chain the proxy
        # uses (as Docker has them on a real node). The nft-backed iptables creates a built-in chain
        # on first use and never removes it, so an untouched chain would differ in nft's listing.
        for table, chains in (("nat", ("PREROUTING", "OUTPUT", "POSTROUTING")),
                              ("filter", ("INPUT", "FORWARD", "OUTPUT"))):
            for chain in chains:
                topo.run(topo.node, "iptables", "-t", table, "-A", chain, "-s", "10.250.9.0/24", "-j", "RETURN")
        topo.start_backends(tmp_path_factory.mktemp("backends"), BACKEND_PORT)
        yield topo
    finally:
        topo.destroy()


@pytest.fixture(scope="module")
def pristine(topology: Topology) -> tuple[str, str]:
    """iptables-save and nft list ruleset of the node before any proxy ran."""
    return (strip_counters(topology.run(topology.node, "iptables-save")),
            topology.run(topology.node, "nft", "list", "ruleset"))


@pytest.fixture(scope="module")
def api(etcd_cluster: EtcdCluster, topology: Topology,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[APIServerProcess]:
    log = tmp_path_factory.mktemp("proxy-apiserver") / "apiserver.log"
    etcd_cluster.ensure_running()
    # Listens on the root end of the node's uplink, so the proxy inside the node reaches it.
    with APIServerProcess(etcd_cluster.endpoints, log, extra_args=[
            f"--bind-address={NODE_UPLINK[0]}", "--service-cluster-ip-range=10.251.0.0/16",
            f"--advertise-address={NODE_UPLINK[0]}"]) as server:
        yield server


@pytest.fixture
async def client(api: APIServerProcess) -> AsyncIterator[Client]:
    c = Client(f"{NODE_UPLINK[0]}:{api.port}")
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def ns(client: Client, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    name = "px-" + secrets.token_hex(4)
    namespace = core.Namespace(api_version="v1", kind="Namespace")
    namespace.metadata.name = name
    await client.create(namespace)
    yield name
    # The next test's proxy would program these too: remove them.
    for kind in (core.Service, core.Endpoints):
        for obj in (await client.list(kind, name)).items:
            try:
                await client.delete(kind, obj.metadata.name, name)
            except StatusError:
                pass


@dataclass
class Proxy:
    topology: Topology
    mode: str
    proc: subprocess.Popen[bytes]
    api: APIServerProcess
    log: Path

    @property
    def health_url(self) -> str:
        return f"http://{NODE_UPLINK[1]}:10256"

    def healthz(self) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(self.health_url + "/healthz", timeout=2) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def metrics(self) -> str:
        with urllib.request.urlopen(self.health_url + "/metrics", timeout=2) as resp:
            return str(resp.read().decode())

    def syncs(self) -> int:
        return int(self.healthz()[1]["syncs"])  # type: ignore[call-overload]

    def ruleset(self) -> str:
        if self.mode == "iptables":
            return self.topology.run(self.topology.node, "iptables-save")
        return self.topology.run(self.topology.node, "nft", "list", "ruleset")


def _cleanup(topology: Topology) -> None:
    topology.run(topology.node, str(Path(sys.executable).parent / "kubelite-proxy"), "--cleanup")


def start_proxy(topology: Topology, api: APIServerProcess, mode: str, log: Path) -> Proxy:
    argv = [str(Path(sys.executable).parent / "kubelite-proxy"), f"--master=http://{NODE_UPLINK[0]}:{api.port}",
            f"--hostname-override={NODE_NAME}", f"--proxy-mode={mode}", f"--cluster-cidr={POD_SUBNET}",
            f"--nodeport-addresses={CLIENT_GATEWAY}/32", "--iptables-min-sync-period=0.1",
            "--iptables-sync-period=300", "-v=4"]
    proc = topology.spawn(topology.node, argv, log)
    handle = Proxy(topology, mode, proc, api, log)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"kubelite-proxy exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if handle.syncs() >= 1:
                return handle
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"kubelite-proxy never synced:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def stop_proxy(proxy: Proxy) -> None:
    if proxy.proc.poll() is None:
        proxy.proc.terminate()
        proxy.proc.wait(10)
    if proxy.proc in proxy.topology.procs:
        proxy.topology.procs.remove(proxy.proc)


# One proxy per mode for the module (tests use namespaces of their own and delete their objects);
# tests are grouped by mode, and the proxy's --cleanup runs between the groups.
@pytest.fixture(scope="module", params=["iptables", "nftables"])
def proxy(request: pytest.FixtureRequest, topology: Topology, api: APIServerProcess,
          tmp_path_factory: pytest.TempPathFactory, pristine: tuple[str, str]) -> Iterator[Proxy]:
    # (pristine: the node's tables are recorded before the first proxy touches them.)
    mode = str(request.param)
    handle = start_proxy(topology, api, mode, tmp_path_factory.mktemp(f"proxy-{mode}") / "proxy.log")
    try:
        yield handle
    finally:
        stop_proxy(handle)
        _cleanup(topology)


# -- helpers --------------------------------------------------------------------------


async def make_service(client: Client, ns: str, name: str, *, type_: str = "ClusterIP", affinity: bool = False,
                       external_local: bool = False) -> core.Service:
    svc = core.Service(api_version="v1", kind="Service")
    svc.metadata.name = name
    svc.metadata.namespace = ns
    svc.spec.type = type_
    svc.spec.selector["app"] = name
    svc.spec.ports.add(name="http", port=80, protocol="TCP", target_port=str(BACKEND_PORT))
    if affinity:
        svc.spec.session_affinity = "ClientIP"
    if external_local:
        svc.spec.external_traffic_policy = "Local"
    return await client.create(svc)


async def set_endpoints(client: Client, ns: str, name: str, pods: list[int], *, port_name: str = "http",
                        protocol: str = "TCP") -> core.Endpoints:
    ep = core.Endpoints(api_version="v1", kind="Endpoints")
    ep.metadata.name = name
    ep.metadata.namespace = ns
    if pods:
        subset = ep.subsets.add()
        for i in pods:
            subset.addresses.add(ip=Topology.pod_ip(i), node_name=NODE_NAME)
        subset.ports.add(name=port_name, port=BACKEND_PORT, protocol=protocol)
    return await client.update(ep)  # the API server creates Endpoints on update


def programmed(proxy: Proxy, svc: core.Service, pods: list[int]) -> bool:
    """Whether the node's rules send the Service's cluster IP to exactly these pods."""
    text = proxy.ruleset()
    if proxy.mode == "iptables":
        tag = f'"{svc.metadata.namespace}/{svc.metadata.name}:{svc.spec.ports[0].name}'
        lines = [line for line in text.splitlines() if tag in line]
        dnat = {m.group(1) for line in lines for m in [re.search(r"--to-destination (\S+):", line)] if m}
        cluster_ip = any(svc.spec.cluster_ip in line for line in lines)
        return cluster_ip and dnat == {Topology.pod_ip(i) for i in pods}
    lines = [line for line in text.splitlines() if svc.spec.cluster_ip + " " in line]
    found = {ip for line in lines for ip in re.findall(r": (10\.250\.1\.\d+) \.", line)}
    # sessionAffinity Services go to chains of their own, one per endpoint, that DNAT to it.
    for base in {m for line in lines for m in re.findall(r"goto (aff_\w+)", line)}:
        found |= set(re.findall(rf"chain {base}_\d+ {{\n[^\n]* dnat to (10\.250\.1\.\d+):", text))
    return found == {Topology.pod_ip(i) for i in pods}


async def wait_programmed(proxy: Proxy, svc: core.Service, pods: list[int], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not programmed(proxy, svc, pods):
        if time.monotonic() > deadline:
            raise AssertionError(f"{svc.metadata.name} never programmed to {pods}:\n{proxy.ruleset()}")
        await asyncio.sleep(0.1)


def fetch(topology: Topology, target: str, n: int) -> tuple[Counter[str], Counter[str], list[str]]:
    """n requests from the client namespace: counts per backend, per source IP seen, and the errors."""
    out = topology.run(topology.client, sys.executable, "-m", "tests.support.echo", "--get", target, str(n))
    result = json.loads(out)
    answers = [a.split() for a in result["answers"]]
    return Counter(a[0] for a in answers), Counter(a[1] for a in answers), result["errors"]


def assert_even(backends: Counter[str], n: int, pods: int) -> None:
    assert set(backends) == {f"pod{i}" for i in range(pods)}, backends
    assert max(backends.values()) <= 2 * n / pods, backends


# -- tests ------------------------------------------------------------------------------


async def test_cluster_ip_reaches_every_backend_evenly(proxy: Proxy, client: Client, ns: str) -> None:
    svc = await make_service(client, ns, "web")
    await set_endpoints(client, ns, "web", [0, 1, 2])
    await wait_programmed(proxy, svc, [0, 1, 2])
    backends, _, errors = fetch(proxy.topology, f"{svc.spec.cluster_ip}:80", REQUESTS)
    assert errors == []
    assert_even(backends, REQUESTS, 3)


async def test_node_port_reaches_every_backend_evenly(proxy: Proxy, client: Client, ns: str) -> None:
    svc = await make_service(client, ns, "np", type_="NodePort")
    node_port = svc.spec.ports[0].node_port
    assert 30000 <= node_port <= 32767
    await set_endpoints(client, ns, "np", [0, 1, 2])
    await wait_programmed(proxy, svc, [0, 1, 2])
    backends, sources, errors = fetch(proxy.topology, f"{CLIENT_GATEWAY}:{node_port}", REQUESTS)
    assert errors == []
    assert_even(backends, REQUESTS, 3)
    # externalTrafficPolicy Cluster: NodePort traffic is masqueraded to the node's address.
    assert set(sources) == {POD_GATEWAY}


async def test_external_traffic_policy_local_keeps_client_source_ip(proxy: Proxy, client: Client, ns: str) -> None:
    svc = await make_service(client, ns, "local", type_="NodePort", external_local=True)
    await set_endpoints(client, ns, "local", [0, 1, 2])
    await wait_programmed(proxy, svc, [0, 1, 2])
    backends, sources, errors = fetch(proxy.topology, f"{CLIENT_GATEWAY}:{svc.spec.ports[0].node_port}", 30)
    assert errors == []
    assert set(sources) == {CLIENT_IP}
    assert len(backends) >= 2  # still balanced over the node's own endpoints


async def test_session_affinity_pins_a_client(proxy: Proxy, client: Client, ns: str) -> None:
    svc = await make_service(client, ns, "sticky", affinity=True)
    await set_endpoints(client, ns, "sticky", [0, 1, 2])
    await wait_programmed(proxy, svc, [0, 1, 2])
    backends, _, errors = fetch(proxy.topology, f"{svc.spec.cluster_ip}:80", 30)
    assert errors == []
    assert len(backends) == 1, backends


async def test_removed_endpoint_gets_no_traffic_after_one_sync(proxy: Proxy, client: Client, ns: str) -> None:
    svc = await make_service(client, ns, "shrink")
    await set_endpoints(client, ns, "shrink", [0, 1, 2])
    await wait_programmed(proxy, svc, [0, 1, 2])
    before = proxy.syncs()
    await set_endpoints(client, ns, "shrink", [0, 2])
    await wait_programmed(proxy, svc, [0, 2])
    # The change was in the first sync after it arrived (or the one after a sync already running).
    assert proxy.syncs() - before <= 2
    backends, _, errors = fetch(proxy.topology, f"{svc.spec.cluster_ip}:80", 60)
    assert errors == []
    assert set(backends) == {"pod0", "pod2"}, backends


async def test_udp_flows_to_a_removed_endpoint_are_flushed(proxy: Proxy, client: Client, ns: str) -> None:
    svc = core.Service(api_version="v1", kind="Service")
    svc.metadata.name = "dns"
    svc.metadata.namespace = ns
    svc.spec.ports.add(name="dns", port=53, protocol="UDP", target_port=str(BACKEND_PORT))
    svc = await client.create(svc)
    await set_endpoints(client, ns, "dns", [0, 1, 2], port_name="dns", protocol="UDP")
    await wait_programmed(proxy, svc, [0, 1, 2])
    target = f"{svc.spec.cluster_ip}:53"

    def datagrams() -> set[str]:
        out = proxy.topology.run(proxy.topology.client, sys.executable, "-m", "tests.support.echo", "--udp",
                                 target, "3", "40053")
        result = json.loads(out)
        assert result["errors"] == []
        return {a.split()[0] for a in result["answers"]}

    pinned = datagrams()
    assert len(pinned) == 1  # one source port, one conntrack flow, one backend
    gone = int(next(iter(pinned)).removeprefix("pod"))
    await set_endpoints(client, ns, "dns", [i for i in range(3) if i != gone], port_name="dns", protocol="UDP")
    await wait_programmed(proxy, svc, [i for i in range(3) if i != gone])
    # The flush follows the restore in the same sync: wait until the kernel's table shows it.
    deadline = time.monotonic() + 20
    while Topology.pod_ip(gone) in proxy.topology.run(proxy.topology.node, "conntrack", "-L", "-p", "udp",
                                                      "--orig-dst", svc.spec.cluster_ip, check=False):
        assert time.monotonic() < deadline, "the UDP flow to the removed endpoint was never flushed"
        await asyncio.sleep(0.1)
    # The backend is still alive: only the proxy's conntrack flush moves the flow off it.
    after = datagrams()
    assert len(after) == 1 and after != pinned, (pinned, after)


async def test_service_without_endpoints_is_refused_at_once(proxy: Proxy, client: Client, ns: str) -> None:
    svc = await make_service(client, ns, "empty", type_="NodePort")
    await set_endpoints(client, ns, "empty", [0])
    await wait_programmed(proxy, svc, [0])
    await set_endpoints(client, ns, "empty", [])
    deadline = time.monotonic() + 20
    while svc.spec.cluster_ip in _dnat_view(proxy):
        assert time.monotonic() < deadline, proxy.ruleset()
        await asyncio.sleep(0.1)
    # Refused (ICMP port unreachable), not a timeout: without the reject the packet would go to a
    # namespace that silently drops it (the topology's sink).
    _, _, errors = fetch(proxy.topology, f"{svc.spec.cluster_ip}:80", 3)
    assert errors == ["refused"] * 3
    _, _, errors = fetch(proxy.topology, f"{CLIENT_GATEWAY}:{svc.spec.ports[0].node_port}", 3)
    assert errors == ["refused"] * 3


def _dnat_view(proxy: Proxy) -> str:
    """The part of the rules that forwards traffic (as opposed to rejecting it)."""
    if proxy.mode == "iptables":
        return proxy.topology.run(proxy.topology.node, "iptables-save", "-t", "nat")
    text = proxy.ruleset()
    return "\n".join(line for line in text.splitlines() if " : " in line)


async def test_health_and_network_programming_metrics(proxy: Proxy, client: Client, ns: str) -> None:
    svc = await make_service(client, ns, "metered")
    ep = await set_endpoints(client, ns, "metered", [1])
    assert ep.metadata.name == "metered"
    await wait_programmed(proxy, svc, [1])
    status, body = proxy.healthz()
    assert status == 200 and body["lastUpdated"]
    text = proxy.metrics()
    count = re.search(r"^kubeproxy_network_programming_duration_seconds_count (\S+)$", text, re.M)
    assert count is not None and float(count.group(1)) >= 1
    assert re.search(r"^kubeproxy_sync_proxy_rules_duration_seconds_count [1-9]", text, re.M)


async def test_cleanup_restores_the_tables(proxy: Proxy, client: Client, ns: str, pristine: tuple[str, str]) -> None:
    svc = await make_service(client, ns, "gone", type_="NodePort")
    await set_endpoints(client, ns, "gone", [0, 1])
    await wait_programmed(proxy, svc, [0, 1])
    if proxy.mode == "iptables":
        assert strip_counters(proxy.ruleset()) != pristine[0]
    else:
        assert proxy.ruleset() != pristine[1]
    stop_proxy(proxy)
    _cleanup(proxy.topology)
    assert strip_counters(proxy.topology.run(proxy.topology.node, "iptables-save")) == pristine[0]
    assert proxy.topology.run(proxy.topology.node, "nft", "list", "ruleset") == pristine[1]
    # Later tests share the module's proxy: start it again.
    proxy.proc = start_proxy(proxy.topology, proxy.api, proxy.mode, proxy.log).proc
