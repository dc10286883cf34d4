#!/usr/bin/env bash
# Installs and starts the Docker engine, idempotently. A fresh machine has only
# the docker client and no systemd (PLATFORM.md): Debian's docker.io gives the
# engine, and dockerd is started by hand with its log in /var/log/dockerd.log.
# Also the tools that build the local cluster's images without a registry
# (kubelite.cluster.images): debootstrap for the Debian base, busybox-static
# for the pause image.
set -euo pipefail
need_apt=()
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need_apt+=(debootstrap)
[ -x /bin/busybox ] || need_apt+=(busybox-static)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "docker: installing ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need_apt[@]}" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q "${need_apt[@]}" >/dev/null
  }
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "docker: installing docker.io" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q docker.io >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q docker.io >/dev/null
  }
fi
if ! docker info >/dev/null 2>&1; then
  echo "docker: starting dockerd" >&2
  # A session of its own: the engine must outlive the shell (and the process group) that started it.
  setsid nohup dockerd >>/var/log/dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 100); do
    docker info >/dev/null 2>&1 && break
    sleep 0.2
  done
  docker info >/dev/null 2>&1 || { echo "docker: dockerd did not start; see /var/log/dockerd.log" >&2; exit 1; }
fi
# Every node container boots systemd, which takes inotify instances of the host's budget;
# the kernel's default (128) runs out at a couple of clusters and units then fail to
# start (kind documents the same limit). Raise it, never lower it.
for kv in fs.inotify.max_user_instances=1024 fs.inotify.max_user_watches=524288; do
  key=${kv%=*} want=${kv#*=}
  have=$(sysctl -n "$key" 2>/dev/null || echo 0)
  if [ "$have" -lt "$want" ]; then
    sysctl -q -w "$kv" >/dev/null 2>&1 || echo "docker: could not raise $key to $want (have $have)" >&2
  fi
done
