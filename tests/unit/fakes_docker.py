"""A Docker engine in memory behind kubelite.cluster.docker's ``Docker`` Protocol, for the cluster code's unit tests.

It answers the few commands the image and registry code runs (image inspect, save, load, tag, rm, push,
ps/container inspect of labelled containers, port) and records every call, so a test asserts both the
outcome (which images exist) and what was asked of the engine (nothing built, one push, ...).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kubelite.cluster.docker import DockerError, Result


class FakeDocker:
    def __init__(self) -> None:
        self.images: dict[str, dict[str, Any]] = {}   # tag -> inspect document
        self.containers: list[dict[str, Any]] = []   # container inspect documents
        self.ports: dict[tuple[str, str], str] = {}  # (container, "5000/tcp") -> "127.0.0.1:40000"
        self.calls: list[tuple[str, ...]] = []
        self.pipes: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        self.pushed: list[str] = []
        self._next_id = 0

    # --- set-up ---

    def add_image(self, tag: str, labels: dict[str, str] | None = None) -> str:
        self._next_id += 1
        image_id = f"sha256:{self._next_id:064x}"
        self.images[tag] = {"Id": image_id, "RepoTags": [tag], "Config": {"Labels": dict(labels or {})}}
        return image_id

    def add_container(self, name: str, labels: dict[str, str]) -> None:
        self.containers.append({"Id": f"id-{name}", "Name": f"/{name}", "Config": {"Labels": labels},
                                "State": {"Running": True}})

    def commands(self, verb: str) -> list[tuple[str, ...]]:
        return [c for c in self.calls if c and c[0] == verb]

    # --- the Protocol ---

    async def run(self, *args: str, stdin: bytes | None = None, check: bool = True,
                  timeout: float | None = None) -> Result:
        self.calls.append(tuple(args))
        result = self._answer(list(args))
        if check and result.code != 0:
            raise DockerError(args, result.code, result.stderr)
        return result

    async def pipe(self, src: Sequence[str], dst: Sequence[str]) -> None:
        self.pipes.append((tuple(src), tuple(dst)))

    # --- answers ---

    def _answer(self, args: list[str]) -> Result:
        ok = Result(0, "", "")
        match args:
            case ["image", "inspect", ref]:
                doc = self._image(ref)
                if doc is None:
                    return Result(1, "", f"Error: No such image: {ref}")
                return Result(0, json.dumps([doc]), "")
            case ["save", "-o", path, ref]:
                doc = self._image(ref)
                if doc is None:
                    return Result(1, "", f"Error: No such image: {ref}")
                Path(path).write_text(json.dumps({"tag": ref, "doc": doc}))
                return ok
            case ["load", "-q", "-i", path]:
                try:
                    saved = json.loads(Path(path).read_text())
                except (OSError, ValueError):
                    return Result(1, "", "Error: unexpected EOF")
                self.images[saved["tag"]] = saved["doc"]
                return Result(0, f"Loaded image: {saved['tag']}\n", "")
            case ["tag", src, dst]:
                doc = self._image(src)
                if doc is None:
                    return Result(1, "", f"Error: No such image: {src}")
                self.images[dst] = doc
                return ok
            case ["image", "rm", ref]:
                tags = [t for t, d in self.images.items() if t == ref or d["Id"] == ref]
                if not tags:
                    return Result(1, "", f"Error: No such image: {ref}")
                for t in tags:
                    del self.images[t]
                return ok
            case ["push", "-q", ref]:
                if ref not in self.images:
                    return Result(1, "", f"An image does not exist locally with the tag: {ref}")
                self.pushed.append(ref)
                return Result(0, ref + "\n", "")
            case ["ps", "-a", "-q", "--no-trunc", "--filter", flt]:
                key, _, value = flt.removeprefix("label=").partition("=")
                found = [c["Id"] for c in self.containers if c["Config"]["Labels"].get(key) == value]
                return Result(0, "\n".join(found), "")
            case ["container", "inspect", *ids]:
                return Result(0, json.dumps([c for c in self.containers if c["Id"] in ids]), "")
            case [("network" | "volume"), "ls", "-q", "--filter", _]:
                return ok
            case ["port", name, port]:
                if (name, port) not in self.ports:
                    return Result(1, "", f"Error: No public port '{port}' published for {name}")
                return Result(0, self.ports[(name, port)] + "\n", "")
        raise AssertionError(f"FakeDocker: unexpected docker {' '.join(args)}")

    def _image(self, ref: str) -> dict[str, Any] | None:
        if ref in self.images:
            return self.images[ref]
        return next((d for d in self.images.values() if d["Id"] == ref), None)
