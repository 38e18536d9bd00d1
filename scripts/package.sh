#!/usr/bin/env bash
# Build the collection tarball from the tracked files, check what it ships, install it into an empty
# collections path and syntax-check every playbook against the example inventory with that install only
# (not the checkout), as a user who installed the release would run them.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" && (cd "$here" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$work/src")
ansible-galaxy collection build "$work/src" --output-path "$work" >/dev/null
tarball=$(ls "$work"/pkgcache-overlay-*.tar.gz)
echo "== package: $(basename "$tarball")"
listing=$(tar -tzf "$tarball")
bad=$(grep -E '^(molecule|bench|demo|scripts|tests/fleet|\.hypothesis|\.cache|\.ci|\.config)(/|$)|__pycache__|\.png$' <<<"$listing" || true)
if [ -n "$bad" ]; then
  echo "the tarball ships files it must not:" >&2
  echo "$bad" >&2
  exit 1
fi
for f in LICENSE README.md MANIFEST.json meta/runtime.yml CHANGELOG.rst plugins/modules/snapshot_build.py roles/build/tasks/main.yml playbooks/site.yml; do
  grep -qx "$f" <<<"$listing" || { echo "the tarball lacks $f" >&2; exit 1; }
done
ANSIBLE_COLLECTIONS_PATH="$work/installed" ansible-galaxy collection install --offline -p "$work/installed" "$tarball" >/dev/null
for pb in "$here"/playbooks/*.yml; do
  name=$(basename "$pb" .yml)
  echo "== syntax-check pkgcache.overlay.$name"
  (cd "$work" && ANSIBLE_COLLECTIONS_PATH="$work/installed" ANSIBLE_ROLES_PATH="$work/none" \
    ansible-playbook --syntax-check -i "$here/inventory/example" "pkgcache.overlay.$name" >/dev/null)
done
echo "== package: ok"
