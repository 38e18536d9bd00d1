# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reusing the previous build's pip resolutions when the index has nothing newer.

Private to the collection; the API may change without notice.

Every build records, per pip project it cached, the sha256 of the project's
index page (``pages``) and each package's file URL. The next build with the
same pip, Python and index fetches those pages again (one small GET per
project, in parallel); a requested package whose resolution only names
projects whose pages did not change would resolve the same way, so pip is
not run for it: its cache entries (the files' and the pages', keyed by URL)
are copied from the previous snapshot's objects into the new cache. The
usual check that every file of a resolution is cached runs on the result.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
from concurrent.futures import ThreadPoolExecutor

from . import _manifest as mf
from . import _pipcache as pc
from . import _store as st

PAGE_LIMIT = 64 << 20


def page_url(index_url, project):
    """The index page of a project (PEP 503: <index>/<normalised name>/)."""
    return index_url.rstrip('/') + '/' + pc.normalize_name(project) + '/'


def _state_path(store):
    return os.path.join(store, 'refs', 'reuse', 'pip.json')


def remember(store, snap_id, meta):
    """Keep what this build resolved and the pages it saw, for the next build (the snapshot's manifest is not
    rewritten when its build key did not change, so its pages would go stale)."""
    keep = dict((k, meta.get(k)) for k in ('pip_version', 'python_version', 'index_url', 'pages', 'resolutions', 'packages'))
    keep['snapshot'] = snap_id
    path = _state_path(store)
    st.makedirs(os.path.dirname(path))
    st.write_bytes_atomic(path, json.dumps(keep, sort_keys=True).encode('utf-8'))


def _remembered(store, versions, index_url):
    try:
        with open(_state_path(store), 'rb') as f:
            state = json.loads(f.read())
        if (state.get('pip_version'), state.get('python_version'), state.get('index_url')) != \
                (versions['pip'], versions['python'], index_url) or not state.get('pages'):
            return None
        entries = st.read_manifest(store, state['snapshot'])[1]['entries']
    except (OSError, ValueError, KeyError, TypeError, mf.ManifestError):
        return None
    return {'pip': state, 'entries': entries, 'id': state['snapshot']}


def previous(store, versions, index_url):
    """The previous pip build of the same pip, Python and index, as {pip: metadata, entries}, or None.

    What the last build remembered (``remember``) first, else the newest such manifest in the store.
    """
    state = _remembered(store, versions, index_url)
    if state is not None:
        return state
    best = None
    directory = os.path.join(store, 'snapshots')
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith('.json') and len(n) == 69)
    except OSError:
        return None
    for name in names:
        try:
            with open(os.path.join(directory, name), 'rb') as f:
                manifest = json.loads(f.read())
        except (OSError, ValueError):
            continue
        meta = manifest.get('pip') or {}
        if (meta.get('pip_version'), meta.get('python_version'), meta.get('index_url')) != \
                (versions['pip'], versions['python'], index_url) or not meta.get('pages'):
            continue
        if best is None or (manifest.get('created') or '') > (best.get('created') or ''):
            best = manifest
    return best


def fingerprints(index_url, projects, fetch, workers):
    """{project: sha256 of its index page, or None if it cannot be fetched}; ``fetch(url) -> bytes``."""
    projects = sorted(set(projects))

    def one(project):
        try:
            return hashlib.sha256(fetch(page_url(index_url, project))).hexdigest()
        except Exception:  # any failure only means: resolve it again
            return None

    with ThreadPoolExecutor(max_workers=max(1, workers or 1)) as pool:
        return dict(zip(projects, pool.map(one, projects)))


def plan(specs, meta, pages_now):
    """Split ``specs`` into (reused {spec: resolution}, to resolve [spec]).

    A spec is reused when the previous build resolved it, cached every
    package of that resolution (with its URL), and every project of it had
    the same index page then as now.
    """
    old_pages, resolutions = meta.get('pages') or {}, meta.get('resolutions') or {}
    cached = set('%s==%s' % (x['name'], x['version']) for x in meta.get('packages') or [] if x.get('url'))
    reused, todo = {}, []
    for spec in specs:
        res = resolutions.get(spec) or []
        names = [r.split('==', 1)[0] for r in res]
        if res and all(r in cached for r in res) and \
                all(old_pages.get(n) and old_pages.get(n) == pages_now.get(n) for n in names):
            reused[spec] = res
        else:
            todo.append(spec)
    return reused, todo


def projects_of(meta, specs):
    """The projects named by the previous resolutions of ``specs``."""
    resolutions = meta.get('resolutions') or {}
    return set(r.split('==', 1)[0] for s in specs for r in resolutions.get(s) or [])


def packages_of(meta, reused):
    """The previous build's package dicts (name, version, url, is_wheel) that the reused resolutions name."""
    wanted = set(r for res in reused.values() for r in res)
    out = []
    for p in meta.get('packages') or []:
        if '%s==%s' % (p['name'], p['version']) in wanted and p.get('url'):
            out.append(dict(p, is_wheel=posixpath.basename(p['url'].split('?', 1)[0]).endswith('.whl')))
    return out


def seed(cache, store, manifest, urls, wheel_projects):
    """Copy into ``cache`` the previous snapshot's entries for ``urls`` (pip's HTTP cache, both layouts, with
    ``.body``) and the wheel-cache dirs of the wheels it built for ``wheel_projects`` (the wheel and pip's
    ``origin.json`` beside it); return the number of files copied."""
    wanted = set()
    for url in urls:
        for path in pc.http_cache_paths('pip', url):
            wanted.update((path, path + '.body'))
    files = [e for e in manifest['entries'] if e['type'] == 'file']
    built_dirs = set(posixpath.dirname(e['path']) for e in files
                     if e['path'].startswith('pip/wheels/') and e['path'].endswith('.whl')
                     and pc.normalize_name(posixpath.basename(e['path']).split('-', 1)[0]) in wheel_projects)
    copied = 0
    for e in files:
        path = e['path']
        if path not in wanted and posixpath.dirname(path) not in built_dirs:
            continue
        mf.check_snapshot_id(e['sha256'], 'object of %s' % path)
        dest = os.path.join(cache, path[len('pip/'):])
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(st.object_path(store, e['sha256']), 'rb') as src, open(dest, 'wb') as out:
            shutil.copyfileobj(src, out, 1 << 20)
        copied += 1
    return copied
