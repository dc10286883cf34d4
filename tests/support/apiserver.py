"""Runs a real kubelite-apiserver process for tests, benchmarks and `make up`.

The process is started from the virtualenv's console script and stopped by
its PID (never by name). ``restart()`` keeps the ports, so that clients can
reconnect to the same address, as they would after an upgrade.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class APIServerProcess:
    def __init__(self, etcd_servers: list[str], log_path: Path, *, port: int = 0, http_port: int = 0,
                 extra_args: list[str] | None = None) -> None:
        self.etcd_servers = etcd_servers
        self.log_path = log_path
        self.port = port or free_port()
        self.http_port = http_port or free_port()
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def server(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        exe = Path(sys.executable).parent / "kubelite-apiserver"
        cmd = [str(exe), f"--etcd-servers={','.join(self.etcd_servers)}", "--bind-address=127.0.0.1",
               f"--secure-port={self.port}", f"--http-port={self.http_port}", *self.extra_args]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.http_port}/readyz"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"kubelite-apiserver exited with {self.proc.returncode}; see {self.log_path}:\n"
                                   + self.log_path.read_text()[-3000:])
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"kubelite-apiserver not ready after {timeout}s; see {self.log_path}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> APIServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
