"""A repl user attacks the mounts: real race loops as that user, a real reboot, and the in-place migration.

The tests run in order; each leaves the host as the next expects it. The
attacker is mallory; alice, bob and j.doe are the victims. A root-owned
directory stands in for /etc/profile.d (where an overlay with mallory's
writable upper would let her run code in root's login shell).
"""

import json
import time

from conftest import (HOST, USERS, VICTIMS, VIEWS, as_root, as_user, docker_restart, ids, lower_of, mounted_at, playbook,
                      run_module, start_as, stop, switch, tree, view_of)

PROFILE_D = '/etc/attack-target'
APP = '/opt/attack-app'

# Swap ~/.npm and ~/.cache for symlinks to a root-owned dir, as fast as possible, until told to stop.
RACE_HOME = r'''
import json, os, sys, time
home, target = os.path.expanduser('~'), sys.argv[1]
deadline, stopfile = time.time() + float(sys.argv[2]), '/tmp/race_home.stop'
swaps = 0
while time.time() < deadline and not os.path.exists(stopfile):
    for name in ('.npm', '.cache'):
        path = os.path.join(home, name)
        try:
            os.rename(path, path + '.real')
            os.symlink(target, path)
            swaps += 1
            os.unlink(path)
            os.rename(path + '.real', path)
        except OSError:
            pass
print(json.dumps({'swaps': swaps}))
'''

# Try to swap the scratch dirs (work, upper, cacache_<eco>) for symlinks to a root-owned app dir.
RACE_SCRATCH = r'''
import errno, json, os, sys, time
target = sys.argv[1]
deadline, stopfile = time.time() + float(sys.argv[2]), '/tmp/race_scratch.stop'
base = '/mnt/scratch/mallory'
tries, won, denied = 0, 0, 0
while time.time() < deadline and not os.path.exists(stopfile):
    for path in (base + '/cacache_pip/work', base + '/cacache_pip/upper', base + '/cacache_npm', base):
        tries += 1
        try:
            os.rename(path, path + '.x')
            os.symlink(target, path)
            won += 1
        except OSError as exc:
            denied += exc.errno in (errno.EACCES, errno.EPERM)
print(json.dumps({'tries': tries, 'won': won, 'denied': denied}))
'''

# Keep reading (and listing) the cache through the view from inside it, across a lazy switch and a GC.
READER = r'''
import json, os, sys, time
os.chdir(os.path.expanduser('~/.cache/pip/http'))
stopfile, wrote = '/tmp/reader.stop', False
reads, failures = 0, []
while not os.path.exists(stopfile):
    try:
        names = os.listdir('0/0')
        for name in names:
            with open(os.path.join('0/0', name), 'rb') as f:
                f.read()
        reads += 1
        if not names:
            failures.append('empty dir')
    except OSError as exc:
        failures.append(str(exc))
    if os.path.exists('/tmp/reader.write') and not wrote:
        with open('written-in-the-detached-view.txt', 'w') as f:
            f.write('bob wrote this after the switch\n')
        wrote = True
    time.sleep(0.02)
print(json.dumps({'reads': reads, 'failures': failures[:5], 'wrote': wrote}))
'''


def snapshot_of_dir(path):
    return as_root(HOST).check_output('stat -c "%%u %%g %%a" %s && ls -la --time-style=+ %s | sha256sum' % (path, path))


def no_mount_under(path):
    out = as_root(HOST).check_output('findmnt -rn -o TARGET')
    return [t for t in out.splitlines() if t == path or t.startswith(path + '/')] == []


def test_0_migration_kept_every_users_data_and_left_no_mount_in_a_home():
    root = as_root(HOST)
    assert root.check_output("findmnt -rn -t overlay -o TARGET | grep '^/home' || true") == ''
    for user in USERS:
        h = as_user(user, HOST)
        for eco, link in (('pip', '~/.cache/pip'), ('npm', '~/.npm')):
            assert h.check_output('readlink %s' % link) == '%s/%s/%s' % (VIEWS, user, eco)
            assert mounted_at(h, link) == view_of(user, eco)
            if user != 'j.doe':  # j.doe is new: no earlier layout
                assert h.check_output('cat %s/users-own-%s.txt' % (link, eco)) == '%s kept this %s file' % (user, eco)
            assert h.check_output('cat %s/%s' % (link, 'http/0/0/changes' if eco == 'pip' else '_cacache/index-v5/00/bucket'))
    fstab = root.check_output('cat /etc/fstab')
    old = root.check_output('cat /root/fstab.old-layout')
    assert fstab.startswith(old.split('# BEGIN pkgcache.overlay mounts')[0])  # the operator's lines, byte for byte
    block = fstab.split('# BEGIN pkgcache.overlay mounts')[1]
    assert '/home/' not in block and block.count('overlay %s/' % VIEWS) == 2 * len(USERS)
    # The scratch chain is root's now; only upper is the user's.
    assert root.check_output('stat -c "%U %a" /mnt/scratch/alice /mnt/scratch/alice/cacache_pip '
                             '/mnt/scratch/alice/cacache_pip/work /mnt/scratch/alice/cacache_pip/upper').split('\n') == [
        'root 700', 'root 700', 'root 700', 'alice 700']


