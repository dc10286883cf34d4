"""Plugin names, factories and the default profile, in the order plugins run.

The order matters twice: filters run in it for every node and a node stops
at its first refusal, so cheap and decisive checks come first; and the
explanation a user reads names the first plugin that refused each node.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kubelite.scheduler.framework import Plugin
from kubelite.scheduler.plugins.basic import NodeName, NodePorts, NodeUnschedulable
from kubelite.scheduler.plugins.interpodaffinity import InterPodAffinity, InterPodAffinityArgs
from kubelite.scheduler.plugins.nodeaffinity import ImageLocality, NodeAffinity, TaintToleration
from kubelite.scheduler.plugins.noderesources import BalancedAllocation, FitArgs, NodeResourcesFit
from kubelite.scheduler.plugins.podtopologyspread import PodTopologySpread
from kubelite.scheduler.plugins.preemption import DefaultPreemption

Factory = Callable[[Any], Plugin]

REGISTRY: Mapping[str, Factory] = {
    "NodeUnschedulable": lambda args: NodeUnschedulable(),
    "NodeName": lambda args: NodeName(),
    "TaintToleration": lambda args: TaintToleration(),
    "NodeAffinity": lambda args: NodeAffinity(),
    "NodePorts": lambda args: NodePorts(),
    "NodeResourcesFit": lambda args: NodeResourcesFit(args if isinstance(args, FitArgs) else None),
    "InterPodAffinity": lambda args: InterPodAffinity(args if isinstance(args, InterPodAffinityArgs) else None),
    "PodTopologySpread": lambda args: PodTopologySpread(),
    "NodeResourcesBalancedAllocation": lambda args: BalancedAllocation(),
    "ImageLocality": lambda args: ImageLocality(),
    "DefaultPreemption": lambda args: DefaultPreemption(),
}

# Kubernetes' default multiPoint set, in its order, with its score weights
# (0: the plugin does not score). Plugins kubelite does not have yet
# (volumes, DefaultPreemption) are accepted by name in a configuration and
# ignored, so that a kube-scheduler configuration loads unchanged.
DEFAULT_PLUGINS: tuple[tuple[str, int], ...] = (
    ("NodeUnschedulable", 0),  # cordoned nodes: one boolean
    ("NodeName", 0),  # spec.nodeName pinned by the user
    ("TaintToleration", 3),  # taints: a few comparisons
    ("NodeAffinity", 2),  # nodeSelector and affinity terms: label lookups
    ("NodePorts", 0),  # host port conflicts
    ("NodeResourcesFit", 1),  # requests against what is left
    ("InterPodAffinity", 2),  # needs counts over every pod: the costliest
    ("PodTopologySpread", 2),  # counts per topology domain
    ("DefaultPreemption", 0),  # PostFilter only: when nothing fits
    ("NodeResourcesBalancedAllocation", 1),  # scores only
    ("ImageLocality", 1),  # scores only
)

KNOWN_BUT_ABSENT = frozenset({
    "PrioritySort", "DefaultBinder", "VolumeRestrictions", "VolumeBinding", "VolumeZone",
    "NodeVolumeLimits", "EBSLimits", "GCEPDLimits", "AzureDiskLimits", "SchedulingGates", "DynamicResources",
})
