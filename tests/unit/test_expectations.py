"""ControllerExpectations: client-go's counting, TTL and UID tracking."""

from __future__ import annotations

from kubelite.client.expectations import ControllerExpectations, UIDTrackingExpectations


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_unknown_key_is_satisfied() -> None:
    assert ControllerExpectations().satisfied("ns/rs")


def test_creations_must_all_be_observed() -> None:
    exp = ControllerExpectations()
    exp.expect_creations("ns/rs", 2)
    assert not exp.satisfied("ns/rs")
    exp.creation_observed("ns/rs")
    assert not exp.satisfied("ns/rs")
    exp.creation_observed("ns/rs")
    assert exp.satisfied("ns/rs")
    exp.creation_observed("ns/rs")  # more than expected still counts as met
    assert exp.satisfied("ns/rs")


def test_failed_write_lowers_and_raise_adds() -> None:
    exp = ControllerExpectations()
    exp.expect_deletions("k", 1)
    exp.raise_expectations("k", 1, 1)
    record = exp.get("k")
    assert record is not None and (record.add, record.delete) == (1, 2)
    exp.lower_expectations("k", 1, 2)
    assert exp.satisfied("k")


def test_expired_record_is_satisfied() -> None:
    clock = Clock()
    exp = ControllerExpectations(ttl=300, clock=clock)
    exp.expect_creations("k", 3)
    clock.t += 299
    assert not exp.satisfied("k")
    clock.t += 2
    assert exp.satisfied("k")


def test_delete_expectations_forgets() -> None:
    exp = ControllerExpectations()
    exp.expect_creations("k", 1)
    exp.delete_expectations("k")
    assert exp.get("k") is None and exp.satisfied("k")


def test_uid_tracking_counts_each_deletion_once() -> None:
    exp = UIDTrackingExpectations()
    exp.expect_deletions_of("k", ["u1", "u2"])
    exp.deletion_observed_of("k", "u1")
    exp.deletion_observed_of("k", "u1")  # the watch, then a relist tombstone
    exp.deletion_observed_of("k", "other")
    assert not exp.satisfied("k")
    exp.deletion_failed_of("k", "u2")
    assert exp.satisfied("k")
    exp.delete_expectations("k")
    assert exp.get("k") is None
