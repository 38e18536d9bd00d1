import os
import subprocess

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _mounts as mt
from ansible_collections.pkgcache.overlay.plugins.module_utils import _mountinfo as mi
from ansible_collections.pkgcache.overlay.plugins.module_utils import _overlay as ov
from ansible_collections.pkgcache.overlay.plugins.module_utils import _safefs as sf
from ansible_collections.pkgcache.overlay.plugins.module_utils import _views

from helpers import mkdir_chain


def make_home(tmp_path, name='alice'):
    home = tmp_path / 'home' / name
    home.mkdir(parents=True)
    os.chown(str(home), 1, 1)
    return home


def plan(tmp_path, ecosystems=('pip',), **repl):
    r = {'name': 'alice', 'uid': 1, 'gid': 1, 'home': str(tmp_path / 'home' / 'alice'), 'scratch': str(tmp_path / 'scratch' / 'alice')}
    r.update(repl)
    return ov.plan_mounts([r], list(ecosystems), '/var/lib/pkgcache/trees/x', str(tmp_path / 'scratch'), str(tmp_path / 'views'))


def converge(tmp_path, mounts, state='present'):
    """A run over ``mounts`` with the views and scratch roots made, as _mounts.converge makes them first."""
    run = _views.Converge(mounts, [], None, False, state=state, state_dir=str(tmp_path / 'state'),
                          views_root=str(tmp_path / 'views'), scratch_root=str(tmp_path / 'scratch'), now=0)
    for root, mode in ((str(tmp_path / 'views'), 0o711), (str(tmp_path / 'scratch'), 0o755)):
        os.close(run.ensure_root_chain(root, mode))
    return run


def test_open_dir_refuses_symlinks_and_dirs_others_can_write(tmp_path):
    (tmp_path / 'real').mkdir()
    os.symlink(str(tmp_path / 'real'), str(tmp_path / 'link'))
    with pytest.raises(sf.UnsafePathError, match='link is a symlink or not a directory'):
        sf.open_dir(str(tmp_path / 'link' / 'x'))
    os.chmod(str(tmp_path / 'real'), 0o777)
    with pytest.raises(sf.UnsafePathError, match='real is not a root-owned directory closed to writes by others'):
        sf.open_dir(str(tmp_path / 'real'))
    os.chmod(str(tmp_path / 'real'), 0o1777)  # sticky, like /tmp: others cannot rename root's entries
    os.close(sf.open_dir(str(tmp_path / 'real')))
    os.chmod(str(tmp_path / 'real'), 0o755)
    os.chown(str(tmp_path / 'real'), 1, 1)
    with pytest.raises(sf.UnsafePathError, match='owner uid 1'):
        sf.open_dir(str(tmp_path / 'real'))
    os.close(sf.open_dir(str(tmp_path / 'real'), root_owned=False))


def test_link_is_placed_with_at_calls_and_a_swapped_parent_is_refused(tmp_path):
    home = make_home(tmp_path)
    m = plan(tmp_path)[0]
    assert _views.place_link(m, True, 0) == 'created' and not (home / '.cache').exists()  # check mode
    assert _views.place_link(m, False, 0) == 'created'
    assert os.readlink(str(home / '.cache' / 'pip')) == m['target']
    # The link stays root's (no chown by name in her dir); the dir root made for it is hers.
    assert os.lstat(str(home / '.cache' / 'pip')).st_uid == 0 and os.stat(str(home / '.cache')).st_uid == 1
    assert oct(os.stat(str(home / '.cache')).st_mode & 0o777) == oct(0o700)
    assert _views.place_link(m, False, 0) == 'already'
    # The user swaps ~/.cache for a symlink to a root-owned dir: nothing is made there.
    victim = tmp_path / 'etc-profile.d'
    victim.mkdir()
    os.rename(str(home / '.cache'), str(home / '.cache-old'))
    os.symlink(str(victim), str(home / '.cache'))
    with pytest.raises(sf.UnsafePathError, match=r'\.cache of repl alice is a symlink or not a directory'):
        _views.place_link(m, False, 0)
    assert os.listdir(str(victim)) == []
    # A home that is itself a symlink is refused too.
    os.unlink(str(home / '.cache'))
    os.rename(str(home), str(tmp_path / 'home' / 'elsewhere'))
    os.symlink(str(victim), str(home))
    with pytest.raises(sf.UnsafePathError, match='home .* cannot be used'):
        _views.place_link(m, False, 0)
    assert os.listdir(str(victim)) == []


