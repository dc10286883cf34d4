"""What the scheduler tells users through Events: Scheduled, FailedScheduling, Preempted.

The writing itself is the shared recorder's (``kubelite.client.events``):
bounded queue, deduplication into ``count``, per-object rate limit, never in
the scheduling loop's way. The loop only sees this Protocol, so that unit
tests count events with a fake.
"""

from __future__ import annotations

from typing import Any, Protocol

# Reasons and the component, as kube-scheduler writes them.
SCHEDULED = "Scheduled"
FAILED_SCHEDULING = "FailedScheduling"
PREEMPTED = "Preempted"


class EventRecorder(Protocol):
    def event(self, obj: Any, type_: str, reason: str, message: str) -> None: ...


class NullRecorder:
    def event(self, obj: Any, type_: str, reason: str, message: str) -> None:
        return None
