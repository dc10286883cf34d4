"""What plugins read: pods and nodes digested once, and the snapshot that holds them.

Parsing quantities, selectors and tolerations out of protobuf messages costs
far more than comparing numbers, and a pod is compared against hundreds of
nodes. So each pod is digested once into a ``PodInfo`` (its requests as
Kubernetes computes them, its ports, its affinity terms compiled), and each
node into a ``NodeInfo`` that also aggregates the pods on it (requested
resources, used host ports, pods with affinity terms). Plugins read only these.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.meta.v1 import generated_pb2 as metav1
from kubelite.api.policy.v1 import generated_pb2 as policy
from kubelite.machinery.errors import StatusError
from kubelite.machinery.quantity import QuantityError, parse_quantity
from kubelite.machinery.selectors import LabelSelector, from_label_selector_proto
from kubelite.scheduler.columns import Columns, IntArray

CPU = "cpu"
MEMORY = "memory"
EPHEMERAL_STORAGE = "ephemeral-storage"
PODS = "pods"

# For scoring only, a container that requests nothing is counted as asking for
# this much (Kubernetes' non-zero defaults), so that best-effort pods do not all
# pile onto one node.
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024

LABEL_HOSTNAME = "kubernetes.io/hostname"
LABEL_ZONE = "topology.kubernetes.io/zone"


@functools.lru_cache(maxsize=4096)
def quantity_value(name: str, text: str) -> int:
    """A quantity in the unit the scheduler counts: millicores for cpu, else whole units (rounded up)."""
    try:
        value: Fraction = parse_quantity(text)
    except QuantityError as exc:
        raise ValueError(f"{name}: invalid quantity {text!r}") from exc
    if name == CPU:
        value *= 1000
    return math.ceil(value)


@dataclass(slots=True)
class Resource:
    """Amounts of cpu (millicores), memory and ephemeral storage (bytes) and scalar resources."""

    milli_cpu: int = 0
    memory: int = 0
    ephemeral_storage: int = 0
    scalar: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_map(cls, resources: Mapping[str, str]) -> Resource:
        r = cls()
        for name, text in resources.items():
            r.set(name, quantity_value(name, text))
        return r

    def get(self, name: str) -> int:
        if name == CPU:
            return self.milli_cpu
        if name == MEMORY:
            return self.memory
        if name == EPHEMERAL_STORAGE:
            return self.ephemeral_storage
        return self.scalar.get(name, 0)

    def set(self, name: str, value: int) -> None:
        if name == CPU:
            self.milli_cpu = value
        elif name == MEMORY:
            self.memory = value
        elif name == EPHEMERAL_STORAGE:
            self.ephemeral_storage = value
        elif name != PODS:
            self.scalar[name] = value

    def add(self, other: Resource, sign: int = 1) -> None:
        self.milli_cpu += sign * other.milli_cpu
        self.memory += sign * other.memory
        self.ephemeral_storage += sign * other.ephemeral_storage
        for name, value in other.scalar.items():
            self.scalar[name] = self.scalar.get(name, 0) + sign * value

    def set_max(self, other: Resource) -> None:
        self.milli_cpu = max(self.milli_cpu, other.milli_cpu)
        self.memory = max(self.memory, other.memory)
        self.ephemeral_storage = max(self.ephemeral_storage, other.ephemeral_storage)
        for name, value in other.scalar.items():
            self.scalar[name] = max(self.scalar.get(name, 0), value)

    def copy(self) -> Resource:
        return Resource(self.milli_cpu, self.memory, self.ephemeral_storage, dict(self.scalar))

    def is_zero(self) -> bool:
        return not (self.milli_cpu or self.memory or self.ephemeral_storage or any(self.scalar.values()))


def pod_requests(spec: core.PodSpec, *, non_zero: bool = False) -> Resource:
    """A pod's effective request, as Kubernetes computes it.

    The app containers run together, so their requests add up; init
    containers run one at a time before them, so only the largest counts,
    except sidecars (restartPolicy Always), which keep running and add to
    everything started after them. The result is the larger of the two, plus
    the pod's overhead. ``non_zero`` substitutes the scoring defaults for a
    container's missing cpu or memory request.
    """

    def container_request(c: core.Container) -> Resource:
        r = Resource.from_map(c.resources.requests)
        if non_zero:
            if CPU not in c.resources.requests:
                r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST
            if MEMORY not in c.resources.requests:
                r.memory = DEFAULT_MEMORY_REQUEST
        return r

    total = Resource()
    for c in spec.containers:
        total.add(container_request(c))
    sidecars = Resource()
    init_max = Resource()
    for c in spec.init_containers:
        req = container_request(c)
        if c.HasField("restart_policy") and c.restart_policy == "Always":
            total.add(req)
            sidecars.add(req)
            effective = sidecars.copy()
        else:
            effective = req
            effective.add(sidecars)
        init_max.set_max(effective)
    total.set_max(init_max)
    if spec.overhead:
        total.add(Resource.from_map(spec.overhead))
    return total


# -- compiled selectors ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeSelectorRequirement:
    key: str
    operator: str  # In NotIn Exists DoesNotExist Gt Lt
    values: frozenset[str]
    number: int = 0

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        value = labels.get(self.key)
        if op == "In":
            return value is not None and value in self.values
        if op == "NotIn":
            return value is None or value not in self.values
        if op == "Exists":
            return value is not None
        if op == "DoesNotExist":
            return value is None
        if value is None:
            return False
        try:
            have = int(value)
        except ValueError:
            return False
        return have > self.number if op == "Gt" else have < self.number


@dataclass(frozen=True, slots=True)
class NodeSelectorTerm:
    """Requirements ANDed; a term with none matches no node (as in Kubernetes)."""

    expressions: tuple[NodeSelectorRequirement, ...]
    fields: tuple[NodeSelectorRequirement, ...]

    def matches(self, node: NodeInfo) -> bool:
        if not self.expressions and not self.fields:
            return False
        labels = node.labels
        for r in self.expressions:
            if not r.matches(labels):
                return False
        if self.fields:
            names = {"metadata.name": node.name}
            for r in self.fields:
                if not r.matches(names):
                    return False
        return True


def compile_requirement(req: core.NodeSelectorRequirement, path: str) -> NodeSelectorRequirement:
    op = req.operator
    if op not in ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"):
        raise ValueError(f"{path}.operator: Unsupported value: {op!r}")
    number = 0
    if op in ("Gt", "Lt"):
        if len(req.values) != 1:
            raise ValueError(f"{path}.values: must have one element for operator {op}")
        try:
            number = int(req.values[0])
        except ValueError:
            raise ValueError(f"{path}.values[0]: Invalid value: {req.values[0]!r}: must be an integer") from None
    return NodeSelectorRequirement(req.key, op, frozenset(req.values), number)


def compile_term(term: core.NodeSelectorTerm, path: str) -> NodeSelectorTerm:
    return NodeSelectorTerm(
        tuple(compile_requirement(r, f"{path}.matchExpressions[{i}]") for i, r in enumerate(term.match_expressions)),
        tuple(compile_requirement(r, f"{path}.matchFields[{i}]") for i, r in enumerate(term.match_fields)),
    )


@dataclass(frozen=True, slots=True)
class AffinityTerm:
    """A pod (anti-)affinity term: pods matching ``selector`` in ``namespaces`` (None: all) per topology domain."""

    selector: LabelSelector
    namespaces: frozenset[str] | None
    topology_key: str
    weight: int = 0

    def matches(self, pod: PodInfo) -> bool:
        if self.namespaces is not None and pod.namespace not in self.namespaces:
            return False
        return self.selector.matches(pod.labels)


def _affinity_term(term: core.PodAffinityTerm, namespace: str, weight: int = 0) -> AffinityTerm:
    namespaces: frozenset[str] | None = frozenset(term.namespaces) or None
    if term.HasField("namespace_selector"):
        sel = term.namespace_selector
        # An empty namespaceSelector means every namespace. A non-empty one would
        # need namespace labels, which the scheduler does not watch (yet): it
        # falls back to the listed namespaces, or the pod's own.
        if not sel.match_labels and not sel.match_expressions:
            namespaces = None
        elif namespaces is None:
            namespaces = frozenset({namespace})
    elif namespaces is None:
        namespaces = frozenset({namespace})
    selector = from_label_selector_proto(term.label_selector if term.HasField("label_selector") else None)
    return AffinityTerm(selector, namespaces, term.topology_key, weight)


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str
    operator: str
    value: str
    effect: str

    def tolerates(self, taint: core.Taint) -> bool:
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        # An empty key with Exists tolerates every taint.
        if self.operator == "Exists":
            return True
        return self.value == taint.value


def tolerates_all(tolerations: Iterable[Toleration], taint: core.Taint) -> bool:
    return any(t.tolerates(taint) for t in tolerations)


@dataclass(frozen=True, slots=True)
class SpreadConstraint:
    max_skew: int
    topology_key: str
    when_unsatisfiable: str
    selector: LabelSelector
    min_domains: int | None
    honor_node_affinity: bool
    honor_node_taints: bool


@dataclass(frozen=True, slots=True)
class HostPort:
    ip: str
    protocol: str
    port: int

    def conflicts(self, other: HostPort) -> bool:
        if self.port != other.port or self.protocol != other.protocol:
            return False
        wildcard = ("", "0.0.0.0", "::")
        return self.ip == other.ip or self.ip in wildcard or other.ip in wildcard


def normalized_image_name(name: str) -> str:
    """``nginx`` and ``nginx:latest`` are one image to the kubelet; compare them as one."""
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        return name + ":latest"
    return name


# The PodSpec fields a PodInfo digests (with labels, priority and preemptionPolicy): when none changed,
# a newer version of the pod reuses the digest (``PodInfo.refreshed``).
_DIGESTED_SPEC_FIELDS = ("containers", "init_containers", "overhead", "tolerations", "affinity", "node_selector",
                         "topology_spread_constraints")


class PodInfo:
    """One pod, digested for scheduling. Built once per pod object; read-only afterwards."""

    __slots__ = (
        "affinity_terms",
        "anti_affinity_terms",
        "has_node_constraints",
        "host_ports",
        "images",
        "key",
        "labels",
        "name",
        "namespace",
        "node_name",
        "node_selector",
        "nominated_node",
        "non_zero_cpu",
        "non_zero_memory",
        "num_containers",
        "pod",
        "preempted",
        "preemption_never",
        "preferred_affinity_terms",
        "preferred_anti_affinity_terms",
        "preferred_node_terms",
        "priority",
        "requests",
        "required_node_terms",
        "spread_constraints",
        "start_time",
        "terminating",
        "tolerations",
        "uid",
    )

    def __init__(self, pod: core.Pod) -> None:
        meta, spec = pod.metadata, pod.spec
        self.pod = pod
        self.name = meta.name
        self.namespace = meta.namespace
        self.key = f"{meta.namespace}/{meta.name}"
        self.uid = meta.uid
        self.labels: dict[str, str] = dict(meta.labels)
        self.node_name = spec.node_name
        self.priority = spec.priority if spec.HasField("priority") else 0
        self.preemption_never = spec.HasField("preemption_policy") and spec.preemption_policy == "Never"
        self._read_volatile(pod)
        self.requests = pod_requests(spec)
        nz = pod_requests(spec, non_zero=True)
        self.non_zero_cpu = nz.milli_cpu
        self.non_zero_memory = nz.memory
        self.host_ports = tuple(
            HostPort(p.host_ip, p.protocol or "TCP", p.host_port)
            for c in (*spec.init_containers, *spec.containers) for p in c.ports if p.host_port > 0
        )
        self.images = tuple(normalized_image_name(c.image) for c in (*spec.init_containers, *spec.containers)
                            if c.image)
        self.num_containers = len(spec.init_containers) + len(spec.containers)
        self.tolerations = tuple(Toleration(t.key, t.operator or "Equal", t.value, t.effect)
                                 for t in spec.tolerations)
        self.node_selector: dict[str, str] = dict(spec.node_selector)
        aff = spec.affinity
        na = aff.node_affinity
        self.required_node_terms: tuple[NodeSelectorTerm, ...] | None = None
        if na.HasField("required_during_scheduling_ignored_during_execution"):
            base = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
            self.required_node_terms = tuple(
                compile_term(t, f"{base}[{i}]")
                for i, t in enumerate(na.required_during_scheduling_ignored_during_execution.node_selector_terms))
        base = "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution"
        self.preferred_node_terms = tuple(
            (p.weight, compile_term(p.preference, f"{base}[{i}].preference"))
            for i, p in enumerate(na.preferred_during_scheduling_ignored_during_execution) if p.weight)
        self.has_node_constraints = bool(self.node_selector) or self.required_node_terms is not None
        ns = meta.namespace
        pa, paa = aff.pod_affinity, aff.pod_anti_affinity
        self.affinity_terms = tuple(_affinity_term(t, ns)
                                    for t in pa.required_during_scheduling_ignored_during_execution)
        self.anti_affinity_terms = tuple(_affinity_term(t, ns)
                                         for t in paa.required_during_scheduling_ignored_during_execution)
        self.preferred_affinity_terms = tuple(
            _affinity_term(w.pod_affinity_term, ns, w.weight)
            for w in pa.preferred_during_scheduling_ignored_during_execution)
        self.preferred_anti_affinity_terms = tuple(
            _affinity_term(w.pod_affinity_term, ns, w.weight)
            for w in paa.preferred_during_scheduling_ignored_during_execution)
        self.spread_constraints = tuple(_spread_constraint(c, self.labels) for c in spec.topology_spread_constraints)

    def _read_volatile(self, pod: core.Pod) -> None:
        """What may change while the rest stays (status, deletion): read from every version of the pod."""
        self.pod = pod
        self.node_name = pod.spec.node_name
        self.terminating = pod.metadata.HasField("deletion_timestamp")
        # Going because the scheduler preempted it (its DisruptionTarget condition says so): a preemptor
        # nominated to this node waits for it rather than preempting again.
        self.preempted = self.terminating and any(
            c.type == "DisruptionTarget" and c.reason == "PreemptionByScheduler" for c in pod.status.conditions)
        self.nominated_node = pod.status.nominated_node_name
        # Seconds; a pod not started yet counts as starting now, i.e. latest (Kubernetes' GetPodStartTime).
        self.start_time = (pod.status.start_time.seconds + pod.status.start_time.nanos / 1e9
                           if pod.status.HasField("start_time") else math.inf)

    def refreshed(self, pod: core.Pod) -> PodInfo | None:
        """A newer version of this pod, reusing the digest when nothing digested changed; None otherwise.

        The watch confirming our own binding and a kubelet's status updates
        change nothing a plugin reads but the node, status and deletion; a
        digest costs more than comparing the few spec fields it reads.
        """
        old_meta, new_meta = self.pod.metadata, pod.metadata
        old, new = self.pod.spec, pod.spec
        if (new_meta.uid != self.uid or new_meta.labels != old_meta.labels or new.priority != old.priority
                or new.preemption_policy != old.preemption_policy
                or any(getattr(new, f) != getattr(old, f) for f in _DIGESTED_SPEC_FIELDS)):
            return None
        clone = object.__new__(PodInfo)
        for slot in PodInfo.__slots__:
            setattr(clone, slot, getattr(self, slot))
        clone._read_volatile(pod)
        return clone

    @property
    def has_affinity(self) -> bool:
        """Terms that make this pod, once placed, score other pods (InterPodAffinity's PreScore):
        required affinity (hardPodAffinityWeight) and preferred terms. Required anti-affinity only
        filters, and is tracked apart (``has_required_anti_affinity``)."""
        return bool(self.affinity_terms or self.preferred_affinity_terms or self.preferred_anti_affinity_terms)

    @property
    def has_required_anti_affinity(self) -> bool:
        return bool(self.anti_affinity_terms)

    def with_node(self, node_name: str) -> PodInfo:
        """The same pod assigned to ``node_name`` (an assumed pod), sharing everything digested."""
        clone = object.__new__(PodInfo)
        for slot in PodInfo.__slots__:
            setattr(clone, slot, getattr(self, slot))
        clone.node_name = node_name
        return clone

    def with_nominated(self, node_name: str) -> PodInfo:
        """The same pod remembered as nominated to ``node_name`` (before the watch shows the status)."""
        clone = self.with_node(self.node_name)
        clone.nominated_node = node_name
        return clone

    def __repr__(self) -> str:
        return f"PodInfo({self.key}{' on ' + self.node_name if self.node_name else ''})"


def _spread_constraint(c: core.TopologySpreadConstraint, labels: Mapping[str, str]) -> SpreadConstraint:
    selector_msg: metav1.LabelSelector | None = c.label_selector if c.HasField("label_selector") else None
    selector = from_label_selector_proto(selector_msg)
    if c.match_label_keys and selector_msg is not None:
        # matchLabelKeys: the incoming pod's values for those keys join the selector.
        merged = metav1.LabelSelector()
        merged.CopyFrom(selector_msg)
        for key in c.match_label_keys:
            if key in labels:
                merged.match_expressions.add(key=key, operator="In", values=[labels[key]])
        selector = from_label_selector_proto(merged)
    return SpreadConstraint(
        max_skew=c.max_skew or 1,
        topology_key=c.topology_key,
        when_unsatisfiable=c.when_unsatisfiable or "DoNotSchedule",
        selector=selector,
        min_domains=c.min_domains if c.HasField("min_domains") else None,
        honor_node_affinity=(c.node_affinity_policy or "Honor") == "Honor",
        honor_node_taints=(c.node_taints_policy or "Ignore") == "Honor",
    )


class NodeInfo:
    """A node and the aggregate of the pods on it (bound and assumed)."""

    __slots__ = ("allocatable", "allowed_pods", "generation", "image_sizes", "labels", "name", "node",
                 "non_zero_cpu", "non_zero_memory", "pods", "pods_with_affinity", "pods_with_required_anti_affinity",
                 "requested", "taints", "unschedulable", "used_ports")

    def __init__(self, name: str) -> None:
        self.name = name
        self.node: core.Node | None = None
        self.labels: dict[str, str] = {}
        self.allocatable = Resource()
        self.allowed_pods = 0
        self.taints: tuple[core.Taint, ...] = ()
        self.unschedulable = False
        self.image_sizes: dict[str, int] = {}
        self.pods: dict[str, PodInfo] = {}
        self.requested = Resource()
        self.non_zero_cpu = 0
        self.non_zero_memory = 0
        self.used_ports: list[HostPort] = []
        self.pods_with_affinity: list[PodInfo] = []
        self.pods_with_required_anti_affinity: list[PodInfo] = []
        self.generation = 0

    def set_node(self, node: core.Node) -> None:
        self.node = node
        self.labels = dict(node.metadata.labels)
        status = node.status
        alloc = status.allocatable or status.capacity
        self.allocatable = Resource.from_map({k: v for k, v in alloc.items() if k != PODS})
        self.allowed_pods = quantity_value(PODS, alloc[PODS]) if PODS in alloc else 110
        self.taints = tuple(node.spec.taints)
        self.unschedulable = node.spec.unschedulable
        sizes: dict[str, int] = {}
        for image in status.images:
            for n in image.names:
                sizes[normalized_image_name(n)] = image.size_bytes
        self.image_sizes = sizes

    def add_pod(self, pod: PodInfo) -> None:
        self.pods[pod.uid or pod.key] = pod
        self.requested.add(pod.requests)
        self.non_zero_cpu += pod.non_zero_cpu
        self.non_zero_memory += pod.non_zero_memory
        self.used_ports.extend(pod.host_ports)
        if pod.has_affinity:
            self.pods_with_affinity.append(pod)
        if pod.has_required_anti_affinity:
            self.pods_with_required_anti_affinity.append(pod)

    def remove_pod(self, pod: PodInfo) -> bool:
        old = self.pods.pop(pod.uid or pod.key, None)
        if old is None:
            return False
        self.requested.add(old.requests, -1)
        self.non_zero_cpu -= old.non_zero_cpu
        self.non_zero_memory -= old.non_zero_memory
        for port in old.host_ports:
            self.used_ports.remove(port)
        if old.has_affinity:
            self.pods_with_affinity = [p for p in self.pods_with_affinity if p is not old]
        if old.has_required_anti_affinity:
            self.pods_with_required_anti_affinity = [p for p in self.pods_with_required_anti_affinity if p is not old]
        return True

    def clone(self) -> NodeInfo:
        c = object.__new__(NodeInfo)
        c.name = self.name
        c.node = self.node
        c.labels = self.labels
        c.allocatable = self.allocatable
        c.allowed_pods = self.allowed_pods
        c.taints = self.taints
        c.unschedulable = self.unschedulable
        c.image_sizes = self.image_sizes
        c.pods = dict(self.pods)
        c.requested = self.requested.copy()
        c.non_zero_cpu = self.non_zero_cpu
        c.non_zero_memory = self.non_zero_memory
        c.used_ports = list(self.used_ports)
        c.pods_with_affinity = list(self.pods_with_affinity)
        c.pods_with_required_anti_affinity = list(self.pods_with_required_anti_affinity)
        c.generation = self.generation
        return c

    def __repr__(self) -> str:
        return f"NodeInfo({self.name}, {len(self.pods)} pods)"


@dataclass(frozen=True)
class DisruptionBudget:
    """A PodDisruptionBudget as preemption reads it: whom it covers, how many may go, who already went."""

    namespace: str
    name: str
    # An absent, empty or invalid selector covers no pod (Kubernetes' preemption reads it so).
    selector: LabelSelector
    disruptions_allowed: int
    # Pods the API server already evicted under this budget: counted there, not again.
    disrupted_pods: frozenset[str] = frozenset()

    @classmethod
    def from_object(cls, pdb: policy.PodDisruptionBudget) -> DisruptionBudget:
        selector = LabelSelector.nothing()
        if pdb.spec.HasField("selector"):
            try:
                selector = from_label_selector_proto(pdb.spec.selector)
            except StatusError:
                pass
            if selector.empty:
                selector = LabelSelector.nothing()
        return cls(pdb.metadata.namespace, pdb.metadata.name, selector, pdb.status.disruptions_allowed,
                   frozenset(pdb.status.disrupted_pods))

    def covers(self, pod: PodInfo) -> bool:
        return (pod.namespace == self.namespace and pod.name not in self.disrupted_pods
                and self.selector.matches(pod.labels))


class Snapshot:
    """The cluster as one scheduling cycle sees it: read-only NodeInfos in a stable order.

    The cache refreshes it in place before each cycle, re-cloning only the
    nodes whose generation moved (see ``Cache.update_snapshot``).
    """

    def __init__(self, nodes: Iterable[NodeInfo] = ()) -> None:
        self.node_infos: dict[str, NodeInfo] = {}
        self.node_list: list[NodeInfo] = []
        self.have_pods_with_affinity: list[NodeInfo] = []
        self.have_pods_with_required_anti_affinity: list[NodeInfo] = []
        # normalized image name -> number of nodes that have it (ImageLocality spreads by it)
        self.image_nodes: dict[str, int] = {}
        self.generation = 0
        self._positions: dict[str, int] | None = None
        self.columns: Columns = Columns(())
        self._affinity: dict[str, NodeInfo] = {}
        self._anti: dict[str, NodeInfo] = {}
        # Existing pods' required anti-affinity, aggregated: distinct term -> (topologyKey, value) -> pods.
        # InterPodAffinity asks which of these terms reject an incoming pod; with this it costs the number
        # of distinct terms, not of pods.
        self.anti_terms: dict[AffinityTerm, dict[tuple[str, str], int]] = {}
        # (label key, value) -> pod key -> (pod, node name): the pods a selector with an exact
        # requirement can match, without visiting every pod.
        self.pods_by_label: dict[tuple[str, str], dict[str, tuple[PodInfo, str]]] = {}
        self._label_codes: dict[str, tuple[IntArray, dict[str, int]]] = {}
        # PodDisruptionBudgets, which only preemption reads (refreshed with the snapshot when they change).
        self.pdbs: tuple[DisruptionBudget, ...] = ()
        for n in nodes:
            self.node_infos[n.name] = n
        self.rebuild_lists()

    def get(self, name: str) -> NodeInfo | None:
        return self.node_infos.get(name)

    def positions(self) -> dict[str, int]:
        if self._positions is None:
            self._positions = {n.name: i for i, n in enumerate(self.node_list)}
        return self._positions

    def rebuild_lists(self, *, order_changed: bool = True, order: Iterable[str] | None = None) -> None:
        """Recomputes every derived list from ``node_infos`` (a node joined or left: O(nodes))."""
        if order_changed:
            names = self.node_infos if order is None else order
            self.node_list = [n for n in (self.node_infos[name] for name in names) if n.node is not None]
            self._positions = None
            self.columns = Columns(self.node_list)
        else:
            self.node_list = [self.node_infos[n.name] for n in self.node_list]
        self._affinity = {n.name: n for n in self.node_list if n.pods_with_affinity}
        self._anti = {n.name: n for n in self.node_list if n.pods_with_required_anti_affinity}
        self.have_pods_with_affinity = list(self._affinity.values())
        self.have_pods_with_required_anti_affinity = list(self._anti.values())
        self.anti_terms = {}
        for n in self.have_pods_with_required_anti_affinity:
            self._count_anti_terms(n, 1)
        self.pods_by_label = {}
        for n in self.node_list:
            self._index_pods(n, 1)
        self._label_codes.clear()
        self.recount_images()

    def _index_pods(self, node: NodeInfo, sign: int) -> None:
        index = self.pods_by_label
        for pod in node.pods.values():
            for pair in pod.labels.items():
                if sign > 0:
                    index.setdefault(pair, {})[pod.key] = (pod, node.name)
                else:
                    bucket = index.get(pair)
                    if bucket is not None:
                        bucket.pop(pod.key, None)
                        if not bucket:
                            del index[pair]

    def candidates(self, selector: LabelSelector) -> list[tuple[PodInfo, NodeInfo]] | None:
        """Pods that may match ``selector``, with their nodes, when it pins a label to a closed set of values;
        None when it does not (the caller visits every pod)."""
        for req in selector.requirements:
            values = req.exact_values()
            if values is None:
                continue
            out = []
            infos = self.node_infos
            for value in values:
                for pod, node_name in self.pods_by_label.get((req.key, value), {}).values():
                    node = infos.get(node_name)
                    if node is not None and node.node is not None:
                        out.append((pod, node))
            return out
        return None

    def _count_anti_terms(self, node: NodeInfo, sign: int) -> None:
        labels = node.labels
        for pod in node.pods_with_required_anti_affinity:
            for term in pod.anti_affinity_terms:
                value = labels.get(term.topology_key)
                if value is None:
                    continue
                counts = self.anti_terms.setdefault(term, {})
                pair = (term.topology_key, value)
                n = counts.get(pair, 0) + sign
                if n:
                    counts[pair] = n
                else:
                    del counts[pair]
                    if not counts:
                        del self.anti_terms[term]

    def recount_images(self) -> None:
        images: dict[str, int] = {}
        for n in self.node_list:
            for image in n.image_sizes:
                images[image] = images.get(image, 0) + 1
        self.image_nodes = images

    def replace_node(self, position: int, info: NodeInfo) -> tuple[bool, bool]:
        """Swaps in a newer clone of the node at ``position``; O(1) but for the lists it changes.

        Returns (labels changed, images changed) so that the caller can
        refresh what depends on them once for a whole batch of nodes.
        """
        old = self.node_list[position]
        if old.pods_with_required_anti_affinity or info.pods_with_required_anti_affinity:
            self._count_anti_terms(old, -1)
            self._count_anti_terms(info, 1)
        self._index_pods(old, -1)
        self._index_pods(info, 1)
        self.node_infos[info.name] = info
        self.node_list[position] = info
        self.columns.set_row(position, info)
        for index, has, attr in ((self._affinity, bool(info.pods_with_affinity), "have_pods_with_affinity"),
                                 (self._anti, bool(info.pods_with_required_anti_affinity),
                                  "have_pods_with_required_anti_affinity")):
            if has or info.name in index:
                if has:
                    index[info.name] = info
                else:
                    del index[info.name]
                setattr(self, attr, list(index.values()))
        labels_changed = old.labels is not info.labels and old.labels != info.labels
        if labels_changed:
            self._label_codes.clear()
        return labels_changed, old.image_sizes is not info.image_sizes and old.image_sizes != info.image_sizes

    def with_node(self, info: NodeInfo) -> Snapshot:
        """A copy in which ``info`` replaces the node of its name (preemption's dry runs); O(nodes)."""
        variant = Snapshot.__new__(Snapshot)
        variant.__dict__.update(self.__dict__)
        variant.node_infos = {**self.node_infos, info.name: info}
        variant.node_list = [info if n.name == info.name else n for n in self.node_list]
        variant.have_pods_with_affinity = [n for n in variant.node_list if n.pods_with_affinity]
        variant.have_pods_with_required_anti_affinity = [n for n in variant.node_list
                                                         if n.pods_with_required_anti_affinity]
        variant.anti_terms = {}
        for n in variant.have_pods_with_required_anti_affinity:
            variant._count_anti_terms(n, 1)
        variant.pods_by_label = {}
        for n in variant.node_list:
            variant._index_pods(n, 1)
        return variant

    def label_codes(self, key: str) -> tuple[IntArray, dict[str, int]]:
        """Per node (node-list order) a code for its value of ``key`` (-1: unlabelled), and value -> code."""
        cached = self._label_codes.get(key)
        if cached is None:
            values: dict[str, int] = {}
            codes = np.fromiter(
                (values.setdefault(v, len(values)) if (v := n.labels.get(key)) is not None else -1
                 for n in self.node_list), np.int64, len(self.node_list))
            cached = self._label_codes[key] = (codes, values)
        return cached

    def per_node(self, key: str, counts: Mapping[tuple[str, str], int]) -> IntArray:
        """``counts`` of (key, value) pairs spread to nodes by their value of ``key`` (0 when unlabelled).

        Costs the number of pairs, not of nodes, plus one gather.
        """
        codes, index = self.label_codes(key)
        by_code = np.zeros(len(index) + 1, np.int64)  # the extra last slot is what code -1 reads
        for (k, v), n in counts.items():
            if k == key:
                code = index.get(v)
                if code is not None:
                    by_code[code] = n
        result: IntArray = by_code[codes]
        return result

    @classmethod
    def from_objects(cls, nodes: Iterable[core.Node], pods: Iterable[core.Pod] = (),
                     pdbs: Iterable[policy.PodDisruptionBudget] = ()) -> Snapshot:
        """A snapshot from API objects: for tests and tools."""
        infos: dict[str, NodeInfo] = {}
        for node in nodes:
            info = NodeInfo(node.metadata.name)
            info.set_node(node)
            infos[info.name] = info
        for pod in pods:
            target = infos.get(pod.spec.node_name)
            if target is not None:
                target.add_pod(PodInfo(pod))
        snapshot = cls(infos.values())
        snapshot.pdbs = tuple(DisruptionBudget.from_object(p) for p in pdbs)
        return snapshot
