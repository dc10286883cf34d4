"""``kubelite describe``: a human summary of objects, closing with their Events.

Like the tables, describers read the Kubernetes JSON form of an object and
are registered per (group, kind); kinds without one get the common header
plus their remaining fields laid out generically. Events are found by
involvedObject name and namespace through a field selector, then filtered
on kind and uid here, so events of a deleted predecessor with the same name
are not shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubelite.cli.clientset import Session
from kubelite.cli.errors import format_status_error
from kubelite.cli.get import no_resources_message
from kubelite.cli.resources import meta, namespace_for, parse_targets, to_dict
from kubelite.machinery import schedulingreasons
from kubelite.machinery.errors import StatusError
from kubelite.machinery.patch import LAST_APPLIED_ANNOTATION as LAST_APPLIED
from kubelite.machinery.scheme import ResourceType, Scheme
from kubelite.machinery.tables import (
    NONE,
    Obj,
    age,
    dig,
    event_last_seen,
    format_endpoints,
    format_labels,
    format_selector,
    node_roles,
    parse_time,
)

PADDING = 2


@dataclass
class _Line:
    indent: int
    key: str | None  # None: a free-standing line
    value: str


@dataclass
class DescribeWriter:
    """``Key:  value`` lines whose values align within each run of same-indent fields."""

    lines: list[_Line] = field(default_factory=list)

    def field(self, key: str, value: Any, indent: int = 0) -> None:
        text = NONE if value is None or value == "" else str(value)
        self.lines.append(_Line(indent, key, text))

    def section(self, title: str, indent: int = 0) -> None:
        self.lines.append(_Line(indent, None, f"{title}:"))

    def text(self, text: str, indent: int = 0) -> None:
        self.lines.append(_Line(indent, None, text))

    def multi(self, key: str, values: list[str], indent: int = 0) -> None:
        """A field whose values each take a line (labels, annotations)."""
        if not values:
            self.field(key, NONE, indent)
            return
        self.field(key, "\n".join(values), indent)

    def render(self) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(self.lines):
            line = self.lines[i]
            if line.key is None:
                out.append("  " * line.indent + line.value)
                i += 1
                continue
            j = i
            while j < len(self.lines) and self.lines[j].key is not None and self.lines[j].indent == line.indent:
                j += 1
            block = self.lines[i:j]
            width = max(len(b.key or "") + 1 for b in block) + PADDING
            for b in block:
                lead = "  " * b.indent
                first, *rest = b.value.split("\n")
                out.append((lead + f"{b.key}:".ljust(width) + first).rstrip())
                out.extend((" " * (len(lead) + width) + r).rstrip() for r in rest)
            i = j
        return out


Describer = Callable[[DescribeWriter, Obj, datetime], None]


class DescriberRegistry:
    def __init__(self) -> None:
        self._by_kind: dict[tuple[str, str], Describer] = {}

    def register(self, group: str, kind: str, fn: Describer) -> None:
        self._by_kind[(group, kind)] = fn

    def lookup(self, group: str, kind: str) -> Describer:
        return self._by_kind.get((group, kind), describe_generic)


def header(w: DescribeWriter, obj: Obj, namespaced: bool = True) -> None:
    md = obj.get("metadata") or {}
    w.field("Name", md.get("name", ""))
    if namespaced:
        w.field("Namespace", md.get("namespace", ""))
    w.multi("Labels", [f"{k}={v}" for k, v in sorted((md.get("labels") or {}).items())])
    w.multi("Annotations", [f"{k}: {v}" for k, v in sorted((md.get("annotations") or {}).items())
                            if k != LAST_APPLIED])


def _timestamp(value: Any) -> str:
    ts = parse_time(value)
    return ts.strftime("%a, %d %b %Y %H:%M:%S %z") if ts else NONE


def _controller(obj: Obj) -> str | None:
    for ref in dig(obj, "metadata", "ownerReferences", default=[]):
        if ref.get("controller"):
            return f"{ref.get('kind')}/{ref.get('name')}"
    return None


def _container_block(w: DescribeWriter, c: Obj, status: Obj | None, indent: int) -> None:
    w.section(c.get("name", ""), indent)
    i = indent + 1
    if status and status.get("containerID"):
        w.field("Container ID", status["containerID"], i)
    w.field("Image", c.get("image", ""), i)
    if status and status.get("imageID"):
        w.field("Image ID", status["imageID"], i)
    ports = [f"{p.get('containerPort')}/{p.get('protocol') or 'TCP'}" for p in c.get("ports") or []]
    w.field("Port" + ("s" if len(ports) > 1 else ""), ", ".join(ports) or NONE, i)
    if c.get("command"):
        w.multi("Command", list(c["command"]), i)
    if c.get("args"):
        w.multi("Args", list(c["args"]), i)
    if status is not None:
        state = status.get("state") or {}
        if "running" in state:
            w.field("State", "Running", i)
            w.field("  Started", _timestamp(state["running"].get("startedAt")), i)
        elif "waiting" in state:
            w.field("State", "Waiting", i)
            w.field("  Reason", state["waiting"].get("reason", ""), i)
        elif "terminated" in state:
            term = state["terminated"]
            w.field("State", "Terminated", i)
            w.field("  Reason", term.get("reason", ""), i)
            w.field("  Exit Code", term.get("exitCode", 0), i)
        else:
            w.field("State", "Waiting", i)
        w.field("Ready", "True" if status.get("ready") else "False", i)
        w.field("Restart Count", status.get("restartCount", 0), i)
    resources = c.get("resources") or {}
    for title, key in (("Limits", "limits"), ("Requests", "requests")):
        if resources.get(key):
            w.section(title, i)
            for rk, rv in sorted(resources[key].items()):
                w.field(rk, rv, i + 1)
    env = c.get("env") or []
    if env:
        w.section("Environment", i)
        for e in env:
            if "value" in e:
                w.field(e.get("name", ""), e.get("value", ""), i + 1)
            else:
                w.field(e.get("name", ""), "<set from a reference>", i + 1)
    else:
        w.field("Environment", NONE, i)
    mounts = [f"{m.get('mountPath')} from {m.get('name')} ({'ro' if m.get('readOnly') else 'rw'})"
              for m in c.get("volumeMounts") or []]
    w.multi("Mounts", mounts, i)


def describe_pod(w: DescribeWriter, pod: Obj, now: datetime) -> None:
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    header_fields = (("Name", dig(pod, "metadata", "name")), ("Namespace", dig(pod, "metadata", "namespace")))
    for k, v in header_fields:
        w.field(k, v)
    w.field("Service Account", spec.get("serviceAccountName", ""))
    node = spec.get("nodeName", "")
    w.field("Node", f"{node}/{status.get('hostIP', '')}" if node and status.get("hostIP") else node)
    w.field("Start Time", _timestamp(status.get("startTime")))
    w.multi("Labels", [f"{k}={v}" for k, v in sorted((dig(pod, "metadata", "labels", default={})).items())])
    annotations = dig(pod, "metadata", "annotations", default={})
    w.multi("Annotations", [f"{k}: {v}" for k, v in sorted(annotations.items())
                            if k not in (LAST_APPLIED, schedulingreasons.ANNOTATION)])
    if dig(pod, "metadata", "deletionTimestamp"):
        w.field("Status", f"Terminating (lasts {age(dig(pod, 'metadata', 'deletionTimestamp'), now)})")
    else:
        w.field("Status", status.get("phase", ""))
    if status.get("reason"):
        w.field("Reason", status["reason"])
    if status.get("message"):
        w.field("Message", status["message"])
    if status.get("nominatedNodeName"):
        w.field("NominatedNodeName", status["nominatedNodeName"])
    w.field("IP", status.get("podIP", ""))
    if _controller(pod):
        w.field("Controlled By", _controller(pod))
    statuses = {s.get("name"): s for s in status.get("containerStatuses") or []}
    init_statuses = {s.get("name"): s for s in status.get("initContainerStatuses") or []}
    if spec.get("initContainers"):
        w.section("Init Containers")
        for c in spec["initContainers"]:
            _container_block(w, c, init_statuses.get(c.get("name")), 1)
    w.section("Containers")
    for c in spec.get("containers") or []:
        _container_block(w, c, statuses.get(c.get("name")), 1)
    conditions = status.get("conditions") or []
    if conditions:
        w.section("Conditions")
        w.text(_conditions_table(conditions), 1)
    refusals = schedulingreasons.decode(annotations.get(schedulingreasons.ANNOTATION, "")) if not node else None
    if refusals is not None:
        _refusals_section(w, refusals)
    volumes = spec.get("volumes") or []
    if volumes:
        w.section("Volumes")
        for v in volumes:
            w.section(v.get("name", ""), 1)
            for vk, vv in v.items():
                if vk != "name":
                    w.field("Type", vk, 2)
                    for sk, sv in (vv or {}).items() if isinstance(vv, dict) else ():
                        w.field(sk[:1].upper() + sk[1:], sv, 2)
    else:
        w.field("Volumes", NONE)
    w.multi("Node-Selectors", [f"{k}={v}" for k, v in sorted((spec.get("nodeSelector") or {}).items())])
    tolerations = []
    for t in spec.get("tolerations") or []:
        text = t.get("key", "")
        if t.get("value"):
            text += f"={t['value']}"
        if t.get("effect"):
            text += f":{t['effect']}"
        if t.get("operator") == "Exists" and not t.get("key"):
            text = "op=Exists"
        tolerations.append(text)
    w.multi("Tolerations", tolerations)


def _refusals_section(w: DescribeWriter, refusals: schedulingreasons.NodeReasons) -> None:
    """Beyond kubectl: which node refused a Pending pod, in which scheduler plugin, and why."""
    w.section("Refusals")
    rows = [["Node", "Plugin", "Reason"], *([n, p, r] for n, p, r in refusals.entries)]
    w.text(_table(rows), 1)
    if refusals.omitted:
        w.text(f"... and {refusals.omitted} more node(s), counted in the PodScheduled message", 1)


def _conditions_table(conditions: list[Obj]) -> str:
    """Type and Status as kubectl prints them; beyond kubectl, the reason and message of a condition that
    is not True (PodScheduled=False says why the pod is Pending, reason by reason, right here)."""
    explained = [c for c in conditions if c.get("status") != "True" and (c.get("reason") or c.get("message"))]
    if not explained:
        return _table([["Type", "Status"]] + [[c.get("type", ""), c.get("status", "")] for c in conditions])
    rows = [["Type", "Status", "Reason", "Message"]]
    for c in conditions:
        shown = c.get("status") != "True"
        rows.append([c.get("type", ""), c.get("status", ""), c.get("reason", "") if shown else "",
                     c.get("message", "") if shown else ""])
    return _table(rows)


def _table(rows: list[list[str]]) -> str:
    """A small aligned table for inside a section (Conditions), separated by two spaces."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    header_row = rows[0]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(header_row)).rstrip(),
             "  ".join(("-" * len(c)).ljust(widths[i]) for i, c in enumerate(header_row)).rstrip()]
    lines += ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows[1:]]
    return "\n  ".join(lines)


