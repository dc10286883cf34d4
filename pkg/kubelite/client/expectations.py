"""Expectations: a controller must not act twice on a cache that lags its own writes.

A ReplicaSet controller that creates 3 pods returns; its next sync may run
before the informer has seen those pods, count too few and create 3 more.
client-go's ControllerExpectations stop that: before writing, the controller
records "I expect 3 creations for this key"; the pod informer's handlers count
them down as the pods appear; a sync that finds expectations unmet skips the
create/delete step (it still updates status). A failed write lowers the
expectation at once, since its event will never come. A record older than
``ttl`` (5 minutes, as in Kubernetes) counts as met, so a lost watch event
cannot wedge a controller for ever.

``UIDTrackingExpectations`` adds what deletions need: which pods a deletion is
expected for, so that a delete seen twice (watch, then relist tombstone) is
counted once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

EXPECTATIONS_TTL = 5 * 60.0


@dataclass
class ControlleeExpectations:
    """Outstanding creations (``add``) and deletions (``delete``) for one controller key."""

    add: int = 0
    delete: int = 0
    timestamp: float = 0.0

    def fulfilled(self) -> bool:
        # Observing more than expected (someone else created a pod) still means done.
        return self.add <= 0 and self.delete <= 0


class ControllerExpectations:
    """Expected creations and deletions per controller key (``namespace/name``)."""

    def __init__(self, ttl: float = EXPECTATIONS_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._records: dict[str, ControlleeExpectations] = {}

    def get(self, key: str) -> ControlleeExpectations | None:
        return self._records.get(key)

    def satisfied(self, key: str) -> bool:
        """True when the controller may act: nothing outstanding, expired, or never recorded.

        A key with no record is "satisfied" on purpose: after a restart, or for a
        new object, the controller must do its first sync.
        """
        record = self._records.get(key)
        if record is None:
            return True
        if record.fulfilled():
            return True
        if self._clock() - record.timestamp > self._ttl:
            log.info("expectations for %s expired (add=%d delete=%d); syncing anyway", key, record.add,
                     record.delete)
            return True
        return False

    def expect_creations(self, key: str, adds: int) -> None:
        self.set_expectations(key, adds, 0)

    def expect_deletions(self, key: str, deletes: int) -> None:
        self.set_expectations(key, 0, deletes)

    def set_expectations(self, key: str, adds: int, deletes: int) -> None:
        self._records[key] = ControlleeExpectations(adds, deletes, self._clock())

    def raise_expectations(self, key: str, adds: int, deletes: int) -> None:
        record = self._records.get(key)
        if record is None:
            self.set_expectations(key, adds, deletes)
            return
        record.add += adds
        record.delete += deletes

    def lower_expectations(self, key: str, adds: int, deletes: int) -> None:
        record = self._records.get(key)
        if record is not None:
            record.add -= adds
            record.delete -= deletes

    def creation_observed(self, key: str) -> None:
        self.lower_expectations(key, 1, 0)

    def deletion_observed(self, key: str) -> None:
        self.lower_expectations(key, 0, 1)

    def delete_expectations(self, key: str) -> None:
        """Forgets the key: call it when the controller's object is deleted."""
        self._records.pop(key, None)


class UIDTrackingExpectations(ControllerExpectations):
    """ControllerExpectations that count each expected deletion once, by the dependent's UID."""

    def __init__(self, ttl: float = EXPECTATIONS_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(ttl, clock)
        self._uids: dict[str, set[str]] = {}

    def expect_deletions_of(self, key: str, uids: Iterable[str]) -> None:
        wanted = set(uids)
        self._uids[key] = wanted
        self.expect_deletions(key, len(wanted))

    def deletion_observed_of(self, key: str, uid: str) -> None:
        """Counts a deletion only if it was expected and not yet counted."""
        wanted = self._uids.get(key)
        if wanted is not None and uid in wanted:
            wanted.discard(uid)
            self.deletion_observed(key)

    def deletion_failed_of(self, key: str, uid: str) -> None:
        """A delete call failed: its event will never come, so stop waiting for it."""
        self.deletion_observed_of(key, uid)

    def delete_expectations(self, key: str) -> None:
        super().delete_expectations(key)
        self._uids.pop(key, None)
