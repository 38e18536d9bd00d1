"""Hardening of the store: chained symlinks in manifests, HTTP deadlines, the store lock around builds."""

import hashlib
import http.server
import os
import posixpath
import subprocess
import sys
import tempfile
import textwrap
import threading
import urllib.request

import pytest
from hypothesis import given, settings, strategies as s

from ansible_collections.pkgcache.overlay.plugins.module_utils import _builder as bd
from ansible_collections.pkgcache.overlay.plugins.module_utils import _gc
from ansible_collections.pkgcache.overlay.plugins.module_utils import _manifest as mf
from ansible_collections.pkgcache.overlay.plugins.module_utils import _store as st
from ansible_collections.pkgcache.overlay.plugins.module_utils import _sync
from ansible_collections.pkgcache.overlay.plugins.module_utils._lock import LockError, StoreLock

from conftest import COLLECTIONS
from test_builder import FakePip, params as build_params
from test_lifecycle import publish

SHA = 'a' * 64


def d(path):
    return {'path': path, 'type': 'dir', 'mode': '0777'}


def ln(path, target):
    return {'path': path, 'type': 'symlink', 'target': target}


def f(path):
    return {'path': path, 'type': 'file', 'mode': '0644', 'size': 1, 'sha256': SHA}


# 1. Symlinks are resolved through the manifest's own symlinks.

CHAIN = [d('pip'), d('pip/a'), d('pip/a/b'), ln('pip/a/b/l', '../..')]


@pytest.mark.parametrize('entries, bad', [
    # The review's case: lexically pip/etc/passwd, really ../etc/passwd from the tree root.
    (CHAIN + [ln('pip/x', 'a/b/l/a/b/l/../../../../../../etc/passwd')], 'pip/x'),
    # Lexically inside pip, really in another ecosystem's directory.
    (CHAIN + [d('npm'), f('npm/secret'), ln('pip/x', 'a/b/l/../npm/secret')], 'pip/x'),
    # The escaping link is the last of a chain of harmless-looking ones.
    (CHAIN + [ln('pip/y', 'a/b/l/a/b/l/../../..'), ln('pip/z', 'y/etc')], 'pip/y'),
    # A relative link to a link that climbs.
    ([d('pip'), d('pip/d'), ln('pip/d/up', '..'), ln('pip/d/up2', 'up/..'), ln('pip/x', 'd/up2/../etc')], 'pip/d/up2'),
])
def test_chained_symlinks_that_leave_the_snapshot_are_refused(entries, bad):
    with pytest.raises(mf.ManifestError, match=r"manifest entry '%s': symlink target .* leaves the snapshot" % bad):
        mf.validate_entries(entries)


@pytest.mark.parametrize('entries, bad', [
    ([d('pip'), ln('pip/a', 'b'), ln('pip/b', 'a')], 'pip/a'),
    ([d('pip'), ln('pip/a', 'a')], 'pip/a'),
    ([d('pip'), d('pip/d'), ln('pip/d/l', '../d/l/x')], 'pip/d/l'),
    ([d('pip')] + [ln('pip/l%d' % i, 'l%d' % (i + 1)) for i in range(60)] + [f('pip/l60')], 'pip/l0'),
])
def test_symlink_loops_and_overlong_chains_are_refused(entries, bad):
    with pytest.raises(mf.ManifestError, match=r"manifest entry '%s': symlink target .* (loops|more than 40)" % bad):
        mf.validate_entries(entries)


