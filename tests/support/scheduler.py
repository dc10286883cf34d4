"""Runs a real kubelite-scheduler process for tests and benchmarks, stopped by its PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.apiserver import free_port


class SchedulerProcess:
    def __init__(self, server: str, log_path: Path, *, config: Path | None = None, port: int = 0,
                 extra_args: list[str] | None = None, leader_elect: bool = False) -> None:
        self.server = server
        self.leader_elect = leader_elect
        self.log_path = log_path
        self.config = config
        self.port = port or free_port()
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        exe = Path(sys.executable).parent / "kubelite-scheduler"
        cmd = [str(exe), f"--master={self.server}", "--bind-address=127.0.0.1", f"--secure-port={self.port}",
               *([] if self.leader_elect else ["--no-leader-elect"]), *self.extra_args]
        if self.config is not None:
            cmd.append(f"--config={self.config}")
        return cmd

    def start(self, timeout: float = 90.0) -> None:
        """Starts the process and waits for /readyz (generous: a loaded 2-core machine starts Python slowly)."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kubelite-scheduler exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"kubelite-scheduler not ready after {timeout}s; see {self.log_path}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample (0 when absent)."""
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith("#"):
                continue
            sample, _, value = line.rpartition(" ")
            metric_name, _, rest = sample.partition("{")
            if metric_name != name:
                continue
            got = ",".join(sorted(p for p in rest.rstrip("}").split(",") if p))
            if all(part in got.split(",") for part in want.split(",") if part):
                return float(value)
        return 0.0

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

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

    def __enter__(self) -> SchedulerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
