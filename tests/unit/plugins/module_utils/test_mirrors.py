"""Mirrors: a stable per-host order, failover on dead mirrors and on content that fails verification."""

import os
import shutil

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _hoststate as hs
from ansible_collections.pkgcache.overlay.plugins.module_utils import _store as st
from ansible_collections.pkgcache.overlay.plugins.module_utils import _sync

from helpers import HOST_CLOCK
from test_publish import build, key, run, store  # noqa: F401 pylint: disable=unused-import


def opener(url):
    return open(url[len('file://'):], 'rb')


def sync(host, mirrors, allowed, key='repl-1'):
    return _sync.sync({'url': None, 'mirrors': mirrors, 'snapshot': 'latest', 'store': host, 'workers': 2,
                       'max_manifest_size': 1 << 20, 'allowed_signers': allowed, 'mirror_key': key,
                       'now_epoch': HOST_CLOCK}, opener, run=run)


def test_each_host_has_a_stable_order_of_its_own():
    urls = ['http://m%d' % n for n in range(4)]
    orders = [_sync.mirror_order(urls, 'repl-%d' % n) for n in range(40)]
    assert all(sorted(o) == urls for o in orders)
    assert len(set(o[0] for o in orders)) == 4  # hosts spread over the mirrors
    assert _sync.mirror_order(urls, 'repl-7') == _sync.mirror_order(urls, 'repl-7')


def test_a_dead_mirror_and_a_corrupt_one_are_skipped_for_a_good_one(tmp_path, key):
    v1 = build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00', key[0])
    good = store(tmp_path)
    corrupt = str(tmp_path / 'corrupt')
    shutil.copytree(good, corrupt)
    for digest, path, s in st.iter_objects(corrupt):
        os.chmod(path, 0o644)
        open(path, 'wb').write(b'evil' + b'!' * (s.st_size - 4))
    dead = 'file://' + str(tmp_path / 'nowhere')
    host = str(tmp_path / 'host')
    os.makedirs(host)
    mirrors = [dead, 'file://' + corrupt, 'file://' + good]
    # A host whose own order is the dead one, then the corrupt one, then the good one.
    name = [k for k in ('repl-%d' % n for n in range(100)) if _sync.mirror_order(mirrors, k) == mirrors][0]
    r = sync(host, mirrors, key[1], name)
    assert r['id'] == v1['id'] and r['mirror'] == 'file://' + good and hs.active_id(host) == v1['id']
    assert [f['url'] for f in r['failed_mirrors']] == mirrors[:2]
    assert 'does not match its hash' in r['failed_mirrors'][1]['error']
    assert st.missing_objects(host, []) == {}
    with pytest.raises(_sync.SyncError, match='every mirror failed: .*nowhere'):
        sync(str(tmp_path / 'host2'), [dead, 'file://' + corrupt], key[1])
