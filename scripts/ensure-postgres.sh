#!/usr/bin/env bash
# Make sure PostgreSQL 15's server programs (initdb, pg_ctl) are installed: the test suite
# starts a throw-away PostgreSQL of its own with them (tests/postgres.py). Installs Debian's
# `postgresql` package when they are missing; never starts or changes the system's service.
set -euo pipefail

log() { printf '[setup] %s\n' "$*" >&2; }

BIN=/usr/lib/postgresql/15/bin

if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
  exit 0
fi
if [ -x "$BIN/initdb" ] && [ -x "$BIN/pg_ctl" ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  log "PostgreSQL's initdb and pg_ctl are missing: install PostgreSQL 15 (Debian: postgresql)"
  exit 1
fi
log "installing Debian's postgresql (server programs only; its service is not started)"
apt-get update -qq
# policy-rc.d answering 101 keeps the package's scripts from starting the cluster's service.
policy=/usr/sbin/policy-rc.d
created=
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  created=1
fi
status=0
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null || status=$?
if [ -n "$created" ]; then rm -f "$policy"; fi
if [ "$status" != 0 ]; then
  log "could not install postgresql"
  exit "$status"
fi
log "installed PostgreSQL: $("$BIN/pg_ctl" --version)"
