"""Strategies of the core/v1 kinds: what the API server adds to the generic store per kind.

Each class overrides only the hooks its kind needs; the rules follow
Kubernetes' registry strategies (pod spec immutability, binding, Service IP and
NodePort allocation, namespace termination, immutable ConfigMaps and Secrets),
re-expressed over our protobuf messages. ``STRATEGIES`` at the bottom maps each
resource to the factory that builds its strategy; ``registry.all`` merges the
tables of every API group.

One piece of per-request state crosses hook boundaries, because the store's
hooks are called one after the other on the same object within one request:
which Service allocations were chosen by the server rather than by the user
(only those may be re-chosen when a claim is lost). It lives in a ContextVar,
private to the asyncio task serving the request, so concurrent requests never
see each other's state and nothing outlives the request. Writes through a
subresource (pods/binding, namespaces/finalize) are told so by the store's
``subresource`` argument; the subresources themselves are small classes in
``SUBRESOURCES``.
"""

from __future__ import annotations

import contextvars
import dataclasses
import ipaddress
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from google.protobuf.message import Message

from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.apiserver.pipeline import Attributes
from kubelite.apiserver.registry import defaults
from kubelite.apiserver.registry import validation as v
from kubelite.apiserver.registry.allocation import IPAllocator, PortAllocator
from kubelite.apiserver.registry.strategy import Strategy
from kubelite.apiserver.registry.subresource import HasObj, StoreView, Subresource, SubresourceFactory
from kubelite.machinery import errors, schedulingreasons
from kubelite.machinery import validation as names
from kubelite.machinery.errors import FieldError
from kubelite.machinery.quantity import QuantityError, parse_quantity
from kubelite.machinery.scheme import ResourceType
from kubelite.storage.interface import Claim


@dataclass(frozen=True)
class Options:
    """Cluster-wide settings some strategies need (the apiserver's flags)."""

    service_cidr: str = "10.96.0.0/16"
    node_port_range: tuple[int, int] = (30000, 32767)
    # --event-ttl: Events expire from etcd after this long (kube-apiserver's default: 1 h).
    event_ttl_seconds: int = 3600


StrategyFactory = Callable[[ResourceType, Options], Strategy]



def _now() -> int:
    return int(time.time())


# ============================================================================================
# Pods
# ============================================================================================

# Set while PodStrategy.bind runs its update: the only write allowed to set spec.nodeName
# (and to change status through the main resource).

_TERMINAL_PHASES = ("Succeeded", "Failed")
_POD_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, "
    "`spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations), "
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)
_QOS_RESOURCES = ("cpu", "memory")


def _quantity(value: str) -> Fraction | None:
    try:
        return parse_quantity(value)
    except QuantityError:
        return None


def qos_class(spec: core_v1.PodSpec) -> str:
    """Guaranteed, Burstable or BestEffort, from the cpu and memory requests and limits.

    Requests left unset default to the limits (as defaulting will make them),
    so a pod with limits only is Guaranteed. Zero requests count as unset.
    """
    holders: list[core_v1.ResourceRequirements] = []
    if any(r in spec.resources.limits or r in spec.resources.requests for r in _QOS_RESOURCES):
        holders.append(spec.resources)  # pod-level resources decide for the whole pod
    else:
        holders.extend(c.resources for c in (*spec.init_containers, *spec.containers))
    anything = False
    guaranteed = True
    for res in holders:
        for name in _QOS_RESOURCES:
            limit = _quantity(res.limits[name]) if name in res.limits else None
            request = _quantity(res.requests[name]) if name in res.requests else limit
            if (request is not None and request != 0) or (limit is not None and limit != 0):
                anything = True
            if limit is None or limit == 0 or request != limit:
                guaranteed = False
    if not anything:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _tolerations_kept(new: Sequence[core_v1.Toleration], old: Sequence[core_v1.Toleration]) -> bool:
    """Every old toleration is still there (tolerationSeconds may only shrink)."""
    def same(a: core_v1.Toleration, b: core_v1.Toleration) -> bool:
        if (a.key, a.operator or "Equal", a.value, a.effect) != (b.key, b.operator or "Equal", b.value, b.effect):
            return False
        if not b.HasField("toleration_seconds"):
            return not a.HasField("toleration_seconds")
        return a.HasField("toleration_seconds") and a.toleration_seconds <= b.toleration_seconds
    return all(any(same(n, o) for n in new) for o in old)


