"""Persistent state: the Storage contract and its etcd implementation.

Only the API server (and this package) may touch etcd. ``interface`` holds the
contract and the StorageError tree; ``etcd`` the aetcd-based EtcdStorage with
multi-member failover, group-commit write batching and resumable watches.
"""

from kubelite.storage.interface import (
    Claim,
    ClaimTakenError,
    CompactedError,
    ConflictError,
    Event,
    EventBatch,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    RangePage,
    Storage,
    StorageError,
    TooLargeError,
    UnavailableError,
    WatchGapError,
    WatchStream,
)

__all__ = [
    "Claim",
    "ClaimTakenError",
    "CompactedError",
    "ConflictError",
    "Event",
    "EventBatch",
    "FutureRevisionError",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyValue",
    "RangePage",
    "Storage",
    "StorageError",
    "TooLargeError",
    "UnavailableError",
    "WatchGapError",
    "WatchStream",
]
