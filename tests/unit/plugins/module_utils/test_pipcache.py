import functools
import glob
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _pipcache as pc
from ansible_collections.pkgcache.overlay.plugins.module_utils._fill import BuildError

from conftest import ROOT

URL = 'http://127.0.0.1:8371/packages/six-1.17.0-py2.py3-none-any.whl'


def test_cache_url_and_paths():
    assert pc.cache_url('HTTP://Example.ORG/a#sha256=x') == 'http://example.org/a'
    key = hashlib.sha224(URL.encode()).hexdigest()
    v2, v1 = pc.http_cache_paths('/c', URL)
    assert v1 == '/c/http/%s/%s/%s/%s/%s/%s' % (tuple(key[:5]) + (key,))
    assert v2 == v1.replace('/c/http/', '/c/http-v2/')


def test_read_requirements():
    text = '# top packages\nrequests>=2  # http\n\nsix==1.17.0\n'
    assert pc.read_requirements(text, 'r.txt') == ['requests>=2', 'six==1.17.0']
    with pytest.raises(BuildError, match='r.txt line 2: pip options'):
        pc.read_requirements('six\n--index-url http://evil/\n', 'r.txt')


@pytest.mark.parametrize('spec', ['', '  ', '-e .', '--pre', 'a\nb', '>=1.0'])
def test_bad_specs(spec):
    with pytest.raises(BuildError):
        pc.check_specs([spec])


GOOD_SPECS = ['six', 'Six==1.17.0', 'requests>=2,<3', 'uvicorn[standard]', ' fastapi[standard] ', 'celery[redis]==5.4.0',
              'celery[redis, msgpack]>=5', 'typing_extensions~=4.12', 'django!=4.2.0', 'numpy===1.26.4', 'a.b-c_d']


def test_specs_with_extras_and_versions_are_taken():
    assert pc.check_specs(GOOD_SPECS) == [s.strip() for s in GOOD_SPECS]
    assert pc.requirement_name('uvicorn[standard]==0.30.0') == 'uvicorn'


@pytest.mark.parametrize('spec', [
    'six; os_name == "nt"',                 # markers: the old check took them
    'six (>=1.0)',
    'six[x @ http://evil/]',
    'six[]extra',
    'six[a b]',
    'six==1.0 --index-url=http://evil/',
    'six>=1;--index-url http://evil/',
    'six ==',
    'six[extra',
    'uvicorn[standard]==0.30.0 extra',
])
def test_specs_other_than_name_extras_and_clauses_are_refused_by_name(spec):
    with pytest.raises(BuildError, match=r'package .* (is not a project name with optional extras|direct reference)'):
        pc.check_specs([spec])


def report(*items):
    return json.dumps({'version': '1', 'install': [
        {'metadata': {'name': n, 'version': v}, 'download_info': {'url': u}, 'requested': True} for n, v, u in items]})


def test_parse_report_and_check_cached(tmp_path):
    sdist = 'http://127.0.0.1:8371/packages/docopt-0.6.2.tar.gz'
    other = 'http://127.0.0.1:8371/packages/Foo_Bar-1.0-py3-none-any.whl'
    pkgs = pc.parse_report(report(('six', '1.17.0', URL), ('docopt', '0.6.2', sdist), ('Foo_Bar', '1.0', other),
                                  ('local', '1', 'file:///tmp/local-1.whl')))
    assert [p['name'] for p in pkgs] == ['docopt', 'foo-bar', 'local', 'six']
    cache = str(tmp_path)
    for url in (URL, sdist):
        path = pc.http_cache_paths(cache, url)[1]
        os.makedirs(os.path.dirname(path))
        open(path, 'w').close()
    cached, misses = pc.check_cached(cache, pkgs)
    assert [p['name'] for p in cached] == ['six']
    reasons = {m['package']: m['reason'] for m in misses}
    assert 'did not cache the wheel it built' in reasons['docopt']
    assert 'did not cache it' in reasons['foo-bar']
    assert 'not fetched from the index' in reasons['local']
    os.makedirs(os.path.join(cache, 'wheels', 'ab'))
    open(os.path.join(cache, 'wheels', 'ab', 'docopt-0.6.2-py2.py3-none-any.whl'), 'w').close()
    cached, misses = pc.check_cached(cache, pkgs)
    assert [p['name'] for p in cached] == ['docopt', 'six']


