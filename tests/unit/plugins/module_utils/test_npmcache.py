"""npm: input checks, the readers of its real cache format (fixtures made by npm) and the fill."""

import base64
import hashlib
import http.server
import json
import os
import re
import threading
import time

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _npmcache as nc
from ansible_collections.pkgcache.overlay.plugins.module_utils._fill import BuildError

from helpers import build_eco, snapshot_files

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'fixtures')


def test_npm_lock_packages_from_a_real_lock():
    with open(os.path.join(FIXTURES, 'npm', 'package-lock.json')) as f:
        packages = nc.lock_packages(json.load(f))
    names = dict((p['name'], p['version']) for p in packages)
    assert names['chalk'] == '4.1.2' and names['@isaacs/string-locale-compare'] == '1.1.0'
    assert names['has-flag'] == '4.0.0'  # a dependency, resolved the way npm install does
    assert all(p['integrity'].startswith('sha512-') for p in packages)
    assert '' not in names and 'x' not in names


def test_npm_index_reader_finds_the_tarballs_npm_cached():
    found = nc.cached_tarballs(os.path.join(FIXTURES, 'npm'))
    assert ('chalk', '4.1.2') in found and ('@isaacs/string-locale-compare', '1.1.0') in found
    assert ('chalk', '4.1.1') not in found


def test_npm_index_reader_skips_torn_lines_and_honours_deletions(tmp_path):
    bucket = tmp_path / '_cacache' / 'index-v5' / 'aa' / 'bb'
    bucket.parent.mkdir(parents=True)
    key = nc.KEY_PREFIX + 'https://registry.npmjs.org/a/-/a-1.0.0.tgz'

    def line(obj):
        body = json.dumps(obj)
        return '\n%s\t%s' % (hashlib.sha1(body.encode()).hexdigest(), body)

    bucket.write_text(line({'key': key, 'integrity': 'sha512-x'}) + '\nbadhash\t{"key": "k2", "integrity": "y"}'
                      + line({'key': nc.KEY_PREFIX + 'https://r/b/-/b-2.0.0.tgz', 'integrity': 'sha512-y'})
                      + line({'key': nc.KEY_PREFIX + 'https://r/b/-/b-2.0.0.tgz', 'integrity': None}))
    assert nc.cached_tarballs(str(tmp_path)) == {('a', '1.0.0')}


@pytest.mark.parametrize('key, expected', [
    (nc.KEY_PREFIX + 'https://registry.npmjs.org/lodash/-/lodash-4.17.21.tgz', ('lodash', '4.17.21')),
    (nc.KEY_PREFIX + 'https://registry.npmjs.org/@types/node/-/node-20.1.0.tgz', ('@types/node', '20.1.0')),
    (nc.KEY_PREFIX + 'https://registry.npmjs.org/lodash', None),
    ('pacote:tarball:lodash@4', None),
])
def test_npm_tarball_keys(key, expected):
    assert nc.tarball_package(key) == expected


@pytest.mark.parametrize('spec', ['lodash', 'lodash@^4.17.0', '@types/node@20', 'express@4 || 5'])
def test_npm_specs_accepted(spec):
    assert nc.check_specs([spec]) == [spec]


@pytest.mark.parametrize('spec', ['', 'git+https://x/y.git', 'file:../x', 'https://x/y.tgz', '../local', '--global', 'A B'])
def test_npm_specs_refused_naming_the_spec(spec):
    with pytest.raises(BuildError, match='npm package'):
        nc.check_specs([spec])


def test_npm_env_drops_host_npm_settings():
    env = nc.clean_env({'npm_config_registry': 'http://evil/', 'NPM_CONFIG_CACHE': '/x', 'HOME': '/root'})
    assert 'npm_config_registry' not in env and 'NPM_CONFIG_CACHE' not in env and env['HOME'] == '/root'
    assert env['npm_config_userconfig'] == os.devnull


# The os, cpu and libc that npm records in a lock file for a package with a prebuilt binary (as esbuild's are).
PLATFORM_META = {'bin-darwin': {'os': ['darwin'], 'cpu': ['arm64']}, 'bin-linux': {'os': ['linux'], 'cpu': ['x64']},
                 'bin-musl': {'os': ['linux'], 'cpu': ['x64'], 'libc': ['musl']}, 'not-win': {'os': ['!win32']},
                 'any-os': {'os': ['any'], 'cpu': 'x64'}, 'not-arm': {'cpu': ['!arm', '!arm64']}}


def write_lock(project, tree):
    """The package-lock.json npm writes for ``tree`` ({name: version}); a tarball's content is
    ``tarball of <name>@<version>`` (as CacacheNpm caches it)."""
    lock = {'lockfileVersion': 3, 'packages': dict(
        ('node_modules/' + n, dict({'version': v, 'integrity': 'sha512-' + base64.b64encode(
            hashlib.sha512(('tarball of %s@%s' % (n, v)).encode()).digest()).decode()}, **PLATFORM_META.get(n, {})))
        for n, v in tree.items())}
    lock['packages'][''] = {'name': 'pkgcache-snapshot'}
    with open(os.path.join(project, 'package-lock.json'), 'w') as f:
        json.dump(lock, f)


