"""Helpers for the ecosystems scenario."""

import os
import sys

sys.path.insert(0, os.path.join(os.environ['MOLECULE_PROJECT_DIRECTORY'], 'tests', 'fleet'))
from fleetlib import as_root, as_user, mounted_at, playbook, view_of  # noqa: E402,F401 pylint: disable=unused-import

BUILDER = 'pkgcache-e-builder'
REPL1, REPL2 = 'pkgcache-e-repl1', 'pkgcache-e-repl2'
INDEX = 'http://127.0.0.1:8381/simple/'  # tests/fleet/group_vars-ecosystems (its own ports)
PLUGIN = 'org.apache.maven.plugins:maven-dependency-plugin:3.5.0'


def npm_install(user, container, specs, offline=False):
    """``npm install`` in a fresh project of the user's; return the command result."""
    flag = '--offline ' if offline else ''
    return as_user(user, container).run(
        'd=$(mktemp -d) && cd $d && npm init -y >/dev/null && npm install %s%s 2>&1 && ls node_modules' % (flag, specs))


def mvn_get(user, container, coords, offline=False):
    return as_user(user, container).run('cd /tmp && mvn -B %s%s:get -Dartifact=%s 2>&1'
                                        % ('-o ' if offline else '', PLUGIN, coords))


def pip_install(user, container, package):
    venv = '/tmp/venv-%s-%s' % (user, package)
    return as_user(user, container).check_output(
        'rm -rf %s && python3 -m venv %s && %s/bin/pip install %s 2>&1' % (venv, venv, venv, package))


def uv_install(user, container, packages, offline=False):
    venv = '/tmp/uvvenv-%s' % user
    return as_user(user, container).run(
        'rm -rf {v} && UV_LINK_MODE=copy uv venv -q --python python3 {v} && UV_LINK_MODE=copy uv pip install {o}--python {v}/bin/python '
        '--index-url {i} {p} 2>&1'.format(v=venv, o='--offline ' if offline else '', i=INDEX, p=packages))


def manifest(container=BUILDER):
    import json
    h = as_root(container)
    latest = h.check_output('cat /srv/pkgcache/refs/latest')
    return latest, json.loads(h.check_output('cat /srv/pkgcache/snapshots/%s.json' % latest))