def test_clean_env_drops_host_pip_settings():
    env = pc.clean_env({'PIP_INDEX_URL': 'http://evil/', 'PIP_FIND_LINKS': '/x', 'HOME': '/root'}, '/c')
    assert 'PIP_INDEX_URL' not in env and 'PIP_FIND_LINKS' not in env
    assert env['PIP_CONFIG_FILE'] == os.devnull and env['PIP_CACHE_DIR'] == '/c' and env['HOME'] == '/root'


def test_install_command():
    cmd = pc.install_command('/v/bin/python', 'http://i/simple/', 'i', '/c', '/t', '/r.json', '/req.txt')
    assert cmd[:4] == ['/v/bin/python', '-m', 'pip', 'install']
    for flag in ('--use-pep517', '--ignore-installed'):
        assert flag in cmd
    # A user's `pip install X` takes the newest release even when only its sdist is out yet: so does the build.
    assert '--prefer-binary' not in cmd
    assert cmd[cmd.index('--trusted-host') + 1] == 'i' and cmd[cmd.index('--target') + 1] == '/t'
    assert '--dry-run' not in cmd
    # The resolution alone installs nothing; files it did not fetch whole are fetched by URL, dependencies not.
    resolve = pc.resolve_command('/v/bin/python', 'http://i/simple/', 'i', '/c', '/r.json', '/req.txt')
    assert resolve[3:5] == ['install', '--dry-run'] and '--target' not in resolve and '--ignore-installed' in resolve
    download = pc.download_command('/v/bin/python', 'http://i/simple/', None, '/c', '/d', [URL])
    assert download[3:7] == ['download', '--no-deps', '--dest', '/d'] and download[-1] == URL


def test_build_key_is_stable_and_sensitive():
    pkgs = [{'name': 'six', 'version': '1', 'url': URL}]
    k = pc.build_key('pip', 'u', '23', '3.11', pkgs, [], ['six'])
    assert k == pc.build_key('pip', 'u', '23', '3.11', list(pkgs), [], ['six'])
    assert k != pc.build_key('pip', 'u', '24', '3.11', pkgs, [], ['six'])
    assert k != pc.build_key('pip', 'u', '23', '3.11', [dict(pkgs[0], version='2')], [], ['six'])


class StepPip(object):
    """A pip whose dry run reports ``files`` ({name: url}) and caches those in ``cached_by_resolution``; records
    each command's verb (dry-run, install, download) and the URLs it downloads."""

    def __init__(self, files, cached_by_resolution=()):
        self.files, self.cached, self.steps = files, set(cached_by_resolution), []

    def cache_file(self, cache, url):
        path = pc.http_cache_paths(cache, url)[1]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(url)

    def __call__(self, argv, env):
        cache = argv[argv.index('--cache-dir') + 1]
        if argv[3] == 'download':
            urls = [a for a in argv if a.startswith('http://127.0.0.1:8371/packages/')]
            self.steps.append(('download', urls))
            for url in urls:
                self.cache_file(cache, url)
            return 0, '', ''
        dry = '--dry-run' in argv
        self.steps.append(('dry-run' if dry else 'install', '--target' in argv))
        for name, url in self.files.items():
            if not dry or url in self.cached:
                self.cache_file(cache, url)
        items = [{'metadata': {'name': n, 'version': '1'}, 'download_info': {'url': u}, 'requested': True}
                 for n, u in self.files.items()]
        with open(argv[argv.index('--report') + 1], 'w') as f:
            json.dump({'install': items}, f)
        return 0, '', ''


