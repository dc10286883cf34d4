"""The scheduling framework: extension points, statuses and the cycle state.

A scheduling decision is a pure function of a snapshot of the cluster and one
pod (DESIGN.md habit 4). The function is assembled from small named plugins,
each implementing one or more extension points in the order Kubernetes'
scheduler framework runs them:

    PreFilter  -> once per pod: precompute, or say the pod cannot fit at all;
    Filter     -> once per (pod, node): may this node run the pod?
    PostFilter -> only when no node passed (preemption would live here);
    PreScore   -> once per pod, over the feasible nodes;
    Score      -> once per (pod, feasible node): 0..MAX_NODE_SCORE;
    NormalizeScore -> once per plugin over all scores it gave.

Plugins are Protocols rather than base classes so that a plugin is any object
with the right methods; ``Status`` carries a code and the human reasons that
end up, aggregated over nodes, in the pod's PodScheduled condition.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo, Snapshot

MAX_NODE_SCORE = 100
MIN_NODE_SCORE = 0


class Code(enum.IntEnum):
    """Kubernetes' status codes, with the same meaning."""

    SUCCESS = 0
    ERROR = 1
    # The node does not fit now, but might after preemption or a cluster change.
    UNSCHEDULABLE = 2
    # Preemption cannot help on this node (a taint, a selector): skip it there.
    UNSCHEDULABLE_AND_UNRESOLVABLE = 3
    WAIT = 4
    # PreFilter/PreScore: this plugin has nothing to do for this pod; its
    # Filter/Score is not called at all (the cheapest way to be irrelevant).
    SKIP = 5


@dataclass(frozen=True, slots=True)
class Status:
    """The result of one plugin call; ``None`` stands for success on hot paths."""

    code: Code
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    @property
    def is_success(self) -> bool:
        return self.code == Code.SUCCESS

    @property
    def is_rejected(self) -> bool:
        return self.code in (Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE)

    @property
    def message(self) -> str:
        return ", ".join(self.reasons)

    def with_plugin(self, plugin: str) -> Status:
        return self if self.plugin == plugin else Status(self.code, self.reasons, plugin)


def unschedulable(*reasons: str, plugin: str = "") -> Status:
    return Status(Code.UNSCHEDULABLE, reasons, plugin)


def unresolvable(*reasons: str, plugin: str = "") -> Status:
    return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, reasons, plugin)


SKIP = Status(Code.SKIP)


class CycleState:
    """Data plugins share within one scheduling cycle (PreFilter -> Filter, PreScore -> Score).

    Keys are plugin names by convention; the state dies with the cycle, so a
    plugin never sees another pod's precomputation.
    """

    __slots__ = ("_data", "skip_filter", "skip_score")

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}
        self.skip_filter: set[str] = set()
        self.skip_score: set[str] = set()

    def write(self, key: str, value: Any) -> None:
        self._data[key] = value

    def read(self, key: str) -> Any:
        try:
            return self._data[key]
        except KeyError:
            raise KeyError(f"{key!r} was not written in this cycle (did its PreFilter/PreScore run?)") from None

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)


@dataclass(frozen=True)
class PreFilterResult:
    """A PreFilter may narrow the nodes worth filtering (NodeName, matchFields on metadata.name)."""

    node_names: frozenset[str] | None = None


# -- extension points ------------------------------------------------------------------------------------------


@runtime_checkable
class Plugin(Protocol):
    name: str


@runtime_checkable
class PreFilterPlugin(Plugin, Protocol):
    def pre_filter(self, state: CycleState, pod: PodInfo, snapshot: Snapshot) -> tuple[PreFilterResult | None,
                                                                                       Status | None]: ...


@runtime_checkable
class FilterPlugin(Plugin, Protocol):
    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None: ...


@runtime_checkable
class PostFilterPlugin(Plugin, Protocol):
    def post_filter(self, state: CycleState, pod: PodInfo, snapshot: Snapshot,
                    statuses: dict[str, Status]) -> tuple[str | None, Status | None]: ...


