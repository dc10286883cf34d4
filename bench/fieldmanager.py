"""The cost of field ownership on the store's write path: the same writes with and without it.

    python -m bench.fieldmanager [--rounds N]

Every create, update and status write records an Update entry in
metadata.managedFields (kubelite.machinery.fieldmanager). This drives the
real ResourceStore of pods over the in-memory storage of the unit tests, so
that neither etcd nor gRPC hides the difference: batches of writes with the
tracking off (no field manager, as the server's own writes) and on,
alternating, and the CPU time per write of the fastest batch of each (the
machine is shared; the fastest batch is the one least disturbed). Nothing
is asserted; it prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import cast

from rich.console import Console
from rich.table import Table

from bench.run import pod
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.apiserver.pipeline import Admission, Attributes, UserInfo
from kubelite.apiserver.registry.all import build_strategies
from kubelite.apiserver.store import ResourceStore
from kubelite.apiserver.watchcache import WatchCache
from kubelite.machinery.kinds import PODS, SCHEME
from kubelite.storage.interface import Storage
from tests.unit.fakes_storage import FakeStorage

BATCH = 50
USER = UserInfo("bench")
PHASES = ("create", "update (a label and an image)", "status write (new fields)", "status write (one value)")


def make_store() -> ResourceStore:
    storage = FakeStorage()
    strategy = build_strategies(SCHEME)[(PODS.group, PODS.resource)]
    return ResourceStore(strategy, cast(Storage, storage), Admission(),
                         lambda s: WatchCache(s.strategy, cast(Storage, storage), s.prefix, s.decode))


async def batch(manager: str | None, tag: str) -> list[float]:
    """CPU seconds per write of each phase, for BATCH pods."""
    store = make_store()
    create = Attributes(USER, "create", PODS, "default", "", field_manager=manager)
    update = Attributes(USER, "update", PODS, "default", "", field_manager=manager)
    status = Attributes(USER, "update", PODS, "default", "", subresource="status",
                        field_manager=None if manager is None else "kubelet")
    times: list[float] = []
    t = time.process_time()
    pods = [await store.create(create, pod(f"{tag}-{i}", "default")) for i in range(BATCH)]
    times.append(time.process_time() - t)
    t = time.process_time()
    for i, p in enumerate(pods):
        assert isinstance(p, core.Pod)
        p.metadata.labels["v"] = "2"
        p.spec.containers[0].image = "busybox:2"
        pods[i] = await store.update(update, p)
    times.append(time.process_time() - t)
    t = time.process_time()
    for i, p in enumerate(pods):
        assert isinstance(p, core.Pod)
        p.status.phase = "Running"
        p.status.pod_ip = "10.1.1.1"
        p.status.conditions.add(type="Ready", status="True")
        p.status.container_statuses.add(name="app", ready=True, image="busybox:2", container_id="docker://x")
        pods[i] = await store.update(status, p, status=True)
    times.append(time.process_time() - t)
    t = time.process_time()
    for i, p in enumerate(pods):
        assert isinstance(p, core.Pod)
        p.status.conditions[0].status = "False"
        pods[i] = await store.update(status, p, status=True)
    times.append(time.process_time() - t)
    return [x / BATCH for x in times]


async def bench(rounds: int) -> None:
    best: dict[str | None, list[float]] = {None: [1.0] * len(PHASES), "bench": [1.0] * len(PHASES)}
    for r in range(rounds):
        for manager in (None, "bench"):
            got = await batch(manager, f"r{r}-{'off' if manager is None else 'on'}")
            best[manager] = [min(a, b) for a, b in zip(best[manager], got, strict=True)]
    table = Table(title="pods: the store's write path, CPU per write (fastest batch)")
    for column in ("write", "no field manager", "with field ownership", "added"):
        table.add_column(column, justify="right" if column != "write" else "left")
    for i, phase in enumerate(PHASES):
        off, on = best[None][i] * 1e6, best["bench"][i] * 1e6
        table.add_row(phase, f"{off:.0f} us", f"{on:.0f} us", f"+{on - off:.0f} us")
    Console(width=120).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20, help="batches of each kind (default 20)")
    asyncio.run(bench(parser.parse_args().rounds))


if __name__ == "__main__":
    main()