def options(tmp_path):
    (tmp_path / 'scratch').mkdir(exist_ok=True)
    return {'index_url': 'http://127.0.0.1:8371/simple/', 'trusted_host': None}, str(tmp_path / 'cache')


WHEEL_A = 'http://127.0.0.1:8371/packages/a-1-py3-none-any.whl'
WHEEL_B = 'http://127.0.0.1:8371/packages/b-1-py3-none-any.whl'
SDIST_C = 'http://127.0.0.1:8371/packages/c-1.tar.gz'


def test_wheels_the_resolution_did_not_fetch_whole_are_downloaded_and_nothing_is_installed(tmp_path):
    o, cache = options(tmp_path)
    pip = StepPip({'a': WHEEL_A, 'b': WHEEL_B}, cached_by_resolution=[WHEEL_A])
    rc, data, err = pc._install('/v/python', o, ['a'], cache, str(tmp_path / 'scratch'), pip)
    assert rc == 0 and json.loads(data)['install'][0]['download_info']['url'] == WHEEL_A
    assert pip.steps == [('dry-run', False), ('download', [WHEEL_B])]
    assert pc.url_cached(cache, WHEEL_A) and pc.url_cached(cache, WHEEL_B)
    # An index without PEP 658 metadata: the resolution fetched every wheel whole, so nothing else runs.
    pip = StepPip({'a': WHEEL_A, 'b': WHEEL_B}, cached_by_resolution=[WHEEL_A, WHEEL_B])
    assert pc._install('/v/python', o, ['a'], str(tmp_path / 'cache2'), str(tmp_path / 'scratch'), pip)[0] == 0
    assert pip.steps == [('dry-run', False)]


def test_a_resolution_that_takes_an_sdist_is_installed_for_real_so_its_wheel_is_built_and_cached(tmp_path):
    o, cache = options(tmp_path)
    pip = StepPip({'a': WHEEL_A, 'c': SDIST_C})
    rc, data, err = pc._install('/v/python', o, ['c'], cache, str(tmp_path / 'scratch'), pip)
    assert rc == 0 and data is not None
    assert pip.steps == [('dry-run', False), ('install', True)]
    assert os.listdir(str(tmp_path / 'scratch')) == []


class _Index(http.server.SimpleHTTPRequestHandler):
    """A static index with PEP 658 metadata that sends cache headers (pip caches nothing without them)."""

    def end_headers(self):
        self.send_header('Cache-Control', 'max-age=600')
        http.server.SimpleHTTPRequestHandler.end_headers(self)

    def log_message(self, *args):
        self.server.hits.append(self.path)


def pep658_index(root, wheels):
    os.makedirs(os.path.join(root, 'packages'))
    links = {}
    for wheel in wheels:
        name = os.path.basename(wheel)
        shutil.copy(wheel, os.path.join(root, 'packages', name))
        with zipfile.ZipFile(wheel) as z:
            meta = z.read([n for n in z.namelist() if n.endswith('.dist-info/METADATA')][0])
        with open(os.path.join(root, 'packages', name + '.metadata'), 'wb') as f:
            f.write(meta)
        project = pc.normalize_name(name.split('-')[0])
        links.setdefault(project, []).append(
            '<a href="../../packages/%s#sha256=%s" data-dist-info-metadata="sha256=%s" data-core-metadata="sha256=%s">%s</a>'
            % (name, hashlib.sha256(open(wheel, 'rb').read()).hexdigest(), hashlib.sha256(meta).hexdigest(),
               hashlib.sha256(meta).hexdigest(), name))
    for project, anchors in links.items():
        os.makedirs(os.path.join(root, 'simple', project))
        with open(os.path.join(root, 'simple', project, 'index.html'), 'w') as f:
            f.write('<html><body>%s</body></html>\n' % '<br>'.join(anchors))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Index, directory=root))
    server.hits = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _run(argv, env, data=None, cwd=None):
    res = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    return res.returncode, res.stdout, res.stderr


