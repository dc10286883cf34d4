"""Pod status from what the runtime reports: phase, conditions, container statuses.

A pure function of (pod as the API has it, runtime state, the kubelet's
notes on why a container is waiting, probe results, now), so that every rule
Kubernetes users rely on (when a pod is Running, Succeeded, Failed; which
reason a waiting container shows; when a condition's transition time moves)
is tested without Docker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.runtime.v1 import api_pb2 as rt

TERMINAL_PHASES = ("Succeeded", "Failed")


@dataclass
class PodRuntimeState:
    """What the runtime holds for one pod uid, newest first."""

    sandboxes: list[rt.PodSandboxStatus] = field(default_factory=list)
    # container name -> its instances, newest attempt first
    containers: dict[str, list[rt.ContainerStatus]] = field(default_factory=dict)

    @property
    def sandbox(self) -> rt.PodSandboxStatus | None:
        """The newest sandbox, when it is ready."""
        if self.sandboxes and self.sandboxes[0].state == rt.SANDBOX_READY:
            return self.sandboxes[0]
        return None

    def current(self, name: str) -> rt.ContainerStatus | None:
        """The newest instance of ``name`` inside the current sandbox."""
        sb = self.sandbox
        for c in self.containers.get(name, []):
            if sb is not None and c.pod_sandbox_id == sb.id:
                return c
            return None
        return None

    def latest(self, name: str) -> rt.ContainerStatus | None:
        items = self.containers.get(name, [])
        return items[0] if items else None

    def previous(self, name: str) -> rt.ContainerStatus | None:
        items = self.containers.get(name, [])
        return items[1] if len(items) > 1 else None

    def next_attempt(self, name: str) -> int:
        latest = self.latest(name)
        return latest.metadata.attempt + 1 if latest is not None else 0

    def running(self) -> list[rt.ContainerStatus]:
        return [c for items in self.containers.values() for c in items if c.state == rt.CONTAINER_RUNNING]


def ts(ns: int) -> Timestamp:
    t = Timestamp()
    if ns:
        t.seconds = ns // 1_000_000_000
        t.nanos = 0  # Kubernetes reports container times to the second
    return t


def _terminated(c: rt.ContainerStatus, runtime_name: str, message: str = "") -> core.ContainerStateTerminated:
    return core.ContainerStateTerminated(
        exit_code=c.exit_code, reason=c.reason or ("Completed" if c.exit_code == 0 else "Error"),
        message=message or c.message, started_at=ts(c.started_at), finished_at=ts(c.finished_at),
        container_id=f"{runtime_name}://{c.id}",
        signal=(c.exit_code - 128) if c.exit_code > 128 and c.exit_code < 160 else 0)


@dataclass(frozen=True)
class Waiting:
    reason: str
    message: str = ""


def container_status(spec: core.Container, state: PodRuntimeState, waiting: Waiting | None, ready: bool,
                     runtime_name: str, messages: Mapping[str, str], default_waiting: str) -> core.ContainerStatus:
    cur = state.current(spec.name)
    latest = state.latest(spec.name)
    out = core.ContainerStatus(name=spec.name, image=spec.image)
    out.restart_count = latest.metadata.attempt if latest is not None else 0
    if latest is not None:
        out.image_id = f"{runtime_name}://{latest.image_ref}" if latest.image_ref else ""
    started = False
    if waiting is None and cur is not None and cur.state == rt.CONTAINER_RUNNING:
        out.state.running.started_at.CopyFrom(ts(cur.started_at))
        out.container_id = f"{runtime_name}://{cur.id}"
        out.ready = ready
        started = True
        prev = state.previous(spec.name)
        if prev is not None and prev.state == rt.CONTAINER_EXITED:
            out.last_state.terminated.CopyFrom(_terminated(prev, runtime_name, messages.get(prev.id, "")))
    elif waiting is None and cur is not None and cur.state == rt.CONTAINER_EXITED:
        out.state.terminated.CopyFrom(_terminated(cur, runtime_name, messages.get(cur.id, "")))
        out.container_id = f"{runtime_name}://{cur.id}"
        prev = state.previous(spec.name)
        if prev is not None and prev.state == rt.CONTAINER_EXITED:
            out.last_state.terminated.CopyFrom(_terminated(prev, runtime_name, messages.get(prev.id, "")))
    else:
        w = waiting or Waiting(default_waiting)
        out.state.waiting.reason = w.reason
        out.state.waiting.message = w.message
        if latest is not None and latest.state == rt.CONTAINER_EXITED:
            out.last_state.terminated.CopyFrom(_terminated(latest, runtime_name, messages.get(latest.id, "")))
            out.container_id = f"{runtime_name}://{latest.id}"
    out.started = started
    return out


def _phase(pod: core.Pod, init: list[core.ContainerStatus], app: list[core.ContainerStatus]) -> str:
    policy = pod.spec.restart_policy or "Always"
    for s in init:
        if s.state.HasField("terminated") and s.state.terminated.exit_code == 0:
            continue
        if policy == "Never" and s.state.HasField("terminated"):
            return "Failed"
        return "Pending"
    running = waiting = stopped = succeeded = failed = 0
    for s in app:
        if s.state.HasField("running"):
            running += 1
        elif s.state.HasField("terminated"):
            stopped += 1
            if s.state.terminated.exit_code == 0:
                succeeded += 1
            else:
                failed += 1
        elif s.last_state.HasField("terminated"):
            # Waiting to be restarted: it ran before, so the pod is not Pending any more.
            stopped += 1
            if s.last_state.terminated.exit_code == 0:
                succeeded += 1
            else:
                failed += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if policy == "Always":
            return "Running"
        if policy == "OnFailure":
            return "Running" if failed else "Succeeded"
        return "Failed" if failed else "Succeeded"
    return "Pending"


def _condition(old: core.PodStatus, type_: str, status: bool, reason: str, message: str,
               now: Timestamp) -> core.PodCondition:
    value = "True" if status else "False"
    cond = core.PodCondition(type=type_, status=value, reason=reason if not status else "",
                             message=message if not status else "")
    prior = next((c for c in old.conditions if c.type == type_), None)
    if prior is not None and prior.status == value:
        cond.last_transition_time.CopyFrom(prior.last_transition_time)
    else:
        cond.last_transition_time.CopyFrom(now)
    return cond


def pod_status(pod: core.Pod, state: PodRuntimeState, *, waiting: Mapping[str, Waiting],
               readiness: Mapping[str, bool], messages: Mapping[str, str], runtime_name: str, host_ip: str,
               now: Timestamp) -> core.PodStatus:
    old = pod.status
    st = core.PodStatus(qos_class=old.qos_class, nominated_node_name=old.nominated_node_name)
    if old.HasField("start_time"):
        st.start_time.CopyFrom(old.start_time)
    else:
        st.start_time.CopyFrom(now)
    if host_ip:
        st.host_ip = host_ip
        st.host_ips.append(core.HostIP(ip=host_ip))
    sb = state.sandbox
    if sb is not None:
        ip = host_ip if sb.host_network or pod.spec.host_network else sb.network.ip
        if ip:
            st.pod_ip = ip
            st.pod_ips.append(core.PodIP(ip=ip))
    init_done = True
    for c in pod.spec.init_containers:
        cs = container_status(c, state, waiting.get(c.name), False, runtime_name, messages,
                              "PodInitializing")
        if not (cs.state.HasField("terminated") and cs.state.terminated.exit_code == 0):
            init_done = False
        st.init_container_statuses.append(cs)
    for c in pod.spec.containers:
        st.container_statuses.append(container_status(
            c, state, waiting.get(c.name), readiness.get(c.name, True), runtime_name, messages,
            "ContainerCreating" if init_done else "PodInitializing"))
    st.phase = _phase(pod, list(st.init_container_statuses), list(st.container_statuses))
    # A terminal phase stays terminal (the API refuses a way back).
    if old.phase in TERMINAL_PHASES:
        st.phase = old.phase
        st.reason, st.message = old.reason, old.message
    incomplete = [s.name for s in st.init_container_statuses
                  if not (s.state.HasField("terminated") and s.state.terminated.exit_code == 0)]
    unready = [s.name for s in st.container_statuses if not s.ready]
    scheduled = next((c for c in old.conditions if c.type == "PodScheduled"), None)
    if scheduled is not None:
        st.conditions.append(scheduled)
    else:
        st.conditions.append(_condition(old, "PodScheduled", True, "", "", now))
    succeeded = st.phase == "Succeeded"
    st.conditions.append(_condition(old, "Initialized", not incomplete or succeeded, "ContainersNotInitialized",
                                    f"containers with incomplete status: [{' '.join(incomplete)}]", now))
    ready_reason = "PodCompleted" if st.phase in TERMINAL_PHASES else "ContainersNotReady"
    msg = f"containers with unready status: [{' '.join(unready)}]"
    st.conditions.append(_condition(old, "ContainersReady", not unready, ready_reason, msg, now))
    st.conditions.append(_condition(old, "Ready", not unready, ready_reason, msg, now))
    return st


def rejected_status(pod: core.Pod, reason: str, message: str) -> core.PodStatus:
    """What the kubelet's admission writes for a pod it will not run."""
    st = core.PodStatus(phase="Failed", reason=reason, message=message, qos_class=pod.status.qos_class)
    st.conditions.extend(c for c in pod.status.conditions if c.type == "PodScheduled")
    return st


def same_status(a: core.PodStatus, b: core.PodStatus) -> bool:
    return a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)
