"""The slice of the API client the command line uses, and where it comes from.

Commands never construct a client themselves: they receive a Session whose
client is built on first use by a replaceable factory. Unit tests pass a fake
factory and drive every verb without a server; commands that fail before
talking to the server (malformed YAML, bad arguments) never connect at all.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from google.protobuf.message import Message

from kubelite.cli.errors import CliError
from kubelite.machinery.errors import StatusError


class ApiClient(Protocol):
    """What kubelite.client.Client offers and the CLI needs; fakes implement the same."""

    async def create(self, obj: Message, *, dry_run: bool = False) -> Any: ...

    async def get(self, kind: type[Message], name: str, namespace: str = "") -> Any: ...

    async def list(self, kind: type[Message], namespace: str = "", *, label_selector: str = "",
                   field_selector: str = "", resource_version: str = "", limit: int = 0,
                   continue_token: str = "") -> Any: ...

    async def update(self, obj: Message, *, dry_run: bool = False) -> Any: ...

    async def patch(self, kind: type[Message], name: str, namespace: str,
                    patch: bytes | str | dict[str, Any] | builtins.list[Any], *,
                    patch_type: str = "application/merge-patch+json", subresource: str = "",
                    dry_run: bool = False) -> Any: ...

    async def delete(self, kind: type[Message], name: str, namespace: str = "", *, propagation_policy: str = "",
                     uid: str = "", resource_version: str = "", grace_period_seconds: int | None = None,
                     dry_run: bool = False) -> Any: ...

    def watch(self, kind: type[Message], namespace: str = "", *, label_selector: str = "",
              field_selector: str = "", resource_version: str = "",
              allow_bookmarks: bool = False) -> AsyncIterator[Any]: ...

    async def server_resources(self) -> builtins.list[Any]: ...

    async def version(self) -> Any: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class ConnectionOptions:
    """The global flags, as the user gave them (empty = not given)."""

    kubeconfig: str = ""
    server: str = ""
    context: str = ""
    namespace: str = ""
    request_timeout: float = 0.0


@dataclass
class Connection:
    """A live client plus what the kubeconfig said about defaults."""

    client: ApiClient
    # The current context's namespace ("" when the kubeconfig names none).
    namespace: str = ""
    server: str = ""


ClientFactory = Callable[[ConnectionOptions], Connection]
# A resumable watch: (client, kind_cls, namespace, label_selector, field_selector, resource_version).
WatchFactory = Callable[[ApiClient, type[Message], str, str, str, str], AsyncIterator[Any]]


def default_client_factory(options: ConnectionOptions) -> Connection:
    """Reads the kubeconfig with kubectl's precedence and opens a gRPC client."""
    from kubelite.client.client import Client
    from kubelite.client.kubeconfig import KubeConfigError, load_kubeconfig

    try:
        cfg = load_kubeconfig(options.kubeconfig or None, options.server or None, options.context or None)
        client: ApiClient = Client.from_kubeconfig(cfg)
    except (KubeConfigError, ValueError) as exc:  # ValueError: a --server that is no address
        raise CliError(str(exc)) from exc
    if options.request_timeout > 0:
        client = TimeoutClient(client, options.request_timeout)
    return Connection(client=client, namespace=cfg.namespace or "", server=cfg.server or "")


def default_watch_factory(client: ApiClient, kind_cls: type[Message], namespace: str, label_selector: str,
                          field_selector: str, resource_version: str) -> AsyncIterator[Any]:
    """kubelite.client.watch.retry_watch: survives API server restarts from the last resourceVersion."""
    from kubelite.client.watch import retry_watch

    it: AsyncIterator[Any] = retry_watch(client, kind_cls, namespace=namespace, label_selector=label_selector,
                                         field_selector=field_selector, resource_version=resource_version,
                                         allow_bookmarks=True)
    return it


