"""Leader election over a fake Lease store with resourceVersion preconditions."""

from __future__ import annotations

import asyncio

import click
import pytest
from click.testing import CliRunner

from kubelite.api.coordination.v1 import generated_pb2 as coordination
from kubelite.client.leaderelection import (
    LeaderElectionConfig,
    LeaderElector,
    leader_election_config,
    leader_election_options,
)
from kubelite.machinery import errors
from tests.support.poll import until

FAST = LeaderElectionConfig(lease_duration=0.6, renew_deadline=0.4, retry_period=0.05)


class FakeLeaseStore:
    """One Lease at most; updates need the current resourceVersion, as the API server's do."""

    def __init__(self) -> None:
        self.lease: coordination.Lease | None = None
        self.rv = 0
        self.fail_updates = False
        self.writes: list[str] = []

    async def get(self, namespace: str, name: str) -> coordination.Lease:
        if self.lease is None:
            raise errors.not_found("coordination.k8s.io", "leases", name)
        copy = coordination.Lease()
        copy.CopyFrom(self.lease)
        return copy

    async def create(self, lease: coordination.Lease) -> coordination.Lease:
        if self.lease is not None:
            raise errors.already_exists("coordination.k8s.io", "leases", lease.metadata.name)
        return self._store(lease, "create")

    async def update(self, lease: coordination.Lease) -> coordination.Lease:
        if self.fail_updates:
            raise errors.unavailable("etcd is gone")
        assert self.lease is not None
        if lease.metadata.resource_version != self.lease.metadata.resource_version:
            raise errors.conflict("coordination.k8s.io", "leases", lease.metadata.name, "stale")
        return self._store(lease, "update")

    def _store(self, lease: coordination.Lease, verb: str) -> coordination.Lease:
        self.rv += 1
        stored = coordination.Lease()
        stored.CopyFrom(lease)
        stored.metadata.resource_version = str(self.rv)
        self.lease = stored
        self.writes.append(f"{verb}:{lease.spec.holder_identity}")
        copy = coordination.Lease()
        copy.CopyFrom(stored)
        return copy


def elector(store: FakeLeaseStore, identity: str, **kwargs: object) -> LeaderElector:
    return LeaderElector(store, FAST, name="kube-controller-manager", identity=identity, **kwargs)  # type: ignore[arg-type]


async def test_first_candidate_creates_the_lease_and_leads() -> None:
    store = FakeLeaseStore()
    a = elector(store, "a")
    working = asyncio.Event()

    async def work() -> None:
        working.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(a.run(work), name="elector-a")
    try:
        await asyncio.wait_for(working.wait(), 5)
        assert a.is_leader
        assert store.lease is not None
        spec = store.lease.spec
        assert spec.holder_identity == "a"
        assert spec.lease_duration_seconds == 1
        assert spec.lease_transitions == 0
        assert spec.HasField("acquire_time") and spec.HasField("renew_time")
        assert store.lease.metadata.namespace == "kube-system"
        acquired = spec.acquire_time.ToDatetime()
        await until(lambda: store.writes.count("update:a") >= 2)  # renewals keep acquireTime
        assert store.lease.spec.acquire_time.ToDatetime() == acquired
        assert store.lease.spec.renew_time.ToDatetime() > acquired
    finally:
        task.cancel()
        await asyncio.wait([task])
    # Released on cancel: no holder, so a successor need not wait.
    assert store.lease is not None and store.lease.spec.holder_identity == ""


async def test_second_candidate_takes_over_only_after_the_lease_expires() -> None:
    store = FakeLeaseStore()
    a = elector(store, "a", release_on_cancel=False)
    b = elector(store, "b")
    b_leads = asyncio.Event()

    async def a_work() -> None:
        await asyncio.sleep(3600)

    async def b_work() -> None:
        b_leads.set()
        await asyncio.sleep(3600)

    task_a = asyncio.create_task(a.run(a_work), name="elector-a")
    await until(lambda: a.is_leader)
    task_b = asyncio.create_task(b.run(b_work), name="elector-b")
    try:
        await until(lambda: store.writes.count("update:a") >= 3)
        assert not b_leads.is_set() and b.leader == "a"
        task_a.cancel()  # a dies without releasing: b must wait out the lease
        await asyncio.wait([task_a])
        await asyncio.wait_for(b_leads.wait(), 5)
        assert store.lease is not None
        assert store.lease.spec.holder_identity == "b"
        assert store.lease.spec.lease_transitions == 1
    finally:
        task_b.cancel()
        await asyncio.wait([task_b])


async def test_leader_that_cannot_renew_stops_its_work() -> None:
    store = FakeLeaseStore()
    a = elector(store, "a")
    cancelled = asyncio.Event()

    async def work() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = asyncio.create_task(a.run(work), name="elector-a")
    await until(lambda: a.is_leader)
    store.fail_updates = True
    lost = await asyncio.wait_for(task, 5)
    assert lost is False
    assert cancelled.is_set()
    assert not a.is_leader


async def test_work_that_ends_by_itself_returns_true() -> None:
    store = FakeLeaseStore()

    async def work() -> None:
        return None

    assert await asyncio.wait_for(elector(store, "a").run(work), 5) is True


async def test_only_one_of_two_racing_candidates_wins() -> None:
    store = FakeLeaseStore()
    a, b = elector(store, "a"), elector(store, "b")

    async def work() -> None:
        await asyncio.sleep(3600)

    tasks = [asyncio.create_task(e.run(work), name=f"elector-{e.identity}") for e in (a, b)]
    try:
        await until(lambda: a.is_leader or b.is_leader)
        await asyncio.sleep(0.2)
        assert a.is_leader != b.is_leader
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks)


@pytest.mark.parametrize(("kwargs", "flag"), [
    ({"lease_duration": 5.0, "renew_deadline": 10.0}, "--leader-elect-lease-duration"),
    ({"renew_deadline": 2.0, "retry_period": 2.0}, "--leader-elect-renew-deadline"),
    ({"retry_period": 0.0}, "--leader-elect-retry-period"),
    ({"resource_lock": "endpoints"}, "--leader-elect-resource-lock"),
    ({"resource_namespace": ""}, "--leader-elect-resource-namespace"),
])
def test_bad_config_names_the_flag(kwargs: dict[str, object], flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        LeaderElectionConfig(**kwargs)  # type: ignore[arg-type]


def test_flags_have_kubernetes_names_and_defaults() -> None:
    seen: list[LeaderElectionConfig] = []

    @click.command()
    @leader_election_options("kube-controller-manager")
    def cmd(**kwargs: object) -> None:
        seen.append(leader_election_config(**kwargs))  # type: ignore[arg-type]

    result = CliRunner().invoke(cmd, [])
    assert result.exit_code == 0, result.output
    assert seen[0] == LeaderElectionConfig(True, 15.0, 10.0, 2.0, "leases", "kube-controller-manager", "kube-system")
    result = CliRunner().invoke(cmd, ["--no-leader-elect", "--leader-elect-lease-duration=1m",
                                      "--leader-elect-resource-namespace=ops"])
    assert result.exit_code == 0, result.output
    assert (seen[1].leader_elect, seen[1].lease_duration, seen[1].resource_namespace) == (False, 60.0, "ops")
    with pytest.raises(ValueError, match=r"--leader-elect-retry-period: .*is not a duration"):
        leader_election_config(leader_elect=True, leader_elect_lease_duration="15s",
                               leader_elect_renew_deadline="10s", leader_elect_retry_period="soon",
                               leader_elect_resource_lock="leases", leader_elect_resource_name="x",
                               leader_elect_resource_namespace="kube-system")
