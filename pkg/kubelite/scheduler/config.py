"""KubeSchedulerConfiguration: the `--config` file, parsed and validated before anything starts.

The file has kube-scheduler's shape (kubescheduler.config.k8s.io/v1), so a
configuration written for Kubernetes loads here: profiles with a
schedulerName, plugin sets per extension point (multiPoint, preFilter,
filter, postFilter, preScore, score) with enabled/disabled lists and score
weights, pluginConfig arguments, percentageOfNodesToScore and the pod
back-off. Every mistake is reported with the path of the field, as
``profiles[0].pluginConfig[1].args.scoringStrategy.type: Unsupported value: ...``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubelite.scheduler.plugins.interpodaffinity import InterPodAffinityArgs
from kubelite.scheduler.plugins.noderesources import SCORING_STRATEGIES, FitArgs
from kubelite.scheduler.plugins.registry import DEFAULT_PLUGINS, KNOWN_BUT_ABSENT, REGISTRY
from kubelite.scheduler.profile import DEFAULT_SCHEDULER_NAME, Profile, build_profile

API_VERSIONS = ("kubescheduler.config.k8s.io/v1",)
KIND = "KubeSchedulerConfiguration"
EXTENSION_POINTS = ("preFilter", "filter", "postFilter", "preScore", "score")
# Accepted so that kube-scheduler configurations load; kubelite runs its own fixed sort, bind and so on.
OTHER_POINTS = ("queueSort", "preEnqueue", "reserve", "permit", "preBind", "bind", "postBind")


_DEFAULT_WEIGHTS = dict(DEFAULT_PLUGINS)


class ConfigError(ValueError):
    """An invalid configuration; the message starts with the field's path."""


@dataclass(frozen=True)
class ProfileConfig:
    scheduler_name: str
    # (plugin name, {extension point: score weight}) in run order
    plugins: tuple[tuple[str, dict[str, int]], ...]
    args: dict[str, Any]
    percentage_of_nodes_to_score: int | None

    def build(self, default_percentage: int) -> Profile:
        pct = self.percentage_of_nodes_to_score
        return build_profile(self.scheduler_name, list(self.plugins), self.args,
                             default_percentage if pct is None else pct)


@dataclass(frozen=True)
class SchedulerConfiguration:
    profiles: tuple[ProfileConfig, ...]
    percentage_of_nodes_to_score: int = 0
    pod_initial_backoff_seconds: float = 1.0
    pod_max_backoff_seconds: float = 10.0
    kubeconfig: str = ""
    leader_elect: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def build_profiles(self) -> dict[str, Profile]:
        return {p.scheduler_name: p.build(self.percentage_of_nodes_to_score) for p in self.profiles}


def _fail(path: str, problem: str) -> ConfigError:
    return ConfigError(f"{path}: {problem}" if path else problem)


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(path, f"Invalid value: {value!r}: must be an object")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(path, f"Invalid value: {value!r}: must be a list")
    return value


def _known(obj: Mapping[str, Any], allowed: tuple[str, ...], path: str) -> None:
    for key in obj:
        if key not in allowed:
            raise _fail(f"{path}.{key}" if path else str(key), f'unknown field "{key}"')


def _int(value: Any, path: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"Invalid value: {value!r}: must be an integer")
    if not lo <= value <= hi:
        raise _fail(path, f"Invalid value: {value}: not in valid range [{lo}-{hi}]")
    return value


def load_config(path: str | Path) -> SchedulerConfiguration:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    return parse_config(data)


def default_config() -> SchedulerConfiguration:
    return parse_config({"apiVersion": API_VERSIONS[0], "kind": KIND})


