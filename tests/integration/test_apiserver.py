"""The API server on a real 3-member etcd cluster, through the real client.

Each test works in a namespace of its own (``ns`` fixture), so tests do not
see each other's objects; the cluster and the API server process are shared
by the module.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import subprocess
import urllib.request
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.client.informer import Informer
from kubelite.client.watch import retry_watch
from kubelite.machinery import codec
from kubelite.machinery.errors import StatusError
from tests.support.apiserver import APIServerProcess

T = TypeVar("T")
EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def manifest(name: str) -> dict:
    docs = codec.load_documents((EXAMPLES / name).read_text(), name)
    assert len(docs) == 1
    return docs[0]


def subset(small: object, big: object, path: str = "") -> list[str]:
    """Paths where ``small`` is not contained, unchanged, in ``big``."""
    if isinstance(small, dict):
        if not isinstance(big, dict):
            return [path]
        out: list[str] = []
        for k, v in small.items():
            out += subset(v, big.get(k), f"{path}.{k}") if k in big else [f"{path}.{k}"]
        return out
    if isinstance(small, list):
        if not isinstance(big, list) or len(small) != len(big):
            return [path]
        return [p for i, (a, b) in enumerate(zip(small, big, strict=True)) for p in subset(a, b, f"{path}[{i}]")]
    return [] if small == big else [path]


async def until_available(call: Callable[[], Awaitable[T]]) -> T:
    """Repeats a call while the API server is restarting (ServiceUnavailable), up to 5 s."""
    for _ in range(50):
        try:
            return await call()
        except StatusError as exc:
            if exc.reason != "ServiceUnavailable":
                raise
            await asyncio.sleep(0.1)
    return await call()


def configmap(name: str, ns: str, **data: str) -> core.ConfigMap:
    cm = core.ConfigMap(api_version="v1", kind="ConfigMap")
    cm.metadata.name = name
    cm.metadata.namespace = ns
    cm.data.update(data)
    return cm


async def test_docs_manifests_read_back_with_identical_spec(client: Client, ns: str) -> None:
    for name in ("nginx-deployment.yaml", "nginx-service.yaml"):
        doc = manifest(name)
        obj = codec.decode(doc)
        obj.metadata.namespace = ns  # type: ignore[attr-defined]
        created = await client.create(obj)
        got = await client.get(type(obj), doc["metadata"]["name"], ns)
        back = codec.encode(got)
        # Everything the manifest says comes back unchanged; the server only adds defaults.
        assert subset(doc["spec"], back["spec"]) == [], name
        assert back["metadata"]["uid"] and back["metadata"]["creationTimestamp"]
        assert back["metadata"]["resourceVersion"] == created.metadata.resource_version  # type: ignore[attr-defined]
    dep = await client.get(apps.Deployment, "nginx-deployment", ns)
    assert dep.metadata.generation == 1
    assert dep.spec.template.spec.restart_policy == "Always"
    assert dep.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"
    assert dep.spec.template.spec.containers[0].ports[0].protocol == "TCP"
    svc = await client.get(core.Service, "my-service", ns)
    assert svc.spec.type == "ClusterIP" and svc.spec.cluster_ip.startswith("10.96.")


async def test_stale_resource_version_is_a_conflict(client: Client, ns: str) -> None:
    cm = await client.create(configmap("cfg", ns, a="1"))
    first = cm.metadata.resource_version
    cm.data["a"] = "2"
    updated = await client.update(cm)
    assert int(updated.metadata.resource_version) > int(first)
    stale = configmap("cfg", ns, a="3")
    stale.metadata.resource_version = first
    with pytest.raises(StatusError) as err:
        await client.update(stale)
    assert err.value.reason == "Conflict"
    assert (await client.get(core.ConfigMap, "cfg", ns)).data["a"] == "2"


async def test_generation_follows_spec_and_status_is_separate(client: Client, ns: str) -> None:
    dep = codec.decode(manifest("nginx-deployment.yaml"))
    dep.metadata.namespace = ns  # type: ignore[attr-defined]
    dep = await client.create(dep)
    assert dep.metadata.generation == 1  # type: ignore[attr-defined]
    dep.metadata.labels["extra"] = "yes"  # type: ignore[attr-defined]
    dep.status.replicas = 7  # type: ignore[attr-defined]  # ignored by a spec update
    dep = await client.update(dep)
    assert dep.metadata.generation == 1 and dep.status.replicas == 0  # type: ignore[attr-defined]
    dep.spec.replicas = 5  # type: ignore[attr-defined]
    dep = await client.update(dep)
    assert dep.metadata.generation == 2  # type: ignore[attr-defined]
    dep.status.replicas = 5  # type: ignore[attr-defined]
    dep.status.observed_generation = 2  # type: ignore[attr-defined]
    dep.spec.replicas = 1  # type: ignore[attr-defined]  # ignored by a status update
    dep = await client.update_status(dep)
    assert dep.status.replicas == 5 and dep.spec.replicas == 5 and dep.metadata.generation == 2  # type: ignore


async def test_finalizer_keeps_object_until_removed(client: Client, ns: str) -> None:
    cm = configmap("held", ns, a="1")
    cm.metadata.finalizers.append("example.com/hold")
    await client.create(cm)
    result = await client.delete(core.ConfigMap, "held", ns)
    assert not result.deleted
    held = await client.get(core.ConfigMap, "held", ns)
    assert held.metadata.HasField("deletion_timestamp")
    del held.metadata.finalizers[:]
    await client.update(held)
    with pytest.raises(StatusError) as err:
        await client.get(core.ConfigMap, "held", ns)
    assert err.value.reason == "NotFound"


async def test_propagation_policies_add_the_kubernetes_finalizers(client: Client, ns: str) -> None:
    await client.create(configmap("fg", ns))
    await client.create(configmap("orphan", ns))
    await client.delete(core.ConfigMap, "fg", ns, propagation_policy="Foreground")
    await client.delete(core.ConfigMap, "orphan", ns, propagation_policy="Orphan")
    assert list((await client.get(core.ConfigMap, "fg", ns)).metadata.finalizers) == ["foregroundDeletion"]
    assert list((await client.get(core.ConfigMap, "orphan", ns)).metadata.finalizers) == ["orphan"]


async def test_generate_name_namespaces_and_errors(client: Client, ns: str) -> None:
    cm = configmap("", ns)
    cm.metadata.generate_name = "gen-"
    made = await client.create(cm)
    assert made.metadata.name.startswith("gen-") and len(made.metadata.name) == 9
    with pytest.raises(StatusError) as err:
        await client.create(configmap("x", "no-such-namespace"))
    assert err.value.reason == "NotFound" and "no-such-namespace" in str(err.value)
    with pytest.raises(StatusError) as err:
        await client.create(configmap("Bad_Name", ns))
    assert err.value.reason == "Invalid" and "metadata.name" in str(err.value)
    with pytest.raises(StatusError) as err:
        await client.create(configmap("x" * 254, ns))
    assert err.value.reason == "Invalid"
    with pytest.raises(StatusError) as err:
        await client.create(configmap(made.metadata.name, ns))
    assert err.value.reason == "AlreadyExists"
    names = {n.metadata.name for n in (await client.list(core.Namespace)).items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease", ns} <= names


async def test_oversized_object_is_refused_and_not_stored(client: Client, ns: str) -> None:
    # Past the request size limit (3 MiB): refused at the transport.
    with pytest.raises(StatusError) as err:
        await client.create(configmap("big", ns, blob="x" * (4 * 1024 * 1024)))
    assert err.value.reason == "RequestEntityTooLarge"
    # A ConfigMap's data may hold 1 MiB: validation names the limit.
    with pytest.raises(StatusError) as err:
        await client.create(configmap("big", ns, blob="x" * (2 * 1024 * 1024)))
    assert err.value.reason == "Invalid" and "1048576" in str(err.value)
    # A pod that validates but exceeds what etcd stores (1.5 MiB).
    pod = core.Pod(api_version="v1", kind="Pod")
    pod.metadata.name = "big"
    pod.metadata.namespace = ns
    c = pod.spec.containers.add(name="c", image="busybox:local")
    for i in range(4):
        c.env.add(name=f"V{i}", value="x" * (450 * 1024))
    with pytest.raises(StatusError) as err:
        await client.create(pod)
    assert err.value.reason == "RequestEntityTooLarge" and "1572864" in str(err.value)
    for kind in (core.ConfigMap, core.Pod):
        with pytest.raises(StatusError) as err:
            await client.get(kind, "big", ns)
        assert err.value.reason == "NotFound"


async def test_selectors_on_list(client: Client, ns: str) -> None:
    for i, env in enumerate(["prod", "qa", "dev"]):
        cm = configmap(f"c{i}", ns)
        cm.metadata.labels.update({"env": env, "tier": "web" if i < 2 else "db"})
        await client.create(cm)

    async def names(**kw: str) -> list[str]:
        return sorted(o.metadata.name for o in (await client.list(core.ConfigMap, ns, **kw)).items)

    assert await names(label_selector="env=prod") == ["c0"]
    assert await names(label_selector="env in (prod,qa),tier!=db") == ["c0", "c1"]
    assert await names(label_selector="!missing,tier") == ["c0", "c1", "c2"]
    assert await names(field_selector="metadata.name=c2") == ["c2"]
    assert await names(field_selector="metadata.name!=c2", label_selector="env notin (qa)") == ["c0"]
    with pytest.raises(StatusError) as err:
        await names(field_selector="spec.nodeName=x")
    assert err.value.reason == "BadRequest"
    with pytest.raises(StatusError) as err:
        await names(label_selector="env in prod")
    assert err.value.reason == "BadRequest"


async def test_paginated_list_from_etcd(client: Client, ns: str) -> None:
    for i in range(7):
        await client.create(configmap(f"p{i}", ns))
    seen, token, pages = [], "", 0
    while True:
        page = await client.list(core.ConfigMap, ns, limit=3, continue_token=token)
        pages += 1
        seen += [o.metadata.name for o in page.items]
        token = page.continue_token
        if not token:
            break
    assert seen == [f"p{i}" for i in range(7)] and pages == 3


async def test_patches(client: Client, ns: str) -> None:
    dep = codec.decode(manifest("nginx-deployment.yaml"))
    dep.metadata.namespace = ns  # type: ignore[attr-defined]
    await client.create(dep)
    out = await client.patch(apps.Deployment, "nginx-deployment", ns, {"spec": {"replicas": 5}},
                             patch_type="application/merge-patch+json")
    assert out.spec.replicas == 5 and out.metadata.generation == 2
    out = await client.patch(apps.Deployment, "nginx-deployment", ns, {"spec": {"template": {"spec": {
        "containers": [{"name": "sidecar", "image": "busybox:local"}]}}}},
        patch_type="application/strategic-merge-patch+json")
    assert [c.name for c in out.spec.template.spec.containers] == ["nginx", "sidecar"]
    out = await client.patch(apps.Deployment, "nginx-deployment", ns,
                             [{"op": "replace", "path": "/spec/replicas", "value": 2}],
                             patch_type="application/json-patch+json")
    assert out.spec.replicas == 2
    with pytest.raises(StatusError) as err:
        await client.patch(apps.Deployment, "nginx-deployment", ns, {"spec": {"replicaz": 1}})
    assert err.value.reason == "BadRequest" and "spec.replicaz" in str(err.value)
    with pytest.raises(StatusError) as err:
        await client.patch(apps.Deployment, "nginx-deployment", ns, {"spec": {"replicas": "three"}})
    assert err.value.reason == "BadRequest" and "spec.replicas" in str(err.value)
    assert (await client.get(apps.Deployment, "nginx-deployment", ns)).spec.replicas == 2


async def test_watch_resumes_from_resource_version_without_gap_or_duplicate(client: Client, ns: str) -> None:
    start = (await client.list(core.ConfigMap, ns)).resource_version
    for i in range(5):
        await client.create(configmap(f"w{i}", ns))
    await client.delete(core.ConfigMap, "w0", ns)
    events = []
    async for ev in client.watch(core.ConfigMap, ns, resource_version=start):
        events.append((ev.type, ev.object.metadata.name))
        if len(events) == 6:
            break
    assert events == [("ADDED", f"w{i}") for i in range(5)] + [("DELETED", "w0")]
    # From the middle: exactly the later events.
    mid = (await client.get(core.ConfigMap, "w2", ns)).metadata.resource_version
    later = []
    async for ev in client.watch(core.ConfigMap, ns, resource_version=mid):
        later.append((ev.type, ev.object.metadata.name))
        if len(later) == 3:
            break
    assert later == [("ADDED", "w3"), ("ADDED", "w4"), ("DELETED", "w0")]


async def test_watch_with_field_selector_sees_transitions(client: Client, ns: str) -> None:
    pod = core.Pod(api_version="v1", kind="Pod")
    pod.metadata.name = "p"
    pod.metadata.namespace = ns
    pod.spec.containers.add(name="c", image="busybox:local")
    pod = await client.create(pod)
    seen: list[tuple[str, str]] = []

    async def watch() -> None:
        async for ev in client.watch(core.Pod, ns, field_selector="spec.nodeName=node-1",
                                     resource_version=pod.metadata.resource_version):
            seen.append((ev.type, ev.object.spec.node_name))
            if len(seen) == 2:
                return

    task = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    bound = await client.bind(ns, "p", "node-1")
    assert bound.spec.node_name == "node-1"  # type: ignore[attr-defined]
    with pytest.raises(StatusError) as err:
        await client.bind(ns, "p", "node-2")
    assert err.value.reason == "Conflict"
    await client.delete(core.Pod, "p", ns, grace_period_seconds=0)
    await asyncio.wait_for(task, 10)
    assert seen == [("ADDED", "node-1"), ("DELETED", "node-1")]


async def test_graceful_pod_deletion(client: Client, ns: str) -> None:
    pod = core.Pod(api_version="v1", kind="Pod")
    pod.metadata.name = "g"
    pod.metadata.namespace = ns
    pod.spec.containers.add(name="c", image="busybox:local")
    await client.create(pod)
    await client.bind(ns, "g", "node-1")
    res = await client.delete(core.Pod, "g", ns)
    assert not res.deleted and res.object.metadata.deletion_grace_period_seconds == 30
    # The kubelet confirms with a zero grace period once the containers are gone.
    res = await client.delete(core.Pod, "g", ns, grace_period_seconds=0)
    assert res.deleted


async def test_watch_expired_after_compaction(client: Client, ns: str, etcd_cluster: object,
                                              apiserver: object) -> None:
    """A start older than the watch cache's window is served from etcd; compacted there -> Expired."""
    first = await client.create(configmap("e0", ns))
    await client.create(configmap("e1", ns))
    last = await client.create(configmap("e2", ns))
    env = {**os.environ, "ETCDCTL_API": "3"}
    endpoints = ",".join(etcd_cluster.endpoints)  # type: ignore[attr-defined]
    await asyncio.to_thread(subprocess.run, ["etcdctl", f"--endpoints={endpoints}", "compact",
                                             last.metadata.resource_version], check=True, env=env,
                            capture_output=True)
    # A restarted API server's cache replays history only from etcd's
    # compaction point, so an older start goes to etcd, which has compacted it.
    await asyncio.to_thread(apiserver.restart)  # type: ignore[attr-defined]
    await until_available(lambda: client.list(core.ConfigMap, ns))
    with pytest.raises(StatusError) as err:
        async for _ in client.watch(core.ConfigMap, ns, resource_version=first.metadata.resource_version):
            pass
    assert err.value.reason == "Expired"
    # Lists are unaffected, and a watch from the compaction point onwards works.
    assert [o.metadata.name for o in (await client.list(core.ConfigMap, ns)).items] == ["e0", "e1", "e2"]
    later = await client.create(configmap("e3", ns))
    async for ev in client.watch(core.ConfigMap, ns, resource_version=last.metadata.resource_version):
        assert (ev.type, ev.object.metadata.name) == ("ADDED", "e3")
        assert ev.object.metadata.resource_version == later.metadata.resource_version
        break


