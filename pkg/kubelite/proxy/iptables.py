"""iptables mode: a pure rule generator in Kubernetes' chain layout, and the restore text it feeds.

The layout is kube-proxy's, so that an operator reading ``iptables-save`` on
a kubelite node finds what they know:

nat
  PREROUTING, OUTPUT -> KUBE-SERVICES: one jump per cluster IP, external IP
  and load-balancer IP, then (last) the jump to KUBE-NODEPORTS for node
  addresses. KUBE-SVC-<hash> picks an endpoint among all ready ones with
  ``-m statistic --mode random --probability 1/(n-i)`` (the i-th of n rules
  matches 1/(n-i) of what the previous ones left, so every endpoint gets 1/n);
  KUBE-SVL-<hash> does the same among the node's own endpoints (the Local
  traffic policies); KUBE-EXT-<hash> is where NodePort, external and LB
  traffic enters and decides about masquerading; KUBE-SEP-<hash> DNATs to one
  endpoint (and marks hairpin traffic, a pod reaching itself). Traffic that
  needs SNAT is marked 0x4000 by KUBE-MARK-MASQ and masqueraded in
  KUBE-POSTROUTING.
filter
  KUBE-SERVICES (FORWARD, OUTPUT) and KUBE-EXTERNAL-SERVICES (INPUT, FORWARD)
  reject at once what targets a Service without endpoints (ICMP port
  unreachable: the client sees "connection refused", not a timeout), and
  drop external traffic of an ``externalTrafficPolicy: Local`` Service on a
  node without a local endpoint; KUBE-FORWARD accepts marked and
  established forwarded traffic.

Chain names hash the service port name (and the endpoint) as kube-proxy does,
so they are stable across restarts, which is what makes partial restores
possible: after one full restore, a sync writes only the chains whose rules
changed (``iptables-restore --noflush``; declaring a chain in the input
flushes just that chain) and deletes chains that are gone. On the nft-backed
iptables of Debian 12 that turns a full restore of 10,000 Services (10-14 s
here, 33 s in PLATFORM.md's measurement) into a partial one of 0.2-0.3 s.

A full sync keeps ``--noflush`` too (a flushing restore would wipe Docker's
rules in the same tables), which on nft-backed iptables needs the ``-Z``
described at restore_text to stay linear in the size of the table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from kubelite.proxy.model import Endpoint, NodeConfig, ServicePort, Snapshot, port_hash

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_FORWARD = "KUBE-FORWARD"
# Empty; its absence tells a periodic resync that someone flushed the tables (kube-proxy's trick).
KUBE_PROXY_CANARY = "KUBE-PROXY-CANARY"

# The chains of every sync, in the order iptables-save would list them.
NAT_BASE_CHAINS = (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ, KUBE_PROXY_CANARY)
FILTER_BASE_CHAINS = (KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_PROXY_CANARY)

# Per-service chains this proxy owns (and may delete when stale).
OWNED_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-SEP-")


@dataclass(frozen=True)
class Jump:
    """A rule in a built-in chain that leads into ours, spelled exactly as iptables-save prints it.

    Exact spelling matters: a full sync compares these against the saved
    table to decide whether to insert them, so a different spelling would
    insert a duplicate on every full sync.
    """

    table: str
    chain: str
    spec: str  # everything after "-A <chain> "

    @property
    def line(self) -> str:
        return f"-A {self.chain} {self.spec}"


JUMPS: tuple[Jump, ...] = (
    Jump("nat", "PREROUTING", f'-m comment --comment "kubernetes service portals" -j {KUBE_SERVICES}'),
    Jump("nat", "OUTPUT", f'-m comment --comment "kubernetes service portals" -j {KUBE_SERVICES}'),
    Jump("nat", "POSTROUTING", f'-m comment --comment "kubernetes postrouting rules" -j {KUBE_POSTROUTING}'),
    Jump("filter", "INPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible '
                            f'service portals" -j {KUBE_EXTERNAL_SERVICES}'),
    Jump("filter", "FORWARD", f'-m comment --comment "kubernetes forwarding rules" -j {KUBE_FORWARD}'),
    Jump("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" '
                              f'-j {KUBE_SERVICES}'),
    Jump("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible '
                              f'service portals" -j {KUBE_EXTERNAL_SERVICES}'),
    Jump("filter", "OUTPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" '
                             f'-j {KUBE_SERVICES}'),
)

TABLES = ("filter", "nat")


@dataclass
class Ruleset:
    """Desired chains per table, each with its full ``-A`` lines, in a stable order."""

    tables: dict[str, dict[str, list[str]]] = field(default_factory=lambda: {t: {} for t in TABLES})

    def chains(self, table: str) -> dict[str, list[str]]:
        return self.tables[table]

    def line_count(self) -> int:
        return sum(len(rules) for chains in self.tables.values() for rules in chains.values())


def svc_chain(sp: ServicePort) -> str:
    return "KUBE-SVC-" + port_hash(sp.key)


def svl_chain(sp: ServicePort) -> str:
    return "KUBE-SVL-" + port_hash(sp.key)


def ext_chain(sp: ServicePort) -> str:
    return "KUBE-EXT-" + port_hash(sp.key)


def sep_chain(sp: ServicePort, ep: Endpoint) -> str:
    return "KUBE-SEP-" + port_hash(sp.key, ep.address)


def probability(n: int) -> str:
    """kube-proxy's spelling of 1/n: ten decimals, so rules diff stably."""
    return f"{1.0 / n:0.10f}"


