"""``set image|env|resources``: change the containers of Deployments, ReplicaSets and Pods in place.

Each verb is a pure edit of a PodSpec (``edit_images``, ``edit_env``,
``edit_resources``) applied to the live object and written back with its
resourceVersion as a precondition, so a concurrent writer is a Conflict that
is retried on a fresh read, never a lost update.

Bad input is refused before anything is written, for every object named:
arguments are parsed first (``CONTAINER=IMAGE``, ``KEY=VAL``/``KEY-``,
quantities), then every object is read and edited in memory, and only if
all edits succeeded (no unknown container, say) is anything sent. The
server's validation has the last word (requests above limits, unknown
resource names) and refuses the whole object, naming the field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.cli.apply import Printer, check_dry_run
from kubelite.cli.clientset import Session
from kubelite.cli.errors import CliError
from kubelite.cli.resources import object_ref
from kubelite.cli.workloads import ObjectRef, Selection, containers_of, match_containers, pod_spec, resolve_objects
from kubelite.machinery.errors import StatusError
from kubelite.machinery.quantity import QUANTITY_FORMAT_ERROR, QuantityError, parse_quantity
from kubelite.machinery.scheme import Scheme
from kubelite.machinery.validation import is_env_var_name

_UPDATE_ATTEMPTS = 5

# An edit: changes the PodSpec in place and returns whether anything changed; CliError when it cannot apply.
Edit = Callable[[core.PodSpec], bool]


def split_resources(args: tuple[str, ...], is_change: Callable[[str], bool], what: str) -> tuple[list[str], list[str]]:
    """kubectl's argument order: resources first, then changes (``deploy/web app=img``)."""
    resources: list[str] = []
    changes: list[str] = []
    for arg in args:
        if is_change(arg):
            changes.append(arg)
        elif changes:
            raise CliError(f"all resources must be specified before {what} changes: {arg}")
        else:
            resources.append(arg)
    return resources, changes


# -- image ---------------------------------------------------------------------------------------


def parse_images(pairs: list[str]) -> dict[str, str]:
    """``CONTAINER=IMAGE`` pairs (``*`` = every container) → {container: image}."""
    if not pairs:
        raise CliError("at least one image update is required (CONTAINER=IMAGE)")
    out: dict[str, str] = {}
    for pair in pairs:
        name, _, image = pair.partition("=")
        if not name or not image:
            raise CliError(f'invalid image update "{pair}": expected CONTAINER=IMAGE with both parts non-empty')
        if any(c.isspace() for c in image):
            raise CliError(f'invalid image update "{pair}": an image reference has no whitespace')
        if name in out and out[name] != image:
            raise CliError(f"container {name} is given more than one image")
        out[name] = image
    return out


def edit_images(images: dict[str, str]) -> Edit:
    def edit(spec: core.PodSpec) -> bool:
        changed = False
        for name, image in images.items():
            found = containers_of(spec) if name == "*" else [c for c in containers_of(spec) if c.name == name]
            if not found:
                known = ", ".join(c.name for c in containers_of(spec)) or "none"
                raise CliError(f'unable to find container named "{name}" (containers: {known})')
            for c in found:
                if c.image != image:
                    c.image = image
                    changed = True
        return changed

    return edit


# -- env -------------------------------------------------------------------------------------------


@dataclass
class EnvChanges:
    set: dict[str, str] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)


def is_env_change(arg: str) -> bool:
    return "=" in arg or (arg.endswith("-") and len(arg) > 1)


