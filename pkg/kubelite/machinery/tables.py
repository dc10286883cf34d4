"""The columns of every kind, as ``kubelite get`` prints them and the API server's Table responses carry them.

One source for both, so that ``kubectl get`` against the REST API and
``kubelite get`` show the same columns: rows are computed from the Kubernetes
JSON form of an object (what ``codec.encode`` returns), not from the protobuf
message, so columns are defined in Kubernetes' own field names and an empty
field simply reads as absent. Each kind registers a TableSpec keyed by
(group, kind); kinds without one get NAME and AGE. Wide columns are what the
Table protocol calls priority 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]
RowFn = Callable[[Obj, datetime], list[str]]

NONE = "<none>"


# --- AGE --------------------------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """kubectl's AGE: precise while young (``3m20s``), coarser as it grows (``4h``, ``2d``, ``3y``).

    Clock skew of up to two seconds reads as "just now"; anything further in
    the future is ``<invalid>``.
    """
    secs = int(seconds)  # truncates toward zero, like a Go duration's Seconds()
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 120:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        rest = secs % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = secs // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    years = days // 365
    if hours < 24 * 365 * 8:
        rest = days % 365
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{years}y"


def parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


# Passed as ``now``, it makes every duration cell a mark (``since``) that ``resolve_times`` formats
# later: a row is then a function of the object alone, which the API server caches per object state.
DEFERRED = datetime.min.replace(tzinfo=UTC)
_MARK = "\x00"


def since(ts: datetime, now: datetime) -> str:
    """How long ago ``ts`` was, as kubectl prints it; with now=DEFERRED a mark for resolve_times."""
    if now is DEFERRED:
        return f"{_MARK}{ts.timestamp()!r}{_MARK}"
    return human_duration((now - ts).total_seconds())


def resolve_times(cell: str, now: float) -> str:
    """A cell computed with DEFERRED, its durations formatted for ``now`` (a POSIX timestamp)."""
    if _MARK not in cell:
        return cell
    parts = cell.split(_MARK)  # text, stamp, text, stamp, ..., text
    for i in range(1, len(parts), 2):
        parts[i] = human_duration(now - float(parts[i]))
    return "".join(parts)


def age(value: Any, now: datetime) -> str:
    ts = parse_time(value)
    if ts is None:
        return "<unknown>"
    return since(ts, now)


# --- field helpers ----------------------------------------------------------------------------------------


def dig(obj: Any, *path: str | int, default: Any = None) -> Any:
    """obj["a"]["b"][0] with a default for any missing step (encoded objects omit empty fields).

    Most steps a Table row takes miss (no lastState, no deletionTimestamp), so
    a miss must be cheap: looked up, never raised and caught (an exception
    costs more than the dozen lookups a pod's row makes).
    """
    cur = obj
    for step in path:
        if type(cur) is dict:
            cur = cur.get(step)
        elif type(cur) is list and type(step) is int and -len(cur) <= step < len(cur):
            cur = cur[step]
        else:
            return default
        if cur is None:
            return default
    return cur


def name_of(obj: Obj) -> str:
    return str(dig(obj, "metadata", "name", default=""))


def namespace_of(obj: Obj) -> str:
    return str(dig(obj, "metadata", "namespace", default=""))


def format_labels(labels: dict[str, str] | None) -> str:
    if not labels:
        return NONE
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def format_selector(selector: Obj | None) -> str:
    """A LabelSelector in kubectl's string form (``app=web,tier in (a,b)``)."""
    if not selector:
        return NONE
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) if parts else NONE


def _containers_images(template_spec: Obj) -> tuple[str, str]:
    containers = template_spec.get("containers") or []
    names = ",".join(c.get("name", "") for c in containers) or NONE
    images = ",".join(c.get("image", "") for c in containers) or NONE
    return names, images


def _count(value: Any) -> str:
    return str(int(value or 0))


# --- per-kind tables --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableSpec:
    """Columns of one kind. ``row`` yields the cells after NAME (AGE included where it belongs)."""

    headers: tuple[str, ...]
    row: RowFn
    wide_headers: tuple[str, ...] = ()
    wide_row: RowFn | None = None
    # Whether the first column is the object's name (events lead with LAST SEEN instead).
    name_column: bool = True
    sort_key: Callable[[Obj], Any] | None = None


class TableRegistry:
    """TableSpecs by (group, kind); a missing kind falls back to NAME AGE."""

    def __init__(self) -> None:
        self._specs: dict[tuple[str, str], TableSpec] = {}

    def register(self, group: str, kind: str, spec: TableSpec) -> None:
        self._specs[(group, kind)] = spec

    def lookup(self, group: str, kind: str) -> TableSpec:
        return self._specs.get((group, kind), GENERIC)


