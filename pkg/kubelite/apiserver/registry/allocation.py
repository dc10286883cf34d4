"""Choosing Service cluster IPs and NodePorts.

The allocator only *proposes* a free-looking value at random; uniqueness is
enforced by etcd, where the store writes a claim key for the value in the same
transaction as the Service (see ``Strategy.claims_for_create``). A collision is
therefore rare (random choice in a large range) and harmless (the strategy
picks again), and no allocation bitmap has to be kept consistent across
several API servers.

As in Kubernetes, automatic cluster IPs come from the upper part of the range
first, so that the low addresses users pick by hand (10.96.0.10 for DNS) are
rarely taken by chance; the well-known addresses (the range's first host for
the ``kubernetes`` Service, its tenth for cluster DNS) are never chosen
automatically.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Collection

from kubelite.machinery import errors

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Random draws before falling back to a scan of the whole range.
_RANDOM_TRIES = 64


class IPAllocator:
    """Proposes host addresses of one Service CIDR."""

    def __init__(self, cidr: str, *, reserved_offsets: Collection[int] = (1, 10),
                 rng: random.Random | None = None) -> None:
        self.network: IPNetwork = ipaddress.ip_network(cidr, strict=False)
        self.rng = rng or random.Random()
        size = self.network.num_addresses
        # Usable host offsets: skip the network and broadcast addresses of IPv4 ranges.
        self.first = 1 if size > 2 else 0
        self.last = size - 2 if size > 2 else size - 1
        self.reserved = {o for o in reserved_offsets if self.first <= o <= self.last}
        # Kubernetes' static band: min(max(16, size/16), 256) addresses at the bottom.
        self.static_band = min(max(16, size // 16), 256)

    def address(self, offset: int) -> str:
        return str(self.network.network_address + offset)

    def pick(self, avoid: Collection[str] = ()) -> str:
        dynamic_low = self.first + self.static_band
        low = dynamic_low if dynamic_low <= self.last else self.first
        for _ in range(_RANDOM_TRIES):
            offset = self.rng.randint(low, self.last)
            candidate = self.address(offset)
            if offset not in self.reserved and candidate not in avoid:
                return candidate
        start = self.rng.randint(self.first, self.last)
        span = self.last - self.first + 1
        for step in range(span):
            offset = self.first + (start - self.first + step) % span
            candidate = self.address(offset)
            if offset not in self.reserved and candidate not in avoid:
                return candidate
        raise errors.internal(f"failed to allocate a serviceIP: range {self.network} is full")


class PortAllocator:
    """Proposes NodePorts from an inclusive range."""

    def __init__(self, low: int, high: int, *, rng: random.Random | None = None) -> None:
        if not 0 < low <= high <= 65535:
            raise ValueError(f"invalid port range {low}-{high}")
        self.low, self.high = low, high
        self.rng = rng or random.Random()

    def contains(self, port: int) -> bool:
        return self.low <= port <= self.high

    def pick(self, avoid: Collection[int] = ()) -> int:
        for _ in range(_RANDOM_TRIES):
            port = self.rng.randint(self.low, self.high)
            if port not in avoid:
                return port
        free = [p for p in range(self.low, self.high + 1) if p not in avoid]
        if not free:
            raise errors.internal(f"failed to allocate a nodePort: range {self.low}-{self.high} is full")
        return self.rng.choice(free)