@runtime_checkable
class PreScorePlugin(Plugin, Protocol):
    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo],
                  snapshot: Snapshot) -> Status | None: ...


@runtime_checkable
class ScorePlugin(Plugin, Protocol):
    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int: ...


@runtime_checkable
class NormalizeScorePlugin(Plugin, Protocol):
    def normalize_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo],
                        scores: list[int]) -> None: ...


def default_normalize_score(max_priority: int, reverse: bool, scores: list[int]) -> None:
    """Scales scores so that the best is ``max_priority`` (or the worst, when reversed)."""
    highest = max(scores, default=0)
    if highest == 0:
        if reverse:
            scores[:] = [max_priority] * len(scores)
        return
    for i, score in enumerate(scores):
        scaled = max_priority * score // highest
        scores[i] = max_priority - scaled if reverse else scaled


# -- cluster events (what may make an unschedulable pod schedulable) ----------------------------------------------


class ClusterEvent(enum.Enum):
    NODE_ADD = "Node/Add"
    NODE_UPDATE = "Node/Update"
    POD_DELETE = "Pod/Delete"  # an assigned pod went away (deleted or finished)
    POD_ADD = "Pod/Add"  # an assigned pod appeared (pod affinity may now be satisfiable)
    POD_UPDATE = "Pod/Update"  # an assigned pod's labels changed
    UNSCHEDULABLE_TIMEOUT = "UnschedulableTimeout"
    FORCE_ACTIVATE = "ForceActivate"


ALL_NODE_EVENTS = frozenset({ClusterEvent.NODE_ADD, ClusterEvent.NODE_UPDATE})


@runtime_checkable
class EnqueueExtensions(Protocol):
    def events_to_register(self) -> frozenset[ClusterEvent]: ...


# -- the decision and its explanation ----------------------------------------------------------------------------


@dataclass
class Diagnosis:
    """Why no node fit: each node's status (kept so that a user can ask about one node)."""

    node_statuses: dict[str, Status] = field(default_factory=dict)
    unschedulable_plugins: set[str] = field(default_factory=set)
    pre_filter_msg: str = ""
    post_filter_msg: str = ""
    # Set when a PostFilter (preemption) found a node that fits once ``victims`` are gone.
    nominated_node: str = ""
    victims: tuple[PodInfo, ...] = ()
    # Set when the pod keeps its nomination to this node and waits for earlier victims to go.
    waiting_on: str = ""


class FitError(Exception):
    """No node can run the pod; ``str()`` is kube-scheduler's message for the PodScheduled condition."""

    def __init__(self, pod_key: str, num_all_nodes: int, diagnosis: Diagnosis) -> None:
        self.pod_key = pod_key
        self.num_all_nodes = num_all_nodes
        self.diagnosis = diagnosis
        super().__init__(self.message())

    def message(self) -> str:
        # Same shape and order as kube-scheduler: a histogram of reasons over
        # nodes, each entry "<count> <reason>", sorted as strings.
        d = self.diagnosis
        parts = [f"0/{self.num_all_nodes} nodes are available:"]
        if d.pre_filter_msg:
            parts.append(f" {d.pre_filter_msg}.")
        histogram: dict[str, int] = {}
        for status in d.node_statuses.values():
            for reason in status.reasons:
                histogram[reason] = histogram.get(reason, 0) + 1
        if histogram:
            parts.append(" " + ", ".join(sorted(f"{n} {r}" for r, n in histogram.items())) + ".")
        if d.post_filter_msg:
            parts.append(f" {d.post_filter_msg}.")
        return "".join(parts)

    def node_reasons(self) -> list[tuple[str, str, str]]:
        """(node, plugin, reason) for every refusal: the direct answer to "why not node n?"."""
        return [(node, status.plugin, status.message)
                for node, status in sorted(self.diagnosis.node_statuses.items())]


@dataclass(frozen=True)
class ScheduleResult:
    suggested_host: str
    evaluated_nodes: int
    feasible_nodes: int