def test_1_mount_target_swap_race_during_switches():
    """mallory swaps ~/.npm and ~/.cache for symlinks to a root dir in a tight loop while root switches everyone."""
    root = as_root(HOST)
    root.check_output('mkdir -p %s && echo root > %s/keep && chmod 755 %s' % (PROFILE_D, PROFILE_D, PROFILE_D))
    before = snapshot_of_dir(PROFILE_D)
    v1, v2 = ids()['v1'], ids()['v2']
    rc, res = run_module(HOST, 'pkgcache.overlay.snapshot_sync', {'url': 'http://127.0.0.1:8374', 'snapshot': v2})
    assert rc == 0, res
    order = (v1, v2) if lower_of('alice') == tree(v2) + '/pip' else (v2, v1)
    start_as('mallory', RACE_HOME, 'race_home', PROFILE_D, '120')
    try:
        for n in range(6):
            rc, res = switch(order[n % 2])
            assert rc == 0, res.get('msg')
            for user in VICTIMS:
                assert res['users'][user] == {'pip': 'switched', 'npm': 'switched'}, res['users']
            # Her own views may fail while she races (her links); a view that failed to switch in one round is
            # 'already' on the next round's snapshot. Whatever she does, the others switch and nothing lands in /etc.
            assert set(res['users']['mallory'].values()) <= {'switched', 'failed', 'already'}, res['users']['mallory']
    finally:
        summary = stop('mallory', 'race_home')
        as_user('mallory', HOST).run('cd ~ && for d in .npm .cache; do [ -L $d ] && [ -e $d.real ] && rm $d && mv $d.real $d; done; true')
    assert summary['swaps'] > 100, summary  # the race really ran
    assert no_mount_under(PROFILE_D)
    assert snapshot_of_dir(PROFILE_D) == before
    for user in USERS:
        assert lower_of(user) == tree(order[1]) + '/pip'


def test_2_reboot_with_a_planted_parent_mounts_nothing_on_it_and_one_broken_user_blocks_nobody():
    root = as_root(HOST)
    mallory = as_user('mallory', HOST)
    before = snapshot_of_dir(PROFILE_D)
    mallory.check_output('mv ~/.cache ~/.cache.real && ln -s %s ~/.cache && mv ~/.npm ~/.npm.real && ln -s /nonexistent ~/.npm'
                         % PROFILE_D)
    try:
        docker_restart(HOST)
        assert no_mount_under(PROFILE_D) and snapshot_of_dir(PROFILE_D) == before
        for user in VICTIMS:
            assert mounted_at(as_user(user, HOST), '~/.cache/pip') == view_of(user, 'pip')
        # Her views are still mounted, at root's place; only her links are broken, by her.
        assert root.check_output('findmnt -n -o FSTYPE %s/mallory/pip' % VIEWS) == 'overlay'
        v1, v2 = ids()['v1'], ids()['v2']
        order = (v1, v2) if lower_of('alice') == tree(v2) + '/pip' else (v2, v1)
        rc, res = switch(order[0])
        assert rc == 0, res.get('msg')
        for user in VICTIMS:
            assert res['users'][user] == {'pip': 'switched', 'npm': 'switched'}
        # Her ~/.cache is refused by name; her dangling ~/.npm link is simply put right.
        assert res['users']['mallory'] == {'pip': 'failed', 'npm': 'switched'}
        assert '/home/mallory/.cache of repl mallory is a symlink' in res['unserved']['mallory']['pip']
        assert mallory.check_output('readlink ~/.npm') == VIEWS + '/mallory/npm'
        rc, res = switch(order[1], strict=True)
        assert rc != 0 and res['msg'] == 'repl users not served: mallory'
        assert all(res['users'][u] == {'pip': 'switched', 'npm': 'switched'} for u in VICTIMS)
        assert no_mount_under(PROFILE_D) and snapshot_of_dir(PROFILE_D) == before
    finally:
        mallory.run('cd ~ && rm -f .cache .npm && mv .cache.real .cache && mv .npm.real .npm')
    rc, res = switch(ids()['v1'])
    assert rc == 0 and res['unserved'] == {}, res


def test_3_workdir_and_upper_swap_race_never_reaches_a_root_dir():
    root = as_root(HOST)
    root.check_output('mkdir -p %s && for i in 1 2 3; do echo app > %s/file$i; done' % (APP, APP))
    before = snapshot_of_dir(APP)
    v1, v2 = ids()['v1'], ids()['v2']
    order = (v1, v2) if lower_of('alice') == tree(v2) + '/pip' else (v2, v1)
    start_as('mallory', RACE_SCRATCH, 'race_scratch', APP, '120')
    try:
        for n in range(4):
            rc, res = switch(order[n % 2])
            assert rc == 0 and res['users']['mallory'] == {'pip': 'switched', 'npm': 'switched'}, res
    finally:
        summary = stop('mallory', 'race_scratch')
    assert summary['tries'] > 100 and summary['won'] == 0 and summary['denied'] == summary['tries'], summary
    assert snapshot_of_dir(APP) == before
    # Reboot: the fstab lines name root's paths only, and they all come back.
    docker_restart(HOST)
    assert snapshot_of_dir(APP) == before
    for user in USERS:
        assert mounted_at(as_user(user, HOST), '~/.npm') == view_of(user, 'npm'), user


