"""A profile: the plugins of one schedulerName, sorted into extension points, with score weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubelite.scheduler.framework import (
    ClusterEvent,
    FilterPlugin,
    NormalizeScorePlugin,
    Plugin,
    PostFilterPlugin,
    PreFilterPlugin,
    PreScorePlugin,
    ScorePlugin,
)

DEFAULT_SCHEDULER_NAME = "default-scheduler"


@dataclass
class Profile:
    scheduler_name: str = DEFAULT_SCHEDULER_NAME
    pre_filter: list[PreFilterPlugin] = field(default_factory=list)
    filter: list[FilterPlugin] = field(default_factory=list)
    post_filter: list[PostFilterPlugin] = field(default_factory=list)
    pre_score: list[PreScorePlugin] = field(default_factory=list)
    score: list[tuple[ScorePlugin, int]] = field(default_factory=list)
    # 0: adaptive, as Kubernetes (50% minus 1% per 125 nodes, at least 5%).
    percentage_of_nodes_to_score: int = 0

    _normalizers: dict[str, NormalizeScorePlugin | None] = field(default_factory=dict)

    def normalizer(self, plugin: ScorePlugin) -> NormalizeScorePlugin | None:
        # Protocol isinstance checks are slow; this runs per pod and scorer.
        try:
            return self._normalizers[plugin.name]
        except KeyError:
            found = plugin if isinstance(plugin, NormalizeScorePlugin) else None
            self._normalizers[plugin.name] = found
            return found

    def plugins(self) -> list[Plugin]:
        seen: dict[str, Plugin] = {}
        for p in (*self.pre_filter, *self.filter, *self.post_filter, *self.pre_score, *(s for s, _ in self.score)):
            seen.setdefault(p.name, p)
        return list(seen.values())

    def events_by_plugin(self) -> dict[str, frozenset[ClusterEvent]]:
        """Which cluster events may help a pod that this plugin refused (queueing)."""
        out: dict[str, frozenset[ClusterEvent]] = {}
        for p in self.plugins():
            register = getattr(p, "events_to_register", None)
            out[p.name] = register() if register is not None else frozenset(ClusterEvent)
        return out


def build_profile(scheduler_name: str, plugins: list[tuple[str, dict[str, int]]], args: dict[str, Any],
                  percentage: int = 0) -> Profile:
    """``plugins``: (name, {extension point: weight}) in run order; ``args``: per-plugin arguments."""
    from kubelite.scheduler.plugins.registry import REGISTRY

    profile = Profile(scheduler_name, percentage_of_nodes_to_score=percentage)
    instances: dict[str, Plugin] = {}
    for name, points in plugins:
        if name not in REGISTRY:
            continue
        plugin = instances.get(name) or REGISTRY[name](args.get(name))
        instances[name] = plugin
        set_profile = getattr(plugin, "set_profile", None)
        if set_profile is not None:
            set_profile(profile)
        if "preFilter" in points and isinstance(plugin, PreFilterPlugin):
            profile.pre_filter.append(plugin)
        if "filter" in points and isinstance(plugin, FilterPlugin):
            profile.filter.append(plugin)
        if "postFilter" in points and isinstance(plugin, PostFilterPlugin):
            profile.post_filter.append(plugin)
        if "preScore" in points and isinstance(plugin, PreScorePlugin):
            profile.pre_score.append(plugin)
        if "score" in points and isinstance(plugin, ScorePlugin):
            profile.score.append((plugin, points["score"] or 1))
    return profile


def default_profile(scheduler_name: str = DEFAULT_SCHEDULER_NAME, percentage: int = 0) -> Profile:
    from kubelite.scheduler.plugins.registry import DEFAULT_PLUGINS

    points = ("preFilter", "filter", "postFilter", "preScore")
    plugins = [(name, {**dict.fromkeys(points, 0), **({"score": w} if w else {})}) for name, w in DEFAULT_PLUGINS]
    return build_profile(scheduler_name, plugins, {}, percentage)
