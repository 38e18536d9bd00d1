"""The build orchestration, with a stand-in for pip that writes a real cache layout and report; the store lock."""

import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _builder as bd
from ansible_collections.pkgcache.overlay.plugins.module_utils import _module
from ansible_collections.pkgcache.overlay.plugins.module_utils import _pipcache as pc
from ansible_collections.pkgcache.overlay.plugins.module_utils import _store as st
from ansible_collections.pkgcache.overlay.plugins.module_utils import _gc
from ansible_collections.pkgcache.overlay.plugins.module_utils import _manifest as mf
from ansible_collections.pkgcache.overlay.plugins.module_utils._fill import BuildError
from ansible_collections.pkgcache.overlay.plugins.module_utils._lock import LockError, StoreLock

from conftest import COLLECTIONS
from helpers import INDEX, FakePip, Heads, ResolverPip, disk, params, run_module


def latest(tmp_path):
    return open(str(tmp_path / 'store' / 'refs' / 'latest')).read().strip()


def test_build_records_misses_and_is_idempotent(tmp_path):
    pip = FakePip({'six': ('1.17.0', 'six body'), 'idna': ('3.20', 'idna body')})
    r = bd.build(params(tmp_path, ['six', 'idna', 'nope']), pip, now='t1')
    assert r['changed'] and r['new_objects'] == 2 and r['files'] == 2
    assert [m['package'] for m in r['misses']] == ['nope']
    assert latest(tmp_path) == r['id']
    manifest = json.load(open(st.manifest_path(str(tmp_path / 'store'), r['id'])))
    assert manifest['pip']['pip_version'] == '23.0.1' and manifest['pip']['index_url'] == INDEX
    assert [p['name'] for p in manifest['pip']['packages']] == ['idna', 'six']
    assert not any(e['path'].startswith('pip/selfcheck') for e in manifest['entries'])
    again = bd.build(params(tmp_path, ['six', 'idna', 'nope']), pip, now='t2')
    assert again['id'] == r['id'] and not again['changed'] and again['new_objects'] == 0
    assert again['created'] == 't1'


def test_new_version_gives_new_snapshot_sharing_objects(tmp_path):
    bd.build(params(tmp_path, ['six', 'idna']), FakePip({'six': ('1', 'a'), 'idna': ('1', 'b')}), now='t1')
    r = bd.build(params(tmp_path, ['six', 'idna']), FakePip({'six': ('1', 'a'), 'idna': ('2', 'c')}), now='t2')
    assert r['changed'] and r['new_objects'] == 1 and r['new_bytes'] == 1


def test_check_mode_runs_no_tool_and_changes_nothing(tmp_path):
    pip = FakePip({'six': ('1', 'a')})
    r = bd.build(params(tmp_path, ['six']), pip, check_mode=True, now='t')
    assert r['changed'] and r['would_build'] and r['ecosystems'] == {'pip': {'requested': ['six']}}
    assert pip.calls == [] and not os.path.exists(str(tmp_path / 'store')) and not os.path.exists(str(tmp_path / 'work'))
    # Once built, check mode with the same inputs reports that snapshot, unchanged.
    first = bd.build(dict(params(tmp_path, ['six']), max_age=86400), pip, now='2026-01-01T00:00:00+00:00')
    calls = len(pip.calls)
    again = bd.build(dict(params(tmp_path, ['six']), max_age=86400), pip, check_mode=True, now='2026-01-01T01:00:00+00:00')
    assert again['id'] == first['id'] and not again['changed'] and len(pip.calls) == calls


def test_all_missing_fails_with_the_reason(tmp_path):
    with pytest.raises(BuildError, match='none of the 2 packages could be resolved from %s' % INDEX):
        bd.build(params(tmp_path, ['nope', 'nada']), FakePip({}), now='t')


def test_nothing_cached_names_cache_headers(tmp_path):
    with pytest.raises(BuildError, match='cache headers'):
        bd.build(params(tmp_path, ['six']), FakePip({'six': ('1', 'a')}, cache=False), now='t')
    assert not os.path.exists(str(tmp_path / 'store' / 'refs'))


def test_requirements_file(tmp_path):
    req = tmp_path / 'req.txt'
    req.write_text('# popular\nsix\n')
    p = params(tmp_path, ['idna'])
    p['requirements'] = str(req)
    r = bd.build(p, FakePip({'six': ('1', 'a'), 'idna': ('1', 'b')}), now='t')
    assert r['files'] == 2


