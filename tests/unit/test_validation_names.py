"""Kubernetes naming rules and ObjectMeta validation."""

from __future__ import annotations

import pytest

from kubelite.api.meta.v1 import generated_pb2 as metav1
from kubelite.machinery import validation as v
from kubelite.machinery.errors import FieldError


@pytest.mark.parametrize("name", ["a", "abc", "a-b", "0", "a1-2b", "x" * 63])
def test_dns1123_label_ok(name: str) -> None:
    assert v.is_dns1123_label(name) == []


@pytest.mark.parametrize("name", ["", "A", "a_b", "-a", "a-", "a.b", "x" * 64, "ä"])
def test_dns1123_label_bad(name: str) -> None:
    errs = v.is_dns1123_label(name)
    assert errs
    if len(name) > 63:
        assert "no more than 63" in errs[0]
    else:
        assert "RFC 1123 label" in errs[0] and "regex" in errs[0]


@pytest.mark.parametrize("name", ["a", "example.com", "a-b.c-d", "1.2.3", "a" * 253])
def test_dns1123_subdomain_ok(name: str) -> None:
    assert v.is_dns1123_subdomain(name) == []


@pytest.mark.parametrize("name", ["", "a..b", ".a", "a.", "a_b", "A.com", "a" * 254, "a.-b"])
def test_dns1123_subdomain_bad(name: str) -> None:
    assert v.is_dns1123_subdomain(name)


def test_dns1035_label_must_start_with_letter() -> None:
    assert v.is_dns1035_label("my-svc") == []
    assert v.is_dns1035_label("1svc")
    assert "DNS-1035" in v.is_dns1035_label("1svc")[0]
    assert v.is_dns1035_label("a" * 64)


@pytest.mark.parametrize("key", ["app", "App_1", "a.b-c", "example.com/app", "kubernetes.io/os", "x" * 63,
                                 "k8s.io/" + "Y" * 63])
def test_qualified_name_ok(key: str) -> None:
    assert v.is_qualified_name(key) == []


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("", "name part must not be empty"),
        ("/a", "prefix part must not be empty"),
        ("a/", "name part must not be empty"),
        ("a/b/c", "qualified name"),
        ("-a", "name part"),
        ("a_", "name part"),
        ("x" * 64, "no more than 63"),
        ("Example.com/a", "prefix part"),
        ("a b", "name part"),
    ],
)
def test_qualified_name_bad(key: str, fragment: str) -> None:
    errs = v.is_qualified_name(key)
    assert errs and any(fragment in e for e in errs), errs


@pytest.mark.parametrize("value", ["", "a", "A-b_c.d", "1", "x" * 63])
def test_label_value_ok(value: str) -> None:
    assert v.is_valid_label_value(value) == []


@pytest.mark.parametrize("value", ["-a", "a-", "a b", "a/b", "x" * 64])
def test_label_value_bad(value: str) -> None:
    assert v.is_valid_label_value(value)


def test_c_identifier_and_env_var_names() -> None:
    assert v.is_c_identifier("MY_VAR1") == []
    assert v.is_c_identifier("_x") == []
    assert v.is_c_identifier("1X")
    assert v.is_c_identifier("a-b")
    # Kubernetes now accepts any printable ASCII except '=' in env var names.
    assert v.is_env_var_name("my-var.1") == []
    assert v.is_env_var_name("1X") == []
    assert v.is_env_var_name("A B") == []
    assert v.is_env_var_name("A=B")
    assert v.is_env_var_name("")
    assert v.is_env_var_name("tab\there")
    assert v.is_env_var_name("é")


def test_ports() -> None:
    assert v.is_valid_port_num(1) == [] and v.is_valid_port_num(65535) == []
    assert v.is_valid_port_num(0) and v.is_valid_port_num(65536) and v.is_valid_port_num(-1)
    for ok in ("http", "https-1", "a", "x1", "abcdefghijklmno"):
        assert v.is_valid_port_name(ok) == [], ok
    for bad, why in (("abcdefghijklmnop", "no more than 15"), ("123", "at least one letter"),
                     ("a--b", "two '-'"), ("-a", "begin or end"), ("a-", "begin or end"),
                     ("HTTP", "lowercase"), ("a_b", "lowercase"), ("", "lowercase")):
        errs = v.is_valid_port_name(bad)
        assert any(why in e for e in errs), (bad, errs)


def test_ips_and_cidrs() -> None:
    for ok in ("10.0.0.1", "::1", "2001:db8::ffff", "255.255.255.255"):
        assert v.is_valid_ip(ok) == [], ok
    for bad in ("", "10.0.0", "10.0.0.256", "010.0.0.1", "host", "10.0.0.1/24"):
        assert v.is_valid_ip(bad), bad
    assert v.is_valid_cidr("10.244.0.0/16") == []
    assert v.is_valid_cidr("10.244.1.1/16") == []
    assert v.is_valid_cidr("fd00::/64") == []
    assert v.is_valid_cidr("10.244.0.0")
    assert v.is_valid_cidr("10.244.0.0/33")