class FakeNpm(object):
    """npm with a registry where ``app`` alone takes ``lib@2``, ``old`` needs ``lib@1``, and together npm dedupes to ``lib@1``."""

    TREES = {'app': {'app': '1.0.0', 'lib': '2.0.0'}, 'old': {'old': '1.0.0', 'lib': '1.0.0'}}

    def __init__(self):
        self.resolved = []

    def __call__(self, argv, env, data=None, cwd=None):
        cache = argv[argv.index('--cache') + 1] if '--cache' in argv else None
        if argv[1] == 'version':
            return 0, json.dumps({'npm': '10.9.0', 'node': '20.0.0'}), ''
        if argv[1] == 'install':
            specs = [a for a in argv[2:] if not a.startswith('-') and a not in (cache, argv[argv.index('--registry') + 1])]
            self.resolved.append(specs)
            if any(s not in self.TREES for s in specs):
                return 1, '', 'npm error 404 Not Found - GET %s' % specs[-1]
            tree = dict(pair for s in specs for pair in self.TREES[s].items())
            if 'app' in specs and 'old' in specs:
                tree['lib'] = '1.0.0'
            write_lock(cwd, tree)
            return 0, '', ''
        if argv[1:3] == ['cache', 'add']:
            bucket = os.path.join(cache, '_cacache', 'index-v5', 'aa', 'bb')
            os.makedirs(bucket, exist_ok=True)
            with open(os.path.join(bucket, 'bucket'), 'a') as f:
                for spec in argv[argv.index('--registry') + 2:]:
                    name, version = spec.rsplit('@', 1)
                    key = nc.KEY_PREFIX + 'https://registry.example/%s/-/%s-%s.tgz' % (name, name, version)
                    body = json.dumps({'key': key, 'integrity': 'sha512-x', 'size': 1, 'time': 1})
                    f.write('\n%s\t%s' % (hashlib.sha1(body.encode()).hexdigest(), body))
            return 0, '', ''
        raise AssertionError(argv)


def test_npm_resolves_every_package_in_its_own_project(tmp_path):
    npm = FakeNpm()
    cache, scratch = tmp_path / 'cache', tmp_path / 'scratch'
    cache.mkdir()
    scratch.mkdir()
    packages, misses, meta, key = nc.fill({'packages': ['app', 'old', 'nope'], 'registry': 'https://registry.example/',
                                           'npm': 'npm', 'workers': 3}, str(cache), str(scratch), npm)
    assert sorted(npm.resolved) == [['app'], ['nope'], ['old']]
    assert [(p['name'], p['version']) for p in packages] == [('app', '1.0.0'), ('lib', '1.0.0'), ('lib', '2.0.0'), ('old', '1.0.0')]
    assert meta['resolutions'] == {'app': ['app@1.0.0', 'lib@2.0.0'], 'old': ['lib@1.0.0', 'old@1.0.0']}
    assert [(m['package'], m['ecosystem']) for m in misses] == [('nope', 'npm')] and '404' in misses[0]['reason']


class CacacheNpm(object):
    """npm with a real cacache layout: ``install`` fetches (or revalidates) the packument of every package of the
    tree, ``cache add`` downloads a tarball unless its content and index entry are in the cache. ``trees`` maps
    a spec to {name: version}; ``downloads`` lists the tarballs fetched."""

    def __init__(self, trees, time=1):
        self.trees, self.downloads, self.time, self.calls = trees, [], time, []

    def packument(self, name):
        """The packument of ``name`` the registry serves: the versions the trees take."""
        return json.dumps(sorted(v for t in self.trees.values() for n, v in t.items() if n == name)).encode()

    def _put(self, cache, key, data, write_content):
        root = os.path.join(cache, '_cacache')
        digest = hashlib.sha512(data).digest()
        integrity = 'sha512-' + base64.b64encode(digest).decode()
        hexd = digest.hex()
        content = os.path.join(root, 'content-v2', 'sha512', hexd[:2], hexd[2:4], hexd[4:])
        if write_content and not os.path.exists(content):
            os.makedirs(os.path.dirname(content), exist_ok=True)
            with open(content, 'wb') as f:
                f.write(data)
        bucket = hashlib.sha256(key.encode()).hexdigest()
        path = os.path.join(root, 'index-v5', bucket[:2], bucket[2:4], bucket[4:])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        body = json.dumps({'key': key, 'integrity': integrity, 'time': self.time, 'size': len(data)})
        with open(path, 'a') as f:
            f.write('\n%s\t%s' % (hashlib.sha1(body.encode()).hexdigest(), body))
        return content

    def __call__(self, argv, env, data=None, cwd=None):
        self.calls.append(argv)
        cache = argv[argv.index('--cache') + 1] if '--cache' in argv else None
        registry = argv[argv.index('--registry') + 1] if '--registry' in argv else None
        if argv[1] == 'version':
            return 0, json.dumps({'npm': '10.9.0', 'node': '20.0.0'}), ''
        if argv[1] == 'install':
            spec = argv[-1]
            if spec not in self.trees:
                return 1, '', 'npm error 404 Not Found - GET %s' % spec
            tree = self.trees[spec]
            for name in tree:  # a packument: fetched, or revalidated (a new index line, the same content)
                self._put(cache, nc.KEY_PREFIX + registry + name.replace('/', '%2f'), self.packument(name), True)
            write_lock(cwd, tree)
            return 0, '', ''
        if argv[1:3] == ['cache', 'add']:
            for spec in argv[argv.index('--registry') + 2:]:
                name, version = spec.rsplit('@', 1)
                base = name.rsplit('/', 1)[-1]
                url = '%s%s/-/%s-%s.tgz' % (registry, name, base, version)
                tarball = ('tarball of %s' % spec).encode()
                if (name, version) in nc.cached_tarballs(cache):
                    continue
                self.downloads.append(spec)
                self._put(cache, nc.KEY_PREFIX + url, tarball, True)
                self._put(cache, nc.PACOTE_PREFIX + spec, tarball, False)
            return 0, '', ''
        raise AssertionError(argv)


