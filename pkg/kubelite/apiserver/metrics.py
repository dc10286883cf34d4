"""Prometheus metrics of the API server (names follow kube-apiserver's)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "apiserver_request_total", "API requests by verb, resource and result code.",
    ["verb", "group", "resource", "code"],
)
LATENCY = Histogram(
    "apiserver_request_duration_seconds", "API request latency by verb and resource (watches excluded).",
    ["verb", "group", "resource"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WATCHERS = Gauge("apiserver_registered_watchers", "Open watches by resource.", ["group", "resource"])
