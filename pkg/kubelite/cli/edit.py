"""``kubelite edit``: the live object in $KUBE_EDITOR / $EDITOR / vi, then an update.

The edited text is decoded as strictly as an applied manifest. When it
does not decode, or the server rejects it, the file is reopened with the
problem written at the top as comments (kubectl's habit), so the user's work
is not lost; saving it again unchanged gives up with an error rather than
looping. The update carries the resourceVersion that was edited, so a
concurrent change surfaces as a Conflict instead of being overwritten.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from kubelite.cli.clientset import Session
from kubelite.cli.errors import CliError, format_status_error
from kubelite.cli.printers import to_json, to_yaml, without_managed_fields
from kubelite.cli.resources import meta, namespace_for, object_ref, parse_targets, to_dict
from kubelite.machinery.errors import StatusError
from kubelite.machinery.scheme import ResourceType, Scheme

HEADER = """\
# Edit the object below and save to update it; close the editor without saving to cancel.
# Lines starting with '#' are ignored. Saving an empty file cancels the edit.
# If the change cannot be applied, this file opens again with the reason on top.
#
"""

Editor = Callable[[str], int]


def editor_command() -> list[str]:
    for var in ("KUBE_EDITOR", "EDITOR"):
        value = os.environ.get(var, "").strip()
        if value:
            return shlex.split(value)
    return ["vi"]


def run_editor(path: str) -> int:
    """Runs the user's editor on ``path`` attached to this terminal; returns its exit status."""
    cmd = editor_command()
    try:
        return subprocess.call([*cmd, path])
    except OSError as exc:
        raise CliError(f'unable to launch the editor "{" ".join(cmd)}": {exc.strerror or exc}') from exc


@dataclass
class EditOptions:
    args: tuple[str, ...]
    output: str = "yaml"


def strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")).strip()


def as_comment(message: str) -> str:
    return "".join(f"# {line}\n" for line in message.splitlines()) + "#\n"


async def run_edit(session: Session, opts: EditOptions, scheme: Scheme, editor: Editor | None = None) -> int:
    if opts.output not in ("yaml", "json"):
        raise CliError(f'the edit mode "{opts.output}" is not supported; use yaml or json')
    edit = editor or run_editor
    objects: list[tuple[ResourceType, str, str]] = []
    for t in parse_targets(scheme, opts.args, "edit"):
        if not t.names:
            raise CliError("edit needs the name of the object to edit (kubelite edit TYPE NAME)")
        objects.extend((t.rt, namespace_for(t.rt, session.namespace), n) for n in t.names)
    failures = 0
    for rt, ns, name in objects:
        try:
            current = await session.client.get(rt.message, name, ns)
        except StatusError as exc:
            session.streams.err(format_status_error(exc, server=session.server))
            failures += 1
            continue
        failures += await edit_one(session, rt, current, opts.output, edit)
    return 1 if failures else 0


async def edit_one(session: Session, rt: ResourceType, current: Message, fmt: str, edit: Editor) -> int:
    # Without managedFields, as kubectl edit shows objects: the update then keeps the stored ones.
    data = without_managed_fields(to_dict(current))
    body = to_yaml(data) if fmt == "yaml" else to_json(data) + "\n"
    original = strip_comments(body)
    name = str(meta(current).name)
    suffix = ".yaml" if fmt == "yaml" else ".json"
    fd, path = tempfile.mkstemp(prefix=f"kubelite-edit-{rt.resource}-", suffix=suffix)
    os.close(fd)
    text = HEADER + body
    last_failed: str | None = None
    try:
        while True:
            write_text(path, text)
            status = await asyncio.to_thread(edit, path)
            if status != 0:
                raise CliError(f'there was a problem with the editor "{" ".join(editor_command())}"')
            edited = read_text(path)
            content = strip_comments(edited)
            if not content:
                session.streams.err("Edit cancelled, saved file was empty.")
                return 0
            if content == original:
                session.streams.err("Edit cancelled, no changes made.")
                return 0
            if last_failed is not None and content == last_failed:
                session.streams.err(f"A copy of your changes has been stored to \"{keep_copy(edited)}\"")
                raise CliError("Edit cancelled, no valid changes were saved.")
            try:
                obj = decode_edited(content, rt, name)
                await session.client.update(obj)
            except (CliError, StatusError) as exc:
                problem = (f"error: {exc}" if isinstance(exc, CliError)
                           else format_status_error(exc, server=session.server))
                last_failed = content
                text = HEADER + as_comment(problem) + content + "\n"
                continue
            session.streams.out(f"{object_ref(rt, name)} edited")
            return 0
    finally:
        os.unlink(path)


def write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def keep_copy(text: str) -> str:
    """Saves the user's rejected edit where they can find it, as kubectl does."""
    fd, path = tempfile.mkstemp(prefix="kubelite-edit-", suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def decode_edited(content: str, rt: ResourceType, name: str) -> Message:
    from kubelite.machinery import codec

    try:
        docs = codec.load_documents(content, source="edited file")
    except StatusError as exc:
        raise CliError(exc.message) from None
    if len(docs) != 1:
        raise CliError("the edited file must hold exactly one object")
    doc = docs[0]
    if doc.get("kind") != rt.kind or doc.get("apiVersion") != rt.api_version:
        raise CliError("the apiVersion and kind of the object cannot be changed")
    md = doc.get("metadata")
    if not isinstance(md, dict) or md.get("name") != name:
        raise CliError("the name of the object cannot be changed")
    try:
        return codec.decode(doc)
    except StatusError as exc:
        raise CliError(f'error validating "edited file": {exc.message}') from None
