"""Pod strategy: defaulting, validation paths, update immutability, QoS, grace period, binding."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from google.protobuf.message import Message

from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.apiserver.pipeline import Attributes, UserInfo
from kubelite.apiserver.registry.core import BindingSubresource, PodStrategy, qos_class
from kubelite.machinery import errors
from kubelite.machinery.kinds import PODS
from tests.unit.test_registry_helpers import create, find, load, paths, strategy

BASE: dict[str, Any] = {
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2", "ports": [{"containerPort": 80}]}]},
}


def pod(**spec: Any) -> core_v1.Pod:
    data = copy.deepcopy(BASE)
    data["spec"].update(spec)
    return load(data, core_v1.Pod)


def container(**fields: Any) -> dict[str, Any]:
    return {"name": "c", "image": "busybox:1.36", **fields}


def created(p: core_v1.Pod) -> core_v1.Pod:
    errs = create(PODS, p)
    assert errs == [], [str(e) for e in errs]
    return p


# --- defaulting -------------------------------------------------------------------------------


def test_pod_defaults() -> None:
    p = created(pod())
    s = p.spec
    assert s.restart_policy == "Always"
    assert s.termination_grace_period_seconds == 30
    assert s.dns_policy == "ClusterFirst"
    assert s.scheduler_name == "default-scheduler"
    assert s.HasField("security_context")
    assert s.enable_service_links is True
    assert s.service_account_name == "default"
    assert s.HasField("priority") and s.priority == 0
    c = s.containers[0]
    assert c.image_pull_policy == "IfNotPresent"
    assert c.termination_message_path == "/dev/termination-log"
    assert c.termination_message_policy == "File"
    assert c.ports[0].protocol == "TCP"
    # Tolerations are admission's (DefaultTolerationSeconds, with the server's flags), not defaulting's.
    assert list(s.tolerations) == []
    assert p.status.phase == "Pending"
    assert p.status.qos_class == "BestEffort"


@pytest.mark.parametrize(("image", "policy"), [
    ("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.25", "IfNotPresent"),
    ("localhost:5000/nginx", "Always"), ("localhost:5000/nginx:v1", "IfNotPresent"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
])
def test_image_pull_policy_default(image: str, policy: str) -> None:
    p = created(pod(containers=[container(image=image)]))
    assert p.spec.containers[0].image_pull_policy == policy


def test_explicit_values_are_kept_and_defaulting_is_idempotent() -> None:
    p = pod(restartPolicy="Never", terminationGracePeriodSeconds=0,
            tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                          "tolerationSeconds": 5}])
    created(p)
    assert p.spec.restart_policy == "Never"
    assert p.spec.termination_grace_period_seconds == 0
    assert [t.toleration_seconds for t in p.spec.tolerations if t.key.endswith("not-ready")] == [5]
    before = p.SerializeToString(deterministic=True)
    strategy(PODS).default(p)
    assert p.SerializeToString(deterministic=True) == before


def test_probe_defaults() -> None:
    p = created(pod(containers=[container(livenessProbe={"httpGet": {"port": 8080}},
                                          readinessProbe={"tcpSocket": {"port": "http"}})]))
    lp = p.spec.containers[0].liveness_probe
    assert (lp.timeout_seconds, lp.period_seconds, lp.success_threshold, lp.failure_threshold) == (1, 10, 1, 3)
    assert lp.http_get.scheme == "HTTP" and lp.http_get.path == "/"
    assert p.spec.containers[0].readiness_probe.period_seconds == 10


def test_requests_default_to_limits() -> None:
    p = created(pod(containers=[container(resources={"limits": {"cpu": "1", "memory": "1Gi"},
                                                     "requests": {"cpu": "500m"}})]))
    assert dict(p.spec.containers[0].resources.requests) == {"cpu": "500m", "memory": "1Gi"}


# --- QoS --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("resources", "qos"), [
    ({}, "BestEffort"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1Gi"}}, "Guaranteed"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}, "Burstable"),
    ({"requests": {"memory": "100Mi"}}, "Burstable"),
    ({"limits": {"cpu": "1"}}, "Burstable"),
    ({"requests": {"ephemeral-storage": "1Gi"}}, "BestEffort"),
])
def test_qos_class(resources: dict[str, Any], qos: str) -> None:
    p = pod(containers=[container(resources=resources)])
    assert qos_class(p.spec) == qos
    assert created(p).status.qos_class == qos


def test_qos_needs_every_container_guaranteed() -> None:
    g = {"limits": {"cpu": "1", "memory": "1Gi"}}
    p = pod(containers=[container(name="a", resources=g), container(name="b")])
    assert qos_class(p.spec) == "Burstable"


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "path", "etype"), [
    ({"containers": []}, "spec.containers", "FieldValueRequired"),
    ({"containers": [container(image="")]}, "spec.containers[0].image", "FieldValueRequired"),
    ({"containers": [container(name="Bad_Name")]}, "spec.containers[0].name", "FieldValueInvalid"),
    ({"containers": [container(name="a"), container(name="a")]}, "spec.containers[1].name", "FieldValueDuplicate"),
    ({"initContainers": [container(name="a")], "containers": [container(name="a")]}, "spec.containers[0].name",
     "FieldValueDuplicate"),
    ({"containers": [container(ports=[{"containerPort": 70000}])]}, "spec.containers[0].ports[0].containerPort",
     "FieldValueInvalid"),
    ({"containers": [container(ports=[{"containerPort": 0}])]}, "spec.containers[0].ports[0].containerPort",
     "FieldValueRequired"),
    ({"containers": [container(ports=[{"containerPort": 80, "protocol": "ICMP"}])]},
     "spec.containers[0].ports[0].protocol", "FieldValueNotSupported"),
    ({"containers": [container(ports=[{"containerPort": 80, "name": "Http_Port"}])]},
     "spec.containers[0].ports[0].name", "FieldValueInvalid"),
    ({"containers": [container(ports=[{"containerPort": 80, "name": "http"},
                                      {"containerPort": 81, "name": "http"}])]},
     "spec.containers[0].ports[1].name", "FieldValueDuplicate"),
    ({"containers": [container(env=[{"name": "A=B", "value": "x"}])]}, "spec.containers[0].env[0].name",
     "FieldValueInvalid"),
    ({"containers": [container(env=[{"name": "A", "valueFrom": {}}])]}, "spec.containers[0].env[0].valueFrom",
     "FieldValueInvalid"),
    ({"containers": [container(env=[{"name": "A", "valueFrom": {
        "fieldRef": {"fieldPath": "metadata.name"}, "secretKeyRef": {"name": "s", "key": "k"}}}])]},
     "spec.containers[0].env[0].valueFrom", "FieldValueInvalid"),
    ({"containers": [container(env=[{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}])]},
     "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath", "FieldValueNotSupported"),
    ({"volumes": [{"name": "Data", "emptyDir": {}}]}, "spec.volumes[0].name", "FieldValueInvalid"),
    ({"volumes": [{"name": "d", "emptyDir": {}}, {"name": "d", "emptyDir": {}}]}, "spec.volumes[1].name",
     "FieldValueDuplicate"),
    ({"volumes": [{"name": "d", "emptyDir": {}, "hostPath": {"path": "/x"}}]}, "spec.volumes[0].emptyDir",
     "FieldValueForbidden"),
    ({"containers": [container(volumeMounts=[{"name": "missing", "mountPath": "/m"}])]},
     "spec.containers[0].volumeMounts[0].name", "FieldValueNotFound"),
    ({"restartPolicy": "Sometimes"}, "spec.restartPolicy", "FieldValueNotSupported"),
    ({"dnsPolicy": "Bogus"}, "spec.dnsPolicy", "FieldValueNotSupported"),
    ({"dnsPolicy": "None"}, "spec.dnsConfig", "FieldValueRequired"),
    ({"containers": [container(resources={"limits": {"cpu": "1x"}})]},
     "spec.containers[0].resources.limits[cpu]", "FieldValueInvalid"),
    ({"containers": [container(resources={"limits": {"cpu": "1"}, "requests": {"cpu": "2"}})]},
     "spec.containers[0].resources.requests[cpu]", "FieldValueInvalid"),
    ({"containers": [container(livenessProbe={"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}})]},
     "spec.containers[0].livenessProbe.tcpSocket", "FieldValueForbidden"),
    ({"containers": [container(livenessProbe={"periodSeconds": 5})]}, "spec.containers[0].livenessProbe",
     "FieldValueRequired"),
    ({"containers": [container(livenessProbe={"httpGet": {"port": 0}})]},
     "spec.containers[0].livenessProbe.httpGet.port", "FieldValueInvalid"),
    ({"containers": [container(livenessProbe={"httpGet": {"port": "Not_A_Name"}})]},
     "spec.containers[0].livenessProbe.httpGet.port", "FieldValueInvalid"),
    ({"nodeSelector": {"bad key!": "x"}}, "spec.nodeSelector", "FieldValueInvalid"),
    ({"tolerations": [{"key": "k", "operator": "Maybe"}]}, "spec.tolerations[0].operator",
     "FieldValueNotSupported"),
    ({"tolerations": [{"key": "k", "operator": "Exists", "effect": "Sometimes"}]}, "spec.tolerations[0].effect",
     "FieldValueNotSupported"),
    ({"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}, "spec.tolerations[0].operator",
     "FieldValueInvalid"),
    ({"terminationGracePeriodSeconds": -5}, "spec.terminationGracePeriodSeconds", "FieldValueInvalid"),
])
def test_validation(spec: dict[str, Any], path: str, etype: str) -> None:
    errs = create(PODS, pod(**spec))
    assert find(errs, path).type == etype


def test_resource_error_message_names_the_limit() -> None:
    errs = create(PODS, pod(containers=[container(resources={"limits": {"memory": "1Gi"},
                                                             "requests": {"memory": "2Gi"}})]))
    assert str(find(errs, "spec.containers[0].resources.requests[memory]")) == (
        'spec.containers[0].resources.requests[memory]: Invalid value: "2Gi": '
        "must be less than or equal to memory limit of 1Gi")


def test_valid_volume_mount() -> None:
    p = pod(volumes=[{"name": "data"}], containers=[container(volumeMounts=[{"name": "data", "mountPath": "/d"}])])
    created(p)
    assert p.spec.volumes[0].HasField("empty_dir")  # a volume without a source is an emptyDir


def test_meta_is_validated() -> None:
    p = pod()
    p.metadata.name = "Not_Valid"
    assert "metadata.name" in paths(create(PODS, p))


# --- update -----------------------------------------------------------------------------------


def _update(new: core_v1.Pod, old: core_v1.Pod) -> list[str]:
    s = strategy(PODS)
    s.prepare_for_update(new, old)
    s.default(new)
    return [str(e) for e in s.validate_update(new, old)]


def _pair() -> tuple[core_v1.Pod, core_v1.Pod]:
    old = created(pod(activeDeadlineSeconds=100, tolerations=[{"key": "dedicated", "operator": "Exists"}]))
    new = core_v1.Pod()
    new.CopyFrom(old)
    return new, old


def test_update_may_change_image_and_shorten_deadline_and_add_tolerations() -> None:
    new, old = _pair()
    new.spec.containers[0].image = "nginx:1.25"
    new.spec.active_deadline_seconds = 50
    new.spec.tolerations.add(key="dedicated", operator="Equal", value="web", effect="NoSchedule")
    assert _update(new, old) == []


@pytest.mark.parametrize("change", [
    lambda p: setattr(p.spec, "restart_policy", "Never"),
    lambda p: p.spec.containers[0].ports.add(container_port=81, protocol="TCP"),
    lambda p: setattr(p.spec, "node_name", "node-1"),
    lambda p: p.spec.containers.add(name="extra", image="busybox"),
    lambda p: p.spec.tolerations.__delitem__(0),  # removes the user's toleration
])
def test_update_forbids_other_spec_changes(change: Callable[[core_v1.Pod], Any]) -> None:
    new, old = _pair()
    change(new)
    errs = _update(new, old)
    assert any(e.startswith("spec: Forbidden: pod updates may not change fields other than") for e in errs), errs


def test_update_may_not_extend_deadline() -> None:
    new, old = _pair()
    new.spec.active_deadline_seconds = 200
    assert any(e.startswith("spec.activeDeadlineSeconds: Invalid value: 200") for e in _update(new, old))


def test_update_keeps_status() -> None:
    new, old = _pair()
    new.status.phase = "Running"
    _update(new, old)
    assert new.status.phase == "Pending"


def test_status_update_cannot_leave_terminal_phase() -> None:
    s = strategy(PODS)
    old = created(pod())
    old.status.phase = "Succeeded"
    new = core_v1.Pod()
    new.CopyFrom(old)
    new.status.phase = "Running"
    s.prepare_for_status_update(new, old)
    assert find(s.validate_status_update(new, old), "status.phase").type == "FieldValueForbidden"


# --- grace period and field selectors ---------------------------------------------------------


def test_grace_period() -> None:
    s = strategy(PODS)
    p = created(pod(terminationGracePeriodSeconds=45))
    assert s.grace_period(p, None) == 0  # not scheduled
    p.spec.node_name = "node-1"
    assert s.grace_period(p, None) == 45
    assert s.grace_period(p, 3) == 3
    p.status.phase = "Failed"
    assert s.grace_period(p, 10) == 0


def test_field_set() -> None:
    p = created(pod(nodeName="node-1"))
    p.status.pod_ip = "10.244.1.5"
    fields = strategy(PODS).field_set(p)
    assert fields["spec.nodeName"] == "node-1"
    assert fields["status.phase"] == "Pending"
    assert fields["status.podIP"] == "10.244.1.5"
    assert fields["spec.schedulerName"] == "default-scheduler"
    assert "status.nominatedNodeName" in strategy(PODS).selectable_fields()


# --- binding ----------------------------------------------------------------------------------


@dataclass
class _Stored:
    obj: Message


class FakePodStore:
    """Just enough of ResourceStore.guaranteed_update: read, mutate, prepare, default, validate, write."""

    def __init__(self, strategy: PodStrategy, pod: core_v1.Pod) -> None:
        self.strategy = strategy
        self.pod = pod
        self.writes = 0

    async def guaranteed_update(self, attrs: Attributes, name: str,
                                mutate: Callable[[Any], Awaitable[Message]], *,
                                precondition: int = 0, status: bool = False, from_cache: bool = False) -> Message:
        old = core_v1.Pod()
        old.CopyFrom(self.pod)
        new = await mutate(_Stored(old))
        assert isinstance(new, core_v1.Pod)
        self.strategy.prepare_for_update(new, old, attrs.subresource)
        self.strategy.default(new)
        causes = self.strategy.validate_update(new, old, attrs.subresource)
        if causes:
            raise errors.invalid("", "Pod", name, causes)
        self.pod = new
        self.writes += 1
        return new


class _Binder:
    """The pods/binding route with its strategy, as the tests below drive it."""

    def __init__(self, s: PodStrategy) -> None:
        self.sub = BindingSubresource(lambda group, resource: None)  # type: ignore[arg-type,return-value]
        self.s = s

    def validate_update(self, new: core_v1.Pod, old: core_v1.Pod) -> Any:
        return self.s.validate_update(new, old)

    async def bind(self, store: FakePodStore, attrs: Attributes, node: str, uid: str) -> Message:
        return await self.sub.bind(store, attrs, node, uid)  # type: ignore[arg-type]


def _bind_setup() -> tuple[_Binder, FakePodStore, Attributes]:
    s = strategy(PODS)
    assert isinstance(s, PodStrategy)
    p = created(pod())
    p.metadata.uid = "uid-1"
    attrs = Attributes(UserInfo("scheduler"), "create", PODS, "default", "web", subresource="binding")
    return _Binder(s), FakePodStore(s, p), attrs


async def test_bind_sets_node_and_condition() -> None:
    s, store, attrs = _bind_setup()
    out = await s.bind(store, attrs, "node-1", "uid-1")
    assert isinstance(out, core_v1.Pod)
    assert out.spec.node_name == "node-1"
    conds = [c for c in out.status.conditions if c.type == "PodScheduled"]
    assert len(conds) == 1 and conds[0].status == "True" and conds[0].last_transition_time.seconds > 0
    assert out.status.phase == "Pending"
    # Outside binding the same change is refused again.
    new = core_v1.Pod()
    new.CopyFrom(out)
    new.spec.node_name = "node-2"
    assert any("pod updates may not change" in str(e) for e in s.validate_update(new, out))


async def test_bind_checks_the_node_name_and_refuses_other_spec_changes() -> None:
    s, store, attrs = _bind_setup()
    with pytest.raises(errors.StatusError) as err:
        await s.bind(store, attrs, "Not_A_Node", "uid-1")
    assert "spec.nodeName" in str(err.value.message)
    old = store.pod
    sneaky = core_v1.Pod()
    sneaky.CopyFrom(old)
    sneaky.spec.node_name = "node-1"
    sneaky.spec.containers[0].name = "renamed"
    assert any("pod updates may not change" in str(e) for e in s.s.validate_update(sneaky, old, "binding"))
    assert store.writes == 0


async def test_bind_replaces_existing_condition() -> None:
    s, store, attrs = _bind_setup()
    store.pod.status.conditions.add(type="PodScheduled", status="False", reason="Unschedulable")
    out = await s.bind(store, attrs, "node-1", "")
    assert isinstance(out, core_v1.Pod)
    assert [(c.type, c.status, c.reason) for c in out.status.conditions] == [("PodScheduled", "True", "")]


async def test_bind_conflicts() -> None:
    s, store, attrs = _bind_setup()
    await s.bind(store, attrs, "node-1", "uid-1")
    with pytest.raises(errors.StatusError) as info:
        await s.bind(store, attrs, "node-2", "uid-1")
    assert info.value.reason == "Conflict"
    assert 'pod web is already assigned to node "node-1"' in info.value.message
    assert store.writes == 1


async def test_bind_uid_precondition_and_required_node() -> None:
    s, store, attrs = _bind_setup()
    with pytest.raises(errors.StatusError) as info:
        await s.bind(store, attrs, "node-1", "other-uid")
    assert info.value.reason == "Conflict"
    with pytest.raises(errors.StatusError) as info:
        await s.bind(store, attrs, "", "uid-1")
    assert info.value.reason == "Invalid"
    assert [c.field for c in info.value.causes] == ["target.name"]
    assert store.writes == 0
