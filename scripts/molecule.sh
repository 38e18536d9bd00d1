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
# The slowest tests of each verify, for the run's time budget.
durations='--durations=8 --durations-min=20'
export PYTEST_ADDOPTS="$durations ${PYTEST_ADDOPTS:-}"
for run in "$@"; do
  # scenario@release runs the scenario on another Debian release's image (default@trixie: Debian 13).
  scenario=${run%@*}
  if [ "$scenario" != "$run" ]; then
    export PKGCACHE_SCENARIO_IMAGE="pkgcache-${run#*@}-systemd:latest"
  else
    unset PKGCACHE_SCENARIO_IMAGE
  fi
  echo "== molecule test -s $scenario (${PKGCACHE_SCENARIO_IMAGE:-its own image})"
  if [ -n "${PKGCACHE_SCENARIO_IMAGE:-}" ]; then
    # Another release: converge and the user-side verify (mounts, installs from the cache as the users, reboot,
    # status timer, hit rate). The release-independent checks (bad input, check mode, idempotence) ran on bookworm.
    rc=0
    molecule destroy -s "$scenario"
    for step in create prepare converge verify; do
      PYTEST_ADDOPTS="$durations -k 'not test_bad_input and not test_check_mode'" molecule "$step" -s "$scenario" || { rc=$?; break; }
    done
    molecule destroy -s "$scenario"
    [ "$rc" -eq 0 ] || exit "$rc"
    continue
  fi
  molecule test -s "$scenario"
done
