"""Kubeconfig files: where the API server is, and which namespace is the default.

kubelite reads the same file format and follows the same precedence as
kubectl, so an operator's habits (``$KUBECONFIG``, ``--context``, ``-s``) carry
over: an explicit ``--kubeconfig`` path, else the files listed in
``$KUBECONFIG`` merged (the first file to define a value wins), else
``~/.kube/config``. Only what kubelite uses is read: clusters' ``server``,
contexts' ``cluster``, ``user`` and ``namespace``, users' ``token``, and
``current-context``.

One file serves kubectl and kubelite: a cluster's ``server`` is the API
server's HTTP address (Kubernetes' REST API, which kubectl speaks), and the
gRPC address kubelite speaks travels in the cluster's ``extensions`` under
the name ``kubelite.io/grpc`` (kubectl keeps extensions it does not know). A
cluster without that extension is an older kubelite file whose ``server`` is
the gRPC address itself.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_NAMESPACE = "default"
GRPC_EXTENSION = "kubelite.io/grpc"


class KubeConfigError(Exception):
    """The kubeconfig is missing, unreadable or does not say where the server is."""


@dataclass(frozen=True)
class KubeConfig:
    """The resolved connection settings for one context."""

    server: str
    namespace: str = DEFAULT_NAMESPACE
    context: str = ""
    cluster: str = ""
    user: str = ""
    token: str = ""
    # The files the settings came from, for error messages.
    paths: tuple[str, ...] = ()


def default_path(home: str | None = None) -> Path:
    return Path(home if home is not None else Path.home()) / ".kube" / "config"


def config_paths(explicit: str | None = None, *, environ: Mapping[str, str] | None = None,
                 home: str | None = None) -> tuple[list[Path], bool]:
    """The files to read in precedence order, and whether they were named explicitly."""
    env = os.environ if environ is None else environ
    if explicit:
        return [Path(explicit).expanduser()], True
    listed = [Path(p).expanduser() for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        return listed, False
    return [default_path(home)], False


def load_kubeconfig(
    path: str | None = None,
    server: str | None = None,
    context: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    home: str | None = None,
) -> KubeConfig:
    """Resolves the connection settings; ``server`` (--server) and ``context`` (--context) override.

    A missing explicit file is an error, as are missing ``$KUBECONFIG`` files
    and ``~/.kube/config`` when nothing else says where the server is; with
    ``--server`` given, a missing file only means defaults for the rest.
    """
    paths, explicit = config_paths(path, environ=environ, home=home)
    merged = _Merged()
    found: list[str] = []
    for p in paths:
        try:
            text = p.read_text()
        except FileNotFoundError:
            if explicit and not server:
                raise KubeConfigError(f"kubeconfig {p} does not exist") from None
            continue
        except OSError as exc:
            raise KubeConfigError(f"cannot read kubeconfig {p}: {exc.strerror or exc}") from exc
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise KubeConfigError(f"kubeconfig {p} is not valid YAML: {exc}") from exc
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise KubeConfigError(f"kubeconfig {p} is not a mapping")
        merged.merge(doc, str(p))
        found.append(str(p))

    if not found and not server:
        names = ", ".join(str(p) for p in paths)
        raise KubeConfigError(
            f"no kubeconfig found (looked for {names}); pass --kubeconfig or --server"
        )

    context_name = context or merged.current_context
    ctx: dict[str, Any] = {}
    if context_name:
        if context_name not in merged.contexts:
            if context or not server:
                where = ", ".join(found) or "kubeconfig"
                raise KubeConfigError(f'context "{context_name}" not found in {where}')
        else:
            ctx = merged.contexts[context_name]
    cluster_name = str(ctx.get("cluster") or "")
    user_name = str(ctx.get("user") or "")
    resolved_server = server or grpc_server(merged.clusters.get(cluster_name, {}))
    if not resolved_server:
        if not context_name:
            raise KubeConfigError(f"no current context in {', '.join(found)}; pass --context or --server")
        raise KubeConfigError(
            f'cluster "{cluster_name}" of context "{context_name}" has no server in {", ".join(found)}'
        )
    return KubeConfig(
        server=resolved_server,
        namespace=str(ctx.get("namespace") or DEFAULT_NAMESPACE),
        context=context_name or "",
        cluster=cluster_name,
        user=user_name,
        token=str(merged.users.get(user_name, {}).get("token") or ""),
        paths=tuple(found),
    )


class _Merged:
    """kubectl's merge rule: for every named entry and for current-context, the first file wins."""

    def __init__(self) -> None:
        self.clusters: dict[str, dict[str, Any]] = {}
        self.contexts: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.current_context = ""

    def merge(self, doc: dict[str, Any], path: str) -> None:
        self._merge_named(doc, "clusters", "cluster", self.clusters, path)
        self._merge_named(doc, "contexts", "context", self.contexts, path)
        self._merge_named(doc, "users", "user", self.users, path)
        if not self.current_context:
            self.current_context = str(doc.get("current-context") or "")

    @staticmethod
    def _merge_named(doc: dict[str, Any], section: str, inner: str, into: dict[str, dict[str, Any]],
                     path: str) -> None:
        entries = doc.get(section) or []
        if not isinstance(entries, list):
            raise KubeConfigError(f"kubeconfig {path}: {section} must be a list")
        for entry in entries:
            if not isinstance(entry, dict) or not entry.get("name"):
                raise KubeConfigError(f"kubeconfig {path}: every entry of {section} needs a name")
            body = entry.get(inner) or {}
            if not isinstance(body, dict):
                where = f"{section}[{entry['name']}].{inner}"
                raise KubeConfigError(f"kubeconfig {path}: {where} must be a mapping")
            into.setdefault(str(entry["name"]), body)


