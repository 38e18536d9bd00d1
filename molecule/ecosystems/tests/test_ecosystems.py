"""pip, npm, Maven and uv from one snapshot, tested as the repl users. The steps run in order."""

import json
import re

from conftest import (BUILDER, REPL1, REPL2, as_root, as_user, manifest, mvn_get, mounted_at, npm_install,
                      pip_install, playbook, uv_install, view_of)

STATE = {}


def test_1_one_snapshot_holds_all_four_caches():
    snap, m = manifest()
    STATE['v1'] = snap
    meta = m
    assert meta['ecosystems'] == ['pip', 'npm', 'maven', 'uv']
    npm = dict((p['name'], p['version']) for p in meta['npm']['packages'])
    assert npm['chalk'].startswith('4.') and 'has-flag' in npm  # a dependency, resolved like npm install
    assert re.match(r'^\d+\.\d+', meta['npm']['npm_version']) and meta['npm']['registry']
    maven = [p['name'] for p in meta['maven']['packages']]
    assert 'org.pkgcache.demo:greeting' in maven and 'org.pkgcache.demo:base' in maven  # transitive
    assert meta['maven']['repositories'][0]['id'] == 'company' and meta['maven']['maven_version']
    assert sorted(p['name'] for p in meta['uv']['packages']) == ['idna', 'six'] and meta['uv']['uv_version']
    paths = set(e['path'].split('/')[0] for e in m['entries'])
    assert paths == {'pip', 'npm', 'maven', 'uv'}
    # npm's index buckets are the only npm files a user's npm rewrites in place: 0666, copied up on write.
    modes = set(e['mode'] for e in m['entries'] if e['path'].startswith('npm/_cacache/index-v5/') and e['type'] == 'file')
    assert modes == {'0666'}


def test_2_every_user_has_every_cache_mounted():
    for host in (REPL1, REPL2):
        for user in ('alice', 'bob', 'carol'):
            h = as_user(user, host)
            for eco, target in (('pip', '~/.cache/pip'), ('npm', '~/.npm'), ('maven', '~/.m2/repository'), ('uv', '~/.cache/uv')):
                assert mounted_at(h, target) == view_of(user, eco)


def test_3_npm_installs_from_the_snapshot_with_no_network():
    for host, user in ((REPL1, 'alice'), (REPL2, 'bob')):
        res = npm_install(user, host, 'chalk@4 is-number@7', offline=True)
        assert res.rc == 0, res.stdout
        assert 'chalk' in res.stdout.split() and 'has-flag' in res.stdout.split()


def test_3_npm_keeps_other_platforms_binaries_out_and_their_packuments_in():
    """build_npm_platforms [linux-x64]: esbuild's binary for this platform is cached, the other 25 are not, and npm
    installs esbuild with no network from what is left (it reads every platform's packument to resolve)."""
    assert as_user('carol', REPL2).check_output('node -p "process.platform + \'-\' + process.arch"') == 'linux-x64'
    dummy, m = manifest()
    meta = m['npm']
    cached = set(p['name'] for p in meta['packages'])
    assert meta['platforms'] == ['linux-x64'] and '@esbuild/linux-x64' in cached and 'esbuild' in cached
    other = set(ref.rsplit('@', 1)[0] for ref in meta['other_platforms'])
    assert '@esbuild/darwin-arm64' in other and '@esbuild/win32-x64' in other and len(other) >= 20
    assert not other & cached
    index = '/mnt/cacache/npm/_cacache/index-v5'
    root = as_root(REPL2)
    assert root.run('grep -rqF "@esbuild/linux-x64/-/linux-x64-" %s' % index).rc == 0  # this platform's tarball
    assert root.run('grep -rqF "@esbuild/darwin-arm64/-/darwin-arm64-" %s' % index).rc == 1  # not the others'
    assert root.run('grep -rqF "request-cache:https://" %s' % index).rc == 0
    assert root.run("""grep -rqiF '@esbuild%%2fdarwin-arm64"' %s""" % index).rc == 0  # its packument
    res = as_user('carol', REPL2).run('d=$(mktemp -d) && cd $d && npm init -y >/dev/null && npm install --offline '
                                      'esbuild@0.28 2>&1 && ./node_modules/.bin/esbuild --version')
    assert res.rc == 0 and res.stdout.strip().splitlines()[-1].startswith('0.28.'), res.stdout


