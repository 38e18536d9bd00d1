# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The content-addressed object store, checkouts and atomic activation.

Private to the collection; the API may change without notice.

Layout of a store directory (the same on a builder, which serves it over
HTTP, and on a repl host, where it is root-only)::

    objects/ab/cdef...      one file per sha256, mode 0644
    snapshots/<id>.json     manifests (builder) / manifests (host)
    refs/latest             id of the newest published snapshot (builder)
    trees/<id>/             hardlink checkouts, never changed once renamed in (host)
    current -> trees/<id>   the active snapshot; switched by rename(2) (host)
"""

from __future__ import annotations

import concurrent.futures
import errno
import hashlib
import os
import queue
import shutil
import socket
import tempfile
import threading
import time

from . import _faults
from ._manifest import CHUNK, DIR_MODE, FILE_MODE, ManifestError, check_snapshot_id, load_manifest


# Seconds within which one download (request, headers and whole body) must end.
DEFAULT_DEADLINE = 900
# Largest piece handed over by one read of a response.
READ_SIZE = 64 * 1024


class StoreError(RuntimeError):
    """A store operation that failed; the message names the object or URL."""


class DeadlineError(StoreError):
    """A download that did not end within its deadline."""


class Download(object):
    """One GET through ``opener(url)`` that must end within ``deadline`` seconds, whatever the server does.

    ``opener(url)`` and the reads of its response run in a daemon thread that
    hands the body over in pieces; the caller waits for each piece only until
    the deadline, so a server that drips the status line, the headers or the
    body (each byte within the per-read timeout) cannot hold the caller, nor
    the store lock it holds. The thread alone owns the response and always
    closes it before it reports the end of the body or an error; when the
    caller leaves early, the thread stops at its next read and leaving waits
    for that (at most until the deadline). The thread lowers the socket's
    timeout to what is left of the deadline, so a blocked read ends by then
    too. A thread stuck in ``opener`` itself (before there is a response)
    ends when the server closes the connection or the per-read timeout
    expires; being a daemon, it never keeps the process alive. Use it as a
    context manager::

        with Download(opener, url, 30) as dl:
            for chunk in dl.chunks():
                ...
    """

    def __init__(self, opener, url, deadline):
        self.opener, self.url, self.deadline = opener, url, deadline
        self.at = time.monotonic() + deadline
        self.received = 0
        self.clamped = False  # set by the thread before it hands over an error (the queue orders the two)
        self._queue = queue.Queue(maxsize=16)
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name='pkgcache-download', daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        """Stop the thread and wait (at most until the deadline) until it has closed the response."""
        self._cancel.set()
        try:
            while True:
                self._queue.get_nowait()  # unblock a thread waiting to hand over a piece
        except queue.Empty:
            pass
        self._thread.join(max(0, self.at - time.monotonic()))
        return False

    def chunks(self):
        """Yield the pieces of the body; raise DeadlineError when the deadline passes, or what the request raised."""
        while True:
            remaining = self.at - time.monotonic()
            try:
                if remaining <= 0:
                    raise queue.Empty()
                kind, value = self._queue.get(timeout=remaining)
            except queue.Empty:
                self._cancel.set()
                raise DeadlineError('%s did not end within the %d s deadline (%d bytes received)'
                                    % (self.url, self.deadline, self.received))
            if kind == 'error':
                if isinstance(value, TimeoutError) and self.clamped:
                    # The socket's timeout was what was left of the deadline: the deadline passed.
                    raise DeadlineError('%s did not end within the %d s deadline (%d bytes received)'
                                        % (self.url, self.deadline, self.received))
                raise value
            if not value:
                return
            self.received += len(value)
            yield value

    def _run(self):
        end = ('data', b'')
        try:
            resp = self.opener(self.url)
            try:
                read = getattr(resp, 'read1', None) or resp.read
                while not self._cancel.is_set():
                    self.clamped = _clamp_timeout(resp, self.at - time.monotonic()) or self.clamped
                    chunk = read(READ_SIZE)
                    if not chunk or not self._put(('data', chunk)):
                        break
            finally:
                close = getattr(resp, 'close', None)
                if close is not None:
                    close()
        except Exception as exc:  # handed over to the caller, which raises it
            close = getattr(exc, 'close', None)  # an HTTPError is a response too
            if callable(close):
                try:
                    close()
                except Exception:
                    pass
            end = ('error', exc)
        # Only now, with the response closed, does the caller learn that the download ended.
        self._put(end)

    def _put(self, item):
        while not self._cancel.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False


def _socket_of(resp):
    """The socket under an http.client response (as urllib and open_url return, gzip-decoded or not), or None."""
    fp = getattr(resp, 'fp', None)
    for fp in (fp, getattr(fp, '_io', None), getattr(fp, 'fileobj', None)):
        sock = getattr(getattr(fp, 'raw', None), '_sock', None)
        if isinstance(sock, socket.socket):
            return sock
    return None


def _clamp_timeout(resp, remaining):
    """Make a blocked read of ``resp`` give up by the deadline (best effort: when its socket can be found).

    Returns True when the socket's timeout is now what is left of the deadline.
    """
    sock = _socket_of(resp)
    if sock is None:
        return False
    try:
        current = sock.gettimeout()
        if current is None or current > remaining:
            sock.settimeout(max(remaining, 0.01))
            return True
    except OSError:
        pass
    return False


def object_rel(digest):
    return 'objects/%s/%s' % (digest[:2], digest[2:])


def object_path(store, digest):
    return os.path.join(store, 'objects', digest[:2], digest[2:])


def manifest_path(store, snap_id):
    return os.path.join(store, 'snapshots', check_snapshot_id(snap_id) + '.json')


def read_manifest(store, snap_id, max_object_size=None, max_snapshot_size=None):
    """The one reader of a manifest kept in a store: (its bytes, the validated manifest).

    Raises OSError when it cannot be read and ManifestError when it is not a
    valid manifest of ``snap_id`` (format, entries, id).
    """
    with open(manifest_path(store, snap_id), 'rb') as f:
        data = f.read()
    return data, load_manifest(data, snap_id, max_object_size, max_snapshot_size)


def read_optional(path):
    """The bytes of a small store file, or None when it cannot be read (absent, say)."""
    try:
        with open(path, 'rb') as f:
            return f.read()
    except OSError:
        return None


def read_latest(store):
    """The snapshot id a builder's ``refs/latest`` names, or None (no such file, or not an id)."""
    try:
        with open(os.path.join(store, 'refs', 'latest'), 'rb') as f:
            return check_snapshot_id(f.read(4096).decode('ascii', 'replace').strip())
    except (OSError, ManifestError):
        return None