def validate_pod_spec_update(new: core_v1.PodSpec, old: core_v1.PodSpec, *, binding: bool) -> list[FieldError]:
    """Kubernetes' pod update rule: the spec is frozen but for a few fields."""
    errs: list[FieldError] = []
    masked = core_v1.PodSpec()
    masked.CopyFrom(new)
    for mc, oc in zip(masked.containers, old.containers, strict=False):
        mc.image = oc.image
    for mc, oc in zip(masked.init_containers, old.init_containers, strict=False):
        mc.image = oc.image

    if old.HasField("active_deadline_seconds"):
        if not new.HasField("active_deadline_seconds"):
            errs.append(v.invalid("spec.activeDeadlineSeconds", None,
                                  "must not update from a positive integer to nil value"))
        elif new.active_deadline_seconds > old.active_deadline_seconds:
            errs.append(v.invalid("spec.activeDeadlineSeconds", new.active_deadline_seconds,
                                  "must be less than or equal to previous value"))
    _copy_optional(masked, old, "active_deadline_seconds")

    if _tolerations_kept(new.tolerations, old.tolerations):
        del masked.tolerations[:]
        masked.tolerations.extend(old.tolerations)

    if old.termination_grace_period_seconds < 0 and new.termination_grace_period_seconds == 1:
        masked.termination_grace_period_seconds = old.termination_grace_period_seconds
    if binding:
        masked.node_name = old.node_name

    if masked.SerializeToString(deterministic=True) != old.SerializeToString(deterministic=True):
        errs.append(v.forbidden("spec", POD_UPDATE_FORBIDDEN))
    return errs


def _copy_optional(dst: Message, src: Message, name: str) -> None:
    if src.HasField(name):
        setattr(dst, name, getattr(src, name))
    else:
        dst.ClearField(name)


class PodStrategy(Strategy):
    extra_fields = ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                    "status.phase", "status.podIP", "status.nominatedNodeName")

    def prepare_for_create(self, obj: Message) -> None:
        pod = _pod(obj)
        pod.ClearField("status")
        pod.status.phase = "Pending"
        pod.status.qos_class = qos_class(pod.spec)

    def prepare_for_update(self, new: Message, old: Message, subresource: str = "") -> None:
        if subresource == "binding":
            return  # binding writes spec.nodeName and the PodScheduled condition together
        super().prepare_for_update(new, old)

    def default(self, obj: Message) -> None:
        defaults.default_pod(_pod(obj))

    def validate(self, obj: Message) -> list[FieldError]:
        return self.validate_meta(obj) + v.validate_pod_spec(_pod(obj).spec, "spec")

    def validate_update(self, new: Message, old: Message, subresource: str = "") -> list[FieldError]:
        update_errs = validate_pod_spec_update(_pod(new).spec, _pod(old).spec, binding=subresource == "binding")
        if subresource == "binding":
            # A binding sets spec.nodeName (and the PodScheduled condition) on a stored pod, which passed
            # validation when written; the update rule still refuses any other change (an admission
            # plugin's, say). Validating the whole spec again cost ~5% of the API server's CPU at a
            # scheduler's binding rate, for nothing (Kubernetes' binding does not revalidate the pod either).
            node_name = _pod(new).spec.node_name
            return update_errs + v.check("spec.nodeName", node_name, names.is_dns1123_subdomain(node_name))
        return self.validate(new) + update_errs

    def validate_status_update(self, new: Message, old: Message) -> list[FieldError]:
        status, old_status = _pod(new).status, _pod(old).status
        errs = v.one_of("status.phase", status.phase, _POD_PHASES, allow_empty=True)
        if old_status.phase in _TERMINAL_PHASES and status.phase != old_status.phase:
            errs.append(v.forbidden("status.phase", f"cannot transition from terminal phase {old_status.phase} to "
                                                    f"{status.phase or 'an empty phase'}"))
        for path, ip in (("status.podIP", status.pod_ip), ("status.hostIP", status.host_ip)):
            if ip:
                errs.extend(v.check(path, ip, names.is_valid_ip(ip)))
        for i, pip in enumerate(status.pod_ips):
            errs.extend(v.validate_ip(f"status.podIPs[{i}].ip", pip.ip))
        return errs

    def grace_period(self, obj: Message, requested: int | None) -> int:
        pod = _pod(obj)
        # Nothing runs an unscheduled or finished pod: nobody would confirm its termination.
        if not pod.spec.node_name or pod.status.phase in _TERMINAL_PHASES:
            return 0
        if requested is not None:
            return requested
        if pod.spec.HasField("termination_grace_period_seconds"):
            return max(0, pod.spec.termination_grace_period_seconds)
        return defaults.DEFAULT_TERMINATION_GRACE_PERIOD



class BindingSubresource(Subresource):
    """pods/binding: assigns a pod to a node, once (the scheduler's write).

    It starts from the watch cache's copy of the pod (the scheduler bound
    what it saw in its own cache a moment ago), so a binding usually costs
    one etcd transaction and no read.
    """

    name = "binding"
    message = core_v1.Binding
    verbs = ("create",)

    async def create(self, store: StoreView, attrs: Attributes, body: Message) -> Message:
        assert isinstance(body, core_v1.Binding)
        if body.metadata.name and attrs.name and body.metadata.name != attrs.name:
            raise errors.bad_request("the name of the binding does not match the name of the pod")
        return await self.bind(store, attrs, body.target.name, body.metadata.uid)

    async def bind(self, store: StoreView, attrs: Attributes, node_name: str, uid: str = "") -> Message:
        name = attrs.name
        if not node_name:
            raise errors.invalid("", "Binding", name, [v.required("target.name")])

        async def mutate(current: HasObj) -> Message:
            pod = core_v1.Pod()
            pod.CopyFrom(_pod(current.obj))
            if uid and pod.metadata.uid != uid:
                raise errors.conflict("", "pods", name, f"Precondition failed: UID in precondition: {uid}, UID in "
                                                        f"object meta: {pod.metadata.uid}")
            if pod.metadata.HasField("deletion_timestamp"):
                raise errors.conflict("", "pods", name, f"pod {name} is being deleted, cannot be assigned to a host")
            if pod.spec.node_name:
                raise errors.conflict("", "pods", name,
                                      f'pod {name} is already assigned to node "{pod.spec.node_name}"')
            pod.spec.node_name = node_name
            _set_condition(pod.status, "PodScheduled", "True")
            # The scheduler's list of refusing nodes answered "why Pending?"; it goes with the reason.
            pod.metadata.annotations.pop(schedulingreasons.ANNOTATION, None)
            return pod

        return await store.guaranteed_update(dataclasses.replace(attrs, subresource="binding"), name, mutate,
                                             from_cache=True)


