"""The kubelite verbs end to end through click, against the in-memory FakeClient.

Covers what a kubectl user would notice: outcome words, error lines and exit
codes, -o formats, and that a bad document stops a command before anything
is sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.cli.apply import LAST_APPLIED
from kubelite.cli.fake import FakeClient, FakeWatchEvent, run_cli
from tests.support.manifests import NGINX_DEPLOYMENT as DEPLOYMENT

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
def client() -> FakeClient:
    return FakeClient()


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


def test_apply_creates_then_is_unchanged_then_configured(client: FakeClient, manifests: Path) -> None:
    r = ok(run_cli(client, ["apply", "-f", str(manifests)]))
    assert r.stdout == "deployment.apps/nginx-deployment created\nservice/my-service created\n"
    stored = client.stored(apps.Deployment, "nginx-deployment")
    assert stored is not None
    applied = json.loads(stored.metadata.annotations[LAST_APPLIED])  # type: ignore[attr-defined]
    assert applied["spec"]["replicas"] == 3 and applied["metadata"]["namespace"] == "default"

    calls_before = len(client.writes())
    r = ok(run_cli(client, ["apply", "-f", str(manifests)]))
    assert r.stdout == "deployment.apps/nginx-deployment unchanged\nservice/my-service unchanged\n"
    assert len(client.writes()) == calls_before, "an unchanged apply sends nothing"

    (manifests / "deploy.yaml").write_text(DEPLOYMENT.replace("replicas: 3", "replicas: 5"))
    r = ok(run_cli(client, ["apply", "-f", str(manifests / "deploy.yaml")]))
    assert r.stdout == "deployment.apps/nginx-deployment configured\n"
    patch, patch_type = client.last_patch
    assert patch_type == "application/strategic-merge-patch+json"
    assert isinstance(patch, dict) and patch["spec"] == {"replicas": 5}
    stored = client.stored(apps.Deployment, "nginx-deployment")
    assert stored.spec.replicas == 5  # type: ignore[union-attr]
    assert json.loads(stored.metadata.annotations[LAST_APPLIED])["spec"]["replicas"] == 5  # type: ignore[union-attr]


def test_apply_prunes_fields_dropped_from_the_manifest_only(client: FakeClient, tmp_path: Path) -> None:
    f = tmp_path / "cm.yaml"
    head = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n"
    f.write_text(head + "  labels: {a: '1', b: '2'}\ndata: {x: '1'}\n")
    ok(run_cli(client, ["apply", "-f", str(f)]))
    ok(run_cli(client, ["label", "cm", "cfg", "c=3"]))  # someone else's label
    f.write_text(head + "  labels: {a: '1'}\ndata: {x: '1'}\n")
    assert ok(run_cli(client, ["apply", "-f", str(f)])).stdout == "configmap/cfg configured\n"
    stored = client.stored(core.ConfigMap, "cfg")
    assert dict(stored.metadata.labels) == {"a": "1", "c": "3"}  # type: ignore[union-attr]


def test_apply_from_stdin_with_dry_run_sends_no_writes(client: FakeClient) -> None:
    r = ok(run_cli(client, ["apply", "-f", "-", "--dry-run=client"], input=DEPLOYMENT))
    assert r.stdout == "deployment.apps/nginx-deployment created (dry run)\n"
    assert client.writes() == []
    r = ok(run_cli(client, ["apply", "-f", "-", "--dry-run"], input=DEPLOYMENT))
    assert r.stdout.endswith("(dry run)\n")


def test_apply_namespace_flag_and_clash(client: FakeClient, manifests: Path) -> None:
    ok(run_cli(client, ["apply", "-n", "dev", "-f", str(manifests / "svc.yaml")]))
    assert client.stored(core.Service, "my-service", "dev") is not None
    text = SERVICE.replace("name: my-service", "name: my-service\n  namespace: prod")
    r = run_cli(client, ["apply", "-n", "dev", "-f", "-"], input=text)
    assert r.exit_code == 1
    assert r.stderr.startswith('error: the namespace from the provided object "prod" does not match the namespace '
                               '"dev"')


def test_malformed_yaml_names_file_and_line_and_sends_nothing(client: FakeClient, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n data: [\n")
    r = run_cli(client, ["apply", "-f", str(bad)])
    assert r.exit_code == 1
    assert r.stderr.startswith(f"error: error parsing {bad}")
    assert "line " in r.stderr and "Traceback" not in r.stderr
    assert client.calls == []


def test_unknown_field_is_named_by_path(client: FakeClient, tmp_path: Path) -> None:
    f = tmp_path / "deploy.yaml"
    f.write_text(DEPLOYMENT.replace("replicas: 3", "replicaz: 3"))
    r = run_cli(client, ["apply", "-f", str(f)])
    assert r.exit_code == 1
    assert r.stderr.startswith(f'error: error validating "{f}": ')
    assert 'unknown field "spec.replicaz"' in r.stderr
    assert client.calls == []


def test_one_bad_document_among_several_stops_everything(client: FakeClient, tmp_path: Path) -> None:
    f = tmp_path / "all.yaml"
    f.write_text(DEPLOYMENT + "---\n" + SERVICE.replace("port: 80", "port: eighty") + "---\n"
                 + "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n")
    for verb in ("apply", "create", "replace", "delete"):
        r = run_cli(client, [verb, "-f", str(f)])
        assert r.exit_code == 1, verb
        assert r.stderr.startswith("error: "), verb
        assert client.writes() == [], verb
    assert client.objects == {}


def test_unknown_kind_in_a_manifest(client: FakeClient) -> None:
    r = run_cli(client, ["apply", "-f", "-"], input="apiVersion: v1\nkind: Frobnicator\nmetadata:\n  name: x\n")
    assert r.exit_code == 1
    assert 'no matches for kind "Frobnicator" in version "v1"' in r.stderr
    r = run_cli(client, ["create", "-f", "-"], input="kind: ConfigMap\nmetadata:\n  name: x\n")
    assert r.exit_code == 1 and "apiVersion not set" in r.stderr
    assert client.calls == []


def test_missing_file(client: FakeClient) -> None:
    r = run_cli(client, ["apply", "-f", "/nonexistent/x.yaml"])
    assert r.exit_code == 1
    assert r.stderr == 'error: the path "/nonexistent/x.yaml" does not exist\n'
    r = run_cli(client, ["apply"])
    assert r.exit_code == 1 and r.stderr == "error: must specify one of -f and -k\n"


def test_create_reports_already_exists_like_kubectl(client: FakeClient, manifests: Path) -> None:
    f = manifests / "deploy.yaml"
    assert ok(run_cli(client, ["create", "-f", str(f)])).stdout == "deployment.apps/nginx-deployment created\n"
    r = run_cli(client, ["create", "-f", str(f)])
    assert r.exit_code == 1
    assert r.stderr == (f'Error from server (AlreadyExists): error when creating "{f}": '
                        'deployments.apps "nginx-deployment" already exists\n')


def test_create_namespace_subcommand(client: FakeClient) -> None:
    assert ok(run_cli(client, ["create", "namespace", "dev"])).stdout == "namespace/dev created\n"
    assert client.stored(core.Namespace, "dev", "") is not None


def test_replace_requires_an_existing_object(client: FakeClient, manifests: Path) -> None:
    f = manifests / "svc.yaml"
    r = run_cli(client, ["replace", "-f", str(f)])
    assert r.exit_code == 1
    assert r.stderr == f'Error from server (NotFound): error when replacing "{f}": services "my-service" not found\n'
    ok(run_cli(client, ["create", "-f", str(f)]))
    f.write_text(SERVICE.replace("targetPort: 9376", "targetPort: 8080"))
    assert ok(run_cli(client, ["replace", "-f", str(f)])).stdout == "service/my-service replaced\n"
    assert client.stored(core.Service, "my-service").spec.ports[0].target_port == "8080"  # type: ignore[union-attr]


# --- get ---------------------------------------------------------------------------------------------------


def test_get_table_name_yaml_json(client: FakeClient) -> None:
    client.add(cm("a", app="x"))
    client.add(cm("b"))
    r = ok(run_cli(client, ["get", "cm"]))
    assert r.stdout.splitlines()[0].split() == ["NAME", "DATA", "AGE"]
    assert [line.split()[0] for line in r.stdout.splitlines()[1:]] == ["a", "b"]
    assert ok(run_cli(client, ["get", "configmaps", "-o", "name"])).stdout == "configmap/a\nconfigmap/b\n"
    listed = yaml.safe_load(ok(run_cli(client, ["get", "cm", "-o", "yaml"])).stdout)
    assert listed["apiVersion"] == "v1" and listed["kind"] == "List"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a", "b"]
    assert listed["items"][0]["kind"] == "ConfigMap"
    single = json.loads(ok(run_cli(client, ["get", "cm", "a", "-o", "json"])).stdout)
    assert single["kind"] == "ConfigMap" and single["metadata"]["name"] == "a"
    assert ok(run_cli(client, ["get", "cm", "-l", "app=x", "-o", "name"])).stdout == "configmap/a\n"
    assert ok(run_cli(client, ["get", "cm/b", "-o=name"])).stdout == "configmap/b\n"


def test_get_several_kinds_prefixes_names(client: FakeClient) -> None:
    client.add(cm("a"))
    sa = core.ServiceAccount(api_version="v1", kind="ServiceAccount")
    sa.metadata.name = "default"
    client.add(sa)
    out = ok(run_cli(client, ["get", "cm,sa"])).stdout.split("\n\n")
    assert out[0].splitlines()[1].startswith("configmap/a ")
    assert out[1].splitlines()[1].startswith("serviceaccount/default ")


def test_get_all_namespaces_adds_namespace_column(client: FakeClient) -> None:
    client.add(cm("a", "dev"))
    client.add(cm("b", "prod"))
    lines = ok(run_cli(client, ["get", "cm", "-A"])).stdout.splitlines()
    assert lines[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert [line.split()[:2] for line in lines[1:]] == [["dev", "a"], ["prod", "b"]]
    assert ok(run_cli(client, ["get", "cm", "--all-namespaces=true", "--no-headers"])).stdout.count("\n") == 2


def test_get_empty_and_not_found(client: FakeClient) -> None:
    r = ok(run_cli(client, ["get", "pods"]))
    assert r.stdout == "" and r.stderr == "No resources found in default namespace.\n"
    r = ok(run_cli(client, ["get", "pods", "-n", "dev"]))
    assert r.stderr == "No resources found in dev namespace.\n"
    assert ok(run_cli(client, ["get", "nodes"])).stderr == "No resources found\n"
    r = run_cli(client, ["get", "po", "x"])
    assert r.exit_code == 1 and r.stderr == 'Error from server (NotFound): pods "x" not found\n'
    assert ok(run_cli(client, ["get", "po", "x", "--ignore-not-found"])).stderr == ""


def test_unknown_resource_type(client: FakeClient) -> None:
    r = run_cli(client, ["get", "foo"])
    assert r.exit_code == 1 and r.stderr == 'error: the server doesn\'t have a resource type "foo"\n'
    assert client.calls == []


@pytest.mark.parametrize("short", ["po", "svc", "deploy", "rs", "no", "ns", "cm", "ep", "sa", "ev"])
def test_short_names(client: FakeClient, short: str) -> None:
    assert run_cli(client, ["get", short]).exit_code == 0


def test_get_all_lists_the_all_category(client: FakeClient, manifests: Path) -> None:
    ok(run_cli(client, ["apply", "-f", str(manifests)]))
    client.add(cm("not-in-all"))
    out = ok(run_cli(client, ["get", "all"])).stdout
    assert "service/my-service" in out and "deployment.apps/nginx-deployment" in out
    assert "not-in-all" not in out


def test_bad_output_format(client: FakeClient) -> None:
    r = run_cli(client, ["get", "pods", "-o", "xml"])
    assert r.exit_code == 1 and r.stderr.startswith('error: unable to match a printer suitable for the output '
                                                    'format "xml"')


def test_get_watch_prints_rows_as_events_arrive(client: FakeClient) -> None:
    client.add(cm("a"))
    later = cm("b")
    later.metadata.creation_timestamp.GetCurrentTime()
    client.watch_events = [FakeWatchEvent("ADDED", later), FakeWatchEvent("BOOKMARK", core.ConfigMap()),
                           FakeWatchEvent("DELETED", later)]
    r = ok(run_cli(client, ["get", "cm", "-w"]))
    lines = r.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["NAME", "a", "b", "b"]
    # The watch starts where the list ended, so no change in between is lost.
    assert client.watch_requests[0]["resource_version"] == str(client.revision)


def test_get_watch_of_one_name_uses_a_field_selector(client: FakeClient) -> None:
    client.add(cm("a"))
    ok(run_cli(client, ["get", "cm", "a", "--watch"]))
    assert client.watch_requests[0]["field_selector"] == "metadata.name=a"


# --- label / annotate / patch ------------------------------------------------------------------------------


def test_label_add_overwrite_remove(client: FakeClient) -> None:
    client.add(cm("a", app="web"))
    assert ok(run_cli(client, ["label", "cm", "a", "tier=fe"])).stdout == "configmap/a labeled\n"
    assert client.last_patch == ({"metadata": {"labels": {"tier": "fe"}}}, "application/merge-patch+json")
    r = run_cli(client, ["label", "cm", "a", "app=db"])
    assert r.exit_code == 1 and r.stderr == "error: 'app' already has a value (web), and --overwrite is false\n"
    assert ok(run_cli(client, ["label", "cm", "a", "app=web"])).stdout == "configmap/a not labeled\n"
    assert ok(run_cli(client, ["label", "cm/a", "app=db", "--overwrite"])).stdout == "configmap/a labeled\n"
    assert ok(run_cli(client, ["label", "cm", "a", "tier-"])).stdout == "configmap/a unlabeled\n"
    assert dict(client.stored(core.ConfigMap, "a").metadata.labels) == {"app": "db"}  # type: ignore[union-attr]


def test_annotate(client: FakeClient) -> None:
    client.add(cm("a"))
    assert ok(run_cli(client, ["annotate", "cm", "a", "note=hello world"])).stdout == "configmap/a annotated\n"
    stored = client.stored(core.ConfigMap, "a")
    assert stored.metadata.annotations["note"] == "hello world"  # type: ignore[union-attr]
    r = run_cli(client, ["annotate", "cm", "a", "note=other"])
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
def test_label_argument_errors(client: FakeClient, args: list[str], message: str) -> None:
    client.add(cm("a"))
    r = run_cli(client, args)
    assert r.exit_code == 1
    assert r.stderr.startswith(message)
    assert client.writes() == []


def test_label_by_selector(client: FakeClient) -> None:
    client.add(cm("a", app="web"))
    client.add(cm("b", app="db"))
    r = ok(run_cli(client, ["label", "cm", "-l", "app=web", "x=1"]))
    assert r.stdout == "configmap/a labeled\n"


def test_patch_types_and_no_change(client: FakeClient, manifests: Path) -> None:
    ok(run_cli(client, ["apply", "-f", str(manifests / "deploy.yaml")]))
    r = ok(run_cli(client, ["patch", "deploy", "nginx-deployment", "-p", '{"spec":{"replicas":2}}']))
    assert r.stdout == "deployment.apps/nginx-deployment patched\n"
    assert client.last_patch[1] == "application/strategic-merge-patch+json"
    r = ok(run_cli(client, ["patch", "deploy", "nginx-deployment", "-p", "spec: {replicas: 2}", "--type", "merge"]))
    assert r.stdout == "deployment.apps/nginx-deployment patched (no change)\n"
    ops = '[{"op":"replace","path":"/spec/replicas","value":4}]'
    ok(run_cli(client, ["patch", "deployment/nginx-deployment", "--type=json", "-p", ops]))
    assert client.stored(apps.Deployment, "nginx-deployment").spec.replicas == 4  # type: ignore[union-attr]


def test_patch_errors(client: FakeClient) -> None:
    r = run_cli(client, ["patch", "deploy", "nope", "-p", "{}"])
    assert r.exit_code == 1 and r.stderr == 'Error from server (NotFound): deployments.apps "nope" not found\n'
    r = run_cli(client, ["patch", "deploy", "nope", "-p", "{not: [json"])
    assert r.exit_code == 1 and r.stderr.startswith('error: unable to parse "{not: [json"')
    r = run_cli(client, ["patch", "deploy", "nope", "-p", "{}", "--type", "bogus"])
    assert r.exit_code == 1 and "--type must be one of" in r.stderr


# --- delete ------------------------------------------------------------------------------------------------


def test_delete_by_name_file_selector_and_all(client: FakeClient, manifests: Path) -> None:
    client.add(cm("a", app="x"))
    client.add(cm("b", app="y"))
    client.add(cm("c"))
    assert ok(run_cli(client, ["delete", "cm", "a"])).stdout == 'configmap "a" deleted\n'
    assert client.last_delete == {"propagation_policy": "Background", "grace_period_seconds": None}
    assert ok(run_cli(client, ["delete", "cm", "-l", "app=y"])).stdout == 'configmap "b" deleted\n'
    assert ok(run_cli(client, ["delete", "cm", "--all", "--cascade=orphan"])).stdout == 'configmap "c" deleted\n'
    assert client.last_delete["propagation_policy"] == "Orphan"
    ok(run_cli(client, ["apply", "-f", str(manifests)]))
    r = ok(run_cli(client, ["delete", "-f", str(manifests), "--grace-period=5"]))
    assert r.stdout == 'deployment.apps "nginx-deployment" deleted\nservice "my-service" deleted\n'
    assert client.last_delete["grace_period_seconds"] == 5
    assert client.objects == {}


def test_delete_errors(client: FakeClient) -> None:
    r = run_cli(client, ["delete", "pod", "x"])
    assert r.exit_code == 1 and r.stderr == 'Error from server (NotFound): pods "x" not found\n'
    assert ok(run_cli(client, ["delete", "pod", "x", "--ignore-not-found"])).stderr == ""
    r = run_cli(client, ["delete", "pods"])
    assert r.exit_code == 1 and r.stderr == "error: resource(s) were provided, but no name was specified\n"
    r = run_cli(client, ["delete", "cm", "a", "--cascade=sideways"])
    assert r.exit_code == 1 and r.stderr.startswith("error: invalid cascade value (sideways)")


def test_delete_waits_for_finalizers_through_the_watch(client: FakeClient) -> None:
    held = cm("held")
    held.metadata.finalizers.append("example.com/hold")
    client.add(held)
    gone = client.stored(core.ConfigMap, "held")
    assert gone is not None
    client.watch_events = [FakeWatchEvent("MODIFIED", gone), FakeWatchEvent("DELETED", gone)]
    r = ok(run_cli(client, ["delete", "cm", "held", "--cascade=foreground"]))
    assert r.stdout == 'configmap "held" deleted\n'
    assert client.watch_requests[0]["field_selector"] == "metadata.name=held"
    # No DELETED event and a short timeout: kubectl's timeout error.
    client.watch_events = []
    r = run_cli(client, ["delete", "cm", "held", "--timeout=1s"])
    assert r.exit_code == 1
    # The fake's watch ends at once, so the CLI checks directly and reports the object still there.
    assert "held" in r.stderr
    assert ok(run_cli(client, ["delete", "cm", "held", "--wait=false"])).stdout == 'configmap "held" deleted\n'


# --- describe / edit / discovery ---------------------------------------------------------------------------


def test_describe_shows_fields_and_matching_events(client: FakeClient) -> None:
    p = core.Pod(api_version="v1", kind="Pod")
    p.metadata.name = "web"
    p.metadata.labels["app"] = "web"
    p.spec.node_name = "n1"
    c = p.spec.containers.add()
    c.name, c.image = "nginx", "nginx:local"
    p.status.phase = "Running"
    stored = client.add(p)
    for name, involved, uid in (("e1", "web", stored.metadata.uid), ("e2", "other", ""),  # type: ignore[attr-defined]
                                ("e3", "web", "uid-of-a-predecessor")):
        ev = core.Event(api_version="v1", kind="Event", type="Normal", reason="Scheduled", message=f"msg {name}")
        ev.metadata.name = name
        ev.involved_object.kind = "Pod"
        ev.involved_object.name = involved
        ev.involved_object.namespace = "default"
        ev.involved_object.uid = uid
        ev.last_timestamp.GetCurrentTime()
        client.add(ev)
    out = ok(run_cli(client, ["describe", "pod", "web"])).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["Name:", "web"]
    assert "Labels:" in out and "app=web" in out and "Image:" in out and "nginx:local" in out
    assert "msg e1" in out and "msg e2" not in out and "msg e3" not in out
    assert lines[-3].split() == ["Type", "Reason", "Age", "From", "Message"]

    client.add(cm("quiet"))
    out = ok(run_cli(client, ["describe", "cm/quiet"])).stdout
    assert out.splitlines()[-1].split() == ["Events:", "<none>"]
    r = run_cli(client, ["describe", "cm", "zzz"])
    assert r.exit_code == 1 and r.stderr == 'Error from server (NotFound): configmaps "zzz" not found\n'


def _editor(transform: Any) -> Any:
    def edit(path: str) -> int:
        text = Path(path).read_text()
        Path(path).write_text(transform(text))
        return 0

    return edit


def test_edit_updates_cancels_and_reopens_on_error(client: FakeClient) -> None:
    client.add(cm("a"))
    r = ok(run_cli(client, ["edit", "cm", "a"], editor=_editor(lambda t: t.replace("k: v", "k: changed"))))
    assert r.stdout == "configmap/a edited\n"
    assert client.stored(core.ConfigMap, "a").data["k"] == "changed"  # type: ignore[union-attr]

    r = ok(run_cli(client, ["edit", "cm", "a"], editor=_editor(lambda t: t)))
    assert r.stderr == "Edit cancelled, no changes made.\n"

    seen: list[str] = []

    def bad_then_same(t: str) -> str:
        seen.append(t)
        return t.replace("k: changed", "k: changed\nbogus: 1") if len(seen) == 1 else t

    before = len(client.writes())
    r = run_cli(client, ["edit", "cm", "a"], editor=_editor(bad_then_same))
    assert r.exit_code == 1
    assert 'unknown field "bogus"' in seen[1], "the file reopens with the error on top"
    assert r.stderr.rstrip().endswith("error: Edit cancelled, no valid changes were saved.")
    assert len(client.writes()) == before


def test_api_resources_and_version(client: FakeClient) -> None:
    lines = ok(run_cli(client, ["api-resources"])).stdout.splitlines()
    assert lines[0].split() == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    pods = next(line for line in lines if line.startswith("pods "))
    assert pods.split() == ["pods", "po", "v1", "true", "Pod"]
    assert lines.index(pods) < next(i for i, line in enumerate(lines) if line.startswith("deployments "))
    names = ok(run_cli(client, ["api-resources", "--namespaced=false", "-o", "name"])).stdout.split()
    assert names == ["namespaces", "nodes", "priorityclasses.scheduling.k8s.io"]
    out = ok(run_cli(client, ["version"])).stdout.splitlines()
    assert out[0].startswith("Client Version: v") and out[1] == "Server Version: v0.1.0-fake"
    assert ok(run_cli(client, ["version", "--client"])).stdout.count("\n") == 1


# --- flags and errors --------------------------------------------------------------------------------------


def test_global_flags_work_before_and_after_the_verb(client: FakeClient) -> None:
    client.add(cm("a", "dev"))
    assert ok(run_cli(client, ["-n", "dev", "get", "cm", "-o", "name"])).stdout == "configmap/a\n"
    assert ok(run_cli(client, ["get", "cm", "-o", "name", "--namespace=dev"])).stdout == "configmap/a\n"


def test_unknown_flag_is_a_kubectl_style_error(client: FakeClient) -> None:
    r = run_cli(client, ["get", "pods", "--bogus"])
    assert r.exit_code == 1
    assert r.stderr == "error: unknown flag: --bogus\nSee 'kubelite get --help' for usage.\n"
    r = run_cli(client, ["frobnicate"])
    assert r.exit_code == 1 and r.stderr.startswith("error: ")


def test_server_errors_never_show_tracebacks(client: FakeClient) -> None:
    from kubelite.machinery.errors import StatusError

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise StatusError("ServiceUnavailable", "The connection to the server 127.0.0.1:1 was refused - did you "
                                                "specify the right host or port?")

    client.list = broken  # type: ignore[method-assign]
    r = run_cli(client, ["get", "pods"])
    assert r.exit_code == 1
    assert r.stderr == ("The connection to the server 127.0.0.1:1 was refused - did you specify the right host "
                        "or port?\n")


def test_grace_period_zero_needs_force_like_kubectl(client: FakeClient) -> None:
    # kubectl turns --grace-period=0 into 1 unless --force is given: no accidental force deletion.
    client.add(cm("a"))
    r = ok(run_cli(client, ["delete", "cm", "a", "--grace-period=0"]))
    assert client.last_delete["grace_period_seconds"] == 1
    assert r.stdout == 'configmap "a" deleted\n' and r.stderr == ""
    client.add(cm("b"))
    r = ok(run_cli(client, ["delete", "cm", "b", "--grace-period=0", "--force"]))
    assert client.last_delete["grace_period_seconds"] == 0
    assert r.stdout == 'configmap "b" force deleted\n' and r.stderr.startswith("Warning: Immediate deletion")
    r = run_cli(client, ["delete", "cm", "c", "--grace-period=5", "--force"])
    assert r.exit_code == 1
    assert r.stderr == "error: --force and --grace-period greater than 0 cannot be specified together\n"


def test_label_rejects_an_unknown_dry_run_value(client: FakeClient) -> None:
    client.add(cm("a"))
    r = run_cli(client, ["label", "cm", "a", "x=1", "--dry-run=bogus"])
    assert r.exit_code == 1 and r.stderr.startswith('error: Invalid dry-run value (bogus).')
    assert client.writes() == []


def test_kubeconfig_problems_are_errors_not_tracebacks(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from kubelite.cli.app import CliDeps, cli

    missing = str(tmp_path / "missing")
    r = CliRunner().invoke(cli, ["--kubeconfig", missing, "get", "pods"], obj=CliDeps())
    assert r.exit_code == 1 and r.stderr == f"error: kubeconfig {missing} does not exist\n"
    r = CliRunner().invoke(cli, ["get", "pods", "-s", "http://"], obj=CliDeps())
    assert r.exit_code == 1 and r.stderr == "error: invalid server address 'http://'\n"


def test_delete_several_types_by_name_like_kubectl(client: FakeClient) -> None:
    # kubectl's own example: kubectl delete pod,service baz foo
    client.add(cm("a"))
    r = ok(run_cli(client, ["delete", "secret,cm", "a", "--ignore-not-found"]))
    assert r.stdout == 'configmap "a" deleted\n'
    assert client.objects == {}
