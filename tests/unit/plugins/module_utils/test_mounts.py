import os

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _mounts as mt
from ansible_collections.pkgcache.overlay.plugins.module_utils import _overlay as ov

UID, GID = os.getuid(), os.getgid()


def test_ensure_dirs_creates_owned_private_dirs(tmp_path):
    path = str(tmp_path / 'scratch' / 'alice' / 'cacache_pip' / 'upper')
    created = []
    owned_from = len(str(tmp_path).strip('/').split('/')) + 1  # from 'alice' on
    mt.ensure_dirs(path, owned_from, UID, GID, 0o700, False, created)
    assert created == [str(tmp_path / 'scratch'), str(tmp_path / 'scratch' / 'alice'),
                       str(tmp_path / 'scratch' / 'alice' / 'cacache_pip'), path]
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o700)
    assert oct(os.stat(str(tmp_path / 'scratch')).st_mode & 0o777) == oct(0o755)
    created = []
    mt.ensure_dirs(path, owned_from, UID, GID, 0o700, False, created)
    assert created == []
    os.chmod(path, 0o755)
    mt.ensure_dirs(path, owned_from, UID, GID, 0o700, True, created)
    assert created == [path] and oct(os.stat(path).st_mode & 0o777) == oct(0o755)  # check mode changes nothing


def test_ensure_dirs_never_follows_a_users_symlink(tmp_path):
    outside = tmp_path / 'etc'
    outside.mkdir()
    (tmp_path / 'scratch' / 'alice').mkdir(parents=True)
    os.symlink(str(outside), str(tmp_path / 'scratch' / 'alice' / 'cacache_pip'))
    path = str(tmp_path / 'scratch' / 'alice' / 'cacache_pip' / 'upper')
    with pytest.raises(mt.UnsafePathError, match='cacache_pip is a symlink'):
        mt.ensure_dirs(path, 1, UID, GID, 0o700, False, [])
    assert os.listdir(str(outside)) == []
    os.chmod(str(outside), 0o755)
    assert oct(os.stat(str(outside)).st_mode & 0o777) == oct(0o755)


def test_ensure_target_refuses_symlinked_cache_dir(tmp_path):
    home = tmp_path / 'home' / 'alice'
    home.mkdir(parents=True)
    os.symlink(str(tmp_path), str(home / '.cache'))
    m = ov.plan_mounts([{'name': 'alice', 'uid': UID or 1, 'gid': GID or 1, 'home': str(home)}], ['pip'],
                       '/var/lib/pkgcache/trees/x', '/mnt/scratch')[0]
    with pytest.raises(mt.UnsafePathError, match=r'\.cache \(mount target of repl alice\) is a symlink'):
        mt.ensure_target(m, False, [])
    assert not os.path.exists(str(tmp_path / 'pip'))


def test_render_lines_checks_the_template_output():
    mounts = ov.plan_mounts([{'name': 'a', 'uid': 1, 'gid': 1}, {'name': 'b', 'uid': 2, 'gid': 2}], ['pip'], '/l', '/s')
    assert mt.render_lines(mounts, None) == [ov.default_line(m) for m in mounts]
    lines = ['# comment from the template'] + [ov.default_line(m) for m in mounts]
    assert mt.render_lines(mounts, lines) == lines
    with pytest.raises(ov.OverlayInputError, match='gave 1 entries for 2 planned mounts'):
        mt.render_lines(mounts, lines[:2])
    with pytest.raises(ov.OverlayInputError, match='upperdir'):
        mt.render_lines(mounts, [ov.default_line(mounts[0]), ov.default_line(mounts[0]).replace('/home/a/', '/home/b/')])


def test_check_filesystems():
    info = ov.parse_mountinfo('1 0 0:1 / / rw - overlay overlay rw\n2 1 0:2 / /mnt/scratch rw - ext4 /dev/x rw\n'
                              '3 2 0:3 / /mnt/scratch/b/cacache_pip/work rw - tmpfs tmpfs rw\n')
    a, b = ov.plan_mounts([{'name': 'a', 'uid': 1, 'gid': 1}, {'name': 'b', 'uid': 2, 'gid': 2}], ['pip'], '/l', '/mnt/scratch')
    mt.check_filesystems(info, a)
    with pytest.raises(ov.OverlayInputError, match='different filesystems'):
        mt.check_filesystems(info, b)
    c = ov.plan_mounts([{'name': 'c', 'uid': 1, 'gid': 1}], ['pip'], '/l', '/var/tmp')[0]
    with pytest.raises(ov.OverlayInputError, match='is on overlayfs'):
        mt.check_filesystems(info, c)
