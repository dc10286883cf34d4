"""The REST API's pure parts: paths, content negotiation, query parameters, tables, OpenAPI, exit statuses."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from multidict import MultiDict

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.service.v1 import streaming_pb2 as st
from kubelite.apiserver.rest import openapi, paths, proxy, tables
from kubelite.apiserver.rest.handlers import JSONCache, Query
from kubelite.apiserver.rest.remotecommand import exit_status
from kubelite.machinery import codec
from kubelite.machinery.errors import StatusError


@pytest.mark.parametrize(("path", "want"), [
    ("/api/v1/pods", paths.Target("", "v1", "pods")),
    ("/api/v1/namespaces", paths.Target("", "v1", "namespaces")),
    ("/api/v1/namespaces/kube-system", paths.Target("", "v1", "namespaces", "", "kube-system")),
    ("/api/v1/namespaces/ns1/finalize", paths.Target("", "v1", "namespaces", "", "ns1", "finalize")),
    ("/api/v1/namespaces/ns1/status", paths.Target("", "v1", "namespaces", "", "ns1", "status")),
    ("/api/v1/namespaces/ns1/pods", paths.Target("", "v1", "pods", "ns1")),
    ("/api/v1/namespaces/ns1/pods/p/log", paths.Target("", "v1", "pods", "ns1", "p", "log")),
    ("/api/v1/nodes/n1/status", paths.Target("", "v1", "nodes", "", "n1", "status")),
    ("/apis/apps/v1/namespaces/ns1/deployments/web/scale",
     paths.Target("apps", "v1", "deployments", "ns1", "web", "scale")),
    ("/apis/apps/v1/deployments", paths.Target("apps", "v1", "deployments")),
    # proxy keeps the rest of the path, its trailing slash included.
    ("/api/v1/namespaces/ns1/services/web:http/proxy", paths.Target("", "v1", "services", "ns1", "web:http", "proxy")),
    ("/api/v1/namespaces/ns1/services/web/proxy/", paths.Target("", "v1", "services", "ns1", "web", "proxy", "/")),
    ("/api/v1/namespaces/ns1/pods/p:8080/proxy/metrics/x/",
     paths.Target("", "v1", "pods", "ns1", "p:8080", "proxy", "/metrics/x/")),
])
def test_paths_name_what_kube_apiserver_reads_in_them(path: str, want: paths.Target) -> None:
    assert paths.parse(path) == want


@pytest.mark.parametrize("path", ["/api", "/api/v1", "/apis/apps", "/apis/apps/v1", "/healthz",
                                  "/api/v1/namespaces/ns1/pods/p/log/extra"])
def test_documents_and_unknown_shapes_are_not_resource_paths(path: str) -> None:
    assert paths.parse(path) is None


def test_table_negotiation_follows_the_accept_order() -> None:
    kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io," \
              "application/json"
    assert tables.wants_table(kubectl)
    assert not tables.wants_table("application/json")
    assert not tables.wants_table("application/json, application/json;as=Table;v=v1;g=meta.k8s.io")
    assert not tables.wants_table("")


def test_table_rows_carry_the_cli_columns_and_partial_metadata() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "labels": {"a": "b"},
                        "creationTimestamp": "2026-01-01T00:00:00Z"},
           "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
           "status": {"phase": "Running", "podIP": "10.0.0.5",
                      "containerStatuses": [{"name": "c", "ready": True, "restartCount": 2,
                                             "state": {"running": {}}}]}}
    doc = table("", "Pod", [pod], {"resourceVersion": "7"}, "Metadata")
    names = [(c["name"], c["priority"]) for c in doc["columnDefinitions"]]
    assert names[:5] == [("Name", 0), ("Ready", 0), ("Status", 0), ("Restarts", 0), ("Age", 0)]
    assert ("IP", 1) in names and ("Node", 1) in names and ("Nominated Node", 1) in names
    assert doc["columnDefinitions"][0]["format"] == "name"
    row = doc["rows"][0]
    assert row["cells"][:4] == ["p", "1/1", "Running", "2"]
    assert row["cells"][5:7] == ["10.0.0.5", "n1"]
    assert row["object"] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": pod["metadata"]}
    assert "object" not in table("", "Pod", [pod], {}, "None")["rows"][0]
    assert table("", "Pod", [pod], {}, "Object")["rows"][0]["object"] == pod
    assert "columnDefinitions" not in table("", "Pod", [pod], {}, "Metadata", with_columns=False)
    # A kind without its own columns gets NAME and AGE, as kubectl prints it.
    generic = table("apps", "NoSuchKind", [{"metadata": {"name": "x"}}], {}, "None")
    assert [c["name"] for c in generic["columnDefinitions"]] == ["Name", "Age"]
    pdb = table("policy", "PodDisruptionBudget", [{"metadata": {"name": "x"}, "spec": {"minAvailable": 2},
                                                   "status": {"disruptionsAllowed": 1}}], {}, "None")
    assert pdb["rows"][0]["cells"][:4] == ["x", "2", "N/A", "1"]


def table(group: str, kind: str, objs: list[dict[str, Any]], meta: dict[str, Any], include: str,
          with_columns: bool = True) -> dict[str, Any]:
    """A Table as the client receives it (the rows' objects are pre-serialized JSON on the server)."""
    doc = tables.table_of(group, kind, objs, meta, include, with_columns)
    parsed: dict[str, Any] = orjson.loads(orjson.dumps(doc))
    return parsed


def test_cached_rows_format_their_durations_at_each_request(monkeypatch: pytest.MonkeyPatch) -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    pod = {"metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z", "resourceVersion": "9"},
           "status": {"containerStatuses": [{"name": "c", "restartCount": 3, "state": {"running": {}},
                                             "lastState": {"terminated": {"finishedAt": "2026-01-01T00:00:30Z"}}}]}}
    calls: list[bytes] = []

    def json_of(_store: object, wire: bytes) -> bytes:
        calls.append(wire)
        return orjson.dumps(pod)

    cache = tables.RowCache(json_of)
    spec = tables.spec_for("", "Pod")
    row = cache.get(None, spec, b"state-1")
    assert cache.get(None, spec, b"state-1") is row and calls == [b"state-1"]  # built once per state
    assert row.resource_version == "9"
    for elapsed, restarts, age in ((90, "3 (60s ago)", "90s"), (3 * 3600, "3 (179m ago)", "3h")):
        monkeypatch.setattr(tables.time, "time", lambda e=elapsed: created.timestamp() + e)
        cells = orjson.loads(orjson.dumps(tables.table(spec, [row], None, {}, "None")))["rows"][0]["cells"]
        assert cells[3:5] == [restarts, age]


