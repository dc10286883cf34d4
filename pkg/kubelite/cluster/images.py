"""The images a local cluster runs, built on this machine (nothing is ever pulled).

- ``kubelite/base:bookworm``: ``debootstrap --variant=minbase bookworm`` imported
  as an image. It changes only when Debian does, so it is built once and kept
  (about 30 s cold); every node image build starts from it.
- ``kubelite/node:<version>``: the base plus the node's packages, the units and
  kubelite itself, installed by the same ``deploy/install.sh`` phases a VM runs.
  kubelite comes from wheels built on the host (``pip wheel``), installed with
  ``--no-index`` so the build never needs PyPI from inside a container.
- ``kubelite/dns:<version>``: the cluster DNS server (``kubelite-dns``) as the pods of the
  ``coredns`` Deployment run it: the base plus python3 and the same wheels in a
  virtualenv. It is loaded into every node by ``kubelite cluster up`` (about
  90 MB over the base, whose layer Docker's load keeps once per node).
- ``kubelite/pause:<version>``: the sandbox that holds a pod's namespaces: a
  static busybox and a shell loop that exits on SIGTERM (PID 1 ignores signals
  it has no handler for, so a bare ``sleep`` would take docker's 10 s kill).
- ``kubelite/registry:<version>``: Debian's ``docker-registry`` (distribution 2.8) on the base,
  the cluster's image registry: every node's dockerd uses it as its mirror of docker.io names,
  so an image pushed once (``kubelite cluster load-image``) is pulled by whichever node needs it.

A node image is cached by content, not only by tag: the image carries the
digest of the source tree it was built from (label ``io.kubelite.source-digest``)
and is rebuilt only when the tree differs, so tests never run stale code and
an unchanged tree costs one ``docker image inspect``. A rebuild after a code
change reuses Docker's layer cache for everything but the kubelite wheel.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubelite
from kubelite.cluster.docker import Docker, inspect
from kubelite.cluster.imagecache import ImageCache
from kubelite.cluster.spec import REGISTRY_ADDRESS, REGISTRY_PORT
from kubelite.runtime import images as runtime_images

BASE_IMAGE = "kubelite/base:bookworm"
DIGEST_LABEL = "io.kubelite.source-digest"
DEBIAN_SUITE = "bookworm"

# What goes into the wheel and the image; a change in any of these rebuilds the node image.
_SOURCE_ROOTS = ("pkg", "cmd", "deploy")
_SOURCE_FILES = ("pyproject.toml", "setup.py", "README.md")
_SKIP_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}

Say = Callable[[str], None]


class ImageError(Exception):
    """An image could not be built; the message says which and why."""


def version() -> str:
    return runtime_images.project_version()


_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def image_tag() -> str:
    """The tag of the images built from the source tree here: the project version, or $KUBELITE_IMAGE_TAG.

    Several checkouts sharing one Docker engine (worktrees, each with a source digest of its own) would
    otherwise take the same tag from each other and rebuild in turn; each can keep its own. What the
    nodes run is named by the version whatever the tag here (the DNS image is pushed under it)."""
    tag = os.environ.get("KUBELITE_IMAGE_TAG", "") or version()
    if not _TAG.match(tag):
        raise ImageError(f"invalid KUBELITE_IMAGE_TAG {tag!r}: letters, digits, '_', '.' and '-'")
    return tag


def node_image() -> str:
    return f"kubelite/node:{image_tag()}"


def dns_image() -> str:
    """The DNS image as built here (see image_tag)."""
    return f"kubelite/dns:{image_tag()}"


def dns_image_name() -> str:
    """The DNS image as the cluster add-on names it (deploy/addons/kube-dns.yaml), in the registry."""
    return f"kubelite/dns:{version()}"


def pause_image() -> str:
    return runtime_images.pause_image()


def source_tree() -> Path | None:
    """The kubelite source tree this code runs from (an editable install), if any."""
    root = Path(kubelite.__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "kubelite"' in pyproject.read_text():
        return root
    return None


def _source_files(tree: Path) -> Iterator[Path]:
    for name in _SOURCE_FILES:
        if (tree / name).is_file():
            yield tree / name
    for top in _SOURCE_ROOTS:
        for dirpath, dirnames, filenames in os.walk(tree / top):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.endswith(".egg-info"))
            for f in sorted(filenames):
                if not f.endswith((".pyc", ".pyo")):
                    yield Path(dirpath) / f


def source_digest(tree: Path) -> str:
    """sha256 over the relative paths and bytes of everything the image is built from."""
    h = hashlib.sha256()
    for path in _source_files(tree):
        h.update(str(path.relative_to(tree)).encode() + b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def _find_tool(name: str, *paths: str) -> str | None:
    """On PATH, else at a fixed path (a root shell's PATH may lack /usr/sbin)."""
    found = shutil.which(name) if name else None
    return found or next((p for p in paths if os.path.exists(p)), None)


@dataclass(frozen=True)
class BuildReport:
    image: str
    built: bool  # False: an up-to-date image was already there (or came from the image cache)
    seconds: float
    loaded: bool = False  # True: ``docker load``-ed from the image cache instead of built

    @property
    def how(self) -> str:
        return "built" if self.built else "loaded from the image cache" if self.loaded else "up to date"


async def _restore(docker: Docker, cache: ImageCache | None, tag: str, key: str, say: Say, *,
                   labelled: bool) -> bool:
    """``tag`` loaded from the cache entry of ``key``, checked: a labelled image must carry ``key``
    (a tarball saved under the wrong key is dropped, and the image is built)."""
    if cache is None or not await cache.restore(docker, tag, key):
        return False
    if labelled:
        ok, _ = await _is_current(docker, tag, key)
    else:
        ok = await inspect(docker, "image", tag) is not None
    if not ok:
        path = cache.lookup(tag, key)
        if path is not None:
            path.unlink(missing_ok=True)
        return False
    say(f"{tag}: loaded from the image cache {cache.root}")
    return True


async def _store(docker: Docker, cache: ImageCache | None, tag: str, key: str, say: Say) -> None:
    """Saves ``tag`` into the cache under ``key`` unless that entry is there already."""
    if cache is None or cache.lookup(tag, key) is not None:
        return
    path = await cache.store(docker, tag, key)
    say(f"{tag}: saved to the image cache as {path.name}")


async def _shell(cmd: str, *, what: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "bash", "-o", "pipefail", "-c", cmd, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await proc.communicate()
    except asyncio.CancelledError:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    text = out.decode(errors="replace")
    if proc.returncode:
        tail = "\n".join(text.splitlines()[-25:])
        raise ImageError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return text


# The base image's cache key: it is what debootstrap makes of the suite, whatever the day.
BASE_CACHE_KEY = f"debootstrap-{DEBIAN_SUITE}"


async def ensure_base_image(docker: Docker, say: Say, *, tag: str = BASE_IMAGE,
                            cache: ImageCache | None = None) -> BuildReport:
    """The Debian minbase image; built once per machine with debootstrap (or loaded from ``cache``)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    if await inspect(docker, "image", tag) is not None:
        # Only asked for when another image is about to be built: worth keeping for the next fresh engine.
        await _store(docker, cache, tag, BASE_CACHE_KEY, say)
        return BuildReport(tag, False, loop.time() - start)
    if await _restore(docker, cache, tag, BASE_CACHE_KEY, say, labelled=False):
        return BuildReport(tag, False, loop.time() - start, loaded=True)
    debootstrap = _find_tool("debootstrap", "/usr/sbin/debootstrap")
    if debootstrap is None:
        raise ImageError(f"building {tag} needs debootstrap: run hack/docker.sh (or apt-get install debootstrap)")
    say(f"building {tag} with debootstrap (once per machine, about 30 s)")
    # /var/tmp: the root file system is ~200 MB, more than a small /tmp tmpfs may hold.
    with tempfile.TemporaryDirectory(prefix="kubelite-base-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "root"
        await _shell(f"{shlex.quote(debootstrap)} --variant=minbase {DEBIAN_SUITE} {shlex.quote(str(root))}",
                     what=f"debootstrap {DEBIAN_SUITE}")
        await _shell(f"tar -C {shlex.quote(str(root))} -c . | docker import - {shlex.quote(tag)}",
                     what=f"docker import {tag}")
    await _store(docker, cache, tag, BASE_CACHE_KEY, say)
    return BuildReport(tag, True, loop.time() - start)


# Units that need hardware or a console a container does not have (node and VM images).
_MASKED_UNITS = ("systemd-udevd.service systemd-udevd-kernel.socket systemd-udevd-control.socket "
                 "systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount "
                 "sys-kernel-tracing.mount getty.target console-getty.service systemd-firstboot.service")

_NODE_DOCKERFILE = """\
# Generated by kubelite.cluster.images: the local cluster's node (and etcd member) image.
FROM {base}
ENV DEBIAN_FRONTEND=noninteractive container=docker
# The same phases a VM runs (deploy/install.sh), one layer each so that a
# change of kubelite's code rebuilds only the last layers.
COPY install.sh /opt/kubelite-install/install.sh
RUN bash /opt/kubelite-install/install.sh packages && apt-get clean && rm -rf /var/lib/apt/lists/*
# Units that need hardware or a console a container does not have.
RUN systemctl mask {masked} >/dev/null
COPY deps/ /tmp/kubelite-deps/
RUN python3 -m venv /opt/kubelite \\
    && /opt/kubelite/bin/pip install -q --no-index --no-deps /tmp/kubelite-deps/*.whl && rm -rf /tmp/kubelite-deps
COPY systemd/ /opt/kubelite-install/systemd/
RUN bash /opt/kubelite-install/install.sh units
# The cluster add-ons (cluster DNS) the control plane applies, as on a VM (install.sh addons).
COPY addons/ /opt/kubelite-install/addons/
# Node containers only: the node's resolver (Docker's embedded one) reachable from its pods.
COPY node-resolver.sh /usr/local/lib/kubelite/node-resolver.sh
COPY kubelite-node-resolver.service /etc/systemd/system/kubelite-node-resolver.service
RUN chmod 0755 /usr/local/lib/kubelite/node-resolver.sh && systemctl enable kubelite-node-resolver.service >/dev/null
# Node containers only: the node's dockerd pulls docker.io names through the cluster's registry.
COPY daemon.json /etc/docker/daemon.json
COPY wheel/ /tmp/kubelite-wheel/
RUN bash /opt/kubelite-install/install.sh kubelite --wheels /tmp/kubelite-wheel && rm -rf /tmp/kubelite-wheel
LABEL {label}={digest}
# systemd stops cleanly on SIGRTMIN+3 (docker stop), and is PID 1.
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
"""


async def build_wheels(tree: Path, into: Path) -> None:
    """kubelite's wheel and its dependencies' wheels, built on the host (pip's cache makes repeats fast)."""
    cmd = (f"cd {shlex.quote(str(tree))} && {shlex.quote(sys.executable)} -m pip wheel -q "
           f"--disable-pip-version-check . -w {shlex.quote(str(into))}")
    await _shell(cmd, what="pip wheel")


def _split_wheels(ctx: Path, wheels: Path, tree: Path) -> None:
    """Copies the wheels into ``ctx/deps`` (dependencies: a layer that changes rarely) and ``ctx/wheel``."""
    (ctx / "deps").mkdir()
    (ctx / "wheel").mkdir()
    for whl in sorted(wheels.glob("*.whl")):
        dest = "wheel" if whl.name.startswith("kubelite-") else "deps"
        shutil.copy(whl, ctx / dest / whl.name)
    if not any((ctx / "wheel").iterdir()):
        raise ImageError(f"pip wheel wrote no kubelite wheel for {tree}")


def _node_context(ctx: Path, wheels: Path, tree: Path, base: str, digest: str) -> None:
    """Lays out the build context: wheels split into dependencies and kubelite, install.sh, units, addons."""
    _split_wheels(ctx, wheels, tree)
    shutil.copy(tree / "deploy" / "install.sh", ctx / "install.sh")
    shutil.copytree(tree / "deploy" / "systemd", ctx / "systemd")
    shutil.copytree(tree / "deploy" / "addons", ctx / "addons")
    (ctx / "node-resolver.sh").write_text(_NODE_RESOLVER_SCRIPT)
    (ctx / "kubelite-node-resolver.service").write_text(_NODE_RESOLVER_UNIT)
    (ctx / "daemon.json").write_text(NODE_DAEMON_JSON)
    (ctx / "Dockerfile").write_text(_NODE_DOCKERFILE.format(base=base, label=DIGEST_LABEL, digest=digest,
                                                            masked=_MASKED_UNITS))


# A node container's resolver is Docker's embedded DNS at 127.0.0.11, which answers only inside the
# container's own network namespace: a pod (the cluster DNS forwarding a name outside the cluster, or
# any pod with dnsPolicy Default) could not reach it, and Docker's dockerd in the node would fall back
# to public resolvers. As kind does, the node's own address on port 53 is translated to the embedded
# resolver (whose port Docker picks at each start, hence a unit at every boot), and the node's
# resolv.conf names that address, so the node's dockerd hands it to pods as their upstream.
_NODE_RESOLVER_SCRIPT = r"""#!/bin/bash
# Generated by kubelite.cluster.images (node containers only); run at boot by kubelite-node-resolver.service.
set -euo pipefail
rules=$(iptables-save -t nat)
udp=$(sed -n 's/^-A DOCKER_OUTPUT .*-p udp .*--to-destination \(127\.0\.0\.11:[0-9]*\).*/\1/p' <<<"$rules" | head -n1)
tcp=$(sed -n 's/^-A DOCKER_OUTPUT .*-p tcp .*--to-destination \(127\.0\.0\.11:[0-9]*\).*/\1/p' <<<"$rules" | head -n1)
if [ -z "$udp" ] || [ -z "$tcp" ]; then
  echo "node-resolver: no Docker embedded resolver here; nothing to do"
  exit 0
fi
ip=$(ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1 | head -n1)
[ -n "$ip" ] || { echo "node-resolver: eth0 has no IPv4 address" >&2; exit 1; }
iptables -t nat -N KUBELITE-NODE-RESOLVER 2>/dev/null || iptables -t nat -F KUBELITE-NODE-RESOLVER
iptables -t nat -A KUBELITE-NODE-RESOLVER -d "$ip/32" -p udp --dport 53 -j DNAT --to-destination "$udp"
iptables -t nat -A KUBELITE-NODE-RESOLVER -d "$ip/32" -p tcp --dport 53 -j DNAT --to-destination "$tcp"
for chain in PREROUTING OUTPUT; do
  iptables -t nat -C "$chain" -j KUBELITE-NODE-RESOLVER 2>/dev/null \
    || iptables -t nat -I "$chain" -j KUBELITE-NODE-RESOLVER
done
# Packets from pods translated to a loopback address are martians unless the kernel is told otherwise.
sysctl -q -w net.ipv4.conf.all.route_localnet=1
if grep -q '^nameserver 127\.0\.0\.11$' /etc/resolv.conf; then
  # In place: /etc/resolv.conf is a file Docker bind-mounts.
  sed "s/^nameserver 127\.0\.0\.11$/nameserver $ip/" /etc/resolv.conf > /tmp/resolv.conf.kubelite
  cat /tmp/resolv.conf.kubelite > /etc/resolv.conf && rm -f /tmp/resolv.conf.kubelite
fi
echo "node-resolver: $ip:53 -> Docker's resolver ($udp udp, $tcp tcp)"
"""

# A node container's dockerd (read at its start, which is at boot: no restart, and a node added
# later gets it too). docker.io names (``kubelite/busybox:v1``, ``busybox``) are asked of the mirror
# first, which is how a pod's image reference stays the one a manifest from elsewhere has. The
# mirror is plain HTTP on the cluster network; insecure-registries lets references that name it
# explicitly (``kubelite-registry:5000/x:1``) be pulled too. The kubelet's runtime asks the mirror
# before it lets dockerd pull (dockerd would fall back to Docker Hub for what the mirror lacks).
NODE_DAEMON_JSON = json.dumps({"registry-mirrors": [f"http://{REGISTRY_ADDRESS}"],
                               "insecure-registries": [REGISTRY_ADDRESS]}, indent=2) + "\n"

_NODE_RESOLVER_UNIT = """\
[Unit]
Description=kubelite node container: the node's resolver reachable from its pods at the node's address
Before=docker.service kubelite-kubelet.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/lib/kubelite/node-resolver.sh

[Install]
WantedBy=multi-user.target
"""

_DNS_DOCKERFILE = """\
# Generated by kubelite.cluster.images: the cluster DNS image (kubelite-dns), run by the coredns Deployment.
# Built in a stage of its own, then flattened into one layer of only what the server needs: every
# node loads this image at `cluster up`, and the time that takes grows with its size.
FROM {base} AS build
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q && apt-get install -y -q --no-install-recommends python3 python3-venv \\
    && apt-get clean && rm -rf /var/lib/apt/lists/*
# The dependencies the DNS server imports (_DNS_SKIPPED_WHEELS are left out), then kubelite.
COPY deps/ /tmp/kubelite-deps/
RUN python3 -m venv /opt/kubelite \\
    && /opt/kubelite/bin/pip install -q --no-index --no-deps /tmp/kubelite-deps/*.whl \\
    && rm -rf /tmp/kubelite-deps
COPY wheel/ /tmp/kubelite-wheel/
RUN /opt/kubelite/bin/pip install -q --no-index --no-deps /tmp/kubelite-wheel/*.whl && rm -rf /tmp/kubelite-wheel \\
    && /opt/kubelite/bin/pip uninstall -q -y pip setuptools \\
    && rm -rf /usr/share/doc /usr/share/man /usr/share/info /usr/share/locale /usr/share/python-wheels \\
       /var/cache/* /var/lib/apt /var/log/* /usr/lib/x86_64-linux-gnu/gconv /usr/lib/x86_64-linux-gnu/perl-base
FROM scratch
COPY --from=build / /
LABEL {label}={digest}
ENV PATH=/opt/kubelite/bin:/usr/sbin:/usr/bin:/sbin:/bin
# The DNS port, liveness (/health), readiness (/ready) and metrics, as CoreDNS has them.
EXPOSE 53/udp 53/tcp 8080 8181 9153
ENTRYPOINT ["/opt/kubelite/bin/kubelite-dns"]
"""


# Dependencies of kubelite that the DNS server never imports (numpy: the scheduler's columns; docker:
# the kubelet's runtime; aetcd: storage): 80 MB less to load into every node.
_DNS_SKIPPED_WHEELS = ("numpy-", "docker-", "aetcd-")


def _dns_context(ctx: Path, wheels: Path, tree: Path, base: str, digest: str) -> None:
    _split_wheels(ctx, wheels, tree)
    for whl in (ctx / "deps").glob("*.whl"):
        if whl.name.startswith(_DNS_SKIPPED_WHEELS):
            whl.unlink()
    (ctx / "Dockerfile").write_text(_DNS_DOCKERFILE.format(base=base, label=DIGEST_LABEL, digest=digest))


# Image kind -> the function that lays out its build context.
_CONTEXTS: dict[str, Callable[[Path, Path, Path, str, str], None]] = {"node": _node_context, "dns": _dns_context}


async def _is_current(docker: Docker, tag: str, digest: str) -> tuple[bool, dict[str, Any] | None]:
    existing = await inspect(docker, "image", tag)
    labels = ((existing or {}).get("Config") or {}).get("Labels") or {}
    return existing is not None and labels.get(DIGEST_LABEL) == digest, existing


async def ensure_source_images(docker: Docker, say: Say, wanted: dict[str, str], *, tree: Path | None = None,
                               base: str = BASE_IMAGE, force: bool = False,
                               cache: ImageCache | None = None) -> list[BuildReport]:
    """The images built from kubelite's source (``wanted``: kind "node" or "dns" -> tag), each rebuilt only
    when the source tree's digest changed; the wheels are built once for all that need a rebuild.

    With ``cache``, an image missing or stale here is loaded from the cache entry of the tree's digest
    when there is one, and every image of this digest not in the cache yet is saved there."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    tree = tree or source_tree()
    reports: list[BuildReport] = []
    if tree is None:
        for tag in wanted.values():
            if await inspect(docker, "image", tag) is None:
                raise ImageError(f"image {tag} is missing and this kubelite is not a source tree to build it "
                                 "from; build it from a checkout (kubelite cluster build-image) or pass --image")
            reports.append(BuildReport(tag, False, loop.time() - start))
        return reports
    digest = await asyncio.to_thread(source_digest, tree)
    stale: dict[str, tuple[str, dict[str, Any] | None]] = {}
    for kind, tag in wanted.items():
        if kind not in _CONTEXTS:
            raise ImageError(f"unknown image kind {kind!r}: one of {', '.join(_CONTEXTS)}")
        current, existing = await _is_current(docker, tag, digest)
        if current and not force:
            await _store(docker, cache, tag, digest, say)
            reports.append(BuildReport(tag, False, loop.time() - start))
        elif not force and await _restore(docker, cache, tag, digest, say, labelled=True):
            if existing is not None:
                # As after a build: the stale image lost its tag to the loaded one.
                await docker.run("image", "rm", str(existing["Id"]), check=False)
            reports.append(BuildReport(tag, False, loop.time() - start, loaded=True))
        else:
            stale[kind] = (tag, existing)
    if not stale:
        return reports
    await ensure_base_image(docker, say, tag=base, cache=cache)
    with tempfile.TemporaryDirectory(prefix="kubelite-wheels-", dir="/var/tmp") as tmp:
        wheels = Path(tmp) / "wheels"
        await build_wheels(tree, wheels)
        for kind, (tag, existing) in stale.items():
            began = loop.time()
            say(f"building {tag} from {tree}" + (" (source changed)" if existing is not None else ""))
            ctx = Path(tmp) / kind
            ctx.mkdir()
            await asyncio.to_thread(_CONTEXTS[kind], ctx, wheels, tree, base, digest)
            # The classic builder resolves FROM against local images only, which is what an
            # offline machine needs; BuildKit would try the registry for the base image's metadata.
            await _shell(f"DOCKER_BUILDKIT=0 docker build -q -t {shlex.quote(tag)} {shlex.quote(str(ctx))}",
                         what=f"docker build {tag}")
            if existing is not None:
                # The previous build lost its tag; drop it unless a container still uses it (then docker refuses).
                await docker.run("image", "rm", str(existing["Id"]), check=False)
            await _store(docker, cache, tag, digest, say)
            reports.append(BuildReport(tag, True, loop.time() - began))
    return reports


async def ensure_node_image(docker: Docker, say: Say, *, tag: str | None = None, tree: Path | None = None,
                            base: str = BASE_IMAGE, force: bool = False) -> BuildReport:
    """``kubelite/node:<version>``, rebuilt only when the source tree's digest changed."""
    (report,) = await ensure_source_images(docker, say, {"node": tag or node_image()}, tree=tree, base=base,
                                           force=force)
    return report


async def ensure_dns_image(docker: Docker, say: Say, *, tag: str | None = None, tree: Path | None = None,
                           base: str = BASE_IMAGE, force: bool = False) -> BuildReport:
    """``kubelite/dns:<version>``, rebuilt only when the source tree's digest changed."""
    (report,) = await ensure_source_images(docker, say, {"dns": tag or dns_image()}, tree=tree, base=base,
                                           force=force)
    return report


async def ensure_pause_image(docker: Docker, say: Say, *, tag: str | None = None,
                             cache: ImageCache | None = None) -> BuildReport:
    """The sandbox image, built by the runtime's own builder (the one a kubelet uses on a fresh node),
    or loaded from ``cache`` under the digest of what it is built from."""
    tag = tag or pause_image()
    loop = asyncio.get_running_loop()
    start = loop.time()
    present = await inspect(docker, "image", tag) is not None
    if present and cache is None:
        return BuildReport(tag, False, loop.time() - start)
    if _find_tool("busybox", "/bin/busybox", "/usr/bin/busybox") is None:
        raise ImageError(f"building {tag} needs busybox-static: run hack/docker.sh (or apt-get install busybox-static)")
    try:
        key = await asyncio.to_thread(runtime_images.pause_build_key)
    except runtime_images.ImageBuildError as exc:
        raise ImageError(str(exc)) from exc
    if present:
        await _store(docker, cache, tag, key, say)
        return BuildReport(tag, False, loop.time() - start)
    if await _restore(docker, cache, tag, key, say, labelled=False):
        return BuildReport(tag, False, loop.time() - start, loaded=True)
    say(f"building {tag}")
    await asyncio.to_thread(_build_with_sdk, runtime_images.ensure_pause_image, tag)
    await _store(docker, cache, tag, key, say)
    return BuildReport(tag, True, loop.time() - start)


def _build_with_sdk(build: Callable[[Any, str], str], tag: str) -> None:
    import docker as docker_sdk

    api = docker_sdk.APIClient()
    try:
        build(api, tag)
    finally:
        api.close()


VM_IMAGE = "kubelite/vm:bookworm"

_VM_DOCKERFILE = """\
# Generated by kubelite.cluster.images: a bare Debian host that boots systemd, standing in for a VM
# in install tests. Nothing of kubelite is installed; deploy/install.sh's packages are only
# downloaded (their .debs in apt's cache), so each test installs them for real without the network.
FROM {base}
ENV DEBIAN_FRONTEND=noninteractive container=docker
RUN apt-get update -q && apt-get install -y -q --no-install-recommends systemd systemd-sysv dbus \\
    && apt-get install -y -q --no-install-recommends --download-only {packages}
RUN systemctl mask {masked} >/dev/null
LABEL {label}={digest}
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
"""


def install_packages(install_sh: Path) -> list[str]:
    """The PACKAGES=(...) list of deploy/install.sh."""
    m = re.search(r"^PACKAGES=\(([^)]*)\)", install_sh.read_text(), re.MULTILINE)
    if m is None:
        raise ImageError(f"{install_sh} has no PACKAGES=(...) list")
    return m.group(1).split()


async def ensure_vm_image(docker: Docker, say: Say, *, tree: Path | None = None, tag: str = VM_IMAGE,
                          base: str = BASE_IMAGE) -> BuildReport:
    """The bare systemd host for install.sh tests, rebuilt when install.sh's package list changes."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    tree = tree or source_tree()
    if tree is None:
        raise ImageError(f"building {tag} needs a kubelite source tree (deploy/install.sh)")
    packages = await asyncio.to_thread(install_packages, tree / "deploy" / "install.sh")
    digest = hashlib.sha256(" ".join(packages).encode() + _MASKED_UNITS.encode()).hexdigest()
    existing = await inspect(docker, "image", tag)
    if existing is not None and ((existing.get("Config") or {}).get("Labels") or {}).get(DIGEST_LABEL) == digest:
        return BuildReport(tag, False, loop.time() - start)
    await ensure_base_image(docker, say, tag=base)
    say(f"building {tag}")
    with tempfile.TemporaryDirectory(prefix="kubelite-vm-", dir="/var/tmp") as tmp:
        dockerfile = _VM_DOCKERFILE.format(base=base, packages=" ".join(packages), masked=_MASKED_UNITS,
                                           label=DIGEST_LABEL, digest=digest)
        await asyncio.to_thread((Path(tmp) / "Dockerfile").write_text, dockerfile)
        await _shell(f"DOCKER_BUILDKIT=0 docker build -q -t {shlex.quote(tag)} {shlex.quote(tmp)}",
                     what=f"docker build {tag}")
    if existing is not None:
        await docker.run("image", "rm", str(existing["Id"]), check=False)
    return BuildReport(tag, True, loop.time() - start)


def registry_image() -> str:
    return f"kubelite/registry:{version()}"


# distribution's own configuration: plain HTTP on the cluster network (the nodes' mirror), no
# authentication (Debian's default config asks for htpasswd), deletes allowed, blobs on the volume.
_REGISTRY_CONFIG = """\
# Generated by kubelite.cluster.images: the local cluster's image registry.
version: 0.1
log:
  level: info
  fields:
    service: kubelite-registry
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :{port}
  headers:
    X-Content-Type-Options: [nosniff]
"""

_REGISTRY_DOCKERFILE = """\
# Generated by kubelite.cluster.images: Debian's docker-registry (distribution 2.8) on the base image.
FROM {base}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q && apt-get install -y -q --no-install-recommends docker-registry \\
    && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY config.yml /etc/kubelite-registry/config.yml
LABEL {label}={digest}
EXPOSE {port}
VOLUME /var/lib/registry
ENTRYPOINT ["/usr/bin/docker-registry", "serve", "/etc/kubelite-registry/config.yml"]
"""


def registry_build_files(base: str = BASE_IMAGE) -> tuple[str, str, str]:
    """(Dockerfile, config.yml, digest): the digest covers both files, so a change of either rebuilds."""
    config = _REGISTRY_CONFIG.format(port=REGISTRY_PORT)
    probe = _REGISTRY_DOCKERFILE.format(base=base, label=DIGEST_LABEL, digest="", port=REGISTRY_PORT)
    digest = hashlib.sha256(probe.encode() + b"\0" + config.encode()).hexdigest()
    return _REGISTRY_DOCKERFILE.format(base=base, label=DIGEST_LABEL, digest=digest, port=REGISTRY_PORT), config, digest


async def ensure_registry_image(docker: Docker, say: Say, *, tag: str | None = None, base: str = BASE_IMAGE,
                                cache: ImageCache | None = None) -> BuildReport:
    """The cluster's registry image, rebuilt when its Dockerfile or configuration changes."""
    dockerfile, config, digest = registry_build_files(base)
    return await _ensure_package_image(docker, say, tag or registry_image(), "Debian's docker-registry",
                                       {"Dockerfile": dockerfile, "config.yml": config}, digest, base, cache)


def load_balancer_image() -> str:
    return f"kubelite/load-balancer:{version()}"


_LOAD_BALANCER_DOCKERFILE = """\
# Generated by kubelite.cluster.images: Debian's haproxy, the API servers' load balancer of a cluster
# with several control planes. Its configuration comes in KUBELITE_LB_CONFIG (kubelite.cluster.spec).
FROM {base}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q && apt-get install -y -q --no-install-recommends haproxy \\
    && apt-get clean && rm -rf /var/lib/apt/lists/*
LABEL {label}={digest}
ENTRYPOINT ["/bin/sh", "-c", "printf '%s' \\"$KUBELITE_LB_CONFIG\\" > /etc/haproxy/kubelite.cfg && \\
exec haproxy -W -db -f /etc/haproxy/kubelite.cfg"]
"""


async def ensure_load_balancer_image(docker: Docker, say: Say, *, tag: str | None = None, base: str = BASE_IMAGE,
                                     cache: ImageCache | None = None) -> BuildReport:
    """The load balancer's image (only clusters with several control planes use it)."""
    probe = _LOAD_BALANCER_DOCKERFILE.format(base=base, label=DIGEST_LABEL, digest="")
    digest = hashlib.sha256(probe.encode()).hexdigest()
    dockerfile = _LOAD_BALANCER_DOCKERFILE.format(base=base, label=DIGEST_LABEL, digest=digest)
    return await _ensure_package_image(docker, say, tag or load_balancer_image(), "Debian's haproxy",
                                       {"Dockerfile": dockerfile}, digest, base, cache)


async def _ensure_package_image(docker: Docker, say: Say, tag: str, what: str, files: dict[str, str], digest: str,
                                base: str, cache: ImageCache | None) -> BuildReport:
    """An image of a Debian package on the base image, from ``files`` (a Dockerfile labelled with ``digest``,
    and what it copies): kept while the label matches, else restored from the cache or built."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    current, existing = await _is_current(docker, tag, digest)
    if current:
        await _store(docker, cache, tag, digest, say)
        return BuildReport(tag, False, loop.time() - start)
    if await _restore(docker, cache, tag, digest, say, labelled=True):
        if existing is not None:
            await docker.run("image", "rm", str(existing["Id"]), check=False)
        return BuildReport(tag, False, loop.time() - start, loaded=True)
    await ensure_base_image(docker, say, tag=base, cache=cache)
    say(f"building {tag} ({what})")
    with tempfile.TemporaryDirectory(prefix="kubelite-image-", dir="/var/tmp") as tmp:
        for name, text in files.items():
            await asyncio.to_thread((Path(tmp) / name).write_text, text)
        await _shell(f"DOCKER_BUILDKIT=0 docker build -q -t {shlex.quote(tag)} {shlex.quote(tmp)}",
                     what=f"docker build {tag}")
    if existing is not None:
        await docker.run("image", "rm", str(existing["Id"]), check=False)
    await _store(docker, cache, tag, digest, say)
    return BuildReport(tag, True, loop.time() - start)