def test_4_lazy_switch_gives_fresh_layers_and_gc_keeps_what_a_reader_still_uses():
    root = as_root(HOST)
    v1, v2 = ids()['v1'], ids()['v2']
    rc, res = switch(v1)
    assert rc == 0 and lower_of('bob') == tree(v1) + '/pip', res
    start_as('bob', READER, 'reader')
    root.check_output('for i in $(seq 50); do grep -q . /tmp/reader.pid && break; sleep 0.1; done')
    rc, res = switch(v2, lazy=True)
    assert rc == 0 and res['users']['bob']['pip'] == 'switched', res
    detached = res['detached']['bob']['pip']
    assert detached.startswith('/mnt/scratch/bob/cacache_pip/detached-')
    # The new view has fresh layers; the detached overlay keeps the old ones, moved aside.
    opts = root.check_output('findmnt -n -o OPTIONS %s/bob/pip' % VIEWS)
    assert 'upperdir=/mnt/scratch/bob/cacache_pip/upper,' in opts and 'lowerdir=%s/pip' % tree(v2) in opts
    assert root.file(detached + '/upper/users-own-pip.txt').exists
    # GC with nothing else to keep: v1 stays, the detached overlay still reads it.
    rc, gc = run_module(HOST, 'pkgcache.overlay.snapshot_gc', {'keep': 0})
    assert rc == 0 and gc['kept'].get(v1) == 'used by a lazily detached overlay', gc
    assert root.file(tree(v1) + '/pip/http/0/0/changes').exists
    # bob's process writes through its old view after the switch.
    root.check_output('touch /tmp/reader.write && chmod 666 /tmp/reader.write')
    root.check_output('for i in $(seq 100); do [ -e %s/upper/http/written-in-the-detached-view.txt ] && exit 0; sleep 0.1; done; exit 1'
                      % detached)
    summary = stop('bob', 'reader')
    assert summary['reads'] > 20 and summary['failures'] == [] and summary['wrote'], summary
    assert root.file(detached + '/upper/http/written-in-the-detached-view.txt').exists
    # Once nothing holds it, the next run folds the old upper into the new one: nothing bob wrote is lost.
    rc, res = switch(v2)
    assert rc == 0 and res['users']['bob']['pip'] == 'merged' and res['merged']['bob']['pip'] >= 2, res
    bob = as_user('bob', HOST)
    assert bob.check_output('cat ~/.cache/pip/http/written-in-the-detached-view.txt') == 'bob wrote this after the switch'
    assert bob.check_output('cat ~/.cache/pip/users-own-pip.txt') == 'bob kept this pip file'
    assert not root.file(detached).exists
    assert root.check_output('ls /var/lib/pkgcache/detached') == ''
    rc, res = switch(v2)
    assert rc == 0 and not res['changed'], res
    rc, gc = run_module(HOST, 'pkgcache.overlay.snapshot_gc', {'keep': 0})
    assert rc == 0 and gc['removed'] == [v1], gc


def test_5_compaction_never_touches_an_opaque_dir():
    """alice deleted a cache dir and fetched the same files again: her upper dir is opaque, and compaction keeps it."""
    v1, v2 = ids()['v1'], ids()['v2']
    rc, res = run_module(HOST, 'pkgcache.overlay.snapshot_sync',
                         {'url': 'http://127.0.0.1:8374', 'snapshot': v1, 'allow_downgrade': True})
    assert rc == 0, res
    alice = as_user('alice', HOST)
    alice.check_output('rm -rf ~/.cache/pip/http/1 && mkdir ~/.cache/pip/http/1 && cp -r /mnt/cacache/pip/http/1/. ~/.cache/pip/http/1/')
    count = alice.check_output('find ~/.cache/pip/http/1/ -type f | wc -l')
    assert int(count) > 3
    assert as_root(HOST).check_output('python3 -c "import os;print(os.getxattr(\'/mnt/scratch/alice/cacache_pip/upper/http/1\','
                                      '\'trusted.overlay.opaque\').decode())"') == 'y'
    rc, res = switch(v1, compact=True)
    assert rc == 0 and res['users']['alice']['pip'] == 'switched', res
    assert alice.check_output('find ~/.cache/pip/http/1/ -type f | wc -l') == count


HOSTILE = r'''
import os
base = os.path.expanduser('~/.cache/pip')
os.symlink('/root', os.path.join(base, 'rootlink'))
os.symlink('/mnt/scratch/bob/cacache_pip/upper', os.path.join(base, 'boblink'))
fd = os.open(base, os.O_RDONLY)
os.mkdir('deep', dir_fd=fd)
cur = os.open('deep', os.O_RDONLY, dir_fd=fd)
for _ in range(1500):
    os.mkdir('d', dir_fd=cur)
    nxt = os.open('d', os.O_RDONLY, dir_fd=cur)
    os.close(cur)
    cur = nxt
os.makedirs(os.path.join(base, 'sparse'))
for i in range(40):
    with open(os.path.join(base, 'sparse', 'big%02d.whl' % i), 'wb') as f:
        f.truncate(256 << 20)
bucket = os.path.expanduser('~/.npm/_cacache/index-v5/ff/ff')
os.makedirs(bucket, exist_ok=True)
with open(os.path.join(bucket, 'huge'), 'wb') as f:
    for _ in range(83):
        f.write(b'a' * (1 << 20))
'''


