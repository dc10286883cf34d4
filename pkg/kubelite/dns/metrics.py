"""Prometheus metrics of the cluster DNS server (CoreDNS names where they exist)."""

from __future__ import annotations

from prometheus_client import Counter

QUERIES = Counter("coredns_dns_requests_total", "DNS queries by transport and by who answered them",
                  ["proto", "zone"])
CACHE = Counter("coredns_cache_requests_total", "Forwarded queries answered from the cache or not", ["result"])
