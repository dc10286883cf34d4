"""KubeSchedulerConfiguration: defaults, merging of plugin sets, and errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from kubelite.scheduler.config import ConfigError, default_config, load_config, parse_config
from kubelite.scheduler.plugins.noderesources import MOST_ALLOCATED, NodeResourcesFit

HEAD = {"apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration"}


def _weights(cfg: Any, name: str = "default-scheduler") -> dict[str, int]:
    return {p.name: w for p, w in cfg.build_profiles()[name].score}


def test_defaults_are_kubernetes_defaults() -> None:
    cfg = default_config()
    assert cfg.percentage_of_nodes_to_score == 0
    assert (cfg.pod_initial_backoff_seconds, cfg.pod_max_backoff_seconds) == (1.0, 10.0)
    assert _weights(cfg) == {"TaintToleration": 3, "NodeAffinity": 2, "NodeResourcesFit": 1, "InterPodAffinity": 2,
                             "PodTopologySpread": 2, "NodeResourcesBalancedAllocation": 1, "ImageLocality": 1}
    profile = cfg.build_profiles()["default-scheduler"]
    assert [p.name for p in profile.filter] == ["NodeUnschedulable", "NodeName", "TaintToleration", "NodeAffinity",
                                                "NodePorts", "NodeResourcesFit", "InterPodAffinity",
                                                "PodTopologySpread"]


def test_profiles_weights_disabled_plugins_and_args() -> None:
    cfg = parse_config({**HEAD, "percentageOfNodesToScore": 30, "profiles": [
        {"schedulerName": "default-scheduler"},
        {"schedulerName": "packer", "percentageOfNodesToScore": 100,
         "plugins": {"score": {"disabled": [{"name": "ImageLocality"}, {"name": "NodeResourcesBalancedAllocation"}],
                               "enabled": [{"name": "NodeResourcesFit", "weight": 5}]},
                     "filter": {"disabled": [{"name": "NodePorts"}]}},
         "pluginConfig": [{"name": "NodeResourcesFit", "args": {"scoringStrategy": {
             "type": "MostAllocated", "resources": [{"name": "cpu", "weight": 2}, {"name": "memory", "weight": 1}]}}}]},
    ]})
    profiles = cfg.build_profiles()
    assert profiles["default-scheduler"].percentage_of_nodes_to_score == 30
    packer = profiles["packer"]
    assert packer.percentage_of_nodes_to_score == 100
    weights = _weights(cfg, "packer")
    assert weights["NodeResourcesFit"] == 5 and "ImageLocality" not in weights
    assert "NodePorts" not in [p.name for p in packer.filter]
    fit = next(p for p, _ in packer.score if p.name == "NodeResourcesFit")
    assert isinstance(fit, NodeResourcesFit)
    assert fit.args.strategy == MOST_ALLOCATED and fit.args.resources == (("cpu", 2), ("memory", 1))


def test_disabling_everything_with_a_star() -> None:
    cfg = parse_config({**HEAD, "profiles": [{"plugins": {"score": {"disabled": [{"name": "*"}],
                                                                    "enabled": [{"name": "ImageLocality"}]}}}]})
    assert _weights(cfg) == {"ImageLocality": 1}


def test_kube_scheduler_only_plugins_are_accepted() -> None:
    cfg = parse_config({**HEAD, "profiles": [{"plugins": {"multiPoint": {"enabled": [{"name": "DefaultPreemption"}]},
                                                          "bind": {"enabled": [{"name": "DefaultBinder"}]}}}]})
    assert "default-scheduler" in cfg.build_profiles()


@pytest.mark.parametrize(("doc", "message"), [
    ({"apiVersion": "v1", "kind": "KubeSchedulerConfiguration"}, "apiVersion: Unsupported value: 'v1'"),
    ({**HEAD, "kind": "Pod"}, "kind: Unsupported value: 'Pod'"),
    ({**HEAD, "bogus": 1}, 'bogus: unknown field "bogus"'),
    ({**HEAD, "percentageOfNodesToScore": 120},
     "percentageOfNodesToScore: Invalid value: 120: not in valid range [0-100]"),
    ({**HEAD, "podInitialBackoffSeconds": 5, "podMaxBackoffSeconds": 2}, "podMaxBackoffSeconds: Invalid value: 2"),
    ({**HEAD, "profiles": [{"schedulerName": "a"}, {"schedulerName": "a"}]},
     'profiles[1].schedulerName: Duplicate value: "a"'),
    ({**HEAD, "profiles": [{"plugins": {"score": {"enabled": [{"name": "Nope"}]}}}]},
     'profiles[0].plugins.score.enabled[0].name: Invalid value: "Nope": no plugin of this name'),
    ({**HEAD, "profiles": [{"plugins": {"score": {"enabled": [{"name": "ImageLocality", "weight": 500}]}}}]},
     "profiles[0].plugins.score.enabled[0].weight: Invalid value: 500: not in valid range [0-100]"),
    ({**HEAD, "profiles": [{"plugins": {"score": {"enabled": [{"name": "NodePorts"}]}}}]},
     'profiles[0].plugins.score.enabled[0].name: Invalid value: "NodePorts": the plugin does not extend score'),
    ({**HEAD, "profiles": [{"plugins": {"sorce": {}}}]}, 'profiles[0].plugins.sorce: unknown field "sorce"'),
    ({**HEAD, "profiles": [{"pluginConfig": [{"name": "NodeResourcesFit", "args": {
        "scoringStrategy": {"type": "Fancy"}}}]}]},
     "profiles[0].pluginConfig[0].args.scoringStrategy.type: Unsupported value: 'Fancy'"),
    ({**HEAD, "profiles": [{"pluginConfig": [{"name": "NodeResourcesFit", "args": {
        "scoringStrategy": {"resources": [{"name": "cpu", "weight": 0}]}}}]}]},
     "profiles[0].pluginConfig[0].args.scoringStrategy.resources[0].weight: Invalid value: 0"),
    ({**HEAD, "profiles": [{"pluginConfig": [{"name": "InterPodAffinity", "args": {
        "hardPodAffinityWeight": 101}}]}]},
     "profiles[0].pluginConfig[0].args.hardPodAffinityWeight: Invalid value: 101"),
    ({**HEAD, "profiles": [{"pluginConfig": [{"name": "InterPodAffinity"}, {"name": "InterPodAffinity"}]}]},
     'profiles[0].pluginConfig[1].name: Duplicate value: "InterPodAffinity"'),
])
def test_invalid_configuration_names_the_field(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(doc)
    assert str(err.value).startswith(message), str(err.value)


def test_load_config_file(tmp_path: Any) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n"
                    "leaderElection:\n  leaderElect: false\nprofiles:\n- schedulerName: mine\n")
    cfg = load_config(path)
    assert cfg.leader_elect is False and list(cfg.build_profiles()) == ["mine"]
    path.write_text("profiles: [")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
