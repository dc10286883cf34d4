"""Label and field selectors: Kubernetes syntax, matching rules and errors."""

from __future__ import annotations

import pytest

from kubelite.api.meta.v1 import generated_pb2 as metav1
from kubelite.machinery import selectors
from kubelite.machinery.errors import StatusError
from kubelite.machinery.selectors import parse_field_selector, parse_label_selector

PROD_WEB = {"env": "prod", "tier": "web", "partition": "a"}
QA_DB = {"env": "qa", "tier": "db"}
NONE: dict[str, str] = {}


@pytest.mark.parametrize(
    ("text", "matching"),
    [
        ("", [PROD_WEB, QA_DB, NONE]),
        ("env=prod", [PROD_WEB]),
        ("env==prod", [PROD_WEB]),
        ("env!=prod", [QA_DB, NONE]),  # an object without the label satisfies !=
        ("env in (prod, qa)", [PROD_WEB, QA_DB]),
        ("env in (prod),tier=web", [PROD_WEB]),
        ("tier notin (db)", [PROD_WEB, NONE]),
        ("partition", [PROD_WEB]),
        ("!partition", [QA_DB, NONE]),
        ("env,!partition", [QA_DB]),
        ("  env = qa ,  tier  in  ( db )  ", [QA_DB]),
        ("env=prod,env=qa", []),
    ],
)
def test_matching(text: str, matching: list[dict[str, str]]) -> None:
    sel = parse_label_selector(text)
    assert [labels for labels in (PROD_WEB, QA_DB, NONE) if sel.matches(labels)] == matching


def test_empty_selector() -> None:
    assert parse_label_selector("").empty
    assert parse_label_selector("   ").empty
    assert not parse_label_selector("a").empty


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("a=b", "a=b"),
        ("a==b", "a=b"),
        ("b!=c,a", "a,b!=c"),
        ("env in (qa, prod)", "env in (prod,qa)"),
        ("x notin (z,y)", "x notin (y,z)"),
        ("!a", "!a"),
        ("a=", "a="),
        ("example.com/app=web-1", "example.com/app=web-1"),
        ("n>5", "n>5"),
    ],
)
def test_string_round_trip(text: str, canonical: str) -> None:
    sel = parse_label_selector(text)
    assert str(sel) == canonical
    assert parse_label_selector(str(sel)) == sel


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a=b,", "expected a label key"),
        (",a", "expected a label key"),
        ("a in ()", "may not be empty"),
        ("a in (b", "expected ',' or ')'"),
        ("a in b", "expected '('"),
        ("a notin", "expected '('"),
        ("!", "after '!'"),
        ("a b", "expected an operator"),
        ("a=b c", "expected ',' or end of string"),
        ("a=b=c", "expected ',' or end of string"),
        ("a=(b)", "expected a label value"),
        ("-a=b", "invalid requirement"),
        ("a=b!", "expected ',' or end of string"),
        ("a=b_", "invalid requirement"),
        ("a/b/c=d", "invalid requirement"),
        ("a=" + "x" * 64, "no more than 63"),
        ("n>x", "integer"),
    ],
)
def test_syntax_errors_are_bad_requests(text: str, problem: str) -> None:
    with pytest.raises(StatusError) as info:
        parse_label_selector(text)
    assert info.value.reason == "BadRequest"
    assert problem in info.value.message
    assert repr(text) in info.value.message


def test_gt_lt() -> None:
    sel = parse_label_selector("n>5,m<3")
    assert sel.matches({"n": "6", "m": "2"})
    assert not sel.matches({"n": "5", "m": "2"})
    assert not sel.matches({"n": "x", "m": "2"})
    assert not sel.matches({"m": "2"})


def test_requirements_are_exposed_for_indexing() -> None:
    sel = parse_label_selector("app=web,env in (a,b),tier")
    assert [(r.key, r.operator, r.values) for r in sel.requirements] == [
        ("app", selectors.EQUALS, ("web",)),
        ("env", selectors.IN, ("a", "b")),
        ("tier", selectors.EXISTS, ()),
    ]
    assert sel.requires_exact("app") == ("web",)
    assert sel.requires_exact("env") == ("a", "b")
    assert sel.requires_exact("tier") is None


def test_from_set() -> None:
    sel = selectors.from_set({"app": "web", "tier": "fe"})
    assert str(sel) == "app=web,tier=fe"
    assert sel.matches({"app": "web", "tier": "fe", "x": "y"})
    assert not sel.matches({"app": "web"})
    assert selectors.from_set({}).empty


