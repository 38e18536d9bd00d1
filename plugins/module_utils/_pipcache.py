# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filling and checking a pip cache with pip itself.

Private to the collection; the API may change without notice.

Every requested package is installed on its own (_solo) into a throwaway
target, by the pip of a build venv that this module manages, all through one
cache; packages whose earlier resolution still holds are copied from the
previous snapshot instead (_reuse).

pip's HTTP cache keys a response by its URL: the entry lives at
``http-v2/a/b/c/d/e/<sha224(url)>`` (pip >= 23.3, with a ``.body`` file
beside it) or ``http/a/b/c/d/e/<sha224(url)>`` (older pip). Wheels that pip
built from an sdist go to ``wheels/``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
from urllib.parse import urlsplit, urlunsplit

from . import _reuse as reuse
from . import _solo as solo
from . import _store as st
from . import _sync
from ._fill import BuildError, fingerprint, tail, with_defaults

# pip's options: the top-level options of snapshot_build (the other ecosystems have a dict option each).
OPTIONS = dict(
    packages=dict(type='list', elements='str', default=[]),
    requirements=dict(type='path'),
    index_url=dict(type='str'),
    trusted_host=dict(type='str'),
    python=dict(type='str', default='python3'),
    pip_version=dict(type='str'),
    venv_dir=dict(type='path'),
)
ITEMS = 'packages'
# Top-level names of pip's cache dir that never go into a snapshot.
EXCLUDE = ('selfcheck',)
_NAME_NORM = re.compile(r'[-_.]+')
_SPEC_NAME = re.compile(r'^\s*([A-Za-z0-9][A-Za-z0-9._-]*)')
VERSIONS = 'import json, sys, pip; print(json.dumps({"pip": pip.__version__, "python": "%d.%d.%d" % sys.version_info[:3]}))'


def normalize_name(name):
    return _NAME_NORM.sub('-', name).lower()


def requirement_name(spec):
    m = _SPEC_NAME.match(spec)
    return normalize_name(m.group(1)) if m else None


item_name = requirement_name


def exclude(cache):
    """Top-level names of pip's cache dir that stay out of a snapshot."""
    return EXCLUDE


def read_requirements(text, source):
    """Return requirement specs from requirements-file text; options and includes are refused."""
    specs = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split(' #', 1)[0].strip()
        if not line or line.startswith('#'):
            continue
        if line.startswith('-'):
            raise BuildError('%s line %d: pip options (%r) are not allowed in a snapshot requirements file; '
                             'use the module options instead' % (source, lineno, line))
        specs.append(line)
    return specs


_NAME = r'[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?'
_CLAUSE = r'(?:~=|===|==|!=|<=|>=|<|>)\s*[A-Za-z0-9][A-Za-z0-9._*+!-]*'
# What a requested package may be: a PEP 508 name, optional extras, optional version clauses. No URL, no marker,
# no option: the build resolves what the index serves, the way a user's ``pip install name[extra]==1.0`` does.
SPEC = re.compile(r'^(%s)\s*(?:\[\s*(%s(?:\s*,\s*%s)*)?\s*\])?\s*(%s(?:\s*,\s*%s)*)?$'
                  % (_NAME, _NAME, _NAME, _CLAUSE, _CLAUSE))


def check_specs(specs):
    """Return the specs stripped; refuse anything but ``name``, ``name[extra,...]`` and version clauses
    (``name[extra]==1.0``, ``name>=2,<3``), naming the spec."""
    for spec in specs:
        if not isinstance(spec, str) or not spec.strip() or spec.strip().startswith('-') or '\n' in spec:
            raise BuildError('package %r is not a requirement specifier' % (spec,))
        if requirement_name(spec) is None:
            raise BuildError('package %r does not start with a project name' % (spec,))
        if '@' in spec or '://' in spec:
            raise BuildError('package %r is a direct reference (name @ URL); a snapshot caches what the index '
                             'serves, so give a name and a version range' % (spec,))
        if not SPEC.match(spec.strip()):
            raise BuildError('package %r is not a project name with optional extras and version clauses (for '
                             'example uvicorn[standard] or django==4.2.7); markers and options are refused' % (spec,))
    return [s.strip() for s in specs]


def cache_url(url):
    """Normalise a URL the way pip's CacheControl does before hashing it."""
    parts = urlsplit(url)
    path = parts.path or '/'
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ''))


def http_cache_paths(cache_dir, url):
    """Return the possible cache entry paths of a URL (http-v2, then http)."""
    key = hashlib.sha224(cache_url(url).encode('utf-8')).hexdigest()
    rel = os.path.join(*(list(key[:5]) + [key]))
    return [os.path.join(cache_dir, 'http-v2', rel), os.path.join(cache_dir, 'http', rel)]


