"""Refresh, busy users, GC and rollback on a live fleet. The steps run in order."""

import calendar
import json
import re
import shlex
import time

from conftest import BUILDER, REPL1, REPL2, V1, V2, as_root, as_user, lower_of, pip_install, playbook

STATE = {}
HOSTS = [REPL1, REPL2]


def from_cache(out, name):
    return re.search(r'Using cached (\S*/)?%s-' % re.escape(name), out) is not None and 'Downloading' not in out


def test_1_v1_is_active_everywhere():
    STATE['v1'] = as_root(BUILDER).check_output('cat /srv/pkgcache/refs/latest')
    for host in HOSTS:
        for user in ('alice', 'bob', 'carol'):
            assert lower_of(user, host) == STATE['v1']


def pushed(res, host):
    """Bytes of the archives carried to a push host by one run (head and objects), and of the objects alone."""
    sent = res['Send the objects this host lacks'][host].get('results', [])
    objects = sum(r['size'] for r in sent if r.get('changed'))
    return int(res['Count the bytes pushed to this host'][host]['ansible_facts']['distribute_pushed_bytes']), objects


def test_1b_the_push_host_reached_no_store_and_a_second_run_moves_nothing():
    # repl2's distribute_url is a closed port: what it runs came over Ansible's connection.
    probe = "python3 -c 'import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:8379/refs/latest\")'"
    assert 'Connection refused' in as_root(REPL2).run(probe).stderr
    rc, res = playbook('site.yml', {'build_packages': V1})
    assert rc == 0
    sync = res['Sync and activate the snapshot']
    assert sync[REPL2]['mirror'] == 'push:///var/lib/pkgcache-push' and sync[REPL1]['mirror'] == 'http://127.0.0.1:8370'
    assert sync[REPL2]['id'] == STATE['v1'] and not sync[REPL2]['changed'] and sync[REPL2]['fetched_objects'] == 0
    assert pushed(res, REPL2) == (0, 0)
    assert res['Name the objects this host lacks'][REPL2]['wanted'] == []
    # A dry run plans the head on the builder and reports on that snapshot; nothing is carried.
    staged = as_root(REPL2).check_output('ls -la --time-style=full-iso /var/lib/pkgcache-push')
    rc, res = playbook('site.yml', {'build_packages': V1}, args=['--check', '--limit', REPL2])
    assert rc == 0, res
    sync = res['Sync and activate the snapshot'][REPL2]
    assert sync['id'] == STATE['v1'] and not sync['changed'] and not sync.get('warnings')
    assert res['Send the objects this host lacks'][REPL2].get('skipped')
    assert as_root(REPL2).check_output('ls -la --time-style=full-iso /var/lib/pkgcache-push') == staged


def test_2_users_add_packages():
    for host in HOSTS:
        assert 'Downloading' in pip_install('alice', host, 'iniconfig')
        assert 'Downloading' in pip_install('carol', host, 'pluggy')
        assert from_cache(pip_install('alice', host, 'iniconfig'), 'iniconfig')


def test_3_carol_holds_a_process_in_her_cache_on_repl1():
    # She also rewrites a snapshot file with the same bytes (origin.json of the built docopt wheel, which
    # every build writes identically): a copy-up that compaction may drop once she is on v2.
    carol = as_user('carol', REPL1)
    rel = carol.check_output("cd ~/.cache/pip && find wheels -name origin.json | head -1")
    # Snapshot files are read-only to her; she replaces it the way pip writes its cache (new file, rename).
    carol.check_output("cd ~/.cache/pip && cp %s %s.tmp && mv -f %s.tmp %s" % (rel, rel, rel, rel))
    assert as_root(REPL1).file('/mnt/scratch/carol/cacache_pip/upper/' + rel).user == 'carol'
    STATE['copied_up'] = rel
    as_user('carol', REPL1).check_output("sh -c 'cd ~/.cache/pip && nohup sleep 3600 >/dev/null 2>&1 &'")
    assert as_root(REPL1).run('pgrep -u carol -x sleep').rc == 0


