"""The official Python client (PyPI kubernetes, pinned) against kubelite's REST API.

The same real API server and etcd cluster as every integration test; the
client is configured from a kubeconfig as its users configure it. What the
gRPC API guarantees must hold here too: the same resourceVersions, 409 on a
stale update, watches that replay history from a list's resourceVersion.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config, utils, watch
from kubernetes.client.rest import ApiException

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from tests.support.apiserver import APIServerProcess
from tests.support.etcd import EtcdCluster


def api_client(http_port: int, tmp: Path) -> k8s.ApiClient:
    path = tmp / f"kubeconfig-{http_port}"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "it",
        "clusters": [{"name": "it", "cluster": {"server": f"http://127.0.0.1:{http_port}"}}],
        "contexts": [{"name": "it", "context": {"cluster": "it", "user": "it"}}],
        "users": [{"name": "it", "user": {}}]}))
    return config.new_client_from_config(str(path))


@pytest.fixture(scope="module")
def api(apiserver: APIServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[k8s.ApiClient]:
    c = api_client(apiserver.http_port, tmp_path_factory.mktemp("pyclient"))
    try:
        yield c
    finally:
        c.close()


def configmap(name: str, **data: str) -> k8s.V1ConfigMap:
    return k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name, labels={"app": "py"}), data=data)


def test_crud_and_conflicts(api: k8s.ApiClient, ns: str) -> None:
    v1 = k8s.CoreV1Api(api)
    created = v1.create_namespaced_config_map(ns, configmap("one", a="1"))
    assert created.metadata.uid and created.metadata.resource_version
    got = v1.read_namespaced_config_map("one", ns)
    assert got.data == {"a": "1"} and got.metadata.resource_version == created.metadata.resource_version
    got.data["a"] = "2"
    updated = v1.replace_namespaced_config_map("one", ns, got)
    assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)
    with pytest.raises(ApiException) as stale:
        v1.replace_namespaced_config_map("one", ns, got)  # got still carries the old resourceVersion
    assert stale.value.status == 409 and "Conflict" in stale.value.body
    with pytest.raises(ApiException) as exists:
        v1.create_namespaced_config_map(ns, configmap("one"))
    assert exists.value.status == 409 and "AlreadyExists" in exists.value.body
    with pytest.raises(ApiException) as missing:
        v1.read_namespaced_config_map("nope", ns)
    assert missing.value.status == 404
    with pytest.raises(ApiException) as invalid:
        v1.create_namespaced_config_map(ns, configmap("Bad_Name"))
    assert invalid.value.status == 422 and "metadata.name" in invalid.value.body
    patched = v1.patch_namespaced_config_map("one", ns, {"data": {"b": "3"}})
    assert patched.data == {"a": "2", "b": "3"}
    listed = v1.list_namespaced_config_map(ns, label_selector="app=py")
    assert [c.metadata.name for c in listed.items] == ["one"]
    assert int(listed.metadata.resource_version) >= int(patched.metadata.resource_version)
    status = v1.delete_namespaced_config_map("one", ns)
    assert status["status"] == "Success" if isinstance(status, dict) else status.status == "Success"
    assert v1.list_namespaced_config_map(ns).items == []


def test_pods_and_deployments_round_trip_with_their_defaults(api: k8s.ApiClient, ns: str) -> None:
    apps = k8s.AppsV1Api(api)
    body = k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name="web"),
        spec=k8s.V1DeploymentSpec(
            replicas=2, selector=k8s.V1LabelSelector(match_labels={"app": "web"}),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels={"app": "web"}),
                spec=k8s.V1PodSpec(containers=[k8s.V1Container(
                    name="web", image="nginx:1.27", ports=[k8s.V1ContainerPort(container_port=80)],
                    resources=k8s.V1ResourceRequirements(requests={"cpu": "100m", "memory": "64Mi"}))]))))
    d = apps.create_namespaced_deployment(ns, body)
    assert d.spec.strategy.type == "RollingUpdate" and d.spec.revision_history_limit == 10
    assert d.spec.template.spec.containers[0].resources.requests == {"cpu": "100m", "memory": "64Mi"}
    scale = apps.read_namespaced_deployment_scale("web", ns)
    assert scale.spec.replicas == 2
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 4}})
    assert apps.read_namespaced_deployment("web", ns).spec.replicas == 4
    v1 = k8s.CoreV1Api(api)
    pod = v1.create_namespaced_pod(ns, k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="p"), spec=k8s.V1PodSpec(
        containers=[k8s.V1Container(name="c", image="busybox")])))
    assert pod.spec.service_account_name == "default" and pod.status.phase == "Pending"
    deleted = v1.delete_namespaced_pod("p", ns, grace_period_seconds=0)
    assert deleted.metadata.name == "p"


def test_watch_from_a_lists_resource_version_replays_history(api: k8s.ApiClient, ns: str) -> None:
    v1 = k8s.CoreV1Api(api)
    rv = v1.list_namespaced_config_map(ns).metadata.resource_version
    v1.create_namespaced_config_map(ns, configmap("w", a="1"))
    v1.patch_namespaced_config_map("w", ns, {"data": {"a": "2"}})
    v1.delete_namespaced_config_map("w", ns)
    seen = []
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=2):
        seen.append((ev["type"], ev["object"].metadata.name, (ev["object"].data or {}).get("a")))
        if ev["type"] == "DELETED":
            w.stop()
    assert seen == [("ADDED", "w", "1"), ("MODIFIED", "w", "2"), ("DELETED", "w", "2")]


def test_a_compacted_resource_version_is_410_gone(api: k8s.ApiClient, ns: str, etcd_cluster: EtcdCluster,
                                                  tmp_path: Path) -> None:
    v1 = k8s.CoreV1Api(api)
    old = v1.create_namespaced_config_map(ns, configmap("c")).metadata.resource_version
    v1.create_namespaced_config_map(ns, configmap("d"))
    now = v1.create_namespaced_config_map(ns, configmap("e")).metadata.resource_version
    subprocess.run(["etcdctl", f"--endpoints={','.join(etcd_cluster.endpoints)}", "compact", now], check=True,
                   capture_output=True, env={**os.environ, "ETCDCTL_API": "3"})
    # A server started after the compaction has no history before it: an older start goes to etcd, which
    # has compacted it, and the client sees Kubernetes' 410 Gone.
    with APIServerProcess(etcd_cluster.endpoints, tmp_path / "api.log") as fresh:
        fresh_api = api_client(fresh.http_port, tmp_path)
        with pytest.raises(ApiException) as gone:
            for _ in watch.Watch().stream(k8s.CoreV1Api(fresh_api).list_namespaced_config_map, ns,
                                          resource_version=old, timeout_seconds=5):
                pass
        fresh_api.close()
    assert gone.value.status == 410


def informer_loop(v1: k8s.CoreV1Api, ns: str, until: int, state: dict[str, str], after_list: Any,
                  restart: Any = None) -> None:
    """The list+watch loop every informer runs: list, watch from the list's RV, resume from the last RV seen."""
    listed = v1.list_namespaced_config_map(ns)
    state.update({c.metadata.name: c.metadata.resource_version for c in listed.items})
    rv = listed.metadata.resource_version
    after_list()
    while len(state) < until:
        w = watch.Watch()
        try:
            for ev in w.stream(v1.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=5):
                obj = ev["object"]
                rv = obj.metadata.resource_version
                state[obj.metadata.name] = rv
                if restart is not None:
                    restart()
                    restart = None
                if len(state) >= until:
                    w.stop()
        except Exception:  # the server went away mid-watch: resume from rv, as informers do
            pass