def parse_config(data: Any) -> SchedulerConfiguration:
    top = _mapping(data, "")
    _known(top, ("apiVersion", "kind", "profiles", "percentageOfNodesToScore", "podInitialBackoffSeconds",
                 "podMaxBackoffSeconds", "clientConnection", "leaderElection", "parallelism",
                 "delayCacheUntilActive", "extenders"), "")
    if top.get("apiVersion") not in API_VERSIONS:
        raise _fail("apiVersion", f"Unsupported value: {top.get('apiVersion')!r}: supported values: "
                    + ", ".join(f'"{v}"' for v in API_VERSIONS))
    if top.get("kind") != KIND:
        raise _fail("kind", f'Unsupported value: {top.get("kind")!r}: supported values: "{KIND}"')
    pct = _int(top.get("percentageOfNodesToScore", 0), "percentageOfNodesToScore", 0, 100)
    initial = _int(top.get("podInitialBackoffSeconds", 1), "podInitialBackoffSeconds", 1, 3600)
    maximum = _int(top.get("podMaxBackoffSeconds", 10), "podMaxBackoffSeconds", 1, 3600)
    if maximum < initial:
        raise _fail("podMaxBackoffSeconds", f"Invalid value: {maximum}: must be greater than or equal to "
                    f"podInitialBackoffSeconds ({initial})")
    if top.get("extenders"):
        raise _fail("extenders", "Forbidden: scheduler extenders are not supported")
    conn = _mapping(top.get("clientConnection"), "clientConnection")
    kubeconfig = conn.get("kubeconfig", "") or ""
    if not isinstance(kubeconfig, str):
        raise _fail("clientConnection.kubeconfig", f"Invalid value: {kubeconfig!r}: must be a string")
    election = _mapping(top.get("leaderElection"), "leaderElection")
    leader_elect = election.get("leaderElect")
    if leader_elect is not None and not isinstance(leader_elect, bool):
        raise _fail("leaderElection.leaderElect", f"Invalid value: {leader_elect!r}: must be true or false")
    raw_profiles = _list(top.get("profiles"), "profiles") or [{}]
    profiles = []
    names: set[str] = set()
    for i, raw in enumerate(raw_profiles):
        p = _parse_profile(_mapping(raw, f"profiles[{i}]"), f"profiles[{i}]")
        if p.scheduler_name in names:
            raise _fail(f"profiles[{i}].schedulerName", f'Duplicate value: "{p.scheduler_name}"')
        names.add(p.scheduler_name)
        profiles.append(p)
    return SchedulerConfiguration(tuple(profiles), pct, float(initial), float(maximum), kubeconfig, leader_elect)


def _plugin_list(raw: Any, path: str) -> list[tuple[str, int, str]]:
    out = []
    for j, item in enumerate(_list(raw, path)):
        ipath = f"{path}[{j}]"
        entry = _mapping(item, ipath)
        _known(entry, ("name", "weight"), ipath)
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise _fail(f"{ipath}.name", "Required value: a plugin name")
        weight = _int(entry.get("weight", 0), f"{ipath}.weight", 0, 100)
        out.append((name, weight, ipath))
    return out


def _check_name(name: str, path: str, *, allow_star: bool = False) -> None:
    if name == "*" and allow_star:
        return
    if name not in REGISTRY and name not in KNOWN_BUT_ABSENT:
        raise _fail(f"{path}.name", f'Invalid value: "{name}": no plugin of this name '
                    f"(known: {', '.join(sorted(REGISTRY))})")


def _merge(base: list[tuple[str, int]], section: Mapping[str, Any], path: str) -> list[tuple[str, int]]:
    """Kubernetes' merge: disabled removes (``*``: all), enabled replaces in place or appends."""
    disabled = _plugin_list(section.get("disabled"), f"{path}.disabled")
    for name, _, ipath in disabled:
        _check_name(name, ipath, allow_star=True)
    off = {name for name, _, _ in disabled}
    result = [] if "*" in off else [(n, w) for n, w in base if n not in off]
    for name, weight, ipath in _plugin_list(section.get("enabled"), f"{path}.enabled"):
        _check_name(name, ipath)
        for k, (n, w) in enumerate(result):
            if n == name:
                result[k] = (n, weight or w)
                break
        else:
            result.append((name, weight))
    return result


