"""The async client every component uses to talk to the API server.

The API server speaks one generic gRPC service over every kind, with objects
packed in ``google.protobuf.Any``. This module hides that: callers pass and
receive typed messages (``Pod``, ``ConfigMap``, ...), the scheme says which
resource a message type belongs to, and every gRPC failure is translated here,
at the boundary, into a Kubernetes-style ``StatusError`` so that no caller ever
sees ``grpc.aio.AioRpcError``.
"""

from __future__ import annotations

import builtins
import json
import os
import platform
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import grpc
from google.protobuf import any_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from kubelite.api.service.v1 import service_pb2 as svc
from kubelite.api.service.v1 import service_pb2_grpc as svc_grpc
from kubelite.api.service.v1 import streaming_pb2 as st
from kubelite.api.service.v1 import streaming_pb2_grpc as st_grpc
from kubelite.client import streams
from kubelite.machinery.errors import STATUS_METADATA_KEY, StatusError
from kubelite.machinery.patch import APPLY_PATCH, MERGE_PATCH, PATCH_TYPES
from kubelite.machinery.scheme import ResourceType, Scheme, UnknownKindError

if TYPE_CHECKING:
    from kubelite.client.kubeconfig import KubeConfig

M = TypeVar("M", bound=Message)
R = TypeVar("R")

DEFAULT_PORT = 6443

# A list of 10,000 pods is a few tens of MiB; leave ample headroom so that large
# clusters fail on memory long before they fail on a message-size limit.
MAX_RECEIVE_MESSAGE_BYTES = 256 * 1024 * 1024
MAX_SEND_MESSAGE_BYTES = 64 * 1024 * 1024

# Long watches are idle for minutes; keepalive pings detect a half-open TCP
# connection (server host gone, NAT state dropped) within ~a minute instead of
# the kernel's hours. The API server must accept pings this often (see
# SERVER_KEEPALIVE_OPTIONS), or it answers with GOAWAY "too_many_pings".
KEEPALIVE_TIME_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 10_000

CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_SEND_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # Reconnect quickly after an API server restart; RetryWatcher and informers
    # add their own backoff on top.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)

# What a gRPC server needs so that clients using CHANNEL_OPTIONS are not cut off
# for pinging "too often" on idle watch streams. Exported for the API server.
SERVER_KEEPALIVE_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", MAX_SEND_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_RECEIVE_MESSAGE_BYTES),
    # On a server this string is gRPC core's *receive* ping policy.
    ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_TIME_MS // 2),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_ping_strikes", 0),
)


VERSION = "v0.1.0"


def default_user_agent() -> str:
    """``<binary>/<version> (<os>/<arch>)``, as client-go builds it from the running command's name.

    The API server takes the word before the first "/" as the field manager
    of a write that names none, so each component owns what it writes under
    its binary's name (kubelite-kubelet, kubelite-controller-manager, ...).
    A Python script or ``python -m`` has no such name: it is "kubelite".
    """
    command = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    command = command.removesuffix(".py")
    if command in ("", "-c", "-m", "__main__", "main"):
        command = "kubelite"
    return f"{command}/{VERSION} ({sys.platform}/{platform.machine().lower() or 'unknown'})"


@dataclass(frozen=True)
class ObjectList(Generic[M]):
    """One page of a list; ``resource_version`` is where a watch continues from."""

    items: list[M]
    resource_version: str
    continue_token: str = ""


@dataclass(frozen=True)
class WatchEvent(Generic[M]):
    """ADDED, MODIFIED, DELETED or BOOKMARK, with the object as of that event.

    A BOOKMARK carries an empty object whose only meaningful field is
    ``metadata.resource_version``.
    """

    type: str
    object: M

    @property
    def resource_version(self) -> str:
        return str(self.object.metadata.resource_version)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class DeleteResult(Generic[M]):
    """The deleted object; ``deleted`` is False when finalizers or a grace period keep it."""

    object: M
    deleted: bool


