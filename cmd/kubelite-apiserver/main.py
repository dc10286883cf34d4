"""kubelite-apiserver: flags -> APIServerConfig -> run()."""

from __future__ import annotations

import asyncio
import logging
import signal

import click

from kubelite.apiserver.config import APIServerConfig
from kubelite.apiserver.server import run


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
@click.option("-v", "--v", "verbosity", default=0, type=int, help="Log verbosity (0: info, 4+: debug).")
def main(etcd_servers: str, bind_address: str, secure_port: int, http_bind_address: str, http_port: int,
         service_cluster_ip_range: str, service_node_port_range: str, watch_cache_size: int,
         watch_bookmark_interval: float, verbosity: int) -> None:
    """The kubelite API server: the only component that talks to etcd."""
    logging.basicConfig(level=logging.DEBUG if verbosity >= 4 else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = APIServerConfig(
            etcd_servers=tuple(s.strip() for s in etcd_servers.split(",") if s.strip()),
            bind_address=bind_address, secure_port=secure_port, http_bind_address=http_bind_address,
            http_port=http_port, service_cluster_ip_range=service_cluster_ip_range,
            service_node_port_range=service_node_port_range, watch_cache_size=watch_cache_size,
            bookmark_interval=watch_bookmark_interval)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    asyncio.run(_serve(config))


async def _serve(config: APIServerConfig) -> None:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await run(config)
    except asyncio.CancelledError:
        logging.getLogger("kubelite-apiserver").info("shutting down")
