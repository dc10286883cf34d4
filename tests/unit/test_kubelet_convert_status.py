"""The kubelet's pure parts: pod -> runtime config, runtime state -> pod status, flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.runtime.v1 import api_pb2 as rt
from kubelite.kubelet import convert, volumes
from kubelite.kubelet.config import ConfigError, KubeletConfig, parse_key_values, parse_taints
from kubelite.kubelet.status import PodRuntimeState, Waiting, pod_status


def pod(*containers: core.Container, restart_policy: str = "Always") -> core.Pod:
    p = core.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = "web", "prod", "uid-1"
    p.metadata.labels["app"] = "web"
    p.spec.restart_policy = restart_policy
    p.spec.containers.extend(containers)
    return p


def sources(**kw: object) -> convert.EnvSources:
    base: dict[str, object] = {"config_maps": {}, "secrets": {}, "service_env": {}, "pod_ip": "10.1.0.5",
                               "host_ip": "192.0.2.1", "node_name": "n1"}
    base.update(kw)
    return convert.EnvSources(**base)  # type: ignore[arg-type]


def test_var_expansion_follows_kubernetes_rules() -> None:
    env = {"A": "1", "B": "two"}
    assert convert.expand("$(A)-$(B)", env) == "1-two"
    assert convert.expand("$$(A)", env) == "$(A)"
    assert convert.expand("$(MISSING) stays", env) == "$(MISSING) stays"


def test_env_order_sources_and_errors() -> None:
    cm = core.ConfigMap(data={"color": "blue", "size": "L"})
    secret = core.Secret(data={"pw": b"hunter2"})
    c = core.Container(name="app", env=[
        core.EnvVar(name="COLOR", value_from=core.EnvVarSource(
            config_map_key_ref=core.ConfigMapKeySelector(name="cm", key="color"))),
        core.EnvVar(name="PW", value_from=core.EnvVarSource(secret_key_ref=core.SecretKeySelector(name="s", key="pw"))),
        core.EnvVar(name="IP", value_from=core.EnvVarSource(field_ref=core.ObjectFieldSelector(
            field_path="status.podIP"))),
        core.EnvVar(name="APP", value_from=core.EnvVarSource(field_ref=core.ObjectFieldSelector(
            field_path="metadata.labels['app']"))),
        core.EnvVar(name="MSG", value="$(COLOR) at $(IP)"),
    ], env_from=[core.EnvFromSource(prefix="X_", config_map_ref=core.ConfigMapEnvSource(name="cm"))])
    env = dict(convert.container_env(pod(c), c, sources(config_maps={"cm": cm}, secrets={"s": secret},
                                                        service_env={"WEB_SERVICE_HOST": "10.96.0.9"})))
    assert env == {"WEB_SERVICE_HOST": "10.96.0.9", "X_color": "blue", "X_size": "L", "COLOR": "blue",
                   "PW": "hunter2", "IP": "10.1.0.5", "APP": "web", "MSG": "blue at 10.1.0.5"}
    with pytest.raises(convert.ConfigError, match='configmap "cm" not found'):
        convert.container_env(pod(c), c, sources())
    optional = core.Container(name="app", env=[core.EnvVar(name="Y", value_from=core.EnvVarSource(
        config_map_key_ref=core.ConfigMapKeySelector(name="nope", key="k", optional=True)))])
    assert convert.container_env(pod(optional), optional, sources()) == []


def test_resources_become_cgroup_numbers() -> None:
    c = core.Container(name="app", resources=core.ResourceRequirements(
        requests={"cpu": "250m", "memory": "64Mi"}, limits={"cpu": "500m", "memory": "128Mi"}))
    res = convert.linux_resources(c)
    assert (res.cpu_shares, res.cpu_period, res.cpu_quota, res.memory_limit_in_bytes) == (
        256, 100_000, 50_000, 128 * 1024 * 1024)
    assert convert.linux_resources(core.Container(name="x")).cpu_shares == 2
    with pytest.raises(convert.ConfigError, match=r"resources\.limits\.cpu"):
        convert.linux_resources(core.Container(name="x", resources=core.ResourceRequirements(limits={"cpu": "x"})))


def test_sandbox_and_container_configs_carry_labels_ports_and_dns() -> None:
    c = core.Container(name="app", image="img:1", command=["sh"], args=["-c", "echo $(GREETING)"],
                       ports=[core.ContainerPort(container_port=80, host_port=8080)],
                       security_context=core.SecurityContext(run_as_user=1000, read_only_root_filesystem=True,
                                                             capabilities=core.Capabilities(add=["NET_ADMIN"])))
    p = pod(c)
    sb = convert.sandbox_config(p, 2, cluster_dns=("10.96.0.10",))
    assert (sb.metadata.attempt, sb.hostname) == (2, "web")
    assert sb.labels["io.kubernetes.pod.uid"] == "uid-1"
    assert [(m.container_port, m.host_port) for m in sb.port_mappings] == [(80, 8080)]
    assert list(sb.dns_config.servers) == ["10.96.0.10"]
    assert list(sb.dns_config.searches) == ["prod.svc.cluster.local", "svc.cluster.local", "cluster.local"]
    cfg = convert.container_config(p, c, 3, [("GREETING", "hi")], [])
    assert (list(cfg.command), list(cfg.args)) == (["sh"], ["-c", "echo hi"])
    assert cfg.labels["io.kubernetes.container.name"] == "app"
    assert cfg.security_context.run_as_user == 1000 and cfg.security_context.readonly_rootfs
    assert list(cfg.security_context.capabilities.add_capabilities) == ["NET_ADMIN"]
    p.spec.dns_policy = "Default"
    assert not convert.sandbox_config(p, 0, cluster_dns=("10.96.0.10",)).HasField("dns_config")


def test_default_dns_policy_gives_the_nodes_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# the node's\nnameserver 172.30.1.21\nnameserver 172.30.1.1\ndomain a.example\n"
                    "search corp.example lab.example\noptions ndots:1 timeout:2\n")
    host = convert.read_resolv_conf(str(conf))
    assert host is not None and list(host.servers) == ["172.30.1.21", "172.30.1.1"]
    assert list(host.searches) == ["corp.example", "lab.example"] and list(host.options) == ["ndots:1", "timeout:2"]
    p = pod(core.Container(name="app", image="img:1"))
    p.spec.dns_policy = "Default"
    sb = convert.sandbox_config(p, 0, cluster_dns=("10.96.0.10",), host_dns=host)
    assert list(sb.dns_config.servers) == ["172.30.1.21", "172.30.1.1"]
    # ClusterFirst on a node without --cluster-dns falls back to the node's, as in Kubernetes.
    p.spec.dns_policy = "ClusterFirst"
    assert list(convert.sandbox_config(p, 0, host_dns=host).dns_config.servers) == ["172.30.1.21", "172.30.1.1"]
    assert convert.read_resolv_conf(str(tmp_path / "missing")) is None


def _now() -> Timestamp:
    t = Timestamp()
    t.seconds = 1_000
    return t


def _c(name: str, state: int, exit_code: int = 0, attempt: int = 0, sandbox: str = "sb",
       reason: str = "") -> rt.ContainerStatus:
    return rt.ContainerStatus(id=f"{name}-{attempt}", metadata=rt.ContainerMetadata(name=name, attempt=attempt),
                              state=state, exit_code=exit_code, pod_sandbox_id=sandbox, started_at=5 * 10**9,
                              finished_at=9 * 10**9 if state == rt.CONTAINER_EXITED else 0, reason=reason,
                              image_ref="sha256:abc")


def _state(*containers: rt.ContainerStatus) -> PodRuntimeState:
    st = PodRuntimeState(sandboxes=[rt.PodSandboxStatus(id="sb", state=rt.SANDBOX_READY,
                                                        network=rt.PodSandboxNetworkStatus(ip="10.1.0.5"))])
    for c in containers:
        st.containers.setdefault(c.metadata.name, []).append(c)
    return st


def _status(p: core.Pod, state: PodRuntimeState, waiting: dict[str, Waiting] | None = None,
            readiness: dict[str, bool] | None = None) -> core.PodStatus:
    return pod_status(p, state, waiting=waiting or {}, readiness=readiness or {}, messages={},
                      runtime_name="docker", host_ip="192.0.2.1", now=_now())


def test_status_phases() -> None:
    app = core.Container(name="app", image="img")
    running = _status(pod(app), _state(_c("app", rt.CONTAINER_RUNNING)))
    assert running.phase == "Running" and running.pod_ip == "10.1.0.5"
    assert {c.type: c.status for c in running.conditions} == {
        "PodScheduled": "True", "Initialized": "True", "ContainersReady": "True", "Ready": "True"}
    assert running.container_statuses[0].container_id == "docker://app-0"
    assert _status(pod(app), _state()).phase == "Pending"
    done = _status(pod(app, restart_policy="Never"), _state(_c("app", rt.CONTAINER_EXITED, 0)))
    assert done.phase == "Succeeded"
    assert done.container_statuses[0].state.terminated.reason == "Completed"
    failed = _status(pod(app, restart_policy="Never"), _state(_c("app", rt.CONTAINER_EXITED, 2, reason="Error")))
    assert failed.phase == "Failed"
    oom = _status(pod(app, restart_policy="Never"), _state(_c("app", rt.CONTAINER_EXITED, 137, reason="OOMKilled")))
    assert oom.container_statuses[0].state.terminated.reason == "OOMKilled"
    assert oom.container_statuses[0].state.terminated.signal == 9
    # Crash-looping under Always: Running, waiting CrashLoopBackOff, the crash as lastState.
    looping = _status(pod(app), _state(_c("app", rt.CONTAINER_EXITED, 1, attempt=4)),
                      waiting={"app": Waiting("CrashLoopBackOff", "back-off 40s")})
    cs = looping.container_statuses[0]
    assert looping.phase == "Running"
    assert (cs.state.waiting.reason, cs.restart_count, cs.last_state.terminated.exit_code) == (
        "CrashLoopBackOff", 4, 1)
    assert {c.type: c.reason for c in looping.conditions}["Ready"] == "ContainersNotReady"


def test_status_init_containers_and_readiness_and_transition_times() -> None:
    init = core.Container(name="init", image="img")
    app = core.Container(name="app", image="img")
    p = pod(app)
    p.spec.init_containers.append(init)
    pending = _status(p, _state(_c("init", rt.CONTAINER_RUNNING)))
    assert pending.phase == "Pending"
    assert pending.container_statuses[0].state.waiting.reason == "PodInitializing"
    assert {c.type: c.reason for c in pending.conditions}["Initialized"] == "ContainersNotInitialized"
    ready = _status(p, _state(_c("init", rt.CONTAINER_EXITED, 0), _c("app", rt.CONTAINER_RUNNING)),
                    readiness={"app": False})
    assert ready.phase == "Running"
    conds = {c.type: c for c in ready.conditions}
    assert conds["Ready"].status == "False" and "app" in conds["Ready"].message
    # A condition keeps its transition time while its status stays.
    p.status.CopyFrom(ready)
    p.status.conditions[1].last_transition_time.seconds = 500
    again = _status(p, _state(_c("init", rt.CONTAINER_EXITED, 0), _c("app", rt.CONTAINER_RUNNING)),
                    readiness={"app": False})
    assert {c.type: c for c in again.conditions}["Initialized"].last_transition_time.seconds == 500


def test_configmap_volume_is_written_atomically_and_updates(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    assert volumes.write_atomic(target, {"color": (b"blue", 0o644), "sub/x": (b"1", 0o600)})
    assert (target / "color").read_text() == "blue"
    assert (target / "..data").is_symlink()
    assert not volumes.write_atomic(target, {"color": (b"blue", 0o644), "sub/x": (b"1", 0o600)})
    assert volumes.write_atomic(target, {"color": (b"green", 0o644)})
    assert (target / "color").read_text() == "green"
    assert not (target / "sub").exists()
    assert len([p for p in target.iterdir() if p.name.startswith("..") and p.is_dir()
                and not p.is_symlink()]) == 1


def test_volume_mount_naming_no_volume_is_an_error(tmp_path: Path) -> None:
    c = core.Container(name="app", volume_mounts=[core.VolumeMount(name="ghost", mount_path="/x")])
    with pytest.raises(volumes.VolumeError, match="ghost"):
        volumes.container_mounts(pod(c), c, {})


def test_flags_are_validated_with_the_flag_named() -> None:
    with pytest.raises(ConfigError, match="--pod-cidr"):
        KubeletConfig(node_name="n1", pod_cidr="10.0.0.0/33")
    with pytest.raises(ConfigError, match="--node-ip"):
        KubeletConfig(node_name="n1", node_ip="not-an-ip")
    with pytest.raises(ConfigError, match="--hostname-override"):
        KubeletConfig(node_name="UPPER")
    with pytest.raises(ConfigError, match="--register-with-taints"):
        parse_taints("key=value:Sometimes")
    assert [(t.key, t.value, t.effect) for t in parse_taints("a=b:NoSchedule,c:NoExecute")] == [
        ("a", "b", "NoSchedule"), ("c", "", "NoExecute")]
    with pytest.raises(ConfigError, match="--node-labels"):
        parse_key_values("--node-labels", "novalue")


def test_restart_back_off_doubles_from_10s_to_5min_and_resets_after_a_long_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from kubelite.kubelet import pods as podsmod

    clock = [1_000.0]
    monkeypatch.setattr(podsmod.time, "time", lambda: clock[0])
    syncer = podsmod.PodSyncer.__new__(podsmod.PodSyncer)
    notes = podsmod.PodNotes()

    def crash(after_running: float = 1.0) -> float:
        """The container ran for a while and crashed now; how long until the restart?"""
        status = rt.ContainerStatus(started_at=int((clock[0] - after_running) * 1e9), finished_at=int(clock[0] * 1e9))
        return syncer._backoff_left(notes, "app", status)

    waits = []
    for _ in range(8):
        waits.append(crash())
        clock[0] += waits[-1] + 1
    assert waits == [0.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]
    # Asking again about the same crash part-way through the window: the rest of it.
    clock[0] += 1
    status = rt.ContainerStatus(started_at=int((clock[0] - 1) * 1e9), finished_at=int(clock[0] * 1e9))
    assert syncer._backoff_left(notes, "app", status) == 300.0
    clock[0] += 100
    assert syncer._backoff_left(notes, "app", status) == 200.0
    # Ten minutes of running start the sequence over.
    clock[0] += 1_000
    assert crash(after_running=601) == 0.0
    clock[0] += 1
    assert crash() == 10.0
