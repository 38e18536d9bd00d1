# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which mounts are in use: processes with a cwd, root or open file under them.

Private to the collection; the API may change without notice.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
import time

AT_FDCWD = -100
AT_STATX_DONT_SYNC = 0x4000
STATX_INO = 0x100
SCAN_SECONDS = 30
_libc = []


def _dev_ino(path):
    """(st_dev, st_ino) of what ``path`` names, from the kernel's cached attributes (statx AT_STATX_DONT_SYNC).

    A plain stat() would ask the filesystem; a user's FUSE daemon that never
    answers would then hang root. Falls back to lstat-free os.stat where
    statx is missing.
    """
    if not _libc:
        _libc.append(ctypes.CDLL(ctypes.util.find_library('c') or None, use_errno=True))
    fn = getattr(_libc[0], 'statx', None)
    if fn is None:
        s = os.stat(path)
        return s.st_dev, s.st_ino
    buf = ctypes.create_string_buffer(256)
    if fn(AT_FDCWD, path.encode('utf-8', 'surrogateescape'), AT_STATX_DONT_SYNC, STATX_INO, buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    ino = struct.unpack_from('=Q', buf.raw, 32)[0]
    major, minor = struct.unpack_from('=II', buf.raw, 136)
    return os.makedev(major, minor), ino


def _under(path, targets):
    for t in targets:
        if path == t or path.startswith(t.rstrip('/') + '/'):
            return t
    return None


def find_busy(targets, proc='/proc'):
    """Return {target: sorted pids} for the targets some process uses.

    A process uses a target when its cwd, its root or one of its open files
    lies under it. Processes that vanish while they are scanned are skipped.
    """
    busy = {}
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return busy
    for pid in pids:
        for link in _links(proc, pid):
            try:
                dest = os.readlink(link)
            except OSError:
                continue
            if dest.endswith(' (deleted)'):
                dest = dest[:-len(' (deleted)')]
            hit = _under(dest, targets)
            if hit:
                busy.setdefault(hit, set()).add(int(pid))
    return dict((t, sorted(p)) for t, p in busy.items())


def _links(proc, pid):
    links = [os.path.join(proc, pid, 'cwd'), os.path.join(proc, pid, 'root')]
    fd_dir = os.path.join(proc, pid, 'fd')
    try:
        links += [os.path.join(fd_dir, fd) for fd in os.listdir(fd_dir)]
    except OSError:
        pass
    return links


class Held(dict):
    """{(st_dev, st_ino): set of pids}; ``denied`` lists the pids whose links could not be read.

    Root needs CAP_SYS_PTRACE to read another user's /proc/<pid>/cwd (a
    container often lacks it). Whoever asks "does anything still use X?"
    must then answer "maybe". Root's own processes that cannot be read (in
    another namespace) are not counted: repl users never run as root.
    """

    denied = ()


def _owner(proc, pid):
    try:
        return os.stat(os.path.join(proc, pid)).st_uid
    except OSError:
        return 0


def held_files(proc='/proc', seconds=SCAN_SECONDS):
    """Return a Held of every cwd, root and open file of every process.

    statx() of a /proc magic link reaches the open file itself, not a path,
    so a user cannot redirect it, and with AT_STATX_DONT_SYNC it never waits
    on the filesystem. Vanished processes and files are skipped. A scan that
    takes longer than ``seconds`` stops and counts as not complete (denied).
    """
    held = Held()
    denied = set()
    deadline = time.monotonic() + seconds
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        held.denied = ['all']
        return held
    for pid in pids:
        if time.monotonic() > deadline:
            denied.add('timeout')
            break
        for link in _links(proc, pid):
            try:
                dev, ino = _dev_ino(link)
            except PermissionError:
                if _owner(proc, pid) != 0:  # root's own processes are not repl users'
                    denied.add(int(pid))
                continue
            except OSError:
                continue
            held.setdefault((dev, ino), set()).add(int(pid))
    held.denied = sorted(denied, key=str)
    return held