def _set_condition(status: core_v1.PodStatus, ctype: str, value: str) -> None:
    for cond in status.conditions:
        if cond.type == ctype:
            break
    else:
        cond = status.conditions.add(type=ctype)
    cond.status = value
    cond.reason = ""
    cond.message = ""
    cond.last_transition_time.seconds = _now()
    cond.last_transition_time.nanos = 0


def _pod(obj: Message) -> core_v1.Pod:
    assert isinstance(obj, core_v1.Pod)
    return obj


# ============================================================================================
# Services
# ============================================================================================

SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
SERVICE_IP_PREFIX = "/registry/ranges/serviceips/"
NODE_PORT_PREFIX = "/registry/ranges/servicenodeports/"
_CLUSTER_IP = "clusterIP"


@dataclass
class _Allocation:
    """Which claims of one Service write the server chose itself (and may therefore re-choose)."""

    obj: Message
    # claim key -> what it allocates: "clusterIP" or the index of a port (as a string)
    auto: dict[str, str] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)


_ALLOCATION: contextvars.ContextVar[_Allocation | None] = contextvars.ContextVar("service_allocation",
                                                                                default=None)


def _needs_node_ports(spec: core_v1.ServiceSpec) -> bool:
    if spec.type == "NodePort":
        return True
    return spec.type == "LoadBalancer" and (not spec.HasField("allocate_load_balancer_node_ports")
                                            or spec.allocate_load_balancer_node_ports)


def _has_cluster_ip(spec: core_v1.ServiceSpec) -> bool:
    return bool(spec.cluster_ip) and spec.cluster_ip != "None"


def service_claim_keys(svc: core_v1.Service) -> list[str]:
    keys: list[str] = []
    if _has_cluster_ip(svc.spec):
        keys.append(f"{SERVICE_IP_PREFIX}{svc.spec.cluster_ip}")
    for port in svc.spec.ports:
        key = f"{NODE_PORT_PREFIX}{port.node_port}"
        if port.node_port and key not in keys:  # TCP and UDP may share one NodePort
            keys.append(key)
    return keys


