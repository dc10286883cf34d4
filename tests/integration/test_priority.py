"""PriorityClass and the Priority admission plugin, through a real API server."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.scheduling.v1 import generated_pb2 as scheduling
from kubelite.client.client import Client
from kubelite.machinery.errors import StatusError
from tests.support.objects import make_pod

pytestmark = pytest.mark.integration


def _class(name: str, value: int, *, default: bool = False, policy: str = "") -> scheduling.PriorityClass:
    pc = scheduling.PriorityClass(api_version="scheduling.k8s.io/v1", kind="PriorityClass", value=value,
                                  global_default=default)
    pc.metadata.name = name
    if policy:
        pc.preemption_policy = policy
    return pc


def _pod(name: str, ns: str, class_name: str = "") -> core.Pod:
    pod = make_pod(name, namespace=ns)
    pod.metadata.uid = ""
    pod.api_version, pod.kind = "v1", "Pod"
    pod.spec.scheduler_name = "nobody"  # no scheduler takes these
    pod.spec.priority_class_name = class_name
    return pod


@pytest.fixture
async def classes(client: Client) -> AsyncIterator[list[str]]:
    """Names of classes this test creates; deleted afterwards (they are cluster-scoped)."""
    made: list[str] = []
    yield made
    for name in made:
        try:
            await client.delete(scheduling.PriorityClass, name)
        except StatusError:
            pass


async def test_system_classes_exist(client: Client) -> None:
    got = {pc.metadata.name: pc.value for pc in (await client.list(scheduling.PriorityClass)).items}
    assert got["system-cluster-critical"] == 2_000_000_000
    assert got["system-node-critical"] == 2_000_001_000


async def test_a_pod_gets_its_class_value_and_policy(client: Client, ns: str, classes: list[str]) -> None:
    name = f"high-{secrets.token_hex(3)}"
    await client.create(_class(name, 1000, policy="Never"))
    classes.append(name)
    pod = await client.create(_pod("p", ns, name))
    assert (pod.spec.priority, pod.spec.preemption_policy) == (1000, "Never")
    plain = await client.create(_pod("q", ns))
    assert (plain.spec.priority, plain.spec.preemption_policy) == (0, "PreemptLowerPriority")


async def test_a_pod_naming_a_missing_class_is_refused_with_the_name(client: Client, ns: str) -> None:
    with pytest.raises(StatusError) as err:
        await client.create(_pod("p", ns, "no-such-class"))
    assert err.value.reason == "Forbidden"
    assert err.value.message == 'pods "p" is forbidden: no PriorityClass with name no-such-class was found'


async def test_one_global_default_applies_to_pods_without_a_class(client: Client, ns: str,
                                                                 classes: list[str]) -> None:
    first, second = f"default-{secrets.token_hex(3)}", f"other-{secrets.token_hex(3)}"
    await client.create(_class(first, 7, default=True))
    classes.append(first)
    with pytest.raises(StatusError) as err:
        await client.create(_class(second, 8, default=True))
    assert err.value.reason == "Invalid"
    assert "globalDefault" in err.value.message and "Only one default can exist" in err.value.message
    pod = await client.create(_pod("p", ns))
    assert (pod.spec.priority_class_name, pod.spec.priority) == (first, 7)


@pytest.mark.parametrize(("name", "value", "field"), [
    ("too-high", 1_000_000_001, "value"),
    ("system-mine", 5, "metadata.name"),
])
async def test_invalid_classes_name_the_field(client: Client, name: str, value: int, field: str) -> None:
    with pytest.raises(StatusError) as err:
        await client.create(_class(name, value))
    assert err.value.reason == "Invalid"
    assert f"{field}: Invalid value" in err.value.message
