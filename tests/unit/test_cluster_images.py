"""The image cache (keys, lookup, replacement), image references, the registry's plan and load-image's choice,
against an engine in memory (tests/unit/fakes_docker.py)."""

from __future__ import annotations

import contextlib
import http.server
import re
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelite.cluster import images, lifecycle, spec
from kubelite.cluster.imagecache import CacheError, ImageCache, entry_name, parse_entry_name
from kubelite.cluster.spec import ClusterConfig, ConfigError
from kubelite.runtime.docker import mirror_has
from kubelite.runtime.reference import Reference, parse_reference
from tests.unit.fakes_docker import FakeDocker

LABEL = images.DIGEST_LABEL


def _quiet(_: str) -> None:
    pass


# --- references -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("image", "want"), [
    ("busybox", Reference("docker.io", "library/busybox", "latest", "")),
    ("kubelite/busybox:v1", Reference("docker.io", "kubelite/busybox", "v1", "")),
    ("docker.io/kubelite/busybox:v1", Reference("docker.io", "kubelite/busybox", "v1", "")),
    ("index.docker.io/library/nginx:1.25", Reference("docker.io", "library/nginx", "1.25", "")),
    ("kubelite-registry:5000/team/app:2", Reference("kubelite-registry:5000", "team/app", "2", "")),
    ("localhost/app", Reference("localhost", "app", "latest", "")),
    ("registry.example/a/b/c:x_1", Reference("registry.example", "a/b/c", "x_1", "")),
    ("app@sha256:" + "a" * 64, Reference("docker.io", "library/app", "", "sha256:" + "a" * 64)),
])
def test_references_are_normalised_as_docker_does(image: str, want: Reference) -> None:
    assert parse_reference(image) == want


@pytest.mark.parametrize("image", ["", " busybox", "Kubelite/Busybox:v1", "busybox:", "busybox:-dash",
                                   "app@sha256:short", "a//b"])
def test_a_bad_reference_is_an_error_naming_it(image: str) -> None:
    with pytest.raises(ValueError, match="invalid image reference"):
        parse_reference(image)


def test_a_reference_moves_to_another_registry_with_its_repository_and_tag() -> None:
    assert parse_reference("busybox:1").with_domain("127.0.0.1:40000") == "127.0.0.1:40000/library/busybox:1"
    assert parse_reference("kubelite/busybox:v1").with_domain(spec.REGISTRY_ADDRESS) == \
        "kubelite-registry:5000/kubelite/busybox:v1"


# --- the cache's keys and entries ---------------------------------------------------------------------------


def test_entry_names_round_trip_and_cannot_collide() -> None:
    name = entry_name("kubelite/node:0.1.0", "abc123")
    assert "/" not in name and name.endswith(".tar")
    assert parse_entry_name(name) == ("kubelite/node:0.1.0", "abc123")
    # Names that a naive '/'->'_' mapping would fold into one file stay apart.
    assert entry_name("a/b:c", "k") != entry_name("a_b:c", "k")
    assert parse_entry_name(".hidden.tar") is None
    assert parse_entry_name("notes.txt") is None
    assert parse_entry_name("x@bad key.tar") is None
    with pytest.raises(ValueError, match="invalid image cache key"):
        entry_name("x:1", "../escape")


def test_a_cache_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(CacheError, match="not a directory"):
        ImageCache(tmp_path / "f")
    with pytest.raises(ConfigError, match="--image-cache"):
        ClusterConfig(image_cache=str(tmp_path / "f"))


async def test_store_replaces_the_images_older_key_and_keeps_other_images(tmp_path: Path) -> None:
    docker = FakeDocker()
    docker.add_image("kubelite/node:1", {LABEL: "old"})
    docker.add_image("kubelite/dns:1", {LABEL: "old"})
    cache = ImageCache(tmp_path / "cache")  # made on first store
    await cache.store(docker, "kubelite/node:1", "old")
    await cache.store(docker, "kubelite/dns:1", "old")
    docker.images["kubelite/node:1"]["Config"]["Labels"][LABEL] = "new"
    await cache.store(docker, "kubelite/node:1", "new")
    assert [(e.image, e.key) for e in cache.entries()] == [("kubelite/dns:1", "old"), ("kubelite/node:1", "new")]
    assert cache.lookup("kubelite/node:1", "old") is None
    assert cache.lookup("kubelite/node:1", "new") is not None
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]  # no temporary left