def parse_target(target: str) -> tuple[str, bool]:
    """Turns a kubeconfig ``server`` into a gRPC target and whether to use TLS.

    ``http://`` (and ``grpc://`` or no scheme) means plaintext gRPC, ``https://``
    means TLS; a path is ignored and a missing port is the API server's 6443.
    """
    text = target.strip()
    secure = False
    for prefix, is_secure in (("https://", True), ("http://", False), ("grpcs://", True), ("grpc://", False)):
        if text.lower().startswith(prefix):
            text = text[len(prefix):]
            secure = is_secure
            break
    host = text.split("/", 1)[0]
    if not host:
        raise ValueError(f"invalid server address {target!r}")
    if host.startswith("["):  # [::1] or [::1]:6443
        return (host if "]:" in host else f"{host}:{DEFAULT_PORT}"), secure
    if host.count(":") > 1:  # a bare IPv6 address has no room for a port
        return f"[{host}]:{DEFAULT_PORT}", secure
    if ":" not in host:
        host = f"{host}:{DEFAULT_PORT}"
    return host, secure


def _default_scheme() -> Scheme:
    # Imported lazily: the kinds module pulls in every API group, and tests (or
    # tools) with their own scheme should not pay for or depend on it.
    from kubelite.machinery.kinds import SCHEME

    scheme: Scheme = SCHEME
    return scheme


