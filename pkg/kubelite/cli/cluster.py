"""``kubelite cluster``: a local multi-node cluster of node containers, like kind.

Thin wiring only: flags become a ``ClusterConfig`` (or a name), and one
coroutine of ``kubelite.cluster.lifecycle`` does the work. Progress goes to
stderr through rich, one line per step with its elapsed time, so stdout stays
for what scripts read (``cluster kubeconfig``, ``cluster list``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from kubelite.cluster import images, lifecycle, node, spec
from kubelite.cluster.docker import DockerCLI, DockerError
from kubelite.cluster.imagecache import CacheError, ImageCache
from kubelite.cluster.images import ImageError
from kubelite.cluster.spec import ClusterConfig, ConfigError


class RichReporter:
    """Steps on stderr: a spinner while a step runs on a terminal, then ✓/✗ with its elapsed time."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.started = time.monotonic()

    @contextlib.asynccontextmanager
    async def step(self, title: str) -> AsyncIterator[None]:
        start = time.monotonic()
        status = self.console.status(title) if self.console.is_terminal else contextlib.nullcontext()
        try:
            with status:
                yield
        except BaseException:
            self.console.print(f"[red]✗[/red] {title} [dim](failed after {time.monotonic() - start:.1f}s)[/dim]")
            raise
        self.console.print(f"[green]✓[/green] {title} [dim]{time.monotonic() - start:.1f}s[/dim]")

    def info(self, text: str) -> None:
        self.console.print(f"  [dim]{text}[/dim]")


def _run(body: Callable[[], Coroutine[Any, Any, int]]) -> None:
    """One event loop per command; expected failures are one ``error:`` line (kubectl's form), exit 1."""
    code: int
    try:
        code = asyncio.run(body())
    except (lifecycle.ClusterError, ConfigError, ImageError, DockerError, CacheError) as exc:
        click.echo(f"error: {exc}", err=True)
        code = 1
    except KeyboardInterrupt:
        code = 130
    click.get_current_context().exit(code)


def _config(**kwargs: Any) -> ClusterConfig:
    try:
        return ClusterConfig(**kwargs)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


def _name(name: str) -> str:
    try:
        return spec.validate_name(name)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


_NAME_HELP = "The cluster's name: its Docker network, and the prefix of its containers."
_IMAGE_CACHE_HELP = ("Keep the images this command builds (node, DNS, pause, registry, the Debian base) as "
                     "tarballs in DIR, keyed by the digest of what each is built from, and load them from "
                     "there instead of building when the key matches (after docker image rm, or on a fresh "
                     "Docker engine). A newer key replaces an image's older tarball.")


@click.group("cluster")
def cluster_cmd() -> None:
    """Local multi-node clusters of node containers (3 etcd members, a control plane, workers)."""


@cluster_cmd.command("up")
@click.option("--name", default="kubelite", show_default=True, help=_NAME_HELP)
@click.option("--workers", default=3, show_default=True, type=int, help="Worker nodes.")
@click.option("--control-planes", default=1, show_default=True, type=int,
              help="Control-plane nodes (1-5); more than one get a load balancer (NAME-external-load-balancer, "
                   "Debian's haproxy) in front of their API servers, and their schedulers and controller "
                   "managers elect leaders.")
@click.option("--image", default="", help="Node image (default kubelite/node:<version>, built from this tree).")
@click.option("--pause-image", default="", help="Pod sandbox image (default kubelite/pause:<version>).")
@click.option("--subnet", default="", help="The cluster network, a private /24 (default: the first free "
              "172.30.x.0/24).")
@click.option("--kubeconfig", default="", help="Write the kubeconfig here (default: merged into $KUBECONFIG's "
              "first file or ~/.kube/config as context kubelite-NAME).")
@click.option("--retain", is_flag=True, help="Keep the containers of a failed up, for debugging.")
@click.option("--timeout", "ready_timeout", default=180.0, show_default=True, type=float,
              help="Seconds to wait for the API server to be ready.")
