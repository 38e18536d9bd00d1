"""Revisions: signed publish records, rollback as a new revision, the hold, replay refusal, max_age."""

import json
import os
import subprocess

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _builder as bd
from ansible_collections.pkgcache.overlay.plugins.module_utils import _module
from ansible_collections.pkgcache.overlay.plugins.module_utils import _publish as pub
from ansible_collections.pkgcache.overlay.plugins.module_utils import _signing
from ansible_collections.pkgcache.overlay.plugins.module_utils import _hoststate as hs
from ansible_collections.pkgcache.overlay.plugins.module_utils import _sync

from helpers import HOST_CLOCK, FakePip, disk, params, run_module


def run(argv, env=None, data=None):
    """ssh-keygen, with the collection's runner shape."""
    proc = subprocess.run(argv, input=data, capture_output=True, check=False)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


@pytest.fixture
def key(tmp_path):
    path = str(tmp_path / 'key')
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', path], check=True)
    allowed = str(tmp_path / 'allowed_signers')
    with open(allowed, 'w') as f:
        f.write(_signing.allowed_signers_line(open(path + '.pub').read()) + '\n')
    return path, allowed


def build(tmp_path, version, now, key=None, **kw):
    p = dict(params(tmp_path, ['six']), signing_key=key, **kw)
    pip = FakePip({'six': (version, 'six ' + version)})

    def tools(argv, env=None, data=None):
        return run(argv, env, data) if argv[0] == 'ssh-keygen' else pip(argv, env)
    return bd.build(p, tools, now=now)


def store(tmp_path):
    return str(tmp_path / 'store')


def test_every_publish_is_a_signed_numbered_record_and_a_rollback_is_a_higher_one(tmp_path, key):
    v1 = build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00', key[0])
    v2 = build(tmp_path, '2.0', '2026-01-08T00:00:00+00:00', key[0])
    assert (v1['revision'], v2['revision']) == (1, 2)
    again = build(tmp_path, '2.0', '2026-01-08T01:00:00+00:00', key[0])
    assert again['revision'] == 2 and not again['changed']  # the same snapshot: no new revision
    rec = json.loads(open(pub.record_path(store(tmp_path), 2)).read())
    assert rec == {'type': pub.TYPE, 'revision': 2, 'id': v2['id'], 'published': '2026-01-08T00:00:00+00:00',
                   'reason': 'build', 'serial': 1, 'issued': '2026-01-08T00:00:00Z', 'expires': '2026-01-15T00:00:00Z'}
    _signing.verify(run, key[1], open(pub.record_path(store(tmp_path), 2), 'rb').read(),
                    open(pub.record_path(store(tmp_path), 2) + '.sig', 'rb').read(), 'record')
    r = pub.rollback({'store': store(tmp_path), 'snapshot': 'previous', 'signing_key': key[0]}, run, now='t3')
    assert (r['id'], r['revision'], r['held'], r['changed']) == (v1['id'], 3, v1['id'], True)
    assert [(x['revision'], x['id'], x['reason'], x['current']) for x in r['revisions']] == [
        (3, v1['id'], 'rollback', True), (2, v2['id'], 'build', False), (1, v1['id'], 'build', False)]
    assert r['revisions'][0]['packages'] == {'pip': 1} and r['revisions'][0]['files'] == 1
    assert pub.rollback({'store': store(tmp_path), 'snapshot': v1['id'], 'signing_key': key[0]}, run, now='t4')['changed'] is False


def test_a_rollback_sticks_until_a_build_is_forced(tmp_path):
    v1 = build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00')
    v2 = build(tmp_path, '2.0', '2026-01-08T00:00:00+00:00')
    pub.rollback({'store': store(tmp_path), 'snapshot': v1['id']}, run, now='t3')
    # site.yml again: the build finds v2's key, but the hold keeps v1 published.
    held = build(tmp_path, '2.0', '2026-01-09T00:00:00+00:00')
    assert held['id'] == v2['id'] and held['held'] == v1['id'] and not held['changed']
    assert open(os.path.join(store(tmp_path), 'refs', 'latest')).read().strip() == v1['id']
    forced = build(tmp_path, '2.0', '2026-01-09T00:00:00+00:00', force=True)
    assert forced['changed'] and forced['revision'] == 4 and forced['held'] is None
    assert pub.held(store(tmp_path)) is None