def test_6_a_hostile_upper_does_not_break_the_scans_of_root():
    """mallory fills her own view with what crashed or bloated the root walks before; the others are still counted."""
    as_user('mallory', HOST).check_output("python3 - <<'EOF'\n%s\nEOF" % HOSTILE)
    try:
        for eco in ('pip', 'npm'):
            rc, res = run_module(HOST, 'pkgcache.overlay.package_popularity', {
                'ecosystem': eco, 'top': 0,
                'sources': [{'type': 'uppers', 'scratch_root': '/mnt/scratch', 'lower_root': tree(ids()['v1'])}]})
            assert rc == 0, res.get('msg')
            assert len(json.dumps(res)) < 256 << 10
            scan = list(res['upper_scans'].values())[0]
            assert scan['users'] >= 3, scan
            assert scan['walk']['bytes_read'] < 64 << 20, scan
        rc, res = run_module(HOST, 'pkgcache.overlay.snapshot_status', {'store': '/var/lib/pkgcache'})
        assert rc == 0, res.get('msg')
        assert len(json.dumps(res)) < 256 << 10
        assert as_root(HOST).check_output('stat -c %U /root') == 'root'
    finally:
        as_user('mallory', HOST).run('rm -rf ~/.cache/pip/rootlink ~/.cache/pip/boblink ~/.cache/pip/deep ~/.cache/pip/sparse '
                                     '~/.npm/_cacache/index-v5/ff/ff')


# The login hook (pam_exec runs `pkgcache-host login` for PAM_USER) and pkgcache-view@NAME: users with a uid in
# 3000-3999 are repl users by the policy (mount_repl_uid_range), with no inventory entry.
RACE_LOGIN = RACE_HOME.replace('/tmp/race_home.stop', '/tmp/race_login.stop')


def new_user(name, uid):
    as_root(HOST).check_output('id %s >/dev/null 2>&1 || useradd -m -u %d -s /bin/bash %s' % (name, uid, name))
    as_user(name, HOST).check_output('mkdir -p ~/.cache ~/.npm')


def set_current(snap_id):
    """Point the host's active snapshot at ``snap_id`` (its tree is there), as a sync would."""
    as_root(HOST).check_output('ln -sfn trees/%s /var/lib/pkgcache/current.test && mv -T /var/lib/pkgcache/current.test '
                               '/var/lib/pkgcache/current' % snap_id)


def mount_ids():
    """{view target: [mount ids]} of every mount under the views root."""
    out = {}
    for line in as_root(HOST).check_output('findmnt -rn -o TARGET,ID').splitlines():
        target, mid = line.rsplit(' ', 1)
        if target.startswith(VIEWS + '/'):
            out.setdefault(target, []).append(mid)
    return out


def failed_serves():
    prom = as_root(HOST).check_output('cat /var/lib/node_exporter/pkgcache_host.prom')
    return int(prom.split('pkgcache_host_serve_total{outcome="failed"} ')[1].split()[0])


def both_trees():
    v1, v2 = ids()['v1'], ids()['v2']
    for v in (v1, v2):
        if not as_root(HOST).file(tree(v)).is_directory:
            rc, res = run_module(HOST, 'pkgcache.overlay.snapshot_sync',
                                 {'url': 'http://127.0.0.1:8374', 'snapshot': v, 'allow_downgrade': True})
            assert rc == 0, res
    return v1, v2


def test_7_a_user_racing_her_own_login_gets_her_views_and_nothing_lands_in_a_root_dir():
    """eve swaps ~/.cache and ~/.npm for symlinks to a root dir while she logs in again and again (and each login
    switches her views: the active snapshot flips between logins)."""
    root = as_root(HOST)
    v1, v2 = both_trees()
    active = root.check_output('readlink /var/lib/pkgcache/current').split('/')[-1]
    new_user('eve', 3001)
    root.check_output('mkdir -p %s && echo root > %s/keep && chmod 755 %s' % (PROFILE_D, PROFILE_D, PROFILE_D))
    before, others = snapshot_of_dir(PROFILE_D), dict((t, m) for t, m in mount_ids().items() if '/eve/' not in t)
    start_as('eve', RACE_LOGIN, 'race_login', PROFILE_D, '120')
    try:
        for n in range(12):
            set_current((v1, v2)[n % 2])
            assert root.run('su -l eve -c true').rc == 0   # the hook never fails her login
    finally:
        summary = stop('eve', 'race_login')
        as_user('eve', HOST).run('cd ~ && for d in .npm .cache; do [ -L $d ] && [ -e $d.real ] && rm $d && mv $d.real $d; done; true')
        set_current(active)
    assert summary['swaps'] > 100, summary  # the race really ran
    assert no_mount_under(PROFILE_D) and snapshot_of_dir(PROFILE_D) == before
    # No overlay anywhere but the views (the container's own root, and /mnt/cacache bound from it, are overlays too).
    outside = root.check_output('findmnt -rn -t overlay -o TARGET | grep -v "^%s/" || true' % VIEWS).split()
    assert set(outside) <= set(['/', '/mnt/cacache']), outside
    # The others' views were not touched by her logins.
    assert dict((t, m) for t, m in mount_ids().items() if '/eve/' not in t) == others
    # Once she stops, a login serves her properly: both views, on the active snapshot, linked from her home.
    assert root.run('su -l eve -c true').rc == 0
    eve = as_user('eve', HOST)
    for eco, link in (('pip', '~/.cache/pip'), ('npm', '~/.npm')):
        assert mounted_at(eve, link) == view_of('eve', eco)
    assert lower_of('eve') == tree(active) + '/pip'
    fstab = root.check_output('cat /etc/fstab')
    assert fstab.count('%s/eve/pip ' % VIEWS) == 1
    assert '%s/eve/pip ' % VIEWS in fstab.split('# BEGIN pkgcache.overlay host-users')[1].split('# END')[0]