async def test_dry_run_stores_nothing(client: Client, ns: str) -> None:
    out = await client.create(configmap("dry", ns, a="1"), dry_run=True)
    assert out.metadata.name == "dry"
    with pytest.raises(StatusError):
        await client.get(core.ConfigMap, "dry", ns)


async def test_concurrent_creates_all_land(client: Client, ns: str) -> None:
    results = await asyncio.gather(*(client.create(configmap(f"c-{i}", ns)) for i in range(200)))
    assert len({r.metadata.resource_version for r in results}) < 200  # batched: some share a revision
    assert len((await client.list(core.ConfigMap, ns)).items) == 200


async def test_watch_survives_apiserver_restart_exactly_once(apiserver: object, client: Client, ns: str) -> None:
    start = (await client.list(core.ConfigMap, ns)).resource_version
    seen: list[str] = []
    done = asyncio.Event()

    async def consume() -> None:
        async for ev in retry_watch(client, core.ConfigMap, namespace=ns, resource_version=start):
            seen.append(f"{ev.type}:{ev.object.metadata.name}")
            if len(seen) == 40:
                done.set()
                return

    task = asyncio.create_task(consume())
    for i in range(20):
        await client.create(configmap(f"r{i}", ns))
    await asyncio.to_thread(apiserver.restart)  # type: ignore[attr-defined]
    for i in range(20, 40):
        await until_available(lambda i=i: client.create(configmap(f"r{i}", ns)))
    await asyncio.wait_for(done.wait(), 30)
    await task
    assert seen == [f"ADDED:r{i}" for i in range(40)]