@click.option("--apiserver-arg", multiple=True, help="An extra flag for every API server (repeatable).")
@click.option("--controller-manager-arg", multiple=True, help="An extra flag for the controller managers.")
@click.option("--scheduler-arg", multiple=True, help="An extra flag for the schedulers.")
@click.option("--kubelet-arg", multiple=True, help="An extra flag for every kubelet.")
@click.option("--proxy-arg", multiple=True, help="An extra flag for every kubelite-proxy.")
@click.option("--image-cache", default="", metavar="DIR", help=_IMAGE_CACHE_HELP)
def up_cmd(name: str, workers: int, control_planes: int, image: str, pause_image: str, subnet: str,
           kubeconfig: str, retain: bool, ready_timeout: float, apiserver_arg: tuple[str, ...],
           controller_manager_arg: tuple[str, ...], scheduler_arg: tuple[str, ...], kubelet_arg: tuple[str, ...],
           proxy_arg: tuple[str, ...], image_cache: str) -> None:
    """Create a cluster: network, etcd members, control plane and workers, all under systemd, and the
    cluster's image registry (NAME-registry) that every node pulls docker.io names from.

    Components run with Kubernetes' defaults; the --*-arg flags change them for this cluster only
    (as k3s' --kube-apiserver-arg), for instance --controller-manager-arg=--node-monitor-grace-period=10s.
    """
    extra = tuple(f"{component}:{flag}" for component, flags in (
        ("apiserver", apiserver_arg), ("controller-manager", controller_manager_arg), ("scheduler", scheduler_arg),
        ("kubelet", kubelet_arg), ("proxy", proxy_arg)) for flag in flags)
    cfg = _config(name=name, workers=workers, control_planes=control_planes, image=image, pause_image=pause_image,
                  subnet=subnet, kubeconfig=kubeconfig, retain=retain, ready_timeout=ready_timeout, extra_args=extra,
                  image_cache=image_cache)

    async def body() -> int:
        report = RichReporter()
        result = await lifecycle.up(cfg, DockerCLI(), report)
        took = time.monotonic() - report.started
        report.console.print(f"[bold]cluster {result.name} is up[/bold] in {took:.1f}s: "
                             f"{len(result.members)} containers and the registry on {result.subnet}, "
                             f"API server {result.server}")
        report.console.print(f"  kubeconfig: {result.kubeconfig} (context {lifecycle.context_name(result.name)})")
        report.console.print(f"  try: kubelite --kubeconfig {result.kubeconfig} get namespaces")
        return 0

    _run(body)


@cluster_cmd.command("down")
@click.option("--name", default="kubelite", show_default=True, help=_NAME_HELP)
@click.option("--kubeconfig", default="", help="Remove context kubelite-NAME from this kubeconfig "
              "(default: $KUBECONFIG's first file or ~/.kube/config).")
def down_cmd(name: str, kubeconfig: str) -> None:
    """Remove every container, volume and network labelled with the cluster's name."""
    name = _name(name)

    async def body() -> int:
        result = await lifecycle.down(name, DockerCLI())
        lifecycle.remove_from_kubeconfig(name, kubeconfig)
        if not (result.containers or result.networks or result.volumes):
            click.echo(f'cluster "{name}" not found; nothing to remove', err=True)
        else:
            click.echo(f'cluster "{name}" removed: {len(result.containers)} containers, '
                       f"{len(result.volumes)} volumes, {len(result.networks)} networks", err=True)
        return 0

    _run(body)


@cluster_cmd.command("list")
def list_cmd() -> None:
    """The local clusters, found by their labels."""

    async def body() -> int:
        rows = await lifecycle.list_clusters(DockerCLI())
        if not rows:
            click.echo("No kubelite clusters found.", err=True)
            return 0
        fmt = "{:<24} {:>5} {:>14} {:>8} {:>8}"
        click.echo(fmt.format("NAME", "ETCD", "CONTROL-PLANES", "WORKERS", "RUNNING"))
        for r in rows:
            click.echo(fmt.format(r["name"], r["etcd"], r["control-plane"], r["worker"],
                                  f"{r['running']}/{r['total']}"))
        return 0

    _run(body)


@cluster_cmd.command("kubeconfig")
@click.option("--name", default="kubelite", show_default=True, help=_NAME_HELP)
@click.option("--internal", is_flag=True, help="Address the control plane on the cluster network "
              "instead of its loopback port.")
def kubeconfig_cmd(name: str, internal: bool) -> None:
    """Print the cluster's kubeconfig."""
    name = _name(name)

    async def body() -> int:
        click.echo(await lifecycle.kubeconfig(DockerCLI(), name, internal), nl=False)
        return 0

    _run(body)


@cluster_cmd.command("load-image")
@click.argument("image_names", metavar="IMAGE...", nargs=-1, required=True)
@click.option("--name", default="kubelite", show_default=True, help=_NAME_HELP)
def load_image_cmd(image_names: tuple[str, ...], name: str) -> None:
    """Make local images available to every node: pushed into the cluster's registry, which the nodes pull
    docker.io names from when a pod needs them (imagePullPolicy IfNotPresent or Always; a node added later
    finds them too). An image named after another registry host is copied into every node's engine instead
    (docker save | docker load)."""
    name = _name(name)

    async def body() -> int:
        report = RichReporter()
        for image in image_names:
            done = await lifecycle.load_image(DockerCLI(), name, image, report)
            if done.pushed:
                report.info(f"{image} is in the registry as {done.pushed}")
        return 0

    _run(body)


