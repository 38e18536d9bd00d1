# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filling a uv cache (UV_CACHE_DIR) with uv itself.

Private to the collection; the API may change without notice.

uv keeps index responses in ``simple-v*`` (keyed by index URL), wheels'
metadata in ``wheels-v*`` (relative symlinks into ``archive-v0``) and unpacked
wheels in ``archive-v0``. Interpreter probes and build environments depend on
the host and are left out of a snapshot.

An incremental build (``reuse``) starts from the published snapshot's cache,
without its index responses (``simple-v*``: uv fetches them again, so it
resolves as a build from an empty cache would). uv then finds the unchanged
distributions in the cache. A package the previous snapshot holds at a version
this build does not take is cleaned out with ``uv cache clean <name>`` (and
the specs that take another version of it are installed again), and ``uv cache
prune`` drops the archives nothing links to: the cache is never edited by hand.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile

from . import _solo as solo
from ._fill import BuildError, fingerprint, seeded, tail, with_defaults
from ._pipcache import check_specs as check_pip_specs, normalize_name, requirement_name

# The suboptions of snapshot_build's uv option.
OPTIONS = dict(
    packages=dict(type='list', elements='str', default=[]),
    index_url=dict(type='str'),
    uv=dict(type='str', default='uv'),
    python=dict(type='str', default='python3'),
)
ITEMS = 'packages'
item_name = requirement_name

EXCLUDE_RE = re.compile(r'^(interpreter-v\d+|builds-v\d+|environments-v\d+|sdists-v\d+|\.tmp.*|\.git.*)$')
_FREEZE = re.compile(r'^([A-Za-z0-9._-]+)==(\S+)$')
# Buckets of index responses: never seeded, a build asks the index again.
SIMPLE_RE = re.compile(r'^simple-v\d+$')


def options(p):
    """uv's options from snapshot_build's params, defaults applied; the index is pip's unless uv has its own."""
    o = with_defaults(OPTIONS, p.get('uv'))
    if not o.get('index_url'):
        o['index_url'] = p.get('index_url')
    return o


def clean_env(environ, cache):
    env = dict((k, v) for k, v in environ.items() if not k.startswith(('UV_', 'PIP_')))
    env.update({'UV_CACHE_DIR': cache, 'UV_NO_CONFIG': '1', 'UV_NO_PROGRESS': '1', 'UV_LINK_MODE': 'copy'})
    return env


def exclude(cache):
    """Top-level names of a uv cache dir that stay out of a snapshot."""
    return tuple(n for n in os.listdir(cache) if EXCLUDE_RE.match(n))


def parse_freeze(text):
    out = []
    for line in text.splitlines():
        m = _FREEZE.match(line.strip())
        if m:
            out.append({'name': normalize_name(m.group(1)), 'version': m.group(2)})
    return sorted(out, key=lambda p: p['name'])


def _install(o, specs, cache, scratch, run):
    venv = tempfile.mkdtemp(dir=scratch, prefix='uv-venv-')
    env = clean_env(os.environ, cache)
    rc, out, err = run([o['uv'], 'venv', '--python', o['python'], venv], env)
    if rc != 0:
        raise BuildError('uv cannot create a venv with %s: %s' % (o['python'], tail(err or out)))
    cmd = [o['uv'], 'pip', 'install', '--python', os.path.join(venv, 'bin', 'python'), '--index-url', o['index_url']]
    rc, out, err = run(cmd + specs, env)
    frozen = ''
    if rc == 0:
        frc, frozen, ferr = run([o['uv'], 'pip', 'freeze', '--python', os.path.join(venv, 'bin', 'python')], env)
    shutil.rmtree(venv, ignore_errors=True)
    return rc, frozen, tail(err or out, 3)


def stale_names(previous, frozen):
    """Names of the packages that the previous build's metadata lists at a version no resolution took now."""
    taken = set((p['name'], p['version']) for pk in frozen for p in pk)
    return sorted(set(p['name'] for p in previous.get('packages') or []
                      if (normalize_name(p['name']), p['version']) not in taken))


