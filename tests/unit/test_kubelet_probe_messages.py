"""A failed probe's message reads as the kubelet's does (Go's net errors), for people who search for it.

The connections are real, to a loopback port nobody listens on.
"""

from __future__ import annotations

import errno

import aiohttp
import pytest

from kubelite.kubelet.probes import dial_error, http_get, tcp_check
from tests.support.apiserver import free_port as closed_port  # bound, then released: nobody listens


async def test_a_refused_tcp_probe_says_connection_refused() -> None:
    port = closed_port()
    assert await tcp_check("127.0.0.1", port, 1.0) == (False, f"dial tcp 127.0.0.1:{port}: connect: connection refused")


async def test_a_refused_http_probe_says_connection_refused() -> None:
    port = closed_port()
    with pytest.raises(aiohttp.ClientConnectorError) as caught:
        await http_get("127.0.0.1", port, "/ready", 1.0)
    assert dial_error("127.0.0.1", port, caught.value) == f"dial tcp 127.0.0.1:{port}: connect: connection refused"


def test_other_failures_in_go_words() -> None:
    assert dial_error("10.0.0.1", 80, TimeoutError()) == "dial tcp 10.0.0.1:80: i/o timeout"
    unreachable = OSError(errno.EHOSTUNREACH, "No route to host")
    assert dial_error("10.0.0.1", 80, unreachable) == "dial tcp 10.0.0.1:80: connect: no route to host"
    assert dial_error("10.0.0.1", 80, OSError(errno.EPERM, "nope")) == "dial tcp 10.0.0.1:80: [Errno 1] nope"
