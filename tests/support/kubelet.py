"""Runs a real kubelite-kubelet process for integration tests and benchmarks.

Started from the virtualenv's console script, stopped by its PID (SIGTERM,
then SIGKILL), never by name. ``restart()`` keeps the flags, so a test can
check that a restarted kubelet adopts the containers it left running.
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


class KubeletProcess:
    def __init__(self, server: str, node_name: str, log_path: Path, root_dir: Path, *, runtime: str = "docker",
                 pod_cidr: str = "", extra_args: list[str] | None = None) -> None:
        self.server = server
        self.node_name = node_name
        self.log_path = log_path
        self.root_dir = root_dir
        self.runtime = runtime
        self.pod_cidr = pod_cidr
        self.port = free_port()
        self.healthz_port = free_port()
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0, *, wait_healthy: bool = True) -> None:
        """Starts the process; waits for /healthz (the Node registered) unless told not to
        (a kubelet with no API server to register with)."""
        exe = Path(sys.executable).parent / "kubelite-kubelet"
        cmd = [str(exe), f"--master={self.server}", f"--hostname-override={self.node_name}",
               "--node-ip=127.0.0.1", f"--runtime={self.runtime}", f"--root-dir={self.root_dir}",
               "--address=127.0.0.1", f"--port={self.port}", f"--healthz-port={self.healthz_port}",
               *([f"--pod-cidr={self.pod_cidr}"] if self.pod_cidr else []), *self.extra_args]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        if not wait_healthy:
            return
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.healthz_port}/healthz"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kubelite-kubelet exited with {self.proc.returncode}:\n"
                                   + self.log_path.read_text()[-3000:])
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"kubelite-kubelet not healthy after {timeout}s; see {self.log_path}")

    def stop(self, timeout: float = 15.0) -> None:
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

    def kill(self) -> None:
        """SIGKILL: a kubelet that dies without any cleanup."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> KubeletProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
