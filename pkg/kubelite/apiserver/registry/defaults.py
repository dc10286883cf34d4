"""Kubernetes' defaulting, per kind, as plain functions over the messages.

A manifest copied from the Kubernetes documentation omits most fields and
relies on the API server to fill them (restartPolicy Always, protocol TCP,
imagePullPolicy from the image tag, ...). Clients, controllers and the
kubelet then read those fields without second-guessing, so every default is
applied here, once, on create and on update (defaulting is idempotent: a
field already set is never touched).

A PodSpec gets the same spec defaults wherever it appears (a Pod, or a
Deployment's or ReplicaSet's template); the pod-only defaults that Kubernetes
applies through admission plugins (ServiceAccount, DefaultTolerationSeconds,
Priority) and through ``SetDefaults_Pod`` (requests from limits) are applied
to Pods only, as in Kubernetes.
"""

from __future__ import annotations

from kubelite.api.apps.v1 import generated_pb2 as apps_v1
from kubelite.api.core.v1 import generated_pb2 as core_v1

DEFAULT_TERMINATION_GRACE_PERIOD = 30
DEFAULT_SCHEDULER_NAME = "default-scheduler"
# Files projected from secrets / config maps are rw-r--r-- unless asked otherwise.
DEFAULT_VOLUME_MODE = 0o644
DEFAULT_SESSION_AFFINITY_TIMEOUT = 10800


# --------------------------------------------------------------------------------------------
# Pods
# --------------------------------------------------------------------------------------------


