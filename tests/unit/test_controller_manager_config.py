"""Controller manager flags: --controllers selection and validation naming the flag."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from kubelite_cmd.controller_manager.main import main

from kubelite.controllers.config import KNOWN_CONTROLLERS, ControllerManagerConfig, select_controllers
from kubelite.machinery.duration import parse_duration


def test_select_controllers_like_kube_controller_manager() -> None:
    # As in Kubernetes, the token cleaner is off in "*" and on by name (kubeadm: --controllers=*,tokencleaner).
    assert select_controllers(("*",)) == tuple(c for c in KNOWN_CONTROLLERS if c != "tokencleaner")
    assert select_controllers(("*", "tokencleaner")) == tuple(KNOWN_CONTROLLERS)
    assert ControllerManagerConfig(server="x").controllers == select_controllers(("*",))
    assert "replicaset" not in select_controllers(("*", "-replicaset"))
    assert select_controllers(("replicaset-controller",)) == ("replicaset",)
    assert select_controllers(("",)) == ()
    with pytest.raises(ValueError, match="--controllers: 'nope' is not a known controller"):
        select_controllers(("*", "nope"))


@pytest.mark.parametrize(("kwargs", "flag"), [
    ({"cluster_cidr": "10.244.0.0/33"}, "--cluster-cidr"),
    ({"node_cidr_mask_size": 8}, "--node-cidr-mask-size"),
    ({"cluster_cidr": "10.0.0.0/8", "node_cidr_mask_size": 30}, "--node-cidr-mask-size"),
    ({"node_monitor_grace_period": 0}, "--node-monitor-grace-period"),
    ({"concurrent_deployment_syncs": 0}, "--concurrent-deployment-syncs"),
    ({"secure_port": 70000}, "--secure-port"),
    ({"server": ""}, "--master"),
])
def test_bad_values_name_the_flag(kwargs: dict[str, object], flag: str) -> None:
    args: dict[str, object] = {"server": "127.0.0.1:6443", "controllers": ("nodeipam",)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=flag):
        ControllerManagerConfig(**args)  # type: ignore[arg-type]


def test_durations() -> None:
    assert parse_duration("40s") == 40
    assert parse_duration("1m30s") == 90
    assert parse_duration("500ms") == 0.5
    assert parse_duration("2") == 2
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration("forty")


def test_command_line_errors_exit_non_zero_naming_the_flag() -> None:
    result = CliRunner().invoke(main, ["--master=127.0.0.1:1", "--node-monitor-grace-period=soon"])
    assert result.exit_code == 2
    assert "--node-monitor-grace-period" in result.output
    result = CliRunner().invoke(main, ["--master=127.0.0.1:1", "--controllers=*,-bogus"])
    assert result.exit_code == 2 and "bogus" in result.output
    result = CliRunner().invoke(main, ["--master=127.0.0.1:1", "--leader-elect-renew-deadline=20s"])
    assert result.exit_code == 2 and "--leader-elect-lease-duration" in result.output


def test_every_known_controller_has_a_start_function() -> None:
    from kubelite.controllers.starters import START_FUNCS

    assert list(START_FUNCS) == list(KNOWN_CONTROLLERS)
