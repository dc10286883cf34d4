#!/usr/bin/env bash
# Generated packages need __init__.py files and py.typed so they import as
# regular packages and mypy reads their .pyi stubs.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-pkg}
find "$root/kubelite/api" -type d | while read -r d; do
  [ -f "$d/__init__.py" ] || : > "$d/__init__.py"
done
: > "$root/kubelite/api/py.typed"
