"""Kubernetes' HTTP API in front of the same pipeline and stores as the gRPC API.

kubectl, the official client libraries and client-go programs speak this
API; kubelite's own components speak gRPC. Both front ends call the same
``Pipeline`` (authentication, authorization), the same ``ResourceStore``
verbs and the same subresource routes, so objects, resourceVersions and
errors are the same whichever way they arrive. What lives here is only the
HTTP shape: paths, query parameters, content types, Status bodies with the
right code, Tables, and watches as newline-delimited JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import yaml
from aiohttp import web
from google.protobuf.message import Message
from multidict import MultiMapping

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.service.v1 import streaming_pb2 as st
from kubelite.apiserver import metrics
from kubelite.apiserver.pipeline import MANAGED_VERBS, Attributes, Pipeline, RequestInfo, UserInfo, field_manager
from kubelite.apiserver.rest import discovery, openapi, paths, proxy, remotecommand, tables
from kubelite.apiserver.rest.paths import Target
from kubelite.apiserver.service import Registry
from kubelite.apiserver.store import ResourceStore
from kubelite.apiserver.streaming import PodStreamServicer
from kubelite.machinery import codec, errors
from kubelite.machinery.patch import APPLY_PATCH, JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, load_apply_patch
from kubelite.machinery.process import collections_paused

log = logging.getLogger(__name__)

PATCH_TYPES = (STRATEGIC_MERGE_PATCH, MERGE_PATCH, JSON_PATCH)
PROTOBUF = "application/vnd.kubernetes.protobuf"
JSON_TYPES = ("", "application/json", "*/*")
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")
FIELD_VALIDATION = ("Ignore", "Warn", "Strict")
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
# Kinds whose DELETE answers with the deleted object rather than a Status, as kube-apiserver's registries do.
RETURN_DELETED_OBJECT = frozenset({("", "pods"), ("", "services")})
TRUE = ("true", "1")
# The verb a proxied request is authorized as, by its method (as Kubernetes maps them).
PROXY_VERBS = {"GET": "get", "HEAD": "get", "OPTIONS": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
               "DELETE": "delete"}


@dataclass(frozen=True)
class Query:
    """The query parameters every verb may read, validated once."""

    label_selector: str
    field_selector: str
    resource_version: str
    resource_version_match: str
    limit: int
    continue_token: str
    watch: bool
    allow_bookmarks: bool
    timeout_seconds: int | None
    send_initial_events: bool | None
    dry_run: bool
    field_validation: str
    include_object: str

    @classmethod
    def parse(cls, q: Mapping[str, str]) -> Query:
        def integer(name: str) -> int | None:
            raw = q.get(name)
            if raw is None or raw == "":
                return None
            try:
                return int(raw)
            except ValueError:
                raise errors.bad_request(f'invalid value "{raw}" for {name}: must be an integer') from None

        dry = q.getall("dryRun", []) if isinstance(q, MultiMapping) else [q.get("dryRun", "")]
        for value in dry:
            if value not in ("", "All"):
                raise errors.bad_request(f'unsupported dryRun value "{value}": the only supported value is "All"')
        validation = q.get("fieldValidation", "") or "Warn"
        if validation not in FIELD_VALIDATION:
            raise errors.bad_request(f'invalid fieldValidation value "{validation}": must be one of '
                                     f"{', '.join(FIELD_VALIDATION)}")
        include = q.get("includeObject", "") or "Metadata"
        if include not in tables.INCLUDE_OBJECT:
            raise errors.bad_request(f'invalid includeObject value "{include}": must be one of '
                                     f"{', '.join(tables.INCLUDE_OBJECT)}")
        match = q.get("resourceVersionMatch", "")
        if match not in ("", "NotOlderThan", "Exact"):
            raise errors.bad_request(f'invalid resourceVersionMatch value "{match}": must be NotOlderThan or Exact')
        initial = q.get("sendInitialEvents")
        limit = integer("limit") or 0
        return cls(
            label_selector=q.get("labelSelector", ""), field_selector=q.get("fieldSelector", ""),
            resource_version=q.get("resourceVersion", ""), resource_version_match=match, limit=limit,
            continue_token=q.get("continue", ""), watch=q.get("watch", "").lower() in TRUE,
            allow_bookmarks=q.get("allowWatchBookmarks", "").lower() in TRUE,
            timeout_seconds=integer("timeoutSeconds"),
            send_initial_events=None if initial is None else initial.lower() in TRUE,
            dry_run="All" in dry, field_validation=validation, include_object=include)


def status_body(exc: errors.StatusError) -> dict[str, Any]:
    body = codec.encode(exc.to_status())
    body.setdefault("metadata", {})
    return body


def json_response(data: Any, status: int = 200, content_type: str = "application/json",
                  warnings: list[str] | None = None) -> web.Response:
    headers = {"Content-Type": content_type}
    resp = web.Response(body=orjson.dumps(data), status=status,
                        headers=headers)
    for w in warnings or ():
        resp.headers.add("Warning", '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return resp


def error_response(exc: errors.StatusError) -> web.Response:
    resp = json_response(status_body(exc), status=exc.code)
    if exc.retry_after_seconds:
        resp.headers["Retry-After"] = str(exc.retry_after_seconds)
    return resp


def request_info(request: web.Request) -> RequestInfo:
    meta = tuple(("authorization", v) for v in request.headers.getall("Authorization", ()))
    agent = request.headers.get("User-Agent")
    if agent is not None:
        meta += (("user-agent", agent),)
    peer = request.remote or ""
    return RequestInfo(meta, peer)


def _media(request: web.Request) -> str:
    return request.headers.get("Content-Type", "").split(";")[0].strip().lower()


class JSONCache:
    """The JSON form of object states, keyed by their wire bytes, bounded in total size.

    Protobuf to JSON is the REST API's main cost (the codec walks every field
    in Python). The watch cache hands every list and every watcher the same
    bytes object for one state of one object, so a state is encoded once and
    then served to every list and every watcher that wants it, as Kubernetes'
    watch cache serializes an event once for all its watchers. The oldest
    entries go first when the bound is reached.
    """

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._entries: dict[bytes, bytes] = {}
        self._size = 0
        self._max = max_bytes

    def get(self, store: ResourceStore, wire: bytes) -> bytes:
        hit = self._entries.get(wire)
        if hit is not None:
            return hit
        data = orjson.dumps(codec.encode(store.decode(wire)))
        self._entries[wire] = data
        self._size += len(wire) + len(data)
        while self._size > self._max and self._entries:
            old = next(iter(self._entries))
            self._size -= len(old) + len(self._entries.pop(old))
        return data


class RestAPI:
    """The handlers; ``add_routes`` puts them on the API server's HTTP application."""

    def __init__(self, registry: Registry, pipeline: Pipeline, streams: PodStreamServicer, server_version: str,
                 ) -> None:
        self.registry = registry
        self.pipeline = pipeline
        self.streams = streams
        self.server_version = server_version
        self.openapi = openapi.OpenAPI(registry)
        self.json_cache = JSONCache()
        self.row_cache = tables.RowCache(self.json_cache.get)
        # Watches and log streams in progress: a stopping server ends them, or aiohttp would wait for them.
        self._streams: set[asyncio.Task[Any]] = set()
        # pods/proxy and services/proxy: one connection pool, made on first use; which endpoint answers.
        self._proxy_session: aiohttp.ClientSession | None = None
        self._rng = random.Random()

    async def close(self) -> None:
        """Ends every open watch and log stream (their clients resume elsewhere, from their resourceVersion)."""
        streams, self._streams = list(self._streams), set()
        for task in streams:
            task.cancel()
        for task in streams:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._proxy_session is not None:
            await self._proxy_session.close()

    @contextlib.contextmanager
    def _stream(self) -> Iterator[None]:
        task = asyncio.current_task()
        assert task is not None
        self._streams.add(task)
        try:
            yield
        finally:
            self._streams.discard(task)

    def add_routes(self, app: web.Application) -> None:
        for path, handler in (("/version", self.version), ("/version/", self.version), ("/api", self.api),
                              ("/api/", self.api), ("/apis", self.apis), ("/apis/", self.apis),
                              ("/openapi/v3", self.openapi_index), ("/openapi/v3/{gv:.+}", self.openapi_document)):
            app.router.add_get(path, self._authenticated(handler))
        app.router.add_route("*", "/api/{tail:.+}", self.resource)
        app.router.add_route("*", "/apis/{tail:.+}", self.resource)

    # --- discovery -----------------------------------------------------------------------------------

    def _authenticated(self, handler: Callable[[web.Request], Awaitable[web.Response]],
                       ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """Discovery is open to anyone, but a credential the server does not accept is 401, as everywhere."""
        async def wrapped(request: web.Request) -> web.Response:
            try:
                await self.pipeline.authenticate(request_info(request))
            except errors.StatusError as exc:
                return error_response(exc)
            return await handler(request)

        return wrapped

    async def version(self, request: web.Request) -> web.Response:
        return json_response(discovery.version(self.server_version))

    @staticmethod
    def _aggregated(request: web.Request) -> str:
        accept = request.headers.get("Accept", "")
        for part in accept.split(","):
            if "as=apigroupdiscoverylist" in part.replace(" ", "").lower():
                v2beta1 = "v=v2beta1" in part.replace(" ", "")
                return discovery.AGGREGATED_CONTENT_TYPE_V2BETA1 if v2beta1 else discovery.AGGREGATED_CONTENT_TYPE
            if part.split(";")[0].strip() in ("application/json", "*/*"):
                return ""
        return ""

    def _aggregated_response(self, content_type: str, legacy: bool) -> web.Response:
        doc = discovery.aggregated(self.registry, legacy=legacy)
        doc["apiVersion"] = "apidiscovery.k8s.io/" + ("v2beta1" if "v=v2beta1" in content_type else "v2")
        return json_response(doc, content_type=content_type)

    async def api(self, request: web.Request) -> web.Response:
        aggregated = self._aggregated(request)
        if aggregated:
            return self._aggregated_response(aggregated, legacy=True)
        doc = discovery.api_versions()
        doc["serverAddressByClientCIDRs"][0]["serverAddress"] = request.host
        return json_response(doc)

    async def apis(self, request: web.Request) -> web.Response:
        aggregated = self._aggregated(request)
        if aggregated:
            return self._aggregated_response(aggregated, legacy=False)
        return json_response(discovery.api_group_list(self.registry))

    async def openapi_index(self, request: web.Request) -> web.Response:
        return json_response(self.openapi.index())

    async def openapi_document(self, request: web.Request) -> web.Response:
        doc = self.openapi.document(request.match_info["gv"])
        if doc is None:
            return error_response(errors.not_found("", "", request.path))
        return json_response(doc)

    # --- resources -----------------------------------------------------------------------------------

    async def resource(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        verb, group, resource, code = request.method.lower(), "", "", "200"
        try:
            target = paths.parse(request.path)
            if target is None or target.resource == "":
                return await self._group_documents(request)
            group, resource = target.group, target.resource
            store = self._store(target)
            if store is None:
                return await self._group_documents(request)
            query = Query.parse(request.query)
            resp = await self._dispatch(request, target, store, query)
            code = str(resp.status)
            return resp
        except errors.StatusError as exc:
            code = str(exc.code)
            return error_response(exc)
        except web.HTTPRequestEntityTooLarge as exc:
            code = "413"
            return error_response(errors.too_large(f"the request is too large: {exc.text}"))
        except Exception as exc:
            code = "500"
            log.exception("%s %s: unexpected failure", request.method, request.path)
            return error_response(errors.internal(f"{type(exc).__name__}: {exc}"))
        finally:
            metrics.REQUESTS.labels(verb, group, resource, code).inc()
            metrics.LATENCY.labels(verb, group, resource).observe(time.perf_counter() - started)

    async def _group_documents(self, request: web.Request) -> web.Response:
        """/api/v1, /apis/<group> and /apis/<group>/<version>: the documents under the resource paths."""
        await self.pipeline.authenticate(request_info(request))
        parts = [p for p in request.path.split("/") if p]
        if request.method != "GET":
            raise errors.method_not_supported("", request.path, request.method.lower())
        doc: dict[str, Any] | None = None
        if parts[0] == "api" and len(parts) == 2:
            doc = discovery.api_resource_list(self.registry, "", parts[1])
        elif parts[0] == "apis" and len(parts) == 2:
            doc = discovery.api_group(self.registry, parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            doc = discovery.api_resource_list(self.registry, parts[1], parts[2])
        if doc is None:
            raise errors.StatusError("NotFound", "the server could not find the requested resource")
        return json_response(doc)

    def _store(self, target: Target) -> ResourceStore | None:
        store = self.registry.stores.get((target.group, target.resource))
        if store is None or store.rt.version != target.version:
            return None
        if target.namespace and not store.rt.namespaced:
            raise errors.StatusError("NotFound", "the server could not find the requested resource")
        return store

    async def _attrs(self, request: web.Request, verb: str, store: ResourceStore, target: Target,
                     dry_run: bool = False, name: str | None = None) -> Attributes:
        namespace = target.namespace if store.rt.namespaced else ""
        info = request_info(request)
        # POST, PUT and PATCH take ?fieldManager= (Kubernetes' write options), else the user agent names the owner.
        owner = field_manager(request.query.get("fieldManager", ""), info.user_agent) if verb in MANAGED_VERBS \
            else None

        def make(user: UserInfo) -> Attributes:
            return Attributes(user, verb, store.rt, namespace, target.name if name is None else name,
                              subresource=target.subresource, dry_run=dry_run, field_manager=owner)

        return await self.pipeline.check(info, make)

    async def _dispatch(self, request: web.Request, target: Target, store: ResourceStore,
                        query: Query) -> web.StreamResponse:
        method = request.method
        namespaced_name = bool(target.name) and store.rt.namespaced and not target.namespace
        if namespaced_name:
            raise errors.StatusError("NotFound", "the server could not find the requested resource")
        if target.subresource:
            return await self._subresource(request, target, store, query)
        if not target.name:
            if method == "GET":
                if query.watch:
                    return await self._watch(request, target, store, query)
                return await self._list(request, target, store, query)
            if method == "POST":
                if store.rt.namespaced and not target.namespace:
                    raise errors.method_not_supported(store.rt.group, store.rt.resource, "create")
                return await self._create(request, target, store, query)
            if method == "DELETE":
                return await self._delete_collection(request, target, store, query)
            raise errors.method_not_supported(store.rt.group, store.rt.resource, method.lower())
        if method == "GET":
            if query.watch:  # the deprecated form of a single-object watch
                return await self._watch(request, target, store, query)
            attrs = await self._attrs(request, "get", store, target)
            obj = await store.get(attrs.namespace, attrs.name, query.resource_version)
            return self._object_response(request, store, obj, query)
        if method == "PUT":
            return await self._update(request, target, store, query)
        if method == "PATCH":
            return await self._patch(request, target, store, query)
        if method == "DELETE":
            return await self._delete(request, target, store, query)
        raise errors.method_not_supported(store.rt.group, store.rt.resource, method.lower())

    # --- bodies --------------------------------------------------------------------------------------

    async def _read_body(self, request: web.Request) -> bytes:
        media = _media(request)
        if media == PROTOBUF:
            raise errors.StatusError(
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"application/json, application/yaml (kubelite does not decode {PROTOBUF}, which kubectl's "
                f"create generators send: pipe them through JSON with `kubectl create ... --dry-run=client "
                f"-o yaml | kubectl create -f -`)")
        return await request.read()

    def _decode_doc(self, request: web.Request, body: bytes) -> dict[str, Any]:
        media = _media(request)
        try:
            if media in YAML_TYPES:
                doc = yaml.safe_load(body)
            elif media in JSON_TYPES or media.endswith("+json"):
                doc = json.loads(body, object_pairs_hook=_no_duplicates)
            else:
                raise errors.StatusError(
                    "UnsupportedMediaType", f'the body of the request was in an unknown format "{media}" - '
                                            f"accepted media types include: application/json, application/yaml")
        except (ValueError, yaml.YAMLError) as exc:
            if isinstance(exc, _DuplicateField):
                raise errors.bad_request(f'strict decoding error: duplicate field "{exc.args[0]}"') from None
            raise errors.bad_request(f"error decoding the request body: {exc}") from None
        if not isinstance(doc, dict):
            raise errors.bad_request("the request body must be an object")
        return doc

    def _decode_object(self, request: web.Request, body: bytes, message_type: type[Message],
                       query: Query, api_version: str, kind: str) -> tuple[Message, list[str]]:
        """The request's object, checked against the URL's kind; unknown fields per fieldValidation."""
        doc = self._decode_doc(request, body)
        got_version, got_kind = doc.get("apiVersion"), doc.get("kind")
        if got_kind and got_kind != kind:
            raise errors.bad_request(f"the object provided is of kind {got_kind}, but the resource takes {kind}")
        if got_version and got_version != api_version:
            raise errors.bad_request(f"the API version in the data ({got_version}) does not match the expected "
                                     f"API version ({api_version})")
        doc.setdefault("apiVersion", api_version)
        doc.setdefault("kind", kind)
        if query.field_validation == "Strict":
            return codec.decode_into(doc, message_type), []
        obj, unknown = codec.decode_unknown_allowed(doc, message_type)
        warnings = [f'unknown field "{f}"' for f in unknown] if query.field_validation == "Warn" else []
        return obj, warnings

    # --- answers -------------------------------------------------------------------------------------

    def _object_response(self, request: web.Request, store: ResourceStore, obj: Message, query: Query,
                         status: int = 200, warnings: list[str] | None = None) -> web.Response:
        data = codec.encode(obj)
        if tables.wants_table(request.headers.get("Accept", "")) and type(obj) is store.rt.message:
            meta = {"resourceVersion": data.get("metadata", {}).get("resourceVersion", "")}
            doc = tables.table_of(store.rt.group, store.rt.kind, [data], meta, query.include_object)
            return json_response(doc, status, warnings=warnings)
        return json_response(data, status, warnings=warnings)

    def _table(self, store: ResourceStore, wires: list[bytes], meta: dict[str, Any], include: str,
               with_columns: bool = True) -> dict[str, Any]:
        """A Table of stored object states, from their cached rows (and cached JSON for includeObject=Object)."""
        spec = tables.spec_for(store.rt.group, store.rt.kind)
        rows = [self.row_cache.get(store, spec, w) for w in wires]
        objects = [self.json_cache.get(store, w) for w in wires] if include == "Object" else None
        return tables.table(spec, rows, objects, meta, include, with_columns)

    # --- verbs ---------------------------------------------------------------------------------------

    async def _list(self, request: web.Request, target: Target, store: ResourceStore, query: Query,
                    ) -> web.Response:
        attrs = await self._attrs(request, "list", store, target)
        rv = query.resource_version
        if query.resource_version_match == "Exact" and not query.limit:
            raise errors.bad_request("resourceVersionMatch=Exact is supported with limit only (a paged read "
                                     "from etcd); use NotOlderThan for a read from the watch cache")
        if query.resource_version_match and not rv:
            raise errors.bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")
        # With resourceVersion="0" Kubernetes serves the list from its cache and ignores limit; so does kubelite.
        limit = 0 if rv == "0" else query.limit
        page = await store.list(attrs.namespace, query.label_selector, query.field_selector, rv, limit,
                                query.continue_token)
        items, revision, token = page
        meta: dict[str, Any] = {"resourceVersion": str(revision)}
        if token:
            meta["continue"] = token
        if page.remaining_item_count is not None:
            meta["remainingItemCount"] = page.remaining_item_count
        if tables.wants_table(request.headers.get("Accept", "")):
            # Serialized before the collector resumes: its first pass would walk every row still alive.
            with collections_paused():
                body = orjson.dumps(self._table(store, items, meta, query.include_object))
            return web.Response(body=body, headers={"Content-Type": "application/json"})
        # The body is assembled from each object's cached JSON, not serialized again as one document.
        head = orjson.dumps({"kind": f"{store.rt.kind}List", "apiVersion": store.rt.api_version, "metadata": meta})
        with collections_paused():
            cached = [self.json_cache.get(store, w) for w in items]
        body = b"".join((head[:-1], b',"items":[', b",".join(cached), b"]}"))
        return web.Response(body=body, headers={"Content-Type": "application/json"})

    async def _create(self, request: web.Request, target: Target, store: ResourceStore, query: Query,
                      ) -> web.Response:
        body = await self._read_body(request)
        obj, warnings = self._decode_object(request, body, store.rt.message, query, store.rt.api_version,
                                            store.rt.kind)
        # The store checks the object's namespace against the URL's and fills it in, for both APIs.
        attrs = await self._attrs(request, "create", store, target, query.dry_run,
                                  name=obj.metadata.name)  # type: ignore[attr-defined]
        created = await store.create(attrs, obj)
        return self._object_response(request, store, created, query, 201, warnings)

    async def _update(self, request: web.Request, target: Target, store: ResourceStore, query: Query,
                      ) -> web.Response:
        body = await self._read_body(request)
        obj, warnings = self._decode_object(request, body, store.rt.message, query, store.rt.api_version,
                                            store.rt.kind)
        # The store checks the object's name and namespace against the URL's, for both APIs.
        attrs = await self._attrs(request, "update", store, target, query.dry_run)
        updated = await store.update(attrs, obj)
        return self._object_response(request, store, updated, query, 200, warnings)

    @staticmethod
    def _patch_type(request: web.Request) -> str:
        media = _media(request)
        if media in PATCH_TYPES or media == APPLY_PATCH:
            return media
        raise errors.StatusError("UnsupportedMediaType",
                                 f'the body of the request was in an unknown format "{media}" - accepted media '
                                 f"types include: {', '.join((*PATCH_TYPES, APPLY_PATCH))}")

    async def _patch(self, request: web.Request, target: Target, store: ResourceStore, query: Query,
                     ) -> web.Response:
        patch_type = self._patch_type(request)
        body = await self._read_body(request)
        attrs = await self._attrs(request, "patch", store, target, query.dry_run)
        if patch_type == APPLY_PATCH:
            if target.subresource:
                raise errors.bad_request(f"server-side apply of {store.rt.resource}/{target.subresource} is not "
                                         f"supported")
            force = request.query.get("force", "").lower() in TRUE
            obj = await store.apply(attrs, load_apply_patch(body), request.query.get("fieldManager", ""),
                                    force=force)
            return self._object_response(request, store, obj, query)
        if target.subresource:
            obj = await self.registry.subresource(store, target.subresource).patch(store, attrs, patch_type, body)
        else:
            obj = await store.patch(attrs, patch_type, body)
        return self._object_response(request, store, obj, query)

    async def _delete_options(self, request: web.Request, query: Query) -> dict[str, Any]:
        body = await self._read_body(request) if request.can_read_body else b""
        opts: dict[str, Any] = {}
        if body.strip():
            opts = self._decode_doc(request, body)
        q = request.query
        if "propagationPolicy" in q:
            opts["propagationPolicy"] = q["propagationPolicy"]
        if "gracePeriodSeconds" in q:
            opts["gracePeriodSeconds"] = q["gracePeriodSeconds"]
        if q.get("orphanDependents", "").lower() in TRUE:
            opts.setdefault("propagationPolicy", "Orphan")
        policy = opts.get("propagationPolicy") or ""
        if policy not in ("", "Orphan", "Background", "Foreground"):
            raise errors.bad_request(f'propagationPolicy "{policy}": must be one of Orphan, Background, Foreground')
        grace = opts.get("gracePeriodSeconds")
        if grace is not None:
            try:
                opts["gracePeriodSeconds"] = int(grace)
            except (TypeError, ValueError):
                raise errors.bad_request(f'invalid gracePeriodSeconds "{grace}": must be an integer') from None
        dry = opts.get("dryRun") or []
        if any(d != "All" for d in dry):
            raise errors.bad_request('unsupported dryRun value: the only supported value is "All"')
        opts["dryRun"] = query.dry_run or "All" in dry
        return opts

    async def _delete(self, request: web.Request, target: Target, store: ResourceStore, query: Query,
                      ) -> web.Response:
        opts = await self._delete_options(request, query)
        pre = opts.get("preconditions") or {}
        attrs = await self._attrs(request, "delete", store, target, opts["dryRun"])
        obj, deleted = await store.delete(attrs, propagation_policy=opts.get("propagationPolicy") or "",
                                          uid=pre.get("uid") or "", resource_version=pre.get("resourceVersion") or "",
                                          grace_period=opts.get("gracePeriodSeconds"))
        if deleted and (store.rt.group, store.rt.resource) not in RETURN_DELETED_OBJECT:
            meta: Any = obj.metadata  # type: ignore[attr-defined]
            return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                  "details": {"name": meta.name, "group": store.rt.group, "kind": store.rt.resource,
                                              "uid": meta.uid}})
        return self._object_response(request, store, obj, query)

    async def _delete_collection(self, request: web.Request, target: Target, store: ResourceStore, query: Query,
                                 ) -> web.Response:
        opts = await self._delete_options(request, query)
        attrs = await self._attrs(request, "deletecollection", store, target, opts["dryRun"])
        items = await store.delete_collection(attrs, query.label_selector, query.field_selector,
                                              propagation_policy=opts.get("propagationPolicy") or "",
                                              grace_period=opts.get("gracePeriodSeconds"))
        return json_response({"kind": f"{store.rt.kind}List", "apiVersion": store.rt.api_version,
                              "metadata": {}, "items": [codec.encode(o) for o in items]})

    async def _subresource(self, request: web.Request, target: Target, store: ResourceStore, query: Query,
                           ) -> web.StreamResponse:
        if (store.rt.group, store.rt.resource) == ("", "pods"):
            if target.subresource == "log":
                return await self._log(request, target)
            if target.subresource in ("exec", "attach") and request.method in ("GET", "POST"):
                with self._stream():
                    return await remotecommand.exec_or_attach(request, request_info(request), self.streams, target,
                                                              target.subresource)
            if target.subresource == "portforward" and request.method in ("GET", "POST"):
                with self._stream():
                    return await remotecommand.port_forward(request, request_info(request), self.streams, target)
        if target.subresource == "proxy" and (store.rt.group, store.rt.resource) in (("", "pods"), ("", "services")):
            with self._stream():
                return await self._proxy(request, target, store)
        sub = self.registry.subresource(store, target.subresource)
        method = request.method
        if method == "GET":
            attrs = await self._attrs(request, "get", store, target)
            return self._object_response(request, store, await sub.get(store, attrs), query)
        if method == "PATCH":
            return await self._patch(request, target, store, query)
        if method not in ("PUT", "POST"):
            raise errors.method_not_supported(store.rt.group, f"{store.rt.resource}/{sub.name}", method.lower())
        body_type = sub.body_type(store)
        body = await self._read_body(request)
        api_version, kind = _group_version_kind(body_type, store)
        obj, warnings = self._decode_object(request, body, body_type, query, api_version, kind)
        verb = "update" if method == "PUT" else "create"
        attrs = await self._attrs(request, verb, store, target, query.dry_run)
        if method == "PUT":
            result = await sub.update(store, attrs, obj)
            return self._object_response(request, store, result, query, 200, warnings)
        result = await sub.create(store, attrs, obj)
        return self._object_response(request, store, result, query, 201, warnings)

    async def _proxy(self, request: web.Request, target: Target, store: ResourceStore) -> web.StreamResponse:
        scheme, name, port = proxy.split_name(target.name)
        verb = PROXY_VERBS.get(request.method)
        if verb is None:
            raise errors.method_not_supported(store.rt.group, f"{store.rt.resource}/proxy", request.method.lower())
        attrs = await self._attrs(request, verb, store, target, name=name)
        obj = await store.get(attrs.namespace, name)
        if isinstance(obj, core.Pod):
            location = proxy.pod_location(obj, scheme, port)
        else:
            assert isinstance(obj, core.Service)
            try:
                endpoints = await self.registry.stores[("", "endpoints")].get(attrs.namespace, name, "0")
            except errors.StatusError as exc:
                if exc.reason != "NotFound":
                    raise
                endpoints = None
            assert endpoints is None or isinstance(endpoints, core.Endpoints)
            location = proxy.service_location(obj, endpoints, scheme, port, self._rng)
        if self._proxy_session is None:
            self._proxy_session = aiohttp.ClientSession(
                auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return await proxy.relay(request, self._proxy_session, location, target.proxy_path)

    async def _log(self, request: web.Request, target: Target) -> web.StreamResponse:
        q = request.query
        req = st.PodLogRequest(namespace=target.namespace, name=target.name, container=q.get("container", ""),
                               follow=q.get("follow", "").lower() in TRUE,
                               previous=q.get("previous", "").lower() in TRUE,
                               timestamps=q.get("timestamps", "").lower() in TRUE, since_time=q.get("sinceTime", ""))
        for param, field in (("tailLines", "tail_lines"), ("sinceSeconds", "since_seconds"),
                             ("limitBytes", "limit_bytes")):
            if q.get(param):
                try:
                    setattr(req, field, int(q[param]))
                except ValueError:
                    raise errors.bad_request(f'invalid {param} "{q[param]}": must be an integer') from None
        chunks = aiter(self.streams.log(request_info(request), req))
        # The first chunk (or the error) comes before the headers, so that a refusal is a Status with its code.
        try:
            first: st.PodLogChunk | None = await anext(chunks)
        except StopAsyncIteration:
            first = None
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        with self._stream(), contextlib.suppress(ConnectionResetError):
            if first is not None:
                await resp.write(first.data)
                async for chunk in chunks:
                    await resp.write(chunk.data)
            await resp.write_eof()
        return resp

    # --- watch ---------------------------------------------------------------------------------------

    async def _watch(self, request: web.Request, target: Target, store: ResourceStore, query: Query,
                     ) -> web.StreamResponse:
        attrs = await self._attrs(request, "watch", store, target)
        field_selector = query.field_selector
        if target.name:
            name_sel = f"metadata.name={target.name}"
            field_selector = f"{field_selector},{name_sel}" if field_selector else name_sel
        as_table = tables.wants_table(request.headers.get("Accept", ""))
        if query.send_initial_events and not query.allow_bookmarks:
            raise errors.invalid(store.rt.group, store.rt.kind, "", [errors.FieldError(
                "FieldValueForbidden", "allowWatchBookmarks", "sendInitialEvents requires setting "
                "allowWatchBookmarks to true")])
        if query.send_initial_events and query.resource_version_match != "NotOlderThan":
            raise errors.invalid(store.rt.group, store.rt.kind, "", [errors.FieldError(
                "FieldValueForbidden", "resourceVersionMatch", "sendInitialEvents requires setting "
                "resourceVersionMatch to NotOlderThan")])
        resp = web.StreamResponse(status=200, headers={
            "Content-Type": "application/json;as=Table;v=v1;g=meta.k8s.io" if as_table else "application/json",
            "Cache-Control": "no-cache, private"})
        await resp.prepare(request)
        gauge = metrics.WATCHERS.labels(store.rt.group, store.rt.resource)
        gauge.inc()
        first_table = True

        def line(event_type: str, obj: dict[str, Any]) -> bytes:
            return orjson.dumps({"type": event_type, "object": obj}) + b"\n"

        def table_line(event_type: str, wire: bytes) -> bytes:
            # Each event is a one-row Table; only the first carries the column definitions.
            nonlocal first_table
            row = self.row_cache.get(store, tables.spec_for(store.rt.group, store.rt.kind), wire)
            doc = self._table(store, [wire], {"resourceVersion": row.resource_version}, query.include_object,
                              with_columns=first_table)
            first_table = False
            return orjson.dumps({"type": event_type, "object": doc}) + b"\n"

        def bookmark(revision: int, initial_end: bool = False) -> bytes:
            meta: dict[str, Any] = {"resourceVersion": str(revision)}
            if initial_end:
                meta["annotations"] = {INITIAL_EVENTS_END: "true"}
            return line("BOOKMARK", {"kind": store.rt.kind, "apiVersion": store.rt.api_version, "metadata": meta})

        try:
            with self._stream():
                await self._stream_events(resp, store, attrs.namespace, query, field_selector, bookmark,
                                          table_line if as_table else None)
        except errors.StatusError as exc:
            with contextlib.suppress(ConnectionResetError):
                await resp.write(line("ERROR", status_body(exc)))
        except (TimeoutError, ConnectionResetError):
            pass
        finally:
            gauge.dec()
        with contextlib.suppress(ConnectionResetError):
            await resp.write_eof()
        return resp

    async def _stream_events(self, resp: web.StreamResponse, store: ResourceStore, namespace: str, query: Query,
                             field_selector: str, bookmark: Callable[..., bytes],
                             table_line: Callable[[str, bytes], bytes] | None) -> None:
        async with asyncio.timeout(query.timeout_seconds if query.timeout_seconds else None):
            async for chunk in self._events(store, namespace, query, field_selector):
                if isinstance(chunk, _InitialEnd):
                    await resp.write(bookmark(chunk.revision, initial_end=True))
                elif isinstance(chunk, int):
                    await resp.write(bookmark(chunk))
                elif table_line is not None:
                    await resp.write(b"".join(table_line(t, wire) for t, wire in chunk))
                else:  # each event from the object's cached JSON: encoded once for every watcher
                    await resp.write(b"".join(b'{"type":"%s","object":%s}\n' % (t.encode(),
                                                                                self.json_cache.get(store, wire))
                                              for t, wire in chunk))

    async def _events(self, store: ResourceStore, namespace: str, query: Query, field_selector: str,
                      ) -> AsyncIterator[Any]:
        """The watch's chunks; with sendInitialEvents, the current state as ADDED first, then the bookmark."""
        rv = query.resource_version
        if query.send_initial_events:
            items, revision, _ = await store.list(namespace, query.label_selector, field_selector, rv)
            for i in range(0, len(items), 500):
                yield [("ADDED", wire) for wire in items[i:i + 500]]
            yield _InitialEnd(revision)
            rv = str(revision)
        async for chunk in store.watch(namespace, query.label_selector, field_selector, rv, query.allow_bookmarks):
            yield chunk


@dataclass(frozen=True)
class _InitialEnd:
    revision: int


class _DuplicateField(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateField(key)
        out[key] = value
    return out


def _group_version_kind(body_type: type[Message], store: ResourceStore) -> tuple[str, str]:
    """apiVersion and kind of a subresource's body (the parent's own, or autoscaling/v1 Scale, policy/v1 ...)."""
    if body_type is store.rt.message:
        return store.rt.api_version, store.rt.kind
    gv = discovery.body_group_version(store, body_type.DESCRIPTOR.full_name)
    group = gv.get("group", store.rt.group)
    ver = gv.get("version", store.rt.version)
    return (f"{group}/{ver}" if group else ver), body_type.DESCRIPTOR.name