def tree_path(store, snap_id):
    return os.path.join(store, 'trees', check_snapshot_id(snap_id))


def makedirs(path, mode=0o755):
    os.makedirs(path, mode=mode, exist_ok=True)


def _tmp_in(directory, prefix):
    makedirs(directory)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix)
    return fd, tmp


def ingest_file(store, src, digest):
    """Copy ``src`` into the store as object ``digest``; return True if it was new.

    The copy is re-hashed before it is renamed into place, so a file that
    changed since it was scanned never enters the store under a wrong name.
    """
    dest = object_path(store, digest)
    if os.path.exists(dest):
        return False
    fd, tmp = _tmp_in(os.path.dirname(dest), '.ingest-')
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, 'wb') as out, open(src, 'rb') as inp:
            while True:
                chunk = inp.read(CHUNK)
                if not chunk:
                    break
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != digest:
            raise StoreError('%s changed while it was being stored (sha256 %s, expected %s)' % (src, h.hexdigest(), digest))
        os.chmod(tmp, FILE_MODE)
        os.rename(tmp, dest)
        tmp = None
        return True
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes_atomic(path, data, mode=0o644):
    """Write ``data`` to ``path`` through a temp file in the same directory and rename(2)."""
    fd, tmp = _tmp_in(os.path.dirname(path), '.tmp-')
    try:
        with os.fdopen(fd, 'wb') as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
        tmp = None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def iter_objects(store):
    """Yield (digest, path, lstat) for every object file of the store, in digest order.

    Only the two-hex-digit fan-out dirs are read (not objects/incoming), and
    dot-files (temp files of an ingest in progress) are skipped.
    """
    objdir = os.path.join(store, 'objects')
    subs = sorted(os.listdir(objdir)) if os.path.isdir(objdir) else []
    for sub in subs:
        if len(sub) != 2:
            continue
        for name in sorted(os.listdir(os.path.join(objdir, sub))):
            if not name.startswith('.'):
                path = os.path.join(objdir, sub, name)
                yield sub + name, path, os.lstat(path)


