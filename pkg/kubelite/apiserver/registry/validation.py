"""Field validation shared by the per-kind strategies.

A pod spec is validated the same way whether it arrives in a Pod or inside a
Deployment's or ReplicaSet's template; only the path prefix of the errors
differs (``spec.containers[0].image`` vs ``spec.template.spec.containers[0].image``).
So the pod-spec rules live here as plain functions taking a path, and the
strategies in ``core`` and ``apps`` compose them. Every rule reports a
FieldError with a JSON path and, where Kubernetes shows one, the offending
value, so that the messages read like the ones Kubernetes users know.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf.message import Message

from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.machinery import validation as names
from kubelite.machinery.errors import FieldError
from kubelite.machinery.quantity import QUANTITY_FORMAT_ERROR, QuantityError, parse_quantity

Errs = list[FieldError]

# --------------------------------------------------------------------------------------------
# FieldError constructors (Kubernetes' field.Required, field.Invalid, ...)
# --------------------------------------------------------------------------------------------


def required(path: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", path, detail)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", path, detail, value)


def not_supported(path: str, value: Any, supported: Iterable[str]) -> FieldError:
    listed = ", ".join(f'"{s}"' for s in sorted(supported))
    return FieldError("FieldValueNotSupported", path, f"supported values: {listed}", value)


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", path, "", value)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", path, detail)


def not_found(path: str, value: Any) -> FieldError:
    # errors.FieldError has no text for this type yet; the detail keeps the message readable.
    return FieldError("FieldValueNotFound", path, f'Not found: "{value}"' if isinstance(value, str) else "Not found",
                      value)


def too_long(path: str, limit: int) -> FieldError:
    return FieldError("FieldValueTooLong", path, f"must have at most {limit} bytes")


def check(path: str, value: Any, messages: Iterable[str]) -> Errs:
    """Turns the reasons an ``is_*`` name check returned into Invalid errors."""
    return [invalid(path, value, m) for m in messages]


def check_name(path: str, value: str, validator: names.NameValidator) -> Errs:
    """A required name that must also pass ``validator``."""
    if not value:
        return [required(path)]
    return check(path, value, validator(value))


def non_negative(path: str, value: int) -> Errs:
    return [invalid(path, value, "must be greater than or equal to 0")] if value < 0 else []


def one_of(path: str, value: str, supported: Sequence[str], *, allow_empty: bool = False) -> Errs:
    """A string enum: Required when empty (unless allowed), NotSupported when unknown."""
    if not value:
        return [] if allow_empty else [required(path)]
    return [] if value in supported else [not_supported(path, value, supported)]


def set_fields(msg: Message, candidates: Sequence[str]) -> list[str]:
    """Which of the sub-message fields in ``candidates`` are present (for one-of rules)."""
    return [f for f in candidates if msg.HasField(f)]


def json_name(msg: Message, field: str) -> str:
    return str(msg.DESCRIPTOR.fields_by_name[field].json_name)


# --------------------------------------------------------------------------------------------
# Ports, IPs, int-or-string
# --------------------------------------------------------------------------------------------

PROTOCOLS = ("SCTP", "TCP", "UDP")
_PERCENT_RE = re.compile(r"^[0-9]+%$")


def validate_port_number(path: str, port: int) -> Errs:
    return check(path, port, names.is_valid_port_num(port))


def validate_int_or_name_port(path: str, port: str) -> Errs:
    """A port given as a number or as the IANA name of a container port (probes, targetPort)."""
    if not port:
        return [required(path)]
    if port.isdigit():
        return check(path, int(port), names.is_valid_port_num(int(port)))
    return check(path, port, names.is_valid_port_name(port))


def validate_ip(path: str, value: str) -> Errs:
    if not value:
        return [required(path)]
    return check(path, value, names.is_valid_ip(value))


def validate_int_or_percent(path: str, value: str) -> Errs:
    """maxSurge / maxUnavailable: a non-negative count or a percentage."""
    if value.isdigit() or _PERCENT_RE.match(value):
        return []
    return [invalid(path, value, "must be an integer or percentage (e.g '5%')")]


def int_or_percent_is_zero(value: str) -> bool:
    return value.rstrip("%") in ("0", "")


# --------------------------------------------------------------------------------------------
# Resources
# --------------------------------------------------------------------------------------------

_STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage", "pods")


def _validate_resource_name(path: str, name: str) -> Errs:
    if name in _STANDARD_RESOURCES or name.startswith("hugepages-"):
        return []
    errs = check(path, name, names.is_qualified_name(name))
    if not errs and "/" not in name:
        # Anything else must be an extended resource, which carries a domain prefix.
        errs.append(invalid(path, name, "must be a standard resource type or fully qualified"))
    return errs


def parse_resource_list(path: str, resources: Mapping[str, str], errs: Errs) -> dict[str, Any]:
    """Validates a ResourceList and returns its parsed values (skipping bad ones)."""
    parsed: dict[str, Any] = {}
    for name in sorted(resources):
        value = resources[name]
        kpath = f"{path}[{name}]"
        errs.extend(_validate_resource_name(kpath, name))
        try:
            quantity = parse_quantity(value)
        except QuantityError:
            errs.append(invalid(kpath, value, QUANTITY_FORMAT_ERROR))
            continue
        if quantity < 0:
            errs.append(invalid(kpath, value, "must be greater than or equal to 0"))
            continue
        parsed[name] = quantity
    return parsed


def validate_resources(path: str, res: core_v1.ResourceRequirements) -> Errs:
    errs: Errs = []
    limits = parse_resource_list(f"{path}.limits", res.limits, errs)
    requests = parse_resource_list(f"{path}.requests", res.requests, errs)
    for name, request in requests.items():
        limit = limits.get(name)
        if limit is not None and request > limit:
            errs.append(invalid(f"{path}.requests[{name}]", res.requests[name],
                                f"must be less than or equal to {name} limit of {res.limits[name]}"))
    return errs


# --------------------------------------------------------------------------------------------
# Pod spec
# --------------------------------------------------------------------------------------------

RESTART_POLICIES = ("Always", "Never", "OnFailure")
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
TERMINATION_MESSAGE_POLICIES = ("FallbackToLogsOnError", "File")
TAINT_EFFECTS = ("NoExecute", "NoSchedule", "PreferNoSchedule")
TOLERATION_OPERATORS = ("Equal", "Exists")
_VOLUME_SOURCES = ("host_path", "empty_dir", "secret", "nfs", "persistent_volume_claim", "downward_api",
                   "config_map", "projected")
_ENV_SOURCES = ("field_ref", "resource_field_ref", "config_map_key_ref", "secret_key_ref")
_PROBE_HANDLERS = ("exec", "http_get", "tcp_socket", "grpc")
_LIFECYCLE_HANDLERS = ("exec", "http_get", "tcp_socket", "sleep")
_FIELD_REF_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels",
                    "metadata.annotations", "spec.nodeName", "spec.serviceAccountName", "status.hostIP",
                    "status.hostIPs", "status.podIP", "status.podIPs")
_FIELD_REF_KEYED_RE = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")
_MAX_DNS_NAMESERVERS = 3


def validate_pod_spec(spec: core_v1.PodSpec, path: str) -> Errs:
    """Everything Kubernetes checks in a PodSpec that matters here; ``path`` is ``spec`` or ``spec.template.spec``."""
    errs: Errs = []
    volumes = _validate_volumes(spec.volumes, f"{path}.volumes", errs)

    if not spec.containers:
        errs.append(required(f"{path}.containers"))
    seen_names: set[str] = set()
    for group, containers in (("initContainers", spec.init_containers), ("containers", spec.containers)):
        for i, c in enumerate(containers):
            cpath = f"{path}.{group}[{i}]"
            if c.name and c.name in seen_names:
                errs.append(duplicate(f"{cpath}.name", c.name))
            seen_names.add(c.name)
            errs.extend(_validate_container(c, cpath, volumes, spec.host_network, init=group == "initContainers"))

    errs.extend(one_of(f"{path}.restartPolicy", spec.restart_policy, RESTART_POLICIES))
    errs.extend(one_of(f"{path}.dnsPolicy", spec.dns_policy, DNS_POLICIES))
    if spec.dns_policy == "None" and not spec.HasField("dns_config"):
        errs.append(required(f"{path}.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None"))
    if spec.HasField("dns_config"):
        ns = spec.dns_config.nameservers
        if len(ns) > _MAX_DNS_NAMESERVERS:
            errs.append(invalid(f"{path}.dnsConfig.nameservers", list(ns),
                                f"must not have more than {_MAX_DNS_NAMESERVERS} nameservers"))
        for i, ip in enumerate(ns):
            errs.extend(validate_ip(f"{path}.dnsConfig.nameservers[{i}]", ip))
    if spec.HasField("termination_grace_period_seconds"):
        errs.extend(non_negative(f"{path}.terminationGracePeriodSeconds", spec.termination_grace_period_seconds))
    if spec.HasField("active_deadline_seconds") and spec.active_deadline_seconds < 1:
        errs.append(invalid(f"{path}.activeDeadlineSeconds", spec.active_deadline_seconds,
                            "must be between 1 and 2147483647, inclusive"))
    errs.extend(names.validate_labels(spec.node_selector, f"{path}.nodeSelector"))
    for field, value in (("serviceAccountName", spec.service_account_name), ("nodeName", spec.node_name)):
        if value:
            errs.extend(check(f"{path}.{field}", value, names.is_dns1123_subdomain(value)))
    for field, value in (("hostname", spec.hostname), ("subdomain", spec.subdomain)):
        if value:
            errs.extend(check(f"{path}.{field}", value, names.is_dns1123_label(value)))
    for i, t in enumerate(spec.tolerations):
        errs.extend(_validate_toleration(t, f"{path}.tolerations[{i}]"))
    for i, alias in enumerate(spec.host_aliases):
        errs.extend(validate_ip(f"{path}.hostAliases[{i}].ip", alias.ip))
    for i, secret in enumerate(spec.image_pull_secrets):
        if not secret.name:
            errs.append(required(f"{path}.imagePullSecrets[{i}].name"))
    errs.extend(validate_resources(f"{path}.resources", spec.resources))
    return errs


def _validate_volumes(volumes: Sequence[core_v1.Volume], path: str, errs: Errs) -> set[str]:
    seen: set[str] = set()
    for i, vol in enumerate(volumes):
        vpath = f"{path}[{i}]"
        name_errs = check_name(f"{vpath}.name", vol.name, names.is_dns1123_label)
        errs.extend(name_errs)
        if vol.name in seen:
            errs.append(duplicate(f"{vpath}.name", vol.name))
        elif not name_errs:
            seen.add(vol.name)
        sources = set_fields(vol, _VOLUME_SOURCES)
        if not sources:
            errs.append(required(vpath, "must specify a volume type"))
        elif len(sources) > 1:
            errs.append(forbidden(f"{vpath}.{json_name(vol, sources[1])}", "may not specify more than 1 volume type"))
        errs.extend(_validate_volume_source(vol, vpath))
    return seen


def _validate_volume_source(vol: core_v1.Volume, path: str) -> Errs:
    # (field, JSON path below the volume, value that must be set)
    needed: list[tuple[str, str, str]] = []
    if vol.HasField("host_path"):
        needed.append(("host_path", "hostPath.path", vol.host_path.path))
    if vol.HasField("secret"):
        needed.append(("secret", "secret.secretName", vol.secret.secret_name))
    if vol.HasField("config_map"):
        needed.append(("config_map", "configMap.name", vol.config_map.name))
    if vol.HasField("persistent_volume_claim"):
        needed.append(("persistent_volume_claim", "persistentVolumeClaim.claimName",
                       vol.persistent_volume_claim.claim_name))
    if vol.HasField("nfs"):
        needed.extend([("nfs", "nfs.server", vol.nfs.server), ("nfs", "nfs.path", vol.nfs.path)])
    errs = [required(f"{path}.{sub}") for _, sub, value in needed if not value]
    if vol.HasField("empty_dir") and vol.empty_dir.size_limit:
        try:
            parse_quantity(vol.empty_dir.size_limit)
        except QuantityError:
            errs.append(invalid(f"{path}.emptyDir.sizeLimit", vol.empty_dir.size_limit, QUANTITY_FORMAT_ERROR))
    return errs


def _validate_container(c: core_v1.Container, path: str, volumes: set[str], host_network: bool,
                        *, init: bool) -> Errs:
    errs = check_name(f"{path}.name", c.name, names.is_dns1123_label)
    if not c.image:
        errs.append(required(f"{path}.image"))
    errs.extend(one_of(f"{path}.imagePullPolicy", c.image_pull_policy, PULL_POLICIES))
    errs.extend(one_of(f"{path}.terminationMessagePolicy", c.termination_message_policy,
                       TERMINATION_MESSAGE_POLICIES))
    if c.HasField("restart_policy"):
        if not init:
            errs.append(forbidden(f"{path}.restartPolicy", "may not be set for non-init containers"))
        elif c.restart_policy != "Always":
            errs.append(not_supported(f"{path}.restartPolicy", c.restart_policy, ("Always",)))

    port_names: set[str] = set()
    for i, p in enumerate(c.ports):
        ppath = f"{path}.ports[{i}]"
        if p.name:
            errs.extend(check(f"{ppath}.name", p.name, names.is_valid_port_name(p.name)))
            if p.name in port_names:
                errs.append(duplicate(f"{ppath}.name", p.name))
            port_names.add(p.name)
        if p.container_port == 0:
            errs.append(required(f"{ppath}.containerPort"))
        else:
            errs.extend(validate_port_number(f"{ppath}.containerPort", p.container_port))
        if p.host_port:
            errs.extend(validate_port_number(f"{ppath}.hostPort", p.host_port))
            if host_network and p.host_port != p.container_port:
                errs.append(invalid(f"{ppath}.hostPort", p.host_port,
                                    "must match `containerPort` when `hostNetwork` is true"))
        errs.extend(one_of(f"{ppath}.protocol", p.protocol, PROTOCOLS))
        if p.host_ip:
            errs.extend(validate_ip(f"{ppath}.hostIP", p.host_ip))

    for i, env in enumerate(c.env):
        errs.extend(_validate_env_var(env, f"{path}.env[{i}]"))
    for i, src in enumerate(c.env_from):
        epath = f"{path}.envFrom[{i}]"
        if src.prefix:
            errs.extend(check(f"{epath}.prefix", src.prefix, names.is_env_var_name(src.prefix)))
        refs = set_fields(src, ("config_map_ref", "secret_ref"))
        if len(refs) != 1:
            errs.append(invalid(epath, "", "must specify one of: `configMapRef` or `secretRef`"
                                if not refs else "may not have more than one field specified at a time"))
        for ref in refs:
            if not getattr(src, ref).name:
                errs.append(required(f"{epath}.{json_name(src, ref)}.name"))

    mount_paths: set[str] = set()
    for i, m in enumerate(c.volume_mounts):
        mpath = f"{path}.volumeMounts[{i}]"
        if not m.name:
            errs.append(required(f"{mpath}.name"))
        elif m.name not in volumes:
            errs.append(not_found(f"{mpath}.name", m.name))
        if not m.mount_path:
            errs.append(required(f"{mpath}.mountPath"))
        elif m.mount_path in mount_paths:
            errs.append(invalid(f"{mpath}.mountPath", m.mount_path, "must be unique"))
        mount_paths.add(m.mount_path)
        if m.sub_path and m.sub_path_expr:
            errs.append(invalid(f"{mpath}.subPathExpr", m.sub_path_expr, "subPathExpr and subPath are mutually "
                                                                         "exclusive"))

    errs.extend(validate_resources(f"{path}.resources", c.resources))
    for field, probe_path in (("liveness_probe", "livenessProbe"), ("readiness_probe", "readinessProbe"),
                              ("startup_probe", "startupProbe")):
        if c.HasField(field):
            errs.extend(_validate_probe(getattr(c, field), f"{path}.{probe_path}",
                                        single_success=field != "readiness_probe"))
    if c.HasField("lifecycle"):
        for field, hook_path in (("post_start", "postStart"), ("pre_stop", "preStop")):
            if c.lifecycle.HasField(field):
                errs.extend(_validate_handler(getattr(c.lifecycle, field), f"{path}.lifecycle.{hook_path}",
                                              _LIFECYCLE_HANDLERS))
    return errs


def _validate_env_var(env: core_v1.EnvVar, path: str) -> Errs:
    errs = [required(f"{path}.name")] if not env.name else check(f"{path}.name", env.name,
                                                                  names.is_env_var_name(env.name))
    if not env.HasField("value_from"):
        return errs
    vf = env.value_from
    vpath = f"{path}.valueFrom"
    sources = set_fields(vf, _ENV_SOURCES)
    if env.value:
        errs.append(invalid(vpath, "", "may not be specified when `value` is not empty"))
    if not sources:
        errs.append(invalid(vpath, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or "
                                       "`secretKeyRef`"))
    elif len(sources) > 1:
        errs.append(invalid(vpath, "", "may not have more than one field specified at a time"))
    if vf.HasField("field_ref"):
        fpath = f"{vpath}.fieldRef.fieldPath"
        fp = vf.field_ref.field_path
        if not fp:
            errs.append(required(fpath))
        elif fp not in _FIELD_REF_PATHS or fp in ("metadata.labels", "metadata.annotations"):
            keyed = _FIELD_REF_KEYED_RE.match(fp)
            if keyed is None:
                supported = [p for p in _FIELD_REF_PATHS if p not in ("metadata.labels", "metadata.annotations")]
                errs.append(not_supported(fpath, fp, supported))
            else:
                errs.extend(check(fpath, keyed.group(2), names.is_qualified_name(keyed.group(2).lower())))
    if vf.HasField("resource_field_ref") and not vf.resource_field_ref.resource:
        errs.append(required(f"{vpath}.resourceFieldRef.resource"))
    for field, sub in (("config_map_key_ref", "configMapKeyRef"), ("secret_key_ref", "secretKeyRef")):
        if vf.HasField(field):
            ref = getattr(vf, field)
            if not ref.name:
                errs.append(required(f"{vpath}.{sub}.name"))
            if not ref.key:
                errs.append(required(f"{vpath}.{sub}.key"))
            else:
                errs.extend(check(f"{vpath}.{sub}.key", ref.key, config_key_errors(ref.key)))
    return errs


def _validate_handler(handler: Message, path: str, kinds: Sequence[str]) -> Errs:
    present = set_fields(handler, kinds)
    if not present:
        return [required(path, "must specify a handler type")]
    errs: Errs = []
    if len(present) > 1:
        errs.append(forbidden(f"{path}.{json_name(handler, present[1])}", "may not specify more than 1 handler type"))
    if "exec" in present and not handler.exec.command:  # type: ignore[attr-defined]
        errs.append(required(f"{path}.exec.command"))
    if "http_get" in present:
        get: core_v1.HTTPGetAction = handler.http_get  # type: ignore[attr-defined]
        errs.extend(validate_int_or_name_port(f"{path}.httpGet.port", get.port))
        errs.extend(one_of(f"{path}.httpGet.scheme", get.scheme, ("HTTP", "HTTPS")))
    if "tcp_socket" in present:
        errs.extend(validate_int_or_name_port(f"{path}.tcpSocket.port",
                                              handler.tcp_socket.port))  # type: ignore[attr-defined]
    if "grpc" in present:
        errs.extend(validate_port_number(f"{path}.grpc.port", handler.grpc.port))  # type: ignore[attr-defined]
    return errs


def _validate_probe(probe: core_v1.Probe, path: str, *, single_success: bool) -> Errs:
    errs = _validate_handler(probe, path, _PROBE_HANDLERS)
    errs.extend(non_negative(f"{path}.initialDelaySeconds", probe.initial_delay_seconds))
    for field, value in (("timeoutSeconds", probe.timeout_seconds), ("periodSeconds", probe.period_seconds),
                         ("successThreshold", probe.success_threshold),
                         ("failureThreshold", probe.failure_threshold)):
        if value < 1:
            errs.append(invalid(f"{path}.{field}", value, "must be greater than or equal to 1"))
    if single_success and probe.success_threshold > 1:
        errs.append(invalid(f"{path}.successThreshold", probe.success_threshold, "must be 1"))
    return errs


def _validate_toleration(t: core_v1.Toleration, path: str) -> Errs:
    errs: Errs = []
    if t.key:
        errs.extend(check(f"{path}.key", t.key, names.is_qualified_name(t.key)))
    operator = t.operator or "Equal"
    if operator not in TOLERATION_OPERATORS:
        errs.append(not_supported(f"{path}.operator", t.operator, TOLERATION_OPERATORS))
    elif operator == "Exists" and t.value:
        errs.append(invalid(f"{path}.operator", t.value, "value must be empty when `operator` is 'Exists'"))
    elif operator == "Equal":
        if not t.key:
            errs.append(invalid(f"{path}.operator", t.operator, "operator must be Exists when `key` is empty, "
                                                                "which means \"match all values and all keys\""))
        errs.extend(check(f"{path}.value", t.value, names.is_valid_label_value(t.value)))
    if t.effect and t.effect not in TAINT_EFFECTS:
        errs.append(not_supported(f"{path}.effect", t.effect, TAINT_EFFECTS))
    if t.HasField("toleration_seconds") and t.effect != "NoExecute":
        errs.append(invalid(f"{path}.effect", t.effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"))
    return errs


def validate_taint(t: core_v1.Taint, path: str) -> Errs:
    errs = check_name(f"{path}.key", t.key, names.is_qualified_name)
    if t.value:
        errs.extend(check(f"{path}.value", t.value, names.is_valid_label_value(t.value)))
    errs.extend(one_of(f"{path}.effect", t.effect, TAINT_EFFECTS))
    return errs


# --------------------------------------------------------------------------------------------
# ConfigMap / Secret keys
# --------------------------------------------------------------------------------------------

_CONFIG_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
MAX_CONFIG_KEY_LENGTH = 253
# etcd keeps whole objects; Kubernetes caps ConfigMap and Secret payloads at 1 MiB.
MAX_DATA_BYTES = 1024 * 1024


def config_key_errors(key: str) -> list[str]:
    errs: list[str] = []
    if len(key) > MAX_CONFIG_KEY_LENGTH:
        errs.append(f"must be no more than {MAX_CONFIG_KEY_LENGTH} characters")
    if not _CONFIG_KEY_RE.match(key):
        errs.append("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name', "
                    "or 'KEY_NAME', or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")
    if key in (".", ".."):
        errs.append(f"must not be '{key}'")
    elif key.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def validate_data_keys(path: str, keys: Iterable[str]) -> Errs:
    errs: Errs = []
    for key in sorted(keys):
        errs.extend(check(f"{path}[{key}]", key, config_key_errors(key)))
    return errs


# --------------------------------------------------------------------------------------------
# IP ranges
# --------------------------------------------------------------------------------------------


def ip_in_network(value: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """Whether ``value`` is a usable host address of ``network`` (not its network or broadcast address)."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return False
    if ip.version != network.version or ip not in network:
        return False
    return network.num_addresses <= 2 or ip not in (network.network_address, network.broadcast_address)
