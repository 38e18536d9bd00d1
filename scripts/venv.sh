#!/usr/bin/env bash
# The Python tools of the tests (ansible-core, molecule, ansible-lint, ...) go into a venv, .cache/venv by default:
# Debian 12's system pip refuses installs (externally-managed-environment). Safe to run again.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${PKGCACHE_VENV:-$here/.cache/venv}
python=${PKGCACHE_PYTHON:-python3}
stamp=$(sha256sum "$here/requirements-dev.txt" | cut -c1-16)
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv" || { echo "cannot create $venv with $python: install python3-venv" >&2; exit 1; }
fi
if [ ! -f "$venv/.complete-$stamp" ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements-dev.txt"
  rm -f "$venv"/.complete-*
  touch "$venv/.complete-$stamp"
fi
