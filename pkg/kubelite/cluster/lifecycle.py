"""Bringing a local cluster up and down, found again by its Docker labels.

``up`` carries out ``spec.plan`` in steps, each reported with its elapsed
time: images, the network, all containers at once (systemd boots in about a
second) with the cluster's image registry beside them, then etcd, the control
plane and the nodes' agents through their systemd units, exactly as on a VM,
and last the cluster add-ons (the cluster DNS, deploy/addons) applied by the
control plane's ``install.sh addons`` as a VM's install does, waited for until
their Deployment is Available.

Images reach the nodes the way they reach a real cluster's: pushed once into
the cluster's registry (``<name>-registry``, Debian's docker-registry, published
on a loopback port for this machine's ``docker push``), which every node's
dockerd has as its mirror of docker.io names; a node pulls what its pods need
when they need it, a node added later included. The pause and DNS images are
pushed while etcd and the control plane start, and pulled from there by the nodes that run
the cluster's own pods. A step that fails names itself, shows the
last journal lines of the unit it was starting, and (unless ``retain``) the
cluster is removed again, so a failed ``up`` leaves nothing behind.

Units of components whose binary is not in the image yet are left disabled
(``command -v`` inside the node decides), so the harness works while the
kubelet, scheduler, controller manager and proxy are still being written.

There is no local state: ``down``, ``list``, ``kubeconfig`` and
``load-image`` ask Docker for the containers labelled with the cluster name.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import os
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp
import yaml

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.client.kubeconfig import kubeconfig_document, write_kubeconfig_document
from kubelite.cluster import images, spec
from kubelite.cluster.docker import Docker, DockerError, ids, inspect
from kubelite.cluster.imagecache import ImageCache
from kubelite.cluster.node import unit
from kubelite.cluster.spec import ClusterConfig, Member
from kubelite.machinery.errors import StatusError
from kubelite.runtime.reference import Reference, parse_reference

T = TypeVar("T")


class ClusterError(Exception):
    """A cluster operation failed; the message says which step and why."""


class Reporter(Protocol):
    """Where progress goes (rich lines on stderr for the CLI; silenced in benchmarks)."""

    def step(self, title: str) -> contextlib.AbstractAsyncContextManager[None]: ...

    def info(self, text: str) -> None: ...


class StepFailed(ClusterError):
    def __init__(self, title: str, cause: BaseException, journal: str = "") -> None:
        self.title = title
        self.journal = journal
        msg = f"step {title!r} failed: {cause}"
        if journal:
            msg += f"\n--- last lines of the journal ---\n{journal}"
        super().__init__(msg)


# --- small node helpers ---------------------------------------------------------------------------------------


async def node_exec(docker: Docker, node: str, *cmd: str, stdin: bytes | None = None, check: bool = True,
                    timeout: float | None = 60.0) -> str:
    r = await docker.run("exec", *(["-i"] if stdin is not None else []), node, *cmd, stdin=stdin, check=check,
                         timeout=timeout)
    return r.stdout


async def journal(docker: Docker, node: str, unit_name: str, lines: int = 25) -> str:
    r = await docker.run("exec", node, "journalctl", "--no-pager", "-o", "cat", "-n", str(lines), "-u", unit_name,
                         check=False)
    return (r.stdout or r.stderr).strip()


async def wait_booted(docker: Docker, node: str, timeout: float = 90.0) -> None:
    """Until systemd inside the node has finished booting; a degraded boot is an error naming the failed units."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    state = ""
    while loop.time() < deadline:
        r = await docker.run("exec", node, "systemctl", "is-system-running", "--wait", check=False, timeout=timeout)
        state = r.stdout.strip()
        if state == "running":
            return
        if state == "degraded":
            failed = await node_exec(docker, node, "systemctl", "--failed", "--no-legend", "--plain", check=False)
            raise ClusterError(f"{node}: systemd is degraded; failed units:\n{failed.strip()}")
        await asyncio.sleep(0.2)  # dbus or PID 1 not answering yet
    raise ClusterError(f"{node}: systemd did not finish booting within {timeout:.0f}s (state {state!r})")


async def _gather(*aws: Awaitable[T]) -> list[T]:
    """All at once; the first failure cancels the rest (and is what the step reports)."""
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(_as_coro(a), name=f"cluster-step-{i}") for i, a in enumerate(aws)]
    return [t.result() for t in tasks]