class TimeoutClient:
    """Applies --request-timeout to each unary call; watches are long-lived on purpose."""

    def __init__(self, inner: ApiClient, seconds: float) -> None:
        self._inner = inner
        self._seconds = seconds

    async def _bounded(self, coro: Awaitable[Any]) -> Any:
        try:
            return await asyncio.wait_for(coro, self._seconds)
        except TimeoutError:
            raise StatusError("Timeout", f"the request did not complete within {self._seconds:g}s") from None

    async def create(self, obj: Message, *, dry_run: bool = False) -> Any:
        return await self._bounded(self._inner.create(obj, dry_run=dry_run))

    async def get(self, kind: type[Message], name: str, namespace: str = "") -> Any:
        return await self._bounded(self._inner.get(kind, name, namespace))

    async def list(self, kind: type[Message], namespace: str = "", *, label_selector: str = "",
                   field_selector: str = "", resource_version: str = "", limit: int = 0,
                   continue_token: str = "") -> Any:
        return await self._bounded(self._inner.list(
            kind, namespace, label_selector=label_selector, field_selector=field_selector,
            resource_version=resource_version, limit=limit, continue_token=continue_token))

    async def update(self, obj: Message, *, dry_run: bool = False) -> Any:
        return await self._bounded(self._inner.update(obj, dry_run=dry_run))

    async def patch(self, kind: type[Message], name: str, namespace: str,
                    patch: bytes | str | dict[str, Any] | builtins.list[Any], *,
                    patch_type: str = "application/merge-patch+json", subresource: str = "",
                    dry_run: bool = False) -> Any:
        return await self._bounded(self._inner.patch(kind, name, namespace, patch, patch_type=patch_type,
                                                     subresource=subresource, dry_run=dry_run))

    async def delete(self, kind: type[Message], name: str, namespace: str = "", *, propagation_policy: str = "",
                     uid: str = "", resource_version: str = "", grace_period_seconds: int | None = None,
                     dry_run: bool = False) -> Any:
        return await self._bounded(self._inner.delete(
            kind, name, namespace, propagation_policy=propagation_policy, uid=uid,
            resource_version=resource_version, grace_period_seconds=grace_period_seconds, dry_run=dry_run))

    def watch(self, kind: type[Message], namespace: str = "", *, label_selector: str = "",
              field_selector: str = "", resource_version: str = "",
              allow_bookmarks: bool = False) -> AsyncIterator[Any]:
        return self._inner.watch(kind, namespace, label_selector=label_selector, field_selector=field_selector,
                                 resource_version=resource_version, allow_bookmarks=allow_bookmarks)

    async def server_resources(self) -> builtins.list[Any]:
        result: builtins.list[Any] = await self._bounded(self._inner.server_resources())
        return result

    async def version(self) -> Any:
        return await self._bounded(self._inner.version())

    async def close(self) -> None:
        await self._inner.close()


@dataclass
class Streams:
    """Where a command writes; click.echo in the real CLI, lists in tests."""

    out: Callable[[str], None]
    err: Callable[[str], None]


@dataclass
class Session:
    """Everything a command needs besides its own options.

    The client is opened lazily inside the running event loop (grpc.aio
    channels belong to the loop that created them) and only when a command
    actually needs the server.
    """

    options: ConnectionOptions
    streams: Streams
    client_factory: ClientFactory = default_client_factory
    watch_factory: WatchFactory = default_watch_factory
    _connection: Connection | None = field(default=None, init=False, repr=False)

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            self._connection = self.client_factory(self.options)
        return self._connection

    @property
    def client(self) -> ApiClient:
        return self.connection.client

    @property
    def namespace(self) -> str:
        """-n, else the context's namespace, else ``default`` (kubectl's order)."""
        if self.options.namespace:
            return self.options.namespace
        return self.connection.namespace or "default"

    @property
    def namespace_explicit(self) -> bool:
        return bool(self.options.namespace)

    @property
    def server(self) -> str:
        if self._connection is not None and self._connection.server:
            return self._connection.server
        return self.options.server

    def watch(self, kind_cls: type[Message], namespace: str, label_selector: str, field_selector: str,
              resource_version: str) -> AsyncIterator[Any]:
        return self.watch_factory(self.client, kind_cls, namespace, label_selector, field_selector,
                                  resource_version)

    async def close(self) -> None:
        if self._connection is not None:
            conn, self._connection = self._connection, None
            await conn.client.close()


async def close_iterator(it: AsyncIterator[Any]) -> None:
    """Ends a watch promptly (cancels the gRPC stream) when the consumer stops early."""
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        await aclose()
