"""`make bench-cluster`: how long a local cluster takes, beside raw `docker run` of the same image.

Figures, each next to a baseline measured in the same run (absolute times drift
on shared machines):
- the node image step of `up` with the image cached (a content digest check);
- `kubelite cluster up` of 1 control plane + N workers until /readyz (and
  every node Ready, once kubelets exist), and `cluster down`;
- baseline: one `docker run` of the node image until systemd reports running,
  i.e. the floor every container of the cluster pays;
- resident memory of the API server and of each etcd member inside the cluster.
Nothing here asserts a time; it prints a table.

    python -m bench.cluster [--workers 3]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kubelite.cli.cluster import RichReporter
from kubelite.cluster import images, lifecycle, spec
from kubelite.cluster.docker import DockerCLI


async def raw_boot(docker: DockerCLI, image: str) -> float:
    """One node container, `docker run` until `systemctl is-system-running` says running."""
    name = f"bench-raw-{secrets.token_hex(3)}"
    label = f"{spec.LABEL_CLUSTER}={name}"
    t0 = time.perf_counter()
    await docker.run("run", "-d", "--name", name, "--label", label, *spec.NODE_RUN_FLAGS, image,
                     *spec.ETCD_INIT_ARGS)
    try:
        await lifecycle.wait_booted(docker, name)
        return time.perf_counter() - t0
    finally:
        await lifecycle.down(name, docker)


async def rss_mib(docker: DockerCLI, node: str, process: str) -> float:
    r = await docker.run("exec", node, "sh", "-c", f"ps -C {process} -o rss= | head -n1", check=False)
    return int(r.stdout.strip() or 0) / 1024


async def main(workers: int) -> None:
    docker = DockerCLI()
    console = Console()
    t0 = time.perf_counter()
    await images.ensure_node_image(docker, console.print)
    await images.ensure_pause_image(docker, console.print)
    t_image = time.perf_counter() - t0
    t0 = time.perf_counter()
    await images.ensure_node_image(docker, console.print)
    t_cached = time.perf_counter() - t0

    boots = [await raw_boot(docker, images.node_image()) for _ in range(3)]
    name = f"bench-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="kubelite-bench-cluster-") as tmp:
        cfg = spec.ClusterConfig(name=name, workers=workers, kubeconfig=str(Path(tmp) / "kubeconfig"))
        t0 = time.perf_counter()
        try:
            result = await lifecycle.up(cfg, docker, RichReporter(Console(stderr=True, quiet=True)))
            t_up = time.perf_counter() - t0
            api = await rss_mib(docker, f"{name}-control-plane", "kubelite-apiser")
            etcd = [await rss_mib(docker, f"{name}-etcd{i}", "etcd") for i in (1, 2, 3)]
        finally:
            t0 = time.perf_counter()
            await lifecycle.down(name, docker)
            t_down = time.perf_counter() - t0

    table = Table(title=f"local cluster: 3 etcd + 1 control plane + {workers} workers")
    table.add_column("what")
    table.add_column("figure", justify="right")
    table.add_column("baseline", justify="right")
    table.add_row("node + pause images (this run; cold if they were missing)", f"{t_image:.1f} s", "")
    table.add_row("node image check when cached", f"{t_cached * 1000:.0f} ms", "")
    containers = 4 + workers
    ready = " and nodes Ready" if any("kubelet" in c for c in result.enabled.values()) else ""
    table.add_row(f"cluster up until /readyz{ready}", f"{t_up:.1f} s",
                  f"{containers} x raw boot = {containers * min(boots):.1f} s sequential")
    table.add_row("raw docker run of the node image until systemd is running (best of 3)", f"{min(boots):.2f} s",
                  "")
    table.add_row("cluster down", f"{t_down:.1f} s", "")
    table.add_row("kubelite-apiserver RSS", f"{api:.0f} MiB", "")
    table.add_row("etcd member RSS (each)", " / ".join(f"{e:.0f}" for e in etcd) + " MiB", "")
    console.print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.workers))
