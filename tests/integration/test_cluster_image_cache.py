"""``--image-cache`` against the real Docker engine, on the smallest image it holds (the pause image, 2 MB).

The code path is the one `cluster up --image-cache DIR` runs for every image it builds: saved after the
build under the digest of its inputs, loaded (not built) once the image is gone, and built again when
the tarball is damaged. A tag of the test's own keeps it clear of the images other runs use.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubelite.cluster import images
from kubelite.cluster.docker import DockerCLI, inspect
from kubelite.cluster.imagecache import ImageCache
from kubelite.runtime import images as runtime_images


def _quiet(_: str) -> None:
    pass


@pytest.fixture
async def tag() -> AsyncIterator[str]:
    name = f"kubelite/pause-cache-test:{secrets.token_hex(4)}"
    yield name
    await DockerCLI().run("image", "rm", name, check=False)


async def test_the_pause_image_is_saved_loaded_instead_of_built_and_rebuilt_when_damaged(
        tag: str, tmp_path: Path) -> None:
    docker = DockerCLI()
    cache = ImageCache(tmp_path / "cache")
    first = await images.ensure_pause_image(docker, _quiet, tag=tag, cache=cache)
    assert first.built
    (entry,) = cache.entries(tag)
    assert entry.key == runtime_images.pause_build_key() and entry.path.stat().st_size > 1_000_000
    built = await inspect(docker, "image", tag)
    assert built is not None

    await docker.run("image", "rm", tag)
    again = await images.ensure_pause_image(docker, _quiet, tag=tag, cache=cache)
    assert again.loaded and not again.built
    loaded = await inspect(docker, "image", tag)
    assert loaded is not None and loaded["Id"] == built["Id"]  # the very image, not a new build
    r = await docker.run("run", "--rm", "--entrypoint", "/bin/sh", tag, "-c", "echo from-the-cache")
    assert r.stdout.strip() == "from-the-cache"

    # Present and cached: nothing to do, nothing written.
    mtime = entry.path.stat().st_mtime_ns
    assert (await images.ensure_pause_image(docker, _quiet, tag=tag, cache=cache)).how == "up to date"
    assert entry.path.stat().st_mtime_ns == mtime

    # A damaged tarball does not load: it is dropped, the image built, and a good tarball written.
    entry.path.write_bytes(b"not a tarball")
    await docker.run("image", "rm", tag)
    rebuilt = await images.ensure_pause_image(docker, _quiet, tag=tag, cache=cache)
    assert rebuilt.built
    (fresh,) = cache.entries(tag)
    assert fresh.path.stat().st_size > 1_000_000
