"""The scheduler cache: assumed pods count at once, and snapshots re-read only what changed."""

from __future__ import annotations

from kubelite.scheduler.cache import Cache
from kubelite.scheduler.nodeinfo import PodInfo, Snapshot
from tests.support.objects import make_node, make_pod


def _cache(n: int = 3) -> tuple[Cache, Snapshot]:
    cache = Cache()
    for i in range(n):
        cache.add_node(make_node(f"n{i}", cpu="4"))
    snapshot = Snapshot()
    cache.update_snapshot(snapshot)
    return cache, snapshot


def test_only_changed_nodes_are_recloned() -> None:
    cache, snapshot = _cache(100)
    before = {n.name: n for n in snapshot.node_list}
    cache.add_pod(make_pod("p", cpu="1", node_name="n7"))
    assert cache.update_snapshot(snapshot) == 1
    assert snapshot.get("n7") is not before["n7"] and snapshot.get("n7").requested.milli_cpu == 1000  # type: ignore[union-attr]
    assert snapshot.get("n8") is before["n8"]
    assert snapshot.node_list[7] is snapshot.get("n7")
    assert cache.update_snapshot(snapshot) == 0


def test_snapshot_is_isolated_from_later_cache_changes() -> None:
    cache, snapshot = _cache()
    cache.add_pod(make_pod("p", cpu="1", node_name="n0"))
    assert snapshot.get("n0").requested.milli_cpu == 0  # type: ignore[union-attr]
    cache.update_snapshot(snapshot)
    assert snapshot.get("n0").requested.milli_cpu == 1000  # type: ignore[union-attr]


def test_assume_counts_at_once_forget_takes_back_and_the_watch_confirms() -> None:
    cache, snapshot = _cache()
    pod = make_pod("p", cpu="3")
    assumed = PodInfo(pod).with_node("n1")
    cache.assume_pod(assumed)
    cache.update_snapshot(snapshot)
    assert snapshot.get("n1").requested.milli_cpu == 3000  # type: ignore[union-attr]
    assert cache.is_assumed("default/p")
    cache.forget_pod(assumed)
    cache.update_snapshot(snapshot)
    assert snapshot.get("n1").requested.milli_cpu == 0  # type: ignore[union-attr]

    cache.assume_pod(assumed)
    bound = make_pod("p", cpu="3", node_name="n1")
    cache.add_pod(bound)  # the informer's ADDED for the bound pod
    assert not cache.is_assumed("default/p")
    cache.update_snapshot(snapshot)
    assert snapshot.get("n1").requested.milli_cpu == 3000  # type: ignore[union-attr]
    assert cache.pod_count == 1
    cache.remove_pod(bound)
    cache.update_snapshot(snapshot)
    assert snapshot.get("n1").requested.milli_cpu == 0  # type: ignore[union-attr]


def test_nodes_added_and_removed_change_the_list() -> None:
    cache, snapshot = _cache(2)
    cache.add_node(make_node("new"))
    cache.update_snapshot(snapshot)
    assert [n.name for n in snapshot.node_list] == ["n0", "n1", "new"]
    cache.remove_node("n0")
    cache.update_snapshot(snapshot)
    assert [n.name for n in snapshot.node_list] == ["n1", "new"]


def test_pods_with_affinity_are_listed_for_inter_pod_affinity() -> None:
    cache, snapshot = _cache(2)
    spec = {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "kubernetes.io/hostname"}]}}}
    cache.add_pod(make_pod("p", node_name="n1", spec=spec, labels={"app": "x"}))
    cache.update_snapshot(snapshot)
    assert [n.name for n in snapshot.have_pods_with_required_anti_affinity] == ["n1"]
    cache.remove_pod(make_pod("p", node_name="n1", spec=spec, labels={"app": "x"}))
    cache.update_snapshot(snapshot)
    assert snapshot.have_pods_with_required_anti_affinity == []


def test_anti_affinity_aggregate_follows_incremental_changes() -> None:
    cache, snapshot = _cache(4)
    spec = {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "zone"}]}},
        "containers": [{"name": "a", "image": "x"}]}
    for i in range(4):
        cache.add_node(make_node(f"n{i}", labels={"zone": f"z{i % 2}"}))
    pods = [make_pod(f"p{i}", node_name=f"n{i % 4}", spec=spec, labels={"app": "x" if i % 2 else "y"})
            for i in range(6)]
    for pod in pods:
        cache.add_pod(pod)
        cache.update_snapshot(snapshot)
    cache.remove_pod(pods[0])
    cache.update_snapshot(snapshot)
    cache.add_node(make_node("n1", labels={"zone": "z9"}))  # relabelled: its pods move domain
    cache.update_snapshot(snapshot)
    incremental = {t.topology_key: dict(c) for t, c in snapshot.anti_terms.items()}
    by_label = {pair: {k: (p.key, n) for k, (p, n) in pods.items()} for pair, pods in snapshot.pods_by_label.items()}
    snapshot.rebuild_lists(order_changed=False)
    assert incremental == {t.topology_key: dict(c) for t, c in snapshot.anti_terms.items()}
    assert by_label == {pair: {k: (p.key, n) for k, (p, n) in pods.items()}
                        for pair, pods in snapshot.pods_by_label.items()}
    # p0 was removed; p1 and p5 sit on n1, p3 on n3 (app=x); p2 and p4 on n2 and n0 (app=y).
    assert by_label == {("app", "x"): {"default/p1": ("default/p1", "n1"), "default/p3": ("default/p3", "n3"),
                                       "default/p5": ("default/p5", "n1")},
                        ("app", "y"): {"default/p2": ("default/p2", "n2"), "default/p4": ("default/p4", "n0")}}
    assert incremental == {"zone": {("zone", "z0"): 2, ("zone", "z1"): 1, ("zone", "z9"): 2}}


def test_the_watch_confirming_a_binding_reuses_the_digest_unless_something_digested_changed() -> None:
    cache = Cache()
    cache.add_node(make_node("a", cpu="4"))
    pending = make_pod("p", cpu="1", labels={"app": "web"})
    assumed = PodInfo(pending).with_node("a")
    cache.assume_pod(assumed)
    bound = make_pod("p", cpu="1", labels={"app": "web"}, node_name="a")
    bound.status.start_time.seconds = 100
    cache.add_pod(bound)
    confirmed = cache.pod("default/p")
    assert confirmed is not None and not cache.is_assumed("default/p")
    assert confirmed.pod is bound and confirmed.node_name == "a" and confirmed.start_time == 100
    assert confirmed.requests is assumed.requests  # not digested again
    # A status update that deletes it: still the digest, now terminating.
    going = make_pod("p", cpu="1", labels={"app": "web"}, node_name="a")
    going.metadata.deletion_timestamp.seconds = 5
    cache.update_pod(going)
    again = cache.pod("default/p")
    assert again is not None and again.terminating and again.requests is assumed.requests
    # Labels or requests changed: digested afresh.
    for changed in (make_pod("p", cpu="1", labels={"app": "db"}, node_name="a"),
                    make_pod("p", cpu="2", labels={"app": "web"}, node_name="a")):
        before = cache.pod("default/p")
        assert before is not None
        cache.update_pod(changed)
        after = cache.pod("default/p")
        assert after is not None and after.requests is not before.requests
        assert after.labels == dict(changed.metadata.labels) and after.requests.milli_cpu == \
            PodInfo(changed).requests.milli_cpu
    snapshot = Snapshot()
    cache.update_snapshot(snapshot)
    node = snapshot.get("a")
    assert node is not None and node.requested.milli_cpu == 2000
