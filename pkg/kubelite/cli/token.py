"""``kubelite token create|list|delete``: bootstrap tokens, as ``kubeadm token`` manages them.

A token is a Secret in kube-system (kubelite.machinery.bootstraptoken), so
these verbs are plain API calls; the API server authenticates a presented
token against that Secret. ``create --print-join-command`` prints the one
command a new worker VM runs (``install.sh join HOST:PORT --token T``), with
HOST:PORT taken from the ``kubernetes`` Endpoints (the addresses the API
servers advertise to nodes and pods) rather than from this client's
kubeconfig, which may well point at a loopback port-forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import yaml

from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.cli.clientset import Session
from kubelite.cli.errors import CliError
from kubelite.client.kubeconfig import grpc_server
from kubelite.machinery import bootstraptoken as bt
from kubelite.machinery.errors import StatusError

# What a worker VM runs; install.sh sits next to the wheels an operator copied over (see deploy/install.sh).
JOIN_SCRIPT = "bash install.sh"


@dataclass(frozen=True)
class CreateOptions:
    token: str = ""  # empty: generate one
    ttl_seconds: float = bt.DEFAULT_TTL.total_seconds()  # 0: never expires
    description: str = ""
    usages: tuple[str, ...] = bt.USAGES
    groups: tuple[str, ...] = ()
    print_join_command: bool = False


async def run_create(session: Session, opts: CreateOptions) -> int:
    if opts.ttl_seconds < 0:
        raise CliError("--ttl must not be negative (0 means the token never expires)")
    try:
        token = bt.parse(opts.token) if opts.token else bt.generate()
        ttl = timedelta(seconds=opts.ttl_seconds) if opts.ttl_seconds else None
        secret = bt.build_secret(token, ttl=ttl, description=opts.description, usages=opts.usages,
                                 extra_groups=opts.groups)
    except bt.TokenFormatError as exc:
        raise CliError(str(exc)) from None
    try:
        await session.client.create(secret)
    except StatusError as exc:
        if exc.reason == "AlreadyExists":
            raise CliError(f'a token with id "{token.id}" already exists') from None
        raise
    if opts.print_join_command:
        session.streams.out(f"{JOIN_SCRIPT} join {await control_plane_endpoint(session)} --token {token}")
    else:
        session.streams.out(str(token))
    return 0


CLUSTER_INFO = ("kube-public", "cluster-info")


async def control_plane_endpoint(session: Session) -> str:
    """HOST:PORT of the API as nodes reach it: the server of the kubeconfig in the ConfigMap
    kube-public/cluster-info when there is one (kubeadm's place for the control-plane endpoint: a
    load balancer in front of several control planes), else the first address of the `kubernetes`
    Endpoints, else the host of this client's server URL."""
    try:
        info = await session.client.get(core_v1.ConfigMap, CLUSTER_INFO[1], CLUSTER_INFO[0])
    except StatusError as exc:
        if exc.reason != "NotFound":
            raise
    else:
        endpoint = _endpoint_of(info.data.get("kubeconfig", ""))
        if endpoint:
            return endpoint
    try:
        ep = await session.client.get(core_v1.Endpoints, "kubernetes", "default")
    except StatusError as exc:
        if exc.reason != "NotFound":
            raise
    else:
        for subset in ep.subsets:
            if subset.addresses and subset.ports:
                return f"{subset.addresses[0].ip}:{subset.ports[0].port}"
    url = urlparse(session.server if "://" in session.server else f"http://{session.server}")
    if not url.hostname:
        raise CliError("cannot tell the API server's address for the join command: the `kubernetes` "
                       "Endpoints list none and the kubeconfig names no server")
    return f"{url.hostname}:{url.port or 6443}"


async def list_tokens(session: Session) -> list[core_v1.Secret]:
    secrets = await session.client.list(core_v1.Secret, bt.NAMESPACE)
    return sorted((s for s in secrets.items if s.type == bt.SECRET_TYPE), key=lambda s: s.metadata.name)


async def run_list(session: Session, now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    rows = [("TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS")]
    for s in await list_tokens(session):
        secret = s.data[bt.KEY_SECRET].decode(errors="replace") if bt.KEY_SECRET in s.data else ""
        exp = bt.expiration(s)
        rows.append((f"{bt.token_id(s)}.{secret}", bt.human_ttl(s, now),
                     bt.format_time(exp) if exp is not None else "<never>",
                     ",".join(bt.usages(s)) or "<none>", bt.description(s) or "<none>",
                     ",".join(bt.extra_groups(s)) or "<none>"))
    if len(rows) == 1:
        session.streams.err(f"No bootstrap tokens found in {bt.NAMESPACE}.")
        return 0
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        session.streams.out("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "   " + r[-1])
    return 0


async def run_delete(session: Session, ids: tuple[str, ...]) -> int:
    if not ids:
        raise CliError("missing subcommand; 'token delete' is missing a token id or token (TOKEN_ID or TOKEN)")
    try:
        parsed = [bt.parse_id(i) for i in ids]
    except bt.TokenFormatError as exc:
        raise CliError(str(exc)) from None
    failed = False
    for token_id in parsed:
        try:
            await session.client.delete(core_v1.Secret, bt.secret_name(token_id), bt.NAMESPACE)
        except StatusError as exc:
            if exc.reason != "NotFound":
                raise
            session.streams.err(f'error: bootstrap token "{token_id}" not found')
            failed = True
            continue
        session.streams.out(f'bootstrap token "{token_id}" deleted')
    return 1 if failed else 0


def _endpoint_of(kubeconfig: str) -> str:
    """HOST:PORT of the gRPC server of a kubeconfig's first cluster, or "" when there is none to read."""
    try:
        doc = yaml.safe_load(kubeconfig) or {}
        server = grpc_server(doc["clusters"][0]["cluster"])
    except (yaml.YAMLError, KeyError, IndexError, TypeError):
        return ""
    url = urlparse(server if "://" in server else f"http://{server}")
    return f"{url.hostname}:{url.port or 6443}" if url.hostname else ""
