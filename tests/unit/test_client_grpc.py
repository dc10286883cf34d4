"""Client against a real in-process gRPC server with a fake ResourceService.

The fake answers with canned objects and aborts the way the API server does
(gRPC code plus a Status in trailing metadata), so these tests cover packing,
unpacking and error translation over the real wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.meta.v1 import generated_pb2 as metav1
from kubelite.api.service.v1 import service_pb2 as svc
from kubelite.api.service.v1 import service_pb2_grpc as svc_grpc
from kubelite.client import Client, WatchEvent
from kubelite.client.client import SERVER_KEEPALIVE_OPTIONS, parse_target
from kubelite.machinery import errors
from kubelite.machinery.kinds import SCHEME


def pack(obj: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(obj)
    return packed


def configmap(name: str, namespace: str = "default", rv: str = "1", **data: str) -> core.ConfigMap:
    return core.ConfigMap(api_version="v1", kind="ConfigMap",
                          metadata=metav1.ObjectMeta(name=name, namespace=namespace, resource_version=rv),
                          data=data)


class FakeResources(svc_grpc.ResourceServiceServicer):
    """Canned answers; records every request so tests can check what went over the wire."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.objects: dict[str, core.ConfigMap] = {"default/cm1": configmap("cm1", a="1")}
        self.watch_responses: list[svc.WatchResponse] = []
        self.watch_error: errors.StatusError | None = None
        self.watch_hangs = False
        self.watch_cancelled = asyncio.Event()

    async def _fail(self, context: Any, err: errors.StatusError) -> None:
        await context.abort(err.grpc_code, err.message, trailing_metadata=err.to_grpc_metadata())

    async def Create(self, request: svc.CreateRequest, context: Any) -> svc.ObjectResponse:
        self.requests.append(request)
        obj = core.ConfigMap()
        request.object.Unpack(obj)
        if obj.metadata.name == "bad":
            await self._fail(context, errors.invalid("", "ConfigMap", "bad", [
                errors.FieldError("FieldValueRequired", "data", "at least one key"),
                errors.FieldError("FieldValueInvalid", "metadata.labels", "bad label", value="x y"),
            ]))
        obj.metadata.uid = "uid-1"
        obj.metadata.resource_version = "7"
        return svc.ObjectResponse(object=pack(obj))

    async def Get(self, request: svc.GetRequest, context: Any) -> svc.ObjectResponse:
        self.requests.append(request)
        key = f"{request.ref.namespace}/{request.ref.name}"
        if key not in self.objects:
            await self._fail(context, errors.not_found(request.ref.group, request.ref.resource, request.ref.name))
        return svc.ObjectResponse(object=pack(self.objects[key]))

    async def List(self, request: svc.ListRequest, context: Any) -> svc.ListResponse:
        self.requests.append(request)
        return svc.ListResponse(metadata=metav1.ListMeta(resource_version="42", continue_token="next"),
                                items=[pack(o) for o in self.objects.values()])

    async def Update(self, request: svc.UpdateRequest, context: Any) -> svc.ObjectResponse:
        self.requests.append(request)
        await self._fail(context, errors.conflict("", "configmaps", request.ref.name, "the object has been modified"))
        raise AssertionError("unreachable")

    async def UpdateStatus(self, request: svc.UpdateRequest, context: Any) -> svc.ObjectResponse:
        self.requests.append(request)
        return svc.ObjectResponse(object=request.object)

    async def Patch(self, request: svc.PatchRequest, context: Any) -> svc.ObjectResponse:
        self.requests.append(request)
        return svc.ObjectResponse(object=pack(self.objects["default/cm1"]))

    async def Delete(self, request: svc.DeleteRequest, context: Any) -> svc.DeleteResponse:
        self.requests.append(request)
        return svc.DeleteResponse(object=pack(self.objects["default/cm1"]), deleted=request.ref.name != "kept")

    async def Watch(self, request: svc.WatchRequest, context: Any) -> AsyncIterator[svc.WatchResponse]:
        self.requests.append(request)
        for resp in self.watch_responses:
            yield resp
        if self.watch_error is not None:
            await self._fail(context, self.watch_error)
        if self.watch_hangs:
            try:
                await asyncio.Event().wait()
            finally:
                self.watch_cancelled.set()

    async def Bind(self, request: svc.BindRequest, context: Any) -> svc.ObjectResponse:
        self.requests.append(request)
        pod = core.Pod(api_version="v1", kind="Pod",
                       metadata=metav1.ObjectMeta(name=request.name, namespace=request.namespace),
                       spec=core.PodSpec(node_name=request.node_name))
        return svc.ObjectResponse(object=pack(pod))


class FakeDiscovery(svc_grpc.DiscoveryServiceServicer):
    async def ServerResources(self, request: Any, context: Any) -> svc.APIResourceList:
        return svc.APIResourceList(resources=[svc.APIResource(name="pods", kind="Pod", namespaced=True)])

    async def Version(self, request: Any, context: Any) -> svc.VersionInfo:
        return svc.VersionInfo(git_version="v0.1.0")


