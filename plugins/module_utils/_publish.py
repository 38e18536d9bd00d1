# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Revisions: every publish of a snapshot is a new, signed, numbered record (as CernVM-FS revisions).

Private to the collection; the API may change without notice.

The builder's store holds, besides ``refs/latest`` (the published id, as
before):

* ``refs/revisions/<N>.json`` (+ ``.sig``): one record per publish,
  ``{"type": "pkgcache-revision", "revision": N, "id": ..., "published": ...,
  "reason": "build" | "rollback", "serial": S, "issued": ..., "expires": ...}``,
  signed with the manifest key;
* ``refs/published``: the number N of the newest record.

A record expires (``expires``, ``revision_ttl`` seconds after ``issued``;
7 days by default), as CernVM-FS's ``.cvmfspublished`` and TUF's timestamp
role do: a host refuses an expired record, so a mirror (or a man in the
middle) frozen on an old record is noticed instead of hiding newer snapshots
for ever. The builder signs its current record again before it expires
(resign(), on a timer): the same revision and snapshot, a later ``issued`` and
``expires`` and a higher ``serial``, so hosts take it as fresh and refuse an
earlier signing of the same revision replayed. Only the current record is
ever rewritten, and only that way.

A host reads ``refs/published``, then record N and its signature, which
cannot change under it. It never applies a revision lower than one it
applied, so a replayed older record (or manifest) is refused, while a
rollback, which publishes the earlier snapshot as a new, higher revision,
is taken like any other update.

A rollback also sets ``refs/hold``: builds keep storing snapshots but do not
publish them until one is forced (``force``), so the next ``site.yml`` does
not put the bad snapshot back.

``run_module()`` is snapshot_publish's main(): rollback() decides once, with
check mode writing nothing of what it decided.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import os
import re
import tempfile
import time

from . import _manifest as mf
from . import _module
from . import _signing
from . import _store as st
from ._lock import LockError, StoreLock
from ._fill import BuildError

TYPE = 'pkgcache-revision'
MAX_RECORD_BYTES = 4096
_NUMBER = re.compile(r'^[1-9][0-9]{0,17}$')
_TIME = re.compile(r'^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$')
# Seconds a revision record stays valid after it is (re)signed.
DEFAULT_TTL = 7 * 86400
# The shortest revision_ttl accepted: well above the clock skew hosts allow (_sync.ALLOWED_SKEW).
MIN_TTL = 3600

# snapshot_publish's arguments.
ARGUMENT_SPEC = dict(
    store=dict(type='path', required=True),
    snapshot=dict(type='str'),
    hold=dict(type='bool', default=True),
    signing_key=dict(type='path', no_log=False),
    lock_timeout=dict(type='int', default=0),
    revision_ttl=dict(type='int', default=DEFAULT_TTL),
)


def argument_spec():
    return copy.deepcopy(ARGUMENT_SPEC)


def record_path(store, revision):
    return os.path.join(store, 'refs', 'revisions', '%d.json' % revision)


def parse_number(data, what):
    text = (data or b'').decode('ascii', 'replace').strip()
    if not _NUMBER.match(text):
        raise ValueError('%s is not a revision number: %r' % (what, text[:40]))
    return int(text)


