#!/usr/bin/env bash
# Make sure a Docker engine answers. On a Debian/Ubuntu machine where we are root and no
# engine runs, install Debian's docker.io and start dockerd in the background, with gVisor's
# runsc registered as a runtime (docs/security.md).
#
# An engine we did not start is never changed: only one started by this script gets runsc
# added (install, merge into /etc/docker/daemon.json, SIGHUP to reload). "Ours" means:
#   - the pid in $MARKER is a live dockerd: written when this script starts dockerd; or
#   - a live dockerd whose stdout is $DOCKERD_LOG: only this script starts dockerd with that
#     redirect (engines started by its versions from before the marker existed); the marker
#     is written then, so the check is made once.
set -euo pipefail

log() { printf '[setup] %s\n' "$*" >&2; }

MARKER=/var/run/execstream-dockerd.pid
DOCKERD_LOG=/var/log/execstream-dockerd.log
DAEMON_JSON=/etc/docker/daemon.json

has_runsc() {
  docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'
}

is_dockerd() {
  [ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = dockerd ]
}

# The pid of the dockerd this script started, or nothing (and status 1).
our_dockerd() {
  local pid
  pid=$(cat "$MARKER" 2>/dev/null || true)
  if is_dockerd "$pid"; then
    echo "$pid"
    return 0
  fi
  for pid in $(pgrep -x dockerd || true); do
    if [ "$(readlink "/proc/$pid/fd/1" 2>/dev/null)" = "$DOCKERD_LOG" ]; then
      echo "$pid" >"$MARKER"
      echo "$pid"
      return 0
    fi
  done
  return 1
}

# Install Debian's runsc and register it in daemon.json, merged into what is there.
configure_runsc() {
  if ! command -v runsc >/dev/null 2>&1; then
    log "installing Debian's runsc (gVisor)"
    apt-get update -qq
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runsc >/dev/null; then
      log "WARNING: could not install runsc; programs will run under runc only"
      return 1
    fi
  fi
  mkdir -p "$(dirname "$DAEMON_JSON")"
  local said
  said=$(python3 "$(dirname "$0")/register-runsc.py" "$DAEMON_JSON" "$(command -v runsc)") || return 1
  log "$said"
}

if docker info >/dev/null 2>&1; then
  has_runsc && exit 0
  if ! pid=$(our_dockerd); then
    log "the Docker engine has no runsc runtime: programs will run under runc only."
    log "To add gVisor to it, see README.md (Running under gVisor)."
    exit 0
  fi
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || exit 0
  configure_runsc || exit 0
  # A reload, not a restart: running containers and their clients are not touched.
  log "reloading dockerd (pid $pid) with SIGHUP"
  kill -HUP "$pid"
  for _ in $(seq 1 20); do
    has_runsc && exit 0
    sleep 0.5
  done
  log "WARNING: dockerd does not list runsc after the reload; see $DOCKERD_LOG"
  exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  log "No Docker engine answers 'docker info'."
  log "Install Docker (Docker Desktop, or your distribution's docker.io) and start it, then try again."
  exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
  log "installing Debian's docker.io"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
  configure_runsc || true
  log "starting dockerd in the background (log: $DOCKERD_LOG)"
  nohup dockerd >"$DOCKERD_LOG" 2>&1 &
  echo $! >"$MARKER"
fi

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "Docker engine is up"
    exit 0
  fi
  sleep 1
done
log "dockerd did not answer within 60 s; see $DOCKERD_LOG"
exit 1
