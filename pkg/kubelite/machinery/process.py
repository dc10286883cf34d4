"""What every component's entry point does around its ``run()``: logging and signals.

Each binary logs one line per event to stderr (``-v 4`` and up for debug), and
stops cleanly on SIGINT or SIGTERM: the signal cancels the main task, so
``run()``'s own ``finally`` blocks shut the component down in order. Kept here
so the entry points stay wiring only and cannot drift apart.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine
from typing import Any


def configure_logging(verbosity: int) -> None:
    logging.basicConfig(level=logging.DEBUG if verbosity >= 4 else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def until_signalled(main: Coroutine[Any, Any, None], name: str) -> None:
    """Awaits ``main`` until it ends or SIGINT/SIGTERM cancels it (then logs the shutdown)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await main
    except asyncio.CancelledError:
        logging.getLogger(name).info("shutting down")