def test_4_npm_user_adds_to_its_own_cache_only():
    res = npm_install('alice', REPL1, 'kleur@4')
    assert res.rc == 0, res.stdout
    assert npm_install('alice', REPL1, 'kleur@4', offline=True).rc == 0
    # Not in the snapshot, and not in bob's view.
    assert as_root(REPL1).run('grep -rq "kleur/-/kleur-4" /mnt/cacache/npm/_cacache/index-v5').rc == 1
    assert npm_install('bob', REPL1, 'kleur@4', offline=True).rc != 0


APPEND_JS = r"""
const fs = require('fs'), path = require('path'), os = require('os');
const cacache = require('/usr/local/lib/node_modules/npm/node_modules/cacache');
const cache = path.join(os.homedir(), '.npm', '_cacache');
const lower = '/mnt/cacache/npm/_cacache';
const walk = d => fs.readdirSync(d, {withFileTypes: true}).flatMap(e => e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]);
// A bucket of the snapshot that this user's npm has not touched yet (her view shows the lower's bytes).
const same = r => fs.readFileSync(path.join(cache, r)).equals(fs.readFileSync(path.join(lower, r)));
const rel = walk(path.join(lower, 'index-v5')).map(f => path.relative(lower, f)).find(same);
const last = JSON.parse(fs.readFileSync(path.join(lower, rel), 'utf8').trim().split('\n').pop().split('\t')[1]);
cacache.index.insert(cache, last.key, last.integrity, {size: last.size, metadata: last.metadata}).then(() => console.log(rel));
"""


def test_5_npm_appends_to_index_buckets_of_the_snapshot_through_the_overlay():
    # An online install that revalidates metadata the snapshot holds works as the user (npm rewrites the
    # buckets of what it re-fetches with cacache's compaction: a new file renamed over the lower one)...
    assert npm_install('alice', REPL1, 'chalk@4').rc == 0
    # ...and npm's own cacache appends an entry to a bucket of the snapshot (what npm does for every response
    # it caches): the bucket is copied up into alice's upper and grows there; bob's view is unchanged.
    alice = as_user('alice', REPL1)
    alice.check_output("cat > /tmp/append.js <<'EOF'\n%s\nEOF" % APPEND_JS)
    rel = alice.check_output('node /tmp/append.js')
    assert rel.startswith('index-v5/')
    lower = as_root(REPL1).file('/mnt/cacache/npm/_cacache/' + rel).content
    upper = as_root(REPL1).file('/mnt/scratch/alice/cacache_npm/upper/_cacache/' + rel).content
    assert upper.startswith(lower) and upper.count(b'\n') == lower.count(b'\n') + 1
    assert alice.file('/home/alice/.npm/_cacache/' + rel).content == upper
    assert as_user('bob', REPL1).file('/home/bob/.npm/_cacache/' + rel).content == lower


def test_6_maven_resolves_from_the_snapshot_offline():
    for host, user in ((REPL1, 'alice'), (REPL2, 'carol')):
        res = mvn_get(user, host, 'org.pkgcache.demo:greeting:1.0', offline=True)
        assert res.rc == 0 and 'BUILD SUCCESS' in res.stdout, res.stdout[-2000:]


def test_7_maven_user_adds_an_artifact_to_its_own_repository_only():
    before = int(as_root(BUILDER).check_output('wc -l < /var/log/nginx/maven-access.log'))
    res = mvn_get('alice', REPL2, 'org.pkgcache.demo:extra:1.0')
    assert res.rc == 0 and 'BUILD SUCCESS' in res.stdout, res.stdout[-2000:]
    assert int(as_root(BUILDER).check_output('wc -l < /var/log/nginx/maven-access.log')) > before
    alice = as_user('alice', REPL2)
    assert alice.file('/home/alice/.m2/repository/org/pkgcache/demo/extra/1.0/extra-1.0.jar').exists
    assert as_root(REPL2).file('/mnt/scratch/alice/cacache_maven/upper/org/pkgcache/demo/extra/1.0/extra-1.0.jar').user == 'alice'
    assert not as_root(REPL2).file('/mnt/cacache/maven/org/pkgcache/demo/extra').exists
    assert not as_user('bob', REPL2).file('/home/bob/.m2/repository/org/pkgcache/demo/extra').exists


def test_8_uv_installs_from_the_snapshot_offline_with_copy_links():
    res = uv_install('alice', REPL1, 'six idna', offline=True)
    assert res.rc == 0, res.stdout
    assert '+ six' in res.stdout and '+ idna' in res.stdout
    assert uv_install('bob', REPL1, 'tabulate', offline=True).rc != 0  # not in the snapshot


