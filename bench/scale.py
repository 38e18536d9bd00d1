"""Benchmark 3: per-user mounts at scale, in one systemd container, through the same docker connection.

The mount role (one overlay_mounts call for all users, who are given by name
only: the module reads uid, gid and home on the host) against what an
operator would write without it: an ansible.builtin.file loop for upper and
work plus an ansible.posix.mount loop, doing the same job (dirs, fstab lines,
mounts). Each is timed on its first run and on a re-run, on a clean host.

The loop takes about 2 s a user, so sizes above LOOP_MAX_USERS run the role
alone (``python3 bench/scale.py --users 1000``): the 100-user loop row stays the
side-by-side baseline. That adds the size's row to
bench/results/mounts-at-scale.md, its raw values to mounts-at-scale-role.json.
"""

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTAINER = 'pkgcache-bench-host'
IMAGE = os.environ.get('PKGCACHE_IMAGE', 'pkgcache-bookworm-systemd:latest')
LOWER = '/var/lib/pkgcache/trees/' + 'b' * 64
LOOP_MAX_USERS = 100
RESULTS = os.path.join(ROOT, 'bench', 'results')

ROLE_PLAY = '''
- hosts: all
  gather_facts: false
  roles:
    - role: pkgcache.overlay.mount
      vars:
        mount_lower_root: %s
        mount_backup_fstab: false
        mount_repls: "{{ bench_users }}"
''' % LOWER

LOOP_PLAY = '''
- hosts: all
  gather_facts: false
  tasks:
    - name: Upper and work dirs
      ansible.builtin.file:
        path: "/mnt/scratch/{{ item.0.name }}/cacache_pip/{{ item.1 }}"
        state: directory
        owner: "{{ item.0.uid }}"
        group: "{{ item.0.gid }}"
        mode: "0700"
      loop: "{{ bench_users | product(['upper', 'work']) | list }}"
    - name: Overlay mounts
      ansible.posix.mount:
        path: "/home/{{ item.name }}/.cache/pip"
        src: overlay
        fstype: overlay
        opts: "lowerdir=%s/pip,upperdir={{ s }}/upper,workdir={{ s }}/work,index=off,xino=off,nosuid,nodev"
        state: mounted
      vars:
        s: "/mnt/scratch/{{ item.name }}/cacache_pip"
      loop: "{{ bench_users }}"
''' % LOWER


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def dexec(script):
    return sh(['docker', 'exec', CONTAINER, 'bash', '-c', script])


def start(max_users):
    subprocess.run(['docker', 'rm', '-f', CONTAINER], capture_output=True, check=False)
    subprocess.run(['docker', 'volume', 'rm', CONTAINER + '-scratch'], capture_output=True, check=False)
    sh(['docker', 'run', '-d', '--name', CONTAINER, '--network', 'host', '--cap-add', 'SYS_ADMIN',
        '--security-opt', 'apparmor=unconfined', '--tmpfs', '/run', '--tmpfs', '/run/lock',
        '-v', '/sys/fs/cgroup:/sys/fs/cgroup:ro', '-v', CONTAINER + '-scratch:/mnt/scratch', IMAGE, '/sbin/init'])
    subprocess.run(['docker', 'exec', CONTAINER, 'systemctl', 'is-system-running', '--wait'], capture_output=True, check=False)
    dexec('for i in $(seq 1 %d); do useradd -m -u $((3000+i)) -U bu$i; done; '
          'mkdir -p %s/pip/http && echo hello > %s/pip/http/x && chmod -R a+rX %s && cp /etc/fstab /root/fstab.orig'
          % (max_users, LOWER, LOWER, LOWER))


def reset():
    dexec('umount -t overlay -a 2>/dev/null; cp /root/fstab.orig /etc/fstab; rm -rf /mnt/scratch/* /home/bu*/.cache '
          '/var/lib/pkgcache-views')


def play(path, users, work, idempotent=False):
    extra = os.path.join(work, 'bench-users.json')
    with open(extra, 'w') as f:
        json.dump({'bench_users': users}, f)
    inv = os.path.join(work, 'bench-inventory.ini')
    with open(inv, 'w') as f:
        f.write('%s ansible_connection=community.docker.docker ansible_python_interpreter=/usr/bin/python3\n' % CONTAINER)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, '.cache', 'collections') + ':/usr/share/ansible/collections',
               ANSIBLE_ROLES_PATH=os.path.join(ROOT, 'roles'))
    start_t = time.monotonic()
    proc = subprocess.run(['ansible-playbook', '-i', inv, path, '-e', '@' + extra], env=env, capture_output=True, text=True, check=False)
    took = time.monotonic() - start_t
    if proc.returncode != 0:
        raise RuntimeError('%s failed:\n%s' % (path, proc.stdout[-3000:]))
    if idempotent and not re.search(r'changed=0\s', proc.stdout):
        raise RuntimeError('the re-run of %s changed something:\n%s' % (path, proc.stdout[-3000:]))
    return took


