"""The kubelite verbs end to end through click, against the real API server over in-memory storage.

Covers what a kubectl user would notice: outcome words, error lines and exit
codes, -o formats, and that a bad document stops a command before anything
is sent. The server is kubelite's own (tests/unit/inprocess.py), so what a
command did is checked in the objects it left, not in what it called.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.machinery.patch import LAST_APPLIED_ANNOTATION as LAST_APPLIED
from tests.support.apiserver import free_port
from tests.support.manifests import NGINX_DEPLOYMENT as DEPLOYMENT
from tests.unit.inprocess import InProcessCluster

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  selector:
    app: nginx
  ports:
  - protocol: TCP
    port: 80
    targetPort: 9376
"""


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    (tmp_path / "deploy.yaml").write_text(DEPLOYMENT)
    (tmp_path / "svc.yaml").write_text(SERVICE)
    return tmp_path


def cm(name: str, ns: str = "default", **labels: str) -> core.ConfigMap:
    obj = core.ConfigMap(api_version="v1", kind="ConfigMap")
    obj.metadata.name = name
    obj.metadata.namespace = ns
    obj.metadata.labels.update(labels)
    obj.data["k"] = "v"
    return obj


def ok(result: Any) -> Any:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


# --- apply / create / replace -----------------------------------------------------------------------------


def test_apply_creates_then_is_unchanged_then_configured(kl: InProcessCluster, manifests: Path) -> None:
    r = ok(kl.cli(["apply", "-f", str(manifests)]))
    assert r.stdout == "deployment.apps/nginx-deployment created\nservice/my-service created\n"
    stored = kl.stored(apps.Deployment, "nginx-deployment")
    assert stored is not None
    applied = json.loads(stored.metadata.annotations[LAST_APPLIED])  # type: ignore[attr-defined]
    assert applied["spec"]["replicas"] == 3 and applied["metadata"]["namespace"] == "default"

    calls_before = len(kl.writes())
    r = ok(kl.cli(["apply", "-f", str(manifests)]))
    assert r.stdout == "deployment.apps/nginx-deployment unchanged\nservice/my-service unchanged\n"
    assert len(kl.writes()) == calls_before, "an unchanged apply sends nothing"

    # Someone else's annotation survives, so apply patched what changed instead of replacing the object;
    # the container keeps its ports, so the patch merged the containers list by name (strategic merge).
    ok(kl.cli(["annotate", "deploy", "nginx-deployment", "owner=ops"]))
    (manifests / "deploy.yaml").write_text(DEPLOYMENT.replace("replicas: 3", "replicas: 5")
                                           .replace("image: nginx:local", "image: nginx:other"))
    r = ok(kl.cli(["apply", "-f", str(manifests / "deploy.yaml")]))
    assert r.stdout == "deployment.apps/nginx-deployment configured\n"
    stored = kl.stored(apps.Deployment, "nginx-deployment")
    assert stored is not None
    assert stored.spec.replicas == 5
    assert stored.metadata.annotations["owner"] == "ops"
    [container] = stored.spec.template.spec.containers
    assert container.image == "nginx:other" and [p.container_port for p in container.ports] == [80]
    assert json.loads(stored.metadata.annotations[LAST_APPLIED])["spec"]["replicas"] == 5


def test_apply_prunes_fields_dropped_from_the_manifest_only(kl: InProcessCluster, tmp_path: Path) -> None:
    f = tmp_path / "cm.yaml"
    head = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n"
    f.write_text(head + "  labels: {a: '1', b: '2'}\ndata: {x: '1'}\n")
    ok(kl.cli(["apply", "-f", str(f)]))
    ok(kl.cli(["label", "cm", "cfg", "c=3"]))  # someone else's label
    f.write_text(head + "  labels: {a: '1'}\ndata: {x: '1'}\n")
    assert ok(kl.cli(["apply", "-f", str(f)])).stdout == "configmap/cfg configured\n"
    stored = kl.stored(core.ConfigMap, "cfg")
    assert dict(stored.metadata.labels) == {"a": "1", "c": "3"}  # type: ignore[union-attr]