def test_9_weekly_refresh_timer_is_installed_on_the_builder():
    h = as_root(BUILDER)
    assert h.check_output('systemctl is-enabled pkgcache-refresh.timer') == 'enabled'
    assert h.check_output('systemctl is-active pkgcache-refresh.timer') == 'active'
    assert h.check_output('systemctl show -p TimersCalendar --value pkgcache-refresh.timer').startswith('{ OnCalendar=Sun')
    assert 'pkgcache.overlay.refresh' in h.check_output('systemctl show -p ExecStart --value pkgcache-refresh.service')


def test_10_misses_on_two_hosts_make_the_next_snapshot():
    # alice on repl1 and bob on repl2 fetch tabulate (pip) and kleur (npm), which the snapshot lacks.
    for host, user in ((REPL1, 'alice'), (REPL2, 'bob')):
        assert 'Downloading' in pip_install(user, host, 'tabulate')
    assert npm_install('bob', REPL2, 'kleur@4').rc == 0
    rc, results = playbook('refresh.yml', {'pkgcache_popularity': True})
    assert rc == 0
    telemetry = results['Keep the counts for the builder']
    pip = telemetry[REPL1]['ansible_facts']['mount_telemetry']['pip']
    assert pip['packages'] == {'tabulate': 1} and list(pip['versions']) == ['tabulate']  # and which version
    assert 'alice' not in str(telemetry) and 'bob' not in str(telemetry)  # counts only, no user names
    snap, m = manifest()
    assert snap != STATE['v1']
    # The manifest records the sources and their totals (the scenario's min_hosts is 1), never a package.
    fleet = [s for s in m['provenance']['pip']['sources'] if s['type'] == 'fleet'][0]
    assert fleet['hosts'] == 2 and fleet['packages'] == 1 and fleet['total'] == 2 and fleet['min_hosts'] == 1
    assert 'tabulate' not in json.dumps(m['provenance']) and 'kleur' not in json.dumps(m['provenance'])
    assert 'tabulate' in [p['name'] for p in m['pip']['packages']]
    assert 'kleur' in [p['name'] for p in m['npm']['packages']]
    # carol never fetched either; her next installs download nothing.
    out = pip_install('carol', REPL1, 'tabulate')
    assert 'Downloading' not in out and re.search(r'Using cached \S*tabulate-', out), out
    assert npm_install('carol', REPL2, 'kleur@4', offline=True).rc == 0


def test_11_status_shows_every_ecosystem_with_its_tool_version():
    rc, res = playbook('status.yml', {'status_textfile_dir': '/var/lib/node-exporter-textfile'})
    assert rc == 0
    snap, m = manifest()
    table = '\n'.join(res['Show the status'][REPL1]['msg'])
    for eco, key in (('pip', 'pip_version'), ('npm', 'npm_version'), ('maven', 'maven_version'), ('uv', 'uv_version')):
        assert '%s:' % eco in table and '%s %s' % (key, m[eco][key]) in table
    prom = as_root(REPL1).check_output('cat /var/lib/node-exporter-textfile/pkgcache.prom')
    info = [l for l in prom.splitlines() if l.startswith('pkgcache_snapshot_info{')]
    assert len(info) == 4 and any('ecosystem="maven"' in l and 'maven_version="%s"' % m['maven']['maven_version'] in l
                                  for l in info)
    assert 'alice' not in prom


def test_12_the_schedule_falls_back_to_cron_and_back_and_refuses_a_bad_calendar():
    h = as_root(BUILDER)
    rc, dummy = playbook('tests/fleet/schedule.yml', {'build_schedule_method': 'cron'})
    assert rc == 0
    assert re.search(r'^0 3 \* \* 0 root ansible-playbook -i /etc/pkgcache/inventory pkgcache\.overlay\.refresh',
                     h.file('/etc/cron.d/pkgcache-refresh').content_string, re.M)
    assert not h.file('/etc/systemd/system/pkgcache-refresh.timer').exists
    assert h.run('systemctl is-active pkgcache-refresh.timer').stdout.strip() != 'active'
    rc, results = playbook('tests/fleet/schedule.yml', {'build_schedule_on_calendar': 'every other tuesday'})
    assert rc != 0
    failed = results['Refuse a calendar expression systemd cannot read'][BUILDER]
    assert 'build_schedule_on_calendar "every other tuesday"' in failed['msg']
    assert h.file('/etc/cron.d/pkgcache-refresh').exists  # nothing changed by the refused run
    rc, dummy = playbook('tests/fleet/schedule.yml')
    assert rc == 0
    assert not h.file('/etc/cron.d/pkgcache-refresh').exists
    assert h.check_output('systemctl is-active pkgcache-refresh.timer') == 'active'