async def test_restore_loads_the_matching_key_only_and_drops_a_corrupt_tarball(tmp_path: Path) -> None:
    docker = FakeDocker()
    docker.add_image("kubelite/node:1", {LABEL: "k1"})
    cache = ImageCache(tmp_path)
    await cache.store(docker, "kubelite/node:1", "k1")
    del docker.images["kubelite/node:1"]
    assert not await cache.restore(docker, "kubelite/node:1", "k2")
    assert await cache.restore(docker, "kubelite/node:1", "k1")
    assert docker.images["kubelite/node:1"]["Config"]["Labels"][LABEL] == "k1"
    path = cache.path("kubelite/node:1", "k1")
    path.write_text("truncated")
    assert not await cache.restore(docker, "kubelite/node:1", "k1")
    assert not path.exists()


# --- ensure_source_images with a cache ----------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "pyproject.toml").write_text('name = "kubelite"\n')
    return root


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch, tree: Path) -> Iterator[tuple[FakeDocker, list[str]]]:
    """The build steps replaced: `docker build -t TAG` makes TAG in the fake engine with the tree's digest."""
    docker = FakeDocker()
    docker.add_image(images.BASE_IMAGE)
    built: list[str] = []
    digest = images.source_digest(tree)

    async def shell(cmd: str, *, what: str) -> str:
        m = re.search(r"docker build -q -t (\S+)", cmd)
        assert m, cmd
        built.append(m.group(1))
        docker.add_image(m.group(1), {LABEL: digest})
        return ""

    async def wheels(tree: Path, into: Path) -> None:
        pass  # the replaced contexts read no wheels

    monkeypatch.setattr(images, "_shell", shell)
    monkeypatch.setattr(images, "build_wheels", wheels)
    monkeypatch.setattr(images, "_CONTEXTS", {"node": lambda *a: None, "dns": lambda *a: None})
    yield docker, built


WANTED = {"node": "kubelite/node:t", "dns": "kubelite/dns:t"}


async def test_built_images_are_saved_under_the_source_digest_and_loaded_next_time(
        builds: tuple[FakeDocker, list[str]], tree: Path, tmp_path: Path) -> None:
    docker, built = builds
    cache = ImageCache(tmp_path / "cache")
    digest = images.source_digest(tree)
    reports = await images.ensure_source_images(docker, _quiet, WANTED, tree=tree, cache=cache)
    assert built == ["kubelite/node:t", "kubelite/dns:t"] and all(r.built for r in reports)
    assert {(e.image, e.key) for e in cache.entries()} >= {("kubelite/node:t", digest), ("kubelite/dns:t", digest)}

    # `docker image rm`, or a fresh engine with the same folder: loaded, not built.
    for tag in WANTED.values():
        del docker.images[tag]
    built.clear()
    reports = await images.ensure_source_images(docker, _quiet, WANTED, tree=tree, cache=cache)
    assert built == []
    assert [(r.image, r.how) for r in reports] == [("kubelite/node:t", "loaded from the image cache"),
                                                   ("kubelite/dns:t", "loaded from the image cache")]
    assert docker.images["kubelite/node:t"]["Config"]["Labels"][LABEL] == digest


async def test_a_cache_entry_of_another_digest_is_not_used_and_is_replaced(
        builds: tuple[FakeDocker, list[str]], tree: Path, tmp_path: Path) -> None:
    docker, built = builds
    cache = ImageCache(tmp_path / "cache")
    await images.ensure_source_images(docker, _quiet, WANTED, tree=tree, cache=cache)
    old = images.source_digest(tree)
    (tree / "pkg" / "mod.py").write_text("x = 2\n")  # the source changed
    new = images.source_digest(tree)
    built.clear()
    reports = await images.ensure_source_images(docker, _quiet, WANTED, tree=tree, cache=cache)
    assert built == ["kubelite/node:t", "kubelite/dns:t"] and all(r.built for r in reports)
    keys = {e.key for e in cache.entries("kubelite/node:t")}
    assert keys == {new} and old not in keys


