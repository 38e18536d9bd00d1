# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which mounts and trees are in use: processes with a cwd, root or open fd in them.

Private to the collection; the API may change without notice.

Every process of every user is looked at, so one user must not be able to
make the scan slow for all: the processes are grouped by their real uid, and
each uid gets its own budget of time (``UID_SECONDS``) and of links looked at
(``UID_MAX_LINKS``: a cwd, a root or an fd each). A uid that exceeds its
budget, or whose processes root may not inspect, is reported as *unknown*
with the cause; the caller decides what that uid could hold. The uids are
scanned fewest fds first (``/proc/<pid>/fd``'s size is the number of open
fds), so a uid with millions of dup'd fds comes last and is cut off by its
count before a single one of its fds is listed. The whole scan also has a
bound (``SCAN_SECONDS``); uids not reached by then are unknown too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import stat
import struct
import time

AT_FDCWD = -100
AT_NO_AUTOMOUNT = 0x800
AT_STATX_DONT_SYNC = 0x4000
STATX_TYPE = 0x1
STATX_INO = 0x100
CAP_SYS_PTRACE = 19
SCAN_SECONDS = 30
UID_SECONDS = 2.0
UID_MAX_LINKS = 100000
_libc = []

# What a check says about one link.
HOLDS, OTHER, GONE = 'holds', 'other', 'gone'


def _statx(path, mask):
    """(mode, st_dev, st_ino) of what ``path`` names, from the kernel's cached attributes.

    ``statx(AT_STATX_DONT_SYNC|AT_NO_AUTOMOUNT)``: a plain stat() would ask the
    filesystem, and a user's FUSE daemon that never answers would then hang
    root; an autofs trigger is not fired. With ``mask`` 0 a FUSE filesystem
    that refuses root (no allow_other) still gives st_dev, from the kernel
    alone. Falls back to os.stat where statx is missing.
    """
    if not _libc:
        _libc.append(ctypes.CDLL(ctypes.util.find_library('c') or None, use_errno=True))
    fn = getattr(_libc[0], 'statx', None)
    if fn is None:
        s = os.stat(path)
        return s.st_mode, s.st_dev, s.st_ino
    buf = ctypes.create_string_buffer(256)
    if fn(AT_FDCWD, path.encode('utf-8', 'surrogateescape'), AT_STATX_DONT_SYNC | AT_NO_AUTOMOUNT, mask, buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    mode = struct.unpack_from('=H', buf.raw, 28)[0]
    ino = struct.unpack_from('=Q', buf.raw, 32)[0]
    major, minor = struct.unpack_from('=II', buf.raw, 136)
    return mode, os.makedev(major, minor), ino


def _dev_ino(path):
    """(st_dev, st_ino) of what ``path`` names (see _statx)."""
    return _statx(path, STATX_INO)[1:]


def _under(path, targets):
    for t in targets:
        if path == t or path.startswith(t.rstrip('/') + '/'):
            return t
    return None


def root_can_trace(proc='/proc'):
    """Whether this process has CAP_SYS_PTRACE (needed to read other users' /proc/<pid>/cwd and fds)."""
    try:
        with open(os.path.join(proc, 'self', 'status')) as f:
            for line in f:
                if line.startswith('CapEff:'):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_PTRACE & 1)
    except (OSError, ValueError, IndexError):
        pass
    return True


def _real_uid(proc, pid):
    """The real uid of ``pid`` (from status: /proc/<pid> itself is root's for a process that made itself non-dumpable)."""
    try:
        with open(os.path.join(proc, pid, 'status')) as f:
            for line in f:
                if line.startswith('Uid:'):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _fd_count(proc, pid):
    """How many fds ``pid`` has open (Linux >= 6.2 reports it as the size of /proc/<pid>/fd), or 0 if unknown."""
    try:
        return os.stat(os.path.join(proc, pid, 'fd')).st_size
    except OSError:
        return 0


class Scan(object):
    """The outcome of a bounded scan of every process's cwd, root and fds.

    ``unknown`` maps a uid to why not all of its links were looked at;
    ``links`` counts the links looked at, ``seconds`` the time taken,
    ``root_denied`` root's own processes that could not be read (in another
    namespace: repl users never run as root), and ``can_trace`` whether root
    has CAP_SYS_PTRACE at all.
    """

    def __init__(self):
        self.unknown = {}
        self.links = 0
        self.seconds = 0.0
        self.root_denied = 0
        self.can_trace = True

    def report(self):
        """What a module returns: the unknown uids (as strings) and their causes."""
        return {'unknown': dict((str(u), c) for u, c in self.unknown.items())}


def processes(proc='/proc'):
    """{uid: [(fd count, pid)]} of every process now, by real uid; None if ``proc`` cannot be listed."""
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return None
    by_uid = {}
    for pid in pids:
        uid = _real_uid(proc, pid)
        if uid is not None:
            by_uid.setdefault(uid, []).append((_fd_count(proc, pid), pid))
    return by_uid


