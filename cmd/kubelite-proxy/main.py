"""kubelite-proxy: flags -> ProxyConfig -> run()."""

from __future__ import annotations

import asyncio

import click

from kubelite.client.kubeconfig import KubeConfigError
from kubelite.machinery import duration
from kubelite.machinery.process import configure_logging, until_signalled
from kubelite.proxy.config import MODES, POD_NETWORKS, ProxyConfig
from kubelite.proxy.server import run


def _duration(value: str, flag: str) -> float:
    try:
        return duration.parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from exc


def _verbosity(value: str) -> int:
    # click reads "-v=4" as -v with the value "=4"; Kubernetes' flags accept that spelling.
    try:
        return int(value.removeprefix("="))
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not an integer", param_hint="-v") from exc


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--kubeconfig", default="", help="Path to a kubeconfig file with the API server's address.")
@click.option("--master", "-s", default="", help="The API server's address (overrides the kubeconfig).")
@click.option("--hostname-override", default="", help="This node's name (default: the host name).")
@click.option("--proxy-mode", default="iptables", type=click.Choice(MODES), help="Which kernel API programs Services.")
@click.option("--cluster-cidr", default="", help="The pods' CIDR: traffic from outside it to a cluster IP is "
                                                 "masqueraded.")
@click.option("--nodeport-addresses", default="",
              help="Comma-separated CIDRs of the node addresses NodePorts open on (default: all local addresses).")
@click.option("--cleanup", is_flag=True, help="Remove every rule and chain the proxy installed, then exit.")
@click.option("--iptables-min-sync-period", default="1s",
              help="Sync rate limit: two syncs may run back to back, then one per this period; bursts coalesce.")
@click.option("--iptables-sync-period", default="30s", help="Time between full resyncs.")
@click.option("--pod-network", default="none", type=click.Choice(POD_NETWORKS),
              help="Route other nodes' pod CIDRs via their InternalIPs (host-gw), or leave pod routing alone.")
@click.option("--healthz-bind-address", default="0.0.0.0:10256", help="host:port of /healthz and /metrics.")
@click.option("-v", "--v", "verbosity", default="0", callback=lambda _c, _p, v: _verbosity(v),
              help="Log verbosity (0: info, 4+: debug); -v=4 as Kubernetes binaries take it.")
def main(kubeconfig: str, master: str, hostname_override: str, proxy_mode: str, cluster_cidr: str,
         nodeport_addresses: str, cleanup: bool, iptables_min_sync_period: str, iptables_sync_period: str,
         pod_network: str, healthz_bind_address: str, verbosity: int) -> None:
    """The kubelite network proxy: Service virtual IPs on this node."""
    configure_logging(verbosity)
    try:
        config = ProxyConfig(
            kubeconfig=kubeconfig, master=master, hostname_override=hostname_override, proxy_mode=proxy_mode,
            cluster_cidr=cluster_cidr,
            nodeport_addresses=tuple(a.strip() for a in nodeport_addresses.split(",") if a.strip()),
            cleanup=cleanup,
            min_sync_period=_duration(iptables_min_sync_period, "--iptables-min-sync-period"),
            sync_period=_duration(iptables_sync_period, "--iptables-sync-period"),
            pod_network=pod_network, healthz_bind_address=healthz_bind_address)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        asyncio.run(until_signalled(run(config), "kubelite-proxy"))
    except KubeConfigError as exc:
        raise click.UsageError(f"--kubeconfig: {exc}") from exc