# Writes that must be acknowledged while the etcd leader is stopped.
WRITES_WHILE_LEADER_DOWN = 50


async def test_writes_continue_while_the_etcd_leader_is_down(etcd_cluster: object, client: Client, ns: str) -> None:
    acked: list[str] = []
    acked_while_down: list[str] = []
    failed: list[str] = []
    leader_down = asyncio.Event()
    enough_while_down = asyncio.Event()
    finished = asyncio.Event()

    async def writer(w: int) -> None:
        i = 0
        while not finished.is_set():
            name = f"m-{w}-{i}"
            i += 1
            down = leader_down.is_set()
            try:
                await client.create(configmap(name, ns))
                acked.append(name)
                if down and leader_down.is_set():
                    acked_while_down.append(name)
                    if len(acked_while_down) >= WRITES_WHILE_LEADER_DOWN:
                        enough_while_down.set()
            except StatusError as exc:
                # Only "we could not tell" outcomes are acceptable, never a wrong answer.
                assert exc.reason in ("ServiceUnavailable", "Timeout"), exc
                failed.append(name)

    leader = etcd_cluster.leader_index()  # type: ignore[attr-defined]
    writers = [asyncio.create_task(writer(w)) for w in range(6)]
    await asyncio.sleep(0.3)
    await asyncio.to_thread(etcd_cluster.stop_member, leader)  # type: ignore[attr-defined]
    leader_down.set()
    # Writing goes on without the leader: a count of acknowledged writes, however fast they come
    # (the guard only stops a stalled test; it is not a speed requirement).
    try:
        await asyncio.wait_for(enough_while_down.wait(), 90)
    except TimeoutError:
        raise AssertionError(f"writing stalled with the leader down: {len(acked_while_down)} acknowledged, "
                             f"{len(failed)} failed") from None
    leader_down.clear()
    await asyncio.to_thread(etcd_cluster.start_member, leader)  # type: ignore[attr-defined]
    finished.set()
    await asyncio.gather(*writers)
    stored = {o.metadata.name for o in (await client.list(core.ConfigMap, ns)).items}
    print(f"leader down: {len(acked_while_down)} writes acknowledged meanwhile, {len(failed)} failed, "
          f"{len(acked)} in all")
    assert len(acked_while_down) >= WRITES_WHILE_LEADER_DOWN
    assert set(acked) <= stored  # every acknowledged write survived


