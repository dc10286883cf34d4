"""The built-in kinds: Kubernetes JSON shape of the messages, field options, scheme lookups."""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor
from google.protobuf.message import Message

from kubelite.api.apps.v1 import generated_pb2 as apps_v1
from kubelite.api.coordination.v1 import generated_pb2 as coordination_v1
from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.api.meta.v1 import generated_pb2 as meta_v1
from kubelite.machinery import kinds
from kubelite.machinery.kinds import SCHEME
from kubelite.machinery.scheme import UnknownKindError
from tests.support.manifests import NGINX_DEPLOYMENT

FILES: list[FileDescriptor] = [core_v1.DESCRIPTOR, apps_v1.DESCRIPTOR, coordination_v1.DESCRIPTOR]


def _messages() -> Iterator[Descriptor]:
    for f in FILES:
        yield from f.message_types_by_name.values()


def _fields() -> Iterator[tuple[Descriptor, FieldDescriptor]]:
    for m in _messages():
        for fd in m.fields:
            yield m, fd


def _parse(message: type[Message], obj: dict[str, Any]) -> Any:
    return json_format.ParseDict(obj, message())


def _dump(msg: Message) -> dict[str, Any]:
    return json_format.MessageToDict(msg)


# --- shape of every kind ---------------------------------------------------------------------


@pytest.mark.parametrize("rt", list(SCHEME), ids=lambda rt: rt.group_resource)
def test_kind_header_fields(rt: Any) -> None:
    fields = rt.message.DESCRIPTOR.fields_by_number
    assert (fields[1].name, fields[1].json_name) == ("api_version", "apiVersion")
    assert (fields[2].name, fields[2].json_name) == ("kind", "kind")
    assert fields[3].name == "metadata"
    assert fields[3].message_type is meta_v1.ObjectMeta.DESCRIPTOR


@pytest.mark.parametrize("rt", list(SCHEME), ids=lambda rt: rt.group_resource)
def test_kind_round_trips_through_json(rt: Any) -> None:
    obj = rt.new()
    obj.metadata.name = "x"
    obj.metadata.namespace = "default" if rt.namespaced else ""
    obj.metadata.labels["app"] = "web"
    data = _dump(obj)
    assert data["apiVersion"] == rt.api_version
    assert data["kind"] == rt.kind
    assert data["metadata"]["name"] == "x"
    back = _parse(rt.message, data)
    assert back == obj


def test_has_status_matches_the_message() -> None:
    for rt in SCHEME:
        assert ("status" in rt.message.DESCRIPTOR.fields_by_name) == rt.has_status, rt.kind


def test_no_acronym_left_in_lower_camel() -> None:
    # protoc's default JSON name turns pod_ip into "podIp"; Kubernetes writes "podIP".
    suspicious = re.compile(r"(Ip|Ips|Cidr|Cidrs|Id|Uuid|Api|Ipc|Pid|Fqdn|Url|Dns)(?=[A-Z]|$)")
    bad = [f"{m.name}.{fd.name} -> {fd.json_name}" for m, fd in _fields() if suspicious.search(fd.json_name)]
    assert bad == []


def test_no_field_is_a_python_keyword() -> None:
    assert [f"{m.name}.{fd.name}" for m, fd in _fields() if keyword.iskeyword(fd.name)] == []


def test_string_enums_are_strings() -> None:
    for f in FILES:
        assert list(f.enum_types_by_name) == [], f.name


