# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resolving every requested package on its own, the way a user installs it into a fresh project.

Private to the collection; the API may change without notice.

Popular packages conflict: resolved together, they pin shared dependencies to
versions that nobody who installs one of them alone would get. So every
ecosystem resolves (and fills the cache for) each requested package alone,
in parallel into one shared cache, and the snapshot holds the union. A
package that fails alone is a miss with its reason; it never fails the build.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ._fill import BuildError

DEFAULT_WORKERS = 4


def resolve_each(specs, resolve_one, workers=DEFAULT_WORKERS):
    """Run ``resolve_one(spec) -> (ok, data, reason)`` for every spec, ``workers`` at a time.

    Returns (results, failures): results is a list of (spec, data) in the
    order of ``specs`` for those that resolved, failures a list of
    (spec, reason). The tools share one cache; pip, npm's cacache and uv all
    write their cache entries atomically, so parallel runs are safe.
    """
    workers = max(1, min(int(workers or DEFAULT_WORKERS), len(specs) or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(resolve_one, specs))
    results, failures = [], []
    for spec, (ok, data, reason) in zip(specs, outcomes):
        if ok:
            results.append((spec, data))
        else:
            failures.append((spec, reason))
    return results, failures


def misses(failures, source, ecosystem, name=lambda spec: spec):
    """Miss entries for the specs that failed alone."""
    return [{'package': name(spec), 'version': '', 'ecosystem': ecosystem,
             'reason': 'cannot be installed on its own from %s: %s' % (source, reason)} for spec, reason in failures]


def require_some(specs, results, failures, source, what):
    """Refuse a build where not one package resolved, naming the first reason."""
    if not results:
        raise BuildError('none of the %d packages could be resolved from %s (%s); first error: %s'
                         % (len(specs), source, what, failures[0][1] if failures else 'none given'))


def union(lists, key):
    """Merge lists of dicts, keeping the first of each ``key(item)``, sorted by key."""
    seen = {}
    for items in lists:
        for item in items:
            seen.setdefault(key(item), item)
    return [seen[k] for k in sorted(seen)]
