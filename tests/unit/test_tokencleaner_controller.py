"""Token cleaner: expired bootstrap-token Secrets are deleted, others are looked at again when they expire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.controller import InstrumentedQueue
from kubelite.client.workqueue import ItemExponentialFailureRateLimiter, process_next_item
from kubelite.controllers.tokencleaner import TokenCleaner
from kubelite.machinery import bootstraptoken as bt
from tests.unit.fakes_controllers import FakeLister, FakeWriter

NOW = datetime(2026, 12, 2, 1, 0, 0, tzinfo=UTC)


def token(token_id: str, ttl: timedelta | None) -> core.Secret:
    s = bt.build_secret(bt.Token(token_id, "0123456789abcdef"), ttl=ttl, now=NOW - timedelta(hours=1))
    s.metadata.uid = f"uid-{token_id}"
    return s


async def test_deletes_expired_tokens_only_and_waits_for_the_others() -> None:
    expired, live, forever = token("expird", timedelta(minutes=30)), token("livexx", timedelta(hours=2)), \
        token("foreva", None)
    opaque = core.Secret(type="Opaque")
    opaque.metadata.name, opaque.metadata.namespace = "bootstrap-token-opaque", "kube-system"
    writer = FakeWriter()
    queue: InstrumentedQueue[str] = InstrumentedQueue(
        "tokencleaner", ItemExponentialFailureRateLimiter(0.001, 0.01), registry=CollectorRegistry())
    ctl = TokenCleaner(FakeLister(expired, live, forever, opaque), writer, clock=lambda: NOW, queue=queue)
    for s in (expired, live, forever, opaque):
        ctl._enqueue(s)
    assert len(ctl.queue) == 3  # the Opaque Secret is not a token: never queued
    while len(ctl.queue):
        assert await process_next_item(ctl.queue, ctl.sync)
    assert writer.deleted == [("Secret", "kube-system", "bootstrap-token-expird", "")]
    # The live token waits on a timer for its expiry (an hour from now), not in the queue.
    assert "bootstrap-token-livexx" in ctl.queue._timers  # type: ignore[attr-defined]
    assert "bootstrap-token-foreva" not in ctl.queue._timers  # type: ignore[attr-defined]
    ctl.queue.shutdown()
