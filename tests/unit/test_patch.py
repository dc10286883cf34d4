"""Merge, JSON and strategic merge patches, and the patches `kubelite apply` sends."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kubelite.api.apps.v1 import generated_pb2 as apps_v1
from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.machinery import codec, patch
from kubelite.machinery.errors import StatusError


def pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web", "tier": "fe"}},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "app:1",
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "ports": [{"containerPort": 80}, {"containerPort": 443, "name": "https"}],
                },
                {"name": "sidecar", "image": "side:1"},
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }


def smp(target: dict[str, Any], p: dict[str, Any], t: Any = core_v1.Pod) -> dict[str, Any]:
    before = copy.deepcopy(target)
    out = patch.strategic_merge_patch(target, p, t)
    assert target == before, "the target must not be modified"
    codec.decode_into(out, t)  # the result is still a valid object
    return out


# ---- JSON merge patch (RFC 7386) -------------------------------------------------------------


def test_json_merge_patch_rfc_examples() -> None:
    target = {"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"},
              "tags": ["example", "sample"], "content": "This will be unchanged"}
    p = {"title": "Hello!", "phoneNumber": "+01-123-456-7890", "author": {"familyName": None}, "tags": ["example"]}
    assert patch.json_merge_patch(target, p) == {
        "title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"],
        "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890",
    }
    assert target["author"] == {"givenName": "John", "familyName": "Doe"}
    assert patch.json_merge_patch({"a": "b"}, {"a": {"b": "c"}}) == {"a": {"b": "c"}}
    assert patch.json_merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert patch.json_merge_patch(["a"], {"a": "b"}) == {"a": "b"}
    assert patch.json_merge_patch({"a": "foo"}, "bar") == "bar"
    assert patch.json_merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}


def test_merge_patch_replaces_lists_whole() -> None:
    out = patch.json_merge_patch(pod(), {"spec": {"containers": [{"name": "app", "image": "app:2"}]}})
    assert out["spec"]["containers"] == [{"name": "app", "image": "app:2"}]


# ---- JSON patch (RFC 6902) -------------------------------------------------------------------


def test_json_patch() -> None:
    ops = [
        {"op": "replace", "path": "/spec/containers/0/image", "value": "app:2"},
        {"op": "add", "path": "/metadata/labels/new", "value": "x"},
        {"op": "remove", "path": "/metadata/labels/tier"},
    ]
    out = patch.json_patch(pod(), ops)
    assert out["spec"]["containers"][0]["image"] == "app:2"
    assert out["metadata"]["labels"] == {"app": "web", "new": "x"}
    assert patch.json_patch(pod(), json.dumps(ops)) == out


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "frobnicate", "path": "/a"}],
        [{"path": "/a"}],
        {"op": "add"},
        "not json",
    ],
)
def test_unreadable_json_patches_are_bad_requests(ops: Any) -> None:
    with pytest.raises(StatusError) as info:
        patch.json_patch(pod(), ops)
    assert info.value.reason == "BadRequest"


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "remove", "path": "/metadata/nope"}],
        [{"op": "test", "path": "/metadata/name", "value": "other"}],
    ],
)
def test_json_patches_that_do_not_apply_are_invalid(ops: Any) -> None:
    with pytest.raises(StatusError) as info:
        patch.json_patch(pod(), ops)
    assert (info.value.reason, info.value.code) == ("Invalid", 422)


# ---- strategic merge patch -------------------------------------------------------------------


def test_smp_merges_containers_by_name() -> None:
    out = smp(pod(), {"spec": {"containers": [{"name": "sidecar", "image": "side:2"}]}})
    assert [c["name"] for c in out["spec"]["containers"]] == ["app", "sidecar"]
    assert out["spec"]["containers"][1] == {"name": "sidecar", "image": "side:2"}
    assert out["spec"]["containers"][0] == pod()["spec"]["containers"][0]


def test_smp_appends_new_keyed_elements() -> None:
    out = smp(pod(), {"spec": {"containers": [{"name": "new", "image": "n:1"}]}})
    assert [c["name"] for c in out["spec"]["containers"]] == ["app", "sidecar", "new"]


def test_smp_merges_env_by_name_and_ports_by_container_port() -> None:
    p = {"spec": {"containers": [{
        "name": "app",
        "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}],
        "ports": [{"containerPort": 443, "protocol": "TCP"}, {"containerPort": 8080}],
    }]}}
    c = smp(pod(), p)["spec"]["containers"][0]
    assert c["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "20"}, {"name": "C", "value": "3"}]
    assert c["ports"] == [{"containerPort": 80}, {"containerPort": 443, "name": "https", "protocol": "TCP"},
                          {"containerPort": 8080}]
    assert c["image"] == "app:1"


def test_smp_delete_directive_in_keyed_list() -> None:
    p = {"spec": {"containers": [
        {"name": "sidecar", "$patch": "delete"},
        {"name": "app", "env": [{"name": "A", "$patch": "delete"}], "ports": [{"containerPort": 80,
                                                                              "$patch": "delete"}]},
    ]}}
    out = smp(pod(), p)
    assert [c["name"] for c in out["spec"]["containers"]] == ["app"]
    assert out["spec"]["containers"][0]["env"] == [{"name": "B", "value": "2"}]
    assert out["spec"]["containers"][0]["ports"] == [{"containerPort": 443, "name": "https"}]


def test_smp_replace_directive_in_list() -> None:
    p = {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "o:1"}]}}
    assert smp(pod(), p)["spec"]["containers"] == [{"name": "only", "image": "o:1"}]


def test_smp_replace_and_delete_directives_on_objects() -> None:
    out = smp(pod(), {"metadata": {"labels": {"$patch": "replace", "only": "x"}}})
    assert out["metadata"]["labels"] == {"only": "x"}
    out = smp(pod(), {"metadata": {"labels": {"$patch": "delete"}}})
    assert "labels" not in out["metadata"]


def test_smp_null_deletes_and_maps_merge() -> None:
    out = smp(pod(), {"metadata": {"labels": {"tier": None, "new": "y"}}, "spec": {"volumes": None}})
    assert out["metadata"]["labels"] == {"app": "web", "new": "y"}
    assert "volumes" not in out["spec"]


def test_smp_replaces_lists_without_merge_key() -> None:
    target = pod()
    target["spec"]["containers"][0]["args"] = ["a", "b"]
    out = smp(target, {"spec": {"containers": [{"name": "app", "args": ["c"]}]}})
    assert out["spec"]["containers"][0]["args"] == ["c"]


def test_smp_merges_set_lists() -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"},
            "spec": {"podCIDRs": ["10.244.1.0/24"]}}
    out = smp(node, {"spec": {"podCIDRs": ["10.244.1.0/24", "fd00::/64"]}}, core_v1.Node)
    assert out["spec"]["podCIDRs"] == ["10.244.1.0/24", "fd00::/64"]
    out = smp(out, {"spec": {"$deleteFromPrimitiveList/podCIDRs": ["10.244.1.0/24"]}}, core_v1.Node)
    assert out["spec"]["podCIDRs"] == ["fd00::/64"]


def test_smp_applies_retain_keys_and_set_element_order() -> None:
    p = {"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
                  "containers": [{"name": "app", "image": "app:2"}]}}
    out = smp(pod(), p)
    app = next(c for c in out["spec"]["containers"] if c["name"] == "app")
    assert app["image"] == "app:2"
    dep = codec.load_documents("""
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1}}
""")[0]
    out = smp(dep, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}, apps_v1.Deployment)
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_smp_deployment_template_recurses_with_the_right_types() -> None:
    dep = codec.encode(codec.decode(codec.load_documents("""
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: d}}
    spec:
      containers:
      - {name: a, image: a:1}
      - {name: b, image: b:1}
