"""The CLI's connection to the API server, and where it comes from.

Commands use ``kubelite.client.client.Client`` itself, the client every
component uses; there is no CLI-side copy of its method list. A Session opens
it on first use, so commands that fail before talking to the server (malformed
YAML, bad arguments) never connect at all. ``--request-timeout`` is the
client's per-call deadline; watches have none (they are long-lived on purpose,
as in kubectl), and a command that waits bounds its own wait (``delete
--timeout``).

Watches go through a replaceable WatchFactory: the real one resumes across API
server restarts (retry_watch); tests use it to end an otherwise endless
``get --watch`` once they have seen the events they expect.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from google.protobuf.message import Message

from kubelite.cli.errors import CliError
from kubelite.client.client import Client


@dataclass(frozen=True)
class ConnectionOptions:
    """The global flags, as the user gave them (empty = not given)."""

    kubeconfig: str = ""
    server: str = ""
    context: str = ""
    namespace: str = ""
    # --token: a bearer token that replaces the kubeconfig user's.
    token: str = ""
    # Seconds; 0 = the client's default deadline.
    request_timeout: float = 0.0


@dataclass
class Connection:
    """A live client plus what the kubeconfig said about defaults."""

    client: Client
    # The current context's namespace ("" when the kubeconfig names none).
    namespace: str = ""
    server: str = ""


# A resumable watch: (client, kind_cls, namespace, label_selector, field_selector, resource_version).
WatchFactory = Callable[[Client, type[Message], str, str, str, str], AsyncIterator[Any]]


def connect(options: ConnectionOptions, field_manager: str = "") -> Connection:
    """Reads the kubeconfig with kubectl's precedence and makes a client (the channel opens on first call).

    ``field_manager`` owns the command's writes (kubectl's per-verb names: kubelite-create, kubelite-edit...).
    """
    from kubelite.client.kubeconfig import KubeConfigError, load_kubeconfig

    try:
        cfg = load_kubeconfig(options.kubeconfig or None, options.server or None, options.context or None)
        if options.token:
            cfg = replace(cfg, token=options.token)
        if options.request_timeout > 0:
            client = Client.from_kubeconfig(cfg, timeout=options.request_timeout, field_manager=field_manager)
        else:
            client = Client.from_kubeconfig(cfg, field_manager=field_manager)
    except (KubeConfigError, ValueError) as exc:  # ValueError: a --server that is no address
        raise CliError(str(exc)) from exc
    return Connection(client=client, namespace=cfg.namespace or "", server=cfg.server or "")


def default_watch_factory(client: Client, kind_cls: type[Message], namespace: str, label_selector: str,
                          field_selector: str, resource_version: str) -> AsyncIterator[Any]:
    """kubelite.client.watch.retry_watch: survives API server restarts from the last resourceVersion."""
    from kubelite.client.watch import retry_watch

    it: AsyncIterator[Any] = retry_watch(client, kind_cls, namespace=namespace, label_selector=label_selector,
                                         field_selector=field_selector, resource_version=resource_version,
                                         allow_bookmarks=True)
    return it


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
    watch_factory: WatchFactory = default_watch_factory
    # Who owns what this command writes (metadata.managedFields); "" = the user agent's "kubelite".
    field_manager: str = ""
    _connection: Connection | None = field(default=None, init=False, repr=False)

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            self._connection = connect(self.options, self.field_manager)
        return self._connection

    @property
    def client(self) -> Client:
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
