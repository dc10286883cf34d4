"""Leader election on a coordination/v1 Lease, with client-go's semantics.

Several copies of the scheduler or controller manager run for availability,
but only one may act: two ReplicaSet controllers would each create the
missing pods. They agree through one Lease object: the holder writes its
``renewTime`` every ``retry_period``; the others watch the record change and
take over only after it has stood still for ``lease_duration``.

Decisions carried over from client-go's leaderelection package:

* Expiry is judged on the candidate's own monotonic clock, from when it last
  *saw the record change*, never from the ``renewTime`` written in it, so
  clock skew between machines cannot cause two leaders.
* Every write is an update with the read ``resourceVersion`` as precondition
  (or a create when the Lease does not exist): two candidates racing for an
  expired lease cannot both win.
* The leader gives up when it has not managed to renew for ``renew_deadline``
  (shorter than ``lease_duration``, so it stops before anyone may take over),
  and its work is cancelled at once: a leader that cannot prove it leads must
  not act.
* ``leaseTransitions`` counts changes of holder; ``acquireTime`` is when the
  current holder took it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import click

from kubelite.api.coordination.v1 import generated_pb2 as coordination
from kubelite.client.client import Client
from kubelite.machinery.duration import parse_duration
from kubelite.machinery.errors import StatusError

log = logging.getLogger(__name__)

JITTER_FACTOR = 1.2


@dataclass(frozen=True)
class LeaderElectionConfig:
    """The ``--leader-elect*`` flags, validated; durations in seconds."""

    leader_elect: bool = True
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    resource_lock: str = "leases"
    resource_name: str = ""
    resource_namespace: str = "kube-system"

    def __post_init__(self) -> None:
        if self.resource_lock != "leases":
            raise ValueError(f"--leader-elect-resource-lock: only 'leases' is supported, not "
                             f"{self.resource_lock!r}")
        for flag, value in (("--leader-elect-lease-duration", self.lease_duration),
                            ("--leader-elect-renew-deadline", self.renew_deadline),
                            ("--leader-elect-retry-period", self.retry_period)):
            if value <= 0:
                raise ValueError(f"{flag}: must be greater than zero, got {value:g}s")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError("--leader-elect-lease-duration: must be greater than --leader-elect-renew-deadline")
        if self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            raise ValueError(f"--leader-elect-renew-deadline: must be greater than {JITTER_FACTOR} x "
                             "--leader-elect-retry-period")
        if not self.resource_namespace:
            raise ValueError("--leader-elect-resource-namespace: must not be empty")


F = TypeVar("F", bound=Callable[..., Any])


def _duration_option(name: str, default: str, help_text: str) -> Callable[[F], F]:
    return click.option(name, default=default, show_default=True, help=help_text)


def leader_election_options(default_name: str) -> Callable[[F], F]:
    """click options for ``--leader-elect*``, the names and defaults of kube components.

    The command receives ``leader_elect``, ``leader_elect_lease_duration`` ... as
    strings and bools; ``leader_election_config(**those)`` validates them.
    """

    def decorate(f: F) -> F:
        for option in reversed([
            click.option("--leader-elect/--no-leader-elect", "leader_elect", default=True, show_default=True,
                         help="Start a leader election client and gain leadership before running the main loop."),
            _duration_option("--leader-elect-lease-duration", "15s",
                             "How long non-leaders wait after the last observed renewal before taking over."),
            _duration_option("--leader-elect-renew-deadline", "10s",
                             "How long the leader keeps retrying a renewal before it stops leading."),
            _duration_option("--leader-elect-retry-period", "2s",
                             "How long clients wait between attempts to acquire or renew."),
            click.option("--leader-elect-resource-lock", default="leases", show_default=True,
                         help="The kind of lock object (leases)."),
            click.option("--leader-elect-resource-name", default=default_name, show_default=True,
                         help="The name of the Lease object."),
            click.option("--leader-elect-resource-namespace", default="kube-system", show_default=True,
                         help="The namespace of the Lease object."),
        ]):
            f = option(f)
        return f

    return decorate


def leader_election_config(*, leader_elect: bool, leader_elect_lease_duration: str,
                           leader_elect_renew_deadline: str, leader_elect_retry_period: str,
                           leader_elect_resource_lock: str, leader_elect_resource_name: str,
                           leader_elect_resource_namespace: str) -> LeaderElectionConfig:
    """The validated config from the flag values; ValueError names the flag."""
    durations = {}
    for flag, text in (("--leader-elect-lease-duration", leader_elect_lease_duration),
                       ("--leader-elect-renew-deadline", leader_elect_renew_deadline),
                       ("--leader-elect-retry-period", leader_elect_retry_period)):
        try:
            durations[flag] = parse_duration(text)
        except ValueError as exc:
            raise ValueError(f"{flag}: {exc}") from None
    return LeaderElectionConfig(
        leader_elect=leader_elect,
        lease_duration=durations["--leader-elect-lease-duration"],
        renew_deadline=durations["--leader-elect-renew-deadline"],
        retry_period=durations["--leader-elect-retry-period"],
        resource_lock=leader_elect_resource_lock,
        resource_name=leader_elect_resource_name,
        resource_namespace=leader_elect_resource_namespace,
    )


def default_identity() -> str:
    """``hostname_uuid``: unique per process, and says which machine holds the lease."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