async def test_bookmarks_carry_the_latest_revision(client: Client, ns: str) -> None:
    start = (await client.list(core.ConfigMap, ns)).resource_version
    other = await client.create(configmap("elsewhere", "default" if ns != "default" else "kube-public"))
    async for ev in client.watch(core.ConfigMap, ns, resource_version=start, allow_bookmarks=True):
        # Nothing changed in this namespace: the only events are bookmarks, and
        # they move past writes made elsewhere, so a resume skips those.
        assert ev.type == "BOOKMARK"
        if int(ev.object.metadata.resource_version) >= int(other.metadata.resource_version):
            break
    await client.delete(core.ConfigMap, "elsewhere", other.metadata.namespace)


def service(name: str, ns: str, cluster_ip: str = "") -> core.Service:
    svc = core.Service(api_version="v1", kind="Service")
    svc.metadata.name = name
    svc.metadata.namespace = ns
    svc.spec.selector["app"] = name
    svc.spec.ports.add(port=80)
    if cluster_ip:
        svc.spec.cluster_ip = cluster_ip
    return svc


async def test_cluster_ips_never_collide_and_are_freed_on_delete(client: Client, ns: str) -> None:
    first = await client.create(service("a", ns, "10.96.77.77"))
    assert first.spec.cluster_ip == "10.96.77.77"
    with pytest.raises(StatusError) as err:
        await client.create(service("b", ns, "10.96.77.77"))
    assert err.value.reason == "Invalid" and "already allocated" in str(err.value)
    # Concurrent automatic allocations all get distinct addresses.
    made = await asyncio.gather(*(client.create(service(f"auto-{i}", ns)) for i in range(30)))
    ips = [s.spec.cluster_ip for s in made]
    assert len(set(ips)) == 30 and all(ip.startswith("10.96.") for ip in ips)
    await client.delete(core.Service, "a", ns)
    again = await client.create(service("b", ns, "10.96.77.77"))
    assert again.spec.cluster_ip == "10.96.77.77"


