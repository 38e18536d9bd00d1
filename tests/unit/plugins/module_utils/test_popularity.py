"""Popularity: one real-format fixture per source, ranking, pins and blocks, and misses read from uppers."""

import os
import shutil
import tarfile

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _popularity as pop

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'fixtures')
POP = os.path.join(FIXTURES, 'popularity')


@pytest.fixture(scope='module')
def pipcache(tmp_path_factory):
    """Real pip cache entries of one wheel (tabulate), as pip 23.2 (http/) and pip 26.0 (http-v2/) wrote them."""
    root = tmp_path_factory.mktemp('pipcache')
    with tarfile.open(os.path.join(FIXTURES, 'pipcache.tar.gz')) as tf:
        tf.extractall(str(root), filter='data')
    return str(root / 'pipcache')


def read(path):
    with open(path) as f:
        return f.read()


def fixture(name):
    return os.path.join(POP, name)


def test_top_pypi_json():
    counts = pop.parse_top_pypi_json(read(fixture('top-pypi-packages-30-days.min.json')))
    assert counts['boto3'] == 1416379525 and counts['typing-extensions'] == 541096012
    with pytest.raises(pop.PopularityError, match='x.json: not in the top-pypi-packages format'):
        pop.parse_top_pypi_json('{"projects": []}', 'x.json')


def test_ranked_list():
    counts = pop.parse_ranked_list(read(fixture('npm-ranked.txt')), 'npm')
    assert counts == {'lodash': 4, 'chalk': 3, 'react': 2, '@types/node': 1}


def test_access_log_of_nginx_counts_successful_downloads():
    counts = pop.parse_access_log(read(fixture('pypi-access.log')), 'pip')
    assert counts == {'six': 2, 'idna': 1, 'docopt': 1}  # the 404 is not counted


def test_access_log_for_npm_and_maven():
    npm = '1.2.3.4 - - [x] "GET /@types/node/-/node-20.1.0.tgz HTTP/1.1" 200 5 "-" "npm"\n' \
          '1.2.3.4 - - [x] "GET /lodash HTTP/1.1" 200 5 "-" "npm"'
    assert pop.parse_access_log(npm, 'npm') == {'@types/node': 1}
    mvn = '1.2.3.4 - - [x] "GET /maven/org/pkgcache/demo/greeting/1.0/greeting-1.0.jar HTTP/1.1" 200 5 "-" "Apache-Maven"'
    assert pop.parse_access_log(mvn, 'maven') == {'maven.org.pkgcache.demo:greeting:1.0': 1}


def test_pip_log():
    assert pop.parse_pip_log(read(fixture('pip.log'))) == {'tabulate': 2, 'idna': 1}


def test_npm_debug_log():
    counts = pop.parse_npm_log(read(fixture('npm-debug.log')))
    assert counts['kleur'] == 1 and counts['has-flag'] == 1 and 'kleur/-/kleur' not in counts


def test_rank_mixes_sources_and_records_them():
    result = pop.rank('pip', [
        {'type': 'top_pypi_json', 'paths': [fixture('top-pypi-packages-30-days.min.json')]},
        {'type': 'access_log', 'paths': [fixture('pypi-access.log')], 'weight': 2},
        {'type': 'counts', 'name': 'fleet_misses', 'counts': [{'Tabulate': 1}, {'tabulate': 2, 'six': 1}]},
    ], read, top=4, pins=['docopt'], blocks=['boto3'])
    names = [p['name'] for p in result['packages']]
    # six: 480M/1416M + 2*(2/2) + 1/3; tabulate: 3/3 = 1; idna: 598M/1416M + 2*(1/2)
    assert names[0] == 'docopt' and result['packages'][0]['sources'] == ['pin', 'access_log']
    assert names[1:] == ['six', 'idna', 'tabulate', 'urllib3']
    assert result['packages'][1]['sources'] == ['top_pypi_json', 'access_log', 'fleet_misses']
    assert result['blocked'] == ['boto3'] and 'boto3' not in names
    assert result['source_counts']['fleet_misses'] == {'tabulate': 3, 'six': 1}


@pytest.mark.parametrize('sources, message', [
    ([{'type': 'rss'}], "source type 'rss'"),
    ([{'type': 'pip_log'}], 'pip_log source has no paths'),
    ([{'type': 'pip_log', 'paths': ['/nonexistent/pip.log']}], 'pip_log source /nonexistent/pip.log cannot be read'),
    ([{'type': 'counts', 'counts': {'six': -1}}], 'count -1 of six'),
    ([{'type': 'counts', 'counts': {}, 'weight': 'high'}], "weight 'high'"),
    ([{'type': 'uppers', 'scratch_root': '/nonexistent'}], 'scratch_root /nonexistent is not a directory'),
])
def test_bad_sources_are_named(sources, message):
    with pytest.raises(pop.PopularityError, match=message):
        pop.rank('pip', sources, read, top=10)


def test_pinned_and_blocked_is_refused():
    with pytest.raises(pop.PopularityError, match='six is both pinned and blocked'):
        pop.rank('pip', [], read, top=1, pins=['Six'], blocks=['six'])


