"""What the fillers share: tool output tails, fingerprints and the defaults taken from an argument spec."""

from ansible_collections.pkgcache.overlay.plugins.module_utils import _fill

SPEC = dict(packages=dict(type='list', elements='str', default=[]), tool=dict(type='str', default='npm'),
            cafile=dict(type='path'))


def test_with_defaults_fills_what_is_unset_or_none_as_ansible_does():
    assert _fill.with_defaults(SPEC, None) == {'packages': [], 'tool': 'npm', 'cafile': None}
    assert _fill.with_defaults(SPEC, {'tool': None, 'packages': ['a']}) == {'packages': ['a'], 'tool': 'npm', 'cafile': None}
    assert _fill.with_defaults(SPEC, {'extra': 1, 'gone': None})['extra'] == 1


def test_with_defaults_never_hands_out_the_specs_own_default():
    o = _fill.with_defaults(SPEC, {})
    o['packages'].append('x')
    assert SPEC['packages']['default'] == [] and _fill.with_defaults(SPEC, {})['packages'] == []


def test_tail_keeps_the_last_lines_and_drops_noise():
    text = 'a\nb\nA complete log of this run\nc\n'
    assert _fill.tail(text, 2) == 'A complete log of this run\nc'
    assert _fill.tail(text, 2, drop='complete log') == 'b\nc'
    assert _fill.tail(None) == ''


def test_fingerprint_ignores_key_order():
    assert _fill.fingerprint({'a': 1, 'b': [2]}) == _fill.fingerprint({'b': [2], 'a': 1})
    assert _fill.fingerprint({'a': 1}) != _fill.fingerprint({'a': 2})