@cluster_cmd.command("logs")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--name", default="kubelite", show_default=True, help=_NAME_HELP)
def logs_cmd(directory: str, name: str) -> None:
    """Collect every container's journal, units, config and Docker state into DIRECTORY."""
    name = _name(name)

    async def body() -> int:
        nodes = await lifecycle.collect_logs(DockerCLI(), name, Path(directory))
        click.echo(f"logs of {len(nodes)} containers written to {directory}", err=True)
        return 0

    _run(body)


@cluster_cmd.command("build-image")
@click.option("--rebuild", is_flag=True, help="Build even when the image matches the source tree.")
@click.option("--image-cache", default="", metavar="DIR", help=_IMAGE_CACHE_HELP)
def build_image_cmd(rebuild: bool, image_cache: str) -> None:
    """Build kubelite/node, kubelite/dns, kubelite/pause and kubelite/registry for this version from the source
    tree (cached by content)."""

    async def body() -> int:
        report = RichReporter()
        docker = DockerCLI()
        cache = ImageCache(image_cache) if image_cache else None
        async with report.step(f"images {images.node_image()}, {images.dns_image()}"):
            built = await images.ensure_source_images(
                docker, report.info, {"node": images.node_image(), "dns": images.dns_image()}, force=rebuild,
                cache=cache)
            for r in built:
                report.info(f"{r.image}: {r.how}")
        async with report.step(f"images {images.pause_image()}, {images.registry_image()}"):
            for r in (await images.ensure_pause_image(docker, report.info, cache=cache),
                      await images.ensure_registry_image(docker, report.info, cache=cache)):
                report.info(f"{r.image}: {r.how}")
        return 0

    _run(body)



@cluster_cmd.command("configure-node")
@click.option("--role", required=True, type=click.Choice(node.ROLES), help="What this host is.")
@click.option("--node-name", required=True, help="The node's name (the hostname, as a rule).")
@click.option("--node-ip", required=True, help="This host's address on the node network.")
@click.option("--server", default="", help="The API server's URL (workers; a control plane defaults to itself).")
@click.option("--etcd-servers", default="", help="Control plane: etcd client URLs (default: a member on this host).")
@click.option("--initial-cluster", default="", help="etcd: the members, NAME=PEER-URL,...")
@click.option("--initial-cluster-token", default="kubelite", show_default=True)
@click.option("--service-cluster-ip-range", default="10.96.0.0/16", show_default=True)
@click.option("--service-node-port-range", default="30000-32767", show_default=True)
@click.option("--cluster-cidr", default="10.244.0.0/16", show_default=True)
@click.option("--cluster-dns", default="10.96.0.10", show_default=True)
@click.option("--cluster-domain", default="cluster.local", show_default=True)
@click.option("--bootstrap-token", default="", help="A joining worker's bootstrap token (kubelite join).")
@click.option("--extra-arg", "extra_args", multiple=True,
              help="COMPONENT:--flag=value for one component (repeatable).")
@click.option("--no-start", is_flag=True, help="Enable the units without starting them.")
@click.option("-o", "--output", default="", type=click.Choice(["", "json"]), help="json: what was enabled.")
def configure_node_cmd(no_start: bool, output: str, extra_args: tuple[str, ...], **flags: str) -> None:
    """Configure THIS host as a node: /etc/kubelite env files, kubeconfig, and the installed components' units.

    Run by deploy/install.sh on a VM and by `cluster up` inside each node container.
    """
    try:
        cfg = node.NodeConfig(**flags, extra_args=extra_args)
    except node.ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        done = node.configure(cfg, node.LocalHost(), start=not no_start)
    except node.ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        click.get_current_context().exit(1)
    if output == "json":
        click.echo(json.dumps({"enabled": done.enabled, "skipped": done.skipped}))
    else:
        click.echo(f"{cfg.node_name} configured as {cfg.role}: enabled {', '.join(done.enabled) or 'nothing'}"
                   + (f"; not installed: {', '.join(done.skipped)}" if done.skipped else ""))


@cluster_cmd.command("reset-node")
def reset_node_cmd() -> None:
    """Undo configure-node on THIS host: stop and disable the units, remove /etc/kubelite, state, pod containers."""
    try:
        removed = node.reset(node.LocalHost())
    except node.ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        click.get_current_context().exit(1)
    click.echo(f"kubelite units stopped and disabled; /etc/kubelite and state removed; "
               f"{removed} pod containers removed")
