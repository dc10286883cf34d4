"""kube-scheduler's metrics, by its names and labels, so that dashboards built for it read ours."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SCHEDULE_ATTEMPTS = Counter(
    "scheduler_schedule_attempts_total",
    "Scheduling attempts by outcome: scheduled, unschedulable (no node fits) or error (a failure of ours or of "
    "the binding).",
    ["result", "profile"])
ATTEMPT_DURATION = Histogram(
    "scheduler_scheduling_attempt_duration_seconds",
    "Seconds from taking a pod off the queue to its outcome, the binding included.",
    ["result", "profile"],
    buckets=(0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192,
             16.384))
PENDING_PODS = Gauge(
    "scheduler_pending_pods",
    "Pods waiting in the scheduling queue, by sub-queue (active, backoff, unschedulable).",
    ["queue"])
BINDINGS_IN_FLIGHT = Gauge("scheduler_bindings_in_flight", "Bindings sent to the API server and not yet answered.")
CACHE_SIZE = Gauge("scheduler_cache_size",
                   "Nodes, pods (bound or assumed) and PodDisruptionBudgets the scheduler's cache holds.", ["type"])
PREEMPTION_ATTEMPTS = Counter("scheduler_preemption_attempts_total", "Preemptions decided (victims chosen).")
PREEMPTION_VICTIMS = Histogram("scheduler_preemption_victims", "Victims per preemption.",
                               buckets=(1, 2, 4, 8, 16, 32, 64))
