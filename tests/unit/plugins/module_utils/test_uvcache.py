"""uv: its options, the reader of its real freeze output and what stays out of a snapshot."""

import os

from ansible_collections.pkgcache.overlay.plugins.module_utils import _uvcache as uc

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
