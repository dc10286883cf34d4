"""Throwaway network namespaces for proxy tests and benchmarks: a "node" with "pods" and a "client".

::

    root ns  --veth 10.250.255.1/30 ------ 10.250.255.2  node netns  (the API server listens on .1)
                                            br0 10.250.1.1/24 ---- pod<i> netns 10.250.1.(10+i)/24
                                            vc0 10.250.2.1/24 ---- client netns 10.250.2.2/24
                                            sk0 10.250.3.1/30 ---- sink netns 10.250.3.2 (10.251.0.0/16 routes here)

Every subnet is chosen here (none is Docker's, none leaves the machine).
Pods and the client route everything via the node, so traffic to a Service
IP (10.251.0.0/16 in these tests) crosses the node's netfilter as it would
on a real node. Everything is created under a random prefix and removed by
name in ``destroy()``, which fixtures call whatever happened.

Plain synchronous Python (no pytest) so the benchmark uses it too.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOOLS = ("ip", "iptables-save", "iptables-restore", "nft", "conntrack")

NODE_UPLINK = ("10.250.255.1", "10.250.255.2")  # root side, node side (/30)
POD_GATEWAY = "10.250.1.1"
POD_SUBNET = "10.250.1.0/24"
CLIENT_GATEWAY = "10.250.2.1"
CLIENT_IP = "10.250.2.2"
SERVICE_RANGE = "10.251.0.0/16"
SINK_GATEWAY = "10.250.3.1"
SINK_IP = "10.250.3.2"


def ensure_tools() -> None:
    """Installs iproute2, iptables, nftables and conntrack when any is missing (hack/netdeps.sh)."""
    if all(shutil.which(t) for t in TOOLS):
        return
    subprocess.run(["bash", str(REPO / "hack" / "netdeps.sh")], check=True)


def sh(*argv: str, input: str | None = None, check: bool = True) -> str:
    res = subprocess.run(list(argv), input=input, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


@dataclass
class Topology:
    pods: int = 3
    prefix: str = field(default_factory=lambda: "klpx-" + secrets.token_hex(3))
    with_client: bool = True
    with_uplink: bool = True
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def node(self) -> str:
        return f"{self.prefix}-node"

    @property
    def sink(self) -> str:
        return f"{self.prefix}-sink"

    @property
    def client(self) -> str:
        return f"{self.prefix}-client"

    def pod(self, i: int) -> str:
        return f"{self.prefix}-pod{i}"

    @staticmethod
    def pod_ip(i: int) -> str:
        return f"10.250.1.{10 + i}"

    @property
    def uplink(self) -> str:
        return "kl" + self.prefix.removeprefix("klpx-") + "u"  # the root-side veth: <= 15 characters

    @property
    def namespaces(self) -> list[str]:
        return [self.node, self.sink, *(self.pod(i) for i in range(self.pods)),
                *([self.client] if self.with_client else [])]

    def exec_prefix(self, netns: str) -> tuple[str, ...]:
        return ("ip", "netns", "exec", netns)

    def run(self, netns: str, *argv: str, input: str | None = None, check: bool = True) -> str:
        return sh(*self.exec_prefix(netns), *argv, input=input, check=check)

    def create(self) -> Topology:
        ensure_tools()
        try:
            for ns in self.namespaces:
                sh("ip", "netns", "add", ns)
                self.run(ns, "ip", "link", "set", "lo", "up")
            node = self.node
            self.run(node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            self.run(node, "ip", "link", "add", "br0", "type", "bridge")
            self.run(node, "ip", "addr", "add", f"{POD_GATEWAY}/24", "dev", "br0")
            self.run(node, "ip", "link", "set", "br0", "up")
            for i in range(self.pods):
                self._veth(node, f"vp{i}", self.pod(i), f"{self.pod_ip(i)}/24", POD_GATEWAY, bridge="br0")
            # Service IPs route somewhere, as they would via a node's default route: to a "sink"
            # namespace that silently drops them (it does not forward). So a packet no rule
            # rewrote times out, and only the proxy's filter REJECT makes it "refused" at once.
            self._veth(node, "sk0", self.sink, f"{SINK_IP}/30", SINK_GATEWAY)
            self.run(node, "ip", "addr", "add", f"{SINK_GATEWAY}/30", "dev", "sk0")
            self.run(node, "ip", "route", "add", SERVICE_RANGE, "via", SINK_IP)
            if self.with_client:
                self._veth(node, "vc0", self.client, f"{CLIENT_IP}/24", CLIENT_GATEWAY)
                self.run(node, "ip", "addr", "add", f"{CLIENT_GATEWAY}/24", "dev", "vc0")
            if self.with_uplink:
                sh("ip", "link", "add", self.uplink, "type", "veth", "peer", "name", "up0", "netns", node)
                sh("ip", "addr", "add", f"{NODE_UPLINK[0]}/30", "dev", self.uplink)
                sh("ip", "link", "set", self.uplink, "up")
                self.run(node, "ip", "addr", "add", f"{NODE_UPLINK[1]}/30", "dev", "up0")
                self.run(node, "ip", "link", "set", "up0", "up")
        except BaseException:
            self.destroy()
            raise
        return self

    def _veth(self, host_ns: str, host_if: str, peer_ns: str, addr: str, gateway: str, bridge: str = "") -> None:
        self.run(host_ns, "ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", peer_ns)
        if bridge:
            self.run(host_ns, "ip", "link", "set", host_if, "master", bridge)
        self.run(host_ns, "ip", "link", "set", host_if, "up")
        self.run(peer_ns, "ip", "addr", "add", addr, "dev", "eth0")
        self.run(peer_ns, "ip", "link", "set", "eth0", "up")
        self.run(peer_ns, "ip", "route", "add", "default", "via", gateway)

    def spawn(self, netns: str, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        """Starts a process inside netns (ip netns exec execs it: the PID is the process's own)."""
        with open(log, "ab") as out:
            proc = subprocess.Popen([*self.exec_prefix(netns), *argv], stdout=out, stderr=subprocess.STDOUT,
                                    cwd=REPO, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start_backends(self, log_dir: Path, port: int = 8080) -> None:
        """An HTTP server in every pod answering "<pod name> <client address>"."""
        for i in range(self.pods):
            self.spawn(self.pod(i), [sys.executable, "-m", "tests.support.echo", f"pod{i}", str(port)],
                       log_dir / f"pod{i}.log")
        for i in range(self.pods):
            self.run(self.node, sys.executable, "-m", "tests.support.echo", "--wait", f"{self.pod_ip(i)}:{port}")

    def destroy(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()
        existing = set(sh("ip", "netns", "list", check=False).split())
        for ns in self.namespaces:
            if ns in existing:
                sh("ip", "netns", "del", ns, check=False)
        if self.with_uplink:
            sh("ip", "link", "del", self.uplink, check=False)  # usually gone with the node netns


def strip_counters(save: str) -> str:
    """iptables-save text without comments and packet counters: what two states are compared by."""
    lines = []
    for line in save.splitlines():
        if line.startswith("#"):
            continue
        if line.startswith(":"):
            line = line.split(" [", 1)[0]
        lines.append(line)
    return "\n".join(lines)
