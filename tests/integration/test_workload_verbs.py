"""The workload verbs (rollout, set, create deployment, expose) and namespace deletion, end to end.

Real parts only: the session's etcd cluster and API server, plus, for this
module, a kubelite-controller-manager, a kubelite-scheduler and two hollow
kubelets (``kubelite-kubelet --runtime=fake``: real kubelets whose runtime
starts nothing, so pods run at no cost). Every command is the installed
``kubelite`` script, as a user types it, in a namespace of the test's own.

A pod whose image has ``imagePullPolicy: Never`` is never "present" on a
hollow node, so it waits in ErrImageNeverPull: that is how these tests make
a rollout that cannot finish.
"""

from __future__ import annotations

import itertools
import json
import pathlib
import secrets
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from tests.support.apiserver import APIServerProcess
from tests.support.cli import Kubelite, failed, ok
from tests.support.controller_manager import ControllerManagerProcess
from tests.support.kubelet import KubeletProcess
from tests.support.scheduler import SchedulerProcess

pytestmark = pytest.mark.integration

REVISION = "deployment.kubernetes.io/revision"


@pytest.fixture(scope="module")
def control_plane(apiserver: APIServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubelite]:
    """Controller manager, scheduler and two hollow nodes for the module; a kubelite runner without a namespace."""
    base = tmp_path_factory.mktemp("workload-verbs")
    tag = secrets.token_hex(3)
    cm = ControllerManagerProcess(apiserver.server, base / "controller-manager.log",
                                  extra_args=["--leader-elect-lease-duration=3s", "--leader-elect-renew-deadline=2s",
                                              "--leader-elect-retry-period=0.5s"])
    scheduler = SchedulerProcess(apiserver.server, base / "scheduler.log")
    kubelets = [KubeletProcess(apiserver.server, f"verbs-{tag}-{i}", base / f"kubelet{i}.log", base / f"root{i}",
                               runtime="fake", pod_cidr=f"10.236.{i}.0/24") for i in (1, 2)]
    kl = Kubelite(apiserver.address, base)
    started: list[Any] = []
    try:
        for proc in (cm, scheduler, *kubelets):
            proc.start()
            started.append(proc)
        yield kl
    finally:
        for proc in reversed(started):
            proc.stop()
        for k in kubelets:
            kl("delete", "node", k.node_name, "--ignore-not-found", "--wait=false")


@pytest.fixture
def kl(control_plane: Kubelite) -> Iterator[Kubelite]:
    """kubelite in a fresh namespace of the test's own (removed afterwards, without waiting)."""
    ns = f"verbs-{uuid.uuid4().hex[:8]}"
    ok(control_plane("create", "namespace", ns))
    run = Kubelite(control_plane.server, pathlib.Path(control_plane.env["HOME"]), ns)
    try:
        yield run
    finally:
        control_plane("delete", "namespace", ns, "--wait=false")


def get_json(kl: Kubelite, *what: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(kl("get", *what, "-o", "json")).stdout)
    return data