async def start_server(servicer: svc_grpc.ResourceServiceServicer, port: int = 0) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(options=list(SERVER_KEEPALIVE_OPTIONS))
    svc_grpc.add_ResourceServiceServicer_to_server(servicer, server)
    svc_grpc.add_DiscoveryServiceServicer_to_server(FakeDiscovery(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeResources, Client]]:
    servicer = FakeResources()
    server, port = await start_server(servicer)
    client = Client(f"http://127.0.0.1:{port}", scheme=SCHEME, timeout=5)
    try:
        yield servicer, client
    finally:
        await client.close()
        await server.stop(None)


def test_parse_target() -> None:
    assert parse_target("127.0.0.1:6443") == ("127.0.0.1:6443", False)
    assert parse_target("http://example:1234/") == ("example:1234", False)
    assert parse_target("https://example") == ("example:6443", True)
    assert parse_target("localhost") == ("localhost:6443", False)
    assert parse_target("[::1]") == ("[::1]:6443", False)
    assert parse_target("http://[::1]:7000") == ("[::1]:7000", False)


async def test_create_packs_and_unpacks(fake: tuple[FakeResources, Client]) -> None:
    servicer, client = fake
    created = await client.create(configmap("new", namespace="ns1", b="2"), dry_run=True)
    assert isinstance(created, core.ConfigMap)
    assert created.metadata.uid == "uid-1" and created.metadata.resource_version == "7"
    assert dict(created.data) == {"b": "2"}
    req = servicer.requests[-1]
    assert (req.ref.group, req.ref.version, req.ref.resource, req.ref.namespace) == ("", "v1", "configmaps", "ns1")
    assert req.dry_run
    assert req.object.type_url == "type.googleapis.com/kubelite.api.core.v1.ConfigMap"


async def test_get_and_list(fake: tuple[FakeResources, Client]) -> None:
    servicer, client = fake
    got = await client.get(core.ConfigMap, "cm1", "default")
    assert got.metadata.name == "cm1" and dict(got.data) == {"a": "1"}
    listed = await client.list(core.ConfigMap, "default", label_selector="a=b", limit=5)
    assert [o.metadata.name for o in listed.items] == ["cm1"]
    assert (listed.resource_version, listed.continue_token) == ("42", "next")
    req = servicer.requests[-1]
    assert (req.label_selector, req.limit, req.ref.namespace) == ("a=b", 5, "default")


async def test_cluster_scoped_kind_drops_namespace(fake: tuple[FakeResources, Client]) -> None:
    servicer, client = fake
    servicer.objects = {}
    await client.list(core.Node, "default")
    assert servicer.requests[-1].ref.namespace == ""
    assert servicer.requests[-1].ref.resource == "nodes"


async def test_not_found_round_trips_reason_and_message(fake: tuple[FakeResources, Client]) -> None:
    _, client = fake
    with pytest.raises(errors.StatusError) as info:
        await client.get(core.ConfigMap, "missing", "default")
    assert info.value.reason == "NotFound"
    assert info.value.message == 'configmaps "missing" not found'
    assert info.value.name == "missing"
    assert isinstance(info.value.__cause__, grpc.aio.AioRpcError)


async def test_invalid_carries_causes(fake: tuple[FakeResources, Client]) -> None:
    _, client = fake
    with pytest.raises(errors.StatusError) as info:
        await client.create(configmap("bad"))
    err = info.value
    assert err.reason == "Invalid" and err.code == 422
    assert [(c.type, c.field) for c in err.causes] == [("FieldValueRequired", "data"),
                                                      ("FieldValueInvalid", "metadata.labels")]
    assert 'ConfigMap "bad" is invalid' in err.message


async def test_update_conflict(fake: tuple[FakeResources, Client]) -> None:
    servicer, client = fake
    with pytest.raises(errors.StatusError) as info:
        await client.update(configmap("cm1", rv="3"))
    assert info.value.reason == "Conflict"
    assert servicer.requests[-1].ref.name == "cm1"


async def test_update_status(fake: tuple[FakeResources, Client]) -> None:
    servicer, client = fake
    pod = core.Pod(metadata=metav1.ObjectMeta(name="p", namespace="default"))
    pod.status.phase = "Running"
    back = await client.update_status(pod)
    assert back.status.phase == "Running"
    assert servicer.requests[-1].ref.resource == "pods" and servicer.requests[-1].ref.name == "p"


@pytest.mark.parametrize(("given", "wire"), [
    ("merge", "application/merge-patch+json"),
    ("strategic", "application/strategic-merge-patch+json"),
    ("json", "application/json-patch+json"),
    ("application/json-patch+json", "application/json-patch+json"),
])
async def test_patch_types_and_body(fake: tuple[FakeResources, Client], given: str, wire: str) -> None:
    servicer, client = fake
    await client.patch(core.ConfigMap, "cm1", "default", {"data": {"a": "2"}}, patch_type=given,
                       subresource="status")
    req = servicer.requests[-1]
    assert req.patch_type == wire and req.subresource == "status"
    assert json.loads(req.patch) == {"data": {"a": "2"}}


