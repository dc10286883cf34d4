"""The proxy's side effects, behind small Protocols: iptables, nft and conntrack.

Proxiers never run a command themselves. They hand text to an
``IptablesRunner`` / ``NftRunner`` and ask a ``Conntrack`` to forget flows,
so unit tests run the whole sync logic against fakes that record what they
were given, and integration tests run the real tools (optionally prefixed by
``ip netns exec NAME`` to program a network namespace the test made).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)


class CommandError(Exception):
    """A tool exited non-zero; the message carries its stderr."""

    def __init__(self, argv: Sequence[str], code: int, stderr: str) -> None:
        super().__init__(f"{' '.join(argv)} exited with {code}: {stderr.strip()[:2000]}")
        self.argv = list(argv)
        self.code = code
        self.stderr = stderr


async def run_command(argv: Sequence[str], stdin: str | None = None) -> str:
    """Runs argv, feeding stdin; returns stdout, raises CommandError on a non-zero exit."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    except asyncio.CancelledError:
        # Never leave a half-fed iptables-restore behind: it holds the xtables lock.
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if proc.returncode != 0:
        raise CommandError(argv, proc.returncode or 0, err.decode(errors="replace"))
    return out.decode(errors="replace")


class IptablesRunner(Protocol):
    async def save(self, tables: Sequence[str]) -> str:
        """iptables-save of the given tables, concatenated."""

    async def restore(self, text: str) -> None:
        """iptables-restore --noflush of text, as one atomic transaction per table."""

    async def has_chain(self, table: str, chain: str) -> bool:
        """Whether the chain exists: a cheap probe, unlike a save of the whole table."""


class NftRunner(Protocol):
    async def apply(self, text: str) -> None:
        """nft -f of text (one transaction)."""

    async def list_ruleset(self) -> str: ...

    async def has_set(self, table: str, name: str) -> bool:
        """Whether set ``name`` exists in ``table`` (family ip). A set, not a chain: nft lists one
        set without the rest of the table, but a chain only after fetching every set's elements
        (10 s for a 10,000-Service table on a loaded machine here, 0.01 s for the set)."""


class Conntrack(Protocol):
    async def delete(self, args: Sequence[str]) -> None:
        """conntrack -D with the given filter; no matching entry is not an error."""


@dataclass
class ExecIptablesRunner:
    """The real tools; ``prefix`` (``ip netns exec NAME``) runs them in another network namespace."""

    prefix: tuple[str, ...] = ()
    save_binary: str = "iptables-save"
    restore_binary: str = "iptables-restore"

    async def save(self, tables: Sequence[str]) -> str:
        return "".join([await run_command([*self.prefix, self.save_binary, "-t", t]) for t in tables])

    async def restore(self, text: str) -> None:
        # -w: wait for the xtables lock rather than fail when another tool (Docker) holds it.
        await run_command([*self.prefix, self.restore_binary, "-w", "5", "--noflush"], text)

    async def has_chain(self, table: str, chain: str) -> bool:
        try:
            await run_command([*self.prefix, "iptables", "-w", "5", "-t", table, "-S", chain])
        except CommandError:
            return False
        return True


@dataclass
class ExecNftRunner:
    prefix: tuple[str, ...] = ()
    binary: str = "nft"

    async def apply(self, text: str) -> None:
        await run_command([*self.prefix, self.binary, "-f", "-"], text)

    async def list_ruleset(self) -> str:
        return await run_command([*self.prefix, self.binary, "list", "ruleset"])

    async def has_set(self, table: str, name: str) -> bool:
        try:
            await run_command([*self.prefix, self.binary, "list", "set", "ip", table, name])
        except CommandError:
            return False
        return True


@dataclass
class ExecConntrack:
    prefix: tuple[str, ...] = ()
    binary: str = "conntrack"

    async def delete(self, args: Sequence[str]) -> None:
        try:
            await run_command([*self.prefix, self.binary, "-D", *args])
        except CommandError as exc:
            # conntrack exits 1 when nothing matched; that is the common, fine case.
            if "0 flow entries have been deleted" not in exc.stderr:
                raise


# -- fakes for unit tests ------------------------------------------------------------


@dataclass
class FakeIptablesRunner:
    """Records restores and serves a canned iptables-save; ``fail_next`` makes the next restore fail."""

    saved: str = ""
    restores: list[str] = field(default_factory=list)
    saves: int = 0
    fail_next: int = 0
    canary: bool = True  # what has_chain answers: False plays "someone flushed our tables"

    async def save(self, tables: Sequence[str]) -> str:
        self.saves += 1
        return self.saved

    async def restore(self, text: str) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise CommandError(["iptables-restore"], 1, "injected failure")
        self.restores.append(text)

    async def has_chain(self, table: str, chain: str) -> bool:
        return self.canary


@dataclass
class FakeNftRunner:
    applied: list[str] = field(default_factory=list)
    ruleset: str = ""
    canary: bool = True

    async def apply(self, text: str) -> None:
        self.applied.append(text)

    async def list_ruleset(self) -> str:
        return self.ruleset

    async def has_set(self, table: str, name: str) -> bool:
        return self.canary


@dataclass
class FakeConntrack:
    deletes: list[list[str]] = field(default_factory=list)

    async def delete(self, args: Sequence[str]) -> None:
        self.deletes.append(list(args))
