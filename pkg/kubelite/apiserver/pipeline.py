"""The request pipeline's security stages: authentication, authorization, admission.

Every request passes them in this order before validation and storage, as in
Kubernetes. Today authentication and authorization allow everyone; they are
real stages behind small Protocols so that client certificates, tokens and
RBAC can be switched on later without touching the handlers. Admission
plugins run inside the store (after defaulting, mutating first, then
validating) because they need the decoded object and the stored one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from google.protobuf.message import Message

from kubelite.machinery import errors
from kubelite.machinery.scheme import ResourceType


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()


ANONYMOUS = UserInfo("system:anonymous", ("system:unauthenticated",))
# The identity the API server uses for its own writes (bootstrap namespaces).
SYSTEM = UserInfo("system:apiserver", ("system:masters",))


@dataclass(frozen=True)
class Attributes:
    """What is being asked: who, which verb, on which object."""

    user: UserInfo
    verb: str  # create, get, list, watch, update, patch, delete
    rt: ResourceType
    namespace: str
    name: str
    subresource: str = ""
    dry_run: bool = False


class Authenticator(Protocol):
    def authenticate(self, metadata: Sequence[tuple[str, str | bytes]]) -> UserInfo | None:
        """Returns the caller's identity, or None when the credentials are not recognised."""
        ...


class Authorizer(Protocol):
    def authorize(self, attrs: Attributes) -> tuple[bool, str]:
        """Returns (allowed, reason)."""
        ...


class AllowAll:
    """Authentication and authorization that accept everyone (until the security issue)."""

    def authenticate(self, metadata: Sequence[tuple[str, str | bytes]]) -> UserInfo | None:
        return UserInfo("admin", ("system:masters", "system:authenticated"))

    def authorize(self, attrs: Attributes) -> tuple[bool, str]:
        return True, ""


class AdmissionPlugin(Protocol):
    name: str

    async def admit(self, attrs: Attributes, obj: Message | None, old: Message | None) -> None:
        """Mutating phase: may change ``obj``."""
        ...

    async def validate(self, attrs: Attributes, obj: Message | None, old: Message | None) -> None:
        """Validating phase: raises StatusError to refuse."""
        ...


@dataclass
class Admission:
    """The ordered chain of admission plugins."""

    plugins: list[AdmissionPlugin] = field(default_factory=list)

    async def admit(self, attrs: Attributes, obj: Message | None, old: Message | None) -> None:
        for p in self.plugins:
            await p.admit(attrs, obj, old)

    async def validate(self, attrs: Attributes, obj: Message | None, old: Message | None) -> None:
        for p in self.plugins:
            await p.validate(attrs, obj, old)


@dataclass
class Pipeline:
    authenticator: Authenticator = field(default_factory=AllowAll)
    authorizer: Authorizer = field(default_factory=AllowAll)
    admission: Admission = field(default_factory=Admission)

    def check(self, metadata: Sequence[tuple[str, str | bytes]], make: Callable[[UserInfo], Attributes]) -> Attributes:
        user = self.authenticator.authenticate(metadata)
        if user is None:
            raise errors.StatusError("Unauthorized", "Unauthorized")
        attrs = make(user)
        allowed, reason = self.authorizer.authorize(attrs)
        if not allowed:
            what = attrs.rt.group_resource + (f"/{attrs.subresource}" if attrs.subresource else "")
            where = f' in the namespace "{attrs.namespace}"' if attrs.namespace else " at the cluster scope"
            raise errors.forbidden(
                f'{what} "{attrs.name}" is forbidden: User "{user.name}" cannot {attrs.verb} resource '
                f'"{attrs.rt.resource}" in API group "{attrs.rt.group}"{where}' + (f": {reason}" if reason else ""))
        return attrs


# A namespace lookup: returns the Namespace object or None.
NamespaceLookup = Callable[[str], Awaitable[Message | None]]

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public")


class NamespaceLifecycle:
    """Refuses objects in namespaces that do not exist or are being deleted,
    and the deletion of the namespaces the system needs."""

    name = "NamespaceLifecycle"

    def __init__(self, lookup: NamespaceLookup) -> None:
        self._lookup = lookup

    async def admit(self, attrs: Attributes, obj: Message | None, old: Message | None) -> None:
        return None

    async def validate(self, attrs: Attributes, obj: Message | None, old: Message | None) -> None:
        if attrs.rt.kind == "Namespace":
            if attrs.verb == "delete" and attrs.name in SYSTEM_NAMESPACES:
                raise errors.forbidden(f'namespaces "{attrs.name}" is forbidden: this namespace may not be deleted')
            return
        if not attrs.rt.namespaced or attrs.verb != "create":
            return
        ns = await self._lookup(attrs.namespace)
        if ns is None:
            raise errors.not_found("", "namespaces", attrs.namespace)
        if ns.metadata.deletion_timestamp.seconds:  # type: ignore[attr-defined]
            raise errors.forbidden(
                f'{attrs.rt.group_resource} "{attrs.name}" is forbidden: unable to create new content in namespace '
                f"{attrs.namespace} because it is being terminated")
