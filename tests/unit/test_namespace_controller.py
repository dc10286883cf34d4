"""Namespace controller: delete the content, report what is left, finalize when empty."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.client import ObjectList
from kubelite.client.controller import InstrumentedQueue
from kubelite.client.workqueue import ItemExponentialFailureRateLimiter, process_next_item
from kubelite.controllers.namespace import ClientNamespaceFinalizer, NamespaceController
from kubelite.machinery import errors
from kubelite.machinery.kinds import SCHEME
from tests.unit.fakes_controllers import FakeLister, pod


class Content:
    """Objects by kind in one namespace; pods with a node only get marked (graceful deletion)."""

    def __init__(self, *objs: Any) -> None:
        self.objs: dict[tuple[type[Any], str], Any] = {(type(o), o.metadata.name): o for o in objs}
        self.status_writes: list[core.Namespace] = []
        self.fail_delete: set[str] = set()

    async def list(self, kind: type[Any], namespace: str = "") -> ObjectList[Any]:
        return ObjectList([o for (k, _), o in sorted(self.objs.items(), key=lambda kv: kv[0][1]) if k is kind], "1")

    async def delete(self, kind: type[Any], name: str, namespace: str = "") -> None:
        if name in self.fail_delete:
            raise errors.forbidden(f"cannot delete {name}")
        obj = self.objs.get((kind, name))
        if obj is None:
            raise errors.not_found("", "things", name)
        if kind is core.Pod and obj.spec.node_name:
            obj.metadata.deletion_timestamp.seconds = 10
        else:
            del self.objs[(kind, name)]

    async def update_status(self, obj: Any) -> Any:
        self.status_writes.append(obj)
        return obj


class Finalizer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    async def finalize(self, namespace: core.Namespace, finalizers: list[str]) -> None:
        self.calls.append((namespace.metadata.name, finalizers))


def terminating(name: str = "ns") -> core.Namespace:
    ns = core.Namespace(api_version="v1", kind="Namespace")
    ns.metadata.name = name
    ns.metadata.deletion_timestamp.seconds = 5
    ns.spec.finalizers.append("kubernetes")
    ns.status.phase = "Terminating"
    return ns


def controller(ns: core.Namespace, content: Content, finalizer: Finalizer) -> NamespaceController:
    queue: InstrumentedQueue[str] = InstrumentedQueue("namespace", ItemExponentialFailureRateLimiter(0.001, 0.01),
                                                      registry=CollectorRegistry())
    return NamespaceController(FakeLister(ns), content, finalizer, SCHEME, queue=queue)


def conditions(ns: core.Namespace) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.message) for c in ns.status.conditions}


async def test_empties_waits_for_terminating_pods_then_finalizes() -> None:
    cm = core.ConfigMap(api_version="v1", kind="ConfigMap")
    cm.metadata.name = "cfg"
    bound = pod("web", {}, node="n1")
    content = Content(cm, bound, pod("pending", {}))
    finalizer = Finalizer()
    ctl = controller(terminating(), content, finalizer)
    ctl.queue.add("ns")
    assert await process_next_item(ctl.queue, ctl.sync)
    assert list(content.objs) == [(core.Pod, "web")]  # terminating, not gone
    assert finalizer.calls == []
    conds = conditions(content.status_writes[-1])
    assert conds["NamespaceContentRemaining"] == ("True", "Some resources are remaining: pods has 1 resource instances")
    assert conds["NamespaceDeletionContentFailure"][0] == "False"
    assert ctl.queue.waiting() == 1  # looks again later
    del content.objs[(core.Pod, "web")]  # the kubelet confirmed
    ctl.queue.add("ns")
    assert await process_next_item(ctl.queue, ctl.sync)
    assert finalizer.calls == [("ns", [])]
    assert conditions(content.status_writes[-1])["NamespaceContentRemaining"][0] == "False"


async def test_failed_deletion_is_a_condition_and_a_retry() -> None:
    cm = core.ConfigMap(api_version="v1", kind="ConfigMap")
    cm.metadata.name = "locked"
    content = Content(cm)
    content.fail_delete.add("locked")
    finalizer = Finalizer()
    ctl = controller(terminating(), content, finalizer)
    ctl.queue.add("ns")
    assert await process_next_item(ctl.queue, ctl.sync)
    assert ctl.queue.num_requeues("ns") == 1
    status, message = conditions(content.status_writes[-1])["NamespaceDeletionContentFailure"]
    assert status == "True" and "cannot delete locked" in message
    assert finalizer.calls == []


async def test_finalizers_on_content_are_reported() -> None:
    cm = core.ConfigMap(api_version="v1", kind="ConfigMap")
    cm.metadata.name = "held"
    cm.metadata.finalizers.append("example.com/hold")
    cm.metadata.deletion_timestamp.seconds = 3
    content = Content(cm)
    ctl = controller(terminating(), content, Finalizer())
    ctl.queue.add("ns")
    assert await process_next_item(ctl.queue, ctl.sync)
    status, message = conditions(content.status_writes[-1])["NamespaceFinalizersRemaining"]
    assert status == "True" and "example.com/hold in 1 resource instances" in message


async def test_active_namespace_is_left_alone() -> None:
    ns = terminating()
    ns.metadata.ClearField("deletion_timestamp")
    content = Content(core.ConfigMap(metadata={"name": "x"}))
    ctl = controller(ns, content, Finalizer())
    ctl.queue.add("ns")
    assert await process_next_item(ctl.queue, ctl.sync)
    assert len(content.objs) == 1 and content.status_writes == []


async def test_client_finalizer_uses_the_finalize_subresource() -> None:
    calls: list[tuple[Any, ...]] = []

    class WithSubresources:
        async def update_subresource(self, kind: Any, name: str, namespace: str, sub: str, body: Any) -> Any:
            calls.append((kind, name, sub, list(body.spec.finalizers)))
            return body

    await ClientNamespaceFinalizer(WithSubresources()).finalize(terminating(), [])
    assert calls == [(core.Namespace, "ns", "finalize", [])]
    with pytest.raises(errors.StatusError, match="no namespaces/finalize call"):
        await ClientNamespaceFinalizer(object()).finalize(terminating(), [])