async def _as_coro(a: Awaitable[T]) -> T:
    return await a


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, BaseExceptionGroup):
        return exc.exceptions[0]
    return exc


# --- finding a cluster ----------------------------------------------------------------------------------------


def _label(name: str) -> str:
    return f"{spec.LABEL_CLUSTER}={name}"


@dataclass(frozen=True)
class Found:
    containers: list[dict[str, Any]]
    networks: list[str]
    volumes: list[str]

    @property
    def empty(self) -> bool:
        return not (self.containers or self.networks or self.volumes)


async def find(docker: Docker, name: str) -> Found:
    cids = await ids(docker, "container", _label(name))
    containers: list[dict[str, Any]] = []
    if cids:
        r = await docker.run("container", "inspect", *cids, check=False)
        containers = json.loads(r.stdout or "[]")
    return Found(containers, await ids(docker, "network", _label(name)), await ids(docker, "volume", _label(name)))


def _role(c: dict[str, Any]) -> str:
    return str(((c.get("Config") or {}).get("Labels") or {}).get(spec.LABEL_ROLE, ""))


def _cname(c: dict[str, Any]) -> str:
    return str(c.get("Name", "")).lstrip("/")


async def node_containers(docker: Docker, name: str) -> list[str]:
    found = await find(docker, name)
    nodes = sorted(_cname(c) for c in found.containers if _role(c) in (spec.ROLE_CONTROL_PLANE, spec.ROLE_WORKER))
    if not nodes:
        raise ClusterError(f'no cluster named "{name}" (no node containers labelled {_label(name)})')
    return nodes


async def list_clusters(docker: Docker) -> list[dict[str, Any]]:
    """One row per cluster name found on containers or networks."""
    r = await docker.run("ps", "-a", "--filter", f"label={spec.LABEL_CLUSTER}", "--format", "{{json .}}")
    rows: dict[str, dict[str, Any]] = {}
    for line in r.stdout.splitlines():
        if not line.strip():
            continue
        c = json.loads(line)
        labels = dict(kv.split("=", 1) for kv in str(c.get("Labels", "")).split(",") if "=" in kv)
        name = labels.get(spec.LABEL_CLUSTER, "")
        row = rows.setdefault(name, {"name": name, "etcd": 0, "control-plane": 0, "worker": 0, "running": 0,
                                     "total": 0})
        role = labels.get(spec.LABEL_ROLE, "")
        if role in row:
            row[role] += 1
        row["total"] += 1
        row["running"] += 1 if c.get("State") == "running" else 0
    for net in await ids(docker, "network", spec.LABEL_CLUSTER):
        info = await inspect(docker, "network", net)
        name = str(((info or {}).get("Labels") or {}).get(spec.LABEL_CLUSTER, ""))
        rows.setdefault(name, {"name": name, "etcd": 0, "control-plane": 0, "worker": 0, "running": 0, "total": 0})
    return [rows[k] for k in sorted(rows)]


# --- network --------------------------------------------------------------------------------------------------


async def _used_subnets(docker: Docker) -> list[ipaddress.IPv4Network]:
    r = await docker.run("network", "ls", "-q")
    nets = r.stdout.split()
    if not nets:
        return []
    data = json.loads((await docker.run("network", "inspect", *nets)).stdout or "[]")
    used = []
    for n in data:
        for cfg in ((n.get("IPAM") or {}).get("Config") or []):
            with contextlib.suppress(ValueError, KeyError):
                used.append(ipaddress.IPv4Network(cfg["Subnet"], strict=False))
    return used


def candidate_subnets(name: str) -> list[ipaddress.IPv4Network]:
    """172.30.0.0/24 .. 172.30.255.0/24, starting at a point derived from the name so that
    clusters started at once by different people rarely race for the same /24."""
    start = int(hashlib.sha256(name.encode()).hexdigest(), 16) % 256
    return [ipaddress.IPv4Network(f"172.30.{(start + i) % 256}.0/24") for i in range(256)]


