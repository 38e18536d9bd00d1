#!/usr/bin/env bash
# Run molecule scenarios (default: all of them in order). The demo fleet uses
# the same 127.0.0.1 ports, so it is stopped first (`make demo` starts it again).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
for c in pkgcache-demo-builder pkgcache-demo-repl1 pkgcache-demo-repl2; do
  docker stop "$c" >/dev/null 2>&1 || true
done
export PY_COLORS=0 ANSIBLE_FORCE_COLOR=0
for run in "$@"; do
  # scenario@release runs the scenario on another Debian release's image (default@trixie: Debian 13).
  scenario=${run%@*}
  if [ "$scenario" != "$run" ]; then
    export PKGCACHE_SCENARIO_IMAGE="pkgcache-${run#*@}-systemd:latest"
  else
    unset PKGCACHE_SCENARIO_IMAGE
  fi
  echo "== molecule test -s $scenario (${PKGCACHE_SCENARIO_IMAGE:-its own image})"
  molecule test -s "$scenario"
done
