"""Builders for Node and Pod objects in tests and benchmarks (scheduler-shaped, terse)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import json_format

from kubelite.api.core.v1 import generated_pb2 as core


def make_node(name: str, *, cpu: str = "4", memory: str = "32Gi", pods: str = "110",
              labels: Mapping[str, str] | None = None, taints: Iterable[Mapping[str, str]] = (),
              unschedulable: bool = False, extra: Mapping[str, str] | None = None,
              images: Iterable[tuple[str, int]] = ()) -> core.Node:
    node = core.Node()
    node.metadata.name = name
    node.metadata.labels.update({"kubernetes.io/hostname": name, **(labels or {})})
    resources = {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "100Gi", **(extra or {})}
    node.status.capacity.update(resources)
    node.status.allocatable.update(resources)
    for t in taints:
        node.spec.taints.add(**t)
    node.spec.unschedulable = unschedulable
    for image, size in images:
        node.status.images.add(names=[image], size_bytes=size)
    return node


def make_pod(name: str, *, namespace: str = "default", cpu: str = "", memory: str = "",
             labels: Mapping[str, str] | None = None, node_name: str = "", spec: Mapping[str, Any] | None = None,
             uid: str = "", image: str = "busybox") -> core.Pod:
    """A one-container pod; ``spec`` is merged in Kubernetes JSON form (camelCase)."""
    pod = core.Pod()
    pod.metadata.name = name
    pod.metadata.namespace = namespace
    pod.metadata.uid = uid or f"uid-{namespace}-{name}"
    pod.metadata.labels.update(labels or {})
    if spec:
        json_format.ParseDict({"spec": spec}, pod)
    if not pod.spec.containers:
        c = pod.spec.containers.add(name="c", image=image)
        if cpu:
            c.resources.requests["cpu"] = cpu
        if memory:
            c.resources.requests["memory"] = memory
    pod.spec.node_name = node_name
    pod.spec.scheduler_name = pod.spec.scheduler_name or "default-scheduler"
    return pod
