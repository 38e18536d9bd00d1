"""npm, Maven and uv: input checks and the readers of their real cache formats (fixtures made by the real tools)."""

import hashlib
import json
import os

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _builder as bd
from ansible_collections.pkgcache.overlay.plugins.module_utils import _manifest as mf
from ansible_collections.pkgcache.overlay.plugins.module_utils import _mavencache as mc
from ansible_collections.pkgcache.overlay.plugins.module_utils import _npmcache as nc
from ansible_collections.pkgcache.overlay.plugins.module_utils import _overlay as ov
from ansible_collections.pkgcache.overlay.plugins.module_utils import _uvcache as uc
from ansible_collections.pkgcache.overlay.plugins.module_utils._pipcache import BuildError

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
        return '\n%s\t%s' % (__import__('hashlib').sha1(body.encode()).hexdigest(), body)

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


def test_maven_repository_artifacts_from_a_real_local_repository(tmp_path):
    with open(os.path.join(FIXTURES, 'maven', 'local-repository-files.txt')) as f:
        for rel in f.read().split():
            path = tmp_path / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text('')
    found = mc.repository_artifacts(str(tmp_path))
    assert 'commons-io:commons-io:2.11.0' in found
    assert all(len(a.split(':')) == 3 for a in found)
    assert mc.artifact_dir(str(tmp_path), 'commons-io:commons-io:2.11.0') == str(tmp_path / 'commons-io' / 'commons-io' / '2.11.0')


@pytest.mark.parametrize('coords', ['junit', 'a:b', 'a:b:1 ; rm', '-Dx=y:a:1', 'a:b:1:jar:x:y'])
def test_maven_coordinates_refused(coords):
    with pytest.raises(BuildError, match='groupId:artifactId:version'):
        mc.check_artifacts([coords])


@pytest.mark.parametrize('repos, message', [
    ([], 'repositories is empty'),
    ([{'id': 'a b', 'url': 'https://x/'}], 'id must be'),
    ([{'id': 'a', 'url': 'ftp://x/'}], 'is not an http'),
    ([{'id': 'a', 'url': 'https://x/"><evil/>'}], 'is not an http'),
    ([{'id': 'a', 'url': 'https://x/'}, {'id': 'a', 'url': 'https://y/'}], 'appears twice'),
    ([{'id': 'a', 'url': 'https://x/', 'mirror_of': '<x>'}], 'mirrorOf'),
])
def test_maven_repositories_refused(repos, message):
    with pytest.raises(BuildError, match=message):
        mc.check_repositories(repos)


def test_maven_settings_put_mirrors_and_repositories_in_place():
    import xml.etree.ElementTree as ET
    xml = mc.settings_xml([{'id': 'company', 'url': 'https://repo/a&b', 'mirror_of': '*'},
                           {'id': 'extra', 'url': 'file:///srv/m2'}])
    root = ET.fromstring(xml.split('\n', 1)[1])
    assert root.find('mirrors/mirror/id').text == 'company' and root.find('mirrors/mirror/url').text == 'https://repo/a&b'
    assert root.find('profiles/profile/repositories/repository/id').text == 'extra'
    assert root.find('profiles/profile/pluginRepositories/pluginRepository/url').text == 'file:///srv/m2'
    assert root.find('activeProfiles/activeProfile').text == 'pkgcache'


def test_uv_freeze_parse_from_real_output():
    with open(os.path.join(FIXTURES, 'uv-freeze.txt')) as f:
        packages = uc.parse_freeze(f.read())
    assert {'name': 'charset-normalizer', 'version': '3.5.3'} in packages
    assert [p['name'] for p in packages] == sorted(p['name'] for p in packages)


def test_uv_exclude_leaves_out_host_specific_dirs(tmp_path):
    for name in ('archive-v0', 'wheels-v8', 'simple-v28', 'interpreter-v5', 'builds-v0', 'sdists-v11', '.tmpXYZ'):
        (tmp_path / name).mkdir()
    assert sorted(uc.exclude(str(tmp_path))) == ['.tmpXYZ', 'builds-v0', 'interpreter-v5', 'sdists-v11']


@pytest.mark.parametrize('path, writable', [
    ('npm/_cacache/index-v5/ab/cd/0123', True),
    ('npm/_cacache/content-v2/sha512/ab/cd/0123', False),
    ('maven/org/x/y/1.0/_remote.repositories', True),
    ('maven/org/x/y/maven-metadata-company.xml', True),
    ('maven/org/x/y/1.0/y-1.0.jar', False),
    ('uv/.lock', True),
    ('uv/wheels-v8/pypi/six/1.17.0-py2.py3-none-any.lock', True),
    ('pip/http-v2/a/b/c/d/e/f.lock', False),
    ('pip/selfcheck.json', False),
])
def test_only_files_package_managers_rewrite_are_writable(path, writable):
    assert mf.writable_path(path) is writable
    entry = {'path': path, 'type': 'file', 'mode': '0666', 'size': 0, 'sha256': '0' * 64}
    dirs = [{'path': '/'.join(path.split('/')[:i]), 'type': 'dir', 'mode': '0777'} for i in range(1, path.count('/') + 1)]
    if writable:
        mf.validate_entries(dirs + [entry])
    else:
        with pytest.raises(mf.ManifestError, match='world-writable'):
            mf.validate_entries(dirs + [entry])


def test_scan_gives_npm_index_buckets_mode_0666(tmp_path):
    bucket = tmp_path / '_cacache' / 'index-v5' / 'aa'
    bucket.mkdir(parents=True)
    (bucket / 'b').write_text('x')
    (tmp_path / '_cacache' / 'content-v2').mkdir()
    (tmp_path / '_cacache' / 'content-v2' / 'c').write_text('y')
    entries, dummy = mf.scan_tree(str(tmp_path), 'npm')
    modes = dict((e['path'], e.get('mode')) for e in entries)
    assert modes['npm/_cacache/index-v5/aa/b'] == '0666' and modes['npm/_cacache/content-v2/c'] == '0644'