def url_cached(cache_dir, url):
    return any(os.path.isfile(p) for p in http_cache_paths(cache_dir, url))


def built_wheels(cache_dir):
    """Return the set of normalised project names that have a wheel in pip's wheels/ cache."""
    names = set()
    for root, dummy, files in os.walk(os.path.join(cache_dir, 'wheels')):
        for f in files:
            if f.endswith('.whl'):
                names.add(normalize_name(f.split('-', 1)[0]))
    return names


def parse_report(data):
    """Return the packages a pip --report lists: name, version, url, requested, is_wheel."""
    try:
        report = json.loads(data)
    except ValueError as exc:
        raise BuildError('pip wrote a report that is not JSON: %s' % exc)
    packages = []
    for item in report.get('install', []):
        meta = item.get('metadata') or {}
        info = item.get('download_info') or {}
        url = info.get('url', '')
        packages.append({
            'name': normalize_name(meta.get('name', '')),
            'version': meta.get('version', ''),
            'url': url,
            'requested': bool(item.get('requested')),
            'is_wheel': urlsplit(url).path.endswith('.whl'),
        })
    return sorted(packages, key=lambda p: p['name'])


def check_cached(cache_dir, packages):
    """Split report packages into (cached, misses) by looking for them in the cache dir."""
    wheels = built_wheels(cache_dir)
    cached, misses = [], []
    for p in packages:
        if not p['url'].startswith(('http://', 'https://')):
            misses.append({'package': p['name'], 'version': p['version'], 'reason': 'not fetched from the index (%s)' % p['url']})
        elif not url_cached(cache_dir, p['url']):
            misses.append({'package': p['name'], 'version': p['version'],
                           'reason': 'pip fetched %s but did not cache it' % p['url']})
        elif not p['is_wheel'] and p['name'] not in wheels:
            misses.append({'package': p['name'], 'version': p['version'],
                           'reason': 'the sdist is cached but pip did not cache the wheel it built'})
        else:
            cached.append(p)
    return cached, misses


def clean_env(environ, cache_dir):
    """Environment for the build's pip: no PIP_* settings or config files from the host."""
    env = dict((k, v) for k, v in environ.items() if not k.startswith('PIP_'))
    env.update({'PIP_CONFIG_FILE': os.devnull, 'PIP_CACHE_DIR': cache_dir,
                'PIP_DISABLE_PIP_VERSION_CHECK': '1', 'PIP_NO_INPUT': '1', 'PYTHONDONTWRITEBYTECODE': '1'})
    return env


def pip_args(index_url, trusted_host, cache_dir):
    args = ['--index-url', index_url, '--cache-dir', cache_dir]
    if trusted_host:
        args += ['--trusted-host', trusted_host]
    return args


def install_command(python, index_url, trusted_host, cache_dir, target, report, reqfile):
    """The pip command that fills the cache when a resolution takes an sdist: resolve, download, build its wheel
    once (pip caches it), install to a throwaway target."""
    return [python, '-m', 'pip', 'install', '--ignore-installed', '--use-pep517',
            '--report', report, '-r', reqfile] + pip_args(index_url, trusted_host, cache_dir) + ['--target', target]


def resolve_command(python, index_url, trusted_host, cache_dir, report, reqfile):
    """The pip command that resolves as ``pip install`` in a fresh venv would and installs nothing: it fetches the
    index pages and, for each file, its metadata (PEP 658) or, where the index serves none, the whole file."""
    return [python, '-m', 'pip', 'install', '--dry-run', '--ignore-installed', '--use-pep517',
            '--report', report, '-r', reqfile] + pip_args(index_url, trusted_host, cache_dir)


def download_command(python, index_url, trusted_host, cache_dir, dest, urls):
    """The pip command that fetches files by URL through the cache (as ``pip install`` fetches them)."""
    return [python, '-m', 'pip', 'download', '--no-deps', '--dest', dest] + \
        pip_args(index_url, trusted_host, cache_dir) + list(urls)


def build_key(ecosystem, index_url, pip_version, python_version, packages, misses, requested):
    """Fingerprint of a build's inputs and resolution, for idempotence."""
    return fingerprint({'ecosystem': ecosystem, 'index_url': index_url, 'pip': pip_version, 'python': python_version,
                        'requested': sorted(requested),
                        'packages': sorted((p['name'], p['version'], p['url']) for p in packages),
                        'misses': sorted(m['package'] for m in misses)})


