"""Crash safety (real SIGKILLs), locking, rollback history, GC and busy detection."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _busy
from ansible_collections.pkgcache.overlay.plugins.module_utils import _gc
from ansible_collections.pkgcache.overlay.plugins.module_utils import _manifest as mf
from ansible_collections.pkgcache.overlay.plugins.module_utils import _store as st
from ansible_collections.pkgcache.overlay.plugins.module_utils import _sync
from ansible_collections.pkgcache.overlay.plugins.module_utils import _views
from ansible_collections.pkgcache.overlay.plugins.module_utils._lock import LockError, StoreLock

from conftest import COLLECTIONS

SYNC_SCRIPT = textwrap.dedent("""
    import sys, urllib.request
    sys.path.insert(0, %r)
    from ansible_collections.pkgcache.overlay.plugins.module_utils import _sync
    p = {'url': sys.argv[1], 'snapshot': sys.argv[2], 'store': sys.argv[3], 'workers': 2,
         'max_manifest_size': 1 << 30, 'lock_timeout': 0}
    with _sync.locked(p, False):
        print(_sync.sync(p, urllib.request.urlopen, now='t')['id'])
""" % COLLECTIONS)


def publish(served, files):
    """Put a snapshot of ``files`` {name: bytes} into a builder-side store; return its id."""
    entries = [{'path': 'pip', 'type': 'dir', 'mode': '0777'}]
    for name, data in sorted(files.items()):
        digest = hashlib.sha256(data).hexdigest()
        path = st.object_path(served, digest)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(data)
        entries.append({'path': 'pip/' + name, 'type': 'file', 'mode': '0644', 'size': len(data), 'sha256': digest})
    manifest = mf.build_manifest(entries, {'created': 'now', 'ecosystems': ['pip']})
    os.makedirs(os.path.join(served, 'snapshots'), exist_ok=True)
    with open(st.manifest_path(served, manifest['id']), 'w') as f:
        json.dump(manifest, f)
    return manifest['id']


def run_sync(url, snap, store, kill_at=None):
    env = dict(os.environ)
    env.pop('PKGCACHE_KILL_AT', None)
    if kill_at:
        env['PKGCACHE_KILL_AT'] = kill_at
    return subprocess.run([sys.executable, '-c', SYNC_SCRIPT, url, snap, store], env=env,
                          capture_output=True, text=True, check=False)


def tree_is_complete(store, snap_id):
    with open(st.manifest_path(store, snap_id)) as f:
        manifest = json.load(f)
    for e in manifest['entries']:
        if e['type'] == 'file':
            digest, size = mf.sha256_file(os.path.join(st.tree_path(store, snap_id), e['path']))
            assert (digest, size) == (e['sha256'], e['size']), e['path']
    return True


@pytest.fixture
def two_snapshots(tmp_path):
    served = str(tmp_path / 'served')
    v1 = publish(served, dict(('f%03d' % i, b'v1 %d' % i) for i in range(200)))
    v2 = publish(served, dict(('f%03d' % i, (b'v2 %d' % i) * 1000) for i in range(200)))
    host = str(tmp_path / 'host')
    res = run_sync('file://' + served, v1, host)
    assert res.returncode == 0, res.stderr
    return 'file://' + served, v1, v2, host


@pytest.mark.parametrize('point', ['fetch', 'checkout', 'activate'])
def test_sigkill_leaves_the_active_snapshot_working_and_the_next_run_converges(two_snapshots, point):
    url, v1, v2, host = two_snapshots
    res = run_sync(url, v2, host, kill_at=point)
    assert res.returncode == -signal.SIGKILL, (res.returncode, res.stderr)
    # The host still serves v1, whole.
    assert st.active_id(host) == v1 and tree_is_complete(host, v1)
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
    assert st.active_id(host) == v2 and tree_is_complete(host, v2)
    assert os.listdir(os.path.join(host, 'objects', 'incoming')) == []
    assert not [n for n in os.listdir(os.path.join(host, 'trees')) if n.startswith('.')]


def test_a_second_run_waits_or_fails_with_a_clear_error(tmp_path):
    store = str(tmp_path)
    holder = subprocess.Popen([sys.executable, '-c', textwrap.dedent("""
        import sys, time
        sys.path.insert(0, %r)
        from ansible_collections.pkgcache.overlay.plugins.module_utils._lock import StoreLock
        with StoreLock(%r):
            print('locked', flush=True)
            time.sleep(30)
    """ % (COLLECTIONS, store))], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        with pytest.raises(LockError, match=r'another pkgcache run \(pid %d\) holds the lock' % holder.pid):
            with StoreLock(store, timeout=0):
                pass
        started = time.monotonic()
        with pytest.raises(LockError):
            with StoreLock(store, timeout=1):
                pass
        assert time.monotonic() - started >= 1
        holder.send_signal(signal.SIGKILL)  # the kernel drops the lock of a killed holder
        holder.wait()
        with StoreLock(store, timeout=5):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_previous_and_rollback(two_snapshots):
    url, v1, v2, host = two_snapshots
    with pytest.raises(_sync.SyncError, match='no previous snapshot'):
        _sync.previous_id(host)
    assert run_sync(url, v2, host).returncode == 0
    assert _sync.previous_id(host) == v1
    res = run_sync(url, 'previous', host)
    assert res.returncode == 0 and st.active_id(host) == v1
    assert _sync.previous_id(host) == v2
    assert st.history(host) == [v1, v2, v1]


def test_gc_keeps_active_newest_and_referenced(two_snapshots, tmp_path):
    url, v1, v2, host = two_snapshots
    v3 = publish(url[len('file://'):], {'only': b'three'})
    for snap in (v2, v3):
        assert run_sync(url, snap, host).returncode == 0
    # keep larger than the number of snapshots keeps them all.
    assert _gc.plan(host, 5, '', '', host=True)['remove'] == []
    assert sorted(_gc.plan(host, 2, '', '', host=True)['keep']) == sorted([v2, v3])
    # v1 is still referenced by a live mount, v2 by nothing, v3 is active.
    mountinfo = '40 1 0:50 / /home/c/.cache/pip rw - overlay overlay rw,lowerdir=%s/trees/%s/pip,upperdir=/u,workdir=/w\n' % (host, v1)
    plan = _gc.plan(host, 1, mountinfo, '', host=True)
    assert plan['keep'] == {v3: 'active', v1: 'referenced by a mount or fstab'}
    assert plan['remove'] == [v2]
    v2_bytes = sum(len((b'v2 %d' % i) * 1000) for i in range(200))
    assert plan['bytes'] == v2_bytes and len(plan['objects']) == 200
    _gc.apply(host, plan)
    assert not os.path.exists(st.tree_path(host, v2)) and tree_is_complete(host, v1) and tree_is_complete(host, v3)
    # Once nothing references v1, it goes too; an fstab reference alone keeps it.
    assert _gc.plan(host, 1, '', 'overlay /x overlay lowerdir=/var/lib/pkgcache/trees/%s/pip 0 0' % v1, True)['remove'] == []
    plan = _gc.plan(host, 1, '', '', host=True)
    assert plan['remove'] == [v1] and len(plan['objects']) == 200
    _gc.apply(host, plan)
    assert st.active_id(host) == v3 and tree_is_complete(host, v3)
    expected = {'keep': {v3: 'active'}, 'remove': [], 'objects': [], 'bytes': 0, 'incomplete': None}
    assert _gc.plan(host, 1, '', '', host=True) == expected


def test_find_busy_reads_cwd_root_and_fds(tmp_path):
    proc = tmp_path / 'proc'
    for pid, links in {'1': {'cwd': '/', 'root': '/'},
                       '42': {'cwd': '/home/carol/.cache/pip/http', 'root': '/'},
                       '43': {'cwd': '/tmp', 'root': '/', 'fd/3': '/home/bob/.cache/pip/x (deleted)'},
                       '44': {'cwd': '/home/alice/.cache/pipx', 'root': '/'}}.items():
        (proc / pid / 'fd').mkdir(parents=True)
        for name, dest in links.items():
            os.symlink(dest, str(proc / pid / name))
    (proc / 'self').mkdir()
    targets = ['/home/alice/.cache/pip', '/home/bob/.cache/pip', '/home/carol/.cache/pip']
    assert _busy.find_busy(targets, str(proc)) == {'/home/carol/.cache/pip': [42], '/home/bob/.cache/pip': [43]}


def test_find_busy_sees_a_real_process(tmp_path):
    target = str(tmp_path / 'mnt')
    os.mkdir(target)
    child = subprocess.Popen(['sleep', '30'], cwd=target)
    try:
        assert child.pid in _busy.find_busy([target]).get(target, [])
    finally:
        child.kill()
        child.wait()
    assert _busy.find_busy([target]) == {}


def test_gc_keeps_a_tree_a_process_is_inside_and_a_detached_overlays_lower(two_snapshots, tmp_path):
    """A reader left inside an old tree (a busy /mnt/cacache, a detached view) keeps it; once it leaves, it goes."""
    url, v1, v2, host = two_snapshots
    assert run_sync(url, v2, host).returncode == 0
    assert _gc.plan(host, 1, '', '', host=True, held=_busy.held_files())['remove'] == [v1]
    reader = subprocess.Popen(['sleep', '60'], cwd=st.tree_path(host, v1))
    try:
        plan = _gc.plan(host, 1, '', '', host=True, held=_busy.held_files())
        assert plan['keep'] == {v2: 'active', v1: 'a process is inside it'} and plan['remove'] == []
    finally:
        reader.kill()
        reader.wait()
    assert _gc.plan(host, 1, '', '', host=True, held=_busy.held_files())['remove'] == [v1]
    # A detached overlay that still holds its layers (here: still mounted somewhere) keeps its lower.
    os.makedirs(os.path.join(host, 'detached'))
    gen = tmp_path / 'layers' / 'detached-1'
    for d in ('upper', 'work', 'mnt'):
        (gen / d).mkdir(parents=True)
    record = {'user': 'carol', 'ecosystem': 'pip', 'dev': 0, 'lowerdir': '%s/pip' % st.tree_path(host, v1),
              'generation': str(gen)}
    with open(os.path.join(host, 'detached', 'carol-pip-1.json'), 'w') as f:
        json.dump(record, f)
    subprocess.check_call(['mount', '-t', 'overlay', 'overlay', '-o', 'lowerdir=%s/pip,upperdir=%s/upper,workdir=%s/work'
                           % (st.tree_path(host, v1), gen, gen), str(gen / 'mnt')])
    try:
        lowers = _views.live_lowerdirs(host)
        assert lowers == {'%s/pip' % st.tree_path(host, v1)}
        plan = _gc.plan(host, 1, '', '', host=True, detached_lowers=lowers)
        assert plan['keep'][v1] == 'used by a lazily detached overlay'
    finally:
        subprocess.check_call(['umount', str(gen / 'mnt')])
    assert _views.live_lowerdirs(host) == set()  # the kernel says nobody holds the layers any more


def test_gc_keeps_every_tree_when_some_process_cannot_be_inspected(two_snapshots):
    """Without CAP_SYS_PTRACE root cannot read other users' /proc/<pid>/cwd: nothing can be proven unused."""
    url, v1, v2, host = two_snapshots
    assert run_sync(url, v2, host).returncode == 0
    held = _busy.Held()
    held.denied = [4242]
    plan = _gc.plan(host, 1, '', '', host=True, held=held)
    assert plan['remove'] == [] and 'CAP_SYS_PTRACE' in plan['keep'][v1]