@pytest.mark.parametrize(
    ("message", "field", "json_name"),
    [
        (core_v1.PodStatus, "pod_ip", "podIP"),
        (core_v1.PodStatus, "pod_ips", "podIPs"),
        (core_v1.PodStatus, "host_ip", "hostIP"),
        (core_v1.PodStatus, "host_ips", "hostIPs"),
        (core_v1.PodStatus, "qos_class", "qosClass"),
        (core_v1.PodSpec, "host_pid", "hostPID"),
        (core_v1.PodSpec, "host_ipc", "hostIPC"),
        (core_v1.PodSpec, "set_hostname_as_fqdn", "setHostnameAsFQDN"),
        (core_v1.PodSpec, "service_account", "serviceAccount"),
        (core_v1.PodSpec, "automount_service_account_token", "automountServiceAccountToken"),
        (core_v1.PodSpec, "topology_spread_constraints", "topologySpreadConstraints"),
        (core_v1.ContainerPort, "host_ip", "hostIP"),
        (core_v1.ContainerStatus, "container_id", "containerID"),
        (core_v1.ContainerStatus, "image_id", "imageID"),
        (core_v1.ContainerStateTerminated, "container_id", "containerID"),
        (core_v1.Volume, "downward_api", "downwardAPI"),
        (core_v1.VolumeProjection, "downward_api", "downwardAPI"),
        (core_v1.ServiceSpec, "cluster_ip", "clusterIP"),
        (core_v1.ServiceSpec, "cluster_ips", "clusterIPs"),
        (core_v1.ServiceSpec, "external_ips", "externalIPs"),
        (core_v1.ServiceSpec, "load_balancer_ip", "loadBalancerIP"),
        (core_v1.ServiceSpec, "ip_families", "ipFamilies"),
        (core_v1.ServiceSpec, "ip_family_policy", "ipFamilyPolicy"),
        (core_v1.ServiceSpec, "external_traffic_policy", "externalTrafficPolicy"),
        (core_v1.ServiceSpec, "publish_not_ready_addresses", "publishNotReadyAddresses"),
        (core_v1.SessionAffinityConfig, "client_ip", "clientIP"),
        (core_v1.NodeSpec, "pod_cidr", "podCIDR"),
        (core_v1.NodeSpec, "pod_cidrs", "podCIDRs"),
        (core_v1.NodeSpec, "provider_id", "providerID"),
        (core_v1.NodeSystemInfo, "machine_id", "machineID"),
        (core_v1.NodeSystemInfo, "system_uuid", "systemUUID"),
        (core_v1.NodeSystemInfo, "boot_id", "bootID"),
        (core_v1.NodeSystemInfo, "kubelet_version", "kubeletVersion"),
        (core_v1.NodeSystemInfo, "container_runtime_version", "containerRuntimeVersion"),
        (core_v1.NodeDaemonEndpoints, "kubelet_endpoint", "kubeletEndpoint"),
        (core_v1.DaemonEndpoint, "port", "Port"),
        (core_v1.Probe, "http_get", "httpGet"),
        (core_v1.Probe, "tcp_socket", "tcpSocket"),
        (core_v1.SecurityContext, "read_only_root_filesystem", "readOnlyRootFilesystem"),
        (core_v1.SecurityContext, "allow_privilege_escalation", "allowPrivilegeEscalation"),
        (core_v1.EnvVarSource, "config_map_key_ref", "configMapKeyRef"),
        (core_v1.EnvVarSource, "secret_key_ref", "secretKeyRef"),
        (core_v1.ConfigMap, "binary_data", "binaryData"),
        (core_v1.Secret, "string_data", "stringData"),
        (core_v1.Event, "involved_object", "involvedObject"),
        (coordination_v1.LeaseSpec, "holder_identity", "holderIdentity"),
    ],
)
def test_json_names(message: type[Message], field: str, json_name: str) -> None:
    assert message.DESCRIPTOR.fields_by_name[field].json_name == json_name


def test_pod_status_writes_kubernetes_names() -> None:
    pod = core_v1.Pod(
        status=core_v1.PodStatus(
            phase="Running",
            pod_ip="10.244.1.5",
            pod_ips=[core_v1.PodIP(ip="10.244.1.5")],
            host_ip="172.18.0.2",
            container_statuses=[core_v1.ContainerStatus(name="web", container_id="docker://abc", ready=True)],
        )
    )
    assert _dump(pod) == {
        "status": {
            "phase": "Running",
            "podIP": "10.244.1.5",
            "podIPs": [{"ip": "10.244.1.5"}],
            "hostIP": "172.18.0.2",
            "containerStatuses": [{"name": "web", "containerID": "docker://abc", "ready": True}],
        }
    }


