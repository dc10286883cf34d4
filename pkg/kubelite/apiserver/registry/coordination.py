"""Strategy of coordination.k8s.io/v1 Leases.

Leader election and node heartbeats rely on a lease's duration being a
positive number of seconds: a zero or negative duration would make every
holder look expired at once. The holder identity is free-form (host names,
pod names with UUIDs), as in Kubernetes.
"""

from __future__ import annotations

from google.protobuf.message import Message

from kubelite.api.coordination.v1 import generated_pb2 as coordination_v1
from kubelite.apiserver.registry import validation as v
from kubelite.apiserver.registry.core import StrategyFactory
from kubelite.apiserver.registry.strategy import Strategy
from kubelite.machinery.errors import FieldError


class LeaseStrategy(Strategy):
    # Holders renew by update; the first renewal creates the Lease.
    allow_create_on_update = True
    def validate(self, obj: Message) -> list[FieldError]:
        assert isinstance(obj, coordination_v1.Lease)
        errs = self.validate_meta(obj)
        spec = obj.spec
        if spec.HasField("lease_duration_seconds") and spec.lease_duration_seconds <= 0:
            errs.append(v.invalid("spec.leaseDurationSeconds", spec.lease_duration_seconds, "must be greater than 0"))
        if spec.HasField("lease_transitions"):
            errs.extend(v.non_negative("spec.leaseTransitions", spec.lease_transitions))
        if spec.HasField("strategy"):
            errs.extend(v.one_of("spec.strategy", spec.strategy, ("OldestEmulationVersion",)))
        return errs


STRATEGIES: dict[tuple[str, str], StrategyFactory] = {
    ("coordination.k8s.io", "leases"): lambda rt, _options: LeaseStrategy(rt),
}
