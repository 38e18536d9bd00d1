# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which mounts are in use: processes with a cwd, root or open file under them.

Private to the collection; the API may change without notice.
"""

from __future__ import annotations

import os


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


def held_files(proc='/proc'):
    """Return a Held of every cwd, root and open file of every process.

    stat() of a /proc magic link reaches the open file itself, not a path, so
    a user cannot redirect it. Vanished processes and files are skipped.
    """
    held = Held()
    denied = set()
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        held.denied = ['all']
        return held
    for pid in pids:
        for link in _links(proc, pid):
            try:
                s = os.stat(link)
            except PermissionError:
                if _owner(proc, pid) != 0:  # root's own processes are not repl users'
                    denied.add(int(pid))
                continue
            except OSError:
                continue
            held.setdefault((s.st_dev, s.st_ino), set()).add(int(pid))
    held.denied = sorted(denied)
    return held


def devices_in_use(held):
    """The set of st_dev values in ``held`` (from held_files)."""
    return set(dev for dev, ino in held)
