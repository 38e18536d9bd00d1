# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bounded walks of trees that repl users control (their overlay uppers).

Private to the collection; the API may change without notice.

A repl user may swap any path under its scratch dir for a symlink at any
moment, and may plant FIFOs, sparse files of any apparent size, directories
thousands of levels deep or millions of entries wide. So root never names such
a path:

- ``open_dir`` opens a start dir one component at a time, from ``/`` or from a
  dir fd the caller trusts, each with O_NOFOLLOW|O_DIRECTORY; a symlink or a
  non-directory anywhere on the way is refused with ``UnsafePathError``.
- ``Walk.tree`` walks with an explicit stack of dir fds (no recursion), opens
  each subdir with O_NOFOLLOW relative to its parent and checks the opened fd
  with fstat; it never follows a symlink and never leaves the filesystem of
  the start dir.
- ``Walk.open_file`` opens with O_NOFOLLOW|O_NONBLOCK and checks the opened fd
  with fstat: regular files only, sparse files are skipped.
- Every read goes through the walk, which counts it (``pread``, ``lines``);
  ``zip_member`` reads the end of an archive, its central directory and the
  start of one member, never the whole file.

Each walk has caps (``Limits``): entries seen, bytes read, depth, entries per
directory and a monotonic deadline. When one is reached the walk stops and
``truncated`` names the cap; nothing raises. The memory a walk holds is one
dir fd and one directory stream per level (at most ``max_depth``) plus what
its caller keeps.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import time
import zlib
from collections import Counter

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
CAPS = ('max_files', 'max_bytes', 'max_depth', 'max_dir_entries', 'max_seconds')
SKIP = object()  # returned by an ``enter`` callback: do not descend into this dir


class UnsafePathError(OSError):
    """A path component that root must not follow: a symlink, or not a directory."""

    def __str__(self):
        return str(self.strerror)


class Limits(object):
    """Caps of one walk.

    max_files: entries of any type seen; max_bytes: bytes read from files;
    max_depth: directory levels below the start dir; max_dir_entries: entries
    of one directory; max_seconds: time from the walk's start (monotonic).
    """

    __slots__ = CAPS

    def __init__(self, max_files=200000, max_bytes=128 << 20, max_depth=64, max_dir_entries=100000, max_seconds=10.0):
        values = dict(max_files=max_files, max_bytes=max_bytes, max_depth=max_depth, max_dir_entries=max_dir_entries,
                      max_seconds=max_seconds)
        for key in CAPS:
            value = values[key]
            number = (int, float) if key == 'max_seconds' else int
            if not isinstance(value, number) or isinstance(value, bool) or value <= 0:
                raise ValueError('%s %r is not a positive %s' % (key, value, 'number' if key == 'max_seconds' else 'integer'))
            setattr(self, key, value)

    def replace(self, **changes):
        values = dict((key, getattr(self, key)) for key in CAPS)
        unknown = sorted(set(changes) - set(CAPS))
        if unknown:
            raise ValueError('unknown limit %s (known: %s)' % (', '.join(unknown), ', '.join(CAPS)))
        values.update(changes)
        return Limits(**values)

    def as_dict(self):
        return dict((key, getattr(self, key)) for key in CAPS)


def is_sparse(st):
    """Whether a file has fewer blocks allocated than its apparent size (holes: reading it would cost nothing to make)."""
    return st.st_blocks * 512 < st.st_size


def _what(dir_fd, name):
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return 'not a directory'
    return 'a symlink' if stat.S_ISLNK(st.st_mode) else 'not a directory'


