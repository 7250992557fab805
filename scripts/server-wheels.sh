#!/usr/bin/env bash
# Wheels of the server's dependencies (at requirements.lock's versions) into deploy/wheels,
# downloaded by this host's pip, for building deploy/Dockerfile.server where the build
# cannot reach PyPI itself: docker build --build-arg PIP_NO_INDEX=1 -f deploy/Dockerfile.server .
# Idempotent: nothing is fetched while the pins are those of the last download.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=deploy/wheels/.inputs
want="$(cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)"
[ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && exit 0
PYTHON="${PYTHON:-.venv/bin/python}"
deps="$(mktemp)"
trap 'rm -f "$deps"' EXIT
"$PYTHON" -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" >"$deps"
# setuptools: the build backend of the project's own (editable) install.
"$PYTHON" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
  -d deploy/wheels -c requirements.lock -r "$deps" "setuptools>=68"
echo "$want" >"$stamp"
