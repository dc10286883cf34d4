"""iptables mode at a size where the restore's shape matters: over ZERO_ABOVE_CHAINS chains in one sync.

Such a sync starts each table's transaction with ``-Z`` (see
kubelite.proxy.iptables.restore_text). These tests apply one with the real
iptables-restore in a network namespace of their own and read the kernel
back with iptables-save: every desired rule is there, as a plain flushing
restore of the same rules into an empty namespace leaves it, somebody
else's chain and rules survive, a later partial sync and a restarted
proxy's full sync leave the same tables, and cleanup leaves what was there
before.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from kubelite.proxy import iptables
from kubelite.proxy.model import Endpoint, NodeConfig, ServicePort, Snapshot
from kubelite.proxy.proxier import IptablesProxier
from kubelite.proxy.runner import ExecIptablesRunner, FakeConntrack
from tests.support.netns import ensure_tools, sh, strip_counters

pytestmark = pytest.mark.integration

NODE = NodeConfig("node1", cluster_cidr="10.244.0.0/16")
SERVICES = 100
ENDPOINTS = 10  # 100 x (1 SVC + 10 SEP) chains: past ZERO_ABOVE_CHAINS
OTHERS = ("*nat\n:DOCKER - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n"
          "-A DOCKER -d 10.250.9.1/32 -p tcp -m tcp --dport 81 -j DNAT --to-destination 10.250.9.2:81\n"
          "COMMIT\n*filter\n-A FORWARD -s 10.250.9.0/24 -j RETURN\nCOMMIT\n")


def snapshot(services: int, drop_last_endpoint_of: int = -1) -> Snapshot:
    ports = []
    for s in range(services):
        count = ENDPOINTS - 1 if s == drop_last_endpoint_of else ENDPOINTS
        eps = tuple(Endpoint(f"10.244.{s}.{e + 1}", 8080, f"node{e % 3}") for e in range(count))
        ports.append(ServicePort("large", f"svc{s}", "http", "tcp", f"10.96.1.{s}", 80,
                                 node_port=30000 + s, endpoints=eps))
    return Snapshot(tuple(ports))


def make_netns(others: str) -> Iterator[str]:
    ensure_tools()
    name = "kllarge-" + secrets.token_hex(3)
    sh("ip", "netns", "add", name)
    try:
        if others:
            sh("ip", "netns", "exec", name, "iptables-restore", "--noflush", input=others)
        yield name
    finally:
        sh("ip", "netns", "del", name, check=False)


@pytest.fixture
def netns() -> Iterator[str]:
    yield from make_netns(OTHERS)


@pytest.fixture
def reference() -> Iterator[str]:
    yield from make_netns("")


def save(ns: str) -> str:
    return strip_counters(sh("ip", "netns", "exec", ns, "iptables-save"))


def rules_by_chain(save_text: str, table: str) -> dict[str, list[str]]:
    chains: dict[str, list[str]] = {}
    current = ""
    for line in save_text.splitlines():
        if line.startswith("*"):
            current = line[1:]
        elif current == table and line.startswith("-A "):
            chains.setdefault(line.split()[1], []).append(line)
    return chains


def ours(save_text: str) -> dict[str, list[str]]:
    return {c: r for c, r in rules_by_chain(save_text, "nat").items() if c.startswith("KUBE-")}


async def test_a_large_full_sync_lands_exactly_and_spares_other_rules(netns: str, reference: str) -> None:
    before = save(netns)
    desired = iptables.generate(snapshot(SERVICES), NODE)
    assert len(desired.chains("nat")) > iptables.ZERO_ABOVE_CHAINS
    text = iptables.restore_text(desired, None, iptables.SavedTables())
    assert "*nat\n-Z\n" in text
    sh("ip", "netns", "exec", reference, "iptables-restore", input=text.replace("-Z\n", ""))
    expected = ours(save(reference))
    assert sum(map(len, expected.values())) == sum(map(len, desired.chains("nat").values()))

    runner = ExecIptablesRunner(("ip", "netns", "exec", netns))
    proxier = IptablesProxier(NODE, runner, FakeConntrack())
    await proxier.sync(snapshot(SERVICES), full=True)
    after = save(netns)
    assert ours(after) == expected
    assert "-A DOCKER -d 10.250.9.1/32 -p tcp -m tcp --dport 81 -j DNAT --to-destination 10.250.9.2:81" in after
    assert "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER" in after
    assert "-A FORWARD -s 10.250.9.0/24 -j RETURN" in after

    # A partial sync (one endpoint gone), then a restarted proxy's full sync: the same tables as
    # a fresh full sync of that state would leave.
    await proxier.sync(snapshot(SERVICES, drop_last_endpoint_of=7), full=False)
    partial = save(netns)
    seventh = snapshot(SERVICES).ports[7]
    gone = iptables.sep_chain(seventh, seventh.endpoints[-1])
    assert gone not in partial
    restarted = IptablesProxier(NODE, runner, FakeConntrack())
    await restarted.sync(snapshot(SERVICES, drop_last_endpoint_of=7), full=True)
    assert save(netns) == partial

    await restarted.cleanup()
    assert save(netns) == before