def _match(sp: ServicePort, dest: str, port: int) -> str:
    return f"-d {dest}/32 -p {sp.protocol} -m {sp.protocol} --dport {port}"


def generate(snapshot: Snapshot, node: NodeConfig,
             cache: dict[str, tuple[ServicePort, PortRules]] | None = None) -> Ruleset:
    """The complete desired state of the nat and filter tables for a snapshot; a pure function.

    ``cache`` (owned by the caller, kept between syncs) memoises each service
    port's rules: ServicePorts are immutable values, so an unchanged one has
    unchanged rules, and a sync of 10,000 Services regenerates only the few
    that changed. The cached lists are shared with the returned Ruleset:
    never modify either.
    """
    rs = Ruleset()
    nat = rs.tables["nat"]
    filt = rs.tables["filter"]
    for chain in NAT_BASE_CHAINS:
        nat[chain] = []
    for chain in FILTER_BASE_CHAINS:
        filt[chain] = []
    mark = node.masquerade_mark
    nat[KUBE_MARK_MASQ].append(f"-A {KUBE_MARK_MASQ} -j MARK --set-xmark {mark}/{mark}")
    nat[KUBE_POSTROUTING] += [
        f"-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN",
        # Clear the mark so that a re-routed packet is not masqueraded twice.
        f"-A {KUBE_POSTROUTING} -j MARK --set-xmark {mark}/0x0",
        f'-A {KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" '
        "-j MASQUERADE --random-fully",
    ]
    filt[KUBE_FORWARD] += [
        f"-A {KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP",
        f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules" -m mark --mark {mark}/{mark} '
        "-j ACCEPT",
        f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" '
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    services = nat[KUBE_SERVICES]
    nodeports = nat[KUBE_NODEPORTS]
    f_services = filt[KUBE_SERVICES]
    f_external = filt[KUBE_EXTERNAL_SERVICES]
    nodeport_dests = _nodeport_dests(node)
    fresh: dict[str, tuple[ServicePort, PortRules]] = {}
    for sp in snapshot.ports:
        # By key, compared on a hit: hashing a ServicePort hashes every endpoint, on every sync.
        hit = cache.get(sp.key) if cache is not None else None
        if hit is not None and (hit[0] is sp or hit[0] == sp):
            pr = hit[1]
        else:
            pr = port_rules(sp, node, nodeport_dests)
        fresh[sp.key] = (sp, pr)
        services += pr.services
        nodeports += pr.nodeports
        f_services += pr.filter_services
        f_external += pr.filter_external
        nat.update(pr.chains)
    if cache is not None:
        # Keep only what this snapshot used: the cache never outgrows the cluster.
        cache.clear()
        cache.update(fresh)

    # kube-proxy's rule: the NodePort jump must be the last one in KUBE-SERVICES,
    # after every specific destination above it.
    for dest in nodeport_dests:
        services.append(f'-A {KUBE_SERVICES} -m comment --comment "kubernetes service nodeports; NOTE: this must '
                        f'be the last rule in this chain" {dest} -j {KUBE_NODEPORTS}')
    return rs


@dataclass
class PortRules:
    """One service port's share of the rules: lines in the shared chains, and its own chains."""

    services: list[str] = field(default_factory=list)
    nodeports: list[str] = field(default_factory=list)
    filter_services: list[str] = field(default_factory=list)
    filter_external: list[str] = field(default_factory=list)
    chains: dict[str, list[str]] = field(default_factory=dict)


def port_rules(sp: ServicePort, node: NodeConfig, nodeport_dests: list[str]) -> PortRules:
    pr = PortRules()
    name = sp.name
    local = sp.local_endpoints(node.node_name)
    has_endpoints = bool(sp.endpoints)
    # Which chain ClusterIP traffic takes, and whether it has anywhere to go.
    internal_chain = svl_chain(sp) if sp.internal_policy_local else svc_chain(sp)
    has_internal = bool(local) if sp.internal_policy_local else has_endpoints
    has_external_eps = bool(local) if sp.external_policy_local else has_endpoints
    proto = f"-p {sp.protocol} -m {sp.protocol}"

    if has_internal:
        pr.services.append(f'-A {KUBE_SERVICES} -m comment --comment "{name} cluster IP" '
                           f"{_match(sp, sp.cluster_ip, sp.port)} -j {internal_chain}")
    elif has_endpoints:
        pr.filter_services.append(f'-A {KUBE_SERVICES} -m comment --comment "{name} has no local endpoints" '
                                  f"{_match(sp, sp.cluster_ip, sp.port)} -j DROP")
    else:
        pr.filter_services.append(f'-A {KUBE_SERVICES} -m comment --comment "{name} has no endpoints" '
                                  f"{_match(sp, sp.cluster_ip, sp.port)} -j REJECT --reject-with "
                                  "icmp-port-unreachable")

    if sp.has_external:
        ext = ext_chain(sp)
        for kind, ips in (("external IP", sp.external_ips), ("loadbalancer IP", sp.load_balancer_ips)):
            for ip in ips:
                if has_external_eps:
                    pr.services.append(f'-A {KUBE_SERVICES} -m comment --comment "{name} {kind}" '
                                       f"{_match(sp, ip, sp.port)} -j {ext}")
                else:
                    pr.filter_external.append(_no_endpoints_rule(sp, _match(sp, ip, sp.port), has_endpoints))
        if sp.node_port:
            if has_external_eps:
                pr.nodeports.append(f'-A {KUBE_NODEPORTS} -m comment --comment "{name}" '
                                    f"{proto} --dport {sp.node_port} -j {ext}")
            else:
                for dest in nodeport_dests:
                    pr.filter_external.append(_no_endpoints_rule(sp, f"{dest} {proto} --dport {sp.node_port}",
                                                                 has_endpoints))
        if has_external_eps:
            pr.chains[ext] = _ext_rules(sp, node, ext)

    if has_endpoints:
        seps = {ep: sep_chain(sp, ep) for ep in sp.endpoints}
        pr.chains[svc_chain(sp)] = _balance_rules(sp, svc_chain(sp), sp.endpoints, seps, node, masquerade=True)
        if sp.internal_policy_local or sp.external_policy_local:
            pr.chains[svl_chain(sp)] = _balance_rules(sp, svl_chain(sp), local, seps, node, masquerade=False)
        for ep, sep in seps.items():
            pr.chains[sep] = _sep_rules(sp, ep, sep)
    return pr


def _nodeport_dests(node: NodeConfig) -> list[str]:
    cidrs = [c for c in node.nodeport_addresses if c not in ("0.0.0.0/0", "")]
    if not cidrs:
        return ["-m addrtype --dst-type LOCAL"]
    return [f"-d {c}" if "/" in c else f"-d {c}/32" for c in cidrs]


def _no_endpoints_rule(sp: ServicePort, match: str, has_endpoints: bool) -> str:
    if has_endpoints:  # only the policy keeps this node's external traffic from the endpoints
        return f'-A {KUBE_EXTERNAL_SERVICES} -m comment --comment "{sp.name} has no local endpoints" {match} -j DROP'
    return (f'-A {KUBE_EXTERNAL_SERVICES} -m comment --comment "{sp.name} has no endpoints" {match} '
            "-j REJECT --reject-with icmp-port-unreachable")


def _ext_rules(sp: ServicePort, node: NodeConfig, ext: str) -> list[str]:
    name = sp.name
    if not sp.external_policy_local:
        # External traffic may come back through another node: SNAT it so replies return here.
        return [f'-A {ext} -m comment --comment "masquerade traffic for {name} external destinations" '
                f"-j {KUBE_MARK_MASQ}",
                f"-A {ext} -j {svc_chain(sp)}"]
    rules = []
    if node.cluster_cidr:
        # Pods reaching a NodePort or external IP are not "external": they use every endpoint.
        rules.append(f'-A {ext} -s {node.cluster_cidr} -m comment --comment "pod traffic for {name} external '
                     f'destinations" -j {svc_chain(sp)}')
    rules += [
        f'-A {ext} -m comment --comment "masquerade LOCAL traffic for {name} external destinations" '
        f"-m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}",
        f'-A {ext} -m comment --comment "route LOCAL traffic for {name} external destinations" '
        f"-m addrtype --src-type LOCAL -j {svc_chain(sp)}",
        # Everything else stays on this node's endpoints, unmasqueraded: the source IP survives.
        f"-A {ext} -j {svl_chain(sp)}",
    ]
    return rules


def _balance_rules(sp: ServicePort, chain: str, endpoints: Iterable[Endpoint], seps: dict[Endpoint, str],
                   node: NodeConfig, *, masquerade: bool) -> list[str]:
    eps = list(endpoints)
    rules: list[str] = []
    if masquerade and node.cluster_cidr:
        # Off-cluster clients reaching a cluster IP (from the node, say) must be SNATed for the reply to return.
        rules.append(f'-A {chain} -m comment --comment "{sp.name} cluster IP" '
                     f"{_match(sp, sp.cluster_ip, sp.port)} ! -s {node.cluster_cidr} -j {KUBE_MARK_MASQ}")
    chains = [seps[ep] for ep in eps]
    if sp.affinity_timeout:
        for ep, sep in zip(eps, chains, strict=True):
            rules.append(f'-A {chain} -m comment --comment "{sp.name} -> {ep.address}" -m recent --rcheck '
                         f"--seconds {sp.affinity_timeout} --reap --name {sep} --mask 255.255.255.255 "
                         f"--rsource -j {sep}")
    n = len(chains)
    for i, (ep, sep) in enumerate(zip(eps, chains, strict=True)):
        stat = f" -m statistic --mode random --probability {probability(n - i)}" if i < n - 1 else ""
        rules.append(f'-A {chain} -m comment --comment "{sp.name} -> {ep.address}"{stat} -j {sep}')
    return rules


def _sep_rules(sp: ServicePort, ep: Endpoint, sep: str) -> list[str]:
    recent = f" -m recent --set --name {sep} --mask 255.255.255.255 --rsource" if sp.affinity_timeout else ""
    return [
        # Hairpin: a pod reaching itself through its Service must come back through the node.
        f'-A {sep} -s {ep.ip}/32 -m comment --comment "{sp.name}" -j {KUBE_MARK_MASQ}',
        f'-A {sep} -p {sp.protocol} -m comment --comment "{sp.name}"{recent} -m {sp.protocol} '
        f"-j DNAT --to-destination {ep.address}",
    ]


# -- restore text ------------------------------------------------------------------


_CHAIN_DECL = re.compile(r"^:(\S+) ")


@dataclass
class SavedTables:
    """What ``iptables-save`` shows of the tables we use: chain names and every rule line."""

    chains: dict[str, set[str]] = field(default_factory=dict)
    lines: dict[str, set[str]] = field(default_factory=dict)


def parse_save(text: str) -> SavedTables:
    saved = SavedTables()
    table = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:]
            saved.chains.setdefault(table, set())
            saved.lines.setdefault(table, set())
        elif line.startswith(":") and table:
            m = _CHAIN_DECL.match(line)
            if m:
                saved.chains[table].add(m.group(1))
        elif line.startswith("-A ") and table:
            saved.lines[table].add(line)
    return saved