class Client:
    """An async API client over one gRPC channel.

    One Client is meant to be shared by a whole component: the channel
    multiplexes every call and watch over a single HTTP/2 connection. Use it as
    an async context manager, or call ``close()``.
    """

    def __init__(
        self,
        target: str,
        *,
        scheme: Scheme | None = None,
        timeout: float = 30.0,
        options: Sequence[tuple[str, Any]] = (),
        token: str = "",
        user_agent: str = "",
        field_manager: str = "",
    ) -> None:
        self._server = target
        # The owner of this client's writes (metadata.managedFields) unless a call names one;
        # "" lets the server take the user agent's first word.
        self.field_manager = field_manager
        # Sent as `authorization: Bearer` on every call; the API server's
        # authenticator decides what it means (bootstrap and ServiceAccount tokens later).
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self._target, secure = parse_target(target)
        self._scheme = scheme
        self._timeout = timeout
        self._secure = secure
        merged = dict(CHANNEL_OPTIONS)
        merged["grpc.primary_user_agent"] = user_agent or default_user_agent()
        merged.update(dict(options))
        self._options = list(merged.items())
        # Opened on first use: a grpc.aio channel binds to the running event
        # loop, and a CLI builds its client before asyncio.run() starts one.
        self._channel: grpc.aio.Channel | None = None
        self._resource_stub: svc_grpc.ResourceServiceAsyncStub | None = None
        self._discovery_stub: svc_grpc.DiscoveryServiceAsyncStub | None = None
        self._stream_stub: st_grpc.PodStreamServiceAsyncStub | None = None

    def _open(self) -> grpc.aio.Channel:
        if self._channel is None:
            if self._secure:
                creds = grpc.ssl_channel_credentials()
                self._channel = grpc.aio.secure_channel(self._target, creds, options=self._options)
            else:
                self._channel = grpc.aio.insecure_channel(self._target, options=self._options)
            self._resource_stub = svc_grpc.ResourceServiceStub(self._channel)
            self._discovery_stub = svc_grpc.DiscoveryServiceStub(self._channel)
            self._stream_stub = st_grpc.PodStreamServiceStub(self._channel)
        return self._channel

    @property
    def _resources(self) -> svc_grpc.ResourceServiceAsyncStub:
        self._open()
        assert self._resource_stub is not None
        return self._resource_stub

    @property
    def _streams(self) -> st_grpc.PodStreamServiceAsyncStub:
        self._open()
        assert self._stream_stub is not None
        return self._stream_stub

    @property
    def _discovery(self) -> svc_grpc.DiscoveryServiceAsyncStub:
        self._open()
        assert self._discovery_stub is not None
        return self._discovery_stub

    @classmethod
    def from_kubeconfig(
        cls,
        config: KubeConfig,
        *,
        scheme: Scheme | None = None,
        timeout: float = 30.0,
        options: Sequence[tuple[str, Any]] = (),
        user_agent: str = "",
        field_manager: str = "",
    ) -> Client:
        return cls(config.server, scheme=scheme, timeout=timeout, options=options, token=config.token,
                   user_agent=user_agent, field_manager=field_manager)

    @property
    def scheme(self) -> Scheme:
        if self._scheme is None:
            self._scheme = _default_scheme()
        return self._scheme

    @property
    def target(self) -> str:
        """``host:port`` as dialled."""
        return self._target

    async def close(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- objects ---------------------------------------------------------------

    async def create(self, obj: M, *, dry_run: bool = False, field_manager: str = "") -> M:
        rt = self.scheme.for_message(obj)
        req = svc.CreateRequest(ref=self._ref(rt, _namespace_of(obj)), object=_pack(obj), dry_run=dry_run,
                                field_manager=field_manager or self.field_manager)
        resp = await self._call(self._resources.Create, req)
        return self._unpack_as(resp.object, type(obj))

    async def get(self, kind: type[M], name: str, namespace: str = "", *, resource_version: str = "") -> M:
        """One object; ``resource_version="0"`` lets the server answer from its watch cache."""
        rt = self.scheme.for_message(kind)
        req = svc.GetRequest(ref=self._ref(rt, namespace, name), resource_version=resource_version)
        resp = await self._call(self._resources.Get, req)
        return self._unpack_as(resp.object, kind)

    async def list(
        self,
        kind: type[M],
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
        limit: int = 0,
        continue_token: str = "",
    ) -> ObjectList[M]:
        """Lists one page (all of it unless ``limit``); empty namespace = all namespaces."""
        rt = self.scheme.for_message(kind)
        req = svc.ListRequest(
            ref=self._ref(rt, namespace),
            label_selector=label_selector,
            field_selector=field_selector,
            resource_version=resource_version,
            limit=limit,
            continue_token=continue_token,
        )
        resp = await self._call(self._resources.List, req)
        return ObjectList(
            items=[self._unpack_as(item, kind) for item in resp.items],
            resource_version=resp.metadata.resource_version,
            continue_token=resp.metadata.continue_token,
        )

    async def update(self, obj: M, *, dry_run: bool = False, field_manager: str = "") -> M:
        """Replaces spec and metadata; a set metadata.resourceVersion is a precondition."""
        rt = self.scheme.for_message(obj)
        req = svc.UpdateRequest(ref=self._ref(rt, _namespace_of(obj), _name_of(obj)), object=_pack(obj),
                                dry_run=dry_run, field_manager=field_manager or self.field_manager)
        resp = await self._call(self._resources.Update, req)
        return self._unpack_as(resp.object, type(obj))

    async def update_status(self, obj: M, *, field_manager: str = "") -> M:
        """Replaces the status subresource only."""
        rt = self.scheme.for_message(obj)
        req = svc.UpdateRequest(ref=self._ref(rt, _namespace_of(obj), _name_of(obj)), object=_pack(obj),
                                field_manager=field_manager or self.field_manager)
        resp = await self._call(self._resources.UpdateStatus, req)
        return self._unpack_as(resp.object, type(obj))

    async def patch(
        self,
        kind: type[M],
        name: str,
        namespace: str,
        patch: bytes | str | dict[str, Any] | builtins.list[Any],
        *,
        patch_type: str = MERGE_PATCH,
        subresource: str = "",
        dry_run: bool = False,
        field_manager: str = "",
    ) -> M:
        """Patches one object; ``patch_type`` also accepts "merge", "strategic" and "json"."""
        rt = self.scheme.for_message(kind)
        if isinstance(patch, (dict, builtins.list)):
            body = json.dumps(patch).encode()
        elif isinstance(patch, str):
            body = patch.encode()
        else:
            body = patch
        req = svc.PatchRequest(
            ref=self._ref(rt, namespace, name),
            patch_type=PATCH_TYPES.get(patch_type, patch_type),
            patch=body,
            subresource=subresource,
            dry_run=dry_run,
            field_manager=field_manager or self.field_manager,
        )
        resp = await self._call(self._resources.Patch, req)
        return self._unpack_as(resp.object, kind)

    async def apply(self, intent: dict[str, Any], *, field_manager: str, force: bool = False,
                    dry_run: bool = False) -> Message:
        """Server-side apply of one object's intent (its Kubernetes JSON form) by ``field_manager``.

        The server creates the object when it is absent, merges the intent
        into it otherwise, and answers 409 naming the fields another manager
        owns unless ``force``.
        """
        rt = self.scheme.for_kind(str(intent.get("apiVersion", "")), str(intent.get("kind", "")))
        meta = intent.get("metadata") or {}
        namespace = str(meta.get("namespace") or "") if rt.namespaced else ""
        req = svc.PatchRequest(ref=self._ref(rt, namespace, str(meta.get("name") or "")), patch_type=APPLY_PATCH,
                               patch=json.dumps(intent).encode(), field_manager=field_manager, force=force,
                               dry_run=dry_run)
        resp = await self._call(self._resources.Patch, req)
        return self._unpack_as(resp.object, rt.message)

    async def delete(
        self,
        kind: type[M],
        name: str,
        namespace: str = "",
        *,
        propagation_policy: str = "",
        uid: str = "",
        resource_version: str = "",
        grace_period_seconds: int | None = None,
        dry_run: bool = False,
    ) -> DeleteResult[M]:
        rt = self.scheme.for_message(kind)
        req = svc.DeleteRequest(ref=self._ref(rt, namespace, name), propagation_policy=propagation_policy,
                                dry_run=dry_run)
        if uid or resource_version:
            req.preconditions.uid = uid
            req.preconditions.resource_version = resource_version
        if grace_period_seconds is not None:
            req.grace_period_seconds = grace_period_seconds
        resp = await self._call(self._resources.Delete, req)
        return DeleteResult(object=self._unpack_as(resp.object, kind), deleted=resp.deleted)

    async def delete_collection(
        self,
        kind: type[M],
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
        propagation_policy: str = "",
        grace_period_seconds: int | None = None,
        dry_run: bool = False,
    ) -> builtins.list[M]:
        """Deletes every matching object; returns them as deleted or marked for deletion."""
        rt = self.scheme.for_message(kind)
        req = svc.DeleteCollectionRequest(ref=self._ref(rt, namespace), label_selector=label_selector,
                                          field_selector=field_selector, propagation_policy=propagation_policy,
                                          dry_run=dry_run)
        if grace_period_seconds is not None:
            req.grace_period_seconds = grace_period_seconds
        resp = await self._call(self._resources.DeleteCollection, req)
        return [self._unpack_as(item, kind) for item in resp.items]

    # -- subresources ------------------------------------------------------------

    async def get_subresource(self, kind: type[Message], name: str, namespace: str, subresource: str,
                              result: type[M]) -> M:
        """Reads ``<kind>/<subresource>`` (a Deployment's ``scale`` as an autoscaling/v1 Scale, ...)."""
        ref = self._ref(self.scheme.for_message(kind), namespace, name)
        ref.subresource = subresource
        resp = await self._call(self._resources.Get, svc.GetRequest(ref=ref))
        return self._unpack_as(resp.object, result)

    async def create_subresource(self, kind: type[Message], name: str, namespace: str, subresource: str,
                                 body: Message, *, dry_run: bool = False) -> Message:
        """Posts a body to ``<kind>/<subresource>`` (pods/eviction, pods/binding)."""
        ref = self._ref(self.scheme.for_message(kind), namespace, name)
        ref.subresource = subresource
        resp = await self._call(self._resources.Create, svc.CreateRequest(
            ref=ref, object=_pack(body), dry_run=dry_run, field_manager=self.field_manager))
        return self.unpack(resp.object)

    async def update_subresource(self, kind: type[Message], name: str, namespace: str, subresource: str,
                                 body: M, *, dry_run: bool = False) -> M:
        """Replaces ``<kind>/<subresource>`` (scale, status, namespaces/finalize)."""
        ref = self._ref(self.scheme.for_message(kind), namespace, name)
        ref.subresource = subresource
        resp = await self._call(self._resources.Update, svc.UpdateRequest(
            ref=ref, object=_pack(body), dry_run=dry_run, field_manager=self.field_manager))
        return self._unpack_as(resp.object, type(body))

    async def patch_subresource(self, kind: type[Message], name: str, namespace: str, subresource: str,
                                patch: dict[str, Any] | builtins.list[Any] | bytes, result: type[M], *,
                                patch_type: str = MERGE_PATCH) -> M:
        """Patches ``<kind>/<subresource>`` in the subresource's own form (a Scale's spec.replicas)."""
        body = patch if isinstance(patch, bytes) else json.dumps(patch).encode()
        ref = self._ref(self.scheme.for_message(kind), namespace, name)
        req = svc.PatchRequest(ref=ref, patch_type=PATCH_TYPES.get(patch_type, patch_type), patch=body,
                               subresource=subresource, field_manager=self.field_manager)
        resp = await self._call(self._resources.Patch, req)
        return self._unpack_as(resp.object, result)

    async def watch(
        self,
        kind: type[M],
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
        allow_bookmarks: bool = False,
    ) -> AsyncGenerator[WatchEvent[M], None]:
        """One watch stream, flattened to single events in server order.

        Every server message holds the events of one etcd revision; all of
        them are yielded, in order, before the next message is read, so a
        broken stream always breaks between revisions and resuming from the
        last resourceVersion seen loses nothing (see RetryWatcher). The stream
        has no deadline: it ends when the server closes it, and failures raise
        StatusError. Close the generator (``contextlib.aclosing``) to cancel
        the stream promptly rather than at garbage collection.
        """
        rt = self.scheme.for_message(kind)
        req = svc.WatchRequest(
            ref=self._ref(rt, namespace),
            label_selector=label_selector,
            field_selector=field_selector,
            resource_version=resource_version,
            allow_watch_bookmarks=allow_bookmarks,
        )
        call = self._resources.Watch(req, metadata=self._metadata)
        try:
            while True:
                try:
                    resp = await call.read()
                except grpc.aio.AioRpcError as exc:
                    raise self._translate(exc) from exc
                if resp is grpc.aio.EOF:
                    return
                assert isinstance(resp, svc.WatchResponse)
                for event in resp.events:
                    yield WatchEvent(type=event.type, object=self._unpack_as(event.object, kind))
        finally:
            call.cancel()

    async def bind(self, namespace: str, name: str, node_name: str, *, uid: str = "") -> Message:
        """Assigns a pod to a node; returns the bound pod as the server sent it."""
        req = svc.BindRequest(namespace=namespace, name=name, node_name=node_name, uid=uid)
        resp = await self._call(self._resources.Bind, req)
        return self.unpack(resp.object)

    async def bind_many(self, bindings: Sequence[tuple[str, str, str, str]]) -> builtins.list[StatusError | None]:
        """Many bindings, (namespace, pod name, node name, pod uid or ""), in one call: for each, None when
        it was bound, else the StatusError ``bind`` would have raised."""
        req = svc.BindManyRequest(bindings=[svc.BindRequest(namespace=ns, name=name, node_name=node, uid=uid)
                                            for ns, name, node, uid in bindings])
        resp = await self._call(self._resources.BindMany, req)
        if len(resp.results) != len(bindings):
            raise StatusError("InternalError", f"BindMany answered {len(resp.results)} of {len(bindings)} bindings")
        return [None if r.status == "Success" else StatusError.from_status(r) for r in resp.results]

    # -- pod streams (log, exec, attach, portforward) ----------------------------

    async def logs(self, namespace: str, name: str, *, container: str = "", follow: bool = False,
                   previous: bool = False, timestamps: bool = False, tail_lines: int | None = None,
                   since_seconds: int | None = None, limit_bytes: int | None = None,
                   ) -> AsyncGenerator[bytes, None]:
        """A container's log as it arrives; with ``follow`` until the container stops or the caller stops."""
        req = st.PodLogRequest(namespace=namespace, name=name, container=container, follow=follow,
                               previous=previous, timestamps=timestamps)
        if tail_lines is not None:
            req.tail_lines = tail_lines
        if since_seconds is not None:
            req.since_seconds = since_seconds
        if limit_bytes is not None:
            req.limit_bytes = limit_bytes
        call = self._streams.Log(req, metadata=self._metadata)
        try:
            async for chunk in call:
                yield chunk.data
        except grpc.aio.AioRpcError as exc:
            raise self._translate(exc) from exc
        finally:
            call.cancel()

    async def exec(self, namespace: str, name: str, command: Sequence[str], *, container: str = "",
                   stdin: bool = False, tty: bool = False, width: int = 0, height: int = 0,
                   attach: bool = False) -> streams.ExecSession:
        """Starts a command in a container (or, with ``attach``, joins its main process)."""
        method = self._streams.Attach if attach else self._streams.Exec
        call = method(metadata=self._metadata)
        session = streams.ExecSession(call, self._translate)
        try:
            await call.write(streams.exec_start(namespace, name, command, container=container, stdin=stdin,
                                                tty=tty, width=width, height=height))
        except grpc.aio.AioRpcError as exc:
            raise self._translate(exc) from exc
        return session

    async def forward_connection(self, namespace: str, name: str, port: int, reader: Any, writer: Any) -> None:
        """Copies one local TCP connection (asyncio streams) to ``port`` of the pod and back."""
        call = self._streams.PortForward(metadata=self._metadata)
        start = st.PortForwardStart(namespace=namespace, name=name, port=port)
        await streams.forward_connection(call, start, reader, writer, self._translate)

    # -- discovery -------------------------------------------------------------

    async def server_resources(self) -> builtins.list[svc.APIResource]:
        resp = await self._call(self._discovery.ServerResources, svc.ServerResourcesRequest())
        return builtins.list(resp.resources)

    async def version(self) -> svc.VersionInfo:
        return await self._call(self._discovery.Version, svc.VersionRequest())

    # -- helpers ---------------------------------------------------------------

    def unpack(self, packed: any_pb2.Any) -> Message:
        """Unpacks an Any into the class the scheme registers for its type URL.

        Types outside the scheme (Status, say) fall back to the protobuf
        default pool, so a server answering with a kind this client does not
        register still yields a usable message rather than an error.
        """
        full_name = packed.type_url.rpartition("/")[2]
        try:
            cls: type[Message] = self.scheme.for_message_name(full_name).message
        except UnknownKindError:
            try:
                descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
            except KeyError:
                message = f"the server sent an object of unknown type {full_name!r}"
                raise StatusError("InternalError", message) from None
            cls = message_factory.GetMessageClass(descriptor)
        obj = cls()
        if not packed.Unpack(obj):
            raise StatusError("InternalError", f"cannot unpack {packed.type_url!r}")
        return obj

    def _unpack_as(self, packed: any_pb2.Any, kind: type[M]) -> M:
        obj = kind()
        if not packed.Unpack(obj):
            raise StatusError(
                "InternalError",
                f"expected a {kind.DESCRIPTOR.full_name} from the server, got {packed.type_url!r}",
            )
        return obj

    def _ref(self, rt: ResourceType, namespace: str = "", name: str = "") -> svc.ResourceRef:
        # Cluster-scoped kinds ignore a namespace, as kubectl does for `-n x get nodes`.
        return svc.ResourceRef(group=rt.group, version=rt.version, resource=rt.resource,
                               namespace=namespace if rt.namespaced else "", name=name)

    async def _call(self, method: Callable[..., Awaitable[R]], request: Any) -> R:
        """One unary call, its failure translated to a StatusError where it enters."""
        try:
            return await method(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: grpc.aio.AioRpcError) -> StatusError:
        return translate_grpc_error(exc, self._target)


def translate_grpc_error(exc: grpc.RpcError, target: str) -> StatusError:
    """The StatusError for a failed call; transport failures get kubectl's wording."""
    trailing: Any = getattr(exc, "trailing_metadata", lambda: None)()
    has_status = any(key == STATUS_METADATA_KEY for key, _ in (trailing or ()))
    code = exc.code() if hasattr(exc, "code") else None
    if not has_status and code == grpc.StatusCode.UNAVAILABLE:
        details = (exc.details() if hasattr(exc, "details") else "") or ""
        lowered = details.lower()
        if "connection refused" in lowered or "failed to connect" in lowered:
            message = (f"The connection to the server {target} was refused - "
                       "did you specify the right host or port?")
        else:
            message = f"Unable to connect to the server {target}: {details or 'unavailable'}"
        return StatusError("ServiceUnavailable", message)
    if not has_status and code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return StatusError("Timeout", f"the server {target} did not answer in time")
    if not has_status and code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        # gRPC's own size check, before any handler ran: "Received message larger than max (N vs. LIMIT)".
        details = (exc.details() if hasattr(exc, "details") else "") or ""
        limit = details.rsplit(" ", 1)[-1].rstrip(")") if "larger than max" in details else ""
        suffix = f": limit is {limit}" if limit else ""
        return StatusError("RequestEntityTooLarge", f"Request entity too large{suffix}")
    return StatusError.from_grpc_error(exc)


def _pack(obj: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(obj)
    return packed


def _namespace_of(obj: Message) -> str:
    return str(obj.metadata.namespace)  # type: ignore[attr-defined]


def _name_of(obj: Message) -> str:
    return str(obj.metadata.name)  # type: ignore[attr-defined]
