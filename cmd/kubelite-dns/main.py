"""kubelite-dns: flags -> DNSConfig -> run()."""

from __future__ import annotations

import asyncio

import click

from kubelite.client.kubeconfig import KubeConfigError, in_cluster_config, load_kubeconfig
from kubelite.dns.run import DNSConfig, run
from kubelite.dns.server import upstreams_from_resolv_conf
from kubelite.machinery.process import configure_logging, until_signalled


def _upstream(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port or (host.count(":") > 0 and not host.startswith("[")):
        return text.strip("[]"), 53
    if not port.isdigit():
        raise click.BadParameter(f"{text!r} is not HOST or HOST:PORT", param_hint="--upstream")
    return host.strip("[]"), int(port)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--kubeconfig", default="", help="Path to a kubeconfig; without it and --master, in-cluster settings.")
@click.option("--master", "-s", default="", help="The API server's address (overrides the kubeconfig).")
@click.option("--cluster-domain", default="cluster.local", help="The domain of cluster names.")
@click.option("--bind-address", default="0.0.0.0", help="Address to serve DNS on (UDP and TCP).")
@click.option("--port", default=53, type=int, help="Port to serve DNS on.")
@click.option("--upstream", multiple=True, help="Resolver for other names, HOST[:PORT]; default: /etc/resolv.conf.")
@click.option("--health-port", default=8080, type=int, help="Port of /healthz, /health, /readyz, /ready and /metrics.")
@click.option("--ready-port", default=None, type=int, help="Also serve them on this port (CoreDNS: 8181).")
@click.option("--metrics-port", default=None, type=int, help="Also serve them on this port (CoreDNS: 9153).")
@click.option("-v", "--v", "verbosity", default=0, type=int, help="Log verbosity (0: info, 4+: debug).")
def main(kubeconfig: str, master: str, cluster_domain: str, bind_address: str, port: int,
         upstream: tuple[str, ...], health_port: int, ready_port: int | None, metrics_port: int | None,
         verbosity: int) -> None:
    """Cluster DNS: answers <svc>.<ns>.svc.<domain> from the API, forwards the rest."""
    configure_logging(verbosity)
    try:
        kc = load_kubeconfig(kubeconfig or None, server=master or None) if (kubeconfig or master) \
            else in_cluster_config()
    except KubeConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    upstreams = tuple(_upstream(u) for u in upstream) or tuple(upstreams_from_resolv_conf())
    try:
        config = DNSConfig(server=kc.server, token=kc.token, cluster_domain=cluster_domain,
                           bind_address=bind_address, port=port, upstreams=upstreams, health_port=health_port,
                           ready_port=ready_port, metrics_port=metrics_port)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    asyncio.run(until_signalled(run(config), "kubelite-dns"))
