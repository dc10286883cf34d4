"""Discovery documents: what kubectl and client libraries read before any request.

Two forms, both built from the same registry the gRPC DiscoveryService reads:
the legacy per-path documents (``/api`` APIVersions, ``/apis`` APIGroupList,
``/api/v1`` and ``/apis/<g>/<v>`` APIResourceList) and the aggregated form
(apidiscovery.k8s.io/v2 APIGroupDiscoveryList), which kubectl asks for first
and which saves it one request per group-version.
"""

from __future__ import annotations

import platform
import sys
from collections import defaultdict
from typing import Any

from kubelite.apiserver.service import Registry
from kubelite.apiserver.store import ResourceStore

# The Kubernetes release whose API this server follows; kubectl warns when its own minor is more than one away.
KUBERNETES_MAJOR, KUBERNETES_MINOR = "1", "37"
AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_CONTENT_TYPE_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"


def version(kubelite_version: str) -> dict[str, Any]:
    plat = f"{sys.platform}/{'amd64' if platform.machine() == 'x86_64' else platform.machine()}"
    return {
        "major": KUBERNETES_MAJOR, "minor": KUBERNETES_MINOR,
        "gitVersion": f"v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}.0-kubelite.{kubelite_version.lstrip('v')}",
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "",
        "goVersion": f"python{platform.python_version()}", "compiler": platform.python_implementation().lower(),
        "platform": plat,
    }


def _by_group_version(registry: Registry) -> dict[tuple[str, str], list[ResourceStore]]:
    out: dict[tuple[str, str], list[ResourceStore]] = defaultdict(list)
    for store in registry.stores.values():
        out[(store.rt.group, store.rt.version)].append(store)
    for stores in out.values():
        stores.sort(key=lambda s: s.rt.resource)
    return dict(sorted(out.items()))


def api_versions() -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}


def _group_entry(group: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list(registry: Registry) -> dict[str, Any]:
    groups: dict[str, list[str]] = defaultdict(list)
    for group, ver in _by_group_version(registry):
        if group:
            groups[group].append(ver)
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group_entry(g, vs) for g, vs in sorted(groups.items())]}


def api_group(registry: Registry, group: str) -> dict[str, Any] | None:
    versions = [v for g, v in _by_group_version(registry) if g == group]
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group, versions)}


def api_resource_list(registry: Registry, group: str, ver: str) -> dict[str, Any] | None:
    stores = _by_group_version(registry).get((group, ver))
    if stores is None:
        return None
    resources: list[dict[str, Any]] = []
    for store in stores:
        rt = store.rt
        entry: dict[str, Any] = {"name": rt.resource, "singularName": rt.singular, "namespaced": rt.namespaced,
                                 "kind": rt.kind, "verbs": sorted({*rt.verbs, "deletecollection"}
                                                                  if "delete" in rt.verbs else rt.verbs)}
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        for name, sub in sorted(store.subresources.items()):
            body = sub.body_type(store)
            resources.append({"name": f"{rt.resource}/{name}", "singularName": "", "namespaced": rt.namespaced,
                              "kind": body.DESCRIPTOR.name, "verbs": list(sub.verbs),
                              **body_group_version(store, body.DESCRIPTOR.full_name)})
        for name, kind, verbs in STREAM_SUBRESOURCES.get((rt.group, rt.resource), ()):
            resources.append({"name": f"{rt.resource}/{name}", "singularName": "", "namespaced": rt.namespaced,
                              "kind": kind, "verbs": list(verbs)})
    gv = f"{group}/{ver}" if group else ver
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}


# Subresources served by the REST layer itself (streams to the kubelet), not by a Subresource route.
STREAM_SUBRESOURCES: dict[tuple[str, str], tuple[tuple[str, str, tuple[str, ...]], ...]] = {
    ("", "pods"): (("log", "Pod", ("get",)), ("exec", "PodExecOptions", ("create", "get")),
                   ("attach", "PodAttachOptions", ("create", "get")),
                   ("portforward", "PodPortForwardOptions", ("create", "get"))),
}


def body_group_version(store: ResourceStore, full_name: str) -> dict[str, str]:
    """A subresource whose body is another group's kind (autoscaling/v1 Scale, policy/v1 Eviction) says so."""
    package = full_name.rsplit(".", 1)[0]  # kubelite.api.<group>.<version>
    parts = package.split(".")
    if len(parts) >= 4 and parts[:2] == ["kubelite", "api"]:
        group_part, ver = parts[2], parts[3]
        group = "" if group_part == "core" else GROUP_OF_PACKAGE.get(group_part, group_part)
        if (group, ver) != (store.rt.group, store.rt.version):
            return {"group": group, "version": ver}
    return {}


# proto package segment → API group, for the groups whose package is not the group's name.
GROUP_OF_PACKAGE = {"coordination": "coordination.k8s.io", "scheduling": "scheduling.k8s.io"}


def aggregated(registry: Registry, legacy: bool) -> dict[str, Any]:
    """/api (legacy=True: the core group only) or /apis (every named group) in the aggregated form."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (group, ver), _stores in _by_group_version(registry).items():
        if (group == "") != legacy:
            continue
        doc = api_resource_list(registry, group, ver)
        assert doc is not None
        groups[group].append({"version": ver, "resources": _aggregated_resources(doc), "freshness": "Current"})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": [{"metadata": {"name": g}, "versions": vs} for g, vs in sorted(groups.items())]}


def _aggregated_resources(doc: dict[str, Any]) -> list[dict[str, Any]]:
    group, _, ver = doc["groupVersion"].rpartition("/")
    top: dict[str, dict[str, Any]] = {}
    for r in doc["resources"]:
        name: str = r["name"]
        if "/" in name:
            parent, _, sub = name.partition("/")
            kind = {"group": r.get("group", group), "version": r.get("version", ver), "kind": r["kind"]}
            top[parent].setdefault("subresources", []).append(
                {"subresource": sub, "responseKind": kind, "verbs": r["verbs"]})
            continue
        entry: dict[str, Any] = {
            "resource": name, "responseKind": {"group": group, "version": ver, "kind": r["kind"]},
            "scope": "Namespaced" if r["namespaced"] else "Cluster", "singularResource": r["singularName"],
            "verbs": r["verbs"]}
        for key in ("shortNames", "categories"):
            if key in r:
                entry[key] = r[key]
        top[name] = entry
    return list(top.values())