def open_dir(path, dir_fd=None):
    """A new fd of the directory ``path``, opened one component at a time with O_NOFOLLOW|O_DIRECTORY.

    Without ``dir_fd`` the chain starts at ``/`` (a relative path is taken from
    the current dir's absolute path); with it, ``path`` is relative to that fd,
    which the caller trusts. A symlink or a non-directory on the way raises
    UnsafePathError naming the component; ``..`` is refused; a missing
    component raises FileNotFoundError.
    """
    if dir_fd is None:
        if not path.startswith('/'):
            path = os.path.join(os.getcwd(), path)
        fd = os.open('/', DIR_FLAGS)
    else:
        fd = os.open('.', DIR_FLAGS, dir_fd=dir_fd)
    done = '' if dir_fd is None else '.'
    try:
        for name in path.split('/'):
            if name in ('', '.'):
                continue
            current = done + '/' + name
            if name == '..':
                raise UnsafePathError(errno.EINVAL, '%s: a ".." component is refused' % path)
            try:
                nfd = os.open(name, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    shown = current[2:] if dir_fd is not None else current
                    raise UnsafePathError(errno.ELOOP, '%s is %s; refusing to follow it' % (shown, _what(fd, name)))
                raise
            os.close(fd)
            fd, done = nfd, current
        result, fd = fd, None
        return result
    finally:
        if fd is not None:
            os.close(fd)


class _Frame(object):
    __slots__ = ('fd', 'owned', 'rel', 'depth', 'ctx', 'it', 'seen')

    def __init__(self, fd, owned, rel, depth, ctx):
        self.fd, self.owned, self.rel, self.depth, self.ctx = fd, owned, rel, depth, ctx
        self.it = None
        self.seen = 0


class Walk(object):
    """One bounded walk (or several, sharing one budget); its counters say what it cost."""

    def __init__(self, limits=None, clock=time.monotonic):
        self.limits = limits or Limits()
        self._clock = clock
        self._deadline = clock() + self.limits.max_seconds
        self.entries = 0        # entries seen, of any type
        self.dirs = 0           # directories entered
        self.depth = 0          # deepest level entered
        self.files_opened = 0
        self.bytes_read = 0
        self.skipped = Counter()
        self.truncated = None   # the cap that stopped the walk

    def stop(self, reason):
        if self.truncated is None:
            self.truncated = reason

    def expired(self):
        """Whether the walk must stop (a cap was reached, or the deadline passed)."""
        if self.truncated is None and self._clock() >= self._deadline:
            self.stop('max_seconds')
        return self.truncated is not None

    def counters(self):
        return {'entries': self.entries, 'dirs': self.dirs, 'depth': self.depth, 'files_opened': self.files_opened,
                'bytes_read': self.bytes_read, 'skipped': dict(sorted(self.skipped.items())), 'truncated': self.truncated}

    # ------------------------------------------------------------ the walk

    def tree(self, top_fd, enter=None, ctx=None, leave=None):
        """Yield ``(ctx, dir_fd, rel, name, lstat)`` for each regular file below the dir ``top_fd``.

        ``dir_fd`` is the open parent dir, valid until the next item is asked
        for; ``rel`` the path below the start dir. Symlinks, FIFOs, devices and
        sockets are counted in ``skipped`` and never yielded; directories on
        another filesystem are not entered. ``enter(ctx, rel, fd)`` is called
        with each subdir's fd (opened with O_NOFOLLOW and checked with fstat)
        and returns the subdir's ctx, or SKIP to leave it out;
        ``leave(ctx)`` is called for every ctx ``enter`` returned. ``top_fd``
        stays open. The walk stops at the first cap reached (``truncated``).
        """
        lim = self.limits
        dev = os.fstat(top_fd).st_dev
        stack = [_Frame(top_fd, False, '', 0, ctx)]
        try:
            stack[0].it = os.scandir(top_fd)
            while stack and self.truncated is None:
                frame = stack[-1]
                try:
                    entry = next(frame.it, None)
                except OSError:
                    self.skipped['unreadable_dir'] += 1
                    entry = None
                if entry is None:
                    stack.pop()
                    self._close(frame, leave)
                    continue
                frame.seen += 1
                self.entries += 1
                if frame.seen > lim.max_dir_entries:
                    self.stop('max_dir_entries')
                    break
                if self.entries > lim.max_files:
                    self.stop('max_files')
                    break
                if self.expired():
                    break
                name = entry.name
                rel = frame.rel + '/' + name if frame.rel else name
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    self.skipped['vanished'] += 1
                    continue
                if stat.S_ISREG(st.st_mode):
                    yield frame.ctx, frame.fd, rel, name, st
                elif stat.S_ISDIR(st.st_mode):
                    child = self._subdir(frame, name, rel, st, dev, enter, leave)
                    if child is not None:
                        stack.append(child)
                else:
                    self.skipped['symlink' if stat.S_ISLNK(st.st_mode) else 'special'] += 1
        finally:
            while stack:
                self._close(stack.pop(), leave)

    def _subdir(self, frame, name, rel, st, dev, enter, leave):
        if st.st_dev != dev:
            self.skipped['other_fs'] += 1
            return None
        if frame.depth + 1 > self.limits.max_depth:
            self.stop('max_depth')
            return None
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=frame.fd)
        except OSError:
            self.skipped['unopenable'] += 1
            return None
        child = _Frame(fd, True, rel, frame.depth + 1, None)
        try:
            fst = os.fstat(fd)
            if not stat.S_ISDIR(fst.st_mode) or fst.st_dev != dev:
                self.skipped['other_fs' if stat.S_ISDIR(fst.st_mode) else 'unopenable'] += 1
                os.close(fd)
                return None
            ctx = enter(frame.ctx, rel, fd) if enter is not None else None
        except BaseException:
            os.close(fd)
            raise
        if ctx is SKIP:
            self.skipped['pruned'] += 1
            os.close(fd)
            return None
        child.ctx = ctx
        try:
            child.it = os.scandir(fd)
        except OSError:
            self.skipped['unreadable_dir'] += 1
            self._close(child, leave)
            return None
        self.dirs += 1
        self.depth = max(self.depth, child.depth)
        return child

    @staticmethod
    def _close(frame, leave):
        if frame.it is not None:
            frame.it.close()
        if frame.owned:
            os.close(frame.fd)
            frame.owned = False
            if leave is not None:
                leave(frame.ctx)

    # ------------------------------------------------------------- files

    def open_file(self, dir_fd, name):
        """``(fd, fstat)`` of the regular, non-sparse file ``name`` in ``dir_fd``, else ``(None, None)``.

        Opened with O_NOFOLLOW|O_NONBLOCK, so a symlink is not followed and a
        FIFO does not block; the type is checked on the opened fd.
        """
        try:
            fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
        except OSError:
            self.skipped['unopenable'] += 1
            return None, None
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            self.skipped['unopenable'] += 1
            return None, None
        if not stat.S_ISREG(st.st_mode) or is_sparse(st):
            os.close(fd)
            self.skipped['sparse' if stat.S_ISREG(st.st_mode) else 'special'] += 1
            return None, None
        self.files_opened += 1
        return fd, st

    def _allowed(self, size):
        """How many of ``size`` bytes may be read now (0: the walk must stop)."""
        if self.expired():
            return 0
        n = min(size, self.limits.max_bytes - self.bytes_read)
        if n <= 0:
            self.stop('max_bytes')
        return n

    def _count(self, data, allowed, size):
        self.bytes_read += len(data)
        if allowed < size and len(data) == allowed:
            self.stop('max_bytes')      # the budget cut this read short
        return data

    def pread(self, fd, size, offset):
        """Up to ``size`` bytes of ``fd`` at ``offset``, counted; None once the walk must stop."""
        if size <= 0:
            return b''
        n = self._allowed(size)
        return self._count(os.pread(fd, n, offset), n, size) if n > 0 else None

    def read(self, fd, size):
        """Up to ``size`` bytes of ``fd`` from its offset, counted; None once the walk must stop."""
        if size <= 0:
            return b''
        n = self._allowed(size)
        return self._count(os.read(fd, n), n, size) if n > 0 else None

    def lines(self, fd, size, max_total, max_line, chunk=64 << 10):
        """Yield the lines (without newline) of the file ``fd`` of ``size`` bytes, reading at most ``max_total``.

        Lines longer than ``max_line`` are dropped (``skipped['long_line']``);
        a file longer than ``max_total`` is read only that far, its cut last
        line dropped (``skipped['capped_file']``). Memory: one chunk and one line.
        """
        total, parts, held, dropping = 0, [], 0, False
        capped = size > max_total
        while total < max_total:
            data = self.read(fd, min(chunk, max_total - total))
            if not data:
                break
            total += len(data)
            start = 0
            while True:
                nl = data.find(b'\n', start)
                if nl < 0:
                    break
                piece = data[start:nl]
                start = nl + 1
                if dropping:
                    dropping = False
                elif held + len(piece) <= max_line:
                    parts.append(piece)
                    yield b''.join(parts)
                else:
                    self.skipped['long_line'] += 1
                parts, held = [], 0
            rest = data[start:]
            if dropping or not rest:
                continue
            if held + len(rest) > max_line:
                self.skipped['long_line'] += 1
                dropping, parts, held = True, [], 0
            else:
                parts.append(rest)
                held += len(rest)
        if capped:
            self.skipped['capped_file'] += 1
        elif parts and not dropping and self.truncated is None:
            yield b''.join(parts)


