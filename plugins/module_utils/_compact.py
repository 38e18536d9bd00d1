# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Upper compaction: drop files from a user's upper that the new lower has byte for byte.

Private to the collection; the API may change without notice.

Runs only while the user's overlay is unmounted (during a switch), since
changing an upper under a live mount is undefined. The upper belongs to the
user, who may change it directly at any moment, so:

- the upper is opened by an fd chain from ``/`` with O_NOFOLLOW on every
  component (a symlink anywhere raises _walk.UnsafePathError, an OSError);
- the walk is _walk's: an explicit stack of dir fds each opened with
  O_NOFOLLOW relative to its parent and checked with fstat, bounded in
  entries, bytes read, depth, entries per dir and time; at a cap it stops
  and what was removed so far stands;
- only regular, non-sparse files are compared, opened with
  O_NOFOLLOW|O_NONBLOCK and checked with fstat; a file is removed only if the
  name still points to the inode that was compared, unchanged.

Whiteouts (character devices), symlinks, directories and files that differ
from the lower are never touched. Nor is anything in or below a directory
that OverlayFS marks opaque (the user removed the lower's directory and made a
new one: the lower's copy is hidden, so the upper's is the only one the user
sees) or redirected (a renamed directory whose lower is another path), nor a
file carrying an overlay metacopy, redirect or whiteout mark; both the
``trusted.overlay.*`` and the ``user.overlay.*`` (userxattr) names count.
"""

from __future__ import annotations

import errno
import os
import stat

from . import _walk

CHUNK = 1024 * 1024
DIR_FLAGS = _walk.DIR_FLAGS
COMPACT_LIMITS = _walk.Limits(max_files=200000, max_bytes=8 << 30, max_depth=64, max_dir_entries=100000, max_seconds=60.0)
_PREFIXES = ('trusted.overlay.', 'user.overlay.')
DIR_MARKS = frozenset(p + n for p in _PREFIXES for n in ('opaque', 'redirect'))
FILE_MARKS = frozenset(p + n for p in _PREFIXES for n in ('metacopy', 'redirect', 'whiteout', 'opaque'))


def overlay_marks(fd, marks):
    """The overlay xattrs among ``marks`` that the open file or dir ``fd`` carries (all of them if they cannot be read)."""
    try:
        names = os.listxattr(fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return []
        return sorted(marks)
    return sorted(n for n in names if n in marks)


def _same_content(walk, upper_fd, name, lst, lower_fd):
    """Whether ``name`` in ``upper_fd`` (lstat ``lst``) is a plain copy of ``name`` in ``lower_fd``, and unchanged."""
    try:
        lfd = os.open(name, _walk.FILE_FLAGS, dir_fd=lower_fd)
    except OSError:
        return False
    ufd = None
    try:
        lower_st = os.fstat(lfd)
        if not stat.S_ISREG(lower_st.st_mode) or lower_st.st_size != lst.st_size:
            return False
        ufd, ust = walk.open_file(upper_fd, name)
        if ufd is None or (ust.st_dev, ust.st_ino, ust.st_size) != (lst.st_dev, lst.st_ino, lst.st_size):
            return False
        if overlay_marks(ufd, FILE_MARKS):
            walk.skipped['overlay_mark'] += 1
            return False
        while True:
            x = walk.read(ufd, CHUNK)
            y = walk.read(lfd, CHUNK)
            if x is None or y is None or x != y:
                return False
            if not x:
                break
        after = os.fstat(ufd)
        now = os.stat(name, dir_fd=upper_fd, follow_symlinks=False)
        return (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == (ust.st_size, ust.st_mtime_ns, ust.st_ctime_ns) \
            and (now.st_dev, now.st_ino) == (ust.st_dev, ust.st_ino)
    except OSError:
        return False
    finally:
        os.close(lfd)
        if ufd is not None:
            os.close(ufd)


def compact(upper, lower, check_mode=False, limits=None, report=None):
    """Remove files of ``upper`` identical to the same path in ``lower``; return (files, bytes).

    ``lower`` is root's snapshot tree. ``limits`` (a _walk.Limits) bounds the
    walk; ``report`` (a dict), if given, receives the walk's counters and
    ``truncated`` (the cap that stopped it, or None) and ``opaque`` (dirs left
    alone because OverlayFS marks them opaque or redirected).
    """
    walk = _walk.Walk(limits or COMPACT_LIMITS)
    removed = [0, 0]
    skipped_dirs = []
    top = _walk.open_dir(upper)
    lower_top = None
    try:
        if overlay_marks(top, DIR_MARKS):
            skipped_dirs.append('.')
        else:
            try:
                lower_top = os.open(lower, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                lower_top = None
        if lower_top is not None:
            _compact_tree(walk, top, lower_top, check_mode, removed, skipped_dirs)
    finally:
        os.close(top)
        if lower_top is not None:
            os.close(lower_top)
    if report is not None:
        report.update(walk.counters())
        report['opaque'] = len(skipped_dirs)
    return removed[0], removed[1]


def _compact_tree(walk, top, lower_top, check_mode, removed, skipped_dirs):
    def enter(lower_fd, rel, fd):
        if overlay_marks(fd, DIR_MARKS):
            skipped_dirs.append(rel)
            return _walk.SKIP
        try:
            return os.open(rel.rsplit('/', 1)[-1], DIR_FLAGS, dir_fd=lower_fd)
        except OSError:
            return _walk.SKIP       # the lower has no such dir: nothing below can match

    for lower_fd, dir_fd, rel, name, lst in walk.tree(top, enter, lower_top, os.close):
        if _walk.is_sparse(lst):
            walk.skipped['sparse'] += 1
            continue
        if _same_content(walk, dir_fd, name, lst, lower_fd):
            if not check_mode:
                try:
                    os.unlink(name, dir_fd=dir_fd)
                except OSError:
                    walk.skipped['unlink_failed'] += 1
                    continue
            removed[0] += 1
            removed[1] += lst.st_size
