#!/usr/bin/env bash
# Build the executor image from Dockerfile.executor when its inputs changed.
# The image is tagged with a hash of those inputs, so a rebuild happens only when needed.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }
IMAGE="${EXECSTREAM_IMAGE:-execstream-executor:latest}"
BASE="debian:bookworm-slim"

inputs_hash() {
  # Files only: running the launchers outside a container (the local backend, its tests)
  # leaves a __pycache__ folder beside them, which the image does not take.
  find sandbox/image -maxdepth 1 -type f | LC_ALL=C sort | xargs cat Dockerfile.executor \
    | sha256sum | cut -c1-16
}

ensure_base() {
  docker image inspect "$BASE" >/dev/null 2>&1 && return 0
  log "pulling $BASE"
  if docker pull "$BASE" >/dev/null 2>&1; then
    return 0
  fi
  # No registry reachable (the case on our CI machines): build the same base from Debian's packages.
  log "pull failed; creating $BASE locally with mmdebstrap"
  if ! command -v mmdebstrap >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
      log "cannot pull $BASE and mmdebstrap is missing: install mmdebstrap or give Docker registry access"
      exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
  fi
  mmdebstrap --quiet --variant=minbase bookworm - | docker import - "$BASE" >/dev/null
}

want="$(inputs_hash)"
have="$(docker image inspect --format '{{ index .Config.Labels "execstream.inputs" }}' "$IMAGE" 2>/dev/null || true)"
if [ "$want" = "$have" ]; then
  exit 0
fi
ensure_base
log "building $IMAGE"
docker build --quiet --label "execstream.inputs=$want" -f Dockerfile.executor -t "$IMAGE" . >/dev/null
log "built $IMAGE"
