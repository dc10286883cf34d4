"""Runtime operation metrics (Kubernetes' kubelet_runtime_operations_* names).

Recorded where the engine is called, so the figures are the engine's own
latency, whichever kubelet (or remote server) drives this runtime.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

OPERATIONS = Histogram(
    "kubelet_runtime_operations_duration_seconds", "Duration of runtime operations by type.", ["operation_type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ERRORS = Counter("kubelet_runtime_operations_errors_total", "Failed runtime operations by type.", ["operation_type"])
