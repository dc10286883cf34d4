"""A dict-backed Storage (kubelite.storage.interface) for hermetic unit tests.

Keeps keys, values and revisions like etcd does (one store-wide revision,
compare-and-swap on mod_revision, claims and releases in the same "transaction")
so that the generic store and the strategies can be driven end to end without
etcd. Watch is not supported: tests that need it use the real etcd tier.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubelite.storage.interface import (
    Claim,
    ClaimTakenError,
    ConflictError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    WatchStream,
)


class FakeStorage:
    def __init__(self) -> None:
        self.data: dict[str, KeyValue] = {}
        self.revision = 1

    def _claim(self, claims: Sequence[Claim]) -> None:
        for c in claims:
            if c.key in self.data:
                raise ClaimTakenError(c.key)

    def _put(self, key: str, value: bytes, create_revision: int = 0) -> int:
        self.data[key] = KeyValue(key, value, self.revision, create_revision or self.revision)
        return self.revision

    async def create(self, key: str, value: bytes, *, claims: Sequence[Claim] = ()) -> int:
        if key in self.data:
            raise KeyExistsError(key, self.data[key])
        self._claim(claims)
        self.revision += 1
        for c in claims:
            self._put(c.key, c.value)
        return self._put(key, value)

    async def get(self, key: str) -> KeyValue:
        try:
            return self.data[key]
        except KeyError:
            raise KeyNotFoundError(key) from None

    async def list(self, prefix: str, *, revision: int = 0) -> tuple[list[KeyValue], int]:
        return [kv for k, kv in sorted(self.data.items()) if k.startswith(prefix)], self.revision

    async def update(self, key: str, value: bytes, *, expected_revision: int, claims: Sequence[Claim] = (),
                     releases: Sequence[str] = ()) -> int:
        current = await self.get(key)
        if expected_revision and current.mod_revision != expected_revision:
            raise ConflictError(key, current, expected_revision)
        self._claim(claims)
        self.revision += 1
        for c in claims:
            self._put(c.key, c.value)
        for r in releases:
            self.data.pop(r, None)
        return self._put(key, value, current.create_revision)

    async def delete(self, key: str, *, expected_revision: int = 0, releases: Sequence[str] = ()) -> KeyValue:
        current = await self.get(key)
        if expected_revision and current.mod_revision != expected_revision:
            raise ConflictError(key, current, expected_revision)
        self.revision += 1
        del self.data[key]
        for r in releases:
            self.data.pop(r, None)
        return KeyValue(key, current.value, self.revision, current.create_revision)

    async def current_revision(self) -> int:
        return self.revision

    def watch(self, prefix: str, *, start_revision: int) -> WatchStream:
        raise NotImplementedError("FakeStorage does not watch")

    async def compact(self, revision: int) -> None:
        return None

    async def close(self) -> None:
        return None
