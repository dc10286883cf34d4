"""Adoption and release: which objects a controller owns (client-go's ControllerRefManager).

Ownership is the ``controller: true`` ownerReference, never the label match
alone: two ReplicaSets with overlapping selectors must not fight over a pod.
A controller *claims* the objects its selector matches:

* owned by it and matching: kept;
* owned by it and no longer matching (a user relabelled the pod): released,
  its ownerReference removed, so the pod lives on as an orphan;
* orphaned and matching: adopted, but only after a fresh read of the owner
  confirms it still exists with that uid and is not being deleted (the cache
  may be stale, and a deleted owner must not grab pods its successor of the
  same name should get);
* owned by another controller: left alone.

Adopt and release are merge patches carrying the cached resourceVersion as a
precondition, so a change the cache has not seen yet makes them fail with
Conflict (and the key is retried) instead of overwriting it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from kubelite.api.meta.v1 import generated_pb2 as metav1
from kubelite.controllers.util import controller_ref, is_being_deleted
from kubelite.machinery import codec
from kubelite.machinery.errors import StatusError
from kubelite.machinery.selectors import LabelSelector

log = logging.getLogger(__name__)

Patcher = Callable[[str, str, dict[str, Any]], Awaitable[None]]


def _refs_json(refs: list[metav1.OwnerReference]) -> list[Any]:
    return [codec.encode(r) for r in refs]


class ControllerRefManager:
    """Claims objects for one owner; ``can_adopt`` rechecks the owner before the first adoption."""

    def __init__(self, owner: Any, api_version: str, kind: str, selector: LabelSelector,
                 can_adopt: Callable[[], Awaitable[None]], patch: Patcher) -> None:
        self._owner = owner
        self._api_version = api_version
        self._kind = kind
        self._selector = selector
        self._can_adopt = can_adopt
        self._can_adopt_checked: StatusError | bool | None = False
        self._patch = patch

    async def claim(self, objects: list[Any]) -> list[Any]:
        """The objects this owner controls after adopting and releasing; failures are raised
        after every object was tried, so one bad pod does not stop the others."""
        claimed: list[Any] = []
        errors: list[Exception] = []
        uid = self._owner.metadata.uid
        for obj in objects:
            ref = controller_ref(obj)
            matches = self._selector.matches(dict(obj.metadata.labels))
            try:
                if ref is not None:
                    if ref.uid != uid:
                        continue
                    if matches:
                        claimed.append(obj)
                    elif not is_being_deleted(self._owner):
                        await self._release(obj)
                    continue
                if not matches or is_being_deleted(self._owner) or is_being_deleted(obj):
                    continue
                if await self._adopt(obj):
                    claimed.append(obj)
            except StatusError as exc:
                if exc.reason == "NotFound":
                    continue  # gone meanwhile: nothing to own
                errors.append(exc)
        if errors:
            raise errors[0]
        return claimed

    async def _check_can_adopt(self) -> bool:
        if self._can_adopt_checked is False:
            try:
                await self._can_adopt()
                self._can_adopt_checked = None
            except StatusError as exc:
                self._can_adopt_checked = exc
        if isinstance(self._can_adopt_checked, StatusError):
            log.info("%s %s/%s cannot adopt: %s", self._kind, self._owner.metadata.namespace,
                     self._owner.metadata.name, self._can_adopt_checked.message)
            return False
        return True

    async def _adopt(self, obj: Any) -> bool:
        if not await self._check_can_adopt():
            return False
        refs = list(obj.metadata.owner_references)
        refs.append(metav1.OwnerReference(api_version=self._api_version, kind=self._kind,
                                          name=self._owner.metadata.name, uid=self._owner.metadata.uid,
                                          controller=True, block_owner_deletion=True))
        await self._patch(obj.metadata.namespace, obj.metadata.name, {
            "metadata": {"ownerReferences": _refs_json(refs), "resourceVersion": obj.metadata.resource_version}})
        log.info("%s %s/%s adopted %s", self._kind, self._owner.metadata.namespace, self._owner.metadata.name,
                 obj.metadata.name)
        return True

    async def _release(self, obj: Any) -> None:
        refs = [r for r in obj.metadata.owner_references if r.uid != self._owner.metadata.uid]
        await self._patch(obj.metadata.namespace, obj.metadata.name, {
            "metadata": {"ownerReferences": _refs_json(refs), "resourceVersion": obj.metadata.resource_version}})
        log.info("%s %s/%s released %s", self._kind, self._owner.metadata.namespace, self._owner.metadata.name,
                 obj.metadata.name)


def recheck_owner(get: Callable[[], Awaitable[Any]], owner: Any) -> Callable[[], Awaitable[None]]:
    """A ``can_adopt`` that reads the owner fresh and refuses if it changed identity or is going away."""

    async def check() -> None:
        fresh = await get()
        if fresh.metadata.uid != owner.metadata.uid:
            raise StatusError("Conflict", f"original {owner.metadata.name} is gone: got uid {fresh.metadata.uid}, "
                                          f"wanted {owner.metadata.uid}")
        if is_being_deleted(fresh):
            raise StatusError("Conflict", f"{owner.metadata.name} has just been deleted at "
                                          f"{fresh.metadata.deletion_timestamp.ToJsonString()}")

    return check
