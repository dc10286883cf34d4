"""Server-side apply's field sets, merge, removals and conflicts, and the Update operations of every other
write (machinery.fieldmanager)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf import struct_pb2

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.apiserver.pipeline import field_manager
from kubelite.machinery import codec, errors
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
    # An applier is named alone (an updater with its apiVersion, see below), as Kubernetes names them.
    assert fm.conflict_message(result.conflicts) == \
        'Apply failed with 1 conflict: conflict with "alice": .spec.replicas'
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


# --- Update operations --------------------------------------------------------------------------------------


def write(old: apps.Deployment | None, doc: dict[str, Any], manager: str, now: int = 100,
          subresource: str = "", keep: apps.Deployment | None = None) -> apps.Deployment:
    """What the store does for a create (old None) or an update: ``doc`` replaces the object, entries carry over."""
    new = codec.decode_into(doc, apps.Deployment)
    base = keep if keep is not None else old
    if base is not None and not new.metadata.managed_fields:
        new.metadata.managed_fields.extend(base.metadata.managed_fields)
    changed, removed = fm.diff(old, new, subresource) if old is not None else \
        (frozenset(fm.object_fields(new, subresource)), frozenset())
    if old is not None:  # the diff sees what a walk of both objects sees
        assert (changed, removed) == fm.compare(fm.object_fields(old, subresource), fm.object_fields(new, subresource))
    fm.record_update(new.metadata.managed_fields, changed, removed, manager, "apps/v1", subresource, now)
    return new


def owners(obj: apps.Deployment) -> dict[tuple[str, str, str], set[fm.Path]]:
    return {(e.manager, e.operation, e.subresource): set(fm.entry_paths(e)) for e in obj.metadata.managed_fields}


def test_the_message_walk_sees_the_same_fields_as_the_json_walk() -> None:
    pod = codec.decode_into({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "labels": {"app": "w"}, "finalizers": ["a/b"], "annotations": {}},
        "spec": {"containers": [{"name": "web", "image": "x", "ports": [{"containerPort": 80}],
                                 "resources": {"requests": {"cpu": "1"}}, "args": ["a"]}],
                 "tolerations": [{"key": "", "operator": "Exists"}]},
        "status": {"conditions": [{"type": "Ready"}], "podIP": "10.0.0.1"}}, core.Pod)
    assert set(fm.object_fields(pod)) == fm.field_set(codec.encode(pod), core.Pod)
    # A pod condition writes its status even when empty (no omitempty in Kubernetes' type).
    status = set(fm.object_fields(pod, "status"))
    cond = ("f:status", "f:conditions", 'k:{"type":"Ready"}')
    assert {(*cond, "."), (*cond, "f:type"), (*cond, "f:status"), ("f:status", "f:podIP")} == status
    assert all(p[0] == "f:status" for p in status)
    port = ("f:spec", "f:containers", 'k:{"name":"web"}', "f:ports", 'k:{"containerPort":80}', ".")
    assert port in fm.object_fields(pod) and ("f:metadata", "f:annotations") not in fm.object_fields(pod)
    dep = codec.decode_into(deploy(sidecar=True), apps.Deployment)
    assert set(fm.object_fields(dep)) == fm.field_set(codec.encode(dep), apps.Deployment)


def test_a_create_records_an_update_entry_owning_what_it_set() -> None:
    obj = write(None, deploy(), "kubectl-create", now=100)
    [entry] = obj.metadata.managed_fields
    assert (entry.manager, entry.operation, entry.api_version, entry.fields_type, entry.subresource) == \
        ("kubectl-create", "Update", "apps/v1", "FieldsV1", "")
    assert entry.time.seconds == 100
    assert set(fm.entry_paths(entry)) == fm.field_set(deploy(), apps.Deployment)
    doc = codec.encode(obj)["metadata"]["managedFields"][0]
    assert doc["fieldsV1"]["f:spec"]["f:replicas"] == {} and doc["time"] == "1970-01-01T00:01:40Z"


def test_an_update_takes_the_fields_it_changes_and_an_apply_then_conflicts_with_it() -> None:
    applied = apply(None, deploy(), "kubectl")
    live = codec.decode_into(applied.object, apps.Deployment)
    edited = write(live, deploy(replicas=5), "kubectl-edit", now=200)
    got = owners(edited)
    replicas = ("f:spec", "f:replicas")
    assert got[("kubectl-edit", "Update", "")] == {replicas}  # only what it changed
    assert replicas not in got[("kubectl", "Apply", "")]  # taken over, no conflict for an Update
    # The applier asks for replicas 2 again: a conflict naming the updater with its apiVersion.
    again = apply(codec.encode(edited), deploy(), "kubectl")
    assert fm.conflict_message(again.conflicts) == \
        'Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: .spec.replicas'
    # The same value as the updater set is shared ownership; force takes the field back.
    assert not apply(codec.encode(edited), deploy(replicas=5), "kubectl").conflicts
    forced = apply(codec.encode(edited), deploy(), "kubectl", force=True)
    assert not forced.conflicts and forced.object["spec"]["replicas"] == 2
    managers = [e["manager"] for e in forced.object["metadata"]["managedFields"]]
    assert managers == ["kubectl"]  # the updater's entry was left empty: it goes


def test_removed_fields_leave_every_entry_and_empty_entries_go() -> None:
    created = write(None, deploy(labels={"app": "w", "tier": "web"}), "creator", now=100)
    labelled = write(created, deploy(labels={"app": "w", "tier": "db"}), "labeller", now=110)
    tier = ("f:metadata", "f:labels", "f:tier")
    assert tier in owners(labelled)[("labeller", "Update", "")]
    assert tier not in owners(labelled)[("creator", "Update", "")]
    # A third writer drops the label: nobody owns it, and the labeller's entry, now empty, goes.
    dropped = write(labelled, deploy(labels={"app": "w"}, replicas=3), "trimmer", now=120)
    assert set(owners(dropped)) == {("creator", "Update", ""), ("trimmer", "Update", "")}
    # Entries are sorted as Kubernetes sorts them: operation, then time.
    assert [e.manager for e in dropped.metadata.managed_fields] == ["creator", "trimmer"]


def test_a_write_that_changes_nothing_leaves_the_entries_alone() -> None:
    created = write(None, deploy(), "creator", now=100)
    same = codec.decode_into(deploy(), apps.Deployment)
    same.metadata.managed_fields.extend(created.metadata.managed_fields)
    assert not fm.record_update(same.metadata.managed_fields, *fm.diff(created, same), "someone", "apps/v1", "", 999)
    assert same.metadata.managed_fields == created.metadata.managed_fields
    # The same manager writing again keeps one entry, with the new time.
    again = write(created, deploy(replicas=4), "creator", now=150)
    [entry] = again.metadata.managed_fields
    assert entry.time.seconds == 150 and set(fm.entry_paths(entry)) == fm.field_set(deploy(4), apps.Deployment)


def test_subresource_writes_have_entries_of_their_own() -> None:
    created = write(None, deploy(), "creator", now=100)
    status_doc = {**deploy(), "status": {"replicas": 2, "readyReplicas": 1}}
    with_status = write(created, status_doc, "kube-controller-manager", now=110, subresource="status")
    got = owners(with_status)
    assert got[("kube-controller-manager", "Update", "status")] == {("f:status", "f:replicas"),
                                                                   ("f:status", "f:readyReplicas")}
    scaled = write(with_status, {**status_doc, "spec": {**status_doc["spec"], "replicas": 7}}, "kubectl",
                   now=120, subresource="scale")
    assert owners(scaled)[("kubectl", "Update", "scale")] == {("f:spec", "f:replicas")}
    result = apply(codec.encode(scaled), deploy(), "ops")
    assert fm.conflict_message(result.conflicts) == ('Apply failed with 1 conflict: conflict with "kubectl" with '
                                                     'subresource "scale" using apps/v1: .spec.replicas')


def test_more_than_ten_updaters_merge_the_oldest_into_ancient_changes() -> None:
    obj = write(None, deploy(), "creator", now=100)
    labels = {"app": "w"}
    for i in range(11):
        labels[f"l{i}"] = "x"
        obj = write(obj, deploy(labels=labels), f"writer-{i}", now=200 + i)
    entries = obj.metadata.managed_fields
    assert len(entries) == fm.MAX_UPDATE_MANAGERS
    names = [e.manager for e in entries]
    # creator and writer-0 (the oldest) and writer-1 merged; the bucket has the newest time of them.
    assert "creator" not in names and "writer-0" not in names and "writer-1" not in names
    [bucket] = [e for e in entries if e.manager == fm.ANCIENT_CHANGES]
    assert bucket.operation == "Update" and bucket.time.seconds == 201
    assert ("f:spec", "f:replicas") in fm.entry_paths(bucket)
    assert ("f:metadata", "f:labels", "f:l1") in fm.entry_paths(bucket)
    # Apply entries do not count against the cap.
    assert names[-1] == "writer-10"


def test_a_single_empty_entry_resets_the_ownership() -> None:
    created = write(None, deploy(), "creator", now=100)
    doc = {**deploy(replicas=3), "metadata": {**deploy()["metadata"], "managedFields": [{}]}}
    reset = write(created, doc, "resetter", now=110)
    assert owners(reset) == {("resetter", "Update", ""): {("f:spec", "f:replicas")}}


def test_field_sets_are_stored_as_compact_json_and_read_back() -> None:
    paths = fm.field_set(deploy(sidecar=True), apps.Deployment)
    entry = core.Pod().metadata.managed_fields.add()
    fm.set_entry_paths(entry, frozenset(paths))
    assert json.loads(entry.fields_v1) == fm.to_fields_v1(paths)
    assert entry.fields_v1.startswith(b'{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{')
    assert fm.entry_paths(entry) == paths
    # The JSON form shows the document itself, and takes it back.
    pod = core.Pod()
    pod.metadata.managed_fields.append(entry)
    doc = codec.encode(pod)["metadata"]["managedFields"][0]
    assert doc["fieldsV1"] == fm.to_fields_v1(paths)
    assert codec.decode_into({"metadata": {"managedFields": [doc]}}, core.Pod) == pod
    with pytest.raises(errors.StatusError, match="fieldsV1"):
        codec.decode_into({"metadata": {"managedFields": [{"fieldsV1": "f:spec"}]}}, core.Pod)
    # Objects stored while the field was a google.protobuf.Struct still read.
    legacy = struct_pb2.Struct()
    legacy.update(fm.to_fields_v1(paths))
    old = core.Pod().metadata.managed_fields.add(fields_v1=legacy.SerializeToString())
    assert fm.entry_paths(old) == paths


def test_the_default_manager_is_the_user_agents_first_word() -> None:
    assert field_manager("", "kubectl/v1.37.1 (linux/amd64) kubernetes/abcdef") == "kubectl"
    assert field_manager("", "kubelite-kubelet/v0.1.0 (linux/x86_64) grpc-python-asyncio/1.66") == \
        "kubelite-kubelet"
    assert field_manager("", "") == ""
    assert field_manager("", "a\x00b" + "x" * 200) == "ab" + "x" * 126
    assert field_manager("mine", "kubectl/v1") == "mine"
    with pytest.raises(errors.StatusError, match="may not be more than 128 bytes"):
        field_manager("m" * 129, "")
    with pytest.raises(errors.StatusError, match="printable"):
        field_manager("bad\nname", "")


POD_BASE: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "p", "labels": {"app": "w", "tier": "web"}, "finalizers": ["a/b"],
                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1"}]},
    "spec": {"containers": [{"name": "web", "image": "x", "ports": [{"containerPort": 80}],
                             "resources": {"requests": {"cpu": "1"}}, "args": ["a"]}],
             "tolerations": [{"key": "k", "operator": "Exists"}], "nodeSelector": {"disk": "ssd"}},
    "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True",
                                                    "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}


def changed_pod(change: Any) -> core.Pod:
    doc = codec.encode(codec.decode_into(POD_BASE, core.Pod))
    change(doc)
    return codec.decode_into(doc, core.Pod)


@pytest.mark.parametrize("change", [
    lambda d: d["metadata"]["labels"].update(tier="db"),
    lambda d: d["metadata"]["labels"].pop("tier"),
    lambda d: d["metadata"].pop("labels"),
    lambda d: d["metadata"]["finalizers"].append("c/d"),
    lambda d: d["metadata"].update(name="other", resourceVersion="9"),  # bookkeeping: nobody's
    lambda d: d["spec"]["containers"][0].update(image="y"),
    lambda d: d["spec"]["containers"][0].pop("resources"),
    lambda d: d["spec"]["containers"][0]["args"].append("b"),
    lambda d: d["spec"]["containers"].append({"name": "log", "image": "z"}),
    lambda d: d["spec"].update(containers=[{"name": "new", "image": "z"}]),
    lambda d: d["spec"]["containers"][0]["ports"].append({"containerPort": 81}),
    lambda d: d["spec"]["tolerations"].append({"key": "j", "operator": "Exists"}),
    lambda d: d["spec"]["nodeSelector"].update(zone="a"),
    lambda d: d["status"]["conditions"][0].update(status="False"),
    lambda d: d["status"]["conditions"].append({"type": "Ready"}),
    lambda d: d["status"]["conditions"][0].pop("lastTransitionTime"),
    lambda d: d.pop("status"),
    lambda d: d["status"].update(podIP="10.0.0.1", phase="Running"),
])
def test_the_diff_finds_what_a_walk_of_both_objects_finds(change: Any) -> None:
    old, new = codec.decode_into(POD_BASE, core.Pod), changed_pod(change)
    for subresource in ("", "status"):
        before, after = fm.object_fields(old, subresource), fm.object_fields(new, subresource)
        assert fm.diff(old, new, subresource) == fm.compare(before, after)
        assert fm.diff(new, old, subresource) == fm.compare(after, before)


def test_kubectls_first_server_side_apply_takes_over_what_its_last_applied_annotation_holds() -> None:
    doc = deploy(replicas=2)
    doc["metadata"]["annotations"] = {fm.LAST_APPLIED: json.dumps(deploy(replicas=2))}
    live = write(None, doc, "kubectl-client-side-apply", now=100)
    # replicas still has its last-applied value: kubectl's own, no conflict; another applier conflicts.
    assert not apply(codec.encode(live), deploy(replicas=3), "kubectl").conflicts
    assert [c.manager for c in apply(codec.encode(live), deploy(replicas=3), "ops").conflicts] == \
        ["kubectl-client-side-apply"]
    # Once someone else changed replicas, the annotation no longer vouches for it.
    scaled = write(live, {**doc, "spec": {**doc["spec"], "replicas": 5}}, "kubectl-client-side-apply", now=110)
    assert [c.field() for c in apply(codec.encode(scaled), deploy(replicas=3), "kubectl").conflicts] == \
        [".spec.replicas"]
