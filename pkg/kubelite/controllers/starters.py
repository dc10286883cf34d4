"""How each controller is built from the shared context: its informers, listers and workers.

One function per controller, named in config.KNOWN_CONTROLLERS; each returns
the coroutines to run (named), all of which wait for their informers' first
list before a worker takes a key.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.api.coordination.v1 import generated_pb2 as coordination
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.policy.v1 import generated_pb2 as policy
from kubelite.client.controller import ControllerRunner
from kubelite.client.informer import Informer, wait_for_cache_sync
from kubelite.client.informer_factory import Lister
from kubelite.controllers.deployment import DeploymentController
from kubelite.controllers.disruption import DisruptionController
from kubelite.controllers.endpoints import EndpointsController
from kubelite.controllers.garbagecollector import GarbageCollector
from kubelite.controllers.namespace import ClientNamespaceFinalizer, NamespaceController
from kubelite.controllers.nodeipam import NodeIPAMController
from kubelite.controllers.nodelifecycle import NODE_LEASE_NAMESPACE, NodeLifecycleController, TaintManager
from kubelite.controllers.podcontrol import ClientPodControl
from kubelite.controllers.podgc import PodGCController
from kubelite.controllers.replicaset import ReplicaSetController
from kubelite.controllers.serviceaccount import ServiceAccountsController
from kubelite.controllers.tokencleaner import TokenCleaner
from kubelite.machinery import bootstraptoken

Runnable = Callable[[], Coroutine[Any, Any, None]]


def _synced(*informers: Informer[Any]) -> Callable[[], Coroutine[Any, Any, bool]]:
    async def ready() -> bool:
        return await wait_for_cache_sync(*informers)

    return ready


NODE_NAME_INDEX = "spec.nodeName"


def pods_by_node(pod_informer: Informer[core.Pod]) -> Callable[[str], list[core.Pod]]:
    """``pods_on_node(name)`` from an index on the shared pod informer (added once)."""
    if not pod_informer.store.has_index(NODE_NAME_INDEX):
        pod_informer.add_index(NODE_NAME_INDEX, lambda pod: [pod.spec.node_name] if pod.spec.node_name else [])
    return lambda name: pod_informer.by_index(NODE_NAME_INDEX, name)


def start_replicaset(ctx: Any) -> list[tuple[str, Runnable]]:
    rs_informer = ctx.factory.informer_for(apps.ReplicaSet)
    pod_informer = ctx.factory.informer_for(core.Pod)
    recorder = ctx.recorder("replicaset-controller")
    controller = ReplicaSetController(Lister(rs_informer), Lister(pod_informer), ctx.client,
                                      ClientPodControl(ctx.client, recorder), recorder)
    controller.attach(rs_informer, pod_informer)
    runner = ControllerRunner(controller, ctx.config.concurrent_replicaset_syncs)
    return [("replicaset", lambda: runner.run(_synced(rs_informer, pod_informer)))]


def start_deployment(ctx: Any) -> list[tuple[str, Runnable]]:
    d_informer = ctx.factory.informer_for(apps.Deployment)
    rs_informer = ctx.factory.informer_for(apps.ReplicaSet)
    pod_informer = ctx.factory.informer_for(core.Pod)
    controller = DeploymentController(Lister(d_informer), Lister(rs_informer), Lister(pod_informer), ctx.client,
                                      ctx.recorder("deployment-controller"))
    controller.attach(d_informer, rs_informer, pod_informer)
    runner = ControllerRunner(controller, ctx.config.concurrent_deployment_syncs)
    return [("deployment", lambda: runner.run(_synced(d_informer, rs_informer, pod_informer)))]


def start_endpoint(ctx: Any) -> list[tuple[str, Runnable]]:
    svc_informer = ctx.factory.informer_for(core.Service)
    pod_informer = ctx.factory.informer_for(core.Pod)
    ep_informer = ctx.factory.informer_for(core.Endpoints)
    controller = EndpointsController(Lister(svc_informer), Lister(pod_informer), Lister(ep_informer), ctx.client)
    controller.attach(svc_informer, pod_informer, ep_informer)
    runner = ControllerRunner(controller, ctx.config.concurrent_endpoint_syncs)
    return [("endpoint", lambda: runner.run(_synced(svc_informer, pod_informer, ep_informer)))]


def start_nodeipam(ctx: Any) -> list[tuple[str, Runnable]]:
    config = ctx.config
    if not config.allocate_node_cidrs:
        return []
    node_informer = ctx.factory.informer_for(core.Node)
    controller = NodeIPAMController(Lister(node_informer), ctx.client, ctx.recorder("node-ipam-controller"),
                                    config.cluster_cidr, config.node_cidr_mask_size)
    controller.attach(node_informer)

    async def ready() -> None:
        await wait_for_cache_sync(node_informer)
        controller.occupy_existing()  # before any allocation: blocks survive a restart

    # One worker: allocation is in memory and instant; the patches are the only I/O.
    runner = ControllerRunner(controller, 1)
    return [("nodeipam", lambda: runner.run(ready))]


def start_nodelifecycle(ctx: Any) -> list[tuple[str, Runnable]]:
    config = ctx.config
    node_informer = ctx.factory.informer_for(core.Node)
    lease_informer = ctx.factory.informer_for(coordination.Lease, NODE_LEASE_NAMESPACE)
    pod_informer = ctx.factory.informer_for(core.Pod)
    on_node = pods_by_node(pod_informer)
    lifecycle = NodeLifecycleController(Lister(node_informer), Lister(lease_informer), on_node, ctx.client,
                                        ctx.recorder("node-controller"),
                                        grace_period=config.node_monitor_grace_period,
                                        monitor_period=config.node_monitor_period)
    lifecycle.attach(node_informer, lease_informer)
    taints = TaintManager(Lister(node_informer), Lister(pod_informer), on_node, ctx.client,
                          ctx.recorder("taint-eviction-controller"))
    taints.attach(node_informer, pod_informer)
    ready = _synced(node_informer, lease_informer, pod_informer)

    async def monitor() -> None:
        await ready()
        await lifecycle.monitor()

    lifecycle_runner = ControllerRunner(lifecycle, 1)
    taint_runner = ControllerRunner(taints, 1)
    return [("nodelifecycle", lambda: lifecycle_runner.run(ready)),
            ("nodelifecycle-monitor", monitor),
            ("taint-eviction", lambda: taint_runner.run(ready))]


def start_namespace(ctx: Any) -> list[tuple[str, Runnable]]:
    ns_informer = ctx.factory.informer_for(core.Namespace)
    controller = NamespaceController(Lister(ns_informer), ctx.client, ClientNamespaceFinalizer(ctx.client),
                                     list(ctx.client.scheme))
    controller.attach(ns_informer)
    runner = ControllerRunner(controller, ctx.config.concurrent_namespace_syncs)
    return [("namespace", lambda: runner.run(_synced(ns_informer)))]


# Kinds the garbage collector follows: everything that owns or is owned in practice.
# Events and Leases are numerous and never part of an ownership chain; namespaces
# have their own controller.
GC_IGNORED = frozenset({"Event", "Lease", "Namespace"})


def start_garbagecollector(ctx: Any) -> list[tuple[str, Runnable]]:
    informers = {rt.message.DESCRIPTOR.name: ctx.factory.informer_for(rt.message)
                 for rt in ctx.client.scheme if rt.message.DESCRIPTOR.name not in GC_IGNORED}
    controller = GarbageCollector(informers, ctx.client, ctx.client.scheme)
    controller.attach()
    runner = ControllerRunner(controller, ctx.config.concurrent_gc_syncs)
    return [("garbagecollector", lambda: runner.run(_synced(*informers.values())))]


def start_serviceaccount(ctx: Any) -> list[tuple[str, Runnable]]:
    ns_informer = ctx.factory.informer_for(core.Namespace)
    sa_informer = ctx.factory.informer_for(core.ServiceAccount)
    controller = ServiceAccountsController(Lister(ns_informer), Lister(sa_informer), ctx.client)
    controller.attach(ns_informer, sa_informer)
    runner = ControllerRunner(controller, ctx.config.concurrent_serviceaccount_syncs)
    return [("serviceaccount", lambda: runner.run(_synced(ns_informer, sa_informer)))]


def start_disruption(ctx: Any) -> list[tuple[str, Runnable]]:
    pdb_informer = ctx.factory.informer_for(policy.PodDisruptionBudget)
    pod_informer = ctx.factory.informer_for(core.Pod)
    rs_informer = ctx.factory.informer_for(apps.ReplicaSet)
    dep_informer = ctx.factory.informer_for(apps.Deployment)
    controller = DisruptionController(Lister(pdb_informer), Lister(pod_informer), Lister(rs_informer),
                                      Lister(dep_informer), ctx.client)
    controller.attach(pdb_informer, pod_informer)
    runner = ControllerRunner(controller, 5)
    return [("disruption", lambda: runner.run(_synced(pdb_informer, pod_informer, rs_informer, dep_informer)))]


def start_podgc(ctx: Any) -> list[tuple[str, Runnable]]:
    pod_informer = ctx.factory.informer_for(core.Pod)
    node_informer = ctx.factory.informer_for(core.Node)
    controller = PodGCController(Lister(pod_informer), Lister(node_informer), ctx.client,
                                 threshold=ctx.config.terminated_pod_gc_threshold)
    return [("podgc", lambda: controller.run(_synced(pod_informer, node_informer)))]


def start_tokencleaner(ctx: Any) -> list[tuple[str, Runnable]]:
    # Only kube-system holds bootstrap tokens: the informer watches nothing else.
    informer = ctx.factory.informer_for(core.Secret, bootstraptoken.NAMESPACE)
    controller = TokenCleaner(Lister(informer), ctx.client)
    controller.attach(informer)
    runner = ControllerRunner(controller, 1)
    return [("tokencleaner", lambda: runner.run(_synced(informer)))]


START_FUNCS: dict[str, Callable[[Any], list[tuple[str, Runnable]]]] = {
    "replicaset": start_replicaset,
    "deployment": start_deployment,
    "endpoint": start_endpoint,
    "nodeipam": start_nodeipam,
    "nodelifecycle": start_nodelifecycle,
    "namespace": start_namespace,
    "garbagecollector": start_garbagecollector,
    "serviceaccount": start_serviceaccount,
    "podgc": start_podgc,
    "disruption": start_disruption,
    "tokencleaner": start_tokencleaner,
}