def test_every_package_is_resolved_on_its_own_and_the_snapshot_holds_the_union(tmp_path):
    """A joint resolution would cache core 1.0 only, and everyone installing web alone would miss core 2.0."""
    pip = ResolverPip({})
    p = params(tmp_path, ['web', 'legacy', 'broken'])
    p['workers'] = 2
    r = bd.build(p, pip, now='t')
    assert sorted(pip.requests) == [['broken'], ['legacy'], ['web']]  # one pip run per package, never the list
    manifest = json.load(open(st.manifest_path(str(tmp_path / 'store'), r['id'])))
    assert sorted((x['name'], x['version']) for x in manifest['pip']['packages']) == [
        ('core', '1.0'), ('core', '2.0'), ('legacy', '1.0'), ('web', '1.0')]
    assert manifest['pip']['resolutions'] == {'web': ['core==2.0', 'web==1.0'], 'legacy': ['core==1.0', 'legacy==1.0']}
    # broken fails on its own: a miss with pip's reason, and the build goes on.
    assert [(m['package'], m['ecosystem']) for m in r['misses']] == [('broken', 'pip')]
    assert 'ResolutionImpossible' in r['misses'][0]['reason'] and 'on its own' in r['misses'][0]['reason']
    for version in ('1.0', '2.0'):
        url = 'http://127.0.0.1:8371/packages/core-%s-py3-none-any.whl' % version
        assert any(e['path'] == 'pip/' + os.path.relpath(pc.http_cache_paths('/c', url)[1], '/c') for e in manifest['entries'])


def test_packages_that_resolve_alone_but_not_together_build(tmp_path):
    class Clash(ResolverPip):
        def __call__(self, argv, env):
            if '-r' in argv and len(open(argv[argv.index('-r') + 1]).read().split()) > 1:
                return 1, '', 'ERROR: ResolutionImpossible: web and legacy conflict'
            return ResolverPip.__call__(self, argv, env)
    r = bd.build(params(tmp_path, ['web', 'legacy']), Clash({}), now='t')
    assert r['misses'] == [] and r['files'] == 4


@pytest.mark.parametrize('ecos, message', [(['pip', 'conda'], "'conda' is not supported"), (['npm', 'npm'], 'twice')])
def test_build_refuses_bad_ecosystems(ecos, message):
    with pytest.raises(BuildError, match=message):
        bd.ecosystems({'ecosystems': ecos})


@pytest.mark.parametrize('p, message', [
    ({'ecosystems': ['npm'], 'npm': {'packages': []}}, 'npm: no packages given'),
    ({'ecosystems': ['npm'], 'npm': {'packages': ['git+https://x/y.git']}}, "npm package 'git\\+https"),
    ({'ecosystems': ['maven'], 'maven': {'artifacts': ['a:b:1'], 'repositories': []}}, 'repositories is empty'),
    ({'ecosystems': ['uv'], 'uv': {'packages': ['six']}}, 'uv: index_url is not set'),
    ({'ecosystems': ['pip'], 'packages': ['six']}, 'pip: index_url is not set'),
])
def test_build_names_the_bad_input_and_leaves_nothing_behind(tmp_path, p, message):
    def run(argv, env, data=None, cwd=None):
        if argv[-2:] == ['version', '--json']:
            return 0, '{"npm": "10.9.9", "node": "v18.20.4"}', ''
        if argv[-2:] == ['-B', '-v']:
            return 0, 'Apache Maven 3.8.7\nJava version: 17.0.15, vendor', ''
        raise AssertionError('no tool may run for bad input: %r' % (argv,))

    p = dict(p, store=str(tmp_path / 'store'), work_dir=str(tmp_path / 'work'))
    with pytest.raises(BuildError, match=message):
        bd.build(p, run)
    assert not (tmp_path / 'store').exists()
    work = tmp_path / 'work'
    assert not work.exists() or not [d for d in os.listdir(str(work)) if d.startswith('.build-')]


# A build holds the store lock while it writes objects, manifests and refs.

HOLDER = textwrap.dedent("""
    import sys
    sys.path.insert(0, %r)
    from ansible_collections.pkgcache.overlay.plugins.module_utils._lock import StoreLock
    with StoreLock(sys.argv[1]):
        print('locked', flush=True)
        sys.stdin.read()  # hold the lock until the test closes our stdin
""" % COLLECTIONS)


