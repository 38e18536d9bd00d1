"""Revision records that expire: a frozen mirror is refused once its record expires, the builder signs its current
record again (a higher serial, the same revision and snapshot), and a rollback's hold and the no-downgrade rule
still hold."""

import json
import os
import shutil

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _hoststate as hs
from ansible_collections.pkgcache.overlay.plugins.module_utils import _publish as pub
from ansible_collections.pkgcache.overlay.plugins.module_utils import _signing
from ansible_collections.pkgcache.overlay.plugins.module_utils import _status
from ansible_collections.pkgcache.overlay.plugins.module_utils import _sync
from ansible_collections.pkgcache.overlay.plugins.module_utils._fill import BuildError

from test_publish import build, key, run, store  # noqa: F401 pylint: disable=unused-import

DAY = 86400


def at(text):
    """The Unix time of ``2026-01-08T00:00:00Z``-style text."""
    return pub.parse_time(text, 'test time')


def opener(u):
    return open(u[len('file://'):], 'rb')


def sync(host, served, allowed, clock, **kw):
    p = dict({'url': 'file://' + served, 'snapshot': 'latest', 'store': host, 'workers': 2,
              'max_manifest_size': 1 << 20, 'allowed_signers': allowed, 'now_epoch': clock}, **kw)
    return _sync.sync(p, opener, run=run, now='t')


def record_files(served, revision):
    path = pub.record_path(served, revision)
    return open(path, 'rb').read(), open(path + '.sig', 'rb').read()


def put_record(served, revision, files):
    path = pub.record_path(served, revision)
    open(path, 'wb').write(files[0])
    open(path + '.sig', 'wb').write(files[1])


def verify_record(served, revision, allowed):
    data, sig = record_files(served, revision)
    _signing.verify(run, allowed, data, sig, 'record %d' % revision)
    return json.loads(data)


def test_a_mirror_frozen_on_an_old_record_is_refused_once_it_expires_and_the_host_keeps_its_snapshot(tmp_path, key):
    v1 = build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00', key[0])  # revision 1, expires 2026-01-08
    served, host = store(tmp_path), str(tmp_path / 'host')
    frozen = str(tmp_path / 'frozen')
    shutil.copytree(served, frozen)  # a mirror that stops replicating here
    os.makedirs(host)
    assert sync(host, frozen, key[1], at('2026-01-02T00:00:00Z'))['id'] == v1['id']
    v2 = build(tmp_path, '2.0', '2026-01-09T00:00:00+00:00', key[0])
    expires = at('2026-01-08T00:00:00Z')
    # Within the allowed clock skew the record still counts; past it, it is refused with what names it.
    assert sync(host, frozen, key[1], expires + _sync.ALLOWED_SKEW)['id'] == v1['id']
    with pytest.raises(_sync.SyncError) as exc:
        sync(host, frozen, key[1], expires + _sync.ALLOWED_SKEW + 1)
    msg = str(exc.value)
    assert 'revision record 1 at file://%s/refs/revisions/1.json' % frozen in msg
    assert 'expired at 2026-01-08T00:00:00Z; it is now 2026-01-08T00:05:01Z (300 s of clock skew allowed)' in msg
    assert hs.active_id(host) == v1['id']
    # Status and metrics show when the record the host took expires.
    status = _status.collect(host, '', [], {}, 'now')
    assert status['record'] == {'revision': 1, 'serial': 1, 'expires': '2026-01-08T00:00:00Z', 'expires_epoch': expires}
    assert 'pkgcache_revision_expires_timestamp{host="h1"} %d\n' % expires in _status.prometheus(status, 'h1')
    # With the builder as a second mirror, the host fails over to it and takes v2.
    mirrors = ['file://' + frozen, 'file://' + served]
    first = [k for k in ('a', 'b', 'c', 'd', 'e', 'f') if _sync.mirror_order(mirrors, k)[0] == mirrors[0]][0]
    r = sync(host, frozen, key[1], at('2026-01-10T00:00:00Z'), url=None, mirrors=mirrors, mirror_key=first)
    assert r['id'] == v2['id'] and r['revision'] == 2 and hs.active_id(host) == v2['id']
    assert [f['url'] for f in r['failed_mirrors']] == [mirrors[0]] and 'expired at' in r['failed_mirrors'][0]['error']
    assert _status.record_status(host)['expires'] == '2026-01-16T00:00:00Z'