def pod_template_section(w: DescribeWriter, template: Obj) -> None:
    """The ``Pod Template:`` block of describe deployment/rs, also ``rollout history --revision``."""
    w.section("Pod Template")
    w.multi("Labels", [f"{k}={v}" for k, v in sorted((dig(template, "metadata", "labels", default={})).items())], 1)
    annotations = dig(template, "metadata", "annotations", default={})
    if annotations:  # kubectl shows the line only when there are some (restartedAt, say)
        w.multi("Annotations", [f"{k}: {v}" for k, v in sorted(annotations.items())], 1)
    spec = template.get("spec") or {}
    w.section("Containers", 1)
    for c in spec.get("containers") or []:
        _container_block(w, c, None, 2)
    volumes = spec.get("volumes") or []
    w.field("Volumes", ", ".join(v.get("name", "") for v in volumes) or NONE, 1)


def describe_deployment(w: DescribeWriter, d: Obj, now: datetime) -> None:
    header(w, d)
    spec = d.get("spec") or {}
    status = d.get("status") or {}
    w.field("CreationTimestamp", _timestamp(dig(d, "metadata", "creationTimestamp")))
    w.field("Selector", format_selector(spec.get("selector")))
    w.field("Replicas", f"{spec.get('replicas', 0)} desired | {status.get('updatedReplicas', 0)} updated | "
                        f"{status.get('replicas', 0)} total | {status.get('availableReplicas', 0)} available | "
                        f"{status.get('unavailableReplicas', 0)} unavailable")
    strategy = spec.get("strategy") or {}
    w.field("StrategyType", strategy.get("type") or "RollingUpdate")
    w.field("MinReadySeconds", spec.get("minReadySeconds", 0))
    if (strategy.get("type") or "RollingUpdate") == "RollingUpdate":
        ru = strategy.get("rollingUpdate") or {}
        w.field("RollingUpdateStrategy", f"{ru.get('maxUnavailable', '25%')} max unavailable, "
                                         f"{ru.get('maxSurge', '25%')} max surge")
    pod_template_section(w, spec.get("template") or {})
    _conditions(w, status)


