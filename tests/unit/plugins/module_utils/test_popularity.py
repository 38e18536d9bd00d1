"""Popularity: one real-format fixture per source, ranking, pins and blocks, and misses read from uppers."""

import hashlib
import io
import json
import os
import shutil
import tarfile
import zipfile

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _npmcache
from ansible_collections.pkgcache.overlay.plugins.module_utils import _popularity as pop
from ansible_collections.pkgcache.overlay.plugins.module_utils import _pipcache as pc
from ansible_collections.pkgcache.overlay.plugins.module_utils._fill import BuildError

from helpers import count_reads, deep_chain, run_module

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
    ], read, top=4, pins=['docopt'], blocks=['boto3'], normalize='max')
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


# ------------------------------------------------- hostile uppers (the root scan stays bounded)

def wheel(name, version='1.0', junk_mib=0, path=None):
    """A wheel of ``name`` (bytes, or written to ``path``); ``junk_mib`` MiB of stored data come before its METADATA."""
    target = path if path is not None else io.BytesIO()
    with zipfile.ZipFile(target, 'w', zipfile.ZIP_DEFLATED) as zf:
        if junk_mib:
            with zf.open(zipfile.ZipInfo('%s/data.bin' % name), 'w', force_zip64=True) as f:
                for dummy in range(junk_mib):
                    f.write(os.urandom(1 << 20))
        zf.writestr('%s/__init__.py' % name, '')
        zf.writestr('%s-%s.dist-info/METADATA' % (name, version), 'Metadata-Version: 2.1\nName: %s\nVersion: %s\n\nText\n' % (name, version))
        zf.writestr('%s-%s.dist-info/RECORD' % (name, version), '')
    return None if path is not None else target.getvalue()


