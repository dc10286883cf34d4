"""Scheduler plugins as pure functions of a snapshot and a pod, table-driven.

Cases follow the examples of Kubernetes' documentation for each feature
(resource requests with init containers and overhead, taints and
tolerations, node affinity, inter-pod affinity, topology spread), and the
scores follow kube-scheduler's formulas.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from kubelite.scheduler.algorithm import num_feasible_nodes_to_find, schedule
from kubelite.scheduler.framework import MAX_NODE_SCORE, Code, CycleState, FitError
from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo, Snapshot, pod_requests
from kubelite.scheduler.plugins.basic import NodeName, NodePorts, NodeUnschedulable
from kubelite.scheduler.plugins.interpodaffinity import InterPodAffinity
from kubelite.scheduler.plugins.nodeaffinity import ImageLocality, NodeAffinity, TaintToleration
from kubelite.scheduler.plugins.noderesources import (
    MOST_ALLOCATED,
    BalancedAllocation,
    FitArgs,
    NodeResourcesFit,
    balanced_score,
    resource_score,
)
from kubelite.scheduler.plugins.podtopologyspread import PodTopologySpread
from kubelite.scheduler.profile import default_profile
from tests.support.objects import make_node, make_pod

GI = 1024**3
MI = 1024**2


def _filter(plugin: Any, pod: Any, snapshot: Snapshot) -> dict[str, str]:
    """node -> "" (fits) or the refusal message, running PreFilter first like the framework."""
    info = PodInfo(pod)
    state = CycleState()
    if hasattr(plugin, "pre_filter"):
        _, status = plugin.pre_filter(state, info, snapshot)
        if status is not None and status.code == Code.SKIP:
            return {n.name: "" for n in snapshot.node_list}
    out = {}
    for node in snapshot.node_list:
        status = plugin.filter(state, info, node)
        out[node.name] = "" if status is None else status.message
    return out


def _scores(plugin: Any, pod: Any, snapshot: Snapshot) -> dict[str, int]:
    info = PodInfo(pod)
    state = CycleState()
    nodes = snapshot.node_list
    if hasattr(plugin, "pre_score"):
        status = plugin.pre_score(state, info, nodes, snapshot)
        if status is not None and status.code == Code.SKIP:
            return {n.name: 0 for n in nodes}
    scores = [plugin.score(state, info, n) for n in nodes]
    if hasattr(plugin, "normalize_score"):
        plugin.normalize_score(state, info, nodes, scores)
    return {n.name: s for n, s in zip(nodes, scores, strict=True)}


# -- requests ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "cpu", "memory"), [
    # App containers add up.
    ({"containers": [{"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                     {"name": "b", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}]}, 500, 128 * MI),
    # The documentation's init container rule: the largest init request wins when it is larger than the sum.
    ({"initContainers": [{"name": "i1", "resources": {"requests": {"cpu": "2"}}},
                         {"name": "i2", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}],
      "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "128Mi"}}}]}, 2000, GI),
    # Sidecars (restartPolicy Always) run alongside the app containers and later init containers.
    ({"initContainers": [{"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "300m"}}},
                         {"name": "i", "resources": {"requests": {"cpu": "1"}}}],
      "containers": [{"name": "a", "resources": {"requests": {"cpu": "200m"}}}]}, 1300, 0),
    # RuntimeClass overhead is added on top (the documentation's example: 250m and 120Mi).
    ({"overhead": {"cpu": "250m", "memory": "120Mi"},
      "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "100Mi"}}}]}, 750, 220 * MI),
])
def test_pod_requests_as_kubernetes_computes_them(spec: dict[str, Any], cpu: int, memory: int) -> None:
    r = pod_requests(make_pod("p", spec=spec).spec)
    assert (r.milli_cpu, r.memory) == (cpu, memory)


def test_non_zero_requests_fill_in_defaults_for_scoring() -> None:
    info = PodInfo(make_pod("p"))
    assert (info.requests.milli_cpu, info.requests.memory) == (0, 0)
    assert (info.non_zero_cpu, info.non_zero_memory) == (100, 200 * MI)


# -- NodeResourcesFit ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("pod", "expected"), [
    (make_pod("fits", cpu="1", memory="1Gi"), ""),
    (make_pod("cpu", cpu="3"), "Insufficient cpu"),
    (make_pod("both", cpu="3", memory="31Gi"), "Insufficient cpu, Insufficient memory"),
    (make_pod("ext", spec={"containers": [{"name": "a", "resources": {"requests": {"example.com/foo": "2"}}}]}),
     "Insufficient example.com/foo"),
    (make_pod("ext-ok", spec={"containers": [{"name": "a", "resources": {"requests": {"example.com/foo": "1"}}}]}),
     ""),
    (make_pod("eph", spec={"containers": [{"name": "a", "resources": {"requests": {"ephemeral-storage": "200Gi"}}}]}),
     "Insufficient ephemeral-storage"),
])
def test_node_resources_fit_filter(pod: Any, expected: str) -> None:
    node = make_node("n", cpu="4", memory="32Gi", extra={"example.com/foo": "1"})
    snapshot = Snapshot.from_objects([node], [make_pod("old", cpu="2", memory="2Gi", node_name="n")])
    assert _filter(NodeResourcesFit(), pod, snapshot) == {"n": expected}


def test_too_many_pods() -> None:
    snapshot = Snapshot.from_objects([make_node("n", pods="1")], [make_pod("old", node_name="n")])
    assert _filter(NodeResourcesFit(), make_pod("p"), snapshot) == {"n": "Too many pods"}


def test_ignored_resource_groups_are_not_checked() -> None:
    snapshot = Snapshot.from_objects([make_node("n")])
    pod = make_pod("p", spec={"containers": [{"name": "a", "resources": {"requests": {"example.com/foo": "1"}}}]})
    plugin = NodeResourcesFit(FitArgs(ignored_resource_groups=frozenset({"example.com"})))
    assert _filter(plugin, pod, snapshot) == {"n": ""}


@pytest.mark.parametrize(("requested", "allocatable", "most", "expected"), [
    # Kubernetes' own least-allocated example: cpu (4000-3000)*100/4000=25, memory (10000-5000)*100/10000=50.
    ([3000, 5000], [4000, 10000], False, (25 + 50) // 2),
    ([3000, 5000], [4000, 10000], True, (75 + 50) // 2),
    ([5000, 5000], [4000, 10000], False, (0 + 50) // 2),  # over capacity scores 0
    ([5000, 5000], [4000, 10000], True, (100 + 50) // 2),  # and counts as full
])
def test_resource_score_formulas(requested: list[int], allocatable: list[int], most: bool, expected: int) -> None:
    assert resource_score(requested, allocatable, [1, 1], most=most) == expected


def test_least_allocated_prefers_the_emptier_node_and_most_allocated_the_fuller() -> None:
    nodes = [make_node("empty", cpu="4", memory="8Gi"), make_node("busy", cpu="4", memory="8Gi")]
    snapshot = Snapshot.from_objects(nodes, [make_pod("old", cpu="2", memory="4Gi", node_name="busy")])
    pod = make_pod("p", cpu="1", memory="2Gi")
    least = _scores(NodeResourcesFit(), pod, snapshot)
    assert least == {"empty": 75, "busy": 25}
    most = _scores(NodeResourcesFit(FitArgs(strategy=MOST_ALLOCATED)), pod, snapshot)
    assert most == {"empty": 25, "busy": 75}


@pytest.mark.parametrize(("requested", "allocatable", "expected"), [
    ([2000, 4 * GI], [4000, 8 * GI], 100),  # cpu and memory half full: perfectly balanced
    ([3000, 2 * GI], [4000, 8 * GI], 75),  # fractions 0.75 and 0.25: std 0.25
    ([1000, 8 * GI], [4000, 8 * GI], 62),  # 0.25 and 1.0: std 0.375 -> 62.5 -> 62
])
def test_balanced_allocation(requested: list[int], allocatable: list[int], expected: int) -> None:
    assert balanced_score(requested, allocatable) == expected


def test_balanced_allocation_skips_best_effort_pods() -> None:
    snapshot = Snapshot.from_objects([make_node("a"), make_node("b")])
    assert _scores(BalancedAllocation(), make_pod("p"), snapshot) == {"a": 0, "b": 0}


# -- NodeUnschedulable, NodeName, NodePorts --------------------------------------------------------------------------


def test_cordoned_node_takes_only_pods_that_tolerate_it() -> None:
    snapshot = Snapshot.from_objects([make_node("cordoned", unschedulable=True), make_node("ok")])
    assert _filter(NodeUnschedulable(), make_pod("p"), snapshot) == {"cordoned": "node(s) were unschedulable",
                                                                     "ok": ""}
    tolerant = make_pod("t", spec={"tolerations": [{"key": "node.kubernetes.io/unschedulable",
                                                    "operator": "Exists", "effect": "NoSchedule"}]})
    assert _filter(NodeUnschedulable(), tolerant, snapshot) == {"cordoned": "", "ok": ""}


def test_node_name() -> None:
    snapshot = Snapshot.from_objects([make_node("a"), make_node("b")])
    assert _filter(NodeName(), make_pod("p", node_name="b"), snapshot) == {
        "a": "node(s) didn't match the requested node name", "b": ""}


@pytest.mark.parametrize(("existing", "wanted", "conflict"), [
    ({"hostPort": 8080, "containerPort": 80}, {"hostPort": 8080, "containerPort": 80}, True),
    ({"hostPort": 8080, "containerPort": 80}, {"hostPort": 8081, "containerPort": 80}, False),
    ({"hostPort": 8080, "containerPort": 80, "protocol": "UDP"}, {"hostPort": 8080, "containerPort": 80}, False),
    ({"hostPort": 8080, "containerPort": 80, "hostIP": "10.0.0.1"},
     {"hostPort": 8080, "containerPort": 80, "hostIP": "10.0.0.2"}, False),
    ({"hostPort": 8080, "containerPort": 80, "hostIP": "10.0.0.1"},
     {"hostPort": 8080, "containerPort": 80}, True),  # 0.0.0.0 overlaps every address
])
def test_node_ports(existing: dict[str, Any], wanted: dict[str, Any], conflict: bool) -> None:
    old = make_pod("old", node_name="n", spec={"containers": [{"name": "a", "image": "x", "ports": [existing]}]})
    snapshot = Snapshot.from_objects([make_node("n")], [old])
    pod = make_pod("p", spec={"containers": [{"name": "a", "image": "x", "ports": [wanted]}]})
    expected = "node(s) didn't have free ports for the requested pod ports" if conflict else ""
    assert _filter(NodePorts(), pod, snapshot) == {"n": expected}


# -- TaintToleration ---------------------------------------------------------------------------------------------


TAINT = {"key": "key1", "value": "value1", "effect": "NoSchedule"}


@pytest.mark.parametrize(("tolerations", "fits"), [
    ([], False),
    # The documentation's two tolerations that match `key1=value1:NoSchedule`.
    ([{"key": "key1", "operator": "Equal", "value": "value1", "effect": "NoSchedule"}], True),
    ([{"key": "key1", "operator": "Exists", "effect": "NoSchedule"}], True),
    ([{"key": "key1", "operator": "Equal", "value": "other", "effect": "NoSchedule"}], False),
    ([{"key": "key1", "operator": "Exists", "effect": "NoExecute"}], False),
    ([{"key": "key1", "operator": "Exists"}], True),  # an empty effect matches every effect
    ([{"operator": "Exists"}], True),  # an empty key with Exists tolerates everything
])
def test_taint_toleration_filter(tolerations: list[dict[str, str]], fits: bool) -> None:
    snapshot = Snapshot.from_objects([make_node("n", taints=[TAINT])])
    pod = make_pod("p", spec={"tolerations": tolerations} if tolerations else None)
    expected = "" if fits else "node(s) had untolerated taint {key1: value1}"
    assert _filter(TaintToleration(), pod, snapshot) == {"n": expected}


def test_prefer_no_schedule_taints_score_lower() -> None:
    soft = {"key": "k", "value": "v", "effect": "PreferNoSchedule"}
    soft2 = {"key": "k2", "value": "v", "effect": "PreferNoSchedule"}
    snapshot = Snapshot.from_objects([make_node("clean"), make_node("one", taints=[soft]),
                                      make_node("two", taints=[soft, soft2])])
    assert _scores(TaintToleration(), make_pod("p"), snapshot) == {"clean": 100, "one": 50, "two": 0}
    tolerant = make_pod("t", spec={"tolerations": [{"key": "k", "operator": "Exists", "effect": "PreferNoSchedule"}]})
    assert _scores(TaintToleration(), tolerant, snapshot) == {"clean": 100, "one": 100, "two": 0}


# -- NodeAffinity -----------------------------------------------------------------------------------------------


def _required(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": list(terms)}}}}


ZONES = [make_node("east", labels={"topology.kubernetes.io/zone": "antarctica-east1", "cores": "8"}),
         make_node("west", labels={"topology.kubernetes.io/zone": "antarctica-west1", "cores": "2"}),
         make_node("other", labels={"topology.kubernetes.io/zone": "elsewhere", "disktype": "ssd"})]


@pytest.mark.parametrize(("spec", "fitting"), [
    ({"nodeSelector": {"disktype": "ssd"}}, {"other"}),
    # The documentation's required term: zone In [antarctica-east1, antarctica-west1].
    (_required({"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In",
                                      "values": ["antarctica-east1", "antarctica-west1"]}]}), {"east", "west"}),
    (_required({"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "NotIn",
                                      "values": ["elsewhere"]}]}), {"east", "west"}),
    (_required({"matchExpressions": [{"key": "disktype", "operator": "Exists"}]}), {"other"}),
    (_required({"matchExpressions": [{"key": "disktype", "operator": "DoesNotExist"}]}), {"east", "west"}),
    (_required({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}), {"east"}),
    (_required({"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]}), {"west"}),
    # Terms are ORed; requirements within a term are ANDed.
    (_required({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]},
               {"matchExpressions": [{"key": "disktype", "operator": "Exists"}]}), {"east", "other"}),
    (_required({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["west"]}]}), {"west"}),
    (_required({"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["west"]}]}),
     {"east", "other"}),
    # nodeSelector and affinity must both be satisfied.
    ({"nodeSelector": {"disktype": "ssd"}, **_required({"matchExpressions": [
        {"key": "cores", "operator": "Exists"}]})}, set()),
])
def test_node_affinity_filter(spec: dict[str, Any], fitting: set[str]) -> None:
    result = _filter(NodeAffinity(), make_pod("p", spec=spec), Snapshot.from_objects(ZONES))
    assert {n for n, why in result.items() if not why} == fitting
    assert {why for why in result.values() if why} <= {"node(s) didn't match Pod's node affinity/selector"}


def test_node_affinity_preferred_terms_score_by_weight() -> None:
    spec = {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": {"matchExpressions": [{"key": "disktype", "operator": "In", "values": ["ssd"]}]}},
        {"weight": 50, "preference": {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}},
    ]}}}
    # Normalised so that the best node gets 100: 50 -> 100, 1 -> 2, 0 -> 0.
    assert _scores(NodeAffinity(), make_pod("p", spec=spec), Snapshot.from_objects(ZONES)) == {
        "east": 100, "west": 0, "other": 2}


# -- ImageLocality ------------------------------------------------------------------------------------------------


def test_image_locality_prefers_nodes_with_the_image() -> None:
    nodes = [make_node("has", images=[("registry.local/big:1", 500 * MI)]),
             make_node("tiny", images=[("registry.local/small:1", 10 * MI)]), make_node("none")]
    snapshot = Snapshot.from_objects(nodes)
    pod = make_pod("p", image="registry.local/big:1")
    # 500 MiB spread over 1 of 3 nodes: 166.67 MiB, scaled between 23 MiB and 1000 MiB.
    expected = MAX_NODE_SCORE * (int(500 * MI / 3) - 23 * MI) // (1000 * MI - 23 * MI)
    assert _scores(ImageLocality(), pod, snapshot) == {"has": expected, "tiny": 0, "none": 0}


def test_image_names_without_tag_mean_latest() -> None:
    snapshot = Snapshot.from_objects([make_node("n", images=[("nginx:latest", 900 * MI)])])
    assert _scores(ImageLocality(), make_pod("p", image="nginx"), snapshot)["n"] > 0


# -- InterPodAffinity ---------------------------------------------------------------------------------------------


def _zone_nodes() -> list[Any]:
    return [make_node(f"n{i}", labels={"topology.kubernetes.io/zone": z})
            for i, z in enumerate(["a", "a", "b", "c"])]


def _term(labels: dict[str, str], key: str = "topology.kubernetes.io/zone", **extra: Any) -> dict[str, Any]:
    return {"labelSelector": {"matchExpressions": [{"key": k, "operator": "In", "values": [v]}
                                                   for k, v in labels.items()]}, "topologyKey": key, **extra}


def test_required_affinity_and_anti_affinity_from_the_documentation() -> None:
    # The documentation's example: with a security=S1 pod in zone a and a security=S2 pod in zone b,
    # a pod with affinity to S1 and anti-affinity to S2 (both by zone) may run only in zone a.
    # (An S1 pod in zone b too, so that zone b is refused by the anti-affinity alone.)
    existing = [make_pod("s1", labels={"security": "S1"}, node_name="n0"),
                make_pod("s1-b", labels={"security": "S1"}, node_name="n2"),
                make_pod("s2", labels={"security": "S2"}, node_name="n2")]
    snapshot = Snapshot.from_objects(_zone_nodes(), existing)
    spec = {"affinity": {
        "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [_term({"security": "S1"})]},
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [_term({"security": "S2"})]}}}
    assert _filter(InterPodAffinity(), make_pod("p", spec=spec), snapshot) == {
        "n0": "", "n1": "", "n2": "node(s) didn't match pod anti-affinity rules",
        "n3": "node(s) didn't match pod affinity rules"}


def test_first_pod_of_a_group_with_affinity_to_itself_may_start() -> None:
    snapshot = Snapshot.from_objects(_zone_nodes())
    spec = {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [_term({"app": "web"})]}}}
    mine = make_pod("p", labels={"app": "web"}, spec=spec)
    assert set(_filter(InterPodAffinity(), mine, snapshot).values()) == {""}
    other = make_pod("q", labels={"app": "db"}, spec=spec)
    assert set(_filter(InterPodAffinity(), other, snapshot).values()) == {"node(s) didn't match pod affinity rules"}


def test_existing_pods_anti_affinity_is_honoured() -> None:
    spec = {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        _term({"app": "store"}, "kubernetes.io/hostname")]}}}
    existing = [make_pod("store-1", labels={"app": "store"}, node_name="n1", spec=spec)]
    snapshot = Snapshot.from_objects(_zone_nodes(), existing)
    result = _filter(InterPodAffinity(), make_pod("p", labels={"app": "store"}), snapshot)
    assert result == {"n0": "", "n1": "node(s) didn't satisfy existing pods anti-affinity rules", "n2": "",
                      "n3": ""}


def test_affinity_terms_match_only_listed_namespaces() -> None:
    existing = [make_pod("s1", namespace="other", labels={"security": "S1"}, node_name="n0")]
    snapshot = Snapshot.from_objects(_zone_nodes(), existing)
    same_ns = {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        _term({"security": "S1"})]}}}
    listed = {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        _term({"security": "S1"}, namespaces=["other"])]}}}
    assert set(_filter(InterPodAffinity(), make_pod("p", spec=same_ns), snapshot).values()) == {
        "node(s) didn't match pod affinity rules"}
    assert _filter(InterPodAffinity(), make_pod("p", spec=listed), snapshot)["n1"] == ""


def test_preferred_pod_affinity_scores() -> None:
    existing = [make_pod("web", labels={"app": "web"}, node_name="n0")]
    snapshot = Snapshot.from_objects(_zone_nodes(), existing)
    spec = {"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "podAffinityTerm": _term({"app": "web"})}]}}}
    assert _scores(InterPodAffinity(), make_pod("p", spec=spec), snapshot) == {"n0": 100, "n1": 100, "n2": 0, "n3": 0}
    anti = {"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "podAffinityTerm": _term({"app": "web"})}]}}}
    assert _scores(InterPodAffinity(), make_pod("p", spec=anti), snapshot) == {"n0": 0, "n1": 0, "n2": 100, "n3": 100}


# -- PodTopologySpread --------------------------------------------------------------------------------------------


def _spread_cluster() -> Snapshot:
    # The documentation's cluster: zoneA = node1, node2; zoneB = node3, node4; foo=bar pods on node1..3.
    nodes = [make_node(f"node{i}", labels={"zone": "zoneA" if i <= 2 else "zoneB"}) for i in range(1, 5)]
    pods = [make_pod(f"p{i}", labels={"foo": "bar"}, node_name=f"node{i}") for i in range(1, 4)]
    return Snapshot.from_objects(nodes, pods)


def _spread(*constraints: dict[str, Any]) -> dict[str, Any]:
    return {"topologySpreadConstraints": [
        {"maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"foo": "bar"}},
         **c} for c in constraints]}


def test_topology_spread_one_constraint_from_the_documentation() -> None:
    # Two in zoneA and one in zoneB: one more in zoneA would make the skew 2.
    result = _filter(PodTopologySpread(), make_pod("new", labels={"foo": "bar"},
                                                   spec=_spread({"topologyKey": "zone"})), _spread_cluster())
    assert {n for n, why in result.items() if not why} == {"node3", "node4"}
    assert result["node1"] == "node(s) didn't match pod topology spread constraints"


def test_topology_spread_two_constraints_from_the_documentation() -> None:
    spec = _spread({"topologyKey": "zone"}, {"topologyKey": "kubernetes.io/hostname"})
    result = _filter(PodTopologySpread(), make_pod("new", labels={"foo": "bar"}, spec=spec), _spread_cluster())
    assert {n for n, why in result.items() if not why} == {"node4"}


def test_topology_spread_min_domains_counts_missing_domains_as_empty() -> None:
    # Only 2 zones exist but 3 are required: the global minimum is 0, so zone a (2 pods) and b (1 pod)
    # are both at skew >= 1 + 1; with maxSkew 1, only a zone at 0 would do, and none exists.
    spec = _spread({"topologyKey": "zone", "minDomains": 3})
    result = _filter(PodTopologySpread(), make_pod("new", labels={"foo": "bar"}, spec=spec), _spread_cluster())
    assert set(result.values()) == {"node(s) didn't match pod topology spread constraints"}
    loose = _spread({"topologyKey": "zone", "minDomains": 3, "maxSkew": 2})
    result = _filter(PodTopologySpread(), make_pod("new", labels={"foo": "bar"}, spec=loose), _spread_cluster())
    assert {n for n, why in result.items() if not why} == {"node3", "node4"}


def test_topology_spread_node_without_the_key_is_unresolvable() -> None:
    snapshot = Snapshot.from_objects([make_node("labelled", labels={"zone": "a"}), make_node("bare")])
    result = _filter(PodTopologySpread(), make_pod("p", labels={"foo": "bar"}, spec=_spread({"topologyKey": "zone"})),
                     snapshot)
    assert result == {"labelled": "", "bare": ("node(s) didn't match pod topology spread constraints "
                                               "(missing required label)")}


def test_topology_spread_schedule_anyway_scores_emptier_domains_higher() -> None:
    spec = _spread({"topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"})
    scores = _scores(PodTopologySpread(), make_pod("new", labels={"foo": "bar"}, spec=spec), _spread_cluster())
    assert scores["node3"] == scores["node4"] > scores["node1"] == scores["node2"]
    assert scores["node3"] == MAX_NODE_SCORE


# -- the whole cycle: sampling, explanation, selection ------------------------------------------------------------


@pytest.mark.parametrize(("nodes", "percentage", "expected"), [
    (50, 0, 50), (99, 0, 99), (100, 0, 100), (1000, 0, 420), (5000, 0, 500), (6000, 0, 300),
    (10000, 0, 500), (1000, 30, 300), (1000, 5, 100), (1000, 100, 1000),
])
def test_num_feasible_nodes_to_find(nodes: int, percentage: int, expected: int) -> None:
    assert num_feasible_nodes_to_find(nodes, percentage) == expected


def test_sampling_stops_early_and_the_next_cycle_continues_round_robin() -> None:
    snapshot = Snapshot.from_objects([make_node(f"n{i:03}") for i in range(1000)])
    decision = schedule(default_profile(), snapshot, PodInfo(make_pod("p", cpu="100m")), start_index=0,
                        rng=random.Random(1))
    assert decision.result.evaluated_nodes == 420 and decision.result.feasible_nodes == 420
    assert decision.next_start_index == 420
    again = schedule(default_profile(), snapshot, PodInfo(make_pod("q", cpu="100m")), start_index=900,
                     rng=random.Random(1))
    assert again.next_start_index == (900 + 420) % 1000


def test_fit_error_aggregates_reasons_like_kube_scheduler() -> None:
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    nodes = [make_node(f"n{i}", cpu="1", taints=[taint] if i < 2 else []) for i in range(5)]
    with pytest.raises(FitError) as err:
        schedule(default_profile(), Snapshot.from_objects(nodes), PodInfo(make_pod("big", cpu="2")))
    # As kube-scheduler: the filters' histogram, then what preemption found (taints it cannot cure).
    assert str(err.value) == ("0/5 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}, "
                              "3 Insufficient cpu. preemption: 0/5 nodes are available: 2 Preemption is not "
                              "helpful for scheduling, 3 No preemption victims found for incoming pod.")
    assert err.value.node_reasons()[0] == ("n0", "TaintToleration", "node(s) had untolerated taint {dedicated: gpu}")
    assert err.value.node_reasons()[4] == ("n4", "NodeResourcesFit", "Insufficient cpu")
    assert err.value.diagnosis.unschedulable_plugins == {"TaintToleration", "NodeResourcesFit"}


def test_no_nodes() -> None:
    with pytest.raises(FitError, match=r"^0/0 nodes are available: no nodes available to schedule pods\.$"):
        schedule(default_profile(), Snapshot(), PodInfo(make_pod("p")))


def test_match_fields_narrows_candidates_before_filtering() -> None:
    snapshot = Snapshot.from_objects(ZONES)
    pod = make_pod("p", spec=_required({"matchFields": [{"key": "metadata.name", "operator": "In",
                                                          "values": ["west"]}]}))
    assert schedule(default_profile(), snapshot, PodInfo(pod)).result.suggested_host == "west"


def test_the_best_scored_node_wins() -> None:
    nodes = [make_node("small", cpu="2", memory="4Gi"), make_node("big", cpu="16", memory="64Gi")]
    decision = schedule(default_profile(), Snapshot.from_objects(nodes), PodInfo(make_pod("p", cpu="1", memory="1Gi")))
    assert decision.result.suggested_host == "big"
    assert decision.scores["big"] > decision.scores["small"]


def test_node_info_accounts_pods_added_and_removed() -> None:
    info = NodeInfo("n")
    info.set_node(make_node("n"))
    pod = PodInfo(make_pod("p", cpu="1", memory="1Gi", node_name="n", spec={"containers": [
        {"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 80}],
         "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}))
    info.add_pod(pod)
    assert (info.requested.milli_cpu, info.requested.memory, len(info.used_ports)) == (1000, GI, 1)
    assert info.remove_pod(pod)
    assert (info.requested.milli_cpu, info.requested.memory, len(info.used_ports)) == (0, 0, 0)


# -- the vectorised path agrees with the per-node path --------------------------------------------------------


def _random_cluster(rng: random.Random, n: int) -> tuple[list[Any], list[Any]]:
    taints = [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
              {"key": "spot", "value": "true", "effect": "PreferNoSchedule"}]
    nodes = [make_node(f"n{i:03}", cpu=str(rng.choice([1, 2, 4, 8])), memory=f"{rng.choice([2, 4, 16])}Gi",
                       pods=str(rng.choice([3, 110])), unschedulable=rng.random() < 0.05,
                       taints=[t for t in taints if rng.random() < 0.15],
                       labels={"topology.kubernetes.io/zone": f"z{i % 3}"}) for i in range(n)]
    ports = {"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}],
                             "resources": {"requests": {"cpu": "100m"}}}]}
    guard = {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}},
        "containers": [{"name": "a", "image": "x"}]}
    pods = [make_pod(f"old{i}", cpu=f"{rng.choice([100, 500, 1500])}m", memory=f"{rng.choice([128, 1024])}Mi",
                     node_name=f"n{rng.randrange(n):03}", labels={"app": rng.choice(["web", "db", "cache"])},
                     spec=ports if rng.random() < 0.1 else guard if rng.random() < 0.05 else None)
            for i in range(n)]
    return nodes, pods


def test_vectorised_and_per_node_decisions_are_identical() -> None:
    rng = random.Random(7)
    nodes, existing = _random_cluster(rng, 300)
    snapshot = Snapshot.from_objects(nodes, existing)
    tolerate = {"tolerations": [{"key": "dedicated", "operator": "Exists"}]}
    ports = {"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}
    candidates = [make_pod("plain", cpu="200m", memory="256Mi"), make_pod("none"), make_pod("big", cpu="3"),
                  make_pod("tol", cpu="1", spec=tolerate), make_pod("ports", spec=ports),
                  make_pod("huge", cpu="64"),
                  make_pod("web", labels={"app": "web"}),
                  make_pod("anti-zone", labels={"app": "db"}, spec={"affinity": {"podAntiAffinity": {
                      "requiredDuringSchedulingIgnoredDuringExecution": [
                          _term({"app": "cache"}, "kubernetes.io/hostname")]}}}),
                  make_pod("with-db", spec={"affinity": {"podAffinity": {
                      "requiredDuringSchedulingIgnoredDuringExecution": [_term({"app": "db"})]}}}),
                  make_pod("with-nobody", labels={"app": "x"}, spec={"affinity": {"podAffinity": {
                      "requiredDuringSchedulingIgnoredDuringExecution": [_term({"app": "x"})]}}}),
                  make_pod("spread", labels={"app": "web"}, spec=_spread({
                      "topologyKey": "topology.kubernetes.io/zone",
                      "labelSelector": {"matchLabels": {"app": "web"}}})),
                  make_pod("spread-host", labels={"app": "db"}, spec=_spread({
                      "topologyKey": "kubernetes.io/hostname", "maxSkew": 2,
                      "labelSelector": {"matchLabels": {"app": "db"}}})),
                  make_pod("spread-min", labels={"app": "web"}, spec=_spread({
                      "topologyKey": "topology.kubernetes.io/zone", "minDomains": 4, "maxSkew": 30,
                      "labelSelector": {"matchLabels": {"app": "web"}}})),
                  make_pod("spread-selected", labels={"app": "web"}, spec={
                      "nodeSelector": {"topology.kubernetes.io/zone": "z1"},
                      **_spread({"topologyKey": "kubernetes.io/hostname",
                                 "labelSelector": {"matchLabels": {"app": "web"}}})}),
                  make_pod("soft", labels={"app": "web"}, spec=_spread({
                      "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
                      "labelSelector": {"matchLabels": {"app": "web"}}}))]
    profile = default_profile()
    outcomes: dict[str, Any] = {}
    for pod in candidates:
        for start in (0, 17, 299):
            results = []
            for vectorized in (True, False):
                try:
                    d = schedule(profile, snapshot, PodInfo(pod), start_index=start, rng=random.Random(3),
                                 vectorized=vectorized)
                    results.append((d.result, d.next_start_index, d.scores))
                except FitError as err:
                    results.append((str(err), 0, {}))
            assert results[0] == results[1], pod.metadata.name
            outcomes[pod.metadata.name] = results[0][0]
    # The cases are not all alike: some fit, some fit nowhere.
    assert sum(isinstance(o, str) for o in outcomes.values()) >= 2
    assert sum(not isinstance(o, str) for o in outcomes.values()) >= 10


# -- DefaultPreemption -------------------------------------------------------------------------------------------


def _prio(pod: Any, priority: int) -> Any:
    pod.spec.priority = priority
    return pod


def test_preemption_picks_the_node_with_the_least_important_victims() -> None:
    nodes = [make_node("a", cpu="2"), make_node("b", cpu="2"), make_node("c", cpu="2", taints=[TAINT])]
    existing = [_prio(make_pod("a-low", cpu="1", node_name="a"), 10),
                _prio(make_pod("a-mid", cpu="1", node_name="a"), 50),
                _prio(make_pod("b-mid1", cpu="1", node_name="b"), 50),
                _prio(make_pod("b-mid2", cpu="1", node_name="b"), 50),
                _prio(make_pod("c-low", cpu="2", node_name="c"), 1)]
    snapshot = Snapshot.from_objects(nodes, existing)
    pod = _prio(make_pod("urgent", cpu="1"), 100)
    with pytest.raises(FitError) as err:
        schedule(default_profile(), snapshot, PodInfo(pod))
    d = err.value.diagnosis
    # On a, evicting a-low suffices (a-mid is given back); on b a priority-50 pod must go; c is tainted.
    assert d.nominated_node == "a"
    assert [v.name for v in d.victims] == ["a-low"]


def test_preemption_needs_lower_priority_pods_and_respects_never() -> None:
    snapshot = Snapshot.from_objects([make_node("a", cpu="1")], [_prio(make_pod("same", cpu="1", node_name="a"), 100)])
    with pytest.raises(FitError) as err:
        schedule(default_profile(), snapshot, PodInfo(_prio(make_pod("p", cpu="1"), 100)))
    assert not err.value.diagnosis.nominated_node
    assert str(err.value).endswith("preemption: 0/1 nodes are available: 1 No preemption victims found for "
                                   "incoming pod.")
    never = _prio(make_pod("p", cpu="1", spec={"preemptionPolicy": "Never"}), 1000)
    with pytest.raises(FitError) as err:
        schedule(default_profile(), snapshot, PodInfo(never))
    assert str(err.value).endswith("preemption: not eligible due to preemptionPolicy=Never.")


def test_inter_pod_affinity_label_index_finds_what_a_full_scan_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(11)
    nodes, existing = _random_cluster(rng, 200)
    snapshot = Snapshot.from_objects(nodes, existing)
    terms = [_term({"app": "web"}), _term({"app": "db"}, "kubernetes.io/hostname"),
             {"labelSelector": {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["db"]}]},
              "topologyKey": "topology.kubernetes.io/zone"}]
    plugin = InterPodAffinity()
    for term in terms:
        pod = make_pod("p", spec={"affinity": {
            "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]},
            "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}})
        indexed = CycleState()
        plugin.pre_filter(indexed, PodInfo(pod), snapshot)
        with monkeypatch.context() as m:
            m.setattr(snapshot, "candidates", lambda selector: None)
            scanned = CycleState()
            plugin.pre_filter(scanned, PodInfo(pod), snapshot)
        assert indexed.read(plugin.name) == scanned.read(plugin.name)
        assert indexed.read(plugin.name).anti  # the cases are not empty


@pytest.mark.parametrize("reverse", [False, True])
def test_the_array_normalization_gives_the_per_node_one(reverse: bool) -> None:
    import numpy as np

    from kubelite.scheduler.columns import default_normalize_batch
    from kubelite.scheduler.framework import default_normalize_score

    rng = random.Random(5)
    for scores in ([0, 0, 0], [3, 0, 1], [rng.randrange(0, 50) for _ in range(200)], []):
        expected = list(scores)
        default_normalize_score(MAX_NODE_SCORE, reverse, expected)
        got = default_normalize_batch(MAX_NODE_SCORE, reverse, np.asarray(scores, np.int64))
        assert got.tolist() == expected
