#!/usr/bin/env bash
# Installs and starts the Docker engine, idempotently. A fresh machine has only
# the docker client and no systemd (PLATFORM.md): Debian's docker.io gives the
# engine, and dockerd is started by hand with its log in /var/log/dockerd.log.
# busybox-static is installed too: the project builds its images from it.
set -euo pipefail
if ! command -v dockerd >/dev/null 2>&1; then
  echo "docker: installing docker.io" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q docker.io >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q docker.io >/dev/null
  }
fi
# The project's own images (pause, busybox) are made from busybox-static.
if ! command -v busybox >/dev/null 2>&1; then
  echo "docker: installing busybox-static" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q busybox-static >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q busybox-static >/dev/null
  }
fi
if ! docker info >/dev/null 2>&1; then
  echo "docker: starting dockerd" >&2
  nohup dockerd >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 1 100); do
    docker info >/dev/null 2>&1 && break
    sleep 0.2
  done
  docker info >/dev/null 2>&1 || { echo "docker: dockerd did not start; see /var/log/dockerd.log" >&2; exit 1; }
fi