async def create_network(docker: Docker, cfg: ClusterConfig) -> ipaddress.IPv4Network:
    if cfg.subnet:
        candidates = [spec.parse_subnet(cfg.subnet)]
    else:
        used = await _used_subnets(docker)
        candidates = [c for c in candidate_subnets(cfg.name) if not any(c.overlaps(u) for u in used)]
    for net in candidates:
        r = await docker.run("network", "create", "--driver", "bridge", "--subnet", str(net),
                             "--gateway", str(net.network_address + 1), "--label", _label(cfg.name),
                             cfg.name, check=False)
        if r.code == 0:
            return net
        if "overlaps" in r.stderr and not cfg.subnet:
            continue  # taken meanwhile by someone else: the next one
        raise ClusterError(f"docker network create {cfg.name} {net}: {r.stderr.strip()}")
    raise ClusterError("no free /24 in 172.30.0.0/16 for the cluster network; pass --subnet")


# --- up -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpResult:
    name: str
    subnet: str
    server: str          # the API server for the host (published on loopback)
    health: str          # its /readyz base URL
    kubeconfig: str
    members: list[Member]
    enabled: dict[str, list[str]]  # node -> units started
    skipped: list[str]             # components whose binary is not in the image


async def up(cfg: ClusterConfig, docker: Docker, report: Reporter) -> UpResult:
    found = await find(docker, cfg.name)
    if not found.empty:
        names = sorted(_cname(c) for c in found.containers) + [f"network {n}" for n in found.networks]
        raise ClusterError(f'cluster "{cfg.name}" already exists ({", ".join(names[:6])}'
                           f'{", ..." if len(names) > 6 else ""}); remove it with: kubelite cluster down '
                           f'--name {cfg.name}')
    try:
        return await _up(cfg, docker, report)
    except BaseException:
        if not cfg.retain:
            report.info(f"removing what was started for {cfg.name} (pass --retain to keep it for debugging)")
            with contextlib.suppress(Exception):
                await asyncio.shield(down(cfg.name, docker))
        raise


class _Steps:
    """Runs one titled step; a failure becomes StepFailed with the journal of the unit being started."""

    def __init__(self, docker: Docker, report: Reporter) -> None:
        self.docker = docker
        self.report = report
        self.unit: tuple[str, str] | None = None

    @contextlib.asynccontextmanager
    async def __call__(self, title: str) -> AsyncIterator[None]:
        self.unit = None
        try:
            async with self.report.step(title):
                yield
        except asyncio.CancelledError:
            raise
        except (Exception, BaseExceptionGroup) as exc:
            cause = _unwrap(exc)
            if isinstance(cause, StepFailed):
                raise cause from None
            text = ""
            if self.unit is not None:
                text = await journal(self.docker, *self.unit)
            raise StepFailed(title, cause, text) from cause


