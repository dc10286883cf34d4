"""Pure translations from the Pod API to runtime configs: no I/O here.

Everything the kubelet decides about *how* a container runs (labels, names,
resources as cgroup numbers, the environment after ``$(VAR)`` expansion, the
command line, security settings) is computed here from the pod and the
objects it references, so that it can be tested without Docker or an API.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.runtime.v1 import api_pb2 as rt
from kubelite.machinery.quantity import QuantityError, parse_quantity
from kubelite.runtime.interface import LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID

MIN_SHARES = 2
MAX_SHARES = 262144
SHARES_PER_CPU = 1024
CPU_PERIOD = 100_000
MIN_QUOTA = 1000
_PROTOCOLS = {"TCP": rt.TCP, "UDP": rt.UDP, "SCTP": rt.SCTP, "": rt.TCP}
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][-._A-Za-z0-9]*)\)")


class ConfigError(Exception):
    """The pod cannot be turned into a container config yet (CreateContainerConfigError)."""


def pod_labels(pod: core.Pod) -> dict[str, str]:
    return {LABEL_POD_UID: pod.metadata.uid, LABEL_POD_NAME: pod.metadata.name,
            LABEL_POD_NAMESPACE: pod.metadata.namespace}


def sandbox_config(pod: core.Pod, attempt: int, *, cluster_dns: tuple[str, ...] = (),
                   cluster_domain: str = "cluster.local", log_dir: str = "",
                   host_dns: rt.DNSConfig | None = None) -> rt.PodSandboxConfig:
    spec = pod.spec
    md = pod.metadata
    hostname = spec.hostname or md.name
    config = rt.PodSandboxConfig(
        metadata=rt.PodSandboxMetadata(name=md.name, namespace=md.namespace, uid=md.uid, attempt=attempt),
        hostname=hostname[:63], log_directory=log_dir, labels=pod_labels(pod),
        security_context=rt.LinuxSandboxSecurityContext(host_network=spec.host_network, host_pid=spec.host_pid,
                                                        host_ipc=spec.host_ipc))
    for c in spec.containers:
        for p in c.ports:
            config.port_mappings.append(rt.PortMapping(protocol=_PROTOCOLS.get(p.protocol, rt.TCP),
                                                       container_port=p.container_port, host_port=p.host_port,
                                                       host_ip=p.host_ip))
    dns = dns_config(pod, cluster_dns, cluster_domain, host_dns)
    if dns is not None:
        config.dns_config.CopyFrom(dns)
    return config


def read_resolv_conf(path: str) -> rt.DNSConfig | None:
    """The node's resolver settings (nameserver, search/domain, options lines); None when unreadable."""
    if not path:
        return None
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    cfg = rt.DNSConfig()
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 2:
            continue
        if words[0] == "nameserver":
            cfg.servers.append(words[1])
        elif words[0] in ("search", "domain"):
            cfg.searches[:] = words[1:]  # the last of them wins, as in the resolver
        elif words[0] == "options":
            cfg.options.extend(words[1:])
    return cfg


def dns_config(pod: core.Pod, cluster_dns: tuple[str, ...], cluster_domain: str,
               host_dns: rt.DNSConfig | None = None) -> rt.DNSConfig | None:
    """resolv.conf as the pod's dnsPolicy asks; None keeps what the runtime gives (Docker's own).

    Default (and ClusterFirst on the host's network, or without --cluster-dns) is the node's
    resolv.conf (``host_dns``), as in Kubernetes: on a user-defined Docker network the runtime's
    own would be Docker's embedded resolver, which is not the node's."""
    spec = pod.spec
    policy = spec.dns_policy or "ClusterFirst"
    cfg = rt.DNSConfig()
    if cluster_dns and (policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not spec.host_network)):
        ns = pod.metadata.namespace
        cfg.servers.extend(cluster_dns)
        cfg.searches.extend([f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain])
        cfg.options.append("ndots:5")
    elif policy == "None":
        pass
    elif policy in ("Default", "ClusterFirst", "ClusterFirstWithHostNet"):
        if host_dns is not None:
            cfg.CopyFrom(host_dns)
    else:
        return None
    if spec.HasField("dns_config"):
        cfg.servers.extend(spec.dns_config.nameservers)
        cfg.searches.extend(s for s in spec.dns_config.searches if s not in cfg.searches)
        for opt in spec.dns_config.options:
            text = f"{opt.name}:{opt.value}" if opt.HasField("value") else opt.name
            cfg.options[:] = [o for o in cfg.options if o.split(":")[0] != opt.name]
            cfg.options.append(text)
    if not cfg.servers and not cfg.searches and not cfg.options:
        return None
    return cfg


def _qty(text: str, field: str) -> Fraction:
    try:
        return parse_quantity(text)
    except QuantityError as exc:
        raise ConfigError(f"{field}: {exc}") from exc


