# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Push mode: a snapshot carried to a host over Ansible's own connection, as archives.

Private to the collection; the API may change without notice.

- ``pack`` runs where a store is (the builder, or a copy of its store on the
  controller). The *head* archive holds what a sync reads before any object
  (refs/published, the revision record and its signature, refs/latest, the
  manifest and its signature); *object* archives hold the objects a set of
  hosts lacks, in parts of at most ``part_size`` bytes. Archives are gzip'd
  tars with fixed metadata, so the same content gives the same bytes, and
  Ansible's copy sends nothing a host already holds.
- ``receive`` runs on the host: it unpacks what arrived into a root-owned
  staging dir and names the objects the host still lacks (not in its store,
  nor staged with the right size and sha256), so an interrupted push
  resumes without sending again what arrived.
- ``source_opener`` serves the staging dir to ``_sync.sync`` as if it were a
  store URL: a pushed snapshot is verified by the same code as a pulled one
  (signature, revision, size and sha256 of every object, atomic activation).
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import re
import shutil
import stat
import tarfile
import urllib.error
import zlib

from . import _manifest as mf
from . import _store as st
from . import _sync

SCHEME = 'push://'
HEAD = 'head.tar.gz'
INCOMING = 'incoming'
ARCHIVE = re.compile(r'^(head|objects)-[0-9a-f]{12}-[0-9a-f]{16}(-[0-9]+of[0-9]+)?\.tar\.gz$')
HEAD_MEMBER = re.compile(r'^(refs/published|refs/latest|refs/revisions/[0-9]{1,12}\.json(\.sig)?|'
                         r'snapshots/[0-9a-f]{64}\.json(\.sig)?)$')
OBJECT_MEMBER = re.compile(r'^objects/([0-9a-f]{2})/([0-9a-f]{62})$')
MAX_HEAD_MEMBER = 1 << 28
READ = 1 << 20


class PushError(RuntimeError):
    """The push cannot go on; the host's active snapshot is untouched."""


# -- reading a store or a staging dir as if it were served -------------------------------------------------------