def test_what_stands_at_the_cache_dir_is_kept(tmp_path):
    home = make_home(tmp_path)
    m = plan(tmp_path)[0]
    (home / '.cache' / 'pip' / 'http').mkdir(parents=True)
    (home / '.cache' / 'pip' / 'http' / 'entry').write_text('users data')
    result = _views.place_link(m, False, 86400)
    assert result == 'saved:pip.pkgcache-saved-19700102T000000'
    assert (home / '.cache' / 'pip.pkgcache-saved-19700102T000000' / 'http' / 'entry').read_text() == 'users data'
    assert os.readlink(str(home / '.cache' / 'pip')) == m['target']
    os.unlink(str(home / '.cache' / 'pip'))
    (home / '.cache' / 'pip').mkdir()  # an empty mount point of the earlier layout
    assert _views.place_link(m, False, 0) == 'replaced' and os.path.islink(str(home / '.cache' / 'pip'))
    os.unlink(str(home / '.cache' / 'pip'))
    os.symlink('/somewhere/else', str(home / '.cache' / 'pip'))
    assert _views.place_link(m, False, 0) == 'replaced' and os.readlink(str(home / '.cache' / 'pip')) == m['target']


def test_layers_become_roots_and_planted_symlinks_are_moved_aside(tmp_path):
    """The earlier layout: a user-owned scratch dir where the user planted work -> /some/root/dir."""
    victim = tmp_path / 'app'
    victim.mkdir()
    (victim / 'keep').write_text('x')
    layers = tmp_path / 'scratch' / 'alice' / 'cacache_pip'
    (layers / 'upper').mkdir(parents=True)
    (layers / 'upper' / 'mine').write_text('users data')
    os.symlink(str(victim), str(layers / 'work'))
    for d in (tmp_path / 'scratch' / 'alice', layers, layers / 'upper'):
        os.chown(str(d), 1, 1)
    m = plan(tmp_path)[0]
    run = converge(tmp_path, [m])
    assert run.prepare_user([m]) == [m] and not run.failed
    assert run.repaired == {'alice': {'pip': '%s was not a directory; moved to work.unsafe-19700101T000000' % m['workdir']}}
    for path, owner, mode in ((tmp_path / 'scratch' / 'alice', 0, 0o700), (layers, 0, 0o700), (layers / 'work', 0, 0o700),
                              (layers / 'upper', 1, 0o700), (tmp_path / 'views' / 'alice', 0, 0o710),
                              (tmp_path / 'views' / 'alice' / 'pip', 0, 0o700)):
        st = os.lstat(str(path))
        assert (st.st_uid, oct(st.st_mode & 0o7777)) == (owner, oct(mode)), path
    assert os.stat(str(tmp_path / 'views' / 'alice')).st_gid == 1  # only her group can look up her mount points
    assert (layers / 'upper' / 'mine').read_text() == 'users data'
    assert os.listdir(str(victim)) == ['keep'] and os.lstat(str(victim)).st_uid == 0


def test_one_broken_user_does_not_stop_the_others(tmp_path):
    mounts = ov.plan_mounts([{'name': 'mallory', 'uid': 1, 'gid': 1}, {'name': 'bob', 'uid': 2, 'gid': 2}], ['pip'],
                            '/var/lib/pkgcache/trees/x', str(tmp_path / 'scratch'), str(tmp_path / 'views'))
    (tmp_path / 'scratch').mkdir()
    os.symlink('/nonexistent', str(tmp_path / 'scratch' / 'mallory'))
    run = converge(tmp_path, mounts)
    ready = run.prepare_user([mounts[0]]) + run.prepare_user([mounts[1]])
    assert [m['user'] for m in ready] == ['bob']
    assert 'mallory is a symlink or not a directory' in run.failed['mallory']['pip']
    assert run.users == {'mallory': {'pip': 'failed'}}