def missing_objects(store, entries):
    """Return {sha256: size} of the file objects of ``entries`` absent from the store."""
    missing = {}
    for e in entries:
        if e['type'] == 'file' and e['sha256'] not in missing and not os.path.exists(object_path(store, e['sha256'])):
            missing[e['sha256']] = e['size']
    return missing


def fetch_object(store, base_url, digest, size, opener, deadline=None):
    """Download one object, verify its size and sha256, then rename it into the store.

    ``opener(url)`` returns a file-like response, which is always closed.
    The whole download must end within ``deadline`` seconds (default
    DEFAULT_DEADLINE). Returns the bytes received. Raises StoreError
    (DeadlineError for a missed deadline) naming the object and URL; nothing
    partial is left behind.
    """
    url = base_url.rstrip('/') + '/' + object_rel(digest)
    dest = object_path(store, digest)
    deadline = DEFAULT_DEADLINE if deadline is None else deadline
    fd, tmp = _tmp_in(os.path.join(store, 'objects', 'incoming'), digest[:12] + '-')
    received = 0
    try:
        h = hashlib.sha256()
        try:
            out = os.fdopen(fd, 'wb')
            fd = None
            with out, Download(opener, url, deadline) as download:
                for chunk in download.chunks():
                    received += len(chunk)
                    if received > size:
                        raise StoreError('object %s from %s is larger than the %d bytes the manifest lists' % (digest, url, size))
                    h.update(chunk)
                    out.write(chunk)
                    _faults.point('fetch')
                out.flush()
                os.fsync(out.fileno())
        except DeadlineError:
            raise DeadlineError('object %s from %s did not arrive within the %d s deadline (%d of %d bytes received)'
                                % (digest, url, deadline, received, size))
        except StoreError:
            raise
        except OSError as exc:
            if getattr(exc, 'errno', None) == errno.ENOSPC:
                raise StoreError('no space left on the device while storing object %s from %s' % (digest, url))
            raise StoreError('cannot fetch object %s from %s: %s' % (digest, url, exc))
        except Exception as exc:  # urllib and http errors come in many types
            raise StoreError('cannot fetch object %s from %s: %s' % (digest, url, exc))
        if received != size:
            raise StoreError('object %s from %s is truncated: %d of %d bytes' % (digest, url, received, size))
        if h.hexdigest() != digest:
            raise StoreError('object %s from %s does not match its hash (got sha256 %s); refused' % (digest, url, h.hexdigest()))
        makedirs(os.path.dirname(dest))
        os.chmod(tmp, FILE_MODE)
        os.rename(tmp, dest)
        tmp = None
        return received
    finally:
        if fd is not None:
            os.close(fd)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def fetch_objects(store, base_url, missing, opener, workers=8, deadline=None):
    """Fetch every object of ``missing`` ({sha256: size}) in parallel; return bytes received.

    Each download must end within ``deadline`` seconds (default
    DEFAULT_DEADLINE). All downloads are attempted, unless one missed its
    deadline: then the ones not yet started are not, so a server that stalls
    every download holds the run for about one deadline, not one per object.
    If any failed, the first failure (in hash order) is raised after the
    others finished, so that the error is stable.
    """
    errors = {}
    skipped = []
    total = 0
    stop = threading.Event()

    def fetch(digest, size):
        if stop.is_set():
            skipped.append(digest)
            return 0
        try:
            return fetch_object(store, base_url, digest, size, opener, deadline)
        except DeadlineError:
            stop.set()
            raise

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(fetch, d, s): d for d, s in missing.items()}
        for fut in concurrent.futures.as_completed(futures):
            try:
                total += fut.result()
            except StoreError as exc:
                errors[futures[fut]] = exc
    if errors:
        first = sorted(errors)[0]
        more = []
        if len(errors) > 1:
            more.append('and %d more failed objects' % (len(errors) - 1))
        if skipped:
            more.append('%d objects not fetched after a missed deadline' % len(skipped))
        raise StoreError(str(errors[first]) + (' (%s)' % '; '.join(more) if more else ''))
    return total


