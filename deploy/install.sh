#!/usr/bin/env bash
# Installs kubelite on a Debian 12 / Ubuntu 22.04+ host, the same steps for a
# VM and for the local cluster's node image (kubelite/node is built by running
# the phases below in its Dockerfile, so the node containers run exactly what
# a VM runs).
#
#   install.sh packages                 distro packages: Docker engine, etcd, iptables, python3
#   install.sh kubelite --wheels DIR    kubelite from wheels into /opt/kubelite (no network: --no-index)
#   install.sh units [--from DIR]       the systemd units of deploy/systemd
#   install.sh images --from DIR        `docker load` every *.tar in DIR (kubelite/dns, built where the
#                                       tree is: kubelite cluster build-image, then docker save)
#   install.sh addons [--from DIR]      applies the cluster add-ons of deploy/addons (the cluster DNS)
#                                       through the node's kubeconfig; the control plane's last step
#   install.sh control-plane|worker --wheels DIR [--images DIR] [--node-ip IP] [--server URL] ...
#                                       packages, kubelite, units (and images), then `kubelite cluster
#                                       configure-node` for the role (env files in /etc/kubelite, the
#                                       installed components' units); a control plane then applies the add-ons
#   install.sh join HOST:PORT --token T [--wheels DIR] [--node-name N] [--node-ip IP]
#                                       a worker joins a running cluster (the command that
#                                       `kubelite token create --print-join-command` prints)
#   install.sh --reset                  stops and removes every kubelite unit, file, state, pod container,
#                                       the proxy's rules and the pod bridge
#
# Idempotent: every phase can run again.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=/opt/kubelite
UNIT_DIR=/usr/local/lib/systemd/system
CONF_DIR=/etc/kubelite
UNITS=(kubelite-etcd kubelite-apiserver kubelite-scheduler kubelite-controller-manager kubelite-kubelet kubelite-proxy)
PACKAGES=(systemd systemd-sysv dbus docker.io iptables iproute2 conntrack python3 python3-venv
          ca-certificates etcd-server etcd-client procps)

log() { echo "install: $*" >&2; }
die() { echo "install: error: $*" >&2; exit 1; }
# systemctl talks to a running systemd only when there is one (not in a docker build).
booted() { [ -d /run/systemd/system ]; }

phase_packages() {
  export DEBIAN_FRONTEND=noninteractive
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    # Without a fresh index first: an image with the packages' .debs cached installs offline.
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
      apt-get update -q >/dev/null
      apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    }
  fi
  # Debian's etcd.service would start a single-member etcd on the ports a kubelite
  # member uses; kubelite-etcd.service replaces it where the host is a member.
  if [ -e /lib/systemd/system/etcd.service ]; then
    if booted; then systemctl disable --now etcd.service >/dev/null 2>&1 || true
    else systemctl disable etcd.service >/dev/null 2>&1 || true; fi
    systemctl mask etcd.service >/dev/null 2>&1 || true
  fi
}

phase_kubelite() {
  local wheels=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --wheels) wheels=$2; shift 2 ;;
      --wheels=*) wheels=${1#*=}; shift ;;
      *) die "kubelite: unknown argument $1" ;;
    esac
  done
  # Default: wheels copied next to deploy/ (what `bash install.sh join ...` finds when run as printed).
  [ -n "$wheels" ] || [ ! -d "$HERE/../wheels" ] || wheels=$HERE/../wheels
  [ -n "$wheels" ] || die "kubelite: --wheels DIR is required (built on a machine with the tree: pip wheel . -w DIR)"
  compgen -G "$wheels/kubelite-*.whl" >/dev/null || die "kubelite: no kubelite-*.whl in $wheels"
  [ -x "$PREFIX/bin/python" ] || python3 -m venv "$PREFIX"
  # The newest kubelite wheel in DIR; dependencies come from DIR too, never from the network.
  local wheel
  wheel=$(ls -t "$wheels"/kubelite-*.whl | head -n1)
  "$PREFIX/bin/pip" install -q --no-index --find-links "$wheels" --force-reinstall --no-deps "$wheel"
  "$PREFIX/bin/pip" install -q --no-index --find-links "$wheels" "$wheel"
  for b in "$PREFIX"/bin/kubelite*; do
    ln -sf "$b" "/usr/local/bin/$(basename "$b")"
  done
  log "kubelite installed: $(ls "$PREFIX"/bin/kubelite* | xargs -n1 basename | tr '\n' ' ')"
}