def scan(check, proc='/proc', seconds=SCAN_SECONDS, uid_seconds=UID_SECONDS, uid_links=UID_MAX_LINKS,
         clock=time.monotonic, by_uid=None):
    """Call ``check(uid, pid, link)`` for the cwd, root and every fd link of every process, within the bounds.

    ``check`` returns HOLDS, OTHER or GONE, or raises PermissionError (root may
    not read that process's links) or another OSError (counted as not known).
    Returns a Scan. Per uid: first the cwd and root of all its processes, then
    their fds, processes with the fewest fds first; a uid whose known fd count
    would pass ``uid_links`` stops before listing that process's fds.
    """
    result = Scan()
    result.can_trace = root_can_trace(proc)
    start = clock()
    deadline = start + seconds
    by_uid = processes(proc) if by_uid is None else by_uid
    if by_uid is None:
        result.unknown['all'] = 'cannot list %s' % proc
        return result
    order = sorted(by_uid, key=lambda u: (sum(n for n, dummy in by_uid[u]), u))
    for uid in order:
        now = clock()
        if now > deadline:
            result.unknown[uid] = 'not scanned: the whole scan reached its %s s bound' % seconds
            continue
        _scan_uid(check, proc, uid, sorted(by_uid[uid], key=lambda x: (x[0], int(x[1]))),
                  min(now + uid_seconds, deadline), uid_links, clock, result)
    result.seconds = clock() - start
    return result


def _scan_uid(check, proc, uid, plist, end, uid_links, clock, result):
    links = 0
    problems = []

    def look(pid, link):
        try:
            check(uid, pid, link)
        except PermissionError:
            problems.append('EACCES on pid %s' % pid)
        except OSError as exc:
            problems.append('%s on pid %s' % (errno.errorcode.get(exc.errno, exc.errno), pid))

    cut = None
    for dummy, pid in plist:
        for name in ('cwd', 'root'):
            links += 1
            look(pid, os.path.join(proc, pid, name))
        if clock() > end:
            cut = 'timeout after %d links of uid %s' % (links, uid)
            break
    for nfds, pid in plist if cut is None else ():
        if links + nfds > uid_links:
            cut = 'more than %d links for uid %s (pid %s alone has %d fds)' % (uid_links, uid, pid, nfds)
            break
        fd_dir = os.path.join(proc, pid, 'fd')
        try:
            fds = os.scandir(fd_dir)    # streamed: a cut stops reading the directory too
        except PermissionError:
            problems.append('EACCES on pid %s' % pid)
            continue
        except OSError:
            continue
        with fds:
            for name in _names(fds):
                links += 1
                if links > uid_links:
                    cut = 'more than %d links for uid %s' % (uid_links, uid)
                    break
                if links % 64 == 0 and clock() > end:
                    cut = 'timeout after %d links of uid %s' % (links, uid)
                    break
                look(pid, os.path.join(fd_dir, name))
        if cut is not None:
            break
    result.links += links
    if uid == 0:
        result.root_denied += len(problems)  # root's own processes in another namespace; repl users never run as root
        problems = []
    causes = ([cut] if cut else []) + problems[:1]
    if causes:
        if not result.can_trace and problems:
            causes.append('root lacks CAP_SYS_PTRACE')
        result.unknown[uid] = '; '.join(causes)


def _names(entries):
    """The names of a scandir iterator; a process that exits while its fd dir is read just ends the list."""
    while True:
        try:
            entry = next(entries, None)
        except OSError:
            return
        if entry is None:
            return
        yield entry.name


def find_busy(targets, proc='/proc', **bounds):
    """Return {target: sorted pids} for the targets some process uses (within the scan's bounds, see scan()).

    A process uses a target when its cwd, its root or one of its open files
    lies under it (readlink of the /proc links: the kernel's name of the file,
    no call into its filesystem). Processes that vanish are skipped; a uid
    over its budget may be missing from the answer.
    """
    busy = {}

    def check(uid, pid, link):
        try:
            dest = os.readlink(link)
        except (FileNotFoundError, ProcessLookupError):
            return GONE
        if dest.endswith(' (deleted)'):
            dest = dest[:-len(' (deleted)')]
        hit = _under(dest, targets)
        if hit:
            busy.setdefault(hit, set()).add(int(pid))
            return HOLDS
        return OTHER

    scan(check, proc, **bounds)
    return dict((t, sorted(p)) for t, p in busy.items())


class Held(dict):
    """{(st_dev, st_ino): set of pids} of directories on the store's filesystem that processes hold.

    ``scan`` is the Scan (``unknown`` uids and why, ``can_trace``).
    """

    def __init__(self, *args, **kw):
        dict.__init__(self, *args, **kw)
        self.scan = Scan()

    @property
    def unknown(self):
        return self.scan.unknown


def held_files(proc='/proc', dev=None, **bounds):
    """Return a Held of every directory that a process has as cwd, root or open fd, on filesystem ``dev``.

    statx() of a /proc magic link reaches the open file itself, not a path,
    so a user cannot redirect it, and with AT_STATX_DONT_SYNC it never waits
    on the filesystem. Only directories on ``dev`` (None: any) are kept: a
    /dev/null, a pipe or a dir in a view is passed over. A FUSE filesystem
    that refuses root (EACCES) is told apart from a process root may not
    read by a second statx asking for nothing, which the kernel answers with
    st_dev alone. Vanished processes and files are skipped.
    """
    held = Held()

    def check(uid, pid, link):
        try:
            mode, d, ino = _statx(link, STATX_TYPE | STATX_INO)
        except PermissionError:
            mode, d, ino = _statx(link, 0)  # raises PermissionError again when root may not read the link
            if dev is None or d == dev:
                raise
            return OTHER
        except (FileNotFoundError, ProcessLookupError):
            return GONE
        if not stat.S_ISDIR(mode) or (dev is not None and d != dev):
            return OTHER
        held.setdefault((d, ino), set()).add(int(pid))
        return HOLDS

    held.scan = scan(check, proc, **bounds)
    return held