def run(work, users_list, rounds, loop=True):
    """{users: {'role': ([first runs], [re-runs]), 'loop': (...)}}; without ``loop`` the role alone."""
    os.makedirs(work, exist_ok=True)
    role, loop_play = os.path.join(work, 'bench-role.yml'), os.path.join(work, 'bench-loop.yml')
    with open(role, 'w') as f:
        f.write(ROLE_PLAY)
    with open(loop_play, 'w') as f:
        f.write(LOOP_PLAY)
    start(max(users_list))
    results = {}
    try:
        for n in users_list:
            given = {'role': [{'name': 'bu%d' % i} for i in range(1, n + 1)],
                     'loop': [{'name': 'bu%d' % i, 'uid': 3000 + i, 'gid': 3000 + i} for i in range(1, n + 1)]}
            kinds = (('role', role), ('loop', loop_play)) if loop else (('role', role),)
            r = dict((key, ([], [])) for key, dummy in kinds)
            for dummy in range(rounds):
                for key, path in kinds:
                    reset()
                    r[key][0].append(play(path, given[key], work))
                    r[key][1].append(play(path, given[key], work, idempotent=key == 'role'))
                    # The role mounts at root's views (linked from the homes); the loop baseline in the homes.
                    mounted = int(dexec("findmnt -rn -t overlay | grep -cE '/home/bu|/pkgcache-views/bu' || true").stdout.strip() or 0)
                    if mounted != n:
                        raise RuntimeError('%s left %d of %d users mounted' % (key, mounted, n))
            results[n] = r
    finally:
        subprocess.run(['docker', 'rm', '-f', CONTAINER], capture_output=True, check=False)
        subprocess.run(['docker', 'volume', 'rm', CONTAINER + '-scratch'], capture_output=True, check=False)
    return results


def _fmt(values):
    return '%.2fs (%.2f..%.2f)' % (statistics.median(values), min(values), max(values))


def role_row(n, r, rounds, run_at):
    """The table row of a size measured without the loop (its columns point at the 100-user baseline)."""
    return '| %d | %s | %s | not run (baseline: the 100-user row) | not run | - | - | %d | %s |' % (
        n, _fmt(r['role'][0]), _fmt(r['role'][1]), rounds, run_at)


def main():
    ap = argparse.ArgumentParser(description='The mount role alone for a large user count (the loop baseline is the '
                                             '100-user row of bench/run.py --only scale).')
    ap.add_argument('--users', type=int, default=1000)
    ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--work', default='/tmp/pkgcache-bench-scale')
    args = ap.parse_args()
    if args.users <= LOOP_MAX_USERS:
        ap.error('up to %d users the loop runs too: bench/run.py --only scale --users %d' % (LOOP_MAX_USERS, args.users))
    run_at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    load = os.getloadavg()[0]
    r = run(args.work, [args.users], args.rounds, loop=False)[args.users]
    load = (load, os.getloadavg()[0])
    path = os.path.join(RESULTS, 'mounts-at-scale-role.json')
    results = {}
    if os.path.exists(path):
        with open(path) as f:
            results = json.load(f)
    machine = 'Machine: %s, %s, %d cores; %s. Run %s; load average %.1f at the start, %.1f at the end.' % (
        platform.node(), platform.machine(), os.cpu_count(), platform.platform(), run_at, load[0], load[1])
    results[str(args.users)] = dict(r, rounds=args.rounds, run=run_at, machine=machine)
    with open(path, 'w') as f:
        json.dump(results, f, indent=1, sort_keys=True)
    table = os.path.join(RESULTS, 'mounts-at-scale.md')
    with open(table) as f:
        lines = f.read().splitlines()
    row = role_row(args.users, r, args.rounds, run_at)
    note = '(%d users: the mount role alone, `python3 bench/scale.py --users %d`)' % (args.users, args.users)
    lines = [l for l in lines if not l.startswith('| %d |' % args.users) and not l.endswith(note)]
    last = max(i for i, l in enumerate(lines) if l.startswith('|'))
    lines.insert(last + 1, row)
    lines.append('- %s %s' % (machine, note))
    with open(table, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print(row)


if __name__ == '__main__':
    main()
