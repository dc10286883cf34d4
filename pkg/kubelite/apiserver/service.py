"""gRPC handlers: translate requests into store calls and errors into statuses.

The handlers are thin: resolve the resource, run the pipeline's security
stages, call the store, pack the answer. Every failure leaves as a gRPC code
plus a serialized Status in the trailing metadata, so that clients rebuild the
same StatusError the server raised.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message

from kubelite.api.meta.v1 import generated_pb2 as metav1
from kubelite.api.service.v1 import service_pb2 as pb
from kubelite.api.service.v1 import service_pb2_grpc as pb_grpc
from kubelite.apiserver import metrics
from kubelite.apiserver.pipeline import (
    MANAGED_VERBS,
    Admission,
    Attributes,
    Pipeline,
    RequestInfo,
    UserInfo,
    field_manager,
)
from kubelite.apiserver.registry.core import BindingSubresource
from kubelite.apiserver.registry.subresource import Subresource
from kubelite.apiserver.store import ResourceStore
from kubelite.machinery import errors, patch

log = logging.getLogger(__name__)

VERSION = "v0.1.0"
TYPE_URL_PREFIX = "type.googleapis.com/"

T = TypeVar("T")
# A binding's answer in BindMany when it succeeded (Bind itself returns the pod; no scheduler reads it).
_BIND_SUCCESS = metav1.Status(api_version="v1", kind="Status", status="Success", code=201)


def pack(store: ResourceStore, wire: bytes) -> any_pb2.Any:
    return any_pb2.Any(type_url=TYPE_URL_PREFIX + store.rt.message_name, value=wire)


def pack_message(obj: Message) -> any_pb2.Any:
    return any_pb2.Any(type_url=TYPE_URL_PREFIX + obj.DESCRIPTOR.full_name, value=obj.SerializeToString())


class Registry:
    """The stores by (group, resource), and the admission chain they share."""

    def __init__(self, stores: Mapping[tuple[str, str], ResourceStore], admission: Admission) -> None:
        self.stores = dict(stores)
        self.admission = admission

    def store(self, ref: pb.ResourceRef) -> ResourceStore:
        s = self.stores.get((ref.group, ref.resource))
        if s is None or (ref.version and ref.version != s.rt.version):
            name = f"{ref.resource}.{ref.group}" if ref.group else ref.resource
            raise errors.StatusError("NotFound", f'the server could not find the requested resource ({name})')
        return s

    @staticmethod
    def subresource(store: ResourceStore, name: str) -> Subresource:
        sub = store.subresources.get(name)
        if sub is None:
            raise errors.StatusError("NotFound", f'the server could not find the requested resource '
                                                 f'({store.rt.group_resource}/{name})')
        return sub


class ResourceServicer(pb_grpc.ResourceServiceServicer):
    def __init__(self, registry: Registry, pipeline: Pipeline) -> None:
        self.registry = registry
        self.pipeline = pipeline

    # --- plumbing ----------------------------------------------------------

    async def _attrs(self, context: grpc.aio.ServicerContext[Any, Any], verb: str, store: ResourceStore,
                     ref: pb.ResourceRef, dry_run: bool = False, subresource: str = "",
                     manager: str = "") -> Attributes:
        namespace = ref.namespace if store.rt.namespaced else ""
        info = request_info(context)
        owner = field_manager(manager, info.user_agent) if verb in MANAGED_VERBS else None

        def make(user: UserInfo) -> Attributes:
            return Attributes(user, verb, store.rt, namespace, ref.name, subresource=subresource, dry_run=dry_run,
                              field_manager=owner)

        return await self.pipeline.check(info, make)

    async def _handle(self, context: grpc.aio.ServicerContext[Any, Any], verb: str, ref: pb.ResourceRef,
                      call: Callable[[ResourceStore], Awaitable[T]]) -> T:
        started = time.perf_counter()
        group, resource, code = ref.group, ref.resource, "200"
        try:
            store = self.registry.store(ref)
            return await call(store)
        except errors.StatusError as exc:
            code = str(exc.code)
            await _abort(context, exc)
            raise AssertionError("unreachable") from None
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            code = "500"
            log.exception("%s %s: unexpected failure", verb, resource)
            await _abort(context, errors.internal(f"{type(exc).__name__}: {exc}"))
            raise AssertionError("unreachable") from None
        finally:
            metrics.REQUESTS.labels(verb, group, resource, code).inc()
            metrics.LATENCY.labels(verb, group, resource).observe(time.perf_counter() - started)

    def _unpack(self, store: ResourceStore, obj: any_pb2.Any, sub: Subresource | None = None) -> Message:
        if not obj.type_url:
            raise errors.bad_request("the request carries no object")
        message_type = sub.body_type(store) if sub is not None else store.rt.message
        expected = TYPE_URL_PREFIX + message_type.DESCRIPTOR.full_name
        if obj.type_url != expected:
            where = f"{store.rt.group_resource}/{sub.name}" if sub is not None else store.rt.group_resource
            raise errors.bad_request(f"the object is a {obj.type_url.removeprefix(TYPE_URL_PREFIX)}, but the "
                                     f"resource {where} takes {message_type.DESCRIPTOR.full_name}")
        msg = message_type()
        if not obj.Unpack(msg):
            raise errors.bad_request("the object cannot be decoded")
        return msg

    # --- verbs -------------------------------------------------------------

    async def Create(self, request: pb.CreateRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.ObjectResponse:
        async def call(store: ResourceStore) -> pb.ObjectResponse:
            if request.ref.subresource:
                sub = self.registry.subresource(store, request.ref.subresource)
                body = self._unpack(store, request.object, sub)
                attrs = await self._attrs(context, "create", store, request.ref, request.dry_run, sub.name,
                                          request.field_manager)
                return pb.ObjectResponse(object=pack_message(await sub.create(store, attrs, body)))
            obj = self._unpack(store, request.object)
            ref = pb.ResourceRef()
            ref.CopyFrom(request.ref)
            ref.name = obj.metadata.name  # type: ignore[attr-defined]
            if store.rt.namespaced and not ref.namespace:
                ref.namespace = obj.metadata.namespace  # type: ignore[attr-defined]
            attrs = await self._attrs(context, "create", store, ref, request.dry_run,
                                      manager=request.field_manager)
            return pb.ObjectResponse(object=pack_message(await store.create(attrs, obj)))
        return await self._handle(context, "create", request.ref, call)

    async def Get(self, request: pb.GetRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.ObjectResponse:
        async def call(store: ResourceStore) -> pb.ObjectResponse:
            if request.ref.subresource:
                sub = self.registry.subresource(store, request.ref.subresource)
                attrs = await self._attrs(context, "get", store, request.ref, subresource=sub.name)
                return pb.ObjectResponse(object=pack_message(await sub.get(store, attrs)))
            attrs = await self._attrs(context, "get", store, request.ref)
            obj = await store.get(attrs.namespace, attrs.name, request.resource_version)
            return pb.ObjectResponse(object=pack_message(obj))
        return await self._handle(context, "get", request.ref, call)

    async def List(self, request: pb.ListRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.ListResponse:
        async def call(store: ResourceStore) -> pb.ListResponse:
            attrs = await self._attrs(context, "list", store, request.ref)
            page = await store.list(attrs.namespace, request.label_selector, request.field_selector,
                                    request.resource_version, request.limit, request.continue_token)
            items, revision, token = page
            resp = pb.ListResponse(items=[pack(store, wire) for wire in items])
            resp.metadata.resource_version = str(revision)
            resp.metadata.continue_token = token
            if page.remaining_item_count is not None:
                resp.metadata.remaining_item_count = page.remaining_item_count
            return resp
        return await self._handle(context, "list", request.ref, call)

    async def _update(self, request: pb.UpdateRequest, context: grpc.aio.ServicerContext[Any, Any],
                      status: bool) -> pb.ObjectResponse:
        async def call(store: ResourceStore) -> pb.ObjectResponse:
            name = "status" if status else request.ref.subresource
            sub = self.registry.subresource(store, name) if name else None
            obj = self._unpack(store, request.object, sub)
            ref = pb.ResourceRef()
            ref.CopyFrom(request.ref)
            ref.name = ref.name or obj.metadata.name  # type: ignore[attr-defined]
            if store.rt.namespaced and not ref.namespace:
                ref.namespace = obj.metadata.namespace or ""  # type: ignore[attr-defined]
            attrs = await self._attrs(context, "update", store, ref, request.dry_run, name, request.field_manager)
            if sub is not None:
                return pb.ObjectResponse(object=pack_message(await sub.update(store, attrs, obj)))
            return pb.ObjectResponse(object=pack_message(await store.update(attrs, obj)))
        return await self._handle(context, "update", request.ref, call)

    async def Update(self, request: pb.UpdateRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.ObjectResponse:
        return await self._update(request, context, False)

    async def UpdateStatus(self, request: pb.UpdateRequest,
                           context: grpc.aio.ServicerContext[Any, Any]) -> pb.ObjectResponse:
        return await self._update(request, context, True)

    async def Patch(self, request: pb.PatchRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.ObjectResponse:
        async def call(store: ResourceStore) -> pb.ObjectResponse:
            name = request.subresource or request.ref.subresource
            attrs = await self._attrs(context, "patch", store, request.ref, request.dry_run, name,
                                      request.field_manager)
            if request.patch_type == patch.APPLY_PATCH and not name:
                obj = await store.apply(attrs, patch.load_apply_patch(request.patch), request.field_manager,
                                        force=request.force)
            elif name:
                sub = self.registry.subresource(store, name)
                obj = await sub.patch(store, attrs, request.patch_type, request.patch)
            else:
                obj = await store.patch(attrs, request.patch_type, request.patch)
            return pb.ObjectResponse(object=pack_message(obj))
        return await self._handle(context, "patch", request.ref, call)

    async def Delete(self, request: pb.DeleteRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.DeleteResponse:
        async def call(store: ResourceStore) -> pb.DeleteResponse:
            attrs = await self._attrs(context, "delete", store, request.ref, request.dry_run)
            grace = request.grace_period_seconds if request.HasField("grace_period_seconds") else None
            obj, deleted = await store.delete(
                attrs, propagation_policy=request.propagation_policy, uid=request.preconditions.uid,
                resource_version=request.preconditions.resource_version, grace_period=grace)
            return pb.DeleteResponse(object=pack_message(obj), deleted=deleted)
        return await self._handle(context, "delete", request.ref, call)

    async def Bind(self, request: pb.BindRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.ObjectResponse:
        ref = pb.ResourceRef(group="", version="v1", resource="pods", namespace=request.namespace,
                             name=request.name)

        async def call(store: ResourceStore) -> pb.ObjectResponse:
            attrs = await self._attrs(context, "create", store, ref, subresource="binding")
            sub = self.registry.subresource(store, "binding")
            assert isinstance(sub, BindingSubresource)
            return pb.ObjectResponse(object=pack_message(await sub.bind(store, attrs, request.node_name,
                                                                        request.uid)))
        return await self._handle(context, "bind", ref, call)

    async def BindMany(self, request: pb.BindManyRequest,
                       context: grpc.aio.ServicerContext[Any, Any]) -> pb.BindManyResponse:
        """Every binding as Bind would do it, all at once (their writes share the group commit)."""
        info = request_info(context)
        results = await asyncio.gather(*(self._bind_one(info, b) for b in request.bindings))
        return pb.BindManyResponse(results=results)

    async def _bind_one(self, info: RequestInfo, request: pb.BindRequest) -> metav1.Status:
        started = time.perf_counter()
        code = "201"
        try:
            ref = pb.ResourceRef(group="", version="v1", resource="pods", namespace=request.namespace,
                                 name=request.name)
            store = self.registry.store(ref)

            def make(user: UserInfo) -> Attributes:
                return Attributes(user, "create", store.rt, request.namespace, request.name, subresource="binding")

            attrs = await self.pipeline.check(info, make)
            sub = self.registry.subresource(store, "binding")
            assert isinstance(sub, BindingSubresource)
            await sub.bind(store, attrs, request.node_name, request.uid)
            return _BIND_SUCCESS
        except errors.StatusError as exc:
            code = str(exc.code)
            return exc.to_status()
        except Exception as exc:
            code = "500"
            log.exception("bind %s/%s: unexpected failure", request.namespace, request.name)
            return errors.internal(f"{type(exc).__name__}: {exc}").to_status()
        finally:
            # Counted as the bindings they are, one by one, as if each had come alone.
            metrics.REQUESTS.labels("bind", "", "pods", code).inc()
            metrics.LATENCY.labels("bind", "", "pods").observe(time.perf_counter() - started)

    async def DeleteCollection(self, request: pb.DeleteCollectionRequest,
                               context: grpc.aio.ServicerContext[Any, Any]) -> pb.ListResponse:
        async def call(store: ResourceStore) -> pb.ListResponse:
            if request.ref.name:
                raise errors.bad_request("a collection is named by its resource and namespace, not by a name")
            attrs = await self._attrs(context, "deletecollection", store, request.ref, request.dry_run)
            grace = request.grace_period_seconds if request.HasField("grace_period_seconds") else None
            items = await store.delete_collection(attrs, request.label_selector, request.field_selector,
                                                  propagation_policy=request.propagation_policy, grace_period=grace)
            return pb.ListResponse(items=[pack_message(obj) for obj in items])
        return await self._handle(context, "deletecollection", request.ref, call)

    async def Watch(self, request: pb.WatchRequest,
                    context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[pb.WatchResponse]:
        ref = request.ref
        try:
            store = self.registry.store(ref)
            attrs = await self._attrs(context, "watch", store, ref)
        except errors.StatusError as exc:
            await _abort(context, exc)
            return
        gauge = metrics.WATCHERS.labels(store.rt.group, store.rt.resource)
        gauge.inc()
        metrics.REQUESTS.labels("watch", ref.group, ref.resource, "200").inc()
        try:
            async for item in store.watch(attrs.namespace, request.label_selector, request.field_selector,
                                          request.resource_version, request.allow_watch_bookmarks):
                if isinstance(item, int):
                    yield pb.WatchResponse(events=[pb.WatchEvent(type="BOOKMARK",
                                                                 object=pack(store, store.bookmark(item)))])
                else:
                    yield pb.WatchResponse(events=[pb.WatchEvent(type=t, object=pack(store, wire))
                                                   for t, wire in item])
        except errors.StatusError as exc:
            await _abort(context, exc)
        finally:
            gauge.dec()


class DiscoveryServicer(pb_grpc.DiscoveryServiceServicer):
    """Discovery and version: open to anyone who can reach the server, but, as in Kubernetes, a request
    with a credential the server does not accept is refused (401), here as on every other call."""

    def __init__(self, registry: Registry, pipeline: Pipeline | None = None) -> None:
        self.registry = registry
        self.pipeline = pipeline or Pipeline()

    async def _authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        try:
            await self.pipeline.authenticate(request_info(context))
        except errors.StatusError as exc:
            await _abort(context, exc)

    async def ServerResources(self, request: pb.ServerResourcesRequest,
                              context: grpc.aio.ServicerContext[Any, Any]) -> pb.APIResourceList:
        await self._authenticate(context)
        out = pb.APIResourceList()
        for store in self.registry.stores.values():
            rt = store.rt
            out.resources.add(name=rt.resource, singular_name=rt.singular, namespaced=rt.namespaced, group=rt.group,
                              version=rt.version, kind=rt.kind, verbs=list(rt.verbs),
                              short_names=list(rt.short_names), message_type=rt.message_name)
            # Subresources are listed as "<resource>/<name>", as Kubernetes' discovery lists them.
            for name, sub in sorted(store.subresources.items()):
                body = sub.body_type(store)
                out.resources.add(name=f"{rt.resource}/{name}", namespaced=rt.namespaced, group=rt.group,
                                  version=rt.version, kind=body.DESCRIPTOR.name, verbs=list(sub.verbs),
                                  message_type=body.DESCRIPTOR.full_name)
        return out

    async def Version(self, request: pb.VersionRequest,
                      context: grpc.aio.ServicerContext[Any, Any]) -> pb.VersionInfo:
        await self._authenticate(context)
        return pb.VersionInfo(git_version=VERSION, platform=f"{sys.platform}/{platform.machine()}",
                              python_version=platform.python_version())


def request_info(context: grpc.aio.ServicerContext[Any, Any]) -> RequestInfo:
    """The credentials of a gRPC call: metadata, peer address and TLS client certificates."""
    auth = context.auth_context() or {}
    certs = tuple(auth.get("x509_pem_cert", ()))
    return RequestInfo(tuple(context.invocation_metadata() or ()), context.peer() or "", certs)


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: errors.StatusError) -> None:
    await context.abort(exc.grpc_code, exc.message, trailing_metadata=exc.to_grpc_metadata())
