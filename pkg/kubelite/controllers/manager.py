"""kubelite-controller-manager: runs the selected controllers in one process.

All controllers share one Client (one HTTP/2 connection) and one
SharedInformerFactory (one list+watch per kind, however many controllers read
it). With ``--leader-elect`` (the default) the controllers run only while this
process holds the ``kube-system/kube-controller-manager`` Lease; losing it
stops them and ``run`` raises, so the process exits non-zero and its
supervisor restarts it as a candidate, as kube-controller-manager does.

/healthz and /metrics are served on --secure-port (10257) from the start,
leader or not: a standby is healthy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from kubelite.client.client import Client
from kubelite.client.events import EventRecorder
from kubelite.client.informer_factory import SharedInformerFactory
from kubelite.client.leaderelection import ClientLeaseStore, LeaderElector
from kubelite.controllers.config import ControllerManagerConfig
from kubelite.machinery.health import health_app

log = logging.getLogger(__name__)

LEASE_NAME = "kube-controller-manager"

Runnable = Callable[[], Coroutine[Any, Any, None]]


class LeaderElectionLost(Exception):
    """The lease was lost: the controllers were stopped and the process must exit."""


@dataclass
class ControllerContext:
    """What a controller's start function gets: shared client, informers and recorders."""

    client: Client
    factory: SharedInformerFactory
    config: ControllerManagerConfig
    recorders: list[EventRecorder] = field(default_factory=list)

    def recorder(self, component: str) -> EventRecorder:
        rec = EventRecorder(self.client, component)
        self.recorders.append(rec)
        return rec


StartFunc = Callable[[ControllerContext], list[tuple[str, Runnable]]]


def _start_funcs() -> dict[str, StartFunc]:
    # Imported here so that a controller's module is loaded only when selected.
    from kubelite.controllers import starters

    return starters.START_FUNCS


async def run(config: ControllerManagerConfig, *, ready: asyncio.Event | None = None) -> None:
    """Serves health and metrics, then runs the controllers (as leader, if electing) until cancelled."""
    client = Client(config.server)
    site_runner = await _serve_http(config)
    if ready is not None:
        ready.set()
    try:
        if config.leader_election.leader_elect:
            elector = LeaderElector(ClientLeaseStore(client), config.leader_election,
                                    name=config.leader_election.resource_name or LEASE_NAME)
            log.info("leader election: I am %s", elector.identity)
            if not await elector.run(lambda: run_controllers(client, config)):
                raise LeaderElectionLost("leaderelection lost")
        else:
            await run_controllers(client, config)
    finally:
        await site_runner.cleanup()
        await client.close()


async def run_controllers(client: Client, config: ControllerManagerConfig) -> None:
    """Builds every selected controller, starts the informers, then runs them all until cancelled."""
    factory = SharedInformerFactory(client)
    ctx = ControllerContext(client, factory, config)
    funcs = _start_funcs()
    runnables: list[tuple[str, Runnable]] = []
    for name in config.controllers:
        log.info("starting %s", name)
        runnables.extend(funcs[name](ctx))
    loop = asyncio.get_running_loop()
    for rec in ctx.recorders:
        rec.start()
    factory.start()
    tasks = [loop.create_task(fn(), name=f"controller-{name}") for name, fn in runnables]
    try:
        if tasks:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # a controller that ends or fails ends the manager
        else:
            await asyncio.Event().wait()
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await factory.shutdown()
        for rec in ctx.recorders:
            await rec.stop()


async def _serve_http(config: ControllerManagerConfig) -> web.AppRunner:
    runner = web.AppRunner(health_app({}), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.bind_address, config.secure_port)
    await site.start()
    log.info("serving /healthz and /metrics on %s:%d", config.bind_address, config.secure_port)
    return runner
