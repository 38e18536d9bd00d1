# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""File descriptor based directory operations for root code near users' files.

Private to the collection; the API may change without notice.

Nothing here resolves a path that a repl user could change by name. Paths are
opened one component at a time from '/' with O_NOFOLLOW, and every change is
an ``*at()`` call on a directory fd that root holds. A user who swaps a
component for a symlink makes the operation fail (ELOOP) instead of
redirecting it; a user who renames a directory only moves the operation
inside their own tree.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import stat
import time

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8


class UnsafePathError(RuntimeError):
    """A path component is a symlink, not a directory, or not root's; the message names it."""


def components(path):
    return [c for c in path.split('/') if c]


def _unsafe(exc, path, what):
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return UnsafePathError('%s %s is a symlink or not a directory; refusing to follow it' % (what, path))
    return exc


def check_root_dir(st, path, what):
    """Refuse a directory that is not root's, or that others than root may write to.

    A sticky directory (/tmp) passes: others may add entries to it but not
    rename or remove root's, and the next component must be root's too.
    """
    if st.st_uid != 0 or (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX):
        raise UnsafePathError('%s %s is not a root-owned directory closed to writes by others (owner uid %d, mode %04o); '
                              'a repl user could swap what lies below it' % (what, path, st.st_uid, stat.S_IMODE(st.st_mode)))


def open_dir(path, what='path', root_owned=True):
    """Open directory ``path`` by an O_NOFOLLOW chain from '/'; return the fd.

    With ``root_owned``, '/' and every directory on the way, ``path`` included,
    must be root's and closed to writes by others: nobody but root can then
    change what the path names.
    """
    fd = os.open('/', DIR_FLAGS)
    current = ''
    try:
        if root_owned:
            check_root_dir(os.fstat(fd), '/', what)
        for name in components(path):
            current += '/' + name
            try:
                nfd = os.open(name, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _unsafe(exc, current, what)
            os.close(fd)
            fd = nfd
            if root_owned:
                check_root_dir(os.fstat(fd), current, what)
    except BaseException:
        os.close(fd)
        raise
    return fd


def ensure_dir(parent_fd, name, uid, gid, mode, check_mode, created, path, adopt=(0,)):
    """Make ``name`` in ``parent_fd`` a directory owned by uid:gid with ``mode``; return its fd (None in check mode if missing).

    Appends ``path`` to ``created`` when it was created or its owner or mode
    fixed. An existing directory is only taken over when its owner is in
    ``adopt`` (and ``uid``): in a sticky root another user may have made it
    first, with their own files and open fds inside.
    """
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        created.append(path)
        if check_mode:
            return None
        os.mkdir(name, 0o700, dir_fd=parent_fd)
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
        except OSError as exc:
            raise _unsafe(exc, path, 'directory')
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        return fd
    except OSError as exc:
        raise _unsafe(exc, path, 'directory')
    st = os.fstat(fd)
    if st.st_uid != uid and st.st_uid not in adopt:
        os.close(fd)
        raise UnsafePathError('%s is owned by uid %d, neither root nor its user; refusing to take it over (move it away)'
                              % (path, st.st_uid))
    if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != (uid, gid, mode):
        created.append(path)
        if not check_mode:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
    return fd


def entry(parent_fd, name):
    """lstat of ``name`` in ``parent_fd``, or None when absent."""
    try:
        return os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def mount_id(parent_fd, name):
    """The mount id of what ``name`` in ``parent_fd`` names (the mount on top of it, when it is a mount point)."""
    fd = os.open(name, PATH_FLAGS, dir_fd=parent_fd)
    try:
        with open('/proc/self/fdinfo/%d' % fd) as f:
            for line in f:
                if line.startswith('mnt_id:'):
                    return line.split()[1]
    finally:
        os.close(fd)
    return None


_libc = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library('c') or None, use_errno=True)
    return _libc


def _umount2(path, flags):
    if libc().umount2(path.encode('utf-8', 'surrogateescape'), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)


def umount(mount_point, expected_id, lazy=False):
    """Unmount the mount with id ``expected_id`` at ``mount_point``; return 'unmounted', 'busy' or 'gone'.

    The parent is reached by an O_NOFOLLOW chain (users may own it), the last
    component is checked to be that very mount, and umount2() gets the path
    through the parent's fd with UMOUNT_NOFOLLOW: a mount point cannot be
    renamed while it is mounted, so the name cannot be swapped in between.
    """
    parts = components(mount_point)
    parent = '/' + '/'.join(parts[:-1])
    try:
        pfd = open_dir(parent, 'mount point parent', root_owned=False)
    except (UnsafePathError, FileNotFoundError):
        return 'gone'
    try:
        try:
            found = mount_id(pfd, parts[-1])
        except OSError:
            return 'gone'
        if found != str(expected_id):
            return 'gone'
        try:
            _umount2('/proc/self/fd/%d/%s' % (pfd, parts[-1]), UMOUNT_NOFOLLOW | (MNT_DETACH if lazy else 0))
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                return 'busy'
            raise OSError(exc.errno, 'unmounting %s failed: %s' % (mount_point, exc.strerror))
    finally:
        os.close(pfd)
    return 'unmounted'


