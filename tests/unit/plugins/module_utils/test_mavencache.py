"""Maven: input checks, the reader of a real local repository (fixture made by mvn) and the fill."""

import os

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _mavencache as mc
from ansible_collections.pkgcache.overlay.plugins.module_utils._fill import BuildError

from helpers import build_eco, snapshot_files

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'fixtures')


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
    o = dict(mc.options({}), artifacts=['org.demo:greeting:1.0', 'org.nope:nope:1.0'],
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
    o = dict(mc.options({}), artifacts=['org.nope:nope:1.0'], repositories=[{'id': 'c', 'url': 'file:///srv/m2'}])
    with pytest.raises(BuildError, match='none of the 1 artifacts could be fetched; first error: mvn could not get it'):
        mc.fill(o, str(tmp_path), str(tmp_path), FakeMvn({}))


def test_maven_options_take_the_defaults_of_the_spec():
    o = mc.options({'maven': {'artifacts': ['a:b:1']}})
    assert o['mvn'] == 'mvn' and o['plugin'].startswith('org.apache.maven.plugins:maven-dependency-plugin:')
    assert o['repositories'] == [] and o['artifacts'] == ['a:b:1'] and o['settings'] is None
    assert set(mc.OPTIONS['repositories']['options']) == {'id', 'url', 'mirror_of'}


class ReadingMvn(FakeMvn):
    """``dependency:get`` as Maven does it with a local repository: an artifact already there is read (its POM and
    ``_remote.repositories``), not fetched; ``downloads`` lists what was fetched."""

    def __init__(self, known):
        FakeMvn.__init__(self, known)
        self.downloads = []

    def __call__(self, argv, env, data=None, cwd=None):
        if argv[1:] == ['-B', '-v']:
            return FakeMvn.__call__(self, argv, env)
        repo = [a for a in argv if a.startswith('-Dmaven.repo.local=')][0].split('=', 1)[1]
        coords = [a for a in argv if a.startswith('-Dartifact=')][0].split('=', 1)[1]
        for dep in self.known.get(coords, []):
            g, a, v = dep.split(':')
            d = os.path.join(repo, *(g.split('.') + [a, v]))
            if os.path.exists(os.path.join(d, '%s-%s.pom' % (a, v))):
                for name in ('%s-%s.pom' % (a, v), '_remote.repositories'):
                    with open(os.path.join(d, name)) as f:
                        f.read()
            else:
                self.downloads.append(dep)
        return FakeMvn.__call__(self, argv, env)


def _maven_build(tmp_path, store, mvn, artifacts, now, **kw):
    return build_eco(tmp_path, store, 'maven', {'artifacts': artifacts, 'repositories': [
        {'id': 'company', 'url': 'http://127.0.0.1:8372/', 'mirror_of': '*'}]}, mvn, now, **kw)


_maven_files = snapshot_files


KNOWN = {'org.demo:greeting:1.0': ['org.demo:greeting:1.0', 'org.demo:base:1.0'],
         'org.demo:greeting:1.1': ['org.demo:greeting:1.1', 'org.demo:base:1.0'],
         'org.demo:old:1.0': ['org.demo:old:1.0', 'org.gone:gone:1.0'],
         'org.demo:cli:1.0': ['org.demo:cli:1.0', 'org.demo:base:1.0', 'org.demo:util:2.0'],
         'org.demo:new:1.0': ['org.demo:new:1.0']}


def test_maven_incremental_build_gives_the_repository_of_a_build_from_scratch(tmp_path):
    _maven_build(tmp_path, 'store', ReadingMvn(KNOWN), ['org.demo:greeting:1.0', 'org.demo:old:1.0', 'org.demo:cli:1.0'], 't1')
    wanted = ['org.demo:greeting:1.1', 'org.demo:cli:1.0', 'org.demo:new:1.0', 'org.nope:nope:1.0']
    mvn = ReadingMvn(KNOWN)
    incremental = _maven_build(tmp_path, 'store', mvn, wanted, 't2')
    scratch_mvn = ReadingMvn(KNOWN)
    scratch = _maven_build(tmp_path, 'scratch', scratch_mvn, wanted, 't2')
    assert sorted(mvn.downloads) == ['org.demo:greeting:1.1', 'org.demo:new:1.0'] and len(scratch_mvn.downloads) == 5
    assert incremental['ecosystems']['maven']['reused'] > 0 and scratch['ecosystems']['maven']['reused'] == 0
    inc = _maven_files(tmp_path, 'store', incremental['id'])
    assert inc == _maven_files(tmp_path, 'scratch', scratch['id']) and incremental['id'] == scratch['id']
    # What the new build no longer resolves is gone: the old artifact, its dependency and greeting 1.0.
    assert not [p for p in inc if '/old/' in p or '/gone/' in p or '/greeting/1.0' in p]
    assert 'maven/org/demo/util/2.0/util-2.0.jar' in inc and incremental['packages'] == scratch['packages']


def test_maven_without_reuse_builds_into_an_empty_repository(tmp_path):
    _maven_build(tmp_path, 'store', ReadingMvn(KNOWN), ['org.demo:greeting:1.0', 'org.demo:old:1.0'], 't1')
    mvn = ReadingMvn(KNOWN)
    r = _maven_build(tmp_path, 'store', mvn, ['org.demo:greeting:1.0'], 't2', reuse=False)
    assert mvn.downloads == ['org.demo:greeting:1.0', 'org.demo:base:1.0'] and r['ecosystems']['maven']['reused'] == 0


def test_maven_without_access_times_builds_into_an_empty_repository(tmp_path, monkeypatch):
    _maven_build(tmp_path, 'store', ReadingMvn(KNOWN), ['org.demo:greeting:1.0', 'org.demo:old:1.0'], 't1')
    monkeypatch.setattr(mc, '_unread', lambda files: False)  # a noatime mount
    mvn = ReadingMvn(KNOWN)
    r = _maven_build(tmp_path, 'store', mvn, ['org.demo:greeting:1.0'], 't2')
    assert len(mvn.downloads) == 2 and r['ecosystems']['maven']['reused'] == 0
    assert not [p for p in _maven_files(tmp_path, 'store', r['id']) if '/old/' in p]
