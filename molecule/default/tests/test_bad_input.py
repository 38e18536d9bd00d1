"""Bad input gets a clear error that names it, and changes nothing."""

import datetime
import hashlib
import json
import os
import sys
import time

import pytest

from conftest import BUILDER, REPL_HOSTS, STORE_URL, as_root, as_user, mounted_at, run_module, view_of

sys.path.insert(0, os.path.join(os.environ['MOLECULE_PROJECT_DIRECTORY'], '.cache', 'collections'))
from ansible_collections.pkgcache.overlay.plugins.module_utils import _manifest as mf  # noqa: E402
from ansible_collections.pkgcache.overlay.plugins.module_utils import _sync  # noqa: E402

HOST = REPL_HOSTS[1]
BAD_PORT = 8379


def state(container):
    """What must not change on a refused run: fstab, the active pointer, the store's objects."""
    r = as_root(container)
    return {
        'fstab': r.check_output('sha256sum /etc/fstab'),
        'current': r.run('readlink /var/lib/pkgcache/current').stdout,
        'objects': r.check_output('find /var/lib/pkgcache/objects -type f | sort | sha256sum'),
        'mounts': r.check_output('findmnt -rn -o TARGET,FSTYPE | sort | sha256sum'),
    }


def lower_root(container):
    return '/var/lib/pkgcache/' + as_root(container).check_output('readlink /var/lib/pkgcache/current')


def test_upper_on_overlayfs_is_refused():
    before = state(HOST)
    rc, res = run_module(HOST, 'pkgcache.overlay.overlay_mounts', {
        'repls': [{'name': 'alice', 'uid': 2001, 'gid': 2001}],
        'lower_root': lower_root(HOST), 'scratch_root': '/var/tmp/pkgcache-scratch'})
    assert rc != 0 and res.get('failed')
    assert 'upperdir /var/tmp/pkgcache-scratch/alice/cacache_pip/upper is on overlayfs' in res['msg']
    assert state(HOST) == before
    assert not as_root(HOST).file('/var/tmp/pkgcache-scratch').exists


@pytest.mark.parametrize('name', ['a/b', 'a,b', '../etc', 'Alice Smith', '..'])
def test_bad_repl_names_are_refused(name):
    before = state(HOST)
    rc, res = run_module(HOST, 'pkgcache.overlay.overlay_mounts', {
        'repls': [{'name': 'alice', 'uid': 2001, 'gid': 2001}, {'name': name, 'uid': 2002, 'gid': 2002}],
        'lower_root': lower_root(HOST)})
    assert rc != 0 and res['msg'].startswith('repl name %r ' % name), res['msg']
    assert state(HOST) == before


def test_unreachable_store_url_is_refused():
    before = state(HOST)
    rc, res = run_module(HOST, 'pkgcache.overlay.snapshot_sync', {'url': 'http://127.0.0.1:9'})
    assert rc != 0 and 'http://127.0.0.1:9/refs/published' in res['msg']  # the first thing a sync reads
    assert state(HOST) == before


SIGNING_KEY = '/etc/pkgcache/signing/snapshot_ed25519'
SIGNERS = '/etc/pkgcache/allowed_signers'


@pytest.fixture
def fake_store():
    """Serve a one-file store from the builder on 127.0.0.1:8379; the test chooses how it is broken."""
    b = as_root(BUILDER)
    root = '/srv/pkgcache-bad'
    b.run('systemctl stop pkgcache-bad-store; systemctl reset-failed pkgcache-bad-store')
    b.check_output('systemd-run --unit pkgcache-bad-store python3 -m http.server %d --bind 127.0.0.1 --directory /srv'
                   % BAD_PORT)

    def make(content=b'the real content\n', served=None, created='2099-01-01T00:00:00+00:00', key=SIGNING_KEY, revision=999):
        digest = hashlib.sha256(content).hexdigest()
        entries = [{'path': 'pip', 'type': 'dir', 'mode': '0777'},
                   {'path': 'pip/file', 'type': 'file', 'mode': '0644', 'size': len(content), 'sha256': digest}]
        manifest = mf.build_manifest(entries, {'ecosystems': ['pip'], 'created': created})
        path = '%s/snapshots/%s.json' % (root, manifest['id'])
        b.check_output('rm -rf %s && mkdir -p %s/objects/%s %s/snapshots %s/refs' % (root, root, digest[:2], root, root))
        b.check_output("printf '%%s' '%s' > %s/objects/%s/%s" % ((served or content).decode(), root, digest[:2], digest[2:]))
        b.check_output("echo '%s' > %s" % (json.dumps(manifest), path))
        b.check_output('echo %s > %s/refs/latest' % (manifest['id'], root))
        if key:
            b.check_output('ssh-keygen -Y sign -q -f %s -n pkgcache-snapshot %s' % (key, path))
        if revision:
            # A newer revision record, signed with the builder's key: the sync gets as far as the manifest. It
            # expires in a week, as the builder's do (a host that took expiring records refuses one without).
            now = datetime.datetime.now(datetime.timezone.utc)
            record = json.dumps({'type': 'pkgcache-revision', 'revision': revision, 'id': manifest['id'],
                                 'published': created, 'reason': 'build', 'serial': 1,
                                 'issued': now.strftime('%Y-%m-%dT%H:%M:%SZ'),
                                 'expires': (now + datetime.timedelta(days=7)).strftime('%Y-%m-%dT%H:%M:%SZ')})
            b.check_output("mkdir -p %s/refs/revisions && echo '%s' > %s/refs/revisions/%d.json && echo %d > %s/refs/published"
                           % (root, record, root, revision, revision, root))
            b.check_output('ssh-keygen -Y sign -q -f %s -n pkgcache-snapshot %s/refs/revisions/%d.json'
                           % (SIGNING_KEY, root, revision))
        for dummy in range(50):
            if b.run('python3 -c "import urllib.request;urllib.request.urlopen(\'http://127.0.0.1:%d/pkgcache-bad/refs/latest\')"'
                     % BAD_PORT).rc == 0:
                break
            time.sleep(0.2)
        return digest, manifest['id']

    yield make
    b.run('systemctl stop pkgcache-bad-store')
    b.run('rm -rf %s /tmp/evil_key*' % root)


