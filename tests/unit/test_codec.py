"""The codec must read manifests as kubectl does and report every bad field by path."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubelite.api.apps.v1 import generated_pb2 as apps_v1
from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.api.meta.v1 import generated_pb2 as metav1
from kubelite.machinery import codec
from kubelite.machinery.errors import StatusError
from tests.support.manifests import NGINX_DEPLOYMENT


def nginx() -> dict[str, Any]:
    return codec.load_documents(NGINX_DEPLOYMENT)[0]


def bad(fn: Any, *args: Any) -> StatusError:
    with pytest.raises(StatusError) as info:
        fn(*args)
    assert info.value.reason == "BadRequest"
    return info.value


# ---- load_documents ----------------------------------------------------------------------


def test_load_multi_document_skips_empty_and_expands_lists() -> None:
    text = """
---
apiVersion: v1
kind: Namespace
metadata: {name: a}
---
# only a comment
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}
- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}
---
apiVersion: v1
kind: PodList
items: []
"""
    docs = codec.load_documents(text, "x.yaml")
    assert [d["metadata"]["name"] for d in docs] == ["a", "b", "c"]


def test_load_json_input() -> None:
    docs = codec.load_documents(json.dumps(nginx()))
    assert docs == [nginx()]


def test_malformed_yaml_names_source_line_and_column() -> None:
    text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n  labels: a: b\n"
    err = bad(codec.load_documents, text, "deploy.yaml")
    assert err.message.startswith("error parsing deploy.yaml: line 5, column ")
    assert "mapping values are not allowed" in err.message


def test_bad_indentation_reports_its_line() -> None:
    text = "a: 1\nb:\n  - x\n - y\n"
    err = bad(codec.load_documents, text, "f.yaml")
    assert "line 4" in err.message


def test_document_that_is_not_a_mapping() -> None:
    err = bad(codec.load_documents, "- a\n- b\n", "list.yaml")
    assert "list.yaml" in err.message and "expected an object" in err.message
    bad(codec.load_documents, "just a string\n")


def test_duplicate_key_is_an_error() -> None:
    err = bad(codec.load_documents, "kind: Pod\nkind: Service\n", "d.yaml")
    assert "line 2" in err.message and '"kind"' in err.message


def test_timestamps_stay_strings() -> None:
    (doc,) = codec.load_documents("a: 2024-01-02T03:04:05Z\nb: 2024-01-02\n")
    assert doc == {"a": "2024-01-02T03:04:05Z", "b": "2024-01-02"}


# ---- decode ----------------------------------------------------------------------------------


def test_decode_looks_up_the_kind() -> None:
    obj = codec.decode(nginx())
    assert isinstance(obj, apps_v1.Deployment)
    assert obj.spec.replicas == 3
    assert obj.spec.template.spec.containers[0].ports[0].container_port == 80


def test_decode_missing_kind_and_api_version() -> None:
    err = bad(codec.decode, {"apiVersion": "v1", "metadata": {"name": "x"}})
    assert err.message.startswith("Object 'Kind' is missing in '{")
    err = bad(codec.decode, {"kind": "Pod"})
    assert "'apiVersion' is missing" in err.message


def test_decode_unknown_kind() -> None:
    err = bad(codec.decode, {"apiVersion": "v1", "kind": "Foo"})
    assert 'no matches for kind "Foo" in version "v1"' in err.message
    err = bad(codec.decode, {"apiVersion": "apps/v2", "kind": "Deployment"})
    assert 'in version "apps/v2"' in err.message


def test_unknown_fields_are_all_reported_with_full_paths() -> None:
    doc = nginx()
    doc["spec"]["replicaz"] = 3
    doc["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    doc["spec"]["template"]["spec"]["containers"].append({"name": "b", "image": "b", "portz": []})
    err = bad(codec.decode, doc)
    assert {c.field for c in err.causes} == {
        "spec.replicaz",
        "spec.template.spec.containers[0].imagePullPolcy",
        "spec.template.spec.containers[1].portz",
    }
    assert all(c.type == "UnknownField" for c in err.causes)
    assert err.message.startswith("strict decoding error: ")
    assert 'unknown field "spec.template.spec.containers[0].imagePullPolcy"' in err.message


def test_proto_field_names_are_not_json_names() -> None:
    # Only the Kubernetes (lowerCamelCase) spelling is accepted, as in Kubernetes.
    err = bad(codec.decode_into, {"generate_name": "x"}, metav1.ObjectMeta)
    assert err.causes[0].field == "generate_name"


@pytest.mark.parametrize(
    ("patch", "path", "detail"),
    [
        ({"spec": {"replicas": "three"}}, "spec.replicas", 'expected integer, got string "three"'),
        ({"spec": {"replicas": 1.5}}, "spec.replicas", "expected integer, got number 1.5"),
        ({"spec": {"replicas": True}}, "spec.replicas", "expected integer, got boolean true"),
        ({"spec": {"replicas": 2**31}}, "spec.replicas", "out of range for int32"),
        ({"metadata": {"name": 42}}, "metadata.name", "expected string, got number 42"),
        ({"metadata": {"name": False}}, "metadata.name", "expected string, got boolean false"),
        ({"metadata": {"labels": ["a", "b"]}}, "metadata.labels", "expected object, got array"),
        ({"metadata": {"labels": {"a": {"b": 1}}}}, "metadata.labels[a]", "expected string, got object"),
        ({"spec": {"paused": "yes"}}, "spec.paused", 'expected boolean, got string "yes"'),
        ({"spec": {"selector": "app=nginx"}}, "spec.selector", 'expected object, got string "app=nginx"'),
        ({"metadata": {"finalizers": "a"}}, "metadata.finalizers", 'expected array, got string "a"'),
        ({"metadata": {"creationTimestamp": "yesterday"}}, "metadata.creationTimestamp", "RFC 3339"),
        ({"metadata": {"generation": "1e3"}}, "metadata.generation", "expected integer"),
        ({"spec": {"strategy": {"rollingUpdate": {"maxSurge": True}}}}, "spec.strategy.rollingUpdate.maxSurge",
         "expected integer or string, got boolean true"),
    ],
)
def test_wrong_types_name_the_path(patch: dict[str, Any], path: str, detail: str) -> None:
    doc = nginx()
    for section, values in patch.items():
        doc[section].update(values)
    err = bad(codec.decode, doc)
    causes = [c for c in err.causes if c.field == path]
    assert causes, err.causes
    assert causes[0].type == "FieldValueTypeInvalid"
    assert detail in causes[0].detail
    assert path in err.message


def test_type_errors_inside_lists_have_indexes() -> None:
    doc = nginx()
    doc["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 80}, {"containerPort": "http"}]
    err = bad(codec.decode, doc)
    assert [c.field for c in err.causes] == ["spec.template.spec.containers[0].ports[1].containerPort"]


def test_unknown_and_type_errors_together() -> None:
    doc = nginx()
    doc["spec"]["replicas"] = "x"
    doc["spec"]["foo"] = 1
    err = bad(codec.decode, doc)
    assert {c.type for c in err.causes} == {"UnknownField", "FieldValueTypeInvalid"}
    assert "spec.replicas" in err.message and 'unknown field "spec.foo"' in err.message


def test_int_or_string_accepts_numbers_and_writes_digits_back_as_numbers() -> None:
    svc: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80, "targetPort": 9376}, {"port": 443, "targetPort": "https"}]},
    }
    obj = codec.decode(svc)
    assert isinstance(obj, core_v1.Service)
    assert obj.spec.ports[0].target_port == "9376"
    assert obj.spec.ports[1].target_port == "https"
    assert codec.encode(obj) == svc
    # A string of digits is the same int-or-string as the number.
    svc["spec"]["ports"][0]["targetPort"] = "9376"
    assert codec.encode(codec.decode(svc))["spec"]["ports"][0]["targetPort"] == 9376


def test_max_surge_percent_and_number() -> None:
    doc = nginx()
    doc["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}}
    obj = codec.decode_into(doc, apps_v1.Deployment)
    assert obj.spec.strategy.rolling_update.max_surge == "25%"
    assert obj.spec.strategy.rolling_update.max_unavailable == "1"
    assert codec.encode(obj)["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": "25%"}


def test_quantities_accept_numbers_in_maps() -> None:
    doc = nginx()
    doc["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "limits": {"cpu": 0.5, "memory": "128Mi"},
        "requests": {"cpu": 1, "memory": 1e9},
    }
    obj = codec.decode_into(doc, apps_v1.Deployment)
    res = obj.spec.template.spec.containers[0].resources
    assert dict(res.limits) == {"cpu": "0.5", "memory": "128Mi"}
    assert dict(res.requests) == {"cpu": "1", "memory": "1000000000"}
    doc["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": True}}
    err = bad(codec.decode_into, doc, apps_v1.Deployment)
    assert err.causes[0].field == "spec.template.spec.containers[0].resources.limits[cpu]"


def test_plain_string_field_rejects_numbers() -> None:
    doc = nginx()
    doc["spec"]["template"]["spec"]["containers"][0]["image"] = 3
    err = bad(codec.decode, doc)
    assert err.causes[0].field == "spec.template.spec.containers[0].image"


def test_int64_accepts_number_or_string_and_encodes_as_number() -> None:
    meta = codec.decode_into({"name": "x", "generation": "12345678901"}, metav1.ObjectMeta)
    assert meta.generation == 12345678901
    assert codec.encode(meta) == {"name": "x", "generation": 12345678901}
    meta = codec.decode_into({"generation": 7}, metav1.ObjectMeta)
    assert codec.encode(meta)["generation"] == 7
    bad(codec.decode_into, {"generation": 2**63}, metav1.ObjectMeta)


def test_null_is_unset() -> None:
    doc = nginx()
    doc["spec"]["replicas"] = None
    doc["spec"]["strategy"] = None
    doc["metadata"]["annotations"] = None
    obj = codec.decode_into(doc, apps_v1.Deployment)
    assert not obj.spec.HasField("strategy")
    out = codec.encode(obj)
    assert "replicas" not in out["spec"] and "strategy" not in out["spec"]
    assert "annotations" not in out["metadata"]


def test_null_map_value_is_empty_string() -> None:
    # `labels: {tier: }` in YAML is a null value; Kubernetes reads it as "".
    (doc,) = codec.load_documents("name: x\nlabels:\n  tier:\n")
    assert dict(codec.decode_into(doc, metav1.ObjectMeta).labels) == {"tier": ""}


def test_yaml_non_string_map_keys_become_strings() -> None:
    (doc,) = codec.load_documents("labels:\n  80: http\n  true: yes-really\n")
    meta = codec.decode_into(doc, metav1.ObjectMeta)
    assert dict(meta.labels) == {"80": "http", "true": "yes-really"}


def test_timestamps_round_trip() -> None:
    data = {"name": "x", "creationTimestamp": "2024-05-06T07:08:09Z", "deletionTimestamp": "2024-05-06T07:08:10Z"}
    meta = codec.decode_into(data, metav1.ObjectMeta)
    assert meta.creation_timestamp.seconds == 1714979289
    assert codec.encode(meta) == data


def test_bytes_are_base64() -> None:
    secret: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                              "data": {"password": "c2VjcmV0"}}
    obj = codec.decode(secret)
    assert isinstance(obj, core_v1.Secret)
    assert obj.data["password"] == b"secret"
    assert codec.encode(obj) == secret
    secret["data"]["password"] = "not base64!"
    err = bad(codec.decode, secret)
    assert err.causes[0].field == "data[password]"
    assert "base64" in err.causes[0].detail


def test_optional_fields_keep_explicit_zero() -> None:
    data = {"name": "x", "ownerReferences": [{"apiVersion": "v1", "kind": "A", "name": "a", "uid": "u",
                                              "controller": False}]}
    assert codec.encode(codec.decode_into(data, metav1.ObjectMeta)) == data


def test_empty_object_is_kept() -> None:
    # `emptyDir: {}` selects the volume type: an empty message must survive the round trip.
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], "volumes": [{"name": "v", "emptyDir": {}}]},
    }
    obj = codec.decode(pod)
    assert isinstance(obj, core_v1.Pod)
    assert obj.spec.volumes[0].HasField("empty_dir")
    assert codec.encode(obj) == pod


def test_nginx_round_trip_is_exact() -> None:
    doc = nginx()
    obj = codec.decode(doc)
    assert codec.encode(obj) == doc
    assert list(codec.encode(obj)) == ["apiVersion", "kind", "metadata", "spec"]
    assert codec.to_yaml(obj) == NGINX_DEPLOYMENT
    assert codec.load_documents(codec.to_json(obj, indent=2)) == [doc]


def test_key_order_leads_with_api_version_kind_metadata_spec_status() -> None:
    dep = apps_v1.Deployment(api_version="apps/v1", kind="Deployment")
    dep.status.replicas = 1
    dep.spec.replicas = 2
    dep.metadata.name = "x"
    assert list(codec.encode(dep)) == ["apiVersion", "kind", "metadata", "spec", "status"]
    text = codec.to_yaml(dep)
    assert text.index("apiVersion") < text.index("kind") < text.index("metadata") < text.index("spec:") \
        < text.index("status")


def test_yaml_multiline_strings_are_literal_blocks() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"f": "line1\nline2\n"}}
    text = codec.to_yaml(codec.decode(cm))
    assert "f: |\n" in text
    assert codec.load_documents(text) == [cm]


def test_to_yaml_of_several_objects_is_a_stream() -> None:
    a = codec.decode(nginx())
    text = codec.to_yaml([a, a])
    assert len(codec.load_documents(text)) == 2


def test_from_json_bytes() -> None:
    raw = json.dumps(nginx()).encode()
    assert isinstance(codec.from_json_bytes(raw), apps_v1.Deployment)
    dep = codec.from_json_bytes(raw, apps_v1.Deployment)
    assert dep.metadata.name == "nginx-deployment"
    bad(codec.from_json_bytes, b"{not json")
    bad(codec.from_json_bytes, b"[1]")


def test_deep_copy_is_independent() -> None:
    a = codec.decode_into(nginx(), apps_v1.Deployment)
    b = codec.deep_copy(a)
    b.spec.template.spec.containers[0].image = "other"
    assert a.spec.template.spec.containers[0].image == "nginx:local"
    assert b == codec.deep_copy(b)


def test_decode_into_reports_non_object_root() -> None:
    bad(codec.decode_into, ["x"], metav1.ObjectMeta)


def test_field_tables_carry_patch_options() -> None:
    fields = codec.fields_of(core_v1.PodSpec)
    assert fields["containers"].patch_merge_key == "name"
    assert "merge" in fields["containers"].patch_strategy
    assert codec.fields_of(core_v1.ContainerPort)["containerPort"].json_name == "containerPort"
    limits = codec.fields_of(core_v1.ResourceRequirements)["limits"]
    assert limits.is_map and limits.map_value is not None and limits.map_value.format == codec.FORMAT_QUANTITY