def test_remove_tree_and_merge_need_no_recursion(tmp_path):
    fd = os.open(str(tmp_path), os.O_RDONLY)
    os.mkdir('deep', dir_fd=fd)
    cur = mkdir_chain(os.open('deep', os.O_RDONLY, dir_fd=fd), 1500)
    os.symlink('/etc', 'evil', dir_fd=cur)
    os.close(cur)
    assert sf.remove_tree(fd, 'deep') == 1502
    assert not (tmp_path / 'deep').exists() and os.path.exists('/etc/passwd')
    os.close(fd)


def test_merge_moves_what_the_current_upper_lacks(tmp_path):
    old, new = tmp_path / 'old', tmp_path / 'new'
    for d in ('a/b', 'opaque', 'clash'):
        (old / d).mkdir(parents=True)
    (new / 'a').mkdir(parents=True)
    (new / 'opaque').mkdir()
    (old / 'a' / 'b' / 'f').write_text('old file')
    (old / 'a' / 'g').write_text('old g')
    (new / 'a' / 'g').write_text('new g')
    (old / 'opaque' / 'x').write_text('hidden')
    os.setxattr(str(new / 'opaque'), 'trusted.overlay.opaque', b'y')
    os.symlink('/etc/passwd', str(old / 'link'))
    (new / 'clash').write_text('a file wins over a dir')
    s, d = os.open(str(old), os.O_RDONLY), os.open(str(new), os.O_RDONLY)
    try:
        assert _views.merge_upper(s, d) == (2, True)  # a/b (whole dir) and link
    finally:
        os.close(s)
        os.close(d)
    assert (new / 'a' / 'b' / 'f').read_text() == 'old file' and (new / 'a' / 'g').read_text() == 'new g'
    assert os.readlink(str(new / 'link')) == '/etc/passwd' and not (new / 'opaque' / 'x').exists()
    assert (new / 'clash').read_text() == 'a file wins over a dir'


def test_safe_umount_never_follows_a_swapped_parent(tmp_path):
    """A real tmpfs mount: the user renames the parent and plants a symlink to a dir where root has a mount."""
    home = make_home(tmp_path)
    (home / '.cache' / 'pip').mkdir(parents=True)
    root_mount = tmp_path / 'root-owned' / 'pip'
    root_mount.mkdir(parents=True)
    for d in (home / '.cache' / 'pip', root_mount):
        subprocess.check_call(['mount', '-t', 'tmpfs', 'tmpfs', str(d)])
    try:
        info = mi.parse_mountinfo(open('/proc/self/mountinfo').read())
        users = mi.mounted_at(info, str(home / '.cache' / 'pip'))
        roots = mi.mounted_at(info, str(root_mount))
        os.rename(str(home / '.cache'), str(home / '.cache-moved'))
        os.symlink(str(tmp_path / 'root-owned'), str(home / '.cache'))
        assert sf.umount(str(home / '.cache' / 'pip'), users['mount_id']) == 'gone'
        assert sf.umount(str(home / '.cache' / 'pip'), roots['mount_id']) == 'gone'
        assert mi.mounted_at(mi.parse_mountinfo(open('/proc/self/mountinfo').read()), str(root_mount)) is not None
        assert sf.umount(str(home / '.cache-moved' / 'pip'), users['mount_id']) == 'unmounted'
        keep = os.open(str(root_mount), os.O_RDONLY)
        try:
            assert sf.umount(str(root_mount), roots['mount_id']) == 'busy'
        finally:
            os.close(keep)
        assert sf.umount(str(root_mount), roots['mount_id']) == 'unmounted'
    finally:
        for d in (home / '.cache-moved' / 'pip', root_mount):
            subprocess.call(['umount', str(d)], stderr=subprocess.DEVNULL)