def test_8_a_user_cannot_have_another_user_served():
    """mallory names bob: the unit, the command and the zip refuse her (root only); her own login serves only her."""
    root = as_root(HOST)
    mallory = as_user('mallory', HOST)
    bob_before = dict((t, m) for t, m in mount_ids().items() if '/bob/' in t)
    res = mallory.run('systemctl start pkgcache-view@bob.service')
    assert res.rc != 0, res.stdout
    # The unit never started (no polkit rule lets a user start a system unit).
    assert root.check_output('systemctl show -p InactiveExitTimestampMonotonic --value pkgcache-view@bob.service') == '0'
    for cmd in ('/usr/local/sbin/pkgcache-host serve-user bob',
                'env PAM_TYPE=open_session PAM_USER=bob /usr/local/sbin/pkgcache-host login',
                'python3 /usr/local/lib/pkgcache/pkgcache_host.zip serve-user bob'):
        res = mallory.run(cmd)
        assert res.rc != 0 and 'must be run as root' in res.stderr, (cmd, res.stderr)
    assert mallory.run('cat /etc/pkgcache/host.json').rc != 0   # the policy is root's alone
    # Root's unit checks the name against the policy: no user outside it, no path.
    for name, why in (('root', 'root is never a repl user'), ('nosuchuser', 'does not exist'),
                      ('../alice', "holds '/'")):
        res = root.run('/usr/local/sbin/pkgcache-host serve-user %s' % name)
        assert res.rc == 1 and why in res.stderr, res.stderr
    # mallory's own login: she is served, bob is not touched.
    assert root.run('su -l mallory -c true').rc == 0
    assert dict((t, m) for t, m in mount_ids().items() if '/bob/' in t) == bob_before
    log = root.check_output('journalctl -t pkgcache-host --no-pager -o cat -n 3')
    assert 'login mallory' in log and 'bob' not in log.split('login mallory')[-1], log


def test_9_logins_while_ansible_runs_neither_fail_nor_double_mount():
    """An Ansible run switches everyone while users log in (eve, frank new, alice in the inventory) in a loop."""
    import threading  # pylint: disable=import-outside-toplevel
    root = as_root(HOST)
    v1, v2 = both_trees()
    active = root.check_output('readlink /var/lib/pkgcache/current').split('/')[-1]
    other = v2 if active == v1 else v1
    new_user('frank', 3002)
    failed_before = failed_serves()
    set_current(other)   # what the sync would have activated; the run below switches everyone to it
    result = {}
    worker = threading.Thread(target=lambda: result.update(zip(('rc', 'res'), switch(other))))
    worker.start()
    logins = []
    while worker.is_alive() or len(logins) < 6:
        for name in ('frank', 'alice', 'eve'):
            logins.append((name, root.run('su -l %s -c true' % name).rc))
    worker.join()
    assert result['rc'] == 0, result['res'].get('msg')
    assert [x for x in logins if x[1] != 0] == []
    # A login that met the lock was handed to pkgcache-view@NAME; wait for those to end.
    root.check_output('for i in $(seq 60); do systemctl list-units --no-legend "pkgcache-view@*" | grep -q activating '
                      '|| exit 0; sleep 1; done; exit 1')
    mounts = mount_ids()
    assert [t for t, m in mounts.items() if len(m) > 1] == [], mounts   # no view mounted twice
    for user in list(USERS) + ['eve', 'frank']:
        for eco in ('pip', 'npm'):
            assert len(mounts.get('%s/%s/%s' % (VIEWS, user, eco), [])) == 1, (user, eco, mounts)
        assert lower_of(user) == tree(other) + '/pip', user
    fstab = root.check_output('cat /etc/fstab')
    host_block = fstab.split('# BEGIN pkgcache.overlay host-users')[1].split('# END')[0]
    mounts_block = fstab.split('# BEGIN pkgcache.overlay mounts')[1].split('# END')[0]
    for user in list(USERS) + ['eve', 'frank']:
        for eco in ('pip', 'npm'):
            target = '%s/%s/%s ' % (VIEWS, user, eco)
            assert fstab.count(target) == 1, (target, fstab)
            assert target in (host_block if user in ('eve', 'frank') else mounts_block)
    assert failed_serves() == failed_before   # waiting for the lock is no failure