def test_symlinks_inside_the_snapshot_still_validate(tmp_path):
    entries = [
        d('pip'), d('pip/sub'), f('pip/sub/f'), ln('pip/sub/up', '..'), ln('pip/y', 'sub/up/sub/f'),
        ln('pip/l1', 'l2'), ln('pip/l2', 'sub/f'), ln('pip/dangling', 'nothing/here'),
        ln('pip/chain', 'l1'),
        # uv links its wheel entries to unpacked archives.
        d('uv'), d('uv/archive-v0'), d('uv/archive-v0/abc'), f('uv/archive-v0/abc/six.py'),
        d('uv/wheels-v5'), d('uv/wheels-v5/pypi'), d('uv/wheels-v5/pypi/six'),
        ln('uv/wheels-v5/pypi/six/six-1.17.0-py2.py3-none-any', '../../../archive-v0/abc'),
    ] + [ln('pip/c%d' % i, 'c%d' % (i + 1)) for i in range(30)] + [ln('pip/c30', 'sub/f')]
    mf.validate_entries(entries)
    # A scanned tree with a symlink (as npm, pip, maven and uv caches may have) still validates.
    root = tmp_path / 'cache'
    (root / 'a').mkdir(parents=True)
    (root / 'a' / 'x').write_bytes(b'x')
    os.symlink('a/x', str(root / 'l'))
    os.symlink('../l', str(root / 'a' / 'l2'))
    scanned, dummy = mf.scan_tree(str(root), 'pip')
    mf.validate_entries(scanned)


NAMES = s.sampled_from(['a', 'b', 'l', 'm'])
TARGET = s.lists(s.sampled_from(['a', 'b', 'l', 'm', '..', '.', 'npm', 'etc']), min_size=1, max_size=7).map('/'.join)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(dirs=s.lists(s.lists(NAMES, min_size=1, max_size=3), max_size=5),
       links=s.lists(s.tuples(s.lists(NAMES, min_size=1, max_size=3), TARGET), min_size=1, max_size=5))
def test_accepted_symlinks_really_stay_inside(dirs, links):
    """Whatever manifest is accepted, every symlink of its checkout resolves (by the kernel) inside its top dir."""
    entries, kinds = [d('pip'), d('npm'), d('npm/etc')], {'pip': 'dir', 'npm': 'dir', 'npm/etc': 'dir'}
    for parts in dirs:
        for n in range(1, len(parts) + 1):
            path = 'pip/' + '/'.join(parts[:n])
            if kinds.setdefault(path, 'dir') == 'dir' and d(path) not in entries:
                entries.append(d(path))
    for parts, target in links:
        path = 'pip/' + '/'.join(parts)
        if path not in kinds and kinds.get(posixpath.dirname(path)) == 'dir':
            kinds[path] = 'symlink'
            entries.append(ln(path, target))
    try:
        mf.validate_entries(entries)
    except mf.ManifestError:
        return
    with tempfile.TemporaryDirectory() as tmp:
        manifest = mf.build_manifest(entries, {})
        tree = os.path.realpath(st.build_tree(tmp, manifest))
        for e in entries:
            if e['type'] == 'symlink':
                real = os.path.realpath(os.path.join(tree, e['path']))
                top = os.path.join(tree, e['path'].split('/')[0])
                assert real == top or real.startswith(top + '/'), (e, real)


# 2. Downloads have a total deadline, and their responses are closed.