def test_apply_from_stdin_with_dry_run_sends_no_writes(kl: InProcessCluster) -> None:
    r = ok(kl.cli(["apply", "-f", "-", "--dry-run=client"], input=DEPLOYMENT))
    assert r.stdout == "deployment.apps/nginx-deployment created (dry run)\n"
    assert kl.writes() == []
    r = ok(kl.cli(["apply", "-f", "-", "--dry-run"], input=DEPLOYMENT))
    assert r.stdout.endswith("(dry run)\n")
    # The server runs a server-side dry run through admission and validation, and stores nothing.
    r = ok(kl.cli(["apply", "-f", "-", "--dry-run=server"], input=DEPLOYMENT))
    assert r.stdout == "deployment.apps/nginx-deployment created (server dry run)\n"
    assert kl.stored(apps.Deployment, "nginx-deployment") is None


def test_apply_namespace_flag_and_clash(kl: InProcessCluster, manifests: Path) -> None:
    kl.ensure_namespace("dev")
    ok(kl.cli(["apply", "-n", "dev", "-f", str(manifests / "svc.yaml")]))
    assert kl.stored(core.Service, "my-service", "dev") is not None
    text = SERVICE.replace("name: my-service", "name: my-service\n  namespace: prod")
    r = kl.cli(["apply", "-n", "dev", "-f", "-"], input=text)
    assert r.exit_code == 1
    assert r.stderr.startswith('error: the namespace from the provided object "prod" does not match the namespace '
                               '"dev"')


