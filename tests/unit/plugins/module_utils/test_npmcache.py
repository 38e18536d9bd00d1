"""npm: input checks, the readers of its real cache format (fixtures made by npm) and the fill."""

import hashlib
import json
import os

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _npmcache as nc
from ansible_collections.pkgcache.overlay.plugins.module_utils._fill import BuildError

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
            lock = {'lockfileVersion': 3, 'packages': dict(
                ('node_modules/' + n, {'version': v, 'integrity': 'sha512-%s%s' % (n, v)}) for n, v in tree.items())}
            lock['packages'][''] = {'name': 'pkgcache-snapshot'}
            with open(os.path.join(cwd, 'package-lock.json'), 'w') as f:
                json.dump(lock, f)
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