class ServiceStrategy(Strategy):
    name_validator = staticmethod(names.is_dns1035_label)

    def __init__(self, rt: ResourceType, options: Options) -> None:
        super().__init__(rt)
        self.ips = IPAllocator(options.service_cidr)
        self.ports = PortAllocator(*options.node_port_range)

    # --- allocation ------------------------------------------------------

    def _allocate(self, svc: core_v1.Service, alloc: _Allocation) -> None:
        """Fills an empty clusterIP and empty NodePorts, remembering that the server chose them."""
        spec = svc.spec
        if spec.type != "ExternalName" and not spec.cluster_ip and not spec.cluster_ips:
            ip = self.ips.pick()
            spec.cluster_ip = ip
            spec.cluster_ips.append(ip)
            alloc.auto[f"{SERVICE_IP_PREFIX}{ip}"] = _CLUSTER_IP
        if _needs_node_ports(spec):
            for i, port in enumerate(spec.ports):
                if port.node_port == 0:
                    port.node_port = self.ports.pick(avoid={p.node_port for p in spec.ports})
                    alloc.auto[f"{NODE_PORT_PREFIX}{port.node_port}"] = str(i)

    def prepare_for_create(self, obj: Message) -> None:
        svc = _svc(obj)
        super().prepare_for_create(svc)
        if not svc.spec.type:
            svc.spec.type = "ClusterIP"
        alloc = _Allocation(svc)
        self._allocate(svc, alloc)
        _ALLOCATION.set(alloc)

    def claims_for_create(self, obj: Message) -> Sequence[Claim]:
        svc = _svc(obj)
        owner = f"{svc.metadata.namespace}/{svc.metadata.name}".encode()
        return [Claim(key, owner) for key in service_claim_keys(svc)]

    def on_claim_taken(self, obj: Message, key: str) -> bool:
        alloc = _ALLOCATION.get()
        if alloc is None or alloc.obj is not obj or key not in alloc.auto:
            return False  # the user asked for exactly this value: report the conflict
        svc = _svc(obj)
        what = alloc.auto.pop(key)
        alloc.lost.add(key)
        if what == _CLUSTER_IP:
            taken = {k.removeprefix(SERVICE_IP_PREFIX) for k in alloc.lost if k.startswith(SERVICE_IP_PREFIX)}
            ip = self.ips.pick(avoid=taken)
            svc.spec.cluster_ip = ip
            del svc.spec.cluster_ips[:]
            svc.spec.cluster_ips.append(ip)
            alloc.auto[f"{SERVICE_IP_PREFIX}{ip}"] = _CLUSTER_IP
        else:
            lost_ports = {int(k.removeprefix(NODE_PORT_PREFIX)) for k in alloc.lost if k.startswith(NODE_PORT_PREFIX)}
            port = svc.spec.ports[int(what)]
            port.node_port = self.ports.pick(avoid=lost_ports | {p.node_port for p in svc.spec.ports})
            alloc.auto[f"{NODE_PORT_PREFIX}{port.node_port}"] = what
        return True

    def claim_taken_causes(self, obj: Message, key: str) -> list[FieldError]:
        """Why a user-chosen value could not be had, as Kubernetes words it (an Invalid error)."""
        svc = _svc(obj)
        if key.startswith(SERVICE_IP_PREFIX):
            ip = key.removeprefix(SERVICE_IP_PREFIX)
            return [v.invalid("spec.clusterIPs", list(svc.spec.cluster_ips) or [ip],
                              f"failed to allocate IP {ip}: provided IP is already allocated")]
        port = int(key.removeprefix(NODE_PORT_PREFIX))
        index = next((i for i, p in enumerate(svc.spec.ports) if p.node_port == port), 0)
        return [v.invalid(f"spec.ports[{index}].nodePort", port, "provided port is already allocated")]

    def releases_for_delete(self, obj: Message) -> Sequence[str]:
        return service_claim_keys(_svc(obj))

    # --- update ----------------------------------------------------------

    def prepare_for_update(self, new: Message, old: Message, subresource: str = "") -> None:
        super().prepare_for_update(new, old)
        nsvc, osvc = _svc(new), _svc(old)
        spec, ospec = nsvc.spec, osvc.spec
        if not spec.type:
            spec.type = "ClusterIP"
        # Values the server allocated survive an update that leaves them out (kubectl apply, PUT of a manifest).
        if spec.type != "ExternalName" and not spec.cluster_ip and not spec.cluster_ips and ospec.cluster_ip:
            spec.cluster_ip = ospec.cluster_ip
            spec.cluster_ips.extend(ospec.cluster_ips or [ospec.cluster_ip])
        if _needs_node_ports(spec):
            by_port = {(p.port, p.protocol or "TCP"): p.node_port for p in ospec.ports if p.node_port}
            for port in spec.ports:
                if port.node_port == 0:
                    port.node_port = by_port.get((port.port, port.protocol or "TCP"), 0)
        # Fields that only make sense for the old type go when the type changes (unless the user changed them).
        if spec.type != ospec.type:
            if not _needs_node_ports(spec):
                old_ports = {p.node_port for p in ospec.ports}
                for port in spec.ports:
                    if port.node_port in old_ports:
                        port.node_port = 0
                if spec.type == "ClusterIP" and spec.external_traffic_policy == ospec.external_traffic_policy:
                    spec.external_traffic_policy = ""
            if spec.type == "ExternalName" and spec.cluster_ip == ospec.cluster_ip:
                spec.cluster_ip = ""
                del spec.cluster_ips[:]
                del spec.ip_families[:]
                spec.ClearField("ip_family_policy")
                spec.ClearField("internal_traffic_policy")
        alloc = _Allocation(nsvc)
        self._allocate(nsvc, alloc)
        _ALLOCATION.set(alloc)

    def claims_for_update(self, new: Message, old: Message) -> Sequence[Claim]:
        """Allocations a type change adds (NodePort, or leaving ExternalName); needs the store to call it."""
        have = set(service_claim_keys(_svc(old)))
        svc = _svc(new)
        owner = f"{svc.metadata.namespace}/{svc.metadata.name}".encode()
        return [Claim(k, owner) for k in service_claim_keys(svc) if k not in have]

    def releases_for_update(self, new: Message, old: Message) -> Sequence[str]:
        """Allocations an update gives up (to be deleted in the same transaction)."""
        keep = set(service_claim_keys(_svc(new)))
        return [k for k in service_claim_keys(_svc(old)) if k not in keep]

    # --- defaulting and validation ---------------------------------------

    def default(self, obj: Message) -> None:
        defaults.default_service(_svc(obj))

    def validate(self, obj: Message) -> list[FieldError]:
        return self.validate_meta(obj) + self._validate_spec(_svc(obj).spec)

    def validate_update(self, new: Message, old: Message, subresource: str = "") -> list[FieldError]:
        errs = self.validate(new)
        spec, ospec = _svc(new).spec, _svc(old).spec
        if "ExternalName" not in (spec.type, ospec.type) and ospec.cluster_ip and spec.cluster_ip != ospec.cluster_ip:
            errs.append(v.invalid("spec.clusterIP", spec.cluster_ip, "field is immutable"))
        return errs

    def _validate_spec(self, spec: core_v1.ServiceSpec) -> list[FieldError]:
        errs = v.one_of("spec.type", spec.type, SERVICE_TYPES)
        headless = spec.cluster_ip == "None"
        if spec.type == "ExternalName":
            errs.extend(self._validate_external_name(spec))
        elif not spec.ports and not headless:
            errs.append(v.required("spec.ports"))
        errs.extend(self._validate_cluster_ip(spec))
        errs.extend(self._validate_ports(spec))
        errs.extend(names.validate_labels(spec.selector, "spec.selector"))
        errs.extend(v.one_of("spec.sessionAffinity", spec.session_affinity, ("ClientIP", "None")))
        if spec.session_affinity == "ClientIP":
            timeout = spec.session_affinity_config.client_ip.timeout_seconds
            if not 0 < timeout <= 86400:
                errs.append(v.invalid("spec.sessionAffinityConfig.clientIP.timeoutSeconds", timeout,
                                      "must be greater than 0 and less than 86400"))
        elif spec.HasField("session_affinity_config"):
            errs.append(v.forbidden("spec.sessionAffinityConfig",
                                    "must not be set when `sessionAffinity` is None"))
        if spec.external_traffic_policy:
            if spec.type not in ("NodePort", "LoadBalancer"):
                errs.append(v.invalid("spec.externalTrafficPolicy", spec.external_traffic_policy,
                                      "may only be set when `type` is 'NodePort' or 'LoadBalancer'"))
            else:
                errs.extend(v.one_of("spec.externalTrafficPolicy", spec.external_traffic_policy,
                                     ("Cluster", "Local")))
        if spec.HasField("internal_traffic_policy"):
            errs.extend(v.one_of("spec.internalTrafficPolicy", spec.internal_traffic_policy, ("Cluster", "Local")))
        for i, fam in enumerate(spec.ip_families):
            errs.extend(v.one_of(f"spec.ipFamilies[{i}]", fam, ("IPv4", "IPv6")))
        if spec.HasField("ip_family_policy"):
            errs.extend(v.one_of("spec.ipFamilyPolicy", spec.ip_family_policy,
                                 ("PreferDualStack", "RequireDualStack", "SingleStack")))
        for i, ip in enumerate(spec.external_ips):
            errs.extend(v.validate_ip(f"spec.externalIPs[{i}]", ip))
        return errs

    def _validate_external_name(self, spec: core_v1.ServiceSpec) -> list[FieldError]:
        if not spec.external_name:
            return [v.required("spec.externalName")]
        errs = v.check("spec.externalName", spec.external_name,
                       names.is_dns1123_subdomain(spec.external_name.removesuffix(".")))
        if spec.cluster_ip:
            errs.append(v.forbidden("spec.clusterIP", "may not be set for ExternalName services"))
        return errs

    def _validate_cluster_ip(self, spec: core_v1.ServiceSpec) -> list[FieldError]:
        ip = spec.cluster_ip
        errs: list[FieldError] = []
        if spec.cluster_ips and ip and spec.cluster_ips[0] != ip:
            errs.append(v.invalid("spec.clusterIPs[0]", spec.cluster_ips[0], "must match `clusterIP` if specified"))
        if not ip or spec.type == "ExternalName":
            return errs
        if ip == "None":
            if spec.type in ("NodePort", "LoadBalancer"):
                errs.append(v.invalid("spec.clusterIP", ip, "may not be set to 'None' for LoadBalancer or NodePort "
                                                            "services"))
            return errs
        bad = names.is_valid_ip(ip)
        if bad:
            return errs + v.check("spec.clusterIP", ip, bad)
        if not v.ip_in_network(ip, self.ips.network):
            errs.append(v.invalid("spec.clusterIP", ip, "provided IP is not in the valid range. The range of valid "
                                                        f"IPs is {self.ips.network}"))
        return errs

    def _validate_ports(self, spec: core_v1.ServiceSpec) -> list[FieldError]:
        errs: list[FieldError] = []
        port_names: set[str] = set()
        seen_ports: set[tuple[int, str]] = set()
        seen_node_ports: set[tuple[int, str]] = set()
        for i, p in enumerate(spec.ports):
            path = f"spec.ports[{i}]"
            if len(spec.ports) > 1 and not p.name:
                errs.append(v.required(f"{path}.name"))
            elif p.name:
                errs.extend(v.check(f"{path}.name", p.name, names.is_dns1123_label(p.name)))
                if p.name in port_names:
                    errs.append(v.duplicate(f"{path}.name", p.name))
                port_names.add(p.name)
            errs.extend(v.validate_port_number(f"{path}.port", p.port))
            errs.extend(v.one_of(f"{path}.protocol", p.protocol, v.PROTOCOLS))
            if (p.port, p.protocol) in seen_ports:
                errs.append(v.duplicate(path, f"{p.port}/{p.protocol}"))
            seen_ports.add((p.port, p.protocol))
            if p.target_port:
                errs.extend(v.validate_int_or_name_port(f"{path}.targetPort", p.target_port))
            if p.node_port:
                npath = f"{path}.nodePort"
                if spec.type in ("ClusterIP", "ExternalName"):
                    errs.append(v.forbidden(npath, f"may not be used when `type` is '{spec.type}'"))
                elif not self.ports.contains(p.node_port):
                    errs.append(v.invalid(npath, p.node_port, "provided port is not in the valid range. The range of "
                                                              f"valid ports is {self.ports.low}-{self.ports.high}"))
                if (p.node_port, p.protocol) in seen_node_ports:
                    errs.append(v.duplicate(npath, p.node_port))
                seen_node_ports.add((p.node_port, p.protocol))
        return errs


