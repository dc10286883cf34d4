"""``kubelite join HOST:PORT --token T``: make THIS host a worker of an existing cluster, as kubeadm join.

``deploy/install.sh join`` installs the packages and kubelite, then runs this.
It proves the token first (one authenticated request to the API server: an
unknown, expired or deleted token is refused with 401 there) and only then
writes anything, so a mistyped or stale token fails within seconds with a
message saying what to do, and leaves the host as it was. Then it is
``configure-node --role worker`` with the token kept in the node's bootstrap
kubeconfig (see kubelite.cluster.node.BOOTSTRAP_KUBECONFIG for why the
components' own kubeconfig does not carry it).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.cli.clientset import Streams
from kubelite.cli.errors import CliError
from kubelite.client.client import Client
from kubelite.cluster import node
from kubelite.machinery import bootstraptoken as bt
from kubelite.machinery.errors import StatusError


@dataclass(frozen=True)
class JoinOptions:
    endpoint: str  # HOST:PORT or a URL
    token: str
    node_name: str = ""
    node_ip: str = ""
    cluster_cidr: str = "10.244.0.0/16"
    cluster_dns: str = "10.96.0.10"
    cluster_domain: str = "cluster.local"
    timeout: float = 15.0
    start: bool = True


def server_url(endpoint: str) -> str:
    """``10.0.0.10:6443``, ``10.0.0.10`` or ``http://10.0.0.10:6443`` → the URL the node's kubeconfig names."""
    text = endpoint.strip()
    if not text:
        raise CliError("join: the API server endpoint HOST:PORT is required")
    if "://" in text:
        return text.rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(node.API_PORT)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"join: invalid endpoint {endpoint!r}: must be HOST:PORT, such as 10.0.0.10:{node.API_PORT}")
    return f"http://{host}:{port}"


def default_node_ip(server: str) -> str:
    """The address this host uses towards the API server: the right one on a host with several networks."""
    host = server.split("://", 1)[1].rsplit(":", 1)[0].strip("[]")
    try:
        target = str(ipaddress.ip_address(host))
    except ValueError:
        target = socket.gethostbyname(host)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((target, 9))  # UDP connect sends nothing; it only picks the route and source address
        return str(s.getsockname()[0])


async def verify_token(server: str, token: bt.Token, timeout: float) -> None:
    """One request with the token; raises CliError saying what is wrong."""
    async with Client(server, token=str(token), timeout=timeout) as client:
        try:
            await client.get(core_v1.Namespace, bt.NAMESPACE)
        except StatusError as exc:
            if exc.reason == "Unauthorized":
                raise CliError(
                    f'the API server at {server} refused the bootstrap token "{token.id}.<redacted>": it is '
                    f"unknown, expired or deleted. On the control plane, `kubelite token list` shows the valid "
                    f"tokens and `kubelite token create --print-join-command` prints a new join command") from None
            if exc.reason in ("ServiceUnavailable", "Timeout"):
                raise CliError(f"cannot reach the API server at {server}: {exc.message}") from None
            raise


async def run_join(opts: JoinOptions, streams: Streams, host: node.Host) -> int:
    server = server_url(opts.endpoint)
    try:
        token = bt.parse(opts.token)
    except bt.TokenFormatError as exc:
        raise CliError(f"--token: {exc}") from None
    await verify_token(server, token, opts.timeout)
    streams.err(f"[join] the API server at {server} accepted bootstrap token {token.id}")
    try:
        cfg = node.NodeConfig(role=node.ROLE_WORKER, node_name=opts.node_name or socket.gethostname(),
                              node_ip=opts.node_ip or default_node_ip(server), server=server,
                              cluster_cidr=opts.cluster_cidr, cluster_dns=opts.cluster_dns,
                              cluster_domain=opts.cluster_domain, bootstrap_token=str(token))
        done = node.configure(cfg, host, start=opts.start)
    except node.ConfigError as exc:
        raise CliError(str(exc)) from None
    streams.err(f"[join] {cfg.node_name} configured as worker ({cfg.node_ip}): enabled "
                f"{', '.join(done.enabled) or 'nothing'}" + (f"; not installed: {', '.join(done.skipped)}"
                                                              if done.skipped else ""))
    streams.out(f"This node has joined the cluster as {cfg.node_name}.\n"
                f"Run 'kubelite get nodes' on the control plane to see it become Ready.")
    return 0
