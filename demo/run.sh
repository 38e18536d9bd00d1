#!/usr/bin/env bash
# The demo: a small fleet in Docker (one builder with a local pypiserver
# index, two repl hosts with three users each), rolled out with
# `ansible-playbook site.yml`, then a report of what it did.
# A second run reuses the fleet and is idempotent (changed=0).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
IMAGE=${PKGCACHE_IMAGE:-pkgcache-bookworm-systemd:latest}
INVENTORY=tests/fleet/inventory-demo.yml
export ANSIBLE_CONFIG="$here/ansible.cfg"
# The one deprecation warning ansible-core 2.19 prints on every command with the venv's cryptography (its
# ssh-agent client imports the DSA names): filtered here as in the Makefile, not in users' environments.
export PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore:DSA is deprecated"

bash scripts/bootstrap.sh

created=0
booted() {  # name: wait until systemd has booted it (fstab replayed); it fails at once while its bus is not up
  local state=""
  for _ in $(seq 120); do
    state=$(docker exec "$1" systemctl is-system-running --wait 2>/dev/null || true)
    case "$state" in running|degraded) return ;; esac
    sleep 1
  done
  echo "demo: $1 did not finish booting (systemd says '$state')" >&2
  return 1
}
start() {  # name, group volume args...
  local name=$1; shift
  case "$(docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" in
    true) return ;;
    false) docker start "$name" >/dev/null; booted "$name"; return ;;
  esac
  docker run -d --name "$name" --hostname "$name" --network host \
    --cap-add SYS_ADMIN --cap-add SYS_PTRACE --security-opt apparmor=unconfined \
    --tmpfs /run --tmpfs /run/lock -v /sys/fs/cgroup:/sys/fs/cgroup:ro "$@" "$IMAGE" /sbin/init >/dev/null
  created=1
}
start pkgcache-demo-builder \
  -v "$here/.cache/wheelhouse:/srv/index:ro" -v "$here/.cache/pypiserver:/srv/pypiserver-wheels:ro"
for h in repl1 repl2; do
  start "pkgcache-demo-$h" -v "pkgcache-demo-$h-scratch:/mnt/scratch"
done

if [ "$created" = 1 ]; then
  echo "== demo: preparing the fleet (users, local index)"
  ansible-playbook -i "$INVENTORY" tests/fleet/prepare.yml >/tmp/pkgcache-demo-prepare.log \
    || { tail -30 /tmp/pkgcache-demo-prepare.log; exit 1; }
fi

echo "== demo: ansible-playbook site.yml"
ansible-playbook -i "$INVENTORY" site.yml | tee /tmp/pkgcache-demo-site.log | sed -n '/PLAY RECAP/,$p'
echo "== demo: what the fleet looks like now"
ansible-playbook -i "$INVENTORY" demo/report.yml | grep -E '^\s*"?(snapshot|  |[a-z])' | grep -v -E '^(PLAY|TASK|ok:|changed:)' || true
