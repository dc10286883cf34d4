"""nftables mode: one table of our own, Services as map elements, changed in place.

nft's userspace cost grows faster than linearly with the number of chains
(PLATFORM.md: one chain per Service took 26 s to 332 s for 10,000 Services),
so unlike the iptables layout nothing here is per Service. Services are
elements of a few maps and sets, and the chains are a fixed handful:

* ``service_buckets``: (destination IP . protocol . port) -> ``goto dnat_nN``,
  where N is how many endpoints that destination balances over. Chain
  ``dnat_nN`` is one rule, ``dnat to <same key> . numgen random mod N map
  @endpoints``; ``endpoints`` maps (key . bucket) -> (pod IP . port), with
  buckets 0..N-1, so each endpoint gets exactly 1/N of new connections.
  Chains exist for N = 1..32 (more when a Service has more endpoints), so a
  Service growing or shrinking only moves elements.
* ``nodeport_buckets`` / ``nodeport_endpoints``: the same keyed by
  (protocol . node port), for traffic to the node's own addresses.
* ``cluster_masq``, ``external_masq``, ``nodeport_masq``: keys whose traffic
  gets the 0x4000 masquerade mark (off-cluster clients of a cluster IP;
  external traffic under ``externalTrafficPolicy: Cluster``); ``hairpin``
  holds (pod IP . pod IP) for a pod reaching itself.
* ``no_endpoints*`` sets reject (ICMP port unreachable) in the filter hooks;
  ``no_local_endpoints*`` drop (the Local policies on a node without local
  endpoints).

Cluster IPs, external IPs and load-balancer IPs all share the key space of
``service_buckets``; the traffic policy decides which endpoints a key gets.

A sync after the first writes only element deletions and additions in one
``nft -f`` transaction; the table is rebuilt (atomically: ``add table``,
``delete table``, define it again, in one transaction) only when its
skeleton changed, or on a full resync. The elements are computed per
service port (``part``) and kept per port, so such a sync costs what the
changed ports cost, not what the table holds: regenerating and diffing
all 10,000 Services' ~130,000 elements to change one endpoint took most of
a second here, the changed port's own elements a few milliseconds.

sessionAffinity ClientIP is the exception: per-endpoint dynamic sets and
chains for those Services only (see ``_affinity_objects``; a single dynamic
map would need ``ct original proto-dst`` in a key, which nft 1.0.6 cannot
type). Not supported in this mode: for ``externalTrafficPolicy: Local``,
pods reaching a NodePort also stay on the node's own endpoints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain
from typing import NamedTuple

from kubelite.machinery.process import collections_paused
from kubelite.proxy.model import Endpoint, NodeConfig, ServicePort, Snapshot, port_hash
from kubelite.proxy.proxier import FullSyncPolicy, SyncResult, flush_conntrack, stale_udp_flows
from kubelite.proxy.runner import Conntrack, NftRunner

TABLE = "kubelite"
FAMILY = "ip"
PRESET_BUCKETS = 32
# nft -f reads a statement at a time; keep each add/delete element statement to a size it parses quickly.
CHUNK = 2000

MAPS = ("service_buckets", "endpoints", "nodeport_buckets", "nodeport_endpoints")
# An empty set whose presence says the table is still there (someone's `nft flush ruleset` removes it),
# probed on every periodic resync: listing it costs nothing, unlike listing any chain (runner.has_set).
CANARY = "canary"
SETS = ("cluster_masq", "external_masq", "nodeport_masq", "hairpin", "no_endpoints", "no_local_endpoints",
        "no_endpoint_nodeports", "no_local_nodeports")


@dataclass
class NftState:
    """The table's skeleton (declarations and chains) and every set's and map's elements.

    Map elements are kept as nft writes them, ``key : value``: a full sync
    of 10,000 Services writes ~130,000 of them, and formatting each once,
    when its part is built, instead of again for every text, was a good
    share of the full sync's Python time.
    """

    skeleton: str
    sets: dict[str, set[str]] = field(default_factory=lambda: {s: set() for s in SETS})
    map_elements: dict[str, set[str]] = field(default_factory=lambda: {m: set() for m in MAPS})

    @property
    def maps(self) -> dict[str, dict[str, str]]:
        """Every map as key -> value (for reading; the elements are the state)."""
        return {name: dict(e.split(" : ", 1) for e in elements) for name, elements in self.map_elements.items()}

    def element_count(self) -> int:
        return sum(len(s) for s in self.sets.values()) + sum(len(m) for m in self.map_elements.values())


class _Balance(NamedTuple):
    """One destination's verdict and its endpoints' entries: claimed as a whole by one Service."""

    bucket_map: str
    key: str
    verdict: str
    ep_map: str
    entries: tuple[str, ...]  # whole map elements: "key . bucket : pod IP . port"


class Part(NamedTuple):
    """What one service port contributes to the table; the table is the union of every port's part.
    (Named tuples: 10,000 Services make ~30,000 of these per full sync, and a frozen dataclass costs
    twice as much to build.)"""

    members: tuple[tuple[str, str], ...]  # (set, member), but for the hairpin set's
    # The hairpin pairs (pod IP . pod IP), apart: they are most of all members (one per endpoint), and
    # kept as plain strings they are counted and written at C speed.
    hairpin: tuple[str, ...]
    balances: tuple[_Balance, ...]
    most: int
    affinity: tuple[tuple[str, tuple[str, ...]], ...]  # (chain base name, its skeleton lines)


def part(sp: ServicePort, node: NodeConfig) -> Part:
    """One service port's elements, independent of every other port (a pure function).

    Most ports are a cluster IP, perhaps a node port, Cluster traffic policies and no affinity:
    those are built here in a straight line (the general ``_part_general`` gives the same part,
    a unit test holds them equal), because a full sync builds one part per port of 10,000
    Services and the general path's bookkeeping was most of its cost.
    """
    if sp.affinity_timeout or sp.external_ips or sp.load_balancer_ips or sp.internal_policy_local \
            or sp.external_policy_local:
        return _part_general(sp, node)
    eps = sp.endpoints
    key = f"{sp.cluster_ip} . {sp.protocol} . {sp.port}"
    nkey = f"{sp.protocol} . {sp.node_port}" if sp.node_port else ""
    if not eps:
        empty = (("no_endpoints", key), ("no_endpoint_nodeports", nkey)) if nkey else (("no_endpoints", key),)
        return Part(empty, (), (), 0, ())
    n = len(eps)
    members = [("cluster_masq", key)] if node.cluster_cidr else []
    balances = [_Balance("service_buckets", key, f"goto dnat_n{n}", "endpoints",
                         tuple([f"{key} . {bucket} : {ep.ip} . {ep.port}" for bucket, ep in enumerate(eps)]))]
    if nkey:
        balances.append(_Balance("nodeport_buckets", nkey, f"goto nodeport_dnat_n{n}", "nodeport_endpoints",
                                 tuple([f"{nkey} . {bucket} : {ep.ip} . {ep.port}"
                                        for bucket, ep in enumerate(eps)])))
        members.append(("nodeport_masq", nkey))
    hairpin = tuple(dict.fromkeys([f"{ep.ip} . {ep.ip}" for ep in eps]))
    return Part(tuple(members), hairpin, tuple(balances), n, ())


def _part_general(sp: ServicePort, node: NodeConfig) -> Part:
    """``part`` for any port: external and load-balancer IPs, Local policies, session affinity."""
    members: list[tuple[str, str]] = []
    balances: list[_Balance] = []
    affinity: dict[str, list[str]] = {}
    claimed: set[tuple[str, str]] = set()
    most = 0

    def balance(bucket_map: str, ep_map: str, prefix: str, key: str, eps: tuple[Endpoint, ...]) -> None:
        nonlocal most
        if (bucket_map, key) in claimed:
            return
        claimed.add((bucket_map, key))
        if sp.affinity_timeout:
            balances.append(_Balance(bucket_map, key, f"goto {_affinity_objects(sp, eps, affinity)}", ep_map, ()))
            return
        most = max(most, len(eps))
        # A list comprehension, not a generator: this line runs for every endpoint of every Service.
        entries = [f"{key} . {bucket} : {ep.ip} . {ep.port}" for bucket, ep in enumerate(eps)]
        balances.append(_Balance(bucket_map, key, f"goto {prefix}{len(eps)}", ep_map, tuple(entries)))

    # Most Services have no Local policy: the node's own endpoints are picked out only for those that do.
    local = (sp.local_endpoints(node.node_name) if sp.internal_policy_local or sp.external_policy_local
             else ())
    internal = local if sp.internal_policy_local else sp.endpoints
    external = local if sp.external_policy_local else sp.endpoints
    key = _key(sp, sp.cluster_ip)
    if internal:
        balance("service_buckets", "endpoints", "dnat_n", key, internal)
        if node.cluster_cidr and not sp.internal_policy_local:
            members.append(("cluster_masq", key))
    else:
        members.append(("no_local_endpoints" if sp.endpoints else "no_endpoints", key))
    for ip in (*sp.external_ips, *sp.load_balancer_ips):
        ekey = _key(sp, ip)
        if external:
            balance("service_buckets", "endpoints", "dnat_n", ekey, external)
            if not sp.external_policy_local:
                members.append(("external_masq", ekey))
        else:
            members.append(("no_local_endpoints" if sp.endpoints else "no_endpoints", ekey))
    if sp.node_port:
        nkey = f"{sp.protocol} . {sp.node_port}"
        if external:
            balance("nodeport_buckets", "nodeport_endpoints", "nodeport_dnat_n", nkey, external)
            if not sp.external_policy_local:
                members.append(("nodeport_masq", nkey))
        else:
            members.append(("no_local_nodeports" if sp.endpoints else "no_endpoint_nodeports", nkey))
    hairpin = tuple(dict.fromkeys([f"{ep.ip} . {ep.ip}" for ep in sp.endpoints]))
    return Part(tuple(dict.fromkeys(members)), hairpin, tuple(balances), most,
                tuple((name, tuple(lines)) for name, lines in affinity.items()))


def _skeleton_of(parts: Iterable[Part], node: NodeConfig) -> str:
    most = PRESET_BUCKETS
    affinity: dict[str, tuple[str, ...]] = {}
    for p in parts:
        most = max(most, p.most)
        affinity.update(p.affinity)
    return skeleton(node, most, [line for name in sorted(affinity) for line in affinity[name]])


def merge(parts: Iterable[Part], node: NodeConfig) -> NftState:
    """The table of these parts, in order: two Services claiming one destination, the first wins."""
    parts = list(parts)
    sets: dict[str, set[str]] = {s: set() for s in SETS}
    maps: dict[str, set[str]] = {m: set() for m in MAPS}
    claimed: set[tuple[str, str]] = set()
    for p in parts:
        for name, member in p.members:
            sets[name].add(member)
        sets["hairpin"].update(p.hairpin)
        for b in p.balances:
            if (b.bucket_map, b.key) in claimed:
                continue
            claimed.add((b.bucket_map, b.key))
            maps[b.bucket_map].add(f"{b.key} : {b.verdict}")
            maps[b.ep_map].update(b.entries)
    return NftState(skeleton=_skeleton_of(parts, node), sets=sets, map_elements=maps)


def _entries(p: Part) -> set[tuple[str, str]]:
    """A part's map elements: (map, "key : value")."""
    out: set[tuple[str, str]] = set()
    for b in p.balances:
        out.add((b.bucket_map, f"{b.key} : {b.verdict}"))
        out.update((b.ep_map, e) for e in b.entries)
    return out


