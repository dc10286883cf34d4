"""Argument handling of the kubelite command line: kubectl's flag spellings, durations, label changes."""

from __future__ import annotations

import pytest

from kubelite.cli.app import normalize_args, parse_duration
from kubelite.cli.errors import CliError
from kubelite.cli.label import LABEL, Changes, parse_changes, plan
from kubelite.cli.resources import Target, parse_targets
from kubelite.machinery.kinds import DEPLOYMENTS, PODS, SCHEME, SERVICES


def test_bare_flags_are_spelled_out_before_click_parses() -> None:
    assert normalize_args(["get", "po", "-A", "-w", "--show-labels"]) == [
        "get", "po", "--all-namespaces=true", "--watch=true", "--show-labels=true"]
    assert normalize_args(["apply", "--dry-run", "-f", "x"]) == ["apply", "--dry-run=client", "-f", "x"]
    assert normalize_args(["delete", "po", "x", "--cascade", "--wait=false"]) == [
        "delete", "po", "x", "--cascade=background", "--wait=false"]
    assert normalize_args(["get", "po", "-o=yaml"]) == ["get", "po", "-oyaml"]
    # After "--" nothing is touched.
    assert normalize_args(["x", "--", "-A"]) == ["x", "--", "-A"]


@pytest.mark.parametrize(("text", "seconds"), [("0", 0), ("30", 30), ("30s", 30), ("1m30s", 90), ("500ms", 0.5),
                                               ("2h", 7200), ("", 0)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "--timeout") == seconds


def test_bad_duration() -> None:
    with pytest.raises(CliError, match='invalid argument "5 minutes" for "--timeout" flag'):
        parse_duration("5 minutes", "--timeout")


def test_label_changes_are_split_from_resources() -> None:
    c = parse_changes(["pods", "web", "app=v2", "tier-", "example.com/owner=team-a"], "label")
    assert c.resources == ["pods", "web"]
    assert c.set == {"app": "v2", "example.com/owner": "team-a"}
    assert c.remove == ["tier"]
    # Annotation values may hold anything, label values may not.
    assert parse_changes(["po", "x", "note=hello, world!"], "annotation").set == {"note": "hello, world!"}
    with pytest.raises(CliError, match="invalid label spec"):
        parse_changes(["po", "x", "note=hello, world!"], "label")
    with pytest.raises(CliError, match="invalid label spec"):
        parse_changes(["po", "x", f"{'a' * 64}=v"], "label")
    with pytest.raises(CliError, match="invalid label spec"):
        parse_changes(["po", "x", "UPPER.example.com/x=v"], "label")


def test_label_plan_respects_overwrite() -> None:
    changes = Changes(set={"a": "2", "b": "1"}, remove=["gone", "c"])
    with pytest.raises(CliError, match=r"'a' already has a value \(1\), and --overwrite is false"):
        plan({"a": "1", "c": "x"}, changes, False, LABEL)
    body, word = plan({"a": "1", "c": "x"}, changes, True, LABEL)
    assert body == {"a": "2", "b": "1", "c": None} and word == "labeled"
    assert plan({"a": "2", "b": "1"}, Changes(set={"a": "2"}), False, LABEL) == ({}, "not labeled")
    assert plan({"c": "x"}, Changes(remove=["c"]), False, LABEL) == ({"c": None}, "unlabeled")


def test_resource_arguments() -> None:
    assert parse_targets(SCHEME, ["po", "a", "b"]) == [Target(PODS, ("a", "b"))]
    assert parse_targets(SCHEME, ["deploy,svc"]) == [Target(DEPLOYMENTS), Target(SERVICES)]
    assert parse_targets(SCHEME, ["po/a", "svc/b", "pod/c"]) == [Target(PODS, ("a", "c")), Target(SERVICES, ("b",))]
    assert parse_targets(SCHEME, ["deployments.apps", "x"]) == [Target(DEPLOYMENTS, ("x",))]
    with pytest.raises(CliError, match="the server doesn't have a resource type \"foo\""):
        parse_targets(SCHEME, ["foo"])
    with pytest.raises(CliError, match="no need to specify a resource type"):
        parse_targets(SCHEME, ["po", "svc/x"])
    with pytest.raises(CliError, match="Required resource not specified"):
        parse_targets(SCHEME, [])