# ----------------------------------------------------------- zip archives

_EOCD = struct.Struct('<4s4H2LH')
_EOCD64_LOCATOR = struct.Struct('<4sLQL')
_EOCD64 = struct.Struct('<4sQ2H2L4Q')
_CENTRAL = struct.Struct('<4s6H3L5H2L')
_LOCAL = struct.Struct('<4s5H3L2H')
_TAIL_WINDOWS = (8 << 10, (1 << 16) + _EOCD.size + (8 << 10))
_MAX_END_CANDIDATES = 16


def _slice_or_read(pread, tail, tail_start, offset, size):
    if offset >= tail_start and offset + size <= tail_start + len(tail):
        return tail[offset - tail_start:offset - tail_start + size]
    return pread(offset, size)


def _end_record(pread, tail, tail_start, pos):
    """(central dir start, its size, archive start) from the end record at ``pos`` in ``tail``, or None."""
    if pos + _EOCD.size > len(tail):
        return None
    count, cd_size, cd_offset = _EOCD.unpack_from(tail, pos)[4:7]
    record = tail_start + pos
    if 0xFFFFFFFF in (cd_size, cd_offset) or count == 0xFFFF:
        if record < _EOCD64_LOCATOR.size + _EOCD64.size:
            return None
        locator = _slice_or_read(pread, tail, tail_start, record - _EOCD64_LOCATOR.size, _EOCD64_LOCATOR.size)
        if not locator or len(locator) != _EOCD64_LOCATOR.size or locator[:4] != b'PK\x06\x07':
            return None
        record -= _EOCD64_LOCATOR.size + _EOCD64.size
        data = _slice_or_read(pread, tail, tail_start, record, _EOCD64.size)
        if not data or len(data) != _EOCD64.size or data[:4] != b'PK\x06\x06':
            return None
        cd_size, cd_offset = _EOCD64.unpack(data)[8:10]
    cd_start = record - cd_size
    base = cd_start - cd_offset
    if cd_start < 0 or base < 0:
        return None
    return cd_start, cd_size, base