class LeaseStore(Protocol):
    """The three calls leader election makes; ``ClientLeaseStore`` or a fake."""

    async def get(self, namespace: str, name: str) -> coordination.Lease: ...

    async def create(self, lease: coordination.Lease) -> coordination.Lease: ...

    async def update(self, lease: coordination.Lease) -> coordination.Lease: ...


class ClientLeaseStore:
    def __init__(self, client: Client) -> None:
        self._client = client

    async def get(self, namespace: str, name: str) -> coordination.Lease:
        return await self._client.get(coordination.Lease, name, namespace)

    async def create(self, lease: coordination.Lease) -> coordination.Lease:
        return await self._client.create(lease)

    async def update(self, lease: coordination.Lease) -> coordination.Lease:
        return await self._client.update(lease)


class LeaderElector:
    """Acquires, holds and renews one Lease; runs the leader's work while it holds it."""

    def __init__(
        self,
        store: LeaseStore,
        config: LeaderElectionConfig,
        *,
        name: str,
        identity: str | None = None,
        release_on_cancel: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not name:
            raise ValueError("--leader-elect-resource-name: must not be empty")
        self._store = store
        self._config = config
        self._name = name
        self._namespace = config.resource_namespace
        self.identity = identity or default_identity()
        self._release_on_cancel = release_on_cancel
        self._monotonic = monotonic
        self._now = now
        self._observed: coordination.Lease | None = None
        self._observed_spec: bytes = b""
        self._observed_time = 0.0
        self._leading = False
        self.on_new_leader: Callable[[str], None] | None = None

    @property
    def is_leader(self) -> bool:
        return self._leading

    @property
    def leader(self) -> str:
        """The holder last observed ("" when none)."""
        return self._observed.spec.holder_identity if self._observed is not None else ""

    async def run(self, lead: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        """Waits to lead, then runs ``lead()`` while leading.

        Returns True when ``lead()`` finished by itself, False when the lease was
        lost (``lead()`` is then cancelled). Cancelling ``run`` cancels the work
        and, with ``release_on_cancel``, hands the lease back so a successor
        need not wait out ``lease_duration``.
        """
        await self._acquire()
        loop = asyncio.get_running_loop()
        work = loop.create_task(lead(), name=f"leader-{self._name}-work")
        renew = loop.create_task(self._renew_loop(), name=f"leader-{self._name}-renew")
        try:
            await asyncio.wait([work, renew], return_when=asyncio.FIRST_COMPLETED)
            if renew.done():
                log.error("%s: lost the lease %s/%s; stopping the work it guards", self.identity,
                          self._namespace, self._name)
                return False
            work.result()  # raise the work's failure, if any
            return True
        finally:
            self._leading = False
            for task in (work, renew):
                task.cancel()
            await asyncio.wait([work, renew])
            if self._release_on_cancel:
                await self._release()

    # -- the protocol -------------------------------------------------------------

    async def _acquire(self) -> None:
        log.info("%s: attempting to acquire the lease %s/%s", self.identity, self._namespace, self._name)
        while True:
            if await self._try_acquire_or_renew():
                self._leading = True
                log.info("%s: acquired the lease %s/%s", self.identity, self._namespace, self._name)
                return
            period = self._config.retry_period
            await asyncio.sleep(period + random.random() * JITTER_FACTOR * period)

    async def _renew_loop(self) -> None:
        """Renews every retry_period; returns (lease lost) once renew_deadline passes without success."""
        last_renew = self._monotonic()
        while True:
            await asyncio.sleep(self._config.retry_period)
            remaining = self._config.renew_deadline - (self._monotonic() - last_renew)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that races with the call finishing, and a renew loop that
            # ignores its cancellation would keep a dead leader renewing.
            try:
                async with asyncio.timeout(max(remaining, 0.001)):
                    ok = await self._try_acquire_or_renew()
            except TimeoutError:
                ok = False
            if ok:
                last_renew = self._monotonic()
            elif self._monotonic() - last_renew >= self._config.renew_deadline:
                return

    async def _try_acquire_or_renew(self) -> bool:
        now = self._now()
        try:
            current = await self._store.get(self._namespace, self._name)
        except StatusError as exc:
            if exc.reason != "NotFound":
                log.warning("%s: reading the lease %s/%s failed: %s", self.identity, self._namespace,
                            self._name, exc)
                return False
            lease = coordination.Lease(api_version="coordination.k8s.io/v1", kind="Lease")
            lease.metadata.name = self._name
            lease.metadata.namespace = self._namespace
            self._fill(lease.spec, now, acquired=True, transitions=0)
            try:
                created = await self._store.create(lease)
            except StatusError as create_exc:
                log.info("%s: creating the lease %s/%s failed: %s", self.identity, self._namespace, self._name,
                         create_exc)
                return False
            self._observe(created)
            return True

        self._observe(current)
        holder = current.spec.holder_identity
        duration = self._config.lease_duration
        if holder and holder != self.identity and self._observed_time + duration > self._monotonic():
            return False  # somebody else holds a lease that has not expired by our clock

        updated = coordination.Lease()
        updated.CopyFrom(current)
        if holder == self.identity:
            self._fill(updated.spec, now, acquired=False, transitions=current.spec.lease_transitions)
        else:
            transitions = current.spec.lease_transitions + (1 if holder else 0)
            self._fill(updated.spec, now, acquired=True, transitions=transitions)
        try:
            written = await self._store.update(updated)  # resourceVersion from `current`: a precondition
        except StatusError as exc:
            log.info("%s: updating the lease %s/%s failed: %s", self.identity, self._namespace, self._name, exc)
            return False
        self._observe(written)
        return True

    def _fill(self, spec: coordination.LeaseSpec, now: datetime, *, acquired: bool, transitions: int) -> None:
        spec.holder_identity = self.identity
        spec.lease_duration_seconds = max(1, round(self._config.lease_duration))
        if acquired:
            spec.acquire_time.FromDatetime(now)
        spec.renew_time.FromDatetime(now)
        spec.lease_transitions = transitions

    def _observe(self, lease: coordination.Lease) -> None:
        """Remembers the record and, if it changed, when we saw it change (our clock, not theirs)."""
        spec = lease.spec.SerializeToString(deterministic=True)
        if self._observed is None or spec != self._observed_spec:
            self._observed_time = self._monotonic()
            previous = self.leader
            self._observed = lease
            self._observed_spec = spec
            if lease.spec.holder_identity != previous:
                log.info("%s: the leader of %s/%s is now %r", self.identity, self._namespace, self._name,
                         lease.spec.holder_identity)
                if self.on_new_leader is not None:
                    self.on_new_leader(lease.spec.holder_identity)
        else:
            self._observed = lease

    async def _release(self) -> None:
        """Hands the lease back (holder cleared, 1 s duration) if we still hold it."""
        if self._observed is None or self._observed.spec.holder_identity != self.identity:
            return
        released = coordination.Lease()
        released.CopyFrom(self._observed)
        released.spec.holder_identity = ""
        released.spec.lease_duration_seconds = 1
        now = self._now()
        released.spec.renew_time.FromDatetime(now)
        released.spec.acquire_time.FromDatetime(now)
        try:
            written = await asyncio.shield(self._store.update(released))
        except (StatusError, asyncio.CancelledError) as exc:
            log.info("%s: releasing the lease %s/%s failed: %s", self.identity, self._namespace, self._name, exc)
            return
        self._observe(written)
        log.info("%s: released the lease %s/%s", self.identity, self._namespace, self._name)