# A transaction naming more chains than this starts with -Z (see restore_text).
ZERO_ABOVE_CHAINS = 1000


def restore_text(desired: Ruleset, previous: Ruleset | None, saved: SavedTables | None = None) -> str:
    """iptables-restore --noflush input that turns ``previous`` into ``desired``.

    ``previous`` None means a full sync: every chain is declared (and so
    flushed) and rewritten. With ``saved`` (iptables-save of the node, read
    on a full sync), stale chains of ours left by an earlier run are deleted
    and missing jumps from the built-in chains are inserted. Otherwise only
    chains whose rules changed are written, and chains no longer desired are
    flushed and deleted, in the same atomic transaction.

    A transaction naming more than ZERO_ABOVE_CHAINS chains starts with
    ``-Z`` (zero the table's counters). Debian 12's nft-backed iptables
    (1.8.9) keeps the names of the chains a transaction mentions in a
    sorted linked list, walked for every line, unless some command names no
    chain, in which case it fetches all the table's chains instead. So the
    cost of a --noflush restore grows with lines x chains (2,000 Services:
    56 s; 10,000: over 11 minutes), and one chainless command makes it
    linear, as fast as a flushing restore of the same rules (10,000
    Services: 9.6 s against 9.4 s). ``-Z`` is the only chainless command
    that changes no rule: its price is that a large sync resets the
    packet counters of the nat and filter tables (Docker's included).
    Splitting the restore into many transactions was measured too and is
    worse: each commit makes the kernel validate every chain reachable from
    the built-in ones (10,000 Services in 2,000-chain transactions: 65 s).
    """
    out: list[str] = []
    for table in TABLES:
        want = desired.tables[table]
        had = previous.tables[table] if previous is not None else None
        write = [c for c, rules in want.items() if had is None or had.get(c) != rules]
        delete = [c for c in had if c not in want] if had is not None else []
        if saved is not None:
            present = saved.chains.get(table, set())
            delete += sorted(c for c in present if c.startswith(OWNED_PREFIXES) and c not in want
                             and c not in delete)
        jumps = []
        if saved is not None:
            lines = saved.lines.get(table, set())
            # Inserted in reverse so that they end up in JUMPS order at the top of each chain.
            jumps = [f"-I {j.chain} 1 {j.spec}" for j in reversed(JUMPS) if j.table == table and j.line not in lines]
        if not write and not delete and not jumps:
            continue
        out.append(f"*{table}")
        if len(write) + len(delete) > ZERO_ABOVE_CHAINS:
            out.append("-Z")
        out.extend(f":{c} - [0:0]" for c in write)
        out.extend(f":{c} - [0:0]" for c in delete)
        out.extend(jumps)
        for c in write:
            out.extend(want[c])
        out.extend(f"-X {c}" for c in delete)
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def cleanup_text(saved: SavedTables) -> str:
    """Restore input that removes every jump and chain this proxy installs, whatever run installed them."""
    ours = set(NAT_BASE_CHAINS) | set(FILTER_BASE_CHAINS)
    out: list[str] = []
    for table in TABLES:
        present = saved.chains.get(table, set())
        chains = sorted(c for c in present if c in ours or c.startswith(OWNED_PREFIXES))
        jumps = [j for j in JUMPS if j.table == table and j.line in saved.lines.get(table, set())]
        if not chains and not jumps:
            continue
        out.append(f"*{table}")
        out.extend(f":{c} - [0:0]" for c in chains)
        out.extend(f"-D {j.chain} {j.spec}" for j in jumps)
        out.extend(f"-X {c}" for c in chains)
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""
