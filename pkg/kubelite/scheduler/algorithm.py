"""One scheduling decision: (profile, snapshot, pod) -> node, or a FitError that explains why not.

Nothing here performs I/O or keeps state between calls: the round-robin start
index and the random tie-breaker come in and the next start index goes out,
so the decision can be replayed in a unit test or a benchmark exactly.

Sampling is Kubernetes': in a large cluster the scheduler stops filtering once
it has found "enough" feasible nodes (``num_feasible_nodes_to_find``) and
scores only those; the next pod starts filtering where this one stopped, so
every node is looked at in turn.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kubelite.scheduler.columns import BoolArray, IntArray
from kubelite.scheduler.framework import (
    Code,
    CycleState,
    Diagnosis,
    FilterPlugin,
    FitError,
    ScheduleResult,
    Status,
    unresolvable,
)
from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo, Snapshot
from kubelite.scheduler.profile import Profile

MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5
BASE_PERCENTAGE = 50
_RNG = random.Random()


def num_feasible_nodes_to_find(num_all_nodes: int, percentage: int = 0) -> int:
    """How many feasible nodes are enough: all below 100 nodes; else a percentage, at least 100.

    The adaptive percentage (``percentage == 0``) is 50% at 0 nodes, one point
    less per 125 nodes, and never below 5%: 5,000 nodes -> 10% -> 500 nodes.
    """
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND or percentage >= 100:
        return num_all_nodes
    if percentage == 0:
        percentage = BASE_PERCENTAGE - num_all_nodes // 125
        if percentage < MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND:
            percentage = MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND
    num = num_all_nodes * percentage // 100
    return max(num, MIN_FEASIBLE_NODES_TO_FIND)


@dataclass
class Decision:
    result: ScheduleResult
    next_start_index: int
    # node -> total weighted score, for the nodes scored (debugging, tests)
    scores: dict[str, int]


def schedule(profile: Profile, snapshot: Snapshot, pod: PodInfo, *, start_index: int = 0,
             rng: random.Random | None = None, vectorized: bool = True, explain: bool = True) -> Decision:
    """Picks a node for ``pod``; raises FitError (with every node's reason) when none fits.

    ``vectorized`` uses the plugins' array forms where they have one (same
    result, less time); ``explain`` keeps every scored node's total in the
    decision, which the scheduling loop does not need.
    """
    nodes = snapshot.node_list
    num_all = len(nodes)
    if num_all == 0:
        raise FitError(pod.key, 0, Diagnosis(pre_filter_msg="no nodes available to schedule pods"))
    state = CycleState()
    diagnosis = Diagnosis()

    # -- PreFilter ---------------------------------------------------------------------------------------------
    allowed: frozenset[str] | None = None
    for pre in profile.pre_filter:
        result, status = pre.pre_filter(state, pod, snapshot)
        if status is not None:
            if status.code == Code.SKIP:
                state.skip_filter.add(pre.name)
                continue
            if not status.is_success:
                status = status.with_plugin(pre.name)
                diagnosis.pre_filter_msg = status.message
                diagnosis.unschedulable_plugins.add(pre.name)
                raise FitError(pod.key, num_all, diagnosis)
        if result is not None and result.node_names is not None:
            allowed = result.node_names if allowed is None else allowed & result.node_names

    filters = [p for p in profile.filter if p.name not in state.skip_filter]
    if allowed is not None:
        # A PreFilter narrowed the candidates: filter just those, and say why the rest were left out.
        candidates = [n for n in nodes if n.name in allowed]
        if not candidates:
            diagnosis.pre_filter_msg = "node(s) didn't satisfy plugin(s) [NodeAffinity/NodeName]"
            raise FitError(pod.key, num_all, diagnosis)
        outside = unresolvable("node(s) didn't satisfy plugin(s) [NodeAffinity/NodeName]", plugin="PreFilter")
        for n in nodes:
            if n.name not in allowed:
                diagnosis.node_statuses[n.name] = outside
        start = 0
    else:
        candidates = nodes
        start = start_index % num_all

    # -- Filter, until enough feasible nodes are found ---------------------------------------------------------
    want = num_feasible_nodes_to_find(len(candidates), profile.percentage_of_nodes_to_score)
    if vectorized and allowed is None:
        found = _find_feasible_vectorized(filters, state, pod, snapshot, start, want)
        if found is not None:
            feasible_idx, processed = found
            next_start = (start + processed) % num_all
            if len(feasible_idx) == 1:
                host = nodes[int(feasible_idx[0])].name
                return Decision(ScheduleResult(host, processed, 1), next_start, {})
            totals_arr = _prioritize_vectorized(profile, state, snapshot, pod, feasible_idx)
            best = totals_arr.max()
            ties = np.flatnonzero(totals_arr == best).tolist()
            pick = ties[0] if len(ties) == 1 else (rng or _RNG).choice(ties)
            host = nodes[int(feasible_idx[pick])].name
            scores = ({nodes[int(i)].name: int(t) for i, t in zip(feasible_idx, totals_arr, strict=True)}
                      if explain else {})
            return Decision(ScheduleResult(host, processed, len(feasible_idx)), next_start, scores)
        # No node fits: the per-node path below gives every node's reason.
    feasible: list[NodeInfo] = []
    n_candidates = len(candidates)
    processed = 0
    statuses = diagnosis.node_statuses
    for offset in range(n_candidates):
        node = candidates[(start + offset) % n_candidates]
        processed += 1
        for plugin in filters:
            status = plugin.filter(state, pod, node)
            if status is not None and status.code != Code.SUCCESS:
                statuses[node.name] = status if status.plugin else status.with_plugin(plugin.name)
                diagnosis.unschedulable_plugins.add(plugin.name)
                break
        else:
            feasible.append(node)
            if len(feasible) >= want:
                break
    next_start = (start + processed) % num_all if allowed is None else start_index

    if not feasible:
        for plugin_ in profile.post_filter:
            nominated, status = plugin_.post_filter(state, pod, snapshot, statuses)
            if nominated:
                diagnosis.nominated_node = nominated
                diagnosis.victims = tuple(state.get("DefaultPreemption/victims", ()))
                break
            if status is not None and status.message:
                diagnosis.post_filter_msg = status.message
            diagnosis.waiting_on = state.get("DefaultPreemption/wait", "")
        raise FitError(pod.key, num_all, diagnosis)
    if len(feasible) == 1:
        node = feasible[0]
        return Decision(ScheduleResult(node.name, processed, 1), next_start, {})

    # -- PreScore, Score, NormalizeScore -------------------------------------------------------------------
    totals = prioritize(profile, state, snapshot, pod, feasible)
    host = select_host(feasible, totals, rng or _RNG)
    return Decision(ScheduleResult(host, processed, len(feasible)), next_start,
                    {n.name: s for n, s in zip(feasible, totals, strict=True)})


def prioritize(profile: Profile, state: CycleState, snapshot: Snapshot, pod: PodInfo,
               nodes: Sequence[NodeInfo]) -> list[int]:
    for plugin in profile.pre_score:
        status: Status | None = plugin.pre_score(state, pod, nodes, snapshot)
        if status is not None and status.code == Code.SKIP:
            state.skip_score.add(plugin.name)
    totals = [0] * len(nodes)
    for scorer, weight in profile.score:
        if scorer.name in state.skip_score:
            continue
        score = scorer.score
        scores = [score(state, pod, n) for n in nodes]
        normalizer = profile.normalizer(scorer)
        if normalizer is not None:
            normalizer.normalize_score(state, pod, nodes, scores)
        for i, s in enumerate(scores):
            totals[i] += s * weight
    return totals


def _find_feasible_vectorized(filters: Sequence[FilterPlugin], state: CycleState, pod: PodInfo, snapshot: Snapshot,
                              start: int, want: int) -> tuple[IntArray, int] | None:
    """The same feasible nodes, in the same order, as the per-node loop finds; None when there are none.

    Plugins with a ``filter_mask`` answer for all nodes at once; the others run
    per node, in round-robin order, on the nodes the masks let through, until
    ``want`` nodes passed. ``processed`` counts nodes up to the last one looked
    at, as the sequential scan would.
    """
    n = len(snapshot.node_list)
    mask: BoolArray | None = None
    per_node: list[FilterPlugin] = []
    for plugin in filters:
        fm = getattr(plugin, "filter_mask", None)
        m = fm(state, pod, snapshot) if fm is not None else None
        if m is None:
            per_node.append(plugin)
        else:
            mask = m if mask is None else mask & m
    order = np.arange(start, start + n) % n if start else np.arange(n)
    positions = np.flatnonzero(mask[order]) if mask is not None else np.arange(n)
    if not per_node:
        if len(positions) == 0:
            return None
        chosen = positions[:want]
        processed = int(chosen[-1]) + 1 if len(positions) >= want else n
        return order[chosen], processed
    nodes = snapshot.node_list
    picked: list[int] = []
    last = -1
    for pos in positions.tolist():
        i = int(order[pos])
        node = nodes[i]
        for plugin in per_node:
            status = plugin.filter(state, pod, node)
            if status is not None and status.code != Code.SUCCESS:
                break
        else:
            picked.append(i)
            if len(picked) >= want:
                last = pos
                break
    if not picked:
        return None
    return np.array(picked, np.int64), (last + 1 if last >= 0 else n)


class _NodesAt(Sequence[NodeInfo]):
    """The feasible nodes as a sequence, built only if a plugin looks (most PreScores skip)."""

    def __init__(self, nodes: list[NodeInfo], idx: IntArray) -> None:
        self._nodes = nodes
        self._idx = idx
        self._list: list[NodeInfo] | None = None

    def _materialise(self) -> list[NodeInfo]:
        if self._list is None:
            nodes = self._nodes
            self._list = [nodes[i] for i in self._idx.tolist()]
        return self._list

    def __len__(self) -> int:
        return len(self._idx)

    def __getitem__(self, i: Any) -> Any:
        return self._materialise()[i]

    def __iter__(self) -> Iterator[NodeInfo]:
        return iter(self._materialise())


def _prioritize_vectorized(profile: Profile, state: CycleState, snapshot: Snapshot, pod: PodInfo,
                           idx: IntArray) -> IntArray:
    nodes = snapshot.node_list
    feasible: Sequence[NodeInfo] = _NodesAt(nodes, idx)
    for plugin in profile.pre_score:
        status = plugin.pre_score(state, pod, feasible, snapshot)
        if status is not None and status.code == Code.SKIP:
            state.skip_score.add(plugin.name)
    totals: IntArray = np.zeros(len(idx), np.int64)
    for scorer, weight in profile.score:
        if scorer.name in state.skip_score:
            continue
        sb = getattr(scorer, "score_batch", None)
        batch = sb(state, pod, snapshot, idx) if sb is not None else None
        normalizer = profile.normalizer(scorer)
        if batch is not None and normalizer is None:
            totals += batch * weight
            continue
        nb = getattr(normalizer, "normalize_batch", None) if batch is not None else None
        if batch is not None and nb is not None:
            totals += nb(state, pod, batch) * weight
            continue
        scores = batch.tolist() if batch is not None else [scorer.score(state, pod, n) for n in feasible]
        if normalizer is not None:
            normalizer.normalize_score(state, pod, feasible, scores)
        totals += np.asarray(scores, np.int64) * weight
    return totals


def select_host(nodes: Sequence[NodeInfo], totals: Sequence[int], rng: random.Random) -> str:
    """The best-scored node; ties are broken uniformly at random, as Kubernetes does."""
    best = max(totals)
    ties = [i for i, total in enumerate(totals) if total == best]
    return nodes[ties[0] if len(ties) == 1 else rng.choice(ties)].name
