"""uv: its options, the reader of its real freeze output, what stays out of a snapshot and incremental builds."""

import hashlib
import os
import shutil

from ansible_collections.pkgcache.overlay.plugins.module_utils import _builder as bd
from ansible_collections.pkgcache.overlay.plugins.module_utils import _uvcache as uc

from helpers import FakePip, Heads, build_eco, params, snapshot_files

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'fixtures')


def test_uv_freeze_parse_from_real_output():
    with open(os.path.join(FIXTURES, 'uv-freeze.txt')) as f:
        packages = uc.parse_freeze(f.read())
    assert {'name': 'charset-normalizer', 'version': '3.5.3'} in packages
    assert [p['name'] for p in packages] == sorted(p['name'] for p in packages)


def test_uv_exclude_leaves_out_host_specific_dirs(tmp_path):
    for name in ('archive-v0', 'wheels-v8', 'simple-v28', 'interpreter-v5', 'builds-v0', 'sdists-v11', '.tmpXYZ'):
        (tmp_path / name).mkdir()
    assert sorted(uc.exclude(str(tmp_path))) == ['.tmpXYZ', 'builds-v0', 'interpreter-v5', 'sdists-v11']


def test_uv_options_fall_back_to_the_spec_defaults_and_to_the_pip_index():
    o = uc.options({'index_url': 'http://i/simple/', 'uv': {'packages': ['six'], 'uv': None}})
    assert o == {'packages': ['six'], 'index_url': 'http://i/simple/', 'uv': 'uv', 'python': 'python3'}
    assert uc.options({'uv': {'index_url': 'http://own/'}, 'index_url': 'http://i/'})['index_url'] == 'http://own/'
    assert uc.options({})['packages'] == []  # the option not given at all


class CacheUv(object):
    """uv with a cache laid out like the real one: index pages in ``simple-v1`` (fetched on every install),
    ``wheels-v1/pypi/<name>/<name>-<version>.http`` with a relative symlink into ``archive-v0``; ``cache clean``
    and ``cache prune`` as uv does them. ``trees`` maps a spec to {name: version}; ``downloads`` lists the wheels
    fetched."""

    def __init__(self, trees):
        self.trees, self.downloads, self.calls = trees, [], []

    def __call__(self, argv, env, data=None, cwd=None):
        self.calls.append(argv)
        cache = env['UV_CACHE_DIR']
        if argv[1:] == ['--version']:
            return 0, 'uv 0.5.0\n', ''
        if argv[1] == 'venv':
            os.makedirs(os.path.join(argv[-1], 'bin'), exist_ok=True)
            return 0, '', ''
        if argv[1:3] == ['pip', 'install']:
            venv = os.path.dirname(os.path.dirname(argv[argv.index('--python') + 1]))
            spec = argv[-1]
            if spec not in self.trees:
                return 1, '', 'No solution found when resolving dependencies: %s' % spec
            for name, version in sorted(self.trees[spec].items()):
                versions = sorted(v for t in self.trees.values() for n, v in t.items() if n == name)
                _write(os.path.join(cache, 'simple-v1', 'pypi', name + '.rkyv'), ' '.join(versions))
                wheel = os.path.join(cache, 'wheels-v1', 'pypi', name, '%s-%s' % (name, version))
                if not os.path.exists(wheel + '.http'):
                    self.downloads.append('%s==%s' % (name, version))
                    archive = hashlib.sha256(('%s-%s' % (name, version)).encode()).hexdigest()[:16]
                    _write(os.path.join(cache, 'archive-v0', archive, name, '__init__.py'), version)
                    _write(wheel + '.http', 'policy of %s %s' % (name, version))
                    os.symlink(os.path.join('..', '..', '..', 'archive-v0', archive), wheel)
            _write(os.path.join(venv, 'installed'), ''.join('%s==%s\n' % kv for kv in sorted(self.trees[spec].items())))
            return 0, '', ''
        if argv[1:3] == ['pip', 'freeze']:
            venv = os.path.dirname(os.path.dirname(argv[argv.index('--python') + 1]))
            return 0, open(os.path.join(venv, 'installed')).read(), ''
        if argv[1:3] == ['cache', 'clean']:
            for name in argv[3:]:
                shutil.rmtree(os.path.join(cache, 'wheels-v1', 'pypi', name), ignore_errors=True)
                if os.path.exists(os.path.join(cache, 'simple-v1', 'pypi', name + '.rkyv')):
                    os.unlink(os.path.join(cache, 'simple-v1', 'pypi', name + '.rkyv'))
            return 0, '', ''
        if argv[1:3] == ['cache', 'prune']:
            linked = set(os.path.basename(os.readlink(os.path.join(d, f)))
                         for d, dirs, files in os.walk(os.path.join(cache, 'wheels-v1'))
                         for f in dirs + files if os.path.islink(os.path.join(d, f)))
            for archive in os.listdir(os.path.join(cache, 'archive-v0')):
                if archive not in linked:
                    shutil.rmtree(os.path.join(cache, 'archive-v0', archive))
            return 0, '', ''
        raise AssertionError(argv)


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


def _uv_build(tmp_path, store, uv, specs, now, **kw):
    return build_eco(tmp_path, store, 'uv', {'packages': specs, 'index_url': 'http://127.0.0.1:8371/simple/'}, uv, now, **kw)