def image_tag(image: str) -> str:
    """The tag of an image reference ("" when it has only a digest or no tag at all)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]  # a registry host may carry ":port"
    return last.split(":", 1)[1] if ":" in last else ""


def default_pull_policy(image: str) -> str:
    # No tag and no digest means :latest, which moves: always pull it. Anything pinned is pulled once.
    if "@" in image:
        return "IfNotPresent"
    tag = image_tag(image)
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _default_http_get(get: core_v1.HTTPGetAction) -> None:
    if not get.path:
        get.path = "/"
    if not get.scheme:
        get.scheme = "HTTP"


def _default_probe(probe: core_v1.Probe) -> None:
    if probe.timeout_seconds == 0:
        probe.timeout_seconds = 1
    if probe.period_seconds == 0:
        probe.period_seconds = 10
    if probe.success_threshold == 0:
        probe.success_threshold = 1
    if probe.failure_threshold == 0:
        probe.failure_threshold = 3
    if probe.HasField("http_get"):
        _default_http_get(probe.http_get)


def default_container(c: core_v1.Container, host_network: bool) -> None:
    if not c.image_pull_policy:
        c.image_pull_policy = default_pull_policy(c.image)
    if not c.termination_message_path:
        c.termination_message_path = "/dev/termination-log"
    if not c.termination_message_policy:
        c.termination_message_policy = "File"
    for port in c.ports:
        if not port.protocol:
            port.protocol = "TCP"
        if host_network and port.host_port == 0:
            # With the host's network namespace the container port *is* the host port.
            port.host_port = port.container_port
    for env in c.env:
        if env.HasField("value_from") and env.value_from.HasField("field_ref") \
                and not env.value_from.field_ref.api_version:
            env.value_from.field_ref.api_version = "v1"
    for probe in ("liveness_probe", "readiness_probe", "startup_probe"):
        if c.HasField(probe):
            _default_probe(getattr(c, probe))
    if c.HasField("lifecycle"):
        for handler in (c.lifecycle.post_start, c.lifecycle.pre_stop):
            if handler.HasField("http_get"):
                _default_http_get(handler.http_get)


def _default_volume(v: core_v1.Volume) -> None:
    sources = ("host_path", "empty_dir", "secret", "nfs", "persistent_volume_claim", "downward_api", "config_map",
               "projected")
    if not any(v.HasField(s) for s in sources):
        # A volume with no source is scratch space, as in Kubernetes.
        v.empty_dir.SetInParent()
    for field in ("secret", "config_map", "downward_api", "projected"):
        src = getattr(v, field)
        if v.HasField(field) and not src.HasField("default_mode"):
            src.default_mode = DEFAULT_VOLUME_MODE


def default_pod_spec(spec: core_v1.PodSpec) -> None:
    """Defaults of a PodSpec wherever it appears (Pods and pod templates)."""
    if not spec.restart_policy:
        spec.restart_policy = "Always"
    if not spec.dns_policy:
        spec.dns_policy = "ClusterFirst"
    if not spec.HasField("termination_grace_period_seconds"):
        spec.termination_grace_period_seconds = DEFAULT_TERMINATION_GRACE_PERIOD
    if not spec.scheduler_name:
        spec.scheduler_name = DEFAULT_SCHEDULER_NAME
    spec.security_context.SetInParent()
    if not spec.HasField("enable_service_links"):
        spec.enable_service_links = True
    # serviceAccount is the deprecated spelling; keep both in step.
    if not spec.service_account_name and spec.service_account:
        spec.service_account_name = spec.service_account
    for c in (*spec.init_containers, *spec.containers):
        default_container(c, spec.host_network)
    for v in spec.volumes:
        _default_volume(v)


def default_pod(pod: core_v1.Pod) -> None:
    spec = pod.spec
    default_pod_spec(spec)
    if not spec.service_account_name:
        spec.service_account_name = "default"
    if not spec.service_account:
        spec.service_account = spec.service_account_name
    if not spec.HasField("priority"):
        spec.priority = 0
    for c in (*spec.init_containers, *spec.containers):
        # A limit without a request means "request exactly that".
        for name, value in c.resources.limits.items():
            if name not in c.resources.requests:
                c.resources.requests[name] = value
    # The not-ready/unreachable tolerations are not defaulted here: the DefaultTolerationSeconds admission
    # plugin adds them with the server's --default-*-toleration-seconds. Defaulting runs first, so a fixed
    # 300 s here would hide the flags from it (pods always got 300 s whatever the operator set).


# --------------------------------------------------------------------------------------------
# Services
# --------------------------------------------------------------------------------------------


def default_service(svc: core_v1.Service) -> None:
    spec = svc.spec
    if not spec.type:
        spec.type = "ClusterIP"
    if not spec.session_affinity:
        spec.session_affinity = "None"
    if spec.session_affinity == "ClientIP" and not spec.session_affinity_config.client_ip.HasField("timeout_seconds"):
        spec.session_affinity_config.client_ip.timeout_seconds = DEFAULT_SESSION_AFFINITY_TIMEOUT
    for port in spec.ports:
        if not port.protocol:
            port.protocol = "TCP"
        if not port.target_port or port.target_port == "0":
            port.target_port = str(port.port)
    # clusterIP and clusterIPs are two views of the same allocation.
    if spec.cluster_ip and not spec.cluster_ips:
        spec.cluster_ips.append(spec.cluster_ip)
    elif spec.cluster_ips and not spec.cluster_ip:
        spec.cluster_ip = spec.cluster_ips[0]
    if spec.type == "ExternalName":
        return
    if not spec.HasField("internal_traffic_policy"):
        spec.internal_traffic_policy = "Cluster"
    if spec.type in ("NodePort", "LoadBalancer") and not spec.external_traffic_policy:
        spec.external_traffic_policy = "Cluster"
    if spec.type == "LoadBalancer" and not spec.HasField("allocate_load_balancer_node_ports"):
        spec.allocate_load_balancer_node_ports = True
    if not spec.ip_families:
        spec.ip_families.append("IPv4")
    if not spec.HasField("ip_family_policy"):
        spec.ip_family_policy = "SingleStack"


# --------------------------------------------------------------------------------------------
# apps/v1
# --------------------------------------------------------------------------------------------


def default_replicaset(rs: apps_v1.ReplicaSet) -> None:
    if not rs.spec.HasField("replicas"):
        rs.spec.replicas = 1
    default_pod_spec(rs.spec.template.spec)


def default_deployment(d: apps_v1.Deployment) -> None:
    spec = d.spec
    if not spec.HasField("replicas"):
        spec.replicas = 1
    if not spec.strategy.type:
        spec.strategy.type = "RollingUpdate"
    if spec.strategy.type == "RollingUpdate":
        if not spec.strategy.rolling_update.max_unavailable:
            spec.strategy.rolling_update.max_unavailable = "25%"
        if not spec.strategy.rolling_update.max_surge:
            spec.strategy.rolling_update.max_surge = "25%"
    if not spec.HasField("revision_history_limit"):
        spec.revision_history_limit = 10
    if not spec.HasField("progress_deadline_seconds"):
        spec.progress_deadline_seconds = 600
    default_pod_spec(spec.template.spec)


# --------------------------------------------------------------------------------------------
# Others
# --------------------------------------------------------------------------------------------


def default_node(node: core_v1.Node) -> None:
    # A node that reports only capacity can give all of it to pods.
    if not node.status.allocatable:
        for name, value in node.status.capacity.items():
            node.status.allocatable[name] = value


def default_endpoints(ep: core_v1.Endpoints) -> None:
    for subset in ep.subsets:
        for port in subset.ports:
            if not port.protocol:
                port.protocol = "TCP"


def default_secret(secret: core_v1.Secret) -> None:
    if not secret.type:
        secret.type = "Opaque"