def test_malformed_yaml_names_file_and_line_and_sends_nothing(kl: InProcessCluster, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n data: [\n")
    r = kl.cli(["apply", "-f", str(bad)])
    assert r.exit_code == 1
    assert r.stderr.startswith(f"error: error parsing {bad}")
    assert "line " in r.stderr and "Traceback" not in r.stderr
    assert kl.calls == []


def test_unknown_field_is_named_by_path(kl: InProcessCluster, tmp_path: Path) -> None:
    f = tmp_path / "deploy.yaml"
    f.write_text(DEPLOYMENT.replace("replicas: 3", "replicaz: 3"))
    r = kl.cli(["apply", "-f", str(f)])
    assert r.exit_code == 1
    assert r.stderr.startswith(f'error: error validating "{f}": ')
    assert 'unknown field "spec.replicaz"' in r.stderr
    assert kl.calls == []


def test_one_bad_document_among_several_stops_everything(kl: InProcessCluster, tmp_path: Path) -> None:
    f = tmp_path / "all.yaml"
    f.write_text(DEPLOYMENT + "---\n" + SERVICE.replace("port: 80", "port: eighty") + "---\n"
                 + "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n")
    for verb in ("apply", "create", "replace", "delete"):
        r = kl.cli([verb, "-f", str(f)])
        assert r.exit_code == 1, verb
        assert r.stderr.startswith("error: "), verb
        assert kl.writes() == [], verb
    assert kl.stored(apps.Deployment, "nginx-deployment") is None
    assert kl.stored(core.Service, "my-service") is None and kl.stored(core.ConfigMap, "ok") is None


def test_unknown_kind_in_a_manifest(kl: InProcessCluster) -> None:
    r = kl.cli(["apply", "-f", "-"], input="apiVersion: v1\nkind: Frobnicator\nmetadata:\n  name: x\n")
    assert r.exit_code == 1
    assert 'no matches for kind "Frobnicator" in version "v1"' in r.stderr
    r = kl.cli(["create", "-f", "-"], input="kind: ConfigMap\nmetadata:\n  name: x\n")
    assert r.exit_code == 1 and "apiVersion not set" in r.stderr
    assert kl.calls == []


def test_missing_file(kl: InProcessCluster) -> None:
    r = kl.cli(["apply", "-f", "/nonexistent/x.yaml"])
    assert r.exit_code == 1
    assert r.stderr == 'error: the path "/nonexistent/x.yaml" does not exist\n'
    r = kl.cli(["apply"])
    assert r.exit_code == 1 and r.stderr == "error: must specify one of -f and -k\n"


def test_create_reports_already_exists_like_kubectl(kl: InProcessCluster, manifests: Path) -> None:
    f = manifests / "deploy.yaml"
    assert ok(kl.cli(["create", "-f", str(f)])).stdout == "deployment.apps/nginx-deployment created\n"
    r = kl.cli(["create", "-f", str(f)])
    assert r.exit_code == 1
    assert r.stderr == (f'Error from server (AlreadyExists): error when creating "{f}": '
                        'deployments.apps "nginx-deployment" already exists\n')


def test_create_namespace_subcommand(kl: InProcessCluster) -> None:
    assert ok(kl.cli(["create", "namespace", "dev"])).stdout == "namespace/dev created\n"
    assert kl.stored(core.Namespace, "dev", "") is not None


def test_replace_requires_an_existing_object(kl: InProcessCluster, manifests: Path) -> None:
    f = manifests / "svc.yaml"
    r = kl.cli(["replace", "-f", str(f)])
    assert r.exit_code == 1
    assert r.stderr == f'Error from server (NotFound): error when replacing "{f}": services "my-service" not found\n'
    ok(kl.cli(["create", "-f", str(f)]))
    f.write_text(SERVICE.replace("targetPort: 9376", "targetPort: 8080"))
    assert ok(kl.cli(["replace", "-f", str(f)])).stdout == "service/my-service replaced\n"
    assert kl.stored(core.Service, "my-service").spec.ports[0].target_port == "8080"  # type: ignore[union-attr]


# --- get ---------------------------------------------------------------------------------------------------


def test_get_table_name_yaml_json(kl: InProcessCluster) -> None:
    kl.add(cm("a", app="x"))
    kl.add(cm("b"))
    r = ok(kl.cli(["get", "cm"]))
    assert r.stdout.splitlines()[0].split() == ["NAME", "DATA", "AGE"]
    assert [line.split()[0] for line in r.stdout.splitlines()[1:]] == ["a", "b"]
    assert ok(kl.cli(["get", "configmaps", "-o", "name"])).stdout == "configmap/a\nconfigmap/b\n"
    listed = yaml.safe_load(ok(kl.cli(["get", "cm", "-o", "yaml"])).stdout)
    assert listed["apiVersion"] == "v1" and listed["kind"] == "List"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a", "b"]
    assert listed["items"][0]["kind"] == "ConfigMap"
    single = json.loads(ok(kl.cli(["get", "cm", "a", "-o", "json"])).stdout)
    assert single["kind"] == "ConfigMap" and single["metadata"]["name"] == "a"
    # Field ownership is left out, as kubectl prints objects, unless asked for.
    assert "managedFields" not in single["metadata"] and "managedFields" not in listed["items"][0]["metadata"]
    shown = json.loads(ok(kl.cli(["get", "cm", "a", "-o", "json", "--show-managed-fields"])).stdout)
    assert shown["metadata"]["managedFields"][0]["operation"] == "Update"
    assert ok(kl.cli(["get", "cm", "-l", "app=x", "-o", "name"])).stdout == "configmap/a\n"
    assert ok(kl.cli(["get", "cm/b", "-o=name"])).stdout == "configmap/b\n"


def test_get_several_kinds_prefixes_names(kl: InProcessCluster) -> None:
    kl.add(cm("a"))
    sa = core.ServiceAccount(api_version="v1", kind="ServiceAccount")
    sa.metadata.name = "default"
    kl.add(sa)
    out = ok(kl.cli(["get", "cm,sa"])).stdout.split("\n\n")
    assert out[0].splitlines()[1].startswith("configmap/a ")
    assert out[1].splitlines()[1].startswith("serviceaccount/default ")


def test_get_all_namespaces_adds_namespace_column(kl: InProcessCluster) -> None:
    kl.add(cm("a", "dev"))
    kl.add(cm("b", "prod"))
    lines = ok(kl.cli(["get", "cm", "-A"])).stdout.splitlines()
    assert lines[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert [line.split()[:2] for line in lines[1:]] == [["dev", "a"], ["prod", "b"]]
    assert ok(kl.cli(["get", "cm", "--all-namespaces=true", "--no-headers"])).stdout.count("\n") == 2


def test_get_empty_and_not_found(kl: InProcessCluster) -> None:
    r = ok(kl.cli(["get", "pods"]))
    assert r.stdout == "" and r.stderr == "No resources found in default namespace.\n"
    r = ok(kl.cli(["get", "pods", "-n", "dev"]))
    assert r.stderr == "No resources found in dev namespace.\n"
    assert ok(kl.cli(["get", "nodes"])).stderr == "No resources found\n"
    r = kl.cli(["get", "po", "x"])
    assert r.exit_code == 1 and r.stderr == 'Error from server (NotFound): pods "x" not found\n'
    assert ok(kl.cli(["get", "po", "x", "--ignore-not-found"])).stderr == ""


def test_unknown_resource_type(kl: InProcessCluster) -> None:
    r = kl.cli(["get", "foo"])
    assert r.exit_code == 1 and r.stderr == 'error: the server doesn\'t have a resource type "foo"\n'
    assert kl.calls == []


@pytest.mark.parametrize("short", ["po", "svc", "deploy", "rs", "no", "ns", "cm", "ep", "sa", "ev"])
def test_short_names(kl: InProcessCluster, short: str) -> None:
    assert kl.cli(["get", short]).exit_code == 0


def test_get_all_lists_the_all_category(kl: InProcessCluster, manifests: Path) -> None:
    ok(kl.cli(["apply", "-f", str(manifests)]))
    kl.add(cm("not-in-all"))
    out = ok(kl.cli(["get", "all"])).stdout
    assert "service/my-service" in out and "deployment.apps/nginx-deployment" in out
    assert "not-in-all" not in out


def test_bad_output_format(kl: InProcessCluster) -> None:
    r = kl.cli(["get", "pods", "-o", "xml"])
    assert r.exit_code == 1 and r.stderr.startswith('error: unable to match a printer suitable for the output '
                                                    'format "xml"')


def test_get_watch_prints_rows_as_events_arrive(kl: InProcessCluster) -> None:
    kl.add(cm("a"))

    async def between_list_and_watch(client: Client) -> None:
        await client.create(cm("b"))
        await client.delete(core.ConfigMap, "b", "default")

    r = ok(kl.cli(["get", "cm", "-w"], on_watch=between_list_and_watch, watch_events=2))
    lines = r.stdout.splitlines()
    # The watch starts where the list ended, so no change in between is lost (a watch from "now" would
    # miss b) and nothing listed comes again (a watch from "" would add a second row for a).
    assert [line.split()[0] for line in lines] == ["NAME", "a", "b", "b"]


def test_get_watch_of_one_name_uses_a_field_selector(kl: InProcessCluster) -> None:
    kl.add(cm("a"))

    async def other_then_a(client: Client) -> None:
        await client.create(cm("other"))
        await client.patch(core.ConfigMap, "a", "default", {"data": {"k": "changed"}})

    # Ends after one event: with the selector that is a's change, without it the other object's creation.
    r = ok(kl.cli(["get", "cm", "a", "--watch"], on_watch=other_then_a, watch_events=1))
    assert [line.split()[0] for line in r.stdout.splitlines()] == ["NAME", "a", "a"]
    assert kl.watches[0][3] == "metadata.name=a"


# --- label / annotate / patch ------------------------------------------------------------------------------


def test_label_add_overwrite_remove(kl: InProcessCluster) -> None:
    kl.add(cm("a", app="web"))
    assert ok(kl.cli(["label", "cm", "a", "tier=fe"])).stdout == "configmap/a labeled\n"
    assert dict(kl.stored(core.ConfigMap, "a").metadata.labels) == {"app": "web", "tier": "fe"}  # type: ignore[union-attr]
    r = kl.cli(["label", "cm", "a", "app=db"])
    assert r.exit_code == 1 and r.stderr == "error: 'app' already has a value (web), and --overwrite is false\n"
    assert ok(kl.cli(["label", "cm", "a", "app=web"])).stdout == "configmap/a not labeled\n"
    assert ok(kl.cli(["label", "cm/a", "app=db", "--overwrite"])).stdout == "configmap/a labeled\n"
    assert ok(kl.cli(["label", "cm", "a", "tier-"])).stdout == "configmap/a unlabeled\n"
    assert dict(kl.stored(core.ConfigMap, "a").metadata.labels) == {"app": "db"}  # type: ignore[union-attr]


def test_annotate(kl: InProcessCluster) -> None:
    kl.add(cm("a"))
    assert ok(kl.cli(["annotate", "cm", "a", "note=hello world"])).stdout == "configmap/a annotated\n"
    stored = kl.stored(core.ConfigMap, "a")
    assert stored.metadata.annotations["note"] == "hello world"  # type: ignore[union-attr]
    r = kl.cli(["annotate", "cm", "a", "note=other"])
    assert r.exit_code == 1 and "--overwrite is false" in r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["label", "cm", "a"], "error: at least one label update is required\n"),
        (["label", "cm", "a", "bad key=v"], 'error: invalid label spec: "bad key=v"'),
        (["label", "cm", "a", "k=bad value!"], 'error: invalid label spec: "k=bad value!"'),
        (["label", "cm", "a", "k=v", "k-"], "error: can not both modify and remove"),
        (["label", "a=b", "cm", "x"], "error: all resources must be specified before label changes: cm"),
        (["label", "cm", "k=v"], "error: resource(s) were provided, but no name was specified"),
        (["annotate", "cm", "a", "/x=1"], 'error: invalid annotation spec: "/x=1"'),
    ],
)
def test_label_argument_errors(kl: InProcessCluster, args: list[str], message: str) -> None:
    kl.add(cm("a"))
    r = kl.cli(args)
    assert r.exit_code == 1
    assert r.stderr.startswith(message)
    assert kl.writes() == []


