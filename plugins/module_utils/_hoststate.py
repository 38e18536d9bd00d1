# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A repl host's state in its store: the one place that reads and writes it.

Private to the collection; the API may change without notice.

    current           symlink to trees/<id>, the active snapshot (moved by one rename)
    history           the ids activated, oldest first, with when
    newest            the newest snapshot applied ({created, id, revision, serial, expires}): what downgrade and
                      freshness checks compare with (serial and expires: of the newest revision record accepted)
    last_sync.json    the outcome of the last sync ({ok, id or error, time, epoch}), for snapshot_status
"""

from __future__ import annotations

import json
import os

from ._manifest import ManifestError, check_snapshot_id
from ._store import StoreError, read_optional, tree_path, write_bytes_atomic


def active_id(store):
    """Return the id the ``current`` pointer names, or None."""
    link = os.path.join(store, 'current')
    try:
        target = os.readlink(link)
    except OSError:
        return None
    name = os.path.basename(target.rstrip('/'))
    try:
        return check_snapshot_id(name)
    except ManifestError:
        return None


def activate(store, snap_id):
    """Point ``current`` at trees/<id> atomically (symlink to a temp name, then rename)."""
    if not os.path.isdir(tree_path(store, snap_id)):
        raise StoreError('snapshot %s has no complete checkout; refusing to activate it' % snap_id)
    link = os.path.join(store, 'current')
    tmp = os.path.join(store, '.current-%d' % os.getpid())
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink('trees/' + snap_id, tmp)
    os.rename(tmp, link)
    dirfd = os.open(store, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


def history(store):
    """Return the ids activated on this host, oldest first (an id may appear more than once)."""
    try:
        with open(os.path.join(store, 'history')) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    ids = []
    for line in lines:
        try:
            ids.append(check_snapshot_id(line.split(' ')[0]))
        except ManifestError:
            continue
    return ids


def record_activation(store, snap_id, when):
    path = os.path.join(store, 'history')
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError:
        data = b''
    write_bytes_atomic(path, data + ('%s %s\n' % (snap_id, when)).encode(), 0o600)


def newest_applied(store):
    """What this host applied: {created: newest build time, revision: highest revision (or None), id, serial and
    expires of the newest record accepted (0 and None before any record that expires)}, or None."""
    data = read_optional(os.path.join(store, 'newest'))
    if not data:
        return None
    try:
        d = json.loads(data)
        return {'created': d['created'], 'id': d['id'], 'revision': d.get('revision'), 'serial': d.get('serial') or 0,
                'expires': d.get('expires')}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def record_newest(store, manifest, revision=None, record=None):
    """Remember ``manifest`` (applied as ``revision``) if it is newer, and ``record``'s serial and expiry if it is
    the newest record yet (a higher revision, or the same one signed again)."""
    newest = newest_applied(store) or {'created': '', 'id': None, 'revision': None, 'serial': 0, 'expires': None}
    created = manifest.get('created') or ''
    revisions = [r for r in (revision, newest['revision']) if r is not None]
    highest = max(revisions) if revisions else None
    serial, expires = newest['serial'], newest['expires']
    if record is not None and (newest['revision'] is None or (record['revision'], record.get('serial', 0))
                               > (newest['revision'], newest['serial'])):
        serial, expires = record.get('serial', 0), record.get('expires')
    if created > newest['created'] or highest != newest['revision'] or (serial, expires) != (newest['serial'], newest['expires']):
        write_bytes_atomic(os.path.join(store, 'newest'), json.dumps(
            {'created': max(created, newest['created']), 'id': manifest['id'], 'revision': highest,
             'serial': serial, 'expires': expires}).encode(), 0o600)


def read_last_sync(store):
    """The last sync's outcome, or None."""
    data = read_optional(os.path.join(store, 'last_sync.json'))
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None


def write_last_sync(store, outcome):
    write_bytes_atomic(os.path.join(store, 'last_sync.json'), json.dumps(outcome).encode(), 0o600)