def _npm_build(tmp_path, store, npm, specs, now, **kw):
    return build_eco(tmp_path, store, 'npm', {'packages': specs, 'registry': 'https://registry.example/'}, npm, now, **kw)


_npm_files = snapshot_files


def _npm_hits(tmp_path, store, snap_id):
    """{key: integrity} of the live index entries of a snapshot (what npm finds in it)."""
    from ansible_collections.pkgcache.overlay.plugins.module_utils import _store as st
    with open(st.manifest_path(str(tmp_path / store), snap_id)) as f:
        tree = st.build_tree(str(tmp_path / store), json.load(f))
    return dict((e['key'], e['integrity']) for e in nc.index_entries(os.path.join(tree, 'npm')))


TREES_1 = {'app': {'app': '1.0.0', 'lib': '2.0.0'}, 'old': {'old': '1.0.0', 'gone': '1.0.0'},
           '@s/tool': {'@s/tool': '1.0.0', 'lib': '2.0.0'}}
# A week later: app takes lib 2.1.0, old is no longer asked for, new is.
TREES_2 = {'app': {'app': '1.0.0', 'lib': '2.1.0'}, 'new': {'new': '1.0.0'}, '@s/tool': {'@s/tool': '1.0.0', 'lib': '2.0.0'}}


def test_npm_incremental_build_gives_the_snapshot_of_a_build_from_scratch(tmp_path):
    _npm_build(tmp_path, 'store', CacacheNpm(TREES_1), ['app', 'old', '@s/tool'], 't1')
    npm = CacacheNpm(TREES_2, time=2)
    incremental = _npm_build(tmp_path, 'store', npm, ['app', 'new', '@s/tool', 'nope'], 't2')
    scratch_npm = CacacheNpm(TREES_2, time=2)
    scratch = _npm_build(tmp_path, 'scratch', scratch_npm, ['app', 'new', '@s/tool', 'nope'], 't2')
    # Only the two changed packages were downloaded again; the rest came from the previous snapshot.
    assert sorted(npm.downloads) == ['lib@2.1.0', 'new@1.0.0'] and len(scratch_npm.downloads) == 5
    assert incremental['ecosystems']['npm']['reused'] > 0 and scratch['ecosystems']['npm']['reused'] == 0
    inc, fresh = _npm_files(tmp_path, 'store', incremental['id']), _npm_files(tmp_path, 'scratch', scratch['id'])
    # The same files; the same content; the same index entries (a reused entry keeps the time it was cached).
    assert sorted(inc) == sorted(fresh)
    assert [p for p in inc if inc[p] != fresh[p] and '/index-v5/' not in p] == []
    assert _npm_hits(tmp_path, 'store', incremental['id']) == _npm_hits(tmp_path, 'scratch', scratch['id'])
    assert sorted((p['name'], p['version']) for p in incremental['packages']) == \
        sorted((p['name'], p['version']) for p in scratch['packages'])


def test_npm_incremental_build_drops_the_entries_of_packages_it_no_longer_takes(tmp_path):
    first = _npm_build(tmp_path, 'store', CacacheNpm(TREES_1), ['app', 'old', '@s/tool'], 't1')
    second = _npm_build(tmp_path, 'store', CacacheNpm(TREES_2, time=2), ['app', 'new', '@s/tool'], 't2')
    before, after = _npm_files(tmp_path, 'store', first['id']), _npm_files(tmp_path, 'store', second['id'])
    cache = tmp_path / 'checkout'
    from ansible_collections.pkgcache.overlay.plugins.module_utils import _store as st
    with open(st.manifest_path(str(tmp_path / 'store'), second['id'])) as f:
        manifest = json.load(f)
    tree = st.build_tree(str(tmp_path / 'store'), manifest)
    keys = set(e['key'] for e in nc.index_entries(os.path.join(tree, 'npm')))
    assert not [k for k in keys if '/old' in k or '/gone' in k or 'old@' in k or 'gone@' in k or 'lib@2.0.0' == k]
    assert nc.KEY_PREFIX + 'https://registry.example/lib/-/lib-2.0.0.tgz' in keys  # @s/tool still takes it
    old_tarball = CacacheNpm({})._put(str(cache), 'k', b'tarball of old@1.0.0', False)
    rel = 'npm/' + os.path.relpath(old_tarball, str(cache)).replace(os.sep, '/')
    assert rel in before and rel not in after
    # The reused tarballs and their index buckets are the same objects as before.
    shared = [p for p in after if '/content-v2/' in p and p in before]
    assert shared and all(after[p] == before[p] for p in shared)
    # npm appended to the seeded index buckets: copies, so the previous snapshot's objects did not change.
    for digest in set(before.values()) - {None}:
        with open(st.object_path(str(tmp_path / 'store'), digest), 'rb') as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest


