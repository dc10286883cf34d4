"""Health, readiness and Prometheus metrics over HTTP (aiohttp), for every component.

HTTP is the convention for these endpoints (load balancers, systemd checks,
Prometheus scrapers), so they sit beside each component's gRPC or DNS port on
their own. One app for all, so `/readyz` reads the same everywhere: one line
per named check, 503 while any fails. Components add their own routes
(the scheduler's `/debug/pending`) to the app before serving it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def health_app(checks: Mapping[str, Callable[[], bool]], client_max_size: int = 1024**2) -> web.Application:
    """``checks`` names readiness checks; /readyz fails while any is false.

    ``client_max_size`` bounds request bodies: the API server's REST API shares this application.
    """

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

    app = web.Application(client_max_size=client_max_size)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
