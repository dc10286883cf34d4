"""pods/proxy and services/proxy: the API server relays HTTP to a pod, as kube-apiserver does.

``/api/v1/namespaces/{ns}/pods/{[scheme:]name[:port]}/proxy/{path}`` goes to the
pod's IP, ``services/{[scheme:]name[:port]}/proxy/{path}`` to one ready endpoint
of the Service (picked at random, like a ClusterIP would). For a pod the port
is a number or a container port's name (80 when absent); for a Service it is
a Service port's name or number, and the request goes to the endpoint port of
the same name, so a named targetPort works as it does through kube-proxy.
This is how ``kubectl proxy`` users reach a dashboard and ``kubectl get --raw``
reaches a pod's metrics without a port-forward.

Any method is relayed with its body, query and headers, except hop-by-hop
headers and the caller's Authorization (the backend never sees the API
credential); the answer streams back as it comes, undecoded. Loopback and
link-local destinations are refused, as Kubernetes refuses them, so a pod
cannot point the API server at its own host. WebSocket upgrades through the
proxy are not relayed.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence

import aiohttp
from aiohttp import web

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.machinery import errors

HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Host"))
NOT_FORWARDED = HOP_BY_HOP | {"authorization"}


def split_name(name: str) -> tuple[str, str, str]:
    """``[scheme:]name[:port]`` -> (scheme, name, port), as Kubernetes splits a proxy target."""
    parts = name.split(":")
    if len(parts) == 1:
        return "", parts[0], ""
    if len(parts) == 2:
        return "", parts[0], parts[1]
    if len(parts) == 3 and parts[0] in ("http", "https"):
        return parts[0], parts[1], parts[2]
    raise errors.bad_request(f'invalid proxy target "{name}": expected [scheme:]name[:port]')


def pod_location(pod: core.Pod, scheme: str, port: str) -> tuple[str, str, int]:
    """(scheme, IP, port) of a pod's ``[scheme:]name[:port]``."""
    if not pod.status.pod_ip:
        raise errors.StatusError("ServiceUnavailable", f'pod "{pod.metadata.name}" has no IP address yet')
    if not port:
        number = 443 if scheme == "https" else 80
    elif port.isdigit():
        number = int(port)
    else:
        named = [p.container_port for c in pod.spec.containers for p in c.ports if p.name == port]
        if not named:
            raise errors.bad_request(f'pod "{pod.metadata.name}" has no container port named "{port}"')
        number = named[0]
    return scheme or "http", pod.status.pod_ip, number


def service_location(svc: core.Service, endpoints: core.Endpoints | None, scheme: str, port: str,
                     rng: random.Random) -> tuple[str, str, int]:
    """(scheme, IP, port) of one ready endpoint behind the Service port ``port`` (a name or a number)."""
    name = svc.metadata.name
    ports = list(svc.spec.ports)
    if port.isdigit():
        matching = [p for p in ports if p.port == int(port)]
    elif port:
        matching = [p for p in ports if p.name == port]
    else:
        matching = ports if len(ports) == 1 else [p for p in ports if not p.name]
    if not matching:
        raise errors.StatusError("ServiceUnavailable", f'no service port "{port}" found for service "{name}"')
    port_name = matching[0].name
    candidates = [(address.ip, p.port)
                  for subset in (endpoints.subsets if endpoints is not None else ())
                  for p in subset.ports if p.name == port_name
                  for address in subset.addresses]
    if not candidates:
        raise errors.StatusError("ServiceUnavailable", f'no endpoints available for service "{name}"')
    ip, number = rng.choice(candidates)
    return scheme or "http", ip, number


def check_destination(ip: str) -> None:
    """Kubernetes' rule: never relay to loopback, link-local or unspecified addresses."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise errors.bad_request(f"address not allowed: {ip!r} is not an IP address") from None
    if address.is_loopback or address.is_link_local or address.is_unspecified:
        raise errors.bad_request(f"address not allowed: {ip}")


def _forwarded(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.lower() not in NOT_FORWARDED]


async def relay(request: web.Request, session: aiohttp.ClientSession, location: tuple[str, str, int],
                path: str) -> web.StreamResponse:
    """Sends the request on to ``location`` + ``path`` and streams the answer back."""
    scheme, ip, port = location
    check_destination(ip)
    host = f"[{ip}]" if ":" in ip else ip
    url = f"{scheme}://{host}:{port}{path or '/'}"
    if request.rel_url.raw_query_string:
        url += "?" + request.rel_url.raw_query_string
    body = request.content if request.body_exists else None
    try:
        upstream = await session.request(request.method, url, headers=_forwarded(list(request.headers.items())),
                                         data=body, allow_redirects=False, ssl=False)
    except (aiohttp.ClientError, OSError) as exc:
        raise errors.StatusError("ServiceUnavailable", f"error trying to reach service: {ip}:{port}: {exc}") from None
    async with upstream:
        resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for k, v in _forwarded(list(upstream.headers.items())):
            resp.headers.add(k, v)
        await resp.prepare(request)
        async for chunk in upstream.content.iter_any():
            await resp.write(chunk)
        await resp.write_eof()
    return resp
