"""The REST API at the HTTP level: discovery documents and bad input, against a real API server.

Every refusal must be a Status object with Kubernetes' code and reason, name
the field or cause, and leave nothing written (checked through gRPC, which
reads the same store).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.machinery.errors import StatusError
from tests.support.apiserver import APIServerProcess

AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"


@pytest.fixture
async def http(apiserver: APIServerProcess) -> Any:
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{apiserver.http_port}") as session:
        yield session


async def call(session: aiohttp.ClientSession, method: str, path: str, body: bytes | str | None = None,
               content_type: str | None = "application/json", **headers: str) -> tuple[int, Any, Any]:
    hdrs = dict(headers)
    if content_type is not None and body is not None:
        hdrs["Content-Type"] = content_type
    skip = ["Content-Type"] if content_type is None else []  # aiohttp would label a str body text/plain
    async with session.request(method, path, data=body, headers=hdrs, skip_auto_headers=skip) as resp:
        text = await resp.read()
        try:
            doc = json.loads(text)
        except ValueError:
            doc = text
        return resp.status, doc, resp.headers


def cm(name: str, **extra: Any) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "b"},
                       **extra})


async def test_discovery_in_both_forms(http: aiohttp.ClientSession) -> None:
    code, doc, _ = await call(http, "GET", "/api")
    assert code == 200 and doc["kind"] == "APIVersions" and doc["versions"] == ["v1"]
    code, doc, _ = await call(http, "GET", "/apis")
    groups = {g["name"]: g for g in doc["groups"]}
    assert {"apps", "policy", "coordination.k8s.io", "scheduling.k8s.io"} <= set(groups)
    assert groups["apps"]["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
    code, doc, _ = await call(http, "GET", "/apis/apps/v1")
    by_name = {r["name"]: r for r in doc["resources"]}
    assert by_name["deployments"]["shortNames"] == ["deploy"] and "deletecollection" in by_name["deployments"]["verbs"]
    assert by_name["deployments/scale"] == {"name": "deployments/scale", "singularName": "", "namespaced": True,
                                            "kind": "Scale", "verbs": by_name["deployments/scale"]["verbs"],
                                            "group": "autoscaling", "version": "v1"}
    code, doc, headers = await call(http, "GET", "/apis", Accept=AGGREGATED)
    assert headers["Content-Type"].startswith("application/json;g=apidiscovery.k8s.io;v=v2")
    assert doc["kind"] == "APIGroupDiscoveryList"
    apps = next(i for i in doc["items"] if i["metadata"]["name"] == "apps")
    deploy = next(r for r in apps["versions"][0]["resources"] if r["resource"] == "deployments")
    assert deploy["scope"] == "Namespaced" and deploy["responseKind"]["kind"] == "Deployment"
    assert {"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
            "verbs": next(s["verbs"] for s in deploy["subresources"] if s["subresource"] == "scale")} \
        in deploy["subresources"]
    code, doc, _ = await call(http, "GET", "/api", Accept=AGGREGATED)
    pods = next(r for r in doc["items"][0]["versions"][0]["resources"] if r["resource"] == "pods")
    assert "all" in pods["categories"] and {"log", "exec", "status", "binding", "eviction"} <= {
        s["subresource"] for s in pods["subresources"]}
    for path in ("/version", "/version/"):
        code, doc, _ = await call(http, "GET", path)
        assert code == 200 and doc["major"] == "1"
    code, doc, _ = await call(http, "GET", "/apis/nosuch.example.com/v1")
    assert code == 404 and doc["kind"] == "Status" and doc["reason"] == "NotFound"


async def test_bad_bodies_are_refused_with_the_cause_and_store_nothing(
        http: aiohttp.ClientSession, client: Client, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/configmaps"
    cases: list[tuple[bytes | str, str | None, int, str, str]] = [
        ("{not json", "application/json", 400, "BadRequest", "error decoding the request body"),
        ("[1, 2]", "application/json", 400, "BadRequest", "must be an object"),
        (cm("x", bogus=1), "application/json", 400, "BadRequest", 'unknown field "bogus"'),
        (cm("x").replace('"data"', '"data":{},"data"'), "application/json", 400, "BadRequest",
         'duplicate field "data"'),
        (cm("Not_Valid"), "application/json", 422, "Invalid", "metadata.name"),
        (json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}), "application/json", 400,
         "BadRequest", "is of kind Secret"),
        (json.dumps({"apiVersion": "v2", "kind": "ConfigMap", "metadata": {"name": "x"}}), "application/json",
         400, "BadRequest", "does not match the expected API version"),
        (json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "other"}}),
         "application/json", 400, "BadRequest", "does not match the namespace"),
        (json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": 1}}),
         "application/json", 400, "BadRequest", "data[a]: Invalid type"),
        (b"\x00k8s", "application/vnd.kubernetes.protobuf", 415, "UnsupportedMediaType", "--dry-run=client"),
        ("a=b", "text/plain", 415, "UnsupportedMediaType", "unknown format"),
    ]
    for body, ctype, code, reason, text in cases:
        got, doc, _ = await call(http, "POST", f"{base}?fieldValidation=Strict", body, ctype)
        assert (got, doc["kind"], doc["reason"]) == (code, "Status", reason), (body, doc)
        assert text in doc["message"], (text, doc["message"])
        assert doc["code"] == code
    with pytest.raises(StatusError):
        await client.get(core.ConfigMap, "x", ns)
    # Oversized bodies: the 3 MiB request limit, as kube-apiserver's.
    got, doc, _ = await call(http, "POST", base, cm("big", data={"a": "x" * (4 * 1024 * 1024)}))
    assert got == 413 and doc["reason"] == "RequestEntityTooLarge"
    # Inside the request limit, over a ConfigMap's 1 MiB of data: Invalid, naming the field.
    got, doc, _ = await call(http, "POST", base, cm("big", data={"a": "x" * (2 * 1024 * 1024)}))
    assert got == 422 and doc["details"]["causes"][0]["field"] == "data", doc["message"]
    # Warn (the default) accepts the object without its unknown field and says so.
    got, doc, headers = await call(http, "POST", base, cm("warned", bogus=1))
    assert got == 201 and 'unknown field \\"bogus\\"' in headers["Warning"] and "bogus" not in doc
    # Ignore says nothing; a body without a Content-Type is JSON (the Python client posts that way).
    got, doc, headers = await call(http, "POST", f"{base}?fieldValidation=Ignore", cm("quiet", bogus=1), None)
    assert got == 201 and "Warning" not in headers
    got, doc, _ = await call(http, "POST", f"{base}?fieldValidation=Loose", cm("y"))
    assert got == 400 and "fieldValidation" in doc["message"]


async def test_verbs_paths_and_preconditions(http: aiohttp.ClientSession, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/configmaps"
    got, made, _ = await call(http, "POST", base, cm("c"))
    assert got == 201 and made["metadata"]["resourceVersion"]
    got, doc, _ = await call(http, "POST", f"{base}?dryRun=All", cm("dry"))
    assert got == 201 and (await call(http, "GET", f"{base}/dry"))[0] == 404
    got, doc, _ = await call(http, "PUT", f"{base}/other", json.dumps(made))
    assert got == 400 and "does not match the name on the URL" in doc["message"]
    stale = dict(made, data={"a": "c"})
    got, _, _ = await call(http, "PUT", f"{base}/c", json.dumps(stale))
    assert got == 200
    got, doc, _ = await call(http, "PUT", f"{base}/c", json.dumps(stale))
    assert got == 409 and doc["reason"] == "Conflict"
    got, doc, _ = await call(http, "PATCH", f"{base}/c", '{"data":{"b":"d"}}', "application/apply-patch+yaml")
    assert got == 400 and "field manager is required" in doc["message"]
    got, doc, _ = await call(http, "PATCH", f"{base}/c?fieldManager=me", '{"data":{"b":"d"}}',
                             "application/apply-patch+yaml")
    assert got == 400 and "must name their apiVersion and kind" in doc["message"]
    got, doc, _ = await call(http, "PATCH", f"{base}/c?fieldManager=me", cm("other"), "application/apply-patch+yaml")
    assert got == 400 and "does not match the name on the URL" in doc["message"]
    got, doc, _ = await call(http, "PATCH", f"{base}/c?fieldManager=me", "a: [", "application/apply-patch+yaml")
    assert got == 400
    got, doc, _ = await call(http, "PATCH", f"{base}/c", '[{"op":"test","path":"/data/a","value":"zzz"}]',
                             "application/json-patch+json")
    assert got == 422 and doc["reason"] == "Invalid" and "not equal to tested value" in doc["message"]
    got, doc, _ = await call(http, "PATCH", f"{base}/c", '[{"op":"frobnicate","path":"/data/a"}]',
                             "application/json-patch+json")
    assert got == 400 and doc["reason"] == "BadRequest"
    got, doc, _ = await call(http, "DELETE", f"{base}/c",
                             json.dumps({"preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}}))
    assert got == 409 and "Precondition failed" in doc["message"]
    got, doc, _ = await call(http, "DELETE", f"{base}/c", json.dumps({"propagationPolicy": "Sideways"}))
    assert got == 400 and "propagationPolicy" in doc["message"]
    got, doc, _ = await call(http, "DELETE", f"{base}/c")
    assert got == 200 and doc["status"] == "Success" and doc["details"]["name"] == "c"
    got, doc, _ = await call(http, "GET", f"/api/v1/namespaces/{ns}/widgets")
    assert got == 404 and doc["reason"] == "NotFound"
    got, doc, _ = await call(http, "POST", "/api/v1/configmaps", cm("nowhere"))
    assert got == 405 and doc["reason"] == "MethodNotAllowed"
    got, doc, _ = await call(http, "GET", f"/api/v1/namespaces/{ns}/nodes")
    assert got == 404
    got, doc, _ = await call(http, "GET", f"{base}?labelSelector=a%20in%20(")
    assert got == 400
    got, doc, _ = await call(http, "GET", f"{base}?fieldSelector=spec.nope%3Dx")
    assert got == 400 and "field label not supported" in doc["message"]
    # deletecollection takes selectors and returns what it deleted.
    for name in ("d1", "d2"):
        await call(http, "POST", base, json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                                   "metadata": {"name": name, "labels": {"x": "y"}}}))
    got, doc, _ = await call(http, "DELETE", f"{base}?labelSelector=x%3Dy")
    assert got == 200 and sorted(i["metadata"]["name"] for i in doc["items"]) == ["d1", "d2"]
    got, doc, _ = await call(http, "GET", base)
    assert doc["kind"] == "ConfigMapList" and doc["items"] == []


async def test_list_pages_and_watch_list(http: aiohttp.ClientSession, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/configmaps"
    for i in range(5):
        await call(http, "POST", base, cm(f"p{i}"))
    got, page, _ = await call(http, "GET", f"{base}?limit=2")
    assert [i["metadata"]["name"] for i in page["items"]] == ["p0", "p1"]
    assert page["metadata"]["continue"] and page["metadata"]["remainingItemCount"] == 3
    got, page2, _ = await call(http, "GET", f"{base}?limit=2&continue={page['metadata']['continue']}")
    assert [i["metadata"]["name"] for i in page2["items"]] == ["p2", "p3"]
    url = (f"{base}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
           f"&timeoutSeconds=2")
    async with http.get(url) as resp:
        events = [json.loads(line) async for line in resp.content]
    added = [e["object"]["metadata"]["name"] for e in events if e["type"] == "ADDED"]
    assert added == ["p0", "p1", "p2", "p3", "p4"]
    end = [e for e in events if e["type"] == "BOOKMARK"
           and e["object"]["metadata"].get("annotations", {}).get("k8s.io/initial-events-end") == "true"]
    assert len(end) == 1 and events.index(end[0]) == 5
    got, doc, _ = await call(http, "GET", f"{base}?watch=true&sendInitialEvents=true")
    assert got == 422 and "allowWatchBookmarks" in json.dumps(doc)
    # A watch whose events are Tables, as kubectl get -w asks for them.
    async with http.get(f"{base}?watch=true&timeoutSeconds=1",
                        headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}) as resp:
        rows = [json.loads(line) async for line in resp.content]
    assert rows[0]["object"]["kind"] == "Table" and "columnDefinitions" in rows[0]["object"]
    assert "columnDefinitions" not in rows[1]["object"]
    assert rows[0]["object"]["rows"][0]["cells"][:2] == ["p0", "1"]


async def test_a_credential_nobody_accepts_is_401_everywhere(http: aiohttp.ClientSession, ns: str) -> None:
    bogus = {"Authorization": "Bearer abcdef.0123456789abcdef"}  # a bootstrap token's shape, with no Secret
    for path in ("/version", "/api", "/apis", "/api/v1", "/openapi/v3", f"/api/v1/namespaces/{ns}/configmaps"):
        got, doc, _ = await call(http, "GET", path, **bogus)
        assert (got, doc["reason"]) == (401, "Unauthorized"), path
    got, _, _ = await call(http, "GET", f"/api/v1/namespaces/{ns}/configmaps")
    assert got == 200  # no credential: anonymous requests are still let through
