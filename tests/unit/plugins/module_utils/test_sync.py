"""Syncing a host: crash safety under real SIGKILLs, rollback history, HTTP deadlines, responses closed."""

import hashlib
import os
import signal

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _hoststate as hs
from ansible_collections.pkgcache.overlay.plugins.module_utils import _store as st
from ansible_collections.pkgcache.overlay.plugins.module_utils import _sync
from ansible_collections.pkgcache.overlay.plugins.module_utils._lock import StoreLock

from helpers import http_opener, publish, run_sync, tree_is_complete


@pytest.mark.parametrize('point', ['fetch', 'checkout', 'activate'])
def test_sigkill_leaves_the_active_snapshot_working_and_the_next_run_converges(two_snapshots, point):
    url, v1, v2, host = two_snapshots
    res = run_sync(url, v2, host, kill_at=point)
    assert res.returncode == -signal.SIGKILL, (res.returncode, res.stderr)
    # The host still serves v1, whole.
    assert hs.active_id(host) == v1 and tree_is_complete(host, v1)
    # What the kill left behind is what we think it is.
    leftovers = {
        'fetch': os.listdir(os.path.join(host, 'objects', 'incoming')),
        'checkout': [n for n in os.listdir(os.path.join(host, 'trees')) if n.startswith('.checkout-')],
        'activate': [n for n in os.listdir(os.path.join(host, 'trees')) if n == v2],
    }[point]
    assert leftovers, point
    # The next run converges and cleans up.
    res = run_sync(url, v2, host)
    assert res.returncode == 0, res.stderr
    assert hs.active_id(host) == v2 and tree_is_complete(host, v2)
    assert os.listdir(os.path.join(host, 'objects', 'incoming')) == []
    assert not [n for n in os.listdir(os.path.join(host, 'trees')) if n.startswith('.')]


def test_previous_and_rollback(two_snapshots):
    url, v1, v2, host = two_snapshots
    with pytest.raises(_sync.SyncError, match='no previous snapshot'):
        _sync.previous_id(host)
    assert run_sync(url, v2, host).returncode == 0
    assert _sync.previous_id(host) == v1
    res = run_sync(url, 'previous', host)
    assert res.returncode == 0 and hs.active_id(host) == v1
    assert _sync.previous_id(host) == v2
    assert hs.history(host) == [v1, v2, v1]


def sync_params(server, snap, host, deadline=1):
    return {'url': server.url, 'snapshot': snap, 'store': host, 'workers': 2, 'max_manifest_size': 1 << 20,
            'lock_timeout': 0, 'deadline': deadline}


def run_locked_sync(p):
    with _sync.locked(p, False):
        return _sync.sync(p, http_opener, now='t')


def test_dripped_object_fails_within_the_deadline_and_releases_the_lock(drip, tmp_path):
    body = b'x' * 30  # 9 s at one byte every 0.3 s
    snap = publish(drip.root, {'slow': body})
    digest = hashlib.sha256(body).hexdigest()
    drip.slow['/' + st.object_rel(digest)] = 'body'
    host = str(tmp_path / 'host')
    # Without a deadline the 9 s drip would complete and the sync succeed: the error is the proof.
    with pytest.raises(st.StoreError, match='object %s from %s/%s did not arrive within the 1 s deadline'
                       % (digest, drip.url, st.object_rel(digest))):
        run_locked_sync(sync_params(drip, snap, host))
    with StoreLock(host, timeout=0):  # released
        pass
    assert not os.path.exists(st.object_path(host, digest))
    assert os.listdir(os.path.join(host, 'objects', 'incoming')) == []
    assert hs.active_id(host) is None


def test_dripped_status_line_fails_within_the_deadline(drip, tmp_path):
    snap = publish(drip.root, {'a': b'one'})
    drip.slow['/snapshots/%s.json' % snap] = 'headers'  # 'HTTP/1.0 200 OK...' at one byte every 0.3 s
    host = str(tmp_path / 'host')
    with pytest.raises(_sync.SyncError, match='manifest of snapshot %s from %s/snapshots/%s.json did not arrive within the 1 s deadline'
                       % (snap, drip.url, snap)):
        run_locked_sync(sync_params(drip, snap, host))
    with StoreLock(host, timeout=0):
        pass


def test_a_missed_deadline_stops_the_remaining_downloads(drip, tmp_path):
    files = dict(('f%d' % i, b'%d' % i * 20) for i in range(6))
    snap = publish(drip.root, files)
    for body in files.values():
        drip.slow['/' + st.object_rel(hashlib.sha256(body).hexdigest())] = 'body'
    with pytest.raises(st.StoreError, match=r'did not arrive within the 1 s deadline .*[2-5] objects not fetched'):
        run_locked_sync(sync_params(drip, snap, str(tmp_path / 'host')))
    # Two workers, at most one download each (a loaded machine may start the second late); the others were never requested.
    assert 1 <= len([r for r in drip.requests if r.startswith('/objects/')]) <= 2


class Response(object):
    """A response that records whether it was closed."""

    closed = []

    def __init__(self, data, fail=None):
        self.data, self.fail = data, fail

    def read(self, n=-1):
        if self.fail:
            raise self.fail
        data, self.data = (self.data, b'') if n < 0 else (self.data[:n], self.data[n:])
        return data

    def close(self):
        Response.closed.append(self)


@pytest.mark.parametrize('data, fail, error', [
    (b'good', None, None),
    (b'evil', None, 'does not match its hash'),
    (b'good and more', None, 'larger than'),
    (b'', OSError('connection reset'), 'connection reset'),
], ids=['ok', 'bad-hash', 'too-large', 'read-error'])
def test_object_responses_are_closed(tmp_path, data, fail, error):
    Response.closed = []
    made = []

    def opener(url):
        made.append(Response(data, fail))
        return made[-1]

    digest = hashlib.sha256(b'good').hexdigest()
    if error:
        with pytest.raises(st.StoreError, match=error):
            st.fetch_objects(str(tmp_path / 'host'), 'http://x', {digest: 4}, opener)
    else:
        assert st.fetch_objects(str(tmp_path / 'host'), 'http://x', {digest: 4}, opener) == 4
    assert made and Response.closed == made


@pytest.mark.parametrize('data, error', [(b'a' * 64 + b'\n', None), (b'x' * 5000, 'larger than')], ids=['ok', 'too-large'])
def test_ref_responses_are_closed(data, error):
    Response.closed = []
    made = []

    def opener(url):
        made.append(Response(data))
        return made[-1]

    if error:
        with pytest.raises(_sync.SyncError, match=error):
            _sync.resolve_id(opener, 'http://x', 'latest')
    else:
        assert _sync.resolve_id(opener, 'http://x', 'latest') == 'a' * 64
    assert made and Response.closed == made
