"""The project's own tiny images, built locally from busybox-static.

Nothing can be pulled from a public registry on these machines (PLATFORM.md),
so the pause image that holds every pod's namespaces, and the busybox image
the tests and examples run, are made here: a root folder with the static
busybox binary and its applet links, tarred and ``docker import``-ed. Building
takes about a second; ``ensure_*`` do nothing when the tag already exists, so a
fresh node needs no manual step.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from importlib import metadata
from typing import Any

PAUSE_REPO = "kubelite/pause"
BUSYBOX_REPO = "kubelite/busybox"

# Applets linked into the busybox image: enough for shells, probes and tests.
_APPLETS = (
    "sh", "ash", "cat", "echo", "env", "hostname", "httpd", "id", "kill", "ls", "mkdir", "nc", "ping",
    "printf", "ps", "rm", "seq", "sleep", "tail", "head", "test", "timeout", "touch", "true", "false",
    "wget", "wc", "grep", "sed", "date", "dd", "mount", "ip", "ifconfig", "netstat", "nslookup",
    "stat", "sync", "tr", "uname", "whoami", "yes", "base64", "cp", "mv", "ln", "chmod", "df", "du",
    "awk", "cut", "sort", "uniq", "xargs", "find", "vi", "tee", "top", "free", "pidof", "nohup",
)

# PID 1 of every sandbox. A shell as PID 1 ignores signals it has no handler
# for, so the trap makes SIGTERM a clean exit 0 (docker stop returns at once
# instead of waiting for SIGKILL). `wait` on a backgrounded sleep keeps the
# shell interruptible and reaps whatever orphans land on it.
_PAUSE_SCRIPT = """#!/bin/sh
trap 'exit 0' TERM INT
while :; do
  sleep 3600 &
  wait $!
done
"""


def project_version() -> str:
    try:
        return metadata.version("kubelite")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def pause_image() -> str:
    return f"{PAUSE_REPO}:{project_version()}"


def busybox_image() -> str:
    return f"{BUSYBOX_REPO}:{project_version()}"


class ImageBuildError(Exception):
    pass


def _busybox_binary() -> str:
    path = shutil.which("busybox")
    if path is None:
        raise ImageBuildError("busybox is not installed (apt-get install busybox-static; hack/docker.sh does it)")
    return path


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    tar.addfile(info)


def busybox_rootfs(extra_files: dict[str, tuple[bytes, int]] | None = None) -> bytes:
    """A tar stream of a minimal root: /bin/busybox, its applet links, /etc basics."""
    with open(_busybox_binary(), "rb") as f:
        busybox = f.read()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "var", "home"):
            _add_dir(tar, d, 0o1777 if d == "tmp" else 0o755)
        _add_file(tar, "bin/busybox", busybox)
        for applet in _APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
        _add_file(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
                  0o644)
        _add_file(tar, "etc/group", b"root:x:0:\nnobody:x:65534:\n", 0o644)
        for name, (data, mode) in (extra_files or {}).items():
            _add_file(tar, name, data, mode)
    return buf.getvalue()


def _exists(api: Any, ref: str) -> bool:
    import docker.errors

    try:
        api.inspect_image(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def _import(api: Any, ref: str, data: bytes, changes: list[str]) -> None:
    repo, tag = ref.rsplit(":", 1)
    api.import_image_from_data(data, repository=repo, tag=tag, changes=changes)
    if not _exists(api, ref):
        raise ImageBuildError(f"docker import of {ref} did not produce the image")


def pause_build_key() -> str:
    """sha256 of what the pause image is made of (the busybox binary, its applets, the script): the key
    under which an image cache keeps it, since an imported image's ID differs at every build."""
    h = hashlib.sha256()
    with open(_busybox_binary(), "rb") as f:
        h.update(f.read())
    h.update("\0".join(_APPLETS).encode() + b"\0" + _PAUSE_SCRIPT.encode())
    return h.hexdigest()


def ensure_pause_image(api: Any, ref: str | None = None) -> str:
    """Builds ``kubelite/pause:<version>`` when missing; ``api`` is a docker.APIClient. Blocking."""
    ref = ref or pause_image()
    if not _exists(api, ref):
        rootfs = busybox_rootfs({"pause": (_PAUSE_SCRIPT.encode(), 0o755)})
        _import(api, ref, rootfs, ['CMD ["/pause"]'])
    return ref


def ensure_busybox_image(api: Any, ref: str | None = None) -> str:
    """Builds ``kubelite/busybox:<version>`` when missing. Blocking."""
    ref = ref or busybox_image()
    if not _exists(api, ref):
        _import(api, ref, busybox_rootfs(), ['CMD ["sh"]', 'ENV PATH=/bin'])
    return ref