# A guessed package, planted in one's own pip and npm caches (through the view, so it lands in the upper).
PLANT_GUESS = r'''
import hashlib, io, json, os, zipfile
buf = io.BytesIO()
with zipfile.ZipFile(buf, 'w') as z:
    z.writestr('secretpkg/__init__.py', '')
    z.writestr('secretpkg-1.0.dist-info/METADATA', 'Metadata-Version: 2.1\nName: secretpkg\nVersion: 1.0\n\n')
d = os.path.expanduser('~/.cache/pip/http-v2/5/e/c/r/e')
os.makedirs(d, exist_ok=True)
with open(os.path.join(d, 'secretpkg.body'), 'wb') as f:
    f.write(buf.getvalue())
key = 'make-fetch-happen:request-cache:https://registry.npmjs.org/secretpkg/-/secretpkg-1.0.0.tgz'
body = json.dumps({'key': key, 'integrity': 'sha512-deadbeef', 'time': 1, 'size': 1, 'metadata': {}})
d = os.path.expanduser('~/.npm/_cacache/index-v5/5e/c7')
os.makedirs(d, exist_ok=True)
with open(os.path.join(d, 'secret'), 'a') as f:
    f.write('\n%s\t%s' % (hashlib.sha1(body.encode()).hexdigest(), body))
print(json.dumps({'planted': 2}))
'''

UNPLANT = 'rm -rf ~/.cache/pip/http-v2/5/e/c/r/e/secretpkg.body ~/.npm/_cacache/index-v5/5e/c7/secret'


def served_by_the_next_build():
    """Run the weekly flow's telemetry and ranking (molecule/attacks/telemetry_oracle.yml); return its summary."""
    rc, res = playbook('molecule/attacks/telemetry_oracle.yml')
    assert rc == 0, [r.get('msg') for task in res.values() for r in task.values() if r.get('failed')]
    return res['Show what the store would serve'][HOST]['msg']


def host_counts(summary, eco):
    """The host's counts per package of ``eco`` in a summary (0.3's telemetry was a bare mapping)."""
    return summary['telemetry'][eco].get('packages', summary['telemetry'][eco])


def test_telemetry_a_guess_planted_by_the_attacker_changes_nothing_the_store_serves():
    """mallory plants `secretpkg` in her pip and npm caches; with min_users 2 her copy is one of the two users,
    so the host's count of it exists exactly when a victim of the host has it too (the oracle of issue 24).
    What the next build would resolve and the provenance it would record must be the same either way."""
    start_as('mallory', PLANT_GUESS, 'plant_guess')
    as_user('mallory', HOST).check_output('for i in $(seq 50); do grep -q planted /tmp/plant_guess.log && exit 0; '
                                          'sleep 0.2; done; cat /tmp/plant_guess.log; exit 1')
    try:
        alone = served_by_the_next_build()
        as_user('alice', HOST).check_output("python3 - <<'EOF'\n%s\nEOF" % PLANT_GUESS)   # the victim has it too
        both = served_by_the_next_build()
    finally:
        for user in ('mallory', 'alice'):
            as_user(user, HOST).run(UNPLANT)
    # The setup really is the oracle: the host's own counts (which stay with the builder) differ.
    for eco in ('pip', 'npm'):
        assert 'secretpkg' not in host_counts(alone, eco), alone['telemetry']
        assert host_counts(both, eco)['secretpkg'] == 2, both['telemetry']
    # What the store would serve does not: the lists the build resolves, and the manifest's provenance.
    assert both['requested'] == alone['requested'], (alone['requested'], both['requested'])
    assert both['provenance'] == alone['provenance'], (alone['provenance'], both['provenance'])
    assert 'secretpkg' not in json.dumps(both['requested']) + json.dumps(both['provenance'])
    assert both['requested']['pip']['requested'] == ['six'] and both['requested']['npm']['requested'] == ['chalk@4']
    fleet = [s for s in both['provenance']['pip']['sources'] if s['type'] == 'fleet'][0]
    assert fleet == {'name': 'fleet', 'type': 'fleet', 'weight': 1.0, 'packages': 0, 'total': 0, 'hosts': 1,
                     'min_hosts': 3}


# mallory holds about 3 M fds: one process dups /dev/null up to its fd limit, then forks into ``procs`` processes.
FD_HOG = r'''
import json, os, resource, sys, time
procs, per, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
stopfile, readyfile = '/tmp/fd_hog.stop', '/tmp/fd_hog.ready'
deadline = time.time() + seconds
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
null = os.open('/dev/null', os.O_RDONLY)
held = [os.dup(null) for _ in range(min(per, hard - 64))]
children = []
for _ in range(procs - 1):
    pid = os.fork()
    if pid == 0:
        while time.time() < deadline and not os.path.exists(stopfile):
            time.sleep(0.5)
        os._exit(0)
    children.append(pid)
# The size of /proc/<pid>/fd is its number of open fds (Linux >= 6.2).
counts = [os.stat('/proc/%d/fd' % p).st_size for p in children + [os.getpid()]]
summary = {'procs': len(counts), 'fds': sum(counts), 'min_fds': min(counts)}
with open(readyfile + '.tmp', 'w') as f:
    json.dump(summary, f)
os.rename(readyfile + '.tmp', readyfile)
while time.time() < deadline and not os.path.exists(stopfile):
    time.sleep(0.2)
for pid in children:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
print(json.dumps(summary))
'''

UNUSED = '/var/lib/pkgcache/trees/' + 'e' * 64


def both_trees_on_disk():
    """Sync what is missing of v1 and v2 (GC with keep=2 then keeps both as the newest, and a switch can go either way)."""
    v1, v2 = ids()['v1'], ids()['v2']
    for snap in (v1, v2):
        if not as_root(HOST).file(tree(snap)).is_directory:
            rc, res = run_module(HOST, 'pkgcache.overlay.snapshot_sync',
                                 {'url': 'http://127.0.0.1:8374', 'snapshot': snap, 'allow_downgrade': True})
            assert rc == 0, res.get('msg')
    return v1, v2


