#!/usr/bin/env bash
# Make sure a Docker engine answers. On a Debian/Ubuntu machine where we are root and no
# engine runs, install Debian's docker.io and start dockerd in the background.
set -euo pipefail

log() { printf '[setup] %s\n' "$*" >&2; }

if docker info >/dev/null 2>&1; then
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

# Prefer the engine's own client from the package when another stub shadows it.
if ! pgrep -x dockerd >/dev/null 2>&1; then
  log "starting dockerd in the background (log: /var/log/execstream-dockerd.log)"
  nohup dockerd >/var/log/execstream-dockerd.log 2>&1 &
fi

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "Docker engine is up"
    exit 0
  fi
  sleep 1
done
log "dockerd did not answer within 60 s; see /var/log/execstream-dockerd.log"
exit 1
