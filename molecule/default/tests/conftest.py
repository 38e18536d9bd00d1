"""Shared helpers for the fleet tests: hosts as repl users, ad-hoc module and playbook runs."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.environ['MOLECULE_PROJECT_DIRECTORY'], 'tests', 'fleet'))
from fleetlib import as_root, as_user, docker_restart, mounted_at, playbook, run_module, view_of  # noqa: E402,F401 pylint: disable=unused-import

BUILDER = 'pkgcache-builder'
REPL_HOSTS = ['pkgcache-repl1', 'pkgcache-repl2']
USERS = ['alice', 'bob', 'carol']
INDEX = 'http://127.0.0.1:8371'
STORE_URL = 'http://127.0.0.1:8370'


@pytest.fixture(scope='session')
def manifest():
    """The active snapshot's manifest, read on the builder."""
    b = as_root(BUILDER)
    snap_id = b.check_output('cat /srv/pkgcache/refs/latest').strip()
    return json.loads(b.check_output('cat /srv/pkgcache/snapshots/%s.json' % snap_id))