def test_npm_without_reuse_builds_from_an_empty_cache(tmp_path):
    _npm_build(tmp_path, 'store', CacacheNpm(TREES_1), ['app', 'old', '@s/tool'], 't1')
    npm = CacacheNpm(TREES_2, time=2)
    r = _npm_build(tmp_path, 'store', npm, ['app', 'new', '@s/tool'], 't2', reuse=False)
    assert len(npm.downloads) == 5 and r['ecosystems']['npm']['reused'] == 0


@pytest.mark.parametrize('key, name', [
    (nc.KEY_PREFIX + 'https://registry.npmjs.org/chalk', 'chalk'),
    (nc.KEY_PREFIX + 'https://registry.npmjs.org/@isaacs%2fstring-locale-compare', '@isaacs/string-locale-compare'),
    (nc.KEY_PREFIX + 'http://127.0.0.1:8373/npm/@s/tool', '@s/tool'),
    (nc.KEY_PREFIX + 'https://registry.npmjs.org/chalk/-/chalk-4.1.2.tgz', None),
    ('pacote:tarball:chalk@4.1.2', None),
])
def test_npm_packument_keys(key, name):
    assert nc.packument_name(key) == name


def test_npm_prune_keeps_the_entries_in_use_from_a_real_cache(tmp_path):
    import shutil
    shutil.copytree(os.path.join(FIXTURES, 'npm', '_cacache'), str(tmp_path / '_cacache'))
    before = set(e['key'] for e in nc.index_entries(str(tmp_path)))
    nc.prune(str(tmp_path), lambda k: nc.key_in_use(k, {'chalk'}, {('chalk', '4.1.2')}))
    after = set(e['key'] for e in nc.index_entries(str(tmp_path)))
    assert after and after < before and all('chalk' in k for k in after)
    assert ('chalk', '4.1.2') in nc.cached_tarballs(str(tmp_path))


class Registry(object):
    """The packuments a CacacheNpm serves, for the builder's ``opener``; ``fetched`` lists the URLs asked for."""

    def __init__(self, npm, fail=()):
        self.npm, self.fail, self.fetched = npm, fail, []

    def __call__(self, url):
        import io
        self.fetched.append(url)
        name = url[len('https://registry.example/'):].replace('%2f', '/')
        if name in self.fail:
            raise IOError('connection reset')
        return io.BytesIO(self.npm.packument(name))


# Keeps @s/tool and its dependency; app takes lib 2.1.0 (a release of lib), new is new.
TREES_3 = {'app': {'app': '1.0.0', 'lib': '2.0.0'}, '@s/tool': {'@s/tool': '1.0.0', 'dep': '1.0.0'}}
TREES_4 = {'app': {'app': '1.0.0', 'lib': '2.1.0'}, '@s/tool': {'@s/tool': '1.0.0', 'dep': '1.0.0'},
           'new': {'new': '1.0.0'}}


def _installs(npm):
    return sorted(argv[-1] for argv in npm.calls if argv[1] == 'install')


def test_npm_keeps_the_resolutions_whose_packuments_did_not_change_and_matches_a_build_from_scratch(tmp_path):
    _npm_build(tmp_path, 'store', CacacheNpm(TREES_3), ['app', '@s/tool'], 't1')
    npm = CacacheNpm(TREES_4, time=2)
    registry = Registry(npm)
    incremental = bd_build(tmp_path, 'store', npm, ['app', '@s/tool', 'new'], 't2', opener=registry)
    scratch_npm = CacacheNpm(TREES_4, time=2)
    scratch = bd_build(tmp_path, 'scratch', scratch_npm, ['app', '@s/tool', 'new'], 't2', opener=Registry(scratch_npm))
    # @s/tool's packuments (its own and dep's) are what the cache holds: npm resolves only app (lib changed) and new.
    assert _installs(npm) == ['app', 'new'] and _installs(scratch_npm) == ['@s/tool', 'app', 'new']
    assert sorted(u.rsplit('/', 1)[-1] for u in registry.fetched) == ['@s%2ftool', 'app', 'dep', 'lib']
    # npm cache add fetches only the tarballs that are not in the cache.
    adds = [argv for argv in npm.calls if argv[1:3] == ['cache', 'add']]
    assert [a[a.index('--registry') + 2:] for a in adds] == [['lib@2.1.0', 'new@1.0.0']]
    assert incremental['ecosystems']['npm']['resolutions'] == scratch['ecosystems']['npm']['resolutions']
    inc, fresh = _npm_files(tmp_path, 'store', incremental['id']), _npm_files(tmp_path, 'scratch', scratch['id'])
    assert sorted(inc) == sorted(fresh)
    assert [p for p in inc if inc[p] != fresh[p] and '/index-v5/' not in p] == []
    assert _npm_hits(tmp_path, 'store', incremental['id']) == _npm_hits(tmp_path, 'scratch', scratch['id'])
    assert _build_key(tmp_path, 'store', incremental['id']) == _build_key(tmp_path, 'scratch', scratch['id'])