async def test_a_current_image_missing_from_the_cache_is_saved_without_a_build(
        builds: tuple[FakeDocker, list[str]], tree: Path, tmp_path: Path) -> None:
    docker, built = builds
    digest = images.source_digest(tree)
    for tag in WANTED.values():
        docker.add_image(tag, {LABEL: digest})
    cache = ImageCache(tmp_path / "cache")
    reports = await images.ensure_source_images(docker, _quiet, WANTED, tree=tree, cache=cache)
    assert built == [] and [r.how for r in reports] == ["up to date", "up to date"]
    assert cache.lookup("kubelite/node:t", digest) is not None
    # Without a cache nothing is saved anywhere, and nothing is asked of the engine but inspect.
    docker.calls.clear()
    await images.ensure_source_images(docker, _quiet, WANTED, tree=tree)
    assert {c[0] for c in docker.calls} == {"image"}


async def test_the_registry_image_is_keyed_by_its_dockerfile_and_config(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    dockerfile, config, digest = images.registry_build_files()
    assert "docker-registry" in dockerfile and f"{LABEL}={digest}" in dockerfile
    assert "htpasswd" not in config and f"addr: :{spec.REGISTRY_PORT}" in config
    assert images.registry_build_files("other/base:1")[2] != digest
    docker = FakeDocker()
    docker.add_image("kubelite/registry:t", {LABEL: digest})
    cache = ImageCache(tmp_path)
    assert (await images.ensure_registry_image(docker, _quiet, tag="kubelite/registry:t", cache=cache)).how == \
        "up to date"
    del docker.images["kubelite/registry:t"]

    async def no_build(cmd: str, *, what: str) -> str:
        raise AssertionError(f"built: {cmd}")

    monkeypatch.setattr(images, "_shell", no_build)
    report = await images.ensure_registry_image(docker, _quiet, tag="kubelite/registry:t", cache=cache)
    assert report.loaded and not report.built


def test_the_image_tag_can_be_set_per_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBELITE_IMAGE_TAG", "wt-1")
    assert images.node_image() == "kubelite/node:wt-1" and images.dns_image() == "kubelite/dns:wt-1"
    # What the nodes run keeps the version's name: the add-on names it.
    assert images.dns_image_name() == f"kubelite/dns:{images.version()}"
    monkeypatch.setenv("KUBELITE_IMAGE_TAG", "no/slash")
    with pytest.raises(images.ImageError, match="KUBELITE_IMAGE_TAG"):
        images.node_image()


def test_node_containers_mirror_docker_io_through_the_registry_alias() -> None:
    import json

    doc = json.loads(images.NODE_DAEMON_JSON)
    assert doc == {"registry-mirrors": ["http://kubelite-registry:5000"],
                   "insecure-registries": ["kubelite-registry:5000"]}


# --- the registry container -----------------------------------------------------------------------------------


def test_the_registry_sits_on_the_cluster_network_under_its_alias_published_on_loopback() -> None:
    import ipaddress

    cfg = ClusterConfig(name="demo", workers=1)
    reg = spec.registry_member(cfg, ipaddress.IPv4Network("172.30.7.0/24"))
    assert (reg.name, reg.role, reg.ip, reg.is_node) == ("demo-registry", "registry", "172.30.7.5", False)
    assert reg.ip not in {m.ip for m in spec.plan(cfg, ipaddress.IPv4Network("172.30.7.0/24"))}
    args = spec.registry_run_args(cfg, reg, "demo", "kubelite/registry:1")
    joined = " ".join(args)
    assert "--network demo --ip 172.30.7.5 --network-alias kubelite-registry" in joined
    assert "--label io.kubelite.cluster=demo --label io.kubelite.role=registry" in joined
    assert "-v demo-registry-data:/var/lib/registry" in joined  # a labelled volume: down removes it
    assert "-p 127.0.0.1::5000" in joined and args[-1] == "kubelite/registry:1"
    assert "--cap-add" not in args  # an ordinary container, unlike the nodes


# --- load-image: pushed, or copied into the nodes -----------------------------------------------------------


class _Report:
    def __init__(self) -> None:
        self.lines: list[str] = []

    @contextlib.asynccontextmanager
    async def step(self, title: str) -> AsyncIterator[None]:
        self.lines.append(title)
        yield

    def info(self, text: str) -> None:
        self.lines.append(text)


def _cluster(docker: FakeDocker, *, registry: bool = True) -> None:
    for node, role in (("c-control-plane", "control-plane"), ("c-worker", "worker")):
        docker.add_container(node, {spec.LABEL_CLUSTER: "c", spec.LABEL_ROLE: role})
    if registry:
        docker.add_container("c-registry", {spec.LABEL_CLUSTER: "c", spec.LABEL_ROLE: "registry"})
        docker.ports[("c-registry", "5000/tcp")] = "127.0.0.1:40000"


@pytest.mark.parametrize(("image", "pushed_as", "in_registry"), [
    ("kubelite/busybox:v1", "127.0.0.1:40000/kubelite/busybox:v1", "kubelite-registry:5000/kubelite/busybox:v1"),
    ("busybox", "127.0.0.1:40000/library/busybox:latest", "kubelite-registry:5000/library/busybox:latest"),
    ("kubelite-registry:5000/team/app:2", "127.0.0.1:40000/team/app:2", "kubelite-registry:5000/team/app:2"),
])
async def test_load_image_pushes_through_the_loopback_port_and_untags_again(image: str, pushed_as: str,
                                                                            in_registry: str) -> None:
    docker = FakeDocker()
    _cluster(docker)
    docker.add_image(image)
    done = await lifecycle.load_image(docker, "c", image, _Report())
    assert docker.pushed == [pushed_as]
    assert (done.pushed, done.nodes) == (in_registry, [])
    assert pushed_as not in docker.images and image in docker.images
    assert docker.pipes == []  # nothing copied into the nodes


@pytest.mark.parametrize(("image", "registry"), [("other.example/app:1", True), ("kubelite/busybox:v1", False)])
async def test_load_image_copies_into_every_node_what_the_registry_cannot_serve(image: str, registry: bool) -> None:
    docker = FakeDocker()
    _cluster(docker, registry=registry)
    docker.add_image(image)
    report = _Report()
    done = await lifecycle.load_image(docker, "c", image, report)
    assert docker.pushed == [] and done.pushed == ""
    assert sorted(dst[2] for _, dst in docker.pipes) == ["c-control-plane", "c-worker"]
    assert any("copying it into every node" in line for line in report.lines)


async def test_load_image_errors_name_the_image() -> None:
    docker = FakeDocker()
    _cluster(docker)
    with pytest.raises(lifecycle.ClusterError, match="not present locally"):
        await lifecycle.load_image(docker, "c", "kubelite/ghost:1", _Report())
    digest_ref = "kubelite/app@sha256:" + "b" * 64
    docker.add_image(digest_ref)
    with pytest.raises(lifecycle.ClusterError, match="by a tag, not a digest"):
        await lifecycle.load_image(docker, "c", digest_ref, _Report())


# --- the kubelet's question to a mirror -----------------------------------------------------------------------


@pytest.fixture
def mirror() -> Iterator[str]:
    """A registry that holds kubelite/busybox:v1 only, on a loopback port."""
    seen: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            seen.append({"path": self.path, "accept": self.headers.get("Accept", "")})
            self.send_response(200 if self.path == "/v2/kubelite/busybox/manifests/v1" else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
    assert all("manifest.v2+json" in s["accept"] for s in seen)


def test_a_mirror_is_asked_for_the_manifest_before_a_pull(mirror: str) -> None:
    assert mirror_has(mirror, parse_reference("kubelite/busybox:v1"))
    assert not mirror_has(mirror, parse_reference("kubelite/busybox:v2"))
    assert not mirror_has(mirror, parse_reference("busybox"))  # library/busybox: not there


def test_an_unreachable_mirror_is_a_no() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
    assert not mirror_has(f"http://127.0.0.1:{port}", parse_reference("kubelite/busybox:v1"), timeout=2)