def q(**params: Any) -> Query:
    md: MultiDict[str] = MultiDict()
    for k, v in params.items():
        for item in v if isinstance(v, list) else [v]:
            md.add(k, item)
    return Query.parse(md)


def test_query_defaults_and_values() -> None:
    d = q()
    assert (d.field_validation, d.include_object, d.dry_run, d.watch, d.limit) == ("Warn", "Metadata", False, False, 0)
    got = q(watch="true", allowWatchBookmarks="1", limit="500", dryRun="All", fieldValidation="Strict",
            sendInitialEvents="true", resourceVersionMatch="NotOlderThan", timeoutSeconds="30")
    assert got.watch and got.allow_bookmarks and got.dry_run and got.send_initial_events
    assert (got.limit, got.field_validation, got.timeout_seconds) == (500, "Strict", 30)


@pytest.mark.parametrize(("params", "message"), [
    ({"limit": "ten"}, 'invalid value "ten" for limit'),
    ({"dryRun": "Maybe"}, 'unsupported dryRun value "Maybe"'),
    ({"fieldValidation": "Loose"}, 'invalid fieldValidation value "Loose"'),
    ({"includeObject": "All"}, 'invalid includeObject value "All"'),
    ({"resourceVersionMatch": "Newest"}, 'invalid resourceVersionMatch value "Newest"'),
    ({"timeoutSeconds": "1.5"}, 'invalid value "1.5" for timeoutSeconds'),
])
def test_bad_query_parameters_are_400s_naming_them(params: dict[str, str], message: str) -> None:
    with pytest.raises(StatusError) as err:
        q(**params)
    assert err.value.code == 400 and message in err.value.message


