"""Deployment and ReplicaSet strategies: defaulting of the docs' nginx Deployment, validation rules."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubelite.api.apps.v1 import generated_pb2 as apps_v1
from kubelite.machinery.kinds import DEPLOYMENTS, REPLICASETS
from tests.unit.test_registry_helpers import create, find, load, strategy

# https://kubernetes.io/docs/concepts/workloads/controllers/deployment/ (nginx-deployment)
NGINX: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "nginx-deployment", "namespace": "default", "labels": {"app": "nginx"}},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "nginx"}},
        "template": {
            "metadata": {"labels": {"app": "nginx"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2", "ports": [{"containerPort": 80}]}]},
        },
    },
}


def deployment(**spec: Any) -> apps_v1.Deployment:
    data = copy.deepcopy(NGINX)
    data["spec"].update(spec)
    return load(data, apps_v1.Deployment)


def test_nginx_deployment_defaults() -> None:
    d = deployment()
    assert create(DEPLOYMENTS, d) == []
    s = d.spec
    assert s.replicas == 3
    assert s.strategy.type == "RollingUpdate"
    assert (s.strategy.rolling_update.max_surge, s.strategy.rolling_update.max_unavailable) == ("25%", "25%")
    assert s.revision_history_limit == 10
    assert s.progress_deadline_seconds == 600
    t = s.template.spec
    assert (t.restart_policy, t.dns_policy, t.scheduler_name) == ("Always", "ClusterFirst", "default-scheduler")
    assert t.termination_grace_period_seconds == 30
    c = t.containers[0]
    assert (c.image_pull_policy, c.termination_message_path, c.termination_message_policy) == (
        "IfNotPresent", "/dev/termination-log", "File")
    assert c.ports[0].protocol == "TCP"
    # Pod-only defaults (admission) do not apply to templates.
    assert not t.tolerations and t.service_account_name == ""
    assert not d.HasField("status") or d.status.replicas == 0


def test_replicas_default_to_one() -> None:
    data = copy.deepcopy(NGINX)
    del data["spec"]["replicas"]
    d = load(data, apps_v1.Deployment)
    assert create(DEPLOYMENTS, d) == []
    assert d.spec.replicas == 1


def test_recreate_has_no_rolling_update() -> None:
    d = deployment(strategy={"type": "Recreate"})
    assert create(DEPLOYMENTS, d) == []
    assert not d.spec.strategy.HasField("rolling_update")


@pytest.mark.parametrize(("spec", "path", "etype"), [
    ({"selector": None}, "spec.selector", "FieldValueRequired"),
    ({"selector": {}}, "spec.selector", "FieldValueInvalid"),
    ({"selector": {"matchLabels": {"app": "other"}}}, "spec.template.metadata.labels", "FieldValueInvalid"),
    ({"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}},
     "spec.selector.matchExpressions[0].values", "FieldValueRequired"),
    ({"replicas": -1}, "spec.replicas", "FieldValueInvalid"),
    ({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}},
     "spec.strategy.rollingUpdate.maxUnavailable", "FieldValueInvalid"),
    ({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "x%"}}},
     "spec.strategy.rollingUpdate.maxSurge", "FieldValueInvalid"),
    ({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "110%"}}},
     "spec.strategy.rollingUpdate.maxUnavailable", "FieldValueInvalid"),
    ({"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}, "spec.strategy.rollingUpdate",
     "FieldValueForbidden"),
    ({"strategy": {"type": "BlueGreen"}}, "spec.strategy.type", "FieldValueNotSupported"),
])
def test_deployment_validation(spec: dict[str, Any], path: str, etype: str) -> None:
    data = copy.deepcopy(NGINX)
    for key, value in spec.items():
        if value is None:
            data["spec"].pop(key)
        else:
            data["spec"][key] = value
    errs = create(DEPLOYMENTS, load(data, apps_v1.Deployment))
    assert find(errs, path).type == etype


def test_selector_mismatch_message() -> None:
    errs = create(DEPLOYMENTS, deployment(selector={"matchLabels": {"app": "other"}}))
    assert str(find(errs, "spec.template.metadata.labels")) == (
        "spec.template.metadata.labels: Invalid value: {'app': 'nginx'}: selector does not match template labels")


def test_template_pod_spec_is_validated_with_template_paths() -> None:
    data = copy.deepcopy(NGINX)
    data["spec"]["template"]["spec"]["containers"][0]["image"] = ""
    data["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    errs = create(DEPLOYMENTS, load(data, apps_v1.Deployment))
    assert find(errs, "spec.template.spec.containers[0].image").type == "FieldValueRequired"
    assert str(find(errs, "spec.template.spec.restartPolicy")) == (
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"')


def test_selector_is_immutable() -> None:
    s = strategy(DEPLOYMENTS)
    old = deployment()
    assert create(DEPLOYMENTS, old) == []
    new = deployment(selector={"matchLabels": {"app": "nginx", "tier": "web"}})
    new.spec.template.metadata.labels["tier"] = "web"
    s.prepare_for_update(new, old)
    s.default(new)
    assert find(s.validate_update(new, old), "spec.selector").detail == "field is immutable"
    same = deployment(replicas=5)
    s.prepare_for_update(same, old)
    s.default(same)
    assert s.validate_update(same, old) == []


def test_replicaset() -> None:
    data = copy.deepcopy(NGINX)
    data["kind"] = "ReplicaSet"
    del data["spec"]["replicas"]
    rs = load(data, apps_v1.ReplicaSet)
    assert create(REPLICASETS, rs) == []
    assert rs.spec.replicas == 1
    assert rs.spec.template.spec.restart_policy == "Always"
    bad = load({**data, "spec": {**data["spec"], "selector": {"matchLabels": {"app": "x"}}}}, apps_v1.ReplicaSet)
    assert find(create(REPLICASETS, bad), "spec.template.metadata.labels").type == "FieldValueInvalid"
