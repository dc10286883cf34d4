"""Runs the installed ``kubelite`` console script against a test's API server, as a user types it.

HOME points at an empty directory so that no kubeconfig on the machine leaks
in; each call gets the server, a request timeout and the namespace.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

KUBELITE = pathlib.Path(os.environ.get("KUBELITE_BIN") or pathlib.Path(sys.executable).parent / "kubelite")


TRANSPORT_FAILURES = ("The connection to the server", "Unable to connect to the server")
TRANSPORT_RETRIES = 4


class Kubelite:
    def __init__(self, server: str, home: pathlib.Path, namespace: str = "") -> None:
        self.server = server
        self.namespace = namespace
        self.env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBE_EDITOR", "EDITOR")}
        self.env["HOME"] = str(home)

    def command(self, *args: str, namespace: str | None = None) -> list[str]:
        cmd = [str(KUBELITE), "--server", self.server, "--request-timeout", "30s"]
        ns = self.namespace if namespace is None else namespace
        if ns:
            cmd += ["-n", ns]
        return [*cmd, *args]

    def __call__(self, *args: str, input: str | None = None, namespace: str | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Runs one command; a refused connection to a server that is up is retried (see below).

        Seen now and then on the shared 2-core machine: a CLI call fails with "The connection to
        the server ... was refused" while the API server is up on loopback and logs nothing (an
        open issue, reported). Only that transport failure is retried, a few times, and each retry
        is printed; whatever the server answers is the test's to judge.
        """
        for _ in range(TRANSPORT_RETRIES):
            r = subprocess.run(self.command(*args, namespace=namespace), input=input, capture_output=True,
                               text=True, timeout=timeout, env=self.env)
            if not r.stderr.startswith(TRANSPORT_FAILURES):
                break
            print(f"kubelite {' '.join(args)}: {r.stderr.strip()} (retrying)", file=sys.stderr)
            time.sleep(1)
        return r

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """A command that runs on while the test acts (``rollout status`` following a rollout)."""
        return subprocess.Popen(self.command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def failed(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """Exit code 1 with an ``error:``-style message and no traceback."""
    assert result.returncode == 1, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result
