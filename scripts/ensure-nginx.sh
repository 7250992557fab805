#!/usr/bin/env bash
# The load-balancer tests and bench run Debian's nginx as a plain process with a config of
# their own (never the system service).
set -euo pipefail
NGINX="${EXECSTREAM_NGINX:-/usr/sbin/nginx}"
[ -x "$NGINX" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[setup] installing Debian's nginx" >&2
  apt-get update -qq
  # policy-rc.d 101: the package must not start the system service (port 80) on install.
  policy="/usr/sbin/policy-rc.d"
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
  exit 0
fi
echo "[setup] nginx not found at $NGINX: install it (apt-get install nginx), or point EXECSTREAM_NGINX at one" >&2
exit 1
