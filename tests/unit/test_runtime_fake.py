"""The fake runtime, alone and behind the gRPC server/client pair on a unix socket."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubelite.api.runtime.v1 import api_pb2 as rt
from kubelite.runtime import ImagePullError, InvalidArgumentError, NotFoundError, Runtime, UnavailableError
from kubelite.runtime.fake import FakeRuntime
from kubelite.runtime.remote import RemoteRuntime, serve_runtime, socket_path


def sandbox(name: str = "p", uid: str = "u1", host_network: bool = False) -> rt.PodSandboxConfig:
    return rt.PodSandboxConfig(metadata=rt.PodSandboxMetadata(name=name, namespace="default", uid=uid),
                               labels={"io.kubernetes.pod.uid": uid},
                               security_context=rt.LinuxSandboxSecurityContext(host_network=host_network))


def container(name: str = "app", image: str = "busybox") -> rt.ContainerConfig:
    return rt.ContainerConfig(metadata=rt.ContainerMetadata(name=name), image=rt.ImageSpec(image=image),
                              labels={"io.kubernetes.container.name": name})


async def test_sandboxes_get_addresses_from_the_pod_cidr_and_give_them_back() -> None:
    r = FakeRuntime()
    with pytest.raises(UnavailableError, match="no pod CIDR"):
        await r.run_pod_sandbox(sandbox())
    await r.update_runtime_config("10.250.3.0/24")
    a = await r.run_pod_sandbox(sandbox("a", "ua"))
    b = await r.run_pod_sandbox(sandbox("b", "ub"))
    ip_a = (await r.pod_sandbox_status(a)).network.ip
    ip_b = (await r.pod_sandbox_status(b)).network.ip
    assert ip_a == "10.250.3.2" and ip_b == "10.250.3.3"
    await r.remove_pod_sandbox(a)
    c = await r.run_pod_sandbox(sandbox("c", "uc"))
    assert (await r.pod_sandbox_status(c)).network.ip == ip_a
    h = await r.run_pod_sandbox(sandbox("h", "uh", host_network=True))
    assert (await r.pod_sandbox_status(h)).network.ip == ""
    with pytest.raises(InvalidArgumentError, match="pod_cidr"):
        await r.update_runtime_config("not-a-cidr")


async def test_containers_run_until_told_otherwise() -> None:
    r = FakeRuntime(pod_cidr="10.250.4.0/24")
    sid = await r.run_pod_sandbox(sandbox())
    with pytest.raises(ImagePullError):
        await r.create_container(sid, container(), sandbox())
    await r.pull_image("busybox")
    cid = await r.create_container(sid, container(), sandbox())
    assert (await r.container_status(cid)).state == rt.CONTAINER_CREATED
    await r.start_container(cid)
    st = await r.container_status(cid)
    assert st.state == rt.CONTAINER_RUNNING and st.started_at > 0 and st.image_ref.startswith("sha256:")
    assert [c.id for c in await r.list_containers(rt.ContainerFilter(state=rt.CONTAINER_RUNNING))] == [cid]
    assert await r.list_containers(rt.ContainerFilter(label_selector={"io.kubernetes.container.name": "x"})) == []
    r.exit_container(cid, 2)
    st = await r.container_status(cid)
    assert (st.state, st.exit_code, st.reason) == (rt.CONTAINER_EXITED, 2, "Error")
    await r.remove_container(cid)
    with pytest.raises(NotFoundError):
        await r.container_status(cid)
    r.missing_images.add("ghost")
    with pytest.raises(ImagePullError):
        await r.pull_image("ghost")


async def test_stop_sandbox_stops_its_containers_and_failures_can_be_injected() -> None:
    r = FakeRuntime(pod_cidr="10.250.5.0/24")
    await r.pull_image("busybox")
    sid = await r.run_pod_sandbox(sandbox())
    cid = await r.create_container(sid, container(), sandbox())
    await r.start_container(cid)
    await r.stop_pod_sandbox(sid)
    assert (await r.pod_sandbox_status(sid)).state == rt.SANDBOX_NOTREADY
    assert (await r.container_status(cid)).state == rt.CONTAINER_EXITED
    r.fail_next["run_pod_sandbox"] = UnavailableError("engine down")
    with pytest.raises(UnavailableError):
        await r.run_pod_sandbox(sandbox("q", "uq"))
    assert r.calls["run_pod_sandbox"] == 2


async def test_many_hollow_runtimes_are_cheap() -> None:
    runtimes = [FakeRuntime(pod_cidr=f"10.{i // 256}.{i % 256}.0/24", node_name=f"n{i}") for i in range(500)]
    for r in runtimes[:50]:
        await r.run_pod_sandbox(sandbox())
    assert sum(len(r.sandboxes) for r in runtimes) == 50


@pytest.fixture
async def remote() -> AsyncIterator[tuple[FakeRuntime, RemoteRuntime]]:
    fake = FakeRuntime(pod_cidr="10.250.6.0/24")
    with tempfile.TemporaryDirectory() as tmp:
        endpoint = f"unix://{Path(tmp) / 'runtime.sock'}"
        server = await serve_runtime(fake, endpoint)
        client = RemoteRuntime(endpoint)
        try:
            yield fake, client
        finally:
            await client.close()
            await server.stop(None)


async def test_remote_runtime_is_the_same_protocol(remote: tuple[FakeRuntime, RemoteRuntime]) -> None:
    fake, client = remote
    proto: Runtime = client
    assert (await proto.version()).runtime_name == "fake"
    await proto.pull_image("busybox")
    assert (await proto.image_status("busybox")) is not None
    assert (await proto.image_status("nothing")) is None
    sid = await proto.run_pod_sandbox(sandbox())
    assert (await proto.pod_sandbox_status(sid)).network.ip == "10.250.6.2"
    cid = await proto.create_container(sid, container(), sandbox())
    await proto.start_container(cid)
    assert [c.id for c in await proto.list_containers()] == [cid]
    assert len(await proto.list_pod_sandbox(rt.PodSandboxFilter(state=rt.SANDBOX_READY))) == 1
    fake.exec_results["false"] = 1
    assert (await proto.exec_sync(cid, ["false"])).exit_code == 1
    fake.containers[cid].logs = [b"a\n", b"b\n"]
    out = [c.data async for c in proto.container_logs(rt.ContainerLogsRequest(container_id=cid, tail_lines=1))]
    assert out == [b"b\n"]
    await proto.stop_container(cid, 5)
    assert (await proto.container_status(cid)).exit_code == 143


async def test_remote_runtime_translates_errors(remote: tuple[FakeRuntime, RemoteRuntime]) -> None:
    fake, client = remote
    with pytest.raises(NotFoundError):
        await client.container_status("missing")
    fake.missing_images.add("ghost")
    with pytest.raises(ImagePullError, match="ghost"):
        await client.pull_image("ghost")
    with pytest.raises(InvalidArgumentError):
        await client.run_pod_sandbox(rt.PodSandboxConfig())
    with pytest.raises(NotFoundError):
        async for _ in client.container_logs(rt.ContainerLogsRequest(container_id="missing")):
            pass


def test_socket_path_accepts_unix_endpoints_only() -> None:
    assert socket_path("unix:///run/x.sock") == "/run/x.sock"
    assert socket_path("/run/x.sock") == "/run/x.sock"
    with pytest.raises(ValueError, match="container-runtime-endpoint"):
        socket_path("tcp://1.2.3.4:80")