def test_label_by_selector(kl: InProcessCluster) -> None:
    kl.add(cm("a", app="web"))
    kl.add(cm("b", app="db"))
    r = ok(kl.cli(["label", "cm", "-l", "app=web", "x=1"]))
    assert r.stdout == "configmap/a labeled\n"
    assert dict(kl.stored(core.ConfigMap, "a").metadata.labels) == {"app": "web", "x": "1"}  # type: ignore[union-attr]
    assert dict(kl.stored(core.ConfigMap, "b").metadata.labels) == {"app": "db"}  # type: ignore[union-attr]


def test_patch_types_and_no_change(kl: InProcessCluster, manifests: Path) -> None:
    ok(kl.cli(["apply", "-f", str(manifests / "deploy.yaml")]))
    r = ok(kl.cli(["patch", "deploy", "nginx-deployment", "-p", '{"spec":{"replicas":2}}']))
    assert r.stdout == "deployment.apps/nginx-deployment patched\n"
    # The default type is a strategic merge: a container named in the patch is merged by name, keeping its ports.
    image = '{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:other"}]}}}}'
    ok(kl.cli(["patch", "deploy", "nginx-deployment", "-p", image]))
    [container] = kl.stored(apps.Deployment, "nginx-deployment").spec.template.spec.containers  # type: ignore[union-attr]
    assert container.image == "nginx:other" and [p.container_port for p in container.ports] == [80]
    r = ok(kl.cli(["patch", "deploy", "nginx-deployment", "-p", "spec: {replicas: 2}", "--type", "merge"]))
    assert r.stdout == "deployment.apps/nginx-deployment patched (no change)\n"
    ops = '[{"op":"replace","path":"/spec/replicas","value":4}]'
    ok(kl.cli(["patch", "deployment/nginx-deployment", "--type=json", "-p", ops]))
    assert kl.stored(apps.Deployment, "nginx-deployment").spec.replicas == 4  # type: ignore[union-attr]