def test_4_refresh_to_v2_reports_the_busy_user():
    rc, res = playbook('refresh.yml', {'build_packages': V2})
    assert rc == 0
    build = res['Build the snapshot'][BUILDER]
    STATE['v2'] = build['id']
    assert STATE['v2'] != STATE['v1']
    # v1's packages kept their resolutions (the index has nothing newer for them): pip ran only for the two
    # new ones, and every file (docopt's wheel that pip built from its sdist too) came from v1's objects.
    assert build['ecosystems']['pip']['reused'] == len(V1) and build['misses'] == []
    mounts = res['Mount the overlays of all repl users']
    assert list(mounts[REPL1]['busy']) == ['carol'] and mounts[REPL2]['busy'] == {}
    assert mounts[REPL1]['users']['alice']['pip'] == 'switched'
    assert mounts[REPL1]['users']['carol']['pip'] == 'busy'
    sync = res['Sync and activate the snapshot'][REPL1]
    # Only what v1 lacked moved: the objects v1 already had were reused.
    assert sync['fetched_objects'] > 0 and sync['reused_objects'] > 0
    # The push host got the same objects, and only those: the archives carry the new objects' bytes (compressed).
    push = res['Sync and activate the snapshot'][REPL2]
    assert push['id'] == STATE['v2'] and push['missing_objects'] == sync['missing_objects'] == push['fetched_objects']
    total, objects = pushed(res, REPL2)
    assert 0 < objects <= 1.05 * push['missing_bytes'], (objects, push['missing_bytes'])
    assert total - objects < push['fetched_bytes'] - push['missing_bytes'] + 4096  # the head: manifest, record, sigs
    STATE['pushed'] = (total, objects, push['missing_bytes'])


def test_5_idle_users_see_v2_busy_user_stays_on_v1_and_additions_survive():
    for host in HOSTS:
        assert lower_of('alice', host) == STATE['v2'] and lower_of('bob', host) == STATE['v2']
        out = pip_install('bob', host, 'attrs')  # only in v2
        assert from_cache(out, 'attrs'), out
        assert from_cache(pip_install('alice', host, 'iniconfig'), 'iniconfig')
    assert lower_of('carol', REPL1) == STATE['v1']
    assert lower_of('carol', REPL2) == STATE['v2']
    # The busy user still works on v1, with her own additions.
    assert from_cache(pip_install('carol', REPL1, 'six'), 'six')
    assert from_cache(pip_install('carol', REPL1, 'pluggy'), 'pluggy')
    # fstab already names v2 for her: her next boot switches her.
    assert STATE['v2'] in as_root(REPL1).check_output('grep /var/lib/pkgcache-views/carol/pip /etc/fstab')


def test_6_gc_keeps_v1_only_where_a_mount_uses_it():
    rc, res = playbook('gc.yml', {'distribute_gc_keep': 0, 'build_gc_keep': 2})
    assert rc == 0
    gc = res['Collect old snapshots and unreferenced objects']
    assert gc[REPL1]['removed'] == [] and gc[REPL1]['kept'][STATE['v1']] == 'referenced by a mount or fstab'
    assert gc[REPL2]['removed'] == [STATE['v1']] and gc[REPL2]['freed_bytes'] > 0, (gc[REPL2]['kept'], gc[REPL2]['removed'], STATE)
    assert as_root(REPL1).file('/var/lib/pkgcache/trees/' + STATE['v1']).is_directory
    assert not as_root(REPL2).file('/var/lib/pkgcache/trees/' + STATE['v1']).exists
    # The builder keeps its two newest, so hosts can still roll back to v1.
    builder = res['Collect old snapshots in the builder\'s store'][BUILDER]
    assert builder['removed'] == [] and set(builder['kept']) == {STATE['v1'], STATE['v2']}


