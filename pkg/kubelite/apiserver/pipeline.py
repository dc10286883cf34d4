"""The request pipeline's security stages: authentication, authorization, admission.

Every request passes them in this order before validation and storage, as in
Kubernetes. Authentication recognises bootstrap tokens (kubelite.apiserver.authn)
and lets requests without credentials through as before; authorization allows
everyone. They are real stages behind small Protocols so that client
certificates, ServiceAccount tokens and RBAC can be switched on later without
touching the handlers. Admission
plugins run inside the store (after defaulting, mutating first, then
validating) because they need the decoded object and the stored one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

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
# The field manager of those writes (Kubernetes' own show as kube-apiserver, its binary).
SYSTEM_MANAGER = "kubelite-apiserver"


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
    # Who writes, for field ownership (metadata.managedFields): the request's fieldManager, else the
    # user agent's first word. None for the server's own bookkeeping writes, which record no owner.
    field_manager: str | None = None


# Kubernetes' limit on a fieldManager's length, in bytes.
FIELD_MANAGER_MAX_BYTES = 128
# The verbs whose writes record an owner in metadata.managedFields.
MANAGED_VERBS = frozenset({"create", "update", "patch"})


def field_manager(requested: str, user_agent: str) -> str:
    """The manager of a write: the request's fieldManager, else the user agent's first word.

    A client names its binary first in its user agent (``kubectl/v1.37.1
    (linux/amd64) ...``, ``kubelite-kubelet/v0.1.0 grpc-python/...``), so that
    is who owns what it writes, as in Kubernetes; the unprintable characters
    of a user agent are dropped and it is cut to the length limit.
    """
    if requested:
        if len(requested.encode()) > FIELD_MANAGER_MAX_BYTES:
            raise errors.bad_request(f"fieldManager: Too long: may not be more than {FIELD_MANAGER_MAX_BYTES} bytes")
        if not requested.isprintable():
            raise errors.bad_request(f"fieldManager: Invalid value: {requested!r}: must contain only printable "
                                     f"characters")
        return requested
    out = ""
    for ch in user_agent.split("/", 1)[0]:
        if not ch.isprintable():
            continue
        if len((out + ch).encode()) > FIELD_MANAGER_MAX_BYTES:
            break
        out += ch
    return out


@dataclass(frozen=True)
class RequestInfo:
    """What a request carries that can prove who sent it.

    ``peer_certificates`` holds the PEM client certificate(s) of a TLS
    connection (empty on plaintext); ``bearer_token`` is the credential of an
    `authorization: Bearer` header. Authenticators for client certificates,
    bootstrap tokens and ServiceAccount tokens read these; a webhook token
    review may await a remote answer, hence the async check.
    """

    metadata: Sequence[tuple[str, str | bytes]] = ()
    peer: str = ""
    peer_certificates: tuple[bytes, ...] = ()

    @property
    def user_agent(self) -> str:
        for key, value in self.metadata:
            if key == "user-agent":
                return value.decode() if isinstance(value, bytes) else value
        return ""

    @property
    def bearer_token(self) -> str:
        for key, value in self.metadata:
            if key == "authorization":
                text = value.decode() if isinstance(value, bytes) else value
                scheme, _, token = text.partition(" ")
                if scheme.lower() == "bearer":
                    return token.strip()
        return ""


class Authenticator(Protocol):
    async def authenticate(self, request: RequestInfo) -> UserInfo | None:
        """Returns the caller's identity, or None when the credentials are not recognised."""
        ...


class Authorizer(Protocol):
    def authorize(self, attrs: Attributes) -> tuple[bool, str]:
        """Returns (allowed, reason)."""
        ...


class AllowAll:
    """Authentication and authorization that accept everyone (until the security issue)."""

    async def authenticate(self, request: RequestInfo) -> UserInfo | None:
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

    async def authenticate(self, request: RequestInfo) -> UserInfo:
        """The caller, or Unauthorized (401) when it presented credentials nobody accepts."""
        user = await self.authenticator.authenticate(request)
        if user is None:
            raise errors.StatusError("Unauthorized", "Unauthorized")
        return user

    async def check(self, request: RequestInfo, make: Callable[[UserInfo], Attributes]) -> Attributes:
        user = await self.authenticate(request)
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


TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"


class DefaultTolerationSeconds:
    """Gives new pods a bounded toleration of the not-ready and unreachable NoExecute taints.

    When a node stops reporting, the node lifecycle controller taints it and
    the taint manager evicts pods whose toleration has run out; this default
    (300 s, `--default-*-toleration-seconds`) is what lets a pod ride out a
    short blip but be recreated elsewhere after a real failure. A pod that
    already says something about either taint keeps its own choice.
    """

    name = "DefaultTolerationSeconds"

    def __init__(self, not_ready_seconds: int = 300, unreachable_seconds: int = 300) -> None:
        self._defaults = ((TAINT_NOT_READY, not_ready_seconds), (TAINT_UNREACHABLE, unreachable_seconds))

    async def admit(self, attrs: Attributes, obj: Message | None, old: Message | None) -> None:
        if attrs.rt.kind != "Pod" or attrs.verb != "create" or attrs.subresource or obj is None:
            return
        tolerations: Any = obj.spec.tolerations  # type: ignore[attr-defined]
        for key, seconds in self._defaults:
            if not any(_tolerates_no_execute(t, key) for t in tolerations):
                tolerations.add(key=key, operator="Exists", effect="NoExecute", toleration_seconds=seconds)

    async def validate(self, attrs: Attributes, obj: Message | None, old: Message | None) -> None:
        return None


def _tolerates_no_execute(t: Any, key: str) -> bool:
    if t.effect not in ("", "NoExecute"):
        return False
    return t.key == key or (not t.key and t.operator == "Exists")


class ServiceAccountAdmission:
    """Gives pods without one the `default` ServiceAccount, as Kubernetes' ServiceAccount admission does.

    Kubernetes also refuses pods whose ServiceAccount does not exist yet; here
    the name is defaulted only, because the account carries no credentials
    until the security work mounts tokens, and refusing would make every pod
    in a fresh namespace wait for the controller that creates `default`.
    """

    name = "ServiceAccount"

    async def admit(self, attrs: Attributes, obj: Message | None, old: Message | None) -> None:
        if attrs.rt.kind != "Pod" or attrs.verb != "create" or attrs.subresource or obj is None:
            return
        spec: Any = obj.spec  # type: ignore[attr-defined]
        if not spec.service_account_name:
            spec.service_account_name = spec.service_account or "default"

    async def validate(self, attrs: Attributes, obj: Message | None, old: Message | None) -> None:
        return None
