# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""mount(8) and umount(8) calls, through a ``run(argv) -> (rc, out, err)`` callable.

Private to the collection; the API may change without notice.
"""

from __future__ import annotations


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
