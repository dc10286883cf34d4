"""How the command line reports failures, in kubectl's words.

kubectl users read two shapes of error and scripts grep for them: a failure
the server returned (``Error from server (NotFound): pods "x" not found``) and
one the client found itself (``error: ...``, for example malformed YAML). The
distinction is kept by type: a StatusError that escapes a command came from
the server; anything the CLI detects is raised as CliError. Both map to exit
code 1, and neither ever shows a traceback.
"""

from __future__ import annotations

from kubelite.machinery.errors import StatusError


class CliError(Exception):
    """A client-side error; printed as ``error: <message>``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ExitError(Exception):
    """Ends a command with this exit code after its messages were printed."""

    def __init__(self, code: int = 1) -> None:
        super().__init__(code)
        self.code = code


# The client words transport failures as kubectl does; those are not "from server".
_TRANSPORT_PREFIXES = ("The connection to the server", "Unable to connect to the server")


def format_status_error(exc: StatusError, context: str = "", server: str = "") -> str:
    """``Error from server (Reason): [context: ]message``, or kubectl's connection sentence as is."""
    if exc.reason in ("ServiceUnavailable", "Timeout") and exc.message.startswith(_TRANSPORT_PREFIXES):
        return exc.message
    if exc.reason == "Unauthorized":
        # kubectl's words for a credential the server did not accept (the server says no more, on purpose).
        return "error: You must be logged in to the server (Unauthorized)"
    message = f"{context}: {exc.message}" if context else exc.message
    return f"Error from server ({exc.reason}): {message}"


def format_cli_error(exc: CliError | str) -> str:
    return f"error: {exc}"
