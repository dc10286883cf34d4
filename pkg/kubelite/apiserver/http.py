"""Health, readiness and Prometheus metrics over HTTP (aiohttp).

HTTP is the convention for these endpoints (load balancers, systemd checks,
Prometheus scrapers), so they sit beside the gRPC API on their own port.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def make_app(checks: Mapping[str, Callable[[], bool]]) -> web.Application:
    """``checks`` names readiness checks; /readyz fails while any is false."""

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(request: web.Request) -> web.Response:
        lines, ok = [], True
        for name, check in checks.items():
            passed = check()
            ok = ok and passed
            lines.append(f"[{'+' if passed else '-'}]{name} {'ok' if passed else 'failed'}")
        body = "\n".join(lines) + ("\nreadyz check passed\n" if ok else "\nreadyz check failed\n")
        return web.Response(text=body if request.query.get("verbose") is not None else ("ok" if ok else body),
                            status=200 if ok else 503)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