def _key_of(element: str) -> str:
    return element.split(" : ", 1)[0]


def generate(snapshot: Snapshot, node: NodeConfig) -> NftState:
    """The desired table for a snapshot; a pure function."""
    return merge((part(sp, node) for sp in snapshot.ports), node)


def _affinity_objects(sp: ServicePort, eps: tuple[Endpoint, ...], out: dict[str, list[str]]) -> str:
    """sessionAffinity ClientIP for one destination: a dynamic set of recent clients per endpoint.

    A client found in an endpoint's set goes back to it; otherwise numgen
    picks one, and that endpoint's chain records the client (the set's
    timeout is the affinity timeout, refreshed by every new connection).
    These are chains and sets per endpoint, the layout that does not scale,
    so only Services with affinity get them; they live in the skeleton, and
    a change to such a Service rebuilds the table (resetting stickiness).
    """
    base = "aff_" + port_hash(sp.key, str(len(eps)), *(ep.address for ep in eps))[:12].lower()
    if base in out:
        return base
    lines = []
    for i, ep in enumerate(eps):
        lines.append(f"  set {base}_{i} {{ type ipv4_addr; flags dynamic,timeout; timeout {sp.affinity_timeout}s; }}")
        lines.append(f"  chain {base}_{i} {{ update @{base}_{i} {{ ip saddr }} meta l4proto {sp.protocol} "
                     f"dnat ip to {ep.ip}:{ep.port}; }}")
    rules = [f"ip saddr @{base}_{i} goto {base}_{i}" for i in range(len(eps))]
    vmap = ", ".join(f"{i} : goto {base}_{i}" for i in range(len(eps)))
    rules.append(f"numgen random mod {len(eps)} vmap {{ {vmap} }}")
    lines.append(f"  chain {base} {{\n" + "".join(f"    {r}\n" for r in rules) + "  }")
    out[base] = lines
    return base