@pytest.mark.parametrize('layout', ['pip23.2', 'pip26.0'])
def test_wheel_metadata_from_real_pip_cache_entries(layout, pipcache):
    found = set()
    for dirpath, dummy, files in os.walk(os.path.join(pipcache, layout)):
        for f in files:
            with open(os.path.join(dirpath, f), 'rb') as fh:
                pkg = pop.wheel_metadata(fh.read())
            if pkg:
                found.add(pkg)
    assert len(found) == 1 and list(found)[0][0] == 'tabulate'


def _user(root, name, eco):
    upper = root / 'scratch' / name / ('cacache_' + eco) / 'upper'
    upper.mkdir(parents=True)
    return upper


def test_uppers_scan_counts_users_per_package_not_in_the_snapshot(tmp_path, pipcache):
    lower = tmp_path / 'lower' / 'pip'
    shutil.copytree(os.path.join(pipcache, 'pip26.0'), str(lower))  # tabulate is in the snapshot
    for user in ('alice', 'bob'):
        shutil.copytree(os.path.join(pipcache, 'pip23.2'), str(_user(tmp_path, user, 'pip')), dirs_exist_ok=True)
    carol = _user(tmp_path, 'carol', 'pip')
    (carol / 'http').mkdir()
    os.symlink('/etc/shadow', str(carol / 'http' / 'evil'))
    os.mkfifo(str(carol / 'http' / 'fifo'))
    src = {'type': 'uppers', 'scratch_root': str(tmp_path / 'scratch'), 'lower_root': str(tmp_path / 'lower')}
    # pip 23.2 keys differ from pip 26.0's (http/ against http-v2/), so alice's and bob's entries are new files.
    assert pop.scan_uppers('pip', src) == {'tabulate': 2}
    assert pop.scan_uppers('pip', dict(src, min_users=3)) == {}
    # An upper whose entry the lower has at the same path is not a miss.
    shutil.copytree(os.path.join(pipcache, 'pip23.2'), str(lower), dirs_exist_ok=True)
    assert pop.scan_uppers('pip', src) == {}


def test_uppers_scan_npm_reads_index_keys_against_the_lower(tmp_path):
    lower = tmp_path / 'lower' / 'npm'
    lower.mkdir(parents=True)
    shutil.copytree(os.path.join(FIXTURES, 'npm', '_cacache'), str(_user(tmp_path, 'alice', 'npm') / '_cacache'))
    src = {'type': 'uppers', 'scratch_root': str(tmp_path / 'scratch'), 'lower_root': str(tmp_path / 'lower')}
    counts = pop.scan_uppers('npm', src)
    assert counts['chalk'] == 1 and counts['@isaacs/string-locale-compare'] == 1
    shutil.copytree(os.path.join(FIXTURES, 'npm', '_cacache'), str(lower / '_cacache'))
    assert pop.scan_uppers('npm', src) == {}


def test_uppers_scan_maven_and_uv_paths(tmp_path):
    m = _user(tmp_path, 'alice', 'maven') / 'org' / 'pkgcache' / 'demo' / 'extra' / '1.0'
    m.mkdir(parents=True)
    (m / 'extra-1.0.jar').write_text('x')
    (m / '_remote.repositories').write_text('x')
    u = _user(tmp_path, 'alice', 'uv') / 'wheels-v8' / 'index' / 'abc' / 'tabulate'
    u.mkdir(parents=True)
    (u / '0.10.0-py3-none-any.http').write_text('x')
    src = {'type': 'uppers', 'scratch_root': str(tmp_path / 'scratch'), 'lower_root': str(tmp_path / 'nolower')}
    assert pop.scan_uppers('maven', src) == {'org.pkgcache.demo:extra:1.0': 1}
    assert pop.scan_uppers('uv', src) == {'tabulate': 1}


@pytest.mark.parametrize('name, expected', [
    ('six-1.17.0-py2.py3-none-any.whl', ('six', '1.17.0')),
    ('typing_extensions-4.12.2-py3-none-any.whl', ('typing-extensions', '4.12.2')),
    ('docopt-0.6.2.tar.gz', ('docopt', '0.6.2')),
    ('python-dateutil-2.9.0.post0.tar.gz', ('python-dateutil', '2.9.0.post0')),
    ('index.html', None),
])
def test_python_file_names(name, expected):
    assert pop.python_file_package(name) == expected


def test_pins_keep_their_version_and_replace_the_ranked_name():
    result = pop.rank('npm', [{'type': 'counts', 'counts': {'chalk': 5, 'kleur': 1}}], read, top=5, pins=['chalk@4'])
    assert [p['name'] for p in result['packages']] == ['chalk@4', 'kleur']
    assert result['packages'][0]['sources'] == ['pin', 'counts']
    result = pop.rank('pip', [{'type': 'counts', 'counts': {'six': 5}}], read, top=5, pins=['Six==1.17.0'])
    assert [p['name'] for p in result['packages']] == ['Six==1.17.0']