async def _up(cfg: ClusterConfig, docker: Docker, report: Reporter) -> UpResult:
    step = _Steps(docker, report)
    image = cfg.image or images.node_image()
    pause = cfg.pause_image or images.pause_image()
    dns = images.dns_image()
    registry = images.registry_image()
    cache = ImageCache(cfg.image_cache) if cfg.image_cache else None

    async with step(f"images {image}, {dns}, {pause}, {registry}"):
        if cfg.image:
            if await inspect(docker, "image", image) is None:
                raise ClusterError(f"--image {image} does not exist locally (images are never pulled)")
            await images.ensure_source_images(docker, report.info, {"dns": dns}, cache=cache)
        else:
            # One wheel build for both when the source changed.
            await images.ensure_source_images(docker, report.info, {"node": image, "dns": dns}, cache=cache)
        if cfg.pause_image:
            if await inspect(docker, "image", pause) is None:
                raise ClusterError(f"--pause-image {pause} does not exist locally")
        else:
            await images.ensure_pause_image(docker, report.info, tag=pause, cache=cache)
        await images.ensure_registry_image(docker, report.info, tag=registry, cache=cache)
        if cfg.control_planes > 1:
            await images.ensure_load_balancer_image(docker, report.info, cache=cache)

    async with step("network"):
        subnet = await create_network(docker, cfg)
        report.info(f"network {cfg.name} {subnet}")
    members = spec.plan(cfg, subnet)
    etcd = spec.etcd_members(members)
    nodes = [m for m in members if m.is_node]
    cp = spec.control_plane(members)
    cps = spec.control_planes(members)
    lb = spec.load_balancer(members)
    booted = [m for m in members if m is not lb]  # what runs the node image and boots systemd

    reg = spec.registry_member(cfg, subnet)
    what = (f"{len(etcd)} etcd members, {len(cps)} control plane{'s' if len(cps) > 1 else ''}, "
            f"{cfg.workers} workers, the registry" + (", a load balancer" if lb else ""))
    async with step(f"containers: {what}"):
        for m in [*nodes, reg]:
            await docker.run("volume", "create", "--label", _label(cfg.name), spec.docker_volume(m))
        await _gather(*(docker.run("run", *spec.run_args(cfg, m, cfg.name, image)) for m in booted),
                      docker.run("run", *spec.registry_run_args(cfg, reg, cfg.name, registry)),
                      *([docker.run("run", *spec.load_balancer_run_args(cfg, lb, cfg.name, images.load_balancer_image(),
                                                                        members))] if lb else []))
        await _gather(*(wait_booted(docker, m.name) for m in booted),
                      wait_registry(docker, reg.name, REGISTRY_TIMEOUT))

    enabled: dict[str, list[str]] = {}
    skipped: set[str] = set()

    async def configure(m: Member) -> None:
        # The step a VM runs after install.sh, run inside the container: env files, kubeconfig, units.
        args = spec.node_config(cfg, m, members).to_args()
        out = await node_exec(docker, m.name, "kubelite", "cluster", "configure-node", *args, "-o", "json")
        done = json.loads(out)
        enabled[m.name] = list(done["enabled"])
        skipped.update(done["skipped"])

    # The pause and DNS images go into the registry in the background while etcd, the control plane and
    # the nodes' agents start (most of that is waiting), and the nodes that will run the cluster's own
    # pods pull them from there at once, as their kubelets would on the first such pod: the DNS pods then
    # start without a pull on the critical path. The add-ons step waits for all of it.
    workers = [m for m in nodes if m.role == spec.ROLE_WORKER]
    dns_name = images.dns_image_name()

    async def distribute() -> None:
        await _gather(push_image(docker, reg.name, pause), push_image(docker, reg.name, dns, dns_name))
        await _gather(*(node_pull(docker, m.name, pause) for m in nodes),
                      *(node_pull(docker, m.name, dns_name) for m in (workers or nodes)))

    async with _background(distribute(), "cluster-distribute-images") as pushed:
        async with step("etcd quorum"):
            step.unit = (etcd[0].name, unit("etcd"))
            await _gather(*(configure(m) for m in etcd))
            await _wait_etcd(docker, etcd[0].name, spec.etcd_servers(members))

        title = (f"{len(cps)} control planes: kubelite-apiserver on each, its scheduler and controller manager "
                 "electing a leader, behind the load balancer") if lb else \
            "control plane: kubelite-apiserver (and the scheduler and controller manager if installed)"
        async with step(title):
            step.unit = (cp.name, unit("apiserver"))
            await _gather(*(configure(m) for m in cps))
            if "apiserver" not in enabled[cp.name]:
                raise ClusterError(f"{image} has no kubelite-apiserver binary")
            for m in cps:
                step.unit = (m.name, unit("apiserver"))
                await wait_ready(f"http://127.0.0.1:{await _published_port(docker, m.name, spec.HTTP_PORT)}",
                                 cfg.ready_timeout)
            front = lb or cp  # what the host's kubeconfig talks to
            api_port = await _published_port(docker, front.name, spec.API_PORT)
            http_port = await _published_port(docker, front.name, spec.HTTP_PORT)
            health = f"http://127.0.0.1:{http_port}"
            await wait_ready(health, cfg.ready_timeout)

        async with step(f"workers: {len(workers)} (kubelet and proxy if installed)"):
            await _gather(*(configure(m) for m in workers))
        if skipped:
            report.info(f"not in the image yet, units left disabled: {', '.join(sorted(skipped))}")

        server = f"http://127.0.0.1:{api_port}"
        with_kubelet = sorted(n for n, comps in enabled.items() if "kubelet" in comps)
        if with_kubelet:
            async with step(f"nodes Ready: {len(with_kubelet)}"):
                step.unit = (with_kubelet[-1], unit("kubelet"))
                await wait_nodes_ready(server, with_kubelet, cfg.ready_timeout)
            async with step(f"cluster DNS: {DNS_DEPLOYMENT} in {DNS_NAMESPACE} (deploy/addons), until available"):
                # What a VM's install.sh control-plane does last, run inside the control plane.
                await pushed
                await node_exec(docker, cp.name, "bash", f"{INSTALL_DIR}/install.sh", "addons")
                await wait_deployment_available(server, DNS_NAMESPACE, DNS_DEPLOYMENT, cfg.ready_timeout)

        async with step("kubeconfig"):
            path = write_host_kubeconfig(cfg.name, server, health, cfg.kubeconfig)
            # Where nodes reach the API (the load balancer, if any), for join commands, as kubeadm keeps it.
            await publish_cluster_info(server, cfg.name, spec.api_endpoint(members))
    return UpResult(cfg.name, str(subnet), server, health, path, members, enabled, sorted(skipped))