def test_unchanged_inputs_within_max_age_skip_the_build_and_ask_the_index_nothing(tmp_path):
    first = build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00', max_age=7 * 86400)
    pip = FakePip({'six': ('9.9', 'newer')})
    p = dict(params(tmp_path, ['six']), max_age=7 * 86400)
    skipped = bd.build(p, pip, now='2026-01-03T00:00:00+00:00')
    assert pip.calls == [] and skipped['not_rebuilt'] and skipped['id'] == first['id'] and not skipped['changed']
    # Less than half of the record's 7 days left: the same revision is signed again (a fresh expiry), still no build.
    again = bd.build(p, pip, now='2026-01-05T00:00:00+00:00')
    assert pip.calls == [] and again['not_rebuilt'] and again['changed'] and again['revision'] == first['revision']
    rec = pub.current(store(tmp_path))
    assert (rec['serial'], rec['issued'], rec['expires']) == (2, '2026-01-05T00:00:00Z', '2026-01-12T00:00:00Z')
    assert rec['published'] == '2026-01-01T00:00:00+00:00'
    assert [x['name'] for x in skipped['packages']] == ['six'] and skipped['ecosystems']['pip']['requested'] == ['six']
    # Older than max_age, other inputs, or forced: built again.
    assert not bd.build(p, pip, now='2026-01-09T00:00:00+00:00')['not_rebuilt']
    assert not bd.build(dict(p, packages=['six', 'idna']), pip, now='2026-01-09T01:00:00+00:00')['not_rebuilt']
    assert not bd.build(dict(p, force=True), pip, now='2026-01-09T02:00:00+00:00')['not_rebuilt']


def test_a_host_refuses_a_replayed_older_revision_and_takes_a_rollback(tmp_path, key):
    v1 = build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00', key[0])
    v2 = build(tmp_path, '2.0', '2026-01-08T00:00:00+00:00', key[0])
    served, host = store(tmp_path), str(tmp_path / 'host')
    url = 'file://' + served

    def sync(**kw):
        return _sync.sync(dict({'url': url, 'snapshot': 'latest', 'store': host, 'workers': 2, 'max_manifest_size': 1 << 20,
                                'allowed_signers': key[1], 'now_epoch': HOST_CLOCK}, **kw),
                          lambda u: open(u[len('file://'):], 'rb'), run=run)

    os.makedirs(host)
    assert sync()['revision'] == 2
    # An attacker (or a stale mirror) serves revision 1 again, validly signed: refused.
    published = os.path.join(served, 'refs', 'published')
    open(published, 'w').write('1\n')
    with pytest.raises(_sync.SyncError, match='publishes revision 1 .* already applied revision 2; refusing a replayed'):
        sync()
    assert hs.active_id(host) == v2['id']
    # A forged record (not signed by the key) is refused too.
    open(published, 'w').write('2\n')
    path = pub.record_path(served, 2)
    rec = json.loads(open(path).read())
    open(path, 'w').write(json.dumps(dict(rec, id=v1['id'])))
    with pytest.raises(_sync.SyncError, match='bad signature'):
        sync()
    open(path, 'w').write(json.dumps(rec, sort_keys=True))
    # The builder rolls back: v1 as revision 3, taken without allow_downgrade although v1 was built earlier.
    pub.rollback({'store': served, 'snapshot': 'previous', 'signing_key': key[0]}, run, now='t3')
    r = sync()
    assert r['id'] == v1['id'] and r['revision'] == 3 and hs.active_id(host) == v1['id']


def hide_published(served, latest):
    """A server that answers 404 for refs/published and names ``latest`` in refs/latest."""
    import io
    import urllib.error

    def opener(u):
        if u.endswith('/refs/published'):
            raise urllib.error.HTTPError(u, 404, 'Not Found', {}, io.BytesIO(b''))
        if u.endswith('/refs/latest'):
            return io.BytesIO((latest + '\n').encode())
        return open(u[len('file://'):], 'rb')
    return opener


def sync_with(host, served, allowed, opener, **kw):
    return _sync.sync(dict({'url': 'file://' + served, 'snapshot': 'latest', 'store': host, 'workers': 2,
                            'max_manifest_size': 1 << 20, 'allowed_signers': allowed, 'now_epoch': HOST_CLOCK}, **kw),
                      opener, run=run)


