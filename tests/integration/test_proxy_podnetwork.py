"""The host-gw pod network between two "nodes" (network namespaces), each with its own pod bridge.

    pod-a 10.250.1.10 -- br0 [node-a] n0 10.252.0.1 ==== 10.252.0.2 n0 [node-b] br0 -- pod-b 10.250.2.10
                                      o0 10.253.0.1 ---- outside 10.253.0.2 (no route to the pods)

The nodes start the way Docker leaves a host: FORWARD policy DROP with a
DOCKER-USER chain, and a MASQUERADE of the pod bridge's subnet for anything
leaving it. HostGw (the real one, running ip and iptables-restore inside
each node) must make pod-a reach pod-b with its own address, and reach the
outside masqueraded; nodes leaving take their routes with them; cleanup
restores each node's iptables-save.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kubelite.proxy.podnetwork import ROUTE_PROTO, ExecRouteRunner, HostGw, NodeRoute
from kubelite.proxy.runner import ExecIptablesRunner
from tests.support.netns import REPO, ensure_tools, sh, strip_counters

CLUSTER_CIDR = "10.250.0.0/16"
NODES = {"node-a": ("10.252.0.1", "10.250.1"), "node-b": ("10.252.0.2", "10.250.2")}

pytestmark = pytest.mark.integration


@dataclass
class TwoNodes:
    prefix: str = field(default_factory=lambda: "klpn-" + secrets.token_hex(3))
    procs: list[object] = field(default_factory=list)

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def run(self, name: str, *argv: str) -> str:
        return sh("ip", "netns", "exec", self.ns(name), *argv)

    def names(self) -> list[str]:
        return ["node-a", "node-b", "pod-a", "pod-b", "outside"]

    def veth(self, a: str, a_if: str, a_addr: str, b: str, b_if: str, b_addr: str) -> None:
        self.run(a, "ip", "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", self.ns(b))
        for side, ifname, addr in ((a, a_if, a_addr), (b, b_if, b_addr)):
            if addr:
                self.run(side, "ip", "addr", "add", addr, "dev", ifname)
            self.run(side, "ip", "link", "set", ifname, "up")

    def create(self) -> None:
        ensure_tools()
        for name in self.names():
            sh("ip", "netns", "add", self.ns(name))
            self.run(name, "ip", "link", "set", "lo", "up")
        self.veth("node-a", "n0", "10.252.0.1/24", "node-b", "n0", "10.252.0.2/24")
        self.veth("node-a", "o0", "10.253.0.1/24", "outside", "eth0", "10.253.0.2/24")
        for node, pod in (("node-a", "pod-a"), ("node-b", "pod-b")):
            subnet = NODES[node][1]
            self.run(node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            self.run(node, "ip", "link", "add", "br0", "type", "bridge")
            self.run(node, "ip", "addr", "add", f"{subnet}.1/24", "dev", "br0")
            self.run(node, "ip", "link", "set", "br0", "up")
            self.veth(node, "vp0", "", pod, "eth0", f"{subnet}.10/24")
            self.run(node, "ip", "link", "set", "vp0", "master", "br0")
            self.run(pod, "ip", "route", "add", "default", "via", f"{subnet}.1")
            # What Docker leaves on a host.
            self.run(node, "iptables", "-N", "DOCKER-USER")
            self.run(node, "iptables", "-A", "DOCKER-USER", "-j", "RETURN")
            self.run(node, "iptables", "-A", "FORWARD", "-j", "DOCKER-USER")
            self.run(node, "iptables", "-P", "FORWARD", "DROP")
            self.run(node, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", f"{subnet}.0/24", "!", "-o", "br0",
                     "-j", "MASQUERADE")

    def serve(self, name: str, log_dir: Path) -> None:
        import subprocess

        with open(log_dir / f"{name}.log", "ab") as out:
            self.procs.append(subprocess.Popen(
                ["ip", "netns", "exec", self.ns(name), sys.executable, "-m", "tests.support.echo", name, "8080"],
                stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True))

    def get(self, src: str, target: str, timeout: float = 5.0) -> dict[str, list[str]]:
        out = self.run(src, sys.executable, "-m", "tests.support.echo", "--get", target, "1", str(timeout))
        return dict(json.loads(out))

    def destroy(self) -> None:
        for proc in self.procs:
            proc.terminate()  # type: ignore[attr-defined]
            proc.wait(5)  # type: ignore[attr-defined]
        existing = set(sh("ip", "netns", "list", check=False).split())
        for name in self.names():
            if self.ns(name) in existing:
                sh("ip", "netns", "del", self.ns(name), check=False)


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[TwoNodes]:
    topo = TwoNodes()
    try:
        topo.create()
        for name in ("pod-b", "outside"):
            topo.serve(name, tmp_path)
        topo.run("node-b", sys.executable, "-m", "tests.support.echo", "--wait", "10.250.2.10:8080")
        topo.run("node-a", sys.executable, "-m", "tests.support.echo", "--wait", "10.253.0.2:8080")
        yield topo
    finally:
        topo.destroy()


def host_gw(topo: TwoNodes, node: str) -> HostGw:
    prefix = ("ip", "netns", "exec", topo.ns(node))
    return HostGw(node, CLUSTER_CIDR, ExecRouteRunner(prefix), ExecIptablesRunner(prefix))


ROUTES = [NodeRoute(name, f"{subnet}.0/24", ip) for name, (ip, subnet) in NODES.items()]


async def test_host_gw_routes_pods_across_nodes_and_masquerades_leaving_traffic(nodes: TwoNodes) -> None:
    before = {n: strip_counters(nodes.run(n, "iptables-save")) for n in NODES}
    # Without the agent, pod-a's packets to pod-b go nowhere.
    assert nodes.get("pod-a", "10.250.2.10:8080", timeout=1)["answers"] == []

    a, b = host_gw(nodes, "node-a"), host_gw(nodes, "node-b")
    for agent in (a, b):
        await agent.sync(ROUTES)
        await agent.sync(ROUTES)  # idempotent: no duplicate jumps or routes
    assert nodes.run("node-a", "ip", "-4", "route", "show", "proto", ROUTE_PROTO).split()[:3] == \
        ["10.250.2.0/24", "via", "10.252.0.2"]
    assert nodes.run("node-a", "iptables-save", "-t", "nat").count("-j KUBELITE-POSTROUTING") == 1

    # Between pods, no masquerade: pod-b sees pod-a's own address, through Docker's FORWARD DROP.
    assert nodes.get("pod-a", "10.250.2.10:8080")["answers"] == ["pod-b 10.250.1.10"]
    # Leaving the cluster CIDR, pod traffic is masqueraded to the node (the outside has no route to pods).
    assert nodes.get("pod-a", "10.253.0.2:8080")["answers"] == ["outside 10.253.0.1"]

    # node-b leaves: its route goes.
    await a.sync(ROUTES[:1])
    assert nodes.run("node-a", "ip", "-4", "route", "show", "proto", ROUTE_PROTO) == ""

    for name, agent in (("node-a", a), ("node-b", b)):
        await agent.cleanup()
        assert strip_counters(nodes.run(name, "iptables-save")) == before[name]
    assert nodes.run("node-b", "ip", "-4", "route", "show", "proto", ROUTE_PROTO) == ""
