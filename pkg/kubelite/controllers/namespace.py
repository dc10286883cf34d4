"""The namespace controller: empties a Terminating namespace, then lets it go.

Deleting a namespace only marks it (deletionTimestamp, phase Terminating):
the API server keeps it while ``spec.finalizers`` holds ``kubernetes`` and
refuses new objects in it. This controller then deletes every namespaced
object in it, kind by kind, and looks again until nothing is left (pods
take their grace period, objects with finalizers wait for theirs); meanwhile
the namespace's conditions say what is left, as ``kubelite describe ns``
shows them:

* NamespaceDeletionContentFailure: a delete call failed (and why);
* NamespaceContentRemaining: which kinds still have how many objects;
* NamespaceFinalizersRemaining: which finalizers hold them.

Once it is empty it removes ``kubernetes`` from ``spec.finalizers`` through
the namespaces/finalize subresource, and the API server deletes it. That
last call sits behind ``NamespaceFinalizer`` (the route is the API server's;
see ``ClientNamespaceFinalizer``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf.message import Message

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.controller import InstrumentedQueue
from kubelite.client.informer import Informer, meta_namespace_key
from kubelite.controllers.util import Lister, is_being_deleted, set_now
from kubelite.machinery.errors import StatusError
from kubelite.machinery.scheme import ResourceType

log = logging.getLogger(__name__)

FINALIZER_KUBERNETES = "kubernetes"
RECHECK_SECONDS = 2.0


class ContentClient(Protocol):
    """Listing and deleting a namespace's objects (``kubelite.client.Client`` satisfies it)."""

    async def list(self, kind: type[Any], namespace: str = "") -> Any: ...

    async def delete(self, kind: type[Any], name: str, namespace: str = "") -> Any: ...

    async def update_status(self, obj: Any) -> Any: ...


class NamespaceFinalizer(Protocol):
    """The last step: replace the namespace's spec.finalizers (namespaces/finalize)."""

    async def finalize(self, namespace: core.Namespace, finalizers: list[str]) -> None: ...


class ClientNamespaceFinalizer:
    """namespaces/finalize through the client's subresource update.

    The client's ``update_subresource`` comes with the API server's finalize
    route; a client without it gets MethodNotSupported here, so the namespace
    stays Terminating (and is retried with backoff) rather than this
    controller trying another way in.
    """

    def __init__(self, client: Any) -> None:
        self._client = client

    async def finalize(self, namespace: core.Namespace, finalizers: list[str]) -> None:
        update_subresource = getattr(self._client, "update_subresource", None)
        if update_subresource is None:
            raise StatusError("MethodNotSupported", "this API client has no namespaces/finalize call")
        body = core.Namespace()
        body.CopyFrom(namespace)
        del body.spec.finalizers[:]
        body.spec.finalizers.extend(finalizers)
        await update_subresource(core.Namespace, namespace.metadata.name, "", "finalize", body)


@dataclass
class _Remaining:
    counts: dict[str, int]
    finalizers: dict[str, int]
    failures: list[str]