_uv_files = snapshot_files


TREES_1 = {'web': {'web': '1.0', 'core': '2.0'}, 'old': {'old': '1.0', 'gone': '1.0'}, 'cli': {'cli': '1.0', 'core': '2.0'}}
# A week later: web takes core 2.1 (cli still pins 2.0), old is no longer asked for, new is.
TREES_2 = {'web': {'web': '1.0', 'core': '2.1'}, 'new': {'new': '1.0'}, 'cli': {'cli': '1.0', 'core': '2.0'},
           'pinned': {'pinned': '1.0', 'web': '0.9'}}


def test_uv_incremental_build_gives_the_snapshot_of_a_build_from_scratch(tmp_path):
    _uv_build(tmp_path, 'store', CacheUv(TREES_1), ['web', 'old', 'cli'], 't1')
    uv = CacheUv(TREES_2)
    incremental = _uv_build(tmp_path, 'store', uv, ['web', 'new', 'cli', 'nope'], 't2')
    scratch_uv = CacheUv(TREES_2)
    scratch = _uv_build(tmp_path, 'scratch', scratch_uv, ['web', 'new', 'cli', 'nope'], 't2')
    assert sorted(uv.downloads) == ['core==2.1', 'new==1.0'] and len(scratch_uv.downloads) == 5
    assert incremental['ecosystems']['uv']['reused'] > 0 and scratch['ecosystems']['uv']['reused'] == 0
    assert _uv_files(tmp_path, 'store', incremental['id']) == _uv_files(tmp_path, 'scratch', scratch['id'])
    assert incremental['id'] == scratch['id'] and incremental['packages'] == scratch['packages']
    assert [c[3:] for c in uv.calls if c[1:3] == ['cache', 'clean']] == [['gone', 'old']]


def test_uv_incremental_build_drops_a_package_it_no_longer_takes_and_the_other_versions(tmp_path):
    first = _uv_build(tmp_path, 'store', CacheUv(TREES_1), ['web', 'old', 'cli'], 't1')
    uv = CacheUv(TREES_2)
    second = _uv_build(tmp_path, 'store', uv, ['new', 'pinned'], 't2')
    before, after = _uv_files(tmp_path, 'store', first['id']), _uv_files(tmp_path, 'store', second['id'])
    assert not [p for p in after if '/old' in p or '/gone' in p or '/core' in p or '/cli' in p]
    assert 'uv/wheels-v1/pypi/web/web-0.9.http' in after and 'uv/wheels-v1/pypi/web/web-1.0.http' not in after
    assert [p for p in before if '/old' in p]
    # web 1.0 was cleaned out with the name (web 0.9 too): the spec that takes web 0.9 was installed again.
    assert sorted(uv.downloads) == ['new==1.0', 'pinned==1.0', 'web==0.9', 'web==0.9']
    assert len([c for c in uv.calls if c[1:3] == ['pip', 'install'] and c[-1] == 'pinned']) == 2


def test_uv_without_reuse_builds_from_an_empty_cache(tmp_path):
    _uv_build(tmp_path, 'store', CacheUv(TREES_1), ['web', 'old', 'cli'], 't1')
    uv = CacheUv(TREES_2)
    r = _uv_build(tmp_path, 'store', uv, ['web', 'new', 'cli'], 't2', reuse=False)
    assert len(uv.downloads) == 5 and r['ecosystems']['uv']['reused'] == 0
    assert not [c for c in uv.calls if c[1] == 'cache']


def test_uv_stale_names_are_the_previous_versions_no_resolution_takes():
    previous = {'packages': [{'name': 'a', 'version': '1'}, {'name': 'b', 'version': '1'}, {'name': 'c', 'version': '1'}]}
    frozen = [[{'name': 'a', 'version': '1'}, {'name': 'b', 'version': '2'}]]
    assert uc.stale_names(previous, frozen) == ['b', 'c']


def test_uv_leaves_out_what_the_pip_budget_left_out(tmp_path):
    index = {'giant': ('1', 'g' * 5000), 'web': ('1', 'w' * 100)}
    uv = CacheUv({'giant': {'giant': '1.0'}, 'web': {'web': '1.0', 'core': '2.0'}})
    pip = FakePip(index)

    def run(argv, env, data=None, cwd=None):
        return uv(argv, env) if 'UV_CACHE_DIR' in (env or {}) and argv[0] == 'uv' else pip(argv, env)

    p = dict(params(tmp_path, ['giant', 'web']), ecosystems=['pip', 'uv'], max_bytes=1000, workers=2,
             uv={'packages': ['giant', 'web']})
    r = bd.build(p, run, now='t', opener=Heads(dict((n, len(b)) for n, (v, b) in index.items())))
    assert [(x['ecosystem'], x['package']) for x in r['left_out']] == [('pip', 'giant'), ('uv', 'giant')]
    assert r['left_out'][1]['why'].endswith("(in pip's part; uv follows)")
    assert not [c for c in uv.calls if c[1:3] == ['pip', 'install'] and c[-1] == 'giant']
    assert sorted((x['ecosystem'], x['name']) for x in r['packages']) == [('pip', 'web'), ('uv', 'core'), ('uv', 'web')]
