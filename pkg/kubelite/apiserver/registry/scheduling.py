"""Strategy of scheduling.k8s.io/v1 PriorityClasses.

Values above one billion are reserved for the system classes
(system-cluster-critical, system-node-critical), and so is the "system-"
name prefix; a class's value and preemption policy are immutable, since pods
already carry the resolved numbers.
"""

from __future__ import annotations

from google.protobuf.message import Message

from kubelite.api.scheduling.v1 import generated_pb2 as scheduling_v1
from kubelite.apiserver.registry import validation as v
from kubelite.apiserver.registry.core import StrategyFactory
from kubelite.apiserver.registry.strategy import Strategy
from kubelite.machinery.errors import FieldError

HIGHEST_USER_DEFINABLE_PRIORITY = 1_000_000_000
SYSTEM_CLASSES = {"system-cluster-critical": 2_000_000_000, "system-node-critical": 2_000_001_000}
PREEMPTION_POLICIES = ("PreemptLowerPriority", "Never")


class PriorityClassStrategy(Strategy):
    def default(self, obj: Message) -> None:
        assert isinstance(obj, scheduling_v1.PriorityClass)
        if not obj.HasField("preemption_policy"):
            obj.preemption_policy = "PreemptLowerPriority"

    def validate(self, obj: Message) -> list[FieldError]:
        assert isinstance(obj, scheduling_v1.PriorityClass)
        errs = self.validate_meta(obj)
        name = obj.metadata.name
        if name in SYSTEM_CLASSES:
            if obj.value != SYSTEM_CLASSES[name]:
                errs.append(v.invalid("value", obj.value, f"must be {SYSTEM_CLASSES[name]} for the system class"))
        elif name.startswith("system-"):
            errs.append(v.invalid("metadata.name", name, "the prefix 'system-' is reserved for system classes"))
        elif obj.value > HIGHEST_USER_DEFINABLE_PRIORITY:
            errs.append(v.invalid("value", obj.value,
                                  f"must not be greater than {HIGHEST_USER_DEFINABLE_PRIORITY}"))
        errs.extend(v.one_of("preemptionPolicy", obj.preemption_policy, PREEMPTION_POLICIES))
        return errs

    def validate_update(self, new: Message, old: Message, subresource: str = "") -> list[FieldError]:
        assert isinstance(new, scheduling_v1.PriorityClass) and isinstance(old, scheduling_v1.PriorityClass)
        errs = self.validate(new)
        if new.value != old.value:
            errs.append(v.invalid("value", new.value, "field is immutable"))
        if new.preemption_policy != old.preemption_policy:
            errs.append(v.invalid("preemptionPolicy", new.preemption_policy, "field is immutable"))
        return errs


STRATEGIES: dict[tuple[str, str], StrategyFactory] = {
    ("scheduling.k8s.io", "priorityclasses"): lambda rt, _options: PriorityClassStrategy(rt),
}
