"""The replay benchmark's arithmetic (bench/replaylib.py): split, pinned sets, miss causes, hit rates, and the corpus."""

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'bench'))
import replaylib as rl  # noqa: E402


def test_split_is_seeded_disjoint_and_whole():
    names = ['set%02d' % i for i in range(69)]
    a, b = rl.split(names, 22)
    assert (a, b) == rl.split(list(reversed(names)), 22)  # the order given does not matter, the seed does
    assert set(a) | set(b) == set(names) and not set(a) & set(b)
    assert (len(a), len(b)) == (34, 35)
    assert rl.split(names, 23) != (a, b)
    # Not a plain cut of the sorted names: the halves interleave.
    assert a != sorted(names)[:34]


def test_requirements_and_pinned():
    text = '# a comment\nDjango==4.2.7  # LTS\nuvicorn[standard]>=0.24\n\n-r other.txt\nnumpy\n'
    reqs = rl.requirements(text)
    assert reqs == [('django', (), '==4.2.7'), ('uvicorn', ('standard',), '>=0.24'), ('numpy', (), '')]
    assert not rl.pinned(reqs, 'pip')  # 1 of 3
    assert rl.pinned(rl.requirements('a==1\nb==2.0\nc\n'), 'pip')  # 2 of 3
    assert not rl.pinned(rl.requirements('a==1.*\nb==2.*\n'), 'pip')  # a wildcard is a range
    assert rl.pinned({'react': '18.2.0', 'vite': '4.5.0', 'x': '^1.0.0'}, 'npm')
    assert not rl.pinned({'react': '^18.2.0', 'vite': '~4.5.0'}, 'npm')
    assert not rl.pinned({}, 'npm')
    deps = rl.npm_dependencies(json.dumps({'dependencies': {'a': '^1'}, 'devDependencies': {'b': '2.0.0'}}))
    assert deps == {'a': '^1', 'b': '2.0.0'}


def test_file_package():
    assert rl.file_package('Django-4.2.7-py3-none-any.whl') == ('django', '4.2.7', 'wheel')
    assert rl.file_package('typing_extensions-4.9.0-py3-none-any.whl') == ('typing-extensions', '4.9.0', 'wheel')
    assert rl.file_package('docopt-0.6.2.tar.gz') == ('docopt', '0.6.2', 'sdist')
    assert rl.file_package('react-dom-18.2.0.tgz', 'npm') == ('react-dom', '18.2.0', 'tarball')


HELD_FILES = {'numpy-2.3.0-cp311-cp311-manylinux_2_28_x86_64.whl', 'django-5.2-py3-none-any.whl',
              'pyyaml-6.0.1-cp311-cp311-manylinux_2_17_x86_64.whl'}
HELD = {'numpy': {'2.3.0'}, 'django': {'5.2'}, 'pyyaml': {'6.0.1'}}


@pytest.mark.parametrize('filename, extras, cause', [
    ('docopt-0.6.2.tar.gz', set(), 'sdist'),
    ('numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl', set(), 'other version'),
    ('pyyaml-6.0.1-cp311-cp311-musllinux_1_1_x86_64.whl', set(), 'platform'),
    ('uvloop-0.19.0-cp311-cp311-manylinux_2_17_x86_64.whl', {'uvloop', 'httptools'}, 'extra'),
    ('uvloop-0.19.0-cp311-cp311-manylinux_2_17_x86_64.whl', set(), 'not listed'),
    ('flask-3.0.0-py3-none-any.whl', {'uvloop'}, 'not listed'),
])
def test_classify(filename, extras, cause):
    assert rl.classify(filename, HELD_FILES, HELD, extras) == cause


def test_classify_npm():
    held = {'react': {'18.3.1'}, '@esbuild/linux-x64': {'0.21.5'}}
    assert rl.classify_npm('react', '18.2.0', held) == 'other version'
    assert rl.classify_npm('@esbuild/linux-x64', '0.21.5', held) == 'platform'
    assert rl.classify_npm('vite', '5.0.0', held) == 'not listed'


def test_set_rates_and_overall():
    needed = [('a.whl', 100), ('b.whl', 300), ('c.whl', 600)]
    r = rl.set_rates(needed, [('c.whl', 600)])
    assert (r['files'], r['missed_files'], r['files_pct']) == (3, 1, 66.67)
    assert (r['bytes'], r['missed_bytes'], r['bytes_pct']) == (1000, 600, 40.0)
    # A file only the view's install fetched (another resolution) is a miss and part of the total.
    r2 = rl.set_rates([('a.whl', 100)], [('z.whl', 100)])
    assert (r2['files'], r2['missed_files'], r2['files_pct'], r2['bytes_pct']) == (2, 1, 50.0, 50.0)
    full = rl.set_rates(needed, [])
    assert (full['files_pct'], full['bytes_pct']) == (100.0, 100.0)
    assert rl.set_rates([], [])['files_pct'] == 100.0
    # Overall sums files and bytes; it is not the mean of the sets' percentages (66.67 and 100 -> 83.3).
    o = rl.overall([r, full])
    assert (o['sets'], o['files'], o['missed_files'], o['files_pct']) == (2, 6, 1, 83.33)
    assert o['bytes_pct'] == 70.0


def test_fleet_counts_counts_users_once():
    assert rl.fleet_counts([['a', 'a', 'b'], ['a'], []]) == {'a': 2, 'b': 1}


def test_corpus_sizes_and_pinned_third():
    """The corpus the issue asks for: >= 60 pip sets and >= 30 npm sets, about a third of each pinned."""
    for eco, ext, least in (('pip', '.txt', 60), ('npm', '.json', 30)):
        d = os.path.join(ROOT, 'bench', 'corpus', eco)
        files = [f for f in os.listdir(d) if f.endswith(ext)]
        assert len(files) >= least
        pinned = 0
        for f in files:
            with open(os.path.join(d, f)) as fh:
                text = fh.read()
            specs = rl.npm_dependencies(text) if eco == 'npm' else rl.requirements(text)
            assert specs, f
            pinned += rl.pinned(specs, eco)
        assert 0.25 <= pinned / len(files) <= 0.45, (eco, pinned, len(files))
