"""Kubernetes' REST paths, parsed into what a request names.

    /api/v1/{resource}[/{name}[/{subresource}]]                      cluster-scoped, or all namespaces
    /api/v1/namespaces/{ns}/{resource}[/{name}[/{subresource}]]      namespaced
    /apis/{group}/{version}/...                                      the same under a named group

``/api/v1/namespaces/{name}`` is the Namespace itself, and
``/api/v1/namespaces/{name}/status|finalize`` its subresources, exactly as
kube-apiserver reads those paths.
"""

from __future__ import annotations

from dataclasses import dataclass

NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(frozen=True)
class Target:
    group: str
    version: str
    resource: str
    namespace: str = ""  # "" on a cluster-scoped resource or a list across all namespaces
    name: str = ""
    subresource: str = ""
    # pods/proxy and services/proxy: the path after "proxy" (with its trailing slash, if any).
    proxy_path: str = ""


def parse(path: str) -> Target | None:
    """The Target of an API path, or None when the path is not one (discovery documents are routed apart)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return None
    if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in NAMESPACE_SUBRESOURCES
                                                           and group == ""):
        # /namespaces/{ns}/{resource}[/{name}[/{subresource}]]
        namespace, rest = rest[1], rest[2:]
    else:
        namespace = ""
    proxy_path = ""
    if len(rest) > 3:
        if rest[2] != "proxy":
            return None
        marker = "/" + "/".join(rest[:3]) + "/"
        at = path.find(marker)
        proxy_path = path[at + len(marker) - 1:] if at >= 0 else "/" + "/".join(rest[3:])
        rest = rest[:3]
    elif len(rest) == 3 and rest[2] == "proxy" and path.endswith("/"):
        proxy_path = "/"
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    return Target(group, version, resource, namespace, name, subresource, proxy_path)
