"""What differs between kinds on the server: the strategy.

The generic store (``apiserver.store``) does the same create / update / delete
dance for every kind and asks the kind's Strategy at each step: how to default
it, how to validate it, which fields it exposes to field selectors, what to
reset on create, whether deletion is graceful, which keys to claim in etcd at
create time. Kinds without special needs use ``Strategy`` as it is.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from google.protobuf.message import Message

from kubelite.machinery import validation
from kubelite.machinery.errors import FieldError
from kubelite.machinery.scheme import ResourceType
from kubelite.storage.interface import Claim


def meta_of(obj: Message) -> Any:
    """The object's ObjectMeta (every kind has one at field ``metadata``)."""
    return obj.metadata  # type: ignore[attr-defined]


class Strategy:
    """Default behaviour; subclasses override the hooks their kind needs."""

    # Field selector keys beyond metadata.name / metadata.namespace.
    extra_fields: tuple[str, ...] = ()
    # An update of a missing object creates it (Kubernetes' AllowCreateOnUpdate): kinds that
    # their writers keep whole and idempotently (Leases, Endpoints, Events), so that a kubelet
    # renewing its Lease needs no get-then-create.
    allow_create_on_update = False

    def __init__(self, rt: ResourceType) -> None:
        self.rt = rt

    # --- create / update -------------------------------------------------

    def prepare_for_create(self, obj: Message) -> None:
        """Resets what a client may not set on create (status, for kinds that have one)."""
        if self.rt.has_status and hasattr(obj, "status"):
            obj.ClearField("status")

    def prepare_for_update(self, new: Message, old: Message, subresource: str = "") -> None:
        """A spec update keeps the stored status.

        ``subresource`` names the write when it is not a plain update
        ("binding", "finalize"): such writes may change what updates may not.
        """
        if self.rt.has_status and hasattr(new, "status"):
            new.status.CopyFrom(old.status)  # type: ignore[attr-defined]

    def prepare_for_status_update(self, new: Message, old: Message) -> None:
        """A status update keeps everything but status (and labels/annotations may not change either)."""
        status = type(new.status)()  # type: ignore[attr-defined]
        status.CopyFrom(new.status)  # type: ignore[attr-defined]
        new.CopyFrom(old)
        new.status.CopyFrom(status)  # type: ignore[attr-defined]

    def default(self, obj: Message) -> None:
        """Fills defaults the Kubernetes way (restartPolicy Always, protocol TCP, ...)."""

    def validate(self, obj: Message) -> list[FieldError]:
        return self.validate_meta(obj)

    def validate_update(self, new: Message, old: Message, subresource: str = "") -> list[FieldError]:
        return self.validate(new)

    def validate_status_update(self, new: Message, old: Message) -> list[FieldError]:
        return []

    def validate_meta(self, obj: Message) -> list[FieldError]:
        return validation.validate_object_meta(meta_of(obj), self.rt.namespaced, name_validator=self.name_validator)

    name_validator = staticmethod(validation.is_dns1123_subdomain)

    def spec_of(self, obj: Message) -> bytes | None:
        """What counts as the spec for generation: everything but metadata and status.

        Kinds with a ``spec`` field use it; kinds without one (ConfigMap,
        Secret) count their data fields, as Kubernetes bumps nothing for them
        (returns None: generation stays unset).
        """
        if hasattr(obj, "spec"):
            spec: Message = obj.spec
            return spec.SerializeToString(deterministic=True)
        return None

    # --- storage hooks ---------------------------------------------------

    def ttl_seconds(self, obj: Message) -> int:
        """How long the object lives in storage before it expires on its own; 0 = until deleted."""
        return 0

    def claims_for_create(self, obj: Message) -> Sequence[Claim]:
        """Keys that must not exist yet and are written with the object (IP/port allocations)."""
        return ()

    def on_claim_taken(self, obj: Message, key: str) -> bool:
        """A claim lost a race. Return True after choosing another value (auto-allocation) to retry."""
        return False

    def claim_taken_causes(self, obj: Message, key: str) -> list[FieldError]:
        """Field errors for a value the user asked for that is already allocated."""
        return []

    def claims_for_update(self, new: Message, old: Message) -> Sequence[Claim]:
        """Keys newly needed by an update (a Service gaining NodePorts)."""
        return ()

    def releases_for_update(self, new: Message, old: Message) -> Sequence[str]:
        """Keys an update no longer needs."""
        return ()

    def releases_for_delete(self, obj: Message) -> Sequence[str]:
        """Keys freed in the same transaction that deletes the object."""
        return ()

    # --- deletion --------------------------------------------------------

    def grace_period(self, obj: Message, requested: int | None) -> int:
        """Seconds the object lingers with a deletionTimestamp before removal; 0 = at once."""
        return 0

    def delete_blocked(self, obj: Message) -> bool:
        """True while the kind's own finalization keeps a deleted object (Namespace spec.finalizers)."""
        return False

    def on_graceful_delete(self, obj: Message) -> None:
        """Called when deletion starts but the object stays (finalizers, grace period)."""

    # --- selectors -------------------------------------------------------

    def field_set(self, obj: Message) -> dict[str, str]:
        """The field values field selectors match against."""
        meta = meta_of(obj)
        fields = {"metadata.name": meta.name}
        if self.rt.namespaced:
            fields["metadata.namespace"] = meta.namespace
        for path in self.extra_fields:
            fields[path] = _lookup(obj, path)
        return fields

    def selectable_fields(self) -> tuple[str, ...]:
        base = ("metadata.name", "metadata.namespace") if self.rt.namespaced else ("metadata.name",)
        return base + self.extra_fields


@functools.cache
def _json_fields(descriptor: Any) -> dict[str, str]:
    return {f.json_name: f.name for f in descriptor.fields}


def _lookup(obj: Message, path: str) -> str:
    """Reads a dotted JSON path (``spec.nodeName``) from a message, as a string."""
    cur: Any = obj
    for part in path.split("."):
        name = _json_fields(cur.DESCRIPTOR).get(part)
        if name is None:
            return ""
        cur = getattr(cur, name)
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)
