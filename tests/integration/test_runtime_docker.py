"""The Docker runtime against the real engine on this host.

Every test runs as its own "node" (label io.kubelite.node) on one bridge
network with a subnet chosen here, and removes what it created by that label.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import pytest

from kubelite.api.runtime.v1 import api_pb2 as rt
from kubelite.runtime import NotFoundError
from kubelite.runtime.docker import DockerRuntime
from kubelite.runtime.images import busybox_image, ensure_busybox_image, ensure_pause_image
from kubelite.runtime.interface import LABEL_NODE

SUBNET = "10.231.71.0/24"
NETWORK = "kubelite-it-runtime"


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.APIClient]:
    api = docker.APIClient(version="auto")
    ensure_pause_image(api)
    ensure_busybox_image(api)
    yield api
    for n in api.networks(names=[NETWORK]):
        if n["Name"] == NETWORK:
            api.remove_network(n["Id"])
    api.close()


def _cleanup(api: docker.APIClient, node: str) -> None:
    for c in api.containers(all=True, filters={"label": [f"{LABEL_NODE}={node}"]}):
        api.remove_container(c["Id"], force=True)


@pytest.fixture
async def runtime(engine: docker.APIClient) -> AsyncIterator[DockerRuntime]:
    node = f"it-rt-{secrets.token_hex(3)}"
    r = DockerRuntime(node_name=node, network_name=NETWORK)
    await r.update_runtime_config(SUBNET)
    try:
        yield r
    finally:
        await r.close()  # waits for engine calls in flight, so the cleanup sees everything
        _cleanup(engine, node)


def sandbox_config(name: str = "web", namespace: str = "default", attempt: int = 0) -> rt.PodSandboxConfig:
    return rt.PodSandboxConfig(
        metadata=rt.PodSandboxMetadata(name=name, namespace=namespace, uid=f"uid-{secrets.token_hex(4)}",
                                       attempt=attempt),
        hostname=name)


def container_config(name: str, script: str, attempt: int = 0, **kwargs: object) -> rt.ContainerConfig:
    return rt.ContainerConfig(metadata=rt.ContainerMetadata(name=name, attempt=attempt),
                              image=rt.ImageSpec(image=busybox_image()), command=["sh", "-c", script],
                              **kwargs)  # type: ignore[arg-type]


async def start(r: DockerRuntime, sid: str, sc: rt.PodSandboxConfig, cc: rt.ContainerConfig) -> str:
    cid = await r.create_container(sid, cc, sc)
    await r.start_container(cid)
    return cid


async def wait_exited(r: DockerRuntime, cid: str, timeout: float = 30) -> rt.ContainerStatus:
    async with asyncio.timeout(timeout):
        while True:
            st = await r.container_status(cid)
            if st.state == rt.CONTAINER_EXITED:
                return st
            await asyncio.sleep(0.1)


async def logs(r: DockerRuntime, cid: str, **kwargs: object) -> bytes:
    out = b""
    async for chunk in r.container_logs(rt.ContainerLogsRequest(container_id=cid, **kwargs)):  # type: ignore[arg-type]
        out += chunk.data
    return out


async def test_containers_of_a_sandbox_share_localhost_and_hostname(runtime: DockerRuntime) -> None:
    sc = sandbox_config("shared")
    sid = await runtime.run_pod_sandbox(sc)
    status = await runtime.pod_sandbox_status(sid)
    assert status.state == rt.SANDBOX_READY
    assert status.network.ip.startswith("10.231.71.")
    server = await start(runtime, sid, sc, container_config(
        "server", "echo hello-from-server > /tmp/index.html; exec httpd -f -p 127.0.0.1:8080 -h /tmp"))
    client = await start(runtime, sid, sc, container_config("client", "exec sleep 300"))
    async with asyncio.timeout(20):
        while True:
            res = await runtime.exec_sync(client, ["timeout", "3", "wget", "-q", "-O", "-",
                                                   "http://127.0.0.1:8080/index.html"])
            if res.exit_code == 0:
                break
            await asyncio.sleep(0.2)
    assert res.stdout == b"hello-from-server\n"
    for cid in (server, client):
        assert (await runtime.exec_sync(cid, ["hostname"])).stdout == b"shared\n"
    # Both see the pod IP on their interface: one network namespace.
    ip_out = await runtime.exec_sync(client, ["ip", "-4", "addr"])
    assert status.network.ip.encode() in ip_out.stdout


async def test_every_container_of_a_pod_reads_the_resolv_conf_the_kubelet_asked_for(runtime: DockerRuntime) -> None:
    sc = sandbox_config("dns")
    sc.dns_config.CopyFrom(rt.DNSConfig(servers=["10.96.0.10"], options=["ndots:5"],
                                        searches=["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]))
    sid = await runtime.run_pod_sandbox(sc)
    cid = await start(runtime, sid, sc, container_config("app", "exec sleep 300"))
    # Docker's own would name its embedded resolver (127.0.0.11) on a user-defined network.
    assert (await runtime.exec_sync(cid, ["cat", "/etc/resolv.conf"])).stdout.decode().splitlines() == [
        "search default.svc.cluster.local svc.cluster.local cluster.local", "nameserver 10.96.0.10",
        "options ndots:5"]


async def test_labels_and_names_read_like_dockershim(runtime: DockerRuntime, engine: docker.APIClient) -> None:
    sc = sandbox_config("labelled", namespace="team-a")
    uid = sc.metadata.uid
    sid = await runtime.run_pod_sandbox(sc)
    cid = await start(runtime, sid, sc, container_config("app", "exec sleep 300", attempt=2))
    sandbox = engine.inspect_container(sid)
    app = engine.inspect_container(cid)
    assert sandbox["Name"] == f"/k8s_POD_labelled_team-a_{uid}_0"
    assert app["Name"] == f"/k8s_app_labelled_team-a_{uid}_2"
    for info, cname, attempt in ((sandbox, "POD", "0"), (app, "app", "2")):
        labels = info["Config"]["Labels"]
        assert labels["io.kubernetes.pod.uid"] == uid
        assert labels["io.kubernetes.pod.name"] == "labelled"
        assert labels["io.kubernetes.pod.namespace"] == "team-a"
        assert labels["io.kubernetes.container.name"] == cname
        assert labels["io.kubelite.attempt"] == attempt
    assert sandbox["Config"]["Image"].startswith("kubelite/pause:")
    assert app["HostConfig"]["NetworkMode"] == f"container:{sid}"
    assert app["HostConfig"]["IpcMode"] == f"container:{sid}"


async def test_stop_sends_sigterm_then_sigkill_after_the_timeout(runtime: DockerRuntime) -> None:
    sc = sandbox_config("stubborn")
    sid = await runtime.run_pod_sandbox(sc)
    # Traps SIGTERM, says so, and keeps running: only SIGKILL ends it.
    stubborn = await start(runtime, sid, sc, container_config(
        "stubborn", "trap 'echo got-TERM' TERM; echo ready; while :; do sleep 1 & wait $!; done"))
    polite = await start(runtime, sid, sc, container_config(
        "polite", "trap 'echo bye; exit 0' TERM; while :; do sleep 1 & wait $!; done"))
    async with asyncio.timeout(10):
        while True:
            if b"ready" in await logs(runtime, stubborn):
                break
            await asyncio.sleep(0.1)
    await runtime.stop_container(stubborn, 1)
    st = await runtime.container_status(stubborn)
    assert st.state == rt.CONTAINER_EXITED
    assert st.exit_code == 137
    assert st.reason == "Error"
    assert b"got-TERM" in await logs(runtime, stubborn)
    await runtime.stop_container(polite, 10)
    st = await runtime.container_status(polite)
    assert (st.exit_code, st.reason) == (0, "Completed")
    # Stopping a stopped container is not an error.
    await runtime.stop_container(polite, 1)


async def test_a_container_over_its_memory_limit_is_oom_killed(runtime: DockerRuntime) -> None:
    sc = sandbox_config("hungry")
    sid = await runtime.run_pod_sandbox(sc)
    cid = await start(runtime, sid, sc, container_config(
        "hog", "dd if=/dev/zero of=/dev/null bs=128M count=1",
        resources=rt.LinuxContainerResources(memory_limit_in_bytes=32 * 1024 * 1024, cpu_shares=256)))
    st = await wait_exited(runtime, cid)
    assert (st.exit_code, st.reason) == (137, "OOMKilled")


async def test_exec_passes_exit_codes_and_output(runtime: DockerRuntime) -> None:
    sc = sandbox_config("execs")
    sid = await runtime.run_pod_sandbox(sc)
    cid = await start(runtime, sid, sc, container_config(
        "app", "exec sleep 300", envs=[rt.KeyValue(key="GREETING", value="hi there")], working_dir="/tmp"))
    res = await runtime.exec_sync(cid, ["sh", "-c", 'echo "$GREETING in $(pwd)"; echo oops >&2; exit 7'])
    assert (res.stdout, res.stderr, res.exit_code) == (b"hi there in /tmp\n", b"oops\n", 7)
    assert (await runtime.exec_sync(cid, ["true"])).exit_code == 0
    slow = await runtime.exec_sync(cid, ["sleep", "30"], timeout=0.5)
    assert slow.timed_out

    async def frames() -> AsyncIterator[rt.StreamFrame]:
        yield rt.StreamFrame(start=rt.StreamStart(container_id=cid, cmd=["sh", "-c", "read x; echo got-$x; exit 5"],
                                                  stdin=True, stdout=True, stderr=True))
        yield rt.StreamFrame(stdin=b"line\n")
        yield rt.StreamFrame(close_stdin=True)

    out = b""
    exit_code = None
    async with asyncio.timeout(20):
        async for frame in runtime.exec(frames()):
            if frame.WhichOneof("frame") == "stdout":
                out += frame.stdout
            elif frame.WhichOneof("frame") == "exit":
                exit_code = frame.exit.exit_code
    assert out == b"got-line\n"
    assert exit_code == 5


async def test_logs_tail_follow_and_previous_attempt(runtime: DockerRuntime) -> None:
    sc = sandbox_config("talky")
    sid = await runtime.run_pod_sandbox(sc)
    first = await start(runtime, sid, sc, container_config("app", "echo one; echo two; echo three; exit 1"))
    assert (await wait_exited(runtime, first)).exit_code == 1
    second = await start(runtime, sid, sc, container_config("app", "echo again; exec sleep 300", attempt=1))
    # The previous attempt's logs stay readable by its id while it is kept.
    assert await logs(runtime, first) == b"one\ntwo\nthree\n"
    assert await logs(runtime, first, tail_lines=1) == b"three\n"
    stamped = await logs(runtime, first, timestamps=True)
    assert stamped.split(b"\n")[0].endswith(b" one") and stamped[:2] == b"20"
    # A followed stream stays open; closing it from our side ends it.
    async with asyncio.timeout(20):
        async for chunk in runtime.container_logs(rt.ContainerLogsRequest(container_id=second, follow=True)):
            assert chunk.data == b"again\n"
            break


async def test_a_container_removed_behind_the_runtimes_back_is_gone(runtime: DockerRuntime,
                                                                    engine: docker.APIClient) -> None:
    sc = sandbox_config("vanishing")
    sid = await runtime.run_pod_sandbox(sc)
    cid = await start(runtime, sid, sc, container_config("app", "exec sleep 300"))
    assert [c.id for c in await runtime.list_containers(rt.ContainerFilter(pod_sandbox_id=sid))] == [cid]
    engine.remove_container(cid, force=True)
    with pytest.raises(NotFoundError):
        await runtime.container_status(cid)
    assert await runtime.list_containers(rt.ContainerFilter(pod_sandbox_id=sid)) == []


async def test_a_new_runtime_instance_adopts_by_labels(runtime: DockerRuntime) -> None:
    sc = sandbox_config("adopted", namespace="ns1")
    sid = await runtime.run_pod_sandbox(sc)
    cid = await start(runtime, sid, sc, container_config("app", "exec sleep 300", attempt=3))
    other_node = DockerRuntime(node_name=runtime.node_name + "-other", network_name=NETWORK)
    again = DockerRuntime(node_name=runtime.node_name, network_name=NETWORK)
    try:
        assert await other_node.list_pod_sandbox() == []
        [sandbox] = await again.list_pod_sandbox(rt.PodSandboxFilter(
            label_selector={"io.kubernetes.pod.uid": sc.metadata.uid}))
        assert sandbox.id == sid
        assert (sandbox.metadata.name, sandbox.metadata.namespace, sandbox.metadata.uid) == (
            "adopted", "ns1", sc.metadata.uid)
        assert sandbox.state == rt.SANDBOX_READY
        [container] = await again.list_containers(rt.ContainerFilter(state=rt.CONTAINER_RUNNING))
        assert (container.id, container.pod_sandbox_id) == (cid, sid)
        assert (container.metadata.name, container.metadata.attempt) == ("app", 3)
        assert (await again.pod_sandbox_status(sid)).network.ip == (await runtime.pod_sandbox_status(sid)).network.ip
        await again.stop_pod_sandbox(sid)
        assert (await runtime.container_status(cid)).state == rt.CONTAINER_EXITED
        await again.remove_pod_sandbox(sid)
        assert await runtime.list_pod_sandbox() == []
        assert await runtime.list_containers() == []
    finally:
        await again.close()
        await other_node.close()


async def test_host_port_is_published_and_missing_images_fail_to_pull(runtime: DockerRuntime) -> None:
    from kubelite.runtime import ImagePullError

    with pytest.raises(ImagePullError, match="never pulls from a public registry"):
        await runtime.pull_image("nginx:1.25")
    assert await runtime.image_status("nginx:does-not-exist") is None
    assert (await runtime.image_status(busybox_image())) is not None
    sc = sandbox_config("ported")
    sc.port_mappings.append(rt.PortMapping(container_port=8080, host_port=0))
    sid = await runtime.run_pod_sandbox(sc)
    assert (await runtime.pod_sandbox_status(sid)).state == rt.SANDBOX_READY


async def test_container_events_follow_starts_and_deaths(runtime: DockerRuntime) -> None:
    sc = sandbox_config("eventful")
    sid = await runtime.run_pod_sandbox(sc)
    seen: list[tuple[str, str, int]] = []
    got = asyncio.Event()

    async def consume() -> None:
        async for ev in runtime.container_events():
            assert ev.pod_sandbox_metadata.uid == sc.metadata.uid
            seen.append((ev.container_id, ev.container_name, ev.container_event_type))
            got.set()

    consumer = asyncio.create_task(consume(), name="events-consumer")
    try:
        # The subscription opens asynchronously: start containers until it reports one.
        async with asyncio.timeout(30):
            attempt = 0
            while True:
                cid = await start(runtime, sid, sc, container_config("app", "exit 3", attempt=attempt))
                attempt += 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(3):
                        while (cid, "app", rt.CONTAINER_STOPPED_EVENT) not in seen:
                            got.clear()
                            await got.wait()
                        break
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
    assert (cid, "app", rt.CONTAINER_STARTED_EVENT) in seen


async def test_the_docker_runtime_over_a_unix_socket(runtime: DockerRuntime, tmp_path: Path) -> None:
    from kubelite.runtime.remote import RemoteRuntime, serve_runtime

    endpoint = f"unix://{tmp_path / 'runtime.sock'}"
    server = await serve_runtime(runtime, endpoint)
    remote = RemoteRuntime(endpoint)
    try:
        assert (await remote.version()).runtime_name == "docker"
        sc = sandbox_config("remote")
        sid = await remote.run_pod_sandbox(sc)
        cc = container_config("app", "echo over-the-socket; exec sleep 300")
        cid = await remote.create_container(sid, cc, sc)
        await remote.start_container(cid)
        assert (await remote.container_status(cid)).state == rt.CONTAINER_RUNNING
        res = await remote.exec_sync(cid, ["sh", "-c", "exit 9"])
        assert res.exit_code == 9
        async with asyncio.timeout(10):
            while True:
                out = b"".join([c.data async for c in remote.container_logs(rt.ContainerLogsRequest(
                    container_id=cid))])
                if out:
                    break
                await asyncio.sleep(0.1)
        assert out == b"over-the-socket\n"
        await remote.remove_pod_sandbox(sid)
        with pytest.raises(NotFoundError):
            await remote.container_status(cid)
    finally:
        await remote.close()
        await server.stop(None)
