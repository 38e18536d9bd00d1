# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pulling a snapshot into a repl host's store and activating it.

Private to the collection; the API may change without notice. Network access
goes through the ``opener(url)`` callable the module passes in; every download
(ref, manifest, signature, object) must end within ``p['deadline']`` seconds
(default _store.DEFAULT_DEADLINE) and its response is always closed.

The builder's revision record expires (see _publish): check_record() refuses one that expired more than
ALLOWED_SKEW seconds ago by this host's clock, and an earlier signing (lower serial) of the revision this host
already took. Either refusal, like every other, leaves the active snapshot as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time

from . import _faults
from . import _manifest as mf
from . import _publish as publish
from . import _signing
from . import _hoststate as hs
from . import _store as st
from ._lock import StoreLock

MAX_REF_BYTES = 4096
# Seconds by which this host's clock may be ahead of the builder's before a record counts as expired early: the
# clock skew that NTP-less hosts may show (Kerberos allows 5 minutes too). A record is refused once
# now > expires + ALLOWED_SKEW.
ALLOWED_SKEW = 300


class SyncError(RuntimeError):
    """The sync cannot go on; the active snapshot is untouched."""


class NotFoundError(SyncError):
    """The server says the file does not exist (HTTP 404, or no such file)."""


def _not_found(exc):
    return getattr(exc, 'code', None) == 404 or isinstance(getattr(exc, 'reason', None), FileNotFoundError)


def read_url(opener, url, limit, what, deadline=None):
    """Return the body of ``url`` (at most ``limit`` bytes), read within ``deadline`` seconds; the response is closed."""
    deadline = st.DEFAULT_DEADLINE if deadline is None else deadline
    data = []
    size = 0
    try:
        with st.Download(opener, url, deadline) as download:
            for chunk in download.chunks():
                data.append(chunk)
                size += len(chunk)
                if size > limit:
                    break
    except st.DeadlineError:
        raise SyncError('%s from %s did not arrive within the %d s deadline (%d bytes received)' % (what, url, deadline, size))
    except Exception as exc:  # urllib, http.client and socket errors
        raise (NotFoundError if _not_found(exc) else SyncError)('cannot fetch %s from %s: %s' % (what, url, exc))
    if size > limit:
        raise SyncError('%s at %s is larger than %d bytes; refused' % (what, url, limit))
    return b''.join(data)


def previous_id(store):
    """The snapshot that was active before the current one, from the host's history."""
    current = hs.active_id(store)
    for snap_id in reversed(hs.history(store)):
        if snap_id != current:
            return snap_id
    raise SyncError('there is no previous snapshot in %s/history to go back to' % store)


def resolve_id(opener, base_url, snapshot, store=None, deadline=None):
    if snapshot == 'previous':
        return previous_id(store)
    if snapshot != 'latest':
        try:
            return mf.check_snapshot_id(snapshot, 'snapshot')
        except mf.ManifestError as exc:
            raise SyncError(str(exc))
    url = base_url + '/refs/latest'
    data = read_url(opener, url, MAX_REF_BYTES, 'the latest snapshot id', deadline)
    try:
        return mf.check_snapshot_id(data.decode('ascii', 'replace').strip(), 'the id at %s' % url)
    except mf.ManifestError as exc:
        raise SyncError(str(exc))


def load_manifest(store, opener, base_url, snap_id, limits, check_mode, p=None, run=None):
    """Return (manifest, fetched bytes): from the host's store when present, else from the server.

    With ``allowed_signers`` set, the manifest's signature is checked (every
    time, also for a manifest the host already has) before anything else.
    """
    p = p or {}
    local = st.manifest_path(store, snap_id)
    data, sig = st.read_optional(local), st.read_optional(local + '.sig')
    fetched = 0
    url = '%s/snapshots/%s.json' % (base_url, snap_id)
    if data is None:
        data = read_url(opener, url, limits['max_manifest_size'], 'manifest of snapshot %s' % snap_id, p.get('deadline'))
        fetched = len(data)
        sig = None
    if p.get('allowed_signers') and sig is None:
        # A new manifest, or one this host stored before signatures were required.
        try:
            sig = read_url(opener, url + '.sig', MAX_REF_BYTES * 4, 'signature of snapshot %s' % snap_id, p.get('deadline'))
        except NotFoundError:
            sig = None
        fetched += len(sig or b'')
    if p.get('allowed_signers'):
        verify(p, run, data, sig, 'snapshot %s' % snap_id, check_mode)
    try:
        manifest = mf.load_manifest(data, snap_id, limits.get('max_object_size'), limits.get('max_snapshot_size'))
    except mf.ManifestError as exc:
        raise SyncError('snapshot %s refused: %s' % (snap_id, exc))
    check_downgrade(store, manifest, p.get('allow_downgrade', False), p.get('revision'), p.get('snapshot') == 'latest')
    return manifest, fetched, (data, sig) if fetched else None


