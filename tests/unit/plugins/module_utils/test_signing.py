"""Signatures with the real ssh-keygen, and the no-downgrade rule, through _sync."""

import json
import os
import subprocess
import urllib.request

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _signing as sg
from ansible_collections.pkgcache.overlay.plugins.module_utils import _hoststate as hs
from ansible_collections.pkgcache.overlay.plugins.module_utils import _store as st
from ansible_collections.pkgcache.overlay.plugins.module_utils import _sync

from helpers import publish


def run(argv, env=None, data=None):
    proc = subprocess.run(argv, input=data, capture_output=True, check=False)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def keypair(path):
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', path], check=True)
    with open(path + '.pub') as f:
        return f.read()


@pytest.fixture
def keys(tmp_path):
    good = keypair(str(tmp_path / 'good'))
    keypair(str(tmp_path / 'evil'))
    allowed = str(tmp_path / 'allowed_signers')
    with open(allowed, 'w') as f:
        f.write(sg.allowed_signers_line(good) + '\n')
    return str(tmp_path / 'good'), str(tmp_path / 'evil'), allowed


def test_sign_and_verify(tmp_path, keys):
    good, evil, allowed = keys
    path = str(tmp_path / 'manifest.json')
    with open(path, 'wb') as f:
        f.write(b'{"id": "x"}')
    sig = open(sg.sign(run, good, path), 'rb').read()
    sg.verify(run, allowed, b'{"id": "x"}', sig, 'manifest x')
    with pytest.raises(sg.SignatureError, match='bad signature'):
        sg.verify(run, allowed, b'{"id": "y"}', sig, 'manifest x')
    with pytest.raises(sg.SignatureError, match='not signed'):
        sg.verify(run, allowed, b'{"id": "x"}', None, 'manifest x')
    with pytest.raises(sg.SignatureError, match='bad signature'):
        sg.verify(run, allowed, b'{"id": "x"}', b'garbage', 'manifest x')
    evil_sig = open(sg.sign(run, evil, path), 'rb').read()
    with pytest.raises(sg.SignatureError, match='key not in'):
        sg.verify(run, allowed, b'{"id": "x"}', evil_sig, 'manifest x')
    with pytest.raises(sg.SignatureError, match='bad signature'):
        sg.verify(run, allowed, b'{"id": "x"}', sig, 'manifest x', namespace='another-namespace')


def params(url, host, allowed, snap, **kw):
    p = {'url': url, 'snapshot': snap, 'store': host, 'workers': 2, 'max_manifest_size': 1 << 20,
         'allowed_signers': allowed, 'lock_timeout': 0}
    p.update(kw)
    return p


def do_sync(p):
    with _sync.locked(p, False):
        return _sync.sync(p, urllib.request.urlopen, now='t', run=run)


def served_snapshot(served, files, created, key):
    snap = publish(served, files)
    path = st.manifest_path(served, snap)
    manifest = json.load(open(path))
    manifest['created'] = created
    with open(path, 'w') as f:
        json.dump(manifest, f)
    if key:
        sg.sign(run, key, path)
    return snap


def test_sync_refuses_unsigned_and_foreign_signed_snapshots(tmp_path, keys):
    good, evil, allowed = keys
    served, host = str(tmp_path / 'served'), str(tmp_path / 'host')
    unsigned = served_snapshot(served, {'a': b'1'}, '2026-01-01', None)
    foreign = served_snapshot(served, {'b': b'2'}, '2026-01-02', evil)
    signed = served_snapshot(served, {'c': b'3'}, '2026-01-03', good)
    with pytest.raises(_sync.SyncError, match='snapshot %s is not signed' % unsigned):
        do_sync(params('file://' + served, host, allowed, unsigned))
    with pytest.raises(_sync.SyncError, match='snapshot %s has a bad signature or one by a key not in' % foreign):
        do_sync(params('file://' + served, host, allowed, foreign))
    # Nothing past the manifest was fetched, nothing activated.
    assert hs.active_id(host) is None and not os.path.exists(os.path.join(host, 'trees', foreign))
    assert [n for n in os.listdir(os.path.join(host, 'objects')) if n != 'incoming'] == []
    assert do_sync(params('file://' + served, host, allowed, signed))['id'] == signed
    assert hs.active_id(host) == signed


def test_no_silent_downgrade(tmp_path, keys):
    good, evil, allowed = keys
    served, host = str(tmp_path / 'served'), str(tmp_path / 'host')
    old = served_snapshot(served, {'a': b'old'}, '2026-01-01T00:00:00+00:00', good)
    new = served_snapshot(served, {'a': b'new'}, '2026-02-01T00:00:00+00:00', good)
    do_sync(params('file://' + served, host, allowed, new))
    with pytest.raises(_sync.SyncError, match='older than snapshot %s .* refusing a silent downgrade' % new):
        do_sync(params('file://' + served, host, allowed, old))
    assert hs.active_id(host) == new
    do_sync(params('file://' + served, host, allowed, old, allow_downgrade=True))
    assert hs.active_id(host) == old
    # The newest applied is still remembered: going forward is fine, back again is not.
    do_sync(params('file://' + served, host, allowed, new))
    with pytest.raises(_sync.SyncError, match='silent downgrade'):
        do_sync(params('file://' + served, host, allowed, old))
