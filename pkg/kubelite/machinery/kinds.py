"""Every built-in kind, registered once in ``SCHEME``.

The apiserver, the client, the CLI and the controllers all need the same facts
about a kind: its group and plural, whether it is namespaced, which message
holds it, whether status is written through its own call. Keeping them in one
table means a kind is added in one place, and the short names and categories
users type (``po``, ``svc``, ``kubelite get all``) stay those of Kubernetes.

Kinds without a status (ConfigMap, Secret, Endpoints, ...) are written whole
by a plain update, as in Kubernetes. ``Binding``, ``Eviction`` and ``Scale`` are messages only: they are
bodies of subresources (pods/binding, pods/eviction, deployments/scale), never
stored or listed, so they are not registered here.
"""

from __future__ import annotations

from kubelite.api.apps.v1 import generated_pb2 as apps_v1
from kubelite.api.coordination.v1 import generated_pb2 as coordination_v1
from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.api.policy.v1 import generated_pb2 as policy_v1
from kubelite.api.scheduling.v1 import generated_pb2 as scheduling_v1
from kubelite.machinery.scheme import ResourceType, Scheme

SCHEME = Scheme()

# `kubelite get all` lists the kinds in this category, as kubectl does.
_ALL = ("all",)

# core/v1 (group "")
NAMESPACES = SCHEME.register(
    ResourceType("", "v1", "Namespace", "namespaces", "namespace", False, core_v1.Namespace, ("ns",))
)
NODES = SCHEME.register(ResourceType("", "v1", "Node", "nodes", "node", False, core_v1.Node, ("no",)))
PODS = SCHEME.register(
    ResourceType("", "v1", "Pod", "pods", "pod", True, core_v1.Pod, ("po",), categories=_ALL)
)
SERVICES = SCHEME.register(
    ResourceType("", "v1", "Service", "services", "service", True, core_v1.Service, ("svc",), categories=_ALL)
)
ENDPOINTS = SCHEME.register(
    ResourceType(
        "", "v1", "Endpoints", "endpoints", "endpoints", True, core_v1.Endpoints, ("ep",), has_status=False
    )
)
CONFIGMAPS = SCHEME.register(
    ResourceType(
        "", "v1", "ConfigMap", "configmaps", "configmap", True, core_v1.ConfigMap, ("cm",), has_status=False
    )
)
SECRETS = SCHEME.register(
    ResourceType("", "v1", "Secret", "secrets", "secret", True, core_v1.Secret, has_status=False)
)
SERVICEACCOUNTS = SCHEME.register(
    ResourceType(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        True,
        core_v1.ServiceAccount,
        ("sa",),
        has_status=False,
    )
)
EVENTS = SCHEME.register(
    ResourceType("", "v1", "Event", "events", "event", True, core_v1.Event, ("ev",), has_status=False)
)

# coordination.k8s.io/v1
LEASES = SCHEME.register(
    ResourceType(
        "coordination.k8s.io", "v1", "Lease", "leases", "lease", True, coordination_v1.Lease, has_status=False
    )
)

# scheduling.k8s.io/v1
PRIORITYCLASSES = SCHEME.register(
    ResourceType(
        "scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", False,
        scheduling_v1.PriorityClass, ("pc",), has_status=False,
    )
)

# apps/v1
DEPLOYMENTS = SCHEME.register(
    ResourceType(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        True,
        apps_v1.Deployment,
        ("deploy",),
        categories=_ALL,
    )
)
REPLICASETS = SCHEME.register(
    ResourceType(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        True,
        apps_v1.ReplicaSet,
        ("rs",),
        categories=_ALL,
    )
)

# policy/v1
PODDISRUPTIONBUDGETS = SCHEME.register(
    ResourceType(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        True,
        policy_v1.PodDisruptionBudget,
        ("pdb",),
    )
)