def test_the_json_cache_encodes_a_state_once_and_stays_bounded() -> None:
    class Store:
        calls = 0

        def decode(self, wire: bytes) -> core.ConfigMap:
            Store.calls += 1
            return core.ConfigMap.FromString(wire)

    store: Any = Store()
    cache = JSONCache(max_bytes=2000)
    wires = []
    for i in range(20):
        cm = core.ConfigMap(api_version="v1", kind="ConfigMap")
        cm.metadata.name = f"cm{i}"
        cm.data["k"] = "v" * 40
        wires.append(cm.SerializeToString())
    first = cache.get(store, wires[0])
    assert cache.get(store, wires[0]) is first and Store.calls == 1
    assert first.startswith(b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm0"}')
    for w in wires:
        cache.get(store, w)
    assert cache._size <= 2000 and wires[0] not in cache._entries and wires[-1] in cache._entries


def test_openapi_documents_have_the_gvk_patch_parameters_and_real_schemas() -> None:
    class FakeStore:
        def __init__(self, rt: Any) -> None:
            self.rt = rt
            self.subresources = {"status": object()}

    from kubelite.machinery.kinds import SCHEME

    class Registry:
        stores = {(rt.group, rt.resource): FakeStore(rt) for rt in SCHEME}

    api = openapi.OpenAPI(Registry())  # type: ignore[arg-type]
    index = api.index()["paths"]
    assert {"api/v1", "apis/apps/v1", "apis/policy/v1"} <= set(index)
    assert index["api/v1"]["serverRelativeURL"].startswith("/openapi/v3/api/v1?hash=")
    doc = api.document("api/v1")
    assert doc is not None
    patch = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "", "kind": "Pod", "version": "v1"}
    assert any(p["name"] == "fieldValidation" and p["in"] == "query" for p in patch["parameters"])
    schemas = doc["components"]["schemas"]
    pod = schemas["io.k8s.api.core.v1.Pod"]
    assert pod["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "Pod", "version": "v1"}]
    container = schemas["io.k8s.api.core.v1.Container"]["properties"]
    assert container["image"] == {"type": "string"}
    assert container["ports"]["items"]["allOf"][0]["$ref"] == "#/components/schemas/io.k8s.api.core.v1.ContainerPort"
    assert container["ports"]["x-kubernetes-patch-merge-key"] == "containerPort"
    assert schemas["io.k8s.api.core.v1.ContainerPort"]["properties"]["containerPort"] == {"type": "integer",
                                                                                           "format": "int32"}
    meta = schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]
    assert meta["creationTimestamp"] == {"type": "string", "format": "date-time"}
    assert meta["labels"] == {"type": "object", "additionalProperties": {"type": "string"}}
    probe = schemas["io.k8s.api.core.v1.HTTPGetAction"]["properties"]["port"]
    assert probe["x-kubernetes-int-or-string"] is True
    assert api.document("apis/nope/v1") is None