def keep_manifest(store, snap_id, fetched):
    """Store a fetched manifest (and its signature) once the snapshot's objects are all in."""
    if not fetched:
        return
    data, sig = fetched
    local = st.manifest_path(store, snap_id)
    st.makedirs(os.path.dirname(local), 0o700)
    if sig:
        st.write_bytes_atomic(local + '.sig', sig, 0o600)
    st.write_bytes_atomic(local, data, 0o600)


def check_downgrade(store, manifest, allow, revision=None, latest=False):
    """Refuse a snapshot older than one this host applied, unless ``allow`` (an explicit rollback).

    With a revision (the builder's signed record), revisions are compared:
    a rollback that the builder published as a new revision is taken, a
    replayed older record is refused. A host that has applied revisions
    refuses ``latest`` from a store that shows none (a server that hides
    ``refs/published`` to fall back to build times). Otherwise (a snapshot
    named by id, or a host that never saw a revision), build times are
    compared.
    """
    newest = hs.newest_applied(store)
    if not newest or allow or manifest['id'] == newest['id']:
        return
    if revision is not None:
        if newest['revision'] is not None and revision <= newest['revision']:
            raise SyncError('the store publishes revision %d (snapshot %s), but this host already applied revision %d; '
                            'refusing a replayed or older revision (roll back explicitly to allow it)'
                            % (revision, manifest['id'], newest['revision']))
        return
    if latest and newest['revision'] is not None:
        raise SyncError('the store publishes no revision record (refs/published), but this host already applied revision '
                        '%d; refusing a silent downgrade to snapshot %s (roll back explicitly to allow it)'
                        % (newest['revision'], manifest['id']))
    created = manifest.get('created') or ''
    if created < newest['created']:
        raise SyncError('snapshot %s (built %s) is older than snapshot %s (built %s) that this host already applied; '
                        'refusing a silent downgrade (roll back explicitly to allow it)'
                        % (manifest['id'], created or 'at an unknown time', newest['id'], newest['created']))


def verify(p, run, data, sig, what, check_mode):
    """Check a signature; in check mode on a host whose allowed_signers file the run would install first, warn."""
    if check_mode and not os.path.exists(p['allowed_signers']):
        p.setdefault('warnings', []).append('check mode: %s is not installed yet, so the signature of %s is not '
                                            'checked (a real run checks it)' % (p['allowed_signers'], what))
        return
    try:
        _signing.verify(run, p['allowed_signers'], data, sig, what, p.get('signer_identity') or _signing.IDENTITY)
    except _signing.SignatureError as exc:
        raise SyncError(str(exc))


def published_record(opener, base_url, p, run, check_mode=False):
    """The builder's newest signed revision record ({revision, id, ...}), or None if it publishes none."""
    try:
        data = read_url(opener, base_url + '/refs/published', MAX_REF_BYTES, 'the published revision', p.get('deadline'))
    except NotFoundError:
        return None
    try:
        number = publish.parse_number(data, '%s/refs/published' % base_url)
    except ValueError as exc:
        raise SyncError(str(exc))
    url = '%s/refs/revisions/%d.json' % (base_url, number)
    record = read_url(opener, url, publish.MAX_RECORD_BYTES, 'revision record %d' % number, p.get('deadline'))
    if p.get('allowed_signers'):
        try:
            sig = read_url(opener, url + '.sig', MAX_REF_BYTES * 4, 'signature of revision %d' % number, p.get('deadline'))
        except NotFoundError:
            sig = None
        verify(p, run, record, sig, 'revision record %d' % number, check_mode)
    try:
        return publish.parse_record(record, number, url)
    except (ValueError, mf.ManifestError) as exc:
        raise SyncError(str(exc))