def checkout(store, manifest):
    """Check a snapshot out as a hardlink tree under trees/<id>; return (path, created).

    The tree is built in a temp dir beside its final place and renamed in, so
    a crash leaves either no tree or a complete one. An existing tree is never
    modified.
    """
    final = tree_path(store, manifest['id'])
    if os.path.isdir(final):
        return final, False
    tmp = build_tree(store, manifest)
    try:
        os.rename(tmp, final)
        tmp = None
    finally:
        if tmp is not None:
            remove_tree(tmp)
    return final, True


def build_tree(store, manifest):
    """Build a complete, flushed hardlink tree of ``manifest`` in trees/.checkout-*; return its path."""
    snap_id = manifest['id']
    parent = os.path.join(store, 'trees')
    makedirs(parent, 0o700)
    tmp = tempfile.mkdtemp(dir=parent, prefix='.checkout-%s-' % snap_id[:12])
    try:
        dirs = []
        half = len(manifest['entries']) // 2
        for n, e in enumerate(manifest['entries']):
            if n == half:
                _faults.point('checkout')
            dest = os.path.join(tmp, e['path'])
            if e['type'] == 'dir':
                os.mkdir(dest)
                dirs.append(dest)
            elif e['type'] == 'file':
                src = object_path(store, e['sha256'])
                if not os.path.exists(src):
                    raise StoreError('object %s for %s is missing from the store' % (e['sha256'], e['path']))
                if int(e['mode'], 8) == FILE_MODE:
                    os.link(src, dest)
                else:
                    shutil.copyfile(src, dest)
                    os.chmod(dest, int(e['mode'], 8))
            else:
                os.symlink(e['target'], dest)
        for d in dirs:
            os.chmod(d, DIR_MODE)
        os.chmod(tmp, 0o755)
        sync_filesystem(tmp)
        done, tmp = tmp, None
        return done
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise StoreError('no space left on the device while checking out snapshot %s' % snap_id)
        raise
    finally:
        if tmp is not None:
            remove_tree(tmp)


def sync_filesystem(path):
    """Flush the filesystem that holds ``path`` (syncfs(2)), so a renamed-in tree survives a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.syncfs(fd) == 0:
                return
        except (OSError, AttributeError):
            pass
        os.sync()
    finally:
        os.close(fd)


def cleanup_leftovers(store):
    """Remove what a killed run may have left: partial downloads, half checkouts, temp pointers.

    Call it only while holding the store lock. Returns the paths removed.
    """
    removed = []
    incoming = os.path.join(store, 'objects', 'incoming')
    if os.path.isdir(incoming):
        for name in os.listdir(incoming):
            os.unlink(os.path.join(incoming, name))
            removed.append(os.path.join(incoming, name))
    trees = os.path.join(store, 'trees')
    if os.path.isdir(trees):
        for name in os.listdir(trees):
            if name.startswith('.checkout-'):
                remove_tree(os.path.join(trees, name))
                removed.append(os.path.join(trees, name))
    for directory in (store, os.path.join(store, 'snapshots')):
        if os.path.isdir(directory):
            for name in os.listdir(directory):
                if name.startswith('.current-') or name.startswith('.tmp-'):
                    os.unlink(os.path.join(directory, name))
                    removed.append(os.path.join(directory, name))
    return removed


def remove_tree(path):
    """Remove a tree that may hold 0555 or 0777 dirs, without following symlinks."""
    def onerror(func, p, exc_info):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            func(p)
        except OSError:
            pass
    if os.path.lexists(path):
        shutil.rmtree(path, onerror=onerror)