def options(p):
    """pip's options from snapshot_build's params ``p``: the requested specs (``packages`` and the lines of
    ``requirements``, checked), the index, the build venv, and the store and work dir that reuse and the venv use."""
    o = with_defaults(OPTIONS, dict((k, p.get(k)) for k in OPTIONS))
    specs = list(o['packages'])
    if o.get('requirements'):
        try:
            with open(o['requirements']) as f:
                specs += read_requirements(f.read(), o['requirements'])
        except OSError as exc:
            raise BuildError('cannot read requirements %s: %s' % (o['requirements'], exc))
    specs = check_specs(specs)
    if not specs:
        raise BuildError('no packages given: set packages or requirements')
    if not o.get('index_url'):
        raise BuildError('pip: index_url is not set')
    o.update(packages=specs, store=p['store'], work_dir=p['work_dir'], deadline=p.get('deadline'))
    return o


def ensure_venv(python, venv_dir, pip_version, index_url, trusted_host, run, scratch):
    """Create the build venv if needed, pin pip if asked; return (venv python, versions, changed)."""
    vpy = os.path.join(venv_dir, 'bin', 'python')
    changed = False
    if not os.path.exists(vpy):
        rc, out, err = run([python, '-m', 'venv', venv_dir], None)
        if rc != 0:
            raise BuildError('cannot create the build venv %s with %s: %s' % (venv_dir, python, tail(err or out)))
        changed = True
    rc, out, err = run([vpy, '-c', VERSIONS], None)
    if rc != 0:
        raise BuildError('the build venv %s is broken: %s' % (venv_dir, tail(err or out)))
    versions = json.loads(out.strip().splitlines()[-1])
    if pip_version and versions['pip'] != pip_version:
        cache = tempfile.mkdtemp(dir=scratch, prefix='pipcache-bootstrap-')
        cmd = [vpy, '-m', 'pip', 'install', 'pip==' + pip_version] + pip_args(index_url, trusted_host, cache)
        rc, out, err = run(cmd, clean_env(os.environ, cache))
        if rc != 0:
            raise BuildError('cannot install pip %s into the build venv from %s: %s' % (pip_version, index_url, tail(err or out)))
        rc, out, err = run([vpy, '-c', VERSIONS], None)
        versions = json.loads(out.strip().splitlines()[-1])
        changed = True
    return vpy, versions, changed


