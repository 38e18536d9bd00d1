#!/usr/bin/env bash
# scripts/venv.sh on a stock Debian 12: in the bookworm test image, with Debian's own python3 (whose pip refuses to
# install into the system), it must make a venv with every tool. The host's CA bundle and pip settings come along
# so that pip reaches the same package registry as on this machine.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
image=${PKGCACHE_IMAGE:-pkgcache-bookworm-systemd:latest}
args=(--rm --network host -v "$here:/src:ro" -e PKGCACHE_VENV=/tmp/venv -e PIP_CERT=/etc/ssl/host-ca.crt
      -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/host-ca.crt:ro)
for d in /etc/pip.conf /etc/xdg/pip /opt/pypi /opt/pypi-more /opt/wheels; do
  [ -e "$d" ] && args+=(-v "$d:$d:ro")
done
for v in $(env | grep -o '^PIP_[A-Z_]*' | grep -v '^PIP_CERT$'); do args+=(-e "$v"); done
docker run "${args[@]}" "$image" bash -euc '
  set -o pipefail
  . /etc/os-release; echo "== $PRETTY_NAME, $(/usr/bin/python3 --version)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  if /usr/bin/python3 -m pip install six >/tmp/system-pip.log 2>&1; then
    echo "the system pip of this image installs packages: not a stock Debian 12" >&2; exit 1
  fi
  grep -q externally-managed-environment /tmp/system-pip.log
  echo "== Debian'"'"'s pip refuses: externally-managed-environment"
  PKGCACHE_PYTHON=/usr/bin/python3 bash /src/scripts/venv.sh
  export PATH=/tmp/venv/bin:$PATH   # as the Makefile puts it first
  ansible --version | head -1
  molecule --version | head -1
  ansible-lint --version | head -1
  python -c "import testinfra, pytest, hypothesis, docker; print(\"== venv ok\")"
'
