"""The nftables generator: elements per Service, even buckets, in-place diffs, full rebuild rules."""

from __future__ import annotations

from kubelite.machinery.process import collections_paused
from kubelite.proxy import nftables
from kubelite.proxy.model import Endpoint, NodeConfig, ServicePort, Snapshot
from kubelite.proxy.runner import FakeConntrack, FakeNftRunner

NODE = NodeConfig("node1", cluster_cidr="10.244.0.0/16", nodeport_addresses=("192.0.2.1/32",))
EPS = (Endpoint("10.244.1.2", 8080, "node1"), Endpoint("10.244.2.2", 8080, "node2"),
       Endpoint("10.244.1.3", 8080, "node1"))


def web(**kw: object) -> ServicePort:
    args: dict[str, object] = dict(namespace="default", service="web", port_name="", protocol="tcp",
                                   cluster_ip="10.96.0.10", port=80, endpoints=EPS)
    args.update(kw)
    return ServicePort(**args)  # type: ignore[arg-type]


def test_cluster_ip_gets_one_bucket_per_endpoint() -> None:
    state = nftables.generate(Snapshot((web(),)), NODE)
    assert state.maps["service_buckets"] == {"10.96.0.10 . tcp . 80": "goto dnat_n3"}
    assert state.maps["endpoints"] == {
        "10.96.0.10 . tcp . 80 . 0": "10.244.1.2 . 8080",
        "10.96.0.10 . tcp . 80 . 1": "10.244.2.2 . 8080",
        "10.96.0.10 . tcp . 80 . 2": "10.244.1.3 . 8080",
    }  # bucket i -> the i-th endpoint
    assert state.sets["cluster_masq"] == {"10.96.0.10 . tcp . 80"}
    assert "chain dnat_n3 { dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 3 map @endpoints; }" \
        in state.skeleton
    assert "ip daddr { 192.0.2.1/32 } meta l4proto . th dport vmap @nodeport_buckets" in state.skeleton


def test_no_endpoints_and_local_policies() -> None:
    empty = web(service="empty", cluster_ip="10.96.0.11", endpoints=(), node_port=30001)
    local = web(service="local", cluster_ip="10.96.0.12", node_port=30002, external_policy_local=True,
                external_ips=("192.0.2.50",))
    state = nftables.generate(Snapshot((empty, local)), NODE)
    assert state.sets["no_endpoints"] == {"10.96.0.11 . tcp . 80"}
    assert state.sets["no_endpoint_nodeports"] == {"tcp . 30001"}
    # Local: two node1 endpoints for external traffic, no masquerade; the cluster IP keeps all three.
    assert state.maps["nodeport_buckets"] == {"tcp . 30002": "goto nodeport_dnat_n2"}
    assert state.maps["service_buckets"]["192.0.2.50 . tcp . 80"] == "goto dnat_n2"
    assert state.maps["service_buckets"]["10.96.0.12 . tcp . 80"] == "goto dnat_n3"
    assert state.sets["nodeport_masq"] == set() and state.sets["external_masq"] == set()
    far = nftables.generate(Snapshot((local,)), NodeConfig("node9"))
    assert far.sets["no_local_nodeports"] == {"tcp . 30002"}


def test_diff_changes_elements_in_place() -> None:
    old = nftables.generate(Snapshot((web(),)), NODE)
    new = nftables.generate(Snapshot((web(endpoints=EPS[:2]),)), NODE)
    assert old.skeleton == new.skeleton  # 2 and 3 buckets are both preset chains
    text = nftables.diff_text(old, new)
    assert "delete element ip kubelite service_buckets { 10.96.0.10 . tcp . 80 }" in text
    assert "add element ip kubelite service_buckets { 10.96.0.10 . tcp . 80 : goto dnat_n2 }" in text
    assert "table ip kubelite {" not in text
    assert text.index("delete element") < text.index("add element")
    assert nftables.diff_text(new, new) == ""


async def test_proxier_full_then_partial_and_rebuild_on_new_skeleton() -> None:
    runner = FakeNftRunner()
    proxier = nftables.NftablesProxier(NODE, runner, FakeConntrack())
    assert (await proxier.sync(Snapshot((web(),)), full=False)).full
    assert runner.applied[0].startswith("add table ip kubelite\ndelete table ip kubelite\ntable ip kubelite {")
    assert not (await proxier.sync(Snapshot((web(endpoints=EPS[:1]),)), full=False)).full
    many = tuple(Endpoint(f"10.244.3.{i}", 80, "node1") for i in range(40))
    result = await proxier.sync(Snapshot((web(endpoints=many),)), full=False)
    assert result.full and "chain dnat_n40 " in runner.applied[-1]
    await proxier.cleanup()
    assert runner.applied[-1] == "add table ip kubelite\ndelete table ip kubelite\n"