def test_real_pip_resolves_a_pinned_version_with_its_extra_so_a_users_install_of_it_fetches_nothing(tmp_path):
    """``featpkg[fast]==0.9`` in the list: pip gets the spec as given, so the old release and the extra's
    dependency are cached; a user who installs exactly that downloads nothing."""
    sys.path.insert(0, os.path.join(ROOT, 'tests', 'fleet'))
    import make_wheels  # pylint: disable=import-outside-toplevel
    wheels_dir = str(tmp_path / 'wheels')
    os.makedirs(wheels_dir)
    for version in ('0.9', '1.0'):
        make_wheels.write_wheel(wheels_dir, 'featpkg', version, ['speedup; extra == "fast"'], extras=['fast'])
    make_wheels.write_wheel(wheels_dir, 'speedup', '1.0', [])
    server = pep658_index(str(tmp_path / 'index'), sorted(glob.glob(os.path.join(wheels_dir, '*.whl'))))
    try:
        url = 'http://127.0.0.1:%d/simple/' % server.server_address[1]
        o = {'index_url': url, 'trusted_host': '127.0.0.1:%d' % server.server_address[1]}
        cache = str(tmp_path / 'cache')
        (tmp_path / 'scratch').mkdir()
        specs = pc.check_specs(['featpkg[fast]==0.9'])
        rc, data, err = pc._install(sys.executable, o, specs, cache, str(tmp_path / 'scratch'), _run)
        assert rc == 0, err
        got = sorted((p['name'], p['version']) for p in pc.parse_report(data))
        assert got == [('featpkg', '0.9'), ('speedup', '1.0')]
        assert all(pc.url_cached(cache, p['url']) for p in pc.parse_report(data))
        del server.hits[:]
        res = subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-color', '--target', str(tmp_path / 'user'),
                              '--index-url', url, '--trusted-host', o['trusted_host'], 'featpkg[fast]==0.9'],
                             env=pc.clean_env(os.environ, cache), capture_output=True, text=True, check=False)
        assert res.returncode == 0 and 'Downloading' not in res.stdout, res.stdout
        assert not [h for h in server.hits if '/packages/' in h], server.hits
        assert os.path.isdir(str(tmp_path / 'user' / 'speedup'))
    finally:
        server.shutdown()


def test_real_pip_fills_the_cache_from_an_index_with_metadata_so_a_users_install_fetches_nothing(tmp_path):
    # With PEP 658 metadata the dry run fetches no wheel: the download step must bring them, or users miss.
    wheels = sorted(glob.glob(os.path.join(ROOT, '.cache', 'wheelhouse', '*.whl')))
    wheels = [w for w in wheels if os.path.basename(w).startswith(('six-', 'idna-'))]
    assert len(wheels) == 2, 'the test wheelhouse (scripts/bootstrap.sh) lacks six and idna'
    server = pep658_index(str(tmp_path / 'index'), wheels)
    try:
        url = 'http://127.0.0.1:%d/simple/' % server.server_address[1]
        o = {'index_url': url, 'trusted_host': '127.0.0.1:%d' % server.server_address[1]}
        cache = str(tmp_path / 'cache')
        (tmp_path / 'scratch').mkdir()

        def run(argv, env, data=None, cwd=None):
            res = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
            return res.returncode, res.stdout, res.stderr

        rc, data, err = pc._install(sys.executable, o, ['six', 'idna'], cache, str(tmp_path / 'scratch'), run)
        assert rc == 0, err
        assert any(h.endswith('.whl.metadata') for h in server.hits)
        assert all(pc.url_cached(cache, p['url']) for p in pc.parse_report(data))
        del server.hits[:]
        env = pc.clean_env(os.environ, cache)
        res = subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-color', '--target', str(tmp_path / 'user'),
                              '--index-url', url, '--trusted-host', o['trusted_host'], 'six', 'idna'],
                             env=env, capture_output=True, text=True, check=False)
        assert res.returncode == 0 and 'Downloading' not in res.stdout and server.hits == [], (res.stdout, server.hits)
    finally:
        server.shutdown()