def test_7_released_user_switches_and_then_v1_is_collected():
    as_root(REPL1).check_output('pkill -u carol -x sleep; sleep 1; ! pgrep -u carol -x sleep')
    rc, res = playbook('refresh.yml', {'build_packages': V2, 'distribute_gc_keep': 0, 'mount_compact_uppers': True})
    assert rc == 0
    mounts = res['Mount the overlays of all repl users'][REPL1]
    assert mounts['users']['carol']['pip'] == 'switched'
    # Compaction dropped her identical copy-up, and only that; she still sees the file through the lower.
    assert mounts['compacted']['carol']['pip']['files'] == 1
    carol = as_user('carol', REPL1)
    assert not as_root(REPL1).file('/mnt/scratch/carol/cacache_pip/upper/' + STATE['copied_up']).exists
    assert carol.file('/home/carol/.cache/pip/' + STATE['copied_up']).exists
    assert lower_of('carol', REPL1) == STATE['v2']
    assert from_cache(pip_install('carol', REPL1, 'pluggy'), 'pluggy')
    gc = res['Collect old snapshots and unreferenced objects'][REPL1]
    assert gc['removed'] == [STATE['v1']] and gc['freed_bytes'] > 0
    assert not as_root(REPL1).file('/var/lib/pkgcache/trees/' + STATE['v1']).exists


def test_7b_a_corrupt_object_on_the_builder_never_reaches_the_push_host():
    """repl2 collected v1 in step 6; an object only v1 has goes bad in the builder's store; v1 is pushed."""
    b = as_root(BUILDER)
    digest = b.check_output(
        "python3 -c 'import json,sys; f=lambda i: {e[\"sha256\"] for e in json.load(open(\"/srv/pkgcache/snapshots/%%s.json\" %% i))"
        "[\"entries\"] if e[\"type\"] == \"file\"}; print(min(f(sys.argv[1]) - f(sys.argv[2])))' %s %s" % (STATE['v1'], STATE['v2']))
    path = '/srv/pkgcache/objects/%s/%s' % (digest[:2], digest[2:])
    b.check_output('cp -p %s /root/good-object && chmod u+w %s && printf evil | dd of=%s conv=notrunc status=none'
                   % (path, path, path))
    try:
        rc, res = playbook('site.yml', {'build_packages': V2, 'distribute_snapshot': STATE['v1'],
                                        'distribute_allow_downgrade': True}, args=['--limit', REPL2])
    finally:
        b.check_output('cp -p /root/good-object %s' % path)
    assert rc != 0
    msg = res['Pack the objects the hosts lack'][REPL2]['msg']
    assert 'object %s in the store' % digest in msg and 'does not match its sha256' in msg, msg
    assert 'Sync and activate the snapshot' not in res
    assert lower_of('alice', REPL2) == STATE['v2']
    assert as_root(REPL2).check_output('readlink /var/lib/pkgcache/current').endswith(STATE['v2'])


def test_8_rollback_to_v1():
    """The builder publishes v1 again as a new revision; the hosts take it as an update (no allow_downgrade)."""
    rc, res = playbook('rollback.yml', {'rollback_snapshot': STATE['v1']})
    assert rc == 0
    rollback = res['Publish the earlier snapshot as a new revision'][BUILDER]
    assert rollback['id'] == STATE['v1'] and rollback['held'] == STATE['v1']
    STATE['revision'] = rollback['revision']
    assert [r['id'] for r in rollback['revisions'][:2]] == [STATE['v1'], STATE['v2']]
    sync = res['Sync and activate the snapshot']
    assert sync[REPL1]['fetched_objects'] > 0  # collected in step 7, fetched again
    assert sync[REPL1]['revision'] == STATE['revision']
    for host in HOSTS:
        for user in ('alice', 'bob', 'carol'):
            assert lower_of(user, host) == STATE['v1']
        assert 'Downloading' in pip_install('bob', host, 'pyparsing')  # only in v2
        assert from_cache(pip_install('alice', host, 'iniconfig'), 'iniconfig')
        assert from_cache(pip_install('carol', host, 'six'), 'six')


def index_requests():
    return int(as_root(BUILDER).check_output('wc -l < /var/log/pypiserver.log'))