def _svc(obj: Message) -> core_v1.Service:
    assert isinstance(obj, core_v1.Service)
    return obj


# ============================================================================================
# Nodes
# ============================================================================================


class NodeStrategy(Strategy):
    extra_fields = ("spec.unschedulable",)

    def prepare_for_create(self, obj: Message) -> None:
        """The kubelet registers its node with a status already filled in: keep it."""

    def default(self, obj: Message) -> None:
        assert isinstance(obj, core_v1.Node)
        defaults.default_node(obj)

    def validate(self, obj: Message) -> list[FieldError]:
        assert isinstance(obj, core_v1.Node)
        errs = self.validate_meta(obj)
        spec = obj.spec
        if spec.pod_cidr:
            errs.extend(v.check("spec.podCIDR", spec.pod_cidr, names.is_valid_cidr(spec.pod_cidr)))
        for i, cidr in enumerate(spec.pod_cidrs):
            errs.extend(v.check(f"spec.podCIDRs[{i}]", cidr, names.is_valid_cidr(cidr)))
        if spec.pod_cidr and spec.pod_cidrs and spec.pod_cidrs[0] != spec.pod_cidr:
            errs.append(v.invalid("spec.podCIDRs[0]", spec.pod_cidrs[0], "must match `podCIDR`"))
        seen: set[tuple[str, str]] = set()
        for i, taint in enumerate(spec.taints):
            errs.extend(v.validate_taint(taint, f"spec.taints[{i}]"))
            if (taint.key, taint.effect) in seen:
                errs.append(v.duplicate(f"spec.taints[{i}]", f"{taint.key}:{taint.effect}"))
            seen.add((taint.key, taint.effect))
        errs.extend(_validate_resource_map("status.capacity", obj.status.capacity))
        errs.extend(_validate_resource_map("status.allocatable", obj.status.allocatable))
        return errs

    def validate_update(self, new: Message, old: Message, subresource: str = "") -> list[FieldError]:
        assert isinstance(new, core_v1.Node) and isinstance(old, core_v1.Node)
        errs = self.validate(new)
        # Node IPAM assigns the pod CIDR once; changing it would strand the pods' addresses.
        if old.spec.pod_cidr and new.spec.pod_cidr != old.spec.pod_cidr:
            errs.append(v.forbidden("spec.podCIDR", "node updates may not change podCIDR except from \"\" to "
                                                    "valid"))
        return errs

    def validate_status_update(self, new: Message, old: Message) -> list[FieldError]:
        assert isinstance(new, core_v1.Node)
        errs = _validate_resource_map("status.capacity", new.status.capacity)
        errs.extend(_validate_resource_map("status.allocatable", new.status.allocatable))
        for i, addr in enumerate(new.status.addresses):
            if not addr.address:
                errs.append(v.required(f"status.addresses[{i}].address"))
        return errs


