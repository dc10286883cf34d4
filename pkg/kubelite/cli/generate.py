"""``create deployment`` and ``expose``: objects generated from flags, the way kubectl generates them.

``create deployment NAME --image=IMG`` writes what kubectl writes: labels and
selector ``app=NAME``, one container per image named after the image (its
last path segment without tag or digest), ``--port`` on the first container,
and the words after ``--`` as its command.

``expose`` reads an object and builds a Service in front of its pods: the
selector is the object's own (a Deployment's or ReplicaSet's matchLabels, a
Pod's labels, a Service's selector), the ports are ``--port`` or, without it,
every container port of the pod template; ``--target-port`` defaults to the
port. A selector a Service cannot express (matchExpressions) is an error
that says to pass ``--selector``, never a Service that selects nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.cli.apply import Printer, check_dry_run
from kubelite.cli.clientset import Session
from kubelite.cli.errors import CliError
from kubelite.cli.resources import meta
from kubelite.cli.workloads import Selection, containers_of, pod_spec, resolve_objects
from kubelite.machinery.scheme import Scheme

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
PROTOCOLS = ("TCP", "UDP", "SCTP")


def container_name(image: str) -> str:
    """``registry:5000/team/nginx:1.25`` → ``nginx`` (kubectl's rule), made a valid container name."""
    name = image.rsplit("/", 1)[-1]
    name = name.split("@", 1)[0].split(":", 1)[0]
    name = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")
    return name[:63].strip("-") or "container"


@dataclass
class CreateDeploymentOptions:
    name: str
    images: tuple[str, ...]
    replicas: int = 1
    port: int = -1
    command: tuple[str, ...] = ()
    dry_run: str = "none"
    output: str = ""


def build_deployment(opts: CreateDeploymentOptions, namespace: str) -> apps.Deployment:
    if not opts.images:
        raise CliError('required flag(s) "image" not set')
    if opts.replicas < 0:
        raise CliError(f"--replicas must not be negative: {opts.replicas}")
    if opts.port != -1 and not 1 <= opts.port <= 65535:
        raise CliError(f"--port must be between 1 and 65535: {opts.port}")
    if opts.command and len(opts.images) > 1:
        raise CliError("cannot specify multiple --image options and command")
    d = apps.Deployment(api_version="apps/v1", kind="Deployment")
    d.metadata.name = opts.name
    d.metadata.namespace = namespace
    d.metadata.labels["app"] = opts.name
    d.spec.replicas = opts.replicas
    d.spec.selector.match_labels["app"] = opts.name
    d.spec.template.metadata.labels["app"] = opts.name
    used: set[str] = set()
    for image in opts.images:
        if not image or any(ch.isspace() for ch in image):
            raise CliError(f"--image: invalid image reference {image!r}")
        name = base = container_name(image)
        n = 2
        while name in used:  # two images of the same name: kubectl makes the names unique too
            name = f"{base}-{n}"
            n += 1
        used.add(name)
        d.spec.template.spec.containers.add(name=name, image=image)
    first = d.spec.template.spec.containers[0]
    if opts.port != -1:
        first.ports.add(container_port=opts.port)
    if opts.command:
        first.command.extend(opts.command)
    return d


async def run_create_deployment(session: Session, opts: CreateDeploymentOptions) -> int:
    dry_run = check_dry_run(opts.dry_run)
    printer = Printer(session, opts.output, dry_run)
    d = build_deployment(opts, session.namespace)
    written: Any = d
    if dry_run != "client":
        written = await session.client.create(d, dry_run=dry_run == "server")
    printer.outcome(f"deployment.apps/{opts.name}", "created", written)
    printer.flush()
    return 0


@dataclass
class ExposeOptions:
    selection: Selection
    port: str = ""
    target_port: str = ""
    protocol: str = ""
    type: str = ""
    name: str = ""
    selector: str = ""
    labels: str = ""
    cluster_ip: str = ""
    dry_run: str = "none"
    output: str = ""


def parse_pairs(text: str, flag: str) -> dict[str, str]:
    """``a=b,c=d`` → dict; a ``!=`` or a set-based term cannot be a Service selector."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key or key.endswith("!") or value.startswith("="):
            raise CliError(f'invalid {flag} "{part}": expected KEY=VALUE (a Service selects by equality only)')
        out[key] = value
    return out


def selector_of(obj: Message) -> dict[str, str]:
    """The labels a Service in front of ``obj`` must select."""
    if isinstance(obj, core.Pod):
        labels = dict(obj.metadata.labels)
        if not labels:
            raise CliError(f'the pod "{obj.metadata.name}" has no labels to select it by; pass --selector')
        return labels
    if isinstance(obj, core.Service):
        if not obj.spec.selector:
            raise CliError(f'the service "{obj.metadata.name}" has no selector to copy; pass --selector')
        return dict(obj.spec.selector)
    selector = getattr(getattr(obj, "spec", None), "selector", None)
    if selector is None or not hasattr(selector, "match_labels"):
        raise CliError(f"cannot expose a {type(obj).__name__}")
    if selector.match_expressions:
        raise CliError("couldn't retrieve selectors via --selector flag or introspection: the selector uses "
                       "matchExpressions, which a Service cannot express; pass --selector")
    if not selector.match_labels:
        raise CliError("couldn't retrieve selectors via --selector flag or introspection; pass --selector")
    return dict(selector.match_labels)


def ports_of(obj: Message) -> list[tuple[int, str]]:
    """(port, protocol) of every container port (or a Service's ports), in order, without repeats."""
    out: list[tuple[int, str]] = []
    if isinstance(obj, core.Service):
        candidates = [(p.port, p.protocol or "TCP") for p in obj.spec.ports]
    else:
        spec = pod_spec(obj)
        candidates = [] if spec is None else [(p.container_port, p.protocol or "TCP")
                                              for c in containers_of(spec, include_init=False) for p in c.ports]
    for port in candidates:
        if port not in out:
            out.append(port)
    return out


def _int_or_name(value: str, flag: str) -> str:
    if value.isdigit():
        if not 1 <= int(value) <= 65535:
            raise CliError(f"{flag} must be between 1 and 65535: {value}")
        return value
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", value) or len(value) > 15:
        raise CliError(f"{flag} must be a port number or a port name (up to 15 lower-case letters, digits and '-'):"
                       f" {value!r}")
    return value


def build_service(obj: Message, opts: ExposeOptions, namespace: str) -> core.Service:
    md = meta(obj)
    if opts.type and opts.type not in SERVICE_TYPES:
        raise CliError(f"--type must be one of {', '.join(SERVICE_TYPES)}: {opts.type!r}")
    protocol = opts.protocol or ""
    if protocol and protocol not in PROTOCOLS:
        raise CliError(f"--protocol must be one of {', '.join(PROTOCOLS)}: {protocol!r}")
    selector = parse_pairs(opts.selector, "--selector") if opts.selector else selector_of(obj)
    if opts.port:
        if not opts.port.isdigit() or not 1 <= int(opts.port) <= 65535:
            raise CliError(f"--port must be a number between 1 and 65535: {opts.port!r}")
        ports = [(int(opts.port), protocol or "TCP")]
    else:
        ports = [(p, protocol or proto) for p, proto in ports_of(obj)]
        if not ports:
            raise CliError(f'couldn\'t find port via --port flag or introspection: {md.name!r} declares no '
                           "container port; pass --port")
    target = _int_or_name(opts.target_port, "--target-port") if opts.target_port else ""
    if target and len(ports) > 1:
        raise CliError("--target-port needs a single port; pass --port as well")
    svc = core.Service(api_version="v1", kind="Service")
    svc.metadata.name = opts.name or md.name
    svc.metadata.namespace = namespace
    labels = parse_pairs(opts.labels, "--labels") if opts.labels else dict(md.labels)
    svc.metadata.labels.update(labels)
    svc.spec.selector.update(selector)
    if opts.type:
        svc.spec.type = opts.type
    if opts.cluster_ip:
        svc.spec.cluster_ip = opts.cluster_ip
    for i, (port, proto) in enumerate(ports):
        sp = svc.spec.ports.add(port=port, protocol=proto, target_port=target or str(port))
        if len(ports) > 1:
            sp.name = f"port-{i + 1}"
    return svc


async def run_expose(session: Session, opts: ExposeOptions, scheme: Scheme,
                     stdin: Callable[[], str] | None = None) -> int:
    dry_run = check_dry_run(opts.dry_run)
    printer = Printer(session, opts.output, dry_run)
    refs = await resolve_objects(session, scheme, opts.selection, "expose", stdin)
    if len(refs) != 1:
        raise CliError(f"expose takes exactly one object; {len(refs)} were given")
    ref = refs[0]
    if ref.rt.message not in (apps.Deployment, apps.ReplicaSet, core.Pod, core.Service):
        raise CliError(f"cannot expose a {ref.rt.kind}")
    obj = await session.client.get(ref.rt.message, ref.name, ref.namespace)
    svc = build_service(obj, opts, ref.namespace)
    written: Any = svc
    if dry_run != "client":
        written = await session.client.create(svc, dry_run=dry_run == "server")
    printer.outcome(f"service/{svc.metadata.name}", "exposed", written)
    printer.flush()
    return 0