def test_render_lines_checks_the_template_output():
    mounts = ov.plan_mounts([{'name': 'a', 'uid': 1, 'gid': 1}, {'name': 'b', 'uid': 2, 'gid': 2}], ['pip'], '/l', '/s')
    assert mt.render_lines(mounts, None) == [(ov.default_line(m), m) for m in mounts]
    lines = ['# comment from the template'] + [ov.default_line(m) for m in mounts]
    assert mt.render_lines(mounts, lines) == list(zip(lines, [None] + mounts))
    with pytest.raises(ov.OverlayInputError, match='gave 1 entries for 2 planned mounts'):
        mt.render_lines(mounts, lines[:2])
    with pytest.raises(ov.OverlayInputError, match='upperdir'):
        mt.render_lines(mounts, [ov.default_line(mounts[0]), ov.default_line(mounts[0]).replace('views/a/', 'views/b/')])


def test_check_filesystems():
    info = mi.parse_mountinfo('1 0 0:1 / / rw - overlay overlay rw\n2 1 0:2 / /mnt/scratch rw - ext4 /dev/x rw\n'
                              '3 2 0:3 / /mnt/scratch/b/cacache_pip/work rw - tmpfs tmpfs rw\n')
    a, b = ov.plan_mounts([{'name': 'a', 'uid': 1, 'gid': 1}, {'name': 'b', 'uid': 2, 'gid': 2}], ['pip'], '/l', '/mnt/scratch')
    mt.check_filesystems(info, a)
    with pytest.raises(ov.OverlayInputError, match='different filesystems'):
        mt.check_filesystems(info, b)
    c = ov.plan_mounts([{'name': 'c', 'uid': 1, 'gid': 1}], ['pip'], '/l', '/var/tmp')[0]
    with pytest.raises(ov.OverlayInputError, match='is on overlayfs'):
        mt.check_filesystems(info, c)


def test_a_dir_another_user_made_first_in_a_sticky_root_is_never_taken_over(tmp_path):
    """A fresh tmpfs is 1777: mallory makes bob's scratch dir first, with her files and an open fd inside."""
    scratch = tmp_path / 'scratch'
    scratch.mkdir()
    os.chmod(str(scratch), 0o1777)
    (scratch / 'bob' / 'cacache_pip' / 'upper').mkdir(parents=True)
    (scratch / 'bob' / 'cacache_pip' / 'upper' / 'planted.py').write_text('mallory was here')
    for d in (scratch / 'bob', scratch / 'bob' / 'cacache_pip', scratch / 'bob' / 'cacache_pip' / 'upper'):
        os.chown(str(d), 3, 3)  # mallory
    mounts = ov.plan_mounts([{'name': 'bob', 'uid': 2, 'gid': 2}, {'name': 'carol', 'uid': 4, 'gid': 4}], ['pip'],
                            '/var/lib/pkgcache/trees/x', str(scratch), str(tmp_path / 'views'))
    run = converge(tmp_path, mounts)
    assert oct(os.stat(str(scratch)).st_mode & 0o7777) == oct(0o755)
    ready = run.prepare_user([mounts[0]]) + run.prepare_user([mounts[1]])
    assert [m['user'] for m in ready] == ['carol']
    assert 'owned by uid 3, neither root nor its user' in run.failed['bob']['pip']
    assert os.stat(str(scratch / 'bob')).st_uid == 3  # not chowned to root, nor to bob