def linux_resources(c: core.Container) -> rt.LinuxContainerResources:
    """requests/limits -> cgroup numbers, as the kubelet computes them for Docker."""
    res = rt.LinuxContainerResources()
    limits, requests = c.resources.limits, c.resources.requests
    # A limit without a request means request = limit (the API's defaulting).
    cpu_field = "resources.requests.cpu" if requests.get("cpu") else "resources.limits.cpu"
    cpu_request = requests.get("cpu") or limits.get("cpu")
    if cpu_request:
        milli = _qty(cpu_request, cpu_field) * 1000
        res.cpu_shares = max(MIN_SHARES, min(MAX_SHARES, int(milli * SHARES_PER_CPU / 1000)))
    else:
        res.cpu_shares = MIN_SHARES  # BestEffort CPU, as Kubernetes gives it
    if limits.get("cpu"):
        milli = _qty(limits["cpu"], "resources.limits.cpu") * 1000
        res.cpu_period = CPU_PERIOD
        res.cpu_quota = max(MIN_QUOTA, int(milli * CPU_PERIOD / 1000))
    if limits.get("memory"):
        res.memory_limit_in_bytes = int(_qty(limits["memory"], "resources.limits.memory"))
    return res


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known names are replaced, ``$$`` is a literal ``$``,
    unknown references stay as written."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR_REF.sub(sub, text)


@dataclass(frozen=True)
class EnvSources:
    """The objects a pod's env refers to, fetched by the caller; a missing one is absent."""

    config_maps: Mapping[str, core.ConfigMap]
    secrets: Mapping[str, core.Secret]
    service_env: Mapping[str, str]
    pod_ip: str = ""
    host_ip: str = ""
    node_name: str = ""


def _field_ref(pod: core.Pod, path: str, src: EnvSources) -> str:
    md = pod.metadata
    simple = {"metadata.name": md.name, "metadata.namespace": md.namespace, "metadata.uid": md.uid,
              "spec.nodeName": pod.spec.node_name or src.node_name,
              "spec.serviceAccountName": pod.spec.service_account_name, "status.podIP": src.pod_ip,
              "status.hostIP": src.host_ip, "status.podIPs": src.pod_ip, "status.hostIPs": src.host_ip}
    if path in simple:
        return simple[path]
    m = re.match(r"^metadata\.(labels|annotations)\['(.+)'\]$", path)
    if m:
        values = md.labels if m.group(1) == "labels" else md.annotations
        return values.get(m.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):
        values = md.labels if path == "metadata.labels" else md.annotations
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    raise ConfigError(f"fieldRef: unsupported fieldPath {path!r}")


