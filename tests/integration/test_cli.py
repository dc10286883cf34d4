"""The real ``kubelite`` console script against a real API server (the ``apiserver`` fixture).

Every test runs the installed script in a subprocess, as a user would, in a
namespace of its own, with HOME pointed at an empty directory so that no
kubeconfig on the machine leaks in. Failure cases check the exit code, the
kubectl-style message, and, by reading back, that nothing was stored.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
# The installed console script; KUBELITE_BIN points elsewhere (another build, a wrapper) when needed.
KUBELITE = pathlib.Path(os.environ.get("KUBELITE_BIN") or pathlib.Path(sys.executable).parent / "kubelite")

pytestmark = pytest.mark.integration

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBE_EDITOR", "EDITOR")}
    env["HOME"] = str(home)
    probe = subprocess.run([str(KUBELITE), "version", "--client"], env=env, capture_output=True, text=True,
                           timeout=60)
    if probe.returncode != 0:
        pytest.fail(f"the kubelite console script does not start ({KUBELITE}):\n{probe.stderr}")
    return env


@pytest.fixture
def kl(apiserver: Any, cli_env: dict[str, str]) -> Iterator[Run]:
    """Runs kubelite against the fixture's server in a fresh namespace: kl("get", "pods")."""
    ns = f"cli-{uuid.uuid4().hex[:8]}"

    def run(*args: str, input: str | None = None, namespace: str | None = ns,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [str(KUBELITE), "--server", apiserver.address, "--request-timeout", "30s"]
        if namespace:
            cmd += ["-n", namespace]
        return subprocess.run([*cmd, *args], input=input, capture_output=True, text=True, timeout=120,
                              env={**cli_env, **(env or {})})

    created = run("create", "namespace", ns, namespace=None)
    assert created.returncode == 0, created.stderr
    run.namespace = ns  # type: ignore[attr-defined]
    try:
        yield run
    finally:
        run("delete", "namespace", ns, "--wait=false", namespace=None)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def failed(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 1, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def not_stored(kl: Run, *what: str) -> None:
    r = failed(kl("get", *what))
    assert "(NotFound)" in r.stderr


DEPLOY = str(EXAMPLES / "nginx-deployment.yaml")
SERVICE = str(EXAMPLES / "nginx-service.yaml")


def test_apply_is_idempotent_and_reads_back(kl: Run) -> None:
    r = ok(kl("apply", "-f", DEPLOY, "-f", SERVICE))
    assert r.stdout == "deployment.apps/nginx-deployment created\nservice/my-service created\n"
    r = ok(kl("apply", "-f", DEPLOY, "-f", SERVICE))
    assert r.stdout == "deployment.apps/nginx-deployment unchanged\nservice/my-service unchanged\n"

    obj = yaml.safe_load(ok(kl("get", "deployment", "nginx-deployment", "-o", "yaml")).stdout)
    assert obj["apiVersion"] == "apps/v1" and obj["kind"] == "Deployment"
    assert obj["metadata"]["namespace"] == kl.namespace  # type: ignore[attr-defined]
    assert obj["spec"]["replicas"] == 3
    applied = json.loads(obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert applied["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:local"

    listed = yaml.safe_load(ok(kl("get", "deploy,svc", "-o", "yaml")).stdout)
    assert listed["kind"] == "List" and len(listed["items"]) == 2
    assert ok(kl("get", "svc", "-o", "name")).stdout == "service/my-service\n"
    table = ok(kl("get", "deploy")).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table[1].split()[:2] == ["nginx-deployment", "0/3"]
    svc = ok(kl("get", "svc", "my-service")).stdout.splitlines()
    assert svc[1].split()[:2] == ["my-service", "ClusterIP"] and "80/TCP" in svc[1]

    changed = pathlib.Path(DEPLOY).read_text().replace("replicas: 3", "replicas: 5")
    assert ok(kl("apply", "-f", "-", input=changed)).stdout == "deployment.apps/nginx-deployment configured\n"
    obj = json.loads(ok(kl("get", "deploy/nginx-deployment", "-o", "json")).stdout)
    assert obj["spec"]["replicas"] == 5
    assert ok(kl("apply", "-f", "-", input=changed)).stdout == "deployment.apps/nginx-deployment unchanged\n"


def test_label_annotate_patch(kl: Run) -> None:
    ok(kl("apply", "-f", DEPLOY))
    assert ok(kl("label", "deploy", "nginx-deployment", "tier=web")).stdout == \
        "deployment.apps/nginx-deployment labeled\n"
    r = failed(kl("label", "deploy", "nginx-deployment", "tier=db"))
    assert r.stderr == "error: 'tier' already has a value (web), and --overwrite is false\n"
    ok(kl("label", "deploy", "nginx-deployment", "tier=db", "--overwrite"))
    ok(kl("label", "deploy", "nginx-deployment", "app-"))
    labels = json.loads(ok(kl("get", "deploy", "nginx-deployment", "-o", "json")).stdout)["metadata"]["labels"]
    assert labels == {"tier": "db"}
    assert ok(kl("annotate", "deploy", "nginx-deployment", "owner=team-a")).stdout == \
        "deployment.apps/nginx-deployment annotated\n"

    r = ok(kl("patch", "deploy", "nginx-deployment", "-p", '{"spec":{"replicas":2}}'))
    assert r.stdout == "deployment.apps/nginx-deployment patched\n"
    r = ok(kl("patch", "deploy", "nginx-deployment", "-p", '{"spec":{"replicas":2}}'))
    assert r.stdout == "deployment.apps/nginx-deployment patched (no change)\n"
    ok(kl("patch", "deploy", "nginx-deployment", "--type", "merge", "-p", "metadata: {annotations: {x: 'y'}}"))
    ok(kl("patch", "deploy", "nginx-deployment", "--type=json",
          "-p", '[{"op": "replace", "path": "/spec/replicas", "value": 4}]'))
    obj = json.loads(ok(kl("get", "deploy", "nginx-deployment", "-o", "json")).stdout)
    assert obj["spec"]["replicas"] == 4
    assert obj["metadata"]["annotations"]["owner"] == "team-a" and obj["metadata"]["annotations"]["x"] == "y"
    failed(kl("patch", "deploy", "nope", "-p", "{}"))


def test_delete_waits_until_gone(kl: Run) -> None:
    ok(kl("apply", "-f", DEPLOY, "-f", SERVICE))
    r = ok(kl("delete", "-f", DEPLOY, "-f", SERVICE))
    assert r.stdout == 'deployment.apps "nginx-deployment" deleted\nservice "my-service" deleted\n'
    r = failed(kl("get", "deploy", "nginx-deployment"))
    assert r.stderr == 'Error from server (NotFound): deployments.apps "nginx-deployment" not found\n'
    r = failed(kl("delete", "svc", "my-service"))
    assert r.stderr == 'Error from server (NotFound): services "my-service" not found\n'

    ok(kl("create", "-f", "-", input=_configmap("a", "app: x")))
    ok(kl("create", "-f", "-", input=_configmap("b", "app: y")))
    assert ok(kl("delete", "cm", "-l", "app=x")).stdout == 'configmap "a" deleted\n'
    assert ok(kl("get", "cm", "-o", "name")).stdout.split() == ["configmap/b"]


def _configmap(name: str, labels: str = "") -> str:
    text = f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"
    if labels:
        text += f"  labels: {{{labels}}}\n"
    return text + "data:\n  key: value\n"


def test_bad_input_is_refused_and_nothing_is_stored(kl: Run, tmp_path: pathlib.Path) -> None:
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\n data: [\n")
    r = failed(kl("apply", "-f", str(malformed)))
    assert r.stderr.startswith(f"error: error parsing {malformed}") and "line" in r.stderr
    not_stored(kl, "cm", "broken")

    unknown = tmp_path / "deploy.yaml"
    unknown.write_text(pathlib.Path(DEPLOY).read_text().replace("replicas: 3", "replicaz: 3"))
    r = failed(kl("apply", "-f", str(unknown)))
    assert r.stderr.startswith(f'error: error validating "{unknown}"')
    assert 'unknown field "spec.replicaz"' in r.stderr
    not_stored(kl, "deploy", "nginx-deployment")

    r = failed(kl("create", "-f", "-", input="apiVersion: v1\nkind: Frobnicator\nmetadata:\n  name: f\n"))
    assert 'no matches for kind "Frobnicator"' in r.stderr

    # One bad document among good ones: nothing at all is sent.
    mixed = _configmap("first") + "---\n" + _configmap("second").replace("data:", "dataz:") + "---\n" \
        + _configmap("third")
    failed(kl("apply", "-f", "-", input=mixed))
    not_stored(kl, "cm", "first")
    not_stored(kl, "cm", "third")

    r = failed(kl("get", "foo"))
    assert r.stderr == 'error: the server doesn\'t have a resource type "foo"\n'

    ok(kl("create", "-f", "-", input=_configmap("dup")))
    r = failed(kl("create", "-f", "-", input=_configmap("dup")))
    assert r.stderr == ('Error from server (AlreadyExists): error when creating "STDIN": '
                        'configmaps "dup" already exists\n')


def test_get_empty_namespace_and_missing_object(kl: Run) -> None:
    r = ok(kl("get", "pods"))
    assert r.stdout == "" and r.stderr == f"No resources found in {kl.namespace} namespace.\n"  # type: ignore
    r = failed(kl("get", "pod", "x"))
    assert r.stderr == 'Error from server (NotFound): pods "x" not found\n'


def test_get_jsonpath_and_custom_columns(kl: Run, tmp_path: pathlib.Path) -> None:
    ok(kl("apply", "-f", DEPLOY, "-f", SERVICE))
    ok(kl("create", "-f", "-", input=_configmap("cfg", "app.kubernetes.io/name: web")))
    assert ok(kl("get", "deploy", "-o", "jsonpath={.items[*].metadata.name}")).stdout == "nginx-deployment\n"
    assert ok(kl("get", "deploy", "nginx-deployment", "-o",
                 "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image}")).stdout == "3 nginx:local\n"
    template = '{range .items[*]}{.kind}/{.metadata.name}{"\\n"}{end}'
    assert ok(kl("get", "deploy,svc", "-o", f"jsonpath={template}")).stdout == \
        "Deployment/nginx-deployment\nService/my-service\n"
    assert ok(kl("get", "svc", "my-service", "-o",
                 'jsonpath={.spec.ports[?(@.protocol=="TCP")].port}')).stdout == "80\n"
    assert ok(kl("get", "cm", "cfg", "-o", r"jsonpath={.metadata.labels.app\.kubernetes\.io/name}")).stdout == "web\n"
    r = failed(kl("get", "deploy", "nginx-deployment", "-o", "jsonpath={.spec.nope}",
                  "--allow-missing-template-keys=false"))
    assert r.stdout == ""
    assert r.stderr == 'error: error executing jsonpath "{.spec.nope}": Error executing template: nope is not found\n'
    r = failed(kl("get", "deploy", "-o", "jsonpath={.items[0"))
    assert r.stderr == "error: error parsing jsonpath {.items[0, unterminated array\n"

    spec = ("NAME:.metadata.name,REPLICAS:.spec.replicas,IMAGE:.spec.template.spec.containers[*].image,"
            "NODE:.spec.nodeName")
    assert ok(kl("get", "deploy", "-o", f"custom-columns={spec}")).stdout == (
        "NAME               REPLICAS   IMAGE         NODE\n"
        "nginx-deployment   3          nginx:local   <none>\n")
    cols = tmp_path / "cols.txt"
    cols.write_text("NAME DATA\n{.metadata.name} .data.key\n")
    assert ok(kl("get", "cm", "cfg", "-o", f"custom-columns-file={cols}", "--no-headers")).stdout == \
        "cfg   value\n"


def test_get_watch_prints_new_objects(kl: Run, apiserver: Any, cli_env: dict[str, str]) -> None:
    ok(kl("create", "-f", "-", input=_configmap("before")))
    cmd = [str(KUBELITE), "--server", apiserver.address, "-n", kl.namespace, "get", "cm", "-w"]  # type: ignore
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().split()[0] == "NAME"
        assert proc.stdout.readline().split()[0] == "before"
        ok(kl("create", "-f", "-", input=_configmap("after")))
        # The new object arrives through the watch (readline blocks until it does; pytest-timeout bounds it).
        assert proc.stdout.readline().split()[0] == "after"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_edit_with_a_scripted_editor(kl: Run, tmp_path: pathlib.Path) -> None:
    ok(kl("create", "-f", "-", input=_configmap("cfg")))
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/key: value/key: edited/' \"$1\"\n")
    editor.chmod(0o755)
    r = ok(kl("edit", "cm", "cfg", env={"KUBE_EDITOR": str(editor)}))
    assert r.stdout == "configmap/cfg edited\n"
    assert json.loads(ok(kl("get", "cm", "cfg", "-o", "json")).stdout)["data"] == {"key": "edited"}
    r = ok(kl("edit", "cm", "cfg", env={"KUBE_EDITOR": "true"}))
    assert r.stderr == "Edit cancelled, no changes made.\n"


def test_describe_api_resources_version(kl: Run) -> None:
    ok(kl("apply", "-f", DEPLOY))
    out = ok(kl("describe", "deploy", "nginx-deployment")).stdout
    assert out.splitlines()[0].split() == ["Name:", "nginx-deployment"]
    assert "Events:" in out
    lines = ok(kl("api-resources")).stdout.splitlines()
    assert lines[0].split() == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert any(line.split()[:2] == ["pods", "po"] for line in lines)
    version = ok(kl("version")).stdout.splitlines()
    assert version[0].startswith("Client Version: ") and version[1].startswith("Server Version: ")


def test_unreachable_server(cli_env: dict[str, str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = subprocess.run([str(KUBELITE), "--server", f"127.0.0.1:{port}", "--request-timeout", "10s", "get", "pods"],
                       capture_output=True, text=True, env=cli_env, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"127.0.0.1:{port}" in r.stderr