def test_patch_errors(kl: InProcessCluster) -> None:
    r = kl.cli(["patch", "deploy", "nope", "-p", "{}"])
    assert r.exit_code == 1 and r.stderr == 'Error from server (NotFound): deployments.apps "nope" not found\n'
    r = kl.cli(["patch", "deploy", "nope", "-p", "{not: [json"])
    assert r.exit_code == 1 and r.stderr.startswith('error: unable to parse "{not: [json"')
    r = kl.cli(["patch", "deploy", "nope", "-p", "{}", "--type", "bogus"])
    assert r.exit_code == 1 and r.stderr == 'error: --type must be one of [json merge strategic], not "bogus"\n'


# --- delete ------------------------------------------------------------------------------------------------


def test_delete_by_name_file_selector_and_all(kl: InProcessCluster, manifests: Path) -> None:
    kl.add(cm("a", app="x"))
    kl.add(cm("b", app="y"))
    kl.add(cm("c"))
    # Background (the default cascade) removes the object at once; the garbage collector handles dependents.
    assert ok(kl.cli(["delete", "cm", "a"])).stdout == 'configmap "a" deleted\n'
    assert kl.names(core.ConfigMap) == ["b", "c"]
    assert ok(kl.cli(["delete", "cm", "-l", "app=y"])).stdout == 'configmap "b" deleted\n'
    assert kl.names(core.ConfigMap) == ["c"]
    # Orphan: the server keeps the object under the "orphan" finalizer until the garbage collector has
    # released its dependents (there is none here, hence --wait=false).
    r = ok(kl.cli(["delete", "cm", "--all", "--cascade=orphan", "--wait=false"]))
    assert r.stdout == 'configmap "c" deleted\n'
    held = kl.stored(core.ConfigMap, "c")
    assert held is not None and list(held.metadata.finalizers) == ["orphan"]
    assert held.metadata.HasField("deletion_timestamp")
    ok(kl.cli(["apply", "-f", str(manifests)]))
    r = ok(kl.cli(["delete", "-f", str(manifests)]))
    assert r.stdout == 'deployment.apps "nginx-deployment" deleted\nservice "my-service" deleted\n'
    assert kl.names(apps.Deployment) == []
    assert kl.stored(core.Service, "my-service") is None