def _read_report(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return f.read()


def _install(vpy, o, specs, cache, scratch, run):
    """Resolve ``specs`` with pip and leave in ``cache`` every file that a user's ``pip install`` of them fetches;
    return (rc, the report's text or None, the tail of pip's output).

    The resolution installs nothing (``--dry-run``). If it takes only wheels, the ones it did not fetch whole (an
    index that serves PEP 658 metadata) are fetched by URL; if it takes an sdist, the specs are installed for real
    into a throwaway target, so that pip builds the wheel and caches it as a user's install would find it.
    """
    tmp = tempfile.mkdtemp(dir=scratch, prefix='pip-')
    reqfile = os.path.join(tmp, 'requirements.txt')
    report = os.path.join(tmp, 'report.json')
    with open(reqfile, 'w') as f:
        f.write('\n'.join(specs) + '\n')
    index = (o['index_url'], o['trusted_host'], cache)
    env = clean_env(os.environ, cache)
    rc, out, err = run(resolve_command(vpy, *(index + (report, reqfile))), env)
    data = _read_report(report) if rc == 0 else None
    if data is not None:
        packages = parse_report(data)
        if not all(p['is_wheel'] for p in packages):
            os.unlink(report)
            rc, out, err = run(install_command(vpy, *(index + (os.path.join(tmp, 'target'), report, reqfile))), env)
            data = _read_report(report) if rc == 0 else None
        else:
            urls = [p['url'] for p in packages if p['url'].startswith(('http://', 'https://')) and not url_cached(cache, p['url'])]
            if urls:
                rc, out, err = run(download_command(vpy, *(index + (os.path.join(tmp, 'download'), urls))), env)
                data = data if rc == 0 else None
    st.remove_tree(tmp)
    return rc, data, tail(err or out, 3)


def fill_cache(vpy, o, specs, cache, scratch, run, reused=None):
    """Install every spec on its own into a fresh target, all through one cache ``cache``.

    Returns (packages, misses, resolutions): the union of what the solo
    installs took (name, version, url), a miss per spec that cannot be
    installed alone, and per spec the ``name==version`` list it resolved to.
    ``reused`` ({spec: resolution}) are specs whose earlier resolution was
    kept (see _reuse); they count as resolved.
    """
    def one(spec):
        rc, data, err = _install(vpy, o, [spec], cache, scratch, run)
        return rc == 0, data, err

    results, failures = solo.resolve_each(specs, one, o.get('workers')) if specs else ([], [])
    if not reused:
        solo.require_some(specs, results, failures, o['index_url'], 'pip')
    reports = [(spec, parse_report(data)) for spec, data in results]
    packages = solo.union([r for spec, r in reports], key=lambda x: (x['name'], x['version'], x['url']))
    resolutions = dict((spec, sorted('%s==%s' % (x['name'], x['version']) for x in r)) for spec, r in reports)
    return packages, solo.misses(failures, o['index_url'], 'pip'), resolutions


def _reuse_previous(o, versions, specs, cache, fetch):
    """Seed ``cache`` with the previous build's entries of the specs the index has nothing newer for.

    Returns (reused {spec: resolution}, their packages, specs to resolve, pages).
    """
    prev = reuse.previous(o['store'], versions, o['index_url'])
    if prev is None:
        return {}, [], specs, {}
    pages = reuse.fingerprints(o['index_url'], reuse.projects_of(prev['pip'], specs), fetch, o.get('workers'))
    reused, todo = reuse.plan(specs, prev['pip'], pages)
    packages = reuse.packages_of(prev['pip'], reused)
    # The file, its PEP 658 metadata (a current pip reads that first) and the project's page, keyed by URL.
    urls = [x['url'] for x in packages] + [x['url'] + '.metadata' for x in packages] + \
        [reuse.page_url(o['index_url'], x['name']) for x in packages]
    try:
        reuse.seed(cache, o['store'], prev, urls, set(x['name'] for x in packages if not x['is_wheel']))
    except OSError:
        # An object went (a GC between the choice and the copy): resolve everything as without reuse.
        for name in os.listdir(cache):
            st.remove_tree(os.path.join(cache, name))
        return {}, [], specs, pages
    return reused, packages, todo, pages


def _page(opener, deadline, url):
    return _sync.read_url(opener, url, reuse.PAGE_LIMIT, 'the index page', deadline or 120)


def fill(o, cache, scratch, run, opener=None):
    """Fill ``cache`` (pip's --cache-dir) with pip; return (packages, misses, metadata, key).

    With ``opener`` (reuse), the previous build's resolutions that still hold are copied instead of resolved,
    and the metadata records the index page of every cached project for the next build.
    """
    specs = o['packages']
    venv_dir = o.get('venv_dir') or os.path.join(o['work_dir'], 'venv-' + os.path.basename(o['python']))
    vpy, versions, dummy = ensure_venv(o['python'], venv_dir, o.get('pip_version'), o['index_url'],
                                       o.get('trusted_host'), run, scratch)
    fetch = functools.partial(_page, opener, o.get('deadline'))
    reused, kept, todo, pages = _reuse_previous(o, versions, specs, cache, fetch) if opener else ({}, [], specs, {})
    packages, misses, resolutions = fill_cache(vpy, o, todo, cache, scratch, run, reused)
    packages = solo.union([packages, kept], key=lambda x: (x['name'], x['version'], x['url']))
    resolutions.update(reused)
    cached, not_cached = check_cached(cache, packages)
    misses += not_cached
    for m in misses:
        m['ecosystem'] = 'pip'
    if not cached:
        raise BuildError(
            'pip cached none of the %d files it fetched from %s. The index must send cache headers '
            '(pypiserver: --cache-control; nginx: Cache-Control/expires), and an http index must be given '
            'as trusted_host. Misses: %s' % (len(packages), o['index_url'], '; '.join(m['reason'] for m in misses[:3])))
    key = build_key('pip', o['index_url'], versions['pip'], versions['python'], cached, misses, specs)
    if opener:
        # Pages of projects first seen in this build are fetched now, after pip read them: a release in
        # between only means that the next build resolves that package again once more.
        names = set(c['name'] for c in cached)
        pages.update(reuse.fingerprints(o['index_url'], names - set(pages), fetch, o.get('workers')))
        pages = dict((n, h) for n, h in pages.items() if n in names and h)
    packages = [{'name': c['name'], 'version': c['version'], 'url': c['url']} for c in cached]
    meta = {'pip_version': versions['pip'], 'python_version': versions['python'],
            'index_url': o['index_url'], 'trusted_host': o.get('trusted_host') or None,
            'requested': specs, 'packages': packages, 'resolutions': resolutions, 'reused': len(reused)}
    if pages:
        meta['pages'] = pages
    return packages, misses, meta, key


def stored(store, snap_id, meta):
    """After the snapshot is stored: remember its resolutions and pages for the next build's reuse."""
    reuse.remember(store, snap_id, meta)