def check_record(store, record, url, now_epoch, allow=False, warnings=None):
    """Refuse a revision record that expired, or an earlier signing of the revision this host already took.

    ``url`` names the record in the errors, ``now_epoch`` is this host's clock. A record from a builder of an earlier
    release (no ``expires``) is taken with a warning, unless this host already took records that expire (a
    downgrade of the protocol). Lower revisions are check_downgrade()'s (``allow``: an explicit rollback).
    """
    newest = hs.newest_applied(store)
    try:
        expires = publish.expires_epoch(record)
    except ValueError as exc:
        raise SyncError('%s: %s' % (url, exc))
    if expires is None:
        if newest and newest.get('expires'):
            raise SyncError('revision record %d at %s carries no expiry, but this host already took records that '
                            'expire (the newest expires %s); refused' % (record['revision'], url, newest['expires']))
        if warnings is not None:
            warnings.append('revision record %d at %s carries no expiry (a builder of an earlier release): a frozen '
                            'mirror cannot be noticed until the builder publishes records that expire'
                            % (record['revision'], url))
    elif now_epoch > expires + ALLOWED_SKEW:
        raise SyncError('revision record %d at %s (snapshot %s, serial %d) expired at %s; it is now %s (%d s of clock '
                        'skew allowed): the store or mirror serves a record its builder no longer signs (frozen, or '
                        'the builder\'s pkgcache-resign.timer stopped); refused, the active snapshot stays'
                        % (record['revision'], url, record['id'], publish.serial(record), record['expires'],
                           publish.iso(now_epoch), ALLOWED_SKEW))
    if allow or not newest or newest['revision'] != record['revision']:
        return
    if publish.serial(record) < newest['serial']:
        raise SyncError('revision record %d at %s is serial %d, but this host already took serial %d of that revision '
                        '(expires %s); refusing a replayed earlier signing'
                        % (record['revision'], url, publish.serial(record), newest['serial'], newest['expires']))


def prepare_store(store):
    st.makedirs(store, 0o700)
    os.chmod(store, 0o700)
    for sub in ('objects', 'snapshots', 'trees'):
        st.makedirs(os.path.join(store, sub), 0o700)


def locked(p, check_mode):
    """The store lock for a run (a no-op context in check mode, which changes nothing)."""
    if check_mode:
        return contextlib.nullcontext()
    prepare_store(p['store'])
    return StoreLock(p['store'], p.get('lock_timeout', 0))


def sync(p, opener, check_mode=False, now=None, run=None):
    """Fetch, verify, check out and activate a snapshot; return the result dict.

    Call it while holding locked(). For each mirror, plan() decides what the run does (which snapshot, which
    objects to fetch, whether to check out and switch); check mode returns that plan's result, a real run executes
    the same plan with apply(). Any failure raises SyncError (or StoreError) before ``current`` moves, so the
    active snapshot stays as it was. Leftovers of a killed run are removed first, so a run after a crash converges.
    """
    if not check_mode:
        st.cleanup_leftovers(p['store'])
    mirrors = mirror_order(p.get('mirrors') or [p['url']], p.get('mirror_key') or '')
    failed = []
    for url in mirrors:
        q = dict(p, url=url)
        try:
            steps = plan(q, opener, check_mode, run)
            result = steps['result'] if check_mode else apply(q, steps, opener, now)
        except (SyncError, st.StoreError, mf.ManifestError) as exc:
            if len(mirrors) == 1:
                raise
            # Unreachable, an HTTP error, a bad signature, an old revision, an object that fails its hash: the
            # next mirror. Objects that did arrive were verified, so they stay for the next try.
            failed.append({'url': url, 'error': str(exc)})
            continue
        return dict(result, mirror=url, failed_mirrors=failed)
    raise SyncError('every mirror failed: %s' % '; '.join('%s: %s' % (f['url'], f['error']) for f in failed))


def mirror_order(urls, key):
    """The mirrors in a stable order of this host's own (``key``, its name): hosts spread over the mirrors, and each
    keeps to its first one while it works."""
    urls = [u.rstrip('/') for u in urls if u]
    if not urls:
        raise SyncError('no store URL given')
    start = int(hashlib.sha256(key.encode('utf-8')).hexdigest()[:8], 16) % len(urls)
    return urls[start:] + urls[:start]


