"""Pod volumes as host directories bind-mounted into the containers.

Layout under ``--root-dir`` (Kubernetes' own): ``pods/<uid>/volumes/<plugin>/<name>``.
configMap, secret and downwardAPI volumes are written the way Kubernetes'
atomic writer does it: the files go to a fresh ``..<stamp>`` directory, the
``..data`` symlink is swapped to it with one rename, and each visible name is
a symlink through ``..data``; a container reading the mount sees either the
old or the new set of files, never a mix, and sees updates without a restart
(except through subPath, as in Kubernetes). Memory-medium emptyDirs live on
/dev/shm, which is tmpfs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.api.runtime.v1 import api_pb2 as rt
from kubelite.kubelet.convert import ConfigError, EnvSources, _field_ref, resource_field_value, secret_data

DEFAULT_MODE = 0o644


class VolumeError(Exception):
    """A volume cannot be set up (FailedMount)."""


@dataclass(frozen=True)
class VolumeSources:
    config_maps: dict[str, core.ConfigMap]
    secrets: dict[str, core.Secret]
    env: EnvSources


def pod_dir(root: Path, uid: str) -> Path:
    return root / "pods" / uid


def _plugin(vol: core.Volume) -> str:
    for field, plugin in (("empty_dir", "kubernetes.io~empty-dir"), ("host_path", "kubernetes.io~host-path"),
                          ("config_map", "kubernetes.io~configmap"), ("secret", "kubernetes.io~secret"),
                          ("downward_api", "kubernetes.io~downward-api"), ("projected", "kubernetes.io~projected")):
        if vol.HasField(field):
            return plugin
    raise VolumeError(f"volume {vol.name!r}: unsupported volume type")


def volume_path(root: Path, pod: core.Pod, vol: core.Volume) -> Path:
    if vol.HasField("host_path"):
        return Path(vol.host_path.path)
    if vol.HasField("empty_dir") and vol.empty_dir.medium == "Memory":
        return Path("/dev/shm/kubelite") / pod.metadata.uid / vol.name
    return pod_dir(root, pod.metadata.uid) / "volumes" / _plugin(vol) / vol.name


def _files_for(pod: core.Pod, vol: core.Volume, src: VolumeSources) -> dict[str, tuple[bytes, int]] | None:
    """path -> (content, mode) for the projected kinds; None when an optional source is absent."""
    files: dict[str, tuple[bytes, int]] = {}

    def project(data: dict[str, bytes], items: list[core.KeyToPath], default_mode: int, what: str) -> None:
        if items:
            for it in items:
                if it.key not in data:
                    raise VolumeError(f"{what}: key {it.key!r} not found")
                files[it.path] = (data[it.key], it.mode if it.HasField("mode") else default_mode)
        else:
            for k, v in data.items():
                files[k] = (v, default_mode)

    if vol.HasField("config_map"):
        c = vol.config_map
        mode = c.default_mode if c.HasField("default_mode") else DEFAULT_MODE
        cm = src.config_maps.get(c.name)
        if cm is None:
            if c.optional:
                return files
            raise VolumeError(f'configmap "{c.name}" not found')
        data = {k: v.encode() for k, v in cm.data.items()} | {k: bytes(v) for k, v in cm.binary_data.items()}
        project(data, list(c.items), mode, f"configmap {c.name}")
    elif vol.HasField("secret"):
        s = vol.secret
        mode = s.default_mode if s.HasField("default_mode") else DEFAULT_MODE
        secret = src.secrets.get(s.secret_name)
        if secret is None:
            if s.optional:
                return files
            raise VolumeError(f'secret "{s.secret_name}" not found')
        project(secret_data(secret), list(s.items), mode, f"secret {s.secret_name}")
    elif vol.HasField("downward_api"):
        d = vol.downward_api
        mode = d.default_mode if d.HasField("default_mode") else DEFAULT_MODE
        for item in d.items:
            try:
                if item.HasField("field_ref"):
                    value = _field_ref(pod, item.field_ref.field_path, src.env)
                else:
                    default = pod.spec.containers[0].name if pod.spec.containers else ""
                    value = resource_field_value(pod, default, item.resource_field_ref)
            except ConfigError as exc:
                raise VolumeError(str(exc)) from exc
            files[item.path] = (value.encode(), item.mode if item.HasField("mode") else mode)
    return files


def write_atomic(target: Path, files: dict[str, tuple[bytes, int]]) -> bool:
    """Makes ``target`` show exactly ``files``; returns True when anything changed."""
    target.mkdir(parents=True, exist_ok=True)
    data_link = target / "..data"
    if data_link.is_symlink():
        current = target / os.readlink(data_link)
        if _same(current, files):
            return False
    else:
        current = None
    stamp = target / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns() % 10**9}"
    stamp.mkdir()
    for rel, (content, mode) in files.items():
        p = stamp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        p.chmod(mode)
    stamp.chmod(0o755)
    tmp = target / "..data_tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(stamp.name)
    os.replace(tmp, data_link)
    # Top-level names: a symlink per first path component, through ..data.
    wanted = {rel.split("/", 1)[0] for rel in files}
    for top in wanted:
        link = target / top
        if not link.is_symlink():
            if link.exists():
                shutil.rmtree(link) if link.is_dir() else link.unlink()
            link.symlink_to(f"..data/{top}")
    for entry in target.iterdir():
        if entry.name.startswith(".."):
            continue
        if entry.name not in wanted:
            entry.unlink() if entry.is_symlink() or entry.is_file() else shutil.rmtree(entry)
    if current is not None and current != stamp:
        shutil.rmtree(current, ignore_errors=True)
    return True


def _same(current: Path, files: dict[str, tuple[bytes, int]]) -> bool:
    try:
        existing = {str(p.relative_to(current)) for p in current.rglob("*") if p.is_file()}
        if existing != set(files):
            return False
        for rel, (content, mode) in files.items():
            p = current / rel
            if p.read_bytes() != content or (p.stat().st_mode & 0o777) != mode:
                return False
    except OSError:
        return False
    return True


def setup_volumes(root: Path, pod: core.Pod, src: VolumeSources) -> dict[str, Path]:
    """Creates or refreshes every volume of the pod; returns name -> host path."""
    paths: dict[str, Path] = {}
    for vol in pod.spec.volumes:
        path = volume_path(root, pod, vol)
        if vol.HasField("host_path"):
            kind = vol.host_path.type if vol.host_path.HasField("type") else ""
            if kind == "DirectoryOrCreate":
                path.mkdir(parents=True, exist_ok=True)
            elif kind == "FileOrCreate":
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch(exist_ok=True)
            elif kind == "Directory" and not path.is_dir():
                raise VolumeError(f"hostPath type check failed: {path} is not a directory")
            elif kind == "File" and not path.is_file():
                raise VolumeError(f"hostPath type check failed: {path} is not a file")
            elif kind == "Socket" and not path.is_socket():
                raise VolumeError(f"hostPath type check failed: {path} is not a socket")
        elif vol.HasField("empty_dir"):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o777)
        elif vol.HasField("config_map") or vol.HasField("secret") or vol.HasField("downward_api"):
            files = _files_for(pod, vol, src)
            write_atomic(path, files or {})
        else:
            raise VolumeError(f"volume {vol.name!r}: unsupported volume type")
        paths[vol.name] = path
    return paths


def container_mounts(pod: core.Pod, c: core.Container, paths: dict[str, Path]) -> list[rt.Mount]:
    by_name = {v.name: v for v in pod.spec.volumes}
    mounts = []
    for vm in c.volume_mounts:
        if vm.name not in paths:
            raise VolumeError(f"container {c.name}: volumeMount {vm.name!r} names no volume of the pod")
        host = paths[vm.name]
        vol = by_name[vm.name]
        projected = vol.HasField("config_map") or vol.HasField("secret") or vol.HasField("downward_api")
        if vm.sub_path:
            if ".." in Path(vm.sub_path).parts or vm.sub_path.startswith("/"):
                raise VolumeError(f"container {c.name}: subPath {vm.sub_path!r} must be a relative path inside "
                                  "the volume")
            # Resolve through ..data now: a subPath mount pins the current file, as in Kubernetes.
            host = (host / vm.sub_path).resolve() if projected else host / vm.sub_path
            if not projected and not host.exists():
                host.mkdir(parents=True, exist_ok=True)
        mounts.append(rt.Mount(container_path=vm.mount_path, host_path=str(host),
                               readonly=vm.read_only or projected))
    return mounts


def remove_pod_dir(root: Path, uid: str) -> None:
    shutil.rmtree(pod_dir(root, uid), ignore_errors=True)
    shutil.rmtree(Path("/dev/shm/kubelite") / uid, ignore_errors=True)


def termination_log(root: Path, uid: str, container: str, attempt: int) -> Path:
    """The host file behind a container's terminationMessagePath."""
    p = pod_dir(root, uid) / "containers" / container / f"{attempt}-termination-log"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.touch(exist_ok=True)
    p.chmod(0o666)
    return p