def _key(sp: ServicePort, ip: str) -> str:
    return f"{ip} . {sp.protocol} . {sp.port}"


def skeleton(node: NodeConfig, buckets: int, extras: list[str] | None = None) -> str:
    mark = node.masquerade_mark
    vip = "ip daddr . meta l4proto . th dport"
    nodeport_dests = [c for c in node.nodeport_addresses if c not in ("", "0.0.0.0/0")]
    local = f"ip daddr {{ {', '.join(nodeport_dests)} }}" if nodeport_dests else "fib daddr type local"
    masq_off_cluster = f" ip saddr != {node.cluster_cidr}" if node.cluster_cidr else ""
    lines = [
        f"table {FAMILY} {TABLE} {{",
        "  comment \"kubelite-proxy: Services (rewritten by every sync)\"",
        "  map service_buckets { type ipv4_addr . inet_proto . inet_service : verdict; }",
        f"  map endpoints {{ typeof {vip} . numgen random mod 1 : ip daddr . th dport; }}",
        "  map nodeport_buckets { type inet_proto . inet_service : verdict; }",
        "  map nodeport_endpoints { typeof meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport; }",
        "  set cluster_masq { type ipv4_addr . inet_proto . inet_service; }",
        "  set external_masq { type ipv4_addr . inet_proto . inet_service; }",
        "  set nodeport_masq { type inet_proto . inet_service; }",
        "  set hairpin { type ipv4_addr . ipv4_addr; }",
        "  set no_endpoints { type ipv4_addr . inet_proto . inet_service; }",
        "  set no_local_endpoints { type ipv4_addr . inet_proto . inet_service; }",
        "  set no_endpoint_nodeports { type inet_proto . inet_service; }",
        "  set no_local_nodeports { type inet_proto . inet_service; }",
        f"  set {CANARY} {{ type ipv4_addr; }}",
        "  chain services {",
        f"    {vip} @cluster_masq{masq_off_cluster} meta mark set meta mark | {mark}",
        f"    {vip} @external_masq meta mark set meta mark | {mark}",
        f"    {vip} vmap @service_buckets",
        f"    {local} meta l4proto . th dport @nodeport_masq meta mark set meta mark | {mark}",
        f"    {local} meta l4proto . th dport vmap @nodeport_buckets",
        "  }",
        "  chain nat_prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; }",
        "  chain nat_output { type nat hook output priority -100; policy accept; jump services; }",
        "  chain nat_postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        # A pod reaching itself through its Service must see the reply come from the node.
        f"    ct status dnat ip saddr . ip daddr @hairpin meta mark set meta mark | {mark}",
        f"    meta mark & {mark} == 0 return",
        f"    meta mark set meta mark ^ {mark}",
        "    masquerade fully-random",
        "  }",
        "  chain filter_services {",
        f"    {vip} @no_endpoints reject with icmp type port-unreachable",
        f"    {vip} @no_local_endpoints drop",
        f"    {local} meta l4proto . th dport @no_endpoint_nodeports reject with icmp type port-unreachable",
        f"    {local} meta l4proto . th dport @no_local_nodeports drop",
        "  }",
        "  chain filter_input { type filter hook input priority filter - 1; policy accept; "
        "ct state new jump filter_services; }",
        "  chain filter_forward { type filter hook forward priority filter - 1; policy accept; "
        "ct state new jump filter_services; }",
        "  chain filter_output { type filter hook output priority filter - 1; policy accept; "
        "ct state new jump filter_services; }",
    ]
    for n in range(1, buckets + 1):
        lines.append(f"  chain dnat_n{n} {{ dnat ip to {vip} . numgen random mod {n} map @endpoints; }}")
        lines.append(f"  chain nodeport_dnat_n{n} {{ dnat ip to meta l4proto . th dport . numgen random mod {n} "
                     "map @nodeport_endpoints; }")
    lines.extend(extras or ())
    lines.append("}")
    return "\n".join(lines) + "\n"