""")[0]))
    out = smp(dep, {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "b:2"}]}}}},
              apps_v1.Deployment)
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "a", "image": "a:1"},
                                                             {"name": "b", "image": "b:2"}]


@pytest.mark.parametrize(
    "p",
    [
        {"spec": {"containers": [{"image": "no-name"}]}},
        {"spec": {"containers": ["not-an-object"]}},
        {"spec": {"$patch": "explode"}},
    ],
)
def test_smp_errors(p: dict[str, Any]) -> None:
    with pytest.raises(StatusError) as info:
        patch.strategic_merge_patch(pod(), p, core_v1.Pod)
    assert info.value.reason == "BadRequest"


def test_apply_patch_dispatches_on_type() -> None:
    p = {"spec": {"containers": [{"name": "sidecar", "image": "side:2"}]}}
    assert len(patch.apply_patch(pod(), p, "strategic", core_v1.Pod)["spec"]["containers"]) == 2
    assert len(patch.apply_patch(pod(), p, patch.MERGE_PATCH, core_v1.Pod)["spec"]["containers"]) == 1
    ops = '[{"op": "replace", "path": "/metadata/name", "value": "x"}]'
    assert patch.apply_patch(pod(), ops, "json", None)["metadata"]["name"] == "x"
    with pytest.raises(StatusError) as info:
        patch.apply_patch(pod(), p, "application/yaml", core_v1.Pod)
    assert info.value.reason == "UnsupportedMediaType"


# ---- three-way (kubectl apply) and two-way patches -------------------------------------------


def applied(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the server holds after creating ``manifest``: defaults and status added."""
    live = copy.deepcopy(manifest)
    live["metadata"].update({"uid": "u-1", "resourceVersion": "7", "creationTimestamp": "2024-01-01T00:00:00Z"})
    for c in live["spec"]["containers"]:
        c.setdefault("imagePullPolicy", "IfNotPresent")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
    live["spec"]["restartPolicy"] = "Always"
    live["spec"]["nodeName"] = "node-1"
    live["status"] = {"phase": "Running", "podIP": "10.244.1.5"}
    return live