def test_the_informer_loop_resumes_across_an_apiserver_restart(
        etcd_cluster: EtcdCluster, tmp_path: Path) -> None:
    with APIServerProcess(etcd_cluster.endpoints, tmp_path / "api.log") as server:
        api = api_client(server.http_port, tmp_path)
        v1 = k8s.CoreV1Api(api)
        ns = f"informer-{secrets.token_hex(3)}"
        v1.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
        v1.create_namespaced_config_map(ns, configmap("c0"))
        state: dict[str, str] = {}

        def restart_and_write() -> None:
            # Written while the watch is down: the loop must still see them, from its last resourceVersion.
            server.stop()
            writer = api_client(server.http_port, tmp_path)
            server.start()
            for i in (2, 3):
                k8s.CoreV1Api(writer).create_namespaced_config_map(ns, configmap(f"c{i}"))
            writer.close()

        informer_loop(v1, ns, 4, state, after_list=lambda: v1.create_namespaced_config_map(ns, configmap("c1")),
                      restart=restart_and_write)
        assert sorted(state) == ["c0", "c1", "c2", "c3"]
        v1.delete_namespace(ns)
        api.close()


def test_create_from_yaml(api: k8s.ApiClient, ns: str, tmp_path: Path) -> None:
    manifest = tmp_path / "app.yaml"
    manifest.write_text("""\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: hunter2}
""")
    utils.create_from_yaml(api, str(manifest), namespace=ns)
    v1 = k8s.CoreV1Api(api)
    svc = v1.read_namespaced_service("web", ns)
    assert svc.spec.cluster_ip.startswith("10.96.") and svc.spec.ports[0].target_port == "http"
    assert v1.read_namespaced_secret("creds", ns).data == {"password": "aHVudGVyMg=="}