def _elements(verb: str, name: str, items: list[str]) -> list[str]:
    return [f"{verb} element {FAMILY} {TABLE} {name} {{ {', '.join(items[i:i + CHUNK])} }}"
            for i in range(0, len(items), CHUNK)]


def full_text(state: NftState) -> str:
    """The whole table in one transaction, elements sorted (a stable text to read and compare)."""
    out = [f"add table {FAMILY} {TABLE}", f"delete table {FAMILY} {TABLE}", state.skeleton]
    for name, members in state.sets.items():
        out += _elements("add", name, sorted(members))
    for name, elements in state.map_elements.items():
        out += _elements("add", name, sorted(elements))
    return "\n".join(out) + "\n"


def diff_text(old: NftState, new: NftState) -> str:
    """Element changes that turn old into new (same skeleton); "" when nothing changed."""
    deletes: list[str] = []
    adds: list[str] = []
    for name in SETS:
        before, after = old.sets[name], new.sets[name]
        deletes += _elements("delete", name, sorted(before - after))
        adds += _elements("add", name, sorted(after - before))
    for name in MAPS:
        before_m, after_m = old.map_elements[name], new.map_elements[name]
        # A key whose value changed is deleted and added again, in the one transaction.
        deletes += _elements("delete", name, sorted(_key_of(e) for e in before_m - after_m))
        adds += _elements("add", name, sorted(after_m - before_m))
    out = deletes + adds
    return "\n".join(out) + "\n" if out else ""