phase_units() {
  local from="$HERE/systemd"
  while [ $# -gt 0 ]; do
    case "$1" in
      --from) from=$2; shift 2 ;;
      --from=*) from=${1#*=}; shift ;;
      *) die "units: unknown argument $1" ;;
    esac
  done
  mkdir -p "$UNIT_DIR" "$CONF_DIR"
  # systemd >= 254 backs off between restarts (RestartSteps); older versions would
  # log an unknown key on every reload, so the drop-in goes only where it is understood.
  local sdver
  sdver=$(systemctl --version 2>/dev/null | awk 'NR==1 {print $2}')
  for u in "${UNITS[@]}"; do
    [ -f "$from/$u.service" ] || die "units: $from/$u.service is missing"
    install -m 0644 "$from/$u.service" "$UNIT_DIR/$u.service"
    if [ "${sdver:-0}" -ge 254 ] 2>/dev/null; then
      mkdir -p "$UNIT_DIR/$u.service.d"
      printf '[Service]\nRestartSteps=5\nRestartMaxDelaySec=30s\n' > "$UNIT_DIR/$u.service.d/backoff.conf"
    fi
  done
  if booted; then systemctl daemon-reload; fi
}

phase_images() {
  local from=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --from) from=$2; shift 2 ;;
      --from=*) from=${1#*=}; shift ;;
      *) die "images: unknown argument $1" ;;
    esac
  done
  [ -n "$from" ] || die "images: --from DIR is required (image archives made by docker save)"
  local f
  for f in "$from"/*.tar; do
    [ -e "$f" ] || continue
    docker load -q -i "$f" >/dev/null || die "images: docker load -i $f failed"
    log "image loaded from $f"
  done
}

# The add-ons every cluster runs (the cluster DNS), applied through the API like any manifest.
# Their images are the project's own and never pulled: load them on every node (images phase).
phase_addons() {
  local from="$HERE/addons"
  while [ $# -gt 0 ]; do
    case "$1" in
      --from) from=$2; shift 2 ;;
      --from=*) from=${1#*=}; shift ;;
      *) die "addons: unknown argument $1" ;;
    esac
  done
  [ -d "$from" ] || { log "addons: no $from, nothing to apply"; return 0; }
  local f
  for f in "$from"/*.yaml; do
    [ -e "$f" ] || continue
    /usr/local/bin/kubelite --kubeconfig "$CONF_DIR/kubeconfig" apply -f "$f" >/dev/null \
      || die "addons: applying $f failed"
    log "add-on applied: $(basename "$f")"
  done
}

# A VM in one role: everything above, then the role's configuration through the
# same `kubelite cluster configure-node` that `kubelite cluster up` runs in its containers.
phase_role() {
  local role=$1; shift
  local wheels="" images="" node_name node_ip="" args=()
  node_name=$(hostname)
  while [ $# -gt 0 ]; do
    case "$1" in
      --wheels) wheels=$2; shift 2 ;;
      --wheels=*) wheels=${1#*=}; shift ;;
      --images) images=$2; shift 2 ;;
      --images=*) images=${1#*=}; shift ;;
      --node-name) node_name=$2; shift 2 ;;
      --node-name=*) node_name=${1#*=}; shift ;;
      --node-ip) node_ip=$2; shift 2 ;;
      --node-ip=*) node_ip=${1#*=}; shift ;;
      *) args+=("$1"); shift ;;
    esac
  done
  # The first address of the host; pass --node-ip on a host with several networks.
  [ -n "$node_ip" ] || node_ip=$(hostname -I 2>/dev/null | awk '{print $1}')
  [ -n "$node_ip" ] || die "$role: cannot tell this host's address; pass --node-ip"
  booted || die "$role: systemd is not running on this host"
  phase_packages
  phase_kubelite --wheels "$wheels"
  phase_units
  if [ "$role" != etcd ]; then
    systemctl enable --now docker.service >/dev/null
    if [ -n "$images" ]; then phase_images --from "$images"; fi
  fi
  /usr/local/bin/kubelite cluster configure-node --role "$role" --node-name "$node_name" --node-ip "$node_ip" \
    ${args[@]+"${args[@]}"}
  if [ "$role" = control-plane ]; then wait_ready; phase_addons; fi
}

# Until the API server's /readyz answers ok (it checks etcd), or 120 s.
wait_ready() {
  log "waiting for the API server's /readyz"
  "$PREFIX/bin/python" - <<'PY' || die "the API server did not become ready; see: journalctl -u kubelite-apiserver -u kubelite-etcd"
import time, urllib.request
deadline = time.monotonic() + 120
while True:
    try:
        with urllib.request.urlopen("http://127.0.0.1:8080/readyz", timeout=2) as r:
            if r.status == 200:
                break
    except OSError:
        if time.monotonic() > deadline:
            raise SystemExit(1)
    time.sleep(0.3)
PY
  log "control plane ready"
}

# A worker joins: the token's form and the API server's port are checked before anything is
# installed (seconds, not the minutes packages take), the token itself by `kubelite join` before
# anything is configured; either failure exits non-zero and says what to do.
phase_join() {
  local endpoint="" token="" wheels="" args=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --token) token=$2; shift 2 ;;
      --token=*) token=${1#*=}; shift ;;
      --wheels) wheels=$2; shift 2 ;;
      --wheels=*) wheels=${1#*=}; shift ;;
      --node-name|--node-ip|--cluster-cidr|--cluster-dns|--cluster-domain) args+=("$1" "$2"); shift 2 ;;
      --node-name=*|--node-ip=*|--cluster-cidr=*|--cluster-dns=*|--cluster-domain=*) args+=("$1"); shift ;;
      -*) die "join: unknown flag $1" ;;
      *) [ -z "$endpoint" ] || die "join: one API server endpoint HOST:PORT, got $endpoint and $1"
         endpoint=$1; shift ;;
    esac
  done
  [ -n "$endpoint" ] || die "join: the API server endpoint HOST:PORT is required"
  [ -n "$token" ] || die "join: --token is required (on the control plane: kubelite token create --print-join-command)"
  [[ "$token" =~ ^[a-z0-9]{6}\.[a-z0-9]{16}$ ]] || \
    die "join: --token ${token%%.*}.<redacted> is not a bootstrap token ([a-z0-9]{6}.[a-z0-9]{16})"
  local host=${endpoint%:*} port=${endpoint##*:}
  [ "$host" != "$endpoint" ] || port=6443
  [[ "$port" =~ ^[0-9]+$ ]] || die "join: invalid endpoint $endpoint: must be HOST:PORT"
  timeout 5 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null || \
    die "join: cannot reach the API server at $host:$port (is the address right, and the control plane up?)"
  booted || die "join: systemd is not running on this host"
  phase_packages
  phase_kubelite ${wheels:+--wheels "$wheels"}
  phase_units
  systemctl enable --now docker.service >/dev/null
  /usr/local/bin/kubelite join "$host:$port" --token "$token" ${args[@]+"${args[@]}"} || \
    die "join: kubelite join failed (nothing was configured; the message above says why)"
}

phase_reset() {
  if [ -x /usr/local/bin/kubelite ]; then
    # Carry on when a step fails (the files below still go); the message says what was left.
    /usr/local/bin/kubelite cluster reset-node || log "reset: warning: kubelite cluster reset-node failed (see above)"
  fi
  for u in "${UNITS[@]}"; do
    if booted; then systemctl disable --now "$u.service" >/dev/null 2>&1 || true; fi
    rm -rf "$UNIT_DIR/$u.service" "$UNIT_DIR/$u.service.d"
  done
  rm -rf "$CONF_DIR" /var/lib/kubelite /var/lib/etcd/kubelite "$PREFIX"
  find /usr/local/bin -maxdepth 1 -name 'kubelite*' -lname "$PREFIX/*" -delete
  if booted; then systemctl daemon-reload; fi
  log "reset: kubelite removed (the distro's packages stay)"
}

case "${1:-}" in
  packages) shift; phase_packages "$@" ;;
  kubelite) shift; phase_kubelite "$@" ;;
  units) shift; phase_units "$@" ;;
  images) shift; phase_images "$@" ;;
  addons) shift; phase_addons "$@" ;;
  control-plane|worker|etcd) role=$1; shift; phase_role "$role" "$@" ;;
  join) shift; phase_join "$@" ;;
  --reset|reset) phase_reset ;;
  *) die "usage: install.sh packages | kubelite --wheels DIR | units [--from DIR]
       | images --from DIR | addons [--from DIR]
       | control-plane|worker|etcd --wheels DIR [--images DIR] [--node-name N] [--node-ip IP] [configure-node flags: --server URL ...]
       | join HOST:PORT --token TOKEN [--wheels DIR] [--node-name N] [--node-ip IP]
       | --reset" ;;
esac