def _generic_row(obj: Obj, now: datetime) -> list[str]:
    return [age(dig(obj, "metadata", "creationTimestamp"), now)]


GENERIC = TableSpec(headers=("NAME", "AGE"), row=_generic_row)


def _pod_status(pod: Obj) -> tuple[str, int, int, int, datetime | None]:
    """(status word, ready, total, restarts, last restart) as ``kubectl get pods`` reports them.

    The word is the most telling thing about the pod: an init container's
    trouble, else the last app container's waiting/terminated reason, else the
    phase; ``Terminating`` once deletion began.
    """
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    total = len(spec.get("containers") or [])
    reason = status.get("reason") or status.get("phase") or "Pending"
    restarts = 0
    ready = 0
    last_restart: datetime | None = None

    def note_restart(cs: Obj) -> None:
        nonlocal last_restart
        finished = parse_time(dig(cs, "lastState", "terminated", "finishedAt"))
        if finished and (last_restart is None or finished > last_restart):
            last_restart = finished

    init_specs = spec.get("initContainers") or []
    initializing = False
    for i, ics in enumerate(status.get("initContainerStatuses") or []):
        restarts += int(ics.get("restartCount") or 0)
        note_restart(ics)
        state = ics.get("state") or {}
        terminated = state.get("terminated")
        waiting = state.get("waiting")
        if terminated is not None and int(terminated.get("exitCode") or 0) == 0:
            continue
        if terminated is not None:
            if terminated.get("reason"):
                reason = "Init:" + terminated["reason"]
            elif terminated.get("signal"):
                reason = f"Init:Signal:{terminated['signal']}"
            else:
                reason = f"Init:ExitCode:{terminated.get('exitCode', 0)}"
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing:
        restarts = 0
        last_restart = None
        running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += int(cs.get("restartCount") or 0)
            note_restart(cs)
            state = cs.get("state") or {}
            waiting = state.get("waiting")
            terminated = state.get("terminated")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated is not None:
                if terminated.get("signal"):
                    reason = f"Signal:{terminated['signal']}"
                else:
                    reason = f"ExitCode:{terminated.get('exitCode', 0)}"
            elif cs.get("ready") and state.get("running") is not None:
                running = True
                ready += 1
        if reason == "Completed" and running:
            conditions = status.get("conditions") or []
            pod_ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
            reason = "Running" if pod_ready else "NotReady"

    if dig(pod, "metadata", "deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif status.get("phase") not in ("Succeeded", "Failed"):
            reason = "Terminating"
    return reason, ready, total, restarts, last_restart


def _pod_row(pod: Obj, now: datetime) -> list[str]:
    reason, ready, total, restarts, last = _pod_status(pod)
    restart_text = str(restarts)
    if restarts and last is not None:
        restart_text = f"{restarts} ({since(last, now)} ago)"
    return [f"{ready}/{total}", reason, restart_text, age(dig(pod, "metadata", "creationTimestamp"), now)]


def _pod_wide(pod: Obj, now: datetime) -> list[str]:
    gates = dig(pod, "spec", "readinessGates", default=[])
    conditions = {c.get("type"): c.get("status") for c in dig(pod, "status", "conditions", default=[])}
    if gates:
        met = sum(1 for g in gates if conditions.get(g.get("conditionType")) == "True")
        gates_text = f"{met}/{len(gates)}"
    else:
        gates_text = NONE
    return [
        dig(pod, "status", "podIP", default="") or NONE,
        dig(pod, "spec", "nodeName", default="") or NONE,
        dig(pod, "status", "nominatedNodeName", default="") or NONE,
        gates_text,
    ]


def _deployment_row(d: Obj, now: datetime) -> list[str]:
    desired = int(dig(d, "spec", "replicas", default=0))
    return [
        f"{int(dig(d, 'status', 'readyReplicas', default=0))}/{desired}",
        _count(dig(d, "status", "updatedReplicas")),
        _count(dig(d, "status", "availableReplicas")),
        age(dig(d, "metadata", "creationTimestamp"), now),
    ]


def _workload_wide(obj: Obj, now: datetime) -> list[str]:
    names, images = _containers_images(dig(obj, "spec", "template", "spec", default={}))
    return [names, images, format_selector(dig(obj, "spec", "selector"))]


def _replicaset_row(rs: Obj, now: datetime) -> list[str]:
    return [
        _count(dig(rs, "spec", "replicas")),
        _count(dig(rs, "status", "replicas")),
        _count(dig(rs, "status", "readyReplicas")),
        age(dig(rs, "metadata", "creationTimestamp"), now),
    ]


def _service_external_ip(svc: Obj) -> str:
    spec = svc.get("spec") or {}
    kind = spec.get("type") or "ClusterIP"
    external = list(spec.get("externalIPs") or [])
    if kind == "ExternalName":
        return spec.get("externalName") or NONE
    if kind == "LoadBalancer":
        ingress = dig(svc, "status", "loadBalancer", "ingress", default=[])
        found = [i.get("ip") or i.get("hostname") for i in ingress if i.get("ip") or i.get("hostname")]
        found += external
        return ",".join(found) if found else "<pending>"
    return ",".join(external) if external else NONE


def _service_ports(spec: Obj) -> str:
    parts = []
    for p in spec.get("ports") or []:
        proto = p.get("protocol") or "TCP"
        if p.get("nodePort"):
            parts.append(f"{p.get('port')}:{p['nodePort']}/{proto}")
        else:
            parts.append(f"{p.get('port')}/{proto}")
    return ",".join(parts) if parts else NONE


def _service_row(svc: Obj, now: datetime) -> list[str]:
    spec = svc.get("spec") or {}
    return [
        spec.get("type") or "ClusterIP",
        spec.get("clusterIP") or NONE,
        _service_external_ip(svc),
        _service_ports(spec),
        age(dig(svc, "metadata", "creationTimestamp"), now),
    ]


def _service_wide(svc: Obj, now: datetime) -> list[str]:
    return [format_labels(dig(svc, "spec", "selector"))]


def node_status(node: Obj) -> str:
    status = "Unknown"
    for cond in dig(node, "status", "conditions", default=[]):
        if cond.get("type") == "Ready":
            status = {"True": "Ready", "False": "NotReady"}.get(cond.get("status"), "Unknown")
    if dig(node, "spec", "unschedulable", default=False):
        status += ",SchedulingDisabled"
    return status


def node_roles(node: Obj) -> str:
    roles = set()
    for key, value in (dig(node, "metadata", "labels", default={})).items():
        if key.startswith("node-role.kubernetes.io/") and key.partition("/")[2]:
            roles.add(key.partition("/")[2])
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return ",".join(sorted(roles)) if roles else NONE


def _node_row(node: Obj, now: datetime) -> list[str]:
    return [
        node_status(node),
        node_roles(node),
        age(dig(node, "metadata", "creationTimestamp"), now),
        dig(node, "status", "nodeInfo", "kubeletVersion", default="") or "",
    ]


def _node_address(node: Obj, kind: str) -> str:
    for addr in dig(node, "status", "addresses", default=[]):
        if addr.get("type") == kind:
            return str(addr.get("address", "")) or NONE
    return NONE


def _node_wide(node: Obj, now: datetime) -> list[str]:
    info = dig(node, "status", "nodeInfo", default={})
    return [
        _node_address(node, "InternalIP"),
        _node_address(node, "ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def _namespace_row(ns: Obj, now: datetime) -> list[str]:
    return [dig(ns, "status", "phase", default="") or "Active", age(dig(ns, "metadata", "creationTimestamp"), now)]


def format_endpoints(ep: Obj, limit: int = 3) -> str:
    addrs: list[str] = []
    for subset in ep.get("subsets") or []:
        ports = subset.get("ports") or []
        for a in subset.get("addresses") or []:
            ip = a.get("ip", "")
            if ports:
                addrs.extend(f"{ip}:{p.get('port')}" for p in ports)
            else:
                addrs.append(ip)
    if not addrs:
        return NONE
    text = ",".join(addrs[:limit])
    if len(addrs) > limit:
        text += f" + {len(addrs) - limit} more..."
    return text


def _endpoints_row(ep: Obj, now: datetime) -> list[str]:
    return [format_endpoints(ep), age(dig(ep, "metadata", "creationTimestamp"), now)]


def _configmap_row(cm: Obj, now: datetime) -> list[str]:
    n = len(cm.get("data") or {}) + len(cm.get("binaryData") or {})
    return [str(n), age(dig(cm, "metadata", "creationTimestamp"), now)]


def _secret_row(s: Obj, now: datetime) -> list[str]:
    n = len(s.get("data") or {}) + len(s.get("stringData") or {})
    return [s.get("type") or "Opaque", str(n), age(dig(s, "metadata", "creationTimestamp"), now)]


def _serviceaccount_row(sa: Obj, now: datetime) -> list[str]:
    return [str(len(sa.get("secrets") or [])), age(dig(sa, "metadata", "creationTimestamp"), now)]


def event_last_seen(ev: Obj) -> Any:
    return (ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp")
            or dig(ev, "metadata", "creationTimestamp"))


def _event_row(ev: Obj, now: datetime) -> list[str]:
    involved = ev.get("involvedObject") or {}
    return [
        age(event_last_seen(ev), now),
        ev.get("type") or "",
        ev.get("reason") or "",
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        ev.get("message") or "",
    ]


def _event_wide(ev: Obj, now: datetime) -> list[str]:
    source = ev.get("source") or {}
    src = source.get("component") or ev.get("reportingComponent") or ""
    if source.get("host"):
        src = f"{src}, {source['host']}"
    return [
        src or NONE,
        dig(ev, "involvedObject", "fieldPath", default="") or "",
        age(ev.get("firstTimestamp") or ev.get("eventTime") or dig(ev, "metadata", "creationTimestamp"), now),
        str(ev.get("count") or 1),
        name_of(ev),
    ]


def _event_sort_key(ev: Obj) -> Any:
    ts = parse_time(event_last_seen(ev))
    return ts or datetime.min.replace(tzinfo=UTC)


def _lease_row(lease: Obj, now: datetime) -> list[str]:
    holder = dig(lease, "spec", "holderIdentity", default="") or ""
    return [holder, age(dig(lease, "metadata", "creationTimestamp"), now)]


TABLES = TableRegistry()
TABLES.register("", "Pod", TableSpec(
    headers=("NAME", "READY", "STATUS", "RESTARTS", "AGE"), row=_pod_row,
    wide_headers=("IP", "NODE", "NOMINATED NODE", "READINESS GATES"), wide_row=_pod_wide))
TABLES.register("apps", "Deployment", TableSpec(
    headers=("NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"), row=_deployment_row,
    wide_headers=("CONTAINERS", "IMAGES", "SELECTOR"), wide_row=_workload_wide))
TABLES.register("apps", "ReplicaSet", TableSpec(
    headers=("NAME", "DESIRED", "CURRENT", "READY", "AGE"), row=_replicaset_row,
    wide_headers=("CONTAINERS", "IMAGES", "SELECTOR"), wide_row=_workload_wide))
TABLES.register("", "Service", TableSpec(
    headers=("NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"), row=_service_row,
    wide_headers=("SELECTOR",), wide_row=_service_wide))
TABLES.register("", "Node", TableSpec(
    headers=("NAME", "STATUS", "ROLES", "AGE", "VERSION"), row=_node_row,
    wide_headers=("INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"),
    wide_row=_node_wide))
TABLES.register("", "Namespace", TableSpec(headers=("NAME", "STATUS", "AGE"), row=_namespace_row))
TABLES.register("", "Endpoints", TableSpec(headers=("NAME", "ENDPOINTS", "AGE"), row=_endpoints_row))
TABLES.register("", "ConfigMap", TableSpec(headers=("NAME", "DATA", "AGE"), row=_configmap_row))
TABLES.register("", "Secret", TableSpec(headers=("NAME", "TYPE", "DATA", "AGE"), row=_secret_row))
TABLES.register("", "ServiceAccount", TableSpec(headers=("NAME", "SECRETS", "AGE"), row=_serviceaccount_row))
TABLES.register("", "Event", TableSpec(
    headers=("LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"), row=_event_row,
    wide_headers=("SOURCE", "SUBOBJECT", "FIRST SEEN", "COUNT", "NAME"), wide_row=_event_wide,
    name_column=False, sort_key=_event_sort_key))
TABLES.register("coordination.k8s.io", "Lease", TableSpec(headers=("NAME", "HOLDER", "AGE"), row=_lease_row))


def _pdb_row(pdb: Obj, now: datetime) -> list[str]:
    spec = pdb.get("spec") or {}
    return [str(spec.get("minAvailable", "N/A")), str(spec.get("maxUnavailable", "N/A")),
            _count(dig(pdb, "status", "disruptionsAllowed")), age(dig(pdb, "metadata", "creationTimestamp"), now)]


def _priorityclass_row(pc: Obj, now: datetime) -> list[str]:
    return [str(int(pc.get("value") or 0)), "true" if pc.get("globalDefault") else "false",
            age(dig(pc, "metadata", "creationTimestamp"), now),
            str(pc.get("preemptionPolicy") or "PreemptLowerPriority")]


TABLES.register("policy", "PodDisruptionBudget", TableSpec(
    headers=("NAME", "MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS", "AGE"), row=_pdb_row))
TABLES.register("scheduling.k8s.io", "PriorityClass", TableSpec(
    headers=("NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"), row=_priorityclass_row))
