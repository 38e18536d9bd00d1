"""Helpers for the attacks scenario: the repl users, the two snapshots, switches by hand."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.environ['MOLECULE_PROJECT_DIRECTORY'], 'tests', 'fleet'))
from fleetlib import VIEWS, as_root, as_user, docker_restart, mounted_at, playbook, run_module, view_of  # noqa: E402,F401 pylint: disable=unused-import

HOST = 'pkgcache-attack'
USERS = {'alice': 2001, 'bob': 2002, 'mallory': 2003, 'j.doe': 2004}
VICTIMS = ['alice', 'bob', 'j.doe']


def ids():
    return json.loads(as_root(HOST).check_output('cat /srv/pkgcache-store/ids.json'))


def tree(snap_id):
    return '/var/lib/pkgcache/trees/' + snap_id


def switch(snap_id, **kw):
    """Run overlay_mounts for every user on ``snap_id``'s tree; return (rc, result)."""
    args = {'repls': [{'name': n, 'uid': u, 'gid': u} for n, u in USERS.items()], 'ecosystems': ['pip', 'npm'],
            'lower_root': tree(snap_id)}
    args.update(kw)
    return run_module(HOST, 'pkgcache.overlay.overlay_mounts', args)


def lower_of(user, eco='pip'):
    opts = as_root(HOST).check_output('findmnt -n -o OPTIONS %s/%s/%s' % (VIEWS, user, eco))
    return [o.split('=', 1)[1] for o in opts.split(',') if o.startswith('lowerdir=')][0]


def start_as(user, script, name, *args):
    """Start a Python ``script`` as ``user`` in the background; its output goes to /tmp/<name>.log."""
    h = as_user(user, HOST)
    h.check_output("cat > /tmp/%s.py <<'EOF'\n%s\nEOF" % (name, script))
    h.check_output("rm -f /tmp/%s.stop /tmp/%s.log && sh -c 'nohup python3 /tmp/%s.py %s > /tmp/%s.log 2>&1 & echo $! > /tmp/%s.pid'"
                   % (name, name, name, ' '.join(args), name, name))


def stop(user, name, timeout=30):
    """Stop a script started with start_as and return its last output line (it prints a JSON summary)."""
    h = as_user(user, HOST)
    h.check_output('touch /tmp/%s.stop' % name)
    h.check_output('p=$(cat /tmp/%s.pid); for i in $(seq %d); do kill -0 "$p" 2>/dev/null || exit 0; sleep 1; done; exit 1'
                   % (name, timeout))
    return json.loads(h.check_output('tail -1 /tmp/%s.log' % name))