def _drop_stale(o, previous, cache, run, one, results, failures):
    """After installs from a seeded cache: clean out what the previous snapshot holds and this build does not take,
    install again the specs that take another version of a cleaned package, prune unreachable archives."""
    env = clean_env(os.environ, cache)
    stale = stale_names(previous, [parse_freeze(text) for spec, text in results])
    if stale:
        rc, out, err = run([o['uv'], 'cache', 'clean'] + stale, env)
        if rc != 0:
            raise BuildError('uv cache clean failed: %s' % tail(err or out))
        names = set(normalize_name(n) for n in stale)
        again = [spec for spec, text in results if names & set(p['name'] for p in parse_freeze(text))]
        if again:
            redone, refailed = solo.resolve_each(again, one, o.get('workers'))
            order = dict((spec, n) for n, (spec, text) in enumerate(results))
            results = sorted([r for r in results if r[0] not in again] + redone, key=lambda r: order[r[0]])
            failures = failures + refailed
    rc, out, err = run([o['uv'], 'cache', 'prune'], env)
    if rc != 0:
        raise BuildError('uv cache prune failed: %s' % tail(err or out))
    return results, failures


def fill(o, cache, scratch, run, opener=None):
    """Fill ``cache`` (a UV_CACHE_DIR); return (packages, misses, metadata, key)."""
    specs = check_pip_specs(o.get('packages') or [])
    if not specs:
        raise BuildError('uv: no packages given')
    # The specs that pip's budget left out (``o['left_out']``, from the builder) stay out of uv's part too.
    by_pip = dict((x['package'], x) for x in o.get('left_out') or [])
    left_out = [dict(by_pip[s], why=by_pip[s]['why'] + ' (in pip\'s part; uv follows)') for s in specs if s in by_pip]
    specs = [s for s in specs if s not in by_pip]
    if not specs:
        raise BuildError('uv: pip\'s budget left out every package of the uv list (%s)' % ', '.join(sorted(by_pip)))
    if not o.get('index_url'):
        raise BuildError('uv: index_url is not set')
    rc, out, err = run([o['uv'], '--version'], clean_env(os.environ, cache))
    m = re.match(r'uv (\S+)', out or '')
    if rc != 0 or not m:
        raise BuildError('cannot run uv (%s): %s' % (o['uv'], tail(err or out)))
    uv_version = m.group(1)

    prev, files = seeded(o, 'uv', cache, lambda m: (m.get('uv_version'), m.get('python'), m.get('index_url')) ==
                         (uv_version, o['python'], o['index_url']),
                         skip=lambda name: bool(EXCLUDE_RE.match(name) or SIMPLE_RE.match(name)), link=lambda rel: True)

    def one(spec):
        rc, frozen, err = _install(o, [spec], cache, scratch, run)
        return rc == 0, frozen, err

    results, failures = solo.resolve_each(specs, one, o.get('workers'))
    if prev is not None:
        results, failures = _drop_stale(o, prev['uv'], cache, run, one, results, failures)
    solo.require_some(specs, results, failures, o['index_url'], 'uv')
    misses = solo.misses(failures, o['index_url'], 'uv')
    frozen = [(spec, parse_freeze(text)) for spec, text in results]
    packages = solo.union([pk for spec, pk in frozen], key=lambda x: (x['name'], x['version']))
    resolutions = dict((spec, ['%s==%s' % (x['name'], x['version']) for x in pk]) for spec, pk in frozen)
    key = fingerprint({
        'uv': uv_version, 'python': o['python'], 'index_url': o['index_url'], 'requested': sorted(specs),
        'packages': sorted((p['name'], p['version']) for p in packages),
        'misses': sorted(m['package'] for m in misses)})
    meta = {'uv_version': uv_version, 'python': o['python'], 'index_url': o['index_url'], 'requested': specs,
            'packages': packages, 'link_mode': 'copy', 'resolutions': resolutions, 'reused': len(files)}
    if left_out:
        meta['budget'] = {'left_out': left_out}
    return packages, misses, meta, key