def test_from_label_selector_proto() -> None:
    proto = metav1.LabelSelector(
        match_labels={"app": "web"},
        match_expressions=[
            metav1.LabelSelectorRequirement(key="env", operator="In", values=["prod", "qa"]),
            metav1.LabelSelectorRequirement(key="tier", operator="NotIn", values=["db"]),
            metav1.LabelSelectorRequirement(key="canary", operator="DoesNotExist"),
            metav1.LabelSelectorRequirement(key="partition", operator="Exists"),
        ],
    )
    sel = selectors.from_label_selector_proto(proto)
    assert str(sel) == "app=web,!canary,env in (prod,qa),partition,tier notin (db)"
    assert sel.matches({"app": "web", "env": "qa", "partition": "x"})
    assert not sel.matches({"app": "web", "env": "qa", "partition": "x", "canary": "1"})
    assert not sel.matches({"app": "web", "env": "dev", "partition": "x"})


def test_empty_and_absent_proto_selectors() -> None:
    assert selectors.from_label_selector_proto(metav1.LabelSelector()).matches({"any": "thing"})
    nothing = selectors.from_label_selector_proto(None)
    assert not nothing.matches({})
    assert not nothing.empty


@pytest.mark.parametrize(
    ("expr", "field"),
    [
        (metav1.LabelSelectorRequirement(key="a", operator="Equals", values=["b"]),
         "selector.matchExpressions[0].operator"),
        (metav1.LabelSelectorRequirement(key="a", operator="In"), "selector.matchExpressions[0].values"),
        (metav1.LabelSelectorRequirement(key="a", operator="Exists", values=["b"]),
         "selector.matchExpressions[0].values"),
        (metav1.LabelSelectorRequirement(key="bad key", operator="Exists"), "selector.matchExpressions[0].key"),
        (metav1.LabelSelectorRequirement(key="a", operator="In", values=["bad value"]),
         "selector.matchExpressions[0].values[0]"),
    ],
)
def test_invalid_proto_selectors(expr: metav1.LabelSelectorRequirement, field: str) -> None:
    with pytest.raises(StatusError) as info:
        selectors.from_label_selector_proto(metav1.LabelSelector(match_expressions=[expr]))
    assert info.value.reason == "BadRequest"
    assert [c.field for c in info.value.causes] == [field]


def test_label_selector_errors_for_match_labels() -> None:
    errs = selectors.label_selector_errors(metav1.LabelSelector(match_labels={"a": "-b"}), "spec.selector")
    assert [e.field for e in errs] == ["spec.selector.matchLabels"]


# ---- field selectors -------------------------------------------------------------------------


def test_field_selector_matching() -> None:
    sel = parse_field_selector("spec.nodeName=node-1,status.phase!=Succeeded")
    assert sel.matches({"spec.nodeName": "node-1", "status.phase": "Running"})
    assert not sel.matches({"spec.nodeName": "node-1", "status.phase": "Succeeded"})
    assert not sel.matches({"spec.nodeName": "node-2", "status.phase": "Running"})
    assert sel.requires("spec.nodeName") == "node-1"
    assert sel.requires("status.phase") is None
    assert sel.requires("metadata.name") is None


def test_field_selector_missing_field_reads_as_empty() -> None:
    # `spec.nodeName=` selects unscheduled pods, as the scheduler's watch does.
    sel = parse_field_selector("spec.nodeName=")
    assert sel.matches({})
    assert sel.matches({"spec.nodeName": ""})
    assert not sel.matches({"spec.nodeName": "n"})
    assert sel.requires("spec.nodeName") == ""


def test_field_selector_double_equals_and_round_trip() -> None:
    sel = parse_field_selector("metadata.name==a, metadata.namespace = b")
    assert str(sel) == "metadata.name=a,metadata.namespace=b"
    assert parse_field_selector(str(sel)) == sel
    assert parse_field_selector("").empty


def test_field_selector_escapes() -> None:
    sel = parse_field_selector(r"metadata.name=a\,b\=c\\d")
    assert sel.requires("metadata.name") == "a,b=c\\d"
    assert parse_field_selector(str(sel)) == sel


@pytest.mark.parametrize("text", ["spec.nodeName", "=x", "a=b,", "a=b=c", r"a=b\x", "a=b,c"])
def test_field_selector_errors(text: str) -> None:
    with pytest.raises(StatusError) as info:
        parse_field_selector(text)
    assert info.value.reason == "BadRequest"


def test_field_selector_unsupported() -> None:
    sel = parse_field_selector("spec.nodeName=a,spec.foo=b,spec.foo!=c,metadata.name=x")
    assert sel.unsupported({"spec.nodeName", "metadata.name"}) == ["spec.foo"]
    assert sel.unsupported(["spec.nodeName", "metadata.name", "spec.foo"]) == []
