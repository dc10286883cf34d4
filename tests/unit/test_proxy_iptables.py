"""The iptables rule generator, restore diffs, the proxier over fakes, the sync loop."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re

import pytest

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.proxy import iptables
from kubelite.proxy.iptables import (
    JUMPS,
    ZERO_ABOVE_CHAINS,
    SavedTables,
    generate,
    parse_save,
    restore_text,
    sep_chain,
    svc_chain,
)
from kubelite.proxy.model import (
    DEFAULT_AFFINITY_TIMEOUT,
    Endpoint,
    NodeConfig,
    ServicePort,
    Snapshot,
    build_snapshot,
    port_hash,
)
from kubelite.proxy.proxier import IptablesProxier, stale_udp_flows
from kubelite.proxy.runner import CommandError, FakeConntrack, FakeIptablesRunner
from kubelite.proxy.server import ProgrammingTracker, parse_trigger_time
from kubelite.proxy.syncloop import SyncLoop

NODE = NodeConfig("node1", cluster_cidr="10.244.0.0/16")
EPS = (Endpoint("10.244.1.2", 8080, "node1"), Endpoint("10.244.2.2", 8080, "node2"),
       Endpoint("10.244.1.3", 8080, "node1"))


def web(**kw: object) -> ServicePort:
    args: dict[str, object] = dict(namespace="default", service="web", port_name="http", protocol="tcp",
                                   cluster_ip="10.96.0.10", port=80, endpoints=EPS)
    args.update(kw)
    return ServicePort(**args)  # type: ignore[arg-type]


def chain(rs: iptables.Ruleset, table: str, name: str) -> list[str]:
    return rs.chains(table)[name]


def service(name: str = "web", *, type_: str = "ClusterIP",
            ports: tuple[tuple[str, int, int], ...] = (("http", 80, 0),), cluster_ip: str = "10.96.0.10",
            **spec: object) -> core.Service:
    svc = core.Service(api_version="v1", kind="Service")
    svc.metadata.name = name
    svc.metadata.namespace = "default"
    svc.spec.type = type_
    svc.spec.cluster_ip = cluster_ip
    for pname, port, node_port in ports:
        svc.spec.ports.add(name=pname, port=port, protocol="TCP", target_port="8080", node_port=node_port)
    for k, v in spec.items():
        setattr(svc.spec, k, v)
    return svc


def endpoints(name: str = "web", ready: tuple[str, ...] = ("10.244.1.2",), not_ready: tuple[str, ...] = (),
              port_name: str = "http") -> core.Endpoints:
    ep = core.Endpoints(api_version="v1", kind="Endpoints")
    ep.metadata.name = name
    ep.metadata.namespace = "default"
    subset = ep.subsets.add()
    for ip in ready:
        subset.addresses.add(ip=ip, node_name="node1")
    for ip in not_ready:
        subset.not_ready_addresses.add(ip=ip, node_name="node1")
    subset.ports.add(name=port_name, port=8080, protocol="TCP")
    return ep


# -- model -----------------------------------------------------------------------


def test_snapshot_keeps_only_ready_addresses_matched_by_port_name() -> None:
    snap = build_snapshot([service(ports=(("http", 80, 0), ("metrics", 9090, 0)))],
                          [endpoints(ready=("10.244.1.2", "10.244.1.3"), not_ready=("10.244.1.9",))])
    http, metrics = sorted(snap.ports, key=lambda p: p.port)
    assert [e.ip for e in http.endpoints] == ["10.244.1.2", "10.244.1.3"]
    assert http.name == "default/web:http"
    assert metrics.endpoints == ()  # the Endpoints name no port "metrics"


def test_snapshot_skips_headless_and_external_name_and_reads_affinity() -> None:
    affine = service("sticky", session_affinity="ClientIP")
    snap = build_snapshot([service("headless", cluster_ip="None"), service("ext", type_="ExternalName"), affine],
                          [])
    assert [p.service for p in snap.ports] == ["sticky"]
    assert snap.ports[0].affinity_timeout == DEFAULT_AFFINITY_TIMEOUT
    affine.spec.session_affinity_config.client_ip.timeout_seconds = 60
    assert build_snapshot([affine], []).ports[0].affinity_timeout == 60


def test_snapshot_node_port_only_for_node_port_types_and_lb_ingress() -> None:
    lb = service("lb", type_="LoadBalancer", ports=(("http", 80, 30080),), external_traffic_policy="Local")
    lb.status.load_balancer.ingress.add(ip="192.0.2.7")
    plain = service("plain", ports=(("http", 80, 30081),))
    ports = {p.service: p for p in build_snapshot([lb, plain], []).ports}
    assert ports["lb"].node_port == 30080 and ports["lb"].load_balancer_ips == ("192.0.2.7",)
    assert ports["lb"].external_policy_local
    assert ports["plain"].node_port == 0


def test_chain_names_are_kube_proxys_hash() -> None:
    sp = web()
    assert svc_chain(sp) == "KUBE-SVC-" + port_hash("default/web:httptcp")
    assert len(svc_chain(sp)) <= 28 and len(sep_chain(sp, EPS[0])) <= 28
    assert re.fullmatch(r"KUBE-SEP-[A-Z2-7]{16}", sep_chain(sp, EPS[0]))
    # kube-proxy's recipe: standard base32 of sha256, first 16 characters.
    for text in ("default/web:httptcp", "bench/svc7:httptcp10.244.0.7:8080", ""):
        assert port_hash(text) == base64.b32encode(hashlib.sha256(text.encode()).digest())[:16].decode()


# -- generator -------------------------------------------------------------------


def test_cluster_ip_balances_with_one_over_n_minus_i() -> None:
    sp = web()
    rs = generate(Snapshot((sp,)), NODE)
    rules = chain(rs, "nat", svc_chain(sp))
    assert "! -s 10.244.0.0/16 -j KUBE-MARK-MASQ" in rules[0]
    probs = [re.search(r"--probability (\S+)", r) for r in rules[1:]]
    assert [m.group(1) if m else None for m in probs] == ["0.3333333333", "0.5000000000", None]
    assert [r.split()[-1] for r in rules[1:]] == [sep_chain(sp, ep) for ep in EPS]
    services = chain(rs, "nat", "KUBE-SERVICES")
    assert any(f"-d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j {svc_chain(sp)}" in r for r in services)
    sep = chain(rs, "nat", sep_chain(sp, EPS[0]))
    assert sep[0].startswith(f"-A {sep_chain(sp, EPS[0])} -s 10.244.1.2/32") and "KUBE-MARK-MASQ" in sep[0]
    assert sep[1].endswith("-j DNAT --to-destination 10.244.1.2:8080")


def test_no_endpoints_rejects_in_filter_and_installs_no_nat() -> None:
    sp = web(endpoints=(), node_port=30080, external_ips=("192.0.2.9",))
    rs = generate(Snapshot((sp,)), NODE)
    assert not any(c.startswith("KUBE-SVC-") or c.startswith("KUBE-EXT-") for c in rs.chains("nat"))
    rejects = chain(rs, "filter", "KUBE-SERVICES")
    assert rejects == ['-A KUBE-SERVICES -m comment --comment "default/web:http has no endpoints" -d 10.96.0.10/32 '
                       "-p tcp -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable"]
    external = chain(rs, "filter", "KUBE-EXTERNAL-SERVICES")
    assert any("-d 192.0.2.9/32" in r and "REJECT" in r for r in external)
    assert any("--dst-type LOCAL -p tcp -m tcp --dport 30080" in r and "REJECT" in r for r in external)


def test_node_port_and_external_ip_masquerade_under_cluster_policy() -> None:
    sp = web(node_port=30080, external_ips=("192.0.2.9",))
    rs = generate(Snapshot((sp,)), NodeConfig("node1", "10.244.0.0/16", ("192.0.2.1/32",)))
    ext = iptables.ext_chain(sp)
    assert chain(rs, "nat", "KUBE-NODEPORTS") == [
        f'-A KUBE-NODEPORTS -m comment --comment "default/web:http" -p tcp -m tcp --dport 30080 -j {ext}']
    assert chain(rs, "nat", ext)[0].endswith("-j KUBE-MARK-MASQ")
    assert chain(rs, "nat", ext)[1] == f"-A {ext} -j {svc_chain(sp)}"
    services = chain(rs, "nat", "KUBE-SERVICES")
    assert "-d 192.0.2.9/32" in services[1] and services[1].endswith(ext)
    # The NodePort jump is last, on the configured addresses only.
    assert services[-1].endswith("-d 192.0.2.1/32 -j KUBE-NODEPORTS")


def test_external_policy_local_uses_only_local_endpoints_without_masquerade() -> None:
    sp = web(node_port=30080, external_policy_local=True)
    rs = generate(Snapshot((sp,)), NODE)
    ext = chain(rs, "nat", iptables.ext_chain(sp))
    assert ext[-1].endswith(f"-j {iptables.svl_chain(sp)}")
    assert "-s 10.244.0.0/16" in ext[0]  # pods still use every endpoint
    local = chain(rs, "nat", iptables.svl_chain(sp))
    assert [r.split()[-1] for r in local] == [sep_chain(sp, EPS[0]), sep_chain(sp, EPS[2])]
    assert not any("KUBE-MARK-MASQ" in r for r in local)
    # A node without local endpoints drops external traffic instead of sending it elsewhere.
    rs2 = generate(Snapshot((sp,)), NodeConfig("node3", "10.244.0.0/16"))
    assert any("has no local endpoints" in r and r.endswith("-j DROP")
               for r in chain(rs2, "filter", "KUBE-EXTERNAL-SERVICES"))


def test_internal_policy_local_sends_cluster_ip_to_local_chain() -> None:
    sp = web(internal_policy_local=True)
    rs = generate(Snapshot((sp,)), NodeConfig("node2", "10.244.0.0/16"))
    services = chain(rs, "nat", "KUBE-SERVICES")
    assert services[0].endswith(f"-j {iptables.svl_chain(sp)}")
    assert [r.split()[-1] for r in chain(rs, "nat", iptables.svl_chain(sp))] == [sep_chain(sp, EPS[1])]


def test_session_affinity_checks_recent_before_balancing() -> None:
    sp = web(affinity_timeout=600)
    rs = generate(Snapshot((sp,)), NODE)
    rules = chain(rs, "nat", svc_chain(sp))[1:]
    assert all("--rcheck --seconds 600 --reap" in r for r in rules[:3])
    assert all("statistic" in r or "recent" not in r for r in rules[3:])
    sep = sep_chain(sp, EPS[0])
    assert f"-m recent --set --name {sep}" in chain(rs, "nat", sep)[1]


def test_masquerade_mark_chains() -> None:
    rs = generate(Snapshot(()), NODE)
    assert chain(rs, "nat", "KUBE-MARK-MASQ") == ["-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000"]
    post = chain(rs, "nat", "KUBE-POSTROUTING")
    assert post[0] == "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN"
    assert post[-1].endswith("-j MASQUERADE --random-fully")
    assert chain(rs, "nat", "KUBE-SERVICES")[-1].endswith("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")


# -- restore text -------------------------------------------------------------------


def test_full_restore_declares_everything_inserts_missing_jumps_and_deletes_stale_chains() -> None:
    rs = generate(Snapshot((web(),)), NODE)
    saved = parse_save("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SVC-OLDOLDOLDOLDOLDO - [0:0]\n"
                       + JUMPS[0].line + "\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n")
    text = restore_text(rs, None, saved)
    nat = text[text.index("*nat"):]
    assert ":KUBE-SVC-OLDOLDOLDOLDOLDO - [0:0]" in nat and "-X KUBE-SVC-OLDOLDOLDOLDOLDO" in nat
    assert f"-I {JUMPS[0].chain} 1 {JUMPS[0].spec}" not in nat  # already there
    assert f"-I {JUMPS[1].chain} 1 {JUMPS[1].spec}" in nat
    for name in rs.chains("nat"):
        assert f":{name} - [0:0]" in nat
    assert text.count("COMMIT") == 2


def test_partial_restore_writes_only_changed_chains_and_deletes_removed() -> None:
    old = generate(Snapshot((web(), web(service="other", cluster_ip="10.96.0.11"))), NODE)
    new_web = web(endpoints=EPS[:2])
    new = generate(Snapshot((new_web, web(service="other", cluster_ip="10.96.0.11"))), NODE)
    text = restore_text(new, old)
    gone = sep_chain(new_web, EPS[2])
    assert f":{svc_chain(new_web)} - [0:0]" in text
    assert f"-X {gone}" in text and f":{gone} - [0:0]" in text
    other = web(service="other", cluster_ip="10.96.0.11")
    assert svc_chain(other) not in text  # untouched
    assert "*filter" not in text
    assert restore_text(new, new) == ""


def test_only_a_transaction_past_the_chain_threshold_starts_with_zero() -> None:
    # nft-backed iptables walks a list of every chain a transaction names for each line unless a
    # chainless command (-Z) comes first; small syncs keep the counters.
    small = generate(Snapshot((web(),)), NODE)
    assert "-Z" not in restore_text(small, None, SavedTables()).splitlines()
    many = tuple(web(service=f"s{i}", cluster_ip=f"10.96.1.{i}") for i in range(ZERO_ABOVE_CHAINS // 4 + 1))
    large = generate(Snapshot(many), NODE)
    assert len(large.chains("nat")) > ZERO_ABOVE_CHAINS
    text = restore_text(large, None, SavedTables())
    assert text.startswith("*filter\n:KUBE-SERVICES")  # the filter table names a few chains: no -Z
    assert text.count("\n-Z\n") == 1 and "*nat\n-Z\n" in text
    # A partial sync naming few chains of the large table has none.
    assert "-Z" not in restore_text(generate(Snapshot(many[:-1]), NODE), large).splitlines()


def test_cleanup_text_removes_our_chains_and_jumps_only() -> None:
    saved = parse_save("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-SEP-AAAAAAAAAAAAAAAA - [0:0]\n"
                       ":DOCKER - [0:0]\n" + JUMPS[0].line + "\n-A PREROUTING -j DOCKER\nCOMMIT\n")
    text = iptables.cleanup_text(saved)
    assert f"-D PREROUTING {JUMPS[0].spec}" in text
    assert "-X KUBE-SERVICES" in text and "-X KUBE-SEP-AAAAAAAAAAAAAAAA" in text
    assert "DOCKER" not in text
    assert iptables.cleanup_text(parse_save("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n")) == ""


# -- proxier -------------------------------------------------------------------------


async def test_proxier_full_then_partial_then_full_after_failure() -> None:
    runner = FakeIptablesRunner()
    proxier = IptablesProxier(NODE, runner, FakeConntrack())
    r1 = await proxier.sync(Snapshot((web(),)), full=False)
    assert r1.full and runner.saves == 1
    r2 = await proxier.sync(Snapshot((web(endpoints=EPS[:1]),)), full=False)
    assert not r2.full and runner.saves == 1 and "-X" in runner.restores[-1]
    r3 = await proxier.sync(Snapshot((web(endpoints=EPS[:1]),)), full=False)
    assert r3.lines == 0 and len(runner.restores) == 2  # nothing changed, nothing run
    runner.fail_next = 1
    with pytest.raises(CommandError):
        await proxier.sync(Snapshot((web(),)), full=False)
    r4 = await proxier.sync(Snapshot((web(),)), full=False)
    assert r4.full and runner.saves == 2  # the failed sync was partial: no save; the retry is full


async def test_proxier_flushes_udp_conntrack_for_removed_endpoints() -> None:
    conntrack = FakeConntrack()
    proxier = IptablesProxier(NODE, FakeIptablesRunner(), conntrack)
    dns = web(service="dns", protocol="udp", port=53, node_port=30053)
    await proxier.sync(Snapshot((dns,)), full=True)
    assert conntrack.deletes == []
    await proxier.sync(Snapshot((web(service="dns", protocol="udp", port=53, node_port=30053, endpoints=EPS[1:]),)),
                       full=False)
    assert ["-p", "udp", "--orig-dst", "10.96.0.10", "--dst-nat", "10.244.1.2"] in conntrack.deletes
    assert ["-p", "udp", "--dport", "30053", "--dst-nat", "10.244.1.2"] in conntrack.deletes


def test_stale_flows_for_a_udp_service_that_gains_endpoints() -> None:
    empty = Snapshot((web(protocol="udp", endpoints=()),))
    full = Snapshot((web(protocol="udp"),))
    assert stale_udp_flows(empty, full) == [["-p", "udp", "--orig-dst", "10.96.0.10"]]
    assert stale_udp_flows(Snapshot((web(),)), Snapshot(())) == []  # TCP: the kernel resets connections itself


async def test_proxier_cleanup_restores_cleanup_text() -> None:
    runner = FakeIptablesRunner(saved="*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n")
    await IptablesProxier(NODE, runner, FakeConntrack()).cleanup()
    assert runner.restores == ["*nat\n:KUBE-SERVICES - [0:0]\n-X KUBE-SERVICES\nCOMMIT\n"]


# -- sync loop and latency bookkeeping ----------------------------------------------------


async def test_sync_loop_coalesces_bursts_and_rate_limits() -> None:
    calls: list[bool] = []
    done = asyncio.Event()

    async def sync(full: bool) -> None:
        calls.append(full)
        done.set()

    loop = SyncLoop(sync, min_interval=0.2, full_interval=3600)
    task = asyncio.create_task(loop.run(), name="test-sync-loop")
    try:
        await asyncio.wait_for(done.wait(), 5)  # the first, full sync
        done.clear()
        for _ in range(50):
            loop.request()
        await asyncio.wait_for(done.wait(), 5)
        await asyncio.sleep(0.3)
        assert calls == [True, False]
        assert loop.pending_since is None
    finally:
        task.cancel()
        await asyncio.wait([task])


async def test_sync_loop_serves_a_change_right_after_a_sync_and_limits_the_third() -> None:
    """A token bucket of 2: a request just after a sync (the periodic resync, say) runs at once;
    only a third sync inside min_interval waits for the bucket to refill."""
    calls: list[bool] = []
    ran = asyncio.Event()

    async def sync(full: bool) -> None:
        calls.append(full)
        ran.set()

    loop = SyncLoop(sync, min_interval=3.0, full_interval=3600)
    loop.request()
    task = asyncio.create_task(loop.run(), name="test-sync-loop")
    try:
        await asyncio.wait_for(ran.wait(), 5)
        ran.clear()
        loop.request()
        await asyncio.wait_for(ran.wait(), 1.5)  # not held back for min_interval
        ran.clear()
        loop.request()
        await asyncio.sleep(0.5)
        assert calls == [True, False]  # the third waits for a token
        assert loop.pending_since is not None
        await asyncio.wait_for(ran.wait(), 5)
        assert calls == [True, False, False]
    finally:
        task.cancel()
        await asyncio.wait([task])


def test_sync_loop_refuses_an_empty_bucket() -> None:
    async def sync(full: bool) -> None:
        return None

    with pytest.raises(ValueError, match="burst"):
        SyncLoop(sync, min_interval=1.0, full_interval=30, burst=0)


async def test_sync_loop_retries_a_failed_sync() -> None:
    calls: list[bool] = []
    ok = asyncio.Event()

    async def sync(full: bool) -> None:
        calls.append(full)
        if len(calls) == 1:
            raise RuntimeError("restore failed")
        ok.set()

    loop = SyncLoop(sync, min_interval=0.05, full_interval=3600)
    loop.request()
    task = asyncio.create_task(loop.run(), name="test-sync-loop")
    try:
        await asyncio.wait_for(ok.wait(), 5)
        assert calls == [True, True]  # the failed full sync did not count as done
    finally:
        task.cancel()
        await asyncio.wait([task])


def test_trigger_time_parses_go_nanoseconds() -> None:
    assert parse_trigger_time("2026-01-02T03:04:05.123456789Z") == pytest.approx(1767323045.123456)
    assert parse_trigger_time("2026-01-02T03:04:05Z") == 1767323045.0
    assert parse_trigger_time("yesterday") is None


def test_tracker_uses_annotation_else_arrival_and_ignores_changes_before_start() -> None:
    now = [1767323000.0]
    tracker = ProgrammingTracker(clock=lambda: now[0])
    ep = endpoints()
    ep.metadata.annotations["endpoints.kubernetes.io/last-change-trigger-time"] = "2026-01-02T03:04:05Z"
    tracker.record(ep)
    old = endpoints()
    old.metadata.annotations["endpoints.kubernetes.io/last-change-trigger-time"] = "2020-01-01T00:00:00Z"
    tracker.record(old)
    now[0] += 5
    tracker.record(endpoints("other"))
    assert sorted(tracker.take()) == [1767323005.0, 1767323045.0]
    assert tracker.take() == []


# -- pod network ---------------------------------------------------------------------


def _node(name: str, cidr: str, ip: str) -> core.Node:
    node = core.Node(api_version="v1", kind="Node")
    node.metadata.name = name
    node.spec.pod_cidr = cidr
    if ip:
        node.status.addresses.add(type="Hostname", address=name)
        node.status.addresses.add(type="InternalIP", address=ip)
    return node


def test_node_routes_need_a_cidr_and_an_internal_ip() -> None:
    from kubelite.proxy.podnetwork import NodeRoute, node_routes

    routes = node_routes([_node("b", "10.244.2.0/24", "172.18.0.3"), _node("a", "10.244.1.0/24", "172.18.0.2"),
                          _node("new", "", "172.18.0.4"), _node("quiet", "10.244.3.0/24", "")])
    assert routes == [NodeRoute("a", "10.244.1.0/24", "172.18.0.2"), NodeRoute("b", "10.244.2.0/24", "172.18.0.3")]


async def test_host_gw_replaces_only_changed_routes_and_deletes_gone_ones() -> None:
    from kubelite.proxy.podnetwork import HostGw, NodeRoute

    class Routes:
        def __init__(self) -> None:
            self.have = [("10.244.2.0/24", "172.18.0.3"), ("10.244.9.0/24", "172.18.0.9")]
            self.batches: list[list[str]] = []

        async def list(self) -> list[tuple[str, str]]:
            return self.have

        async def apply(self, batch: list[str]) -> None:
            self.batches.append(list(batch))

    routes = Routes()
    runner = FakeIptablesRunner(saved="*filter\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\nCOMMIT\n")
    agent = HostGw("a", "10.244.0.0/16", routes, runner)
    await agent.sync([NodeRoute("a", "10.244.1.0/24", "172.18.0.2"), NodeRoute("b", "10.244.2.0/24", "172.18.0.3"),
                      NodeRoute("c", "10.244.3.0/24", "172.18.0.4")])
    assert routes.batches == [["route del 10.244.9.0/24 proto 211",
                               "route replace 10.244.3.0/24 via 172.18.0.4 proto 211"]]
    text = runner.restores[-1]
    assert "-I DOCKER-USER 1 -j KUBELITE-FORWARD" in text and "-I FORWARD 1 -j KUBELITE-FORWARD" in text
    assert "-A KUBELITE-POSTROUTING -s 10.244.0.0/16 -d 10.244.0.0/16 -j ACCEPT" in text
    assert "-A KUBELITE-POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE" in text


async def test_periodic_resync_is_full_only_when_the_canary_is_gone_or_an_hour_passed() -> None:
    from kubelite.proxy import proxier as proxier_module

    runner = FakeIptablesRunner()
    proxier = IptablesProxier(NODE, runner, FakeConntrack())
    assert (await proxier.sync(Snapshot((web(),)), full=True)).full
    assert ":KUBE-PROXY-CANARY - [0:0]" in runner.restores[0]
    assert not (await proxier.sync(Snapshot((web(),)), full=True)).full  # canary there: nothing to repair
    runner.canary = False
    assert (await proxier.sync(Snapshot((web(),)), full=True)).full
    runner.canary = True
    proxier._policy.last_full -= proxier_module.FULL_SYNC_PERIOD
    assert (await proxier.sync(Snapshot((web(),)), full=True)).full
    assert not (await proxier.sync(Snapshot((web(),)), full=False)).full


def test_snapshot_builder_reuses_unchanged_services_and_sees_changes() -> None:
    from kubelite.proxy.model import SnapshotBuilder

    builder = SnapshotBuilder()
    svc = service()
    svc.metadata.resource_version = "5"
    ep = endpoints(ready=("10.244.1.2",))
    ep.metadata.resource_version = "6"
    first = builder.build([svc], [ep])
    again = builder.build([svc], [ep])
    assert again.ports[0] is first.ports[0]
    changed = endpoints(ready=("10.244.1.3",))
    changed.metadata.resource_version = "7"
    assert [e.ip for e in builder.build([svc], [changed]).ports[0].endpoints] == ["10.244.1.3"]
    assert builder.build([svc], []).ports[0].endpoints == ()


def test_snapshot_builder_update_reads_only_the_named_services_and_hints_their_ports() -> None:
    from kubelite.proxy.model import SnapshotBuilder

    def versioned(obj: core.Service | core.Endpoints, rv: int) -> core.Service | core.Endpoints:
        obj.metadata.resource_version = str(rv)
        return obj

    services = {f"default/{n}": versioned(service(n, cluster_ip=f"10.96.0.{i + 20}"), i + 1)
                for i, n in enumerate(("a", "b", "c"))}
    eps = {f"default/{n}": versioned(endpoints(n), i + 10) for i, n in enumerate(("a", "b", "c"))}
    builder = SnapshotBuilder()
    first = builder.build(services.values(), eps.values())
    assert first.changed is None
    # b's endpoints changed; a changed too, but nobody said so: update believes the keys it is given.
    eps["default/b"] = versioned(endpoints("b", ready=("10.244.1.9",)), 20)
    eps["default/a"] = versioned(endpoints("a", ready=("10.244.1.8",)), 21)
    snap = builder.update(["default/b"], services.get, eps.get)
    assert snap.changed == {"default/b:http" + "tcp"}
    assert [p.service for p in snap.ports] == ["a", "b", "c"]
    assert snap.ports[0] is first.ports[0] and snap.ports[2] is first.ports[2]
    assert [e.ip for e in snap.ports[1].endpoints] == ["10.244.1.9"]
    # A new Service and a deleted one: the ports are sorted again.
    services["default/aa"] = versioned(service("aa", cluster_ip="10.96.0.30"), 30)
    del services["default/c"]
    snap = builder.update(["default/aa", "default/c", "default/nothing"], services.get, eps.get)
    assert [p.service for p in snap.ports] == ["a", "aa", "b"]
    assert snap.changed == {"default/aa:httptcp", "default/c:httptcp"}
    # The periodic rebuild reads everything, a's missed change included.
    full = builder.build(services.values(), eps.values())
    assert [e.ip for e in full.ports[0].endpoints] == ["10.244.1.8"] and full.changed is None


def test_stale_flows_look_only_at_the_hinted_ports() -> None:
    old = Snapshot((web(protocol="udp", service="a"), web(protocol="udp", service="b", cluster_ip="10.96.0.11")))
    gone_both = (web(protocol="udp", service="a", endpoints=EPS[:1]),
                 web(protocol="udp", service="b", cluster_ip="10.96.0.11", endpoints=EPS[:1]))
    hinted = Snapshot(gone_both, changed=frozenset({gone_both[1].key}))
    assert {f[3] for f in stale_udp_flows(old, hinted)} == {"10.96.0.11"}
    assert {f[3] for f in stale_udp_flows(old, Snapshot(gone_both))} == {"10.96.0.10", "10.96.0.11"}
