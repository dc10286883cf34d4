"""Helpers shared by the end-to-end tests: the ``kubelite`` binary, a cluster handle and its nodes' names.

Every e2e module drives the cluster the way a user does, through the installed
``kubelite`` binary and ``docker``; nothing here imports the components.
"""

from __future__ import annotations

import json
import pathlib
import secrets
import subprocess
import sys
from dataclasses import dataclass

KUBELITE = str(pathlib.Path(sys.executable).parent / "kubelite")
LABEL = "io.kubelite.cluster"
DEMO = pathlib.Path(__file__).resolve().parents[2] / "examples" / "demo"

# The e2e cluster's shape, as the multi-host issue asks: 3 etcd members, 1 control plane, 3 workers.
WORKERS = 3


@dataclass(frozen=True)
class Cluster:
    name: str
    kubeconfig: str
    workers_count: int = WORKERS

    @property
    def control_plane(self) -> str:
        return f"{self.name}-control-plane"

    @property
    def workers(self) -> list[str]:
        # kind's naming: worker, worker2, worker3, ...
        return [f"{self.name}-worker{'' if i == 1 else i}" for i in range(1, self.workers_count + 1)]

    @property
    def etcd(self) -> list[str]:
        return [f"{self.name}-etcd{i}" for i in (1, 2, 3)]

    @property
    def registry(self) -> str:
        return f"{self.name}-registry"


def run(*args: str, code: int | None = 0, timeout: float = 120, input: str | None = None,
        ) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, input=input)
    if code is not None:
        assert r.returncode == code, f"{' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    return r


def kl(*args: str, code: int | None = 0, timeout: float = 600, input: str | None = None,
       ) -> subprocess.CompletedProcess[str]:
    return run(KUBELITE, *args, code=code, timeout=timeout, input=input)


def k(cluster: Cluster, *args: str, code: int | None = 0, timeout: float = 120, input: str | None = None,
      ) -> subprocess.CompletedProcess[str]:
    """``kubelite --kubeconfig <the cluster's> ARGS``."""
    return kl("--kubeconfig", cluster.kubeconfig, *args, code=code, timeout=timeout, input=input)


def labelled(name: str) -> dict[str, list[str]]:
    flt = f"label={LABEL}={name}"
    return {
        "containers": run("docker", "ps", "-a", "-q", "--filter", flt).stdout.split(),
        "volumes": run("docker", "volume", "ls", "-q", "--filter", flt).stdout.split(),
        "networks": run("docker", "network", "ls", "-q", "--filter", flt).stdout.split(),
    }


def unique_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def pods(cluster: Cluster, selector: str, namespace: str = "default") -> list[dict[str, object]]:
    doc = json.loads(k(cluster, "get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout)
    return list(doc["items"])


def web_pods(cluster: Cluster) -> list[dict[str, object]]:
    return pods(cluster, "app=web")