def eventually(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Waits until ``check()`` is truthy (the deadline only guards against hangs)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{check!r} still false after {timeout}s")
        time.sleep(0.2)


def status(kl: Kubelite, name: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return kl("rollout", "status", f"deployment/{name}", "--timeout=90s", *flags, timeout=150)


def image_of(d: dict[str, Any]) -> str:
    return str(d["spec"]["template"]["spec"]["containers"][0]["image"])


def history_rows(kl: Kubelite, name: str) -> list[list[str]]:
    lines = ok(kl("rollout", "history", f"deployment/{name}")).stdout.splitlines()
    assert lines[0] == f"deployment.apps/{name}"
    assert lines[1].split() == ["REVISION", "CHANGE-CAUSE"]
    return [line.split(None, 1) for line in lines[2:] if line.strip()]


def test_undo_restores_the_previous_template_and_numbers_revisions(kl: Kubelite) -> None:
    assert ok(kl("create", "deployment", "web", "--image=nginx:1", "--replicas=3", "--port=80")).stdout == \
        "deployment.apps/web created\n"
    r = ok(status(kl, "web"))
    assert r.stdout.splitlines()[-1] == 'deployment "web" successfully rolled out'
    assert ok(kl("set", "image", "deployment/web", "nginx=nginx:2")).stdout == "deployment.apps/web image updated\n"
    r = ok(status(kl, "web"))
    assert r.stdout.splitlines()[-1] == 'deployment "web" successfully rolled out'
    ok(kl("annotate", "deployment", "web", "kubernetes.io/change-cause=nginx 2 for the demo"))
    rows = eventually(lambda: (rows := history_rows(kl, "web")) and rows[-1][1:] == ["nginx 2 for the demo"]
                      and rows)
    assert rows == [["1", "<none>"], ["2", "nginx 2 for the demo"]]
    shown = ok(kl("rollout", "history", "deployment/web", "--revision=1")).stdout
    assert shown.startswith("deployment.apps/web with revision #1\nPod Template:\n")
    assert "nginx:1" in shown and "nginx:2" not in shown
    rs = yaml.safe_load(ok(kl("rollout", "history", "deployment/web", "--revision=2", "-o", "yaml")).stdout)
    assert rs["kind"] == "ReplicaSet" and rs["metadata"]["annotations"][REVISION] == "2"

    # undo: the template of revision 1 comes back, as revision 3; revision 1 leaves the history.
    assert ok(kl("rollout", "undo", "deployment/web")).stdout == "deployment.apps/web rolled back\n"
    ok(status(kl, "web"))
    d = get_json(kl, "deployment/web")
    assert image_of(d) == "nginx:1"
    assert "pod-template-hash" not in d["spec"]["template"]["metadata"]["labels"]
    assert d["metadata"]["annotations"][REVISION] == "3"
    assert [row[0] for row in history_rows(kl, "web")] == ["2", "3"]
    pods = get_json(kl, "pods", "-l", "app=web")["items"]
    assert len(pods) == 3 and {p["spec"]["containers"][0]["image"] for p in pods} == {"nginx:1"}

    # --to-revision 2: forward again, as revision 4; the current revision is a no-op.
    assert ok(kl("rollout", "undo", "deployment/web", "--to-revision=2")).stdout == "deployment.apps/web rolled back\n"
    ok(status(kl, "web"))
    d = get_json(kl, "deployment/web")
    assert image_of(d) == "nginx:2" and d["metadata"]["annotations"][REVISION] == "4"
    assert ok(kl("rollout", "undo", "deployment/web", "--to-revision=4")).stdout == \
        "deployment.apps/web skipped rollback (current template already matches revision 4)\n"

    # A revision that does not exist: an error naming it, and nothing changes.
    before = get_json(kl, "deployment/web")
    r = failed(kl("rollout", "undo", "deployment/web", "--to-revision=1"))
    assert "unable to find specified revision 1 in history" in r.stderr and "revisions: 3, 4" in r.stderr
    r = failed(kl("rollout", "history", "deployment/web", "--revision=9"))
    assert "unable to find the specified revision 9" in r.stderr
    after = get_json(kl, "deployment/web")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"]
    r = failed(kl("rollout", "status", "deployment/missing"))
    assert 'Error from server (NotFound): deployments.apps "missing" not found' in r.stderr


def test_status_of_a_progressing_a_failing_and_a_stalled_rollout(kl: Kubelite, tmp_path: pathlib.Path) -> None:
    manifest = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "slow"},
        "spec": {"replicas": 2, "minReadySeconds": 2, "progressDeadlineSeconds": 4,
                 "selector": {"matchLabels": {"app": "slow"}},
                 "template": {"metadata": {"labels": {"app": "slow"}},
                              "spec": {"containers": [{"name": "app", "image": "app:1"}]}}},
    }
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(manifest))
    ok(kl("apply", "-f", str(path)))
    ok(kl("rollout", "status", "-f", str(path), "--timeout=90s", timeout=150))
    # Progressing: status follows a rollout from its first step (held back by a pause until status watches).
    ok(kl("rollout", "pause", "deployment/slow"))
    ok(kl("set", "image", "deployment/slow", "app=app:2"))
    follower = kl.popen("rollout", "status", "-f", str(path), "--timeout=90s")
    assert follower.stdout is not None
    first = follower.stdout.readline().rstrip("\n")
    assert first == 'Waiting for deployment "slow" rollout to finish: 0 out of 2 new replicas have been updated...'
    ok(kl("rollout", "resume", "deployment/slow"))
    rest, err = follower.communicate(timeout=150)
    assert follower.returncode == 0, err
    lines = [first, *rest.splitlines()]
    assert lines[-1] == 'deployment "slow" successfully rolled out'
    # Steps in between (surged new pods, old ones going): each said once, in kubectl's words.
    assert len(lines) >= 3, lines
    assert all(line.startswith("Waiting for deployment ") for line in lines[:-1]), lines
    assert all(a != b for a, b in itertools.pairwise(lines)), lines  # one line per change, not per event
    # --watch=false on a finished rollout: one line, success.
    assert ok(kl("rollout", "status", "deployment/slow", "--watch=false")).stdout == \
        'deployment "slow" successfully rolled out\n'

    # Failing: the new pods cannot get their image; status says which pod and why, without waiting.
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "absent:1",
                                                             "imagePullPolicy": "Never"}]}}}}
    ok(kl("patch", "deployment", "slow", "-p", json.dumps(patch)))
    r = failed(status(kl, "slow"))
    assert 'deployment "slow" rollout failed: pod "slow-' in r.stderr
    assert 'container "app": ErrImageNeverPull' in r.stderr

    # Stalled: past progressDeadlineSeconds the condition says so and status fails with kubectl's words.
    def timed_out() -> bool:
        d = get_json(kl, "deployment/slow")
        return any(c["type"] == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
                   for c in d["status"].get("conditions", []))

    eventually(timed_out)
    r = failed(kl("rollout", "status", "deployment/slow", "--watch=false"))
    assert r.stderr.strip() == 'error: deployment "slow" exceeded its progress deadline'
    d = get_json(kl, "deployment/slow")
    assert d["status"]["availableReplicas"] == 2  # the old pods kept serving

    # undo gets it going again.
    ok(kl("rollout", "undo", "deployment/slow"))
    r = ok(status(kl, "slow"))
    assert r.stdout.splitlines()[-1] == 'deployment "slow" successfully rolled out'
    assert image_of(get_json(kl, "deployment/slow")) == "app:2"


