#!/usr/bin/env bash
# The browser tests drive Debian's Chromium (browser downloads are not possible here).
set -euo pipefail
CHROMIUM="${EXECSTREAM_CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[setup] installing Debian's chromium" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  exit 0
fi
echo "[setup] Chromium not found at $CHROMIUM: install it, or point EXECSTREAM_CHROMIUM at one" >&2
exit 1
