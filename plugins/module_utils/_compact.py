# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Upper compaction: drop files from a user's upper that the new lower has byte for byte.

Private to the collection; the API may change without notice.

Runs only while the user's overlay is unmounted (during a switch), since
changing an upper under a live mount is undefined. The upper belongs to the
user, so the walk never follows a symlink: every directory is opened with
O_NOFOLLOW relative to its parent, and only regular files are compared.
Whiteouts (character devices), symlinks, directories and files that differ
from the lower are never touched.
"""

from __future__ import annotations

import os
import stat

CHUNK = 1024 * 1024
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _same_content(upper_fd, name, lower_path, size):
    try:
        lst = os.lstat(lower_path)
    except OSError:
        return False
    if not stat.S_ISREG(lst.st_mode) or lst.st_size != size:
        return False
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=upper_fd)
    try:
        with os.fdopen(fd, 'rb') as a, open(lower_path, 'rb') as b:
            fd = None
            while True:
                x, y = a.read(CHUNK), b.read(CHUNK)
                if x != y:
                    return False
                if not x:
                    return True
    finally:
        if fd is not None:
            os.close(fd)


def compact(upper, lower, check_mode=False):
    """Remove files of ``upper`` identical to the same path in ``lower``; return (files, bytes)."""
    removed = [0, 0]

    def walk(dir_fd, lower_dir):
        for name in sorted(os.listdir(dir_fd)):
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            lower_path = os.path.join(lower_dir, name)
            if stat.S_ISDIR(st.st_mode):
                if os.path.isdir(lower_path) and not os.path.islink(lower_path):
                    child = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
                    try:
                        walk(child, lower_path)
                    finally:
                        os.close(child)
            elif stat.S_ISREG(st.st_mode) and _same_content(dir_fd, name, lower_path, st.st_size):
                if not check_mode:
                    os.unlink(name, dir_fd=dir_fd)
                removed[0] += 1
                removed[1] += st.st_size

    top = os.open(upper, DIR_FLAGS)
    try:
        walk(top, lower)
    finally:
        os.close(top)
    return removed[0], removed[1]