class DripServer(object):
    """A store over real HTTP on 127.0.0.1 that sends the paths in ``slow`` one byte every ``interval`` seconds.

    ``slow[path]`` is 'body' (headers at once, then the body dripped) or 'headers' (the status line dripped).
    """

    def __init__(self, root, interval=0.3):
        self.root, self.interval, self.slow, self.requests = root, interval, {}, []
        self.stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(self.path)
                path = os.path.join(server.root, self.path.lstrip('/'))
                if not os.path.isfile(path):
                    self.send_error(404)
                    return
                with open(path, 'rb') as fh:
                    body = fh.read()
                mode = server.slow.get(self.path)
                head = b'HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n' % len(body)
                try:
                    if mode == 'headers':
                        server.drip(self.wfile, head)
                        self.wfile.write(body)
                    elif mode == 'body':
                        self.wfile.write(head)
                        server.drip(self.wfile, body)
                    else:
                        self.wfile.write(head + body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.url = 'http://127.0.0.1:%d' % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def drip(self, wfile, data):
        for n in range(len(data)):
            if self.stop.wait(self.interval):
                return
            wfile.write(data[n:n + 1])
            wfile.flush()

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def drip(tmp_path):
    server = DripServer(str(tmp_path / 'served'))
    yield server
    server.close()


def http_opener(url):
    return urllib.request.urlopen(url, timeout=2)  # longer than the drip interval: no single read times out


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
    assert st.active_id(host) is None


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


# 3. A build holds the store lock while it writes objects, manifests and refs.

HOLDER = textwrap.dedent("""
    import sys
    sys.path.insert(0, %r)
    from ansible_collections.pkgcache.overlay.plugins.module_utils._lock import StoreLock
    with StoreLock(sys.argv[1]):
        print('locked', flush=True)
        sys.stdin.read()  # hold the lock until the test closes our stdin
""" % COLLECTIONS)


@pytest.fixture
def lock_holder(tmp_path):
    store = str(tmp_path / 'store')
    os.makedirs(store)
    proc = subprocess.Popen([sys.executable, '-c', HOLDER, store], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == 'locked'
        yield proc
    finally:
        proc.stdin.close()
        proc.wait()


def test_build_fails_with_a_lock_error_while_another_run_holds_the_lock(tmp_path, lock_holder):
    pip = FakePip({'six': ('1.17.0', 'six body')})
    p = dict(build_params(tmp_path, ['six']), lock_timeout=0)
    store = p['store']
    with pytest.raises(LockError, match=r'another pkgcache run \(pid %d\) holds the lock %s' % (lock_holder.pid, os.path.join(store, '.lock'))):
        bd.build(p, pip, now='t1')
    # Nothing was written to the store: no object, manifest or ref.
    assert sorted(os.listdir(store)) == ['.lock']
    # Check mode changes nothing and takes no lock.
    r = bd.build(p, pip, check_mode=True, now='t1')
    assert r['would_build'] and sorted(os.listdir(store)) == ['.lock']
    # Once the holder is gone, the same build goes through.
    lock_holder.stdin.close()
    lock_holder.wait()
    assert bd.build(p, pip, now='t1')['new_objects'] == 1


def test_gc_during_a_build_loses_no_object(tmp_path, monkeypatch):
    store = str(tmp_path / 'store')
    bd.build(build_params(tmp_path, ['six']), FakePip({'six': ('1', 'six body')}), now='t1')
    gc_outcome = []

    def gc():
        """What snapshot_gc does on a builder, keeping only refs/latest."""
        try:
            with StoreLock(store, 0):
                plan = _gc.plan(store, 0, '', '', host=False)
                _gc.apply(store, plan)
                gc_outcome.append(plan)
        except LockError as exc:
            gc_outcome.append(exc)

    real_build_manifest = mf.build_manifest

    def build_manifest_with_gc(entries, metadata):
        # The build has stored its objects and not yet written its manifest: run a whole GC now.
        t = threading.Thread(target=gc)
        t.start()
        t.join()
        return real_build_manifest(entries, metadata)

    monkeypatch.setattr(bd.mf, 'build_manifest', build_manifest_with_gc)
    r = bd.build(build_params(tmp_path, ['six', 'idna']), FakePip({'six': ('1', 'six body'), 'idna': ('2', 'idna body')}), now='t2')
    assert r['new_objects'] == 1
    manifest = mf.load_manifest(open(st.manifest_path(store, r['id']), 'rb').read(), r['id'])
    missing = st.missing_objects(store, manifest['entries'])
    assert missing == {}, 'the GC removed objects of the build it ran beside'
    assert len(gc_outcome) == 1 and isinstance(gc_outcome[0], LockError)
    assert os.path.join(store, '.lock') in str(gc_outcome[0])


def test_build_keeps_a_new_store_readable_for_the_web_server(tmp_path):
    old = os.umask(0o022)
    try:
        bd.build(build_params(tmp_path, ['six']), FakePip({'six': ('1', 'six body')}), now='t1')
    finally:
        os.umask(old)
    assert os.stat(str(tmp_path / 'store')).st_mode & 0o777 == 0o755
    assert os.stat(str(tmp_path / 'store' / '.lock')).st_mode & 0o777 == 0o600