@contextlib.asynccontextmanager
async def _background(aw: Awaitable[T], name: str) -> AsyncIterator[asyncio.Task[T]]:
    """A named task for the block's duration: awaited by the block, or cancelled and awaited on its way out."""
    task = asyncio.create_task(_as_coro(aw), name=name)
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


# Where the node image keeps install.sh and the add-ons (kubelite.cluster.images' node Dockerfile).
INSTALL_DIR = "/opt/kubelite-install"
DNS_NAMESPACE = "kube-system"
DNS_DEPLOYMENT = "coredns"


async def wait_deployment_available(server: str, namespace: str, name: str, timeout: float) -> None:
    """Until the Deployment's controller has seen its latest spec and reports Available=True (its
    minimum of ready replicas), as `kubectl wait --for=condition=Available` does. Polled once a second
    for the same reason as wait_nodes_ready."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with Client(server, timeout=5) as client:
        while True:
            try:
                d = await client.get(apps.Deployment, name, namespace)
            except StatusError as exc:
                last = str(exc)
            else:
                available = any(c.type == "Available" and c.status == "True" for c in d.status.conditions)
                if available and d.status.observed_generation >= d.metadata.generation:
                    return
                last = (f"{d.status.available_replicas or 0}/{d.spec.replicas} available, "
                        f"observed generation {d.status.observed_generation}/{d.metadata.generation}")
            if loop.time() > deadline:
                raise ClusterError(f"deployment {namespace}/{name} not available within {timeout:g}s ({last})")
            await asyncio.sleep(1.0)


async def _wait_etcd(docker: Docker, node: str, endpoints: str, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = ""
    while loop.time() < deadline:
        r = await docker.run("exec", node, "etcdctl", f"--endpoints={endpoints}", "--command-timeout=2s",
                             "endpoint", "health", check=False, timeout=15)
        if r.code == 0:
            return
        last = (r.stderr or r.stdout).strip()
        await asyncio.sleep(0.5)
    raise ClusterError(f"etcd members not healthy within {timeout:.0f}s: {last}")


async def _published_port(docker: Docker, node: str, port: int) -> int:
    out = (await docker.run("port", node, f"{port}/tcp")).stdout.split()
    for addr in out:
        host, _, p = addr.rpartition(":")
        if host in ("127.0.0.1", "0.0.0.0") and p.isdigit():
            return int(p)
    raise ClusterError(f"{node}: port {port} is not published on loopback ({' '.join(out) or 'nothing'})")


async def _until_ok(url: str, timeout: float, interval: float) -> str:
    """Polls ``url`` until it answers 200; "" then, else why not (the last answer or error) at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = "no answer"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
        while loop.time() < deadline:
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return ""
                    last = f"HTTP {resp.status}: {(await resp.text()).strip()[:300]}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = str(exc) or type(exc).__name__
            await asyncio.sleep(interval)
    return last


async def wait_ready(health: str, timeout: float) -> None:
    """Until the API server's /readyz says ok (it checks etcd itself)."""
    if last := await _until_ok(f"{health}/readyz", timeout, 0.3):
        raise ClusterError(f"the API server was not ready within {timeout:.0f}s ({health}/readyz: {last})")


