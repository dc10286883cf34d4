"""Kubeconfig loading with kubectl's precedence, and the file `make up` writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from kubelite.client import Client, KubeConfigError, load_kubeconfig, write_kubeconfig


def kubeconfig(path: Path, *, current: str | None, contexts: dict[str, tuple[str, str]],
               clusters: dict[str, str]) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": {"server": s}} for n, s in clusters.items()],
        "contexts": [{"name": n, "context": {"cluster": c, "user": "u", **({"namespace": ns} if ns else {})}}
                     for n, (c, ns) in contexts.items()],
        "users": [{"name": "u", "user": {"token": "t0k"}}],
    }
    if current is not None:
        doc["current-context"] = current
    path.write_text(yaml.safe_dump(doc))
    return path


def test_explicit_path_and_current_context(tmp_path: Path) -> None:
    p = kubeconfig(tmp_path / "cfg", current="dev", contexts={"dev": ("c1", "team"), "prod": ("c2", "")},
                   clusters={"c1": "http://10.0.0.1:6443", "c2": "http://10.0.0.2:6443"})
    cfg = load_kubeconfig(str(p), environ={}, home=str(tmp_path))
    assert (cfg.server, cfg.namespace, cfg.context, cfg.cluster, cfg.token) == (
        "http://10.0.0.1:6443", "team", "dev", "c1", "t0k")
    assert cfg.paths == (str(p),)


def test_context_and_server_flags_override(tmp_path: Path) -> None:
    p = kubeconfig(tmp_path / "cfg", current="dev", contexts={"dev": ("c1", "team"), "prod": ("c2", "")},
                   clusters={"c1": "http://10.0.0.1:6443", "c2": "http://10.0.0.2:6443"})
    prod = load_kubeconfig(str(p), context="prod", environ={})
    assert (prod.server, prod.namespace) == ("http://10.0.0.2:6443", "default")
    forced = load_kubeconfig(str(p), "http://127.0.0.1:7000", environ={})
    assert (forced.server, forced.namespace) == ("http://127.0.0.1:7000", "team")


def test_env_list_first_file_wins(tmp_path: Path) -> None:
    first = kubeconfig(tmp_path / "a", current=None, contexts={"shared": ("c1", "from-a")},
                       clusters={"c1": "http://first:6443"})
    second = kubeconfig(tmp_path / "b", current="shared",
                        contexts={"shared": ("c2", "from-b"), "other": ("c2", "")},
                        clusters={"c1": "http://ignored:6443", "c2": "http://second:6443"})
    env = {"KUBECONFIG": os.pathsep.join([str(tmp_path / "missing"), str(first), str(second)])}
    cfg = load_kubeconfig(environ=env, home=str(tmp_path))
    # current-context only in b; the context "shared" and cluster c1 are first defined in a.
    assert (cfg.context, cfg.server, cfg.namespace) == ("shared", "http://first:6443", "from-a")
    assert cfg.paths == (str(first), str(second))


def test_default_path_under_home(tmp_path: Path) -> None:
    (tmp_path / ".kube").mkdir()
    kubeconfig(tmp_path / ".kube" / "config", current="x", contexts={"x": ("c", "")},
               clusters={"c": "http://home:6443"})
    assert load_kubeconfig(environ={}, home=str(tmp_path)).server == "http://home:6443"
    # An explicit path beats $KUBECONFIG, which beats the default.
    other = kubeconfig(tmp_path / "other", current="x", contexts={"x": ("c", "")},
                       clusters={"c": "http://env:6443"})
    assert load_kubeconfig(environ={"KUBECONFIG": str(other)}, home=str(tmp_path)).server == "http://env:6443"


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match=str(tmp_path / "nope")):
        load_kubeconfig(str(tmp_path / "nope"), environ={})
    with pytest.raises(KubeConfigError, match=str(tmp_path / ".kube" / "config")):
        load_kubeconfig(environ={}, home=str(tmp_path))
    # With --server there is nothing missing that matters.
    cfg = load_kubeconfig(server="http://127.0.0.1:6443", environ={}, home=str(tmp_path))
    assert (cfg.server, cfg.namespace) == ("http://127.0.0.1:6443", "default")


def test_unknown_context_and_bad_files(tmp_path: Path) -> None:
    p = kubeconfig(tmp_path / "cfg", current="dev", contexts={"dev": ("c1", "")}, clusters={"c1": "http://x"})
    with pytest.raises(KubeConfigError, match='context "nope" not found'):
        load_kubeconfig(str(p), context="nope", environ={})
    no_current = kubeconfig(tmp_path / "nc", current=None, contexts={}, clusters={})
    with pytest.raises(KubeConfigError, match="no current context"):
        load_kubeconfig(str(no_current), environ={})
    broken = tmp_path / "broken"
    broken.write_text("clusters: [unterminated")
    with pytest.raises(KubeConfigError, match="not valid YAML"):
        load_kubeconfig(str(broken), environ={})


def test_write_then_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "kubeconfig"
    write_kubeconfig(path, "http://127.0.0.1:6443", cluster_name="local", namespace="apps")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = load_kubeconfig(str(path), environ={})
    assert (cfg.server, cfg.namespace, cfg.context, cfg.cluster) == ("http://127.0.0.1:6443", "apps", "local",
                                                                     "local")
    assert yaml.safe_load(path.read_text())["kind"] == "Config"
    client = Client.from_kubeconfig(cfg)  # no event loop needed until the first call
    assert client.target == "127.0.0.1:6443"


def test_in_cluster_config(tmp_path: Path) -> None:
    from kubelite.client.kubeconfig import KubeConfigError, in_cluster_config

    (tmp_path / "token").write_text("tok\n")
    (tmp_path / "namespace").write_text("team\n")
    kc = in_cluster_config(environ={"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"},
                           account_dir=str(tmp_path))
    assert (kc.server, kc.token, kc.namespace) == ("http://10.96.0.1:443", "tok", "team")
    kc6 = in_cluster_config(environ={"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"},
                            account_dir=str(tmp_path / "none"))
    assert (kc6.server, kc6.token, kc6.namespace) == ("http://[fd00::1]:443", "", "default")
    with pytest.raises(KubeConfigError, match="KUBERNETES_SERVICE_HOST"):
        in_cluster_config(environ={})