def _parse_profile(raw: Mapping[str, Any], path: str) -> ProfileConfig:
    _known(raw, ("schedulerName", "plugins", "pluginConfig", "percentageOfNodesToScore"), path)
    name = raw.get("schedulerName", DEFAULT_SCHEDULER_NAME)
    if not isinstance(name, str) or not name:
        raise _fail(f"{path}.schedulerName", "Required value")
    pct = raw.get("percentageOfNodesToScore")
    if pct is not None:
        pct = _int(pct, f"{path}.percentageOfNodesToScore", 0, 100)
    plugins = _mapping(raw.get("plugins"), f"{path}.plugins")
    _known(plugins, ("multiPoint", *EXTENSION_POINTS, *OTHER_POINTS), f"{path}.plugins")
    for point, section in plugins.items():
        if point in OTHER_POINTS:
            for key in ("enabled", "disabled"):
                for pname, _, ipath in _plugin_list(_mapping(section, f"{path}.plugins.{point}").get(key),
                                                    f"{path}.plugins.{point}.{key}"):
                    _check_name(pname, ipath, allow_star=key == "disabled")
    multi = _merge(list(DEFAULT_PLUGINS), _mapping(plugins.get("multiPoint"), f"{path}.plugins.multiPoint"),
                   f"{path}.plugins.multiPoint")
    order = [n for n, _ in multi]
    points: dict[str, dict[str, int]] = {n: {} for n in order}
    for point in EXTENSION_POINTS:
        section = _mapping(plugins.get(point), f"{path}.plugins.{point}")
        merged = _merge(multi, section, f"{path}.plugins.{point}")
        for pname, _, ipath in _plugin_list(section.get("enabled"), f"{path}.plugins.{point}.enabled"):
            if pname in REGISTRY and not _implements(pname, point):
                raise _fail(f"{ipath}.name", f'Invalid value: "{pname}": the plugin does not extend {point}')
        for n, w in merged:
            if n not in points:
                points[n] = {}
                order.append(n)
            if point == "score":
                # Plugins that only filter have no default weight: they score only when given one.
                default_weight = _DEFAULT_WEIGHTS.get(n, 1)
                if w or default_weight:
                    points[n][point] = w or default_weight
            else:
                points[n][point] = 0
    args = _parse_plugin_config(raw.get("pluginConfig"), f"{path}.pluginConfig")
    return ProfileConfig(name, tuple((n, points[n]) for n in order), args, pct)


def _implements(name: str, point: str) -> bool:
    plugin = REGISTRY[name](None)
    method = {"preFilter": "pre_filter", "filter": "filter", "postFilter": "post_filter", "preScore": "pre_score",
              "score": "score"}[point]
    return callable(getattr(plugin, method, None))


def _parse_plugin_config(raw: Any, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, item in enumerate(_list(raw, path)):
        ipath = f"{path}[{i}]"
        entry = _mapping(item, ipath)
        _known(entry, ("name", "args"), ipath)
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise _fail(f"{ipath}.name", "Required value")
        _check_name(name, ipath)
        if name in out:
            raise _fail(f"{ipath}.name", f'Duplicate value: "{name}"')
        args = _mapping(entry.get("args"), f"{ipath}.args")
        apath = f"{ipath}.args"
        if name == "NodeResourcesFit":
            out[name] = _fit_args(args, apath)
        elif name == "InterPodAffinity":
            _known(args, ("apiVersion", "kind", "hardPodAffinityWeight", "ignorePreferredTermsOfExistingPods"),
                   apath)
            weight = _int(args.get("hardPodAffinityWeight", 1), f"{apath}.hardPodAffinityWeight", 0, 100)
            out[name] = InterPodAffinityArgs(weight)
        else:
            out[name] = dict(args)
    return out


def _fit_args(args: Mapping[str, Any], path: str) -> FitArgs:
    _known(args, ("apiVersion", "kind", "scoringStrategy", "ignoredResources", "ignoredResourceGroups"), path)
    strategy = _mapping(args.get("scoringStrategy"), f"{path}.scoringStrategy")
    _known(strategy, ("type", "resources", "requestedToCapacityRatio"), f"{path}.scoringStrategy")
    kind = strategy.get("type", "LeastAllocated")
    if kind not in SCORING_STRATEGIES:
        raise _fail(f"{path}.scoringStrategy.type", f"Unsupported value: {kind!r}: supported values: "
                    + ", ".join(f'"{s}"' for s in SCORING_STRATEGIES))
    resources = []
    for i, item in enumerate(_list(strategy.get("resources"), f"{path}.scoringStrategy.resources")):
        rpath = f"{path}.scoringStrategy.resources[{i}]"
        r = _mapping(item, rpath)
        _known(r, ("name", "weight"), rpath)
        rname = r.get("name")
        if not isinstance(rname, str) or not rname:
            raise _fail(f"{rpath}.name", "Required value")
        resources.append((rname, _int(r.get("weight", 1), f"{rpath}.weight", 1, 100)))
    ignored = _list(args.get("ignoredResources"), f"{path}.ignoredResources")
    groups = _list(args.get("ignoredResourceGroups"), f"{path}.ignoredResourceGroups")
    for j, g in enumerate(groups):
        if not isinstance(g, str) or "/" in g:
            raise _fail(f"{path}.ignoredResourceGroups[{j}]", f"Invalid value: {g!r}: must be a domain, no '/'")
    base = FitArgs()
    return FitArgs(kind, tuple(resources) or base.resources, frozenset(map(str, ignored)), frozenset(groups))
