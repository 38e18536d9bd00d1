"""Helpers for the lifecycle scenario."""

import os
import sys

sys.path.insert(0, os.path.join(os.environ['MOLECULE_PROJECT_DIRECTORY'], 'tests', 'fleet'))
from fleetlib import as_root, as_user, playbook  # noqa: E402,F401 pylint: disable=unused-import

BUILDER = 'pkgcache-r-builder'
REPL1, REPL2 = 'pkgcache-r-repl1', 'pkgcache-r-repl2'
V1 = ['six', 'idna', 'packaging', 'docopt']
V2 = V1 + ['attrs', 'pyparsing']


def lower_of(user, container):
    """The snapshot id under the user's overlay, read as that user from mountinfo."""
    opts = as_user(user, container).check_output('findmnt -n -o OPTIONS --target ~/.cache/pip')
    lower = [o for o in opts.split(',') if o.startswith('lowerdir=')][0]
    return lower.split('/trees/')[1].split('/')[0]


def pip_install(user, container, package):
    h = as_user(user, container)
    venv = '/tmp/venv-%s-%s' % (user, package)
    return h.check_output('rm -rf %s && python3 -m venv %s && %s/bin/pip install %s 2>&1' % (venv, venv, venv, package))
