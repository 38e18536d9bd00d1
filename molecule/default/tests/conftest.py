"""Shared helpers for the fleet tests: hosts as repl users, ad-hoc module runs."""

import json
import os
import subprocess

import pytest
import testinfra

BUILDER = 'pkgcache-builder'
REPL_HOSTS = ['pkgcache-repl1', 'pkgcache-repl2']
USERS = ['alice', 'bob', 'carol']
INDEX = 'http://127.0.0.1:8371'
STORE_URL = 'http://127.0.0.1:8370'


def as_user(user, container):
    """A testinfra host whose commands run as ``user`` inside ``container`` (docker exec -u)."""
    return testinfra.get_host('docker://%s@%s' % (user, container))


def as_root(container):
    return testinfra.get_host('docker://root@%s' % container)


def run_module(container, module, args, check=False, diff=False):
    """Run one of the collection's modules ad hoc; return (rc, result dict)."""
    inventory = os.environ['MOLECULE_INVENTORY_FILE']
    cmd = ['ansible', container, '-i', inventory, '-m', module, '-a', json.dumps(args)]
    if check:
        cmd.append('--check')
    if diff:
        cmd.append('--diff')
    project = os.environ['MOLECULE_PROJECT_DIRECTORY']
    env = dict(os.environ, ANSIBLE_LOAD_CALLBACK_PLUGINS='1', ANSIBLE_STDOUT_CALLBACK='json',
               ANSIBLE_COLLECTIONS_PATH=os.path.join(project, '.cache', 'collections') + ':/usr/share/ansible/collections')
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    out = json.loads(proc.stdout)
    result = out['plays'][0]['tasks'][0]['hosts'][container]
    return proc.returncode, result


def docker_restart(container):
    subprocess.run(['docker', 'restart', container], check=True, capture_output=True)
    as_root(container).run('systemctl is-system-running --wait')


@pytest.fixture(scope='session')
def manifest():
    """The active snapshot's manifest, read on the builder."""
    b = as_root(BUILDER)
    snap_id = b.check_output('cat /srv/pkgcache/refs/latest').strip()
    return json.loads(b.check_output('cat /srv/pkgcache/snapshots/%s.json' % snap_id))
