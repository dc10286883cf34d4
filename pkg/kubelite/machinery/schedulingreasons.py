"""The scheduler's node-by-node answer to "why is my pod Pending?", kept on the pod.

kube-scheduler only writes a histogram ("0/5 nodes are available: 3 Insufficient
cpu, ...") into the PodScheduled condition. kubelite also records which node
refused the pod, in which plugin and why, in one annotation on the pending pod,
so that ``kubelite describe pod`` can print the list without reaching the
scheduler (the scheduler's ``/debug/pending`` serves the full list). The
scheduler writes it together with the condition, only when the condition's
message changes; the API server drops it when the pod is bound, as it clears
the condition's reason.

The list is capped so that a 5,000-node cluster does not put 5,000 lines on a
pod: entries are taken round robin over the distinct (plugin, reason) pairs,
so every kind of refusal is shown at least once, and the rest are counted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

ANNOTATION = "scheduler.kubelite.io/node-reasons"
DEFAULT_LIMIT = 50


@dataclass(frozen=True)
class NodeReasons:
    entries: list[tuple[str, str, str]]  # (node, plugin, reason), sorted by node
    omitted: int  # refusals not listed


def encode(node_reasons: Sequence[tuple[str, str, str]], limit: int = DEFAULT_LIMIT) -> str:
    groups: dict[tuple[str, str], list[str]] = {}
    for node, plugin, reason in sorted(node_reasons):
        groups.setdefault((plugin, reason), []).append(node)
    picked: list[tuple[str, str, str]] = []
    depth = 0
    while len(picked) < limit and any(depth < len(nodes) for nodes in groups.values()):
        for (plugin, reason), nodes in groups.items():
            if depth < len(nodes) and len(picked) < limit:
                picked.append((nodes[depth], plugin, reason))
        depth += 1
    picked.sort()
    return json.dumps({"nodes": [{"node": n, "plugin": p, "reason": r} for n, p, r in picked],
                       "omitted": len(node_reasons) - len(picked)}, separators=(",", ":"))


def decode(value: str) -> NodeReasons | None:
    """The recorded list, or None when the annotation is not ours to read (edited by hand, say)."""
    try:
        doc = json.loads(value)
        entries = [(str(e["node"]), str(e["plugin"]), str(e["reason"])) for e in doc["nodes"]]
        return NodeReasons(entries, int(doc.get("omitted", 0)))
    except (ValueError, TypeError, KeyError):
        return None
