"""Helpers shared by the molecule scenarios' testinfra tests."""

import json
import os
import re
import shlex
import subprocess
import time

import testinfra

# Where the role mounts each user's views (root's); a user's cache dir is a link to hers.
VIEWS = '/var/lib/pkgcache-views'


def as_user(user, container):
    """A testinfra host whose commands run as ``user`` inside ``container`` (docker exec -u)."""
    return testinfra.get_host('docker://%s@%s' % (user, container))


def as_root(container):
    return testinfra.get_host('docker://root@%s' % container)


def docker_restart(container, timeout=300):
    """Restart ``container`` like a reboot and wait until systemd has finished booting it (fstab replayed).

    ``systemctl is-system-running --wait`` fails at once while systemd's bus is not up yet, so it is asked again until
    it answers running or degraded; raises AssertionError naming the state after ``timeout`` seconds.
    """
    subprocess.run(['docker', 'restart', container], check=True, capture_output=True)
    deadline = time.monotonic() + timeout
    state, err = 'no answer', ''
    while time.monotonic() < deadline:
        try:
            proc = subprocess.run(['docker', 'exec', container, 'systemctl', 'is-system-running', '--wait'],
                                  capture_output=True, text=True, check=False, timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            break
        state, err = proc.stdout.strip(), proc.stderr.strip()
        if state in ('running', 'degraded'):
            return state
        time.sleep(1)
    raise AssertionError('%s did not finish booting within %d s: %r %s' % (container, timeout, state, err))


def mounted_at(user_host, path):
    """(mount point, fs type) of the mount that holds ``path``, as the user resolves it (links followed)."""
    target, fstype = user_host.check_output('findmnt -n -o TARGET,FSTYPE --target %s' % path).rsplit(None, 1)
    return target, fstype


def view_of(user, eco):
    """What mounted_at gives for a user's cache dir when her view is mounted: her view, an overlay."""
    return '%s/%s/%s' % (VIEWS, user, eco), 'overlay'


def _env():
    project = os.environ['MOLECULE_PROJECT_DIRECTORY']
    return dict(os.environ, ANSIBLE_LOAD_CALLBACK_PLUGINS='1', ANSIBLE_STDOUT_CALLBACK='json', ANSIBLE_PIPELINING='true',
                ANSIBLE_COLLECTIONS_PATH=os.path.join(project, '.cache', 'collections') + ':/usr/share/ansible/collections')


def run_module(container, module, args, check=False, diff=False):
    """Run one of the collection's modules ad hoc; return (rc, result dict)."""
    cmd = ['ansible', container, '-i', os.environ['MOLECULE_INVENTORY_FILE'], '-m', module, '-a', json.dumps(args)]
    if check:
        cmd.append('--check')
    if diff:
        cmd.append('--diff')
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=False)
    out = json.loads(proc.stdout)
    return proc.returncode, out['plays'][0]['tasks'][0]['hosts'][container]


def playbook(name, extra=None, args=()):
    """Run one of the collection's playbooks (or a path from the project's root) against the scenario's fleet.

    Returns (rc, results by task and host).
    """
    project = os.environ['MOLECULE_PROJECT_DIRECTORY']
    path = os.path.join(project, name) if '/' in name else os.path.join(project, 'playbooks', name)
    cmd = ['ansible-playbook', '-i', os.environ['MOLECULE_INVENTORY_FILE'], path]
    if extra:
        cmd += ['-e', json.dumps(extra)]
    cmd += list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=False)
    out = json.loads(proc.stdout)
    results = {}
    for play in out['plays']:
        for task in play['tasks']:
            for host, res in task['hosts'].items():
                results.setdefault(task['task']['name'].split(' : ', 1)[-1], {})[host] = res
    return proc.returncode, results


def solo_installs(user_host, packages, parallel=4):
    """``pip install <package>`` of each package on its own, as the user; return {package: pip's output}.

    Each goes into an empty ``--target`` dir (pip then resolves and installs every dependency, as in a fresh venv),
    ``parallel`` at a time, from one venv's pip and in one command on the host.
    """
    names = ' '.join(shlex.quote(p) for p in packages)
    script = """set -e
d=$(mktemp -d /tmp/hitrate.XXXXXX)
python3 -m venv "$d/venv"
for p in %s; do echo "$p"; done | xargs -P %d -I{} sh -c \
  '"$1/venv/bin/pip" install --no-color --target "$1/t-$2" "$2" >"$1/$2.log" 2>&1; echo $? >"$1/$2.rc"' sh "$d" {}
for p in %s; do echo "=== $p $(cat "$d/$p.rc")"; cat "$d/$p.log"; done
rm -rf "$d"
""" % (names, parallel, names)
    out = user_host.check_output('sh -c %s' % shlex.quote(script))
    results = {}
    for part in out.split('=== ')[1:]:
        head, dummy, log = part.partition('\n')
        package, rc = head.rsplit(' ', 1)
        assert rc == '0', 'pip install %s failed:\n%s' % (package, log)
        results[package] = log
    assert sorted(results) == sorted(packages), out
    return results


def downloads(out):
    """Package files pip fetched from the index (it prints 'Downloading <file>' for each, 'Using cached' otherwise)."""
    return re.findall(r'^\s*Downloading (\S+)', out, re.M)
