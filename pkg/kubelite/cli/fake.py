"""An in-memory stand-in for the API client, for testing the command line without a server.

It behaves like the API server where the CLI can tell (AlreadyExists,
NotFound, resourceVersion bumps only on real change, finalizers holding a
deleted object, label and field selectors, the three patch types) and
records every call, so tests can assert that nothing was sent.
"""

from __future__ import annotations

import builtins
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message

from kubelite.cli.clientset import ApiClient, Connection, ConnectionOptions
from kubelite.machinery.errors import StatusError, already_exists, not_found
from kubelite.machinery.scheme import ResourceType, Scheme


@dataclass
class FakeObjectList:
    items: list[Any]
    resource_version: str
    continue_token: str = ""


@dataclass
class FakeDeleteResult:
    object: Any
    deleted: bool


@dataclass
class FakeWatchEvent:
    type: str
    object: Any


@dataclass
class FakeAPIResource:
    name: str
    singular_name: str
    namespaced: bool
    group: str
    version: str
    kind: str
    verbs: list[str] = field(default_factory=list)
    short_names: list[str] = field(default_factory=list)


@dataclass
class FakeVersionInfo:
    git_version: str = "v0.1.0-fake"
    platform: str = "linux/amd64"
    python_version: str = "3.11"


WRITES = ("create", "update", "patch", "delete")