def test_every_ecosystem_has_a_mount_target():
    assert set(bd.ORDER) == set(ov.ECOSYSTEMS)
    mounts = ov.plan_mounts([{'name': 'alice', 'uid': 1000, 'gid': 1000}], ['npm', 'maven', 'uv'], '/mnt/cacache', '/mnt/scratch')
    assert [m['link'] for m in mounts] == ['/home/alice/.npm', '/home/alice/.m2/repository', '/home/alice/.cache/uv']
    assert [m['target'] for m in mounts] == ['/var/lib/pkgcache-views/alice/' + e for e in ('npm', 'maven', 'uv')]
    assert mounts[1]['lowerdir'] == '/mnt/cacache/maven' and mounts[1]['upperdir'] == '/mnt/scratch/alice/cacache_maven/upper'


@pytest.mark.parametrize('ecos, message', [(['pip', 'conda'], "'conda' is not supported"), (['npm', 'npm'], 'twice')])
def test_build_refuses_bad_ecosystems(ecos, message):
    with pytest.raises(BuildError, match=message):
        bd.ecosystems({'ecosystems': ecos})


def test_build_options_fall_back_to_defaults_and_uv_to_the_pip_index():
    o = bd.ecosystem_options({'index_url': 'http://i/simple/', 'uv': {'packages': ['six'], 'uv': None}}, 'uv')
    assert o == {'packages': ['six'], 'index_url': 'http://i/simple/', 'uv': 'uv', 'python': 'python3', 'workers': 4}


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


class FakeMvn(object):
    """Lays out what ``mvn dependency:get`` leaves in maven.repo.local; fails for artifacts it does not know."""

    def __init__(self, known):
        self.known, self.calls = known, []

    def __call__(self, argv, env, data=None, cwd=None):
        self.calls.append(argv)
        if argv[1:] == ['-B', '-v']:
            return 0, '\x1b[1mApache Maven 3.8.7\x1b[m\nJava version: 17.0.15, vendor: Debian', ''
        repo = [a for a in argv if a.startswith('-Dmaven.repo.local=')][0].split('=', 1)[1]
        coords = [a for a in argv if a.startswith('-Dartifact=')][0].split('=', 1)[1]
        if coords not in self.known:
            g, a, v = coords.split(':')
            d = os.path.join(repo, *(g.split('.') + [a, v]))
            os.makedirs(d, exist_ok=True)
            open(os.path.join(d, '%s-%s.pom.lastUpdated' % (a, v)), 'w').close()
            return 1, '[INFO] x\n[ERROR] Failed to execute goal: Could not find artifact %s in company\n' % coords, ''
        for dep in self.known[coords]:
            g, a, v = dep.split(':')
            d = os.path.join(repo, *(g.split('.') + [a, v]))
            os.makedirs(d, exist_ok=True)
            for ext in ('jar', 'pom'):
                with open(os.path.join(d, '%s-%s.%s' % (a, v, ext)), 'w') as f:
                    f.write(dep)
            with open(os.path.join(d, '_remote.repositories'), 'w') as f:
                f.write('%s-%s.jar>company=\n' % (a, v))
        return 0, '[INFO] BUILD SUCCESS\n', ''


def test_maven_fill_records_transitive_artifacts_and_misses_and_drops_failure_markers(tmp_path):
    mvn = FakeMvn({'org.demo:greeting:1.0': ['org.demo:greeting:1.0', 'org.demo:base:1.0']})
    o = dict(bd.DEFAULTS['maven'], artifacts=['org.demo:greeting:1.0', 'org.nope:nope:1.0'],
             repositories=[{'id': 'company', 'url': 'http://127.0.0.1:8372/', 'mirror_of': '*'}])
    cache = tmp_path / 'cache'
    cache.mkdir()
    packages, misses, meta, key = mc.fill(o, str(cache), str(tmp_path), mvn)
    assert packages == [{'name': 'org.demo:base', 'version': '1.0'}, {'name': 'org.demo:greeting', 'version': '1.0'}]
    assert [m['package'] for m in misses] == ['org.nope:nope:1.0']
    assert 'Could not find artifact org.nope:nope:1.0' in misses[0]['reason'] and misses[0]['ecosystem'] == 'maven'
    assert not list(cache.rglob('*.lastUpdated'))  # a failure marker would hide the artifact from users
    assert meta['maven_version'] == '3.8.7' and meta['java_version'] == '17.0.15'
    get = [c for c in mvn.calls if '-Dartifact=org.demo:greeting:1.0' in c][0]
    gs = get[get.index('-gs') + 1]
    assert open(gs).read().strip().endswith('<settings/>')  # the builder's own global settings stay out
    assert 'company' in open(get[get.index('-s') + 1]).read()
    cache2 = tmp_path / 'cache2'
    cache2.mkdir()
    assert mc.fill(o, str(cache2), str(tmp_path), FakeMvn(mvn.known))[3] == key  # same inputs, same build key


def test_maven_fill_fails_when_nothing_can_be_fetched(tmp_path):
    o = dict(bd.DEFAULTS['maven'], artifacts=['org.nope:nope:1.0'], repositories=[{'id': 'c', 'url': 'file:///srv/m2'}])
    with pytest.raises(BuildError, match='none of the 1 artifacts could be fetched; first error: mvn could not get it'):
        mc.fill(o, str(tmp_path), str(tmp_path), FakeMvn({}))


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
