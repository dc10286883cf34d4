"""What the workload verbs (``rollout``, ``set``, ``expose``) share: which objects, and where their pods' spec is.

kubectl's workload verbs name their objects three ways: ``TYPE NAME...`` /
``TYPE/NAME...``, ``-f FILE`` (the objects a manifest names, read live from
the server), or ``TYPE`` with ``--all`` / ``-l``. ``resolve_objects`` turns
any of them into (resource type, namespace, name) triples before anything is
read or written, so a malformed argument fails with nothing sent.

The pod spec sits at a different path per kind (a Pod's ``spec``, a
Deployment's or ReplicaSet's ``spec.template.spec``); ``pod_spec`` finds it
on a protobuf message, so ``set image`` and friends edit any of them alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.cli.clientset import Session
from kubelite.cli.errors import CliError
from kubelite.cli.manifests import apply_namespace, read_manifests
from kubelite.cli.resources import meta, namespace_for, parse_targets
from kubelite.machinery.scheme import ResourceType, Scheme


@dataclass(frozen=True)
class ObjectRef:
    rt: ResourceType
    namespace: str
    name: str


@dataclass
class Selection:
    """How the user named the objects (see module docstring)."""

    args: tuple[str, ...] = ()
    filenames: tuple[str, ...] = ()
    recursive: bool = False
    label_selector: str = ""
    all: bool = False


async def resolve_objects(session: Session, scheme: Scheme, sel: Selection, verb: str,
                          stdin: Callable[[], str] | None = None) -> list[ObjectRef]:
    """The objects a command acts on, in the order given; raises CliError on a malformed selection."""
    if sel.filenames:
        if sel.args:
            raise CliError("there is no need to specify a resource type as a separate argument when passing "
                           "arguments with -f")
        manifests = read_manifests(sel.filenames, sel.recursive, scheme, stdin, verb=verb)
        apply_namespace(manifests, session.namespace, session.namespace_explicit)
        return [ObjectRef(m.rt, str(meta(m.obj).namespace), m.name) for m in manifests]
    if not sel.args:
        raise CliError("You must provide one or more resources by argument or filename.")
    out: list[ObjectRef] = []
    for target in parse_targets(scheme, sel.args, verb):
        ns = namespace_for(target.rt, session.namespace)
        if target.names:
            if sel.all or sel.label_selector:
                raise CliError("name cannot be provided when a selector is specified")
            out.extend(ObjectRef(target.rt, ns, n) for n in target.names)
            continue
        if not (sel.all or sel.label_selector):
            raise CliError(f"resource(s) were provided, but no name was specified (use TYPE/NAME, or --all or -l "
                           f"to {verb} every {target.rt.singular} in the namespace)")
        listed = await session.client.list(target.rt.message, ns, label_selector=sel.label_selector)
        out.extend(ObjectRef(target.rt, str(meta(o).namespace), str(meta(o).name)) for o in listed.items)
    return out


def pod_spec(obj: Message) -> core.PodSpec | None:
    """The PodSpec inside ``obj`` (a Pod's spec, a controller's spec.template.spec), or None."""
    if isinstance(obj, core.Pod):
        return obj.spec
    spec = getattr(obj, "spec", None)
    template = getattr(spec, "template", None)
    if isinstance(template, core.PodTemplateSpec):
        return template.spec
    return None


def pod_template(obj: Message) -> core.PodTemplateSpec | None:
    spec = getattr(obj, "spec", None)
    template = getattr(spec, "template", None)
    return template if isinstance(template, core.PodTemplateSpec) else None


def containers_of(spec: core.PodSpec, include_init: bool = True) -> list[Any]:
    """Init containers first, as kubectl lists them."""
    return [*(spec.init_containers if include_init else []), *spec.containers]


def match_containers(spec: core.PodSpec, pattern: str, include_init: bool = True) -> list[Any]:
    """Containers whose name matches ``pattern`` (``*`` wildcards, as ``-c`` takes them)."""
    import fnmatch

    return [c for c in containers_of(spec, include_init) if fnmatch.fnmatchcase(c.name, pattern)]