def grpc_server(cluster: Mapping[str, Any]) -> str:
    """The gRPC address of a kubeconfig cluster entry (see the module docstring)."""
    for ext in cluster.get("extensions") or ():
        if isinstance(ext, Mapping) and ext.get("name") == GRPC_EXTENSION:
            body = ext.get("extension")
            if isinstance(body, Mapping) and body.get("server"):
                return str(body["server"])
    return str(cluster.get("server") or "")


def cluster_entry(server: str, rest_server: str = "") -> dict[str, Any]:
    """A cluster entry: ``server`` the REST address when there is one, the gRPC address in the extension."""
    if not rest_server:
        return {"server": server}
    return {"server": rest_server,
            "extensions": [{"name": GRPC_EXTENSION, "extension": {"server": server}}]}


def kubeconfig_document(server: str, cluster_name: str = "kubelite",
                        namespace: str = DEFAULT_NAMESPACE, rest_server: str = "") -> dict[str, Any]:
    """A one-cluster kubeconfig (cluster, user and context all named ``cluster_name``).

    ``server`` is the gRPC address; with ``rest_server`` (the HTTP address) the file works for kubectl too.
    """
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": cluster_entry(server, rest_server)}],
        "users": [{"name": cluster_name, "user": {}}],
        "contexts": [{"name": cluster_name,
                      "context": {"cluster": cluster_name, "user": cluster_name, "namespace": namespace}}],
        "current-context": cluster_name,
        "preferences": {},
    }


def write_kubeconfig(path: str | os.PathLike[str], server: str, cluster_name: str = "kubelite",
                     namespace: str = DEFAULT_NAMESPACE, rest_server: str = "") -> None:
    """Writes a one-cluster kubeconfig whose current context points at ``server`` (and ``rest_server``)."""
    write_kubeconfig_document(path, kubeconfig_document(server, cluster_name, namespace, rest_server))


def write_kubeconfig_document(path: str | os.PathLike[str], doc: Mapping[str, Any]) -> None:
    """Writes a kubeconfig document.

    The file is replaced atomically and readable by its owner only, because
    once authentication exists it will hold credentials.
    """
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".kubeconfig-", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(dict(doc), f, sort_keys=False)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Where the kubelet mounts a pod's ServiceAccount credentials (token, namespace; the CA later).
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def in_cluster_config(*, environ: Mapping[str, str] | None = None,
                      account_dir: str = SERVICE_ACCOUNT_DIR) -> KubeConfig:
    """The settings of a program running in a pod: the `kubernetes` Service the kubelet points it at.

    The kubelet sets KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT in
    every container (the Service's ClusterIP and port), as Kubernetes does;
    the token and namespace come from the ServiceAccount mount when present.
    """
    env = os.environ if environ is None else environ
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise KubeConfigError("not running in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT "
                              "are not set")
    root = Path(account_dir)

    def read(name: str) -> str:
        try:
            return (root / name).read_text().strip()
        except OSError:
            return ""

    server = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    return KubeConfig(server=server, namespace=read("namespace") or DEFAULT_NAMESPACE, token=read("token"),
                      paths=(str(root),))
