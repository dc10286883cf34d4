"""A watch that survives API server restarts: RetryWatcher.

A plain watch stream dies with its connection: every API server restart or
rolling upgrade would otherwise make every component relist everything. A
RetryWatcher remembers the resourceVersion of the last event it saw (bookmarks
included, which keep that version fresh on quiet resources) and, on a transport
failure, opens a new stream from exactly there. The server's watch contract (no
gap, no duplicate after a resourceVersion) then gives the consumer every event
exactly once across reconnects.

Why the starting resourceVersion must be concrete: a watch from "" or "0" starts
with synthetic ADDED events for the current state. If the first stream failed
before any event arrived there would be no version to resume from, and opening
again from "" would replay the whole state as ADDED a second time, so no
exactly-once guarantee could hold. Callers list first and watch from the list's
resourceVersion (that is what an Informer does).

When the remembered version has been compacted away the server answers Expired;
that is raised to the caller, who must relist: no retry can recover the lost
events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Generic, Protocol

from google.protobuf.message import Message

from kubelite.client.client import M, WatchEvent
from kubelite.machinery.errors import StatusError

log = logging.getLogger(__name__)

# Failures of the transport or of an overloaded server, not of the request:
# the same request from the same version will succeed once the server is back.
# INTERNAL covers a reset HTTP/2 stream (RST_STREAM) mid-watch.
RETRYABLE_REASONS = frozenset({"ServiceUnavailable", "Timeout", "InternalError", "TooManyRequests"})

INITIAL_BACKOFF = 0.1
MAX_BACKOFF = 2.0


class WatchSource(Protocol):
    """What RetryWatcher needs of a client: ``Client.watch`` (or a wrapper or fake of it)."""

    def watch(
        self,
        kind: type[Message],
        namespace: str = "",
        /,
        *,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
        allow_bookmarks: bool = False,
    ) -> AsyncIterator[Any]: ...


class RetryWatcher(Generic[M]):
    """An async iterator of watch events that reconnects until cancelled or closed.

    Bookmarks are requested from the server (``allow_bookmarks``) to keep the
    resume point fresh, but yielded only when ``yield_bookmarks`` is set.
    Non-retryable errors (Expired, Forbidden, NotFound, BadRequest, ...) are
    raised. ``resource_version`` always holds the version a reconnect would
    resume from.
    """

    def __init__(
        self,
        client: WatchSource,
        kind: type[M],
        namespace: str = "",
        *,
        resource_version: str,
        label_selector: str = "",
        field_selector: str = "",
        allow_bookmarks: bool = True,
        yield_bookmarks: bool = False,
        initial_backoff: float = INITIAL_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if resource_version in ("", "0"):
            raise ValueError(
                "RetryWatcher needs a concrete resourceVersion to start from (list first): "
                f"{resource_version!r} would replay the current state on every reconnect"
            )
        self._client = client
        self._kind = kind
        self._namespace = namespace
        self._label_selector = label_selector
        self._field_selector = field_selector
        self._allow_bookmarks = allow_bookmarks
        self._yield_bookmarks = yield_bookmarks
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._sleep = sleep
        self._resource_version = resource_version
        self.reconnects = 0
        self._events = self._run()

    @property
    def resource_version(self) -> str:
        return self._resource_version

    def __aiter__(self) -> RetryWatcher[M]:
        return self

    async def __anext__(self) -> WatchEvent[M]:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        """Closes the current stream; safe to call more than once."""
        await self._events.aclose()

    async def _run(self) -> AsyncGenerator[WatchEvent[M], None]:
        backoff = self._initial_backoff
        failures = 0
        while True:
            received = False
            stream = self._client.watch(
                self._kind,
                self._namespace,
                label_selector=self._label_selector,
                field_selector=self._field_selector,
                resource_version=self._resource_version,
                allow_bookmarks=self._allow_bookmarks,
            )
            try:
                async for event in stream:
                    received = True
                    backoff = self._initial_backoff
                    failures = 0
                    # The server sends a whole revision in one message and the
                    # client yields it before reading on, so a stream can only
                    # break between revisions: remembering the version before
                    # yielding never skips the rest of a revision.
                    if event.resource_version:
                        self._resource_version = event.resource_version
                    if event.type == "BOOKMARK" and not self._yield_bookmarks:
                        continue
                    yield event
            except StatusError as exc:
                if exc.reason not in RETRYABLE_REASONS:
                    raise
                failures += 1
                # One warning per outage, then quiet: a restart takes seconds,
                # and a line every two seconds helps nobody.
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "watch of %s from resourceVersion %s failed (%s: %s); reconnecting",
                        self._kind.DESCRIPTOR.name, self._resource_version, exc.reason, exc.message)
            else:
                if received:
                    # The server ended a healthy stream (a watch timeout, a
                    # graceful shutdown): carry on at once.
                    self.reconnects += 1
                    continue
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
            self.reconnects += 1
            await self._sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)


def retry_watch(
    client: WatchSource,
    kind: type[M],
    namespace: str = "",
    *,
    resource_version: str,
    label_selector: str = "",
    field_selector: str = "",
    allow_bookmarks: bool = True,
    yield_bookmarks: bool = False,
) -> RetryWatcher[M]:
    """A watch from ``resource_version`` that resumes across transport failures; see RetryWatcher."""
    return RetryWatcher(
        client,
        kind,
        namespace,
        resource_version=resource_version,
        label_selector=label_selector,
        field_selector=field_selector,
        allow_bookmarks=allow_bookmarks,
        yield_bookmarks=yield_bookmarks,
    )