def test_merge_keeps_few_fds_open_on_a_wide_cache_tree(tmp_path):
    """npm's _cacache/content-v2/sha512/xx/yy is wide on both sides; the merge holds one pair of dirs per level."""
    import resource
    old, new = tmp_path / 'old', tmp_path / 'new'
    for side in (old, new):
        for a in range(48):
            for b in range(4):
                (side / 'content' / ('%02x' % a) / ('%02x' % b)).mkdir(parents=True)
    for a in range(48):
        (old / 'content' / ('%02x' % a) / '00' / 'blob').write_text('kept')
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    s, d = os.open(str(old), os.O_RDONLY), os.open(str(new), os.O_RDONLY)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        assert _views.merge_upper(s, d) == (48, True)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        os.close(s)
        os.close(d)
    assert (new / 'content' / '2f' / '00' / 'blob').read_text() == 'kept'


def test_a_capped_merge_keeps_the_generation(tmp_path):
    old, new = tmp_path / 'old', tmp_path / 'new'
    (old / 'a').mkdir(parents=True)
    new.mkdir()
    for i in range(10):
        (old / ('f%d' % i)).write_text('x')
    s, d = os.open(str(old), os.O_RDONLY), os.open(str(new), os.O_RDONLY)
    try:
        moved, complete = _views.merge_upper(s, d, max_entries=5)
    finally:
        os.close(s)
        os.close(d)
    assert (moved, complete) == (5, False) and len(os.listdir(str(old))) == 6


def test_what_a_user_left_in_dirs_root_takes_over_is_moved_aside_and_never_mounted(tmp_path):
    """The earlier layout's layers dir was hers: a symlink named like a generation must never reach mount(2)."""
    victim = tmp_path / 'victim'
    (victim / 'upper').mkdir(parents=True)
    (victim / 'work' / 'work').mkdir(parents=True)
    (victim / 'work' / 'work' / 'secret').write_text('root data')
    layers = tmp_path / 'scratch' / 'alice' / 'cacache_pip'
    (layers / 'upper').mkdir(parents=True)
    (layers / 'work').mkdir()
    os.symlink(str(victim), str(layers / 'detached-20000101T000000-0'))
    (tmp_path / 'scratch' / 'alice' / 'junk').write_text('x')
    for d in (tmp_path / 'scratch' / 'alice', layers, layers / 'upper', layers / 'work'):
        os.chown(str(d), 1, 1)
    m = plan(tmp_path)[0]
    run = converge(tmp_path, [m], 'mounted')
    assert run.prepare_user([m]) == [m] and not run.failed
    names = sorted(os.listdir(str(layers)))
    assert 'detached-20000101T000000-0' not in names and 'detached-20000101T000000-0.unsafe-19700101T000000' in names
    assert 'work.unsafe-19700101T000000' in names and os.stat(str(layers / 'work')).st_uid == 0
    assert 'junk.unsafe-19700101T000000' in os.listdir(str(tmp_path / 'scratch' / 'alice'))
    assert run.generations(m) == []  # nothing unrecorded or not root's is a generation
    assert (victim / 'work' / 'work' / 'secret').read_text() == 'root data' and os.listxattr(str(victim / 'upper')) == []


def removed_layout(tmp_path):
    """alice is served; dave was (his scratch and view dirs as the collection made them), with a planted symlink."""
    victim = tmp_path / 'victim'
    victim.mkdir()
    (victim / 'keep').write_text('x')
    m = plan(tmp_path)[0]
    run = converge(tmp_path, [m], state='mounted')
    assert run.prepare_user([m]) == [m]
    dave = ov.plan_mounts([{'name': 'dave', 'uid': 2, 'gid': 2}], ['pip'], '/var/lib/pkgcache/trees/x',
                          str(tmp_path / 'scratch'), str(tmp_path / 'views'))[0]
    assert converge(tmp_path, [dave], state='mounted').prepare_user([dave]) == [dave]
    upper = tmp_path / 'scratch' / 'dave' / 'cacache_pip' / 'upper'
    (upper / 'wheels').mkdir()
    (upper / 'wheels' / 'big.whl').write_bytes(b'x' * 1000)
    os.symlink(str(victim), str(upper / 'evil'))
    (tmp_path / 'state').mkdir(exist_ok=True)
    return m, victim


