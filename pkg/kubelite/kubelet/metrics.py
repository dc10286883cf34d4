"""Prometheus metrics of the kubelet (names follow Kubernetes' kubelet where one exists).

Process-wide, as prometheus_client's default registry is: hollow kubelets in
one process add up into the same series.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

POD_START_LATENCY = Histogram(
    "kubelet_pod_start_duration_seconds", "From pod creation to the first Running status the kubelet wrote.",
    buckets=(0.5, 1, 1.5, 2, 3, 4, 5, 7.5, 10, 20, 30, 60, 120),
)
SYNC_LATENCY = Histogram(
    "kubelet_pod_worker_duration_seconds", "Duration of one pod sync.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SYNC_ERRORS = Counter("kubelet_pod_sync_errors_total", "Pod syncs that failed and were requeued.")
RUNNING_PODS = Gauge("kubelet_running_pods", "Pod sandboxes running on this node.")
RUNNING_CONTAINERS = Gauge("kubelet_running_containers", "Containers running on this node.")
