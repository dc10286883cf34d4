"""A folder of image tarballs keyed by what the images were built from (``cluster up --image-cache DIR``).

Building the cluster's images costs minutes on a fresh engine (debootstrap, the
node's packages, the wheels), while ``docker load`` of a saved tarball takes
seconds. A CI machine that starts from an empty Docker engine, or a developer
who pruned their images, keeps a folder instead: every image the cluster code
builds is saved there under its content key (the source digest it is labelled
with, or the digest of its build inputs), and the next ``up`` loads the tarball
whose key matches the image it would otherwise build.

One file per image and key, ``<quoted image name>@<key>.tar``: the file names
are the index, so there is nothing to get out of step. Writing a new key for an
image removes that image's older keys (a cache of a tree that changes every day
does not grow every day). A tarball that no longer loads is removed and the
image is built as if it had never been there.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from kubelite.cluster.docker import Docker, DockerError

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SUFFIX = ".tar"


class CacheError(Exception):
    """The cache folder cannot be used; the message names it."""


@dataclass(frozen=True)
class Entry:
    image: str
    key: str
    path: Path


def _quote(image: str) -> str:
    # Reversible and flat: "kubelite/node:0.1.0" -> "kubelite%2Fnode%3A0.1.0" (no folders, no ambiguity).
    return urllib.parse.quote(image, safe="")


def entry_name(image: str, key: str) -> str:
    if not _KEY.match(key):
        raise ValueError(f"invalid image cache key {key!r}: letters, digits, '.', '_' and '-'")
    return f"{_quote(image)}@{key}{_SUFFIX}"


def parse_entry_name(name: str) -> tuple[str, str] | None:
    """(image, key) of a cache file name, or None for a file that is not an entry."""
    if not name.endswith(_SUFFIX) or name.startswith("."):
        return None
    quoted, sep, key = name[: -len(_SUFFIX)].rpartition("@")
    if not sep or not quoted or not _KEY.match(key):
        return None
    return urllib.parse.unquote(quoted), key


class ImageCache:
    """Tarballs made by ``docker save`` in one folder (made on first use)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        if self.root.exists() and not self.root.is_dir():
            raise CacheError(f"--image-cache {self.root}: exists and is not a directory")

    def path(self, image: str, key: str) -> Path:
        return self.root / entry_name(image, key)

    def entries(self, image: str | None = None) -> list[Entry]:
        """Every entry (of ``image`` only, when given), sorted by image and key."""
        if not self.root.is_dir():
            return []
        found = []
        for p in self.root.iterdir():
            parsed = parse_entry_name(p.name)
            if parsed is not None and p.is_file() and (image is None or parsed[0] == image):
                found.append(Entry(parsed[0], parsed[1], p))
        return sorted(found, key=lambda e: (e.image, e.key))

    def lookup(self, image: str, key: str) -> Path | None:
        p = self.path(image, key)
        return p if p.is_file() else None

    async def restore(self, docker: Docker, image: str, key: str) -> bool:
        """``docker load`` of the entry for (image, key); False when there is none or it does not load
        (a truncated or corrupt file is removed, so the caller builds and stores a good one)."""
        p = self.lookup(image, key)
        if p is None:
            return False
        try:
            await docker.run("load", "-q", "-i", str(p), timeout=600)
        except DockerError:
            p.unlink(missing_ok=True)
            return False
        return True

    async def store(self, docker: Docker, image: str, key: str) -> Path:
        """``docker save`` of ``image`` as the entry for ``key``; the image's entries of other keys go.

        Written to a hidden temporary name and renamed, so a reader never sees half a tarball and an
        interrupted save leaves no entry behind."""
        target = self.path(image, key)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"--image-cache {self.root}: {exc.strerror}") from exc
        tmp = self.root / f".{target.name}.{os.getpid()}.tmp"
        try:
            await docker.run("save", "-o", str(tmp), image, timeout=600)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        for old in self.entries(image):
            if old.key != key:
                old.path.unlink(missing_ok=True)
        return target
