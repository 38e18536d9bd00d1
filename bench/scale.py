"""Benchmark 3: per-user mounts at scale, in one systemd container, through the same docker connection.

The mount role (one overlay_mounts call for all users) against what an
operator would write without it: an ansible.builtin.file loop for upper and
work plus an ansible.posix.mount loop, doing the same job (dirs, fstab lines,
mounts). Each is timed on its first run and on a re-run, on a clean host.
"""

import json
import os
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTAINER = 'pkgcache-bench-host'
IMAGE = os.environ.get('PKGCACHE_IMAGE', 'pkgcache-bookworm-systemd:latest')
LOWER = '/var/lib/pkgcache/trees/' + 'b' * 64

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


def play(path, users, work):
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
    return took


def run(work, users_list, rounds):
    os.makedirs(work, exist_ok=True)
    role, loop = os.path.join(work, 'bench-role.yml'), os.path.join(work, 'bench-loop.yml')
    with open(role, 'w') as f:
        f.write(ROLE_PLAY)
    with open(loop, 'w') as f:
        f.write(LOOP_PLAY)
    start(max(users_list))
    results = {}
    try:
        for n in users_list:
            users = [{'name': 'bu%d' % i, 'uid': 3000 + i, 'gid': 3000 + i, 'home': '/home/bu%d' % i} for i in range(1, n + 1)]
            r = {'role': ([], []), 'loop': ([], [])}
            for dummy in range(rounds):
                for key, path in (('role', role), ('loop', loop)):
                    reset()
                    r[key][0].append(play(path, users, work))
                    r[key][1].append(play(path, users, work))
                    # The role mounts at root's views (linked from the homes); the loop baseline in the homes.
                    mounted = int(dexec("findmnt -rn -t overlay | grep -cE '/home/bu|/pkgcache-views/bu' || true").stdout.strip() or 0)
                    if mounted != n:
                        raise RuntimeError('%s left %d of %d users mounted' % (key, mounted, n))
            results[n] = r
    finally:
        subprocess.run(['docker', 'rm', '-f', CONTAINER], capture_output=True, check=False)
        subprocess.run(['docker', 'volume', 'rm', CONTAINER + '-scratch'], capture_output=True, check=False)
    return results