def plant_unused_tree():
    """A tree nothing uses (no mount, no fstab line, no process, not in the history): GC must remove it."""
    as_root(HOST).check_output('rm -rf {0} && mkdir -p {0}/pip/http/0 && echo x > {0}/pip/http/0/f'.format(UNUSED))
    return UNUSED.rsplit('/', 1)[1]


def wait_ready(name, seconds=120):
    as_root(HOST).check_output('for i in $(seq %d); do [ -s /tmp/%s.ready ] && exit 0; sleep 0.2; done; exit 1'
                               % (seconds * 5, name))
    return json.loads(as_root(HOST).check_output('cat /tmp/%s.ready' % name))


def timed_gc():
    start = time.monotonic()
    rc, gc = run_module(HOST, 'pkgcache.overlay.snapshot_gc', {'keep': 2})
    return rc, gc, time.monotonic() - start


def test_20_an_fd_hog_of_one_user_does_not_stop_gc_of_an_unused_tree():
    """150 processes x ~20000 dup'd /dev/null fds of mallory's: the old scan hit its 30 s bound and kept every tree."""
    both_trees_on_disk()
    unused = plant_unused_tree()
    as_root(HOST).check_output('rm -f /tmp/fd_hog.ready')
    start = time.monotonic()
    start_as('mallory', FD_HOG, 'fd_hog', '150', '20000', '300')
    try:
        hog = wait_ready('fd_hog')
        started = time.monotonic() - start
        rc, gc, seconds = timed_gc()
    finally:
        summary = stop('mallory', 'fd_hog')
    assert summary == hog and hog['procs'] == 150 and hog['fds'] > 2500000 and hog['min_fds'] > 16000, hog  # it ran
    assert rc == 0, gc.get('msg')
    assert gc['removed'] == [unused] and not as_root(HOST).file(UNUSED).exists, gc
    cause = gc['busy_scan']['unknown'].get('2003', '')
    assert cause.startswith(('more than 100000 links for uid 2003', 'timeout after ')), gc['busy_scan']
    assert set(gc['busy_scan']['unknown']) == {'2003'}, gc['busy_scan']  # nobody else pays for her
    assert any('uid 2003' in w and 'CAP_SYS_PTRACE' not in w for w in gc.get('warnings', [])), gc.get('warnings')
    # Her budget is 2 s of the scan; the whole module run (ansible's start included) stays far below the old 30 s.
    assert seconds < 20, (seconds, started)
    print('fd hog: %d fds in %d processes, started in %.1f s; GC took %.1f s' % (hog['fds'], hog['procs'], started, seconds))


# In a user and mount namespace of her own, mallory mounts a FUSE fs (speaking the protocol on /dev/fuse itself) over
# her own view and over ~/fusemnt; a child sits inside it (cwd and dir fds). Once /tmp/fuse_attack.freeze exists the
# daemon answers nothing more: a request to it would hang whoever sent it, until the daemon dies.
FUSE_ATTACK = r'''
import ctypes, errno, json, os, resource, select, signal, struct, sys, time
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
libc = ctypes.CDLL(None, use_errno=True)
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 16384, 1 << 18
targets, seconds, nfds = sys.argv[1].split(','), float(sys.argv[2]), int(sys.argv[3])
stopfile, freezefile, readyfile = '/tmp/fuse_attack.stop', '/tmp/fuse_attack.freeze', '/tmp/fuse_attack.ready'
uid, gid = os.getuid(), os.getgid()
summary = {'mounted': [], 'answered': 0, 'dropped': 0, 'inside': None}
if libc.unshare(0x10000000 | 0x20000) != 0:
    print(json.dumps(dict(summary, error='unshare: %s' % os.strerror(ctypes.get_errno())))); sys.exit(0)
for name, data in (('setgroups', 'deny'), ('uid_map', '0 %d 1' % uid), ('gid_map', '0 %d 1' % gid)):
    with open('/proc/self/' + name, 'w') as f:
        f.write(data)
libc.mount(b'none', b'/', None, MS_REC | MS_PRIVATE, None)
fuse = os.open('/dev/fuse', os.O_RDWR)
for t in targets:
    os.makedirs(t, exist_ok=True)
    opts = 'fd=%d,rootmode=40000,user_id=0,group_id=0' % fuse
    if libc.mount(b'pkgcache-fuse', t.encode(), b'fuse', MS_NOSUID | MS_NODEV, opts.encode()) == 0:
        summary['mounted'].append(t)
    else:
        summary.setdefault('errors', []).append('%s: %s' % (t, os.strerror(ctypes.get_errno())))
ROOT_ATTR = struct.pack('=QQQQQQIIIIIIIIII', 1, 0, 0, 0, 0, 0, 0, 0, 0, 0o40755, 2, 0, 0, 0, 4096, 0)


def reply(unique, error=0, body=b''):
    os.write(fuse, struct.pack('=IiQ', 16 + len(body), -error, unique) + body)


def serve_one():
    req = os.read(fuse, 1 << 17)
    length, opcode, unique, nodeid = struct.unpack_from('=IIQQ', req)
    if os.path.exists(freezefile):
        summary['dropped'] += 1           # never answered: whoever asked waits
        return
    summary['answered'] += 1
    if opcode == 26:                      # INIT
        major, minor, readahead = struct.unpack_from('=III', req, 40)
        reply(unique, body=struct.pack('=IIIIHHIIHHI', 7, 31, readahead, 0, 0, 0, 4096, 1, 0, 0, 0) + b'\0' * 28)
    elif opcode == 3:                     # GETATTR
        reply(unique, body=struct.pack('=QII', 0, 0, 0) + ROOT_ATTR)
    elif opcode == 27:                    # OPENDIR
        reply(unique, body=struct.pack('=QII', 1, 0, 0))
    elif opcode in (2, 42, 36):           # FORGET, BATCH_FORGET, INTERRUPT: no answer
        pass
    elif opcode in (29, 28, 25, 38):      # RELEASEDIR, READDIR (empty), FLUSH, DESTROY
        reply(unique)
    elif opcode == 1:                     # LOOKUP
        reply(unique, errno.ENOENT)
    else:
        reply(unique, errno.ENOSYS)


rd, wr = os.pipe()
child = os.fork()
if child == 0:
    os.close(rd)
    os.chdir(targets[0])
    first = os.open('.', os.O_RDONLY | os.O_DIRECTORY)
    held = [os.dup(first) for _ in range(nfds)]
    os.write(wr, json.dumps({'pid': os.getpid(), 'cwd': os.readlink('/proc/self/cwd'), 'fds': len(held) + 1}).encode())
    os.close(wr)
    while not os.path.exists(stopfile):
        time.sleep(0.2)
    os._exit(0)
os.close(wr)
deadline = time.time() + seconds
while time.time() < deadline and not os.path.exists(stopfile):
    r, _, _ = select.select([fuse, rd], [], [], 0.2)
    if fuse in r:
        serve_one()
    if rd in r and summary['inside'] is None:
        data = os.read(rd, 4096)
        summary['inside'] = json.loads(data) if data else None
        with open(readyfile, 'w') as f:
            f.write(json.dumps(summary))
os.kill(child, signal.SIGKILL)
os.waitpid(child, 0)
print(json.dumps(summary))'''