@pytest.mark.parametrize('change', ['release', 'unreachable', 'no opener'])
def test_npm_resolves_again_when_a_packument_changed_or_cannot_be_checked(tmp_path, change):
    _npm_build(tmp_path, 'store', CacacheNpm(TREES_3), ['app', '@s/tool'], 't1')
    trees = dict(TREES_4, other={'dep': '2.0.0'}) if change == 'release' else TREES_4  # dep 2.0.0 is released
    npm = CacacheNpm(trees, time=2)
    opener = None if change == 'no opener' else Registry(npm, fail=('dep',) if change == 'unreachable' else ())
    r = bd_build(tmp_path, 'store', npm, ['app', '@s/tool', 'new'], 't2', opener=opener)
    assert _installs(npm) == ['@s/tool', 'app', 'new']
    assert r['ecosystems']['npm']['resolutions']['@s/tool'] == ['@s/tool@1.0.0', 'dep@1.0.0']


def test_npm_resolves_again_a_kept_resolution_whose_packument_npm_fetched_anew(tmp_path):
    """A release between the check and npm's own fetch (here: while app is resolved): @s/tool is resolved too."""
    _npm_build(tmp_path, 'store', CacacheNpm(TREES_3), ['app', '@s/tool'], 't1')
    npm = CacacheNpm(dict(TREES_4, app={'app': '1.0.0', 'lib': '2.1.0', 'dep': '1.0.0'}), time=2)
    registry = Registry(CacacheNpm(TREES_4))  # what the registry served at the check: dep 1.0.0 only
    npm.trees['later'] = {'dep': '1.1.0'}  # npm then sees dep 1.1.0 published
    r = bd_build(tmp_path, 'store', npm, ['app', '@s/tool'], 't2', opener=registry)
    assert sorted(argv[-1] for argv in npm.calls if argv[1] == 'install') == ['@s/tool', 'app']
    assert r['ecosystems']['npm']['resolutions']['@s/tool'] == ['@s/tool@1.0.0', 'dep@1.0.0']


@pytest.mark.parametrize('have, expected', [
    ({('a', '1.0.0'): 'sha512-a1'}, ['b@1.0.0']),
    ({('a', '1.0.0'): 'sha512-other', ('b', '1.0.0'): 'sha512-b1'}, ['a@1.0.0']),
    ({}, ['a@1.0.0', 'b@1.0.0']),
])
def test_npm_cache_add_skips_only_tarballs_cached_with_the_lock_files_integrity(have, expected):
    packages = [{'name': 'a', 'version': '1.0.0', 'integrity': 'sha512-a1'},
                {'name': 'b', 'version': '1.0.0', 'integrity': 'sha512-b1'}]
    assert ['%s@%s' % (p['name'], p['version']) for p in nc.to_add(packages, have)] == expected


def test_npm_tarball_integrities_need_both_keys_npm_cache_add_writes(tmp_path):
    npm = CacacheNpm({})
    npm._put(str(tmp_path), nc.KEY_PREFIX + 'https://r/a/-/a-1.0.0.tgz', b'a', True)
    npm._put(str(tmp_path), nc.PACOTE_PREFIX + 'a@1.0.0', b'a', False)
    npm._put(str(tmp_path), nc.KEY_PREFIX + 'https://r/b/-/b-1.0.0.tgz', b'b', True)  # no pacote entry
    npm._put(str(tmp_path), nc.KEY_PREFIX + 'https://r/c/-/c-1.0.0.tgz', b'c', True)
    npm._put(str(tmp_path), nc.PACOTE_PREFIX + 'c@1.0.0', b'other', False)  # another integrity
    assert sorted(nc.tarball_integrities(str(tmp_path))) == [('a', '1.0.0')]


def test_npm_same_digest_compares_the_sha512_of_the_integrity():
    integrity = 'sha512-' + base64.b64encode(hashlib.sha512(b'{"x": 1}').digest()).decode()
    assert nc.same_digest(integrity, _sha(b'{"x": 1}')) and nc.same_digest('sha1-abc ' + integrity, _sha(b'{"x": 1}'))
    assert not nc.same_digest(integrity, _sha(b'{"x": 2}')) and not nc.same_digest('', _sha(b''))


def bd_build(tmp_path, store, npm, specs, now, opener=None, platforms=None):
    from ansible_collections.pkgcache.overlay.plugins.module_utils import _builder as bd
    p = {'ecosystems': ['npm'], 'npm': {'packages': specs, 'registry': 'https://registry.example/', 'platforms': platforms},
         'store': str(tmp_path / store), 'work_dir': str(tmp_path / 'work'), 'publish': True, 'workers': 2,
         'reuse': True}
    fetcher = nc.packument_fetcher
    if opener is not None:  # the registry's packuments come from ``opener`` (a Registry) instead of the network
        nc.packument_fetcher = lambda o: (lambda url, accept, limit, deadline: hashlib.sha512(opener(url).read()).digest(),
                                          lambda: None)
    try:
        return bd.build(p, npm, now=now, opener=opener)
    finally:
        nc.packument_fetcher = fetcher


def _build_key(tmp_path, store, snap_id):
    from ansible_collections.pkgcache.overlay.plugins.module_utils import _store as st
    with open(st.manifest_path(str(tmp_path / store), snap_id)) as f:
        return json.load(f)['build_key']


def _sha(body):
    return hashlib.sha512(body).digest()


