"""The real API server in this process, over the in-memory storage, for driving the CLI.

The command-line tests need server behaviour (AlreadyExists, conflicts,
finalizers holding a deleted object, selectors, the three patch types, server
dry runs, watches from a resourceVersion). Rather than a second, hand-written
imitation of the server, they talk to the server itself: ``server.start`` with
``FakeStorage`` instead of etcd, bound to 127.0.0.1 on a free port. No etcd and
no subprocess, so each test gets a fresh, empty cluster in a few milliseconds.

Threads, because the CLI owns its event loop: every command runs its body in
``asyncio.run`` (kubelite.cli.runner), which cannot nest inside a running loop.
The server (and FakeStorage, which is asyncio-based) lives in a loop on a
background thread; the test thread runs the CLI through click's CliRunner,
whose fresh loop holds a real ``kubelite.client.Client`` dialling the server
over gRPC, exactly as the binary does. Test setup and inspection go through a
second real Client that lives in the server's loop (``InProcessCluster.run``).

What a test observes of the server is what a user could: objects through the
API, and the server's own request counter (``apiserver_request_total``, as on
/metrics) for "this command sent nothing".
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import yaml
from click.testing import CliRunner, Result
from google.protobuf.message import Message

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.apiserver import metrics
from kubelite.apiserver import server as apiserver
from kubelite.apiserver.config import APIServerConfig
from kubelite.cli.app import CliDeps, cli
from kubelite.cli.clientset import WatchFactory, default_watch_factory
from kubelite.client.client import Client
from kubelite.machinery.errors import StatusError
from kubelite.machinery.kinds import SCHEME
from tests.unit.fakes_storage import FakeStorage

T = TypeVar("T")
M = TypeVar("M", bound=Message)

WRITES = ("create", "update", "patch", "delete")
# A bound on one helper call (setup, inspection) so that a broken server fails a test instead of hanging it.
CALL_TIMEOUT = 30.0

# A watch that sees nothing for this long ends, so that a command waiting for an event that never comes
# fails its test with the output it had instead of hanging it (a bound against hangs, not a measurement).
WATCH_IDLE_LIMIT = 10.0
# What a watch hook does when the CLI opens a watch: gets the CLI's own client, may change objects.
WatchHook = Callable[[Client], Awaitable[None]]


class InProcessCluster:
    """One API server on FakeStorage; ``cli(args)`` runs a kubelite command against it."""

    def __init__(self, tmp_path: Path, namespace: str = "default") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="inprocess-apiserver", daemon=True)
        self._thread.start()
        self.storage = FakeStorage()
        config = APIServerConfig(etcd_servers=("in-memory",), bind_address="127.0.0.1", secure_port=0,
                                 http_bind_address="127.0.0.1", http_port=0)
        self.server = self.run(apiserver.start(config, storage_factory=lambda _cfg: self.storage))
        self.address = f"http://127.0.0.1:{self.server.grpc_port}"
        self.client = Client(self.address, scheme=SCHEME, timeout=CALL_TIMEOUT)
        self.kubeconfig = tmp_path / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.address}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": namespace}}],
            "users": [{"name": "test", "user": {}}],
        }))
        # (verb, resource) of every request the server answered for a CLI command, in no particular order.
        self.calls: list[tuple[str, str]] = []
        # The arguments of every watch the CLI opened: (kind, namespace, label_selector, field_selector, rv).
        self.watches: list[tuple[type[Message], str, str, str, str]] = []

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Runs ``coro`` in the server's loop and returns its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CALL_TIMEOUT)

    def close(self) -> None:
        async def stop() -> None:
            await self.client.close()
            await self.server.stop(grace=0)

        try:
            self.run(stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CALL_TIMEOUT)
            self._loop.close()

    # -- setup and inspection, through the API ---------------------------------------------------------

    def ensure_namespace(self, name: str) -> None:
        if not name or name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            return
        ns = core.Namespace(api_version="v1", kind="Namespace")
        ns.metadata.name = name
        try:
            self.run(self.client.create(ns))
        except StatusError as exc:
            if exc.reason != "AlreadyExists":
                raise

    def add(self, obj: M) -> M:
        """Creates ``obj`` (in ``default`` unless it names a namespace, which is created if missing)."""
        rt = SCHEME.for_message(obj)
        md = obj.metadata  # type: ignore[attr-defined]
        if rt.namespaced:
            md.namespace = md.namespace or "default"
            self.ensure_namespace(md.namespace)
        return self.run(self.client.create(obj))

    def stored(self, kind: type[M], name: str, namespace: str = "default") -> M | None:
        """The object as the server has it now, or None."""
        try:
            return self.run(self.client.get(kind, name, namespace))
        except StatusError as exc:
            if exc.reason == "NotFound":
                return None
            raise

    def names(self, kind: type[Message], namespace: str = "default") -> list[str]:
        listed = self.run(self.client.list(kind, namespace))
        return [str(o.metadata.name) for o in listed.items]  # type: ignore[attr-defined]

    def writes(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] in WRITES]

    # -- the command line ------------------------------------------------------------------------------

    def cli(self, args: list[str], input: str | None = None, editor: Any = None,
            on_watch: WatchHook | None = None, watch_events: int | None = None) -> Result:
        """Runs the real command group, reading this cluster's kubeconfig; returns click's Result.

        A watch the command opens runs ``on_watch`` first (with the CLI's own
        client, so the changes it makes come after the command's list); with
        ``watch_events`` it ends after that many events other than bookmarks,
        as if the user pressed Ctrl-C once they had seen them, else it runs
        until the command stops reading.
        """
        deps = CliDeps(watch_factory=self._watch_factory(on_watch, watch_events),
                       stdin=(lambda: input or "") if input is not None else None, editor=editor)
        before = _request_counts()
        try:
            return CliRunner().invoke(cli, args, obj=deps, input=input, env={"KUBECONFIG": str(self.kubeconfig)})
        finally:
            after = _request_counts()
            for key, n in (after - before).items():
                self.calls.extend([key] * n)

    def _watch_factory(self, on_watch: WatchHook | None, limit: int | None) -> WatchFactory:
        def factory(client: Client, kind: type[Message], namespace: str, label_selector: str,
                    field_selector: str, resource_version: str) -> AsyncIterator[Any]:
            self.watches.append((kind, namespace, label_selector, field_selector, resource_version))

            async def events() -> AsyncIterator[Any]:
                if on_watch is not None:
                    await on_watch(client)
                if limit == 0:
                    return
                stream = default_watch_factory(client, kind, namespace, label_selector, field_selector,
                                               resource_version)
                seen = 0
                try:
                    while True:
                        try:
                            async with asyncio.timeout(WATCH_IDLE_LIMIT):
                                event = await anext(stream)
                        except (TimeoutError, StopAsyncIteration):
                            return
                        yield event
                        if event.type != "BOOKMARK":
                            seen += 1
                            if limit is not None and seen >= limit:
                                return
                finally:
                    aclose = getattr(stream, "aclose", None)
                    if aclose is not None:
                        await aclose()

            return events()

        return factory


def _request_counts() -> Counter[tuple[str, str]]:
    """apiserver_request_total summed by (verb, resource); process-wide, hence the before/after difference."""
    counts: Counter[tuple[str, str]] = Counter()
    for family in metrics.REQUESTS.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                counts[(sample.labels["verb"], sample.labels["resource"])] += int(sample.value)
    return counts