def test_9_site_yml_keeps_the_rollback_and_adds_a_user_without_asking_the_index():
    for host in HOSTS:
        as_root(host).check_output('id dave || useradd -m -u 2004 -s /bin/bash dave')
    before = index_requests()
    users = [{'name': n} for n in ('alice', 'bob', 'carol', 'dave')]
    rc, res = playbook('site.yml', {'build_packages': V2, 'mount_repls': users})
    assert rc == 0
    build = res['Build the snapshot'][BUILDER]
    # v2's inputs were built less than build_max_age_days ago: no build, and the hold keeps v1 published.
    assert build['not_rebuilt'] and not build['changed'] and build['id'] == STATE['v2'] and build['held'] == STATE['v1']
    assert as_root(BUILDER).check_output('cat /srv/pkgcache/refs/latest') == STATE['v1']
    assert index_requests() == before
    for host in HOSTS:
        for user in ('alice', 'bob', 'carol', 'dave'):
            assert lower_of(user, host) == STATE['v1']
        assert from_cache(pip_install('dave', host, 'six'), 'six')
    # The count does see index requests: one page fetched by hand adds to it.
    as_root(BUILDER).check_output('python3 -c "import urllib.request; urllib.request.urlopen(\'http://127.0.0.1:8371/simple/six/\')"')
    assert index_requests() > before


def test_10_a_replayed_older_revision_is_refused():
    b = as_root(BUILDER)
    b.check_output('cp /srv/pkgcache/refs/published /root/published.keep && echo %d > /srv/pkgcache/refs/published'
                   % (STATE['revision'] - 1))  # names v2's record, validly signed, but older
    try:
        rc, res = playbook('site.yml', {'build_packages': V2}, args=['--limit', REPL1])
    finally:
        b.check_output('cp /root/published.keep /srv/pkgcache/refs/published')
    assert rc != 0
    msg = res['Sync and activate the snapshot'][REPL1]['msg']
    assert 'already applied revision %d; refusing a replayed' % STATE['revision'] in msg, msg
    assert lower_of('alice', REPL1) == STATE['v1']


def test_11_a_forced_rebuild_publishes_again_and_rolls_out_to_the_limit_only():
    rc, res = playbook('site.yml', {'build_packages': V2, 'pkgcache_rebuild': True}, args=['--limit', BUILDER + ',' + REPL2])
    assert rc == 0
    build = res['Build the snapshot'][BUILDER]
    assert not build['not_rebuilt'] and build['id'] == STATE['v2'] and build['revision'] == STATE['revision'] + 1
    assert build['held'] is None and not as_root(BUILDER).file('/srv/pkgcache/refs/hold').exists
    assert lower_of('alice', REPL2) == STATE['v2']
    assert lower_of('alice', REPL1) == STATE['v1']


def test_12_a_removed_user_is_reported_then_purged_root_side():
    three = [{'name': n} for n in ('alice', 'bob', 'carol')]
    # dave is served again on both hosts (test 11's limited site.yml ran with the three default users on repl2).
    rc, res = playbook('mount.yml', {'mount_repls': three + [{'name': 'dave'}]})
    assert rc == 0
    for host in HOSTS:
        assert 'Downloading' in pip_install('dave', host, 'iniconfig')  # lands in dave's upper
        as_user('dave', host).check_output('ln -s /etc ~/.cache/pip/evil && ln -s / ~/.cache/pip/root')
    # Dropped from the list: unmounted, but the data stays and status reports it.
    rc, res = playbook('mount.yml', {'mount_repls': three})
    assert rc == 0
    rc, res = playbook('status.yml', {'status_textfile_dir': ''})
    assert rc == 0
    for host in HOSTS:
        orphaned = res['Gather the status'][host]['orphaned']
        assert [o['user'] for o in orphaned] == ['dave'] and orphaned[0]['bytes'] > 0
    # Check mode shows the purge and removes nothing.
    rc, res = playbook('mount.yml', {'mount_repls': three, 'mount_purge_removed': True}, args=['--check'])
    assert rc == 0
    for host in HOSTS:
        assert res['Mount the overlays of all repl users'][host]['purged'] == {'dave': 'purged'}
        assert as_root(host).file('/mnt/scratch/dave/cacache_pip/upper').is_directory
    rc, res = playbook('mount.yml', {'mount_repls': three, 'mount_purge_removed': True})
    assert rc == 0
    for host in HOSTS:
        r = as_root(host)
        assert res['Mount the overlays of all repl users'][host]['purged'] == {'dave': 'purged'}
        assert not r.file('/mnt/scratch/dave').exists and not r.file('/var/lib/pkgcache-views/dave').exists
        assert r.file('/etc/passwd').exists and r.file('/etc/fstab').exists  # the planted links were not followed
        assert from_cache(pip_install('alice', host, 'iniconfig'), 'iniconfig')  # alice's own addition is still there
    rc, res = playbook('status.yml', {'status_textfile_dir': ''})
    assert all(res['Gather the status'][h]['orphaned'] == [] for h in HOSTS)
    # Nothing left to purge: the next run changes nothing.
    rc, res = playbook('mount.yml', {'mount_repls': three, 'mount_purge_removed': True})
    assert rc == 0 and all(not res['Mount the overlays of all repl users'][h]['changed'] for h in HOSTS)


