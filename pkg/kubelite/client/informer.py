"""Informers: a local, watch-fed cache of one kind, with event handlers.

Every controller needs "the current state of all pods" without asking the API
server each time. An Informer lists once, then follows a watch from the list's
resourceVersion, keeping a Store up to date and telling handlers what changed.
Controllers read the Store (never the server) in their sync, and their handlers
only enqueue keys: the level-triggered pattern of DESIGN.md.

Objects in the Store and the objects handed to handlers are shared by every
reader: treat them as read-only and copy before you change one
(``copy = type(obj)(); copy.CopyFrom(obj)``). Mutating a cached object corrupts
what every other controller sees, and the change is silently lost on the next
event anyway.

Failure handling follows client-go's reflector: a watch that breaks resumes
from the last resourceVersion seen (after a backoff); a watch answered with
Expired (the version was compacted) forces a relist, whose differences from
the Store are delivered as add/update/delete so handlers miss nothing. A
deletion noticed only by a relist reaches ``on_delete`` as a
``DeletedFinalStateUnknown`` tombstone: the object inside is the last state
this process saw, which may be older than the state the object was deleted
in, and a controller that cares (expectations, say) must know that.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Protocol

from kubelite.client.client import Client, M, ObjectList, WatchEvent
from kubelite.machinery.errors import StatusError

log = logging.getLogger(__name__)

INITIAL_BACKOFF = 0.1
MAX_BACKOFF = 10.0


def meta_namespace_key(obj: Any) -> str:
    """``namespace/name``, or ``name`` for cluster-scoped objects: the work-queue key."""
    meta = obj.metadata
    return f"{meta.namespace}/{meta.name}" if meta.namespace else str(meta.name)


def split_key(key: str) -> tuple[str, str]:
    """(namespace, name) from a ``meta_namespace_key``; namespace is "" for cluster-scoped keys."""
    namespace, sep, name = key.partition("/")
    return (namespace, name) if sep else ("", namespace)


IndexFunc = Callable[[M], Iterable[str]]


@dataclass(frozen=True)
class DeletedFinalStateUnknown:
    """What ``on_delete`` gets for a deletion seen only on relist (client-go's tombstone).

    The watch that would have carried the DELETED event was lost, so ``obj`` is
    the last state cached here, not the state the object was deleted in.
    """

    key: str
    obj: Any


def deleted_object(obj: Any) -> Any:
    """The object inside a tombstone, or ``obj`` itself: what most delete handlers want."""
    return obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj


class Store(Generic[M]):
    """A keyed cache with optional secondary indexes (client-go's Indexer).

    Only the Informer writes to it. An index maps each object to zero or more
    values (pods by ``spec.nodeName``, say) so that ``by_index`` answers "pods
    on node n" without a scan.
    """

    def __init__(self, key_func: Callable[[M], str] = meta_namespace_key) -> None:
        self._key_func = key_func
        self._items: dict[str, M] = {}
        self._index_funcs: dict[str, IndexFunc[M]] = {}
        # index name -> value -> keys
        self._indices: dict[str, dict[str, set[str]]] = {}

    def key_of(self, obj: M) -> str:
        return self._key_func(obj)

    def get(self, key: str) -> M | None:
        return self._items.get(key)

    def get_by_key(self, key: str) -> M | None:
        return self._items.get(key)

    def list(self) -> builtins.list[M]:
        return builtins.list(self._items.values())

    def keys(self) -> builtins.list[str]:
        return builtins.list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def add_index(self, name: str, fn: IndexFunc[M]) -> None:
        """Registers an index; existing objects are indexed at once."""
        if name in self._index_funcs:
            raise ValueError(f"index {name!r} already exists")
        self._index_funcs[name] = fn
        self._indices[name] = {}
        for key, obj in self._items.items():
            self._index_one(name, key, obj)

    def has_index(self, name: str) -> bool:
        return name in self._index_funcs

    def by_index(self, name: str, value: str) -> builtins.list[M]:
        keys = self._index(name).get(value, set())
        return [self._items[k] for k in sorted(keys)]

    def index_keys(self, name: str, value: str) -> builtins.list[str]:
        return sorted(self._index(name).get(value, set()))

    def _index(self, name: str) -> dict[str, set[str]]:
        try:
            return self._indices[name]
        except KeyError:
            raise KeyError(f"no index named {name!r}") from None

    # -- writes, for the Informer only ------------------------------------------

    def _put(self, obj: M) -> M | None:
        key = self._key_func(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        for name in self._index_funcs:
            self._index_one(name, key, obj)
        return old

    def _delete(self, key: str) -> M | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _replace(self, items: Iterable[M]) -> None:
        self._items = {}
        self._indices = {name: {} for name in self._index_funcs}
        for obj in items:
            self._put(obj)

    def _index_one(self, name: str, key: str, obj: M) -> None:
        index = self._indices[name]
        for value in self._index_funcs[name](obj):
            index.setdefault(value, set()).add(key)

    def _unindex(self, key: str, obj: M) -> None:
        for name, fn in self._index_funcs.items():
            index = self._indices[name]
            for value in fn(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]


class ListerWatcher(Protocol[M]):
    """Where an Informer gets its data: the API server, or a fake in tests."""

    async def list(self) -> ObjectList[M]: ...

    def watch(self, resource_version: str) -> AsyncIterator[WatchEvent[M]]: ...


class ClientListerWatcher(Generic[M]):
    """A ListerWatcher over a Client, for one kind, namespace and selector pair.

    Lists read consistently (resourceVersion "") so that a relist after Expired
    never goes back in time; watches ask for bookmarks to keep the resume point
    fresh on quiet kinds.
    """

    def __init__(self, client: Client, kind: type[M], namespace: str = "", *, label_selector: str = "",
                 field_selector: str = "", page_size: int = 0) -> None:
        self._client = client
        self._kind = kind
        self._namespace = namespace
        self._label_selector = label_selector
        self._field_selector = field_selector
        self._page_size = page_size

    async def list(self) -> ObjectList[M]:
        items: builtins.list[M] = []
        resource_version = ""
        token = ""
        while True:
            page = await self._client.list(self._kind, self._namespace, label_selector=self._label_selector,
                                           field_selector=self._field_selector, limit=self._page_size,
                                           continue_token=token)
            items.extend(page.items)
            # Every page of a paged list is served from the first page's snapshot.
            resource_version = resource_version or page.resource_version
            token = page.continue_token
            if not token:
                return ObjectList(items=items, resource_version=resource_version, continue_token="")

    def watch(self, resource_version: str) -> AsyncIterator[WatchEvent[M]]:
        return self._client.watch(self._kind, self._namespace, label_selector=self._label_selector,
                                  field_selector=self._field_selector, resource_version=resource_version,
                                  allow_bookmarks=True)


@dataclass(frozen=True)
class ResourceEventHandler:
    """Callbacks for one consumer; each may be sync or async, and any may be None.

    ``on_update(old, new)`` also fires with ``old is new`` on a periodic resync.
    ``on_delete`` gets the object from the DELETED event or, when the deletion
    was noticed only by a relist, a ``DeletedFinalStateUnknown`` holding the
    cached object (unwrap with ``deleted_object``).
    """

    on_add: Callable[[Any], Awaitable[None] | None] | None = None
    on_update: Callable[[Any, Any], Awaitable[None] | None] | None = None
    on_delete: Callable[[Any], Awaitable[None] | None] | None = None


class Informer(Generic[M]):
    """A Store of one kind kept current by list + watch, with event handlers.

    Handlers are called one at a time, in event order, after the Store already
    reflects the event, so a handler reading the Store sees at least the state
    it was told about. They should be quick (enqueue a key) because the next
    event waits for them; an exception in a handler is logged and ignored.
    """

    def __init__(
        self,
        source: Client | ListerWatcher[M],
        kind: type[M],
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
        resync_period: float | None = None,
        *,
        initial_backoff: float = INITIAL_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self._lw: ListerWatcher[M] = (
            ClientListerWatcher(source, kind, namespace, label_selector=label_selector,
                                field_selector=field_selector)
            if isinstance(source, Client) else source
        )
        self.kind = kind
        self._what = kind.DESCRIPTOR.name + (f" in {namespace}" if namespace else "")
        self._resync_period = resync_period
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self.store: Store[M] = Store()
        self._handlers: list[ResourceEventHandler] = []
        self._synced = asyncio.Event()
        self._resource_version = ""
        self._started = False
        # Serialises handler calls between the watch and the resync timer.
        self._dispatch = asyncio.Lock()

    def add_handler(
        self,
        on_add: Callable[[M], Awaitable[None] | None] | None = None,
        on_update: Callable[[M, M], Awaitable[None] | None] | None = None,
        on_delete: Callable[[M], Awaitable[None] | None] | None = None,
    ) -> ResourceEventHandler:
        """Registers callbacks; must be called before ``run()`` so no event is missed."""
        if self._started:
            raise RuntimeError("add handlers before the informer runs: "
                               "a late handler would miss the initial adds")
        handler = ResourceEventHandler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        return handler

    def add_index(self, name: str, fn: IndexFunc[M]) -> None:
        self.store.add_index(name, fn)

    def by_index(self, name: str, value: str) -> list[M]:
        return self.store.by_index(name, value)

    @property
    def has_synced(self) -> bool:
        """True once the first list is in the Store and its adds were delivered."""
        return self._synced.is_set()

    async def wait_for_sync(self) -> None:
        await self._synced.wait()

    @property
    def last_sync_resource_version(self) -> str:
        """The resourceVersion of the last list or event applied to the Store."""
        return self._resource_version

    async def run(self) -> None:
        """Lists and watches until cancelled; run it in a task its owner cancels."""
        if self._started:
            raise RuntimeError("an informer runs once")
        self._started = True
        resync: asyncio.Task[None] | None = None
        if self._resync_period:
            resync = asyncio.get_running_loop().create_task(
                self._resync_loop(self._resync_period), name=f"informer-resync-{self._what}")
        try:
            await self._list_and_watch()
        finally:
            if resync is not None:
                resync.cancel()
                # wait() rather than await: the resync task's CancelledError is
                # expected and must not be confused with our own cancellation.
                await asyncio.wait([resync])

    # -- reflector ---------------------------------------------------------------

    async def _list_and_watch(self) -> None:
        backoff = self._initial_backoff
        while True:
            try:
                listed = await self._lw.list()
            except StatusError as exc:
                log.warning("listing %s failed (%s: %s); retrying in %.1fs",
                            self._what, exc.reason, exc.message, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = self._initial_backoff
            await self._replace(listed)
            await self._watch()  # returns when a relist is needed

    async def _watch(self) -> None:
        backoff = self._initial_backoff
        while True:
            received = False
            stream = self._lw.watch(self._resource_version)
            try:
                async for event in stream:
                    received = True
                    backoff = self._initial_backoff
                    await self._apply(event)
            except StatusError as exc:
                if exc.reason == "Expired":
                    log.info("watch of %s expired at resourceVersion %s; relisting", self._what,
                             self._resource_version)
                    return
                log.warning("watch of %s failed (%s: %s); resuming from %s in %.1fs", self._what, exc.reason,
                            exc.message, self._resource_version, backoff)
            else:
                if received:
                    continue  # the server closed a healthy stream: resume at once
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def _replace(self, listed: ObjectList[M]) -> None:
        async with self._dispatch:
            old = {self.store.key_of(obj): obj for obj in self.store.list()}
            self.store._replace(listed.items)
            self._resource_version = listed.resource_version
            for obj in listed.items:
                previous = old.pop(self.store.key_of(obj), None)
                if previous is None:
                    await self._deliver("on_add", obj)
                elif _rv(previous) != _rv(obj):
                    await self._deliver("on_update", previous, obj)
            # Whatever the list no longer holds was deleted while we were not watching.
            for key, gone in old.items():
                await self._deliver("on_delete", DeletedFinalStateUnknown(key, gone))
            self._synced.set()

    async def _apply(self, event: WatchEvent[M]) -> None:
        async with self._dispatch:
            obj = event.object
            if event.type == "BOOKMARK":
                self._resource_version = event.resource_version or self._resource_version
                return
            if event.type in ("ADDED", "MODIFIED"):
                previous = self.store._put(obj)
                self._resource_version = _rv(obj) or self._resource_version
                if previous is None:
                    await self._deliver("on_add", obj)
                else:
                    await self._deliver("on_update", previous, obj)
            elif event.type == "DELETED":
                self.store._delete(self.store.key_of(obj))
                self._resource_version = _rv(obj) or self._resource_version
                await self._deliver("on_delete", obj)
            else:
                log.warning("watch of %s sent an event of unknown type %r; ignored", self._what, event.type)

    async def _resync_loop(self, period: float) -> None:
        """Re-delivers every cached object as on_update(obj, obj), so controllers re-check state."""
        await self._synced.wait()
        while True:
            await asyncio.sleep(period)
            try:
                async with self._dispatch:
                    for obj in self.store.list():
                        await self._deliver("on_update", obj, obj)
            except Exception:
                log.exception("resync of %s failed", self._what)

    async def _deliver(self, which: str, *args: Any) -> None:
        for handler in self._handlers:
            fn: Callable[..., Any] | None = getattr(handler, which)
            if fn is None:
                continue
            try:
                result = fn(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("%s handler %r for %s failed", which, fn, self._what)


async def wait_for_cache_sync(*informers: Informer[Any], timeout: float | None = None) -> bool:
    """Waits until every informer has synced: start controllers' workers only then.

    Returns False if ``timeout`` seconds pass first (client-go's WaitForCacheSync
    returns false when its stop channel closes); without one it waits for ever.
    """
    try:
        async with asyncio.timeout(timeout):
            for informer in informers:
                await informer.wait_for_sync()
    except TimeoutError:
        return False
    return True


def _rv(obj: Any) -> str:
    return str(obj.metadata.resource_version)