def _zip64_extra(extra):
    """The 64-bit values of a central entry's zip64 extra field, in order (those whose 32-bit field is 0xFFFFFFFF)."""
    i = 0
    while i + 4 <= len(extra):
        tag, length = struct.unpack_from('<HH', extra, i)
        if tag == 1:
            return list(struct.unpack_from('<%dQ' % (min(length, len(extra) - i - 4) // 8), extra, i + 4))
        i += 4 + length
    return None


def _central_entry(cd, match, needle):
    """(method, compressed size, local header offset) of the first central entry ``match`` accepts, or None."""
    if needle and needle not in cd:
        return None
    i = 0
    while i + _CENTRAL.size <= len(cd):
        fields = _CENTRAL.unpack_from(cd, i)
        if fields[0] != b'PK\x01\x02':
            return None
        flags, method, csize, usize, nlen, elen, clen, offset = fields[3], fields[4], fields[8], fields[9], \
            fields[10], fields[11], fields[12], fields[16]
        name = cd[i + _CENTRAL.size:i + _CENTRAL.size + nlen]
        if match(name):
            if flags & 1:
                return None
            if 0xFFFFFFFF in (csize, usize, offset):
                values = _zip64_extra(cd[i + _CENTRAL.size + nlen:i + _CENTRAL.size + nlen + elen])
                if values is None:
                    return None
                if usize == 0xFFFFFFFF and values:
                    values.pop(0)
                if csize == 0xFFFFFFFF:
                    if not values:
                        return None
                    csize = values.pop(0)
                if offset == 0xFFFFFFFF:
                    if not values:
                        return None
                    offset = values.pop(0)
            return method, csize, offset
        i += _CENTRAL.size + nlen + elen + clen
    return None


def zip_member(pread, size, match, needle=None, max_cd=8 << 20, max_read=16 << 10, max_out=64 << 10):
    """The first ``max_out`` bytes of the first member of a zip archive whose name ``match`` accepts, or None.

    ``pread(offset, n)`` returns up to ``n`` bytes of the file (``size`` bytes)
    at ``offset``, or None when nothing more may be read. Only the end of the
    file (for the end-of-central-directory record, a few KiB first, then the
    64 KiB a comment may take), the central directory (at most ``max_cd``
    bytes) and the first ``max_read`` compressed bytes of the member are read.
    The archive may be embedded in other data (pip's older cache entries wrap
    the body in a msgpack record); ZIP64 end records are understood.
    ``needle`` (bytes) lets a central directory without it be rejected at once.
    """
    found = None
    tail, tail_start = b'', size
    for window in _TAIL_WINDOWS:
        window = min(window, size)
        if window <= len(tail):
            break
        tail_start = size - window
        tail = pread(tail_start, window)
        if tail is None or len(tail) != window:
            return None
        pos, tries = len(tail), 0
        while found is None and tries < _MAX_END_CANDIDATES:
            pos = tail.rfind(b'PK\x05\x06', 0, pos)
            if pos < 0:
                break
            tries += 1
            found = _end_record(pread, tail, tail_start, pos)
        if found is not None:
            break
    if found is None:
        return None
    cd_start, cd_size, base = found
    if cd_size > max_cd:
        return None
    cd = _slice_or_read(pread, tail, tail_start, cd_start, cd_size)
    if cd is None or len(cd) != cd_size:
        return None
    entry = _central_entry(cd, match, needle)
    if entry is None:
        return None
    method, csize, offset = entry
    local = pread(base + offset, _LOCAL.size)
    if not local or len(local) != _LOCAL.size or local[:4] != b'PK\x03\x04':
        return None
    nlen, elen = _LOCAL.unpack(local)[9:11]
    raw = pread(base + offset + _LOCAL.size + nlen + elen, min(csize, max_read))
    if raw is None:
        return None
    if method == 0:
        return raw[:max_out]
    if method == 8:
        try:
            return zlib.decompressobj(-15).decompress(raw, max_out)
        except zlib.error:
            return None
    return None