def test_session_affinity_gets_per_endpoint_sets_in_the_skeleton() -> None:
    state = nftables.generate(Snapshot((web(affinity_timeout=600, node_port=30080),)), NODE)
    target = state.maps["service_buckets"]["10.96.0.10 . tcp . 80"]
    assert target.startswith("goto aff_") and state.maps["nodeport_buckets"]["tcp . 30080"] == target
    chain = target.removeprefix("goto ")
    assert f"set {chain}_0 {{ type ipv4_addr; flags dynamic,timeout; timeout 600s; }}" in state.skeleton
    assert f"ip saddr @{chain}_2 goto {chain}_2" in state.skeleton
    assert f"update @{chain}_1 {{ ip saddr }} meta l4proto tcp dnat ip to 10.244.2.2:8080" in state.skeleton
    assert state.maps["endpoints"] == {}


def _replay(texts: list[str]) -> tuple[str, dict[str, set[str]]]:
    """What the kernel holds after these nft -f texts: the skeleton and every set's/map's elements."""
    skel, elements = "", {name: set() for name in (*nftables.SETS, *nftables.MAPS)}
    for text in texts:
        if text.startswith(f"add table {nftables.FAMILY} {nftables.TABLE}\n"):
            skel, elements = "", {name: set() for name in elements}
            skel = text[text.index("table ip kubelite {"):text.index("\n}\n") + 3]
        for line in text.splitlines():
            verb, _, rest = line.partition(" element ip kubelite ")
            if not rest:
                continue
            name, _, items = rest.partition(" { ")
            members = items.removesuffix(" }").split(", ")
            if verb == "add":
                elements[name] |= set(members)
            else:
                keys = set(members)
                elements[name] = {e for e in elements[name] if e.split(" : ")[0] not in keys}
    return skel, elements


def _expected(snapshot: Snapshot) -> tuple[str, dict[str, set[str]]]:
    state = nftables.generate(snapshot, NODE)
    out = {name: set(members) for name, members in state.sets.items()}
    out.update({name: {f"{k} : {v}" for k, v in entries.items()} for name, entries in state.maps.items()})
    return state.skeleton, out


async def test_syncs_of_a_few_changed_services_write_only_their_elements_and_match_a_full_generate() -> None:
    import random

    rng = random.Random(7)
    pods = [Endpoint(f"10.244.{i // 200}.{i % 200 + 2}", 8080, f"node{i % 3}") for i in range(400)]

    def service(i: int, count: int) -> ServicePort:
        start = rng.randrange(0, 380)
        return web(service=f"s{i}", cluster_ip=f"10.96.1.{i}", node_port=30000 + i if i % 3 == 0 else 0,
                   endpoints=tuple(sorted(pods[start:start + count])),
                   external_policy_local=i % 5 == 0)

    ports = {i: service(i, rng.randrange(0, 6)) for i in range(60)}
    runner = FakeNftRunner()
    proxier = nftables.NftablesProxier(NODE, runner, FakeConntrack())
    first = await proxier.sync(Snapshot(tuple(ports[i] for i in sorted(ports))), full=False)
    assert first.full
    for round_ in range(40):
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(0, 70)
            if i in ports and rng.random() < 0.2:
                del ports[i]  # a Service deleted
            else:
                # Another endpoint set; the same pods are often behind several Services (shared hairpin pairs).
                ports[i] = service(i, rng.randrange(0, 6))
        snap = Snapshot(tuple(ports[i] for i in sorted(ports)))
        before = len(runner.applied)
        result = await proxier.sync(snap, full=False)
        assert not result.full, round_
        if len(runner.applied) > before:
            assert "table ip kubelite {" not in runner.applied[-1]  # elements only
        assert _replay(runner.applied) == _expected(snap), round_
        assert result.rules == nftables.generate(snap, NODE).element_count()
    # A Service past the preset bucket chains changes the skeleton: the table is rebuilt.
    ports[1] = web(service="s1", cluster_ip="10.96.1.1", endpoints=tuple(pods[:40]))
    snap = Snapshot(tuple(ports[i] for i in sorted(ports)))
    assert (await proxier.sync(snap, full=False)).full
    assert _replay(runner.applied) == _expected(snap)


async def test_two_services_claiming_one_destination_fall_back_to_the_whole_diff() -> None:
    a = web(service="a", external_ips=("192.0.2.9",))
    b = web(service="b", cluster_ip="10.96.0.20", external_ips=("192.0.2.9",), endpoints=EPS[:1])
    runner = FakeNftRunner()
    proxier = nftables.NftablesProxier(NODE, runner, FakeConntrack())
    await proxier.sync(Snapshot((a, b)), full=False)
    # a goes away: b's claim on the shared external IP now wins, which only the whole diff sees.
    snap = Snapshot((b,))
    await proxier.sync(snap, full=False)
    assert _replay(runner.applied) == _expected(snap)
    assert nftables.generate(snap, NODE).maps["service_buckets"]["192.0.2.9 . tcp . 80"] == "goto dnat_n1"