BAD_URL = 'http://127.0.0.1:%d/pkgcache-bad' % BAD_PORT


def refused(args, *fragments):
    """Run snapshot_sync on HOST; it must fail, say every fragment, and change nothing."""
    before = state(HOST)
    rc, res = run_module(HOST, 'pkgcache.overlay.snapshot_sync', dict({'allowed_signers': SIGNERS}, **args))
    assert rc != 0, res
    for fragment in fragments:
        assert fragment in res['msg'], res['msg']
    assert state(HOST) == before
    r = as_root(HOST)
    assert r.check_output('find /var/lib/pkgcache/objects/incoming -type f | wc -l') == '0'
    # The users still work on the snapshot they had.
    assert mounted_at(as_user('alice', HOST), '~/.cache/pip') == view_of('alice', 'pip')
    return res


def test_object_with_wrong_hash_is_refused(fake_store):
    digest, snap = fake_store(served=b'evil content!!!!\n')
    refused({'url': BAD_URL}, 'object %s' % digest, 'does not match its hash')
    assert not as_root(HOST).file('/var/lib/pkgcache/snapshots/%s.json' % snap).exists
    assert not as_root(HOST).file('/var/lib/pkgcache/objects/%s/%s' % (digest[:2], digest[2:])).exists


def test_manifest_signed_with_the_wrong_key_is_refused(fake_store):
    as_root(BUILDER).check_output("ssh-keygen -q -t ed25519 -N '' -f /tmp/evil_key")
    digest, snap = fake_store(content=b'signed by a stranger\n', key='/tmp/evil_key')
    refused({'url': BAD_URL}, 'snapshot %s has a bad signature or one by a key not in %s' % (snap, SIGNERS))
    assert not as_root(HOST).file('/var/lib/pkgcache/snapshots/%s.json' % snap).exists


def test_unsigned_manifest_is_refused(fake_store):
    digest, snap = fake_store(content=b'not signed at all\n', key=None)
    refused({'url': BAD_URL}, 'snapshot %s is not signed; refused' % snap)


def test_older_snapshot_is_a_refused_downgrade(fake_store):
    # Without a revision record (a server hiding refs/published) and with an older one alike.
    digest, snap = fake_store(content=b'an old snapshot\n', created='2000-01-01T00:00:00+00:00', revision=None)
    refused({'url': BAD_URL}, 'publishes no revision record', 'refusing a silent downgrade')
    digest, snap = fake_store(content=b'an old snapshot\n', created='2000-01-01T00:00:00+00:00', revision=1)
    refused({'url': BAD_URL}, 'publishes revision 1', 'refusing a replayed or older revision')


def test_store_server_down_is_refused():
    b = as_root(BUILDER)
    b.check_output('systemctl stop nginx')
    try:
        refused({'url': STORE_URL}, STORE_URL + '/refs/published', 'Connection refused')
    finally:
        b.check_output('systemctl start nginx')


