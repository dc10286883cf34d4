"""Turning what the user typed into resource types and object references.

kubectl accepts ``pods``, ``po``, ``pod/x``, ``deploy,svc`` and ``all``; the
names here (``deployment.apps/web``, ``pods "x"``) are the ones kubectl
prints, so that output and error messages read the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from kubelite.cli.errors import CliError
from kubelite.machinery.scheme import ResourceType, Scheme, UnknownKindError


def default_scheme() -> Scheme:
    from kubelite.machinery.kinds import SCHEME

    return SCHEME


def kind_ref(rt: ResourceType) -> str:
    """``deployment.apps`` / ``service``: kubectl's lower-case kind qualified by group."""
    kind = rt.kind.lower()
    return f"{kind}.{rt.group}" if rt.group else kind


def object_ref(rt: ResourceType, name: str) -> str:
    """``deployment.apps/web``: how kubectl names an object in ``created``/``labeled`` lines and -o name."""
    return f"{kind_ref(rt)}/{name}"


@dataclass(frozen=True)
class Target:
    """One resource type and the names asked for (none = all of them)."""

    rt: ResourceType
    names: tuple[str, ...] = ()


def resolve_type(scheme: Scheme, name: str) -> ResourceType:
    try:
        return scheme.resolve(name)
    except UnknownKindError:
        raise CliError(f'the server doesn\'t have a resource type "{name}"') from None


def expand_types(scheme: Scheme, spec: str) -> list[ResourceType]:
    """``deploy,svc`` or ``all`` → resource types, in the order given, without repeats."""
    out: list[ResourceType] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if part == "all" or part.startswith("all."):
            found = [rt for rt in scheme if "all" in rt.categories]
            if not found:
                raise CliError(f'the server doesn\'t have a resource type "{part}"')
        else:
            found = [resolve_type(scheme, part)]
        for rt in found:
            if rt not in out:
                out.append(rt)
    return out


def _mixed_forms(verb: str) -> CliError:
    return CliError("there is no need to specify a resource type as a separate argument when passing "
                    f"arguments in resource/name form (e.g. 'kubelite {verb} resource/<resource_name>' "
                    f"instead of 'kubelite {verb} resource resource/<resource_name>'")


def parse_targets(scheme: Scheme, args: tuple[str, ...] | list[str], verb: str = "get") -> list[Target]:
    """kubectl's two argument shapes: ``TYPE[,TYPE] [NAME...]`` or ``TYPE/NAME...``."""
    args = list(args)
    if not args:
        raise CliError("Required resource not specified.")
    if "/" in args[0]:
        targets: list[Target] = []
        for arg in args:
            kind, sep, name = arg.partition("/")
            if not sep or not kind or not name:
                raise _mixed_forms(verb)
            rt = resolve_type(scheme, kind)
            # Keep kinds grouped in the order they first appear, as kubectl does.
            for i, t in enumerate(targets):
                if t.rt == rt:
                    targets[i] = Target(rt, (*t.names, name))
                    break
            else:
                targets.append(Target(rt, (name,)))
        return targets
    types = expand_types(scheme, args[0])
    names = tuple(args[1:])
    for name in names:
        if "/" in name:
            raise _mixed_forms(verb)
    return [Target(rt, names) for rt in types]


def meta(obj: Message) -> Any:
    return obj.metadata  # type: ignore[attr-defined]


def namespace_for(rt: ResourceType, namespace: str) -> str:
    """Cluster-scoped kinds ignore -n, as kubectl does."""
    return namespace if rt.namespaced else ""


def to_dict(obj: Message) -> dict[str, Any]:
    """The object's Kubernetes JSON form, which printers and -o yaml/json work from."""
    from kubelite.machinery import codec

    data: dict[str, Any] = dict(codec.encode(obj))
    return data
