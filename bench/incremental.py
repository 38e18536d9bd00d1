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
import urllib.request

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


CALLS = []  # (build, npm command, seconds) of every npm run


def run(argv, env, data=None, cwd=None):
    start = time.monotonic()
    p = subprocess.run(argv, env=dict(os.environ, **(env or {})), cwd=cwd, input=data, capture_output=True,
                       text=True, check=False)
    CALLS.append((BUILD[0], ' '.join(argv[1:3]) if argv[1] == 'cache' else argv[1], time.monotonic() - start))
    return p.returncode, p.stdout, p.stderr


BUILD = ['']


def opener(url):
    """The registry as snapshot_build's opener sees it (the check of the packuments of reused resolutions)."""
    return urllib.request.urlopen(url, timeout=30)


def npm_runs(build_name):
    """'N install, M cache add (S s)' for the npm runs of one build."""
    calls = [c for c in CALLS if c[0] == build_name]
    installs = [c for c in calls if c[1] == 'install']
    adds = [c for c in calls if c[1] == 'cache add']
    return '%d install (%.1f s summed), %d cache add (%.1f s)' % (
        len(installs), sum(c[2] for c in installs), len(adds), sum(c[2] for c in adds))


def build(root, store, specs, now, reuse=True):
    p = {'ecosystems': ['npm'], 'npm': {'packages': specs, 'registry': REGISTRY}, 'store': os.path.join(root, store),
         'work_dir': os.path.join(root, 'work'), 'publish': True, 'workers': 4, 'reuse': reuse}
    BUILD[0] = store + now
    start = time.monotonic()
    result = bd.build(p, run, now=now, opener=opener if reuse else None)
    return result, time.monotonic() - start


def build_key(root, store, snap_id):
    with open(st.manifest_path(os.path.join(root, store), snap_id)) as f:
        return json.load(f).get('build_key')


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
        same_key = build_key(root, 'store', inc['id']) == build_key(root, 'scratch', scratch['id'])
        ratio = t_inc / t_scratch
        lines = [
            '# Incremental npm build against a from-scratch build',
            '',
            'Real npm %s, registry %s. %d specs (%d packages with their dependencies); the rebuild changes 2 '
            '(chalk@4 -> chalk@5, moment -> dayjs). Both builds of the new list ran in this one run, the '
            'incremental one seeded from the published snapshot of the old list.' % (
                inc['ecosystems']['npm']['npm_version'], REGISTRY, len(AFTER), len(scratch['packages'])),
            '',
            '| build | seconds | files seeded | npm runs | new objects | new bytes |',
            '|---|---:|---:|---|---:|---:|',
            '| first (old list, empty store) | %.1f | %d | %s | %d | %d |' % (
                t_first, first['ecosystems']['npm']['reused'],
                npm_runs('store2025-01-01T00:00:00+00:00'), first['new_objects'], first['new_bytes']),
            '| incremental (new list) | %.1f | %d | %s | %d | %d |' % (
                t_inc, inc['ecosystems']['npm']['reused'],
                npm_runs('store2025-01-08T00:00:00+00:00'), inc['new_objects'], inc['new_bytes']),
            '| from scratch (new list, empty store) | %.1f | %d | %s | %d | %d |' % (
                t_scratch, scratch['ecosystems']['npm']['reused'],
                npm_runs('scratch2025-01-08T00:00:00+00:00'), scratch['new_objects'], scratch['new_bytes']),
            '',
            '- time incremental / from scratch: **%.2f** (target <= 0.25)' % ratio,
            '- same packages: %s; same index entries (key -> integrity): %s; same tarball entries: %s; '
            'same build key: %s' % (same_packages, same_hits, same_tarball_hits, same_key),
            '',
            'The incremental build runs npm only where something changed. It fetches once more the packument of '
            'every package of the previous resolutions and compares it (sha512) with the seeded cache entry; a '
            'spec whose packages all have unchanged packuments keeps its previous lock, the others are resolved '
            'by npm (the "install" runs above). `npm cache add` then only fetches the tarballs the seeded cache '
            'lacks. From scratch, npm resolves every spec (about 2 to 3 s of npm each, 4 at a time on 2 cores) '
            'and `npm cache add` fetches every packument again.',
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
