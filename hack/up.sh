#!/usr/bin/env bash
# `make up`: brings up what kubelite has so far on this machine (three etcd
# members and the API server), writes a kubeconfig and runs a demo workload.
# Idempotent: running members are left alone. `make down` stops them by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/_out}
VENV=${VENV:-.venv}
mkdir -p "$OUT/pids" "$OUT/logs"

alive() { [ -f "$OUT/pids/$1" ] && kill -0 "$(cat "$OUT/pids/$1")" 2>/dev/null; }

cluster="e1=http://127.0.0.1:2380,e2=http://127.0.0.1:22380,e3=http://127.0.0.1:32380"
for i in 1 2 3; do
  name=e$i
  client=2379
  peer=2380
  [ $i = 2 ] && client=22379 && peer=22380
  [ $i = 3 ] && client=32379 && peer=32380
  if alive "$name"; then continue; fi
  state=new
  [ -d "$OUT/etcd/$name/member" ] && state=existing
  setsid etcd --name "$name" --data-dir "$OUT/etcd/$name" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "$cluster" --initial-cluster-state "$state" --initial-cluster-token kubelite-up \
    --log-level warn >"$OUT/logs/etcd-$name.log" 2>&1 < /dev/null &
  echo $! > "$OUT/pids/$name"
done
endpoints=http://127.0.0.1:2379,http://127.0.0.1:22379,http://127.0.0.1:32379
for _ in $(seq 1 100); do
  ETCDCTL_API=3 etcdctl --endpoints="$endpoints" endpoint health >/dev/null 2>&1 && break
  sleep 0.2
done
ETCDCTL_API=3 etcdctl --endpoints="$endpoints" endpoint health >/dev/null 2>&1 || {
  echo "up: etcd did not become healthy; see $OUT/logs" >&2; exit 1; }

if ! alive apiserver; then
  setsid "$VENV/bin/kubelite-apiserver" --etcd-servers="$endpoints" --bind-address=127.0.0.1 \
    --secure-port=6443 --http-port=8080 >"$OUT/logs/apiserver.log" 2>&1 < /dev/null &
  echo $! > "$OUT/pids/apiserver"
fi
for _ in $(seq 1 150); do
  curl -fsS http://127.0.0.1:8080/readyz >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS http://127.0.0.1:8080/readyz >/dev/null || { echo "up: apiserver not ready; see $OUT/logs/apiserver.log" >&2; exit 1; }

"$VENV/bin/python" -c "from kubelite.client.kubeconfig import write_kubeconfig; write_kubeconfig('$OUT/kubeconfig', 'http://127.0.0.1:6443')"
export KUBECONFIG=$OUT/kubeconfig
K="$VENV/bin/kubelite"

echo "== demo: the nginx Deployment and Service from the Kubernetes docs"
$K apply -f examples/
$K get deployments,services -o wide
$K get namespaces

cat <<MSG

kubelite is up: 3 etcd members and the API server (gRPC 127.0.0.1:6443, health/metrics http://127.0.0.1:8080).
Try:
  export KUBECONFIG=$OUT/kubeconfig PATH=$PWD/$VENV/bin:\$PATH
  kubelite get deploy nginx-deployment -o yaml
  kubelite label deploy nginx-deployment tier=web
  kubelite get pods -w            # in another terminal: kubelite apply -f examples/
  kubelite api-resources
Stop everything with: make down
MSG
