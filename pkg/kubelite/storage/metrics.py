"""Prometheus metrics of the etcd storage layer.

Module-level so that every EtcdStorage in a process shares one set of series
(prometheus_client refuses to register a name twice). Names follow the
Kubernetes apiserver's where one exists (``etcd_request_duration_seconds``).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUEST_DURATION = Histogram(
    "etcd_request_duration_seconds",
    "Latency of etcd requests made by the storage layer, by operation (one sample per attempt).",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

REQUEST_ERRORS = Counter(
    "etcd_request_errors_total",
    "etcd requests that failed, by operation and gRPC code.",
    ["operation", "code"],
)

RETRIES = Counter(
    "etcd_request_retries_total",
    "etcd requests retried against another member after a transient failure.",
    ["operation"],
)

TXNS = Counter(
    "etcd_write_txns_total",
    "Write transactions committed by the group-commit batcher, by outcome "
    "(succeeded, failed = a precondition failed, error = no answer / ambiguous).",
    ["outcome"],
)

BATCH_SIZE = Histogram(
    "etcd_write_batch_size",
    "Number of caller operations (create/update/delete) committed in one etcd transaction.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)

WATCH_RESTARTS = Counter(
    "etcd_watch_restarts_total",
    "Watch streams re-established after a broken stream (member failover).",
)

KEYS_READ = Counter(
    "etcd_read_keys_total",
    "Keys returned by etcd range reads (get, list, list_page), by operation.",
    ["operation"],
)
