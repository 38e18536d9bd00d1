"""The build orchestration, with a stand-in for pip that writes a real cache layout and report."""

import json
import os

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _builder as bd
from ansible_collections.pkgcache.overlay.plugins.module_utils import _pipcache as pc
from ansible_collections.pkgcache.overlay.plugins.module_utils import _store as st
from ansible_collections.pkgcache.overlay.plugins.module_utils._fill import BuildError

INDEX = 'http://127.0.0.1:8371/simple/'


class FakePip(object):
    """Resolves names from ``index`` {name: (version, body)}; caches bodies unless ``cache`` is False."""

    def __init__(self, index, cache=True):
        self.index, self.cache, self.calls = index, cache, []

    def __call__(self, argv, env):
        self.calls.append(argv)
        if argv[1:3] == ['-m', 'venv']:
            os.makedirs(os.path.join(argv[3], 'bin'))
            open(os.path.join(argv[3], 'bin', 'python'), 'w').close()
            return 0, '', ''
        if argv[1] == '-c':
            return 0, json.dumps({'pip': '23.0.1', 'python': '3.11.2'}) + '\n', ''
        assert env['PIP_CONFIG_FILE'] == os.devnull
        specs = open(argv[argv.index('-r') + 1]).read().split()
        cache = argv[argv.index('--cache-dir') + 1]
        items = []
        for spec in specs:
            if spec not in self.index:
                return 1, '', 'ERROR: No matching distribution found for %s' % spec
            version, body = self.index[spec]
            url = 'http://127.0.0.1:8371/packages/%s-%s-py3-none-any.whl' % (spec, version)
            items.append({'metadata': {'name': spec, 'version': version}, 'download_info': {'url': url}})
            if self.cache and '--dry-run' not in argv:
                path = pc.http_cache_paths(cache, url)[1]
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, 'w') as f:
                    f.write(body)
        with open(argv[argv.index('--report') + 1], 'w') as f:
            json.dump({'install': items}, f)
        os.makedirs(os.path.join(cache, 'selfcheck'), exist_ok=True)
        return 0, '', ''


def params(tmp_path, packages):
    return {'packages': packages, 'requirements': None, 'index_url': INDEX, 'trusted_host': '127.0.0.1:8371',
            'python': 'python3', 'pip_version': None, 'venv_dir': None, 'work_dir': str(tmp_path / 'work'),
            'store': str(tmp_path / 'store'), 'publish': True}


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


class ResolverPip(FakePip):
    """A pip whose resolver behaves like the real one on a conflict: ``web`` alone takes ``core`` 2.0,
    ``legacy`` needs ``core<2``, and the two together take ``core`` 1.0 (the boto3/aiobotocore shape)."""

    DEPS = {'web': [('web', '1.0'), ('core', '2.0')], 'legacy': [('legacy', '1.0'), ('core', '1.0')],
            'broken': None}

    def __call__(self, argv, env):
        if argv[1:3] == ['-m', 'venv'] or argv[1] == '-c':
            return FakePip.__call__(self, argv, env)
        self.calls.append(argv)
        specs = open(argv[argv.index('-r') + 1]).read().split()
        self.requests = getattr(self, 'requests', []) + [specs]
        cache = argv[argv.index('--cache-dir') + 1]
        if any(self.DEPS.get(s) is None for s in specs):
            return 1, '', 'ERROR: ResolutionImpossible: broken needs core>=3'
        picked = dict(pair for s in specs for pair in self.DEPS[s])
        if 'web' in specs and 'legacy' in specs:
            picked['core'] = '1.0'
        items = []
        for name, version in sorted(picked.items()):
            url = 'http://127.0.0.1:8371/packages/%s-%s-py3-none-any.whl' % (name, version)
            items.append({'metadata': {'name': name, 'version': version}, 'download_info': {'url': url}})
            path = pc.http_cache_paths(cache, url)[1]
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'w') as f:
                f.write('%s %s' % (name, version))
        with open(argv[argv.index('--report') + 1], 'w') as f:
            json.dump({'install': items}, f)
        return 0, '', ''


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
