"""kubelite-scheduler against a real API server on etcd, with hollow nodes.

Each test runs its own scheduler process under a scheduler name of its own
(so no other test's pending pods are touched) over a clean set of hollow
nodes, creates pods through the API and waits for the API to show them bound
or Pending with the scheduler's explanation.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kubelite.api.coordination.v1 import generated_pb2 as coordination
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.policy.v1 import generated_pb2 as policy
from kubelite.api.scheduling.v1 import generated_pb2 as scheduling
from kubelite.client.client import Client
from kubelite.machinery import schedulingreasons
from tests.support.apiserver import APIServerProcess
from tests.support.hollow import delete_all_nodes, hollow_node, register
from tests.support.objects import make_pod
from tests.support.scheduler import SchedulerProcess

pytestmark = pytest.mark.integration

WAIT = 30.0


@pytest.fixture
def scheduler_name() -> str:
    return f"sched-{secrets.token_hex(3)}"


@pytest.fixture
async def clean_nodes(client: Client) -> AsyncIterator[None]:
    await delete_all_nodes(client)
    yield
    await delete_all_nodes(client)


@pytest.fixture
def scheduler(apiserver: APIServerProcess, tmp_path: Path, scheduler_name: str,
              clean_nodes: None) -> Iterator[SchedulerProcess]:
    config = tmp_path / "scheduler.yaml"
    config.write_text("apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n"
                      f"profiles:\n- schedulerName: {scheduler_name}\n")
    with SchedulerProcess(apiserver.server, tmp_path / "scheduler.log", config=config) as proc:
        yield proc
    print(proc.log_text()[-4000:])


def _pod(name: str, ns: str, scheduler_name: str, **kwargs: Any) -> core.Pod:
    pod = make_pod(name, namespace=ns, **kwargs)
    pod.api_version, pod.kind = "v1", "Pod"
    pod.metadata.uid = ""
    pod.spec.scheduler_name = scheduler_name
    return pod


async def _wait_pod(client: Client, ns: str, name: str, pred: Any, what: str) -> core.Pod:
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        pod = await client.get(core.Pod, name, ns)
        if pred(pod):
            return pod
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"pod {ns}/{name} is not {what}: {pod.spec.node_name=} {list(pod.status.conditions)}")
        await asyncio.sleep(0.1)


async def _bound(client: Client, ns: str, name: str) -> str:
    pod = await _wait_pod(client, ns, name, lambda p: bool(p.spec.node_name), "bound")
    return pod.spec.node_name


def _unschedulable_message(pod: core.Pod) -> str:
    for c in pod.status.conditions:
        if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
            return c.message
    return ""


async def _pending_with(client: Client, ns: str, name: str, message: str) -> None:
    """Waits for the message: an earlier attempt may have seen fewer nodes (watches are separate streams)."""
    pod = await _wait_pod(client, ns, name, lambda p: _unschedulable_message(p) == message, f"Pending: {message}")
    assert not pod.spec.node_name


async def _nodes(client: Client, scheduler: SchedulerProcess, nodes: list[core.Node]) -> None:
    """Registers hollow nodes and waits until the scheduler's cache holds them all (watches are separate
    streams: without this, a pod created next may be seen before the last node)."""
    await register(client, nodes)
    want = len((await client.list(core.Node)).items)
    deadline = asyncio.get_running_loop().time() + WAIT
    while scheduler.metric("scheduler_cache_size", type="nodes") != want:
        assert asyncio.get_running_loop().time() < deadline, "the scheduler did not see the nodes"
        await asyncio.sleep(0.05)


async def test_a_pod_that_fits_only_one_node_lands_there(client: Client, ns: str, scheduler: SchedulerProcess,
                                                         scheduler_name: str) -> None:
    await _nodes(client, scheduler, [hollow_node("small-1", cpu="1"), hollow_node("small-2", cpu="2"),
                            hollow_node("large", cpu="8"), hollow_node("tiny-mem", cpu="16", memory="1Gi")])
    await client.create(_pod("big", ns, scheduler_name, cpu="4", memory="4Gi"))
    assert await _bound(client, ns, "big") == "large"
    pod = await client.get(core.Pod, "big", ns)
    assert any(c.type == "PodScheduled" and c.status == "True" for c in pod.status.conditions)


async def test_taints_repel_pods_without_the_toleration(client: Client, ns: str, scheduler: SchedulerProcess,
                                                        scheduler_name: str) -> None:
    gpu_taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    await _nodes(client, scheduler, [hollow_node("gpu", labels={"dedicated": "gpu"}, taints=[gpu_taint]),
                            hollow_node("plain")])
    for i in range(4):
        await client.create(_pod(f"web-{i}", ns, scheduler_name, cpu="100m"))
    tolerant = {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
                "nodeSelector": {"dedicated": "gpu"}}
    await client.create(_pod("trainer", ns, scheduler_name, spec=tolerant))
    assert {await _bound(client, ns, f"web-{i}") for i in range(4)} == {"plain"}
    assert await _bound(client, ns, "trainer") == "gpu"


async def test_required_anti_affinity_spreads_replicas_and_leaves_the_fourth_pending(
        client: Client, ns: str, scheduler: SchedulerProcess, scheduler_name: str) -> None:
    await _nodes(client, scheduler, [hollow_node(f"node-{i}") for i in range(3)])
    anti = {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "store"}}, "topologyKey": "kubernetes.io/hostname"}]}}}
    for i in range(4):
        await client.create(_pod(f"store-{i}", ns, scheduler_name, labels={"app": "store"}, spec=anti))
    # The order in which the replicas are tried is not fixed: find the one left out.
    expected = ("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: 0/3 nodes "
                "are available: 3 No preemption victims found for incoming pod.")
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        pods = (await client.list(core.Pod, ns)).items
        bound = [p for p in pods if p.spec.node_name]
        waiting = [p for p in pods if _unschedulable_message(p) == expected]
        if len(bound) == 3 and len(waiting) == 1:
            break
        assert asyncio.get_running_loop().time() < deadline, [(p.metadata.name, p.spec.node_name) for p in pods]
        await asyncio.sleep(0.1)
    assert sorted(p.spec.node_name for p in bound) == ["node-0", "node-1", "node-2"]


async def test_topology_spread_keeps_zones_within_max_skew(client: Client, ns: str, scheduler: SchedulerProcess,
                                                           scheduler_name: str) -> None:
    zones = ["zone-a", "zone-b", "zone-c"]
    # Unequal zones: zone-a has 3 nodes, the others 1; plain LeastAllocated would favour zone-a.
    nodes = [hollow_node(f"a-{i}", labels={"topology.kubernetes.io/zone": "zone-a"}) for i in range(3)]
    nodes += [hollow_node(f"{z[-1]}-0", labels={"topology.kubernetes.io/zone": z}) for z in zones[1:]]
    await _nodes(client, scheduler, nodes)
    zone_of = {n.metadata.name: n.metadata.labels["topology.kubernetes.io/zone"] for n in nodes}
    spread = {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                             "whenUnsatisfiable": "DoNotSchedule",
                                             "labelSelector": {"matchLabels": {"app": "spread"}}}]}
    for i in range(7):
        await client.create(_pod(f"spread-{i}", ns, scheduler_name, labels={"app": "spread"}, spec=spread))
    per_zone = Counter([zone_of[await _bound(client, ns, f"spread-{i}")] for i in range(7)])
    assert sum(per_zone.values()) == 7
    counts = [per_zone.get(z, 0) for z in zones]
    assert max(counts) - min(counts) <= 1, per_zone


async def test_a_pod_too_big_for_every_node_waits_for_a_node_that_fits(
        client: Client, ns: str, scheduler: SchedulerProcess, scheduler_name: str) -> None:
    await _nodes(client, scheduler, [hollow_node("n1", cpu="2"), hollow_node("n2", cpu="2")])
    await client.create(_pod("huge", ns, scheduler_name, cpu="16"))
    # (The scheduler may see the pod before the second node, then retry on that node's arrival.)
    expected = ("0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: "
                "2 No preemption victims found for incoming pod.")
    await _wait_pod(client, ns, "huge", lambda p: _unschedulable_message(p) == expected, "Pending, 2 nodes seen")
    attempts = {"result": "unschedulable", "profile": scheduler_name}
    tried = scheduler.metric("scheduler_schedule_attempts_total", **attempts)
    assert tried >= 1
    # Nothing changes in the cluster: the scheduler does not try again (no polling) ...
    await asyncio.sleep(3)
    assert scheduler.metric("scheduler_schedule_attempts_total", **attempts) == tried
    assert scheduler.metric("scheduler_pending_pods", queue="unschedulable") == 1
    # ... until a node that fits registers.
    await _nodes(client, scheduler, [hollow_node("big", cpu="32")])
    assert await _bound(client, ns, "huge") == "big"
    assert scheduler.metric("scheduler_schedule_attempts_total", **attempts) == tried
    assert scheduler.metric("scheduler_schedule_attempts_total", result="scheduled", profile=scheduler_name) == 1
    # Both stories are told as events on the pod.
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        events = (await client.list(core.Event, ns, field_selector="involvedObject.name=huge")).items
        reasons = {(e.type, e.reason, e.message) for e in events}
        if len(reasons) >= tried + 1 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.1)
    assert ("Normal", "Scheduled", f"Successfully assigned {ns}/huge to big") in reasons
    assert ("Warning", "FailedScheduling", expected) in reasons


async def test_a_node_selector_nothing_matches_is_pending_with_the_reason(
        client: Client, ns: str, scheduler: SchedulerProcess, scheduler_name: str) -> None:
    await _nodes(client, scheduler, [hollow_node("n1"), hollow_node("n2"), hollow_node("n3", unschedulable=True)])
    await client.create(_pod("picky", ns, scheduler_name, spec={"nodeSelector": {"disktype": "ssd"}}))
    await _pending_with(client, ns, "picky", "0/3 nodes are available: 1 node(s) were unschedulable, "
                        "2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: "
                        "3 Preemption is not helpful for scheduling.")
    # Node by node, from the scheduler itself.
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{scheduler.port}/debug/pending/{ns}/picky") as resp:
        assert resp.status == 200
        lines = (await resp.text()).splitlines()
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in lines[3:]}
    assert rows == {"n1": ["NodeAffinity", "node(s) didn't match Pod's node affinity/selector"],
                    "n2": ["NodeAffinity", "node(s) didn't match Pod's node affinity/selector"],
                    "n3": ["NodeUnschedulable", "node(s) were unschedulable"]}


async def test_pods_of_other_schedulers_are_left_alone(client: Client, ns: str, scheduler: SchedulerProcess,
                                                       scheduler_name: str) -> None:
    await _nodes(client, scheduler, [hollow_node("n1")])
    await client.create(_pod("theirs", ns, "another-scheduler"))
    await client.create(_pod("ours", ns, scheduler_name))
    assert await _bound(client, ns, "ours") == "n1"
    pod = await client.get(core.Pod, "theirs", ns)
    assert not pod.spec.node_name
    assert all(c.type != "PodScheduled" for c in pod.status.conditions)


def test_an_invalid_configuration_stops_the_scheduler_naming_the_field(apiserver: APIServerProcess,
                                                                       tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n"
                      "profiles:\n- schedulerName: x\n  pluginConfig:\n  - name: NodeResourcesFit\n    args:\n"
                      "      scoringStrategy:\n        type: Cheapest\n")
    proc = SchedulerProcess(apiserver.server, tmp_path / "s.log", config=config)
    result = subprocess.run(proc.command(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "profiles[0].pluginConfig[0].args.scoringStrategy.type: Unsupported value: 'Cheapest'" in result.stderr


async def test_preemption_evicts_the_lower_priority_pod_and_the_preemptor_lands_there(
        client: Client, ns: str, scheduler: SchedulerProcess, scheduler_name: str) -> None:
    await _nodes(client, scheduler, [hollow_node("only", cpu="2")])
    suffix = secrets.token_hex(3)
    classes = []
    for name, value in ((f"batch-{suffix}", 10), (f"urgent-{suffix}", 1000)):
        pc = scheduling.PriorityClass(api_version="scheduling.k8s.io/v1", kind="PriorityClass", value=value)
        pc.metadata.name = name
        classes.append(await client.create(pc))
    try:
        # No kubelet confirms terminations on a hollow node: the victim asks for no grace period.
        low = _pod("low", ns, scheduler_name, cpu="2", spec={"priorityClassName": f"batch-{suffix}",
                                                              "terminationGracePeriodSeconds": 0})
        await client.create(low)
        assert await _bound(client, ns, "low") == "only"
        await client.create(_pod("urgent", ns, scheduler_name, cpu="2",
                                 spec={"priorityClassName": f"urgent-{suffix}"}))
        assert await _bound(client, ns, "urgent") == "only"
        remaining = {p.metadata.name for p in (await client.list(core.Pod, ns)).items}
        assert remaining == {"urgent"}
        assert scheduler.metric("scheduler_preemption_attempts_total") == 1
        deadline = asyncio.get_running_loop().time() + WAIT
        while not any(e.reason == "Preempted" for e in
                      (await client.list(core.Event, ns, field_selector="involvedObject.name=low")).items):
            assert asyncio.get_running_loop().time() < deadline, "no Preempted event on the victim"
            await asyncio.sleep(0.1)
    finally:
        for pc in classes:
            await client.delete(scheduling.PriorityClass, pc.metadata.name)


async def test_the_standby_takes_over_when_the_leader_dies(client: Client, ns: str, apiserver: APIServerProcess,
                                                           tmp_path: Path, scheduler_name: str,
                                                           clean_nodes: None) -> None:
    config = tmp_path / "scheduler.yaml"
    config.write_text("apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n"
                      f"profiles:\n- schedulerName: {scheduler_name}\n")
    lease_name = f"lease-{scheduler_name}"
    # Short, for a quick hand-over, but with room to renew on a loaded machine: a leader that misses its
    # renew deadline exits (as kube-scheduler does), and then nobody would schedule the pods after.
    election = ["--leader-elect-lease-duration=6s", "--leader-elect-renew-deadline=5s",
                "--leader-elect-retry-period=0.5s", f"--leader-elect-resource-name={lease_name}"]
    first = SchedulerProcess(apiserver.server, tmp_path / "a.log", config=config, leader_elect=True,
                             extra_args=election)
    second = SchedulerProcess(apiserver.server, tmp_path / "b.log", config=config, leader_elect=True,
                              extra_args=election)
    first.start()
    second.start()
    try:
        await register(client, [hollow_node(f"n{i}", cpu="8") for i in range(3)])
        for i in range(6):
            await client.create(_pod(f"before-{i}", ns, scheduler_name, cpu="100m"))
        for i in range(6):
            await _bound(client, ns, f"before-{i}")
        lease = await client.get(coordination.Lease, lease_name, "kube-system")
        holder = lease.spec.holder_identity
        leader, standby = (first, second) if _holds(first, holder) else (second, first)
        assert leader.proc is not None
        leader.proc.kill()  # by its own PID: no clean hand-over, the lease must run out
        leader.proc.wait()
        leader.proc = None
        for i in range(6):
            await client.create(_pod(f"after-{i}", ns, scheduler_name, cpu="100m"))
        for i in range(6):
            await _bound(client, ns, f"after-{i}")
        lease = await client.get(coordination.Lease, lease_name, "kube-system")
        assert lease.spec.holder_identity != holder and lease.spec.lease_transitions >= 1
        assert _holds(standby, lease.spec.holder_identity)
        # Every pod was bound once: one Scheduled event each, and the binding never moved.
        # (Events are written after the binding, by the recorder's own task: wait for all of them.)
        async def scheduled_events() -> Counter[str]:
            events = (await client.list(core.Event, ns, field_selector="reason=Scheduled")).items
            per_pod: Counter[str] = Counter()
            for e in events:  # a repeated event would be one Event with a count
                per_pod[e.involved_object.name] += e.count or 1
            return per_pod if len(per_pod) == 12 else Counter()

        per_pod = await _until("not every pod has its Scheduled event", scheduled_events)
        assert all(n == 1 for n in per_pod.values()), per_pod
    finally:
        for proc in (first, second):
            proc.stop()
        # Shown only when the test failed: what each scheduler did with the lease (seen failing once, loaded).
        for log in ("a.log", "b.log"):
            lines = (tmp_path / log).read_text(errors="replace").splitlines()
            print(f"--- {log} (last 30 lines) ---", *lines[-30:], sep="\n")


async def _priority_classes(client: Client, **values: int) -> list[scheduling.PriorityClass]:
    created = []
    for name, value in values.items():
        pc = scheduling.PriorityClass(api_version="scheduling.k8s.io/v1", kind="PriorityClass", value=value)
        pc.metadata.name = name
        created.append(await client.create(pc))
    return created


async def _until(what: str, check: Any) -> Any:
    deadline = asyncio.get_running_loop().time() + WAIT
    while not (result := await check()):
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.1)
    return result


async def test_preemption_spares_the_pod_a_budget_protects_and_waits_for_its_victim_to_go(
        client: Client, ns: str, scheduler: SchedulerProcess, scheduler_name: str) -> None:
    await _nodes(client, scheduler, [hollow_node("a", cpu="1"), hollow_node("b", cpu="1")])
    suffix = secrets.token_hex(3)
    classes = await _priority_classes(client, **{f"low-{suffix}": 10, f"mid-{suffix}": 20,
                                                 f"urgent-{suffix}": 1000})
    try:
        # The budget allows no disruption of the database (what the disruption controller would write
        # for minAvailable 1 of 1).
        pdb = policy.PodDisruptionBudget(api_version="policy/v1", kind="PodDisruptionBudget")
        pdb.metadata.name, pdb.metadata.namespace = "db", ns
        pdb.spec.min_available = "1"
        pdb.spec.selector.match_labels["app"] = "db"
        stored = await client.create(pdb)
        stored.status.disruptions_allowed, stored.status.expected_pods = 0, 1
        stored.status.current_healthy = stored.status.desired_healthy = 1
        await client.update_status(stored)
        await _until("the scheduler did not see the budget",
                     lambda: asyncio.sleep(0, scheduler.metric("scheduler_cache_size", type="pdbs") >= 1))
        # The lower-priority pod is the protected one; the other keeps the default grace period, and no
        # kubelet on a hollow node confirms its end: the test plays that part below.
        await client.create(_pod("db", ns, scheduler_name, cpu="1", labels={"app": "db"},
                                 spec={"priorityClassName": f"low-{suffix}"}))
        db_node = await _bound(client, ns, "db")
        await client.create(_pod("web", ns, scheduler_name, cpu="1", labels={"app": "web"},
                                 spec={"priorityClassName": f"mid-{suffix}"}))
        web_node = await _bound(client, ns, "web")
        assert {db_node, web_node} == {"a", "b"}
        await client.create(_pod("urgent", ns, scheduler_name, cpu="1",
                                 spec={"priorityClassName": f"urgent-{suffix}"}))

        async def web_terminating() -> core.Pod | None:
            web = await client.get(core.Pod, "web", ns)
            return web if web.metadata.HasField("deletion_timestamp") else None

        web = await _until("the unprotected pod was not deleted", web_terminating)
        marks = [(c.type, c.status, c.reason) for c in web.status.conditions if c.type == "DisruptionTarget"]
        assert marks == [("DisruptionTarget", "True", "PreemptionByScheduler")]
        urgent = await _wait_pod(client, ns, "urgent", lambda p: p.status.nominated_node_name == web_node,
                                 "nominated")
        assert not urgent.spec.node_name
        # A cluster change brings the preemptor back while its victim terminates: it waits, it does not
        # preempt the protected pod on the other node.
        tried = scheduler.metric("scheduler_schedule_attempts_total", result="unschedulable", profile=scheduler_name)
        node = await client.get(core.Node, db_node)
        node.metadata.labels["touched"] = "yes"
        await client.update(node)
        await _until("the preemptor was not retried", lambda: asyncio.sleep(0, scheduler.metric(
            "scheduler_schedule_attempts_total", result="unschedulable", profile=scheduler_name) > tried))
        await _pending_with(client, ns, "urgent", "0/2 nodes are available: 2 Insufficient cpu. preemption: not "
                            "eligible due to a terminating pod on the nominated node.")
        assert scheduler.metric("scheduler_preemption_attempts_total") == 1
        db = await client.get(core.Pod, "db", ns)
        assert not db.metadata.HasField("deletion_timestamp") and db.spec.node_name == db_node
        urgent = await client.get(core.Pod, "urgent", ns)
        assert urgent.status.nominated_node_name == web_node
        # The kubelet's part: the victim's containers are gone, the pod object goes.
        await client.delete(core.Pod, "web", ns, grace_period_seconds=0)
        assert await _bound(client, ns, "urgent") == web_node
        assert (await client.get(core.Pod, "db", ns)).spec.node_name == db_node
    finally:
        for pc in classes:
            await client.delete(scheduling.PriorityClass, pc.metadata.name)


async def test_a_refusal_is_an_event_and_a_condition_that_describe_shows(
        client: Client, ns: str, apiserver: APIServerProcess, scheduler: SchedulerProcess,
        scheduler_name: str, tmp_path: Path) -> None:
    control_plane = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    await _nodes(client, scheduler, [hollow_node("cp", cpu="8", taints=control_plane),
                                     *(hollow_node(f"w{i}", cpu="1") for i in range(3))])
    await client.create(_pod("big", ns, scheduler_name, cpu="2"))
    # Kubernetes' shape; a taint is beyond what preemption can cure, so that node is "not helpful".
    expected = ("0/4 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, "
                "3 Insufficient cpu. preemption: 0/4 nodes are available: 1 Preemption is not helpful for "
                "scheduling, 3 No preemption victims found for incoming pod.")
    await _pending_with(client, ns, "big", expected)

    async def failed_scheduling() -> list[core.Event]:
        events = (await client.list(core.Event, ns, field_selector="involvedObject.name=big")).items
        return [e for e in events if e.reason == "FailedScheduling" and e.message == expected]

    (event,) = await _until("no FailedScheduling event", failed_scheduling)
    assert (event.type, event.source.component, event.involved_object.kind) == ("Warning", scheduler_name, "Pod")

    async def recorded() -> str:
        pod = await client.get(core.Pod, "big", ns)
        return pod.metadata.annotations.get(schedulingreasons.ANNOTATION, "")

    await _until("no node-by-node record on the pod", recorded)
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(tmp_path)
    kubelite = Path(sys.executable).parent / "kubelite"
    proc = await asyncio.create_subprocess_exec(
        str(kubelite), "--server", apiserver.address, "-n", ns, "describe", "pod", "big", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert next(line for line in lines if line.startswith("Status:")).split() == ["Status:", "Pending"]
    at = lines.index("Conditions:")
    assert lines[at + 1].split() == ["Type", "Status", "Reason", "Message"]
    assert lines[at + 3].split(None, 3) == ["PodScheduled", "False", "Unschedulable", expected]
    at = lines.index("Events:")
    assert lines[at + 1].split() == ["Type", "Reason", "Age", "From", "Message"]
    row = lines[at + 3]
    assert row.split()[:2] == ["Warning", "FailedScheduling"]
    assert row.endswith(f"{scheduler_name}  {expected}")
    # Beyond Kubernetes: which node refused it, in which plugin, and why; the record itself is not listed.
    at = lines.index("Refusals:")
    assert [line.split(None, 2) for line in lines[at + 1:at + 7]] == [
        ["Node", "Plugin", "Reason"], ["----", "------", "------"],
        ["cp", "TaintToleration", "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"],
        *(["w" + str(i), "NodeResourcesFit", "Insufficient cpu"] for i in range(3))]
    assert schedulingreasons.ANNOTATION not in out.decode()

    # A node big enough arrives: the pod is bound, and the record goes with the refusal.
    await register(client, [hollow_node("w-big", cpu="4")])
    assert await _bound(client, ns, "big") == "w-big"
    assert not await recorded()


async def test_bind_many_binds_each_pod_as_bind_would_and_answers_each(client: Client, ns: str,
                                                                       clean_nodes: None) -> None:
    await register(client, [hollow_node("n1")])
    for name in ("a", "b", "taken"):
        await client.create(_pod(name, ns, "nobody"))
    await client.bind(ns, "taken", "n1")
    b = await client.get(core.Pod, "b", ns)
    results = await client.bind_many([(ns, "a", "n1", ""), (ns, "b", "n1", b.metadata.uid),
                                      (ns, "taken", "n1", ""), (ns, "missing", "n1", "")])
    assert results[0] is None and results[1] is None
    assert [(r.reason if r else None) for r in results[2:]] == ["Conflict", "NotFound"]
    assert results[2] is not None and 'already assigned to node "n1"' in results[2].message
    for name in ("a", "b"):
        pod = await client.get(core.Pod, name, ns)
        assert pod.spec.node_name == "n1"
        assert [(c.type, c.status) for c in pod.status.conditions if c.type == "PodScheduled"] == [
            ("PodScheduled", "True")]
    # The uid precondition holds per binding.
    await client.create(_pod("c", ns, "nobody"))
    (refused,) = await client.bind_many([(ns, "c", "n1", "not-its-uid")])
    assert refused is not None and refused.reason == "Conflict" and "Precondition failed" in refused.message


def _holds(proc: SchedulerProcess, holder: str) -> bool:
    """The identity a scheduler logged when it started its election ("I am ...")."""
    return f"I am {holder}" in proc.log_text()