def put(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def uppers_src(tmp_path):
    return {'type': 'uppers', 'scratch_root': str(tmp_path / 'scratch'), 'lower_root': str(tmp_path / 'lower')}


@pytest.mark.parametrize('link', ['cacache_pip', 'cacache_pip/upper'])
def test_uppers_scan_never_follows_a_symlink_in_a_users_part(tmp_path, link):
    scratch = tmp_path / 'scratch'
    put(_user(tmp_path, 'victim', 'pip') / 'http' / 'v' / 'body', wheel('victimpkg'))
    put(_user(tmp_path, 'alice', 'pip') / 'http' / 'a' / 'body', wheel('alicepkg'))
    (scratch / 'mallory').mkdir()
    if link == 'cacache_pip':       # mallory's cache is the victim's: the victim's packages must not count twice
        os.symlink('../victim/cacache_pip', str(scratch / 'mallory' / 'cacache_pip'))
    else:                           # mallory's upper is root's dir (/root, say): its sentinel must not be read
        put(tmp_path / 'root' / 'http' / 's' / 'body', wheel('sentinel'))
        (scratch / 'mallory' / 'cacache_pip').mkdir()
        os.symlink(str(tmp_path / 'root'), str(scratch / 'mallory' / 'cacache_pip' / 'upper'))
    src = uppers_src(tmp_path)
    assert pop.scan_uppers('pip', src) == {'victimpkg': 1, 'alicepkg': 1}
    report = {}
    pop.scan_uppers('pip', src, report)
    assert report['skipped'] == {'mallory': 'mallory/%s is a symlink; refusing to follow it' % link}
    assert report['users'] == 2 and report['walk']['files_opened'] == 2   # alice's and the victim's bodies only
    mallory = str(scratch / 'mallory' / 'cacache_pip' / 'upper')
    with pytest.raises(OSError, match='cacache_pip.* is a symlink'):
        pop.upper_misses('pip', mallory, None)
    report = {}
    assert pop.fleet_misses('pip', [str(scratch / 'alice' / 'cacache_pip' / 'upper'), mallory], None, report=report) == {'alicepkg': 1}
    assert list(report['skipped']) == ['mallory']


def test_uppers_scan_skips_sparse_bodies_without_reading_them(tmp_path, monkeypatch):
    http = _user(tmp_path, 'mallory', 'pip') / 'http' / 's'
    http.mkdir(parents=True)
    for i in range(40):             # 10 GiB that cost nothing to make
        (http / ('%02d' % i)).touch()
        os.truncate(str(http / ('%02d' % i)), 256 << 20)
    put(_user(tmp_path, 'alice', 'pip') / 'http' / 'a' / 'body', wheel('alicepkg'))
    with count_reads(monkeypatch, 1 << 20) as reads:
        assert pop.scan_uppers('pip', uppers_src(tmp_path)) == {'alicepkg': 1}
    assert reads.total < 16 << 10
    report = {}
    pop.scan_uppers('pip', uppers_src(tmp_path), report)
    assert report['walk']['skipped'] == {'sparse': 40} and report['walk']['files_opened'] == 1
    assert report['walk']['bytes_read'] < 16 << 10 and report['truncated'] == {}


def test_uppers_scan_reads_only_the_central_directory_of_a_big_wheel(tmp_path, monkeypatch):
    body = _user(tmp_path, 'alice', 'pip') / 'http-v2' / 'a' / 'b' / 'c.body'
    body.parent.mkdir(parents=True)
    with open(str(body), 'wb') as f:
        wheel('bigpkg', junk_mib=48, path=f)
    with count_reads(monkeypatch, 1 << 20) as reads:
        assert pop.scan_uppers('pip', uppers_src(tmp_path)) == {'bigpkg': 1}
    assert reads.total < 32 << 10    # its head, its end (with the central directory) and the start of METADATA
    # A wheel inside pip's older serialized entry (msgpack before and after the body) is found the same way.
    data = b'cc=4,\x82\xa8response\x87\xa4body\xc5\x9b\x86' + wheel('embedded') + b'\xa7headers' + b'x' * 3000
    assert pop.wheel_metadata(data) == ('embedded', '1.0')


def tarball_key(name, version):
    return _npmcache.KEY_PREFIX + 'https://registry.npmjs.org/%s/-/%s-%s.tgz' % (name, name, version)


def bucket_line(key):
    body = json.dumps({'key': key, 'integrity': 'sha512-deadbeef', 'time': 1, 'size': 1, 'metadata': {}})
    return ('\n%s\t%s' % (hashlib.sha1(body.encode()).hexdigest(), body)).encode()


def test_uppers_scan_reads_a_huge_npm_bucket_line_by_line_up_to_its_cap(tmp_path, monkeypatch):
    (tmp_path / 'lower' / 'npm').mkdir(parents=True)
    index = _user(tmp_path, 'mallory', 'npm') / '_cacache' / 'index-v5' / 'aa'
    index.mkdir(parents=True)
    line = bucket_line(tarball_key('bigbucket', '1.0.0'))
    with open(str(index / 'big'), 'wb') as f:          # 40 MiB of valid lines
        chunk = line * ((1 << 20) // len(line))
        for dummy in range(40):
            f.write(chunk)
    with open(str(index / 'long'), 'wb') as f:         # one 6 MiB line
        f.write(b'\n' + b'x' * (6 << 20) + line)
    put(_user(tmp_path, 'alice', 'npm') / '_cacache' / 'index-v5' / 'bb' / 'b', bucket_line(tarball_key('kleur', '4.1.5')))
    with count_reads(monkeypatch, 12 << 20) as reads:
        assert pop.scan_uppers('npm', uppers_src(tmp_path)) == {'bigbucket': 1, 'kleur': 1}
    assert reads.total <= 2 * pop.BUCKET_BYTES + 4096
    report = {}
    pop.scan_uppers('npm', uppers_src(tmp_path), report)
    assert report['walk']['skipped'] == {'capped_file': 2, 'long_line': 1}
    assert report['walk']['bytes_read'] <= 2 * pop.BUCKET_BYTES + 4096 and report['truncated'] == {}


def test_uppers_scan_takes_a_bounded_number_of_packages_from_each_upper(tmp_path):
    (tmp_path / 'lower' / 'npm').mkdir(parents=True)
    put(_user(tmp_path, 'mallory', 'npm') / '_cacache' / 'index-v5' / 'aa' / 'b',
        b''.join(bucket_line(tarball_key('junk%05d' % i, '1.0.0')) for i in range(5000)))
    put(_user(tmp_path, 'alice', 'npm') / '_cacache' / 'index-v5' / 'bb' / 'b', bucket_line(tarball_key('kleur', '4.1.5')))
    counts = pop.scan_uppers('npm', uppers_src(tmp_path))
    assert len(counts) < 5000 and counts['kleur'] == 1        # the old scan returned all 5001 names
    assert len(counts) == pop.MAX_NAMES + 1
    report = {}
    counts = pop.scan_uppers('npm', dict(uppers_src(tmp_path), max_packages=10, max_names=50), report)
    assert len(counts) == 10 and report['packages_dropped'] == 41 and report['truncated'] == {'mallory': 'max_names'}
    assert pop.scan_uppers('npm', dict(uppers_src(tmp_path), min_users=2)) == {}


def test_uppers_scan_counts_the_others_when_one_upper_is_1500_deep(tmp_path):
    put(_user(tmp_path, 'alice', 'pip') / 'wheels' / 'alicepkg-1.0-py3-none-any.whl', b'x')
    with deep_chain(str(_user(tmp_path, 'mallory', 'pip') / 'http')):
        assert pop.scan_uppers('pip', uppers_src(tmp_path)) == {'alicepkg': 1}   # the old os.walk: RecursionError
        result = pop.rank('pip', [uppers_src(tmp_path)], read, top=10, min_hosts=1)
    assert [p['name'] for p in result['packages']] == ['alicepkg', 'alicepkg==1.0']
    scan = result['upper_scans']['uppers']
    assert scan['users'] == 2 and scan['truncated'] == {'mallory': 'max_depth'} and scan['skipped'] == {}
    assert 'alicepkg' not in json.dumps(scan)


def test_uppers_scan_limits_are_checked(tmp_path):
    (tmp_path / 'scratch').mkdir()
    with pytest.raises(pop.PopularityError, match='limits: max_depth 0 is not a positive integer'):
        pop.scan_uppers('pip', dict(uppers_src(tmp_path), limits={'max_depth': 0}))
    with pytest.raises(pop.PopularityError, match='unknown limit max_fun'):
        pop.scan_uppers('pip', dict(uppers_src(tmp_path), limits={'max_fun': 1}))
    with pytest.raises(pop.PopularityError, match='max_names 0'):
        pop.scan_uppers('pip', dict(uppers_src(tmp_path), max_names=0))


def test_names_that_are_not_plain_package_names_never_reach_the_build():
    """A user's upper, or a log, may carry `Name: x @ http://2130706433:8765/x` (a direct reference pip would fetch and run)."""
    counts = {'type': 'counts', 'name': 'fleet',
              'counts': {'six': 3, 'x @ http://2130706433:8765/x': 9, 'y; os_name=="posix"': 5, '--index-url=http://e': 4}}
    res = pop.rank('pip', [counts], None, 10)
    assert [p['name'] for p in res['packages']] == ['six']
    assert res['invalid_names'] == {'fleet': 3}
    assert 'x @' not in json.dumps(res)
    npm = pop.rank('npm', [{'type': 'counts', 'counts': {'@scope/ok': 1, 'file:../evil': 2, 'git+ssh://h/r': 1}}], None, 10)
    assert [p['name'] for p in npm['packages']] == ['@scope/ok']
    with pytest.raises(BuildError, match='direct reference'):
        pc.check_specs(['x @ http://2130706433:8765/x'])


def test_module_ranks_the_same_in_check_mode_and_names_a_source_it_cannot_read(tmp_path, capsys):
    log = tmp_path / 'pip.log'
    log.write_bytes(b'Downloading six-1.17.0-py2.py3-none-any.whl\nUsing cached idna-3.10.tar.gz\n'
                    b'Downloading six-1.16.0-py2.py3-none-any.whl\n\xff\n')
    args = {'ecosystem': 'pip', 'top': 2, 'blocks': ['boto3'],
            'sources': [{'type': 'pip_log', 'paths': [str(log)]}, {'type': 'counts', 'counts': {'boto3': 9, 'Six': 1}}]}
    rc, check = run_module(capsys, pop.run_module, pop.argument_spec(), args, check_mode=True)
    assert rc == 0 and not check['changed'] and check['names'] == ['six', 'idna'] and check['blocked'] == ['boto3']
    rc, real = run_module(capsys, pop.run_module, pop.argument_spec(), args)
    assert rc == 0 and real == check
    rc, bad = run_module(capsys, pop.run_module, pop.argument_spec(),
                         dict(args, sources=[{'type': 'pip_log', 'paths': [str(tmp_path / 'gone.log')]}]))
    assert rc == 1 and bad['msg'] == "pip_log source %s cannot be read: [Errno 2] No such file or directory: '%s'" % (
        tmp_path / 'gone.log', tmp_path / 'gone.log')
    rc, bad = run_module(capsys, pop.run_module, pop.argument_spec(), dict(args, top=-1))
    assert rc == 1 and bad['msg'] == 'top -1 is negative'


# ------------------------------------------------- versions, the fleet's hosts, extras (issues 22 and 24)

def test_uppers_scan_records_versions_of_wheels_npm_tarballs_and_uv_entries(tmp_path):
    for user in ('alice', 'bob'):
        put(_user(tmp_path, user, 'pip') / 'http-v2' / 'a' / 'b.body', wheel('django', '4.2.7'))
    carol = _user(tmp_path, 'carol', 'pip')
    put(carol / 'http-v2' / 'c' / 'd.body', wheel('Django', '5.1'))
    put(carol / 'wheels' / 'x' / 'docopt-0.6.2-py2.py3-none-any.whl', b'x')
    versions = {}
    assert pop.scan_uppers('pip', uppers_src(tmp_path), None, versions) == {'django': 3, 'docopt': 1}
    assert versions == {'django': {'4.2.7': 2, '5.1': 1}, 'docopt': {'0.6.2': 1}}
    versions = {}
    assert pop.scan_uppers('pip', dict(uppers_src(tmp_path), min_users=2), None, versions) == {'django': 3}
    assert versions == {'django': {'4.2.7': 2}}    # the per-host threshold holds for versions too
    (tmp_path / 'lower' / 'npm').mkdir(parents=True)
    put(_user(tmp_path, 'alice', 'npm') / '_cacache' / 'index-v5' / 'aa' / 'b',
        bucket_line(tarball_key('kleur', '4.1.5')) + bucket_line(tarball_key('kleur', '3.0.3')))
    versions = {}
    assert pop.scan_uppers('npm', uppers_src(tmp_path), None, versions) == {'kleur': 1}
    assert versions == {'kleur': {'4.1.5': 1, '3.0.3': 1}}
    u = _user(tmp_path, 'alice', 'uv') / 'wheels-v8' / 'index' / 'abc' / 'tabulate'
    u.mkdir(parents=True)
    (u / '0.9.0-py3-none-any.http').write_text('x')
    versions = {}
    assert pop.scan_uppers('uv', uppers_src(tmp_path), None, versions) == {'tabulate': 1}
    assert versions == {'tabulate': {'0.9.0': 1}}


def telemetry(packages, versions=None):
    return {'packages': packages, 'versions': versions or {}}


def fleet(*hosts, **kw):
    return dict({'type': 'fleet', 'name': 'fleet', 'hosts': list(hosts)}, **kw)


def test_a_package_from_uppers_enters_the_ranking_only_from_min_hosts_hosts():
    hosts = [telemetry({'tabulate': 1, 'rich': 2}), telemetry({'tabulate': 1}), telemetry({'Tabulate': 3})]
    res = pop.rank('pip', [fleet(*hosts)], read, top=10, min_hosts=3)
    assert [p['name'] for p in res['packages']] == ['tabulate']    # rich: 2 users, but on one host
    assert res['source_counts'] == {'fleet': {'tabulate': 5}} and res['fleet'] == {'fleet': {'hosts': 3, 'dropped': 1}}
    assert [p['name'] for p in pop.rank('pip', [fleet(*hosts)], read, top=10, min_hosts=4)['packages']] == []
    assert [p['name'] for p in pop.rank('pip', [fleet(*hosts)], read, top=10, min_hosts=1)['packages']] == ['tabulate', 'rich']
    # An upper scanned directly is one host: with the default its packages never enter the ranking.
    assert pop.MIN_HOSTS == 3


def test_a_guess_planted_on_one_host_changes_nothing_the_build_records():
    """mallory plants `secretpkg`; min_users 2 on her host: the count is 2 exactly when a victim there has it too.
    The list and the provenance that reach the manifest must be the same either way (the old ones were not)."""
    others = [telemetry({'six': 1, 'tabulate': 2}, {'tabulate': {'0.9.0': 2}}) for dummy in range(3)]
    without = telemetry({'six': 1})                        # secretpkg: 1 user (mallory), dropped by min_users 2
    with_victim = telemetry({'six': 1, 'secretpkg': 2}, {'secretpkg': {'1.0': 2}})
    sources = [{'type': 'top_pypi_json', 'paths': [fixture('top-pypi-packages-30-days.min.json')]}]
    runs = [pop.rank('pip', sources + [fleet(*(others + [host]), weight=4)], read, top=8, pins=['docopt'])
            for host in (without, with_victim)]
    assert [p['name'] for p in runs[0]['packages']] == [p['name'] for p in runs[1]['packages']]
    assert runs[0]['packages'] == runs[1]['packages']
    assert runs[0]['provenance'] == runs[1]['provenance']
    assert 'secretpkg' not in json.dumps(runs[1]['provenance'])
    # The provenance holds the sources and the totals only: no package name, no count of one.
    prov = runs[1]['provenance']
    assert prov['sources'][1] == {'name': 'fleet', 'type': 'fleet', 'weight': 4.0, 'packages': 2, 'total': 10,
                                  'hosts': 4, 'min_hosts': 3}
    assert 'tabulate' not in json.dumps(prov) and 'six' not in json.dumps(prov)
    assert prov['packages'] == len(runs[1]['packages']) and prov['pins'] == 1 and prov['versions'] == 1


def test_top_versions_of_a_project_enter_beside_its_newest_capped_per_project():
    hosts = [telemetry({'django': 3, 'numpy': 1},
                       {'django': {'4.2.7': 2, '3.2.25': 1, '5.0': 1, '4.1': 1}, 'numpy': {'1.26.4': 1}})
             for dummy in range(2)]
    hosts.append(telemetry({'django': 1}, {'django': {'2.2': 1}}))       # a version seen on one host only
    res = pop.rank('pip', [fleet(*hosts)], read, top=5, min_hosts=2, versions=3)
    names = [p['name'] for p in res['packages']]
    assert names == ['django', 'django==4.2.7', 'django==3.2.25', 'django==4.1', 'numpy', 'numpy==1.26.4']
    assert res['packages'][1]['project'] == 'django' and res['packages'][1]['version'] == '4.2.7'
    assert res['packages'][1]['score'] < res['packages'][0]['score']
    assert [p['name'] for p in pop.rank('pip', [fleet(*hosts)], read, top=5, min_hosts=2, versions=0)['packages']] == \
        ['django', 'numpy']
    # A pin of one exact version is not added twice; npm versions are name@version.
    res = pop.rank('pip', [fleet(*hosts)], read, top=0, min_hosts=2, versions=1, pins=['Django==4.2.7'])
    assert [p['name'] for p in res['packages']] == ['Django==4.2.7', 'django==3.2.25']
    npm = pop.rank('npm', [fleet(telemetry({'kleur': 1}, {'kleur': {'3.0.3': 1}}))], read, top=5, min_hosts=1)
    assert [p['name'] for p in npm['packages']] == ['kleur', 'kleur@3.0.3']


def test_versions_that_are_not_plain_versions_never_reach_the_build():
    hosts = [telemetry({'six': 1}, {'six': {'1.0; os_name=="nt"': 1, '1 @ http://evil/x': 1, '1.17.0': 1}})]
    res = pop.rank('pip', [fleet(*hosts)], read, top=5, min_hosts=1)
    assert [p['name'] for p in res['packages']] == ['six', 'six==1.17.0']


def test_popular_extras_are_resolved_on_purpose_and_checked():
    hosts = [telemetry({'uvicorn': 2, 'celery': 1}, {'uvicorn': {'0.29.0': 2}})]
    res = pop.rank('pip', [fleet(*hosts)], read, top=5, min_hosts=1,
                   extras={'Uvicorn': ['standard'], 'celery': ['redis', 'msgpack']}, pins=['fastapi'])
    assert [p['name'] for p in res['packages']] == [
        'fastapi', 'uvicorn[standard]', 'uvicorn[standard]==0.29.0', 'celery[msgpack,redis]']
    res = pop.rank('pip', [], read, top=5, pins=['FastAPI', 'celery>=5'], extras={'fastapi': 'standard', 'celery': 'redis'})
    assert [p['name'] for p in res['packages']] == ['fastapi[standard]', 'celery>=5']   # a pin with a range as given
    for bad, message in (({'uvicorn': ['std @ http://x']}, 'not a list of extra names'),
                         ({'x @ http://y': ['a']}, 'is not a project name'), ({'uvicorn': []}, 'not a list')):
        with pytest.raises(pop.PopularityError, match=message):
            pop.rank('pip', [], read, top=5, extras=bad)
    with pytest.raises(pop.PopularityError, match='extras are a pip and uv feature'):
        pop.rank('npm', [], read, top=5, extras={'chalk': ['x']})


def test_shares_make_the_weights_mean_something():
    """A download list of billions and a fleet of a few users: each source is a share of its own total, and the
    score is the weighted mean of the shares (with weights summing to 1: the share of all installs expected)."""
    downloads = {'type': 'counts', 'name': 'downloads', 'counts': {'boto3': 900, 'django': 90, 'flask': 10}}
    fl = fleet(telemetry({'django': 3, 'discord-py': 1}), telemetry({'discord-py': 1}), min_hosts=1)
    res = pop.rank('pip', [dict(downloads, weight=1), dict(fl, weight=4)], read, top=10, min_hosts=1)
    scores = dict((p['name'], p['score']) for p in res['packages'])
    assert scores['boto3'] == pytest.approx(0.9 / 5)
    assert scores['django'] == pytest.approx((0.09 + 4 * 0.6) / 5)
    assert scores['discord-py'] == pytest.approx(4 * 0.4 / 5)
    assert [p['name'] for p in res['packages']] == ['django', 'discord-py', 'boto3', 'flask']
    assert sum(scores.values()) == pytest.approx(1.0)
    # The old scaling by the largest count is still there on request.
    res = pop.rank('pip', [dict(downloads, weight=1), dict(fl, weight=4)], read, top=10, min_hosts=1, normalize='max')
    assert dict((p['name'], p['score']) for p in res['packages'])['boto3'] == pytest.approx(1.0 / 5)


def test_a_few_users_misses_come_beyond_top_and_never_push_public_projects_out():
    """Issue 22: a Zipf download list of 15,000 projects and 150 projects that one user each missed. The fleet's
    small total makes one miss score like public rank ~16; the 300 public projects must all stay, and the fleet's
    come beyond them, each with its score (the size budget decides what fits)."""
    public = dict(('pub%05d' % r, int(1e9 / r)) for r in range(1, 15001))
    hosts = [telemetry({'miss%03d' % i: 1}) for i in range(150)]
    sources = [{'type': 'counts', 'name': 'downloads', 'counts': public}, fleet(*hosts)]
    res = pop.rank('pip', sources, read, top=300, min_hosts=1, versions=0)
    names = [p['name'] for p in res['packages']]
    assert set(names) == set('pub%05d' % r for r in range(1, 301)) | set('miss%03d' % i for i in range(150))
    scores = dict((p['name'], p['score']) for p in res['packages'])
    assert scores['miss000'] > scores['pub00100']                # scores as before: a miss still ranks high
    assert [p['score'] for p in res['packages']] == sorted((p['score'] for p in res['packages']), reverse=True)
    assert res['provenance']['packages'] == 450
    # The fleet's own names are capped by top too; with the fleet alone, top bounds the list as before.
    assert len(pop.rank('pip', sources, read, top=100, min_hosts=1, versions=0)['packages']) == 200
    assert len(pop.rank('pip', [fleet(*hosts)], read, top=100, min_hosts=1)['packages']) == 100
    # A project both sources counted is a public one: it takes one of the top slots.
    both = pop.rank('pip', [sources[0], fleet(telemetry({'pub09999': 1}))], read, top=3, min_hosts=1)
    assert [p['name'] for p in both['packages']] == ['pub09999', 'pub00001', 'pub00002']


@pytest.mark.parametrize('source, message', [
    (fleet('x'), 'fleet source: host 1'),
    (fleet(telemetry({'six': -1})), 'host 1: count -1 of six'),
    (fleet(telemetry({}, {'six': ['1.0']})), 'versions of six'),
    ({'type': 'fleet', 'hosts': {'h': {}}}, 'is not a list'),
    (fleet({'six': 2}), 'host 1: unknown keys six'),
])
def test_bad_fleet_telemetry_is_named(source, message):
    with pytest.raises(pop.PopularityError, match=message):
        pop.rank('pip', [source], read, top=10)


def test_module_takes_min_hosts_versions_and_extras(capsys):
    args = {'ecosystem': 'pip', 'top': 5, 'min_hosts': 2, 'versions': 1, 'extras': {'uvicorn': ['standard']},
            'sources': [fleet(telemetry({'uvicorn': 1, 'rich': 1}, {'uvicorn': {'0.29.0': 1}}),
                              telemetry({'uvicorn': 1}, {'uvicorn': {'0.29.0': 1}}))]}
    rc, res = run_module(capsys, pop.run_module, pop.argument_spec(), args, check_mode=True)
    assert rc == 0 and res['names'] == ['uvicorn[standard]', 'uvicorn[standard]==0.29.0']
    assert res['provenance']['sources'][0]['hosts'] == 2
    rc, res = run_module(capsys, pop.run_module, pop.argument_spec(), dict(args, min_hosts=0))
    assert rc == 1 and res['msg'] == 'min_hosts 0 is not a positive integer'