async def wait_nodes_ready(server: str, names: Sequence[str], timeout: float) -> None:
    """Until every named Node reports condition Ready=True. A poll once a second: this runs once, for
    well under a minute, at `up`; a watch would save nothing worth its reconnect handling here."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    missing: set[str] = set(names)
    async with Client(server, timeout=5) as client:
        while True:
            try:
                nodes = await client.list(core.Node)
            except StatusError as exc:
                last = str(exc)
            else:
                ready = {n.metadata.name for n in nodes.items
                         if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)}
                missing = set(names) - ready
                if not missing:
                    return
                last = f"not Ready: {', '.join(sorted(missing))}"
            if loop.time() > deadline:
                raise ClusterError(f"nodes not Ready within {timeout:g}s ({last})")
            await asyncio.sleep(1.0)


# --- kubeconfig -----------------------------------------------------------------------------------------------


def context_name(cluster: str) -> str:
    return f"kubelite-{cluster}"


def default_kubeconfig_path() -> Path:
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return Path(listed[0]).expanduser() if listed else Path.home() / ".kube" / "config"


async def publish_cluster_info(server: str, cluster: str, endpoint: str) -> None:
    """kube-public/cluster-info: a kubeconfig naming the API as the cluster network reaches it."""
    doc = kubeconfig_doc(cluster, f"http://{endpoint}:{spec.API_PORT}", f"http://{endpoint}:{spec.HTTP_PORT}")
    cm = core.ConfigMap(api_version="v1", kind="ConfigMap")
    cm.metadata.name, cm.metadata.namespace = "cluster-info", "kube-public"
    cm.data["kubeconfig"] = yaml.safe_dump(doc, sort_keys=False)
    async with Client(server, timeout=10) as client:
        try:
            await client.create(cm)
        except StatusError as exc:
            if exc.reason != "AlreadyExists":
                raise
            current = await client.get(core.ConfigMap, "cluster-info", "kube-public")
            current.data["kubeconfig"] = cm.data["kubeconfig"]
            await client.update(current)


def kubeconfig_doc(cluster: str, server: str, rest_server: str) -> dict[str, Any]:
    """kubelite reads the gRPC ``server`` from the extension; kubectl reads the REST one."""
    return kubeconfig_document(server, context_name(cluster), rest_server=rest_server)


def _read_kubeconfig(target: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(target.read_text()) or {}
    except FileNotFoundError:
        return {}
    except yaml.YAMLError as exc:
        raise ClusterError(f"kubeconfig {target} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ClusterError(f"kubeconfig {target} is not a mapping")
    return doc


def write_host_kubeconfig(cluster: str, server: str, rest_server: str, path: str = "") -> str:
    """Merges context kubelite-<cluster> into the kubeconfig (replacing an older one) and makes it current."""
    target = Path(path).expanduser() if path else default_kubeconfig_path()
    doc = _read_kubeconfig(target)
    fresh = kubeconfig_doc(cluster, server, rest_server)
    ctx = context_name(cluster)
    for section in ("clusters", "users", "contexts"):
        entries = [e for e in (doc.get(section) or []) if isinstance(e, dict) and e.get("name") != ctx]
        doc[section] = entries + fresh[section]
    doc.setdefault("apiVersion", "v1")
    doc.setdefault("kind", "Config")
    doc["current-context"] = ctx
    write_kubeconfig_document(target, doc)
    return str(target)


def remove_from_kubeconfig(cluster: str, path: str = "") -> bool:
    """Drops context kubelite-<cluster> from the kubeconfig, as `kind delete cluster` does."""
    target = Path(path).expanduser() if path else default_kubeconfig_path()
    doc = _read_kubeconfig(target)
    ctx = context_name(cluster)
    changed = False
    for section in ("clusters", "users", "contexts"):
        entries = doc.get(section) or []
        kept = [e for e in entries if not (isinstance(e, dict) and e.get("name") == ctx)]
        changed |= len(kept) != len(entries)
        doc[section] = kept
    if doc.get("current-context") == ctx:
        doc["current-context"] = ""
        changed = True
    if changed:
        write_kubeconfig_document(target, doc)
    return changed


async def kubeconfig(docker: Docker, name: str, internal: bool = False) -> str:
    """The kubeconfig for the host (loopback port) or, with ``internal``, for the cluster network."""
    found = await find(docker, name)
    cps = sorted((c for c in found.containers if _role(c) == spec.ROLE_CONTROL_PLANE), key=_cname)
    if not cps:
        raise ClusterError(f'no cluster named "{name}" (no control-plane container labelled {_label(name)})')
    # Several control planes are reached through their load balancer.
    cp = next((c for c in found.containers if _role(c) == spec.ROLE_LOAD_BALANCER), cps[0])
    if internal:
        nets = (cp.get("NetworkSettings") or {}).get("Networks") or {}
        ip = str((nets.get(name) or {}).get("IPAddress") or "")
        server, rest = f"http://{ip}:{spec.API_PORT}", f"http://{ip}:{spec.HTTP_PORT}"
    else:
        server = f"http://127.0.0.1:{await _published_port(docker, _cname(cp), spec.API_PORT)}"
        rest = f"http://127.0.0.1:{await _published_port(docker, _cname(cp), spec.HTTP_PORT)}"
    return yaml.safe_dump(kubeconfig_doc(name, server, rest), sort_keys=False)


# --- down, load-image -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownResult:
    containers: list[str]
    volumes: list[str]
    networks: list[str]


async def down(name: str, docker: Docker) -> DownResult:
    """Removes exactly what carries the cluster's label: containers (with their anonymous volumes),
    the nodes' docker volumes, the network. Nothing there is fine (idempotent)."""
    spec.validate_name(name)
    found = await find(docker, name)
    cids = [str(c["Id"]) for c in found.containers]
    if cids:
        await docker.run("rm", "-f", "-v", *cids, timeout=120)
    # Volumes and networks only after their containers are gone, and found again
    # by label (a concurrent `up` of the same name is the user's to sort out).
    volumes = await ids(docker, "volume", _label(name))
    if volumes:
        await docker.run("volume", "rm", "-f", *volumes)
    networks = await ids(docker, "network", _label(name))
    for net in networks:
        await docker.run("network", "rm", net)
    return DownResult(sorted(_cname(c) for c in found.containers), volumes, networks)


