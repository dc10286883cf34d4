"""A real etcd cluster of N members on loopback, for tests and benchmarks.

Plain synchronous Python with no pytest dependency, so benchmarks and scripts
can use it too::

    with EtcdCluster(Path("/tmp/etcd-test")) as cluster:
        print(cluster.endpoints)          # ["http://127.0.0.1:PORT", ...]
        cluster.stop_member(cluster.leader_index())
        cluster.start_member(0)

Members are ``etcd`` subprocesses (Debian's etcd-server, 3.4) with their own
data directories under ``base_dir`` and logs in ``base_dir/<name>.log``; they
are stopped by PID (SIGTERM, then SIGKILL), never by name. Health and leader
come from etcd's HTTP endpoints (``/health``, the v3 JSON gateway), so the
harness needs no etcd client library.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

ETCD_BINARY = os.environ.get("ETCD_BINARY", "etcd")

# What a member that is down, starting or stopping makes urlopen raise (URLError
# is an OSError; a half-started server can also send a bad status line).
_UNREACHABLE = (OSError, ValueError, http.client.HTTPException)


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports free right now (bound together so they differ)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    started_once: bool = False

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class EtcdClusterError(RuntimeError):
    pass


class EtcdCluster:
    """``size`` etcd members forming one Raft cluster on 127.0.0.1.

    ``heartbeat_ms``/``election_ms`` default lower than etcd's (100/1000) so a
    killed leader is replaced quickly in tests, yet far enough above the
    heartbeat for a busy 2-core machine not to hold spurious elections.
    """

    def __init__(
        self,
        base_dir: Path,
        size: int = 3,
        *,
        heartbeat_ms: int = 100,
        election_ms: int = 1000,
        extra_args: list[str] | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.base_dir = Path(base_dir)
        self.size = size
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.extra_args = list(extra_args or [])
        self.start_timeout = start_timeout
        self.token = f"kubelite-test-{uuid.uuid4().hex[:12]}"
        ports = free_ports(2 * size)
        self.members = [
            EtcdMember(
                name=f"m{i}",
                client_port=ports[2 * i],
                peer_port=ports[2 * i + 1],
                data_dir=self.base_dir / f"m{i}.etcd",
                log_path=self.base_dir / f"m{i}.log",
            )
            for i in range(size)
        ]

    # -- addresses --------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    @property
    def etcd_servers(self) -> str:
        """The ``--etcd-servers`` flag value."""
        return ",".join(self.endpoints)

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        """Starts every member and waits until the cluster is healthy."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        for m in self.members:
            if m.data_dir.exists():
                shutil.rmtree(m.data_dir)
        try:
            for i in range(self.size):
                self._spawn(i, state="new")
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stops every member (by PID) and removes the data directories."""
        for i in range(self.size):
            self.stop_member(i)
        for m in self.members:
            shutil.rmtree(m.data_dir, ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop_member(self, index: int, *, timeout: float = 10.0) -> None:
        """SIGTERM member ``index`` and wait for it (SIGKILL after ``timeout``)."""
        m = self.members[index]
        proc = m.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        m.process = None

    def kill_member(self, index: int) -> None:
        """SIGKILL member ``index`` (a crash rather than a shutdown)."""
        m = self.members[index]
        if m.process is not None and m.process.poll() is None:
            m.process.kill()
            m.process.wait(10)
        m.process = None

    def start_member(self, index: int, *, wait: bool = True) -> None:
        """Restarts a stopped member on its data directory (it rejoins the cluster)."""
        m = self.members[index]
        if m.running:
            return
        self._spawn(index, state="existing")
        if wait:
            self.wait_member_healthy(index)

    def ensure_running(self) -> None:
        """Restarts any stopped member and waits for a healthy cluster."""
        for i, m in enumerate(self.members):
            if not m.running:
                self._spawn(i, state="existing" if m.started_once else "new")
        self.wait_healthy()

    def _spawn(self, index: int, *, state: str) -> None:
        m = self.members[index]
        args = [
            ETCD_BINARY,
            "--name", m.name,
            "--data-dir", str(m.data_dir),
            "--listen-client-urls", m.client_url,
            "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url,
            "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-state", state,
            "--initial-cluster-token", self.token,
            "--heartbeat-interval", str(self.heartbeat_ms),
            "--election-timeout", str(self.election_ms),
            "--log-level", "warn",
            "--logger", "zap",
            "--log-outputs", "stderr",
            *self.extra_args,
        ]  # fmt: skip
        log = open(m.log_path, "ab")  # handed to the child, closed below
        try:
            m.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        m.started_once = True

    # -- health and status --------------------------------------------------

    def member_healthy(self, index: int, *, timeout: float = 1.0) -> bool:
        """etcd's /health: true when the member is up *and* sees a leader."""
        m = self.members[index]
        if not m.running:
            return False
        try:
            with urllib.request.urlopen(f"{m.client_url}/health", timeout=timeout) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")
        except _UNREACHABLE:
            return False

    def wait_member_healthy(self, index: int, *, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.start_timeout)
        while time.monotonic() < deadline:
            m = self.members[index]
            if m.process is not None and m.process.poll() is not None:
                code = m.process.returncode
                raise EtcdClusterError(f"etcd member {m.name} exited with {code}: {self.tail_log(index)}")
            if self.member_healthy(index):
                return
            time.sleep(0.1)
        raise EtcdClusterError(f"etcd member {self.members[index].name} not healthy: {self.tail_log(index)}")

    def wait_healthy(self, *, timeout: float | None = None) -> None:
        """Waits until every running member reports healthy."""
        for i, m in enumerate(self.members):
            if m.running:
                self.wait_member_healthy(i, timeout=timeout)

    def status(self, index: int, *, timeout: float = 2.0) -> dict[str, Any]:
        """Maintenance.Status of one member through the v3 JSON gateway."""
        m = self.members[index]
        req = urllib.request.Request(
            f"{m.client_url}/v3/maintenance/status", data=b"{}", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def leader_index(self, *, timeout: float = 10.0) -> int:
        """Index of the current leader (waits for one to be elected)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.members):
                if not m.running:
                    continue
                with contextlib.suppress(*_UNREACHABLE):
                    st = self.status(i)
                    member_id, leader = st["header"]["member_id"], st.get("leader")
                    if leader and leader == member_id:
                        return i
            if time.monotonic() > deadline:
                raise EtcdClusterError("no etcd leader")
            time.sleep(0.1)

    def tail_log(self, index: int, lines: int = 20) -> str:
        try:
            text = self.members[index].log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


if __name__ == "__main__":  # a quick manual check: python -m tests.support.etcd
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, EtcdCluster(Path(tmp)) as c:
        print("endpoints:", c.endpoints, "leader:", c.leader_index())