def test_21_fuse_over_her_own_view_never_hangs_root_and_costs_only_her():
    """Root may not look into her FUSE fs (EACCES, no allow_other): the old GC counted her as "cannot be inspected"
    and kept every tree. The scans must tell her FUSE fs apart (st_dev from statx with an empty mask) and never ask it."""
    root = as_root(HOST)
    unused = plant_unused_tree()
    # A Debian host's /dev/fuse is 0666; the container's node (molecule.yml: devices) copies the controller's mode.
    root.check_output('chmod 0666 /dev/fuse && rm -f /tmp/fuse_attack.ready /tmp/fuse_attack.freeze')
    view = '%s/mallory/pip' % VIEWS
    v1, v2 = both_trees_on_disk()
    order = (v1, v2) if lower_of('alice') == tree(v2) + '/pip' else (v2, v1)
    start_as('mallory', FUSE_ATTACK, 'fuse_attack', view + ',/home/mallory/fusemnt', '300', '2000')
    try:
        ready = wait_ready('fuse_attack')
        assert ready['mounted'] == [view, '/home/mallory/fusemnt'] and ready['inside']['cwd'] == view, ready
        root.check_output('touch /tmp/fuse_attack.freeze && chmod 644 /tmp/fuse_attack.freeze')
        inside = ready['inside']['pid']
        assert 'Permission denied' in root.run('timeout 10 stat /proc/%d/cwd/' % inside).stderr  # root may not look in
        start = time.monotonic()
        rc, status = run_module(HOST, 'pkgcache.overlay.snapshot_status', {'store': '/var/lib/pkgcache'})
        assert rc == 0, status.get('msg')
        # Every inventory user is reported (the login hook's users of test_7..9, eve and frank, are there too).
        assert set(USERS) <= set(u['user'] for u in status['users'] if u['ecosystem'] == 'pip')
        rc, res = switch(order[0])
        assert rc == 0, res.get('msg')
        for user in VICTIMS:
            assert res['users'][user] == {'pip': 'switched', 'npm': 'switched'}, res['users']
        rc, gc, gc_seconds = timed_gc()
        elapsed = time.monotonic() - start
        assert rc == 0, gc.get('msg')
        assert unused in gc['removed'] and not root.file(UNUSED).exists, gc
        assert gc['busy_scan']['unknown'] == {}, gc['busy_scan']  # her FUSE fs holds no tree, and root knows it
        assert not gc.get('warnings'), gc.get('warnings')
        assert gc_seconds < 20 and elapsed < 90, (gc_seconds, elapsed)
    finally:
        summary = stop('mallory', 'fuse_attack')
    assert summary['answered'] >= 3 and summary['inside']['fds'] > 2000, summary  # the FUSE fs ran, she was inside
    assert summary['dropped'] == 0, summary  # nobody asked the silent daemon anything
    rc, res = switch(order[1])
    assert rc == 0 and all(res['users'][u] == {'pip': 'switched', 'npm': 'switched'} for u in VICTIMS), res
    assert set(res['users']['mallory'].values()) <= {'switched', 'merged'}, res['users']['mallory']
