"""Helpers for the lifecycle scenario: users, playbook runs with JSON results."""

import json
import os
import subprocess

import testinfra

BUILDER = 'pkgcache-r-builder'
REPL1, REPL2 = 'pkgcache-r-repl1', 'pkgcache-r-repl2'
V1 = ['six', 'idna', 'packaging', 'docopt']
V2 = V1 + ['attrs', 'pyparsing']


def as_user(user, container):
    return testinfra.get_host('docker://%s@%s' % (user, container))


def as_root(container):
    return testinfra.get_host('docker://root@%s' % container)


def playbook(name, extra=None):
    """Run one of the collection's playbooks against the scenario's fleet; return (rc, results by task and host)."""
    project = os.environ['MOLECULE_PROJECT_DIRECTORY']
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK='json',
               ANSIBLE_COLLECTIONS_PATH=os.path.join(project, '.cache', 'collections') + ':/usr/share/ansible/collections')
    cmd = ['ansible-playbook', '-i', os.environ['MOLECULE_INVENTORY_FILE'], os.path.join(project, 'playbooks', name)]
    if extra:
        cmd += ['-e', json.dumps(extra)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    out = json.loads(proc.stdout)
    results = {}
    for play in out['plays']:
        for task in play['tasks']:
            for host, res in task['hosts'].items():
                results.setdefault(task['task']['name'].split(' : ', 1)[-1], {})[host] = res
    return proc.returncode, results


def lower_of(user, container):
    """The snapshot id under the user's overlay, read as that user from mountinfo."""
    opts = as_user(user, container).check_output('findmnt -n -o OPTIONS --target ~/.cache/pip')
    lower = [o for o in opts.split(',') if o.startswith('lowerdir=')][0]
    return lower.split('/trees/')[1].split('/')[0]


def pip_install(user, container, package):
    h = as_user(user, container)
    venv = '/tmp/venv-%s-%s' % (user, package)
    return h.check_output('rm -rf %s && python3 -m venv %s && %s/bin/pip install %s 2>&1' % (venv, venv, venv, package))