def test_delete_errors(kl: InProcessCluster) -> None:
    r = kl.cli(["delete", "pod", "x"])
    assert r.exit_code == 1 and r.stderr == 'Error from server (NotFound): pods "x" not found\n'
    assert ok(kl.cli(["delete", "pod", "x", "--ignore-not-found"])).stderr == ""
    r = kl.cli(["delete", "pods"])
    assert r.exit_code == 1 and r.stderr == "error: resource(s) were provided, but no name was specified\n"
    r = kl.cli(["delete", "cm", "a", "--cascade=sideways"])
    assert r.exit_code == 1 and r.stderr.startswith("error: invalid cascade value (sideways)")


def held(name: str) -> core.ConfigMap:
    obj = cm(name)
    obj.metadata.finalizers.append("example.com/hold")
    return obj


def test_delete_waits_for_finalizers_through_the_watch(kl: InProcessCluster) -> None:
    kl.add(held("held"))
    finalizers_seen: list[list[str]] = []

    async def finalize(client: Client) -> None:
        # The holder of the finalizer (and the garbage collector, for foregroundDeletion) finishing their work
        # while the CLI waits: the server then removes the object and the watch reports DELETED.
        current = await client.get(core.ConfigMap, "held", "default")
        finalizers_seen.append(list(current.metadata.finalizers))
        del current.metadata.finalizers[:]
        await client.update(current)

    r = ok(kl.cli(["delete", "cm", "held", "--cascade=foreground"], on_watch=finalize))
    assert r.stdout == 'configmap "held" deleted\n'
    assert finalizers_seen == [["example.com/hold", "foregroundDeletion"]]
    assert kl.watches[0][3] == "metadata.name=held"
    assert kl.stored(core.ConfigMap, "held") is None
    # Nothing removes the finalizer and a short timeout: kubectl's timeout error, the object still there.
    kl.add(held("held"))
    r = kl.cli(["delete", "cm", "held", "--timeout=200ms"])
    assert r.exit_code == 1
    assert r.stderr == "error: timed out waiting for the condition on configmaps/held\n"
    assert ok(kl.cli(["delete", "cm", "held", "--wait=false"])).stdout == 'configmap "held" deleted\n'
    still = kl.stored(core.ConfigMap, "held")
    assert still is not None and still.metadata.HasField("deletion_timestamp")


# --- describe / edit / discovery ---------------------------------------------------------------------------


def test_describe_shows_fields_and_matching_events(kl: InProcessCluster) -> None:
    p = core.Pod(api_version="v1", kind="Pod")
    p.metadata.name = "web"
    p.metadata.labels["app"] = "web"
    p.spec.node_name = "n1"
    c = p.spec.containers.add()
    c.name, c.image = "nginx", "nginx:local"
    p.status.phase = "Running"
    stored = kl.add(p)
    for name, involved, uid in (("e1", "web", stored.metadata.uid), ("e2", "other", ""),  # type: ignore[attr-defined]
                                ("e3", "web", "uid-of-a-predecessor")):
        ev = core.Event(api_version="v1", kind="Event", type="Normal", reason="Scheduled", message=f"msg {name}")
        ev.metadata.name = name
        ev.involved_object.kind = "Pod"
        ev.involved_object.name = involved
        ev.involved_object.namespace = "default"
        ev.involved_object.uid = uid
        ev.last_timestamp.GetCurrentTime()
        kl.add(ev)
    out = ok(kl.cli(["describe", "pod", "web"])).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["Name:", "web"]
    assert "Labels:" in out and "app=web" in out and "Image:" in out and "nginx:local" in out
    assert "msg e1" in out and "msg e2" not in out and "msg e3" not in out
    assert lines[-3].split() == ["Type", "Reason", "Age", "From", "Message"]

    kl.add(cm("quiet"))
    out = ok(kl.cli(["describe", "cm/quiet"])).stdout
    assert out.splitlines()[-1].split() == ["Events:", "<none>"]
    r = kl.cli(["describe", "cm", "zzz"])
    assert r.exit_code == 1 and r.stderr == 'Error from server (NotFound): configmaps "zzz" not found\n'