async def test_a_hinted_snapshot_patches_the_applied_parts_and_matches_a_full_generate() -> None:
    ports = [web(service=f"s{i:02d}", cluster_ip=f"10.96.1.{i}", endpoints=EPS[: i % 3 + 1]) for i in range(40)]
    runner = FakeNftRunner()
    proxier = nftables.NftablesProxier(NODE, runner, FakeConntrack())
    await proxier.sync(Snapshot(tuple(ports)), full=False)
    # s05 changes; the hint names it and s06, which did not change (a hint may name more than changed).
    ports[5] = web(service="s05", cluster_ip="10.96.1.5", endpoints=EPS[1:])
    snap = Snapshot(tuple(ports), changed=frozenset({ports[5].key, ports[6].key}))
    result = await proxier.sync(snap, full=False)
    assert not result.full
    assert runner.applied[-1].count("\n") == 4  # s05's two endpoint entries out and in again, hairpin
    assert _replay(runner.applied) == _expected(snap)
    # The hint is believed: a port it leaves out is not even compared (what makes the path cheap).
    unhinted = list(ports)
    unhinted[7] = web(service="s07", cluster_ip="10.96.1.7", endpoints=EPS[:1])
    before = len(runner.applied)
    await proxier.sync(Snapshot(tuple(unhinted), changed=frozenset({ports[6].key})), full=False)
    assert len(runner.applied) == before
    # A hint with a port that is new goes the whole way round, and still ends where generate says.
    ports.append(web(service="s99", cluster_ip="10.96.1.99"))
    snap = Snapshot(tuple(ports), changed=frozenset({ports[-1].key}))
    await proxier.sync(snap, full=False)
    assert _replay(runner.applied) == _expected(snap)


async def test_a_full_sync_writes_what_generate_says_conflicts_and_shared_hairpins_included() -> None:
    # a and b claim one external IP (a, first, wins); b and c share pods (one hairpin pair each, once).
    a = web(service="a", external_ips=("192.0.2.9",), node_port=30001)
    b = web(service="b", cluster_ip="10.96.0.20", external_ips=("192.0.2.9",), endpoints=EPS[:1])
    c = web(service="c", cluster_ip="10.96.0.21", endpoints=EPS[:2], internal_policy_local=True)
    empty = web(service="d", cluster_ip="10.96.0.22", endpoints=())
    snap = Snapshot((a, b, c, empty))
    runner = FakeNftRunner()
    proxier = nftables.NftablesProxier(NODE, runner, FakeConntrack())
    result = await proxier.sync(snap, full=True)
    assert result.full
    assert _replay(runner.applied) == _expected(snap)
    assert result.rules == nftables.generate(snap, NODE).element_count()
    text = runner.applied[-1]
    assert text.count("192.0.2.9 . tcp . 80 : ") == 1 and "192.0.2.9 . tcp . 80 : goto dnat_n3" in text
    hairpins = [line for line in text.splitlines() if " hairpin " in line]
    assert sum(line.count(f"{ep.ip} . {ep.ip}") for line in hairpins for ep in EPS) == 3


def test_the_straight_line_part_equals_the_general_one() -> None:
    shapes: list[ServicePort] = []
    for eps in ((), EPS[:1], EPS):
        for node_port in (0, 30080):
            for protocol in ("tcp", "udp"):
                shapes.append(web(endpoints=eps, node_port=node_port, protocol=protocol))
    for node in (NODE, NodeConfig("node1")):  # with and without a cluster CIDR (no masquerade set then)
        for sp in shapes:
            assert nftables.part(sp, node) == nftables._part_general(sp, node), (sp, node)
    # Anything else goes the general way.
    special = web(external_ips=("192.0.2.9",))
    assert nftables.part(special, NODE) == nftables._part_general(special, NODE)
    assert any(m == ("external_masq", "192.0.2.9 . tcp . 80") for m in nftables.part(special, NODE).members)


async def test_the_collector_is_paused_only_inside_the_generation() -> None:
    import gc

    seen: list[bool] = []

    class Watching(FakeNftRunner):
        async def apply(self, text: str) -> None:
            seen.append(gc.isenabled())
            await super().apply(text)

    proxier = nftables.NftablesProxier(NODE, Watching(), FakeConntrack())
    assert gc.isenabled()
    with collections_paused():
        assert not gc.isenabled()
    await proxier.sync(Snapshot((web(),)), full=True)
    assert seen == [True] and gc.isenabled()  # running again while nft runs, and after
    gc.disable()
    try:
        with collections_paused():
            pass
        assert not gc.isenabled()  # someone else's choice is left alone
    finally:
        gc.enable()
