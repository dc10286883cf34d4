"""Fixtures for integration tests: one real 3-member etcd cluster per session.

Data directories go to /dev/shm when it exists: fsync on tmpfs is free, which
keeps the suite fast on a 2-core machine without changing Raft's behaviour.
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import Client
from kubelite.storage.etcd import EtcdStorage
from tests.support.apiserver import APIServerProcess
from tests.support.etcd import EtcdCluster


@pytest.fixture(scope="session")
def etcd_cluster() -> Iterator[EtcdCluster]:
    if shutil.which("etcd") is None:
        # Not a skip: `make test` installs etcd, so its absence is a broken set-up.
        pytest.fail("etcd is not installed (make deps installs etcd-server)")
    root = "/dev/shm" if Path("/dev/shm").is_dir() else None
    base = Path(tempfile.mkdtemp(prefix="kubelite-etcd-", dir=root))
    try:
        with EtcdCluster(base, size=3) as cluster:
            yield cluster
    finally:
        shutil.rmtree(base, ignore_errors=True)


# Keys of API objects. The storage tests never write here, and their fixture never
# deletes here, so an API server sharing the session's cluster keeps its state.
API_PREFIX = "/registry/"


@pytest.fixture
async def storage(etcd_cluster: EtcdCluster) -> AsyncIterator[EtcdStorage]:
    """An EtcdStorage on a cluster with every member running and a keyspace that
    is empty outside ``/registry/``."""
    etcd_cluster.ensure_running()
    store = await EtcdStorage.open(etcd_cluster.endpoints, request_timeout=5.0)
    await store.delete_range("", API_PREFIX)
    await store.delete_range(API_PREFIX[:-1] + chr(ord(API_PREFIX[-1]) + 1))
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(scope="session")
def apiserver(etcd_cluster: EtcdCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[APIServerProcess]:
    """A real kubelite-apiserver process on the session's etcd cluster."""
    log = tmp_path_factory.mktemp("apiserver") / "apiserver.log"
    # Short bookmark interval so that tests see bookmarks within a second.
    # The advertised address is only published in the kubernetes Endpoints (no traffic goes there).
    with APIServerProcess(etcd_cluster.endpoints, log, extra_args=["--watch-bookmark-interval=0.5",
                                                                   "--advertise-address=192.0.2.10"]) as api:
        yield api


@pytest.fixture
async def client(apiserver: APIServerProcess, etcd_cluster: EtcdCluster) -> AsyncIterator[Client]:
    etcd_cluster.ensure_running()
    if apiserver.proc is None:
        apiserver.start()
    c = Client(apiserver.address)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def ns(client: Client, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A namespace of the test's own, so tests never see each other's objects."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{base}-{secrets.token_hex(3)}"
    namespace = core.Namespace(api_version="v1", kind="Namespace")
    namespace.metadata.name = name
    await client.create(namespace)
    yield name
