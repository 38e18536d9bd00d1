import hashlib
import json
import os

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _pipcache as pc
from ansible_collections.pkgcache.overlay.plugins.module_utils._fill import BuildError

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


def test_build_key_is_stable_and_sensitive():
    pkgs = [{'name': 'six', 'version': '1', 'url': URL}]
    k = pc.build_key('pip', 'u', '23', '3.11', pkgs, [], ['six'])
    assert k == pc.build_key('pip', 'u', '23', '3.11', list(pkgs), [], ['six'])
    assert k != pc.build_key('pip', 'u', '24', '3.11', pkgs, [], ['six'])
    assert k != pc.build_key('pip', 'u', '23', '3.11', [dict(pkgs[0], version='2')], [], ['six'])
