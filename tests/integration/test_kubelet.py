"""A real kubelet process on the real Docker engine, against a real API server on etcd.

One kubelet (node name of its own, pod network 10.231.72.0/24 chosen here) serves
the module; each test works in its own namespace. Everything the kubelet
started carries the node's label and is removed by that label at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import docker
import pytest

from kubelite.api.coordination.v1 import generated_pb2 as coord
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.machinery.errors import StatusError
from kubelite.runtime.images import busybox_image, ensure_busybox_image, ensure_pause_image
from tests.support.apiserver import APIServerProcess
from tests.support.kubelet import KubeletProcess

POD_CIDR = "10.231.72.0/24"
BUSYBOX = busybox_image()


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.APIClient]:
    api = docker.APIClient(version="auto")
    ensure_pause_image(api)
    ensure_busybox_image(api)
    yield api
    api.close()


@pytest.fixture(scope="module")
def kubelet(apiserver: APIServerProcess, engine: docker.APIClient,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeletProcess]:
    node = f"it-kubelet-{secrets.token_hex(3)}"
    base = tmp_path_factory.mktemp("kubelet")
    network = f"kubelite-{node}"
    kl = KubeletProcess(apiserver.server, node, base / "kubelet.log", base / "root", pod_cidr=POD_CIDR,
                        extra_args=[f"--pod-network-name={network}", "--node-status-update-frequency=2"])
    kl.start()
    try:
        yield kl
    finally:
        kl.stop()
        for c in engine.containers(all=True, filters={"label": [f"io.kubelite.node={node}"]}):
            engine.remove_container(c["Id"], force=True)
        for n in engine.networks(names=[network]):
            if n["Name"] == network:
                engine.remove_network(n["Id"])


@pytest.fixture
async def node(kubelet: KubeletProcess, client: Client) -> AsyncIterator[str]:
    if kubelet.proc is None:
        kubelet.start()
    yield kubelet.node_name


def make_pod(name: str, namespace: str, node: str, *containers: core.Container,
             init: tuple[core.Container, ...] = (), restart_policy: str = "Always", grace: int = 2) -> core.Pod:
    pod = core.Pod(api_version="v1", kind="Pod")
    pod.metadata.name = name
    pod.metadata.namespace = namespace
    pod.spec.node_name = node
    pod.spec.restart_policy = restart_policy
    pod.spec.termination_grace_period_seconds = grace
    pod.spec.containers.extend(containers)
    pod.spec.init_containers.extend(init)
    return pod


def box(name: str, script: str, **kwargs: object) -> core.Container:
    c = core.Container(name=name, image=BUSYBOX, command=["sh", "-c", script])
    for k, v in kwargs.items():
        field = getattr(c, k)
        if isinstance(v, list):
            field.extend(v)
        elif hasattr(field, "CopyFrom"):
            field.CopyFrom(v)
        else:
            setattr(c, k, v)
    return c


async def wait_pod(client: Client, ns: str, name: str, cond: Callable[[core.Pod], bool],
                   timeout: float = 60.0) -> core.Pod:
    last = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    last = await client.get(core.Pod, name, ns)
                except StatusError as exc:
                    if exc.reason != "NotFound":
                        raise
                else:
                    if cond(last):
                        return last
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"pod {ns}/{name} did not reach the state in {timeout}s; last status:\n"
                             f"{last.status if last else None}") from None


def running(p: core.Pod) -> bool:
    return p.status.phase == "Running" and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)


def cstatus(p: core.Pod, name: str) -> core.ContainerStatus:
    for s in list(p.status.container_statuses) + list(p.status.init_container_statuses):
        if s.name == name:
            return s
    raise AssertionError(f"no status for container {name}: {p.status}")


def docker_id(s: core.ContainerStatus) -> str:
    return s.container_id.removeprefix("docker://")


async def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if check():
                return
            await asyncio.sleep(0.2)


async def wait_gone(client: Client, ns: str, name: str, timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            try:
                await client.get(core.Pod, name, ns)
            except StatusError as exc:
                assert exc.reason == "NotFound"
                return
            await asyncio.sleep(0.2)


async def events_for(client: Client, ns: str, pod: str) -> list[core.Event]:
    items = (await client.list(core.Event, ns)).items
    return sorted((e for e in items if e.involved_object.name == pod),
                  key=lambda e: (e.first_timestamp.seconds, e.first_timestamp.nanos))


async def test_node_registers_with_labels_capacity_conditions_and_a_lease(node: str, client: Client,
                                                                           kubelet: KubeletProcess) -> None:
    n = await client.get(core.Node, node)
    assert n.metadata.labels["kubernetes.io/hostname"] == node
    assert n.metadata.labels["kubernetes.io/os"] == "linux"
    assert n.spec.pod_cidr == POD_CIDR
    assert set(n.status.capacity) >= {"cpu", "memory", "pods"}
    assert n.status.allocatable["pods"] == "110"
    assert n.status.daemon_endpoints.kubelet_endpoint.port == kubelet.port
    assert n.status.node_info.container_runtime_version.startswith("docker://")
    assert {a.type: a.address for a in n.status.addresses}["InternalIP"] == "127.0.0.1"
    conds = {c.type: c for c in n.status.conditions}
    assert conds["Ready"].status == "True" and conds["Ready"].reason == "KubeletReady"
    for t in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        assert conds[t].status in ("True", "False")
    first = await client.get(coord.Lease, node, "kube-node-lease")
    assert first.spec.holder_identity == node
    async with asyncio.timeout(20):
        while True:
            again = await client.get(coord.Lease, node, "kube-node-lease")
            if again.metadata.resource_version != first.metadata.resource_version:
                break
            await asyncio.sleep(0.5)
    assert again.spec.renew_time.seconds >= first.spec.renew_time.seconds


async def test_pod_runs_shares_localhost_and_hostname_and_deletion_stops_it(
        node: str, ns: str, client: Client, engine: docker.APIClient) -> None:
    pod = make_pod("web", ns, node,
                   box("server", "echo hi-from-server > /tmp/index.html; exec httpd -f -p 127.0.0.1:8080 -h /tmp"),
                   box("client", "exec sleep 600"))
    await client.create(pod)
    p = await wait_pod(client, ns, "web", running)
    assert p.status.pod_ip.startswith("10.231.72.")
    assert p.status.host_ip == "127.0.0.1"
    assert p.status.HasField("start_time")
    assert {c.type for c in p.status.conditions} >= {"PodScheduled", "Initialized", "ContainersReady", "Ready"}
    server, client_c = cstatus(p, "server"), cstatus(p, "client")
    assert server.ready and server.restart_count == 0 and server.image_id.startswith("docker://sha256:")
    info = engine.inspect_container(docker_id(client_c))
    labels = info["Config"]["Labels"]
    assert labels["io.kubernetes.pod.name"] == "web"
    assert labels["io.kubernetes.pod.namespace"] == ns
    assert labels["io.kubernetes.pod.uid"] == p.metadata.uid
    assert labels["io.kubernetes.container.name"] == "client"
    assert info["Name"] == f"/k8s_client_web_{ns}_{p.metadata.uid}_0"
    sandboxes = engine.containers(filters={"label": [f"io.kubernetes.pod.uid={p.metadata.uid}",
                                                     "io.kubernetes.container.name=POD"]})
    assert len(sandboxes) == 1
    ex = engine.exec_create(docker_id(client_c), ["sh", "-c", "timeout 5 wget -q -O - http://127.0.0.1:8080/; "
                                                              "hostname"])
    out = engine.exec_start(ex["Id"]).decode()
    assert out == "hi-from-server\nweb\n"

    await client.delete(core.Pod, "web", ns)
    await wait_gone(client, ns, "web")
    await eventually(lambda: not engine.containers(
        all=True, filters={"label": [f"io.kubernetes.pod.uid={p.metadata.uid}"]}))


async def test_init_containers_run_first_in_order(node: str, ns: str, client: Client) -> None:
    vol = core.Volume(name="work", empty_dir=core.EmptyDirVolumeSource())
    mount = core.VolumeMount(name="work", mount_path="/work")
    pod = make_pod("inits", ns, node,
                   box("app", "cat /work/order; exec sleep 600", volume_mounts=[mount]),
                   init=(box("first", "echo -n 1 >> /work/order", volume_mounts=[mount]),
                         box("second", "sleep 1; echo -n 2 >> /work/order", volume_mounts=[mount])))
    pod.spec.volumes.append(vol)
    await client.create(pod)
    p = await wait_pod(client, ns, "inits", running)
    for name in ("first", "second"):
        t = cstatus(p, name).state.terminated
        assert (t.exit_code, t.reason) == (0, "Completed")
    first_done = cstatus(p, "first").state.terminated.finished_at.seconds
    second_start = cstatus(p, "second").state.terminated.started_at.seconds
    assert first_done <= second_start
    assert [c.type for c in p.status.conditions if c.status == "True"] == [
        "PodScheduled", "Initialized", "ContainersReady", "Ready"]
    await client.delete(core.Pod, "inits", ns)


async def test_env_from_configmap_and_secret_and_a_configmap_volume_that_follows_updates(
        node: str, ns: str, client: Client, engine: docker.APIClient) -> None:
    cm = core.ConfigMap(api_version="v1", kind="ConfigMap", data={"color": "blue", "size": "L"})
    cm.metadata.name, cm.metadata.namespace = "settings", ns
    await client.create(cm)
    secret = core.Secret(api_version="v1", kind="Secret", data={"password": b"s3cret"})
    secret.metadata.name, secret.metadata.namespace = "creds", ns
    await client.create(secret)
    env = [
        core.EnvVar(name="COLOR", value_from=core.EnvVarSource(
            config_map_key_ref=core.ConfigMapKeySelector(name="settings", key="color"))),
        core.EnvVar(name="PASSWORD", value_from=core.EnvVarSource(
            secret_key_ref=core.SecretKeySelector(name="creds", key="password"))),
        core.EnvVar(name="POD_NAME", value_from=core.EnvVarSource(
            field_ref=core.ObjectFieldSelector(field_path="metadata.name"))),
        core.EnvVar(name="GREETING", value="$(COLOR) sky"),
    ]
    c = box("app", "exec sleep 600", env=env,
            env_from=[core.EnvFromSource(prefix="CM_", config_map_ref=core.ConfigMapEnvSource(name="settings"))],
            volume_mounts=[core.VolumeMount(name="conf", mount_path="/etc/conf")])
    pod = make_pod("envs", ns, node, c)
    pod.spec.volumes.append(core.Volume(name="conf", config_map=core.ConfigMapVolumeSource(name="settings")))
    await client.create(pod)
    p = await wait_pod(client, ns, "envs", running)
    cid = docker_id(cstatus(p, "app"))

    def run(*cmd: str) -> str:
        ex = engine.exec_create(cid, list(cmd))
        return str(engine.exec_start(ex["Id"]).decode())

    out = run("sh", "-c", 'echo "$COLOR|$PASSWORD|$POD_NAME|$GREETING|$CM_size"')
    assert out == "blue|s3cret|envs|blue sky|L\n"
    assert run("cat", "/etc/conf/color") == "blue"
    cm = await client.get(core.ConfigMap, "settings", ns)
    cm.data["color"] = "green"
    await client.update(cm)
    # The kubelet refreshes projected volumes on its periodic pod sync; nudge it by
    # touching the pod (any pod event is a sync), as a watch-driven manager would.
    p = await client.get(core.Pod, "envs", ns)
    p.metadata.labels["nudge"] = "1"
    await client.update(p)
    await eventually(lambda: run("cat", "/etc/conf/color") == "green")
    await client.delete(core.Pod, "envs", ns)


async def test_a_missing_configmap_waits_with_create_container_config_error(
        node: str, ns: str, client: Client) -> None:
    env = [core.EnvVar(name="X", value_from=core.EnvVarSource(
        config_map_key_ref=core.ConfigMapKeySelector(name="later", key="x")))]
    await client.create(make_pod("waits", ns, node, box("app", "exec sleep 600", env=env)))
    p = await wait_pod(client, ns, "waits",
                       lambda p: bool(p.status.container_statuses) and cstatus(p, "app").state.waiting.reason
                       == "CreateContainerConfigError")
    assert 'configmap "later" not found' in cstatus(p, "app").state.waiting.message
    assert p.status.phase == "Pending"
    assert any(e.reason == "Failed" and "later" in e.message for e in await events_for(client, ns, "waits"))
    cm = core.ConfigMap(api_version="v1", kind="ConfigMap", data={"x": "1"})
    cm.metadata.name, cm.metadata.namespace = "later", ns
    await client.create(cm)
    await wait_pod(client, ns, "waits", running)
    await client.delete(core.Pod, "waits", ns)


async def test_a_crashing_container_backs_off_with_crash_loop_back_off(
        node: str, ns: str, client: Client, engine: docker.APIClient) -> None:
    from kubelite.runtime.docker import parse_docker_time

    await client.create(make_pod("crasher", ns, node, box("app", "echo boom; exit 3")))
    p = await wait_pod(client, ns, "crasher", lambda p: bool(p.status.container_statuses) and cstatus(
        p, "app").restart_count == 2 and cstatus(p, "app").state.waiting.reason == "CrashLoopBackOff", timeout=90)
    s = cstatus(p, "app")
    assert s.last_state.terminated.exit_code == 3
    assert s.last_state.terminated.reason == "Error"
    # Restarted at once after crash 1, after 10 s after crash 2; crash 3 now waits 20 s.
    assert "back-off 20s restarting failed container=app" in s.state.waiting.message
    assert p.status.phase == "Running"  # restartPolicy Always: a restarting pod is still Running
    assert any(e.reason == "BackOff" for e in await events_for(client, ns, "crasher"))
    # The back-off shows in the containers' own times: the first restart is immediate,
    # the second waited at least 10 s after the crash before it.
    runs = {}
    for c in engine.containers(all=True, filters={"label": [f"io.kubernetes.pod.uid={p.metadata.uid}",
                                                            "io.kubernetes.container.name=app"]}):
        state = engine.inspect_container(c["Id"])["State"]
        attempt = int(c["Labels"]["io.kubelite.attempt"])
        runs[attempt] = (parse_docker_time(state["StartedAt"]), parse_docker_time(state["FinishedAt"]))
    assert set(runs) == {1, 2}  # older attempts are pruned; the previous one stays for logs --previous
    assert runs[2][0] - runs[1][1] >= 10 * 10**9
    await client.delete(core.Pod, "crasher", ns)


async def test_liveness_failure_restarts_and_readiness_failure_keeps_ready_false(
        node: str, ns: str, client: Client) -> None:
    live = box("live", "touch /tmp/healthy; sleep 2; rm /tmp/healthy; exec sleep 600",
               liveness_probe=core.Probe(exec=core.ExecAction(command=["cat", "/tmp/healthy"]), period_seconds=1,
                                         failure_threshold=1, initial_delay_seconds=1))
    unready = box("unready", "exec sleep 600",
                  readiness_probe=core.Probe(exec=core.ExecAction(command=["false"]), period_seconds=1))
    await client.create(make_pod("probed", ns, node, live, unready))
    p = await wait_pod(client, ns, "probed", lambda p: bool(p.status.container_statuses)
                       and cstatus(p, "live").restart_count >= 1, timeout=90)
    assert cstatus(p, "unready").state.HasField("running")
    assert not cstatus(p, "unready").ready
    ready = {c.type: c for c in p.status.conditions}["Ready"]
    assert (ready.status, ready.reason) == ("False", "ContainersNotReady")
    assert "unready" in ready.message
    events = await events_for(client, ns, "probed")
    assert any(e.reason == "Unhealthy" and "Liveness" in e.message for e in events)
    assert any(e.reason == "Killing" and "liveness" in e.message for e in events)
    await client.delete(core.Pod, "probed", ns)


async def test_a_container_over_its_memory_limit_reports_oom_killed(node: str, ns: str, client: Client) -> None:
    hog = box("hog", "dd if=/dev/zero of=/dev/null bs=128M count=1",
              resources=core.ResourceRequirements(limits={"memory": "32Mi"}))
    await client.create(make_pod("oom", ns, node, hog, restart_policy="Never"))
    p = await wait_pod(client, ns, "oom", lambda p: p.status.phase == "Failed")
    t = cstatus(p, "hog").state.terminated
    assert (t.exit_code, t.reason) == (137, "OOMKilled")
    await client.delete(core.Pod, "oom", ns)


async def test_graceful_deletion_runs_pre_stop_then_sigterm(node: str, ns: str, client: Client,
                                                            tmp_path: Path) -> None:
    host = tmp_path / "trace"
    host.mkdir()
    c = box("app", "trap 'echo term >> /trace/log; exit 0' TERM; echo started >> /trace/log; "
                   "while :; do sleep 1 & wait $!; done",
            volume_mounts=[core.VolumeMount(name="trace", mount_path="/trace")],
            lifecycle=core.Lifecycle(pre_stop=core.LifecycleHandler(
                exec=core.ExecAction(command=["sh", "-c", "echo prestop >> /trace/log"]))))
    pod = make_pod("graceful", ns, node, c, grace=10)
    pod.spec.volumes.append(core.Volume(name="trace", host_path=core.HostPathVolumeSource(path=str(host))))
    await client.create(pod)
    await wait_pod(client, ns, "graceful", running)
    await client.delete(core.Pod, "graceful", ns)
    p = await client.get(core.Pod, "graceful", ns)
    assert p.metadata.HasField("deletion_timestamp")
    await wait_gone(client, ns, "graceful")
    assert (host / "log").read_text() == "started\nprestop\nterm\n"


async def test_a_container_removed_behind_the_kubelets_back_is_recreated(
        node: str, ns: str, client: Client, engine: docker.APIClient) -> None:
    await client.create(make_pod("phoenix", ns, node, box("app", "exec sleep 600")))
    p = await wait_pod(client, ns, "phoenix", running)
    old = docker_id(cstatus(p, "app"))
    engine.remove_container(old, force=True)
    p = await wait_pod(client, ns, "phoenix", lambda p: running(p) and docker_id(cstatus(p, "app")) != old)
    assert cstatus(p, "app").restart_count == 1
    await client.delete(core.Pod, "phoenix", ns)


async def test_a_missing_image_gives_err_image_pull_then_image_pull_back_off(
        node: str, ns: str, client: Client) -> None:
    c = core.Container(name="app", image="kubelite/does-not-exist:1.0", image_pull_policy="IfNotPresent")
    created = await client.create(make_pod("noimage", ns, node, c))
    reasons: list[str] = []
    # A watch sees every status the kubelet writes: ErrImagePull lasts only until the next sync.
    async with asyncio.timeout(60), contextlib.aclosing(client.watch(
            core.Pod, ns, resource_version=created.metadata.resource_version)) as events:
        async for ev in events:
            if ev.object.status.container_statuses:
                reason = ev.object.status.container_statuses[0].state.waiting.reason
                if not reasons or reasons[-1] != reason:
                    reasons.append(reason)
            if "ImagePullBackOff" in reasons:
                break
    assert reasons[:2] == ["ErrImagePull", "ImagePullBackOff"]
    p = await client.get(core.Pod, "noimage", ns)
    assert p.status.phase == "Pending"
    failed = [e for e in await events_for(client, ns, "noimage") if e.reason == "Failed"]
    assert failed and "never pulls from a public registry" in failed[0].message
    await client.delete(core.Pod, "noimage", ns)


async def test_admission_rejects_host_port_conflicts_and_too_large_requests(
        node: str, ns: str, client: Client) -> None:
    from tests.support.apiserver import free_port

    port = free_port()
    first = box("app", "exec sleep 600", ports=[core.ContainerPort(container_port=80, host_port=port)])
    await client.create(make_pod("port-a", ns, node, first))
    await wait_pod(client, ns, "port-a", running)
    second = box("app", "exec sleep 600", ports=[core.ContainerPort(container_port=80, host_port=port)])
    await client.create(make_pod("port-b", ns, node, second))
    p = await wait_pod(client, ns, "port-b", lambda p: p.status.phase == "Failed")
    assert p.status.reason == "NodePorts"
    assert str(port) in p.status.message
    big = box("app", "exec sleep 600", resources=core.ResourceRequirements(requests={"cpu": "1000"}))
    await client.create(make_pod("huge", ns, node, big))
    p = await wait_pod(client, ns, "huge", lambda p: p.status.phase == "Failed")
    assert p.status.reason == "OutOfcpu"
    assert "Node didn't have enough resource: cpu" in p.status.message
    for name in ("port-a", "port-b", "huge"):
        await client.delete(core.Pod, name, ns)


async def test_a_restarted_kubelet_keeps_running_containers(node: str, ns: str, client: Client,
                                                            kubelet: KubeletProcess,
                                                            engine: docker.APIClient) -> None:
    await client.create(make_pod("steady", ns, node, box("app", "exec sleep 600")))
    p = await wait_pod(client, ns, "steady", running)
    before = docker_id(cstatus(p, "app"))
    kubelet.kill()
    kubelet.start()
    # A pod created after the restart runs once the new kubelet is working; by then it
    # has listed and synced the older pod too.
    await client.create(make_pod("after", ns, node, box("app", "exec sleep 600")))
    await wait_pod(client, ns, "after", running)
    p = await client.get(core.Pod, "steady", ns)
    assert running(p)
    assert docker_id(cstatus(p, "app")) == before
    assert cstatus(p, "app").restart_count == 0
    assert engine.inspect_container(before)["State"]["Running"]
    for name in ("steady", "after"):
        await client.delete(core.Pod, name, ns)


async def test_kubelet_api_serves_logs_previous_logs_exec_and_port_forward(
        node: str, ns: str, client: Client, kubelet: KubeletProcess) -> None:
    import grpc

    from kubelite.api.service.v1 import streaming_pb2 as st
    from kubelite.api.service.v1 import streaming_pb2_grpc as st_grpc

    # Attempt 0 prints and exits at once; attempt 1 (the restart) serves HTTP and keeps running.
    script = ("if [ -f /state/ran ]; then echo second; echo hi-pf > /tmp/index.html; "
              "exec httpd -f -p 127.0.0.1:8080 -h /tmp; fi; touch /state/ran; echo first; exit 1")
    c = box("app", script, volume_mounts=[core.VolumeMount(name="state", mount_path="/state")])
    pod = make_pod("streams", ns, node, c)
    pod.spec.volumes.append(core.Volume(name="state", empty_dir=core.EmptyDirVolumeSource()))
    await client.create(pod)
    p = await wait_pod(client, ns, "streams", lambda p: running(p) and cstatus(p, "app").restart_count == 1)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{kubelet.port}")
    stub = st_grpc.PodStreamServiceStub(channel)
    try:
        async def logs(**kw: object) -> bytes:
            req = st.PodLogRequest(namespace=ns, name="streams", pod_uid=p.metadata.uid, **kw)  # type: ignore[arg-type]
            return b"".join([c.data async for c in stub.Log(req)])

        async with asyncio.timeout(10):
            while True:
                if await logs() == b"second\n":
                    break
                await asyncio.sleep(0.2)
        assert await logs(previous=True) == b"first\n"
        assert (await logs(timestamps=True)).endswith(b" second\n")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await logs(container="nope")
        assert "container nope is not valid" in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Log(st.PodLogRequest(namespace=ns, name="streams", pod_uid="other-uid")).read()
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        async def exec_frames() -> AsyncIterator[st.StreamFrame]:
            yield st.StreamFrame(start=st.ExecStart(namespace=ns, name="streams", command=[
                "sh", "-c", "read x; echo got-$x; echo err >&2; exit 4"], stdin=True, stdout=True, stderr=True))
            yield st.StreamFrame(stdin=b"hello\n")
            yield st.StreamFrame(close_stdin=True)

        out, errs, code = b"", b"", None
        async for frame in stub.Exec(exec_frames()):
            kind = frame.WhichOneof("frame")
            if kind == "stdout":
                out += frame.stdout
            elif kind == "stderr":
                errs += frame.stderr
            elif kind == "exit":
                code = frame.exit.exit_code
        assert (out, errs, code) == (b"got-hello\n", b"err\n", 4)

        async def pf_frames() -> AsyncIterator[st.PortForwardFrame]:
            yield st.PortForwardFrame(start=st.PortForwardStart(namespace=ns, name="streams", port=8080))
            yield st.PortForwardFrame(data=b"GET /index.html HTTP/1.0\r\n\r\n")

        body = b""
        async with asyncio.timeout(20):
            async for frame in stub.PortForward(pf_frames()):
                if frame.WhichOneof("frame") == "data":
                    body += frame.data
        assert body.startswith(b"HTTP/1.")
        assert body.endswith(b"hi-pf\n")
    finally:
        await channel.close()
    await client.delete(core.Pod, "streams", ns)


async def test_downward_api_subpath_post_start_startup_probe_and_termination_message(
        node: str, ns: str, client: Client, engine: docker.APIClient) -> None:
    cm = core.ConfigMap(api_version="v1", kind="ConfigMap", data={"app.conf": "mode=fast\n"})
    cm.metadata.name, cm.metadata.namespace = "conf", ns
    await client.create(cm)
    app = box("app", "exec sleep 600",
              volume_mounts=[core.VolumeMount(name="info", mount_path="/etc/podinfo"),
                             core.VolumeMount(name="conf", mount_path="/etc/app.conf", sub_path="app.conf")],
              lifecycle=core.Lifecycle(post_start=core.LifecycleHandler(
                  exec=core.ExecAction(command=["sh", "-c", "echo started > /tmp/post-start"]))),
              startup_probe=core.Probe(exec=core.ExecAction(command=["test", "-f", "/tmp/post-start"]),
                                       period_seconds=1, failure_threshold=30))
    quitter = box("quitter", "echo 'bye from quitter' > /dev/termination-log; exit 0")
    pod = make_pod("features", ns, node, app, quitter, restart_policy="OnFailure")
    pod.metadata.labels["tier"] = "web"
    pod.spec.volumes.append(core.Volume(name="info", downward_api=core.DownwardAPIVolumeSource(items=[
        core.DownwardAPIVolumeFile(path="labels", field_ref=core.ObjectFieldSelector(field_path="metadata.labels")),
        core.DownwardAPIVolumeFile(path="name", field_ref=core.ObjectFieldSelector(field_path="metadata.name"))])))
    pod.spec.volumes.append(core.Volume(name="conf", config_map=core.ConfigMapVolumeSource(name="conf")))
    await client.create(pod)
    p = await wait_pod(client, ns, "features", lambda p: bool(p.status.container_statuses)
                       and cstatus(p, "app").ready and cstatus(p, "quitter").state.HasField("terminated"))
    assert cstatus(p, "app").started
    t = cstatus(p, "quitter").state.terminated
    assert (t.exit_code, t.reason, t.message) == (0, "Completed", "bye from quitter\n")
    cid = docker_id(cstatus(p, "app"))

    def run(*cmd: str) -> str:
        ex = engine.exec_create(cid, list(cmd))
        return str(engine.exec_start(ex["Id"]).decode())

    assert run("cat", "/etc/podinfo/name") == "features"
    assert run("cat", "/etc/podinfo/labels") == 'tier="web"'
    assert run("cat", "/etc/app.conf") == "mode=fast\n"
    assert run("cat", "/tmp/post-start") == "started\n"
    await client.delete(core.Pod, "features", ns)


async def test_a_host_network_pod_reports_the_node_ip(node: str, ns: str, client: Client,
                                                      engine: docker.APIClient) -> None:
    pod = make_pod("hostnet", ns, node, box("app", "exec sleep 600"))
    pod.spec.host_network = True
    pod.spec.dns_policy = "ClusterFirstWithHostNet"
    await client.create(pod)
    p = await wait_pod(client, ns, "hostnet", running)
    assert p.status.pod_ip == "127.0.0.1"  # the node's --node-ip
    info = engine.inspect_container(docker_id(cstatus(p, "app")))
    assert info["HostConfig"]["NetworkMode"] == "host"
    await client.delete(core.Pod, "hostnet", ns)
