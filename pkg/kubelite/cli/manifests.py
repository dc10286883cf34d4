"""Reading -f inputs: files, directories, stdin; every document decoded before anything is sent.

kubectl users expect a bad document anywhere in the input to stop the whole
command with nothing half-applied, and to be told which file and line, or
which field, was wrong. So ``read_manifests`` parses and strictly decodes all
documents first and raises one CliError listing every problem; only a fully
valid input reaches the server.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from kubelite.cli.errors import CliError
from kubelite.cli.resources import meta
from kubelite.machinery.errors import StatusError
from kubelite.machinery.scheme import ResourceType, Scheme, UnknownKindError

MANIFEST_EXTENSIONS = (".yaml", ".yml", ".json")


@dataclass
class Manifest:
    """One decoded document and where it came from (for ``error when creating "x.yaml"``)."""

    source: str
    data: dict[str, Any]
    rt: ResourceType
    obj: Message

    @property
    def name(self) -> str:
        return str(meta(self.obj).name)

    @property
    def namespace(self) -> str:
        return str(meta(self.obj).namespace)


def expand_paths(filenames: Sequence[str], recursive: bool) -> list[str]:
    """-f arguments → files, with directories expanded to their manifests in name order."""
    out: list[str] = []
    for name in filenames:
        if name == "-":
            out.append(name)
            continue
        if name.startswith(("http://", "https://")):
            raise CliError(f'reading manifests from a URL is not supported: "{name}"')
        if not os.path.exists(name):
            raise CliError(f'the path "{name}" does not exist')
        if os.path.isdir(name):
            found: list[str] = []
            if recursive:
                for root, dirs, files in os.walk(name):
                    dirs.sort()
                    found.extend(os.path.join(root, f) for f in sorted(files) if f.endswith(MANIFEST_EXTENSIONS))
            else:
                found = [os.path.join(name, f) for f in sorted(os.listdir(name))
                         if f.endswith(MANIFEST_EXTENSIONS) and os.path.isfile(os.path.join(name, f))]
            out.extend(found)
        else:
            out.append(name)
    return out


def _read(path: str, stdin: Callable[[], str]) -> str:
    if path == "-":
        return stdin()
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise CliError(f"error reading {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CliError(f"error parsing {path}: not UTF-8 text ({exc.reason})") from exc


def _source_label(path: str) -> str:
    return "STDIN" if path == "-" else path


def decode_document(doc: Any, source: str, scheme: Scheme) -> tuple[ResourceType, Message]:
    """One document → (type, message), or a CliError worded like kubectl's validation errors."""
    from kubelite.machinery import codec

    if not isinstance(doc, dict):
        raise CliError(f'error validating "{source}": error validating data: the document is not an object')
    missing = [f"{key} not set" for key in ("apiVersion", "kind") if not doc.get(key)]
    if missing:
        joined = missing[0] if len(missing) == 1 else "[" + ", ".join(missing) + "]"
        raise CliError(f'error validating "{source}": error validating data: {joined}')
    api_version, kind = str(doc["apiVersion"]), str(doc["kind"])
    try:
        rt = scheme.for_kind(api_version, kind)
    except UnknownKindError as exc:
        name = (doc.get("metadata") or {}).get("name", "") if isinstance(doc.get("metadata"), dict) else ""
        namespace = (doc.get("metadata") or {}).get("namespace", "") if isinstance(doc.get("metadata"), dict) else ""
        raise CliError(f'resource mapping not found for name: "{name}" namespace: "{namespace}" from '
                       f'"{source}": {exc}\nensure the kind is spelled right and served by this server') from None
    try:
        obj = codec.decode(doc, scheme)
    except StatusError as exc:
        raise CliError(f'error validating "{source}": {_status_text(exc)}') from None
    return rt, obj


def _status_text(exc: StatusError) -> str:
    if exc.causes and not any(str(c.field) in exc.message for c in exc.causes):
        return "; ".join(str(c) for c in exc.causes)
    return exc.message


def expand_lists(docs: list[Any]) -> list[Any]:
    """``kind: List`` documents (what ``get -o yaml`` prints) hold their objects in ``items``."""
    out: list[Any] = []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            out.extend(expand_lists(doc["items"]))
        elif doc is not None:
            out.append(doc)
    return out


def read_manifests(filenames: Sequence[str], recursive: bool, scheme: Scheme,
                   stdin: Callable[[], str] | None = None, verb: str = "apply") -> list[Manifest]:
    """Every document of every input, decoded; raises one CliError naming every bad one."""
    from kubelite.machinery import codec

    if not filenames:
        raise CliError("must specify one of -f and -k")
    read_stdin = stdin or (lambda: sys.stdin.read())
    manifests: list[Manifest] = []
    errors: list[str] = []
    for path in expand_paths(filenames, recursive):
        source = _source_label(path)
        text = _read(path, read_stdin)
        try:
            docs = codec.load_documents(text, source=source)
        except StatusError as exc:
            # The codec's message already says "error parsing <source>: line N, column M: ...".
            errors.append(exc.message)
            continue
        for doc in expand_lists(list(docs)):
            try:
                rt, obj = decode_document(doc, source, scheme)
            except CliError as exc:
                errors.append(exc.message)
                continue
            manifests.append(Manifest(source=source, data=doc, rt=rt, obj=obj))
    if errors:
        raise CliError("\nerror: ".join(errors))
    if not manifests:
        raise CliError(f"no objects passed to {verb}")
    return manifests


def apply_namespace(manifests: list[Manifest], namespace: str, explicit: bool) -> None:
    """Fills metadata.namespace of namespaced objects; refuses a clash with an explicit -n like kubectl."""
    for m in manifests:
        md = meta(m.obj)
        if not m.rt.namespaced:
            if md.namespace:
                md.namespace = ""
            continue
        if not md.namespace:
            md.namespace = namespace
        elif explicit and md.namespace != namespace:
            raise CliError(f'the namespace from the provided object "{md.namespace}" does not match the '
                           f'namespace "{namespace}". You must pass \'--namespace={md.namespace}\' to perform '
                           "this operation.")