@pytest.fixture
def lock_holder(tmp_path):
    store = str(tmp_path / 'store')
    os.makedirs(store)
    proc = subprocess.Popen([sys.executable, '-c', HOLDER, store], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == 'locked'
        yield proc
    finally:
        proc.stdin.close()
        proc.wait()


def test_build_fails_with_a_lock_error_while_another_run_holds_the_lock(tmp_path, lock_holder):
    pip = FakePip({'six': ('1.17.0', 'six body')})
    p = dict(params(tmp_path, ['six']), lock_timeout=0)
    store = p['store']
    with pytest.raises(LockError, match=r'another pkgcache run \(pid %d\) holds the lock %s' % (lock_holder.pid, os.path.join(store, '.lock'))):
        bd.build(p, pip, now='t1')
    # Nothing was written to the store: no object, manifest or ref.
    assert sorted(os.listdir(store)) == ['.lock']
    # Check mode changes nothing and takes no lock.
    r = bd.build(p, pip, check_mode=True, now='t1')
    assert r['would_build'] and sorted(os.listdir(store)) == ['.lock']
    # Once the holder is gone, the same build goes through.
    lock_holder.stdin.close()
    lock_holder.wait()
    assert bd.build(p, pip, now='t1')['new_objects'] == 1


def test_gc_during_a_build_loses_no_object(tmp_path, monkeypatch):
    store = str(tmp_path / 'store')
    bd.build(params(tmp_path, ['six']), FakePip({'six': ('1', 'six body')}), now='t1')
    gc_outcome = []

    def gc():
        """What snapshot_gc does on a builder, keeping only refs/latest."""
        try:
            with StoreLock(store, 0):
                plan = _gc.plan(store, 0, '', '', host=False)
                _gc.apply(store, plan)
                gc_outcome.append(plan)
        except LockError as exc:
            gc_outcome.append(exc)

    real_build_manifest = mf.build_manifest

    def build_manifest_with_gc(entries, metadata):
        # The build has stored its objects and not yet written its manifest: run a whole GC now.
        t = threading.Thread(target=gc)
        t.start()
        t.join()
        return real_build_manifest(entries, metadata)

    monkeypatch.setattr(bd.mf, 'build_manifest', build_manifest_with_gc)
    r = bd.build(params(tmp_path, ['six', 'idna']), FakePip({'six': ('1', 'six body'), 'idna': ('2', 'idna body')}), now='t2')
    assert r['new_objects'] == 1
    manifest = mf.load_manifest(open(st.manifest_path(store, r['id']), 'rb').read(), r['id'])
    missing = st.missing_objects(store, manifest['entries'])
    assert missing == {}, 'the GC removed objects of the build it ran beside'
    assert len(gc_outcome) == 1 and isinstance(gc_outcome[0], LockError)
    assert os.path.join(store, '.lock') in str(gc_outcome[0])


def test_build_keeps_a_new_store_readable_for_the_web_server(tmp_path):
    old = os.umask(0o022)
    try:
        bd.build(params(tmp_path, ['six']), FakePip({'six': ('1', 'six body')}), now='t1')
    finally:
        os.umask(old)
    assert os.stat(str(tmp_path / 'store')).st_mode & 0o777 == 0o755
    assert os.stat(str(tmp_path / 'store' / '.lock')).st_mode & 0o777 == 0o600


def test_module_check_mode_returns_the_build_and_a_real_run_builds_that_one(tmp_path, capsys, monkeypatch):
    pip = FakePip({'six': ('1', 'a'), 'idna': ('2', 'b')})
    monkeypatch.setattr(bd, 'build_runner', lambda module: pip)
    monkeypatch.setattr(_module, 'utc_now', lambda: '2026-01-01T00:00:00+00:00')
    args = dict(params(tmp_path, ['six', 'idna']), max_age=86400)
    rc, check = run_module(capsys, bd.run_module, bd.argument_spec(), args, check_mode=True)
    assert rc == 0 and check['changed'] and check['would_build'] and check['ecosystems'] == {'pip': {'requested': ['six', 'idna']}}
    assert pip.calls == [] and not os.path.exists(str(tmp_path / 'store')) and not os.path.exists(str(tmp_path / 'work'))
    rc, real = run_module(capsys, bd.run_module, bd.argument_spec(), args)
    assert rc == 0 and real['changed'] and real['files'] == 2 and latest(tmp_path) == real['id']
    assert real['ecosystems']['pip']['requested'] == check['ecosystems']['pip']['requested']
    # Built: check mode reports that snapshot as a real run does, and neither runs pip again.
    calls, before = len(pip.calls), disk(tmp_path / 'store')
    rc, check = run_module(capsys, bd.run_module, bd.argument_spec(), args, check_mode=True)
    assert rc == 0 and not check['changed'] and check['id'] == real['id'] and disk(tmp_path / 'store') == before
    rc, again = run_module(capsys, bd.run_module, bd.argument_spec(), args)
    assert rc == 0 and again == check and len(pip.calls) == calls
    rc, bad = run_module(capsys, bd.run_module, bd.argument_spec(), dict(args, packages=['nope'], max_age=0))
    assert rc == 1 and bad['msg'].startswith('none of the 1 packages could be resolved')


def test_build_runner_hides_the_hosts_tool_settings_from_the_tools(monkeypatch):
    seen = []

    class Module(object):
        def run_command(self, argv, **kw):
            seen.append((argv, kw, sorted(k for k in os.environ if k.startswith(('PIP_', 'UV_', 'npm_config_')))))
            return 0, b'', b''
    for key in [k for k in os.environ if k.upper().startswith(('PIP_', 'UV_', 'NPM_CONFIG_'))]:
        monkeypatch.delenv(key)  # restored after the test, as the ones set here are
    monkeypatch.setenv('PIP_INDEX_URL', 'http://elsewhere/')
    monkeypatch.setenv('npm_config_cache', '/tmp/x')
    monkeypatch.setenv('UV_CACHE_DIR', '/tmp/y')
    run = bd.build_runner(Module())
    assert run(['true'], None) == (0, b'', b'') and seen[-1][2] == ['PIP_INDEX_URL', 'UV_CACHE_DIR', 'npm_config_cache']
    run(['pip'], {'UV_CACHE_DIR': '/c'}, data=b'd', cwd='/w')
    assert seen[-1] == (['pip'], {'environ_update': {'UV_CACHE_DIR': '/c'}, 'data': b'd', 'binary_data': True, 'cwd': '/w'},
                        ['UV_CACHE_DIR'])


def test_a_budget_leaves_out_the_giant_never_fetches_it_and_says_why_in_the_result_and_the_provenance(tmp_path):
    index = {'giant': ('1', 'g' * 5000), 'six': ('1', 's' * 100), 'idna': ('1', 'i' * 100)}
    pip = FakePip(index)
    heads = Heads(dict((n, len(b)) for n, (v, b) in index.items()))
    p = dict(params(tmp_path, ['giant', 'six', 'idna', 'nope']), max_bytes=1000, max_age=3600,
             provenance={'pip': {'source_counts': {'top_pypi_json': 3}}})
    r = bd.build(p, pip, now='2026-12-07T22:00:00+00:00', opener=heads)
    assert [x['name'] for x in r['packages']] == ['idna', 'six'] and [m['package'] for m in r['misses']] == ['nope']
    assert [(x['package'], x['ecosystem'], x['reason'], x['closure_bytes']) for x in r['left_out']] == \
        [('giant', 'pip', 'budget', 5000)]
    assert r['left_out'][0]['why'] == 'giant: 5 kB closure, left out by the budget of 1 kB'
    # Resolved (dry run) but never fetched: no download and no real install names it.
    fetches = [c for c in pip.calls if c[3:4] == ['download'] or (c[3:4] == ['install'] and '--dry-run' not in c)]
    assert fetches and not any('giant' in ' '.join(c) for c in fetches)
    manifest = json.load(open(st.manifest_path(str(tmp_path / 'store'), r['id'])))
    assert manifest['provenance']['pip'] == {'source_counts': {'top_pypi_json': 3}}
    assert manifest['provenance']['left_out'] == [{'ecosystem': 'pip', 'package': 'giant', 'reason': 'budget',
                                                   'why': 'giant: 5 kB closure, left out by the budget of 1 kB'}]
    assert manifest['pip']['budget']['max_bytes'] == 1000
    # A build skipped by max_age reports the same from the manifest.
    again = bd.build(p, pip, now='2026-12-07T22:10:00+00:00', opener=heads)
    assert again['not_rebuilt'] and again['left_out'] == r['left_out']
    # A larger budget is another input: it builds, and takes the giant.
    wide = bd.build(dict(p, max_bytes=10000), pip, now='2026-12-07T22:20:00+00:00', opener=heads)
    assert 'left_out' not in wide and [x['name'] for x in wide['packages']] == ['giant', 'idna', 'six']


def test_budget_options_are_checked(tmp_path):
    with pytest.raises(BuildError, match='max_bytes must be a number of bytes'):
        bd.build(dict(params(tmp_path, ['six']), max_bytes=-1), FakePip({}), now='t')
    with pytest.raises(BuildError, match="scores: the score of 'six' must be a number"):
        bd.build(dict(params(tmp_path, ['six']), scores={'six': 'many'}), FakePip({}), now='t')


def test_the_budget_enters_the_inputs_key_only_when_set(tmp_path):
    p = params(tmp_path, ['six'])
    plain = bd.inputs_key(p, ['six'])
    assert bd.inputs_key(dict(p, max_bytes=0, max_project_bytes=0, scores={'six': 1}), ['six']) == plain
    with_budget = bd.inputs_key(dict(p, max_bytes=10), ['six'])
    assert with_budget != plain
    assert bd.inputs_key(dict(p, max_bytes=10, scores={'six': 1}), ['six']) != with_budget
