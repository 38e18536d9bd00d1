"""Incremental npm build against a from-scratch build of the same inputs (issue 14, section 1), with real npm.

A first build publishes a snapshot of BEFORE; then AFTER (two packages changed) is built twice, in one run:
incrementally into the same store (its cache seeded from the published snapshot) and from scratch into a fresh
store. Writes bench/results/incremental.md with both times, their ratio, and whether both snapshots give the
same packages and the same cache hits. The registry is npm's configured one (``npm config get registry``).
Run: python3 bench/incremental.py
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), '.cache', 'collections'))

from ansible_collections.pkgcache.overlay.plugins.module_utils import _builder as bd  # noqa: E402
from ansible_collections.pkgcache.overlay.plugins.module_utils import _npmcache as nc  # noqa: E402
from ansible_collections.pkgcache.overlay.plugins.module_utils import _store as st  # noqa: E402

BEFORE = ['lodash', 'chalk@4', 'react', 'react-dom', 'axios', 'commander', 'debug', 'semver', 'express@4', 'uuid',
          'glob', 'yargs', 'ws', 'moment', 'rxjs', 'date-fns', 'minimist', 'classnames', 'prop-types', 'tslib']
# Two packages changed: chalk moves to its next major, moment is replaced by dayjs.
AFTER = [s for s in BEFORE if s not in ('chalk@4', 'moment')] + ['chalk@5', 'dayjs']
OUT = os.path.join(HERE, 'results', 'incremental.md')


def run(argv, env, data=None, cwd=None):
    p = subprocess.run(argv, env=dict(os.environ, **(env or {})), cwd=cwd, input=data, capture_output=True,
                       text=True, check=False)
    return p.returncode, p.stdout, p.stderr


def build(root, store, specs, now, reuse=True):
    p = {'ecosystems': ['npm'], 'npm': {'packages': specs, 'registry': REGISTRY}, 'store': os.path.join(root, store),
         'work_dir': os.path.join(root, 'work'), 'publish': True, 'workers': 4, 'reuse': reuse}
    start = time.monotonic()
    result = bd.build(p, run, now=now)
    return result, time.monotonic() - start


def hits(root, store, snap_id):
    with open(st.manifest_path(os.path.join(root, store), snap_id)) as f:
        tree = st.build_tree(os.path.join(root, store), json.load(f))
    out = dict((e['key'], e['integrity']) for e in nc.index_entries(os.path.join(tree, 'npm')))
    st.remove_tree(tree)
    return out


def main():
    root = tempfile.mkdtemp(prefix='pkgcache-bench-incremental-')
    try:
        first, t_first = build(root, 'store', BEFORE, '2025-01-01T00:00:00+00:00')
        inc, t_inc = build(root, 'store', AFTER, '2025-01-08T00:00:00+00:00')
        scratch, t_scratch = build(root, 'scratch', AFTER, '2025-01-08T00:00:00+00:00', reuse=False)
        same_packages = sorted((p['name'], p['version']) for p in inc['packages']) == \
            sorted((p['name'], p['version']) for p in scratch['packages'])
        h_inc, h_scratch = hits(root, 'store', inc['id']), hits(root, 'scratch', scratch['id'])
        same_hits = h_inc == h_scratch
        # Packuments are revalidated, so their content may differ if the registry published in between.
        same_tarball_hits = dict((k, v) for k, v in h_inc.items() if nc.tarball_package(k)) == \
            dict((k, v) for k, v in h_scratch.items() if nc.tarball_package(k))
        ratio = t_inc / t_scratch
        lines = [
            '# Incremental npm build against a from-scratch build',
            '',
            'Real npm %s, registry %s. %d specs (%d packages with their dependencies); the rebuild changes 2 '
            '(chalk@4 -> chalk@5, moment -> dayjs). Both builds of the new list ran in this one run, the '
            'incremental one seeded from the published snapshot of the old list.' % (
                inc['ecosystems']['npm']['npm_version'], REGISTRY, len(AFTER), len(scratch['packages'])),
            '',
            '| build | seconds | files seeded | new objects | new bytes |',
            '|---|---:|---:|---:|---:|',
            '| first (old list, empty store) | %.1f | %d | %d | %d |' % (
                t_first, first['ecosystems']['npm']['reused'], first['new_objects'], first['new_bytes']),
            '| incremental (new list) | %.1f | %d | %d | %d |' % (
                t_inc, inc['ecosystems']['npm']['reused'], inc['new_objects'], inc['new_bytes']),
            '| from scratch (new list, empty store) | %.1f | %d | %d | %d |' % (
                t_scratch, scratch['ecosystems']['npm']['reused'], scratch['new_objects'], scratch['new_bytes']),
            '',
            '- time incremental / from scratch: **%.2f** (target <= 0.25)' % ratio,
            '- same packages: %s; same index entries (key -> integrity): %s; same tarball entries: %s' % (
                same_packages, same_hits, same_tarball_hits),
            '',
        ]
        os.makedirs(os.path.dirname(OUT), exist_ok=True)
        with open(OUT, 'w') as f:
            f.write('\n'.join(lines))
        print('\n'.join(lines))
    finally:
        shutil.rmtree(root, ignore_errors=True)


REGISTRY = subprocess.run(['npm', 'config', 'get', 'registry'], capture_output=True, text=True,
                          check=False).stdout.strip() or 'https://registry.npmjs.org/'

if __name__ == '__main__':
    main()