async def test_terminating_namespace_refuses_new_objects(client: Client) -> None:
    namespace = core.Namespace(api_version="v1", kind="Namespace")
    namespace.metadata.name = "going-away"
    await client.create(namespace)
    await client.create(configmap("before", "going-away"))
    result = await client.delete(core.Namespace, "going-away")
    assert not result.deleted  # spec.finalizers holds it until the namespace controller empties it
    ns = await client.get(core.Namespace, "going-away")
    assert ns.status.phase == "Terminating" and ns.metadata.HasField("deletion_timestamp")
    with pytest.raises(StatusError) as err:
        await client.create(configmap("after", "going-away"))
    assert err.value.reason == "Forbidden" and "being terminated" in str(err.value)
    with pytest.raises(StatusError) as err:
        await client.delete(core.Namespace, "kube-system")
    assert err.value.reason == "Forbidden"


async def test_health_readiness_and_metrics(apiserver: object, client: Client, ns: str) -> None:
    await client.create(configmap("counted", ns))
    base = f"http://127.0.0.1:{apiserver.http_port}"  # type: ignore[attr-defined]

    def fetch(path: str) -> tuple[int, str]:
        with urllib.request.urlopen(base + path, timeout=5) as resp:
            return resp.status, resp.read().decode()

    assert await asyncio.to_thread(fetch, "/healthz") == (200, "ok")
    status, body = await asyncio.to_thread(fetch, "/readyz?verbose")
    assert status == 200 and "[+]watch-cache:pods ok" in body
    _, metrics = await asyncio.to_thread(fetch, "/metrics")
    assert 'apiserver_request_total{code="200",group="",resource="configmaps",verb="create"}' in metrics
    assert 'apiserver_request_duration_seconds_count{group="",resource="configmaps",verb="create"}' in metrics
    assert "apiserver_registered_watchers" in metrics
    assert 'etcd_request_duration_seconds_count{operation="txn"}' in metrics