class FakeClient:
    """Objects by (group, resource, namespace, name); ``calls`` lists (verb, resource, namespace, name)."""

    def __init__(self, scheme: Scheme | None = None) -> None:
        if scheme is None:
            from kubelite.machinery.kinds import SCHEME

            scheme = SCHEME
        self.scheme = scheme
        self.objects: dict[tuple[str, str, str, str], Message] = {}
        self.calls: list[tuple[str, str, str, str]] = []
        self.watch_events: list[FakeWatchEvent] = []
        self.watch_requests: list[dict[str, Any]] = []
        self.revision = 100
        self.closed = False
        self._uids = itertools.count(1)
        # When set, objects created get this creationTimestamp (for stable AGE columns).
        self.now: datetime | None = None

    # -- helpers -----------------------------------------------------------------------------------------

    def _key(self, rt: ResourceType, namespace: str, name: str) -> tuple[str, str, str, str]:
        return (rt.group, rt.resource, namespace if rt.namespaced else "", name)

    def _bump(self, obj: Message) -> None:
        self.revision += 1
        obj.metadata.resource_version = str(self.revision)  # type: ignore[attr-defined]

    def writes(self) -> list[tuple[str, str, str, str]]:
        return [c for c in self.calls if c[0] in WRITES]

    def add(self, obj: Message) -> Message:
        """Stores an object directly (test setup), filling server-set metadata."""
        rt = self.scheme.for_message(obj)
        stored = type(obj)()
        stored.CopyFrom(obj)
        md = stored.metadata  # type: ignore[attr-defined]
        if not md.uid:
            md.uid = f"uid-{next(self._uids)}"
        if not md.HasField("creation_timestamp"):
            md.creation_timestamp.FromDatetime(self.now or datetime.now(UTC))
        if rt.namespaced and not md.namespace:
            md.namespace = "default"
        stored.api_version = rt.api_version  # type: ignore[attr-defined]
        stored.kind = rt.kind  # type: ignore[attr-defined]
        self._bump(stored)
        self.objects[self._key(rt, md.namespace, md.name)] = stored
        return stored

    def stored(self, kind: type[Message], name: str, namespace: str = "default") -> Message | None:
        rt = self.scheme.for_message(kind)
        return self.objects.get(self._key(rt, namespace, name))

    @staticmethod
    def _copy(obj: Message) -> Message:
        out = type(obj)()
        out.CopyFrom(obj)
        return out

    # -- the ApiClient surface ---------------------------------------------------------------------------

    async def create(self, obj: Message, *, dry_run: bool = False) -> Any:
        rt = self.scheme.for_message(obj)
        md = obj.metadata  # type: ignore[attr-defined]
        name = md.name or (md.generate_name + f"x{next(self._uids)}" if md.generate_name else "")
        self.calls.append(("create", rt.resource, md.namespace, name))
        key = self._key(rt, md.namespace, name)
        if key in self.objects:
            raise already_exists(rt.group, rt.resource, name)
        new = self._copy(obj)
        new.metadata.name = name  # type: ignore[attr-defined]
        if dry_run:
            return new
        return self._copy(self.add(new))

    async def get(self, kind: type[Message], name: str, namespace: str = "") -> Any:
        rt = self.scheme.for_message(kind)
        self.calls.append(("get", rt.resource, namespace, name))
        obj = self.objects.get(self._key(rt, namespace, name))
        if obj is None:
            raise not_found(rt.group, rt.resource, name)
        return self._copy(obj)

    async def list(self, kind: type[Message], namespace: str = "", *, label_selector: str = "",
                   field_selector: str = "", resource_version: str = "", limit: int = 0,
                   continue_token: str = "") -> Any:
        from kubelite.machinery import codec
        from kubelite.machinery.selectors import parse_field_selector, parse_label_selector

        rt = self.scheme.for_message(kind)
        self.calls.append(("list", rt.resource, namespace, ""))
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector)
        items = []
        for (group, resource, ns, _), obj in sorted(self.objects.items()):
            if (group, resource) != (rt.group, rt.resource) or (namespace and rt.namespaced and ns != namespace):
                continue
            md = obj.metadata  # type: ignore[attr-defined]
            if not labels.matches(dict(md.labels)):
                continue
            data = codec.encode(obj)
            values = {"metadata.name": md.name, "metadata.namespace": md.namespace}
            for k, v in (data.get("involvedObject") or {}).items():
                values[f"involvedObject.{k}"] = str(v)
            if not fields.matches(values):
                continue
            items.append(self._copy(obj))
        return FakeObjectList(items=items, resource_version=str(self.revision))

    async def update(self, obj: Message, *, dry_run: bool = False) -> Any:
        rt = self.scheme.for_message(obj)
        md = obj.metadata  # type: ignore[attr-defined]
        self.calls.append(("update", rt.resource, md.namespace, md.name))
        key = self._key(rt, md.namespace, md.name)
        current = self.objects.get(key)
        if current is None:
            raise not_found(rt.group, rt.resource, md.name)
        cmd = current.metadata  # type: ignore[attr-defined]
        if md.resource_version and md.resource_version != cmd.resource_version:
            raise StatusError("Conflict", f'Operation cannot be fulfilled on {rt.group_resource} "{md.name}": '
                                          "the object has been modified; please apply your changes to the "
                                          "latest version and try again")
        new = self._copy(obj)
        nmd = new.metadata  # type: ignore[attr-defined]
        nmd.uid = cmd.uid
        nmd.creation_timestamp.CopyFrom(cmd.creation_timestamp)
        nmd.resource_version = cmd.resource_version
        if new == current or dry_run:
            return self._copy(current if not dry_run else new)
        self._bump(new)
        self.objects[key] = new
        return self._copy(new)

    async def patch(self, kind: type[Message], name: str, namespace: str,
                    patch: bytes | str | dict[str, Any] | builtins.list[Any], *,
                    patch_type: str = "application/merge-patch+json", subresource: str = "",
                    dry_run: bool = False) -> Any:
        from kubelite.machinery import codec
        from kubelite.machinery.patch import apply_patch

        rt = self.scheme.for_message(kind)
        self.calls.append(("patch", rt.resource, namespace, name))
        self.last_patch = (patch, patch_type)
        key = self._key(rt, namespace, name)
        current = self.objects.get(key)
        if current is None:
            raise not_found(rt.group, rt.resource, name)
        data = codec.encode(current)
        rv = data.get("metadata", {}).get("resourceVersion")
        patched = apply_patch(data, patch, patch_type, rt.message)
        wanted_rv = (patched.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != rv:
            raise StatusError("Conflict", f'Operation cannot be fulfilled on {rt.group_resource} "{name}": '
                                          "the object has been modified")
        new = codec.decode_into(patched, rt.message)
        if new == current or dry_run:
            return self._copy(new)
        self._bump(new)
        self.objects[key] = new
        return self._copy(new)

    async def delete(self, kind: type[Message], name: str, namespace: str = "", *, propagation_policy: str = "",
                     uid: str = "", resource_version: str = "", grace_period_seconds: int | None = None,
                     dry_run: bool = False) -> Any:
        rt = self.scheme.for_message(kind)
        self.calls.append(("delete", rt.resource, namespace, name))
        self.last_delete = {"propagation_policy": propagation_policy, "grace_period_seconds": grace_period_seconds}
        key = self._key(rt, namespace, name)
        current = self.objects.get(key)
        if current is None:
            raise not_found(rt.group, rt.resource, name)
        if dry_run:
            return FakeDeleteResult(self._copy(current), False)
        md = current.metadata  # type: ignore[attr-defined]
        if md.finalizers:
            if not md.HasField("deletion_timestamp"):
                md.deletion_timestamp.FromDatetime(datetime.now(UTC))
                self._bump(current)
            return FakeDeleteResult(self._copy(current), False)
        del self.objects[key]
        self._bump(current)
        return FakeDeleteResult(self._copy(current), True)

    def watch(self, kind: type[Message], namespace: str = "", *, label_selector: str = "",
              field_selector: str = "", resource_version: str = "",
              allow_bookmarks: bool = False) -> AsyncIterator[Any]:
        self.watch_requests.append({"kind": kind, "namespace": namespace, "label_selector": label_selector,
                                    "field_selector": field_selector, "resource_version": resource_version})
        return self._events()

    async def _events(self) -> AsyncIterator[Any]:
        events, self.watch_events = self.watch_events, []
        for event in events:
            yield event

    async def server_resources(self) -> builtins.list[Any]:
        return [FakeAPIResource(rt.resource, rt.singular, rt.namespaced, rt.group, rt.version, rt.kind,
                                builtins.list(rt.verbs), builtins.list(rt.short_names)) for rt in self.scheme]

    async def version(self) -> Any:
        return FakeVersionInfo()

    async def close(self) -> None:
        self.closed = True


def fake_factory(client: FakeClient, namespace: str = "default") -> Any:
    """A ClientFactory that always hands out ``client``; records the options it was given."""
    seen: list[ConnectionOptions] = []

    def factory(options: ConnectionOptions) -> Connection:
        seen.append(options)
        api: ApiClient = client
        return Connection(client=api, namespace=namespace, server=options.server)

    factory.seen = seen  # type: ignore[attr-defined]
    return factory


def fake_watch_factory(client: ApiClient, kind: type[Message], namespace: str, label_selector: str,
                       field_selector: str, resource_version: str) -> AsyncIterator[Any]:
    """A plain watch on the fake (no retries needed in memory)."""
    return client.watch(kind, namespace, label_selector=label_selector, field_selector=field_selector,
                        resource_version=resource_version)


def run_cli(client: FakeClient, args: list[str], input: str | None = None, namespace: str = "default",
            editor: Any = None) -> Any:
    """Runs the real command group against ``client`` through click's CliRunner; returns its Result."""
    from click.testing import CliRunner

    from kubelite.cli.app import CliDeps, cli

    deps = CliDeps(client_factory=fake_factory(client, namespace), watch_factory=fake_watch_factory,
                   stdin=(lambda: input or "") if input is not None else None, editor=editor)
    return CliRunner().invoke(cli, args, obj=deps, input=input)
