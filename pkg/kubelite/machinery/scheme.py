"""The registry of kinds: which message type backs which resource.

Every layer looks kinds up here instead of switching on them, so adding a kind
is a proto message plus one ``register`` line in ``kinds.py`` (and, on the
server, a strategy). Lookups accept what users type: plural, singular, short
name, kind, optionally qualified by group (``deployments.apps``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from google.protobuf.message import Message

ALL_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    # Lower-case plural, the resource name in URLs and storage keys.
    resource: str
    singular: str
    namespaced: bool
    message: type[Message]
    short_names: tuple[str, ...] = ()
    # Whether the kind has a status written through its own call.
    has_status: bool = True
    verbs: tuple[str, ...] = ALL_VERBS
    # Kubernetes' category "all" (kubectl get all).
    categories: tuple[str, ...] = field(default=())

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """``pods`` or ``deployments.apps``: how errors and the CLI name the resource."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    @property
    def message_name(self) -> str:
        return self.message.DESCRIPTOR.full_name

    def new(self) -> Message:
        """An empty object of this kind with apiVersion and kind filled in."""
        obj = self.message()
        obj.api_version = self.api_version  # type: ignore[attr-defined]
        obj.kind = self.kind  # type: ignore[attr-defined]
        return obj


class UnknownKindError(LookupError):
    pass


class Scheme:
    """An index of ResourceTypes by kind, by resource name and by message type."""

    def __init__(self) -> None:
        self._types: list[ResourceType] = []
        self._by_kind: dict[tuple[str, str], ResourceType] = {}
        self._by_resource: dict[tuple[str, str], ResourceType] = {}
        self._by_message: dict[str, ResourceType] = {}

    def register(self, rt: ResourceType) -> ResourceType:
        key = (rt.api_version, rt.kind)
        if key in self._by_kind:
            raise ValueError(f"kind {rt.kind} in {rt.api_version} is registered twice")
        self._types.append(rt)
        self._by_kind[key] = rt
        self._by_resource[(rt.group, rt.resource)] = rt
        self._by_message[rt.message_name] = rt
        return rt

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(self._types)

    def for_kind(self, api_version: str, kind: str) -> ResourceType:
        try:
            return self._by_kind[(api_version, kind)]
        except KeyError:
            raise UnknownKindError(f'no matches for kind "{kind}" in version "{api_version}"') from None

    def for_resource(self, group: str, resource: str) -> ResourceType:
        try:
            return self._by_resource[(group, resource)]
        except KeyError:
            name = f"{resource}.{group}" if group else resource
            raise UnknownKindError(f'the server doesn\'t have a resource type "{name}"') from None

    def for_message(self, message: type[Message] | Message) -> ResourceType:
        try:
            return self._by_message[message.DESCRIPTOR.full_name]
        except KeyError:
            raise UnknownKindError(f"{message.DESCRIPTOR.full_name} is not a registered kind") from None

    def for_message_name(self, full_name: str) -> ResourceType:
        try:
            return self._by_message[full_name]
        except KeyError:
            raise UnknownKindError(f"{full_name} is not a registered kind") from None

    def resolve(self, name: str) -> ResourceType:
        """Finds a type by what a user typed: ``po``, ``pod``, ``pods``, ``Pod``, ``deploy``, ``deployments.apps``."""
        wanted, _, group = name.partition(".")
        wanted_l = wanted.lower()
        for rt in self._types:
            if group and rt.group != group:
                continue
            if wanted_l in (rt.resource, rt.singular, rt.kind.lower()) or wanted_l in rt.short_names:
                return rt
        raise UnknownKindError(f'the server doesn\'t have a resource type "{name}"')