def remove_tree(parent_fd, name, max_entries=1000000, max_depth=4096, one_filesystem=False, deadline=None, counter=None):
    """Remove ``name`` in ``parent_fd`` and everything below it, never following a symlink; return entries removed.

    An explicit stack with one directory iterator per level, so depth costs no
    recursion and a wide directory is read once (one fd and one iterator per
    level); stops with an error after ``max_entries`` entries, below
    ``max_depth`` levels, or past ``deadline`` (time.monotonic()). With
    ``one_filesystem``, a directory on another device (a mount point) stops it
    with an error before anything in it is removed. ``counter`` (a one-item
    list) counts what went, also when it stops.
    """
    counter = counter if counter is not None else [0]
    st = entry(parent_fd, name)
    if st is None:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=parent_fd)
        counter[0] += 1
        return 1
    dev = st.st_dev if one_filesystem else None
    start = counter[0]
    stack = []  # (parent fd, name, fd, iterator)

    def push(pfd, dname):
        if len(stack) >= max_depth:
            raise OSError(errno.ELOOP, 'deeper than %d levels; stopped' % max_depth)
        fd = os.open(dname, DIR_FLAGS, dir_fd=pfd)
        stack.append((pfd, dname, fd, None))
        if dev is not None and os.fstat(fd).st_dev != dev:
            raise OSError(errno.EXDEV, '%s is on another filesystem (a mount point); stopped' % dname)
        stack[-1] = (pfd, dname, fd, os.scandir(fd))

    try:
        push(parent_fd, name)
        while stack:
            pfd, dname, fd, it = stack[-1]
            if deadline is not None and time.monotonic() > deadline:
                raise OSError(errno.ETIME, 'out of time after %d entries; stopped' % (counter[0] - start))
            ent = next(it, None)
            if ent is None:
                it.close()
                os.close(fd)
                stack.pop()
                os.rmdir(dname, dir_fd=pfd)
            elif ent.is_dir(follow_symlinks=False):
                push(fd, ent.name)
                continue
            else:
                os.unlink(ent.name, dir_fd=fd)
            counter[0] += 1
            if counter[0] - start > max_entries:
                raise OSError(errno.EFBIG, 'more than %d entries; stopped' % max_entries)
    finally:
        for pfd, dname, fd, it in stack:
            if it is not None:
                it.close()
            os.close(fd)
    return counter[0] - start


def layers_in_use(upperdir, workdir, probe_dir):
    """Does a live overlay, in any mount namespace, still use ``upperdir`` or ``workdir``? True, False or None (cannot tell).

    The kernel marks the upper and work dirs of every overlay superblock "in
    use" until the last reference goes: a process in another mount namespace,
    an fd in flight in a socket, a mapping. A read-only probe mount with
    ``index=on`` fails with EBUSY on such dirs. All paths are root's (the
    mount invariant); ``probe_dir`` is a root-only dir holding ``lower`` (empty)
    and ``mnt``. What the probe leaves (work/index, the origin and uuid xattrs
    on the upper root) is removed.
    """
    for name in ('lower', 'mnt'):
        try:
            os.mkdir(os.path.join(probe_dir, name), 0o700)
        except FileExistsError:
            pass
    mnt = os.path.join(probe_dir, 'mnt')
    data = ('lowerdir=%s,upperdir=%s,workdir=%s,index=on,xino=off,metacopy=off,nfs_export=off'
            % (os.path.join(probe_dir, 'lower'), upperdir, workdir))
    rc = libc().mount(b'overlay', mnt.encode(), b'overlay', MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                      data.encode('utf-8', 'surrogateescape'))
    err = ctypes.get_errno()
    if rc != 0:
        return True if err == errno.EBUSY else None
    _umount2(mnt, 0)
    _forget_probe(upperdir, workdir)
    return False


def _forget_probe(upperdir, workdir):
    fd = os.open(upperdir, DIR_FLAGS)
    try:
        for attr in ('trusted.overlay.origin', 'trusted.overlay.uuid'):
            try:
                os.removexattr(fd, attr)
            except OSError:
                pass
    finally:
        os.close(fd)
    wfd = os.open(workdir, DIR_FLAGS)
    try:
        remove_tree(wfd, 'index')
    finally:
        os.close(wfd)
