"""The Docker engine, driven through the ``docker`` CLI.

Why the CLI and not the Docker SDK: the node-container flags are the ones
PLATFORM.md verified on these machines, spelled as ``docker run`` takes them
(``--cgroupns host``, ``--security-opt systempaths=unconfined``), so what the
cluster code runs is what an operator can paste to debug; image loading is a
pipe (``docker save | docker exec -i NODE docker load``) that the CLI streams
without buffering a tarball in Python; and ``asyncio`` subprocesses let nodes
start and load images concurrently without a thread per blocking SDK call.
The docker client is present on every machine (PLATFORM.md), so this adds no
dependency. Every call sits behind the ``Docker`` Protocol so that plans and
the CLI can be tested without an engine.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class DockerError(Exception):
    """A docker command failed; carries the command and its stderr."""

    def __init__(self, args: Sequence[str], code: int, stderr: str) -> None:
        self.command = ["docker", *args]
        self.code = code
        self.stderr = stderr.strip()
        super().__init__(f"`{shlex.join(['docker', *args])}` failed (exit {code}): {self.stderr[-2000:]}")


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


class Docker(Protocol):
    async def run(self, *args: str, stdin: bytes | None = None, check: bool = True,
                  timeout: float | None = None) -> Result: ...

    async def pipe(self, src: Sequence[str], dst: Sequence[str]) -> None: ...


class DockerCLI:
    """Runs ``docker`` subcommands as child processes of this one."""

    def __init__(self, binary: str = "docker") -> None:
        self.binary = binary

    async def run(self, *args: str, stdin: bytes | None = None, check: bool = True,
                  timeout: float | None = None) -> Result:
        proc = await asyncio.create_subprocess_exec(
            self.binary, *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        except (TimeoutError, asyncio.CancelledError):
            # The child is ours: stop it by its PID rather than leave it running.
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        result = Result(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))
        if check and result.code != 0:
            raise DockerError(args, result.code, result.stderr or result.stdout)
        return result

    async def pipe(self, src: Sequence[str], dst: Sequence[str]) -> None:
        """``docker SRC... | docker DST...``, streamed through an OS pipe."""
        read_fd, write_fd = os.pipe()
        try:
            producer = await asyncio.create_subprocess_exec(
                self.binary, *src, stdin=asyncio.subprocess.DEVNULL, stdout=write_fd,
                stderr=asyncio.subprocess.PIPE)
            consumer = await asyncio.create_subprocess_exec(
                self.binary, *dst, stdin=read_fd, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
        finally:
            # The children hold their own copies; ours would keep the pipe open forever.
            os.close(read_fd)
            os.close(write_fd)
        (_, perr), (cout, cerr) = await asyncio.gather(producer.communicate(), consumer.communicate())
        if producer.returncode:
            raise DockerError(src, producer.returncode, perr.decode(errors="replace"))
        if consumer.returncode:
            raise DockerError(dst, consumer.returncode, (cerr or cout).decode(errors="replace"))


async def inspect(docker: Docker, kind: str, ref: str) -> dict[str, Any] | None:
    """``docker <kind> inspect REF`` as a dict, or None when it does not exist."""
    r = await docker.run(kind, "inspect", ref, check=False)
    if r.code != 0:
        if "No such" in r.stderr or "not found" in r.stderr.lower():
            return None
        raise DockerError([kind, "inspect", ref], r.code, r.stderr)
    data = json.loads(r.stdout)
    return data[0] if data else None


async def ids(docker: Docker, kind: str, label: str) -> list[str]:
    """IDs (names for volumes) of the containers/networks/volumes carrying ``label``."""
    if kind == "container":
        args = ["ps", "-a", "-q", "--no-trunc", "--filter", f"label={label}"]
    else:
        args = [kind, "ls", "-q", "--filter", f"label={label}"]
    r = await docker.run(*args)
    return [line for line in r.stdout.split() if line]
