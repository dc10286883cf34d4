"""Runs one command's coroutine and turns its outcome into output and an exit code.

click is synchronous; each command hands an ``async def`` body to
``run_command``, which owns the event loop, closes the client, and prints
expected errors in kubectl's format instead of a traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from kubelite.cli.clientset import Session
from kubelite.cli.errors import CliError, ExitError, format_cli_error, format_status_error
from kubelite.machinery.errors import StatusError
from kubelite.machinery.scheme import UnknownKindError

# What a shell reports for a process ended by Ctrl-C.
INTERRUPTED = 130


def run_command(session: Session, body: Callable[[Session], Awaitable[int]]) -> int:
    async def main() -> int:
        try:
            return await body(session)
        finally:
            try:
                await session.close()
            except Exception:
                pass

    try:
        return asyncio.run(main())
    except ExitError as exc:
        return exc.code
    except CliError as exc:
        session.streams.err(format_cli_error(exc))
    except UnknownKindError as exc:
        session.streams.err(format_cli_error(str(exc)))
    except StatusError as exc:
        session.streams.err(format_status_error(exc, server=session.server))
    except KeyboardInterrupt:
        return INTERRUPTED
    return 1
