# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scratch directories, checks and mount actions for per-user overlays.

Private to the collection; the API may change without notice.

Every directory operation under a user's home or scratch dir goes through
file descriptors opened with O_NOFOLLOW, one component at a time, so a user
who replaced a directory with a symlink (to /etc, say) makes the operation
fail instead of redirecting it.
"""

from __future__ import annotations

import errno
import os
import stat

from . import _overlay as ov
from ._fstab import parse_line

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


class UnsafePathError(RuntimeError):
    """A path component is a symlink or not a directory."""


def _components(path):
    return [c for c in path.split('/') if c]


def ensure_dirs(path, owned_from, uid, gid, mode, check_mode, created):
    """Make sure every component of ``path`` is a real directory, without following symlinks.

    Components from index ``owned_from`` on are set to ``uid:gid`` and ``mode``
    (created if missing); components before it must exist or are created
    root-owned 0755. Appends the paths created or fixed to ``created``.
    In check mode nothing changes and missing components are only recorded.
    """
    parts = _components(path)
    fd = os.open('/', DIR_FLAGS)
    current = ''
    try:
        for i, name in enumerate(parts):
            current += '/' + name
            owned = i >= owned_from
            try:
                nfd = os.open(name, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                created.append(current)
                if check_mode:
                    return
                os.mkdir(name, mode if owned else 0o755, dir_fd=fd)
                nfd = os.open(name, DIR_FLAGS, dir_fd=fd)
                if owned:
                    os.fchown(nfd, uid, gid)
                    os.fchmod(nfd, mode)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafePathError('%s is a symlink or not a directory; refusing to follow it' % current)
                raise
            else:
                if owned:
                    st = os.fstat(nfd)
                    if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != (uid, gid, mode):
                        created.append(current)
                        if not check_mode:
                            os.fchown(nfd, uid, gid)
                            os.fchmod(nfd, mode)
            os.close(fd)
            fd = nfd
    finally:
        os.close(fd)


def ensure_target(mount, check_mode, created):
    """Create the mount target under the user's home (user-owned 0700), never following symlinks.

    The home directory itself must exist; it is not changed.
    """
    home_parts = len(_components(mount['home']))
    if not os.path.isdir(mount['home']) or os.path.islink(mount['home']):
        raise UnsafePathError('home %s of repl %s is not a directory' % (mount['home'], mount['user']))
    fd = os.open('/', DIR_FLAGS)
    parts = _components(mount['target'])
    current = ''
    try:
        for i, name in enumerate(parts):
            current += '/' + name
            try:
                nfd = os.open(name, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if i < home_parts:
                    raise
                created.append(current)
                if check_mode:
                    return
                os.mkdir(name, 0o700, dir_fd=fd)
                nfd = os.open(name, DIR_FLAGS, dir_fd=fd)
                os.fchown(nfd, mount['uid'], mount['gid'])
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafePathError('%s (mount target of repl %s) is a symlink or not a directory; refusing to follow it'
                                          % (current, mount['user']))
                raise
            os.close(fd)
            fd = nfd
    finally:
        os.close(fd)


def check_filesystems(mountinfo, mount):
    """Refuse an upper on overlayfs, and upper and work on different filesystems."""
    upper = ov.mount_of(mountinfo, mount['upperdir'])
    work = ov.mount_of(mountinfo, mount['workdir'])
    if upper is not None and upper['fstype'] == 'overlay':
        raise ov.OverlayInputError('repl %s: upperdir %s is on overlayfs (mounted at %s), which cannot be an upper layer; '
                                   'put the scratch root on a volume or a tmpfs' % (mount['user'], mount['upperdir'], upper['mount_point']))
    if upper is not None and work is not None and upper['dev'] != work['dev']:
        raise ov.OverlayInputError('repl %s: upperdir %s and workdir %s are on different filesystems (%s, %s)'
                                   % (mount['user'], mount['upperdir'], mount['workdir'], upper['mount_point'], work['mount_point']))


def render_lines(mounts, lines):
    """Pair planned mounts with fstab lines (given, or the default format), checking each."""
    if lines is None:
        return [ov.default_line(m) for m in mounts]
    entries = [l for l in lines if parse_line(l)]
    if len(entries) != len(mounts):
        raise ov.OverlayInputError('the fstab template gave %d entries for %d planned mounts' % (len(entries), len(mounts)))
    for line, mount in zip(entries, mounts):
        ov.check_line(line, mount)
    return list(lines)
