"""Disruption controller (PodDisruptionBudget status) driven through process_next_item() over fakes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.api.policy.v1 import generated_pb2 as policy
from kubelite.client.controller import InstrumentedQueue
from kubelite.client.workqueue import ItemExponentialFailureRateLimiter, process_next_item
from kubelite.controllers.disruption import DisruptionController
from kubelite.controllers.util import now_seconds
from kubelite.machinery import codec
from tests.unit.fakes_controllers import FakeLister, FakeWriter, pod

LABELS = {"app": "web"}


def budget(**spec: object) -> policy.PodDisruptionBudget:
    pdb = codec.decode_into({"metadata": {"name": "web", "namespace": "ns", "generation": 2},
                             "spec": {"selector": {"matchLabels": LABELS}, **spec}}, policy.PodDisruptionBudget)
    assert isinstance(pdb, policy.PodDisruptionBudget)
    return pdb


def replicaset(name: str, replicas: int, deployment: apps.Deployment | None = None) -> apps.ReplicaSet:
    rs = apps.ReplicaSet()
    rs.metadata.name, rs.metadata.namespace, rs.metadata.uid = name, "ns", f"uid-{name}"
    rs.spec.replicas = replicas
    if deployment is not None:
        rs.metadata.owner_references.add(kind="Deployment", name=deployment.metadata.name, controller=True,
                                         uid=deployment.metadata.uid, api_version="apps/v1")
    return rs


class Harness:
    def __init__(self, pdb: policy.PodDisruptionBudget, *pods: object, rs: list[apps.ReplicaSet] | None = None,
                 deployments: list[apps.Deployment] | None = None) -> None:
        self.pdbs = FakeLister(pdb)
        self.pods = FakeLister(*pods)  # type: ignore[arg-type]
        self.writer = FakeWriter()
        queue: InstrumentedQueue[str] = InstrumentedQueue(
            "disruption", ItemExponentialFailureRateLimiter(0.001, 0.01), registry=CollectorRegistry())
        self.ctl = DisruptionController(self.pdbs, self.pods, FakeLister(*(rs or [])),
                                        FakeLister(*(deployments or [])), self.writer, queue=queue)

    async def sync(self) -> policy.PodDisruptionBudgetStatus | None:
        self.ctl.queue.add("ns/web")
        assert await process_next_item(self.ctl.queue, self.ctl.sync)
        written = self.writer.objects.get((policy.PodDisruptionBudget, "ns", "web"))
        if written is None:
            return None
        self.pdbs.put(written)
        return written.status  # type: ignore[no-any-return]


async def test_integer_min_available_counts_existing_pods() -> None:
    h = Harness(budget(minAvailable=2), pod("a", LABELS), pod("b", LABELS), pod("c", LABELS, ready=False),
                pod("other", {"app": "db"}))
    st = await h.sync()
    assert st is not None
    assert (st.expected_pods, st.desired_healthy, st.current_healthy, st.disruptions_allowed,
            st.observed_generation) == (3, 2, 2, 0, 2)
    assert [(c.type, c.status, c.reason) for c in st.conditions] == [("DisruptionAllowed", "False",
                                                                       "InsufficientPods")]
    # Nothing changed: no second write.
    await h.sync()
    assert len(h.writer.status_writes) == 1


async def test_max_unavailable_is_judged_against_the_controllers_scale() -> None:
    dep = apps.Deployment()
    dep.metadata.name, dep.metadata.namespace, dep.metadata.uid = "web", "ns", "uid-dep"
    dep.spec.replicas = 4
    rs = replicaset("web-abc", 3, dep)
    pods = [pod(n, LABELS, rs) for n in ("a", "b", "c")]
    h = Harness(budget(maxUnavailable="25%"), *pods, rs=[rs], deployments=[dep])
    st = await h.sync()
    assert st is not None
    # The Deployment wants 4: 25% of 4 rounds up to 1 unavailable, so 3 must stay healthy.
    assert (st.expected_pods, st.desired_healthy, st.current_healthy, st.disruptions_allowed) == (4, 3, 3, 0)
    dep.spec.replicas = 3
    st = await h.sync()
    assert st is not None and (st.expected_pods, st.desired_healthy, st.disruptions_allowed) == (3, 2, 1)
    assert st.conditions[0].reason == "SufficientPods"


async def test_evicted_pods_count_as_disrupted_until_gone_or_timed_out() -> None:
    pdb = budget(minAvailable=1)
    now = int(now_seconds())
    pdb.status.disrupted_pods["a"].seconds = now
    pdb.status.disrupted_pods["gone"].seconds = now
    pdb.status.disrupted_pods["b"].seconds = now - 600  # long past: the eviction never happened
    h = Harness(pdb, pod("a", LABELS), pod("b", LABELS), pod("c", LABELS))
    st = await h.sync()
    assert st is not None
    assert sorted(st.disrupted_pods) == ["a"]
    assert (st.current_healthy, st.disruptions_allowed) == (2, 1)