def parse_env(specs: list[str]) -> EnvChanges:
    """``KEY=VAL`` sets, ``KEY-`` removes; names are checked as the API server checks them."""
    out = EnvChanges()
    for spec in specs:
        if "=" in spec:
            key, _, value = spec.partition("=")
            problems = is_env_var_name(key)
            if problems:
                raise CliError(f'invalid environment variable "{spec}": {problems[0]} (expected KEY=VALUE or KEY-)')
            if key in out.set and out.set[key] != value:
                raise CliError(f"environment variable {key} is given more than once with different values")
            out.set[key] = value
        elif spec.endswith("-") and len(spec) > 1:
            key = spec[:-1]
            problems = is_env_var_name(key)
            if problems:
                raise CliError(f'invalid environment variable removal "{spec}": {problems[0]}')
            out.remove.append(key)
        else:
            raise CliError(f'invalid environment variable "{spec}": expected KEY=VALUE or KEY-')
    for key in out.remove:
        if key in out.set:
            raise CliError(f"environment variable {key} is both set and removed")
    return out


def edit_env(changes: EnvChanges, containers: str, overwrite: bool) -> Edit:
    def edit(spec: core.PodSpec) -> bool:
        selected = match_containers(spec, containers)
        if not selected:
            known = ", ".join(c.name for c in containers_of(spec)) or "none"
            raise CliError(f'unable to find container named "{containers}" (containers: {known})')
        changed = False
        for c in selected:
            for key, value in changes.set.items():
                existing = next((e for e in c.env if e.name == key), None)
                if existing is None:
                    c.env.add(name=key, value=value)
                    changed = True
                    continue
                if existing.value == value and not existing.HasField("value_from"):
                    continue
                if not overwrite:
                    raise CliError(f"'{key}' already has a value ({existing.value}), and --overwrite is false")
                existing.value = value
                existing.ClearField("value_from")
                changed = True
            for i in reversed(range(len(c.env))):
                if c.env[i].name in changes.remove:
                    del c.env[i]
                    changed = True
        return changed

    return edit


def env_listing(kind: str, name: str, spec: core.PodSpec, containers: str) -> list[str]:
    """``set env --list``: one ``# <kind> <name>, container <c>`` block of KEY=VALUE lines per container."""
    lines: list[str] = []
    for c in match_containers(spec, containers):
        lines.append(f"# {kind.lower()} {name}, container {c.name}")
        for e in c.env:
            if not e.HasField("value_from"):
                lines.append(f"{e.name}={e.value}")
                continue
            vf = e.value_from
            if vf.HasField("config_map_key_ref"):
                source = f"configmap {vf.config_map_key_ref.name}, key {vf.config_map_key_ref.key}"
            elif vf.HasField("secret_key_ref"):
                source = f"secret {vf.secret_key_ref.name}, key {vf.secret_key_ref.key}"
            elif vf.HasField("field_ref"):
                source = f"field path {vf.field_ref.field_path}"
            else:
                source = f"resource {vf.resource_field_ref.resource}"
            lines.append(f"# {e.name} from {source}")
        for src in c.env_from:
            what = (f"configmap {src.config_map_ref.name}" if src.HasField("config_map_ref")
                    else f"secret {src.secret_ref.name}")
            lines.append(f"# every key of {what}" + (f" with prefix {src.prefix}" if src.prefix else ""))
    return lines


# -- resources ---------------------------------------------------------------------------------------


