"""The pod network agent: every node's pods reachable from every other node, by pod IP.

Why here, in the proxy, and not in the kubelet: the proxy is already the one
per-node agent that watches the API and owns the node's netfilter (it runs
iptables-restore/nft on every sync, and its --cleanup knows how to undo what
it installed); the pod network is the same kind of work (routes and a few
rules derived from API objects, reconciled level-triggered). The kubelet
only has to put its pods on a bridge with addresses from its own
``spec.podCIDR``; how other nodes reach that bridge is not its concern. That
is also how flannel and kube-router divide the job.

The mechanism sits behind ``PodNetwork``. ``HostGw`` is the first
implementation: a route to each other node's podCIDR via that node's
InternalIP. It needs every node on one L2 network (the node containers of a
local cluster on one Docker network, or VMs on one subnet); VXLAN, for nodes
on different L2 networks, would be another implementation of the same
Protocol (a vxlan device and an FDB entry per node instead of routes).

Besides routes, HostGw keeps pod traffic flowing through the node's netfilter:
* filter KUBELITE-FORWARD accepts forwarded traffic from or to the cluster
  CIDR (jumped to from FORWARD, and from DOCKER-USER where Docker is there,
  since Docker's FORWARD policy drops routed traffic that is not its own);
* nat KUBELITE-POSTROUTING, first in POSTROUTING, stops SNAT between pods
  (ACCEPT ends the nat table, so Docker's MASQUERADE for its bridge never
  sees pod-to-pod traffic, and pods see each other's real addresses) and
  masquerades pod traffic leaving the cluster CIDR. Packets marked for the
  proxy's masquerade (0x4000) are left to KUBE-POSTROUTING.
Routes this agent added carry ``proto 211`` so that it removes only its own.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.proxy.iptables import parse_save
from kubelite.proxy.runner import IptablesRunner, run_command

log = logging.getLogger(__name__)

ROUTE_PROTO = "211"
FORWARD_CHAIN = "KUBELITE-FORWARD"
POSTROUTING_CHAIN = "KUBELITE-POSTROUTING"


@dataclass(frozen=True, order=True)
class NodeRoute:
    """What another node contributes to the pod network: its pod CIDR and where to send it."""

    name: str
    pod_cidr: str
    address: str


def node_routes(nodes: Iterable[core.Node]) -> list[NodeRoute]:
    """Nodes with a podCIDR and an InternalIP (the first of each), in name order."""
    routes = []
    for node in nodes:
        cidr = node.spec.pod_cidr or (node.spec.pod_cidrs[0] if node.spec.pod_cidrs else "")
        address = next((a.address for a in node.status.addresses if a.type == "InternalIP"), "")
        try:
            ipaddress.IPv4Network(cidr)
            ipaddress.IPv4Address(address)
        except ValueError:
            continue  # not ready for routing yet (no CIDR allocated, no address reported), or IPv6
        routes.append(NodeRoute(node.metadata.name, cidr, address))
    return sorted(routes)


class PodNetwork(Protocol):
    async def sync(self, nodes: Sequence[NodeRoute]) -> None:
        """Converges routes and rules on the given set of nodes (this node included or not)."""

    async def cleanup(self) -> None: ...


class RouteRunner(Protocol):
    async def list(self) -> list[tuple[str, str]]:
        """(destination CIDR, gateway) of the routes this agent added."""

    async def apply(self, batch: Sequence[str]) -> None:
        """``ip -batch`` lines (``route replace ...``, ``route del ...``)."""


@dataclass
class ExecRouteRunner:
    prefix: tuple[str, ...] = ()

    async def list(self) -> list[tuple[str, str]]:
        out = await run_command([*self.prefix, "ip", "-4", "route", "show", "proto", ROUTE_PROTO])
        routes = []
        for line in out.splitlines():
            words = line.split()
            if "via" in words:
                routes.append((words[0], words[words.index("via") + 1]))
        return routes

    async def apply(self, batch: Sequence[str]) -> None:
        await run_command([*self.prefix, "ip", "-batch", "-"], "\n".join(batch) + "\n")


class HostGw:
    def __init__(self, node_name: str, cluster_cidr: str, routes: RouteRunner, iptables: IptablesRunner,
                 masquerade_mark: str = "0x4000") -> None:
        self._node = node_name
        self._cidr = cluster_cidr
        self._routes = routes
        self._iptables = iptables
        self._mark = masquerade_mark

    def _rules(self) -> dict[str, list[str]]:
        return {
            "filter": [f"-A {FORWARD_CHAIN} -s {self._cidr} -j ACCEPT",
                       f"-A {FORWARD_CHAIN} -d {self._cidr} -j ACCEPT"],
            "nat": [
                f"-A {POSTROUTING_CHAIN} -m mark --mark {self._mark}/{self._mark} -j RETURN",
                f"-A {POSTROUTING_CHAIN} -s {self._cidr} -d {self._cidr} -j ACCEPT",
                f"-A {POSTROUTING_CHAIN} -s {self._cidr} ! -d {self._cidr} -j MASQUERADE",
            ],
        }

    async def sync(self, nodes: Sequence[NodeRoute]) -> None:
        want = {n.pod_cidr: n.address for n in nodes if n.name != self._node}
        have = dict(await self._routes.list())
        batch = [f"route del {cidr} proto {ROUTE_PROTO}" for cidr in sorted(have) if cidr not in want]
        batch += [f"route replace {cidr} via {via} proto {ROUTE_PROTO}" for cidr, via in sorted(want.items())
                  if have.get(cidr) != via]
        if batch:
            await self._routes.apply(batch)
            log.info("pod network: %d route changes (%d other nodes)", len(batch), len(want))
        await self._sync_rules()

    async def _sync_rules(self) -> None:
        saved = parse_save(await self._iptables.save(("filter", "nat")))
        rules = self._rules()
        filter_chains = saved.chains.get("filter", set())
        jumps = {
            "filter": [("FORWARD", f"-j {FORWARD_CHAIN}")]
                      + ([("DOCKER-USER", f"-j {FORWARD_CHAIN}")] if "DOCKER-USER" in filter_chains else []),
            "nat": [("POSTROUTING", f"-j {POSTROUTING_CHAIN}")],
        }
        out: list[str] = []
        for table, chain in (("filter", FORWARD_CHAIN), ("nat", POSTROUTING_CHAIN)):
            out += [f"*{table}", f":{chain} - [0:0]"]
            out += [f"-I {parent} 1 {spec}" for parent, spec in jumps[table]
                    if f"-A {parent} {spec}" not in saved.lines.get(table, set())]
            out += rules[table]
            out.append("COMMIT")
        await self._iptables.restore("\n".join(out) + "\n")

    async def cleanup(self) -> None:
        have = await self._routes.list()
        if have:
            await self._routes.apply([f"route del {cidr} proto {ROUTE_PROTO}" for cidr, _ in have])
        saved = parse_save(await self._iptables.save(("filter", "nat")))
        out: list[str] = []
        for table, chain, parents in (("filter", FORWARD_CHAIN, ("FORWARD", "DOCKER-USER")),
                                      ("nat", POSTROUTING_CHAIN, ("POSTROUTING",))):
            if chain not in saved.chains.get(table, set()):
                continue
            out += [f"*{table}", f":{chain} - [0:0]"]
            out += [f"-D {p} -j {chain}" for p in parents if f"-A {p} -j {chain}" in saved.lines.get(table, set())]
            out += [f"-X {chain}", "COMMIT"]
        if out:
            await self._iptables.restore("\n".join(out) + "\n")
