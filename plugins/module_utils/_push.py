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

``run_pack_module()`` and ``run_receive_module()`` are snapshot_pack's and
snapshot_receive's main(). A pack plans once: check mode returns the plan's
result, a real run writes that plan's archives.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import gzip
import hashlib
import io
import os
import re
import shutil
import stat
import tarfile
import urllib.error
import zlib

from . import _manifest as mf
from . import _module
from . import _publish as publish
from . import _store as st
from . import _sync
from ._lock import LockError, StoreLock

SCHEME = 'push://'
HEAD = 'head.tar.gz'
INCOMING = 'incoming'
ARCHIVE = re.compile(r'(head|objects)-[0-9a-f]{12}-[0-9a-f]{16}(-[0-9]+of[0-9]+)?\.tar\.gz\Z')
HEAD_MEMBER = re.compile(r'(refs/published|refs/latest|refs/revisions/[0-9]{1,12}\.json(\.sig)?|'
                         r'snapshots/[0-9a-f]{64}\.json(\.sig)?)\Z')
OBJECT_MEMBER = re.compile(r'objects/([0-9a-f]{2})/([0-9a-f]{62})\Z')
HEX64 = re.compile(r'[0-9a-f]{64}\Z')
MAX_MANIFEST = 1 << 28
MAX_HEAD_MEMBERS = 6
READ = 1 << 20

# snapshot_pack's arguments.
PACK_ARGUMENT_SPEC = dict(
    store=dict(type='path', required=True),
    snapshot=dict(type='str', default='latest'),
    dest=dict(type='path', required=True),
    sets=dict(type='list', elements='list', default=[]),
    part_size=dict(type='int', default=268435456),
    lock_timeout=dict(type='int', default=300),
)

# snapshot_receive's arguments.
RECEIVE_ARGUMENT_SPEC = dict(
    staging=dict(type='path', default='/var/lib/pkgcache-push'),
    store=dict(type='path', default='/var/lib/pkgcache'),
    check_staged=dict(type='bool', default=True),
    **_module.SNAPSHOT_INTAKE_OPTIONS
)


def head_limit(name, max_manifest=MAX_MANIFEST):
    """The largest a head file may be: what a pull accepts for the same file."""
    if name.endswith('.sig'):
        return _sync.MAX_REF_BYTES * 4
    if name.startswith('snapshots/'):
        return max_manifest
    if name.startswith('refs/revisions/'):
        return publish.MAX_RECORD_BYTES
    return _sync.MAX_REF_BYTES


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
    if not (HEAD_MEMBER.match(rel) or OBJECT_MEMBER.match(rel)):
        raise urllib.error.URLError(OSError(errno.EINVAL, 'not a store path', url))
    return rel


# -- pack ----------------------------------------------------------------------------------------------------------

def resolve(store, snapshot):
    """(snapshot id, revision record or None, head members [(name, bytes)]) of ``snapshot`` (an id or latest).

    Each head file is read once (with a pull's size limits), and the archive is written from those bytes, so its
    name and content agree even when a publish runs meanwhile (the module also holds the store lock).
    """
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
    members = []
    for name in sorted(names):
        try:
            members.append((name, _sync.read_url(opener, '%s/%s' % (base, name), head_limit(name), name)))
        except _sync.NotFoundError:
            if name.endswith('%s.json' % snap_id):
                raise PushError('snapshot %s has no manifest in %s' % (snap_id, store))
        except _sync.SyncError as exc:
            raise PushError('cannot pack %s of %s: %s' % (name, store, exc))
    return snap_id, record, members


