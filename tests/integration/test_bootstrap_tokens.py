"""Bootstrap tokens end to end on a real API server (the session's etcd cluster and kubelite-apiserver):
`kubelite token create|list|delete`, the authenticator's answers (200, 401) over gRPC and through the
CLI, and `kubelite join` refusing a bad token before it writes anything."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.client.client import Client
from kubelite.client.kubeconfig import kubeconfig_document
from kubelite.machinery import bootstraptoken as bt
from kubelite.machinery.errors import StatusError
from tests.support.controller_manager import ControllerManagerProcess

pytestmark = pytest.mark.integration

KUBELITE = str(Path(sys.executable).parent / "kubelite")
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def kl(apiserver: Any, tmp_path: Path) -> Iterator[Run]:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(tmp_path)
    created: list[str] = []

    def run(*args: str, token: str = "") -> subprocess.CompletedProcess[str]:
        cmd = [KUBELITE, "--server", apiserver.address, "--request-timeout", "20s"]
        if token:
            cmd += ["--token", token]
        r = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60, env=env)
        assert "Traceback" not in r.stderr, r.stderr
        created.extend(re.findall(r"\b([a-z0-9]{6})\.[a-z0-9]{16}\b", r.stdout))
        return r

    yield run
    for token_id in created:
        run("token", "delete", token_id)


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def _unauthorized(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode == 1, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert r.stderr.strip() == "error: You must be logged in to the server (Unauthorized)", r.stderr


def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


async def test_create_stores_the_secret_and_the_token_authenticates(kl: Run, client: Client, apiserver: Any) -> None:
    token = _ok(kl("token", "create", "--description", "for the worker", "--ttl", "2h")).strip()
    parsed = bt.parse(token)
    secret = await client.get(core_v1.Secret, f"bootstrap-token-{parsed.id}", "kube-system")
    assert secret.type == "bootstrap.kubernetes.io/token"
    assert secret.data["token-secret"] == parsed.secret.encode()
    assert secret.data["usage-bootstrap-authentication"] == b"true"
    assert secret.data["description"] == b"for the worker"
    expires = bt.parse_time(secret.data["expiration"].decode())
    assert timedelta(hours=1, minutes=50) < expires - datetime.now(UTC) <= timedelta(hours=2)

    # Right away (the Secret may not be in the watch cache yet): gRPC and the CLI both authenticate.
    async with Client(apiserver.address, token=token) as as_node:
        ns = await as_node.get(core_v1.Namespace, "kube-system")
        assert ns.metadata.name == "kube-system"
    assert "kube-system" in _ok(kl("get", "ns", token=token))

    listed = _ok(kl("token", "list")).splitlines()
    assert listed[0].split() == ["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA", "GROUPS"]
    row = next(line for line in listed if line.startswith(token))
    assert re.search(rf"^{token}\s+1h\s+\S+Z\s+authentication,signing\s+for the worker\s+<none>$", row), row


async def test_wrong_expired_and_deleted_tokens_are_401_and_no_token_stays_allowed(
        kl: Run, client: Client, apiserver: Any) -> None:
    token = bt.parse(_ok(kl("token", "create")).strip())
    wrong = f"{token.id}.{'0' * 16}"
    _unauthorized(kl("get", "ns", token=wrong))
    _unauthorized(kl("get", "ns", token="zzzzzz.0123456789abcdef"))  # no such Secret
    _unauthorized(kl("get", "ns", token="not-even-a-bootstrap-token"))
    _unauthorized(kl("api-resources", token=wrong))  # discovery too, as in Kubernetes
    async with Client(apiserver.address, token=wrong) as bad:
        with pytest.raises(StatusError) as exc:
            await bad.get(core_v1.Namespace, "default")
        assert exc.value.reason == "Unauthorized" and exc.value.code == 401
        with pytest.raises(StatusError) as exc:
            async for _ in bad.watch(core_v1.Namespace):
                break
        assert exc.value.reason == "Unauthorized"
    # Anonymous (no credential at all) is still allowed, as before authentication existed.
    assert "default" in _ok(kl("get", "ns"))

    # Expired: a Secret whose expiration has passed vouches for nothing.
    old = bt.Token("expird", "0123456789abcdef")
    await client.create(bt.build_secret(old, ttl=timedelta(minutes=1), now=datetime.now(UTC) - timedelta(hours=1)))
    try:
        _unauthorized(kl("get", "ns", token=str(old)))
        assert "<invalid>" in next(line for line in _ok(kl("token", "list")).splitlines() if line.startswith("expird"))
    finally:
        await client.delete(core_v1.Secret, old.secret_name, "kube-system")

    # Deleted (by the whole token, as kubeadm accepts): refused once the server has seen the delete.
    assert _ok(kl("get", "ns", token=str(token)))
    assert _ok(kl("token", "delete", str(token))).strip() == f'bootstrap token "{token.id}" deleted'
    _until(lambda: kl("get", "ns", token=str(token)).returncode == 1)
    _unauthorized(kl("get", "ns", token=str(token)))
    r = kl("token", "delete", token.id)
    assert r.returncode == 1 and f'bootstrap token "{token.id}" not found' in r.stderr


def test_print_join_command_names_the_advertised_api_server(kl: Run, apiserver: Any) -> None:
    out = _ok(kl("token", "create", "--print-join-command", "--ttl", "0")).strip()
    # The fixture's server advertises 192.0.2.10 in the `kubernetes` Endpoints (its loopback is not published).
    m = re.fullmatch(rf"bash install\.sh join 192\.0\.2\.10:{apiserver.port} --token ([a-z0-9]{{6}}\.[a-z0-9]{{16}})",
                     out)
    assert m, out
    row = next(line for line in _ok(kl("token", "list")).splitlines() if line.startswith(m.group(1)))
    assert "<forever>" in row and "<never>" in row


async def test_print_join_command_prefers_the_cluster_info_endpoint(kl: Run, apiserver: Any, client: Client) -> None:
    # kubeadm's kube-public/cluster-info: `kubelite cluster up` names the load balancer there.
    info = core_v1.ConfigMap(api_version="v1", kind="ConfigMap")
    info.metadata.name, info.metadata.namespace = "cluster-info", "kube-public"
    info.data["kubeconfig"] = yaml.safe_dump(kubeconfig_document("http://198.51.100.7:6443", "lb",
                                                                 rest_server="http://198.51.100.7:8080"))
    await client.create(info)
    try:
        out = _ok(await asyncio.to_thread(kl, "token", "create", "--print-join-command")).strip()
        assert out.startswith("bash install.sh join 198.51.100.7:6443 --token "), out
        # Something that is not a kubeconfig there: the advertised API server, as without it.
        info = await client.get(core_v1.ConfigMap, "cluster-info", "kube-public")
        info.data["kubeconfig"] = "clusters: nonsense"
        await client.update(info)
        out = _ok(await asyncio.to_thread(kl, "token", "create", "--print-join-command")).strip()
        assert out.startswith(f"bash install.sh join 192.0.2.10:{apiserver.port} --token "), out
    finally:
        await client.delete(core_v1.ConfigMap, "cluster-info", "kube-public")


def test_a_duplicate_token_is_refused(kl: Run) -> None:
    token = _ok(kl("token", "create")).strip()
    r = kl("token", "create", token)
    assert r.returncode == 1 and f'a token with id "{token.split(".")[0]}" already exists' in r.stderr


def test_join_with_a_bad_token_fails_fast_and_writes_nothing(kl: Run, apiserver: Any, tmp_path: Path) -> None:
    # The real verb on this machine: were the token accepted, it would configure /etc/kubelite here, so
    # only refusals are run, and the test checks that they happen before anything is written.
    before = os.path.exists("/etc/kubelite")
    r = kl("join", apiserver.address, "--token", "zzzzzz.0123456789abcdef", "--node-ip", "127.0.0.1")
    assert r.returncode == 1
    assert f"the API server at http://{apiserver.address} refused the bootstrap token \"zzzzzz.<redacted>\"" in r.stderr
    assert "0123456789abcdef" not in r.stderr and "kubelite token create --print-join-command" in r.stderr
    assert os.path.exists("/etc/kubelite") == before
    # Nobody listening: a clear sentence naming the address, not a hang.
    r = kl("join", "127.0.0.1:1", "--token", "zzzzzz.0123456789abcdef", "--node-ip", "127.0.0.1")
    assert r.returncode == 1 and "127.0.0.1:1" in r.stderr, r.stderr


async def test_the_token_cleaner_deletes_expired_tokens(apiserver: Any, client: Client, tmp_path: Path) -> None:
    # A token that expires in 2 s (a real wait for the controller's timer), one that has expired, one that lives.
    soon, gone, live = (bt.Token(i, "0123456789abcdef") for i in ("soonxx", "gonexx", "livexx"))
    now = datetime.now(UTC)
    await client.create(bt.build_secret(soon, ttl=timedelta(seconds=2), now=now))
    await client.create(bt.build_secret(gone, ttl=timedelta(seconds=1), now=now - timedelta(hours=1)))
    await client.create(bt.build_secret(live, ttl=timedelta(hours=1), now=now))
    names = {t.secret_name for t in (soon, gone, live)}

    async def tokens() -> set[str]:
        return {s.metadata.name for s in (await client.list(core_v1.Secret, "kube-system")).items} & names

    try:
        with ControllerManagerProcess(apiserver.server, tmp_path / "cm.log", extra_args=["--controllers=tokencleaner",
                                                                                      "--no-leader-elect"]):
            deadline = time.monotonic() + 30
            while await tokens() != {live.secret_name}:
                assert time.monotonic() < deadline, f"left: {await tokens()}\n{(tmp_path / 'cm.log').read_text()}"
                await asyncio.sleep(0.2)
        assert "deleted expired bootstrap token kube-system/bootstrap-token-gonexx" in (tmp_path / "cm.log").read_text()
    finally:
        for name in await tokens():
            await client.delete(core_v1.Secret, name, "kube-system")