def test_user_cannot_swap_her_layers_or_view():
    """What the earlier layout let a user do (swap work, upper or the mount point) is refused by the kernel now."""
    alice = as_user('alice', HOST)
    r = as_root(HOST)
    before = state(HOST)
    for cmd in ('mv /mnt/scratch/alice/cacache_pip /mnt/scratch/alice/x',
                'ln -s /etc /mnt/scratch/alice/cacache_pip/work2',
                'mv /mnt/scratch/alice/cacache_pip/work /mnt/scratch/alice/cacache_pip/w',
                'mv /mnt/scratch/alice/cacache_pip/upper /mnt/scratch/alice/cacache_pip/u',
                'mv /var/lib/pkgcache-views/alice/pip /var/lib/pkgcache-views/alice/x',
                'ln -s /etc /var/lib/pkgcache-views/alice/npm'):
        res = alice.run(cmd)
        assert res.rc != 0 and 'Permission denied' in res.stderr, (cmd, res.stderr)
    # Moving her own link only changes where her own pip looks.
    alice.check_output('mv ~/.cache/pip ~/.cache/pip.mine && ln -s /etc ~/.cache/pip')
    try:
        rc, res = run_module(HOST, 'pkgcache.overlay.overlay_mounts', {
            'repls': [{'name': n, 'uid': u, 'gid': u} for n, u in (('alice', 2001), ('bob', 2002), ('carol', 2003))],
            'lower_root': lower_root(HOST)})
        assert rc == 0 and res['changed'] and not res['unserved'], res
        assert alice.file('/home/alice/.cache/pip').linked_to == '/var/lib/pkgcache-views/alice/pip'
        assert state(HOST) == before
        assert not r.file('/etc/upper').exists and not r.file('/etc/work').exists
    finally:
        alice.run('rm -f ~/.cache/pip.mine')


def test_build_fails_when_every_package_misses():
    b = as_root(BUILDER)
    latest = b.check_output('cat /srv/pkgcache/refs/latest')
    rc, res = run_module(BUILDER, 'pkgcache.overlay.snapshot_build', {
        'packages': ['no-such-package-one', 'no-such-package-two'],
        'index_url': 'http://127.0.0.1:8371/simple/', 'trusted_host': '127.0.0.1:8371', 'store': '/srv/pkgcache'})
    assert rc != 0 and res['msg'].startswith('none of the 2 packages could be resolved from http://127.0.0.1:8371/simple/')
    assert 'no-such-package-one' in res['msg']
    assert b.check_output('cat /srv/pkgcache/refs/latest') == latest


def test_sync_rerun_moves_no_bytes():
    rc, res = run_module(HOST, 'pkgcache.overlay.snapshot_sync', {'url': STORE_URL})
    assert rc == 0 and res['changed'] is False
    assert res['fetched_bytes'] == 0 and res['fetched_objects'] == 0


def test_disk_full_during_sync_is_reported_and_cleaned_up():
    r = as_root(HOST)
    r.check_output('mkdir -p /var/lib/pkgcache-small && mount -t tmpfs -o size=1m,mode=0700 tmpfs /var/lib/pkgcache-small')
    try:
        before = state(HOST)
        rc, res = run_module(HOST, 'pkgcache.overlay.snapshot_sync', {
            'url': STORE_URL, 'store': '/var/lib/pkgcache-small', 'mount_point': '/mnt/cacache-small',
            'fstab': '/var/lib/pkgcache-small/fstab'})
        assert rc != 0 and 'no space left on the device' in res['msg'], res['msg']
        assert state(HOST) == before
        assert r.check_output('find /var/lib/pkgcache-small/objects/incoming -type f | wc -l') == '0'
        assert not r.file('/var/lib/pkgcache-small/current').exists
    finally:
        r.run('umount /var/lib/pkgcache-small')


def test_a_dead_mirror_and_one_serving_a_corrupt_object_are_skipped_for_the_good_one(fake_store):
    """Mirrors: a closed port, a copy whose newer snapshot has a corrupted object, then the builder's store."""
    digest, snap = fake_store(served=b'evil content!!!!\n')
    dead = 'http://127.0.0.1:9'
    mirrors = [dead, BAD_URL, STORE_URL]
    name = [k for k in ('host-%d' % n for n in range(200)) if _sync.mirror_order(mirrors, k) == mirrors][0]
    before = state(HOST)
    rc, res = run_module(HOST, 'pkgcache.overlay.snapshot_sync',
                         {'mirrors': mirrors, 'mirror_key': name, 'allowed_signers': SIGNERS})
    assert rc == 0, res
    assert res['mirror'] == STORE_URL and [f['url'] for f in res['failed_mirrors']] == [dead, BAD_URL]
    assert 'Connection refused' in res['failed_mirrors'][0]['error']
    assert 'does not match its hash' in res['failed_mirrors'][1]['error']
    assert state(HOST) == before  # still the snapshot it had, served by the good mirror
    assert not as_root(HOST).file('/var/lib/pkgcache/snapshots/%s.json' % snap).exists
