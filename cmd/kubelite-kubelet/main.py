"""kubelite-kubelet: flags -> KubeletConfig -> run()."""

from __future__ import annotations

import asyncio

import click

from kubelite.kubelet.config import ConfigError, KubeletConfig, default_node_name, parse_key_values, parse_taints
from kubelite.kubelet.kubelet import run
from kubelite.machinery.process import configure_logging, until_signalled


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--kubeconfig", default="", help="Kubeconfig file with the API server's address.")
@click.option("--master", "-s", "server", default="", help="The API server's address (overrides the kubeconfig).")
@click.option("--hostname-override", default="", help="The node's name (default: the host name).")
@click.option("--node-ip", default="", help="The node's InternalIP (default: the address of the default route).")
@click.option("--pod-cidr", default="", help="The pod CIDR when no controller manager assigns spec.podCIDR.")
@click.option("--runtime", default="docker", type=click.Choice(["docker", "fake"]),
              help="docker runs pods; fake makes a hollow node that starts nothing.")
@click.option("--container-runtime-endpoint", default="",
              help="unix:///path of a remote runtime (kubelite.api.runtime.v1) instead of the in-process one.")
@click.option("--root-dir", default="/var/lib/kubelite/kubelet", help="Where pod volumes and logs live.")
@click.option("--pod-manifest-path", default="", help="Directory of static pod manifests.")
@click.option("--cluster-dns", default="", help="Comma-separated DNS server IPs for ClusterFirst pods.")
@click.option("--cluster-domain", default="cluster.local")
@click.option("--resolv-conf", default="/etc/resolv.conf",
              help="The node's resolver configuration, given to pods with dnsPolicy Default.")
@click.option("--max-pods", default=110, type=int)
@click.option("--node-labels", default="", help="key=value,... added to the Node's labels.")
@click.option("--register-with-taints", default="", help="key=value:Effect,... put on the Node at registration.")
@click.option("--system-reserved", default="", help="cpu=500m,memory=1Gi,... kept out of allocatable.")
@click.option("--address", default="0.0.0.0", help="Address of the kubelet API (--port).")
@click.option("--port", default=10250, type=int, help="Port of the kubelet API (logs, exec, attach, port-forward).")
@click.option("--healthz-bind-address", default="127.0.0.1")
@click.option("--healthz-port", default=10248, type=int, help="Port of /healthz and /metrics.")
@click.option("--pod-network-name", default="", help="Docker network for the pod CIDR (default kubelite-<node>).")
@click.option("--node-status-update-frequency", default=10.0, type=float, help="Seconds between lease renewals.")
@click.option("--sync-frequency", default=60.0, type=float, help="Seconds between resyncs of a running pod.")
@click.option("-v", "--v", "verbosity", default=0, type=int, help="Log verbosity (0: info, 4+: debug).")
def main(kubeconfig: str, server: str, hostname_override: str, node_ip: str, pod_cidr: str, runtime: str,
         container_runtime_endpoint: str, root_dir: str, pod_manifest_path: str, cluster_dns: str,
         cluster_domain: str, resolv_conf: str, max_pods: int, node_labels: str, register_with_taints: str,
         system_reserved: str,
         address: str, port: int, healthz_bind_address: str, healthz_port: int, pod_network_name: str,
         node_status_update_frequency: float, sync_frequency: float, verbosity: int) -> None:
    """The kubelite node agent: registers the node and runs its pods on Docker."""
    configure_logging(verbosity)
    try:
        config = KubeletConfig(
            node_name=hostname_override or default_node_name(), server=server, kubeconfig=kubeconfig,
            node_ip=node_ip, pod_cidr=pod_cidr, runtime=runtime,
            container_runtime_endpoint=container_runtime_endpoint, root_dir=root_dir,
            pod_manifest_path=pod_manifest_path,
            cluster_dns=tuple(s.strip() for s in cluster_dns.split(",") if s.strip()),
            cluster_domain=cluster_domain, resolv_conf=resolv_conf, max_pods=max_pods,
            node_labels=parse_key_values("--node-labels", node_labels),
            register_with_taints=parse_taints(register_with_taints),
            system_reserved=parse_key_values("--system-reserved", system_reserved),
            address=address, port=port, healthz_bind_address=healthz_bind_address, healthz_port=healthz_port,
            pod_network_name=pod_network_name, node_status_update_frequency=node_status_update_frequency,
            sync_frequency=sync_frequency)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    asyncio.run(until_signalled(run(config), "kubelite-kubelet"))
