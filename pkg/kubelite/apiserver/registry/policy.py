"""policy/v1: PodDisruptionBudgets and the pods/eviction subresource.

An eviction is a delete that asks first. `kubelite drain` and the taint
manager evict rather than delete so that an application keeps the healthy
pods its budget asks for: the API server, not the caller, decides, because
only the server can check the budget and take one disruption from it in the
same compare-and-swap, so that two drains racing on one budget cannot both
take its last allowed disruption. The disruption controller (controller
manager) computes ``status.disruptionsAllowed`` from the pods it sees and
forgets pods in ``status.disruptedPods`` once they are gone.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from google.protobuf.message import Message

from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.api.meta.v1 import generated_pb2 as metav1
from kubelite.api.policy.v1 import generated_pb2 as policy_v1
from kubelite.apiserver.pipeline import Attributes
from kubelite.apiserver.registry import validation as v
from kubelite.apiserver.registry.core import StrategyFactory
from kubelite.apiserver.registry.strategy import Strategy
from kubelite.apiserver.registry.subresource import HasObj, StoreView, Subresource, SubresourceFactory
from kubelite.machinery import errors, selectors
from kubelite.machinery.errors import FieldError

# Kubernetes refuses evictions once this many evicted pods await the controller.
MAX_DISRUPTED_PODS = 2000
EVICTION_ATTEMPTS = 8
_POLICIES = ("IfHealthyBudget", "AlwaysAllow")
_BUDGET_REFUSED = "Cannot evict pod as it would violate the pod's disruption budget."


class PodDisruptionBudgetStrategy(Strategy):
    def validate(self, obj: Message) -> list[FieldError]:
        assert isinstance(obj, policy_v1.PodDisruptionBudget)
        errs = self.validate_meta(obj)
        spec = obj.spec
        if spec.HasField("min_available") and spec.HasField("max_unavailable"):
            errs.append(v.invalid("spec", "", "minAvailable and maxUnavailable cannot be both set"))
        for path, field in (("spec.minAvailable", "min_available"), ("spec.maxUnavailable", "max_unavailable")):
            if spec.HasField(field):
                errs.extend(_int_or_percent(path, getattr(spec, field)))
        if spec.HasField("selector"):
            errs.extend(selectors.label_selector_errors(spec.selector, "spec.selector"))
        if spec.HasField("unhealthy_pod_eviction_policy"):
            errs.extend(v.one_of("spec.unhealthyPodEvictionPolicy", spec.unhealthy_pod_eviction_policy, _POLICIES))
        return errs

    def validate_status_update(self, new: Message, old: Message) -> list[FieldError]:
        assert isinstance(new, policy_v1.PodDisruptionBudget)
        st = new.status
        errs: list[FieldError] = []
        for path, value in (("status.disruptionsAllowed", st.disruptions_allowed),
                            ("status.currentHealthy", st.current_healthy),
                            ("status.desiredHealthy", st.desired_healthy),
                            ("status.expectedPods", st.expected_pods)):
            errs.extend(v.non_negative(path, value))
        return errs


def _int_or_percent(path: str, value: str) -> list[FieldError]:
    errs = v.validate_int_or_percent(path, value)
    if errs:
        return errs
    number = int(value.rstrip("%"))
    if number < 0:
        return v.non_negative(path, number)
    if value.endswith("%") and number > 100:
        return [v.invalid(path, value, "must not be greater than 100%")]
    return []


def _ready(pod: core_v1.Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


def _too_many(message: str, pdb_name: str) -> errors.StatusError:
    # The cause names the budget, as Kubernetes' DisruptionBudget cause does.
    cause = FieldError("DisruptionBudget", "", message)
    return errors.StatusError("TooManyRequests", f"{_BUDGET_REFUSED} {message}", name=pdb_name,
                              group="policy", kind="poddisruptionbudgets", causes=[cause], retry_after_seconds=10)


class EvictionSubresource(Subresource):
    """pods/eviction: delete the pod if its PodDisruptionBudget allows one more disruption."""

    name = "eviction"
    message = policy_v1.Eviction
    verbs = ("create",)

    def _budgets(self) -> StoreView:
        return self.lookup("policy", "poddisruptionbudgets")

    async def create(self, store: StoreView, attrs: Attributes, body: Message) -> Message:
        assert isinstance(body, policy_v1.Eviction)
        if body.metadata.name and body.metadata.name != attrs.name:
            raise errors.bad_request("name in URL does not match name in Eviction object")
        opts = body.delete_options
        dry_run = attrs.dry_run or "All" in opts.dry_run
        for _attempt in range(EVICTION_ATTEMPTS):
            pod = await store.get(attrs.namespace, attrs.name)
            assert isinstance(pod, core_v1.Pod)
            try:
                await self._take_disruption(attrs, pod, dry_run)
            except errors.StatusError as exc:
                if exc.reason == "Conflict":
                    continue  # the budget changed under us: judge again on its new state
                raise
            delete_attrs = dataclasses.replace(attrs, verb="delete", subresource="", dry_run=dry_run)
            grace = opts.grace_period_seconds if opts.HasField("grace_period_seconds") else None
            await store.delete(delete_attrs, propagation_policy=opts.propagation_policy,
                               uid=opts.preconditions.uid, resource_version=opts.preconditions.resource_version,
                               grace_period=grace)
            return metav1.Status(api_version="v1", kind="Status", status="Success", code=201)
        raise errors.StatusError("TooManyRequests", "the disruption budget kept changing; try again",
                                 retry_after_seconds=1)

    async def _take_disruption(self, attrs: Attributes, pod: core_v1.Pod, dry_run: bool) -> bool:
        """Takes one allowed disruption from the pod's budget; False when no budget applies.

        Raises TooManyRequests when the budget allows none, and Conflict when
        the budget changed between the read and the write (the caller retries).
        """
        if pod.status.phase in ("Succeeded", "Failed", "Pending") or pod.metadata.HasField("deletion_timestamp"):
            return False  # evicting these disrupts nothing a budget counts
        budgets = self._budgets()
        matching: list[policy_v1.PodDisruptionBudget] = []
        for obj in await budgets.list_objects(pod.metadata.namespace):
            assert isinstance(obj, policy_v1.PodDisruptionBudget)
            if not obj.spec.HasField("selector"):
                continue  # a nil selector selects nothing in policy/v1
            if selectors.from_label_selector_proto(obj.spec.selector).matches(pod.metadata.labels):
                matching.append(obj)
        if not matching:
            return False
        if len(matching) > 1:
            raise errors.internal("This pod has more than one PodDisruptionBudget, which the eviction subresource "
                                  "does not support.")
        pdb = matching[0]
        name = pdb.metadata.name
        st = pdb.status
        policy = pdb.spec.unhealthy_pod_eviction_policy or "IfHealthyBudget"
        if not _ready(pod) and (policy == "AlwaysAllow" or
                                (st.desired_healthy > 0 and st.current_healthy >= st.desired_healthy)):
            return False  # an unready pod does not count towards a budget that is met
        if st.observed_generation < pdb.metadata.generation:
            raise _too_many(f"The disruption budget {name} is still being processed by the server.", name)
        if st.disruptions_allowed < 0:
            raise errors.forbidden("pdb disruptions allowed is negative")
        if len(st.disrupted_pods) > MAX_DISRUPTED_PODS:
            raise errors.forbidden("DisruptedPods map too big - too many evictions not confirmed by PDB controller")
        if st.disruptions_allowed == 0:
            raise _too_many(f"The disruption budget {name} needs {st.desired_healthy} healthy pods and has "
                            f"{st.current_healthy} currently", name)
        if dry_run:
            return True
        revision = int(pdb.metadata.resource_version)
        pod_name = pod.metadata.name

        async def mutate(current: HasObj) -> Message:
            new: Any = policy_v1.PodDisruptionBudget()
            new.CopyFrom(current.obj)
            new.status.disruptions_allowed -= 1
            new.status.disrupted_pods[pod_name].seconds = int(time.time())
            return new  # type: ignore[no-any-return]

        pdb_attrs = Attributes(attrs.user, "update", budgets.rt, pod.metadata.namespace, name,
                               subresource="status")
        await budgets.guaranteed_update(pdb_attrs, name, mutate, precondition=revision, status=True)
        return True


STRATEGIES: dict[tuple[str, str], StrategyFactory] = {
    ("policy", "poddisruptionbudgets"): lambda rt, _options: PodDisruptionBudgetStrategy(rt),
}

SUBRESOURCES: dict[tuple[str, str], dict[str, SubresourceFactory]] = {
    ("", "pods"): {"eviction": EvictionSubresource},
}