# --- the registry ---------------------------------------------------------------------------------------------


# The registry serves within a second of its start; --timeout is the API server's (and is made tiny by tests
# that want the control plane step to fail), so the registry keeps a bound of its own.
REGISTRY_TIMEOUT = 60.0


async def registry_port(docker: Docker, container: str) -> int:
    """The loopback port of this machine that the cluster's registry is published on."""
    return await _published_port(docker, container, spec.REGISTRY_PORT)


async def wait_registry(docker: Docker, container: str, timeout: float) -> None:
    """Until the registry answers its API's base endpoint (``GET /v2/`` is 200 when it serves)."""
    url = f"http://127.0.0.1:{await registry_port(docker, container)}/v2/"
    if last := await _until_ok(url, timeout, 0.2):
        raise ClusterError(f"the registry {container} did not answer within {timeout:.0f}s ({url}: {last})")


def _reference(image: str) -> Reference:
    try:
        return parse_reference(image)
    except ValueError as exc:
        raise ClusterError(str(exc)) from exc


def in_registry(image: str) -> bool:
    """Whether the nodes look for ``image`` in the cluster's registry: docker.io names (their dockerd's
    mirror) and names of the registry itself (``kubelite-registry:5000/x:1``)."""
    ref = _reference(image)
    return ref.on_docker_hub or ref.domain == spec.REGISTRY_ADDRESS


async def push_image(docker: Docker, registry: str, image: str, name: str = "") -> str:
    """``docker push`` of a local image into the cluster's registry through its loopback port, under the
    repository the nodes ask for (``kubelite/busybox:v1`` -> ``kubelite/busybox``, ``busybox`` ->
    ``library/busybox``), or under ``name`` when given; returns the name it has there. The loopback tag
    is removed again."""
    ref = _reference(name or image)
    if ref.digest:
        raise ClusterError(f"{name or image}: name the image by a tag, not a digest (a push needs a tag)")
    if not in_registry(name or image):
        raise ClusterError(f"{name or image} names the registry {ref.domain}: the nodes would not ask the "
                           "cluster's for it")
    target = ref.with_domain(f"127.0.0.1:{await registry_port(docker, registry)}")
    await docker.run("tag", image, target)
    try:
        await docker.run("push", "-q", target, timeout=600)
    finally:
        await docker.run("image", "rm", target, check=False)
    return ref.with_domain(spec.REGISTRY_ADDRESS)


async def node_pull(docker: Docker, node: str, image: str) -> None:
    """The node's dockerd pulls a docker.io name, which it asks its mirror (the cluster's registry) for."""
    await docker.run("exec", node, "docker", "pull", "-q", image, timeout=600)


