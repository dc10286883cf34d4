"""Subresources: routes under an object that are not the object itself.

Kubernetes serves `pods/status`, `pods/binding`, `pods/eviction`,
`deployments/scale`, `namespaces/finalize` as resources of their own: each
has its own verbs, its own body kind (a Scale is not a Deployment) and its own
authorization name. Here each is a small class registered per (group,
resource) in its API group's module, next to the strategies; the gRPC service
looks a route up by name and calls the verb, so adding a subresource never
touches the service or the store.

A subresource works through ``StoreView``, the part of the generic store it
needs, and may reach other resources' stores through a ``StoreLookup`` (the
eviction reads PodDisruptionBudgets).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from google.protobuf.message import Message

from kubelite.apiserver.pipeline import Attributes
from kubelite.apiserver.registry.strategy import Strategy
from kubelite.machinery import codec, errors, patch
from kubelite.machinery.scheme import ResourceType

MAX_PATCH_ATTEMPTS = 8


class HasObj(Protocol):
    """What a read-modify-write callback sees of the current object."""

    @property
    def obj(self) -> Message: ...

    @property
    def revision(self) -> int: ...


Mutate = Callable[[HasObj], Awaitable[Message]]


class StoreView(Protocol):
    """The part of ``ResourceStore`` that subresources use."""

    rt: ResourceType
    strategy: Strategy

    async def get(self, namespace: str, name: str, resource_version: str = "") -> Message: ...

    async def guaranteed_update(self, attrs: Attributes, name: str, mutate: Mutate, *, precondition: int = 0,
                                status: bool = False, from_cache: bool = False, track: bool = True) -> Message: ...

    async def update(self, attrs: Attributes, obj: Message, *, status: bool = False) -> Message: ...

    async def patch(self, attrs: Attributes, patch_type: str, body: bytes, subresource: str = "") -> Message: ...

    async def delete(self, attrs: Attributes, *, propagation_policy: str = "", uid: str = "",
                     resource_version: str = "", grace_period: int | None = None) -> tuple[Message, bool]: ...

    async def list_objects(self, namespace: str, label_selector: str = "",
                           field_selector: str = "") -> list[Message]: ...


# Resolves another resource's store by (group, resource), at call time.
StoreLookup = Callable[[str, str], StoreView]


class Subresource:
    """One subresource route; subclasses implement the verbs they support.

    ``message`` is the body and answer kind, None when it is the parent's own
    kind (status, finalize). ``verbs`` are what discovery reports.
    """

    name = ""
    message: type[Message] | None = None
    verbs: tuple[str, ...] = ()

    def __init__(self, lookup: StoreLookup) -> None:
        self.lookup = lookup

    def _unsupported(self, store: StoreView, verb: str) -> errors.StatusError:
        return errors.method_not_supported(store.rt.group, f"{store.rt.resource}/{self.name}", verb)

    async def get(self, store: StoreView, attrs: Attributes) -> Message:
        raise self._unsupported(store, "get")

    async def create(self, store: StoreView, attrs: Attributes, body: Message) -> Message:
        raise self._unsupported(store, "create")

    async def update(self, store: StoreView, attrs: Attributes, body: Message) -> Message:
        raise self._unsupported(store, "update")

    async def patch(self, store: StoreView, attrs: Attributes, patch_type: str, body: bytes) -> Message:
        """Patches the subresource's own form: read it, patch it as JSON, update it.

        The update carries the resourceVersion that was read, so a concurrent
        writer makes it retry on the fresh state, unless the patch itself
        pinned a resourceVersion (then the Conflict is the caller's).
        """
        if "patch" not in self.verbs:
            raise self._unsupported(store, "patch")
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise errors.bad_request(f"the patch is not valid JSON: {exc}") from exc
        pinned = isinstance(doc, dict) and bool((doc.get("metadata") or {}).get("resourceVersion"))
        for _attempt in range(MAX_PATCH_ATTEMPTS):
            current = await self.get(store, attrs)
            message_type = type(current)
            result = patch.apply_patch(codec.encode(current), doc, patch_type, message_type)
            try:
                return await self.update(store, attrs, codec.decode_into(result, message_type))
            except errors.StatusError as exc:
                if exc.reason != "Conflict" or pinned:
                    raise
        raise errors.conflict(store.rt.group, store.rt.resource, attrs.name, "too many concurrent updates; try again")

    def body_type(self, store: StoreView) -> type[Message]:
        return self.message or store.rt.message


class StatusSubresource(Subresource):
    """`<resource>/status`: the status written apart from the spec (controllers, kubelets)."""

    name = "status"
    verbs = ("get", "update", "patch")

    async def get(self, store: StoreView, attrs: Attributes) -> Message:
        return await store.get(attrs.namespace, attrs.name)

    async def update(self, store: StoreView, attrs: Attributes, body: Message) -> Message:
        return await store.update(attrs, body, status=True)

    async def patch(self, store: StoreView, attrs: Attributes, patch_type: str, body: bytes) -> Message:
        return await store.patch(attrs, patch_type, body, "status")


SubresourceFactory = Callable[[StoreLookup], Subresource]


def with_status(rts: Sequence[ResourceType]) -> dict[tuple[str, str], dict[str, SubresourceFactory]]:
    """The status subresource for every kind that has one."""
    return {(rt.group, rt.resource): {"status": StatusSubresource} for rt in rts if rt.has_status}