def describe_replicaset(w: DescribeWriter, rs: Obj, now: datetime) -> None:
    header(w, rs)
    spec = rs.get("spec") or {}
    status = rs.get("status") or {}
    w.field("Selector", format_selector(spec.get("selector")))
    if _controller(rs):
        w.field("Controlled By", _controller(rs))
    w.field("Replicas", f"{status.get('replicas', 0)} current / {spec.get('replicas', 0)} desired")
    w.field("Pods Status", f"{status.get('readyReplicas', 0)} Running / 0 Waiting / 0 Succeeded / 0 Failed")
    pod_template_section(w, spec.get("template") or {})
    _conditions(w, status)


def _conditions(w: DescribeWriter, status: Obj) -> None:
    conditions = status.get("conditions") or []
    if conditions:
        w.section("Conditions")
        rows = [["Type", "Status", "Reason"]]
        rows += [[c.get("type", ""), c.get("status", ""), c.get("reason", "")] for c in conditions]
        w.text(_table(rows), 1)


def describe_service(w: DescribeWriter, svc: Obj, now: datetime) -> None:
    header(w, svc)
    spec = svc.get("spec") or {}
    w.field("Selector", format_labels(spec.get("selector")))
    w.field("Type", spec.get("type") or "ClusterIP")
    w.field("IP", spec.get("clusterIP", ""))
    if spec.get("externalIPs"):
        w.field("External IPs", ",".join(spec["externalIPs"]))
    for p in spec.get("ports") or []:
        proto = p.get("protocol") or "TCP"
        w.field("Port", f"{p.get('name') or '<unset>'}  {p.get('port')}/{proto}")
        w.field("TargetPort", f"{p.get('targetPort', p.get('port'))}/{proto}")
        if p.get("nodePort"):
            w.field("NodePort", f"{p.get('name') or '<unset>'}  {p['nodePort']}/{proto}")
    w.field("Session Affinity", spec.get("sessionAffinity") or "None")


