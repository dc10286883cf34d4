"""The scheduler's batching binder, with a fake client: who goes in which BindMany call, who hears what."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from kubelite.machinery.errors import StatusError
from kubelite.scheduler.app import APIBinder
from tests.support.objects import make_pod


class FakeClient:
    def __init__(self) -> None:
        self.calls: list[list[tuple[str, str, str, str]]] = []
        self.refuse: dict[str, StatusError] = {}
        self.down: StatusError | None = None

    async def bind_many(self, bindings: Sequence[tuple[str, str, str, str]]) -> list[StatusError | None]:
        self.calls.append(list(bindings))
        await asyncio.sleep(0)
        if self.down is not None:
            raise self.down
        return [self.refuse.get(name) for _, name, _, _ in bindings]


async def _bind_all(binder: APIBinder, names: list[str]) -> list[BaseException | None]:
    tasks = [asyncio.create_task(binder.bind(make_pod(n), "node-1")) for n in names]
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_bindings_started_together_travel_in_one_call_and_each_hears_its_own_answer() -> None:
    client = FakeClient()
    client.refuse["b"] = StatusError("Conflict", 'pod b is already assigned to node "other"')
    binder = APIBinder(client)  # type: ignore[arg-type]
    results = await _bind_all(binder, ["a", "b", "c"])
    assert [[name for _, name, _, _ in call] for call in client.calls] == [["a", "b", "c"]]
    assert client.calls[0][0] == ("default", "a", "node-1", "uid-default-a")
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], StatusError) and results[1].reason == "Conflict"
    # Later bindings make a new batch.
    await _bind_all(binder, ["d"])
    assert [[name for _, name, _, _ in call] for call in client.calls][1:] == [["d"]]


async def test_a_full_batch_is_sent_and_the_rest_starts_another() -> None:
    client = FakeClient()
    binder = APIBinder(client, max_batch=2)  # type: ignore[arg-type]
    assert await _bind_all(binder, ["a", "b", "c", "d", "e"]) == [None] * 5
    assert [len(call) for call in client.calls] == [2, 2, 1]


async def test_a_failed_call_fails_every_binding_in_it() -> None:
    client = FakeClient()
    client.down = StatusError("ServiceUnavailable", "the server is restarting")
    binder = APIBinder(client)  # type: ignore[arg-type]
    results = await _bind_all(binder, ["a", "b"])
    assert all(isinstance(r, StatusError) and r.reason == "ServiceUnavailable" for r in results)
    with pytest.raises(StatusError):
        await binder.bind(make_pod("c"), "node-1")
