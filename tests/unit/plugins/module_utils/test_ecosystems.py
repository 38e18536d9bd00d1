"""The one list of ecosystems: every module doc and role argument spec that lists ecosystems lists exactly these."""

import glob
import importlib
import os

import pytest
import yaml

from ansible_collections.pkgcache.overlay.plugins.module_utils import _overlay as ov
from ansible_collections.pkgcache.overlay.plugins.module_utils._ecosystems import ECOSYSTEMS, FILLERS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
MODULES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, 'plugins', 'modules', '*.py')))


def lists_of_ecosystems(options, where):
    """(where, option name, names) for every option, at any depth, that lists ecosystems: its name says so and it
    has choices, or its choices name two ecosystems or more."""
    found = []
    for name, option in (options or {}).items():
        here = '%s: %s' % (where, name)
        choices = option.get('choices') or []
        if ('ecosystem' in name and choices) or len(set(choices) & set(ECOSYSTEMS)) > 1:
            found.append((here, sorted(choices)))
        default = option.get('default')
        if 'ecosystem' in name and isinstance(default, dict):
            found.append((here + ' (default keys)', sorted(default)))
        found += lists_of_ecosystems(option.get('suboptions') or option.get('options'), here)
    return found


def module_lists():
    found = []
    for name in MODULES:
        module = importlib.import_module('ansible_collections.pkgcache.overlay.plugins.modules.' + name)
        found += lists_of_ecosystems(yaml.safe_load(module.DOCUMENTATION).get('options'), name)
    return found


def role_lists():
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, 'roles', '*', 'meta', 'argument_specs.yml'))):
        role = path.split(os.sep)[-3]
        with open(path) as f:
            specs = yaml.safe_load(f)['argument_specs']
        for entry, spec in specs.items():
            found += lists_of_ecosystems(spec.get('options'), '%s/%s' % (role, entry))
    return found


def test_the_constant_is_the_fillers_table_in_build_order():
    assert ECOSYSTEMS == ('pip', 'npm', 'maven', 'uv')
    assert tuple(FILLERS) == ECOSYSTEMS


@pytest.mark.parametrize('eco', ECOSYSTEMS)
def test_every_filler_has_the_whole_interface(eco):
    filler = FILLERS[eco]
    for name in ('OPTIONS', 'ITEMS', 'item_name', 'options', 'fill', 'exclude'):
        assert hasattr(filler, name), '%s lacks %s' % (filler.__name__, name)
    assert filler.ITEMS in filler.OPTIONS and filler.OPTIONS[filler.ITEMS]['type'] == 'list'


@pytest.mark.parametrize('read, sep, expected', [
    (module_lists, ':', {'snapshot_build', 'package_popularity', 'overlay_mounts'}),
    (role_lists, '/', {'build', 'mount'}),
], ids=['module docs', 'role argument specs'])
def test_every_list_of_ecosystems_is_exactly_the_constant(read, sep, expected):
    found = read()
    # The test must see the lists it is about: a file that stops listing them fails here, not silently.
    assert set(w.split(sep)[0] for w, names in found) >= expected
    for where, names in found:
        if where.endswith('(default keys)'):
            assert set(names) <= set(ECOSYSTEMS), where
        else:
            assert names == sorted(ECOSYSTEMS), where


def test_snapshot_build_has_a_dict_option_for_every_ecosystem_but_pip():
    module = importlib.import_module('ansible_collections.pkgcache.overlay.plugins.modules.snapshot_build')
    options = yaml.safe_load(module.DOCUMENTATION)['options']
    for eco in ECOSYSTEMS:
        spec = FILLERS[eco].OPTIONS
        docs = options if eco == 'pip' else options[eco]['suboptions']
        assert set(spec) <= set(docs), eco


def test_every_ecosystem_has_a_mount_target():
    assert set(ECOSYSTEMS) == set(ov.ECOSYSTEMS)
    mounts = ov.plan_mounts([{'name': 'alice', 'uid': 1000, 'gid': 1000}], ['npm', 'maven', 'uv'], '/mnt/cacache', '/mnt/scratch')
    assert [m['link'] for m in mounts] == ['/home/alice/.npm', '/home/alice/.m2/repository', '/home/alice/.cache/uv']
    assert [m['target'] for m in mounts] == ['/var/lib/pkgcache-views/alice/' + e for e in ('npm', 'maven', 'uv')]
    assert mounts[1]['lowerdir'] == '/mnt/cacache/maven' and mounts[1]['upperdir'] == '/mnt/scratch/alice/cacache_maven/upper'
