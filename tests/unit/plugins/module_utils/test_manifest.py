import json
import os
import posixpath
import tempfile

import pytest
from hypothesis import given, settings, strategies as s

from ansible_collections.pkgcache.overlay.plugins.module_utils import _manifest as mf
from ansible_collections.pkgcache.overlay.plugins.module_utils import _store as st

SHA = 'a' * 64


def make_tree(root):
    os.makedirs(os.path.join(root, 'http', 'a'))
    with open(os.path.join(root, 'http', 'a', 'entry'), 'wb') as f:
        f.write(b'body')
    os.chmod(os.path.join(root, 'http', 'a', 'entry'), 0o600)  # pip writes 0600 files
    with open(os.path.join(root, 'tool'), 'wb') as f:
        f.write(b'#!/bin/sh\n')
    os.chmod(os.path.join(root, 'tool'), 0o700)
    os.symlink('tool', os.path.join(root, 'link'))
    os.makedirs(os.path.join(root, 'selfcheck'))


def test_scan_normalises_modes_and_skips_excluded(tmp_path):
    make_tree(str(tmp_path))
    entries, paths = mf.scan_tree(str(tmp_path), 'pip', exclude=('selfcheck',))
    by_path = {e['path']: e for e in entries}
    assert sorted(by_path) == ['pip', 'pip/http', 'pip/http/a', 'pip/http/a/entry', 'pip/link', 'pip/tool']
    assert by_path['pip/http/a/entry']['mode'] == '0644'  # readable by every user through the overlay
    assert by_path['pip/tool']['mode'] == '0755'
    assert by_path['pip/http']['mode'] == '0777'  # users add entries through their overlay
    assert by_path['pip/link'] == {'path': 'pip/link', 'type': 'symlink', 'target': 'tool'}
    assert by_path['pip/http/a/entry']['size'] == 4
    assert paths['pip/http/a/entry'] == str(tmp_path / 'http' / 'a' / 'entry')
    mf.validate_entries(entries)


def test_scan_refuses_fifo(tmp_path):
    os.mkfifo(str(tmp_path / 'fifo'))
    with pytest.raises(mf.ManifestError, match='not a file, directory or symlink'):
        mf.scan_tree(str(tmp_path), 'pip')


def test_id_depends_on_content_only(tmp_path):
    a, b = tmp_path / 'a', tmp_path / 'b'
    make_tree(str(a))
    make_tree(str(b))
    ea, dummy = mf.scan_tree(str(a), 'pip')
    eb, dummy = mf.scan_tree(str(b), 'pip')
    assert mf.snapshot_id(ea) == mf.snapshot_id(list(reversed(eb)))
    assert mf.build_manifest(ea, {'created': 'x'})['id'] == mf.build_manifest(eb, {'created': 'y'})['id']
    (b / 'tool').write_bytes(b'changed')
    eb, dummy = mf.scan_tree(str(b), 'pip')
    assert mf.snapshot_id(ea) != mf.snapshot_id(eb)


def base():
    return [{'path': 'pip', 'type': 'dir', 'mode': '0777'},
            {'path': 'pip/f', 'type': 'file', 'mode': '0644', 'size': 3, 'sha256': SHA}]


@pytest.mark.parametrize('entry, message', [
    ({'path': '/etc/passwd', 'type': 'file', 'mode': '0644', 'size': 1, 'sha256': SHA}, 'absolute'),
    ({'path': 'pip/../../etc', 'type': 'dir', 'mode': '0777'}, '".."'),
    ({'path': 'pip//x', 'type': 'dir', 'mode': '0777'}, 'empty'),
    ({'path': 'pip/f', 'type': 'file', 'mode': '0644', 'size': 3, 'sha256': SHA}, 'appears twice'),
    ({'path': 'pip/l', 'type': 'symlink', 'target': '../../etc/shadow'}, 'leaves the snapshot'),
    ({'path': 'pip/l', 'type': 'symlink', 'target': '/etc/shadow'}, 'leaves the snapshot'),
    ({'path': 'pip/dev', 'type': 'chardev', 'mode': '0644'}, 'type'),
    ({'path': 'pip/fifo', 'type': 'fifo'}, 'type'),
    ({'path': 'pip/s', 'type': 'file', 'mode': '4755', 'size': 1, 'sha256': SHA}, 'setuid'),
    ({'path': 'pip/s', 'type': 'file', 'mode': '2755', 'size': 1, 'sha256': SHA}, 'setuid'),
    ({'path': 'pip/w', 'type': 'file', 'mode': '0666', 'size': 1, 'sha256': SHA}, 'world-writable'),
    ({'path': 'pip/d', 'type': 'dir', 'mode': '1777'}, 'directory mode'),
    ({'path': 'pip/h', 'type': 'file', 'mode': '0644', 'size': 1, 'sha256': 'XYZ'}, 'sha256'),
    ({'path': 'pip/n', 'type': 'file', 'mode': '0644', 'size': -1, 'sha256': SHA}, 'size'),
    ({'path': 'nodir/x', 'type': 'file', 'mode': '0644', 'size': 1, 'sha256': SHA}, 'parent'),
])
def test_hostile_entries_are_refused(entry, message):
    with pytest.raises(mf.ManifestError, match=message):
        mf.validate_entries(base() + [entry])


