"""ServiceAccount controller: a default account in every active namespace."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.controller import InstrumentedQueue
from kubelite.client.workqueue import ItemExponentialFailureRateLimiter, process_next_item
from kubelite.controllers.serviceaccount import ServiceAccountsController
from tests.unit.fakes_controllers import FakeLister, FakeWriter


def namespace(name: str, terminating: bool = False) -> core.Namespace:
    ns = core.Namespace(api_version="v1", kind="Namespace")
    ns.metadata.name = name
    ns.status.phase = "Terminating" if terminating else "Active"
    if terminating:
        ns.metadata.deletion_timestamp.seconds = 1
    return ns


def harness(*namespaces: core.Namespace) -> tuple[ServiceAccountsController, FakeLister[core.ServiceAccount],
                                                  FakeWriter]:
    accounts: FakeLister[core.ServiceAccount] = FakeLister()
    writer = FakeWriter()
    queue: InstrumentedQueue[str] = InstrumentedQueue(
        "serviceaccount", ItemExponentialFailureRateLimiter(0.001, 0.01), registry=CollectorRegistry())
    return ServiceAccountsController(FakeLister(*namespaces), accounts, writer, queue=queue), accounts, writer


async def test_creates_default_once_and_again_after_deletion() -> None:
    ctl, accounts, writer = harness(namespace("team"), namespace("going", terminating=True))
    ctl._namespace(namespace("team"))
    ctl._namespace(namespace("going", terminating=True))
    while len(ctl.queue):
        assert await process_next_item(ctl.queue, ctl.sync)
    assert [(sa.metadata.namespace, sa.metadata.name) for sa in writer.created] == [("team", "default")]
    accounts.put(writer.created[0])
    ctl.queue.add("team")
    assert await process_next_item(ctl.queue, ctl.sync)
    assert len(writer.created) == 1
    gone = writer.created[0]
    accounts.remove(gone)
    ctl._account_deleted(gone)
    writer.objects.clear()
    assert await process_next_item(ctl.queue, ctl.sync)
    assert len(writer.created) == 2