async def test_patch_accepts_bytes_and_str(fake: tuple[FakeResources, Client]) -> None:
    servicer, client = fake
    await client.patch(core.ConfigMap, "cm1", "default", '{"x": 1}')
    assert servicer.requests[-1].patch == b'{"x": 1}'
    await client.patch(core.ConfigMap, "cm1", "default", b"[]", patch_type="json")
    assert servicer.requests[-1].patch == b"[]"


async def test_delete_options(fake: tuple[FakeResources, Client]) -> None:
    servicer, client = fake
    result = await client.delete(core.ConfigMap, "cm1", "default")
    assert result.deleted and result.object.metadata.name == "cm1"
    req = servicer.requests[-1]
    assert not req.HasField("preconditions") and not req.HasField("grace_period_seconds")

    result = await client.delete(core.ConfigMap, "kept", "default", propagation_policy="Foreground", uid="u",
                                 grace_period_seconds=0)
    assert not result.deleted
    req = servicer.requests[-1]
    assert req.propagation_policy == "Foreground" and req.preconditions.uid == "u"
    assert req.HasField("grace_period_seconds") and req.grace_period_seconds == 0


async def test_watch_flattens_multi_event_responses_in_order(fake: tuple[FakeResources, Client]) -> None:
    servicer, client = fake
    servicer.watch_responses = [
        svc.WatchResponse(events=[svc.WatchEvent(type="ADDED", object=pack(configmap("a", rv="5")))]),
        svc.WatchResponse(events=[svc.WatchEvent(type="MODIFIED", object=pack(configmap("a", rv="6"))),
                                  svc.WatchEvent(type="DELETED", object=pack(configmap("b", rv="6")))]),
        svc.WatchResponse(events=[svc.WatchEvent(type="BOOKMARK", object=pack(configmap("", rv="9")))]),
    ]
    seen = [(e.type, e.object.metadata.name, e.resource_version)
            async for e in client.watch(core.ConfigMap, "default", resource_version="4", allow_bookmarks=True,
                                        field_selector="metadata.name=a")]
    assert seen == [("ADDED", "a", "5"), ("MODIFIED", "a", "6"), ("DELETED", "b", "6"), ("BOOKMARK", "", "9")]
    req = servicer.requests[-1]
    assert req.resource_version == "4" and req.allow_watch_bookmarks
    assert req.field_selector == "metadata.name=a"


async def test_watch_error_raises_status_error(fake: tuple[FakeResources, Client]) -> None:
    servicer, client = fake
    servicer.watch_responses = [
        svc.WatchResponse(events=[svc.WatchEvent(type="ADDED", object=pack(configmap("a", rv="5")))]),
    ]
    servicer.watch_error = errors.expired("too old resource version: 4 (10)")
    seen: list[WatchEvent[core.ConfigMap]] = []
    with pytest.raises(errors.StatusError) as info:
        async for event in client.watch(core.ConfigMap, resource_version="4"):
            seen.append(event)
    assert info.value.reason == "Expired"
    assert [e.type for e in seen] == ["ADDED"]


async def test_bind_returns_the_pod(fake: tuple[FakeResources, Client]) -> None:
    servicer, client = fake
    pod = await client.bind("default", "web", "node-1", uid="u1")
    assert isinstance(pod, core.Pod)
    assert pod.spec.node_name == "node-1"
    assert servicer.requests[-1].uid == "u1"


async def test_discovery(fake: tuple[FakeResources, Client]) -> None:
    _, client = fake
    resources = await client.server_resources()
    assert [r.name for r in resources] == ["pods"]
    assert (await client.version()).git_version == "v0.1.0"


async def test_unpack_rejects_wrong_type(fake: tuple[FakeResources, Client]) -> None:
    _, client = fake
    # The server answers a Get for a Pod with a ConfigMap: a client bug surfaces, not garbage.
    with pytest.raises(errors.StatusError) as info:
        await client.get(core.Pod, "cm1", "default")
    assert info.value.reason == "InternalError"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_connection_refused_reads_like_kubectl() -> None:
    port = closed_port()
    async with Client(f"127.0.0.1:{port}", scheme=SCHEME, timeout=5) as client:
        with pytest.raises(errors.StatusError) as info:
            await client.get(core.ConfigMap, "x", "default")
    assert info.value.reason == "ServiceUnavailable"
    assert info.value.message == (f"The connection to the server 127.0.0.1:{port} was refused - "
                                  "did you specify the right host or port?")


async def test_closing_a_watch_cancels_the_stream(fake: tuple[FakeResources, Client]) -> None:
    servicer, client = fake
    servicer.watch_responses = [
        svc.WatchResponse(events=[svc.WatchEvent(type="ADDED", object=pack(configmap("a", rv="5")))]),
    ]
    servicer.watch_hangs = True
    stream = client.watch(core.ConfigMap, resource_version="4")
    async with contextlib.aclosing(stream):
        async for _ in stream:
            break
    # The server learns that the consumer went away: no stream leaks per closed watch.
    await asyncio.wait_for(servicer.watch_cancelled.wait(), 10)