class _Server(object):
    """A registry on 127.0.0.1 (port 0): ``/drip`` sends its body a byte every 50 ms, ``/gone`` is a 404,
    anything else is ``{"name": <path>}``; ``connections``, ``paths`` and ``accepts`` record the requests."""

    def __init__(self, chunked=False):
        self.connections, self.paths, self.accepts = [], [], []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def setup(self):
                outer.connections.append(self.client_address)
                http.server.BaseHTTPRequestHandler.setup(self)

            def do_GET(self):
                outer.paths.append(self.path)
                outer.accepts.append(self.headers.get('Accept'))
                if self.path == '/drip':
                    self.send_response(200)
                    self.send_header('Content-Length', '100')
                    self.end_headers()
                    try:
                        for dummy in range(100):
                            self.wfile.write(b'x')
                            self.wfile.flush()
                            time.sleep(0.05)
                    except OSError:
                        pass
                    return
                body = json.dumps({'name': self.path}).encode() if self.path != '/gone' else b'not found'
                self.send_response(200 if self.path != '/gone' else 404)
                if chunked:
                    self.send_header('Transfer-Encoding', 'chunked')
                    self.end_headers()
                    self.wfile.write(b'%x\r\n%s\r\n0\r\n\r\n' % (len(body), body))
                else:
                    self.send_header('Content-Length', str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = 'http://127.0.0.1:%d/' % self.server.server_port

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize('chunked', [False, True])
def test_npm_registry_client_gets_packuments_over_one_connection(chunked):
    with _Server(chunked) as server:
        registry = server.url
        client = nc.RegistryClient(registry, limit=100)
        assert client.digest(registry + 'a') == _sha(json.dumps({'name': '/a'}).encode())
        assert client.digest(registry + '@s%2fb') == _sha(json.dumps({'name': '/@s%2fb'}).encode())
        with pytest.raises(OSError, match='404'):
            client.digest(registry + 'gone')
        with pytest.raises(ValueError):
            client.digest('http://elsewhere.example/a')
        assert server.paths == ['/a', '/@s%2fb', '/gone'] and len(server.connections) == 1
        client.close()
        assert client.digest(registry + 'c') == _sha(json.dumps({'name': '/c'}).encode()) and len(server.connections) == 2
        client.close()
        # A body larger than the limit (the client's, or the cached size and a margin) is not read on.
        with pytest.raises(OSError, match='larger'):
            nc.RegistryClient(registry, limit=5).digest(registry + 'a')
        with pytest.raises(OSError, match='larger'):
            client.digest(registry + 'a', limit=5)
        assert client.digest(registry + 'a', limit=len(json.dumps({'name': '/a'}))) == _sha(json.dumps({'name': '/a'}).encode())
        client.close()


def test_npm_registry_client_gives_up_on_a_dripping_body_at_its_deadline():
    with _Server() as server:
        # The socket's timeout (0.5 s) never passes between two bytes (50 ms): only the deadline ends it.
        client = nc.RegistryClient(server.url, timeout=0.5)
        t0 = time.monotonic()
        with pytest.raises(OSError):
            client.digest(server.url + 'drip')
        assert time.monotonic() - t0 < 2
        # The caller's deadline, if earlier, ends it too; the connection is usable again afterwards.
        client = nc.RegistryClient(server.url, timeout=30)
        t0 = time.monotonic()
        with pytest.raises(OSError):
            client.digest(server.url + 'drip', deadline=time.monotonic() + 0.3)
        assert time.monotonic() - t0 < 2
        assert client.digest(server.url + 'a') == _sha(json.dumps({'name': '/a'}).encode())
        with pytest.raises(OSError, match='deadline'):
            client.digest(server.url + 'a', deadline=time.monotonic() - 1)
        client.close()


def test_npm_packument_check_has_a_total_budget_past_which_packuments_count_as_changed():
    with _Server() as server:
        client = nc.RegistryClient(server.url, timeout=30)
        entries = dict((n, {'key': nc.KEY_PREFIX + server.url + n, 'size': 100,
                            'integrity': nc.sha512_integrity(_sha(json.dumps({'name': '/' + n}).encode()))})
                       for n in ('a', 'b', 'drip'))
        t0 = time.monotonic()
        unchanged = nc.unchanged_packuments(entries, ['a', 'b', 'drip'], client.digest, 1, server.url, budget=0.5)
        assert unchanged == {'a', 'b'} and time.monotonic() - t0 < 2
        # Nothing is fetched once the budget is spent.
        fetched = []
        assert nc.unchanged_packuments(entries, ['a'], lambda *a: fetched.append(a), 1, server.url, budget=0) == set()
        assert fetched == []
        client.close()


def test_npm_packument_check_sends_the_stored_accept_header_and_reads_up_to_the_cached_size():
    with _Server() as server:
        corgi = 'application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*'
        client = nc.RegistryClient(server.url)
        body = json.dumps({'name': '/a'}).encode()
        entries = {'a': {'key': nc.KEY_PREFIX + server.url + 'a', 'integrity': nc.sha512_integrity(_sha(body)),
                         'size': len(body), 'metadata': {'reqHeaders': {'accept': corgi}}},
                   'b': {'key': nc.KEY_PREFIX + server.url + 'b', 'integrity': 'sha512-other', 'size': 10}}
        assert nc.unchanged_packuments(entries, ['a', 'b'], client.digest, 1, server.url) == {'a'}
        assert sorted(zip(server.paths, server.accepts)) == [('/a', corgi), ('/b', nc.PACKUMENT_ACCEPT)]
        client.close()
    # A packument of the cache npm filled: the Accept header of its live entry, its size and a margin.
    entries = nc.packument_entries(os.path.join(FIXTURES, 'npm'))
    assert nc.stored_accept(entries['chalk']) == 'application/json'
    assert nc.size_limit(entries['chalk']) == 63663 + nc.SIZE_MARGIN
    assert nc.stored_accept({'metadata': {'reqHeaders': {'accept': corgi}}}) == corgi
    assert nc.stored_accept({'metadata': None}) == nc.PACKUMENT_ACCEPT
    assert nc.size_limit({}) == nc.PACKUMENT_LIMIT


class ReleasingNpm(CacacheNpm):
    """A CacacheNpm whose index lines carry the real time (ms), where ``lib`` 1.0.1 is released right after npm
    first fetched lib's packument: the first fetch stores one packument, every later one another."""

    def __init__(self, trees):
        import threading
        CacacheNpm.__init__(self, trees)
        self.lib_fetches, self.lock = 0, threading.Lock()

    def packument(self, name):
        if name != 'lib':
            return CacacheNpm.packument(self, name)
        return b'["1.0.0"]' if self.lib_fetches <= 1 else b'["1.0.0", "1.0.1"]'

    def __call__(self, argv, env, data=None, cwd=None):
        with self.lock:  # one npm at a time: the later fetch of lib is the later line of its bucket
            self.time = int(time.time() * 1000)
            if argv[1] == 'install' and 'lib' in self.trees.get(argv[-1], {}):
                self.lib_fetches += 1
            return CacacheNpm.__call__(self, argv, env, data, cwd)


TREES_5 = {'app': {'app': '1.0.0', 'lib': '1.0.0'}, 'other': {'other': '1.0.0', 'lib': '1.0.0'},
           'solo': {'solo': '1.0.0'}}


def test_npm_does_not_record_resolutions_naming_a_packument_that_changed_during_the_build(tmp_path):
    """Build N stores two different packuments of lib (a release while it ran): app and other may have been
    resolved against the older one, so build N+1 runs npm for them although the registry serves what it cached."""
    npm = ReleasingNpm(TREES_5)
    first = bd_build(tmp_path, 'store', npm, ['app', 'other', 'solo'], 't1')
    assert npm.lib_fetches == 2
    assert first['ecosystems']['npm']['resolutions'] == {'solo': ['solo@1.0.0']}
    # The snapshot itself is the one it was: lib's newest packument, both tarballs.
    hits = _npm_hits(tmp_path, 'store', first['id'])
    assert hits[nc.KEY_PREFIX + 'https://registry.example/lib'] == \
        nc.sha512_integrity(hashlib.sha512(b'["1.0.0", "1.0.1"]').digest())
    assert sorted((p['name'], p['version']) for p in first['packages']) == \
        [('app', '1.0.0'), ('lib', '1.0.0'), ('other', '1.0.0'), ('solo', '1.0.0')]
    # Build N+1: the registry serves lib's packument as cached; only solo's resolution is kept.
    later = CacacheNpm(TREES_5, time=1)
    later.packument = npm.packument
    second = bd_build(tmp_path, 'store', later, ['app', 'other', 'solo'], 't2', opener=Registry(later))
    assert _installs(later) == ['app', 'other']
    assert sorted(second['ecosystems']['npm']['resolutions']) == ['app', 'other', 'solo']


def test_npm_changed_during_reads_every_line_of_the_build(tmp_path):
    npm = CacacheNpm({})
    key = nc.KEY_PREFIX + 'https://r/lib'
    for t, body in ((5, b'old'), (10, b'p1'), (11, b'p1'), (12, b'p2')):
        npm.time = t
        npm._put(str(tmp_path), key, body, True)
    npm.time = 12
    npm._put(str(tmp_path), nc.KEY_PREFIX + 'https://r/same', b's', True)
    npm._put(str(tmp_path), nc.KEY_PREFIX + 'https://r/same', b's', True)
    npm._put(str(tmp_path), nc.KEY_PREFIX + 'https://r/lib/-/lib-1.0.0.tgz', b't1', True)
    npm._put(str(tmp_path), nc.KEY_PREFIX + 'https://r/lib/-/lib-1.0.0.tgz', b't2', True)
    assert nc.changed_during(str(tmp_path), 10) == {'lib'}
    assert nc.changed_during(str(tmp_path), 11) == {'lib'}
    assert nc.changed_during(str(tmp_path), 12) == set()  # one packument of lib written since 12
    assert nc.changed_during(str(tmp_path), 5) == {'lib'}


@pytest.mark.parametrize('platform', ['linux-x64', 'darwin-arm64', 'linux-arm64', 'win32-ia32', 'linux-s390x'])
def test_npm_platforms_accepted(platform):
    assert nc.check_platforms([platform]) == [tuple(platform.split('-'))]


def test_npm_platforms_are_sorted_and_taken_once():
    assert nc.check_platforms(['linux-x64', 'darwin-arm64', 'linux-x64']) == [('darwin', 'arm64'), ('linux', 'x64')]


@pytest.mark.parametrize('platform', ['linux', 'Linux-x64', 'linux-amd64', 'linux-aarch64', 'macos-arm64', 'x64-linux',
                                      'linux-x64-musl', 'linux_x64', '', None, 'linux-x64 '])
def test_npm_platforms_refused_naming_the_platform(platform):
    with pytest.raises(nc.BuildError, match=re.escape(repr(platform))):
        nc.check_platforms([platform])


@pytest.mark.parametrize('name, platform, installs', [
    ('lib', 'linux-x64', True), ('bin-darwin', 'linux-x64', False), ('bin-darwin', 'darwin-arm64', True),
    ('bin-linux', 'linux-x64', True), ('bin-linux', 'linux-arm64', False),
    ('bin-musl', 'linux-x64', True), ('bin-musl', 'linux-arm64', False),
    ('not-win', 'linux-x64', True), ('not-win', 'win32-x64', False), ('any-os', 'darwin-x64', True),
    ('any-os', 'darwin-arm64', False), ('not-arm', 'linux-x64', True), ('not-arm', 'linux-arm64', False)])
def test_npm_a_lock_entry_installs_on_the_platforms_npm_would_install_it_on(name, platform, installs):
    entry = dict({'name': name, 'version': '1.0.0'}, **PLATFORM_META.get(name, {}))
    assert nc.installs_on(entry, nc.check_platforms([platform])[0]) is installs


TREES_BIN_1 = {'tool': {'tool': '1.0.0', 'bin-darwin': '1.0.0', 'bin-linux': '1.0.0', 'not-win': '1.0.0'},
               'app': {'app': '1.0.0', 'lib': '2.0.0'}}
TREES_BIN_2 = dict(TREES_BIN_1, app={'app': '1.0.0', 'lib': '2.1.0'})


def test_npm_platforms_leave_out_other_platforms_tarballs_but_keep_their_packuments_and_reuse(tmp_path):
    first_npm = CacacheNpm(TREES_BIN_1)
    first = bd_build(tmp_path, 'store', first_npm, ['tool', 'app'], 't1', platforms=['linux-x64'])
    assert sorted(first_npm.downloads) == ['app@1.0.0', 'bin-linux@1.0.0', 'lib@2.0.0', 'not-win@1.0.0', 'tool@1.0.0']
    meta = first['ecosystems']['npm']
    assert meta['platforms'] == ['linux-x64'] and meta['other_platforms'] == ['bin-darwin@1.0.0'] and meta['platform_rule'] == 1
    assert meta['resolutions']['tool'] == ['bin-darwin@1.0.0', 'bin-linux@1.0.0', 'not-win@1.0.0', 'tool@1.0.0']
    hits = _npm_hits(tmp_path, 'store', first['id'])
    assert nc.KEY_PREFIX + 'https://registry.example/bin-darwin' in hits  # npm reads it to resolve tool
    assert not [k for k in hits if 'bin-darwin-1.0.0.tgz' in k or 'bin-darwin@' in k]
    assert [m for m in first['misses'] if m['ecosystem'] == 'npm'] == []
    # A week later (lib 2.1.0): tool's resolution is kept although bin-darwin's tarball is not in the cache, and the
    # snapshot is the one a build from scratch makes.
    npm = CacacheNpm(TREES_BIN_2, time=2)
    incremental = bd_build(tmp_path, 'store', npm, ['tool', 'app'], 't2', opener=Registry(npm),
                           platforms=['linux-x64', 'linux-x64'])
    assert _installs(npm) == ['app'] and npm.downloads == ['lib@2.1.0']
    scratch_npm = CacacheNpm(TREES_BIN_2, time=2)
    scratch = bd_build(tmp_path, 'scratch', scratch_npm, ['tool', 'app'], 't2', platforms=['linux-x64'])
    assert _npm_hits(tmp_path, 'store', incremental['id']) == _npm_hits(tmp_path, 'scratch', scratch['id'])
    assert _build_key(tmp_path, 'store', incremental['id']) == _build_key(tmp_path, 'scratch', scratch['id'])
    # Other platforms asked for: the previous resolutions were made for one platform, so npm resolves them again.
    npm = CacacheNpm(TREES_BIN_2, time=3)
    both = bd_build(tmp_path, 'store', npm, ['tool', 'app'], 't3', opener=Registry(npm),
                    platforms=['linux-x64', 'darwin-arm64'])
    assert _installs(npm) == ['app', 'tool'] and npm.downloads == ['bin-darwin@1.0.0']
    assert 'other_platforms' in both['ecosystems']['npm'] and both['ecosystems']['npm']['other_platforms'] == []


@pytest.mark.parametrize('meta, platforms, same', [
    ({}, [], True), ({'platforms': ['linux-x64']}, [], False), ({}, ['linux-x64'], False),
    ({'platforms': ['linux-x64'], 'platform_rule': nc.PLATFORM_RULE}, ['linux-x64'], True),
    ({'platforms': ['darwin-arm64', 'linux-x64'], 'platform_rule': nc.PLATFORM_RULE}, ['linux-x64', 'darwin-arm64'], True),
    ({'platforms': ['linux-x64'], 'platform_rule': nc.PLATFORM_RULE - 1}, ['linux-x64'], False),
    ({'platforms': ['linux-x64']}, ['linux-x64'], False)])
def test_npm_reuses_a_previous_resolution_only_for_the_same_platforms_by_the_same_rule(meta, platforms, same):
    assert nc.same_platforms(meta, nc.platform_names(nc.check_platforms(platforms))) is same