def test_a_host_that_applied_revisions_refuses_a_store_that_hides_them(tmp_path, key):
    v1 = build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00', key[0])
    v2 = build(tmp_path, '2.0', '2026-01-08T00:00:00+00:00', key[0])
    served, host = store(tmp_path), str(tmp_path / 'host')
    os.makedirs(host)
    pub.rollback({'store': served, 'snapshot': 'previous', 'signing_key': key[0]}, run, now='t3')
    assert sync_with(host, served, key[1], lambda u: open(u[len('file://'):], 'rb'))['id'] == v1['id']
    # v2 (rolled back from; its manifest is validly signed and built later) behind a hidden refs/published:
    with pytest.raises(_sync.SyncError, match='publishes no revision record .* already applied revision 3; refusing'):
        sync_with(host, served, key[1], hide_published(served, v2['id']))
    assert hs.active_id(host) == v1['id']
    # An operator who names the snapshot (through Ansible, not the server) still gets it.
    assert sync_with(host, served, key[1], hide_published(served, v2['id']), snapshot=v2['id'])['id'] == v2['id']


def test_a_host_from_before_revisions_takes_the_first_record_even_a_rollback(tmp_path, key):
    v1 = build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00', key[0])
    v2 = build(tmp_path, '2.0', '2026-01-08T00:00:00+00:00', key[0])
    served, host = store(tmp_path), str(tmp_path / 'host')
    os.makedirs(host)
    sync_with(host, served, key[1], hide_published(served, v2['id']))  # as an earlier release synced: no revision
    assert json.load(open(os.path.join(host, 'newest')))['revision'] is None
    pub.rollback({'store': served, 'snapshot': 'previous', 'signing_key': key[0]}, run, now='t3')
    r = sync_with(host, served, key[1], lambda u: open(u[len('file://'):], 'rb'))
    assert r['id'] == v1['id'] and r['revision'] == 3


def test_a_record_signed_with_an_old_key_is_signed_again(tmp_path, key):
    build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00')  # published without a key
    path = pub.record_path(store(tmp_path), 1)
    assert not os.path.exists(path + '.sig')
    again = build(tmp_path, '1.0', '2026-01-01T01:00:00+00:00', key[0])
    assert again['changed'] and again['revision'] == 1
    _signing.verify(run, key[1], open(path, 'rb').read(), open(path + '.sig', 'rb').read(), 'record')
    assert not build(tmp_path, '1.0', '2026-01-01T02:00:00+00:00', key[0])['changed']


def test_rolling_back_twice_goes_further_back_not_forth(tmp_path):
    v1 = build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00')
    v2 = build(tmp_path, '2.0', '2026-01-08T00:00:00+00:00')
    build(tmp_path, '3.0', '2026-01-15T00:00:00+00:00')
    first = pub.rollback({'store': store(tmp_path), 'snapshot': 'previous'}, run, now='t4')
    assert first['id'] == v2['id']
    second = pub.rollback({'store': store(tmp_path), 'snapshot': 'previous'}, run, now='t5')
    assert second['id'] == v1['id'] and second['revision'] == 5
    with pytest.raises(pub.BuildError, match='no snapshot published before'):
        pub.rollback({'store': store(tmp_path), 'snapshot': 'previous'}, run, now='t6')


def test_module_check_mode_returns_the_rollback_and_a_real_run_publishes_that_one(tmp_path, capsys, monkeypatch):
    v1 = build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00')
    v2 = build(tmp_path, '2.0', '2026-01-08T00:00:00+00:00')
    monkeypatch.setattr(_module, 'utc_now', lambda: '2026-01-09T00:00:00+00:00')
    args = {'store': store(tmp_path), 'snapshot': 'previous'}
    before = disk(store(tmp_path))
    rc, check = run_module(capsys, pub.run_module, pub.argument_spec(), args, check_mode=True)
    assert rc == 0 and (check['changed'], check['id'], check['revision'], check['held']) == (True, v1['id'], 3, v1['id'])
    assert [r['revision'] for r in check['revisions']] == [2, 1] and disk(store(tmp_path)) == before
    rc, real = run_module(capsys, pub.run_module, pub.argument_spec(), args)
    assert rc == 0 and dict(real, revisions=None) == dict(check, revisions=None)
    assert [(r['revision'], r['id'], r['current']) for r in real['revisions']] == [
        (3, v1['id'], True), (2, v2['id'], False), (1, v1['id'], False)]
    assert real['revisions'][0]['published'] == '2026-01-09T00:00:00+00:00' and pub.held(store(tmp_path)) == v1['id']
    rc, listed = run_module(capsys, pub.run_module, pub.argument_spec(), {'store': store(tmp_path)})
    assert rc == 0 and not listed['changed'] and (listed['id'], listed['revision'], listed['held']) == (v1['id'], 3, v1['id'])
    rc, bad = run_module(capsys, pub.run_module, pub.argument_spec(), dict(args, snapshot='e' * 64))
    assert rc == 1 and bad['msg'].startswith('snapshot %s is not in the store' % ('e' * 64))
