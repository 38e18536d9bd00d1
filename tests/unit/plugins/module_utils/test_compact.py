"""Compaction: only identical files go; nothing is followed; opaque and redirected dirs are left alone; the walk is bounded."""

import os
import shutil
import stat
import tempfile

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils._compact import compact

from helpers import DIR, deep_chain, write


def test_compaction_removes_only_identical_files_and_follows_nothing(tmp_path):
    lower, upper, outside = str(tmp_path / 'lower'), str(tmp_path / 'upper'), str(tmp_path / 'etc')
    write(lower + '/http/a/same', b'same bytes')
    write(lower + '/http/a/diff', b'lower bytes')
    write(lower + '/http/b/x', b'x')
    write(lower + '/wheels/w.whl', b'wheel')
    write(upper + '/http/a/same', b'same bytes')       # identical: goes
    write(upper + '/http/a/diff', b'user bytes!')      # differs: stays
    write(upper + '/http/a/new', b'only the user')     # not in lower: stays
    os.makedirs(upper + '/http/b')
    os.mknod(upper + '/http/b/x', 0o600 | 0o020000, os.makedev(0, 0))  # whiteout: stays
    write(outside + '/w.whl', b'wheel')
    os.symlink(outside, upper + '/wheels')             # a user's symlink to a dir outside: not followed
    write(outside + '/passwd', b'secret')
    os.symlink(outside + '/passwd', upper + '/http/a/link')
    assert compact(upper, lower, check_mode=True) == (1, 10)
    assert os.path.exists(upper + '/http/a/same')
    assert compact(upper, lower) == (1, 10)
    assert not os.path.exists(upper + '/http/a/same')
    for kept in ('/http/a/diff', '/http/a/new', '/http/a/link'):
        assert os.path.lexists(upper + kept), kept
    assert os.path.lexists(upper + '/http/b/x') and os.path.islink(upper + '/wheels')
    assert open(outside + '/w.whl', 'rb').read() == b'wheel' and open(outside + '/passwd', 'rb').read() == b'secret'
    assert compact(upper, lower) == (0, 0)


# ------------------------------------------------------- opaque and redirected dirs

def _can_set_trusted_xattrs(base):
    probe = tempfile.mkdtemp(dir=base)
    fd = os.open(probe, DIR)
    try:
        os.setxattr(fd, 'trusted.pkgcache-probe', b'1')
        os.setxattr(fd, 'user.pkgcache-probe', b'1')
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        os.rmdir(probe)


@pytest.fixture
def xattr_base(tmp_path):
    """A dir whose filesystem takes trusted.* and user.* xattrs: tmp_path, else /dev/shm; else the test FAILS (never skips)."""
    if _can_set_trusted_xattrs(str(tmp_path)):
        yield str(tmp_path)
        return
    if os.path.isdir('/dev/shm') and _can_set_trusted_xattrs('/dev/shm'):
        base = tempfile.mkdtemp(dir='/dev/shm', prefix='pkgcache-compact-')
        try:
            yield base
        finally:
            shutil.rmtree(base)
        return
    pytest.fail('neither %s nor /dev/shm takes trusted.* and user.* xattrs (tests must run as root on tmpfs or ext4); '
                'the opaque-dir compaction test cannot run' % tmp_path)


def setxattr(path, name, value):
    fd = os.open(path, DIR)
    try:
        os.setxattr(fd, name, value)
    finally:
        os.close(fd)


@pytest.mark.parametrize('mark, value', [
    ('trusted.overlay.opaque', b'y'),
    ('user.overlay.opaque', b'y'),
    ('trusted.overlay.redirect', b'/http-old'),
    ('user.overlay.redirect', b'/http-old'),
])
def test_compaction_leaves_opaque_and_redirected_dirs_alone(xattr_base, mark, value):
    # The user ran `rm -rf http` in its overlay view and fetched the same files again: upper/http is opaque
    # (or, after a rename, redirected), the lower's http/ is hidden, and the upper's copies are the only ones left.
    lower, upper = os.path.join(xattr_base, 'lower'), os.path.join(xattr_base, 'upper')
    for rel in ('http/a/same', 'http/a/b/deeper', 'wheels/w.whl'):
        write(lower + '/' + rel, b'bytes of ' + rel.encode())
        write(upper + '/' + rel, b'bytes of ' + rel.encode())
    setxattr(upper + '/http', mark, value)
    assert compact(upper, lower) == (1, len(b'bytes of wheels/w.whl'))   # only the plain dir is compacted
    assert open(upper + '/http/a/same', 'rb').read() == b'bytes of http/a/same'
    assert open(upper + '/http/a/b/deeper', 'rb').read() == b'bytes of http/a/b/deeper'
    assert not os.path.exists(upper + '/wheels/w.whl')
    report = {}
    assert compact(upper, lower, report=report) == (0, 0)
    assert report['opaque'] == 1 and report['truncated'] is None