class _Applied:
    """What the kernel holds, per service port, for syncs that touch only the ports that changed.

    Set members are counted (two Services may share one, such as a hairpin pair of one pod
    behind both); a destination belongs to the port that claimed it. A destination claimed
    twice (two Services with one external IP) is the one case where one port's change can
    move another's elements, so a table with such a conflict always goes through the whole
    ``generate`` and diff.
    """

    def __init__(self, ports: dict[str, tuple[ServicePort, Part]], skeleton: str) -> None:
        self.ports = ports
        self.skeleton = skeleton
        # Counted in C over (set, member) pairs: a loop over 10,000 Services' members was 0.1-0.3 s.
        self.refs: Counter[tuple[str, str]] = Counter(chain.from_iterable(p.members for _, p in ports.values()))
        self.hairpin: Counter[str] = Counter(chain.from_iterable(p.hairpin for _, p in ports.values()))
        self.owner: dict[tuple[str, str], str] = {}
        self.conflicted = False
        elements = len(self.refs) + len(self.hairpin)
        for name, (_, p) in ports.items():
            for bal in p.balances:
                if self.owner.setdefault((bal.bucket_map, bal.key), name) != name:
                    self.conflicted = True
                else:
                    elements += 1 + len(bal.entries)
        self.elements = elements

    def full_text(self) -> str:
        """``full_text(merge(...))`` of these ports, straight from the parts: each set member is a
        key of ``refs``, each map element belongs to the balance that owns its destination (the first
        port to claim it, as in ``merge``), so nothing is merged, formatted or sorted again."""
        members: dict[str, list[str]] = {name: [] for name in SETS}
        for set_name, member in self.refs:
            members[set_name].append(member)
        members["hairpin"].extend(self.hairpin)
        elements: dict[str, list[str]] = {name: [] for name in MAPS}
        owner = self.owner
        for name, (_, p) in self.ports.items():
            for bal in p.balances:
                if owner[(bal.bucket_map, bal.key)] == name:
                    elements[bal.bucket_map].append(f"{bal.key} : {bal.verdict}")
                    elements[bal.ep_map].extend(bal.entries)
        out = [f"add table {FAMILY} {TABLE}", f"delete table {FAMILY} {TABLE}", self.skeleton]
        # In the parts' order: nft 1.0.6 took the same CPU time for these 10,000 Services' elements
        # sorted or not (2.1-2.8 s, three times each way), and sorting them cost ~15% of the Python.
        for set_name, items in members.items():
            out += _elements("add", set_name, items)
        for map_name, items in elements.items():
            out += _elements("add", map_name, items)
        return "\n".join(out) + "\n"