async def test_informer_follows_the_real_server_across_a_restart(apiserver: object, client: Client, ns: str) -> None:
    for i in range(3):
        await client.create(configmap(f"i{i}", ns))
    informer: Informer[core.ConfigMap] = Informer(client, core.ConfigMap, namespace=ns)
    seen: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    informer.add_handler(on_add=lambda o: seen.put_nowait(("add", o.metadata.name)),
                         on_update=lambda old, new: seen.put_nowait(("update", new.metadata.name)),
                         on_delete=lambda o: seen.put_nowait(("delete", o.metadata.name)))

    async def next_events(n: int) -> list[tuple[str, str]]:
        return [await asyncio.wait_for(seen.get(), 15) for _ in range(n)]

    task = asyncio.create_task(informer.run(), name="test-informer")
    try:
        await asyncio.wait_for(informer.wait_for_sync(), 10)
        assert sorted(await next_events(3)) == [("add", "i0"), ("add", "i1"), ("add", "i2")]
        await asyncio.to_thread(apiserver.restart)  # type: ignore[attr-defined]
        cm = await until_available(lambda: client.get(core.ConfigMap, "i1", ns))
        cm.data["changed"] = "yes"
        await client.update(cm)
        await client.delete(core.ConfigMap, "i0", ns)
        await client.create(configmap("i3", ns))
        assert await next_events(3) == [("update", "i1"), ("delete", "i0"), ("add", "i3")]
        assert sorted(informer.store.keys()) == [f"{ns}/i1", f"{ns}/i2", f"{ns}/i3"]
        assert informer.store.get_by_key(f"{ns}/i1").data["changed"] == "yes"  # type: ignore[union-attr]
        assert seen.empty()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_two_api_servers_share_one_cluster(etcd_cluster: object, client: Client, ns: str,
                                                 tmp_path: pathlib.Path) -> None:
    """API servers are stateless: a write through one is seen by watches and CAS on the other."""
    with APIServerProcess(etcd_cluster.endpoints, tmp_path / "second.log") as second:  # type: ignore[attr-defined]
        other = Client(second.address)
        try:
            start = (await client.list(core.ConfigMap, ns)).resource_version
            made = await other.create(configmap("shared", ns, a="1"))
            async for ev in client.watch(core.ConfigMap, ns, resource_version=start):
                assert (ev.type, ev.object.metadata.name) == ("ADDED", "shared")
                break
            mine = await client.get(core.ConfigMap, "shared", ns)
            mine.data["a"] = "2"
            await client.update(mine)
            made.data["a"] = "3"  # still at the first resourceVersion
            with pytest.raises(StatusError) as err:
                await other.update(made)
            assert err.value.reason == "Conflict"
            assert (await other.get(core.ConfigMap, "shared", ns)).data["a"] == "2"
        finally:
            await other.close()
