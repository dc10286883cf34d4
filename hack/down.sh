#!/usr/bin/env bash
# `make down`: removes the cluster `make up` made (everything labelled with its name),
# and stops host processes an older `make up` left, by their recorded PIDs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/_out}
VENV=${VENV:-.venv}
NAME=${NAME:-kubelite}
if [ -x "$VENV/bin/kubelite" ] && docker info >/dev/null 2>&1; then
  if "$VENV/bin/kubelite" cluster list 2>/dev/null | awk 'NR > 1 {print $1}' | grep -qx "$NAME"; then
    "$VENV/bin/kubelite" cluster down --name "$NAME"
  fi
fi
for name in apiserver e1 e2 e3; do
  f="$OUT/pids/$name"
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
done
echo "down: stopped"
