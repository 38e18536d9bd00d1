import errno
import hashlib
import os
import urllib.request

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _manifest as mf
from ansible_collections.pkgcache.overlay.plugins.module_utils import _hoststate as hs
from ansible_collections.pkgcache.overlay.plugins.module_utils import _store as st


def opener(url):
    return urllib.request.urlopen(url)


def server_store(tmp_path, files):
    """A builder-side store (served as file:// URLs) holding ``files`` {name: bytes}; returns (url, manifest)."""
    src = tmp_path / 'cache'
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    served = str(tmp_path / 'served')
    entries, paths = mf.scan_tree(str(src), 'pip')
    for e in entries:
        if e['type'] == 'file':
            st.ingest_file(served, paths[e['path']], e['sha256'])
    return 'file://' + served, mf.build_manifest(entries, {})


def test_ingest_stores_each_object_once(tmp_path):
    src = tmp_path / 'x'
    src.write_bytes(b'hello')
    digest = hashlib.sha256(b'hello').hexdigest()
    assert st.ingest_file(str(tmp_path / 's'), str(src), digest) is True
    assert st.ingest_file(str(tmp_path / 's'), str(src), digest) is False
    assert open(st.object_path(str(tmp_path / 's'), digest), 'rb').read() == b'hello'
    with pytest.raises(st.StoreError, match='changed while'):
        st.ingest_file(str(tmp_path / 's'), str(src), 'f' * 64)


def test_fetch_checkout_activate(tmp_path):
    url, manifest = server_store(tmp_path, {'a': b'one', 'b': b'two', 'c': b'one'})
    host = str(tmp_path / 'host')
    missing = st.missing_objects(host, manifest['entries'])
    assert len(missing) == 2  # 'a' and 'c' share one object
    assert st.fetch_objects(host, url, missing, opener, workers=4) == 6
    assert st.missing_objects(host, manifest['entries']) == {}
    tree, created = st.checkout(host, manifest)
    assert created and open(os.path.join(tree, 'pip', 'c'), 'rb').read() == b'one'
    assert os.stat(os.path.join(tree, 'pip', 'a')).st_ino == os.stat(os.path.join(tree, 'pip', 'c')).st_ino
    assert oct(os.stat(os.path.join(tree, 'pip')).st_mode & 0o7777) == oct(0o777)
    assert st.checkout(host, manifest) == (tree, False)
    hs.activate(host, manifest['id'])
    assert hs.active_id(host) == manifest['id']
    assert os.path.realpath(os.path.join(host, 'current')) == tree


def test_corrupt_object_is_refused_and_leaves_nothing(tmp_path):
    url, manifest = server_store(tmp_path, {'a': b'good'})
    digest = [e for e in manifest['entries'] if e['type'] == 'file'][0]['sha256']
    with open(st.object_path(url[len('file://'):], digest), 'wb') as f:
        f.write(b'evil')
    host = str(tmp_path / 'host')
    with pytest.raises(st.StoreError, match='object %s from .* does not match its hash' % digest):
        st.fetch_objects(host, url, {digest: 4}, opener)
    assert not os.path.exists(st.object_path(host, digest))
    assert os.listdir(os.path.join(host, 'objects', 'incoming')) == []


@pytest.mark.parametrize('content, size, message', [
    (b'goo', 4, 'truncated: 3 of 4 bytes'),
    (b'good and more', 4, 'larger than the 4 bytes'),
])
def test_wrong_size_is_refused(tmp_path, content, size, message):
    url, manifest = server_store(tmp_path, {'a': b'good'})
    digest = hashlib.sha256(b'good').hexdigest()
    with open(st.object_path(url[len('file://'):], digest), 'wb') as f:
        f.write(content)
    with pytest.raises(st.StoreError, match=message):
        st.fetch_objects(str(tmp_path / 'host'), url, {digest: size}, opener)


def test_unreachable_url_names_the_url(tmp_path):
    with pytest.raises(st.StoreError, match='cannot fetch object %s from file:///nonexistent/objects/' % ('e' * 64)):
        st.fetch_objects(str(tmp_path / 'host'), 'file:///nonexistent', {'e' * 64: 1}, opener)


def test_disk_full_is_reported_and_cleaned(tmp_path):
    class Full(object):
        def read(self, n):
            raise OSError(errno.ENOSPC, 'No space left on device')

    with pytest.raises(st.StoreError, match='no space left'):
        st.fetch_objects(str(tmp_path / 'host'), 'http://x', {'e' * 64: 1}, lambda url: Full())
    assert os.listdir(str(tmp_path / 'host' / 'objects' / 'incoming')) == []


def test_failed_checkout_leaves_no_tree(tmp_path):
    url, manifest = server_store(tmp_path, {'a': b'one'})
    host = str(tmp_path / 'host')
    with pytest.raises(st.StoreError, match='missing from the store'):
        st.checkout(host, manifest)
    assert os.listdir(os.path.join(host, 'trees')) == []
    with pytest.raises(st.StoreError, match='no complete checkout'):
        hs.activate(host, manifest['id'])
    assert hs.active_id(host) is None


def test_one_reader_per_store_file_validates_what_it_reads(two_snapshots, tmp_path):
    served, v1, v2, host = two_snapshots
    store = served[len('file://'):]
    data, manifest = st.read_manifest(store, v2)
    assert manifest['id'] == v2 and hashlib.sha256(data).hexdigest()
    path = st.manifest_path(store, v2)
    os.chmod(path, 0o644)
    with open(path, 'wb') as f:  # one byte of an entry changed: not the snapshot its name says
        f.write(data.replace(b'"size": ', b'"size": 1', 1))
    with pytest.raises(mf.ManifestError):
        st.read_manifest(store, v2)
    with pytest.raises(OSError):
        st.read_manifest(store, 'f' * 64)
    os.makedirs(os.path.join(store, 'refs'), exist_ok=True)
    for content, expected in ((v1 + '\n', v1), ('../../etc/passwd\n', None), ('', None)):
        with open(os.path.join(store, 'refs', 'latest'), 'w') as f:
            f.write(content)
        assert st.read_latest(store) == expected
    assert st.read_latest(str(tmp_path / 'nowhere')) is None