def test_size_limits():
    mf.validate_entries(base(), max_object_size=3, max_total_size=3)
    with pytest.raises(mf.ManifestError, match='per-object limit'):
        mf.validate_entries(base(), max_object_size=2)
    with pytest.raises(mf.ManifestError, match='per-snapshot limit'):
        mf.validate_entries(base(), max_total_size=2)


def test_load_manifest_checks_the_id():
    m = mf.build_manifest(base(), {'created': 'now'})
    assert mf.load_manifest(json.dumps(m), m['id'])['id'] == m['id']
    with pytest.raises(mf.ManifestError, match='expected'):
        mf.load_manifest(json.dumps(m), 'b' * 64)
    m['entries'][1]['size'] = 4
    with pytest.raises(mf.ManifestError, match='does not match its entries'):
        mf.load_manifest(json.dumps(m))
    with pytest.raises(mf.ManifestError, match='not valid JSON'):
        mf.load_manifest(b'{')


@pytest.mark.parametrize('path, writable', [
    ('npm/_cacache/index-v5/ab/cd/0123', True),
    ('npm/_cacache/content-v2/sha512/ab/cd/0123', False),
    ('maven/org/x/y/1.0/_remote.repositories', True),
    ('maven/org/x/y/maven-metadata-company.xml', True),
    ('maven/org/x/y/1.0/y-1.0.jar', False),
    ('uv/.lock', True),
    ('uv/wheels-v8/pypi/six/1.17.0-py2.py3-none-any.lock', True),
    ('pip/http-v2/a/b/c/d/e/f.lock', False),
    ('pip/selfcheck.json', False),
])
def test_only_files_package_managers_rewrite_are_writable(path, writable):
    assert mf.writable_path(path) is writable
    entry = {'path': path, 'type': 'file', 'mode': '0666', 'size': 0, 'sha256': '0' * 64}
    dirs = [{'path': '/'.join(path.split('/')[:i]), 'type': 'dir', 'mode': '0777'} for i in range(1, path.count('/') + 1)]
    if writable:
        mf.validate_entries(dirs + [entry])
    else:
        with pytest.raises(mf.ManifestError, match='world-writable'):
            mf.validate_entries(dirs + [entry])


def test_scan_gives_npm_index_buckets_mode_0666(tmp_path):
    bucket = tmp_path / '_cacache' / 'index-v5' / 'aa'
    bucket.mkdir(parents=True)
    (bucket / 'b').write_text('x')
    (tmp_path / '_cacache' / 'content-v2').mkdir()
    (tmp_path / '_cacache' / 'content-v2' / 'c').write_text('y')
    entries, dummy = mf.scan_tree(str(tmp_path), 'npm')
    modes = dict((e['path'], e.get('mode')) for e in entries)
    assert modes['npm/_cacache/index-v5/aa/b'] == '0666' and modes['npm/_cacache/content-v2/c'] == '0644'


def d(path):
    return {'path': path, 'type': 'dir', 'mode': '0777'}


def ln(path, target):
    return {'path': path, 'type': 'symlink', 'target': target}


def f(path):
    return {'path': path, 'type': 'file', 'mode': '0644', 'size': 1, 'sha256': SHA}


# Symlinks are resolved through the manifest's own symlinks.

CHAIN = [d('pip'), d('pip/a'), d('pip/a/b'), ln('pip/a/b/l', '../..')]


@pytest.mark.parametrize('entries, bad', [
    # The review's case: lexically pip/etc/passwd, really ../etc/passwd from the tree root.
    (CHAIN + [ln('pip/x', 'a/b/l/a/b/l/../../../../../../etc/passwd')], 'pip/x'),
    # Lexically inside pip, really in another ecosystem's directory.
    (CHAIN + [d('npm'), f('npm/secret'), ln('pip/x', 'a/b/l/../npm/secret')], 'pip/x'),
    # The escaping link is the last of a chain of harmless-looking ones.
    (CHAIN + [ln('pip/y', 'a/b/l/a/b/l/../../..'), ln('pip/z', 'y/etc')], 'pip/y'),
    # A relative link to a link that climbs.
    ([d('pip'), d('pip/d'), ln('pip/d/up', '..'), ln('pip/d/up2', 'up/..'), ln('pip/x', 'd/up2/../etc')], 'pip/d/up2'),
])
def test_chained_symlinks_that_leave_the_snapshot_are_refused(entries, bad):
    with pytest.raises(mf.ManifestError, match=r"manifest entry '%s': symlink target .* leaves the snapshot" % bad):
        mf.validate_entries(entries)