@dataclass(frozen=True)
class Loaded:
    image: str
    pushed: str        # its name in the cluster's registry, "" when it went straight into the nodes
    nodes: list[str]   # the nodes it was loaded into directly (names of another registry, or no registry)


async def load_image(docker: Docker, name: str, image: str, report: Reporter) -> Loaded:
    """Makes a local image available to every node of the cluster, one added later included.

    Pushed into the cluster's registry, which the nodes pull from when a pod needs the image (so the
    pod's imagePullPolicy decides, as in any cluster: IfNotPresent pulls when the node lacks it). An
    image named after another registry, which the nodes would ask instead, and any image for a
    cluster without a registry (made by an older kubelite) are copied into every node's engine as
    before (``docker save | docker exec -i NODE docker load``)."""
    if await inspect(docker, "image", image) is None:
        raise ClusterError(f'image "{image}" is not present locally (docker images); build or tag it first')
    found = await find(docker, name)
    nodes = sorted(_cname(c) for c in found.containers if _role(c) in (spec.ROLE_CONTROL_PLANE, spec.ROLE_WORKER))
    if not nodes:
        raise ClusterError(f'no cluster named "{name}" (no node containers labelled {_label(name)})')
    registries = [_cname(c) for c in found.containers if _role(c) == spec.ROLE_REGISTRY]
    if registries and in_registry(image):
        async with report.step(f"push {image} into the registry {registries[0]} (the nodes pull it from there)"):
            pushed = await push_image(docker, registries[0], image)
        return Loaded(image, pushed, [])
    why = f"it names the registry {_reference(image).domain}" if registries else "the cluster has no registry"
    report.info(f"{image}: {why}; copying it into every node")
    async with report.step(f"load {image} into {len(nodes)} nodes"):
        await _gather(*(docker.pipe(["save", image], ["exec", "-i", n, "docker", "load", "-q"]) for n in nodes))
    return Loaded(image, "", nodes)


async def collect_logs(docker: Docker, name: str, dest: Path) -> list[str]:
    """Every container's journal, units, kubelite config and (on nodes) Docker state, one folder per
    container, for a bug report. Containers that are stopped contribute their inspect output only."""
    found = await find(docker, name)
    if not found.containers:
        raise ClusterError(f'no cluster named "{name}" (no containers labelled {_label(name)})')

    async def one(c: dict[str, Any]) -> None:
        n = _cname(c)
        out: dict[str, str] = {"inspect.json": json.dumps(c, indent=2)}
        if _role(c) == spec.ROLE_REGISTRY:
            # No systemd in there: the registry's own log (one line per request) is what tells.
            r = await docker.run("logs", n, check=False, timeout=60)
            out["registry.log"] = r.stdout + r.stderr
        elif (c.get("State") or {}).get("Running"):
            commands = {
                "journal.log": ["journalctl", "--no-pager", "-o", "short-precise"],
                "units.txt": ["systemctl", "list-units", "--all", "--no-pager"],
                "kubelite-config.txt": ["sh", "-c", "for f in /etc/kubelite/*; do echo \"== $f\"; cat \"$f\"; done"],
            }
            if _role(c) in (spec.ROLE_CONTROL_PLANE, spec.ROLE_WORKER):
                commands["docker-ps.txt"] = ["docker", "ps", "-a", "--no-trunc"]
                commands["docker-info.txt"] = ["docker", "info"]
            for fname, cmd in commands.items():
                r = await docker.run("exec", n, *cmd, check=False, timeout=60)
                out[fname] = r.stdout + (f"\n[stderr]\n{r.stderr}" if r.stderr.strip() else "")
        await asyncio.to_thread(_write_dir, dest / n, out)

    await _gather(*(one(c) for c in found.containers))
    return sorted(_cname(c) for c in found.containers)


def _write_dir(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for fname, text in files.items():
        (folder / fname).write_text(text)


__all__ = [
    "ClusterError",
    "DockerError",
    "DownResult",
    "Found",
    "Loaded",
    "Reporter",
    "StepFailed",
    "UpResult",
    "collect_logs",
    "down",
    "find",
    "kubeconfig",
    "list_clusters",
    "load_image",
    "push_image",
    "up",
    "wait_ready",
    "write_host_kubeconfig",
]
