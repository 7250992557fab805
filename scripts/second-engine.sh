#!/usr/bin/env bash
# A second Docker engine on this machine, beside the main one and never touching it: its own
# socket, data root, exec root (and so its own containerd), pid file and config file; a
# bridge of its own and no iptables rules (runs have no network: sandbox/docker.py
# container_config). Not `--bridge=none`: a dockerd started so deletes the host's docker0,
# the main engine's bridge, and every container or image build on it fails after that;
# the main engine's runtimes (gVisor's runsc) when the main engine has them. It also
# listens on TCP 127.0.0.1 with TLS client certificates, made here with openssl, so the
# tcp:// + DOCKER_CERT_PATH path is used for real.
#
#   scripts/second-engine.sh start DIR PORT IMAGE   start it (unless it runs), load IMAGE into
#                                                   it (unless there), print its env
#   scripts/second-engine.sh stop DIR               stop it and remove DIR
#
# DIR is short (a unix socket path must fit in 108 bytes), e.g. /tmp/es-engine2.
set -euo pipefail

log() { printf '[engine2] %s\n' "$*" >&2; }

certs() {
  local dir=$1
  mkdir -p "$dir/certs"
  cd "$dir/certs"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=execstream-test-ca \
    -keyout ca-key.pem -out ca.pem 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
    -keyout server-key.pem -out server.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
    -extfile server.ext -out server-cert.pem 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=execstream-client \
    -keyout key.pem -out client.csr 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >client.ext
  openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
    -extfile client.ext -out cert.pem 2>/dev/null
  cd - >/dev/null
}

running() {
  local pid
  pid=$(cat "$1/dockerd.pid" 2>/dev/null || true)
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]
}

start() {
  local dir=$1 port=$2 image=$3
  if running "$dir"; then
    log "already running in $dir"
  else
    launch "$dir" "$port"
  fi
  # A save | load of the 2.5 GB image takes about 100 s on two cores; skip it when the
  # engine has the very same image already.
  if [ "$(docker -H "unix://$dir/d.sock" image inspect -f '{{.Id}}' "$image" 2>/dev/null)" \
    != "$(docker image inspect -f '{{.Id}}' "$image")" ]; then
    local began=$SECONDS
    docker save "$image" | docker -H "unix://$dir/d.sock" load -q >&2
    log "loaded $image in $((SECONDS - began)) s"
  fi
  echo "EXECSTREAM_ENGINE2=tcp://127.0.0.1:$port"
  echo "DOCKER_CERT_PATH=$dir/certs"
}

# The bridge's name holds the port, so two second engines (two suites) do not share one.
bridge_of() { echo "esbr$1"; }

launch() {
  local dir=$1 port=$2 bridge
  bridge=$(bridge_of "$port")
  mkdir -p "$dir/data" "$dir/exec"
  echo "$port" >"$dir/port"
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
    # A /30 from a range docker does not hand out by default, picked by the port.
    ip addr add "10.231.$((port % 256)).$((4 * (port / 256 % 64) + 1))/30" dev "$bridge"
    ip link set "$bridge" up
  fi
  certs "$dir"
  # The main engine's runtimes, so `auto` chooses alike on both.
  docker info --format '{"runtimes": {{json .Runtimes}}}' | python3 -c '
import json, sys
runtimes = json.load(sys.stdin)["runtimes"]
wanted = {name: {"path": spec["path"], "runtimeArgs": spec.get("runtimeArgs") or []}
          for name, spec in runtimes.items() if name == "runsc"}
print(json.dumps({"runtimes": wanted}))' >"$dir/daemon.json"
  dockerd --config-file "$dir/daemon.json" \
    --host "unix://$dir/d.sock" --host "tcp://127.0.0.1:$port" \
    --tlsverify --tlscacert "$dir/certs/ca.pem" \
    --tlscert "$dir/certs/server-cert.pem" --tlskey "$dir/certs/server-key.pem" \
    --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
    --bridge="$bridge" --iptables=false --ip-masq=false --ip-forward=false \
    >"$dir/dockerd.log" 2>&1 &
  for _ in $(seq 100); do
    docker -H "unix://$dir/d.sock" version >/dev/null 2>&1 && break
    sleep 0.2
  done
  docker -H "unix://$dir/d.sock" version >/dev/null
}

stop() {
  local dir=$1 pid
  pid=$(cat "$dir/dockerd.pid" 2>/dev/null || true)
  if running "$dir"; then
    kill -CONT "$pid" 2>/dev/null || true  # a test may have left it stopped
    kill "$pid"
    for _ in $(seq 150); do
      [ -e "/proc/$pid" ] || break
      sleep 0.2
    done
  fi
  # Mounts left by a daemon that did not end cleanly would keep the folder busy.
  grep -o " $dir/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  if [ -f "$dir/port" ]; then
    ip link del "$(bridge_of "$(cat "$dir/port")")" 2>/dev/null || true
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start) start "$2" "$3" "$4" ;;
  stop) stop "$2" ;;
  *) echo "usage: $0 start DIR PORT IMAGE | stop DIR" >&2; exit 2 ;;
esac
