#!/usr/bin/env bash
# Fails when the committed generated code differs from what `make proto` writes.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/kubelite/api"
mapfile -t protos < <(find proto -name '*.proto' | sort)
"$VENV/bin/python" -m grpc_tools.protoc -Iproto --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" \
  --plugin=protoc-gen-mypy_grpc="$VENV/bin/protoc-gen-mypy_grpc" --mypy_grpc_out="$tmp" "${protos[@]}"
bash hack/proto-init.sh "$tmp"
if ! diff -r -q -x '__pycache__' "$tmp/kubelite/api" pkg/kubelite/api; then
  echo "proto-check: generated code is stale; run 'make proto' and commit the result" >&2
  exit 1
fi
echo "proto-check: generated code matches proto/"
