#!/usr/bin/env bash
# `make test` after bootstrap: two lanes side by side, because most of a molecule run waits on containers
# (systemd boots, docker exec, pip and npm installs) rather than on the two cores.
#   fleet: the scenarios on 127.0.0.1:8370/8371/8379 (default, default@trixie, refresh)
#   other: the checks (venv-check, unit, lint, sanity, package), then attacks (8374) and ecosystems
#          (8380/8381/8382, tests/fleet/group_vars-ecosystems) and shards (8385/8386/8375, host_vars-shards)
# No two scenarios share a port or a container name, and each lane runs its scenarios one after another.
# Every line is prefixed with its lane and the time; a lane's failure fails the run once both have ended.
# PKGCACHE_LANES=serial runs everything in one lane, in the same order.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 1
fleet=(default default@trixie refresh)
other=(attacks ecosystems shards)
checks=(venv-check unit lint sanity package)

stamp() { while IFS= read -r line; do printf '[%s %s] %s\n' "$1" "$(date +%T)" "$line"; done; }
lane() {  # name command...
  local name=$1 start=$SECONDS rc
  shift
  "$@" 2>&1 | stamp "$name"
  rc=${PIPESTATUS[0]}
  printf '[%s %s] == lane %s: %s after %d s\n' "$name" "$(date +%T)" "$name" \
    "$([ "$rc" -eq 0 ] && echo passed || echo "FAILED (rc $rc)")" $((SECONDS - start))
  return "$rc"
}
checks_then() { make --no-print-directory "${checks[@]}" && bash scripts/molecule.sh "$@"; }

if [ "${PKGCACHE_LANES:-}" = serial ]; then
  lane all bash -c 'make --no-print-directory '"${checks[*]}"' && bash scripts/molecule.sh '"${fleet[*]} ${other[*]}"
  exit $?
fi
# The demo fleet uses the same ports: stop it before either lane starts.
for c in pkgcache-demo-builder pkgcache-demo-repl1 pkgcache-demo-repl2; do docker stop "$c" >/dev/null 2>&1 || true; done
lane fleet bash scripts/molecule.sh "${fleet[@]}" &
fleet_pid=$!
lane other checks_then "${other[@]}"
other_rc=$?
wait "$fleet_pid"
fleet_rc=$?
[ "$fleet_rc" -eq 0 ] && [ "$other_rc" -eq 0 ]