def parse_resource_list(text: str, flag: str) -> dict[str, str]:
    """``cpu=100m,memory=64Mi`` → {name: quantity}, each quantity checked."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or not name or not value:
            raise CliError(f'invalid {flag} "{part}": expected NAME=QUANTITY, e.g. cpu=100m,memory=64Mi')
        try:
            quantity = parse_quantity(value)
        except QuantityError:
            raise CliError(f'invalid {flag} "{part}": {value!r} is not a quantity ({QUANTITY_FORMAT_ERROR})'
                           ) from None
        if quantity < 0:
            raise CliError(f'invalid {flag} "{part}": a quantity must not be negative')
        out[name] = value
    return out


def edit_resources(limits: dict[str, str], requests: dict[str, str], containers: str) -> Edit:
    def edit(spec: core.PodSpec) -> bool:
        selected = match_containers(spec, containers)
        if not selected:
            known = ", ".join(c.name for c in containers_of(spec)) or "none"
            raise CliError(f'unable to find container named "{containers}" (containers: {known})')
        changed = False
        for c in selected:
            for target, values in ((c.resources.limits, limits), (c.resources.requests, requests)):
                for name, value in values.items():
                    if target.get(name) != value:
                        target[name] = value
                        changed = True
        return changed

    return edit


# -- running an edit -----------------------------------------------------------------------------------


@dataclass
class SetOptions:
    selection: Selection
    dry_run: str = "none"
    output: str = ""


def _edited(obj: Message, edit: Edit, ref: ObjectRef) -> Message | None:
    """A copy of ``obj`` with ``edit`` applied (None when nothing changed); CliError names the object."""
    copy = type(obj)()
    copy.CopyFrom(obj)
    spec = pod_spec(copy)
    if spec is None:
        raise CliError(f"{object_ref(ref.rt, ref.name)}: a {ref.rt.kind} has no pod template to change")
    try:
        changed = edit(spec)
    except CliError as exc:
        raise CliError(f"{object_ref(ref.rt, ref.name)}: {exc.message}") from None
    return copy if changed else None


async def run_edit(session: Session, opts: SetOptions, scheme: Scheme, edit: Edit, word: str, verb: str,
                   stdin: Callable[[], str] | None = None) -> int:
    dry_run = check_dry_run(opts.dry_run)
    printer = Printer(session, opts.output, dry_run)
    refs = await resolve_objects(session, scheme, opts.selection, verb, stdin)
    if not refs:
        raise CliError(f"no objects passed to {verb}")
    # Every object read and edited before any is written: one bad one writes nothing.
    planned: list[tuple[ObjectRef, Message | None]] = []
    problems: list[str] = []
    for ref in refs:
        live = await session.client.get(ref.rt.message, ref.name, ref.namespace)
        try:
            planned.append((ref, _edited(live, edit, ref)))
        except CliError as exc:
            problems.append(exc.message)
    if problems:
        raise CliError("\nerror: ".join(problems))
    for ref, edited in planned:
        if edited is None:
            continue  # already as asked: nothing to send and, like kubectl, nothing to say
        written: Any = edited
        if dry_run != "client":
            written = await _write(session, ref, edited, edit, dry_run == "server")
        printer.outcome(object_ref(ref.rt, ref.name), word, written)
    printer.flush()
    return 0


async def _write(session: Session, ref: ObjectRef, edited: Message, edit: Edit, server_dry_run: bool) -> Any:
    for attempt in range(_UPDATE_ATTEMPTS):
        try:
            return await session.client.update(edited, dry_run=server_dry_run)
        except StatusError as exc:
            if exc.reason != "Conflict" or attempt + 1 == _UPDATE_ATTEMPTS:
                raise
        # Someone else wrote it meanwhile (a controller's annotation, say): edit the fresh object.
        fresh = await session.client.get(ref.rt.message, ref.name, ref.namespace)
        again = _edited(fresh, edit, ref)
        if again is None:
            return fresh
        edited = again
    raise AssertionError("unreachable")


async def run_env_list(session: Session, opts: SetOptions, scheme: Scheme, containers: str,
                       stdin: Callable[[], str] | None = None) -> int:
    refs = await resolve_objects(session, scheme, opts.selection, "set env", stdin)
    for ref in refs:
        live = await session.client.get(ref.rt.message, ref.name, ref.namespace)
        spec = pod_spec(live)
        if spec is None:
            raise CliError(f"{object_ref(ref.rt, ref.name)}: a {ref.rt.kind} has no pod template")
        for line in env_listing(ref.rt.kind, ref.name, spec, containers):
            session.streams.out(line)
    return 0


def check_output(output: str) -> None:
    if output not in ("", "name", "yaml", "json"):
        raise CliError(f'unable to match a printer suitable for the output format "{output}", '
                       "allowed formats are: json,name,yaml")