def test_purge_removes_a_removed_users_dirs_root_side_and_nothing_else(tmp_path):
    m, victim = removed_layout(tmp_path)
    # Not ours: a user-owned dir, and a root dir without cacache_* (an operator's) in the scratch root.
    (tmp_path / 'scratch' / 'eve').mkdir()
    os.chown(str(tmp_path / 'scratch' / 'eve'), 3, 3)
    (tmp_path / 'scratch' / 'datasets').mkdir(mode=0o700)
    run = converge(tmp_path, [m], state='mounted')
    assert run.removed_users() == ['dave']
    check = converge(tmp_path, [m], state='mounted')
    check.check_mode = True
    check.purge('dave', [])
    assert check.purged == {'dave': 'purged'} and (tmp_path / 'scratch' / 'dave').exists()
    run.purge('dave', [])
    assert run.purged == {'dave': 'purged'}
    assert not (tmp_path / 'scratch' / 'dave').exists() and not (tmp_path / 'views' / 'dave').exists()
    assert sorted(os.listdir(str(tmp_path / 'scratch'))) == ['alice', 'datasets', 'eve']
    assert os.listdir(str(victim)) == ['keep']


def test_purge_keeps_a_user_whose_view_is_still_mounted(tmp_path):
    m, victim = removed_layout(tmp_path)
    run = converge(tmp_path, [m], state='mounted')
    view = str(tmp_path / 'views' / 'dave' / 'pip')
    info = mi.parse_mountinfo('90 30 0:70 / %s rw,nosuid,nodev - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w\n' % view)
    run.purge('dave', info)
    assert run.purged['dave'] == 'kept: %s is still mounted' % view
    # A mount elsewhere that uses one of his layers keeps him too.
    layers = str(tmp_path / 'scratch' / 'dave' / 'cacache_pip')
    info = mi.parse_mountinfo('91 30 0:71 / /elsewhere rw - overlay overlay rw,lowerdir=/l,upperdir=%s/upper,workdir=%s/work\n'
                              % (layers, layers))
    run.purge('dave', info)
    assert run.purged['dave'] == 'kept: /elsewhere is still mounted'
    assert (tmp_path / 'scratch' / 'dave' / 'cacache_pip' / 'upper' / 'wheels' / 'big.whl').exists()


def test_remove_tree_stops_at_a_mount_point(tmp_path):
    top = tmp_path / 'top'
    (top / 'mnt').mkdir(parents=True)
    (top / 'a').write_text('a')
    subprocess.run(['mount', '-t', 'tmpfs', 'tmpfs', str(top / 'mnt')], check=True)
    try:
        (top / 'mnt' / 'precious').write_text('p')
        fd = os.open(str(tmp_path), sf.DIR_FLAGS)
        try:
            with pytest.raises(OSError, match='another filesystem'):
                sf.remove_tree(fd, 'top', one_filesystem=True)
        finally:
            os.close(fd)
        assert (top / 'mnt' / 'precious').read_text() == 'p'
    finally:
        subprocess.run(['umount', str(top / 'mnt')], check=True)


def test_purge_never_probes_or_follows_what_a_user_planted_in_a_migrated_scratch_dir(tmp_path):
    """The earlier layout let users own their scratch dir: planted cacache_* symlinks must not reach the probe."""
    m, victim = removed_layout(tmp_path)
    (victim / 'work').mkdir()
    (victim / 'work' / 'work').mkdir()
    (victim / 'work' / 'work' / 'keep').write_text('x')
    os.symlink(str(victim), str(tmp_path / 'scratch' / 'dave' / 'cacache_zzz'))
    assert [p[0] for p in _views._layer_pairs(str(tmp_path / 'scratch' / 'dave'))] == [
        str(tmp_path / 'scratch' / 'dave' / 'cacache_pip' / 'upper')]
    run = converge(tmp_path, [m], state='mounted')
    run.purge('dave', [])
    assert run.purged == {'dave': 'purged'}
    assert sorted(os.listdir(str(victim))) == ['keep', 'work'] and (victim / 'work' / 'work' / 'keep').exists()