def test_node_daemon_endpoint_port_has_a_capital_p() -> None:
    node = _parse(core_v1.Node, {"status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}})
    assert node.status.daemon_endpoints.kubelet_endpoint.port == 10250
    assert _dump(node) == {"status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}}


# --- manifests from the Kubernetes documentation ---------------------------------------------


MY_SERVICE = """
apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  type: NodePort
  selector:
    app.kubernetes.io/name: MyApp
  ports:
    - name: http
      protocol: TCP
      port: 80
      targetPort: 9376
      nodePort: 30007
    - name: web
      port: 8080
      targetPort: http-web-svc
"""

# A pod that touches most of the spec: probes, env sources, resources, volumes, affinity.
BUSY_POD = """
apiVersion: v1
kind: Pod
metadata:
  name: busy
  namespace: default
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 30
  serviceAccountName: builder
  automountServiceAccountToken: false
  enableServiceLinks: false
  hostNetwork: false
  hostPID: false
  nodeSelector:
    disktype: ssd
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
    fsGroup: 2000
    supplementalGroups: [4000]
  imagePullSecrets:
  - name: regcred
  tolerations:
  - key: example-key
    operator: Exists
    effect: NoSchedule
    tolerationSeconds: 3600
  topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: zone
    whenUnsatisfiable: DoNotSchedule
    labelSelector:
      matchLabels:
        app: busy
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions:
          - key: topology.kubernetes.io/zone
            operator: In
            values: [antarctica-east1]
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 1
        preference:
          matchExpressions:
          - key: another-node-label-key
            operator: In
            values: [another-node-label-value]
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          labelSelector:
            matchExpressions:
            - key: security
              operator: In
              values: [S2]
          topologyKey: topology.kubernetes.io/zone
  hostAliases:
  - ip: 127.0.0.1
    hostnames: [foo.local, bar.local]
  dnsConfig:
    nameservers: [192.0.2.1]
    options:
    - name: ndots
      value: "2"
    - name: edns0
  initContainers:
  - name: init-myservice
    image: busybox:1.28
    command: ['sh', '-c', "until nslookup myservice; do sleep 2; done"]
  containers:
  - name: app
    image: registry.k8s.io/busybox
    imagePullPolicy: IfNotPresent
    args: [/bin/sh, -c, touch /tmp/healthy; sleep 600]
    workingDir: /work
    env:
    - name: DEMO_GREETING
      value: "Hello from the environment"
    - name: MY_NODE_NAME
      valueFrom:
        fieldRef:
          fieldPath: spec.nodeName
    - name: MY_CPU_LIMIT
      valueFrom:
        resourceFieldRef:
          containerName: app
          resource: limits.cpu
    - name: SPECIAL_LEVEL_KEY
      valueFrom:
        configMapKeyRef:
          name: special-config
          key: special.how
    - name: SECRET_USERNAME
      valueFrom:
        secretKeyRef:
          name: backend-user
          key: backend-username
          optional: true
    envFrom:
    - configMapRef:
        name: special-config
    resources:
      requests:
        memory: "64Mi"
        cpu: "250m"
      limits:
        memory: "128Mi"
        cpu: "500m"
    volumeMounts:
    - name: cache-volume
      mountPath: /cache
    - name: config
      mountPath: /etc/config
      readOnly: true
    livenessProbe:
      exec:
        command: [cat, /tmp/healthy]
      initialDelaySeconds: 5
      periodSeconds: 5
    readinessProbe:
      httpGet:
        path: /healthz
        port: "8080"
        httpHeaders:
        - name: Custom-Header
          value: Awesome
    startupProbe:
      tcpSocket:
        port: "8080"
      failureThreshold: 30
      periodSeconds: 10
    lifecycle:
      postStart:
        exec:
          command: ["/bin/sh", "-c", "echo Hello > /usr/share/message"]
      preStop:
        exec:
          command: ["/bin/sh", "-c", "nginx -s quit"]
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities:
        add: ["NET_ADMIN"]
  volumes:
  - name: cache-volume
    emptyDir:
      sizeLimit: 500Mi
  - name: config
    configMap:
      name: log-config
      items:
      - key: log_level
        path: log_level.conf
  - name: host
    hostPath:
      path: /data
      type: Directory
  - name: creds
    secret:
      secretName: mysecret
      defaultMode: 0400
  - name: podinfo
    downwardAPI:
      items:
      - path: labels
        fieldRef:
          fieldPath: metadata.labels
  - name: all-in-one
    projected:
      sources:
      - secret:
          name: mysecret
      - serviceAccountToken:
          path: token
          expirationSeconds: 3600
  - name: data
    persistentVolumeClaim:
      claimName: myclaim
"""


def test_nginx_deployment_from_the_docs() -> None:
    d = _parse(apps_v1.Deployment, yaml.safe_load(NGINX_DEPLOYMENT))
    assert d.api_version == "apps/v1"
    assert d.kind == "Deployment"
    assert d.metadata.name == "nginx-deployment"
    assert dict(d.metadata.labels) == {"app": "nginx"}
    assert d.spec.HasField("replicas") and d.spec.replicas == 3
    assert dict(d.spec.selector.match_labels) == {"app": "nginx"}
    assert dict(d.spec.template.metadata.labels) == {"app": "nginx"}
    (c,) = d.spec.template.spec.containers
    assert (c.name, c.image) == ("nginx", "nginx:local")
    assert [p.container_port for p in c.ports] == [80]
    # And back: the same JSON, nothing added.
    assert _dump(d) == yaml.safe_load(NGINX_DEPLOYMENT)


def test_service_with_numeric_and_named_target_port() -> None:
    manifest = yaml.safe_load(MY_SERVICE)
    # The codec turns numbers into strings for int-or-string fields; done by hand here.
    for port in manifest["spec"]["ports"]:
        port["targetPort"] = str(port["targetPort"])
    svc = _parse(core_v1.Service, manifest)
    assert svc.spec.type == "NodePort"
    assert dict(svc.spec.selector) == {"app.kubernetes.io/name": "MyApp"}
    http, web = svc.spec.ports
    assert (http.name, http.protocol, http.port, http.target_port, http.node_port) == (
        "http",
        "TCP",
        80,
        "9376",
        30007,
    )
    assert (web.port, web.target_port) == (8080, "http-web-svc")
    assert _dump(svc) == manifest


def test_busy_pod_decodes() -> None:
    pod = _parse(core_v1.Pod, yaml.safe_load(BUSY_POD))
    spec = pod.spec
    assert spec.termination_grace_period_seconds == 30
    assert spec.HasField("automount_service_account_token") and not spec.automount_service_account_token
    assert spec.HasField("enable_service_links")
    assert not spec.HasField("active_deadline_seconds")
    assert spec.security_context.run_as_user == 1000
    assert list(spec.security_context.supplemental_groups) == [4000]
    assert spec.tolerations[0].toleration_seconds == 3600
    assert spec.topology_spread_constraints[0].label_selector.match_labels["app"] == "busy"
    node_term = spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    assert node_term.node_selector_terms[0].match_expressions[0].values == ["antarctica-east1"]
    anti = spec.affinity.pod_anti_affinity.preferred_during_scheduling_ignored_during_execution[0]
    assert anti.pod_affinity_term.topology_key == "topology.kubernetes.io/zone"
    assert not spec.dns_config.options[1].HasField("value")
    app = spec.containers[0]
    assert app.env[1].value_from.field_ref.field_path == "spec.nodeName"
    assert app.env[4].value_from.secret_key_ref.optional is True
    assert dict(app.resources.limits) == {"memory": "128Mi", "cpu": "500m"}
    assert app.readiness_probe.http_get.port == "8080"
    assert app.readiness_probe.http_get.http_headers[0].value == "Awesome"
    assert app.startup_probe.failure_threshold == 30
    assert list(app.lifecycle.pre_stop.exec.command)[-1] == "nginx -s quit"
    assert app.security_context.HasField("allow_privilege_escalation")
    vols = {v.name: v for v in spec.volumes}
    assert vols["cache-volume"].empty_dir.size_limit == "500Mi"
    assert vols["creds"].secret.default_mode == 0o400
    assert vols["podinfo"].downward_api.items[0].field_ref.field_path == "metadata.labels"
    assert vols["all-in-one"].projected.sources[1].service_account_token.expiration_seconds == 3600
    assert vols["data"].persistent_volume_claim.claim_name == "myclaim"


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(json_format.ParseError, match="replica"):
        _parse(apps_v1.Deployment, {"spec": {"replica": 3}})


def test_secret_data_is_base64_in_json() -> None:
    secret = _parse(core_v1.Secret, {"type": "Opaque", "data": {"password": "MWYyZDFlMmU2N2Rm"}})
    assert secret.data["password"] == b"1f2d1e2e67df"
    cm = _parse(core_v1.ConfigMap, {"binaryData": {"blob": "AAEC"}, "immutable": False})
    assert cm.binary_data["blob"] == b"\x00\x01\x02"
    assert cm.HasField("immutable")
    assert _dump(cm) == {"binaryData": {"blob": "AAEC"}, "immutable": False}


def test_presence_of_optional_counts() -> None:
    unset = _parse(apps_v1.Deployment, {"spec": {}})
    zero = _parse(apps_v1.Deployment, {"spec": {"replicas": 0}})
    assert not unset.spec.HasField("replicas")
    assert zero.spec.HasField("replicas") and zero.spec.replicas == 0
    lease = _parse(
        coordination_v1.Lease,
        {
            "spec": {
                "holderIdentity": "",
                "leaseDurationSeconds": 15,
                "renewTime": "2024-05-01T10:00:00.123456Z",
            }
        },
    )
    assert lease.spec.HasField("holder_identity")
    assert not lease.spec.HasField("lease_transitions")
    assert lease.spec.renew_time.nanos == 123456000


@pytest.mark.parametrize(
    ("message", "field", "kind"),
    [
        (core_v1.PodSpec, "termination_grace_period_seconds", FieldDescriptor.TYPE_INT64),
        (core_v1.PodSpec, "active_deadline_seconds", FieldDescriptor.TYPE_INT64),
        (core_v1.SecurityContext, "run_as_user", FieldDescriptor.TYPE_INT64),
        (core_v1.ContainerImage, "size_bytes", FieldDescriptor.TYPE_INT64),
        (core_v1.ContainerStatus, "restart_count", FieldDescriptor.TYPE_INT32),
        (core_v1.Event, "count", FieldDescriptor.TYPE_INT32),
        (apps_v1.DeploymentSpec, "replicas", FieldDescriptor.TYPE_INT32),
        (apps_v1.DeploymentStatus, "observed_generation", FieldDescriptor.TYPE_INT64),
        (core_v1.Secret, "data", FieldDescriptor.TYPE_MESSAGE),
    ],
)
def test_integer_widths(message: type[Message], field: str, kind: int) -> None:
    assert message.DESCRIPTOR.fields_by_name[field].type == kind


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (apps_v1.DeploymentSpec, "replicas"),
        (apps_v1.DeploymentSpec, "revision_history_limit"),
        (apps_v1.DeploymentSpec, "progress_deadline_seconds"),
        (apps_v1.ReplicaSetSpec, "replicas"),
        (apps_v1.DeploymentStatus, "terminating_replicas"),
        (core_v1.PodSpec, "termination_grace_period_seconds"),
        (core_v1.PodSpec, "active_deadline_seconds"),
        (core_v1.PodSpec, "automount_service_account_token"),
        (core_v1.PodSpec, "enable_service_links"),
        (core_v1.SecurityContext, "run_as_user"),
        (core_v1.SecurityContext, "run_as_non_root"),
        (core_v1.SecurityContext, "privileged"),
        (core_v1.ConfigMapKeySelector, "optional"),
        (core_v1.SecretKeySelector, "optional"),
        (core_v1.ServiceAccount, "automount_service_account_token"),
        (core_v1.Secret, "immutable"),
        (core_v1.ConfigMap, "immutable"),
        (coordination_v1.LeaseSpec, "holder_identity"),
        (coordination_v1.LeaseSpec, "lease_duration_seconds"),
        (coordination_v1.LeaseSpec, "lease_transitions"),
    ],
)
def test_pointer_fields_track_presence(message: type[Message], field: str) -> None:
    assert message.DESCRIPTOR.fields_by_name[field].has_presence


# --- field options read by the codec and by strategic merge patch ----------------------------


def _option(message: type[Message], field: str, ext: FieldDescriptor) -> Any:
    return message.DESCRIPTOR.fields_by_name[field].GetOptions().Extensions[ext]


@pytest.mark.parametrize(
    ("message", "field", "fmt"),
    [
        (core_v1.ServicePort, "target_port", meta_v1.INT_OR_STRING),
        (core_v1.HTTPGetAction, "port", meta_v1.INT_OR_STRING),
        (core_v1.TCPSocketAction, "port", meta_v1.INT_OR_STRING),
        (apps_v1.RollingUpdateDeployment, "max_surge", meta_v1.INT_OR_STRING),
        (apps_v1.RollingUpdateDeployment, "max_unavailable", meta_v1.INT_OR_STRING),
        (core_v1.ResourceRequirements, "limits", meta_v1.QUANTITY),
        (core_v1.ResourceRequirements, "requests", meta_v1.QUANTITY),
        (core_v1.NodeStatus, "capacity", meta_v1.QUANTITY),
        (core_v1.NodeStatus, "allocatable", meta_v1.QUANTITY),
        (core_v1.EmptyDirVolumeSource, "size_limit", meta_v1.QUANTITY),
        (core_v1.PodSpec, "overhead", meta_v1.QUANTITY),
        (core_v1.EndpointPort, "port", meta_v1.FIELD_FORMAT_UNSPECIFIED),
        (core_v1.ContainerPort, "container_port", meta_v1.FIELD_FORMAT_UNSPECIFIED),
    ],
)
def test_format_option(message: type[Message], field: str, fmt: int) -> None:
    assert _option(message, field, meta_v1.format) == fmt


@pytest.mark.parametrize(
    ("message", "field", "key", "strategy"),
    [
        (core_v1.PodSpec, "containers", "name", "merge"),
        (core_v1.PodSpec, "init_containers", "name", "merge"),
        (core_v1.PodSpec, "ephemeral_containers", "name", "merge"),
        (core_v1.PodSpec, "volumes", "name", "merge,retainKeys"),
        (core_v1.PodSpec, "image_pull_secrets", "name", "merge"),
        (core_v1.PodSpec, "topology_spread_constraints", "topologyKey", "merge"),
        (core_v1.PodSpec, "host_aliases", "ip", "merge"),
        (core_v1.PodSpec, "tolerations", "", ""),
        (core_v1.Container, "env", "name", "merge"),
        (core_v1.Container, "ports", "containerPort", "merge"),
        (core_v1.Container, "volume_mounts", "mountPath", "merge"),
        (core_v1.Container, "args", "", ""),
        (core_v1.ServiceSpec, "ports", "port", "merge"),
        (core_v1.PodStatus, "conditions", "type", "merge"),
        (core_v1.NodeStatus, "conditions", "type", "merge"),
        (core_v1.NodeSpec, "taints", "", ""),
        (apps_v1.DeploymentStatus, "conditions", "type", "merge"),
        (apps_v1.ReplicaSetStatus, "conditions", "type", "merge"),
    ],
)
def test_patch_options(message: type[Message], field: str, key: str, strategy: str) -> None:
    assert _option(message, field, meta_v1.patch_merge_key) == key
    assert _option(message, field, meta_v1.patch_strategy) == strategy


def test_merge_keys_name_fields_of_the_element() -> None:
    # A merge key names a field of the list element by its JSON name.
    for m, fd in _fields():
        key = fd.GetOptions().Extensions[meta_v1.patch_merge_key]
        if key:
            assert fd.is_repeated, f"{m.name}.{fd.name}"
            assert key in {f.json_name for f in fd.message_type.fields}, f"{m.name}.{fd.name}"


# --- scheme ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("po", kinds.PODS),
        ("pods", kinds.PODS),
        ("Pod", kinds.PODS),
        ("svc", kinds.SERVICES),
        ("ns", kinds.NAMESPACES),
        ("no", kinds.NODES),
        ("ep", kinds.ENDPOINTS),
        ("cm", kinds.CONFIGMAPS),
        ("secret", kinds.SECRETS),
        ("sa", kinds.SERVICEACCOUNTS),
        ("ev", kinds.EVENTS),
        ("lease", kinds.LEASES),
        ("leases.coordination.k8s.io", kinds.LEASES),
        ("deploy", kinds.DEPLOYMENTS),
        ("deployments.apps", kinds.DEPLOYMENTS),
        ("rs", kinds.REPLICASETS),
    ],
)
def test_resolve(typed: str, expected: Any) -> None:
    assert SCHEME.resolve(typed) is expected


