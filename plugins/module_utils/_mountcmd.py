# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mounts: mount(8) and umount(8) calls through a ``run(argv) -> (rc, out, err)`` callable, and overlay mounts
through mount(2) without a fork.

Private to the collection; the API may change without notice.
"""

from __future__ import annotations

import ctypes
import os
import stat

from . import _safefs as sf


class MountError(RuntimeError):
    """A mount or unmount failed; the message names the target and says why."""


def mount_from_fstab(run, fstab, target):
    """Mount ``target`` with exactly the options of its fstab line."""
    rc, out, err = run(['mount', '--fstab', fstab, '--target', target])
    if rc != 0:
        raise MountError('mounting %s from %s failed: %s' % (target, fstab, (err or out).strip()))


def unmount(run, target, lazy=False):
    """Unmount ``target``; return 'unmounted' or 'busy' (EBUSY and not lazy)."""
    argv = ['umount'] + (['--lazy'] if lazy else []) + [target]
    rc, out, err = run(argv)
    if rc == 0:
        return 'unmounted'
    text = (err or out).strip()
    if 'busy' in text.lower():
        return 'busy'
    raise MountError('unmounting %s failed: %s' % (target, text))


# mount(2) flags of the options an overlay line may carry (see _overlay.EXTRA_OPTIONS); (set, clear) as mount(8)
# applies them left to right. Options that only mount(8) and systemd read are not passed to the kernel.
MS = {'ro': (1, 0), 'rw': (0, 1), 'nosuid': (2, 0), 'nodev': (4, 0), 'noexec': (8, 0), 'sync': (16, 0),
      'async': (0, 16), 'dirsync': (128, 0), 'noatime': (1024, 0), 'nodiratime': (2048, 0), 'silent': (32768, 0),
      'loud': (0, 32768), 'relatime': (1 << 21, 0), 'norelatime': (0, 1 << 21),
      'strictatime': (1 << 24, 0), 'lazytime': (1 << 25, 0)}
USERSPACE = frozenset(['nofail', 'noauto', 'auto', '_netdev', 'defaults'])


def kernel_options(options):
    """(flags, data) for mount(2) from an fstab options field, as mount(8) splits it.

    Filesystem options (lowerdir=..., index=off...) go to ``data``; x-*,
    comment= and the boot-time options stay in userspace.
    """
    flags, data = 0, []
    for item in options.split(','):
        if not item or item in USERSPACE or item.startswith('x-') or item.startswith('comment='):
            continue
        if item in MS:
            flags = (flags | MS[item][0]) & ~MS[item][1]
        else:
            data.append(item)
    return flags, ','.join(data)


def mount_overlay(target, options, layers, uid):
    """Mount an overlay at the root-owned ``target`` with an fstab line's ``options`` through mount(2), no fork.

    The same checks as every root operation near users' files: the target's
    parent is opened by an O_NOFOLLOW chain whose every directory is root's
    and closed to writes by others, the target itself must be a real
    directory of root's, and mount(2) gets it as ``/proc/self/fd/N``, so no
    name is resolved again. The layer dir (``layers``, holding upper and
    work) must be root's all the way up too, with ``work`` root's and
    ``upper`` a real directory of root or ``uid``.
    """
    parent, name = os.path.split(target.rstrip('/'))
    lfd = sf.open_dir(layers, 'layers of %s' % target)
    try:
        upper, work = sf.entry(lfd, 'upper'), sf.entry(lfd, 'work')
    finally:
        os.close(lfd)
    if upper is None or not stat.S_ISDIR(upper.st_mode) or upper.st_uid not in (0, uid) \
            or work is None or not stat.S_ISDIR(work.st_mode) or work.st_uid != 0:
        raise MountError('mounting %s: the upper or work dir in %s is not a directory of root or its user' % (target, layers))
    pfd = sf.open_dir(parent, 'parent of %s' % target)
    try:
        try:
            fd = os.open(name, sf.DIR_FLAGS, dir_fd=pfd)
        except OSError as exc:
            raise MountError('mounting %s: %s' % (target, exc.strerror))
    finally:
        os.close(pfd)
    try:
        st = os.fstat(fd)
        if st.st_uid != 0 or not stat.S_ISDIR(st.st_mode):
            raise MountError('mounting %s: not a directory of root' % target)
        flags, data = kernel_options(options)
        rc = sf.libc().mount(b'overlay', ('/proc/self/fd/%d' % fd).encode(), b'overlay', flags,
                             data.encode('utf-8', 'surrogateescape'))
        if rc != 0:
            err = ctypes.get_errno()
            raise MountError('mounting %s failed: %s' % (target, os.strerror(err)))
    finally:
        os.close(fd)