async def test_objects_and_errors_are_the_same_through_grpc(api: k8s.ApiClient, ns: str, client: Client) -> None:
    v1 = k8s.CoreV1Api(api)
    made = v1.create_namespaced_config_map(ns, configmap("shared", k="v"))
    got = await client.get(core.ConfigMap, "shared", ns)
    assert (got.metadata.uid, got.metadata.resource_version) == (made.metadata.uid, made.metadata.resource_version)
    got.data["k"] = "from-grpc"
    await client.update(got)
    assert v1.read_namespaced_config_map("shared", ns).data == {"k": "from-grpc"}
    with pytest.raises(ApiException) as stale:
        v1.replace_namespaced_config_map("shared", ns, made)
    assert stale.value.status == 409


def test_server_side_apply_through_the_dynamic_client(api: k8s.ApiClient, ns: str) -> None:
    from kubernetes import dynamic

    dyn = dynamic.DynamicClient(api)
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ssa", "namespace": ns},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "ssa"}},
                     "template": {"metadata": {"labels": {"app": "ssa"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}
    made = deployments.server_side_apply(body=body, name="ssa", namespace=ns, field_manager="py")
    assert made.spec.replicas == 2 and made.metadata.managedFields[0].manager == "py"
    body["spec"]["replicas"] = 4
    with pytest.raises(ApiException) as conflict:
        deployments.server_side_apply(body=body, name="ssa", namespace=ns, field_manager="other")
    assert conflict.value.status == 409 and ".spec.replicas" in conflict.value.body
    forced = deployments.server_side_apply(body=body, name="ssa", namespace=ns, field_manager="other",
                                           force_conflicts=True)
    assert forced.spec.replicas == 4
    assert sorted(e.manager for e in forced.metadata.managedFields) == ["other", "py"]


def test_writes_record_their_field_manager_or_the_user_agent(api: k8s.ApiClient, ns: str) -> None:
    v1 = k8s.CoreV1Api(api)
    created = v1.create_namespaced_config_map(ns, configmap("owned", a="1"))
    # No fieldManager: the first word of the client's user agent (OpenAPI-Generator/<version>/python).
    [entry] = created.metadata.managed_fields
    assert (entry.manager, entry.operation, entry.api_version) == ("OpenAPI-Generator", "Update", "v1")
    assert entry.fields_v1 == {"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:app": {}}}}
    created.data["b"] = "2"
    replaced = v1.replace_namespaced_config_map("owned", ns, created, field_manager="py-replace")
    owners = {e.manager: e.fields_v1 for e in replaced.metadata.managed_fields}
    assert owners["py-replace"] == {"f:data": {"f:b": {}}}
    patched = v1.patch_namespaced_config_map("owned", ns, {"data": {"a": "3"}}, field_manager="py-patch")
    owners = {e.manager: e.fields_v1 for e in patched.metadata.managed_fields}
    assert owners["py-patch"] == {"f:data": {"f:a": {}}}
    assert owners["OpenAPI-Generator"] == {"f:metadata": {"f:labels": {"f:app": {}}}}  # a went to py-patch
    with pytest.raises(ApiException) as bad:
        v1.patch_namespaced_config_map("owned", ns, {"data": {"a": "4"}}, field_manager="x" * 129)
    assert bad.value.status == 400 and "128" in bad.value.body