def plan_pack(store, snapshot, sets, part_size):
    """What pack would write: {id, revision, head: {name, members}, sets: {key: [{name, objects, bytes}]}}.

    ``sets`` are lists of object sha256s (what hosts lack); each must be an object of the snapshot.
    """
    snap_id, record, members = resolve(store, snapshot)
    try:
        manifest = mf.load_manifest(dict(members)['snapshots/%s.json' % snap_id], snap_id)
    except mf.ManifestError as exc:
        raise PushError('snapshot %s in %s: %s' % (snap_id, store, exc))
    sizes = {e['sha256']: e['size'] for e in manifest['entries'] if e['type'] == 'file'}
    head_key = hashlib.sha256()
    for name, data in members:
        head_key.update(name.encode() + b'\0' + hashlib.sha256(data).digest())
    plan = {'id': snap_id, 'revision': record['revision'] if record else None,
            'head': {'name': 'head-%s-%s.tar.gz' % (snap_id[:12], head_key.hexdigest()[:16]), 'members': members},
            'sets': {}}
    for wanted in sets:
        if not isinstance(wanted, (list, tuple)) or not all(isinstance(d, str) and HEX64.match(d) for d in wanted):
            raise PushError('a set of wanted objects must be a list of sha256s, got %.200r' % (wanted,))
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
                    for member, source in members:
                        info = tarfile.TarInfo(member)
                        info.mode, info.mtime, info.uid, info.gid = 0o600, 0, 0, 0
                        if not objects:
                            info.size = len(source)
                            tar.addfile(info, io.BytesIO(source))
                            continue
                        with _open_nofollow_plain(source) as f:
                            info.size = os.fstat(f.fileno()).st_size
                            reader = _Hashing(f, member, source)
                            tar.addfile(info, reader)
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

def check_staging(staging, create=False):
    """Refuse a staging dir that anybody but this user (root) could swap: it and every dir above it must be
    directories (no symlinks) owned by this user or root, writable by nobody else unless sticky; the staging dir
    itself is this user's, mode 0700. With ``create``, make it (and ``incoming``) first."""
    staging = os.path.abspath(staging)
    parts = staging.strip('/').split('/')
    me = os.geteuid()
    for n in range(len(parts) + 1):
        path = '/' + '/'.join(parts[:n])
        if create and n == len(parts) and not os.path.lexists(path):
            os.mkdir(path, 0o700)
        s = os.lstat(path)
        if not stat.S_ISDIR(s.st_mode) or s.st_uid not in (0, me):
            raise PushError('staging dir %s: %s is not a directory owned by root; refused' % (staging, path))
        if n < len(parts) and s.st_mode & 0o022 and not s.st_mode & stat.S_ISVTX:
            raise PushError('staging dir %s: %s is writable by others; refused' % (staging, path))
    if s.st_uid != me or stat.S_IMODE(s.st_mode) & 0o077:
        if not create:
            raise PushError('staging dir %s is not mode 0700 and owned by uid %d; refused' % (staging, me))
        os.chmod(staging, 0o700)
    incoming = os.path.join(staging, INCOMING)
    if create and not os.path.lexists(incoming):
        os.mkdir(incoming, 0o700)
    if os.path.lexists(incoming) and not stat.S_ISDIR(os.lstat(incoming).st_mode):
        raise PushError('%s is not a directory; refused' % incoming)
    return staging


def receive(staging, store, check_staged=True, limits=None, allowed_signers=None, run=None, check_mode=False,
            signer_identity=None):
    """Unpack what arrived in ``staging`` and name what the host still lacks.

    The head (``staging/head.tar.gz``, kept so that Ansible's copy sends it
    once) is read with a pull's size limits and, with ``allowed_signers``,
    its manifest's signature is checked before anything else is trusted; it
    is then written to ``staging/head``. Each object archive in
    ``staging/incoming`` is unpacked into ``staging/objects`` and removed: a
    member must be an object the snapshot lists and the host lacks, of
    exactly the manifest's size and with its sha256 (else the archive is
    refused). ``wanted`` are the snapshot's objects that are neither in the
    store nor staged (with ``check_staged``, a staged object counts only
    when its sha256 matches; one that does not is removed). Call it holding
    the host's store lock. In check mode nothing is written.
    """
    limits = limits or {}
    check_staging(staging, create=not check_mode)
    try:
        return _receive(staging, store, check_staged, limits, allowed_signers, run, check_mode, signer_identity)
    except PushError:
        if not check_mode:  # a refused push leaves nothing in incoming: a rerun sends its archives again
            incoming = os.path.join(staging, INCOMING)
            for name in os.listdir(incoming) if os.path.isdir(incoming) else []:
                if ARCHIVE.match(name):
                    os.unlink(os.path.join(incoming, name))
        raise


