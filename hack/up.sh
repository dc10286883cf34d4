#!/usr/bin/env bash
# `make up`: a local multi-node cluster (kubelite cluster: 3 etcd members, a control
# plane and 3 workers, each a node container booting systemd with its own dockerd),
# then the demo workload (examples/demo): a Deployment of 3 web servers and their
# Service, waited for until every replica is available. Idempotent: an existing
# cluster is reused. `make down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/_out}
VENV=${VENV:-.venv}
NAME=${NAME:-kubelite}
WORKERS=${WORKERS:-3}
K="$VENV/bin/kubelite"
mkdir -p "$OUT"

bash hack/docker.sh
if $K cluster list 2>/dev/null | awk 'NR > 1 {print $1}' | grep -qx "$NAME"; then
  echo "up: cluster $NAME exists; reusing it"
else
  $K cluster up --name "$NAME" --workers "$WORKERS" --kubeconfig "$OUT/kubeconfig"
fi
$K cluster kubeconfig --name "$NAME" > "$OUT/kubeconfig"
export KUBECONFIG=$OUT/kubeconfig

# The demo's image: the project's busybox, built here and pushed into the cluster's registry (the nodes pull it).
image=$("$VENV/bin/python" -c "
import docker
from kubelite.runtime.images import ensure_busybox_image
print(ensure_busybox_image(docker.APIClient()))")
$K cluster load-image "$image" --name "$NAME"

echo "== demo: a Deployment of 3 web servers and their Service (examples/demo)"
$K apply -f examples/demo/
for _ in $(seq 1 180); do
  ready=$($K get deploy web -o jsonpath='{.status.availableReplicas}' 2>/dev/null || true)
  [ "${ready:-0}" = 3 ] && break
  sleep 1
done
$K get nodes -o wide
$K get deploy,rs,pods,svc,endpoints -o wide
[ "${ready:-0}" = 3 ] || { echo "up: the demo did not become available; see kubelite describe deploy web" >&2; exit 1; }
cluster_ip=$($K get svc web -o jsonpath='{.spec.clusterIP}')
node_port=$($K get svc web -o jsonpath='{.spec.ports[0].nodePort}')
worker_ip=$($K get node "$NAME-worker" -o jsonpath='{.status.addresses[0].address}')
echo "== the Service from a pod (ClusterIP $cluster_ip), and from this machine (NodePort $worker_ip:$node_port)"
pod=$($K get pods -l app=web -o jsonpath='{.items[0].metadata.name}')
$K exec "$pod" -- sh -c "for i in 1 2 3 4 5 6; do timeout 5 wget -qO- http://$cluster_ip/; done"
for _ in 1 2 3; do curl -fsS --max-time 5 "http://$worker_ip:$node_port/" || true; done

cat <<MSG

kubelite is up: cluster "$NAME" (kubelite cluster list), the demo Deployment "web" available.
Try:
  export KUBECONFIG=$OUT/kubeconfig PATH=$PWD/$VENV/bin:\$PATH
  kubelite get pods -o wide
  curl http://$worker_ip:$node_port/          # the NodePort, answered by the replicas in turn
  kubelite logs -l app=web
  kubelite exec -it <pod> -- sh
  kubelite scale deploy/web --replicas=5
  kubelite drain $NAME-worker --ignore-daemonsets
  kubelite rollout restart deploy/web; kubelite rollout status deploy/web
The same kubeconfig works for kubectl (the test suite installs kubectl 1.37 into $VENV/bin):
  kubectl get nodes -o wide; kubectl get all; kubectl explain deployment.spec
Remove everything with: make down
MSG