def _validate_resource_map(path: str, resources: Any) -> list[FieldError]:
    errs: list[FieldError] = []
    v.parse_resource_list(path, resources, errs)
    return errs


# ============================================================================================
# Namespaces
# ============================================================================================

FINALIZER_KUBERNETES = "kubernetes"


class NamespaceStrategy(Strategy):
    name_validator = staticmethod(names.is_dns1123_label)
    extra_fields = ("status.phase",)

    def prepare_for_create(self, obj: Message) -> None:
        ns = _ns(obj)
        ns.ClearField("status")
        ns.status.phase = "Active"
        # The namespace controller empties the namespace before this finalizer goes away.
        if FINALIZER_KUBERNETES not in ns.spec.finalizers:
            ns.spec.finalizers.append(FINALIZER_KUBERNETES)

    def prepare_for_update(self, new: Message, old: Message, subresource: str = "") -> None:
        super().prepare_for_update(new, old)
        # Only the finalize subresource (the namespace controller's last step) changes spec.finalizers.
        if subresource != "finalize":
            del _ns(new).spec.finalizers[:]
            _ns(new).spec.finalizers.extend(_ns(old).spec.finalizers)

    def validate(self, obj: Message) -> list[FieldError]:
        ns = _ns(obj)
        errs = self.validate_meta(obj)
        for i, fin in enumerate(ns.spec.finalizers):
            errs.extend(v.check(f"spec.finalizers[{i}]", fin, names.is_qualified_name(fin)))
        return errs

    def validate_status_update(self, new: Message, old: Message) -> list[FieldError]:
        return v.one_of("status.phase", _ns(new).status.phase, ("Active", "Terminating"), allow_empty=True)

    def on_graceful_delete(self, obj: Message) -> None:
        _ns(obj).status.phase = "Terminating"

    def delete_blocked(self, obj: Message) -> bool:
        """Deletion leaves the namespace Terminating while spec.finalizers remain (store hook)."""
        return bool(_ns(obj).spec.finalizers)



