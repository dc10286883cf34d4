"""kubelite-scheduler: flags -> SchedulerOptions (+ the validated --config) -> run()."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import click

from kubelite.client.kubeconfig import KubeConfigError
from kubelite.client.leaderelection import leader_election_config, leader_election_options
from kubelite.machinery.process import configure_logging, until_signalled
from kubelite.scheduler.app import DEFAULT_PORT, LEASE_NAME, LeaderElectionLost, SchedulerOptions, run
from kubelite.scheduler.config import ConfigError


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--kubeconfig", default="", help="Path to a kubeconfig file with the API server's address.")
@click.option("--master", "-s", default="", help="The API server's address (overrides the kubeconfig).")
@click.option("--config", "config_file", default="", help="A KubeSchedulerConfiguration file.")
@click.option("--bind-address", default="0.0.0.0", help="Address of /healthz, /readyz and /metrics.")
@click.option("--secure-port", default=DEFAULT_PORT, type=int, help="Port of /healthz, /readyz and /metrics.")
@click.option("--max-in-flight-bindings", default=1024, type=int, help="Bindings sent and not yet answered.")
@leader_election_options(LEASE_NAME)
@click.option("-v", "--v", "verbosity", default=0, type=int, help="Log verbosity (0: info, 4+: debug).")
def main(kubeconfig: str, master: str, config_file: str, bind_address: str, secure_port: int,
         max_in_flight_bindings: int, verbosity: int, **election: Any) -> None:
    """The kubelite scheduler: binds pending pods to nodes."""
    configure_logging(verbosity)
    try:
        leader_election = leader_election_config(**election)
        options = SchedulerOptions(kubeconfig=kubeconfig, master=master, config_file=config_file,
                                   leader_elect=leader_election.leader_elect, leader_election=leader_election,
                                   bind_address=bind_address, secure_port=secure_port,
                                   max_in_flight_bindings=max_in_flight_bindings)
        config = options.load()
    except ValueError as exc:  # ConfigError included: the message names the field
        prefix = f"invalid configuration file {config_file}: " if isinstance(exc, ConfigError) else ""
        raise click.UsageError(prefix + str(exc)) from exc
    try:
        asyncio.run(until_signalled(run(options, config), "kubelite-scheduler"))
    except KubeConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    except LeaderElectionLost as exc:
        # As kube-scheduler: exit, and let the supervisor start a fresh candidate.
        logging.getLogger("kubelite-scheduler").error("%s", exc)
        sys.exit(1)