def test_path_segment_names() -> None:
    assert v.is_valid_path_segment_name("ok") == []
    assert v.is_valid_path_segment_name("..")
    assert v.is_valid_path_segment_name("a/b")
    assert v.is_valid_path_segment_name("a%b")


# ---- ObjectMeta --------------------------------------------------------------------------------


def fields(errs: list[FieldError]) -> list[str]:
    return [e.field for e in errs]


def test_valid_meta() -> None:
    meta = metav1.ObjectMeta(
        name="web", namespace="default", labels={"app": "web", "example.com/tier": ""},
        annotations={"Example.com/Note": "anything at all\n"}, finalizers=["example.com/cleanup"],
        owner_references=[metav1.OwnerReference(api_version="apps/v1", kind="ReplicaSet", name="rs",
                                                uid="u", controller=True)],
    )
    assert v.validate_object_meta(meta, namespaced=True) == []


def test_name_or_generate_name_required() -> None:
    errs = v.validate_object_meta(metav1.ObjectMeta(namespace="default"), namespaced=True)
    assert fields(errs) == ["metadata.name"]
    assert errs[0].type == "FieldValueRequired"
    assert v.validate_object_meta(metav1.ObjectMeta(generate_name="web-", namespace="d"), namespaced=True) == []


def test_bad_names() -> None:
    errs = v.validate_object_meta(metav1.ObjectMeta(name="Web_1", namespace="default"), namespaced=True)
    assert fields(errs) == ["metadata.name"]
    assert errs[0].type == "FieldValueInvalid"
    assert "RFC 1123 subdomain" in str(errs[0])
    errs = v.validate_object_meta(metav1.ObjectMeta(generate_name="Web-", namespace="d"), namespaced=True)
    assert fields(errs) == ["metadata.generateName"]
    # A kind-specific validator, e.g. Services need DNS-1035 labels.
    errs = v.validate_object_meta(metav1.ObjectMeta(name="1svc", namespace="d"), namespaced=True,
                                  name_validator=v.is_dns1035_label)
    assert fields(errs) == ["metadata.name"]


def test_namespace_rules() -> None:
    errs = v.validate_object_meta(metav1.ObjectMeta(name="a"), namespaced=True)
    assert [(e.field, e.type) for e in errs] == [("metadata.namespace", "FieldValueRequired")]
    errs = v.validate_object_meta(metav1.ObjectMeta(name="a", namespace="Bad"), namespaced=True)
    assert [(e.field, e.type) for e in errs] == [("metadata.namespace", "FieldValueInvalid")]
    errs = v.validate_object_meta(metav1.ObjectMeta(name="node-1", namespace="default"), namespaced=False)
    assert [(e.field, e.type) for e in errs] == [("metadata.namespace", "FieldValueForbidden")]
    assert v.validate_object_meta(metav1.ObjectMeta(name="node-1"), namespaced=False) == []


def test_labels_annotations_finalizers() -> None:
    meta = metav1.ObjectMeta(
        name="a", namespace="d",
        labels={"bad key": "v", "ok": "bad value"},
        annotations={"no spaces allowed": "x"},
        finalizers=["ok", "bad/fin/alizer"],
    )
    errs = v.validate_object_meta(meta, namespaced=True, path="spec.template.metadata")
    assert sorted(fields(errs)) == sorted([
        "spec.template.metadata.labels", "spec.template.metadata.labels",
        "spec.template.metadata.annotations", "spec.template.metadata.finalizers[1]",
    ])


def test_annotation_size_limit() -> None:
    meta = metav1.ObjectMeta(name="a", namespace="d", annotations={"big": "x" * (256 * 1024)})
    errs = v.validate_object_meta(meta, namespaced=True)
    assert [(e.field, e.type) for e in errs] == [("metadata.annotations", "FieldValueTooLong")]
    meta = metav1.ObjectMeta(name="a", namespace="d", annotations={"big": "x" * (256 * 1024 - 3)})
    assert v.validate_object_meta(meta, namespaced=True) == []


def test_owner_references() -> None:
    meta = metav1.ObjectMeta(name="a", namespace="d", owner_references=[
        metav1.OwnerReference(kind="ReplicaSet", controller=True),
        metav1.OwnerReference(api_version="v1", kind="X", name="x", uid="u", controller=True),
    ])
    errs = v.validate_object_meta(meta, namespaced=True)
    assert fields(errs) == [
        "metadata.ownerReferences[0].apiVersion",
        "metadata.ownerReferences[0].name",
        "metadata.ownerReferences[0].uid",
        "metadata.ownerReferences",
    ]
    assert "only one" in errs[-1].detail