def three_way(original: dict[str, Any] | None, modified: dict[str, Any],
              current: dict[str, Any]) -> dict[str, Any]:
    return patch.create_three_way_merge_patch(original, modified, current, core_v1.Pod)


def roundtrip(original: dict[str, Any], modified: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    live = applied(original)
    p = three_way(original, modified, live)
    return p, smp(live, p)


def test_three_way_unchanged_manifest_is_empty() -> None:
    m = pod()
    assert three_way(m, m, applied(m)) == {}


def test_three_way_changed_image() -> None:
    new = pod()
    new["spec"]["containers"][0]["image"] = "app:2"
    p, result = roundtrip(pod(), new)
    assert p == {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}
    assert result["spec"]["containers"][0]["image"] == "app:2"
    # server defaults survive
    assert result["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"


def test_three_way_removed_label_is_null() -> None:
    new = pod()
    del new["metadata"]["labels"]["tier"]
    p, result = roundtrip(pod(), new)
    assert p == {"metadata": {"labels": {"tier": None}}}
    assert result["metadata"]["labels"] == {"app": "web"}


def test_three_way_removed_container_from_keyed_list() -> None:
    new = pod()
    new["spec"]["containers"] = new["spec"]["containers"][:1]
    p, result = roundtrip(pod(), new)
    assert p == {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}
    assert [c["name"] for c in result["spec"]["containers"]] == ["app"]


def test_three_way_removed_env_and_port() -> None:
    new = pod()
    new["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    new["spec"]["containers"][0]["ports"] = [{"containerPort": 443, "name": "https"}]
    _, result = roundtrip(pod(), new)
    c = result["spec"]["containers"][0]
    assert c["env"] == [{"name": "A", "value": "1"}]
    assert c["ports"] == [{"containerPort": 443, "name": "https"}]


def test_three_way_leaves_server_defaulted_and_status_fields() -> None:
    new = pod()
    new["metadata"]["labels"]["extra"] = "1"
    p, result = roundtrip(pod(), new)
    assert p == {"metadata": {"labels": {"extra": "1"}}}
    live = applied(pod())
    for path in (("spec", "nodeName"), ("spec", "restartPolicy"), ("status",), ("metadata", "uid")):
        a: Any = result
        b: Any = live
        for k in path:
            a, b = a[k], b[k]
        assert a == b


def test_three_way_reverts_a_live_change_to_an_applied_field() -> None:
    live = applied(pod())
    live["spec"]["containers"][0]["image"] = "hand-edited"
    p = three_way(pod(), pod(), live)
    assert p == {"spec": {"containers": [{"name": "app", "image": "app:1"}]}}


def test_three_way_does_not_delete_fields_never_applied() -> None:
    live = applied(pod())
    live["metadata"]["labels"]["added-by-someone"] = "x"
    assert three_way(pod(), pod(), live) == {}


def test_three_way_without_original_only_adds_and_changes() -> None:
    new = pod()
    del new["metadata"]["labels"]["tier"]
    new["spec"]["containers"][0]["image"] = "app:2"
    p = three_way(None, new, applied(pod()))
    assert p == {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}


def test_three_way_combines_deletions_and_changes_in_one_list() -> None:
    new = pod()
    new["spec"]["containers"] = [{"name": "app", "image": "app:3", "env": [{"name": "A", "value": "1"}],
                                  "ports": pod()["spec"]["containers"][0]["ports"]}]
    p, result = roundtrip(pod(), new)
    assert sorted(json.dumps(e, sort_keys=True) for e in p["spec"]["containers"]) == sorted([
        json.dumps({"name": "sidecar", "$patch": "delete"}, sort_keys=True),
        json.dumps({"name": "app", "image": "app:3", "env": [{"name": "B", "$patch": "delete"}]}, sort_keys=True),
    ])
    assert [c["name"] for c in result["spec"]["containers"]] == ["app"]
    assert result["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]


def test_three_way_int_or_string_number_equals_string() -> None:
    svc: dict[str, Any] = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"ports": [{"port": 80, "targetPort": 9376}]}}
    live = copy.deepcopy(svc)
    live["spec"]["ports"][0]["targetPort"] = "9376"
    live["spec"]["clusterIP"] = "10.96.0.12"
    assert patch.create_three_way_merge_patch(svc, svc, live, core_v1.Service) == {}


def test_two_way_patch() -> None:
    new = pod()
    new["spec"]["containers"][0]["image"] = "app:2"
    del new["metadata"]["labels"]["tier"]
    new["spec"]["containers"] = new["spec"]["containers"][:1]
    p = patch.create_two_way_merge_patch(pod(), new, core_v1.Pod)
    assert p["metadata"] == {"labels": {"tier": None}}
    assert smp(pod(), p) == new
    assert patch.create_two_way_merge_patch(pod(), pod(), core_v1.Pod) == {}


def test_two_way_set_list_uses_delete_from_primitive_list() -> None:
    a: dict[str, Any] = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"},
                         "spec": {"podCIDRs": ["a", "b"]}}
    b = copy.deepcopy(a)
    b["spec"]["podCIDRs"] = ["b", "c"]
    p = patch.create_two_way_merge_patch(a, b, core_v1.Node)
    assert p == {"spec": {"podCIDRs": ["c"], "$deleteFromPrimitiveList/podCIDRs": ["a"]}}
    assert patch.strategic_merge_patch(a, p, core_v1.Node)["spec"]["podCIDRs"] == ["b", "c"]


# ---- directives kubectl apply sends ----------------------------------------------------------


def test_retain_keys_clears_the_union_members_the_patch_drops() -> None:
    live = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    out = patch.strategic_merge_patch(live, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
                                      apps_v1.Deployment)
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    with pytest.raises(StatusError) as err:
        patch.strategic_merge_patch(live, {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}},
                                    apps_v1.Deployment)
    assert '"rollingUpdate" is not present in the $retainKeys list' in err.value.message


def test_set_element_order_orders_merged_lists() -> None:
    live = {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}],
                     "finalizers": ["x", "y"]}, "metadata": {"finalizers": ["x", "y"]}}
    out = patch.strategic_merge_patch(live, {"spec": {
        "$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}],
        "containers": [{"name": "c", "image": "3"}]},
        "metadata": {"$setElementOrder/finalizers": ["y", "x"]}}, core_v1.Pod)
    assert [c["name"] for c in out["spec"]["containers"]] == ["c", "b", "a"]
    assert out["metadata"]["finalizers"] == ["y", "x"]
