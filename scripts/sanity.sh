#!/usr/bin/env bash
# ansible-test sanity needs the collection at .../ansible_collections/pkgcache/overlay;
# copy the tracked files there and run it with this machine's Python.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/pkgcache/overlay"
mkdir -p "$dest"
(cd "$here" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$dest")
cd "$dest"
git init -q && git add -A && git -c user.email=ci@localhost -c user.name=ci commit -qm sanity
ansible-test sanity --local --python "$(python3 -c 'import sys;print("%d.%d" % sys.version_info[:2])')" --color no "$@"