def iso(epoch):
    """``epoch`` as a record writes times: UTC, whole seconds, ISO 8601 with Z."""
    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def parse_time(value, what):
    """The Unix time of a record's ``issued`` or ``expires`` (as iso() writes it); ValueError otherwise."""
    if not isinstance(value, str) or not _TIME.match(value):
        raise ValueError('%s is not a time like 2026-01-01T00:00:00Z: %.40r' % (what, value))
    try:
        return int(datetime.datetime.strptime(value, '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=datetime.timezone.utc).timestamp())
    except ValueError as exc:
        raise ValueError('%s is not a valid time: %s' % (what, exc))


def epoch_of(now):
    """The Unix time of a run's ``now`` (ISO 8601, as _module.utc_now() gives it); the clock when it is not one."""
    try:
        when = datetime.datetime.fromisoformat(now)
    except (TypeError, ValueError):
        return int(time.time())
    return int((when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)).timestamp())


def parse_record(data, revision, what):
    """The record dict from its bytes; it must be record ``revision`` (if given) and name a valid id.

    ``serial`` (a whole number), ``issued`` and ``expires`` are checked when present: records that an earlier
    release published have none of them (see expires_epoch()).
    """
    try:
        record = json.loads(data)
    except ValueError as exc:
        raise ValueError('%s is not JSON: %s' % (what, exc))
    if not isinstance(record, dict) or record.get('type') != TYPE or not isinstance(record.get('revision'), int):
        raise ValueError('%s is not a revision record' % what)
    if revision is not None and record['revision'] != revision:
        raise ValueError('%s says revision %r, expected %d' % (what, record['revision'], revision))
    mf.check_snapshot_id(record.get('id'), '%s id' % what)
    serial = record.get('serial', 0)
    if not isinstance(serial, int) or isinstance(serial, bool) or serial < 0:
        raise ValueError('%s has a serial that is not a whole number: %.40r' % (what, serial))
    for key in ('issued', 'expires'):
        if key in record:
            parse_time(record[key], '%s %s' % (what, key))
    return record


def serial(record):
    """The record's serial: 0 for a record of an earlier release, which had none."""
    return record.get('serial', 0)


def expires_epoch(record):
    """The Unix time the record expires, or None for a record of an earlier release (no ``expires``)."""
    return parse_time(record['expires'], 'expires') if 'expires' in record else None


def stamp(record, epoch, ttl):
    """``record`` signed again at ``epoch``: the same revision and snapshot, the next serial, valid ``ttl`` seconds."""
    return dict(record, serial=serial(record) + 1, issued=iso(epoch), expires=iso(epoch + ttl))


def needs_refresh(record, epoch, ttl):
    """A record with no expiry, or with less than half of ``ttl`` left at ``epoch``, is signed again by a publish."""
    expires = expires_epoch(record)
    return expires is None or expires - epoch < ttl / 2.0


def write_record(p, store, record):
    """Write ``record`` signed with ``p['signing_key']`` (unsigned without one) at its path, through ``p['run']``.

    The record and its signature are made under temporary names and renamed in, the signature first: a reader sees
    either the old pair or the new one, except between the two renames (a host that reads then fails that sync on
    the signature and takes the next one).
    """
    path = record_path(store, record['revision'])
    st.makedirs(os.path.dirname(path))
    data = json.dumps(record, sort_keys=True).encode('utf-8')
    if not p.get('signing_key'):
        st.write_bytes_atomic(path, data)
        if os.path.lexists(path + '.sig'):
            os.unlink(path + '.sig')  # a signature of the record it replaced
        return
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.record-', suffix='.json')
    try:
        with os.fdopen(fd, 'wb') as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        try:
            _signing.sign(p['run'], p['signing_key'], tmp)
        except _signing.SignatureError as exc:
            raise BuildError(str(exc))
        os.rename(tmp + '.sig', path + '.sig')
        os.rename(tmp, path)
        tmp = None
    finally:
        for leftover in ([tmp, tmp + '.sig'] if tmp else []):
            if os.path.lexists(leftover):
                os.unlink(leftover)


def resign(p, store, epoch, run, check_mode=False):
    """Sign the store's current record again (stamp()): what the builder's timer runs before the record expires.

    Call it under the store lock. Nothing else changes: not refs/published, refs/latest nor a rollback's hold.
    Returns {changed, revision, id, serial, issued, expires}.
    """
    cur = current(store)
    if cur is None:
        raise BuildError('nothing is published with revisions in %s (no valid refs/published and record); '
                         'there is no record to sign again' % store)
    ttl = p.get('revision_ttl') or DEFAULT_TTL
    new = stamp(cur, epoch, ttl)
    if not check_mode:
        write_record(dict(p, run=run), store, new)
    return {'changed': True, 'revision': new['revision'], 'id': new['id'], 'serial': new['serial'],
            'issued': new['issued'], 'expires': new['expires']}


def current(store):
    """The newest record of the store (a dict), or None if nothing was published with revisions."""
    try:
        number = parse_number(st.read_optional(os.path.join(store, 'refs', 'published')), 'refs/published')
        return parse_record(st.read_optional(record_path(store, number)), number, 'revision %d' % number)
    except (ValueError, TypeError, mf.ManifestError):
        return None


def records(store):
    """Every record of the store, oldest first."""
    out = []
    directory = os.path.join(store, 'refs', 'revisions')
    for name in os.listdir(directory) if os.path.isdir(directory) else []:
        m = re.match(r'^([1-9][0-9]*)\.json$', name)
        if not m:
            continue
        try:
            out.append(parse_record(st.read_optional(os.path.join(directory, name)), int(m.group(1)), name))
        except (ValueError, TypeError, mf.ManifestError):
            continue
    return sorted(out, key=lambda r: r['revision'])


def held(store):
    data = st.read_optional(os.path.join(store, 'refs', 'hold'))
    return data.decode('ascii', 'replace').strip() if data else None


def previous_id(store):
    """The snapshot built before the published one: the newest earlier record that names another snapshot.

    After a rollback, "earlier" is counted from the build that first published
    the rolled-back snapshot, so a second rollback goes further back instead
    of returning to the snapshot the first one left.
    """
    recs = records(store)
    cur = current(store)
    if cur is None:
        raise BuildError('nothing is published with revisions in %s/refs/revisions; name the snapshot to publish' % store)
    anchor = cur['revision']
    if cur.get('reason') == 'rollback':
        first = [r['revision'] for r in recs if r['revision'] < anchor and r['id'] == cur['id'] and r.get('reason') == 'build']
        anchor = first[-1] if first else anchor
    for r in reversed(recs):
        if r['revision'] < anchor and r['id'] != cur['id']:
            return r['id']
    raise BuildError('there is no snapshot published before %s in %s/refs/revisions to go back to' % (cur['id'], store))


def ensure_signed(p, path, run, check_mode, what):
    """Sign ``path`` with ``p['signing_key']`` unless it has a valid signature by that key; return True if it signed."""
    if not p.get('signing_key'):
        return False
    scratch = p.get('work_dir') if p.get('work_dir') and os.path.isdir(p['work_dir']) else tempfile.gettempdir()
    try:
        return _signing.ensure(run, p['signing_key'], path, scratch, check_mode, what)
    except _signing.SignatureError as exc:
        raise BuildError(str(exc))


def publish(p, store, snap_id, now, run, check_mode, reason='build', hold=True):
    """Make ``snap_id`` the published snapshot as a new revision; return {changed, revision, held}.

    A build (reason ``build``) publishes nothing while a rollback's hold is on,
    unless ``p['force']``, which also lifts the hold. A rollback sets it if
    ``hold`` (and lifts it if not).
    Publishing the snapshot that is already published adds no revision; its
    record is signed again (stamp()) when it has no expiry or less than half of
    ``p['revision_ttl']`` left, so a builder that runs often needs no timer.
    The record's ``issued`` and ``expires`` count from ``now``.
    """
    cur = current(store)
    same = bool(cur) and cur['id'] == snap_id and st.read_latest(store) == snap_id
    held_at = held(store)
    hold_path = os.path.join(store, 'refs', 'hold')
    if reason == 'build' and held_at and not p.get('force'):
        return {'changed': False, 'revision': cur['revision'] if cur else None, 'held': held_at}
    new_hold = snap_id if reason == 'rollback' and hold else None
    changed = not same or held_at != new_hold
    revision = cur['revision'] if same else max([r['revision'] for r in records(store)] + [0]) + 1
    epoch, ttl = epoch_of(now), p.get('revision_ttl') or DEFAULT_TTL
    refresh = same and needs_refresh(cur, epoch, ttl)
    if same and not refresh:
        # A record signed with an earlier key (or not at all) is signed again: hosts that trust the new key only
        # would refuse every sync.
        changed = ensure_signed(p, record_path(store, revision), run, check_mode, 'revision record %d' % revision) or changed
    changed = changed or refresh
    if changed and not check_mode:
        if refresh:
            write_record(dict(p, run=run), store, stamp(cur, epoch, ttl))
        if not same:
            record = {'type': TYPE, 'revision': revision, 'id': snap_id, 'published': now, 'reason': reason}
            write_record(dict(p, run=run), store, stamp(record, epoch, ttl))
            st.write_bytes_atomic(os.path.join(store, 'refs', 'latest'), (snap_id + '\n').encode())
            st.write_bytes_atomic(os.path.join(store, 'refs', 'published'), ('%d\n' % revision).encode())
        if new_hold:
            st.write_bytes_atomic(hold_path, (new_hold + '\n').encode())
        elif held_at is not None:
            os.unlink(hold_path)
    return {'changed': changed, 'revision': revision, 'held': new_hold}


def listing(store):
    """The store's published revisions, newest first, with each snapshot's size and packages per ecosystem."""
    cur = current(store)
    out = []
    for r in reversed(records(store)):
        row = dict(r, current=bool(cur and cur['revision'] == r['revision']))
        try:
            m = st.read_manifest(store, r['id'])[1]
        except (OSError, mf.ManifestError):
            m = None
        if m is None:
            row['collected'] = True
        else:
            row.update(mf.totals(m['entries']))
            row['created'] = m.get('created')
            row['packages'] = dict((e, len((m.get(e) or {}).get('packages') or [])) for e in m.get('ecosystems') or [])
        out.append(row)
    return out


def rollback(p, run, check_mode=False, now=None):
    """snapshot_publish: publish ``p['snapshot']`` (an id or ``previous``) as a new revision, or only list."""
    store = p['store']
    result = {'changed': False}
    if p.get('snapshot'):
        snap_id = previous_id(store) if p['snapshot'] == 'previous' else mf.check_snapshot_id(p['snapshot'], 'snapshot')
        with contextlib.nullcontext() if check_mode else StoreLock(store, p.get('lock_timeout') or 0):
            if not os.path.exists(st.manifest_path(store, snap_id)):
                raise BuildError('snapshot %s is not in the store %s (collected?); it cannot be published' % (snap_id, store))
            signed = ensure_signed(p, st.manifest_path(store, snap_id), run, check_mode, 'manifest %s' % snap_id)
            pub = publish(p, store, snap_id, now, run, check_mode, reason='rollback', hold=p.get('hold', True))
        result.update({'changed': pub['changed'] or signed, 'id': snap_id, 'revision': pub['revision'], 'held': pub['held']})
    else:
        cur = current(store)
        if cur:
            result.update({'id': cur['id'], 'revision': cur['revision']})
        result['held'] = held(store)
    result['revisions'] = listing(store)
    return result


def resign_store(p, run, epoch=None):
    """What the builder's pkgcache-resign command runs: resign() under the store lock.

    ``p``: store, signing_key, revision_ttl, lock_timeout. ``epoch`` defaults to the clock.
    """
    with StoreLock(p['store'], p.get('lock_timeout') or 0):
        return resign(p, p['store'], int(time.time()) if epoch is None else epoch, run)


def run_module(module):
    """snapshot_publish's main(): roll back to (publish again) ``snapshot``, or list the revisions."""
    _module.require_at_least(module, 'revision_ttl', MIN_TTL)
    try:
        result = rollback(module.params, _module.runner(module), check_mode=module.check_mode, now=_module.utc_now())
    except (BuildError, mf.ManifestError, _signing.SignatureError, LockError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)