def describe_node(w: DescribeWriter, node: Obj, now: datetime) -> None:
    md = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    w.field("Name", md.get("name", ""))
    w.field("Roles", node_roles(node))
    w.multi("Labels", [f"{k}={v}" for k, v in sorted((md.get("labels") or {}).items())])
    w.multi("Annotations", [f"{k}: {v}" for k, v in sorted((md.get("annotations") or {}).items())])
    w.field("CreationTimestamp", _timestamp(md.get("creationTimestamp")))
    taints = [f"{t.get('key')}{'=' + t['value'] if t.get('value') else ''}:{t.get('effect')}"
              for t in spec.get("taints") or []]
    w.multi("Taints", taints)
    w.field("Unschedulable", "true" if spec.get("unschedulable") else "false")
    conditions = status.get("conditions") or []
    if conditions:
        w.section("Conditions")
        rows = [["Type", "Status", "LastHeartbeatTime", "Reason", "Message"]]
        rows += [[c.get("type", ""), c.get("status", ""), _timestamp(c.get("lastHeartbeatTime")),
                  c.get("reason", ""), c.get("message", "")] for c in conditions]
        w.text(_table(rows), 1)
    w.section("Addresses")
    for a in status.get("addresses") or []:
        w.field(a.get("type", ""), a.get("address", ""), 1)
    for title, key in (("Capacity", "capacity"), ("Allocatable", "allocatable")):
        if status.get(key):
            w.section(title)
            for k, v in sorted(status[key].items()):
                w.field(k, v, 1)
    info = status.get("nodeInfo") or {}
    if info:
        w.section("System Info")
        for k, v in info.items():
            w.field(k[:1].upper() + k[1:], v, 1)
    w.field("PodCIDR", spec.get("podCIDR", ""))


def describe_endpoints(w: DescribeWriter, ep: Obj, now: datetime) -> None:
    header(w, ep)
    w.field("Endpoints", format_endpoints(ep, limit=1 << 30))


def _generic_value(w: DescribeWriter, key: str, value: Any, indent: int) -> None:
    title = key[:1].upper() + key[1:]
    if isinstance(value, dict):
        if not value:
            w.field(title, NONE, indent)
            return
        w.section(title, indent)
        for k, v in value.items():
            _generic_value(w, k, v, indent + 1)
    elif isinstance(value, list):
        if not value or not all(isinstance(v, dict) for v in value):
            w.field(title, ", ".join(str(v) for v in value) or NONE, indent)
            return
        w.section(title, indent)
        for item in value:
            for k, v in item.items():
                _generic_value(w, k, v, indent + 1)
    else:
        w.field(title, value, indent)


def describe_generic(w: DescribeWriter, obj: Obj, now: datetime) -> None:
    header(w, obj, namespaced=bool(dig(obj, "metadata", "namespace")))
    w.field("API Version", obj.get("apiVersion", ""))
    w.field("Kind", obj.get("kind", ""))
    for key, value in obj.items():
        if key in ("apiVersion", "kind", "metadata"):
            continue
        _generic_value(w, key, value, 0)