class FinalizeSubresource(Subresource):
    """namespaces/finalize: replaces spec.finalizers, the namespace controller's last step.

    Once the namespace is empty the controller removes the `kubernetes`
    finalizer here; the store then deletes a namespace that is being deleted
    and has no finalizers left.
    """

    name = "finalize"
    verbs = ("update",)

    async def update(self, store: StoreView, attrs: Attributes, body: Message) -> Message:
        finalizers = list(_ns(body).spec.finalizers)
        precondition = int(_ns(body).metadata.resource_version or 0)

        async def mutate(current: HasObj) -> Message:
            ns = core_v1.Namespace()
            ns.CopyFrom(_ns(current.obj))
            del ns.spec.finalizers[:]
            ns.spec.finalizers.extend(finalizers)
            return ns

        return await store.guaranteed_update(dataclasses.replace(attrs, subresource="finalize"), attrs.name, mutate,
                                             precondition=precondition)


def _ns(obj: Message) -> core_v1.Namespace:
    assert isinstance(obj, core_v1.Namespace)
    return obj


# ============================================================================================
# ConfigMaps and Secrets
# ============================================================================================

IMMUTABLE_DETAIL = "field is immutable when `immutable` is set"
_SECRET_REQUIRED_KEYS = {
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
}
SERVICE_ACCOUNT_NAME_ANNOTATION = "kubernetes.io/service-account.name"


def _validate_immutable(new: Any, old: Any, data_fields: Sequence[tuple[str, str]]) -> list[FieldError]:
    """Once ``immutable`` is true, neither it nor the data may change."""
    if not (old.HasField("immutable") and old.immutable):
        return []
    errs: list[FieldError] = []
    if not (new.HasField("immutable") and new.immutable):
        errs.append(v.forbidden("immutable", IMMUTABLE_DETAIL))
    for attr, path in data_fields:
        if dict(getattr(new, attr)) != dict(getattr(old, attr)):
            errs.append(v.forbidden(path, IMMUTABLE_DETAIL))
    return errs


