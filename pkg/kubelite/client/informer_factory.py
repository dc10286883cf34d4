"""One informer per kind per process, however many controllers read it.

A controller manager runs a dozen controllers and most of them read pods. If
each built its own Informer the API server would serve a dozen lists and a
dozen watches of every pod, and the process would hold a dozen copies of them.
``SharedInformerFactory`` (client-go's SharedInformerFactory) hands every
caller asking for the same (kind, namespace, selectors) the same Informer, so
there is one list+watch and one cache; each consumer registers its own
handlers on it.

The factory owns the informers' tasks: ``start()`` starts, as named tasks,
the informers asked for since the last call (controllers are built first, then
everything starts at once, so no handler misses the initial adds);
``shutdown()`` cancels and awaits them. ``Lister`` is the read side a
controller keeps: get by namespace/name, list by namespace and selector,
answered from the shared cache (objects are read-only, see informer.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, cast

from kubelite.client.client import Client, M
from kubelite.client.informer import ClientListerWatcher, Informer, ListerWatcher, wait_for_cache_sync
from kubelite.machinery.selectors import LabelSelector

log = logging.getLogger(__name__)

NAMESPACE_INDEX = "namespace"


def _namespace_of(obj: Any) -> list[str]:
    return [str(obj.metadata.namespace)]


@dataclass(frozen=True)
class _InformerKey:
    kind: type[Any]
    namespace: str
    label_selector: str
    field_selector: str


class Lister(Generic[M]):
    """Reads one kind from a shared informer's cache (client-go's generated listers)."""

    def __init__(self, informer: Informer[M]) -> None:
        self._informer = informer

    def get(self, namespace: str, name: str) -> M | None:
        return self._informer.store.get_by_key(f"{namespace}/{name}" if namespace else name)

    def list(self, namespace: str = "", selector: LabelSelector | None = None) -> list[M]:
        """Objects in ``namespace`` ("" = all) whose labels match ``selector`` (None = all)."""
        if namespace:
            items = self._informer.store.by_index(NAMESPACE_INDEX, namespace)
        else:
            items = self._informer.store.list()
        if selector is None:
            return items
        return [obj for obj in items if selector.matches(dict(obj.metadata.labels))]  # type: ignore[attr-defined]

    @property
    def has_synced(self) -> bool:
        return self._informer.has_synced


class SharedInformerFactory:
    """Shares informers by (kind, namespace, selectors) and owns their tasks.

    ``source_for`` builds the ListerWatcher of a new informer; the default lists
    and watches through ``client``, and tests pass fakes instead.
    """

    def __init__(
        self,
        client: Client | None = None,
        *,
        resync_period: float | None = None,
        source_for: Callable[[type[Any], str, str, str], ListerWatcher[Any]] | None = None,
    ) -> None:
        if client is None and source_for is None:
            raise ValueError("SharedInformerFactory needs a client or a source_for")
        self._client = client
        self._resync_period = resync_period
        self._source_for = source_for
        self._informers: dict[_InformerKey, Informer[Any]] = {}
        self._tasks: dict[_InformerKey, asyncio.Task[None]] = {}
        self._shut_down = False

    def informer_for(self, kind: type[M], namespace: str = "", *, label_selector: str = "",
                     field_selector: str = "") -> Informer[M]:
        """The shared informer for this kind and scope; created (not started) on first use."""
        key = _InformerKey(kind, namespace, label_selector, field_selector)
        informer = self._informers.get(key)
        if informer is None:
            if self._source_for is not None:
                source: ListerWatcher[M] = self._source_for(kind, namespace, label_selector, field_selector)
            else:
                assert self._client is not None
                source = ClientListerWatcher(self._client, kind, namespace, label_selector=label_selector,
                                             field_selector=field_selector)
            informer = Informer(source, kind, resync_period=self._resync_period)
            informer.add_index(NAMESPACE_INDEX, _namespace_of)
            self._informers[key] = informer
        return cast(Informer[M], informer)

    def lister_for(self, kind: type[M], namespace: str = "") -> Lister[M]:
        return Lister(self.informer_for(kind, namespace))

    def start(self) -> None:
        """Starts every informer asked for and not yet running (call it again after adding more)."""
        if self._shut_down:
            raise RuntimeError("the informer factory is shut down")
        for key, informer in self._informers.items():
            if key in self._tasks:
                continue
            name = f"informer-{key.kind.DESCRIPTOR.name}" + (f"-{key.namespace}" if key.namespace else "")
            task = asyncio.get_running_loop().create_task(informer.run(), name=name)
            task.add_done_callback(_log_failure)
            self._tasks[key] = task

    async def wait_for_cache_sync(self, timeout: float | None = None) -> dict[type[Any], bool]:
        """Waits for every started informer's first list; maps each kind to whether it synced."""
        started = [(key, self._informers[key]) for key in self._tasks]
        await wait_for_cache_sync(*(informer for _, informer in started), timeout=timeout)
        return {key.kind: informer.has_synced for key, informer in started}

    async def shutdown(self) -> None:
        """Cancels every informer task and waits for them to end."""
        self._shut_down = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    @property
    def informers(self) -> list[Informer[Any]]:
        return list(self._informers.values())


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())