def test_compaction_leaves_a_marked_upper_root_and_marked_files_alone(xattr_base):
    lower, upper = os.path.join(xattr_base, 'lower'), os.path.join(xattr_base, 'upper')
    write(lower + '/http/meta', b'same')
    write(upper + '/http/meta', b'same')
    fd = os.open(upper + '/http/meta', os.O_RDONLY)
    try:
        os.setxattr(fd, 'user.overlay.metacopy', b'')     # a metacopy-only file: its data is the lower's
    finally:
        os.close(fd)
    assert compact(upper, lower) == (0, 0)
    assert os.path.exists(upper + '/http/meta')
    write(lower + '/wheels/w', b'w')
    write(upper + '/wheels/w', b'w')
    setxattr(upper, 'trusted.overlay.opaque', b'y')
    assert compact(upper, lower) == (0, 0)
    assert os.path.exists(upper + '/wheels/w')


# --------------------------------------------------------------- hostile uppers

def test_compaction_refuses_a_symlink_anywhere_in_the_upper_path(tmp_path):
    # mallory swaps its cacache_pip for a symlink to the victim's: root must not compact (delete in) the victim's upper.
    scratch, lower = tmp_path / 'scratch', str(tmp_path / 'lower')
    write(lower + '/http/x', b'same')
    write(str(scratch / 'victim' / 'cacache_pip' / 'upper' / 'http' / 'x'), b'same')
    (scratch / 'mallory').mkdir()
    os.symlink('../victim/cacache_pip', str(scratch / 'mallory' / 'cacache_pip'))
    with pytest.raises(OSError) as info:
        compact(str(scratch / 'mallory' / 'cacache_pip' / 'upper'), lower)
    assert 'cacache_pip is a symlink' in str(info.value)
    assert (scratch / 'victim' / 'cacache_pip' / 'upper' / 'http' / 'x').exists()


def test_compaction_of_a_1500_deep_tree_is_bounded(tmp_path):
    lower, upper = str(tmp_path / 'lower'), str(tmp_path / 'upper')
    write(lower + '/a/same', b'same')
    write(upper + '/a/same', b'same')
    with deep_chain(lower), deep_chain(upper):
        removed = compact(upper, lower)          # the old recursive walk raised RecursionError here
        report = {}
        compact(upper, lower, report=report)
    assert report['truncated'] == 'max_depth' and report['depth'] == 64
    assert removed in ((0, 0), (1, 4))           # the walk stops at the cap, wherever it had got to
    fds = len(os.listdir('/proc/self/fd'))
    with deep_chain(lower), deep_chain(upper):
        compact(upper, lower)
    assert len(os.listdir('/proc/self/fd')) == fds


def test_compaction_stops_at_its_caps_and_keeps_what_it_removed(tmp_path):
    from ansible_collections.pkgcache.overlay.plugins.module_utils._walk import Limits
    lower, upper = str(tmp_path / 'lower'), str(tmp_path / 'upper')
    for i in range(20):
        write('%s/http/%02d' % (lower, i), b'x' * 100)
        write('%s/http/%02d' % (upper, i), b'x' * 100)
    report = {}
    files, size = compact(upper, lower, limits=Limits(max_files=6), report=report)
    assert report['truncated'] == 'max_files' and files == 5 and size == 500
    assert len(os.listdir(upper + '/http')) == 15
    report = {}
    assert compact(upper, lower, limits=Limits(max_bytes=450), report=report) == (2, 200)
    assert report['truncated'] == 'max_bytes' and report['bytes_read'] <= 450


def test_compaction_skips_a_file_swapped_for_a_fifo(tmp_path):
    lower, upper = str(tmp_path / 'lower'), str(tmp_path / 'upper')
    write(lower + '/http/f', b'')
    os.makedirs(upper + '/http')
    os.mkfifo(upper + '/http/f')                 # never opened for reading: no hang
    assert compact(upper, lower) == (0, 0)
    assert stat.S_ISFIFO(os.lstat(upper + '/http/f').st_mode)