# -- revision records that expire (issue 23, part 4) ------------------------------------------------------------

KEY = '/etc/pkgcache/signing/snapshot_ed25519'
# On the builder: the current record with the next serial, issued 8 days ago and expired a day ago (far past the
# 300 s of clock skew hosts allow), signed with the builder's own key, as a mirror frozen on it would serve it.
CRAFT = r"""
import datetime, json, os, subprocess, sys, time
path, key = sys.argv[1:]
iso = lambda t: datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
rec = json.load(open(path))
now = int(time.time())
rec.update(serial=rec['serial'] + 1, issued=iso(now - 8 * 86400), expires=iso(now - 86400))
open(path, 'w').write(json.dumps(rec, sort_keys=True))
os.unlink(path + '.sig')
subprocess.run(['ssh-keygen', '-Y', 'sign', '-q', '-f', key, '-n', 'pkgcache-snapshot', path], check=True)
os.chmod(path + '.sig', 0o644)
print(json.dumps(rec))
"""


def builder_record(revision):
    return json.loads(as_root(BUILDER).check_output('cat /srv/pkgcache/refs/revisions/%d.json' % revision))


def epoch(text):
    return calendar.timegm(time.strptime(text, '%Y-%m-%dT%H:%M:%SZ'))


def metrics(host):
    """{name: value} of the host's pkgcache.prom, refreshed now by the status timer's service."""
    text = as_root(host).check_output('systemctl start pkgcache-status.service && cat /var/lib/node_exporter/pkgcache.prom')
    return dict((m.group(1), float(m.group(2))) for m in re.finditer(r'^(pkgcache_\w+)(?:\{[^}]*\})? (\S+)$', text, re.M))


def current_of(host):
    return as_root(host).check_output('readlink /var/lib/pkgcache/current').rsplit('/', 1)[-1]


def test_13_a_mirror_frozen_on_an_expired_record_is_refused_and_the_hosts_keep_their_snapshots():
    """Standalone (it reads the state it needs): after test 12, v2 is published and repl1 is still on v1."""
    b = as_root(BUILDER)
    rev = int(b.check_output('cat /srv/pkgcache/refs/published'))
    before = dict((host, (current_of(host), lower_of('alice', host))) for host in HOSTS)
    crafted = json.loads(b.check_output('python3 -c %s /srv/pkgcache/refs/revisions/%d.json %s'
                                        % (shlex.quote(CRAFT), rev, KEY)))
    STATE['expired'] = (rev, crafted)
    rc, res = playbook('site.yml', {'build_packages': V2}, args=['--limit', '%s,%s' % (REPL1, REPL2), '--tags', 'distribute'])
    assert rc != 0
    sync = res['Sync and activate the snapshot']
    for host, url in ((REPL1, 'http://127.0.0.1:8370'), (REPL2, 'push:///var/lib/pkgcache-push')):
        expected = ('revision record %d at %s/refs/revisions/%d.json (snapshot %s, serial %d) expired at %s; it is now '
                    % (rev, url, rev, crafted['id'], crafted['serial'], crafted['expires']))
        assert expected in sync[host]['msg'], sync[host]['msg']
    # Each host keeps what it served (in the whole sequence repl1 stays on v1 although v2 is published).
    assert dict((host, (current_of(host), lower_of('alice', host))) for host in HOSTS) == before
    # The metric shows the expiry of the record each host took last, still days ahead, not the crafted one.
    for host in HOSTS:
        m = metrics(host)
        newest = json.loads(as_root(host).check_output('cat /var/lib/pkgcache/newest'))
        assert m['pkgcache_last_sync_success'] == 0 and newest['serial'] < crafted['serial']
        assert m['pkgcache_revision_expires_timestamp'] == epoch(newest['expires']) > time.time() + 5 * 86400, (host, newest)