def test_a_resigned_current_record_is_accepted_and_an_earlier_signing_replayed_is_refused(tmp_path, key):
    v1 = build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00', key[0])
    served, host = store(tmp_path), str(tmp_path / 'host')
    os.makedirs(host)
    assert sync(host, served, key[1], at('2026-01-02T00:00:00Z'))['revision'] == 1
    first = record_files(served, 1)
    refs = dict((n, open(os.path.join(served, 'refs', n)).read()) for n in ('latest', 'published'))
    # The builder's timer, on day 6: the same revision and snapshot, the next serial, a fresh expiry, a valid signature.
    check = pub.resign({'signing_key': key[0]}, served, at('2026-01-06T00:00:00Z'), run, check_mode=True)
    assert record_files(served, 1) == first and check['serial'] == 2
    got = pub.resign({'signing_key': key[0]}, served, at('2026-01-06T00:00:00Z'), run)
    assert got == dict(check) == {'changed': True, 'revision': 1, 'id': v1['id'], 'serial': 2,
                                  'issued': '2026-01-06T00:00:00Z', 'expires': '2026-01-13T00:00:00Z'}
    rec = verify_record(served, 1, key[1])
    old = json.loads(first[0])
    assert rec == dict(old, serial=2, issued='2026-01-06T00:00:00Z', expires='2026-01-13T00:00:00Z')
    assert dict((n, open(os.path.join(served, 'refs', n)).read()) for n in refs) == refs
    assert not [n for n in os.listdir(os.path.dirname(pub.record_path(served, 1))) if n.startswith('.')]
    # Past the first signing's expiry, the host takes the new one: nothing moves, the expiry it knows does.
    r = sync(host, served, key[1], at('2026-01-10T00:00:00Z'))
    assert r['id'] == v1['id'] and r['revision'] == 1 and r['fetched_objects'] == 0
    assert hs.newest_applied(host)['serial'] == 2 and _status.record_status(host)['expires'] == '2026-01-13T00:00:00Z'
    # The first signing, replayed while it is still valid: refused (an attacker cannot roll the expiry back).
    put_record(served, 1, first)
    with pytest.raises(_sync.SyncError, match='revision record 1 at .* is serial 1, but this host already took serial 2 '
                                              'of that revision .*refusing a replayed earlier signing'):
        sync(host, served, key[1], at('2026-01-03T00:00:00Z'))
    # A record whose expiry was edited is not the builder's: its signature fails.
    put_record(served, 1, (json.dumps(dict(rec, expires='2027-01-01T00:00:00Z'), sort_keys=True).encode(), first[1]))
    with pytest.raises(_sync.SyncError, match='bad signature'):
        sync(host, served, key[1], at('2026-01-10T00:00:00Z'))
    assert hs.active_id(host) == v1['id'] and hs.newest_applied(host)['serial'] == 2


def test_a_rollback_record_signed_again_keeps_the_hold_and_older_revisions_stay_refused(tmp_path, key):
    v1 = build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00', key[0])
    v2 = build(tmp_path, '2.0', '2026-01-08T00:00:00+00:00', key[0])
    served, host = store(tmp_path), str(tmp_path / 'host')
    os.makedirs(host)
    assert sync(host, served, key[1], at('2026-01-08T01:00:00Z'))['revision'] == 2
    rolled = pub.rollback({'store': served, 'snapshot': 'previous', 'signing_key': key[0]}, run,
                          now='2026-01-09T00:00:00+00:00')
    assert (rolled['id'], rolled['revision'], rolled['held']) == (v1['id'], 3, v1['id'])
    assert sync(host, served, key[1], at('2026-01-09T01:00:00Z'))['id'] == v1['id']
    got = pub.resign_store({'store': served, 'signing_key': key[0]}, run, epoch=at('2026-01-14T00:00:00Z'))
    assert (got['revision'], got['id'], got['serial'], got['expires']) == (3, v1['id'], 2, '2026-01-21T00:00:00Z')
    assert verify_record(served, 3, key[1])['reason'] == 'rollback'
    # The hold stays: a build of v2's inputs is stored but not published.
    assert pub.held(served) == v1['id']
    held = build(tmp_path, '2.0', '2026-01-15T00:00:00+00:00', key[0])
    assert held['held'] == v1['id'] and pub.current(served)['revision'] == 3
    # The host takes the re-signed rollback record after the first signing expired.
    r = sync(host, served, key[1], at('2026-01-18T00:00:00Z'))
    assert (r['id'], r['revision']) == (v1['id'], 3) and hs.newest_applied(host)['serial'] == 2
    # Revision 2 (v2, newer build, validly signed) replayed: refused, also with its own (later) re-signing.
    open(os.path.join(served, 'refs', 'published'), 'w').write('2\n')
    with pytest.raises(_sync.SyncError, match='publishes revision 2 .* already applied revision 3; refusing a replayed'):
        sync(host, served, key[1], at('2026-01-10T00:00:00Z'))
    assert hs.active_id(host) == v1['id']
    assert v2['id'] != v1['id']


