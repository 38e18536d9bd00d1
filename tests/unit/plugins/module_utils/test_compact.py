import os

from ansible_collections.pkgcache.overlay.plugins.module_utils._compact import compact


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)


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