class NftablesProxier:
    def __init__(self, node: NodeConfig, runner: NftRunner, conntrack: Conntrack) -> None:
        self._node = node
        self._runner = runner
        self._conntrack = conntrack
        self._applied: _Applied | None = None
        self._snapshot: Snapshot | None = None
        self._policy = FullSyncPolicy(lambda: runner.has_set(TABLE, CANARY))

    def _parts(self, snapshot: Snapshot) -> tuple[dict[str, tuple[ServicePort, Part]], list[str]]:
        """Every port's part, reusing the applied one for a port that did not change (the snapshot
        builder hands back the same ServicePort object then); and the names of those that changed."""
        before = self._applied.ports if self._applied is not None else {}
        hint = snapshot.changed
        if (hint is not None and before and self._snapshot is not None and len(hint) < len(before) // 4
                and len(snapshot.ports) == len(self._snapshot.ports)):
            # Only the hinted ports can differ from the last snapshot: patch a copy of the applied
            # parts rather than visit all of them. The order of `ports` only matters to the whole
            # merge, which conflicts need and this path then leaves to the full walk below.
            ports = dict(before)
            changed: list[str] = []
            now = snapshot.by_key()
            for key in sorted(hint):
                sp = now.get(key)
                old = before.get(key)
                if sp is None:
                    if old is not None:
                        del ports[key]
                        changed.append(key)
                elif old is None or not (old[0] is sp or old[0] == sp):
                    ports[key] = (sp, part(sp, self._node))
                    changed.append(key)
            if not any(k not in before or k not in now for k in changed):
                return ports, changed
        ports = {}
        changed = []
        for sp in snapshot.ports:
            old = before.get(sp.key)
            if old is not None and (old[0] is sp or old[0] == sp):
                ports[sp.key] = old
            else:
                ports[sp.key] = (sp, part(sp, self._node))
                changed.append(sp.key)
        changed += [name for name in before if name not in ports]
        return ports, changed

    def _incremental(self, applied: _Applied, ports: dict[str, tuple[ServicePort, Part]],
                     changed: list[str]) -> tuple[str, _Applied] | None:
        """The element statements for the changed ports alone, or None when they need the whole diff."""
        if applied.conflicted:
            return None
        # The skeleton moves only with affinity chains or more endpoints than the preset bucket chains.
        def shapes(name: str) -> bool:
            return any(side is not None and (side[1].affinity or side[1].most > PRESET_BUCKETS)
                       for side in (applied.ports.get(name), ports.get(name)))

        skel = (_skeleton_of((p for _, p in ports.values()), self._node) if any(shapes(n) for n in changed)
                else applied.skeleton)
        if skel != applied.skeleton:
            return None
        # Changed in place: whatever happens next replaces `applied` (a fallback to the whole diff
        # builds a fresh one, a failed apply forgets it), so nothing reads these counts half-done.
        owner, refs, hairpin = applied.owner, applied.refs, applied.hairpin
        deletes: dict[str, list[str]] = {}
        adds: dict[str, list[str]] = {}
        elements = applied.elements
        for name in changed:
            old = applied.ports.get(name)
            new = ports.get(name)
            old_members = set(old[1].members) if old is not None else set()
            new_members = set(new[1].members) if new is not None else set()
            for pair in old_members - new_members:
                refs[pair] -= 1
                if refs[pair] == 0:
                    del refs[pair]
                    deletes.setdefault(pair[0], []).append(pair[1])
                    elements -= 1
            for pair in new_members - old_members:
                refs[pair] += 1
                if refs[pair] == 1:
                    adds.setdefault(pair[0], []).append(pair[1])
                    elements += 1
            old_pins = set(old[1].hairpin) if old is not None else set()
            new_pins = set(new[1].hairpin) if new is not None else set()
            for pin in old_pins - new_pins:
                hairpin[pin] -= 1
                if hairpin[pin] == 0:
                    del hairpin[pin]
                    deletes.setdefault("hairpin", []).append(pin)
                    elements -= 1
            for pin in new_pins - old_pins:
                hairpin[pin] += 1
                if hairpin[pin] == 1:
                    adds.setdefault("hairpin", []).append(pin)
                    elements += 1
            old_entries = _entries(old[1]) if old is not None else set()
            new_entries = _entries(new[1]) if new is not None else set()
            for bal in new[1].balances if new is not None else ():
                if owner.setdefault((bal.bucket_map, bal.key), name) != name:
                    return None  # claimed by another port: the whole diff sorts out who wins
            for bal in old[1].balances if old is not None else ():
                if new is None or all(b.key != bal.key or b.bucket_map != bal.bucket_map for b in new[1].balances):
                    del owner[(bal.bucket_map, bal.key)]
            for map_name, element in old_entries - new_entries:
                deletes.setdefault(map_name, []).append(_key_of(element))
                elements -= 1
            for map_name, element in new_entries - old_entries:
                adds.setdefault(map_name, []).append(element)
                elements += 1
        out: list[str] = []
        for verb, groups in (("delete", deletes), ("add", adds)):
            for name in (*SETS, *MAPS):
                if groups.get(name):
                    out += _elements(verb, name, sorted(groups[name]))
        fresh = _Applied.__new__(_Applied)
        fresh.ports, fresh.skeleton, fresh.refs, fresh.owner = ports, skel, refs, owner
        fresh.hairpin = hairpin
        fresh.conflicted, fresh.elements = False, elements
        return ("\n".join(out) + "\n" if out else ""), fresh

    async def sync(self, snapshot: Snapshot, *, full: bool) -> SyncResult:
        applied = self._applied
        with collections_paused():
            ports, changed = self._parts(snapshot)
        full = await self._policy.needs_full(full, applied is not None)
        with collections_paused():
            step = None if full or applied is None else self._incremental(applied, ports, changed)
            if step is not None:
                text, result = step
            else:
                result = _Applied(ports, _skeleton_of((p for _, p in ports.values()), self._node))
                full = full or applied is None or applied.skeleton != result.skeleton
                if full or applied is None:
                    text = result.full_text()
                else:
                    old = merge((p for _, p in applied.ports.values()), self._node)
                    text = diff_text(old, merge((p for _, p in ports.values()), self._node))
        if text:
            try:
                await self._runner.apply(text)
            except BaseException:
                self._applied = None
                raise
        if full:
            self._policy.did_full()
        self._applied = result
        flows = stale_udp_flows(self._snapshot, snapshot)
        self._snapshot = snapshot
        await flush_conntrack(self._conntrack, flows)
        return SyncResult(full=full, lines=text.count("\n"), rules=result.elements)

    async def cleanup(self) -> None:
        # "add" first makes the delete succeed whether or not the table exists, in one transaction.
        await self._runner.apply(f"add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n")
        self._applied = None