def test_restart_pause_and_resume(kl: Kubelite) -> None:
    ok(kl("create", "deployment", "api", "--image=api:1", "--replicas=2"))
    ok(status(kl, "api"))
    assert ok(kl("rollout", "pause", "deployment/api")).stdout == "deployment.apps/api paused\n"
    r = failed(kl("rollout", "pause", "deployment/api"))
    assert r.stderr.strip() == 'error: deployments.apps "api" is already paused'
    # While paused a template change starts no rollout, and status waits (here, until its timeout).
    ok(kl("set", "image", "deploy/api", "api=api:2"))
    r = failed(kl("rollout", "status", "deployment/api", "--timeout=2s"))
    assert r.stdout.startswith('Waiting for deployment "api" rollout to finish: 0 out of 2 new replicas')
    assert r.stderr.strip() == "error: timed out waiting for the condition"
    assert get_json(kl, "deployment/api")["metadata"]["annotations"][REVISION] == "1"
    r = failed(kl("rollout", "restart", "deployment/api"))
    assert "can't restart paused deployment (run rollout resume first)" in r.stderr
    r = failed(kl("rollout", "undo", "deployment/api"))
    assert "you cannot rollback a paused deployment" in r.stderr
    assert ok(kl("rollout", "resume", "deployment/api")).stdout == "deployment.apps/api resumed\n"
    r = failed(kl("rollout", "resume", "deployment/api"))
    assert r.stderr.strip() == 'error: deployments.apps "api" is not paused'
    ok(status(kl, "api"))
    d = get_json(kl, "deployment/api")
    assert image_of(d) == "api:2" and d["metadata"]["annotations"][REVISION] == "2"

    # restart: a new template (restartedAt), so every pod is replaced.
    old_pods = {p["metadata"]["name"] for p in get_json(kl, "pods", "-l", "app=api")["items"]}
    assert ok(kl("rollout", "restart", "deployment/api")).stdout == "deployment.apps/api restarted\n"
    ok(status(kl, "api"))
    d = get_json(kl, "deployment/api")
    assert "kubectl.kubernetes.io/restartedAt" in d["spec"]["template"]["metadata"]["annotations"]
    assert d["metadata"]["annotations"][REVISION] == "3"

    def replaced() -> bool:
        pods = get_json(kl, "pods", "-l", "app=api")["items"]
        return len(pods) == 2 and not old_pods & {p["metadata"]["name"] for p in pods}

    eventually(replaced)
    assert "kubectl.kubernetes.io/restartedAt" in ok(kl("rollout", "history", "deploy/api", "--revision=3")).stdout
    r = failed(kl("rollout", "status", "replicaset/whatever"))
    assert "no status viewer has been implemented for ReplicaSet" in r.stderr