def test_listing_a_removed_users_layers_closes_every_fd_when_a_generation_vanishes(tmp_path, monkeypatch):
    """A generation dir removed between the listing and its open fails the purge, not the module's fd table."""
    removed_layout(tmp_path)
    layers = tmp_path / 'scratch' / 'dave' / 'cacache_pip'
    for gen in ('detached-1', 'detached-2'):
        (layers / gen / 'upper').mkdir(parents=True)
    real_open = os.open

    def vanishing(path, flags, *args, **kw):
        if path == 'detached-2':
            raise FileNotFoundError(2, 'gone', path)
        return real_open(path, flags, *args, **kw)

    before = sorted(os.listdir('/proc/self/fd'))
    monkeypatch.setattr(_views.os, 'open', vanishing)
    with pytest.raises(FileNotFoundError):
        _views._layer_pairs(str(tmp_path / 'scratch' / 'dave'))
    monkeypatch.undo()
    assert sorted(os.listdir('/proc/self/fd')) == before


def test_a_served_users_scratch_dir_of_another_name_is_never_taken_for_a_removed_user(tmp_path):
    m = plan(tmp_path, scratch=str(tmp_path / 'scratch' / 'u1001'))[0]
    run = converge(tmp_path, [m], state='mounted')
    assert run.prepare_user([m]) == [m]
    assert run.removed_users() == []


def test_remove_tree_reads_a_wide_dir_once_and_keeps_to_its_deadline(tmp_path):
    import time
    top = tmp_path / 'wide'
    top.mkdir()
    for n in range(3000):
        (top / ('d%d' % n)).mkdir()
    fd = os.open(str(tmp_path), sf.DIR_FLAGS)
    try:
        counter = [0]
        with pytest.raises(OSError, match='out of time'):
            sf.remove_tree(fd, 'wide', deadline=time.monotonic() - 1, counter=counter)
        assert counter[0] == 0 and top.exists()
        assert sf.remove_tree(fd, 'wide') == 3001 and not top.exists()
    finally:
        os.close(fd)


def test_a_name_found_under_the_views_root_removes_only_what_passes_each_roots_test(tmp_path):
    m, victim = removed_layout(tmp_path)
    (tmp_path / 'views' / 'eve').mkdir(mode=0o710)
    (tmp_path / 'scratch' / 'eve').mkdir()
    (tmp_path / 'scratch' / 'eve' / 'data').write_text('not ours')
    os.chown(str(tmp_path / 'scratch' / 'eve'), 3, 3)
    run = converge(tmp_path, [m], state='mounted')
    assert run.removed_users() == ['dave', 'eve']
    run.purge('eve', [])
    assert run.purged['eve'] == 'purged' and not (tmp_path / 'views' / 'eve').exists()
    assert (tmp_path / 'scratch' / 'eve' / 'data').read_text() == 'not ours'


def test_a_removed_user_whose_name_begins_with_a_dot_is_found_and_purged(tmp_path):
    m = plan(tmp_path)[0]
    assert converge(tmp_path, [m], state='mounted').prepare_user([m]) == [m]
    dot = ov.plan_mounts([{'name': '.dave', 'uid': 2, 'gid': 2}], ['pip'], '/var/lib/pkgcache/trees/x',
                         str(tmp_path / 'scratch'), str(tmp_path / 'views'))[0]
    assert converge(tmp_path, [dot], state='mounted').prepare_user([dot]) == [dot]
    (tmp_path / 'views' / '#lock').write_text('')  # the views root's lock: a file, never a user
    (tmp_path / 'state').mkdir()
    run = converge(tmp_path, [m], state='mounted')
    assert run.removed_users() == ['.dave']
    run.purge('.dave', [])
    assert run.purged == {'.dave': 'purged'}
    assert sorted(os.listdir(str(tmp_path / 'views'))) == ['#lock', 'alice']
    assert sorted(os.listdir(str(tmp_path / 'scratch'))) == ['alice']