def _open_nofollow(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise urllib.error.URLError(exc)  # what _sync takes for "no such file" (HTTP 404)
    f = os.fdopen(fd, 'rb')
    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        f.close()
        raise urllib.error.URLError(OSError(errno.EINVAL, 'not a regular file', path))
    return f


def source_url(staging):
    return SCHEME + staging.rstrip('/')


def source_opener(staging):
    """An ``opener(url)`` for _sync that reads a staging dir: objects/ from staging/objects, the rest from its head."""
    root = staging.rstrip('/')

    def opener(url):
        rel = _relative(url, root)
        if rel.startswith('objects/'):
            return _open_nofollow(os.path.join(root, rel))
        return _open_nofollow(os.path.join(root, 'head', rel))
    return opener


def store_opener(store):
    """An ``opener(url)`` for a store laid out as it is served (refs/, snapshots/, objects/)."""
    root = store.rstrip('/')

    def opener(url):
        return _open_nofollow(os.path.join(root, _relative(url, root)))
    return opener


def _relative(url, root):
    prefix = SCHEME + root + '/'
    rel = url[len(prefix):] if url.startswith(prefix) else ''
    if not rel or rel.startswith('/') or '..' in rel.split('/') or not (HEAD_MEMBER.match(rel) or OBJECT_MEMBER.match(rel)):
        raise urllib.error.URLError(OSError(errno.EINVAL, 'not a store path', url))
    return rel


# -- pack ----------------------------------------------------------------------------------------------------------

def resolve(store, snapshot):
    """(snapshot id, revision record or None, head members [(name, path)]) of ``snapshot`` (an id or latest)."""
    if snapshot == 'previous':
        raise PushError("snapshot 'previous' is each host's own; push a snapshot id or latest")
    opener, base = store_opener(store), source_url(store)
    p = {}
    try:
        record = _sync.published_record(opener, base, p, None) if snapshot == 'latest' else None
        snap_id = record['id'] if record else _sync.resolve_id(opener, base, snapshot)
    except _sync.SyncError as exc:
        raise PushError('cannot resolve snapshot %s in %s: %s' % (snapshot, store, exc))
    names = ['refs/latest', 'snapshots/%s.json' % snap_id, 'snapshots/%s.json.sig' % snap_id]
    if record:
        names += ['refs/published', 'refs/revisions/%d.json' % record['revision'],
                  'refs/revisions/%d.json.sig' % record['revision']]
    members = [(n, os.path.join(store, n)) for n in sorted(names) if os.path.isfile(os.path.join(store, n))]
    if not any(m[0].endswith('%s.json' % snap_id) for m in members):
        raise PushError('snapshot %s has no manifest in %s' % (snap_id, store))
    return snap_id, record, members


def load_store_manifest(store, snap_id, max_size=1 << 28):
    try:
        data = _sync.read_url(store_opener(store), '%s/snapshots/%s.json' % (source_url(store), snap_id), max_size,
                              'manifest of snapshot %s' % snap_id)
        return mf.load_manifest(data, snap_id)
    except (_sync.SyncError, mf.ManifestError) as exc:
        raise PushError('snapshot %s in %s: %s' % (snap_id, store, exc))


def plan_pack(store, snapshot, sets, part_size):
    """What pack would write: {id, revision, head: {name, members}, sets: {key: [{name, objects, bytes}]}}.

    ``sets`` are lists of object sha256s (what hosts lack); each must be an object of the snapshot.
    """
    snap_id, record, members = resolve(store, snapshot)
    manifest = load_store_manifest(store, snap_id)
    sizes = {e['sha256']: e['size'] for e in manifest['entries'] if e['type'] == 'file'}
    head_key = hashlib.sha256()
    for name, path in members:
        head_key.update(name.encode() + b'\0')
        with open(path, 'rb') as f:
            head_key.update(hashlib.sha256(f.read()).digest())
    plan = {'id': snap_id, 'revision': record['revision'] if record else None,
            'head': {'name': 'head-%s-%s.tar.gz' % (snap_id[:12], head_key.hexdigest()[:16]), 'members': members},
            'sets': {}}
    for wanted in sets:
        wanted = sorted(set(wanted))
        for digest in wanted:
            if digest not in sizes:
                raise PushError('object %r is not a file of snapshot %s; refused' % (digest, snap_id))
        key = set_key(wanted)
        plan['sets'][key] = _parts(snap_id, key, wanted, sizes, part_size)
    return plan


def set_key(wanted):
    return hashlib.sha256('\n'.join(sorted(wanted)).encode()).hexdigest()


def _parts(snap_id, key, wanted, sizes, part_size):
    parts, current, size = [], [], 0
    for digest in wanted:
        if current and size + sizes[digest] > part_size:
            parts.append(current)
            current, size = [], 0
        current.append(digest)
        size += sizes[digest]
    if current:
        parts.append(current)
    return [{'name': 'objects-%s-%s-%dof%d.tar.gz' % (snap_id[:12], key[:16], n + 1, len(parts)),
             'objects': objs, 'bytes': sum(sizes[d] for d in objs)} for n, objs in enumerate(parts)]


def pack_result(plan, dest):
    """What a pack run reports (``written``: the archives not yet in ``dest``)."""
    files = [plan['head']['name']] + [part['name'] for parts in plan['sets'].values() for part in parts]
    return {'id': plan['id'], 'revision': plan['revision'], 'head': plan['head']['name'], 'files': files,
            'sets': {key: [{'name': part['name'], 'bytes': part['bytes'], 'objects': len(part['objects'])} for part in parts]
                     for key, parts in plan['sets'].items()},
            'written': [n for n in files if not os.path.isfile(os.path.join(dest, n))]}


def pack(store, dest, plan):
    """Write the planned archives into ``dest`` (an archive already there is the same bytes: kept); return the
    names written. Archives of other snapshots in ``dest`` are removed."""
    st.makedirs(dest, 0o700)
    written = []
    wanted = {plan['head']['name']: plan['head']['members']}
    for parts in plan['sets'].values():
        for part in parts:
            wanted[part['name']] = [(st.object_rel(d), st.object_path(store, d)) for d in part['objects']]
    for name, members in sorted(wanted.items()):
        if not os.path.isfile(os.path.join(dest, name)):
            _write_archive(dest, name, members, objects=name != plan['head']['name'])
            written.append(name)
    for name in os.listdir(dest):
        if ARCHIVE.match(name) and name not in wanted and name.split('-')[1] != plan['id'][:12]:
            os.unlink(os.path.join(dest, name))
    return written


def _write_archive(dest, name, members, objects):
    """Write one archive; each object is hashed on the way, so a store copy that went bad is refused here, before
    it reaches any host (each host checks again)."""
    fd, tmp = st._tmp_in(dest, '.' + name + '-')
    try:
        with os.fdopen(fd, 'wb') as raw:
            with gzip.GzipFile(filename='', mode='wb', fileobj=raw, mtime=0, compresslevel=1) as gz:
                with tarfile.open(fileobj=gz, mode='w', format=tarfile.USTAR_FORMAT) as tar:
                    for member, path in members:
                        with _open_nofollow_plain(path) as f:
                            info = tarfile.TarInfo(member)
                            info.size = os.fstat(f.fileno()).st_size
                            info.mode, info.mtime, info.uid, info.gid = 0o600, 0, 0, 0
                            reader = _Hashing(f, member, path)
                            tar.addfile(info, reader)
                            if objects:
                                reader.check()
            raw.flush()
            os.fsync(raw.fileno())
        os.rename(tmp, os.path.join(dest, name))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class _Hashing(object):
    """A reader that hashes what it reads; ``check`` compares that with the sha256 the object's store name says."""

    def __init__(self, f, member, path):
        self.f, self.path, self.h = f, path, hashlib.sha256()
        self.digest = member.replace('/', '')[len('objects'):]

    def read(self, size=-1):
        data = self.f.read(size)
        self.h.update(data)
        return data

    def check(self):
        if self.h.hexdigest() != self.digest:
            raise PushError('object %s in the store (%s) does not match its sha256; refused (repair the store: copy '
                            'the object again from the builder)' % (self.digest, self.path))


def _open_nofollow_plain(path):
    try:
        return _open_nofollow(path)
    except urllib.error.URLError as exc:
        raise PushError('cannot pack %s: %s' % (path, exc.reason))


# -- receive -------------------------------------------------------------------------------------------------------

def prepare_staging(staging):
    """The staging dir, created root-owned 0700; refuse one that is a symlink or not root's."""
    st.makedirs(staging, 0o700)
    for path in (staging, os.path.join(staging, INCOMING)):
        if not os.path.lexists(path):
            os.mkdir(path, 0o700)
        s = os.lstat(path)
        if not stat.S_ISDIR(s.st_mode) or s.st_uid != os.geteuid():
            raise PushError('staging dir %s is not a directory owned by this user (uid %d); refused'
                            % (path, os.geteuid()))
        os.chmod(path, 0o700)


def receive(staging, store, check_staged=True, max_object_size=None, check_mode=False):
    """Unpack what arrived in ``staging`` and name what the host still lacks.

    The head (``staging/head.tar.gz``, kept so that Ansible's copy sends it
    once) is unpacked into ``staging/head``; each object archive in
    ``staging/incoming`` is unpacked into ``staging/objects`` and removed.
    ``wanted`` are the snapshot's objects that are neither in the store nor
    staged (with ``check_staged``, a staged object counts only when its size
    and sha256 match the manifest; one that does not is removed). In check
    mode nothing is written: the head is read from its archive.
    """
    head_archive = os.path.join(staging, HEAD)
    if not os.path.isfile(head_archive):
        raise PushError('no snapshot head at %s: the push did not send it' % head_archive)
    files = {}
    _unpack(head_archive, HEAD_MEMBER, MAX_HEAD_MEMBER, lambda name, data: files.__setitem__(name, data.read()))
    ids = [n[len('snapshots/'):-len('.json')] for n in files if n.startswith('snapshots/') and n.endswith('.json')]
    if len(ids) != 1:
        raise PushError('the pushed head %s holds %d manifests, not one' % (head_archive, len(ids)))
    snap_id = ids[0]
    try:
        manifest = mf.load_manifest(files['snapshots/%s.json' % snap_id], snap_id, max_object_size)
    except mf.ManifestError as exc:
        raise PushError('pushed snapshot %s: %s' % (snap_id, exc))
    incoming = os.path.join(staging, INCOMING)
    archives = sorted(n for n in os.listdir(incoming) if ARCHIVE.match(n)) if os.path.isdir(incoming) else []
    received = sum(os.lstat(os.path.join(incoming, n)).st_size for n in archives)
    if not check_mode:
        prepare_staging(staging)
        _write_head(os.path.join(staging, 'head'), files)
        for name in archives:
            path = os.path.join(incoming, name)
            try:
                _unpack(path, OBJECT_MEMBER, max_object_size, lambda member, data: _write_member(staging, member, data))
            finally:
                os.unlink(path)  # unpacked, or refused (a rerun sends it again)
    missing = {} if os.path.isdir(st.tree_path(store, snap_id)) else st.missing_objects(store, manifest['entries'])
    wanted = {d: s for d, s in missing.items()
              if not _staged(staging, d, s, check_staged and not check_mode, remove=not check_mode)}
    return {'id': snap_id, 'wanted': sorted(wanted), 'wanted_key': set_key(wanted), 'wanted_bytes': sum(wanted.values()),
            'missing_objects': len(missing), 'received_archives': archives, 'received_bytes': received}


def _write_head(head, files):
    """Replace ``head`` with exactly ``files`` (so no manifest or ref of an earlier push stays)."""
    fresh = head + '.new'
    if os.path.isdir(fresh):
        shutil.rmtree(fresh)
    for name, data in files.items():
        st.makedirs(os.path.dirname(os.path.join(fresh, name)), 0o700)
        st.write_bytes_atomic(os.path.join(fresh, name), data, 0o600)
    if os.path.isdir(head):
        shutil.rmtree(head)
    os.rename(fresh, head)


def _write_member(dest, name, data):
    target = os.path.join(dest, name)
    st.makedirs(os.path.dirname(target), 0o700)
    fd, tmp = st._tmp_in(os.path.dirname(target), '.unpack-')
    try:
        with os.fdopen(fd, 'wb') as out:
            shutil.copyfileobj(data, out, READ)
        os.rename(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _staged(staging, digest, size, check_hash, remove):
    path = os.path.join(staging, st.object_rel(digest))
    try:
        s = os.lstat(path)
    except FileNotFoundError:
        return False
    ok = stat.S_ISREG(s.st_mode) and s.st_size == size
    if ok and check_hash:
        h = hashlib.sha256()
        with open(path, 'rb') as f:
            for chunk in iter(lambda: f.read(READ), b''):
                h.update(chunk)
        ok = h.hexdigest() == digest
    if not ok and remove:
        os.unlink(path)
    return ok


def _unpack(archive, pattern, limit, take):
    """Hand each member of ``archive`` (a gzip'd tar of regular files named by ``pattern``) to ``take(name, file)``."""
    try:
        with tarfile.open(archive, mode='r|gz') as tar:
            for member in tar:
                if not member.isfile() or not pattern.match(member.name):
                    raise PushError('%s: member %r is not a file of a store; refused' % (archive, member.name))
                if limit and member.size > limit:
                    raise PushError('%s: member %s is larger than %d bytes; refused' % (archive, member.name, limit))
                take(member.name, tar.extractfile(member))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise PushError('cannot unpack %s: %s' % (archive, exc))


def clear_staged(staging):
    """After a successful sync the staged objects are in the store: remove them (the head stays)."""
    shutil.rmtree(os.path.join(staging, 'objects'), ignore_errors=True)
