#!/usr/bin/env bash
# `make down`: stops what `make up` started, by PID.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/_out}
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
