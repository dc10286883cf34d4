"""The garbage collector: ownerReferences decide what goes when an owner goes.

Kubernetes deletes dependents *after* their owner, asynchronously, and so
does this controller. It watches the kinds that own or are owned (pods,
ReplicaSets, Deployments, Services, ...), keeps a graph from owner uid to
dependents, and converges one object at a time:

* **Background** (the default): the owner is deleted at once. Each dependent
  whose owners are all gone is deleted in turn (a dependent with other,
  living owners just loses the dangling reference). "Gone" is confirmed
  with a live read, never from the cache alone: a lagging cache must not
  delete a pod whose ReplicaSet was merely not seen yet.
* **Foreground**: the API server keeps the owner, with the
  ``foregroundDeletion`` finalizer, while its dependents are deleted (those
  that have dependents of their own in foreground too); once no dependent
  with ``blockOwnerDeletion`` remains, the finalizer is removed and the
  owner goes.
* **Orphan**: the API server keeps the owner with the ``orphan`` finalizer;
  the collector removes the owner's reference from every dependent, then
  the finalizer, and the dependents live on.

Every write carries a precondition (the uid on deletes, the cached
resourceVersion on patches and updates), so a stale view ends in Conflict
and a retry, never in a wrong deletion.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from kubelite.client.controller import InstrumentedQueue
from kubelite.client.informer import Informer, deleted_object
from kubelite.controllers.util import Writer, is_being_deleted
from kubelite.machinery import codec
from kubelite.machinery.errors import StatusError
from kubelite.machinery.scheme import Scheme, UnknownKindError

log = logging.getLogger(__name__)

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"


@dataclass(frozen=True)
class _Node:
    kind: str  # message name: "Pod", "ReplicaSet"
    namespace: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


def parse_key(key: str) -> _Node:
    kind, namespace, name = key.split("/", 2)
    return _Node(kind, namespace, name)


class GarbageCollector:
    name = "garbagecollector"

    def __init__(self, informers: dict[str, Informer[Any]], client: Writer, scheme: Scheme, *,
                 queue: InstrumentedQueue[str] | None = None) -> None:
        """``informers`` maps message names ("Pod") to the shared informers of the monitored kinds."""
        self.informers = informers
        self.client = client
        self.scheme = scheme
        self.queue: InstrumentedQueue[str] = queue or InstrumentedQueue("garbage_collector_attempt_to_delete")
        self._by_uid: dict[str, _Node] = {}
        self._dependents: dict[str, set[str]] = {}  # owner uid -> dependent keys
        self._owners_of: dict[str, set[str]] = {}  # dependent key -> owner uids

    def attach(self) -> None:
        for informer in self.informers.values():
            informer.add_handler(self.on_add, self.on_update, self.on_delete)

    # -- the graph ----------------------------------------------------------------------------

    def _node_of(self, obj: Any) -> _Node:
        return _Node(type(obj).DESCRIPTOR.name, obj.metadata.namespace, obj.metadata.name)

    def _index(self, obj: Any) -> _Node:
        node = self._node_of(obj)
        self._by_uid[obj.metadata.uid] = node
        owners = {ref.uid for ref in obj.metadata.owner_references}
        for uid in self._owners_of.get(node.key, set()) - owners:
            deps = self._dependents.get(uid)
            if deps is not None:
                deps.discard(node.key)
                if not deps:
                    del self._dependents[uid]
        for uid in owners:
            self._dependents.setdefault(uid, set()).add(node.key)
        if owners:
            self._owners_of[node.key] = owners
        else:
            self._owners_of.pop(node.key, None)
        return node

    def _unindex(self, obj: Any) -> _Node:
        node = self._node_of(obj)
        if self._by_uid.get(obj.metadata.uid) == node:
            del self._by_uid[obj.metadata.uid]
        for uid in self._owners_of.pop(node.key, set()):
            deps = self._dependents.get(uid)
            if deps is not None:
                deps.discard(node.key)
                if not deps:
                    del self._dependents[uid]
        return node

    def dependents_of(self, uid: str) -> list[_Node]:
        return [parse_key(k) for k in sorted(self._dependents.get(uid, ()))]

    def _cached(self, node: _Node) -> Any:
        informer = self.informers.get(node.kind)
        if informer is None:
            return None
        key = f"{node.namespace}/{node.name}" if node.namespace else node.name
        return informer.store.get_by_key(key)

    # -- handlers -------------------------------------------------------------------------------

    def _needs_attention(self, obj: Any) -> bool:
        meta = obj.metadata
        return bool(meta.owner_references) or (is_being_deleted(obj) and (
            ORPHAN in meta.finalizers or FOREGROUND in meta.finalizers))

    def on_add(self, obj: Any) -> None:
        node = self._index(obj)
        if self._needs_attention(obj):
            self.queue.add(node.key)

    def on_update(self, old: Any, new: Any) -> None:
        node = self._index(new)
        if old.metadata.resource_version == new.metadata.resource_version:
            return
        changed = (list(old.metadata.owner_references) != list(new.metadata.owner_references)
                   or list(old.metadata.finalizers) != list(new.metadata.finalizers)
                   or is_being_deleted(old) != is_being_deleted(new))
        if changed and self._needs_attention(new):
            self.queue.add(node.key)
        if is_being_deleted(new) and not is_being_deleted(old):
            self._enqueue_owners(new)  # a foreground owner waits for this one

    def on_delete(self, obj: Any) -> None:
        obj = deleted_object(obj)
        self._unindex(obj)
        # Its dependents may now be orphans with a dangling reference; its owners may be
        # foreground deletions waiting for it.
        for dep in self.dependents_of(obj.metadata.uid):
            self.queue.add(dep.key)
        self._enqueue_owners(obj)

    def _enqueue_owners(self, obj: Any) -> None:
        for ref in obj.metadata.owner_references:
            owner = self._by_uid.get(ref.uid)
            if owner is not None:
                self.queue.add(owner.key)

    # -- sync -------------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        node = parse_key(key)
        obj = self._cached(node)
        if obj is None:
            return
        meta = obj.metadata
        if is_being_deleted(obj) and ORPHAN in meta.finalizers:
            await self._orphan_dependents(obj)
            return
        if is_being_deleted(obj) and FOREGROUND in meta.finalizers:
            await self._delete_dependents_first(obj)
            return
        if meta.owner_references:
            await self._check_owners(obj)

    async def _owner_state(self, obj: Any, ref: Any) -> str:
        """"solid", "waiting" (foreground-deleting) or "absent", confirmed live when not cached."""
        node = self._by_uid.get(ref.uid)
        owner = self._cached(node) if node is not None else None
        if owner is None:
            try:
                rt = self.scheme.for_kind(ref.api_version, ref.kind)
            except UnknownKindError:
                log.warning("%s/%s: owner kind %s/%s is unknown; leaving it alone", obj.metadata.namespace,
                            obj.metadata.name, ref.api_version, ref.kind)
                return "solid"
            namespace = obj.metadata.namespace if rt.namespaced else ""
            try:
                owner = await self.client.get(rt.message, ref.name, namespace)
            except StatusError as exc:
                if exc.reason == "NotFound":
                    return "absent"
                raise
        if owner.metadata.uid != ref.uid:
            return "absent"  # a new object with the old name is not the owner
        if is_being_deleted(owner) and FOREGROUND in owner.metadata.finalizers:
            return "waiting"
        return "solid"

    async def _check_owners(self, obj: Any) -> None:
        states = [(ref, await self._owner_state(obj, ref)) for ref in obj.metadata.owner_references]
        solid = [ref for ref, state in states if state == "solid"]
        dangling = [ref for ref, state in states if state == "absent"]
        waiting = [ref for ref, state in states if state == "waiting"]
        if solid:
            if dangling:
                await self._set_owner_refs(obj, [r for r in obj.metadata.owner_references
                                                 if r.uid not in {d.uid for d in dangling}])
            return
        if is_being_deleted(obj):
            return  # already going; its own finalizers or grace period decide when
        policy = "Foreground" if waiting and self._dependents.get(obj.metadata.uid) else "Background"
        log.info("deleting %s %s/%s: its owners are %s (propagation %s)", type(obj).DESCRIPTOR.name,
                 obj.metadata.namespace, obj.metadata.name,
                 ", ".join(f"{r.kind}/{r.name} {s}" for r, s in states), policy)
        await self._delete(obj, policy)

    async def _delete(self, obj: Any, policy: str) -> None:
        try:
            await self.client.delete(type(obj), obj.metadata.name, obj.metadata.namespace,
                                     propagation_policy=policy, uid=obj.metadata.uid)
        except StatusError as exc:
            if exc.reason != "NotFound":
                raise

    async def _set_owner_refs(self, obj: Any, refs: Iterable[Any]) -> None:
        patch = {"metadata": {"ownerReferences": [codec.encode(r) for r in refs],
                              "resourceVersion": obj.metadata.resource_version}}
        try:
            await self.client.patch(type(obj), obj.metadata.name, obj.metadata.namespace, patch)
        except StatusError as exc:
            if exc.reason != "NotFound":
                raise

    async def _orphan_dependents(self, owner: Any) -> None:
        uid = owner.metadata.uid
        for node in self.dependents_of(uid):
            dep = self._cached(node)
            if dep is None:
                continue
            await self._set_owner_refs(dep, [r for r in dep.metadata.owner_references if r.uid != uid])
        log.info("orphaned the dependents of %s %s/%s", type(owner).DESCRIPTOR.name, owner.metadata.namespace,
                 owner.metadata.name)
        await self._remove_finalizer(owner, ORPHAN)

    async def _delete_dependents_first(self, owner: Any) -> None:
        uid = owner.metadata.uid
        blocking = 0
        for node in self.dependents_of(uid):
            dep = self._cached(node)
            if dep is None:
                continue
            ref = next((r for r in dep.metadata.owner_references if r.uid == uid), None)
            if ref is not None and ref.HasField("block_owner_deletion") and ref.block_owner_deletion:
                blocking += 1
            if not is_being_deleted(dep):
                policy = "Foreground" if self._dependents.get(dep.metadata.uid) else "Background"
                await self._delete(dep, policy)
        if blocking == 0:
            await self._remove_finalizer(owner, FOREGROUND)

    async def _remove_finalizer(self, obj: Message, finalizer: str) -> None:
        copy = type(obj)()
        copy.CopyFrom(obj)
        meta = copy.metadata  # type: ignore[attr-defined]
        kept = [f for f in meta.finalizers if f != finalizer]
        del meta.finalizers[:]
        meta.finalizers.extend(kept)
        try:
            await self.client.update(copy)
        except StatusError as exc:
            if exc.reason != "NotFound":
                raise
