"""The hosts serve themselves after converge, with no Ansible run against them: a snapshot the builder publishes
reaches both hosts through their own sync timers, a user created afterwards has her view when she logs in (PAM),
and a user who was busy during the switch is moved at her next login. Runs last (it publishes a new snapshot).
"""

import os
import re
import time

import yaml

from conftest import BUILDER, REPL_HOSTS, as_root, as_user, playbook

STATE = {}
NEW_PACKAGE = 'iniconfig'   # not in the converge's snapshot; the published one has it
TIMER_DROPIN = '/etc/systemd/system/pkgcache-sync.timer.d/test-interval.conf'


def lower_of(user, host):
    opts = as_root(host).check_output('findmnt -n -o OPTIONS /var/lib/pkgcache-views/%s/pip' % user)
    return [o for o in opts.split(',') if o.startswith('lowerdir=')][0].split('/trees/')[1].split('/')[0]


def wait_for(what, check, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(2)
    raise AssertionError('%s: not within %d s' % (what, timeout))


def test_autonomous_a_published_snapshot_reaches_both_hosts_through_their_timers():
    for host in REPL_HOSTS:
        r = as_root(host)
        assert r.service('pkgcache-sync.timer').is_enabled and r.service('pkgcache-sync.timer').is_running
        STATE.setdefault('v1', r.check_output('readlink /var/lib/pkgcache/current').split('/')[-1])
    # carol holds a process in her cache on repl1: the timer's switch must leave her on the old snapshot.
    as_user('carol', REPL_HOSTS[0]).check_output("sh -c 'cd ~/.cache/pip && nohup sleep 3600 >/dev/null 2>&1 &'")
    # The builder publishes a new snapshot; nothing runs against the repl hosts.
    with open(os.path.join(os.environ['MOLECULE_PROJECT_DIRECTORY'], 'tests', 'fleet', 'group_vars', 'all.yml')) as f:
        packages = yaml.safe_load(f)['build_packages']
    rc, res = playbook('site.yml', {'build_packages': packages + [NEW_PACKAGE]}, args=['--limit', BUILDER, '--tags', 'build'])
    assert rc == 0, res
    v2 = as_root(BUILDER).check_output('cat /srv/pkgcache/refs/latest')
    assert v2 != STATE['v1']
    STATE['v2'] = v2
    # The test's interval: a run every 5-8 s instead of 45-60 min (the role's timer with its settings reset: an empty
    # On*Sec= clears every timer of the unit, so once).
    for host in REPL_HOSTS:
        as_root(host).check_output(
            "mkdir -p %s && printf '[Timer]\\nOnActiveSec=\\nOnActiveSec=3\\nOnUnitActiveSec=5\\n"
            "RandomizedDelaySec=3\\n' > %s && systemctl daemon-reload && systemctl restart pkgcache-sync.timer"
            % (TIMER_DROPIN.rsplit('/', 1)[0], TIMER_DROPIN))
    try:
        for host in REPL_HOSTS:
            wait_for('%s activates %s' % (host, v2), lambda: as_root(host).check_output(
                'readlink /var/lib/pkgcache/current').endswith('/' + v2) and lower_of('alice', host) == v2, 90)
    finally:
        for host in REPL_HOSTS:
            as_root(host).check_output('rm -f %s && systemctl daemon-reload && systemctl restart pkgcache-sync.timer'
                                       % TIMER_DROPIN)
    for host in REPL_HOSTS:
        r = as_root(host)
        assert lower_of('bob', host) == v2
        # The sync service did it (pkgcache-host sync, which logs each run).
        assert 'pkgcache-host sync' in r.check_output('systemctl cat pkgcache-sync.service')
        assert re.search(r'sync: snapshot %s' % v2, r.check_output('journalctl -t pkgcache-host --no-pager -o cat'))
        # The fstab lines name the new tree (a reboot mounts it); the inventory's block keeps its users.
        fstab = r.check_output('cat /etc/fstab')
        block = fstab.split('# BEGIN pkgcache.overlay mounts')[1].split('# END')[0]
        assert [u for u in ('alice', 'bob', 'carol') if '/var/lib/pkgcache-views/%s/pip ' % u in block] == ['alice', 'bob', 'carol']
    assert lower_of('carol', REPL_HOSTS[0]) == STATE['v1']   # busy: left where she was
    assert lower_of('carol', REPL_HOSTS[1]) == v2


def test_autonomous_a_new_user_logs_in_through_pam_and_has_her_view():
    for host in REPL_HOSTS:
        r = as_root(host)
        r.check_output('id dave >/dev/null 2>&1 || useradd -m -u 3001 -s /bin/bash dave')
        # Her first login: the session hook has served her before her shell runs.
        out = r.check_output("su -l dave -c 'readlink ~/.cache/pip; findmnt -n -o TARGET,FSTYPE --target ~/.cache/pip'")
        assert out.split('\n') == ['/var/lib/pkgcache-views/dave/pip', '/var/lib/pkgcache-views/dave/pip overlay'], out
        assert lower_of('dave', host) == STATE['v2']
        # She was never in the inventory: her line is in pkgcache-host's block.
        fstab = r.check_output('cat /etc/fstab')
        assert '/var/lib/pkgcache-views/dave/pip ' in fstab.split('# BEGIN pkgcache.overlay host-users')[1].split('# END')[0]
        assert fstab.count('/var/lib/pkgcache-views/dave/pip ') == 1
        # A snapshot package, with no download (the published snapshot's new package too).
        dave = as_user('dave', host)
        out = dave.check_output('rm -rf /tmp/venv-dave && python3 -m venv /tmp/venv-dave && '
                                '/tmp/venv-dave/bin/pip install six %s 2>&1' % NEW_PACKAGE)
        assert 'Downloading' not in out and re.search(r'Using cached (\S*/)?%s-' % NEW_PACKAGE, out), out
        # A second login costs nothing new: same mount.
        before = r.check_output('findmnt -n -o ID /var/lib/pkgcache-views/dave/pip')
        r.check_output("su -l dave -c true")
        assert r.check_output('findmnt -n -o ID /var/lib/pkgcache-views/dave/pip') == before
        prom = r.check_output('cat /var/lib/node_exporter/pkgcache_host.prom')
        assert re.search(r'pkgcache_host_serve_total\{outcome="served"\} [2-9]', prom), prom
        assert 'pkgcache_host_serve_total{outcome="failed"} 0' in prom


def test_autonomous_a_user_busy_during_the_switch_is_moved_at_her_next_login():
    host = REPL_HOSTS[0]
    r = as_root(host)
    assert lower_of('carol', host) == STATE['v1']
    r.check_output('pkill -u carol -x sleep; sleep 1')
    r.check_output('su -l carol -c true')
    assert lower_of('carol', host) == STATE['v2']
    fstab = r.check_output('cat /etc/fstab')
    line = [l for l in fstab.splitlines() if l.startswith('overlay /var/lib/pkgcache-views/carol/pip ')]
    assert len(line) == 1 and '/trees/%s/' % STATE['v2'] in line[0]
    # carol is the inventory's: her line stayed in its block.
    assert line[0] in fstab.split('# BEGIN pkgcache.overlay mounts')[1].split('# END')[0]
