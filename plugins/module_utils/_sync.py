# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pulling a snapshot into a repl host's store and activating it.

Private to the collection; the API may change without notice. Network access
goes through the ``opener(url)`` callable the module passes in.
"""

from __future__ import annotations

import contextlib
import json
import os

from . import _faults
from . import _manifest as mf
from . import _store as st
from ._lock import StoreLock

MAX_REF_BYTES = 4096


class SyncError(RuntimeError):
    """The sync cannot go on; the active snapshot is untouched."""


def read_url(opener, url, limit, what):
    try:
        resp = opener(url)
        data = resp.read(limit + 1)
    except Exception as exc:  # urllib, http.client and socket errors
        raise SyncError('cannot fetch %s from %s: %s' % (what, url, exc))
    if len(data) > limit:
        raise SyncError('%s at %s is larger than %d bytes; refused' % (what, url, limit))
    return data


def previous_id(store):
    """The snapshot that was active before the current one, from the host's history."""
    current = st.active_id(store)
    for snap_id in reversed(st.history(store)):
        if snap_id != current:
            return snap_id
    raise SyncError('there is no previous snapshot in %s/history to go back to' % store)


def resolve_id(opener, base_url, snapshot, store=None):
    if snapshot == 'previous':
        return previous_id(store)
    if snapshot != 'latest':
        try:
            return mf.check_snapshot_id(snapshot, 'snapshot')
        except mf.ManifestError as exc:
            raise SyncError(str(exc))
    url = base_url + '/refs/latest'
    data = read_url(opener, url, MAX_REF_BYTES, 'the latest snapshot id')
    try:
        return mf.check_snapshot_id(data.decode('ascii', 'replace').strip(), 'the id at %s' % url)
    except mf.ManifestError as exc:
        raise SyncError(str(exc))


def load_manifest(store, opener, base_url, snap_id, limits, check_mode):
    """Return (manifest, fetched bytes): from the host's store when present, else from the server."""
    local = st.manifest_path(store, snap_id)
    if os.path.exists(local):
        with open(local, 'rb') as f:
            data = f.read()
        fetched = 0
    else:
        url = '%s/snapshots/%s.json' % (base_url, snap_id)
        data = read_url(opener, url, limits['max_manifest_size'], 'manifest of snapshot %s' % snap_id)
        fetched = len(data)
    try:
        manifest = mf.load_manifest(data, snap_id, limits.get('max_object_size'), limits.get('max_snapshot_size'))
    except mf.ManifestError as exc:
        raise SyncError('snapshot %s refused: %s' % (snap_id, exc))
    if fetched and not check_mode:
        st.makedirs(os.path.dirname(local), 0o700)
        st.write_bytes_atomic(local, data, 0o600)
    return manifest, fetched


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


def sync(p, opener, check_mode=False, now=None):
    """Fetch, verify, check out and activate a snapshot; return the result dict.

    Call it while holding locked(). Any failure raises SyncError (or
    StoreError) before ``current`` moves, so the active snapshot stays as it
    was. Leftovers of a killed run are removed first, so a run after a crash
    converges.
    """
    if not check_mode:
        st.cleanup_leftovers(p['store'])
    return _sync(p, opener, check_mode, now)


def _sync(p, opener, check_mode, now):
    store = p['store']
    base_url = p['url'].rstrip('/')
    snap_id = resolve_id(opener, base_url, p['snapshot'], store)
    previous = st.active_id(store)
    limits = {'max_manifest_size': p['max_manifest_size'], 'max_object_size': p.get('max_object_size'),
              'max_snapshot_size': p.get('max_snapshot_size')}
    manifest, manifest_bytes = load_manifest(store, opener, base_url, snap_id, limits, check_mode)
    have_tree = os.path.isdir(st.tree_path(store, snap_id))
    missing = {} if have_tree else st.missing_objects(store, manifest['entries'])
    totals = mf.totals(manifest['entries'])
    result = {
        'id': snap_id, 'previous': previous, 'path': st.tree_path(store, snap_id),
        'missing_objects': len(missing), 'missing_bytes': sum(missing.values()),
        'reused_objects': totals['objects'] - len(missing), 'files': totals['files'], 'bytes': totals['bytes'],
        'ecosystems': manifest.get('ecosystems', []), 'created': manifest.get('created'),
        'fetched_objects': 0, 'fetched_bytes': manifest_bytes,
        'changed': previous != snap_id or not have_tree or bool(missing) or bool(manifest_bytes),
    }
    if check_mode:
        return result
    if missing:
        result['fetched_bytes'] += st.fetch_objects(store, base_url, missing, opener, p['workers'])
        result['fetched_objects'] = len(missing)
    st.checkout(store, manifest)
    if previous != snap_id:
        _faults.point('activate')
        st.activate(store, snap_id)
        st.record_activation(store, snap_id, now or '-')
    return result


def manifest_summary(manifest):
    return json.dumps({k: v for k, v in manifest.items() if k != 'entries'}, sort_keys=True)