@pytest.mark.parametrize('entries, bad', [
    ([d('pip'), ln('pip/a', 'b'), ln('pip/b', 'a')], 'pip/a'),
    ([d('pip'), ln('pip/a', 'a')], 'pip/a'),
    ([d('pip'), d('pip/d'), ln('pip/d/l', '../d/l/x')], 'pip/d/l'),
    ([d('pip')] + [ln('pip/l%d' % i, 'l%d' % (i + 1)) for i in range(60)] + [f('pip/l60')], 'pip/l0'),
])
def test_symlink_loops_and_overlong_chains_are_refused(entries, bad):
    with pytest.raises(mf.ManifestError, match=r"manifest entry '%s': symlink target .* (loops|more than 40)" % bad):
        mf.validate_entries(entries)


def test_symlinks_inside_the_snapshot_still_validate(tmp_path):
    entries = [
        d('pip'), d('pip/sub'), f('pip/sub/f'), ln('pip/sub/up', '..'), ln('pip/y', 'sub/up/sub/f'),
        ln('pip/l1', 'l2'), ln('pip/l2', 'sub/f'), ln('pip/dangling', 'nothing/here'),
        ln('pip/chain', 'l1'),
        # uv links its wheel entries to unpacked archives.
        d('uv'), d('uv/archive-v0'), d('uv/archive-v0/abc'), f('uv/archive-v0/abc/six.py'),
        d('uv/wheels-v5'), d('uv/wheels-v5/pypi'), d('uv/wheels-v5/pypi/six'),
        ln('uv/wheels-v5/pypi/six/six-1.17.0-py2.py3-none-any', '../../../archive-v0/abc'),
    ] + [ln('pip/c%d' % i, 'c%d' % (i + 1)) for i in range(30)] + [ln('pip/c30', 'sub/f')]
    mf.validate_entries(entries)
    # A scanned tree with a symlink (as npm, pip, maven and uv caches may have) still validates.
    root = tmp_path / 'cache'
    (root / 'a').mkdir(parents=True)
    (root / 'a' / 'x').write_bytes(b'x')
    os.symlink('a/x', str(root / 'l'))
    os.symlink('../l', str(root / 'a' / 'l2'))
    scanned, dummy = mf.scan_tree(str(root), 'pip')
    mf.validate_entries(scanned)


NAMES = s.sampled_from(['a', 'b', 'l', 'm'])
TARGET = s.lists(s.sampled_from(['a', 'b', 'l', 'm', '..', '.', 'npm', 'etc']), min_size=1, max_size=7).map('/'.join)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(dirs=s.lists(s.lists(NAMES, min_size=1, max_size=3), max_size=5),
       links=s.lists(s.tuples(s.lists(NAMES, min_size=1, max_size=3), TARGET), min_size=1, max_size=5))
def test_accepted_symlinks_really_stay_inside(dirs, links):
    """Whatever manifest is accepted, every symlink of its checkout resolves (by the kernel) inside its top dir."""
    entries, kinds = [d('pip'), d('npm'), d('npm/etc')], {'pip': 'dir', 'npm': 'dir', 'npm/etc': 'dir'}
    for parts in dirs:
        for n in range(1, len(parts) + 1):
            path = 'pip/' + '/'.join(parts[:n])
            if kinds.setdefault(path, 'dir') == 'dir' and d(path) not in entries:
                entries.append(d(path))
    for parts, target in links:
        path = 'pip/' + '/'.join(parts)
        if path not in kinds and kinds.get(posixpath.dirname(path)) == 'dir':
            kinds[path] = 'symlink'
            entries.append(ln(path, target))
    try:
        mf.validate_entries(entries)
    except mf.ManifestError:
        return
    with tempfile.TemporaryDirectory() as tmp:
        manifest = mf.build_manifest(entries, {})
        tree = os.path.realpath(st.build_tree(tmp, manifest))
        for e in entries:
            if e['type'] == 'symlink':
                real = os.path.realpath(os.path.join(tree, e['path']))
                top = os.path.join(tree, e['path'].split('/')[0])
                assert real == top or real.startswith(top + '/'), (e, real)
