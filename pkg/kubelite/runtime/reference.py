"""Image references as Docker reads them: which registry a name means, and what that registry is asked.

The kubelet asks the cluster's registry (a mirror of docker.io) whether it holds an
image before it lets dockerd pull, and ``kubelite cluster load-image`` pushes an
image under the path the nodes will ask for; both need Docker's normalisation of a
name (``busybox`` is ``docker.io/library/busybox:latest``, ``kubelite/busybox:v1`` is
``docker.io/kubelite/busybox:v1``, ``host:5000/x`` names the registry ``host:5000``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
# Other spellings of Docker Hub that Docker folds into docker.io.
_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io")

_PATH = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")


@dataclass(frozen=True)
class Reference:
    domain: str   # the registry: "docker.io" for a name without one
    path: str     # the repository inside it: "library/busybox", "kubelite/busybox"
    tag: str      # "" when the reference is by digest
    digest: str   # "sha256:..." or ""

    @property
    def on_docker_hub(self) -> bool:
        return self.domain == DOCKER_HUB

    @property
    def locator(self) -> str:
        """What follows the repository in a registry URL: the tag, or the digest."""
        return self.digest or self.tag

    def with_domain(self, domain: str) -> str:
        """The same repository and tag under another registry (``127.0.0.1:PORT/kubelite/busybox:v1``)."""
        return f"{domain}/{self.path}" + (f"@{self.digest}" if self.digest else f":{self.tag}")


def parse_reference(image: str) -> Reference:
    """``image`` normalised as Docker does; ValueError names what is wrong with it."""
    if not image or image != image.strip():
        raise ValueError(f"invalid image reference {image!r}: empty or surrounded by spaces")
    rest, _, digest = image.partition("@")
    if digest and not _DIGEST.match(digest):
        raise ValueError(f"invalid image reference {image!r}: bad digest {digest!r}")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        domain, name = first, remainder
    else:
        domain, name = DOCKER_HUB, rest
    if domain in _HUB_ALIASES:
        domain = DOCKER_HUB
    path, tag = name, ""
    last = name.rpartition("/")[2]
    if ":" in last:
        path, _, tag = name.rpartition(":")
        if not _TAG.match(tag):
            raise ValueError(f"invalid image reference {image!r}: bad tag {tag!r}")
    if not _PATH.match(path):
        raise ValueError(f"invalid image reference {image!r}: the repository {path!r} must be lower-case "
                         "letters, digits and separators (. _ - /)")
    if domain == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not tag and not digest:
        tag = "latest"
    return Reference(domain, path, tag, digest)