def test_set_image_env_and_resources_and_their_bad_input(kl: Kubelite, tmp_path: pathlib.Path) -> None:
    ok(kl("create", "deployment", "cfg", "--image=app:1", "--image=sidecar:1", "--replicas=0"))
    before = get_json(kl, "deployment/cfg")
    # Bad input: a clear error naming the cause, exit 1, nothing written.
    for args, message in [
        (("set", "image", "deployment/cfg", "nope=app:2"), 'unable to find container named "nope"'),
        (("set", "image", "deployment/cfg", "app="), 'invalid image update "app="'),
        (("set", "image", "deployment/cfg"), "at least one image update is required"),
        (("set", "env", "deployment/cfg", "=x"), 'invalid environment variable "=x"'),
        (("set", "env", "deployment/cfg", "A=1", "deployment/other"), "all resources must be specified before"),
        (("set", "env", "deployment/cfg", "-c", "nope", "A=1"), 'unable to find container named "nope"'),
        (("set", "resources", "deployment/cfg", "--limits=cpu=lots"), "'lots' is not a quantity"),
        (("set", "resources", "deployment/cfg", "--requests=memory"), 'invalid --requests "memory"'),
        (("set", "resources", "deployment/cfg"), "you must specify an update to requests or limits"),
        (("set", "image", "deployment", "app=x:1"), "resource(s) were provided, but no name was specified"),
    ]:
        r = failed(kl(*args))
        assert message in r.stderr, (args, r.stderr)
    # The server's own check (requests above limits) refuses the object naming the field.
    r = failed(kl("set", "resources", "deployment/cfg", "-c", "app", "--limits=cpu=100m", "--requests=cpu=200m"))
    assert "(Invalid)" in r.stderr and "resources.requests[cpu]" in r.stderr
    after = get_json(kl, "deployment/cfg")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"]

    assert ok(kl("set", "image", "deployment/cfg", "app=app:2", "sidecar=sidecar:2")).stdout == \
        "deployment.apps/cfg image updated\n"
    assert ok(kl("set", "image", "deployment/cfg", "*=all:3", "--dry-run=client")).stdout == \
        "deployment.apps/cfg image updated (dry run)\n"
    containers = get_json(kl, "deployment/cfg")["spec"]["template"]["spec"]["containers"]
    assert [c["image"] for c in containers] == ["app:2", "sidecar:2"]
    # --all and -f select the objects the way kubectl's do.
    ok(kl("create", "deployment", "other", "--image=app:1", "--replicas=0"))
    r = ok(kl("set", "image", "deployments", "--all", "app=app:4"))
    assert sorted(r.stdout.splitlines()) == ["deployment.apps/cfg image updated", "deployment.apps/other image updated"]
    path = tmp_path / "other.yaml"
    path.write_text(ok(kl("get", "deployment/other", "-o", "yaml")).stdout)
    assert ok(kl("set", "image", "-f", str(path), "app=app:5")).stdout == "deployment.apps/other image updated\n"
    assert image_of(get_json(kl, "deployment/other")) == "app:5"

    assert ok(kl("set", "env", "deployment/cfg", "-c", "app", "MODE=fast", "LEVEL=3")).stdout == \
        "deployment.apps/cfg env updated\n"
    assert ok(kl("set", "env", "deployment/cfg", "--list")).stdout == (
        "# deployment cfg, container app\nMODE=fast\nLEVEL=3\n# deployment cfg, container sidecar\n")
    r = failed(kl("set", "env", "deployment/cfg", "MODE=slow", "--overwrite=false"))
    assert "'MODE' already has a value (fast), and --overwrite is false" in r.stderr
    ok(kl("set", "env", "deployment/cfg", "MODE-", "-e", "LEVEL=4"))
    containers = get_json(kl, "deployment/cfg")["spec"]["template"]["spec"]["containers"]
    assert containers[0]["env"] == [{"name": "LEVEL", "value": "4"}]
    assert containers[1]["env"] == [{"name": "LEVEL", "value": "4"}]

    assert ok(kl("set", "resources", "deployment/cfg", "-c", "app", "--limits=cpu=200m,memory=64Mi",
                 "--requests=cpu=100m")).stdout == "deployment.apps/cfg resource requirements updated\n"
    resources = get_json(kl, "deployment/cfg")["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {"limits": {"cpu": "200m", "memory": "64Mi"}, "requests": {"cpu": "100m"}}


def test_create_deployment_and_expose(kl: Kubelite) -> None:
    r = failed(kl("create", "deployment", "nothing"))
    assert 'required flag(s) "image" not set' in r.stderr
    r = failed(kl("create", "deployment", "Bad_Name", "--image=x:1"))
    assert "(Invalid)" in r.stderr and "metadata.name" in r.stderr
    dry = yaml.safe_load(ok(kl("create", "deployment", "shop", "--image=registry:5000/team/shop:1.2", "--replicas=2",
                               "--port=8080", "--dry-run=client", "-o", "yaml")).stdout)
    assert dry["spec"]["template"]["spec"]["containers"] == [
        {"name": "shop", "image": "registry:5000/team/shop:1.2", "ports": [{"containerPort": 8080}]}]
    r = failed(kl("get", "deployment/shop"))
    assert "(NotFound)" in r.stderr
    assert ok(kl("create", "deployment", "shop", "--image=shop:1", "--replicas=2", "--port=8080")).stdout == \
        "deployment.apps/shop created\n"
    d = get_json(kl, "deployment/shop")
    assert d["metadata"]["labels"] == {"app": "shop"} and d["spec"]["selector"] == {"matchLabels": {"app": "shop"}}
    assert d["spec"]["replicas"] == 2
    ok(kl("create", "deployment", "job", "--image=busybox:1", "--", "sleep", "3600"))
    assert get_json(kl, "deployment/job")["spec"]["template"]["spec"]["containers"][0]["command"] == ["sleep", "3600"]

    assert ok(kl("expose", "deployment", "shop", "--port=80", "--target-port=8080", "--type=NodePort")).stdout == \
        "service/shop exposed\n"
    svc = get_json(kl, "service/shop")
    assert svc["spec"]["selector"] == {"app": "shop"} and svc["spec"]["type"] == "NodePort"
    (port,) = svc["spec"]["ports"]
    assert (port["port"], port["targetPort"], port["protocol"]) == (80, 8080, "TCP") and port["nodePort"] >= 30000
    assert svc["metadata"]["labels"] == {"app": "shop"}
    # Without --port: the container ports; the Endpoints controller fills in the two pods.
    assert ok(kl("expose", "deployment/shop", "--name=shop-direct")).stdout == "service/shop-direct exposed\n"
    (port,) = get_json(kl, "service/shop-direct")["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (8080, 8080)

    def endpoints() -> int:
        r = kl("get", "endpoints/shop-direct", "-o", "json")
        if r.returncode != 0:  # not written yet
            return 0
        subsets = json.loads(r.stdout).get("subsets") or []
        return sum(len(s.get("addresses", [])) for s in subsets)

    assert eventually(lambda: endpoints() == 2)

    r = failed(kl("expose", "deployment", "job"))
    assert "couldn't find port via --port flag or introspection" in r.stderr
    r = failed(kl("expose", "deployment", "shop", "--port=80", "--type=Bogus", "--name=x"))
    assert "--type must be one of ClusterIP, NodePort, LoadBalancer" in r.stderr
    r = failed(kl("expose", "deployment", "shop", "--port=80"))
    assert '(AlreadyExists)' in r.stderr
    assert "(NotFound)" in failed(kl("get", "service/x")).stderr


def test_deleting_a_namespace_removes_its_content_then_itself(control_plane: Kubelite) -> None:
    ns = f"doomed-{uuid.uuid4().hex[:6]}"
    ok(control_plane("create", "namespace", ns))
    kl = Kubelite(control_plane.server, pathlib.Path(control_plane.env["HOME"]), ns)
    ok(kl("create", "deployment", "web", "--image=web:1", "--replicas=2", "--port=80"))
    ok(kl("expose", "deployment", "web"))
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token"}, "stringData": {"t": "x"}}
    ok(kl("apply", "-f", "-", input=yaml.safe_dump_all([config, secret])))
    ok(status(kl, "web"))
    assert len(get_json(kl, "pods")["items"]) == 2

    ok(control_plane("delete", "namespace", ns, "--wait=false"))
    # A Terminating namespace takes nothing new (or, if it is already gone, there is nothing to take it).
    r = failed(kl("apply", "-f", "-", input=yaml.safe_dump({**config, "metadata": {"name": "late"}})))
    assert "(Forbidden)" in r.stderr or "(NotFound)" in r.stderr, r.stderr

    def gone() -> bool:
        r = control_plane("get", "namespace", ns)
        return r.returncode == 1 and "(NotFound)" in r.stderr

    eventually(gone, timeout=120)
    # Recreated empty: nothing of the old content came back or stayed behind.
    ok(control_plane("create", "namespace", ns))
    try:
        for kind in ("pods", "deployments", "replicasets", "services", "endpoints", "configmaps", "secrets"):
            assert get_json(kl, kind)["items"] == [], kind
    finally:
        control_plane("delete", "namespace", ns, "--wait=false")
