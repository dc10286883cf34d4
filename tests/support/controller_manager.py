"""Runs a real kubelite-controller-manager process for tests and benchmarks.

Started from the virtualenv's console script, ready once /healthz answers,
stopped by its PID (never by name). ``restart()`` keeps the port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.apiserver import free_port


class ControllerManagerProcess:
    def __init__(self, server: str, log_path: Path, *, port: int = 0, extra_args: list[str] | None = None) -> None:
        self.server = server
        self.log_path = log_path
        self.port = port or free_port()
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        exe = Path(sys.executable).parent / "kubelite-controller-manager"
        cmd = [str(exe), f"--master={self.server}", "--bind-address=127.0.0.1", f"--secure-port={self.port}",
               *self.extra_args]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kubelite-controller-manager exited with {self.proc.returncode}:\n"
                                   + self.log_path.read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"kubelite-controller-manager not healthy after {timeout}s; see {self.log_path}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        """Dies without any cleanup (no lease release): what a crash looks like."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> ControllerManagerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
