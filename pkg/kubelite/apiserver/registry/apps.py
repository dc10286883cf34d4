"""Strategies of apps/v1: Deployments and ReplicaSets.

Both carry a pod template that is defaulted and validated exactly like a
Pod's spec (shared functions, paths under ``spec.template``), plus the
controller rules Kubernetes enforces at the API: a non-empty selector that
matches the template's labels (otherwise the controller would create pods it
does not own) and never changes after creation (apps/v1 made it immutable so
that a controller cannot orphan its pods), and templates whose pods restart
``Always`` (a controller replaces pods; it does not run them to completion).
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from kubelite.api.apps.v1 import generated_pb2 as apps_v1
from kubelite.api.autoscaling.v1 import generated_pb2 as autoscaling_v1
from kubelite.api.meta.v1 import generated_pb2 as metav1
from kubelite.apiserver.pipeline import Attributes
from kubelite.apiserver.registry import defaults
from kubelite.apiserver.registry import validation as v
from kubelite.apiserver.registry.core import StrategyFactory
from kubelite.apiserver.registry.strategy import Strategy
from kubelite.apiserver.registry.subresource import HasObj, StoreView, Subresource, SubresourceFactory
from kubelite.machinery import errors, selectors
from kubelite.machinery import validation as names
from kubelite.machinery.errors import FieldError


def _selector_text(sel: metav1.LabelSelector) -> dict[str, Any]:
    """A readable value for error messages (what the user wrote, in JSON shape)."""
    out: dict[str, Any] = {}
    if sel.match_labels:
        out["matchLabels"] = dict(sel.match_labels)
    if sel.match_expressions:
        out["matchExpressions"] = [{"key": e.key, "operator": e.operator, "values": list(e.values)}
                                   for e in sel.match_expressions]
    return out


def validate_controller_spec(spec: Any, kind: str) -> list[FieldError]:
    """Rules shared by Deployment and ReplicaSet specs (replicas, selector, template)."""
    errs: list[FieldError] = []
    if spec.HasField("replicas"):
        errs.extend(v.non_negative("spec.replicas", spec.replicas))
    errs.extend(v.non_negative("spec.minReadySeconds", spec.min_ready_seconds))
    if not spec.HasField("selector"):
        errs.append(v.required("spec.selector"))
    elif not spec.selector.match_labels and not spec.selector.match_expressions:
        errs.append(v.invalid("spec.selector", {}, f"empty selector is invalid for {kind}"))
    else:
        sel_errs = selectors.label_selector_errors(spec.selector, "spec.selector")
        errs.extend(sel_errs)
        labels = spec.template.metadata.labels
        if not sel_errs and not selectors.from_label_selector_proto(spec.selector).matches(labels):
            errs.append(v.invalid("spec.template.metadata.labels", dict(labels),
                                  "selector does not match template labels"))
    tmeta = spec.template.metadata
    errs.extend(names.validate_labels(tmeta.labels, "spec.template.metadata.labels"))
    errs.extend(names.validate_annotations(tmeta.annotations, "spec.template.metadata.annotations"))
    tspec = spec.template.spec
    errs.extend(v.validate_pod_spec(tspec, "spec.template.spec"))
    if tspec.restart_policy and tspec.restart_policy != "Always":
        errs.append(v.not_supported("spec.template.spec.restartPolicy", tspec.restart_policy, ("Always",)))
    if tspec.HasField("active_deadline_seconds"):
        errs.append(v.forbidden("spec.template.spec.activeDeadlineSeconds",
                                "activeDeadlineSeconds in ReplicaSet is not Supported"))
    return errs


def validate_selector_unchanged(new: Any, old: Any) -> list[FieldError]:
    if new.spec.selector.SerializeToString(deterministic=True) != \
            old.spec.selector.SerializeToString(deterministic=True):
        return [v.invalid("spec.selector", _selector_text(new.spec.selector), "field is immutable")]
    return []


class DeploymentStrategy(Strategy):
    def default(self, obj: Message) -> None:
        defaults.default_deployment(_deploy(obj))

    def validate(self, obj: Message) -> list[FieldError]:
        d = _deploy(obj)
        errs = self.validate_meta(obj) + validate_controller_spec(d.spec, "deployment")
        spec = d.spec
        if spec.HasField("revision_history_limit"):
            errs.extend(v.non_negative("spec.revisionHistoryLimit", spec.revision_history_limit))
        if spec.HasField("progress_deadline_seconds") and spec.progress_deadline_seconds <= spec.min_ready_seconds:
            errs.append(v.invalid("spec.progressDeadlineSeconds", spec.progress_deadline_seconds,
                                  "must be greater than minReadySeconds"))
        errs.extend(self._validate_strategy(spec.strategy))
        return errs

    @staticmethod
    def _validate_strategy(strategy: apps_v1.DeploymentStrategy) -> list[FieldError]:
        errs = v.one_of("spec.strategy.type", strategy.type, ("Recreate", "RollingUpdate"))
        if strategy.type == "Recreate":
            if strategy.HasField("rolling_update"):
                errs.append(v.forbidden("spec.strategy.rollingUpdate",
                                        "may not be specified when strategy `type` is 'Recreate'"))
            return errs
        if strategy.type != "RollingUpdate":
            return errs
        ru = strategy.rolling_update
        path = "spec.strategy.rollingUpdate"
        errs.extend(v.validate_int_or_percent(f"{path}.maxUnavailable", ru.max_unavailable))
        errs.extend(v.validate_int_or_percent(f"{path}.maxSurge", ru.max_surge))
        if ru.max_unavailable.endswith("%") and ru.max_unavailable[:-1].isdigit() and \
                int(ru.max_unavailable[:-1]) > 100:
            errs.append(v.invalid(f"{path}.maxUnavailable", ru.max_unavailable, "must not be greater than 100%"))
        if v.int_or_percent_is_zero(ru.max_unavailable) and v.int_or_percent_is_zero(ru.max_surge):
            # Neither taking a pod down nor adding one: the rollout could never make progress.
            errs.append(v.invalid(f"{path}.maxUnavailable", ru.max_unavailable, "may not be 0 when `maxSurge` is 0"))
        return errs

    def validate_update(self, new: Message, old: Message, subresource: str = "") -> list[FieldError]:
        return self.validate(new) + validate_selector_unchanged(_deploy(new), _deploy(old))


class ReplicaSetStrategy(Strategy):
    def default(self, obj: Message) -> None:
        defaults.default_replicaset(_rs(obj))

    def validate(self, obj: Message) -> list[FieldError]:
        return self.validate_meta(obj) + validate_controller_spec(_rs(obj).spec, "replicaset")

    def validate_update(self, new: Message, old: Message, subresource: str = "") -> list[FieldError]:
        return self.validate(new) + validate_selector_unchanged(_rs(new), _rs(old))


def _deploy(obj: Message) -> apps_v1.Deployment:
    assert isinstance(obj, apps_v1.Deployment)
    return obj


def _rs(obj: Message) -> apps_v1.ReplicaSet:
    assert isinstance(obj, apps_v1.ReplicaSet)
    return obj


class ScaleSubresource(Subresource):
    """deployments/scale and replicasets/scale: the replica count as an autoscaling/v1 Scale.

    `kubelite scale` and autoscalers change replicas through here without
    knowing the owner's kind. The Scale carries the owner's name, uid and
    resourceVersion, so an update with a stale resourceVersion is a Conflict
    like any other write.
    """

    name = "scale"
    message = autoscaling_v1.Scale
    verbs = ("get", "update", "patch")

    @staticmethod
    def to_scale(obj: Message) -> autoscaling_v1.Scale:
        owner: Any = obj
        scale = autoscaling_v1.Scale(api_version="autoscaling/v1", kind="Scale")
        meta = scale.metadata
        for field in ("name", "namespace", "uid", "resource_version"):
            setattr(meta, field, getattr(owner.metadata, field))
        meta.creation_timestamp.CopyFrom(owner.metadata.creation_timestamp)
        scale.spec.replicas = owner.spec.replicas if owner.spec.HasField("replicas") else 1
        scale.status.replicas = owner.status.replicas
        scale.status.selector = str(selectors.from_label_selector_proto(owner.spec.selector))
        return scale

    async def get(self, store: StoreView, attrs: Attributes) -> Message:
        return self.to_scale(await store.get(attrs.namespace, attrs.name))

    async def update(self, store: StoreView, attrs: Attributes, body: Message) -> Message:
        assert isinstance(body, autoscaling_v1.Scale)
        if body.metadata.name and body.metadata.name != attrs.name:
            raise errors.bad_request("the name of the Scale does not match the name on the request")
        if body.spec.replicas < 0:
            raise errors.invalid("autoscaling", "Scale", attrs.name, v.non_negative("spec.replicas",
                                                                                     body.spec.replicas))
        precondition = int(body.metadata.resource_version) if body.metadata.resource_version.isdigit() else 0
        replicas = body.spec.replicas

        async def mutate(current: HasObj) -> Message:
            owner: Any = type(current.obj)()
            owner.CopyFrom(current.obj)
            owner.spec.replicas = replicas
            return owner  # type: ignore[no-any-return]

        updated = await store.guaranteed_update(attrs, attrs.name, mutate, precondition=precondition)
        return self.to_scale(updated)


STRATEGIES: dict[tuple[str, str], StrategyFactory] = {
    ("apps", "deployments"): lambda rt, _options: DeploymentStrategy(rt),
    ("apps", "replicasets"): lambda rt, _options: ReplicaSetStrategy(rt),
}

SUBRESOURCES: dict[tuple[str, str], dict[str, SubresourceFactory]] = {
    ("apps", "deployments"): {"scale": ScaleSubresource},
    ("apps", "replicasets"): {"scale": ScaleSubresource},
}