def test_exit_status_is_what_kubectl_reads_its_exit_code_from() -> None:
    assert exit_status(st.ExitStatus(exit_code=0), ["true"]) == {"metadata": {}, "status": "Success"}
    failed = exit_status(st.ExitStatus(exit_code=7, reason="NonZeroExitCode"), ["sh", "-c", "exit 7"])
    assert failed["reason"] == "NonZeroExitCode"
    assert failed["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}]
    assert "exit code 7" in failed["message"]
    other = exit_status(st.ExitStatus(exit_code=-1, reason="ContainerNotFound", message="no such container"), ["x"])
    assert other["status"] == "Failure" and other["message"] == "no such container"


def test_empty_required_fields_are_written_as_kubernetes_writes_them() -> None:
    status = codec.encode(core.ContainerStatus(name="c"))
    assert status == {"name": "c", "ready": False, "restartCount": 0, "image": "", "imageID": ""}
    assert codec.encode(core.Binding()) == {"target": {}}
    # Unset optional fields stay out, and set ones keep their order.
    port = codec.encode(core.ServicePort(name="http"))
    assert list(port) == ["name", "port"] and port["port"] == 0


def test_unknown_fields_can_be_dropped_and_reported() -> None:
    obj, unknown = codec.decode_unknown_allowed({"metadata": {"name": "x", "colour": 1}, "data": {"a": "b"},
                                                 "extra": True}, core.ConfigMap)
    assert obj.metadata.name == "x" and dict(obj.data) == {"a": "b"}
    assert unknown == ["metadata.colour", "extra"]
    with pytest.raises(StatusError) as err:
        codec.decode_unknown_allowed({"metadata": {"name": 3}, "bogus": 1}, core.ConfigMap)
    assert "metadata.name" in err.value.message and "bogus" not in err.value.message


def test_proxy_targets_split_as_kubernetes_splits_them() -> None:
    assert proxy.split_name("web") == ("", "web", "")
    assert proxy.split_name("web:http") == ("", "web", "http")
    assert proxy.split_name("https:web:443") == ("https", "web", "443")
    with pytest.raises(StatusError, match="invalid proxy target"):
        proxy.split_name("ftp:web:21")


def _service(ports: list[dict[str, object]]) -> core.Service:
    svc = codec.decode_into({"metadata": {"name": "web"}, "spec": {"ports": ports}}, core.Service)
    assert isinstance(svc, core.Service)
    return svc


def test_a_service_port_leads_to_the_endpoint_port_of_the_same_name() -> None:
    svc = _service([{"name": "http", "port": 80, "targetPort": "web"}, {"name": "metrics", "port": 9100}])
    eps = codec.decode_into({"metadata": {"name": "web"}, "subsets": [
        {"addresses": [{"ip": "10.244.1.5"}], "notReadyAddresses": [{"ip": "10.244.2.9"}],
         "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9100}]}]}, core.Endpoints)
    assert isinstance(eps, core.Endpoints)
    rng = random.Random(1)
    assert proxy.service_location(svc, eps, "", "http", rng) == ("http", "10.244.1.5", 8080)
    assert proxy.service_location(svc, eps, "", "80", rng) == ("http", "10.244.1.5", 8080)  # by number too
    assert proxy.service_location(svc, eps, "https", "metrics", rng) == ("https", "10.244.1.5", 9100)
    with pytest.raises(StatusError, match='no service port "grpc" found for service "web"'):
        proxy.service_location(svc, eps, "", "grpc", rng)
    with pytest.raises(StatusError, match='no endpoints available for service "web"') as refused:
        proxy.service_location(svc, None, "", "http", rng)
    assert refused.value.code == 503


def test_a_pod_port_is_a_number_or_a_container_port_name() -> None:
    pod = codec.decode_into({"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "c", "image": "i", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"podIP": "10.244.1.5"}}, core.Pod)
    assert isinstance(pod, core.Pod)
    assert proxy.pod_location(pod, "", "") == ("http", "10.244.1.5", 80)
    assert proxy.pod_location(pod, "", "http") == ("http", "10.244.1.5", 8080)
    assert proxy.pod_location(pod, "https", "9443") == ("https", "10.244.1.5", 9443)
    with pytest.raises(StatusError, match='no container port named "admin"'):
        proxy.pod_location(pod, "", "admin")


@pytest.mark.parametrize("ip", ["127.0.0.1", "169.254.169.254", "::1", "0.0.0.0"])
def test_the_proxy_never_goes_to_loopback_or_link_local(ip: str) -> None:
    with pytest.raises(StatusError, match="address not allowed"):
        proxy.check_destination(ip)
    proxy.check_destination("10.244.1.5")


def test_event_tables_are_sorted_by_last_seen_with_objects_kept_in_step() -> None:
    events = [{"metadata": {"name": name}, "lastTimestamp": ts, "reason": name}
              for name, ts in (("late", "2026-01-01T00:05:00Z"), ("early", "2026-01-01T00:01:00Z"))]
    doc = table("", "Event", events, {}, "Object")
    assert [r["object"]["metadata"]["name"] for r in doc["rows"]] == ["early", "late"]
    assert [r["object"]["reason"] for r in doc["rows"]] == ["early", "late"]