DESCRIBERS = DescriberRegistry()
DESCRIBERS.register("", "Pod", describe_pod)
DESCRIBERS.register("apps", "Deployment", describe_deployment)
DESCRIBERS.register("apps", "ReplicaSet", describe_replicaset)
DESCRIBERS.register("", "Service", describe_service)
DESCRIBERS.register("", "Node", describe_node)
DESCRIBERS.register("", "Endpoints", describe_endpoints)


def events_section(w: DescribeWriter, events: list[Obj], now: datetime) -> None:
    if not events:
        w.field("Events", NONE)
        return
    events = sorted(events, key=lambda e: parse_time(event_last_seen(e)) or datetime.min.replace(tzinfo=UTC))
    rows = [["Type", "Reason", "Age", "From", "Message"]]
    for e in events:
        when = age(event_last_seen(e), now)
        count = int(e.get("count") or 1)
        if count > 1:
            first = e.get("firstTimestamp") or e.get("eventTime")
            when = f"{when} (x{count} over {age(first, now)})"
        source = dig(e, "source", "component", default="") or e.get("reportingComponent") or ""
        rows.append([e.get("type", ""), e.get("reason", ""), when, source, e.get("message", "")])
    w.section("Events")
    w.text(_table(rows), 1)


async def find_events(session: Session, scheme: Scheme, rt: ResourceType, obj: Obj) -> list[Obj]:
    """Events about this object (this uid), or [] when events cannot be read."""
    try:
        events_rt = scheme.for_kind("v1", "Event")
    except LookupError:
        return []
    name = str(dig(obj, "metadata", "name", default=""))
    ns = str(dig(obj, "metadata", "namespace", default=""))
    uid = str(dig(obj, "metadata", "uid", default=""))
    selector = f"involvedObject.name={name}"
    if ns:
        selector += f",involvedObject.namespace={ns}"
    try:
        listed = await session.client.list(events_rt.message, ns, field_selector=selector)
    except StatusError as exc:
        if exc.reason != "BadRequest":
            return []
        # A server without these field selectors: filter every event of the namespace here.
        try:
            listed = await session.client.list(events_rt.message, ns)
        except StatusError:
            return []
    out = []
    for ev in listed.items:
        e = to_dict(ev)
        involved = e.get("involvedObject") or {}
        if involved.get("name") != name or (ns and involved.get("namespace", ns) != ns):
            continue
        if involved.get("kind") and involved["kind"] != rt.kind:
            continue
        if uid and involved.get("uid") and involved["uid"] != uid:
            continue
        out.append(e)
    return out


@dataclass
class DescribeOptions:
    args: tuple[str, ...]
    all_namespaces: bool = False
    label_selector: str = ""
    show_events: bool = True


async def run_describe(session: Session, opts: DescribeOptions, scheme: Scheme) -> int:
    targets = parse_targets(scheme, opts.args, "describe")
    namespace = "" if opts.all_namespaces else session.namespace
    failures = 0
    blocks: list[list[str]] = []
    for t in targets:
        ns = namespace_for(t.rt, namespace)
        objs: list[Any] = []
        if t.names:
            for name in t.names:
                try:
                    objs.append(await session.client.get(t.rt.message, name, ns))
                except StatusError as exc:
                    if exc.reason != "NotFound":
                        raise
                    # kubectl describe also accepts a name prefix.
                    listed = await session.client.list(t.rt.message, ns)
                    matches = [o for o in listed.items if str(meta(o).name).startswith(name)]
                    if not matches:
                        session.streams.err(format_status_error(exc, server=session.server))
                        failures += 1
                    objs.extend(matches)
        else:
            listed = await session.client.list(t.rt.message, ns, label_selector=opts.label_selector)
            objs = list(listed.items)
            if not objs and len(targets) == 1:
                session.streams.err(no_resources_message(t.rt, namespace, opts.all_namespaces))
        for obj in objs:
            data = to_dict(obj)
            now = datetime.now(UTC)
            w = DescribeWriter()
            DESCRIBERS.lookup(t.rt.group, t.rt.kind)(w, data, now)
            if opts.show_events:
                events_section(w, await find_events(session, scheme, t.rt, data), now)
            blocks.append(w.render())
    for i, block in enumerate(blocks):
        if i:
            session.streams.out("")
            session.streams.out("")
        for line in block:
            session.streams.out(line)
    return 1 if failures else 0