def _editor(transform: Any) -> Any:
    def edit(path: str) -> int:
        text = Path(path).read_text()
        Path(path).write_text(transform(text))
        return 0

    return edit



def test_describe_of_a_pending_pod_says_why_in_its_conditions(kl: InProcessCluster) -> None:
    p = core.Pod(api_version="v1", kind="Pod")
    p.metadata.name = "pending"
    c = p.spec.containers.add()
    c.name, c.image = "app", "busybox"
    p.status.phase = "Pending"
    p.status.nominated_node_name = "n2"
    message = ("0/4 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, "
               "3 Insufficient cpu. preemption: 0/4 nodes are available: 4 No preemption victims found for "
               "incoming pod.")
    p.status.conditions.add(type="PodScheduled", status="False", reason="Unschedulable", message=message)
    stored = kl.add(p)
    stored.status.CopyFrom(p.status)  # a create drops the status; the scheduler writes it through pods/status
    kl.run(kl.client.update_status(stored))
    out = ok(kl.cli(["describe", "pod", "pending"])).stdout
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("Conditions:"))
    assert lines[at + 1].split() == ["Type", "Status", "Reason", "Message"]
    assert lines[at + 3].split(None, 3) == ["PodScheduled", "False", "Unschedulable", message]
    assert next(line for line in lines if line.startswith("NominatedNodeName:")).split() == ["NominatedNodeName:", "n2"]
    # Conditions that hold need no explanation: kubectl's two columns.
    p2 = core.Pod(api_version="v1", kind="Pod")
    p2.metadata.name = "fine"
    c2 = p2.spec.containers.add()
    c2.name, c2.image = "app", "busybox"
    p2.status.conditions.add(type="PodScheduled", status="True")
    stored = kl.add(p2)
    stored.status.CopyFrom(p2.status)
    kl.run(kl.client.update_status(stored))
    lines = ok(kl.cli(["describe", "pod", "fine"])).stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("Conditions:"))
    assert lines[at + 1].split() == ["Type", "Status"]

def test_edit_updates_cancels_and_reopens_on_error(kl: InProcessCluster) -> None:
    kl.add(cm("a"))
    r = ok(kl.cli(["edit", "cm", "a"], editor=_editor(lambda t: t.replace("k: v", "k: changed"))))
    assert r.stdout == "configmap/a edited\n"
    assert kl.stored(core.ConfigMap, "a").data["k"] == "changed"  # type: ignore[union-attr]

    r = ok(kl.cli(["edit", "cm", "a"], editor=_editor(lambda t: t)))
    assert r.stderr == "Edit cancelled, no changes made.\n"

    seen: list[str] = []

    def bad_then_same(t: str) -> str:
        seen.append(t)
        return t.replace("k: changed", "k: changed\nbogus: 1") if len(seen) == 1 else t

    before = len(kl.writes())
    r = kl.cli(["edit", "cm", "a"], editor=_editor(bad_then_same))
    assert r.exit_code == 1
    assert 'unknown field "bogus"' in seen[1], "the file reopens with the error on top"
    assert r.stderr.rstrip().endswith("error: Edit cancelled, no valid changes were saved.")
    assert len(kl.writes()) == before


def test_api_resources_and_version(kl: InProcessCluster) -> None:
    lines = ok(kl.cli(["api-resources"])).stdout.splitlines()
    assert lines[0].split() == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    pods = next(line for line in lines if line.startswith("pods "))
    assert pods.split() == ["pods", "po", "v1", "true", "Pod"]
    assert lines.index(pods) < next(i for i, line in enumerate(lines) if line.startswith("deployments "))
    names = ok(kl.cli(["api-resources", "--namespaced=false", "-o", "name"])).stdout.split()
    assert names == ["namespaces", "nodes", "priorityclasses.scheduling.k8s.io"]
    out = ok(kl.cli(["version"])).stdout.splitlines()
    server_version = kl.run(kl.client.version()).git_version
    assert out[0].startswith("Client Version: v") and out[1] == f"Server Version: {server_version}"
    assert ok(kl.cli(["version", "--client"])).stdout.count("\n") == 1


