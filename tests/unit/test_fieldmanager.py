"""Server-side apply's field sets, merge, removals and conflicts (machinery.fieldmanager)."""

from __future__ import annotations

from typing import Any

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.machinery import fieldmanager as fm

NOW = "2026-12-02T00:00:00Z"


def deploy(replicas: int | None = 2, image: str = "nginx:1", sidecar: bool = False,
           labels: dict[str, str] | None = None) -> dict[str, Any]:
    containers: list[dict[str, Any]] = [{"name": "web", "image": image}]
    if sidecar:
        containers.append({"name": "log", "image": "busybox"})
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": "w"}},
                            "template": {"metadata": {"labels": {"app": "w"}}, "spec": {"containers": containers}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "w", "labels": labels or {"app": "w"}}, "spec": spec}


def apply(live: dict[str, Any] | None, intent: dict[str, Any], manager: str, force: bool = False) -> fm.Applied:
    return fm.apply(live, intent, apps.Deployment, manager, "apps/v1", NOW, force)


def test_field_sets_use_kubernetes_keys() -> None:
    paths = fm.field_set(deploy(), apps.Deployment)
    assert ("f:spec", "f:replicas") in paths
    assert ("f:metadata", "f:labels", "f:app") in paths
    item = ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"web"}')
    assert (*item, ".") in paths and (*item, "f:image") in paths
    # Identity and bookkeeping are nobody's.
    assert not any(p[:2] == ("f:metadata", "f:name") or p[0] == "f:apiVersion" for p in paths)
    doc = fm.to_fields_v1(paths)
    assert doc["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"web"}'] == {".": {}, "f:image": {},
                                                                                          "f:name": {}}
    assert fm.from_fields_v1(doc) == paths


def test_first_apply_creates_and_records_the_manager() -> None:
    result = apply(None, deploy(), "alice")
    assert not result.conflicts
    assert result.object["spec"]["replicas"] == 2
    [entry] = result.object["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"], entry["apiVersion"], entry["time"]) == \
        ("alice", "Apply", "apps/v1", NOW)


def test_a_different_value_for_anothers_field_conflicts_unless_forced() -> None:
    live = apply(None, deploy(), "alice").object
    result = apply(live, deploy(replicas=5), "bob")
    assert [(c.manager, c.field()) for c in result.conflicts] == [("alice", ".spec.replicas")]
    assert fm.conflict_message(result.conflicts) == \
        'Apply failed with 1 conflict: conflict with "alice" using apps/v1: .spec.replicas'
    forced = apply(live, deploy(replicas=5), "bob", force=True)
    assert not forced.conflicts and forced.object["spec"]["replicas"] == 5
    owners = {e["manager"]: fm.from_fields_v1(e["fieldsV1"]) for e in forced.object["metadata"]["managedFields"]}
    assert ("f:spec", "f:replicas") in owners["bob"] and ("f:spec", "f:replicas") not in owners["alice"]


def test_the_same_value_is_shared_ownership_not_a_conflict() -> None:
    live = apply(None, deploy(), "alice").object
    result = apply(live, deploy(), "bob")
    assert not result.conflicts
    assert {e["manager"] for e in result.object["metadata"]["managedFields"]} == {"alice", "bob"}
    # When alice stops mentioning replicas, bob still owns it: it stays.
    after = apply(result.object, deploy(replicas=None), "alice").object
    assert after["spec"]["replicas"] == 2


def test_fields_a_manager_drops_are_removed_unless_someone_else_owns_them() -> None:
    live = apply(None, deploy(sidecar=True, labels={"app": "w", "tier": "web"}), "alice").object
    after = apply(live, deploy(sidecar=False, replicas=None), "alice").object
    assert [c["name"] for c in after["spec"]["template"]["spec"]["containers"]] == ["web"]
    assert "replicas" not in after["spec"]
    assert after["metadata"]["labels"] == {"app": "w"}
    # A container another manager also owns stays when alice drops it.
    live = apply(None, deploy(sidecar=True), "alice").object
    shared = apply(live, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
                          "spec": {"template": {"spec": {"containers": [{"name": "log", "image": "busybox"}]}}}},
                   "bob").object
    after = apply(shared, deploy(sidecar=False), "alice").object
    assert [c["name"] for c in after["spec"]["template"]["spec"]["containers"]] == ["web", "log"]


def test_lists_merge_by_their_keys_and_atomic_lists_replace() -> None:
    live = apply(None, deploy(), "alice").object
    live["spec"]["template"]["spec"]["containers"][0]["args"] = ["a", "b"]
    intent = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
              "spec": {"template": {"spec": {"containers": [{"name": "web", "args": ["c"]},
                                                            {"name": "new", "image": "x"}]}}}}
    merged = apply(live, intent, "bob").object
    containers = merged["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["web", "new"]
    assert containers[0] == {"name": "web", "image": "nginx:1", "args": ["c"]}


def test_conflict_names_list_items_by_their_key() -> None:
    live = apply(None, deploy(image="nginx:1"), "alice").object
    result = apply(live, deploy(image="nginx:2"), "bob")
    assert [c.field() for c in result.conflicts] == ['.spec.template.spec.containers[name="web"].image']
