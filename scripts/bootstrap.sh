#!/usr/bin/env bash
# Prepare a fresh machine for the tests and the demo: Debian and PyPI packages,
# a running dockerd, the systemd base image, the local test wheelhouse and the
# ansible-test pip bootstrap stand-in. Safe to run again: each step is skipped
# when its result is already there.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${PKGCACHE_IMAGE:-pkgcache-bookworm-systemd:latest}
WHEELHOUSE=${PKGCACHE_WHEELHOUSE:-$here/.cache/wheelhouse}
log() { printf '== bootstrap: %s\n' "$*"; }

apt_pkgs=(docker.io debootstrap nginx-light openssh-client python3-venv python3-pip iproute2 shellcheck)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# promtool (make lint checks and unit-tests the alert rules in extras/prometheus) comes with Debian's prometheus.
if ! command -v promtool >/dev/null; then
  log "apt-get install prometheus (for promtool)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# The venv, the two base images and the langs image take most of a fresh machine's bootstrap and need
# nothing of each other (the langs image needs the bookworm image only): they are made side by side.
log "python packages (into .cache/venv), in the background"
bash "$here/scripts/venv.sh" &
venv_pid=$!
py="$here/.cache/venv/bin/python"

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  nohup dockerd --bridge=none --iptables=false >/var/log/pkgcache-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start, see /var/log/pkgcache-dockerd.log" >&2; exit 1; }
fi

# A systemd base image of a Debian release, made with debootstrap from the apt sources' mirror.
build_image() {  # suite image
  local suite=$1 image=$2
  if [ -z "${PKGCACHE_REBUILD_IMAGE:-}" ] && docker image inspect "$image" >/dev/null 2>&1; then
    return
  fi
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$mirror" ] || { echo "no Debian mirror found in the apt sources" >&2; exit 1; }
  root=$(mktemp -d /var/tmp/pkgcache-rootfs.XXXXXX)
  log "debootstrap $suite (mirror from apt sources)"
  debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-apt,systemd,systemd-sysv,dbus,util-linux,mount,procps,iproute2,nginx,openssh-client,ca-certificates,sudo,psmisc,lsof \
    "$suite" "$root" "$mirror" >"/var/log/pkgcache-debootstrap-$suite.log" 2>&1 \
    || { tail -20 "/var/log/pkgcache-debootstrap-$suite.log" >&2; exit 1; }
  # A container has no use for these units, and they fail without a real machine.
  for u in systemd-remount-fs.service systemd-firstboot.service getty.target console-getty.service \
           systemd-logind.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$u"
  done
  # nginx is started by the build role once its site is in place, not at boot.
  rm -f "$root/etc/systemd/system/multi-user.target.wants/nginx.service"
  log "docker import $image"
  tar -C "$root" -c . | docker import -c 'CMD ["/sbin/init"]' -c 'ENV container=docker' - "$image" >/dev/null
  rm -rf "$root"
}
build_image bookworm "$IMAGE" &
bookworm_pid=$!
# Debian 13: the default scenario runs on it too (default@trixie).
build_image trixie "${PKGCACHE_TRIXIE_IMAGE:-pkgcache-trixie-systemd:latest}" &
trixie_pid=$!
wait "$bookworm_pid" || { echo "building $IMAGE failed" >&2; exit 1; }

# The ecosystems scenario needs npm, Maven and a JRE on its hosts. Debian's
# maven-dependency-plugin (and junit4, which it needs) stand in for Maven
# Central, which this machine cannot reach.
LANGS_IMAGE=${PKGCACHE_LANGS_IMAGE:-pkgcache-bookworm-langs:latest}
langs_pkgs="nodejs npm maven default-jre-headless libmaven-dependency-plugin-java libmaven-deploy-plugin-java junit4"
have=$(docker image inspect -f '{{ index .Config.Labels "pkgcache.packages" }}' "$LANGS_IMAGE" 2>/dev/null || true)
if [ -n "${PKGCACHE_REBUILD_IMAGE:-}" ] || [ "$have" != "$langs_pkgs" ]; then
  log "building $LANGS_IMAGE (npm, Maven, JRE from Debian)"
  docker rm -f pkgcache-langs-build >/dev/null 2>&1 || true
  docker run --name pkgcache-langs-build --network host "$IMAGE" bash -c \
    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $langs_pkgs >/dev/null && apt-get clean" \
    >/var/log/pkgcache-langs.log 2>&1 || { tail -20 /var/log/pkgcache-langs.log >&2; exit 1; }
  docker commit -c 'CMD ["/sbin/init"]' -c 'ENV container=docker' -c "LABEL pkgcache.packages=\"$langs_pkgs\"" \
    pkgcache-langs-build "$LANGS_IMAGE" >/dev/null
  docker rm pkgcache-langs-build >/dev/null
fi

wait "$trixie_pid" || { echo "building the trixie image failed" >&2; exit 1; }
wait "$venv_pid" || { echo "scripts/venv.sh failed" >&2; exit 1; }

# Real wheels (and one sdist-only package) for the local test index.
# Wheels for Debian 12's Python (the host's) and Debian 13's (3.13, the default@trixie run) alike.
stamp=$( (cat "$here/tests/fleet/index-packages.txt" "$here/tests/fleet/index-sdists.txt"; echo cp313) | sha256sum | cut -c1-16)
if [ ! -f "$WHEELHOUSE/.complete-$stamp" ]; then
  log "filling the test wheelhouse"
  mkdir -p "$WHEELHOUSE"
  "$py" -m pip download -q --disable-pip-version-check --no-cache-dir -d "$WHEELHOUSE" \
    -r "$here/tests/fleet/index-packages.txt"
  "$py" -m pip download -q --disable-pip-version-check --no-cache-dir --no-binary :all: --no-deps \
    -d "$WHEELHOUSE" -r "$here/tests/fleet/index-sdists.txt"
  "$py" -m pip download -q --disable-pip-version-check --no-cache-dir -d "$WHEELHOUSE/../pypiserver" pypiserver
  py313=(--only-binary :all: --python-version 3.13 --implementation cp --abi cp313 --abi abi3 --abi none
         --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform any)
  "$py" -m pip download -q --disable-pip-version-check --no-cache-dir "${py313[@]}" -d "$WHEELHOUSE" \
    -r "$here/tests/fleet/index-packages.txt"
  # pip evaluates markers with its own Python: name what pypiserver needs on 3.13 (legacy-cgi) explicitly.
  "$py" -m pip download -q --disable-pip-version-check --no-cache-dir "${py313[@]}" -d "$WHEELHOUSE/../pypiserver" \
    pypiserver legacy-cgi
  touch "$WHEELHOUSE/.complete-$stamp"
fi
# The hit-rate test's own small wheels (deterministic; two releases of a shared dependency).
"$py" "$here/tests/fleet/make_wheels.py" "$WHEELHOUSE"

# Make this checkout the collection pkgcache.overlay for ansible (see ansible.cfg).
mkdir -p "$here/.cache/collections/ansible_collections/pkgcache"
ln -sfn ../../../.. "$here/.cache/collections/ansible_collections/pkgcache/overlay"

# ansible-test downloads get-pip.py from a host this machine cannot reach; a
# stand-in that uses ensurepip works in its place.
cache=~/.ansible/test/cache
mkdir -p "$cache"
for v in 24.0 24.2 25.0.1 25.1.1 25.2 25.3 26.0; do
  [ -f "$cache/get_pip_${v//./_}.py" ] || install -m 0644 "$here/scripts/get_pip_standin.py" "$cache/get_pip_${v//./_}.py"
done
log "ready"