def _receive(staging, store, check_staged, limits, allowed_signers, run, check_mode, signer_identity):
    head_archive = os.path.join(staging, HEAD)
    if not os.path.isfile(head_archive) or os.path.islink(head_archive):
        raise PushError('no snapshot head at %s: the push did not send it' % head_archive)
    files = _read_head(head_archive, limits.get('max_manifest_size') or MAX_MANIFEST)
    ids = [n[len('snapshots/'):-len('.json')] for n in files if n.startswith('snapshots/') and n.endswith('.json')]
    if len(ids) != 1:
        raise PushError('the pushed head %s holds %d manifests, not one' % (head_archive, len(ids)))
    snap_id = ids[0]
    data = files['snapshots/%s.json' % snap_id]
    if allowed_signers:
        try:
            _sync.verify({'allowed_signers': allowed_signers, 'signer_identity': signer_identity}, run, data, files.get('snapshots/%s.json.sig' % snap_id),
                         'pushed snapshot %s' % snap_id, check_mode)
        except _sync.SyncError as exc:
            raise PushError(str(exc))
    try:
        manifest = mf.load_manifest(data, snap_id, limits.get('max_object_size'), limits.get('max_snapshot_size'))
    except mf.ManifestError as exc:
        raise PushError('pushed snapshot %s: %s' % (snap_id, exc))
    missing = {} if os.path.isdir(st.tree_path(store, snap_id)) else st.missing_objects(store, manifest['entries'])
    incoming = os.path.join(staging, INCOMING)
    archives = sorted(n for n in os.listdir(incoming) if ARCHIVE.match(n)) if os.path.isdir(incoming) else []
    received = sum(os.lstat(os.path.join(incoming, n)).st_size for n in archives)
    if not check_mode:
        _write_head(os.path.join(staging, 'head'), files)
        for name in archives:
            path = os.path.join(incoming, name)
            try:
                _unpack_objects(path, staging, missing)
            finally:
                os.unlink(path)  # unpacked, or refused (a rerun sends it again)
    wanted = {d: s for d, s in missing.items()
              if not _staged(staging, d, s, check_staged and not check_mode, remove=not check_mode)}
    return {'id': snap_id, 'wanted': sorted(wanted), 'wanted_key': set_key(wanted), 'wanted_bytes': sum(wanted.values()),
            'missing_objects': len(missing), 'received_archives': archives, 'received_bytes': received}


def _read_head(archive, max_manifest):
    """The head's files {name: bytes}: store names only, each once, each within a pull's limit for it."""
    files = {}
    for member, data in _members(archive, HEAD_MEMBER):
        if member.name in files or len(files) >= MAX_HEAD_MEMBERS:
            raise PushError('%s: more than one %s, or more than %d files; refused' % (archive, member.name, MAX_HEAD_MEMBERS))
        if member.size > head_limit(member.name, max_manifest):
            raise PushError('%s: %s is larger than %d bytes; refused' % (archive, member.name, head_limit(member.name, max_manifest)))
        files[member.name] = data.read()
    return files


def _unpack_objects(archive, staging, missing):
    """Stage each object of ``archive``: one the host lacks, of its manifest size, whose bytes hash to its name."""
    seen = set()
    for member, data in _members(archive, OBJECT_MEMBER):
        digest = member.name.replace('/', '')[len('objects'):]
        if digest in seen or digest not in missing or member.size != missing[digest]:
            raise PushError('%s: %s is not an object this host lacks, or not of its size (%s bytes); refused'
                            % (archive, member.name, missing.get(digest, 'no')))
        seen.add(digest)
        _write_member(staging, member.name, data, digest)


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