class NamespaceController:
    name = "namespace"

    def __init__(self, ns_lister: Lister[core.Namespace], client: ContentClient, finalizer: NamespaceFinalizer,
                 kinds: Iterable[ResourceType], *, queue: InstrumentedQueue[str] | None = None,
                 recheck: float = RECHECK_SECONDS) -> None:
        self.namespaces = ns_lister
        self.client = client
        self.finalizer = finalizer
        # Namespaced kinds that are stored and listable, in a fixed order.
        self.kinds = [rt for rt in kinds if rt.namespaced]
        self.queue: InstrumentedQueue[str] = queue or InstrumentedQueue(self.name)
        self.recheck = recheck

    def attach(self, informer: Informer[core.Namespace]) -> None:
        informer.add_handler(self._changed, lambda old, new: self._changed(new))

    def _changed(self, ns: core.Namespace) -> None:
        if is_being_deleted(ns):
            self.queue.add(meta_namespace_key(ns))

    async def sync(self, key: str) -> None:
        cached = self.namespaces.get("", key)
        if cached is None or not is_being_deleted(cached):
            return
        ns = core.Namespace()
        ns.CopyFrom(cached)
        if FINALIZER_KUBERNETES not in ns.spec.finalizers:
            return  # already finalized: the API server removes it
        remaining = await self._delete_content(key)
        await self._update_conditions(ns, remaining)
        if remaining.failures:
            raise StatusError("InternalError", f"namespace {key}: " + "; ".join(remaining.failures))
        if remaining.counts:
            log.info("namespace %s: waiting for %s", key, _describe(remaining.counts))
            self.queue.add_after(key, self.recheck)
            return
        await self.finalizer.finalize(ns, [f for f in ns.spec.finalizers if f != FINALIZER_KUBERNETES])
        log.info("namespace %s: empty; finalized", key)

    async def _delete_content(self, namespace: str) -> _Remaining:
        remaining = _Remaining({}, {}, [])
        for rt in self.kinds:
            try:
                listed = await self.client.list(rt.message, namespace)
            except StatusError as exc:
                remaining.failures.append(f"listing {rt.resource}: {exc.message}")
                continue
            items: list[Message] = list(listed.items)
            for obj in items:
                meta = obj.metadata  # type: ignore[attr-defined]
                for fin in meta.finalizers:
                    remaining.finalizers[fin] = remaining.finalizers.get(fin, 0) + 1
                if meta.HasField("deletion_timestamp"):
                    continue  # already going: its grace period or finalizers decide when
                try:
                    await self.client.delete(rt.message, meta.name, namespace)
                except StatusError as exc:
                    if exc.reason != "NotFound":
                        remaining.failures.append(f"deleting {rt.resource} {meta.name}: {exc.message}")
            if items:
                try:
                    left = len((await self.client.list(rt.message, namespace)).items)
                except StatusError:
                    left = len(items)
                if left:
                    remaining.counts[rt.resource] = left
        return remaining

    async def _update_conditions(self, ns: core.Namespace, remaining: _Remaining) -> None:
        wanted = [
            ("NamespaceDeletionContentFailure",
             ("True", "ContentDeletionFailed", "Failed to delete all resource types, "
              + "; ".join(remaining.failures)) if remaining.failures else
             ("False", "ContentDeleted", "All content successfully deleted, may be waiting on finalization")),
            ("NamespaceContentRemaining",
             ("True", "SomeResourcesRemain", f"Some resources are remaining: {_describe(remaining.counts)}")
             if remaining.counts else ("False", "ContentRemoved", "All content successfully removed")),
            ("NamespaceFinalizersRemaining",
             ("True", "SomeFinalizersRemain", "Some content in the namespace has finalizers remaining: "
              + ", ".join(f"{f} in {n} resource instances" for f, n in sorted(remaining.finalizers.items())))
             if remaining.finalizers else ("False", "ContentHasNoFinalizers",
                                           "All content-preserving finalizers finished")),
        ]
        status = core.NamespaceStatus()
        status.CopyFrom(ns.status)
        status.phase = "Terminating"
        existing = {c.type: c for c in status.conditions}
        conditions = [c for c in status.conditions if c.type not in dict(wanted)]
        for ctype, (cstatus, reason, message) in wanted:
            old = existing.get(ctype)
            cond = core.NamespaceCondition(type=ctype, status=cstatus, reason=reason, message=message)
            if old is not None and old.status == cstatus:
                cond.last_transition_time.CopyFrom(old.last_transition_time)
            else:
                set_now(cond.last_transition_time)
            conditions.append(cond)
        del status.conditions[:]
        status.conditions.extend(conditions)
        if status.SerializeToString(deterministic=True) == ns.status.SerializeToString(deterministic=True):
            return
        ns.status.CopyFrom(status)
        written: core.Namespace = await self.client.update_status(ns)
        ns.CopyFrom(written)


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{resource} has {n} resource instances" for resource, n in sorted(counts.items()))