def test_14_the_builders_resign_service_signs_the_record_again_and_the_hosts_take_it():
    rev, crafted = STATE['expired']
    b = as_root(BUILDER)
    assert b.service('pkgcache-resign.timer').is_enabled and b.service('pkgcache-resign.timer').is_running
    b.check_output('systemctl start pkgcache-resign.service')
    rec = builder_record(rev)
    assert (rec['revision'], rec['id'], rec['serial']) == (rev, crafted['id'], crafted['serial'] + 1)
    assert 7 * 86400 - 600 < epoch(rec['expires']) - time.time() <= 7 * 86400
    assert int(b.check_output('cat /srv/pkgcache/refs/published')) == rev
    rc, res = playbook('site.yml', {'build_packages': V2}, args=['--limit', '%s,%s' % (REPL1, REPL2), '--tags', 'distribute'])
    assert rc == 0
    sync = res['Sync and activate the snapshot']
    for host in HOSTS:
        assert (sync[host]['id'], sync[host]['revision']) == (rec['id'], rev) and current_of(host) == rec['id']
        m = metrics(host)
        assert m['pkgcache_last_sync_success'] == 1 and m['pkgcache_revision_expires_timestamp'] == epoch(rec['expires'])


def test_15_pinned_versions_the_fleet_installed_are_in_the_next_weekly_build():
    """alice (repl1) and bob (repl2) pin an older hitrate-core; the weekly flow (telemetry -> rank -> build -> roll
    out) builds it beside the newest, and carol, who never had either, installs both without a download.
    The scenario's builder sets build_telemetry_min_hosts: 2 (two repl hosts; the default is 3)."""
    for host, user in ((REPL1, 'alice'), (REPL2, 'bob')):
        out = pip_install(user, host, 'hitrate-core==1.0')
        assert 'Downloading' in out and 'hitrate_core-1.0-' in out, out   # no snapshot so far has it
    rc, res = playbook('refresh.yml', {'build_packages': V2, 'pkgcache_popularity': True})
    assert rc == 0
    telemetry = res['Keep the counts for the builder']
    for host in HOSTS:
        pip = telemetry[host]['ansible_facts']['mount_telemetry']['pip']
        assert pip['versions']['hitrate-core'] == {'1.0': 1}, pip
    assert 'alice' not in str(telemetry) and 'bob' not in str(telemetry)  # counts only, no user names
    build = res['Build the snapshot'][BUILDER]
    requested = build['ecosystems']['pip']['requested']
    assert [r for r in requested if '==' not in r][:len(V2)] == V2   # the role's list comes first, as pins
    assert 'hitrate-core' in requested and 'hitrate-core==1.0' in requested, requested
    assert {('hitrate-core', '1.0'), ('hitrate-core', '2.0')} <= set((p['name'], p['version']) for p in build['packages'])
    # The manifest the store serves records the sources and their totals, no package; the ranking stays root's.
    b = as_root(BUILDER)
    prov = b.check_output('python3 -c "import json; print(json.dumps(json.load(open(\'/srv/pkgcache/snapshots/%s.json\'))'
                          '[\'provenance\']))"' % build['id'])
    assert 'hitrate' not in prov and '"min_hosts": 2' in prov and '"hosts": 2' in prov, prov
    assert b.check_output('stat -c "%a %U" /var/lib/pkgcache-build/popularity/pip.json') == '600 root'
    assert 'hitrate-core==1.0' in b.check_output('cat /var/lib/pkgcache-build/popularity/pip.json')
    for host in HOSTS:
        assert lower_of('carol', host) == build['id']
        for spec, wheel in (('hitrate-core==1.0', 'hitrate_core-1.0-'), ('hitrate-core', 'hitrate_core-2.0-')):
            out = pip_install('carol', host, spec)
            assert from_cache(out, 'hitrate_core') and wheel in out, out
