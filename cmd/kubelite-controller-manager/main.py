"""kubelite-controller-manager: flags -> ControllerManagerConfig -> run()."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import click

from kubelite.client.kubeconfig import KubeConfigError, load_kubeconfig
from kubelite.client.leaderelection import leader_election_config, leader_election_options
from kubelite.controllers.config import KNOWN_CONTROLLERS, ControllerManagerConfig, select_controllers
from kubelite.controllers.manager import LEASE_NAME, LeaderElectionLost, run
from kubelite.machinery.duration import parse_duration
from kubelite.machinery.process import configure_logging, until_signalled


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--kubeconfig", default="", help="Path to a kubeconfig file naming the API server.")
@click.option("--master", "-s", default="", help="The API server's address (overrides the kubeconfig).")
@click.option("--controllers", default="*",
              help="Controllers to run: '*' for all, 'foo' to enable, '-foo' to disable. Known: "
                   + ", ".join(KNOWN_CONTROLLERS) + ".")
@click.option("--bind-address", default="0.0.0.0", help="Address of /healthz and /metrics.")
@click.option("--secure-port", default=10257, type=int, help="Port of /healthz and /metrics.")
@click.option("--cluster-cidr", default="10.244.0.0/16", help="CIDR range of pods in the cluster.")
@click.option("--allocate-node-cidrs/--no-allocate-node-cidrs", default=True,
              help="Give each node a spec.podCIDR from --cluster-cidr.")
@click.option("--node-cidr-mask-size", default=24, type=int, help="Prefix length of each node's pod CIDR.")
@click.option("--node-monitor-grace-period", default="40s",
              help="How long a node may go without renewing its lease before it is marked unhealthy.")
@click.option("--node-monitor-period", default="5s", help="How often node health is checked.")
@click.option("--terminated-pod-gc-threshold", default=12500, type=int,
              help="Terminated pods kept before the pod GC deletes the oldest (0: never).")
@click.option("--concurrent-replicaset-syncs", default=5, type=int, help="ReplicaSets synced at once.")
@click.option("--concurrent-deployment-syncs", default=5, type=int, help="Deployments synced at once.")
@click.option("--concurrent-endpoint-syncs", default=5, type=int, help="Services (Endpoints) synced at once.")
@click.option("--concurrent-namespace-syncs", default=10, type=int, help="Namespaces synced at once.")
@click.option("--concurrent-serviceaccount-syncs", default=5, type=int,
              help="Namespaces (ServiceAccounts) synced at once.")
@click.option("--concurrent-gc-syncs", default=20, type=int, help="Objects the garbage collector syncs at once.")
@leader_election_options(LEASE_NAME)
@click.option("-v", "--v", "verbosity", default=0, type=int, help="Log verbosity (0: info, 4+: debug).")
def main(kubeconfig: str, master: str, controllers: str, bind_address: str, secure_port: int, cluster_cidr: str,
         allocate_node_cidrs: bool, node_cidr_mask_size: int, node_monitor_grace_period: str,
         node_monitor_period: str, terminated_pod_gc_threshold: int, concurrent_replicaset_syncs: int,
         concurrent_deployment_syncs: int, concurrent_endpoint_syncs: int, concurrent_namespace_syncs: int,
         concurrent_serviceaccount_syncs: int, concurrent_gc_syncs: int, verbosity: int, **election: Any) -> None:
    """The kubelite controller manager: the reconcile loops that make desired state actual."""
    configure_logging(verbosity)
    try:
        server = load_kubeconfig(kubeconfig or None, server=master or None).server
        config = ControllerManagerConfig(
            server=server,
            controllers=select_controllers(tuple(controllers.split(","))),
            bind_address=bind_address, secure_port=secure_port, cluster_cidr=cluster_cidr,
            allocate_node_cidrs=allocate_node_cidrs, node_cidr_mask_size=node_cidr_mask_size,
            node_monitor_grace_period=_duration("--node-monitor-grace-period", node_monitor_grace_period),
            node_monitor_period=_duration("--node-monitor-period", node_monitor_period),
            terminated_pod_gc_threshold=terminated_pod_gc_threshold,
            concurrent_replicaset_syncs=concurrent_replicaset_syncs,
            concurrent_deployment_syncs=concurrent_deployment_syncs,
            concurrent_endpoint_syncs=concurrent_endpoint_syncs,
            concurrent_namespace_syncs=concurrent_namespace_syncs,
            concurrent_serviceaccount_syncs=concurrent_serviceaccount_syncs,
            concurrent_gc_syncs=concurrent_gc_syncs,
            leader_election=leader_election_config(**election),
        )
    except KubeConfigError as exc:
        # The kubeconfig loader speaks kubectl's flags; this binary's is --master.
        raise click.UsageError(str(exc).replace("--server", "--master")) from exc
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        asyncio.run(until_signalled(run(config), "kubelite-controller-manager"))
    except LeaderElectionLost as exc:
        logging.getLogger("kubelite-controller-manager").error("%s", exc)
        sys.exit(1)


def _duration(flag: str, text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ValueError(f"{flag}: {exc}") from None
