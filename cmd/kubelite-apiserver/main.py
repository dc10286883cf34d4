"""kubelite-apiserver: flags -> APIServerConfig -> run()."""

from __future__ import annotations

import asyncio

import click

from kubelite.apiserver.config import APIServerConfig
from kubelite.apiserver.server import run
from kubelite.machinery import duration
from kubelite.machinery.process import configure_logging, until_signalled


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--etcd-servers", required=True, help="Comma-separated etcd client URLs.")
@click.option("--bind-address", default="0.0.0.0", help="Address the gRPC API listens on.")
@click.option("--secure-port", default=6443, type=int, help="Port of the gRPC API.")
@click.option("--http-bind-address", default="127.0.0.1", help="Address of /healthz, /readyz and /metrics.")
@click.option("--http-port", default=8080, type=int, help="Port of /healthz, /readyz and /metrics.")
@click.option("--service-cluster-ip-range", default="10.96.0.0/16")
@click.option("--service-node-port-range", default="30000-32767")
@click.option("--watch-cache-size", default=10_000, type=int, help="Revisions of history kept per resource.")
@click.option("--watch-bookmark-interval", default=30.0, type=float,
              help="Seconds between bookmarks to watchers that allow them.")
@click.option("--advertise-address", default="",
              help="IP address published in the kubernetes Service's Endpoints (default: the bind address or the "
                   "host's address).")
@click.option("--event-ttl", default="1h0m0s", help="How long Events are kept in etcd.")
@click.option("--default-not-ready-toleration-seconds", default=300, type=int,
              help="tolerationSeconds of the toleration for node.kubernetes.io/not-ready:NoExecute given to pods "
                   "that have none.")
@click.option("--default-unreachable-toleration-seconds", default=300, type=int,
              help="tolerationSeconds of the toleration for node.kubernetes.io/unreachable:NoExecute given to pods "
                   "that have none.")
@click.option("--endpoint-lease-seconds", default=15, type=int,
              help="Lifetime of this server's entry in the kubernetes Endpoints unless renewed.")
@click.option("--min-request-timeout", default=1800, type=int,
              help="Seconds a watch lasts at least before the server ends it (jittered up to twice), so that "
                   "clients spread over API servers again.")
@click.option("-v", "--v", "verbosity", default=0, type=int, help="Log verbosity (0: info, 4+: debug).")
def main(etcd_servers: str, bind_address: str, secure_port: int, http_bind_address: str, http_port: int,
         service_cluster_ip_range: str, service_node_port_range: str, watch_cache_size: int,
         watch_bookmark_interval: float, advertise_address: str, event_ttl: str,
         default_not_ready_toleration_seconds: int, default_unreachable_toleration_seconds: int,
         endpoint_lease_seconds: int, min_request_timeout: int, verbosity: int) -> None:
    """The kubelite API server: the only component that talks to etcd."""
    configure_logging(verbosity)
    try:
        ttl = duration.parse_duration(event_ttl)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--event-ttl") from exc
    try:
        config = APIServerConfig(
            etcd_servers=tuple(s.strip() for s in etcd_servers.split(",") if s.strip()),
            bind_address=bind_address, secure_port=secure_port, http_bind_address=http_bind_address,
            http_port=http_port, service_cluster_ip_range=service_cluster_ip_range,
            service_node_port_range=service_node_port_range, watch_cache_size=watch_cache_size,
            bookmark_interval=watch_bookmark_interval, advertise_address=advertise_address,
            event_ttl_seconds=round(ttl),
            default_not_ready_toleration_seconds=default_not_ready_toleration_seconds,
            default_unreachable_toleration_seconds=default_unreachable_toleration_seconds,
            endpoint_lease_seconds=endpoint_lease_seconds, watch_timeout_seconds=min_request_timeout)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    asyncio.run(until_signalled(run(config), "kubelite-apiserver"))