def test_lookups() -> None:
    assert SCHEME.for_kind("apps/v1", "Deployment").message is apps_v1.Deployment
    assert SCHEME.for_kind("coordination.k8s.io/v1", "Lease").resource == "leases"
    assert SCHEME.for_resource("", "pods") is kinds.PODS
    assert SCHEME.for_message(core_v1.Service()) is kinds.SERVICES
    assert SCHEME.for_message_name("kubelite.api.apps.v1.ReplicaSet") is kinds.REPLICASETS
    with pytest.raises(UnknownKindError):
        SCHEME.for_kind("v1", "Binding")
    with pytest.raises(UnknownKindError):
        SCHEME.resolve("deployments.batch")


def test_scopes_and_categories() -> None:
    cluster_scoped = {rt.resource for rt in SCHEME if not rt.namespaced}
    assert cluster_scoped == {"namespaces", "nodes", "priorityclasses"}
    assert {rt.resource for rt in SCHEME if "all" in rt.categories} == {
        "pods",
        "services",
        "deployments",
        "replicasets",
    }
    without_status = {rt.resource for rt in SCHEME if not rt.has_status}
    assert without_status == {"endpoints", "configmaps", "secrets", "serviceaccounts", "events", "leases",
                              "priorityclasses"}


def test_new_fills_api_version_and_kind() -> None:
    d = kinds.DEPLOYMENTS.new()
    assert isinstance(d, apps_v1.Deployment)
    assert (d.api_version, d.kind) == ("apps/v1", "Deployment")
