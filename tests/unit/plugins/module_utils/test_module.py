"""What the modules' run_module() share: the option minimum, the command runner, the HTTP opener, the download options."""

import re

import pytest
import yaml

from ansible_collections.pkgcache.overlay.plugins.module_utils import _module


class Module(object):
    def __init__(self, **params):
        self.params, self.calls = params, []

    def fail_json(self, **kw):
        raise SystemExit(kw)

    def run_command(self, argv, **kw):
        self.calls.append((argv, kw))
        return 0, b'out', b''


def test_require_at_least_names_the_option_and_its_value():
    _module.require_at_least(Module(deadline=1), 'deadline', 1)
    with pytest.raises(SystemExit) as exc:
        _module.require_at_least(Module(keep=-2), 'keep', 0)
    assert exc.value.code == {'msg': 'keep must be 0 or more, got -2'}


def test_runner_runs_bytes_in_and_out_and_ignores_env():
    module = Module()
    assert _module.runner(module)(['ssh-keygen', '-Y'], {'X': '1'}, b'data') == (0, b'out', b'')
    assert module.calls == [(['ssh-keygen', '-Y'], {'data': b'data', 'binary_data': True})]


def test_opener_passes_the_timeout_and_certificate_check(monkeypatch):
    seen = []
    monkeypatch.setattr('ansible.module_utils.urls.open_url', lambda url, **kw: seen.append((url, kw)) or 'response')
    assert _module.opener(7, False)('https://store/x') == 'response'
    assert seen == [('https://store/x', {'method': None, 'timeout': 7, 'validate_certs': False, 'follow_redirects': 'safe'})]
    _module.opener()('https://store/y', method='HEAD')
    assert seen[-1][1] == {'method': 'HEAD', 'timeout': 30, 'validate_certs': True, 'follow_redirects': 'safe'}


def test_utc_now_is_whole_seconds_in_utc():
    assert re.match(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$', _module.utc_now())


def test_store_http_options_are_a_fresh_copy_each_time():
    first = _module.store_http_options()
    first['workers']['default'] = 1
    assert _module.store_http_options()['workers'] == {'type': 'int', 'default': 8}


def test_store_http_options_are_the_ones_the_doc_fragment_documents():
    from ansible_collections.pkgcache.overlay.plugins.doc_fragments.store_http import ModuleDocFragment
    docs = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options']
    assert dict((k, {'type': v['type'], 'default': v['default']}) for k, v in docs.items()) == _module.store_http_options()
