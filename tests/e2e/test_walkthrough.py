"""End to end: the README's walk-through, as a user types it.

A cluster of its own (three etcd members, the API server process), a
kubeconfig file found through $KUBECONFIG, and only the installed `kubelite`
binary. Until the multi-node issue lands, this is the whole system.
"""

from __future__ import annotations

import json
import os
import pathlib
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from kubelite.client.kubeconfig import write_kubeconfig
from tests.support.apiserver import APIServerProcess
from tests.support.etcd import EtcdCluster

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
KUBELITE = str(pathlib.Path(sys.executable).parent / "kubelite")

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[EtcdCluster, APIServerProcess, dict[str, str]]]:
    root = "/dev/shm" if pathlib.Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="kubelite-e2e-", dir=root) as tmp, EtcdCluster(pathlib.Path(tmp)) as etcd:
        api = APIServerProcess(etcd.endpoints, pathlib.Path(tmp) / "apiserver.log")
        api.start()
        try:
            kubeconfig = pathlib.Path(tmp) / "kubeconfig"
            write_kubeconfig(str(kubeconfig), api.server)
            env = {k: v for k, v in os.environ.items() if k not in ("KUBE_EDITOR", "EDITOR")}
            env.update(KUBECONFIG=str(kubeconfig), HOME=tmp)
            yield etcd, api, env
        finally:
            api.stop()


@pytest.fixture
def kl(cluster: tuple[EtcdCluster, APIServerProcess, dict[str, str]]) -> Run:
    env = cluster[2]

    def run(*args: str, input: str | None = None, code: int = 0) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([KUBELITE, *args], input=input, capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == code, f"kubelite {' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
        assert "Traceback" not in r.stderr
        return r

    return run


def subset(small: Any, big: Any) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and subset(v, big[k]) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(small) == len(big) and all(map(subset, small, big))
    return bool(small == big)


def test_walkthrough(kl: Run) -> None:
    out = kl("apply", "-f", str(EXAMPLES)).stdout.splitlines()
    assert sorted(out) == ["deployment.apps/nginx-deployment created", "service/my-service created"]
    out = kl("apply", "-f", str(EXAMPLES)).stdout.splitlines()
    assert sorted(out) == ["deployment.apps/nginx-deployment unchanged", "service/my-service unchanged"]

    table = kl("get", "deploy,svc", "-o", "wide").stdout
    assert "nginx-deployment" in table and "my-service" in table and "10.96." in table

    manifest = yaml.safe_load((EXAMPLES / "nginx-deployment.yaml").read_text())
    live = yaml.safe_load(kl("get", "deploy", "nginx-deployment", "-o", "yaml").stdout)
    assert subset(manifest["spec"], live["spec"]), "the manifest's spec must read back unchanged"

    assert kl("label", "deploy", "nginx-deployment", "tier=web").stdout.strip() == \
        "deployment.apps/nginx-deployment labeled"
    assert kl("get", "deploy", "-l", "tier=web", "-o", "name").stdout.strip() == "deployment.apps/nginx-deployment"
    kl("patch", "deploy", "nginx-deployment", "-p", '{"spec":{"replicas":5}}')
    live = json.loads(kl("get", "deploy", "nginx-deployment", "-o", "json").stdout)
    assert live["spec"]["replicas"] == 5 and live["metadata"]["generation"] == 2

    described = kl("describe", "deploy", "nginx-deployment").stdout
    assert "nginx-deployment" in described and "Events:" in described
    resources = kl("api-resources").stdout
    assert any(line.split()[:2] == ["deployments", "deploy"] for line in resources.splitlines())

    out = kl("delete", "-f", str(EXAMPLES)).stdout.splitlines()
    assert sorted(out) == ['deployment.apps "nginx-deployment" deleted', 'service "my-service" deleted']
    assert "(NotFound)" in kl("get", "deploy", "nginx-deployment", code=1).stderr


def _cm(name: str, extra: str = "") -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n{extra}data:\n  k: v\n"


def test_bad_input_exits_non_zero_and_stores_nothing(kl: Run, tmp_path: pathlib.Path) -> None:
    def refused(doc: str, *expect: str, args: tuple[str, ...] = ("apply", "-f", "-")) -> None:
        err = kl(*args, input=doc, code=1).stderr
        for text in expect:
            assert text in err, err

    wrong_type = (EXAMPLES / "nginx-deployment.yaml").read_text().replace("replicas: 3", "replicas: three")
    refused(wrong_type, "spec.replicas", 'got string "three"')
    refused(_cm("Bad_Name"), "(Invalid)", "metadata.name", "Bad_Name")
    refused(_cm("lost", "  namespace: nowhere\n"), "(NotFound)", 'namespaces "nowhere" not found')
    big = _cm("big").replace("k: v", "k: " + "x" * (2 * 1024 * 1024))
    refused(big, "(Invalid)", "1048576", args=("create", "-f", "-"))  # a ConfigMap holds at most 1 MiB
    refused(big, "(RequestEntityTooLarge)")  # apply doubles it (last-applied annotation): past 3 MiB
    refused("kind: ConfigMap\nmetadata: {name: x}\n", "apiVersion")
    refused(": : :\n", "error parsing")
    for name in ("bad-name", "lost", "big", "x"):
        assert "(NotFound)" in kl("get", "cm", name, code=1).stderr
    assert "(NotFound)" in kl("get", "ns", "nowhere", code=1).stderr

    # A stale resourceVersion: replace with what was read before someone else wrote.
    kl("create", "-f", "-", input=_cm("shared"))
    before = kl("get", "cm", "shared", "-o", "yaml").stdout
    kl("label", "cm", "shared", "by=other")
    stale = tmp_path / "stale.yaml"
    stale.write_text(before.replace("k: v", "k: mine"))
    err = kl("replace", "-f", str(stale), code=1).stderr
    assert "(Conflict)" in err and "the object has been modified" in err
    assert yaml.safe_load(kl("get", "cm", "shared", "-o", "yaml").stdout)["data"] == {"k": "v"}


def test_get_watch_resumes_across_an_apiserver_restart(
        kl: Run, cluster: tuple[EtcdCluster, APIServerProcess, dict[str, str]]) -> None:
    _, api, env = cluster
    kl("create", "namespace", "watched")
    proc = subprocess.Popen([KUBELITE, "-n", "watched", "get", "cm", "-w", "--no-headers"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)  # type: ignore
    reader.start()
    try:
        kl("-n", "watched", "create", "-f", "-", input=_cm("before-restart"))
        assert lines.get(timeout=30).split()[0] == "before-restart"
        api.restart()
        kl("-n", "watched", "create", "-f", "-", input=_cm("after-restart"))
        assert lines.get(timeout=30).split()[0] == "after-restart"
        kl("-n", "watched", "delete", "cm", "before-restart")
        assert lines.get(timeout=30).split()[0] == "before-restart"
        # Exactly once: nothing else was printed.
        with pytest.raises(queue.Empty):
            lines.get(timeout=1.5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
