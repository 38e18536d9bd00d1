"""Publish two small snapshots (pip and npm) into a store dir, for the attacks scenario.

Usage: attack_store.py STORE_DIR. Writes objects, manifests, refs/latest (= v1)
and ids.json ({"v1": id, "v2": id}). The manifests are unsigned: that
scenario tests the mounts, not the trust chain (the default scenario does).
"""

import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), '.cache', 'collections'))
from ansible_collections.pkgcache.overlay.plugins.module_utils import _manifest as mf  # noqa: E402
from ansible_collections.pkgcache.overlay.plugins.module_utils import _store as st  # noqa: E402


def files(version):
    out = {}
    for i in range(40):
        out['pip/http/%x/%x/entry-%02d' % (i % 4, i % 3, i)] = b'pip http entry %d\n' % i * 50
    out['pip/wheels/ab/cd/pkg-1.0-py3-none-any.whl'] = b'a wheel\n' * 100
    for i in range(10):
        out['npm/_cacache/content-v2/sha512/%02x/blob' % i] = b'npm blob %d\n' % i * 30
        out['npm/_cacache/index-v5/%02x/bucket' % i] = b'npm index %d\n' % i
    out['pip/http/0/0/changes'] = b'only in %s\n' % version.encode()
    return out


def publish(store, version, created):
    entries, dirs = [], set()
    for path, data in sorted(files(version).items()):
        digest = hashlib.sha256(data).hexdigest()
        obj = st.object_path(store, digest)
        os.makedirs(os.path.dirname(obj), exist_ok=True)
        with open(obj, 'wb') as f:
            f.write(data)
        entries.append({'path': path, 'type': 'file', 'mode': '0644', 'size': len(data), 'sha256': digest})
        parts = path.split('/')
        for n in range(1, len(parts)):
            dirs.add('/'.join(parts[:n]))
    entries += [{'path': d, 'type': 'dir', 'mode': '0777'} for d in sorted(dirs)]
    manifest = mf.build_manifest(entries, {'created': created, 'ecosystems': ['npm', 'pip']})
    os.makedirs(os.path.join(store, 'snapshots'), exist_ok=True)
    with open(st.manifest_path(store, manifest['id']), 'w') as f:
        json.dump(manifest, f)
    return manifest['id']


def main():
    store = sys.argv[1]
    ids = {'v1': publish(store, 'v1', '2026-01-01T00:00:00+00:00'), 'v2': publish(store, 'v2', '2026-01-02T00:00:00+00:00')}
    os.makedirs(os.path.join(store, 'refs'), exist_ok=True)
    with open(os.path.join(store, 'refs', 'latest'), 'w') as f:
        f.write(ids['v1'] + '\n')
    with open(os.path.join(store, 'ids.json'), 'w') as f:
        json.dump(ids, f)
    print(json.dumps(ids))


if __name__ == '__main__':
    main()