class ConfigMapStrategy(Strategy):
    def validate(self, obj: Message) -> list[FieldError]:
        assert isinstance(obj, core_v1.ConfigMap)
        errs = self.validate_meta(obj)
        errs.extend(v.validate_data_keys("data", obj.data))
        errs.extend(v.validate_data_keys("binaryData", obj.binary_data))
        for key in sorted(set(obj.data) & set(obj.binary_data)):
            errs.append(v.invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
        size = sum(len(k) + len(val.encode()) for k, val in obj.data.items())
        size += sum(len(k) + len(val) for k, val in obj.binary_data.items())
        if size > v.MAX_DATA_BYTES:
            errs.append(v.too_long("data", v.MAX_DATA_BYTES))
        return errs

    def validate_update(self, new: Message, old: Message, subresource: str = "") -> list[FieldError]:
        return self.validate(new) + _validate_immutable(new, old, (("data", "data"), ("binary_data", "binaryData")))


class SecretStrategy(Strategy):
    extra_fields = ("type",)

    @staticmethod
    def _merge_string_data(obj: Message) -> None:
        # stringData is a write-only convenience: it wins over data and is never stored.
        assert isinstance(obj, core_v1.Secret)
        for key, value in obj.string_data.items():
            obj.data[key] = value.encode()
        obj.ClearField("string_data")

    def prepare_for_create(self, obj: Message) -> None:
        self._merge_string_data(obj)

    def prepare_for_update(self, new: Message, old: Message, subresource: str = "") -> None:
        self._merge_string_data(new)

    def default(self, obj: Message) -> None:
        assert isinstance(obj, core_v1.Secret)
        defaults.default_secret(obj)

    def validate(self, obj: Message) -> list[FieldError]:
        assert isinstance(obj, core_v1.Secret)
        errs = self.validate_meta(obj)
        errs.extend(v.validate_data_keys("data", obj.data))
        size = sum(len(val) for val in obj.data.values())
        if size > v.MAX_DATA_BYTES:
            errs.append(v.too_long("data", v.MAX_DATA_BYTES))
        for key in _SECRET_REQUIRED_KEYS.get(obj.type, ()):
            if key not in obj.data:
                errs.append(v.required(f"data[{key}]"))
        if obj.type == "kubernetes.io/service-account-token" and \
                not obj.metadata.annotations.get(SERVICE_ACCOUNT_NAME_ANNOTATION):
            errs.append(v.required(f"metadata.annotations[{SERVICE_ACCOUNT_NAME_ANNOTATION}]"))
        if obj.type == "kubernetes.io/basic-auth" and not ({"username", "password"} & set(obj.data)):
            errs.append(v.required("data[username]", "either username or password is required"))
        return errs

    def validate_update(self, new: Message, old: Message, subresource: str = "") -> list[FieldError]:
        assert isinstance(new, core_v1.Secret) and isinstance(old, core_v1.Secret)
        errs = self.validate(new)
        if new.type != old.type:
            errs.append(v.invalid("type", new.type, "field is immutable"))
        return errs + _validate_immutable(new, old, (("data", "data"),))


# ============================================================================================
# Events, Endpoints
# ============================================================================================


class EventStrategy(Strategy):
    allow_create_on_update = True

    def __init__(self, rt: ResourceType, options: Options) -> None:
        super().__init__(rt)
        self._ttl = options.event_ttl_seconds

    def ttl_seconds(self, obj: Message) -> int:
        # Each write (a deduplicated Event's count going up) restarts the clock, as in Kubernetes.
        return self._ttl
    extra_fields = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                    "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                    "reason", "reportingComponent", "source", "type")

    def field_set(self, obj: Message) -> dict[str, str]:
        assert isinstance(obj, core_v1.Event)
        fields = super().field_set(obj)
        # "source" selects on the reporting component, as in Kubernetes (source is an object).
        fields["source"] = obj.source.component
        return fields

    def validate(self, obj: Message) -> list[FieldError]:
        assert isinstance(obj, core_v1.Event)
        errs = self.validate_meta(obj)
        involved = obj.involved_object
        if not involved.kind:
            errs.append(v.required("involvedObject.kind"))
        if not involved.name:
            errs.append(v.required("involvedObject.name"))
        if involved.namespace and involved.namespace != obj.metadata.namespace:
            errs.append(v.invalid("involvedObject.namespace", involved.namespace, "does not match event.namespace"))
        errs.extend(v.one_of("type", obj.type, ("Normal", "Warning"), allow_empty=True))
        if obj.count < 0:
            errs.append(v.invalid("count", obj.count, "must be greater than or equal to 0"))
        return errs


class EndpointsStrategy(Strategy):
    allow_create_on_update = True
    def default(self, obj: Message) -> None:
        assert isinstance(obj, core_v1.Endpoints)
        defaults.default_endpoints(obj)

    def validate(self, obj: Message) -> list[FieldError]:
        assert isinstance(obj, core_v1.Endpoints)
        errs = self.validate_meta(obj)
        for i, subset in enumerate(obj.subsets):
            path = f"subsets[{i}]"
            if not subset.addresses and not subset.not_ready_addresses:
                errs.append(v.required(path, "must specify `addresses` or `notReadyAddresses`"))
            for group, addresses in (("addresses", subset.addresses), ("notReadyAddresses",
                                                                         subset.not_ready_addresses)):
                for j, addr in enumerate(addresses):
                    errs.extend(_validate_endpoint_address(addr, f"{path}.{group}[{j}]"))
            port_names: set[str] = set()
            for j, port in enumerate(subset.ports):
                ppath = f"{path}.ports[{j}]"
                if len(subset.ports) > 1 and not port.name:
                    errs.append(v.required(f"{ppath}.name"))
                elif port.name:
                    errs.extend(v.check(f"{ppath}.name", port.name, names.is_dns1123_label(port.name)))
                    if port.name in port_names:
                        errs.append(v.duplicate(f"{ppath}.name", port.name))
                    port_names.add(port.name)
                errs.extend(v.validate_port_number(f"{ppath}.port", port.port))
                errs.extend(v.one_of(f"{ppath}.protocol", port.protocol, v.PROTOCOLS))
        return errs


def _validate_endpoint_address(addr: core_v1.EndpointAddress, path: str) -> list[FieldError]:
    errs = v.validate_ip(f"{path}.ip", addr.ip)
    if not errs:
        ip = ipaddress.ip_address(addr.ip)
        if ip.is_unspecified:
            errs.append(v.invalid(f"{path}.ip", addr.ip, "may not be unspecified (0.0.0.0)"))
        elif ip.is_loopback:
            errs.append(v.invalid(f"{path}.ip", addr.ip, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
        elif ip.is_link_local:
            errs.append(v.invalid(f"{path}.ip", addr.ip, "may not be in the link-local range (169.254.0.0/16, "
                                                         "fe80::/10)"))
    if addr.hostname:
        errs.extend(v.check(f"{path}.hostname", addr.hostname, names.is_dns1123_label(addr.hostname)))
    if addr.HasField("node_name") and addr.node_name:
        errs.extend(v.check(f"{path}.nodeName", addr.node_name, names.is_dns1123_subdomain(addr.node_name)))
    return errs


# ============================================================================================
# The table
# ============================================================================================


def _plain(cls: type[Strategy]) -> StrategyFactory:
    return lambda rt, _options: cls(rt)


STRATEGIES: dict[tuple[str, str], StrategyFactory] = {
    ("", "pods"): _plain(PodStrategy),
    ("", "services"): ServiceStrategy,
    ("", "nodes"): _plain(NodeStrategy),
    ("", "namespaces"): _plain(NamespaceStrategy),
    ("", "configmaps"): _plain(ConfigMapStrategy),
    ("", "secrets"): _plain(SecretStrategy),
    ("", "events"): EventStrategy,
    ("", "endpoints"): _plain(EndpointsStrategy),
    # ServiceAccounts need nothing beyond metadata validation (DNS-1123 subdomain names).
    ("", "serviceaccounts"): _plain(Strategy),
}

SUBRESOURCES: dict[tuple[str, str], dict[str, SubresourceFactory]] = {
    ("", "pods"): {"binding": BindingSubresource},
    ("", "namespaces"): {"finalize": FinalizeSubresource},
}