def _write_member(dest, name, data, digest):
    target = os.path.join(dest, name)
    st.makedirs(os.path.dirname(target), 0o700)
    fd, tmp = st._tmp_in(os.path.dirname(target), '.unpack-')
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, 'wb') as out:
            for chunk in iter(lambda: data.read(READ), b''):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != digest:
            raise PushError('pushed object %s does not match its sha256; refused' % digest)
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


class _RefusedHeader(Exception):
    """A tar header that is not a regular file's, refused as it is read."""


class _StoreMember(tarfile.TarInfo):
    """A member as pack writes them: a regular file with a ustar header, nothing else.

    tarfile reads the data of a pax, GNU long name or sparse header whole,
    into memory, before it yields the member that header describes: one that
    announces gigabytes (zeros, a few kilobytes gzip'd) would be read. Such a
    header is refused as soon as it is parsed, before any of its data is read.
    """

    @classmethod
    def frombuf(cls, buf, encoding, errors):
        member = super(_StoreMember, cls).frombuf(buf, encoding, errors)
        if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise _RefusedHeader('member %r is not a file of a store (a header of type %r that announces %d bytes); '
                                 'refused' % (member.name, member.type.decode('ascii', 'replace'), member.size))
        return member


def _members(archive, pattern):
    """Yield (member, file) for each member of ``archive``, a gzip'd tar of regular files named by ``pattern``."""
    try:
        # GzipFile inflates no more than it is asked for; tarfile's own 'r|gz' inflates each 10 KB read whole
        # (10 MB of output for zeros).
        with gzip.open(archive, 'rb') as gz, tarfile.open(fileobj=gz, mode='r|', tarinfo=_StoreMember) as tar:
            for member in tar:
                if not member.isfile() or member.issparse() or not pattern.match(member.name):
                    raise PushError('%s: member %r is not a file of a store; refused' % (archive, member.name))
                yield member, tar.extractfile(member)
    except _RefusedHeader as exc:
        raise PushError('%s: %s' % (archive, exc))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise PushError('cannot unpack %s: %s' % (archive, exc))


def clear_staged(staging):
    """After a successful sync the staged objects are in the store: remove them (the head stays)."""
    shutil.rmtree(os.path.join(staging, 'objects'), ignore_errors=True)


def pack_argument_spec():
    return copy.deepcopy(PACK_ARGUMENT_SPEC)


def receive_argument_spec():
    return copy.deepcopy(RECEIVE_ARGUMENT_SPEC)


def run_pack_module(module):
    """snapshot_pack's main(): plan the archives (under the store lock in a real run); check mode returns what the
    plan would write, a real run writes that plan's archives."""
    p = module.params
    _module.require_at_least(module, 'part_size', 1)
    try:
        with contextlib.nullcontext() if module.check_mode else StoreLock(p['store'], p['lock_timeout']):
            pack_plan = plan_pack(p['store'], p['snapshot'], p['sets'], p['part_size'])
        result = pack_result(pack_plan, p['dest'])
        if not module.check_mode:
            result['written'] = pack(p['store'], p['dest'], pack_plan)
    except (PushError, st.StoreError, LockError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=bool(result['written']), **result)


def run_receive_module(module):
    """snapshot_receive's main(): unpack what arrived and name what the host still lacks (under the host's store
    lock in a real run; check mode writes nothing)."""
    p = module.params
    limits = {k: p[k] or None for k in ('max_object_size', 'max_snapshot_size', 'max_manifest_size')}
    try:
        with _sync.locked(p, module.check_mode):
            result = receive(p['staging'], p['store'], p['check_staged'], limits, p['allowed_signers'],
                             _module.runner(module), check_mode=module.check_mode,
                             signer_identity=p['signer_identity'])
    except (PushError, st.StoreError, LockError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=bool(result['received_archives']), **result)
