"""kube-proxy's metrics, under kube-proxy's names, so existing dashboards read them.

Module-level because prometheus_client refuses to register a name twice; one
proxy runs per process.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# 1 ms .. ~16 s, doubling: a partial sync is milliseconds, a full 10k-Service restore tens of seconds.
_SYNC_BUCKETS = tuple(0.001 * 2**i for i in range(16))

SYNC_DURATION = Histogram(
    "kubeproxy_sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds (full and partial).",
    buckets=_SYNC_BUCKETS)
SYNC_FULL_DURATION = Histogram(
    "kubeproxy_sync_full_proxy_rules_duration_seconds", "Latency of full syncs in seconds.", buckets=_SYNC_BUCKETS)
SYNC_PARTIAL_DURATION = Histogram(
    "kubeproxy_sync_partial_proxy_rules_duration_seconds", "Latency of partial syncs in seconds.",
    buckets=_SYNC_BUCKETS)
LAST_SYNC = Gauge(
    "kubeproxy_sync_proxy_rules_last_timestamp_seconds", "The last time rules were successfully synced.")
SYNC_FAILURES = Counter(
    "kubeproxy_sync_proxy_rules_iptables_restore_failures_total",
    "Syncs whose iptables-restore or nft -f failed.")
RULES = Gauge("kubeproxy_sync_proxy_rules_iptables_total", "Rules (or nftables elements) in the desired state.")
LINES_WRITTEN = Gauge("kubeproxy_sync_proxy_rules_last_lines_written", "Lines handed to the kernel by the last sync.")
NETWORK_PROGRAMMING = Histogram(
    "kubeproxy_network_programming_duration_seconds",
    "From an Endpoints change in the API (its last-change-trigger-time annotation, else the event's arrival) "
    "to the rules in the kernel.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20, 30, 45, 60, 120, 300))
