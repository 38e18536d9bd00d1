"""Bad input gets a clear error that names it, and changes nothing."""

import hashlib
import json
import os
import sys
import time

import pytest

from conftest import BUILDER, REPL_HOSTS, STORE_URL, as_root, run_module

sys.path.insert(0, os.path.join(os.environ['MOLECULE_PROJECT_DIRECTORY'], '.cache', 'collections'))
from ansible_collections.pkgcache.overlay.plugins.module_utils import _manifest as mf  # noqa: E402

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


@pytest.mark.parametrize('name', ['a/b', 'a,b', '../etc', 'Alice Smith'])
def test_bad_repl_names_are_refused(name):
    before = state(HOST)
    rc, res = run_module(HOST, 'pkgcache.overlay.overlay_mounts', {
        'repls': [{'name': 'alice', 'uid': 2001, 'gid': 2001}, {'name': name, 'uid': 2002, 'gid': 2002}],
        'lower_root': lower_root(HOST)})
    assert rc != 0 and res['msg'].startswith('repl name %r is not a valid user name' % name)
    assert state(HOST) == before


def test_unreachable_store_url_is_refused():
    before = state(HOST)
    rc, res = run_module(HOST, 'pkgcache.overlay.snapshot_sync', {'url': 'http://127.0.0.1:9'})
    assert rc != 0 and 'http://127.0.0.1:9/refs/latest' in res['msg']
    assert state(HOST) == before


@pytest.fixture
def corrupt_store():
    """A store on the builder whose only object does not match its hash, served on 127.0.0.1."""
    b = as_root(BUILDER)
    good = b'the real content\n'
    digest = hashlib.sha256(good).hexdigest()
    entries = [{'path': 'pip', 'type': 'dir', 'mode': '0777'},
               {'path': 'pip/file', 'type': 'file', 'mode': '0644', 'size': len(good), 'sha256': digest}]
    manifest = mf.build_manifest(entries, {'ecosystems': ['pip'], 'created': 'test'})
    root = '/srv/pkgcache-bad'
    b.check_output('rm -rf %s && mkdir -p %s/objects/%s %s/snapshots %s/refs' % (root, root, digest[:2], root, root))
    b.check_output("printf 'evil content!!!!\\n' > %s/objects/%s/%s" % (root, digest[:2], digest[2:]))
    b.check_output("echo '%s' > %s/snapshots/%s.json" % (json.dumps(manifest), root, manifest['id']))
    b.check_output('echo %s > %s/refs/latest' % (manifest['id'], root))
    b.check_output('systemd-run --unit pkgcache-bad-store python3 -m http.server %d --bind 127.0.0.1 --directory %s'
                   % (BAD_PORT, root))
    for dummy in range(50):
        if b.run('python3 -c "import urllib.request;urllib.request.urlopen(\'http://127.0.0.1:%d/refs/latest\')"' % BAD_PORT).rc == 0:
            break
        time.sleep(0.2)
    yield digest
    b.run('systemctl stop pkgcache-bad-store')
    b.run('rm -rf %s' % root)


def test_object_with_wrong_hash_is_refused(corrupt_store):
    before = state(HOST)
    rc, res = run_module(HOST, 'pkgcache.overlay.snapshot_sync', {'url': 'http://127.0.0.1:%d' % BAD_PORT})
    assert rc != 0
    assert 'object %s' % corrupt_store in res['msg'] and 'does not match its hash' in res['msg'], res['msg']
    assert state(HOST) == before
    r = as_root(HOST)
    assert not r.file('/var/lib/pkgcache/objects/%s/%s' % (corrupt_store[:2], corrupt_store[2:])).exists
    assert r.check_output('find /var/lib/pkgcache/objects/incoming -type f | wc -l') == '0'
    # The users still see the snapshot they had.
    assert r.check_output('findmnt -n -o FSTYPE /home/alice/.cache/pip') == 'overlay'


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