def test_a_publish_of_the_same_snapshot_signs_its_record_again_only_past_half_its_ttl(tmp_path, key):
    v1 = build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00', key[0], revision_ttl=2 * DAY)
    served = store(tmp_path)
    assert pub.current(served)['expires'] == '2026-01-03T00:00:00Z'
    same = build(tmp_path, '1.0', '2026-01-01T12:00:00+00:00', key[0], revision_ttl=2 * DAY)
    assert not same['changed'] and pub.current(served)['serial'] == 1
    late = build(tmp_path, '1.0', '2026-01-02T01:00:00+00:00', key[0], revision_ttl=2 * DAY)
    assert late['changed'] and late['id'] == v1['id'] and late['revision'] == 1
    rec = verify_record(served, 1, key[1])
    assert (rec['serial'], rec['expires']) == (2, '2026-01-04T01:00:00Z')


def test_resign_needs_a_published_record(tmp_path, key):
    os.makedirs(str(tmp_path / 'empty'))
    with pytest.raises(BuildError, match='nothing is published with revisions in .*no record to sign again'):
        pub.resign_store({'store': str(tmp_path / 'empty'), 'signing_key': key[0]}, run)


def old_record(served, revision, snap_id, key_path):
    """A record as releases before expiry wrote it (no serial, issued, expires), signed."""
    path = pub.record_path(served, revision)
    open(path, 'w').write(json.dumps({'type': pub.TYPE, 'revision': revision, 'id': snap_id, 'published': 'x',
                                      'reason': 'build'}, sort_keys=True))
    _signing.sign(run, key_path, path)


def test_a_record_without_expiry_is_taken_with_a_warning_until_the_host_has_taken_one_that_expires(tmp_path, key):
    v1 = build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00', key[0])
    served = store(tmp_path)
    old_record(served, 1, v1['id'], key[0])
    fresh_host = str(tmp_path / 'fresh')
    os.makedirs(fresh_host)
    r = sync(fresh_host, served, key[1], at('2027-01-01T00:00:00Z'))
    assert r['id'] == v1['id'] and any('carries no expiry' in w for w in r['warnings'])
    assert _status.record_status(fresh_host)['expires'] is None
    # A host that took a record that expires refuses one without (a downgrade of the protocol), at any revision.
    host = str(tmp_path / 'host')
    os.makedirs(host)
    pub.resign({'signing_key': key[0]}, served, at('2026-01-01T00:00:00Z'), run)
    assert sync(host, served, key[1], at('2026-01-02T00:00:00Z'))['revision'] == 1
    v2 = build(tmp_path, '2.0', '2026-01-03T00:00:00+00:00', key[0])
    old_record(served, 2, v2['id'], key[0])
    with pytest.raises(_sync.SyncError, match='revision record 2 at .* carries no expiry, but this host already took '
                                              'records that expire .*2026-01-08T00:00:00Z'):
        sync(host, served, key[1], at('2026-01-04T00:00:00Z'))
    assert hs.active_id(host) == v1['id']


@pytest.mark.parametrize('field, value, error', [
    ('expires', '2026-01-08 00:00', 'expires is not a time like'),
    ('expires', '2026-02-30T00:00:00Z', 'expires is not a valid time'),
    ('serial', -1, 'serial that is not a whole number'),
    ('serial', '2', 'serial that is not a whole number'),
])
def test_a_record_with_a_malformed_expiry_or_serial_is_refused_by_name(tmp_path, field, value, error):
    v1 = build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00')  # unsigned: the parse is what refuses
    served, host = store(tmp_path), str(tmp_path / 'host')
    os.makedirs(host)
    path = pub.record_path(served, 1)
    rec = json.loads(open(path).read())
    open(path, 'w').write(json.dumps(dict(rec, **{field: value})))
    p = {'url': 'file://' + served, 'snapshot': 'latest', 'store': host, 'workers': 2, 'max_manifest_size': 1 << 20,
         'now_epoch': at('2026-01-02T00:00:00Z')}
    with pytest.raises(_sync.SyncError, match=error):
        _sync.sync(p, opener, now='t')
    assert hs.active_id(host) is None and v1['id']


def test_status_without_a_record_that_expires_writes_no_expiry_metric(tmp_path):
    host = str(tmp_path / 'host')
    os.makedirs(host)
    status = _status.collect(host, '', [], {}, 'now')
    assert status['record'] is None and 'pkgcache_revision_expires_timestamp' not in _status.prometheus(status, 'h1')