# --- flags and errors --------------------------------------------------------------------------------------


def test_global_flags_work_before_and_after_the_verb(kl: InProcessCluster) -> None:
    kl.add(cm("a", "dev"))
    assert ok(kl.cli(["-n", "dev", "get", "cm", "-o", "name"])).stdout == "configmap/a\n"
    assert ok(kl.cli(["get", "cm", "-o", "name", "--namespace=dev"])).stdout == "configmap/a\n"


def test_unknown_flag_is_a_kubectl_style_error(kl: InProcessCluster) -> None:
    r = kl.cli(["get", "pods", "--bogus"])
    assert r.exit_code == 1
    assert r.stderr == "error: unknown flag: --bogus\nSee 'kubelite get --help' for usage.\n"
    r = kl.cli(["frobnicate"])
    assert r.exit_code == 1 and r.stderr.startswith("error: ")


def test_server_errors_never_show_tracebacks(kl: InProcessCluster) -> None:
    port = free_port()  # nothing listens there
    r = kl.cli(["get", "pods", "-s", f"127.0.0.1:{port}"])
    assert r.exit_code == 1
    assert r.stderr == (f"The connection to the server 127.0.0.1:{port} was refused - did you specify the right "
                        "host or port?\n")


def pod_on_node(name: str) -> core.Pod:
    """A pod a kubelet runs: its deletion is graceful, so the grace period the CLI sent shows in the object."""
    p = core.Pod(api_version="v1", kind="Pod")
    p.metadata.name = name
    p.spec.node_name = "n1"
    c = p.spec.containers.add()
    c.name, c.image = "app", "nginx:local"
    return p


def test_grace_period_zero_needs_force_like_kubectl(kl: InProcessCluster) -> None:
    # kubectl turns --grace-period=0 into 1 unless --force is given: no accidental force deletion.
    kl.add(pod_on_node("a"))
    r = ok(kl.cli(["delete", "pod", "a", "--grace-period=0", "--wait=false"]))
    assert r.stdout == 'pod "a" deleted\n' and r.stderr == ""
    terminating = kl.stored(core.Pod, "a")
    assert terminating is not None and terminating.metadata.deletion_grace_period_seconds == 1
    kl.add(pod_on_node("b"))
    r = ok(kl.cli(["delete", "pod", "b", "--grace-period=0", "--force"]))
    assert r.stdout == 'pod "b" force deleted\n' and r.stderr.startswith("Warning: Immediate deletion")
    assert kl.stored(core.Pod, "b") is None
    r = kl.cli(["delete", "pod", "c", "--grace-period=5", "--force"])
    assert r.exit_code == 1
    assert r.stderr == "error: --force and --grace-period greater than 0 cannot be specified together\n"
    kl.add(pod_on_node("c"))
    ok(kl.cli(["delete", "pod", "c", "--grace-period=5", "--wait=false"]))
    terminating = kl.stored(core.Pod, "c")
    assert terminating is not None and terminating.metadata.deletion_grace_period_seconds == 5


def test_label_rejects_an_unknown_dry_run_value(kl: InProcessCluster) -> None:
    kl.add(cm("a"))
    r = kl.cli(["label", "cm", "a", "x=1", "--dry-run=bogus"])
    assert r.exit_code == 1 and r.stderr.startswith('error: Invalid dry-run value (bogus).')
    assert kl.writes() == []


def test_kubeconfig_problems_are_errors_not_tracebacks(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from kubelite.cli.app import CliDeps, cli

    missing = str(tmp_path / "missing")
    r = CliRunner().invoke(cli, ["--kubeconfig", missing, "get", "pods"], obj=CliDeps())
    assert r.exit_code == 1 and r.stderr == f"error: kubeconfig {missing} does not exist\n"
    r = CliRunner().invoke(cli, ["get", "pods", "-s", "http://"], obj=CliDeps())
    assert r.exit_code == 1 and r.stderr == "error: invalid server address 'http://'\n"


def test_delete_several_types_by_name_like_kubectl(kl: InProcessCluster) -> None:
    # kubectl's own example: kubectl delete pod,service baz foo
    kl.add(cm("a"))
    r = ok(kl.cli(["delete", "secret,cm", "a", "--ignore-not-found"]))
    assert r.stdout == 'configmap "a" deleted\n'
    assert kl.names(core.ConfigMap) == []
