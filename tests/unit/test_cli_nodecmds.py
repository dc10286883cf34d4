"""kubelite scale, cordon, uncordon, drain and run against the real API server over in-memory storage."""

from __future__ import annotations

from typing import Any

from click.testing import Result

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.policy.v1 import generated_pb2 as policy
from kubelite.cli import podcmds
from kubelite.machinery import codec
from tests.unit.inprocess import InProcessCluster


def ok(r: Result) -> Result:
    assert r.exit_code == 0, (r.stdout, r.stderr)
    return r


def deployment(name: str, replicas: int = 2) -> apps.Deployment:
    obj = codec.decode_into({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}, apps.Deployment)
    assert isinstance(obj, apps.Deployment)
    return obj


def node(name: str) -> core.Node:
    n = core.Node(api_version="v1", kind="Node")
    n.metadata.name = name
    return n


def pod_on(kl: InProcessCluster, name: str, node_name: str, *, owner: str = "ReplicaSet",
           volumes: list[dict[str, Any]] | None = None, labels: dict[str, str] | None = None) -> core.Pod:
    meta: dict[str, Any] = {"name": name, "namespace": "default", "labels": labels or {"app": "web"}}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner, "name": "x", "uid": "u-" + name,
                                    "controller": True}]
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}], "nodeName": node_name}
    if volumes:
        spec["volumes"] = volumes
    pod = codec.decode_into({"metadata": meta, "spec": spec}, core.Pod)
    assert isinstance(pod, core.Pod)
    created = kl.add(pod)
    # Running and Ready, as its kubelet would report: only such pods count against a budget.
    created.status.phase = "Running"
    created.status.conditions.add(type="Ready", status="True")
    return kl.run(kl.client.update_status(created))


def test_scale_through_the_scale_subresource(kl: InProcessCluster) -> None:
    kl.add(deployment("web", 2))
    r = ok(kl.cli(["scale", "deploy/web", "--replicas=4"]))
    assert r.stdout == "deployment.apps/web scaled\n"
    stored = kl.stored(apps.Deployment, "web")
    assert stored is not None and stored.spec.replicas == 4
    r = kl.cli(["scale", "deployment", "web", "--replicas=1", "--current-replicas=3"])
    assert r.exit_code == 1 and "Expected replicas to be 3, was 4" in r.stderr
    assert kl.stored(apps.Deployment, "web").spec.replicas == 4  # type: ignore[union-attr]
    r = kl.cli(["scale", "deploy/web"])
    assert r.exit_code == 1 and "--replicas=COUNT" in r.stderr
    r = kl.cli(["scale", "configmap/x", "--replicas=1"])
    assert r.exit_code == 1 and "scale" in r.stderr


def test_cordon_and_uncordon(kl: InProcessCluster) -> None:
    kl.add(node("n1"))
    assert ok(kl.cli(["cordon", "n1"])).stdout == "node/n1 cordoned\n"
    assert kl.stored(core.Node, "n1", "").spec.unschedulable  # type: ignore[union-attr]
    assert ok(kl.cli(["cordon", "n1"])).stdout == "node/n1 already cordoned\n"
    assert ok(kl.cli(["uncordon", "n1"])).stdout == "node/n1 uncordoned\n"
    assert not kl.stored(core.Node, "n1", "").spec.unschedulable  # type: ignore[union-attr]
    r = kl.cli(["cordon", "ghost"])
    assert r.exit_code == 1 and 'nodes "ghost" not found' in r.stderr


def test_drain_refuses_what_it_would_lose_and_names_it(kl: InProcessCluster) -> None:
    kl.add(node("n1"))
    pod_on(kl, "bare", "n1", owner="")
    pod_on(kl, "ds", "n1", owner="DaemonSet")
    pod_on(kl, "scratch", "n1", volumes=[{"name": "tmp", "emptyDir": {}}])
    r = kl.cli(["drain", "n1"])
    assert r.exit_code == 1
    for part in ("cannot delete Pods that declare no controller (use --force to override): default/bare",
                 "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/ds",
                 "cannot delete Pods with local storage (use --delete-emptydir-data to override): default/scratch"):
        assert part in r.stderr
    assert kl.stored(core.Node, "n1", "").spec.unschedulable  # type: ignore[union-attr]  # cordoned first
    assert sorted(kl.names(core.Pod)) == ["bare", "ds", "scratch"]  # nothing evicted


def test_drain_evicts_and_waits_for_the_budget(kl: InProcessCluster) -> None:
    kl.add(node("n1"))
    kl.add(node("n2"))
    for name in ("a", "b"):
        pod_on(kl, name, "n1")
    pod_on(kl, "elsewhere", "n2")
    pod_on(kl, "ds", "n1", owner="DaemonSet")
    pdb = codec.decode_into({"metadata": {"name": "web", "namespace": "default"},
                             "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}},
                            policy.PodDisruptionBudget)
    assert isinstance(pdb, policy.PodDisruptionBudget)
    created = kl.add(pdb)
    # The disruption controller's verdict: the budget allows one disruption now.
    created.status.observed_generation = created.metadata.generation
    created.status.disruptions_allowed, created.status.current_healthy = 1, 3
    created.status.desired_healthy, created.status.expected_pods = 2, 3

    async def set_status() -> None:
        await kl.client.update_status(created)

    kl.run(set_status())
    # No kubelet confirms terminations here, so the evictions ask for grace period 0 (deleted at once).
    # The second eviction is refused (the budget is spent), retried, and the timeout ends the drain.
    r = kl.cli(["drain", "n1", "--ignore-daemonsets", "--timeout=1s", "--grace-period=0"])
    assert r.exit_code == 1, r.stdout
    assert "ignoring DaemonSet-managed Pods: default/ds" in r.stderr
    assert "Cannot evict pod as it would violate the pod's disruption budget." in r.stderr
    assert "drain did not complete within 1s" in r.stderr
    left = sorted(kl.names(core.Pod))
    assert "elsewhere" in left and "ds" in left and len({"a", "b"} & set(left)) == 1
    # With the budget open again the drain finishes.
    budget = kl.stored(policy.PodDisruptionBudget, "web")
    assert budget is not None
    budget.status.disruptions_allowed = 1

    async def reopen() -> None:
        await kl.client.update_status(budget)

    kl.run(reopen())
    r = ok(kl.cli(["drain", "n1", "--ignore-daemonsets", "--grace-period=0"]))
    assert r.stdout.endswith("node/n1 drained\n")
    assert sorted(kl.names(core.Pod)) == ["ds", "elsewhere"]


def test_run_builds_the_pod_kubectl_would() -> None:
    pod = podcmds.build_run_pod(podcmds.RunOptions(name="t", image="busybox", args=("sh", "-c", "date"),
                                                   command=True, labels="a=b,c=d", port=8080, stdin=True,
                                                   tty=True, restart="Never"), "team")
    c = pod.spec.containers[0]
    assert (pod.metadata.namespace, dict(pod.metadata.labels)) == ("team", {"a": "b", "c": "d"})
    assert list(c.command) == ["sh", "-c", "date"] and not c.args
    assert (c.stdin, c.stdin_once, c.tty, c.ports[0].container_port) == (True, True, True, 8080)
    assert podcmds.parse_port_pairs(["8080:80", "9000", ":53"]) == [(8080, 80), (9000, 9000), (0, 53)]
