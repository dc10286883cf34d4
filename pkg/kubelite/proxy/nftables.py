"""nftables mode (placeholder until the map layout lands)."""

from __future__ import annotations

from kubelite.proxy.model import NodeConfig, Snapshot
from kubelite.proxy.proxier import SyncResult
from kubelite.proxy.runner import Conntrack, NftRunner

TABLE = "kubelite"


class NftablesProxier:
    def __init__(self, node: NodeConfig, runner: NftRunner, conntrack: Conntrack) -> None:
        self._node = node
        self._runner = runner
        self._conntrack = conntrack

    async def sync(self, snapshot: Snapshot, *, full: bool) -> SyncResult:
        raise NotImplementedError("nftables mode")

    async def cleanup(self) -> None:
        ruleset = await self._runner.list_ruleset()
        if f"table ip {TABLE} " in ruleset:
            await self._runner.apply(f"delete table ip {TABLE}\n")
