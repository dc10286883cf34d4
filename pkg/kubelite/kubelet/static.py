"""Static pods: manifests in ``--pod-manifest-path`` that the kubelet runs by itself.

They run whether or not the API server answers (that is what they are for:
control-plane components as pods). Each is named ``<name>-<node>``, gets a uid
derived from the node and the manifest (so an edited manifest is a new pod,
and an unchanged one survives a kubelet restart), and is mirrored into the API
as a "mirror pod" carrying ``kubernetes.io/config.mirror`` so users see it.
The mirror only reports: deleting it does not stop the static pod (the
kubelet makes a new mirror), removing the manifest does.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from pathlib import Path

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.machinery.codec import decode_into, load_documents
from kubelite.machinery.errors import StatusError

log = logging.getLogger(__name__)

ANNOTATION_MIRROR = "kubernetes.io/config.mirror"
ANNOTATION_HASH = "kubernetes.io/config.hash"
ANNOTATION_SOURCE = "kubernetes.io/config.source"
_SUFFIXES = (".yaml", ".yml", ".json")


def is_mirror(pod: core.Pod) -> bool:
    return ANNOTATION_MIRROR in pod.metadata.annotations


def read_manifests(directory: Path, node_name: str) -> dict[str, core.Pod]:
    """``namespace/name`` -> static pod, for every valid manifest; bad files are logged and skipped."""
    pods: dict[str, core.Pod] = {}
    if not directory.is_dir():
        return pods
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.suffix not in _SUFFIXES or not path.is_file():
            continue
        try:
            text = path.read_text()
            for doc in load_documents(text, str(path)):
                if doc.get("kind") != "Pod":
                    raise ValueError(f"kind: must be Pod, got {doc.get('kind')!r}")
                pod = decode_into(doc, core.Pod)
                pods.update([_finish(pod, node_name, text)])
        except (OSError, ValueError, StatusError) as exc:
            log.error("static pod manifest %s: %s", path, exc)
    return pods


def _finish(pod: core.Pod, node_name: str, text: str) -> tuple[str, core.Pod]:
    md = pod.metadata
    if not md.name:
        raise ValueError("metadata.name: required")
    md.name = f"{md.name}-{node_name}"
    md.namespace = md.namespace or "default"
    digest = hashlib.sha256(f"{node_name}\0{text}".encode()).digest()
    md.uid = str(uuid.UUID(bytes=digest[:16]))
    md.annotations[ANNOTATION_HASH] = md.uid
    md.annotations[ANNOTATION_SOURCE] = "file"
    pod.spec.node_name = node_name
    pod.spec.restart_policy = pod.spec.restart_policy or "Always"
    pod.spec.dns_policy = pod.spec.dns_policy or "ClusterFirst"
    if not pod.spec.HasField("termination_grace_period_seconds"):
        pod.spec.termination_grace_period_seconds = 30
    pod.status.phase = "Pending"
    return f"{md.namespace}/{md.name}", pod


def mirror_of(static: core.Pod, node_uid: str) -> core.Pod:
    """The API object that shows a static pod: same spec, owned by the Node."""
    mirror = core.Pod(api_version="v1", kind="Pod")
    mirror.metadata.CopyFrom(static.metadata)
    mirror.metadata.uid = ""
    mirror.metadata.annotations[ANNOTATION_MIRROR] = static.metadata.uid
    if node_uid:
        ref = mirror.metadata.owner_references.add()
        ref.api_version, ref.kind, ref.name, ref.uid = "v1", "Node", static.spec.node_name, node_uid
        ref.controller = True
    mirror.spec.CopyFrom(static.spec)
    return mirror