def plan(p, opener, check_mode=False, run=None):
    """What a sync from the store at ``p['url']`` does, decided once for check mode and the real run.

    Resolves the snapshot id, loads and verifies its manifest (kept in memory, not stored) and lists the objects the
    host lacks. Writes nothing. Returns a dict: ``result`` (what the module reports), ``manifest``, ``missing``
    ({object: size} to fetch), ``new_manifest`` (the fetched manifest and signature to store, or None), ``checkout``
    (the tree is not there yet) and ``switch`` (``current`` moves to this snapshot).
    """
    store = p['store']
    base_url = p['url'].rstrip('/')
    try:
        record = published_record(opener, base_url, p, run, check_mode) if p['snapshot'] == 'latest' else None
        snap_id = record['id'] if record else resolve_id(opener, base_url, p['snapshot'], store, p.get('deadline'))
    except SyncError as exc:
        if not check_mode:
            raise
        # A dry run against a builder that the same run would set up first (a new fleet): say so, change nothing.
        return {'result': {
            'id': '', 'path': '', 'previous': hs.active_id(store), 'changed': True, 'revision': None,
            'missing_objects': 0, 'missing_bytes': 0, 'reused_objects': 0, 'fetched_objects': 0, 'fetched_bytes': 0,
            'fetch_seconds': 0.0, 'bytes_per_second': 0, 'files': 0, 'bytes': 0, 'ecosystems': [], 'created': None,
            'warnings': ['check mode: %s; a real run fails here unless the store is served by then' % exc]}}
    if record:
        check_record(store, record, '%s/refs/revisions/%d.json' % (base_url, record['revision']),
                     p.get('now_epoch') or int(time.time()), p.get('allow_downgrade', False), p.setdefault('warnings', []))
    p = dict(p, revision=record['revision'] if record else None)
    previous = hs.active_id(store)
    limits = {'max_manifest_size': p['max_manifest_size'], 'max_object_size': p.get('max_object_size'),
              'max_snapshot_size': p.get('max_snapshot_size')}
    manifest, manifest_bytes, new_manifest = load_manifest(store, opener, base_url, snap_id, limits, check_mode, p, run)
    have_tree = os.path.isdir(st.tree_path(store, snap_id))
    missing = {} if have_tree else st.missing_objects(store, manifest['entries'])
    totals = mf.totals(manifest['entries'])
    result = {
        'id': snap_id, 'previous': previous, 'path': st.tree_path(store, snap_id),
        'missing_objects': len(missing), 'missing_bytes': sum(missing.values()),
        'reused_objects': totals['objects'] - len(missing), 'files': totals['files'], 'bytes': totals['bytes'],
        'ecosystems': manifest.get('ecosystems', []), 'created': manifest.get('created'),
        'fetched_objects': 0, 'fetched_bytes': manifest_bytes, 'revision': p['revision'],
        'fetch_seconds': 0.0, 'bytes_per_second': 0,
        'changed': previous != snap_id or not have_tree or bool(missing) or bool(manifest_bytes),
    }
    if p.get('warnings'):
        result['warnings'] = p['warnings']
    return {'result': result, 'manifest': manifest, 'missing': missing, 'new_manifest': new_manifest,
            'checkout': not have_tree, 'switch': previous != snap_id, 'record': record}


def apply(p, steps, opener, now=None):
    """Execute a plan() of the real run (under locked()); return its result with what the fetch took."""
    store, result, manifest = p['store'], dict(steps['result']), steps['manifest']
    snap_id = manifest['id']
    if steps['missing']:
        started = time.monotonic()
        fetched = st.fetch_objects(store, p['url'].rstrip('/'), steps['missing'], opener, p['workers'], p.get('deadline'))
        seconds = max(time.monotonic() - started, 1e-6)
        result['fetched_bytes'] += fetched
        result['fetched_objects'] = len(steps['missing'])
        result.update({'fetch_seconds': round(seconds, 3), 'bytes_per_second': int(fetched / seconds)})
    keep_manifest(store, snap_id, steps['new_manifest'])
    if steps['checkout']:
        st.checkout(store, manifest)
    if steps['switch']:
        _faults.point('activate')
        hs.activate(store, snap_id)
        hs.record_activation(store, snap_id, now or '-')
    hs.record_newest(store, manifest, result['revision'], steps.get('record'))
    return result