def resource_field_value(pod: core.Pod, default_container: str, sel: core.ResourceFieldSelector,
                         allocatable: Mapping[str, str] | None = None) -> str:
    name = sel.container_name or default_container
    c = next((c for c in list(pod.spec.containers) + list(pod.spec.init_containers) if c.name == name), None)
    if c is None:
        raise ConfigError(f"resourceFieldRef: no container {name!r}")
    kind, _, resource = sel.resource.partition(".")
    values = c.resources.limits if kind == "limits" else c.resources.requests
    text = values.get(resource) or (allocatable or {}).get(resource, "") if kind == "limits" else values.get(
        resource, "0")
    if not text:
        text = "0"
    value = _qty(text, f"resourceFieldRef.{sel.resource}")
    divisor = _qty(sel.divisor, "resourceFieldRef.divisor") if sel.divisor else Fraction(1)
    if divisor == 0:
        raise ConfigError("resourceFieldRef.divisor: must not be zero")
    q = value / divisor
    return str(-(-q.numerator // q.denominator))  # ceiling, as Kubernetes rounds up


def container_env(pod: core.Pod, c: core.Container, src: EnvSources) -> list[tuple[str, str]]:
    """The container's environment in Kubernetes' order: service links, envFrom, then env
    (each expanding ``$(VAR)`` against what came before)."""
    env: dict[str, str] = dict(src.service_env)
    for ef in c.env_from:
        if ef.HasField("config_map_ref"):
            ref = ef.config_map_ref
            cm = src.config_maps.get(ref.name)
            if cm is None:
                if ref.optional:
                    continue
                raise ConfigError(f'configmap "{ref.name}" not found')
            for k, v in sorted(cm.data.items()):
                env[ef.prefix + k] = v
        if ef.HasField("secret_ref"):
            sref = ef.secret_ref
            secret = src.secrets.get(sref.name)
            if secret is None:
                if sref.optional:
                    continue
                raise ConfigError(f'secret "{sref.name}" not found')
            for k, b in sorted(secret_data(secret).items()):
                env[ef.prefix + k] = b.decode(errors="replace")
    for e in c.env:
        if not e.HasField("value_from"):
            env[e.name] = expand(e.value, env)
            continue
        vf = e.value_from
        if vf.HasField("config_map_key_ref"):
            ck = vf.config_map_key_ref
            cm = src.config_maps.get(ck.name)
            if cm is None or ck.key not in cm.data:
                if ck.optional:
                    continue
                raise ConfigError(f'configmap "{ck.name}" not found' if cm is None
                                  else f'couldn\'t find key {ck.key} in ConfigMap {pod.metadata.namespace}/{ck.name}')
            env[e.name] = cm.data[ck.key]
        elif vf.HasField("secret_key_ref"):
            sk = vf.secret_key_ref
            secret = src.secrets.get(sk.name)
            data = secret_data(secret) if secret is not None else {}
            if secret is None or sk.key not in data:
                if sk.optional:
                    continue
                raise ConfigError(f'secret "{sk.name}" not found' if secret is None
                                  else f'couldn\'t find key {sk.key} in Secret {pod.metadata.namespace}/{sk.name}')
            env[e.name] = data[sk.key].decode(errors="replace")
        elif vf.HasField("field_ref"):
            env[e.name] = _field_ref(pod, vf.field_ref.field_path, src)
        elif vf.HasField("resource_field_ref"):
            env[e.name] = resource_field_value(pod, c.name, vf.resource_field_ref)
    return list(env.items())


def secret_data(secret: core.Secret) -> dict[str, bytes]:
    """data (bytes) merged with stringData, as the API server would have stored them."""
    out = {k: bytes(v) for k, v in secret.data.items()}
    for k, v in secret.string_data.items():
        out[k] = v.encode()
    return out


def service_env(services: list[core.Service]) -> dict[str, str]:
    """Docker-links-style variables for the Services of the pod's namespace (enableServiceLinks)."""
    env: dict[str, str] = {}
    for svc in sorted(services, key=lambda s: s.metadata.name):
        ip = svc.spec.cluster_ip
        if not ip or ip == "None" or not svc.spec.ports:
            continue
        name = svc.metadata.name.upper().replace("-", "_")
        first = svc.spec.ports[0]
        env[f"{name}_SERVICE_HOST"] = ip
        env[f"{name}_SERVICE_PORT"] = str(first.port)
        for p in svc.spec.ports:
            if p.name:
                env[f"{name}_SERVICE_PORT_{p.name.upper().replace('-', '_')}"] = str(p.port)
        proto = (first.protocol or "TCP").lower()
        env[f"{name}_PORT"] = f"{proto}://{ip}:{first.port}"
        for p in svc.spec.ports:
            pr = (p.protocol or "TCP")
            prefix = f"{name}_PORT_{p.port}_{pr}"
            env[prefix] = f"{pr.lower()}://{ip}:{p.port}"
            env[f"{prefix}_PROTO"] = pr.lower()
            env[f"{prefix}_PORT"] = str(p.port)
            env[f"{prefix}_ADDR"] = ip
    return env


def container_config(pod: core.Pod, c: core.Container, attempt: int, env: list[tuple[str, str]],
                     mounts: list[rt.Mount]) -> rt.ContainerConfig:
    env_map = dict(env)
    cfg = rt.ContainerConfig(
        metadata=rt.ContainerMetadata(name=c.name, attempt=attempt), image=rt.ImageSpec(image=c.image),
        command=[expand(a, env_map) for a in c.command], args=[expand(a, env_map) for a in c.args],
        working_dir=c.working_dir, envs=[rt.KeyValue(key=k, value=v) for k, v in env], mounts=mounts,
        labels={**pod_labels(pod), LABEL_CONTAINER_NAME: c.name}, stdin=c.stdin, stdin_once=c.stdin_once,
        tty=c.tty, resources=linux_resources(c), log_path=f"{c.name}/{attempt}.log")
    psc = pod.spec.security_context
    sc = c.security_context
    ctx = cfg.security_context
    if sc.HasField("run_as_user"):
        ctx.run_as_user = sc.run_as_user
    elif psc.HasField("run_as_user"):
        ctx.run_as_user = psc.run_as_user
    if sc.HasField("run_as_group"):
        ctx.run_as_group = sc.run_as_group
    elif psc.HasField("run_as_group"):
        ctx.run_as_group = psc.run_as_group
    ctx.privileged = bool(sc.privileged)
    ctx.readonly_rootfs = bool(sc.read_only_root_filesystem)
    ctx.capabilities.add_capabilities.extend(sc.capabilities.add)
    ctx.capabilities.drop_capabilities.extend(sc.capabilities.drop)
    ctx.supplemental_groups.extend(psc.supplemental_groups)
    if psc.HasField("fs_group"):
        ctx.supplemental_groups.append(psc.fs_group)
    return cfg


def decode_b64(text: str) -> bytes:
    return base64.b64decode(text)
